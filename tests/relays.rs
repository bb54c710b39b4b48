//! Relays chosen by the envelope sender (`sender_relay_map`), with their
//! own limits, against real servers on loopback: messages routed by
//! sender to the right server with the right login, one transaction per
//! message at its relay, `max_messages_per_connection` and
//! `max_messages_per_minute` measured at the servers, and the rest a
//! relay gets after a 421.

mod harness;

use harness::{Config, Smtp, Spool};
use std::collections::BTreeMap;
use std::time::Duration;

/// A spool whose config adds `config` to the delivery config, and whose
/// `sender_relay_map` (ROOT/relays) holds `map`.
fn spool(config: &str, map: &str) -> Spool {
    let s = Spool::new("relays", &Config::delivery());
    let path = s.write_file("relays", map);
    s.configure(
        &Config::delivery().lines(&format!("sender_relay_map = {}\n{config}", path.display())),
    );
    s
}

/// Rewrites the map.
fn remap(s: &Spool, map: &str) {
    s.write_file("relays", map);
}

/// Queues a message from `sender` to `rcpts` with this subject.
fn submit(s: &Spool, sender: &str, rcpts: &[&str], subject: &str) {
    let mut args = vec!["-f", sender];
    args.extend(rcpts);
    let text = format!("Subject: {subject}\n\nhello\n");
    s.run_ok(&args, text.as_bytes());
}

/// Asserts that `server` received messages `m00` to `m{n-1}`, each once.
fn assert_each_once(server: &Smtp, n: usize) {
    let mut subjects: Vec<String> = server.messages().iter().map(subject).collect();
    subjects.sort();
    let want: Vec<String> = (0..n).map(|i| format!("m{i:02}")).collect();
    assert_eq!(subjects, want, "each exactly once");
}

/// The Subject of a received message.
fn subject(m: &harness::Message) -> String {
    let text = m.text();
    text.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("")
        .to_string()
}

/// A sink that takes AUTH as `user` in plain text (the spool allows it
/// with `auth_allow_plaintext`: these tests are about routing, not TLS).
fn auth_sink(user: &str, password: &str) -> Smtp {
    Smtp::sink(&[&format!("--auth={user}:{password}"), "--auth-plaintext"])
}

#[test]
fn messages_go_through_the_relay_their_sender_chooses() {
    let (shop, billing, smarthost) = (
        auth_sink("shop", "shop-secret"),
        auth_sink("billing", "billing-secret"),
        Smtp::sink(&[]),
    );
    let s = Spool::new("relays", &Config::delivery());
    let shop_pw = s.secret("shop.pw", "shop-secret\n");
    let billing_pw = s.secret("billing.pw", "billing-secret\n");
    let map = format!(
        "# who goes where\n\
         @Shop.example {} user=shop password_file={}\n\
         billing@shop.example {} user=billing password_file={}\n",
        shop.addr(),
        shop_pw.display(),
        billing.addr(),
        billing_pw.display()
    );
    let path = s.write_file("relays", &map);
    s.configure(&Config::delivery().lines(&format!(
        "sender_relay_map = {}\nsmarthost = {}\nauth_allow_plaintext = yes\n",
        path.display(),
        smarthost.addr()
    )));
    submit(&s, "billing@shop.example", &["a@example.net"], "exact");
    submit(&s, "Sales@SHOP.example", &["b@example.net"], "domain");
    submit(&s, "x@other.example", &["c@example.net"], "fallback");
    // Several recipients at several domains: one transaction at the relay.
    let many = ["d@one.example", "e@two.example", "f@[127.0.0.1]"];
    submit(&s, "sales@shop.example", &many, "many");
    s.pass(&[]);
    s.assert_empty("every message delivered");
    let got = |server: &Smtp| -> Vec<(String, String, Vec<String>)> {
        let mut v: Vec<_> = (server.messages().iter())
            .map(|m| (subject(m), m.auth.clone(), m.rcpt_tos.clone()))
            .collect();
        v.sort();
        v
    };
    let rcpts = |r: &[&str]| r.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got(&billing),
        [("exact".into(), "billing".into(), rcpts(&["a@example.net"]))]
    );
    assert_eq!(
        got(&shop),
        [
            ("domain".into(), "shop".into(), rcpts(&["b@example.net"])),
            ("many".into(), "shop".into(), rcpts(&many)),
        ]
    );
    // The default smarthost has no login of its own: no relay's went there.
    assert_eq!(
        got(&smarthost),
        [("fallback".into(), "".into(), rcpts(&["c@example.net"]))]
    );
}

