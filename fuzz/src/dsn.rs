//! Delivery status notifications built from hostile reply text: the reply
//! goes the way delivery takes it (`ReplyReader`, `Outcome::from_final`, the
//! one-line text `record` keeps) into `bounce::queue`, and the stored
//! bounce's header and its delivery-status fields stay one field a line,
//! with no control or bidi character, no reply text longer than kept, one
//! Final-Recipient per failure, and 8-bit content declared 8BITMIME.

use crate::common::{Bytes, config, take_queued, text};
use spoolmail::bounce::{self, Failure, Mta};
use spoolmail::limits::REPLY_TEXT_KEPT;
use spoolmail::mime::one_line;
use spoolmail::model::{Address, BodyType, Outcome, QueueId, Ret};
use spoolmail::smtp::protocol::ReplyReader;
use spoolmail::spool::{Envelope, Recipient, Spool};

const ORIGINAL: &[u8] = b"Subject: original\n\nthe body\n";

pub fn check(data: &[u8]) {
    let mut b = Bytes(data);
    let flags = b.byte();
    let mut failures = Vec::new();
    while !b.is_empty() && failures.len() < 3 {
        let k = failures.len();
        failures.push(failure(k, b.until(0xff), flags));
    }
    if failures.is_empty() {
        return;
    }
    let original = Envelope {
        id: QueueId::new(1_795_305_600, 123_456, 0xabc),
        arrival: 1_795_305_600,
        uid: 1000,
        sender: "alice@example.org".into(),
        recipients: failures
            .iter()
            .map(|f| Recipient {
                address: f.address.clone(),
                orcpt: f.orcpt.clone(),
            })
            .collect(),
        ret: (flags & 4 != 0).then_some(Ret::Full),
        envid: Some("ENV1".into()),
        notify: None,
        body: BodyType::SevenBit,
        smtputf8: false,
        notice: false,
    };
    let spool = Spool::new(&config().spool_dir);
    let mta = Mta {
        host: "host.example.org",
        domain: "example.org",
        from: (flags & 16 != 0).then_some("relay@example.org"),
    };
    let to = "alice@example.org";
    let len = ORIGINAL.len() as u64;
    // A bounce, or (flag 8) a delay notice: the same fields, other words.
    let report = match flags & 8 {
        0 => bounce::Report::Failed,
        _ => bounce::Report::Delayed {
            retry_until: 1_795_737_600,
        },
    };
    let notice = bounce::Notice {
        report,
        failures: &failures,
        to,
    };
    bounce::queue(&spool, &mta, &original, (&mut &ORIGINAL[..], len), &notice)
        .expect("a bounce is queued");
    let mut queued = take_queued();
    assert_eq!(queued.len(), 1);
    let (env, content) = queued.pop().expect("one bounce");
    let content = text(&content);
    let (header, _) = content.split_once("\n\n").expect("a bounce has a header");
    for line in header.lines() {
        assert_field_line(line, true);
    }
    // The parts by their boundary, as a mail reader splits them (reply text
    // may well say `Content-Type: message/delivery-status` itself).
    let boundary = header
        .split_once("boundary=\"")
        .and_then(|(_, b)| b.split_once('"'))
        .expect("a multipart boundary")
        .0;
    let status_part = content
        .split(&format!("\n--{boundary}\n"))
        .find_map(|part| part.strip_prefix("Content-Type: message/delivery-status\n\n"))
        .expect("a delivery-status part");
    let status_part = status_part
        .split_once(&format!("\n--{boundary}"))
        .map_or(status_part, |p| p.0);
    for line in status_part.lines().filter(|l| !l.is_empty()) {
        assert_field_line(line, false);
    }
    let finals = status_part
        .lines()
        .filter(|l| l.starts_with("Final-Recipient:"))
        .count();
    assert_eq!(finals, failures.len(), "recipients in the report");
    if content.bytes().any(|c| c >= 0x80) {
        assert_eq!(
            env.body,
            BodyType::EightBitMime,
            "8-bit bounce stored as 7bit"
        );
    }
}

/// A failure whose reason is a server's reply (the bytes, read as lines)
/// or, when they are no reply, our own error text.
fn failure(k: usize, bytes: &[u8], flags: u8) -> Failure {
    let mut reader = ReplyReader::default();
    // The client's own reason when the bytes are no reply: the reader's
    // error (which quotes the line, shortened), or the connection's end.
    let mut outcome = Outcome::failed("connection closed during RCPT", None);
    for line in bytes.split_inclusive(|c| *c == b'\n') {
        match reader.push(line) {
            Ok(Some(raw)) => {
                outcome = Outcome::from_final(&raw.reply(), "RCPT");
                break;
            }
            Ok(None) => {}
            Err(e) => {
                outcome = Outcome::failed(format!("protocol error: {e}"), None);
                break;
            }
        }
    }
    Failure {
        address: Address::accepted(&format!("rcpt{k}@example.com")),
        orcpt: (flags & 1 != 0).then(|| format!("rcpt{k}")),
        // What record.rs keeps of an outcome.
        reason: one_line(&outcome.to_string()),
        status: outcome.reply().and_then(|r| r.enhanced),
        remote: outcome
            .reply()
            .map(|_| "mx.example.com[192.0.2.1]:25".to_string()),
        expired: flags & 2 != 0,
    }
}

/// `Name: value` (or, in a header, a continuation), without control
/// characters but a folding tab.
fn assert_field_line(line: &str, header: bool) {
    assert!(
        !line
            .chars()
            .any(|c| c.is_control() && c != '\t' || crate::common::is_spoofing(c)),
        "control or bidi character in {line:?}"
    );
    // A server's text is kept to REPLY_TEXT_KEPT bytes, however long it was.
    assert!(
        line.len() <= REPLY_TEXT_KEPT + 100,
        "{} bytes in one line",
        line.len()
    );
    let continuation = header && line.starts_with([' ', '\t']);
    let field = line
        .split_once(':')
        .is_some_and(|(name, _)| !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b)));
    assert!(continuation || field, "not a field line: {line:?}");
}
