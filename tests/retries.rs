//! The retry schedule as a queue pass applies it: the default retries
//! soon and then hourly for 5 days; the former tiered schedule keeps its
//! meaning when a config names it.

mod harness;

use harness::{Config, Fixture, Smtp, Spool};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Whether `next` is `wait` seconds after the attempt, which began
/// between `before` and `after` (seconds since the epoch): 2 s of slack
/// for rounding, and as long as the pass took, which a loaded machine can
/// stretch past those 2 s.
fn waits(next: u64, wait: u64, before: u64, after: u64) -> bool {
    (before + wait..=after + wait + 2).contains(&next)
}

/// Checks that one deferred attempt under `schedule` (None: the default)
/// sets the message's `next` `wait` seconds after the attempt.
fn assert_first_wait(schedule: Option<&str>, wait: u64) {
    let server = Smtp::faulty("tempfail-always", &[]);
    let mut config = Config::delivery()
        .without("retry_schedule")
        .set("smarthost", server.addr());
    if let Some(schedule) = schedule {
        config = config.set("retry_schedule", schedule);
    }
    let s = Spool::new("retries", &config);
    let q = s.submit_one(&["bob@example.net"], b"Subject: retry\n\nx\n");
    let before = now();
    s.pass(&[]);
    let after = now();
    let state = s.state(&q.id);
    assert!(state.contains("rcpt 0 deferred"), "{state}");
    let next = next_of(&state);
    assert!(
        waits(next, wait, before, after),
        "{schedule:?}: next {next}, {} s after the pass began, which took {} s",
        next as i64 - before as i64,
        after - before
    );
}

#[test]
fn the_default_schedule_retries_after_five_minutes() {
    assert_first_wait(None, 300);
    // The former default, named in a config, means what it meant.
    assert_first_wait(Some("0 30m 4h 8h 16h 24h 48h"), 1800);
    assert_first_wait(Some("0 2m ..."), 120);
}

#[test]
fn a_repeating_schedule_does_not_expire_at_its_end() {
    let server = Smtp::faulty("tempfail-always", &[]);
    let s = Spool::new(
        "retries",
        &Config::delivery()
            .set("smarthost", server.addr())
            .set("retry_schedule", "0 0 ..."),
    );
    let id = s
        .submit_one(&["bob@example.net"], b"Subject: retry\n\nx\n")
        .id;
    for _ in 0..4 {
        s.pass(&[]);
    }
    assert_eq!(s.queue_ids().len(), 1, "{}", s.log());
    assert!(s.bounces().is_empty());
    assert!(s.state(&s.queue_ids()[0]).contains("attempts 4"));
    // `max_queue_lifetime` ends it.
    s.configure(
        &Config::delivery()
            .set("smarthost", server.addr())
            .set("retry_schedule", "0 0 ...")
            .set("max_queue_lifetime", "1s"),
    );
    std::thread::sleep(Duration::from_millis(1100));
    s.pass(&[]);
    // The message expired with one notice. The notice itself is tried in
    // the same pass (the server defers it too), and on a slow machine may
    // outlive the 1 s lifetime there: the log is the record, not the queue.
    let log = s.log();
    assert!(!s.queue_ids().contains(&id), "{log}");
    let notices = format!("{id}: sender non-delivery notification");
    assert_eq!(log.matches(&notices).count(), 1, "{log}");
}

/// The `next` of a state, in seconds since the epoch.
fn next_of(state: &str) -> u64 {
    state
        .lines()
        .find_map(|l| l.strip_prefix("next "))
        .unwrap_or_else(|| panic!("{state}"))
        .parse()
        .unwrap()
}

/// A pass counts one attempt per message, however many destinations its
/// recipients are at (two servers that defer, one that takes its
/// recipient, one that is down): the next attempt is the schedule's
/// second, not its fourth, and a schedule without `...` does not run out
/// after a fraction of its time. A forced pass counts too, once.
#[test]
fn a_pass_counts_one_attempt_per_message_whatever_its_destinations() {
    let tempfail = Fixture::Faulty("tempfail-always");
    let servers = Smtp::start_same_port(&[(tempfail, &[]), (tempfail, &[]), (Fixture::Sink, &[])]);
    let down = harness::loopback_host(); // nothing listens there
    let s = Spool::new(
        "retries",
        &Config::delivery()
            .set("smtp_port", servers[0].port)
            .set("retry_schedule", "0 1h 2h 3h"),
    );
    let mut args: Vec<String> = (servers.iter().enumerate())
        .map(|(i, server)| format!("r{i}@[{}]", server.host))
        .collect();
    args.push(format!("down@[{down}]"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let q = s.submit_one(&args, b"Subject: count\n\nx\n");
    let before = now();
    s.pass(&[]);
    let after = now();
    let state = s.state(&q.id);
    assert!(state.contains("\nattempts 1\n"), "{state}\n{}", s.log());
    assert!(waits(next_of(&state), 3600, before, after), "{state}");
    assert_eq!(state.matches(" deferred ").count(), 3, "{state}");
    assert_eq!(servers[2].message_count(), 1);
    // Forced (the next attempt is an hour away): counted, once.
    let before = now();
    s.run_ok(&["-qR@"], b"");
    let after = now();
    let state = s.state(&q.id);
    assert!(state.contains("\nattempts 2\n"), "{state}\n{}", s.log());
    assert!(waits(next_of(&state), 7200, before, after), "{state}");
    assert!(!s.log().contains("expired"), "{}", s.log());
    assert_eq!(servers[2].message_count(), 1, "never sent twice");
}
