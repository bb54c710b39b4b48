//! `sendmail -bs`: SMTP sessions over in-memory streams. A generated
//! session (a client that dot-stuffs as RFC 5321 says, bodies with bare CR
//! and LF, smuggling attempts and lines around the read piece size) must
//! have every message queued whole and nothing more; a raw session must get
//! well-formed replies, and as many messages queued as it was told.

use crate::common::{Bytes, config, normalized, origin, take_queued};
use crate::intake::assert_stored_whole;
use spoolmail::smtpd::{Peer, serve};

pub fn check(data: &[u8]) {
    let mut b = Bytes(data);
    if b.flag() {
        raw(b.rest());
    } else {
        generated(&mut b);
    }
}

fn run(session: &[u8]) -> (Vec<u8>, usize) {
    let peer = Peer {
        trusted: false,
        user: "alice".into(),
    };
    let mut out = Vec::new();
    let mut accepted = 0;
    // An Err is the client going away mid-DATA: nothing of it may be queued.
    let _ = serve(&config(), &origin(), &peer, session, &mut out, |_| {
        accepted += 1
    });
    (out, accepted)
}

/// Each reply line is `NNN-text` or `NNN text`, CRLF-ended; returns the ids
/// of the messages the session said were queued.
fn queued_ids(out: &[u8]) -> Vec<String> {
    assert!(out.is_empty() || out.ends_with(b"\r\n"), "unended reply");
    let mut ids = Vec::new();
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let line = std::str::from_utf8(line).expect("replies are UTF-8");
        let line = line.strip_suffix('\r').expect("reply line ends in CRLF");
        let b = line.as_bytes();
        assert!(
            b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && matches!(b[3], b' ' | b'-'),
            "malformed reply line {line:?}"
        );
        assert!(
            !line.chars().any(char::is_control),
            "control in reply {line:?}"
        );
        if let Some(id) = line.strip_prefix("250 2.0.0 Ok: queued as ") {
            ids.push(id.to_string());
        }
    }
    ids
}

fn raw(session: &[u8]) {
    let (out, accepted) = run(session);
    let ids = queued_ids(&out);
    let queued = take_queued();
    assert_eq!(
        ids.len(),
        accepted,
        "queued replies and accepted messages differ"
    );
    assert_eq!(queued.len(), accepted, "spool and session disagree");
    for (_, content) in &queued {
        assert!(!content.contains(&b'\r'), "CR stored");
        assert!(content.is_empty() || content.ends_with(b"\n"));
        crate::common::assert_clean_header(crate::common::split_message(content).0);
    }
}

/// A body from the fuzzer's bytes, where 0xFE H L C stands for the byte C
/// repeated 2 * (H * 256 + L) times: lines long enough to straddle the
/// server's 64 KiB read pieces at any offset.
fn body(spec: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = Bytes(spec);
    while !b.is_empty() {
        match b.byte() {
            0xfe => {
                let n = 2 * usize::from(b.u16());
                let c = b.byte();
                out.extend(std::iter::repeat_n(c, n));
            }
            c => out.push(c),
        }
    }
    out
}

/// RFC 5321 transparency: a dot is doubled at the start of every line,
/// lines being what CRLF ends (a bare CR or LF ends none).
fn stuffed(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut line_start = true;
    for (i, &c) in data.iter().enumerate() {
        if line_start && c == b'.' {
            out.push(b'.');
        }
        out.push(c);
        line_start = c == b'\n' && i > 0 && data[i - 1] == b'\r';
    }
    out
}

fn generated(b: &mut Bytes) {
    let mut session = b"EHLO client.example\r\n".to_vec();
    let mut wanted = Vec::new();
    while !b.is_empty() && wanted.len() < 4 {
        let mut data = b"Subject: fuzz\r\n\r\n".to_vec();
        data.extend(body(b.until(0xff)));
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        session.extend_from_slice(
            b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n",
        );
        session.extend(stuffed(&data));
        session.extend_from_slice(b".\r\n");
        wanted.push(normalized(&data, true));
    }
    session.extend_from_slice(b"QUIT\r\n");
    let (out, accepted) = run(&session);
    let ids = queued_ids(&out);
    let mut queued = take_queued();
    assert_eq!(
        accepted,
        wanted.len(),
        "replies: {}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(ids.len(), wanted.len());
    assert_eq!(queued.len(), wanted.len());
    assert!(out.ends_with(b"221 2.0.0 Bye\r\n"), "the session lost step");
    for (id, want) in ids.iter().zip(&wanted) {
        let i = queued
            .iter()
            .position(|(e, _)| e.id.to_string() == *id)
            .expect("queued id in spool");
        let (_, content) = queued.swap_remove(i);
        assert_stored_whole(&content, want);
    }
}
