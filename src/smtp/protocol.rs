//! The SMTP client's protocol rules, without a socket: reading replies,
//! EHLO capabilities, building MAIL and RCPT with their parameters,
//! dot-stuffing, and what a transaction's replies mean for each recipient.
//! The client in `client.rs` only moves bytes and applies these.

use crate::limits::{
    SMTP_MAX_REPLY_BYTES, SMTP_MAX_REPLY_LINE, SMTP_MAX_REPLY_LINES, SMTP_QUOTED_REPLY_CHARS,
};
use crate::model::{Address, EnhancedCode, Notify, Outcome, Reply, sanitize};
use std::fmt;

/// A reply as it came, line by line (EHLO's lines are its capabilities).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawReply {
    pub code: u16,
    /// Each line's text after `250-` or `250 `, control characters removed.
    pub lines: Vec<String>,
}

impl RawReply {
    pub fn reply(&self) -> Reply {
        Reply::new(self.code, &self.lines)
    }
}

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadReply {
    TooLong,
    /// The line, shortened, for the log.
    Malformed(String),
}

impl fmt::Display for BadReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadReply::TooLong => f.write_str("reply too long"),
            BadReply::Malformed(line) => write!(f, "malformed reply `{line}`"),
        }
    }
}

/// Collects the lines of one reply: `250-first`, ..., `250 last`.
#[derive(Debug, Default)]
pub struct ReplyReader {
    code: Option<u16>,
    lines: Vec<String>,
    /// Bytes of this reply so far.
    bytes: usize,
}

impl ReplyReader {
    /// Takes one line as read (at most SMTP_MAX_REPLY_LINE + 1 bytes, its CRLF
    /// included); the reply once its last line came. Every line of a
    /// multi-line reply must carry the same code.
    pub fn push(&mut self, raw: &[u8]) -> Result<Option<RawReply>, BadReply> {
        self.bytes += raw.len();
        if raw.len() > SMTP_MAX_REPLY_LINE
            || self.lines.len() >= SMTP_MAX_REPLY_LINES
            || self.bytes > SMTP_MAX_REPLY_BYTES
        {
            return Err(BadReply::TooLong);
        }
        let text = printable(raw);
        let code = text
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .filter(|c| self.code.is_none_or(|first| first == *c));
        let malformed =
            || BadReply::Malformed(text.chars().take(SMTP_QUOTED_REPLY_CHARS).collect());
        let code = code.ok_or_else(malformed)?;
        self.code = Some(code);
        self.lines.push(text.get(4..).unwrap_or("").to_string());
        match text.as_bytes().get(3) {
            Some(b'-') => Ok(None),
            None | Some(b' ') => {
                let lines = std::mem::take(&mut self.lines);
                *self = ReplyReader::default();
                Ok(Some(RawReply { code, lines }))
            }
            Some(_) => Err(malformed()),
        }
    }
}

/// A line without its line end, sanitized (see `model::sanitize`).
pub fn printable(raw: &[u8]) -> String {
    sanitize(String::from_utf8_lossy(raw).trim_end_matches(['\r', '\n']))
}

/// What the server said it can do, in its reply to EHLO.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    /// The server's SIZE limit; 0 for none given.
    pub size: Option<u64>,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub starttls: bool,
    /// The SASL mechanisms offered with AUTH.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// The first line is the server's name; each other one a keyword.
    pub fn from_ehlo(reply: &RawReply) -> Capabilities {
        let mut c = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => c.pipelining = true,
                "SIZE" => c.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => c.eightbitmime = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "DSN" => c.dsn = true,
                "STARTTLS" => c.starttls = true,
                "AUTH" => c.auth.extend(words.map(str::to_ascii_uppercase)),
                // The pre-RFC 4954 form some servers still send as well.
                k if k.starts_with("AUTH=") => {
                    c.auth.push(k["AUTH=".len()..].to_string());
                    c.auth.extend(words.map(str::to_ascii_uppercase));
                }
                _ => {}
            }
        }
        c
    }
}

/// What MAIL FROM may say about the message.
#[derive(Debug, Default, Clone)]
pub struct MailParams<'a> {
    pub sender: &'a str,
    pub size: u64,
    /// The content is 8-bit MIME.
    pub eight_bit: bool,
    /// An address is not ASCII.
    pub smtputf8: bool,
    /// DSN RET: Some(true) for FULL, Some(false) for HDRS.
    pub ret_full: Option<bool>,
    pub envid: Option<&'a str>,
}

