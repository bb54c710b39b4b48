//! An SMTP reply as a value, and what one delivery attempt did for one
//! recipient: the server's reply, or a reason of our own. Whether that is
//! sent, deferred or failed follows from the type, never from re-reading a
//! string.

use std::fmt;

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
    pub fn new(code: u16, lines: &[String]) -> Reply {
        let joined = lines.join(" ");
        let joined = joined.trim();
        let (first, rest) = joined.split_once(' ').unwrap_or((joined, ""));
        let enhanced = EnhancedCode::parse(first).filter(|e| u16::from(e.class) == code / 100);
        let text = match enhanced {
            Some(_) => rest.trim_start().to_string(),
            None => joined.to_string(),
        };
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

    pub fn deferred(text: impl Into<String>) -> Outcome {
        Outcome::Local(Local {
            permanent: false,
            status: None,
            text: text.into(),
        })
    }

    pub fn failed(text: impl Into<String>, status: Option<EnhancedCode>) -> Outcome {
        Outcome::Local(Local {
            permanent: true,
            status,
            text: text.into(),
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
