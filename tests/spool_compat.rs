//! The spool format is a public interface: a queue written by an earlier
//! release must still be read and delivered. tests/fixtures/spool-v1/ holds
//! a queue that the first release (spool format 1) wrote itself, unedited:
//!
//! - 6B0D5DC9B1892870: never attempted (no state file); `-t`, `-N`, `-R`,
//!   `-V`, 8-bit body, a quoted local part, a body line starting with "..";
//! - 6B0D5DC9B285B606: null sender, an `orcpt` line, a `body` value padded
//!   with spaces, tried once and deferred for all three recipients;
//! - 6B0D5DCD888417D2: tried once, one recipient delivered and one deferred,
//!   so the delivered one must not get it again.
//!
//! The test copies that queue into a fresh spool, forces a pass to a real
//! SMTP sink and checks what arrives, byte for byte where it matters.

mod harness;

use harness::{Config, Smtp, Spool};
use std::fs;
use std::path::Path;
use std::time::Duration;

fn fixture_queue() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spool-v1/queue")
}

#[test]
fn a_queue_written_by_format_1_is_delivered() {
    let sink = Smtp::sink(&[]);
    // The fixture's arrival times are fixed: a long lifetime keeps them from
    // expiring whenever the test runs.
    let s = Spool::new(
        "spool-v1",
        &Config::submission()
            .set("smarthost", sink.addr())
            .set("qualify_domain", "host.example.org")
            .set("aliases_file", "none")
            .set("max_queue_lifetime", "36500d")
            .set("connect_timeout", "3s"),
    );
    for entry in fs::read_dir(fixture_queue()).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), s.queue_dir().join(entry.file_name())).unwrap();
    }

    s.run_ok(&["-qR@"], b"");

    let mut got = sink.wait_for_messages(3, Duration::from_secs(20));
    got.sort_by(|a, b| a.mail_from.cmp(&b.mail_from));
    assert_eq!(got.len(), 3, "{got:?}");

    // The null sender's message: all three deferred recipients.
    assert_eq!(got[0].mail_from, "");
    let mut rcpts = got[0].rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(
        rcpts,
        [
            "deferred1@example.com",
            "deferred2@example.com",
            "root@host.example.org"
        ]
    );
    assert!(
        got[0]
            .text()
            .contains("\r\n\r\nThis one was tried once and deferred.\r\n")
    );

    // The never-attempted one, with its DSN parameters and 8-bit body.
    let a = &got[1];
    assert_eq!(a.mail_from, "alice@example.org");
    let mut rcpts = a.rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["\"carol smith\"@example.net", "bob@example.com"]);
    assert!(a.mail_options.iter().any(|o| o == "BODY=8BITMIME"), "{a:?}");
    let body = "\r\n\r\nA message written by spoolmail spool format 1.\r\n\
                ..a line that starts with a dot\r\n\u{e9}t\u{e9} 8-bit body\r\n";
    assert!(a.text().ends_with(body), "{:?}", a.text());
    assert!(a.text().contains("Subject: caf\u{e9} v1\r\n"));

    // The half-delivered one goes only to the recipient still owed it.
    assert_eq!(got[2].mail_from, "ops@example.org");
    assert_eq!(got[2].rcpt_tos, ["fresh@example.com"]);

    // Delivered, so nothing is left in the queue.
    let left = s.queue_files();
    assert!(left.is_empty(), "left in the queue: {left:?}");
}