/// What RCPT TO may say about one recipient.
#[derive(Debug, Clone)]
pub struct RcptParams<'a> {
    pub address: &'a Address,
    /// DSN NOTIFY (shown as it goes on the wire, `SUCCESS,FAILURE`).
    pub notify: Option<Notify>,
    /// The address as the user wrote it.
    pub orcpt: Option<&'a str>,
}

/// Why the message cannot go to this server at all, decided before MAIL:
/// a permanent local failure (the server's limits are its own).
pub fn refuse_before_mail(p: &MailParams, caps: &Capabilities, peer: &str) -> Option<Outcome> {
    if let Some(limit) = caps.size.filter(|l| *l > 0 && p.size > *l) {
        return Some(Outcome::failed(
            format!(
                "message size {} exceeds size limit {limit} of server {peer}",
                p.size
            ),
            Some(EnhancedCode::new(5, 3, 4)),
        ));
    }
    if p.smtputf8 && !caps.smtputf8 {
        return Some(Outcome::failed(
            format!("SMTPUTF8 is required for a non-ASCII address, but was not offered by {peer}"),
            Some(EnhancedCode::new(5, 6, 7)),
        ));
    }
    None
}

/// MAIL FROM with the parameters the server announced it takes: SIZE
/// (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531, which the caller checked
/// with `refuse_before_mail`), RET and ENVID (RFC 3461).
pub fn mail_command(p: &MailParams, caps: &Capabilities) -> String {
    let mut cmd = format!("MAIL FROM:<{}>", p.sender);
    if caps.size.is_some() {
        cmd.push_str(&format!(" SIZE={}", p.size));
    }
    if p.eight_bit && caps.eightbitmime {
        cmd.push_str(" BODY=8BITMIME");
    }
    if p.smtputf8 {
        cmd.push_str(" SMTPUTF8");
    }
    if caps.dsn {
        if let Some(full) = p.ret_full {
            cmd.push_str(if full { " RET=FULL" } else { " RET=HDRS" });
        }
        if let Some(envid) = p.envid {
            cmd.push_str(&format!(" ENVID={}", xtext(envid)));
        }
    }
    cmd
}

/// RCPT TO, with NOTIFY and ORCPT when the server takes DSN parameters.
/// ORCPT is xtext of an `rfc822` address, so only an ASCII one goes.
pub fn rcpt_command(p: &RcptParams, caps: &Capabilities) -> String {
    let mut cmd = format!("RCPT TO:<{}>", p.address);
    if caps.dsn {
        if let Some(notify) = p.notify {
            cmd.push_str(&format!(" NOTIFY={notify}"));
        }
        if let Some(orcpt) = p.orcpt.filter(|o| o.is_ascii()) {
            cmd.push_str(&format!(" ORCPT=rfc822;{}", xtext(orcpt)));
        }
    }
    cmd
}

/// RFC 3461 xtext: `+` and `=`, controls and non-printables as `+HH`.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The message as DATA sends it (RFC 5321 4.5.2): LF lines as CRLF, a dot
/// doubled at the start of a line, and the terminating dot. Fed in chunks
/// of any size: a line may span chunks.
#[derive(Debug)]
pub struct DotStuffer {
    at_line_start: bool,
}

impl Default for DotStuffer {
    fn default() -> DotStuffer {
        DotStuffer {
            at_line_start: true,
        }
    }
}

impl DotStuffer {
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) {
        while !chunk.is_empty() {
            if self.at_line_start && chunk[0] == b'.' {
                out.push(b'.');
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    out.extend_from_slice(&chunk[..i]);
                    out.extend_from_slice(b"\r\n");
                    chunk = &chunk[i + 1..];
                    self.at_line_start = true;
                }
                None => {
                    out.extend_from_slice(chunk);
                    chunk = &[];
                    self.at_line_start = false;
                }
            }
        }
    }

    /// Ends the last line if it has no line end, then the lone dot.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The commands whose replies the transaction rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Rset,
    Mail,
    Rcpt,
    Data,
    EndOfData,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Rset => "RSET",
            Command::Mail => "MAIL FROM",
            Command::Rcpt => "RCPT TO",
            Command::Data => "DATA",
            Command::EndOfData => "the end of data",
        })
    }
}