#[test]
fn the_map_is_read_at_each_queue_run_so_a_change_applies_to_queued_mail() {
    let relay = Smtp::sink(&[]);
    // No `*` line, and a smarthost that takes nothing: the mail waits.
    let s = spool("smarthost = 127.0.0.1:1\n", "@shop.example 127.0.0.1:1\n");
    submit(&s, "x@other.example", &["a@example.net"], "waits");
    submit(&s, "<>", &["b@example.net"], "null sender");
    s.pass(&[]);
    assert_eq!(s.queue_ids().len(), 2, "{}", s.log());
    assert_eq!(relay.message_count(), 0);
    // `*` takes every sender, the null sender of bounces included.
    remap(
        &s,
        &format!("@shop.example 127.0.0.1:1\n* {}\n", relay.addr()),
    );
    s.pass(&[]);
    s.assert_empty("delivered through the new line");
    let mut senders: Vec<String> = relay
        .messages()
        .iter()
        .map(|m| m.mail_from.clone())
        .collect();
    senders.sort();
    assert_eq!(senders, ["", "x@other.example"]);
}

#[test]
fn a_relays_login_goes_only_over_verified_tls() {
    let shop = auth_sink("shop", "shop-secret");
    let s = Spool::new("relays", &Config::delivery());
    let pw = s.secret("shop.pw", "shop-secret\n");
    let map = format!(
        "* {} user=shop password_file={}\n",
        shop.addr(),
        pw.display()
    );
    let path = s.write_file("relays", &map);
    s.configure(&Config::delivery().set("sender_relay_map", path.display()));
    submit(&s, "x@shop.example", &["a@example.net"], "plain");
    s.pass(&[]);
    assert_eq!(shop.message_count(), 0);
    s.assert_deferred("not sending credentials to");
    assert!(
        s.mailq().contains("local configuration problem"),
        "{}",
        s.mailq()
    );
}

#[test]
fn max_messages_per_connection_is_kept_at_the_server() {
    let (relay, smarthost) = (Smtp::sink(&[]), Smtp::sink(&[]));
    let s = spool(
        &format!(
            "smarthost = {}\nmax_messages_per_connection = 3\nmax_per_destination = 1\n",
            smarthost.addr()
        ),
        &format!(
            "@shop.example {} max_messages_per_connection=2\n",
            relay.addr()
        ),
    );
    for i in 0..5 {
        submit(
            &s,
            "x@shop.example",
            &["a@example.net"],
            &format!("relay {i}"),
        );
        submit(
            &s,
            "x@other.example",
            &["a@example.net"],
            &format!("smarthost {i}"),
        );
    }
    s.pass(&[]);
    s.assert_empty("every message delivered");
    // MAIL FROMs per connection, as each server counted them.
    let per_connection = |server: &Smtp| -> Vec<usize> {
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for m in server.messages() {
            *count.entry(m.connection).or_default() += 1;
        }
        count.into_values().collect()
    };
    assert_eq!(per_connection(&relay), [2, 2, 1]);
    assert_eq!(relay.connections(), 3);
    assert_eq!(per_connection(&smarthost), [3, 2]);
    assert_eq!(smarthost.connections(), 2);
}

