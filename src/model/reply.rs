//! An SMTP reply as a value, and what one delivery attempt did for one
//! recipient: the server's reply, or a reason of our own. Whether that is
//! sent, deferred or failed follows from the type, never from re-reading a
//! string.

use crate::limits::REPLY_TEXT_KEPT;
use std::fmt;

/// Text that came from a server, made safe to show anywhere (a terminal
/// running mailq, a log line, a state file, a bounce): on one line, with
/// line ends and tabs as spaces and other control characters (C0, DEL, C1)
/// removed; Unicode format and separator characters (general categories Cf,
/// Zl, Zp: the bidi overrides and isolates that reorder what a terminal
/// shows, U+2028/U+2029 that some viewers take for line breaks, zero-width
/// characters) are shown as `<U+202E>`, so that what a reader sees is what
/// the server sent. The one place this is decided: every reply's text and
/// every reason of an Outcome is made of it.
pub fn sanitize(text: &str) -> String {
    sanitized(text).into_owned()
}

/// At most `max` characters of [`sanitize`]d text from outside (a server,
/// a DNS record, a policy), `...` after a cut: what a message quotes of it.
pub fn excerpt(text: &str, max: usize) -> String {
    let clean = sanitized(text);
    let mut out: String = clean.chars().take(max).collect();
    if out.len() < clean.len() {
        out.push_str("...");
    }
    out
}

