//! Delivery to a hostile server (tests/fixtures/faulty.py): huge and endless
//! replies, a trickle, a connection reset in the middle of DATA, reply text
//! with control, bidi and separator characters. Whatever the server does,
//! the message is still queued or bounced to its sender, never lost and
//! never delivered twice, and what the server said is kept short and shown
//! as harmless text in the state file, mailq, the log and the bounce.

mod harness;

use harness::{Config, Smtp, Spool};
use std::time::{Duration, Instant};

fn spool(label: &str, server: &Smtp, extra: &str) -> Spool {
    Spool::new(
        label,
        &Config::delivery()
            .set("smarthost", server.addr())
            .lines(extra),
    )
}

const MESSAGE: &[u8] = b"From: alice@example.org\nSubject: hostile\n\nhello\n";

/// `bad@` is refused (550), `later@` deferred (451) by the hostile scripts.
const RCPTS: &[&str] = &[
    "-f",
    "alice@example.org",
    "bad@example.net",
    "later@example.net",
];

/// Characters no server text may bring to a terminal, a log or a bounce:
/// C0 and C1 controls but the line end and tab (mailq's own layout), the bidi controls, the line and
/// paragraph separators, zero-width and other format characters.
fn unshowable(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t')
                || matches!(c,
                    '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200b}'..='\u{200f}'
                    | '\u{061c}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{ad}')
        })
        .collect()
}

/// The message is still queued for the deferred recipient (and only it),
/// the refused one is bounced to the sender exactly once.
fn queued_for_later_and_bounced_once(s: &Spool) {
    let bounces = s.bounces();
    assert_eq!(bounces.len(), 1, "one bounce: {}", s.mailq());
    let originals: Vec<_> = s
        .queued()
        .into_iter()
        .filter(|q| !q.sender().is_empty())
        .collect();
    assert_eq!(originals.len(), 1, "still queued: {}", s.mailq());
    let mailq = s.mailq();
    assert!(mailq.contains("later@example.net"), "{mailq}");
    assert!(!mailq.contains("bad@example.net\n"), "{mailq}");
}

/// Finding 4: a reply of 15 lines of 4 KB (60 KB) per recipient was kept
/// whole in the state file, mailq, the log and the bounce. A few hundred
/// bytes of it are kept, cut with a marker.
#[test]
fn a_huge_reply_is_kept_short_everywhere() {
    let server = Smtp::faulty("huge-reply", &[]);
    let s = spool("huge-reply", &server, "");
    s.run_ok(RCPTS, MESSAGE);
    let id = s.queue_ids().pop().unwrap();
    s.pass(&[]);
    queued_for_later_and_bounced_once(&s);
    let state = s.state(&id);
    assert!(state.contains("[truncated]"), "{state}");
    assert!(state.len() < 1024, "state file of {} bytes", state.len());
    let mailq = s.mailq();
    assert!(mailq.contains("[truncated]"), "{mailq}");
    assert!(mailq.len() < 2048, "mailq of {} bytes", mailq.len());
    let log = s.log();
    for line in log.lines() {
        assert!(line.len() < 1024, "log line of {} bytes", line.len());
    }
    assert!(log.contains("[truncated]"), "{log}");
    let bounce = &s.bounces()[0];
    assert!(bounce.contains("[truncated]"), "{bounce}");
    assert!(bounce.len() < 4096, "bounce of {} bytes", bounce.len());
    assert_eq!(server.message_count(), 0);
}

/// A reply without end is a protocol error: the session ends, the message
/// waits, and the client never holds more than the limit of a reply.
#[test]
fn an_endless_reply_ends_the_session_and_the_message_waits() {
    let server = Smtp::faulty("endless-reply", &[]);
    let s = spool("endless-reply", &server, "");
    s.run_ok(&["bob@example.net"], MESSAGE);
    let started = Instant::now();
    s.pass(&[]);
    assert!(started.elapsed() < Duration::from_secs(20));
    s.assert_deferred("reply too long");
    assert_eq!(server.message_count(), 0);
}

/// A server that sends its reply one byte a second: the command's time-out
/// bounds the whole reply, not each byte of it (the reply takes 200 s).
#[test]
fn a_trickled_reply_times_out_as_a_whole() {
    let server = Smtp::faulty("trickle", &[]);
    let s = spool("trickle", &server, "command_timeout = 3s\n");
    s.run_ok(&["bob@example.net"], MESSAGE);
    let started = Instant::now();
    s.pass(&[]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "the pass took {took:?}");
    s.assert_deferred("timeout after 3s");
    assert_eq!(server.message_count(), 0);
}

/// A connection reset in the middle of the data (and, on the second
/// attempt, at its end): the message stays queued, deferred, and a later
/// pass to a working server delivers it once.
#[test]
fn a_reset_in_the_middle_of_data_leaves_the_message_queued() {
    let server = Smtp::faulty("reset-mid-data", &[]);
    let s = spool("reset-mid-data", &server, "");
    let mut big = MESSAGE.to_vec();
    big.extend(
        "a line of text to make the message long\n"
            .repeat(5000)
            .bytes(),
    );
    s.run_ok(&["bob@example.net"], &big);
    s.run_ok(&["carol@example.net"], MESSAGE);
    s.pass(&[]);
    assert_eq!(s.queue_ids().len(), 2, "both still queued: {}", s.mailq());
    assert!(s.bounces().is_empty(), "{}", s.mailq());
    let log = s.log();
    assert!(log.contains("status=deferred"), "{log}");
    assert!(!log.contains("status=sent"), "{log}");
    assert_eq!(server.message_count(), 0);

    let sink = Smtp::sink(&[]);
    s.configure(&Config::delivery().set("smarthost", sink.addr()));
    s.pass(&[]);
    assert_eq!(sink.wait_for_messages(2, Duration::from_secs(10)).len(), 2);
    assert!(s.queue_ids().is_empty(), "{}", s.log());
    assert_eq!(sink.message_count(), 2, "each delivered once");
}

/// Finding 6: bidi overrides, U+2028/U+2029 and other format characters in
/// a reply reached the state file, mailq, the log and the bounce, whose
/// 8-bit report was declared 7bit. They are shown as `<U+202E>`, and the
/// bounce is 8BITMIME.
#[test]
fn reply_text_with_bidi_and_separators_is_shown_escaped() {
    let server = Smtp::faulty("weird-reply", &[]);
    let s = spool("weird-reply", &server, "");
    s.run_ok(RCPTS, MESSAGE);
    let id = s.queue_ids().pop().unwrap();
    s.pass(&[]);
    queued_for_later_and_bounced_once(&s);
    let bounce_id = s
        .queued()
        .into_iter()
        .find(|q| q.sender().is_empty())
        .unwrap()
        .id;
    let shown = [
        ("state", s.state(&id)),
        ("mailq", s.mailq()),
        ("log", s.log()),
        ("bounce", s.file(&bounce_id)),
    ];
    for (what, text) in &shown {
        assert_eq!(unshowable(text), Vec::<char>::new(), "{what}: {text}");
        assert!(text.contains("evil.exe"), "{what}: {text}");
        assert!(text.contains("<U+202E>"), "{what}: {text}");
        assert!(
            text.contains("line<U+2028>sep<U+2029>para"),
            "{what}: {text}"
        );
        assert!(text.contains("caf\u{e9} user unknown"), "{what}: {text}");
    }
    let bounce = s.message(&bounce_id);
    assert_eq!(bounce.body_type(), "8bitmime", "{}", s.file(&bounce_id));
}