#[test]
fn max_messages_per_minute_spreads_messages_out() {
    let relay = Smtp::sink(&[]);
    // 40 a minute: one every 1.5 s, whatever the children.
    let s = spool(
        "",
        &format!("* {} max_messages_per_minute=40\n", relay.addr()),
    );
    for i in 0..4 {
        submit(&s, "x@shop.example", &["a@example.net"], &format!("m{i}"));
    }
    let started = std::time::Instant::now();
    s.pass(&[]);
    s.assert_empty("every message delivered");
    let mut times: Vec<f64> = relay.messages().iter().map(|m| m.received_at).collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(times.len(), 4);
    for pair in times.windows(2) {
        // Started 1.5 s apart; received within a transaction's jitter of that.
        assert!(pair[1] - pair[0] >= 1.2, "{times:?}");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(4400),
        "{times:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_421_rests_the_relay_and_the_rest_of_its_queue_goes_in_the_same_pass() {
    // The second connection is greeted with 421 4.7.0.
    let relay = Smtp::faulty("throttle-second", &[]);
    let s = spool(
        "throttle_backoff = 2s\nmax_per_destination = 1\n",
        &format!("* {} max_messages_per_connection=2\n", relay.addr()),
    );
    for i in 0..5 {
        submit(&s, "x@shop.example", &["a@example.net"], &format!("m{i}"));
    }
    s.pass(&[]);
    // Two over the first connection; the second refused (the message it
    // was for waits, counted); after the rest, the other two.
    assert_eq!(relay.message_count(), 4, "{}", s.log());
    assert_eq!(s.queue_ids().len(), 1, "{}", s.log());
    s.assert_deferred("421 4.7.0");
    let times = relay.connection_times();
    assert_eq!(times.len(), 3, "{times:?}");
    assert!(times[2] - times[1] >= 1.9, "rested: {times:?}");
    assert!(s.log().contains("throttles"), "{}", s.log());
    // The waiting message goes at the next run: each exactly once.
    s.pass(&[]);
    s.assert_empty("every message delivered");
    let mut subjects: Vec<String> = relay.messages().iter().map(subject).collect();
    subjects.sort();
    assert_eq!(subjects, ["m0", "m1", "m2", "m3", "m4"]);
}

#[test]
fn a_bad_map_line_stops_queue_runs_with_one_line() {
    let s = spool(
        "",
        "# relays\n* relay.example\n@shop.example relay.example tls=ssl\n",
    );
    submit(&s, "x@shop.example", &["a@example.net"], "kept");
    let out = s.run(&["-q"], b"");
    let line = out.assert_fails_one_line(&[78]);
    let map = s.root().join("relays");
    assert_eq!(
        line,
        format!(
            "spoolmail: {}:3: tls: `ssl` must be starttls or implicit",
            map.display()
        )
    );
    assert_eq!(s.queue_ids().len(), 1, "the message waits");
}

#[test]
fn the_pace_holds_across_queue_runs_at_the_same_time() {
    let relay = Smtp::sink(&[]);
    // 40 a minute: one every 1.5 s, for every run of the spool together.
    let s = spool(
        "",
        &format!("* {} max_messages_per_minute=40\n", relay.addr()),
    );
    // Two runs at once, each over its own two messages (-qS: by sender).
    for i in 0..2 {
        submit(
            &s,
            "alpha@shop.example",
            &["a@example.net"],
            &format!("a{i}"),
        );
        submit(
            &s,
            "beta@shop.example",
            &["a@example.net"],
            &format!("b{i}"),
        );
    }
    let mut cmd = s.cmd(&["-qS", "alpha@"]);
    cmd.stdout(std::process::Stdio::null());
    let other = harness::spawn(&mut cmd);
    s.run_ok(&["-qS", "beta@"], b"");
    harness::wait_output(other, Duration::from_secs(30)).assert_ok();
    s.assert_empty("every message delivered");
    let mut times: Vec<f64> = relay.messages().iter().map(|m| m.received_at).collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(times.len(), 4, "each message once");
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= 1.2, "{times:?}");
    }
    // The runs share one pace file in slots/.
    let paces: Vec<String> = harness::list_dir(&s.spool.join("slots"))
        .into_iter()
        .filter(|n| n.starts_with("pace."))
        .collect();
    assert_eq!(paces.len(), 1, "{paces:?}");
}