/// [`sanitize`] without a copy when the text is all printable ASCII, which
/// it leaves as it is (nearly every reply): for a reader of many, as mailq.
pub fn sanitized(text: &str) -> std::borrow::Cow<'_, str> {
    if text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_whitespace() {
            out.push(' ');
        } else if c.is_control() {
            continue;
        } else if is_format_or_separator(c) {
            out.push_str(&format!("<U+{:04X}>", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Unicode's Cf (format), Zl (line separator) and Zp (paragraph separator)
/// characters, as of Unicode 15.1.
pub(crate) fn is_format_or_separator(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// At most REPLY_TEXT_KEPT bytes of `text`, cut at a character boundary and
/// marked as cut: a server's reply is kept for every recipient in the state
/// file, the log and the bounce, and a hostile server must not make that
/// large.
fn kept(text: String) -> String {
    if text.len() <= REPLY_TEXT_KEPT {
        return text;
    }
    let mut end = REPLY_TEXT_KEPT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [truncated]", text[..end].trim_end())
}

/// An enhanced status code (RFC 3463): `class.subject.detail`, such as
/// `5.1.1`. The class is 2, 4 or 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedCode {
    pub const fn new(class: u8, subject: u16, detail: u16) -> EnhancedCode {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }

    /// Parses `5.1.1`: a class of 2, 4 or 5, then two numbers of one to
    /// three digits.
    pub fn parse(word: &str) -> Option<EnhancedCode> {
        let mut parts = word.split('.');
        let (c, s, d) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let number = |p: &str| {
            (!p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u16>().ok())
                .flatten()
        };
        let class = match c {
            "2" => 2,
            "4" => 4,
            "5" => 5,
            _ => return None,
        };
        Some(EnhancedCode::new(class, number(s)?, number(d)?))
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One reply of an SMTP server: its code, the enhanced status code its first
/// line starts with (when it is of the code's class), and its text, the lines
/// joined by spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<EnhancedCode>,
    pub text: String,
}

impl Reply {
    /// A reply from its code and the text of its lines (what follows
    /// `250-` or `250 `): the enhanced code is taken from the first line.
    /// The text is sanitized and cut to REPLY_TEXT_KEPT bytes.
    pub fn new(code: u16, lines: &[String]) -> Reply {
        let mut joined = String::new();
        for line in lines {
            if joined.len() > REPLY_TEXT_KEPT {
                break; // the rest would be cut anyway
            }
            if !joined.is_empty() {
                joined.push(' ');
            }
            joined.push_str(&sanitize(line));
        }
        let joined = joined.trim();
        let (first, rest) = joined.split_once(' ').unwrap_or((joined, ""));
        let enhanced = EnhancedCode::parse(first).filter(|e| u16::from(e.class) == code / 100);
        let text = kept(match enhanced {
            Some(_) => rest.trim_start().to_string(),
            None => joined.to_string(),
        });
        Reply {
            code,
            enhanced,
            text,
        }
    }

    /// The first digit: 2 done, 3 go on, 4 try later, 5 never.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// A relay asking to be left alone for a while: `421` (closing the
    /// connection), or any temporary reply with a `4.7.x` status (a
    /// security or policy reason: rate limits, too many connections).
    pub fn is_throttling(&self) -> bool {
        self.code == 421 || (self.class() == 4 && self.enhanced.is_some_and(|e| e.subject == 7))
    }
}

impl fmt::Display for Reply {
    /// `550 5.1.1 <bob@x>: user unknown`, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

/// Whether a recipient is done with, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Sent,
    Deferred,
    Failed,
}

/// A reason of our own, where no server reply decides: a connection that
/// failed, a route that does not exist, a reply that broke the protocol, a
/// limit the server announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub permanent: bool,
    /// The status code for the DSN and the log, when one fits better than
    /// the class's `x.0.0`.
    pub status: Option<EnhancedCode>,
    pub text: String,
    /// A fault of this host's configuration (a password the server
    /// refused, a missing password or key file, a certificate that does not
    /// verify under `tls = required`): the admin's to fix, not the sender's,
    /// so the mail waits, up to `max_queue_lifetime`, and is never failed
    /// before. Shown as "local configuration problem: TEXT".
    pub misconfigured: bool,
}

/// What one attempt did for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server's final reply for this recipient: 2xx sent, 4xx deferred,
    /// 5xx failed. Any other code never makes an Outcome (see `from_final`).
    Reply(Reply),
    Local(Local),
}

impl Outcome {
    /// The outcome a final reply gives; a reply that is not final (1xx, 3xx)
    /// cannot say sent and is a protocol error, deferred.
    pub fn from_final(reply: &Reply, answering: &str) -> Outcome {
        match reply.class() {
            2 | 4 | 5 => Outcome::Reply(reply.clone()),
            _ => Outcome::deferred(format!(
                "protocol error: {} in reply to {answering}",
                reply.code
            )),
        }
    }

    /// A reason of our own; it may quote a server (a malformed reply, a
    /// certificate's name), so it is sanitized as a reply is.
    pub fn deferred(text: impl Into<String>) -> Outcome {
        Outcome::Local(Local {
            permanent: false,
            status: None,
            text: sanitize(&text.into()),
            misconfigured: false,
        })
    }

    /// A local configuration problem (see [`Local::misconfigured`]):
    /// deferred, with RFC 3463's 4.3.5 "system incorrectly configured".
    pub fn misconfigured(text: impl Into<String>) -> Outcome {
        Outcome::Local(Local {
            permanent: false,
            status: Some(EnhancedCode::new(4, 3, 5)),
            text: sanitize(&text.into()),
            misconfigured: true,
        })
    }

    /// Whether this is a local configuration problem.
    pub fn is_misconfigured(&self) -> bool {
        matches!(self, Outcome::Local(l) if l.misconfigured)
    }

    pub fn failed(text: impl Into<String>, status: Option<EnhancedCode>) -> Outcome {
        Outcome::Local(Local {
            permanent: true,
            status,
            text: sanitize(&text.into()),
            misconfigured: false,
        })
    }

    pub fn verdict(&self) -> Verdict {
        match self {
            Outcome::Reply(r) if r.class() == 2 => Verdict::Sent,
            Outcome::Reply(r) if r.class() == 5 => Verdict::Failed,
            // 4xx, and (defensively) any code `from_final` would have refused.
            Outcome::Reply(_) => Verdict::Deferred,
            Outcome::Local(l) if l.permanent => Verdict::Failed,
            Outcome::Local(_) => Verdict::Deferred,
        }
    }

    /// The server's reply, when a server gave this outcome.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Outcome::Reply(r) => Some(r),
            Outcome::Local(_) => None,
        }
    }

    /// The enhanced status code: the reply's own or the local reason's,
    /// else `2.0.0`, `4.0.0` or `5.0.0` by the verdict.
    pub fn status(&self) -> EnhancedCode {
        let own = match self {
            Outcome::Reply(r) => r.enhanced,
            Outcome::Local(l) => l.status,
        };
        own.unwrap_or(match self.verdict() {
            Verdict::Sent => EnhancedCode::new(2, 0, 0),
            Verdict::Deferred => EnhancedCode::new(4, 0, 0),
            Verdict::Failed => EnhancedCode::new(5, 0, 0),
        })
    }
}