/// Since format 1.6 a state file's mtime carries the message's next
/// attempt (doc/SPOOL.md, "Due times"): a pass that is not forced passes
/// a message by without reading its state when that mtime is still to
/// come, and reads every other state file, so that one written by 1.5 or
/// earlier (its mtime the time of writing) is decided by its `next` line
/// as before. An mtime further than any wait (set by hand) is read too.
#[test]
fn a_pass_takes_what_is_due_by_the_mtime_of_its_state_or_by_its_next_line() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let sink = Smtp::sink(&[]);
    let s = Spool::new(
        "due-times",
        &Config::submission()
            .set("smarthost", sink.addr())
            .set("connect_timeout", "3s"),
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    const DAY: u64 = 86_400;
    // (recipient, the `next` line, the state file's mtime: None leaves
    // the time of writing, as 1.5 did), and whether the pass takes it.
    let cases = [
        (
            "waits-by-mtime@example.com",
            now + 3600,
            Some(now + 3600),
            false,
        ),
        ("waits-by-next-1.5@example.com", now + 3600, None, false),
        ("due-by-next-1.5@example.com", now - 60, None, true),
        (
            "due-written-long-ago@example.com",
            now - 60,
            Some(now - DAY),
            true,
        ),
        (
            "due-mtime-past-any-wait@example.com",
            now - 60,
            Some(now + 400 * DAY),
            true,
        ),
    ];
    let mut ids = Vec::new();
    for (rcpt, next, mtime, _) in cases {
        let q = s.submit_one(&[rcpt], b"Subject: due times\n\nbody\n");
        let path = s.queue_dir().join(format!("{}.state", q.id));
        let state = format!(
            "SPOOLMAIL-STATE 1\nattempts 1\nnext {next}\nrcpt 0 deferred 451 4.3.0 later\n"
        );
        fs::write(&path, state).unwrap();
        if let Some(t) = mtime {
            let at = UNIX_EPOCH + Duration::from_secs(t);
            let file = fs::File::options().write(true).open(&path).unwrap();
            file.set_times(fs::FileTimes::new().set_modified(at))
                .unwrap();
        }
        ids.push(q.id);
    }

    s.pass(&[]);

    let mut got: Vec<String> = sink
        .messages()
        .iter()
        .flat_map(|m| m.rcpt_tos.clone())
        .collect();
    got.sort();
    let mut due: Vec<&str> = cases.iter().filter(|c| c.3).map(|c| c.0).collect();
    due.sort();
    assert_eq!(got, due);
    let mut left = s.queue_ids();
    left.sort();
    let mut waiting = vec![ids[0].clone(), ids[1].clone()];
    waiting.sort();
    assert_eq!(left, waiting, "the waiting ones stay, untouched");
    let mailq = s.mailq();
    assert!(mailq.contains("waits-by-mtime@example.com"), "{mailq}");
    assert!(mailq.contains("(451 4.3.0 later)"), "{mailq}");

    // A forced pass reads every state: the one waiting by its mtime goes.
    s.run_ok(&[&format!("-qI{}", ids[0])], b"");
    let got = sink.wait_for_messages(4, Duration::from_secs(20));
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(s.queue_ids(), [ids[1].clone()]);
}

/// What a pass writes: the state of a deferred message carries its next
/// attempt as its mtime, so the next pass, not forced, leaves it unread
/// until then; a state that owes nothing more does not.
#[test]
fn a_deferring_pass_sets_the_state_files_mtime_to_its_next_attempt() {
    use std::os::unix::fs::MetadataExt;
    let server = Smtp::faulty("tempfail-always", &[]);
    let s = Spool::new(
        "due-mtime",
        &Config::delivery()
            .without("retry_schedule")
            .set("smarthost", server.addr()),
    );
    let q = s.submit_one(&["bob@example.com"], b"Subject: later\n\nbody\n");
    s.pass(&[]);
    let state = s.state(&q.id);
    let next: i64 = state
        .lines()
        .find_map(|l| l.strip_prefix("next "))
        .unwrap_or_else(|| panic!("{state}"))
        .parse()
        .unwrap();
    let path = s.queue_dir().join(format!("{}.state", q.id));
    assert_eq!(fs::metadata(&path).unwrap().mtime(), next, "{state}");
    assert!(state.contains("rcpt 0 deferred"), "{state}");
    // Due later: the next pass passes it by, and leaves it as it is.
    s.pass(&[]);
    assert_eq!(s.state(&q.id), state);
}
