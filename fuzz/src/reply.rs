//! SMTP replies and EHLO answers from a hostile server: the reader never
//! panics and is bounded, what it keeps has no control characters, a
//! reply's meaning follows its code (only 2xx ever says sent), its text is
//! cut to REPLY_TEXT_KEPT bytes without bidi or separator characters, and the
//! capabilities parse from any lines.

use spoolmail::limits::{REPLY_TEXT_KEPT, SMTP_MAX_REPLY_LINE, SMTP_MAX_REPLY_LINES};
use spoolmail::model::{EnhancedCode, Outcome, Verdict};
use spoolmail::smtp::protocol::{Capabilities, ReplyReader};

pub fn check(data: &[u8]) {
    let mut reader = ReplyReader::default();
    // Lines as the client reads them: up to LF, at most the limit + 1 bytes.
    let mut rest = data;
    let mut lines_in_reply = 0;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .take(SMTP_MAX_REPLY_LINE + 1)
            .position(|b| *b == b'\n')
            .map_or(rest.len().min(SMTP_MAX_REPLY_LINE + 1), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        lines_in_reply += 1;
        match reader.push(line) {
            Ok(None) => {}
            Ok(Some(raw)) => {
                lines_in_reply = 0;
                assert!((200..600).contains(&raw.code));
                assert!(raw.lines.len() <= SMTP_MAX_REPLY_LINES);
                for l in &raw.lines {
                    // A format character shown as <U+00AD> grows at most fourfold.
                    assert!(l.len() <= 4 * SMTP_MAX_REPLY_LINE, "line kept unbounded");
                    assert!(!l.chars().any(char::is_control), "control kept: {l:?}");
                }
                let reply = raw.reply();
                let shown = reply.to_string();
                assert!(
                    !shown
                        .chars()
                        .any(|c| c.is_control() || crate::common::is_spoofing(c)),
                    "control or bidi character in {shown:?}"
                );
                assert!(reply.text.len() <= REPLY_TEXT_KEPT + " [truncated]".len());
                if let Some(e) = reply.enhanced {
                    assert_eq!(u16::from(e.class), reply.code / 100);
                    assert_eq!(EnhancedCode::parse(&e.to_string()), Some(e));
                }
                for answering in ["RCPT", "DATA"] {
                    let outcome = Outcome::from_final(&reply, answering);
                    let want = match reply.class() {
                        2 => Verdict::Sent,
                        5 => Verdict::Failed,
                        _ => Verdict::Deferred,
                    };
                    assert_eq!(outcome.verdict(), want, "{shown}");
                }
                let caps = Capabilities::from_ehlo(&raw);
                for m in &caps.auth {
                    assert!(!m.chars().any(|c| c.is_control() || c == ' '), "{m:?}");
                }
                reader = ReplyReader::default();
            }
            Err(_) => {
                reader = ReplyReader::default();
                lines_in_reply = 0;
            }
        }
        assert!(lines_in_reply <= SMTP_MAX_REPLY_LINES, "reply kept growing");
    }
}