impl fmt::Display for Outcome {
    /// The reply as the server gave it, or the local reason's text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Reply(r) => r.fmt(f),
            Outcome::Local(l) if l.misconfigured => {
                write!(f, "local configuration problem: {}", l.text)
            }
            Outcome::Local(l) => f.write_str(&l.text),
        }
    }
}

#[cfg(test)]
mod tests {
    // A table's row type is spelled out where the table is.
    #![allow(clippy::type_complexity)]

    use super::*;

    fn reply(code: u16, lines: &[&str]) -> Reply {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        Reply::new(code, &lines)
    }

    #[test]
    fn throttling_replies() {
        for (code, line, throttling) in [
            (421, "4.7.0 Too many connections, slow down", true),
            (421, "Service not available", true),
            (450, "4.7.1 Rate limit exceeded", true),
            (451, "4.7.28 too much mail from your address", true),
            (454, "4.7.0 Temporary authentication failure", true),
            (451, "4.3.0 try again later", false),
            (450, "4.2.0 Greylisted", false),
            (452, "4.5.3 too many recipients", false),
            (550, "5.7.1 Relaying denied", false),
            (250, "2.0.0 Ok", false),
        ] {
            assert_eq!(
                reply(code, &[line]).is_throttling(),
                throttling,
                "{code} {line}"
            );
        }
    }

    #[test]
    fn enhanced_codes_parse() {
        let cases: &[(&str, Option<(u8, u16, u16)>)] = &[
            ("5.1.1", Some((5, 1, 1))),
            ("4.3.0", Some((4, 3, 0))),
            ("2.0.0", Some((2, 0, 0))),
            ("5.123.456", Some((5, 123, 456))),
            ("3.0.0", None),
            ("5.1", None),
            ("5.1.1.1", None),
            ("5.1.1234", None),
            ("5..1", None),
            ("x.1.1", None),
            ("user", None),
        ];
        for (word, want) in cases {
            let got = EnhancedCode::parse(word).map(|e| (e.class, e.subject, e.detail));
            assert_eq!(got, *want, "{word}");
        }
    }

    #[test]
    fn replies_split_and_display() {
        // (code, lines, enhanced, text, display)
        let cases: &[(u16, &[&str], Option<&str>, &str, &str)] = &[
            (
                250,
                &["2.0.0 Ok: queued as 1"],
                Some("2.0.0"),
                "Ok: queued as 1",
                "250 2.0.0 Ok: queued as 1",
            ),
            (
                550,
                &["5.1.1 <a@b>:", "user unknown"],
                Some("5.1.1"),
                "<a@b>: user unknown",
                "550 5.1.1 <a@b>: user unknown",
            ),
            (
                550,
                &["user unknown"],
                None,
                "user unknown",
                "550 user unknown",
            ),
            // A code of another class is text, not an enhanced code.
            (
                550,
                &["4.1.1 mismatched class"],
                None,
                "4.1.1 mismatched class",
                "550 4.1.1 mismatched class",
            ),
            (250, &["2.0.0"], Some("2.0.0"), "", "250 2.0.0"),
            (250, &[""], None, "", "250"),
            (
                354,
                &["End data with <CR><LF>.<CR><LF>"],
                None,
                "End data with <CR><LF>.<CR><LF>",
                "354 End data with <CR><LF>.<CR><LF>",
            ),
        ];
        for (code, lines, enhanced, text, display) in cases {
            let r = reply(*code, lines);
            assert_eq!(
                r.enhanced.map(|e| e.to_string()).as_deref(),
                *enhanced,
                "{lines:?}"
            );
            assert_eq!(r.text, *text, "{lines:?}");
            assert_eq!(r.to_string(), *display, "{lines:?}");
        }
    }

    #[test]
    fn an_excerpt_is_sanitized_and_cut_with_a_mark() {
        for (text, max, want) in [
            ("short", 40, "short"),
            ("abcdef", 3, "abc..."),
            ("abc", 3, "abc"),
            ("a\nb\u{7}c", 40, "a bc"),
            ("\u{202e}xyz", 8, "<U+202E>..."),
            ("\u{e9}\u{e9}\u{e9}", 2, "\u{e9}\u{e9}..."),
        ] {
            assert_eq!(excerpt(text, max), want, "{text:?}");
        }
    }

