//! The SMTP client's protocol rules, without a socket: reading replies,
//! EHLO capabilities, building MAIL and RCPT with their parameters,
//! dot-stuffing, and what a transaction's replies mean for each recipient.
//! The client in `client.rs` only moves bytes and applies these.

use crate::model::{EnhancedCode, Outcome, Reply};
use std::fmt;

/// A reply line longer than this, or a reply of more lines, is a protocol
/// error: a hostile server cannot make the client buffer without bound.
pub const MAX_REPLY_LINE: usize = 4096;
pub const MAX_REPLY_LINES: usize = 200;

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
}

impl ReplyReader {
    /// Takes one line as read (at most MAX_REPLY_LINE + 1 bytes, its CRLF
    /// included); the reply once its last line came. Every line of a
    /// multi-line reply must carry the same code.
    pub fn push(&mut self, raw: &[u8]) -> Result<Option<RawReply>, BadReply> {
        if raw.len() > MAX_REPLY_LINE || self.lines.len() >= MAX_REPLY_LINES {
            return Err(BadReply::TooLong);
        }
        let text = printable(raw);
        let code = text
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .filter(|c| self.code.is_none_or(|first| first == *c));
        let malformed = || BadReply::Malformed(text.chars().take(80).collect());
        let code = code.ok_or_else(malformed)?;
        self.code = Some(code);
        self.lines.push(text.get(4..).unwrap_or("").to_string());
        match text.as_bytes().get(3) {
            Some(b'-') => Ok(None),
            None | Some(b' ') => Ok(Some(RawReply {
                code,
                lines: std::mem::take(&mut self.lines),
            })),
            Some(_) => Err(malformed()),
        }
    }
}

/// A line without its line end and without control characters.
pub fn printable(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_end_matches(['\r', '\n'])
        .chars()
        .filter(|c| !c.is_control())
        .collect()
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
#[derive(Debug, Default, Clone)]
pub struct RcptParams<'a> {
    pub address: &'a str,
    /// DSN NOTIFY, as it goes on the wire (`SUCCESS,FAILURE`).
    pub notify: Option<&'a str>,
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
            outcomes: all(Outcome::Reply(r.mail.clone())),
            again: Vec::new(),
        });
    }
    let accepted = |i: &usize| r.rcpts[*i].class() == 2;
    let progress = (0..r.rcpts.len()).any(|i| accepted(&i));
    let for_accepted = match (r.data, end) {
        (Some(d), _) if d.class() != 3 => Outcome::Reply(d.clone()),
        (_, Some(end)) if next == Next::Content => Outcome::Reply(end.clone()),
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
            f.outcomes.push((i, Outcome::Reply(reply.clone())));
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests;