/// A reply that cannot answer the command it was read for: the replies
/// and the commands are out of step (a surplus line, a server that skipped
/// a state), so nothing more of the session can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: u16,
    pub command: Command,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "protocol error: {} in reply to {}",
            self.code, self.command
        )
    }
}

/// What a reply says about the command it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx (to DATA: 354, go on with the content).
    Yes,
    /// 4xx or 5xx.
    No,
}

/// RFC 5321 4.3.2: DATA takes 354 or a refusal; every other command here a
/// 2xx or a refusal. Anything else (a 2xx to DATA, a 3xx to RCPT or to the
/// end of data) is a protocol error.
pub fn answer(command: Command, reply: &Reply) -> Result<Answer, ProtocolError> {
    let yes = match command {
        Command::Data => reply.code == 354,
        _ => reply.class() == 2,
    };
    match reply.class() {
        _ if yes => Ok(Answer::Yes),
        4 | 5 => Ok(Answer::No),
        _ => Err(ProtocolError {
            code: reply.code,
            command,
        }),
    }
}

/// RFC 5321 4.5.3.1.10: the server takes no more recipients in this
/// transaction; the rest go in a further one.
fn too_many_recipients(reply: &Reply) -> bool {
    reply.code == 452 || reply.enhanced == Some(EnhancedCode::new(4, 5, 3))
}

/// What to send after the replies to MAIL, the RCPTs and DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The content, for the recipients the server accepted.
    Content,
    /// The server said 354 though no recipient was accepted: just the
    /// terminating dot, an empty message nobody receives.
    EmptyContent,
    /// Nothing: the transaction is over.
    Stop,
}

/// Whether DATA is to be sent when the commands go one by one (without
/// PIPELINING): after an accepted MAIL and at least one accepted RCPT.
pub fn wants_data(mail: &Reply, rcpts: &[Reply]) -> Result<bool, ProtocolError> {
    if answer(Command::Mail, mail)? == Answer::No {
        return Ok(false);
    }
    let mut any = false;
    for r in rcpts {
        any |= answer(Command::Rcpt, r)? == Answer::Yes;
    }
    Ok(any)
}

/// What follows the envelope's replies. `data` is None when DATA was not
/// sent (see `wants_data`).
pub fn after_data(
    mail: &Reply,
    rcpts: &[Reply],
    data: Option<&Reply>,
) -> Result<Next, ProtocolError> {
    let wanted = wants_data(mail, rcpts)?;
    let Some(data) = data else {
        return Ok(Next::Stop);
    };
    Ok(match answer(Command::Data, data)? {
        Answer::Yes if wanted => Next::Content,
        Answer::Yes => Next::EmptyContent,
        Answer::No => Next::Stop,
    })
}

/// A transaction's replies, in the order of its commands.
#[derive(Debug, Clone, Copy)]
pub struct Replies<'a> {
    pub mail: &'a Reply,
    /// One per recipient, in the order of the RCPT commands.
    pub rcpts: &'a [Reply],
    /// When DATA was sent.
    pub data: Option<&'a Reply>,
    /// When the content (or the empty content) was ended.
    pub end: Option<&'a Reply>,
}

/// What a transaction did for its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Position in the RCPT list and its outcome.
    pub outcomes: Vec<(usize, Outcome)>,
    /// Positions refused only because the transaction had too many
    /// recipients: to send at once in a further transaction.
    pub again: Vec<usize>,
}