    #[test]
    fn server_text_is_sanitized() {
        let cases: &[(&str, &str)] = &[
            ("user unknown", "user unknown"),
            ("caf\u{e9} \u{4e2d}\u{6587}", "caf\u{e9} \u{4e2d}\u{6587}"),
            ("a\tb\r\nc", "a b  c"),
            ("\x1b[31mred\x07\0", "[31mred"),
            ("\u{9b}csi", "csi"),
            ("evil\u{202e}exe.txt", "evil<U+202E>exe.txt"),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}",
                "<U+202A><U+202B><U+202C><U+202D>",
            ),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}",
                "<U+2066><U+2067><U+2068><U+2069>",
            ),
            ("\u{200e}\u{200f}\u{61c}", "<U+200E><U+200F><U+061C>"),
            ("line\u{2028}para\u{2029}", "line<U+2028>para<U+2029>"),
            ("\u{200b}\u{feff}\u{ad}", "<U+200B><U+FEFF><U+00AD>"),
            ("tag\u{e0041}", "tag<U+E0041>"),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitize(raw), *want, "{raw:?}");
            assert_eq!(sanitize(want), *want, "idempotent: {want:?}");
        }
        // What needs no change is not copied (mailq shows every reason).
        for reason in [
            "451 4.7.1 <bob@example.com>: relay access refused for now",
            "",
            "tab\there",
            "line\r\nbreak",
            "bell\x07",
            "del\x7f",
            "bidi \u{202e}txt",
            "caf\u{e9}",
        ] {
            assert_eq!(sanitized(reason), sanitize(reason), "{reason:?}");
        }
        assert!(matches!(sanitized("250 ok"), std::borrow::Cow::Borrowed(_)));
        // Whatever enters an Outcome is sanitized, reply or reason.
        let r = reply(550, &["5.1.1 x\u{202e}y\u{2028}"]);
        assert_eq!(r.to_string(), "550 5.1.1 x<U+202E>y<U+2028>");
        assert_eq!(
            Outcome::deferred("a\u{2066}b\nc").to_string(),
            "a<U+2066>b c"
        );
    }

    #[test]
    fn reply_text_is_capped() {
        let long = "x".repeat(4000);
        let lines: Vec<String> = (0..200).map(|_| long.clone()).collect();
        let r = Reply::new(451, &[&["4.3.0 first".to_string()][..], &lines].concat());
        assert_eq!(r.enhanced, EnhancedCode::parse("4.3.0"));
        assert!(r.text.starts_with("first xxx"), "{}", r.text);
        assert!(r.text.ends_with(" [truncated]"), "{}", r.text);
        assert!(r.text.len() <= REPLY_TEXT_KEPT + " [truncated]".len());
        // Cut at a character boundary.
        let wide = "\u{e9}".repeat(REPLY_TEXT_KEPT);
        let r = Reply::new(550, &[wide]);
        assert!(r.text.ends_with("\u{e9} [truncated]"), "{}", r.text);
        // A reply that fits is kept whole.
        let fits = "y".repeat(REPLY_TEXT_KEPT);
        assert_eq!(Reply::new(550, std::slice::from_ref(&fits)).text, fits);
    }

    #[test]
    fn verdicts_follow_the_type() {
        let cases: &[(Outcome, Verdict, &str)] = &[
            (
                Outcome::Reply(reply(250, &["2.1.5 ok"])),
                Verdict::Sent,
                "2.1.5",
            ),
            (Outcome::Reply(reply(251, &["ok"])), Verdict::Sent, "2.0.0"),
            (
                Outcome::Reply(reply(451, &["4.3.0 later"])),
                Verdict::Deferred,
                "4.3.0",
            ),
            (
                Outcome::Reply(reply(550, &["no"])),
                Verdict::Failed,
                "5.0.0",
            ),
            (
                Outcome::from_final(&reply(354, &["go"]), "DATA"),
                Verdict::Deferred,
                "4.0.0",
            ),
            (
                Outcome::from_final(&reply(350, &["go"]), "RCPT TO"),
                Verdict::Deferred,
                "4.0.0",
            ),
            (
                Outcome::deferred("connection refused"),
                Verdict::Deferred,
                "4.0.0",
            ),
            (
                Outcome::failed("too big", Some(EnhancedCode::new(5, 3, 4))),
                Verdict::Failed,
                "5.3.4",
            ),
        ];
        for (outcome, verdict, status) in cases {
            assert_eq!(outcome.verdict(), *verdict, "{outcome}");
            assert_eq!(outcome.status().to_string(), *status, "{outcome}");
        }
        assert_eq!(
            Outcome::from_final(&reply(354, &["go"]), "the end of data").to_string(),
            "protocol error: 354 in reply to the end of data"
        );
    }
}