#[test]
fn a_smarthost_that_says_421_at_the_greeting_fails_over_to_the_next_without_a_rest() {
    let (first, second) = (Smtp::faulty("greet-421", &[]), Smtp::sink(&[]));
    let s = Spool::new(
        "relays",
        &Config::delivery()
            .set("smarthost", format!("{} {}", first.addr(), second.addr()))
            .set("throttle_backoff", "30s"),
    );
    submit(&s, "x@shop.example", &["a@example.net"], "failover");
    let started = std::time::Instant::now();
    s.pass(&[]);
    s.assert_empty("delivered by the second smarthost");
    assert_eq!(second.message_count(), 1);
    assert!(started.elapsed() < Duration::from_secs(20), "no rest");
    assert!(!s.log().contains("throttles"), "{}", s.log());
}

#[test]
fn a_relays_password_file_others_can_read_stops_queue_runs() {
    let s = Spool::new("relays", &Config::delivery());
    let pw = s.write_file("shop.pw", "secret\n");
    harness::set_mode(&pw, 0o644);
    let map = format!("* relay.example user=shop password_file={}\n", pw.display());
    let path = s.write_file("relays", &map);
    s.configure(&Config::delivery().set("sender_relay_map", path.display()));
    let out = s.run(&["-q"], b"");
    let line = out.assert_fails_one_line(&[78]);
    assert!(
        line.starts_with(&format!("spoolmail: {}:1: password_file:", path.display())),
        "{line}"
    );
    assert!(line.contains("others can read it"), "{line}");
}

#[test]
fn a_4_7_x_reply_in_a_transaction_rests_the_relay_too() {
    // The third MAIL gets 450 4.7.1 rate limit exceeded.
    let relay = Smtp::faulty("rate-limit-third", &[]);
    let s = spool(
        "throttle_backoff = 2s\nmax_per_destination = 1\n",
        &format!("* {}\n", relay.addr()),
    );
    for i in 0..5 {
        submit(&s, "x@shop.example", &["a@example.net"], &format!("m{i}"));
    }
    s.pass(&[]);
    assert_eq!(relay.message_count(), 4, "{}", s.log());
    s.assert_deferred("450 4.7.1 rate limit exceeded");
    // The connection that got it was closed; the next came after the rest.
    let times = relay.connection_times();
    assert_eq!(times.len(), 2, "{times:?}");
    assert!(times[1] - times[0] >= 1.9, "rested: {times:?}");
    s.pass(&[]);
    s.assert_empty("every message delivered");
    let mut subjects: Vec<String> = relay.messages().iter().map(subject).collect();
    subjects.sort();
    assert_eq!(subjects, ["m0", "m1", "m2", "m3", "m4"]);
}

#[test]
fn a_relay_without_a_login_gets_none_of_the_smarthosts() {
    // The smarthost takes a login; the relay offers no AUTH at all, so
    // any credentials sent its way would stop the delivery.
    let (smarthost, relay) = (auth_sink("alice", "alice-secret"), Smtp::sink(&[]));
    let s = Spool::new("relays", &Config::delivery());
    let pw = s.secret("alice.pw", "alice-secret\n");
    let path = s.write_file("relays", &format!("@shop.example {}\n", relay.addr()));
    s.configure(&Config::delivery().lines(&format!(
        "sender_relay_map = {}\nsmarthost = {}\nauth_user = alice\nauth_password_file = {}\n\
         auth_allow_plaintext = yes\n",
        path.display(),
        smarthost.addr(),
        pw.display()
    )));
    submit(&s, "x@shop.example", &["a@example.net"], "relay");
    submit(&s, "x@other.example", &["a@example.net"], "smarthost");
    s.pass(&[]);
    s.assert_empty("every message delivered");
    let got = |server: &Smtp| -> Vec<(String, String)> {
        (server.messages().iter())
            .map(|m| (subject(m), m.auth.clone()))
            .collect()
    };
    assert_eq!(got(&relay), [("relay".into(), "".into())]);
    assert_eq!(got(&smarthost), [("smarthost".into(), "alice".into())]);
}