/// The rule that turns a transaction's replies into each recipient's
/// outcome. A refused MAIL refuses every recipient; a refused RCPT its
/// own; an accepted recipient gets the reply to DATA when that refused,
/// else the reply to the end of data. Recipients over the server's limit
/// go again at once when this transaction accepted someone (so every
/// further transaction makes progress); otherwise they wait, deferred.
pub fn finish(r: &Replies) -> Result<Finished, ProtocolError> {
    let next = after_data(r.mail, r.rcpts, r.data)?;
    let end = match (next, r.end) {
        (Next::Stop, _) => None,
        (_, Some(end)) => {
            answer(Command::EndOfData, end)?;
            Some(end)
        }
        (_, None) => None,
    };
    let all = |o: Outcome| (0..r.rcpts.len()).map(|i| (i, o.clone())).collect();
    if answer(Command::Mail, r.mail)? == Answer::No {
        return Ok(Finished {
            outcomes: all(final_outcome(r.mail, Command::Mail)),
            again: Vec::new(),
        });
    }
    let accepted = |i: &usize| r.rcpts[*i].class() == 2;
    let progress = (0..r.rcpts.len()).any(|i| accepted(&i));
    let for_accepted = match (r.data, end) {
        (Some(d), _) if d.class() != 3 => final_outcome(d, Command::Data),
        (_, Some(end)) if next == Next::Content => final_outcome(end, Command::EndOfData),
        // Accepted, but the content was never sent or never answered:
        // the caller ends the session before this; defer, never "sent".
        _ => Outcome::deferred("the transaction did not reach its end of data"),
    };
    let mut f = Finished {
        outcomes: Vec::with_capacity(r.rcpts.len()),
        again: Vec::new(),
    };
    for (i, reply) in r.rcpts.iter().enumerate() {
        if accepted(&i) {
            f.outcomes.push((i, for_accepted.clone()));
        } else if progress && too_many_recipients(reply) {
            f.again.push(i);
        } else {
            f.outcomes.push((i, final_outcome(reply, Command::Rcpt)));
        }
    }
    Ok(f)
}

/// The reply of a transaction that asks its relay to be left alone for a
/// while, if any: a 421 to any command (the server is closing the
/// connection), or a 4.7.x to MAIL (a limit on the sender or the
/// connection, which every message would meet). A 4.7.x to RCPT or to
/// DATA is that message's own deferral (greylisting, a policy on one
/// recipient or on one content): resting the relay for it would hold up
/// everyone else's mail for one sender's.
pub fn throttling<'a>(r: &Replies<'a>) -> Option<&'a Reply> {
    if r.mail.is_throttling() {
        return Some(r.mail);
    }
    (r.rcpts.iter())
        .chain(r.data)
        .chain(r.end)
        .find(|reply| reply.code == 421)
}

/// A recipient's outcome from a reply `answer` has checked; `from_final`
/// would still never make a 3xx "sent".
fn final_outcome(reply: &Reply, command: Command) -> Outcome {
    Outcome::from_final(reply, &command.to_string())
}

/// Table tests of the protocol rules: each row one case.
#[cfg(test)]
mod tests {
    // A table's row type is spelled out where the table is.
    #![allow(clippy::type_complexity)]

    use super::*;

    fn reply(line: &str) -> Reply {
        let (code, text) = line.split_at(3);
        Reply::new(code.parse().unwrap(), &[text.trim_start().to_string()])
    }

    fn read_all(lines: &[&[u8]]) -> Result<Option<RawReply>, BadReply> {
        let mut r = ReplyReader::default();
        let mut last = Ok(None);
        for l in lines {
            last = r.push(l);
            if last.is_err() {
                break;
            }
        }
        last
    }

    #[test]
    fn replies_are_read_line_by_line() {
        let long = format!("250 {}\r\n", "x".repeat(SMTP_MAX_REPLY_LINE));
        let long = [long.as_bytes()];
        let ok = |code: u16, lines: &[&str]| {
            Ok(Some(RawReply {
                code,
                lines: lines.iter().map(|s| s.to_string()).collect(),
            }))
        };
        let bad = |l: &str| Err(BadReply::Malformed(l.to_string()));
        let cases: Vec<(&[&[u8]], Result<Option<RawReply>, BadReply>)> = vec![
            (&[b"250 ok\r\n"], ok(250, &["ok"])),
            (&[b"250 ok\n"], ok(250, &["ok"])),
            (&[b"250\r\n"], ok(250, &[""])),
            (
                &[b"250-a\r\n", b"250-b\r\n", b"250 c\r\n"],
                ok(250, &["a", "b", "c"]),
            ),
            (&[b"250-a\r\n"], Ok(None)),
            (&[b"550 bad\x07 bell\r\n"], ok(550, &["bad bell"])),
            // Every line of one reply has the same code.
            (&[b"250-a\r\n", b"550 b\r\n"], bad("550 b")),
            (&[b"hello\r\n"], bad("hello")),
            (&[b"25\r\n"], bad("25")),
            (&[b"150 early\r\n"], bad("150 early")),
            (&[b"650 late\r\n"], bad("650 late")),
            (&[b"+50 sign\r\n"], bad("+50 sign")),
            (&[b"250_x\r\n"], bad("250_x")),
            (&long, Err(BadReply::TooLong)),
        ];
        for (lines, want) in cases {
            assert_eq!(read_all(lines), want, "{lines:?}");
        }
        let many: Vec<&[u8]> =
            std::iter::repeat_n(&b"250-x\r\n"[..], SMTP_MAX_REPLY_LINES + 1).collect();
        assert_eq!(read_all(&many), Err(BadReply::TooLong));
        // Lines of full length: the total runs out before the line count.
        let full = format!("451-{}\r\n", "x".repeat(SMTP_MAX_REPLY_LINE - 6));
        let n = SMTP_MAX_REPLY_BYTES / full.len() + 1;
        assert!(n < SMTP_MAX_REPLY_LINES);
        let wide: Vec<&[u8]> = std::iter::repeat_n(full.as_bytes(), n).collect();
        assert_eq!(read_all(&wide), Err(BadReply::TooLong));
        assert_eq!(read_all(&wide[..n - 1]), Ok(None));
        // Bidi controls and separators are shown, not obeyed.
        assert_eq!(
            read_all(&["550 a\u{202e}b\u{2029}\r\n".as_bytes()]),
            ok(550, &["a<U+202E>b<U+2029>"])
        );
    }

