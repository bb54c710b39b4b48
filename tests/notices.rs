//! The notices a pass sends a sender: one bounce per message per pass,
//! listing every recipient that failed in it whatever its destination;
//! a notice owed by a pass that died is sent by the next; and one "delayed"
//! notice when the sender asked for it or the admin configured it.

mod harness;

use harness::{Config, Dns, DnsZone, Fixture, Smtp, Spool};
use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const MESSAGE: &[u8] = b"From: alice@mx.test\nSubject: notices\n\nbody\n";

/// Rewrites one envelope line (`key value`) of a queued message.
fn set_envelope(s: &Spool, id: &str, key: &str, value: &str) {
    let path = s.queue_dir().join(id);
    let text = fs::read_to_string(&path).unwrap();
    let (head, body) = text.split_once("\n\n").unwrap();
    let head: Vec<String> = head
        .lines()
        .map(|l| match l.split_once(' ') {
            Some((k, _)) if k == key => format!("{key} {value}"),
            _ => l.to_string(),
        })
        .collect();
    fs::write(&path, format!("{}\n\n{body}", head.join("\n"))).unwrap();
}

/// The DSNs to `<>`-sent messages: those still queued and those a sink
/// took (a pass may deliver the notices it queued).
fn notices(s: &Spool, sink: &Smtp) -> Vec<String> {
    let mut all = s.bounces();
    all.extend(
        sink.messages()
            .into_iter()
            .filter(|m| m.mail_from.is_empty())
            .map(|m| m.text()),
    );
    all
}

#[test]
fn one_bounce_per_message_for_every_recipient_that_failed_in_the_pass() {
    let sink = Smtp::sink(&[]);
    let dns = Dns::start(&DnsZone::standard(&sink.host, &sink.host));
    let s = Spool::new(
        "notices",
        &Config::delivery()
            .set("dns_server", dns.addr())
            .set("smtp_port", sink.port),
    );
    // Three destinations that refuse for good, and one that takes it.
    let q = s.submit_one(
        &[
            "-f",
            "alice@mx.test",
            "d@nullmx.test",
            "e@nxdomain.test",
            "ok@mx.test",
            "f@dangling.test",
        ],
        MESSAGE,
    );
    // Submitted by another user: the bounce is theirs too.
    set_envelope(&s, &q.id, "uid", "4242");
    s.pass(&[]);
    let got = notices(&s, &sink);
    assert_eq!(got.len(), 1, "one bounce: {}", s.log());
    for rcpt in ["d@nullmx.test", "e@nxdomain.test", "f@dangling.test"] {
        assert!(
            got[0].contains(&format!("Final-Recipient: rfc822; {rcpt}")),
            "{}",
            got[0]
        );
    }
    assert!(!got[0].contains("Final-Recipient: rfc822; ok@mx.test"));
    assert!(!s.queue_ids().contains(&q.id), "the original is done");
    for bounce in s.queued() {
        assert_eq!(bounce.get("uid"), Some("4242"), "the submitter's bounce");
    }
}

/// A pass leaves the notices another pass owes to it while that pass may
/// still be running (it last wrote the state less than
/// `transaction_deadline` and the 30 minutes' margin ago): two passes
/// would each send a bounce for one failure. Once it is gone, the next
/// pass sends them.
#[test]
fn a_notice_owed_by_a_pass_still_running_is_left_to_it() {
    let sink = Smtp::sink(&[]);
    let s = Spool::new(
        "notices",
        &Config::delivery()
            .set("smarthost", sink.addr())
            .set("transaction_deadline", "60s"),
    );
    let q = s.submit_one(
        &["-f", "alice@mx.test", "bad@example.net", "good@example.net"],
        MESSAGE,
    );
    let later = now() + 86400;
    let written_at = |at: u64| {
        fs::write(
            s.queue_dir().join(format!("{}.state", q.id)),
            format!(
                "SPOOLMAIL-STATE 1\nattempts 1\nnext {later}\n\
                 rcpt 0 failed 550 5.1.1 <bad@example.net>: user unknown\n\
                 rcpt 1 delivered 250 2.0.0 Ok\n\
                 owed 0 5.1.1 failed relay.example[192.0.2.1]:25\n\
                 pass 4242-0123456789abcdef {at}\n"
            ),
        )
        .unwrap()
    };
    written_at(now());
    s.pass(&[]);
    assert!(notices(&s, &sink).is_empty(), "{}", s.log());
    assert!(s.queue_ids().contains(&q.id), "{}", s.log());
    assert!(
        s.log().contains("left to the pass that owes it"),
        "{}",
        s.log()
    );
    // Long enough ago: that pass is gone.
    written_at(now() - 60 - 1800 - 5);
    s.pass(&[]);
    assert_eq!(notices(&s, &sink).len(), 1, "{}", s.log());
    assert!(!s.queue_ids().contains(&q.id), "then removed");
}