#[test]
fn a_burst_of_421s_at_the_greeting_is_one_rest_and_every_message_goes_once() {
    // The relay takes two connections at once and greets a third with
    // 421 4.7.0, as providers limiting concurrent connections do; the pass
    // opens up to max_per_destination (10) at first.
    let relay = Smtp::faulty("two-at-once", &[]);
    let s = Spool::new(
        "relays",
        &Config::delivery()
            .set("smarthost", relay.addr())
            .set("throttle_backoff", "1s"),
    );
    for i in 0..30 {
        submit(&s, "a@example.org", &["b@example.net"], &format!("m{i:02}"));
    }
    let started = std::time::Instant::now();
    s.pass(&[]);
    let took = started.elapsed();
    let log = s.log();
    // One rest for the burst; the two connections kept take the rest of
    // the queue in the same pass. (How long the pass takes says nothing
    // more: the kept connections may empty the queue before the rest is
    // over, and then nothing waits for it.)
    let rests = log.lines().filter(|l| l.contains("throttles")).count();
    assert_eq!(rests, 1, "{log}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    // The messages whose connections were refused wait, each counted
    // once with its own 421; the others all went in the pass.
    let waiting = s.queue_ids();
    assert!(waiting.len() <= 9, "{log}");
    assert_eq!(relay.message_count() + waiting.len(), 30, "{log}");
    for id in &waiting {
        let state = s.state(id);
        assert!(state.contains("attempts 1"), "{state}");
        assert!(state.contains("421 4.7.0"), "{state}");
    }
    // A later run opens a connection for each message again (a new pass
    // knows nothing of the last one's concurrency): with the relay's
    // limit set, as its admin would after reading the log, the rest goes.
    s.configure(
        &Config::delivery()
            .set("smarthost", relay.addr())
            .set("max_per_destination", 2),
    );
    s.pass(&[]);
    s.assert_empty("every message delivered");
    assert_each_once(&relay, 30);
}

/// A map line's `max_connections`: the relay that greets a third
/// connection at once with 421 gets two at most, in every run, so no
/// message meets a refusal and none waits (the test above, without it,
/// has nine wait for the next run).
#[test]
fn max_connections_keeps_a_relay_under_its_concurrency_from_the_first_run() {
    let relay = Smtp::faulty("two-at-once", &[]);
    let s = spool(
        "throttle_backoff = 1s\n",
        &format!("@shop.example {} max_connections=2\n", relay.addr()),
    );
    for i in 0..30 {
        submit(
            &s,
            "a@shop.example",
            &["b@example.net"],
            &format!("m{i:02}"),
        );
    }
    s.pass(&[]);
    let log = s.log();
    s.assert_empty("every message delivered in the first run");
    assert!(!log.contains("throttles"), "no rest: {log}");
    // (Not the bare "421": a queue id may hold those digits.)
    assert!(!log.contains("status=deferred"), "no refusal: {log}");
    assert!(!log.contains(" 421 4."), "no refusal: {log}");
    assert_each_once(&relay, 30);
}

/// `-bv` routes as a queue run would: by the sender a submission with
/// the same `-f` would queue, through the map.
#[test]
fn bv_shows_the_relay_the_sender_chooses() {
    let (relay, smarthost) = (Smtp::sink(&[]), Smtp::sink(&[]));
    let s = spool(
        &format!("smarthost = {}\n", smarthost.addr()),
        &format!("@shop.example {}\n", relay.addr()),
    );
    let bv = |sender: &str| {
        let out = s.run(&["-bv", "-f", sender, "b@example.net"], b"");
        out.assert_ok();
        out.stdout
    };
    let line = |host: &str| {
        format!("b@example.net... deliverable: mailer esmtp, host {host}, user b@example.net\n")
    };
    assert_eq!(bv("x@shop.example"), line("[relay:@shop.example]"));
    assert_eq!(bv("x@other.example"), line("[smarthost]"));
    assert!(s.queue_ids().is_empty(), "-bv queues nothing");
}

#[test]
fn a_4_7_x_to_one_recipient_defers_that_message_and_rests_no_one() {
    // The relay greylists RCPT to grey*: 450 4.7.1, one recipient's policy.
    let relay = Smtp::faulty("greylist-rcpt", &[]);
    let s = Spool::new(
        "relays",
        &Config::delivery()
            .set("smarthost", relay.addr())
            .set("throttle_backoff", "15s"),
    );
    for i in 0..10 {
        submit(
            &s,
            "mallory@example.org",
            &["grey@example.net"],
            &format!("m{i}"),
        );
    }
    submit(&s, "alice@example.org", &["bob@example.net"], "alice");
    let started = std::time::Instant::now();
    s.pass(&[]);
    let took = started.elapsed();
    let log = s.log();
    assert!(!log.contains("throttles"), "{log}");
    assert!(took < Duration::from_secs(10), "no rest: {took:?}\n{log}");
    let got: Vec<String> = relay.messages().iter().map(subject).collect();
    assert_eq!(got, ["alice"], "{log}");
    // Mallory's own messages wait, each with its own reply.
    let ids = s.queue_ids();
    assert_eq!(ids.len(), 10, "{log}");
    for id in &ids {
        let state = s.state(id);
        assert!(state.contains("attempts 1"), "{state}");
        assert!(state.contains("450 4.7.1 <grey@example.net>"), "{state}");
    }
    // A run of alice's own mail afterwards waits for no rest either.
    submit(&s, "alice@example.org", &["bob@example.net"], "alice2");
    let started = std::time::Instant::now();
    s.pass(&["-qSalice@"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(relay.message_count(), 2);
}

#[test]
fn when_a_relays_rests_run_out_its_untried_mail_waits_uncounted() {
    // Every connection is greeted with 421: one message at a time, each
    // refused, rests of 1, 2, 4 and 8 s; the fifth refusal ends the pass's
    // patience with the relay.
    let relay = Smtp::faulty("greet-421", &[]);
    let s = Spool::new(
        "relays",
        &Config::delivery()
            .set("smarthost", relay.addr())
            .set("throttle_backoff", "1s")
            .set("max_per_destination", 1),
    );
    for i in 0..5 {
        submit(
            &s,
            "mallory@example.org",
            &["a@example.net"],
            &format!("m{i}"),
        );
    }
    submit(&s, "alice@example.org", &["bob@example.net"], "alice");
    submit(&s, "alice@example.org", &["carol@example.net"], "alice2");
    s.pass(&[]);
    let log = s.log();
    assert!(log.contains("throttled 5 times"), "{log}");
    assert_eq!(relay.connections(), 5, "{log}");
    let (mut tried, mut untried) = (0, 0);
    for id in s.queue_ids() {
        let state = s.state(id.as_str());
        if state.contains("attempts 1") {
            assert!(state.contains("421"), "{state}");
            tried += 1;
        } else {
            // Never tried: no attempt counted, and no other message's reply.
            assert!(!state.contains("attempts"), "{state}");
            assert!(!state.contains("421"), "{state}");
            untried += 1;
        }
    }
    assert_eq!((tried, untried), (5, 2), "{log}");
    let mailq = s.mailq();
    assert!(!mailq.contains("a@example.net>: "), "{mailq}");
}

/// The pace files in the spool's slots/.
fn pace_files(s: &Spool) -> Vec<String> {
    harness::list_dir(&s.spool.join("slots"))
        .into_iter()
        .filter(|n| n.starts_with("pace."))
        .collect()
}

#[test]
fn a_relay_without_a_rate_limit_or_a_rest_has_no_pace_file() {
    let sink = Smtp::sink(&[]);
    let s = Spool::new("relays", &Config::delivery().set("smarthost", sink.addr()));
    for i in 0..10 {
        submit(&s, "a@example.org", &["b@example.net"], &format!("m{i}"));
    }
    s.pass(&[]);
    s.assert_empty("every message delivered");
    assert_eq!(pace_files(&s), Vec::<String>::new());
}

#[test]
fn a_held_pace_lock_costs_a_pass_one_wait_not_one_a_message() {
    let sink = Smtp::sink(&[]);
    let s = Spool::new(
        "relays",
        &Config::delivery()
            .set("smarthost", sink.addr())
            .set("max_messages_per_minute", 6000),
    );
    let n = 40;
    for i in 0..n {
        submit(&s, "a@example.org", &["b@example.net"], &format!("free{i}"));
    }
    let started = std::time::Instant::now();
    s.pass(&[]);
    let free = started.elapsed();
    let pace = pace_files(&s);
    assert_eq!(pace.len(), 1, "{pace:?}");
    // A holder that does not let go: a user's pass stopped inside it.
    let path = s.spool.join("slots").join(&pace[0]);
    let mut holder = std::process::Command::new("flock")
        .arg("-x")
        .arg(&path)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let locked = std::time::Instant::now();
    while std::fs::OpenOptions::new()
        .read(true)
        .open(&path)
        .map(|f| flock_free(&f))
        .unwrap_or(true)
    {
        assert!(
            locked.elapsed() < Duration::from_secs(10),
            "flock(1) took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in 0..n {
        submit(&s, "a@example.org", &["b@example.net"], &format!("held{i}"));
    }
    let started = std::time::Instant::now();
    s.pass(&[]);
    let took = started.elapsed();
    holder.kill().unwrap();
    let _ = holder.wait();
    s.assert_empty("every message delivered");
    let log = s.log();
    let notes = log.matches("cannot use its pace file").count();
    assert_eq!(notes, 1, "{log}");
    // One wait for the lock (0.1 s, the one note above), not one a
    // message (4 s); the bound is loose, for a loaded machine.
    let bound = free * 2 + Duration::from_secs(2);
    assert!(took < bound, "{took:?}, {free:?} without a holder");
}

/// Whether no one holds `file`'s flock (tried and let go at once).
fn flock_free(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor `file` keeps open for the call.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if taken {
        // SAFETY: as above.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    }
    taken
}

/// The spool's group in the `users=` test (the setgid binary's, in a
/// real install).
const SPOOL_GROUP: u32 = 4343;

/// The binary as `uid` (its own primary group, supplementary group
/// `SPOOL_GROUP`), as a local user runs it.
fn as_user(s: &Spool, uid: u32, args: &[&str]) -> std::process::Command {
    let mut cmd = s.cmd(args);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    harness::as_local_user(&mut cmd, uid, SPOOL_GROUP);
    cmd
}

#[test]
fn a_line_with_users_carries_only_those_users_mail() {
    if !harness::is_root() {
        eprintln!("skipped: running as other users needs root");
        return;
    }
    // uid 1 and 2 have login names (daemon and bin on most systems).
    let (allowed, other) = (1, 2);
    let name = harness::user_name(allowed);
    let (shop, default) = (Smtp::sink(&[]), Smtp::sink(&[]));
    let s = spool(
        "",
        &format!(
            "billing@shop.example {} users={name},nosuchuser\n* {}\n",
            shop.addr(),
            default.addr()
        ),
    );
    s.share_queue_with_group(SPOOL_GROUP);
    for (uid, subject) in [(allowed, "allowed"), (other, "other")] {
        let mut cmd = as_user(&s, uid, &["-f", "billing@shop.example", "a@example.net"]);
        cmd.stdin(std::process::Stdio::piped());
        let mut child = harness::spawn(&mut cmd);
        let text = format!("Subject: {subject}\n\nhello\n");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
        let status = harness::wait_timeout(&mut child, Duration::from_secs(30)).unwrap();
        assert!(status.success(), "{uid}: {status:?}\n{}", s.log());
    }
    submit(&s, "billing@shop.example", &["a@example.net"], "root");
    s.pass(&[]);
    s.assert_empty("every message delivered");
    let mut got: Vec<String> = shop.messages().iter().map(subject).collect();
    got.sort();
    assert_eq!(got, ["allowed", "root"], "{}", s.log());
    let got: Vec<String> = default.messages().iter().map(subject).collect();
    assert_eq!(got, ["other"], "{}", s.log());
}