    #[test]
    fn ehlo_capabilities() {
        let caps = |lines: &[&str]| {
            Capabilities::from_ehlo(&RawReply {
                code: 250,
                lines: lines.iter().map(|s| s.to_string()).collect(),
            })
        };
        let none = Capabilities::default();
        let cases: Vec<(&[&str], Capabilities)> = vec![
            (&["mx.example"], none.clone()),
            // The greeting line is never a keyword.
            (&["PIPELINING"], none.clone()),
            (
                &[
                    "mx",
                    "PIPELINING",
                    "SIZE 10240000",
                    "8BITMIME",
                    "DSN",
                    "SMTPUTF8",
                    "STARTTLS",
                ],
                Capabilities {
                    pipelining: true,
                    size: Some(10240000),
                    eightbitmime: true,
                    smtputf8: true,
                    dsn: true,
                    starttls: true,
                    auth: vec![],
                },
            ),
            (
                &["mx", "size"],
                Capabilities {
                    size: Some(0),
                    ..none.clone()
                },
            ),
            (
                &["mx", "SIZE x"],
                Capabilities {
                    size: Some(0),
                    ..none.clone()
                },
            ),
            (
                &["relay", "AUTH plain LOGIN", "AUTH=XOAUTH2"],
                Capabilities {
                    auth: vec!["PLAIN".into(), "LOGIN".into(), "XOAUTH2".into()],
                    ..none.clone()
                },
            ),
            (&["mx", "XFORWARD NAME", "HELP"], none.clone()),
        ];
        for (lines, want) in cases {
            assert_eq!(caps(lines), want, "{lines:?}");
        }
    }

    #[test]
    fn mail_and_rcpt_parameters() {
        let plain = Capabilities::default();
        let all = Capabilities {
            size: Some(0),
            eightbitmime: true,
            smtputf8: true,
            dsn: true,
            ..Capabilities::default()
        };
        let base = MailParams {
            sender: "a@b",
            size: 42,
            ..MailParams::default()
        };
        let full = MailParams {
            eight_bit: true,
            smtputf8: true,
            ret_full: Some(true),
            envid: Some("id+1=x y"),
            ..base.clone()
        };
        let cases: Vec<(&MailParams, &Capabilities, &str)> = vec![
            (&base, &plain, "MAIL FROM:<a@b>"),
            (&base, &all, "MAIL FROM:<a@b> SIZE=42"),
            (&full, &plain, "MAIL FROM:<a@b> SMTPUTF8"),
            (
                &full,
                &all,
                "MAIL FROM:<a@b> SIZE=42 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=id+2B1+3Dx+20y",
            ),
        ];
        for (p, caps, want) in cases {
            assert_eq!(mail_command(p, caps), want);
        }
        let hdrs = MailParams {
            ret_full: Some(false),
            sender: "",
            ..base.clone()
        };
        assert_eq!(mail_command(&hdrs, &all), "MAIL FROM:<> SIZE=42 RET=HDRS");

        let c_d = Address::parse("c@d").unwrap();
        let r = RcptParams {
            address: &c_d,
            notify: Some(Notify::SUCCESS | Notify::FAILURE),
            orcpt: Some("c"),
        };
        let utf8 = RcptParams {
            orcpt: Some("j\u{e9}"),
            ..r.clone()
        };
        let bare = RcptParams {
            address: &c_d,
            notify: None,
            orcpt: None,
        };
        let cases: Vec<(&RcptParams, &Capabilities, &str)> = vec![
            (&r, &plain, "RCPT TO:<c@d>"),
            (
                &r,
                &all,
                "RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c",
            ),
            (&utf8, &all, "RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE"),
            (&bare, &all, "RCPT TO:<c@d>"),
        ];
        for (p, caps, want) in cases {
            assert_eq!(rcpt_command(p, caps), want);
        }
    }