#[test]
fn a_notice_owed_by_a_pass_that_died_is_sent_by_the_next() {
    let sink = Smtp::sink(&[]);
    let s = Spool::new("notices", &Config::delivery().set("smarthost", sink.addr()));
    let q = s.submit_one(
        &["-f", "alice@mx.test", "bad@example.net", "good@example.net"],
        MESSAGE,
    );
    // What a pass that died after recording the failures leaves: every
    // recipient done, the notice owed, the next attempt far away.
    let later = now() + 86400;
    fs::write(
        s.queue_dir().join(format!("{}.state", q.id)),
        format!(
            "SPOOLMAIL-STATE 1\nattempts 1\nnext {later}\n\
             rcpt 0 failed 550 5.1.1 <bad@example.net>: user unknown\n\
             rcpt 1 delivered 250 2.0.0 Ok\n\
             owed 0 5.1.1 failed relay.example[192.0.2.1]:25\n"
        ),
    )
    .unwrap();
    assert!(
        s.mailq().contains("a failure notice to the sender is owed"),
        "{}",
        s.mailq()
    );
    s.pass(&[]);
    let got = notices(&s, &sink);
    assert_eq!(got.len(), 1, "{}", s.log());
    assert!(
        got[0].contains("Final-Recipient: rfc822; bad@example.net"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("Status: 5.1.1"), "{}", got[0]);
    assert!(
        got[0].contains("Remote-MTA: dns; relay.example"),
        "{}",
        got[0]
    );
    assert!(!s.queue_ids().contains(&q.id), "then removed");
    s.pass(&[]);
    assert_eq!(notices(&s, &sink).len(), 1, "once");
    assert_eq!(
        sink.messages()
            .iter()
            .filter(|m| !m.mail_from.is_empty())
            .count(),
        0,
        "the original is never sent again"
    );
}

/// A message deferred at `tempfail-always`, arrived `age` seconds ago,
/// submitted with `args`, under `delay_warning_time = key`, after two
/// passes: the delay notices queued for it.
fn delay_notices(args: &[&str], age: u64, key: Option<&str>) -> Vec<String> {
    let servers = Smtp::start_same_port(&[(Fixture::Faulty("tempfail-always"), &[])]);
    let mut config = Config::delivery().set("smarthost", servers[0].addr());
    if let Some(key) = key {
        config = config.set("delay_warning_time", key);
    }
    let s = Spool::new("notices", &config);
    let mut all = vec!["-f", "alice@mx.test"];
    all.extend(args);
    all.push("bob@example.net");
    let q = s.submit_one(&all, MESSAGE);
    set_envelope(&s, &q.id, "arrival", &(now() - age).to_string());
    s.pass(&[]);
    s.pass(&[]);
    assert!(s.queue_ids().contains(&q.id), "still deferred: {}", s.log());
    s.bounces()
}

#[test]
fn one_delay_notice_when_asked_for_or_configured() {
    let hours = |n: u64| n * 3600;
    // NOTIFY=DELAY: one, whether the key is set or not.
    let got = delay_notices(&["-N", "delay,failure"], hours(5), None);
    assert_eq!(got.len(), 1, "{got:?}");
    for needle in [
        "Subject: Delayed Mail (still being retried)",
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Final-Recipient: rfc822; bob@example.net",
        "Action: delayed",
        "Status: 4.3.0",
        "Will-Retry-Until: ",
        "Diagnostic-Code: X-Spoolmail; 451 4.3.0 try again later",
        "rcpt alice@mx.test",
    ] {
        assert!(got[0].contains(needle), "lacks {needle:?}:\n{}", got[0]);
    }
    // Without NOTIFY: only when the key is set, once it has waited that long.
    assert_eq!(delay_notices(&[], hours(5), None).len(), 0);
    assert_eq!(delay_notices(&[], hours(2), Some("1h")).len(), 1);
    assert_eq!(delay_notices(&[], hours(2), Some("3h")).len(), 0);
    // NOTIFY without DELAY: none.
    assert_eq!(
        delay_notices(&["-N", "failure"], hours(2), Some("1h")).len(),
        0
    );
    assert_eq!(
        delay_notices(&["-N", "never"], hours(2), Some("1h")).len(),
        0
    );
}

/// With `rewrite_from` (a relay that takes only its account's From), the
/// notices spoolmail sends through it have that From too; without it,
/// MAILER-DAEMON's. Their envelope sender stays null either way.
#[test]
fn a_notice_has_the_rewritten_from_when_rewrite_from_is_on() {
    for (rewrite, from) in [
        ("yes", "From: Mail Delivery System <relay@notices.test>"),
        (
            "no",
            "From: MAILER-DAEMON@notices.test (Mail Delivery System)",
        ),
    ] {
        let relay = Smtp::faulty("reject-rcpt", &[]);
        let s = Spool::new(
            "notices-from",
            &Config::delivery()
                .set("smarthost", relay.addr())
                .set("qualify_domain", "notices.test")
                .set("sender_address", "relay@notices.test")
                .set("rewrite_from", rewrite),
        );
        s.submit_one(&["bad@example.net"], MESSAGE);
        s.pass(&[]);
        let got = relay.wait_for_messages(1, std::time::Duration::from_secs(20));
        assert_eq!(got[0].mail_from, "", "a bounce");
        assert_eq!(got[0].rcpt_tos, ["relay@notices.test"], "to the sender");
        let text = got[0].text();
        assert!(
            text.contains(&format!("\r\n{from}\r\n")) || text.starts_with(from),
            "{rewrite}: {text}"
        );
        assert!(
            text.contains("Final-Recipient: rfc822; bad@example.net"),
            "{text}"
        );
    }
}