    #[test]
    fn refusals_before_mail() {
        let caps = Capabilities {
            size: Some(100),
            ..Capabilities::default()
        };
        let p = |size, smtputf8| MailParams {
            size,
            smtputf8,
            ..MailParams::default()
        };
        let cases: Vec<(MailParams, Option<&str>)> = vec![
            (p(100, false), None),
            (p(101, false), Some("5.3.4")),
            (p(1, true), Some("5.6.7")),
        ];
        for (params, want) in cases {
            let got = refuse_before_mail(&params, &caps, "mx[127.0.0.1]:25");
            assert_eq!(
                got.as_ref().map(|o| o.status().to_string()).as_deref(),
                want
            );
            if let Some(o) = got {
                assert_eq!(o.verdict(), crate::model::Verdict::Failed);
                assert!(o.reply().is_none(), "a local reason, no made-up reply: {o}");
            }
        }
        let unlimited = Capabilities {
            size: Some(0),
            ..Capabilities::default()
        };
        assert!(refuse_before_mail(&p(1 << 40, false), &unlimited, "x").is_none());
    }

    #[test]
    fn dot_stuffing() {
        let cases: Vec<(Vec<&[u8]>, &[u8])> = vec![
            (vec![b""], b".\r\n"),
            (vec![b"a\n"], b"a\r\n.\r\n"),
            (vec![b"a"], b"a\r\n.\r\n"),
            (vec![b".\n"], b"..\r\n.\r\n"),
            (vec![b"a\n.b\n..c\n"], b"a\r\n..b\r\n...c\r\n.\r\n"),
            (vec![b"x.\n"], b"x.\r\n.\r\n"),
            // A line split between chunks: the dot is only doubled at a start.
            (vec![b"a", b".b\n", b".", b"c"], b"a.b\r\n..c\r\n.\r\n"),
            (vec![b"a\n", b".\n"], b"a\r\n..\r\n.\r\n"),
            (vec![b"a\r\n"], b"a\r\r\n.\r\n"),
        ];
        for (chunks, want) in cases {
            let mut d = DotStuffer::default();
            let mut out = Vec::new();
            for c in &chunks {
                d.feed(c, &mut out);
            }
            d.finish(&mut out);
            assert_eq!(out, want, "{chunks:?}");
        }
    }

    #[test]
    fn answers_by_command() {
        use Command::*;
        let no = Ok(Answer::No);
        let yes = Ok(Answer::Yes);
        let err = |code, command| Err(ProtocolError { code, command });
        let cases = vec![
            (Mail, "250 ok", yes),
            (Mail, "451 later", no),
            (Mail, "354 go", err(354, Mail)),
            (Rcpt, "250 ok", yes),
            (Rcpt, "251 forwarded", yes),
            (Rcpt, "550 no", no),
            (Rcpt, "452 4.5.3 too many", no),
            (Rcpt, "350 go on", err(350, Rcpt)),
            (Data, "354 go", yes),
            (Data, "554 no recipients", no),
            (Data, "250 ok", err(250, Data)),
            (Data, "334 what", err(334, Data)),
            (EndOfData, "250 queued", yes),
            (EndOfData, "552 too big", no),
            (EndOfData, "354 again", err(354, EndOfData)),
            (Rset, "250 ok", yes),
        ];
        for (command, line, want) in cases {
            assert_eq!(answer(command, &reply(line)), want, "{command} {line}");
        }
        assert_eq!(
            ProtocolError {
                code: 250,
                command: Data
            }
            .to_string(),
            "protocol error: 250 in reply to DATA"
        );
    }

    /// A transaction from its reply lines: MAIL, the RCPTs, DATA, the end.
    fn run(
        mail: &str,
        rcpts: &[&str],
        data: Option<&str>,
        end: Option<&str>,
    ) -> Result<Finished, String> {
        let rcpts: Vec<Reply> = rcpts.iter().map(|l| reply(l)).collect();
        let (mail, data, end) = (reply(mail), data.map(reply), end.map(reply));
        finish(&Replies {
            mail: &mail,
            rcpts: &rcpts,
            data: data.as_ref(),
            end: end.as_ref(),
        })
        .map_err(|e| e.to_string())
    }

    /// Each outcome as its text, in RCPT order; `again` as "again".
    fn shown(f: Finished) -> Vec<String> {
        let mut v: Vec<(usize, String)> = f
            .outcomes
            .iter()
            .map(|(i, o)| (*i, o.to_string()))
            .collect();
        v.extend(f.again.iter().map(|i| (*i, "again".to_string())));
        v.sort();
        v.into_iter().map(|(_, s)| s).collect()
    }

    #[test]
    fn transaction_outcomes() {
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            Option<&'a str>,
            Option<&'a str>,
            Result<Vec<&'a str>, &'a str>,
        );
        let cases: Vec<Case> = vec![
            // Everything accepted: the end of data decides.
            (
                "250 ok",
                &["250 ok", "250 ok"],
                Some("354 go"),
                Some("250 queued"),
                Ok(vec!["250 queued", "250 queued"]),
            ),
            // One refused: it keeps its own reply.
            (
                "250 ok",
                &["550 5.1.1 no", "250 ok"],
                Some("354 go"),
                Some("250 queued"),
                Ok(vec!["550 5.1.1 no", "250 queued"]),
            ),
            // MAIL refused: every recipient has its reply, whatever followed.
            (
                "452 4.3.1 full",
                &["503 need MAIL", "503 need MAIL"],
                Some("503 need MAIL"),
                None,
                Ok(vec!["452 4.3.1 full", "452 4.3.1 full"]),
            ),
            // DATA refused: the accepted ones have its reply.
            (
                "250 ok",
                &["250 ok", "550 no"],
                Some("451 later"),
                None,
                Ok(vec!["451 later", "550 no"]),
            ),
            // End of data refused.
            (
                "250 ok",
                &["250 ok"],
                Some("354 go"),
                Some("552 5.3.4 too big"),
                Ok(vec!["552 5.3.4 too big"]),
            ),
            // Without PIPELINING, no DATA after every RCPT failed.
            (
                "250 ok",
                &["550 no", "451 later"],
                None,
                None,
                Ok(vec!["550 no", "451 later"]),
            ),
            // A 354 though nobody was accepted: the empty content's end decides nothing.
            (
                "250 ok",
                &["550 no"],
                Some("354 go"),
                Some("250 empty"),
                Ok(vec!["550 no"]),
            ),
            // The bugs: a 2xx to DATA, a 3xx to RCPT or to the end of data.
            (
                "250 ok",
                &["250 ok"],
                Some("250 ok"),
                None,
                Err("protocol error: 250 in reply to DATA"),
            ),
            (
                "250 ok",
                &["350 go on"],
                Some("354 go"),
                Some("250 queued"),
                Err("protocol error: 350 in reply to RCPT TO"),
            ),
            (
                "250 ok",
                &["250 ok"],
                Some("354 go"),
                Some("354 again"),
                Err("protocol error: 354 in reply to the end of data"),
            ),
            (
                "354 go",
                &["250 ok"],
                Some("354 go"),
                Some("250 queued"),
                Err("protocol error: 354 in reply to MAIL FROM"),
            ),
            // A surplus line after MAIL's reply, with PIPELINING: every reply
            // after it is shifted, and the RCPT's 250 is read for DATA.
            (
                "250 ok",
                &["250 surplus"],
                Some("250 rcpt ok"),
                None,
                Err("protocol error: 250 in reply to DATA"),
            ),
            (
                "250 ok",
                &["250 surplus", "250 rcpt 1"],
                Some("250 rcpt 2"),
                None,
                Err("protocol error: 250 in reply to DATA"),
            ),
            // The recipient limit: the rest go again at once.
            (
                "250 ok",
                &[
                    "250 ok",
                    "250 ok",
                    "452 4.5.3 too many recipients",
                    "452 4.5.3 too many recipients",
                ],
                Some("354 go"),
                Some("250 queued"),
                Ok(vec!["250 queued", "250 queued", "again", "again"]),
            ),
            // ... also when the accepted ones then fail.
            (
                "250 ok",
                &["250 ok", "452 too many"],
                Some("354 go"),
                Some("451 later"),
                Ok(vec!["451 later", "again"]),
            ),
            // ... but not when nobody was accepted: no progress, they wait.
            (
                "250 ok",
                &[
                    "452 4.5.3 too many recipients",
                    "452 4.5.3 too many recipients",
                ],
                Some("554 no valid recipients"),
                None,
                Ok(vec![
                    "452 4.5.3 too many recipients",
                    "452 4.5.3 too many recipients",
                ]),
            ),
            // Another 4xx is an ordinary deferral, not a limit.
            (
                "250 ok",
                &["250 ok", "451 4.3.0 later"],
                Some("354 go"),
                Some("250 queued"),
                Ok(vec!["250 queued", "451 4.3.0 later"]),
            ),
        ];
        for (mail, rcpts, data, end, want) in cases {
            let got = run(mail, rcpts, data, end).map(shown);
            let want = want
                .map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map_err(str::to_string);
            assert_eq!(got, want, "{mail} {rcpts:?} {data:?} {end:?}");
        }
    }

    #[test]
    fn what_follows_the_envelope() {
        let cases: Vec<(&str, &[&str], Option<&str>, Result<Next, &str>)> = vec![
            ("250 ok", &["250 ok"], Some("354 go"), Ok(Next::Content)),
            (
                "250 ok",
                &["550 no"],
                Some("354 go"),
                Ok(Next::EmptyContent),
            ),
            ("250 ok", &["550 no"], Some("554 no"), Ok(Next::Stop)),
            (
                "550 no",
                &["503 no"],
                Some("354 go"),
                Ok(Next::EmptyContent),
            ),
            ("250 ok", &["250 ok"], None, Ok(Next::Stop)),
            (
                "250 ok",
                &["250 ok"],
                Some("250 ok"),
                Err("protocol error: 250 in reply to DATA"),
            ),
        ];
        for (mail, rcpts, data, want) in cases {
            let rs: Vec<Reply> = rcpts.iter().map(|l| reply(l)).collect();
            let got =
                after_data(&reply(mail), &rs, data.map(reply).as_ref()).map_err(|e| e.to_string());
            assert_eq!(
                got,
                want.map_err(str::to_string),
                "{mail} {rcpts:?} {data:?}"
            );
        }
        let rs = [reply("550 no"), reply("250 ok")];
        assert_eq!(wants_data(&reply("250 ok"), &rs), Ok(true));
        assert_eq!(wants_data(&reply("250 ok"), &rs[..1]), Ok(false));
        assert_eq!(wants_data(&reply("451 no"), &rs), Ok(false));
    }

    #[test]
    fn only_a_421_or_a_4_7_x_to_mail_throttles_the_relay() {
        let ok = reply("250 2.0.0 ok");
        let go = reply("354 go ahead");
        let grey = reply("450 4.7.1 <grey@example.net>: Greylisted");
        let closing = reply("421 4.7.0 too many connections");
        let slow = reply("450 4.7.1 rate limit exceeded");
        let busy = reply("451 4.3.0 try again");
        let none: Option<&Reply> = None;
        for (mail, rcpts, data, end, want) in [
            (&ok, vec![ok.clone()], Some(&go), Some(&ok), none),
            (&slow, vec![ok.clone()], None, None, Some(&slow)),
            (
                &ok,
                vec![grey.clone(), ok.clone()],
                Some(&go),
                Some(&ok),
                none,
            ),
            (&ok, vec![ok.clone()], Some(&grey), None, none),
            (&ok, vec![ok.clone()], Some(&go), Some(&grey), none),
            (
                &ok,
                vec![ok.clone(), closing.clone()],
                None,
                None,
                Some(&closing),
            ),
            (&ok, vec![ok.clone()], Some(&closing), None, Some(&closing)),
            (
                &ok,
                vec![ok.clone()],
                Some(&go),
                Some(&closing),
                Some(&closing),
            ),
            (&busy, vec![ok.clone()], None, None, none),
        ] {
            let r = Replies {
                mail,
                rcpts: &rcpts,
                data,
                end,
            };
            assert_eq!(throttling(&r), want, "{mail} {rcpts:?} {data:?} {end:?}");
        }
    }
}
