//! `sendmail -bs`: SMTP on standard input and output, as Symfony Mailer and
//! other libraries speak it to a local sendmail. Each message goes through
//! the same intake as a command-line submission (`submit`), with the SMTP
//! envelope instead of `-t`; 250 after DATA only once the message is durable.
//!
//! SMTP smuggling is closed: only CRLF . CRLF ends the data. A bare LF or CR
//! is a line end in storage, and every stored line that begins with a dot is
//! dot-stuffed again when relayed, so no later server can read a second
//! message out of this one.

use crate::address;
use crate::config::Config;
use crate::error::Error;
use crate::model::{BodyType, Notify, Ret};
use crate::submit::{self, Origin, Submission, Submitted};
use std::io::{self, BufRead, BufReader, Read, Write};

use crate::limits::SMTPD_MAX_COMMAND_LINE as MAX_COMMAND_LINE;

/// Who is on the other end of the pipe, for the sender check.
pub struct Peer {
    /// Root or a member of `trusted_group`: MAIL FROM is taken as given.
    pub trusted: bool,
    /// Login name, for X-Authentication-Warning.
    pub user: String,
}

/// Serves one SMTP session; `queued` is called for every message accepted.
pub fn serve(
    config: &Config,
    origin: &Origin,
    peer: &Peer,
    input: impl Read,
    output: impl Write,
    mut queued: impl FnMut(&Submitted),
) -> io::Result<()> {
    let mut s = Session {
        config,
        origin,
        peer,
        input: BufReader::with_capacity(crate::limits::IO_BUFFER, input),
        out: io::BufWriter::new(output),
        tx: None,
    };
    s.reply(220, &format!("{} ESMTP spoolmail", origin.host))?;
    loop {
        // Replies to pipelined commands go out together, once no more
        // commands are waiting (RFC 2920).
        if s.input.buffer().is_empty() {
            s.out.flush()?;
        }
        let line = match s.read_command()? {
            Command::Eof => break,
            Command::TooLong => {
                s.reply(500, "5.5.2 Error: line too long")?;
                continue;
            }
            Command::NotUtf8 => {
                s.reply(501, "5.5.2 Error: command is not valid UTF-8")?;
                continue;
            }
            Command::Line(l) => l,
        };
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => s.ehlo(arg)?,
            "HELO" => {
                s.tx = None;
                s.reply(250, &s.origin.host.clone())?
            }
            "MAIL" => s.mail(arg)?,
            "RCPT" => s.rcpt(arg)?,
            "DATA" => {
                if let Some(env) = s.data()? {
                    queued(&env);
                }
            }
            "RSET" => {
                s.tx = None;
                s.reply(250, "2.0.0 Ok")?
            }
            "NOOP" => s.reply(250, "2.0.0 Ok")?,
            "VRFY" => s.reply(252, "2.0.0 Cannot VRFY; send some mail and see")?,
            "HELP" => s.reply(
                214,
                "2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
            )?,
            "QUIT" => {
                s.reply(221, "2.0.0 Bye")?;
                break;
            }
            "STARTTLS" | "AUTH" | "BDAT" | "ETRN" | "EXPN" | "TURN" => {
                s.reply(502, "5.5.1 Error: command not implemented")?
            }
            _ => s.reply(500, "5.5.2 Error: command not recognized")?,
        }
    }
    s.out.flush()
}

struct Transaction {
    sender: String,
    recipients: Vec<crate::model::Address>,
    body: Option<BodyType>,
    ret: Option<Ret>,
    envid: Option<String>,
    notify: Option<Notify>,
}

enum Command {
    Line(String),
    TooLong,
    NotUtf8,
    Eof,
}

struct Session<'a, R: Read, W: Write> {
    config: &'a Config,
    origin: &'a Origin,
    peer: &'a Peer,
    input: BufReader<R>,
    out: io::BufWriter<W>,
    tx: Option<Transaction>,
}

impl<R: Read, W: Write> Session<'_, R, W> {
    fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        write!(self.out, "{code} {text}\r\n")
    }

    /// One command line, without its line end; a longer line than allowed
    /// is read to its end and discarded, never buffered.
    fn read_command(&mut self) -> io::Result<Command> {
        let mut line = Vec::with_capacity(128);
        let n = (&mut self.input)
            .take(MAX_COMMAND_LINE as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(Command::Eof);
        }
        if !line.ends_with(b"\n") {
            if n < MAX_COMMAND_LINE {
                return Ok(Command::Eof); // the client went away mid-line
            }
            skip_to_line_end(&mut self.input)?;
            return Ok(Command::TooLong);
        }
        // Addresses reach the envelope from here: no byte may be replaced.
        match String::from_utf8(line) {
            Ok(text) => Ok(Command::Line(
                text.trim_end_matches(['\r', '\n']).to_string(),
            )),
            Err(_) => Ok(Command::NotUtf8),
        }
    }

    fn ehlo(&mut self, _arg: &str) -> io::Result<()> {
        self.tx = None;
        let size = self.config.max_message_size;
        let lines = [
            self.origin.host.clone(),
            "PIPELINING".into(),
            if size > 0 {
                format!("SIZE {size}")
            } else {
                "SIZE".into()
            },
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "DSN".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        for (i, l) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            write!(self.out, "250{sep}{l}\r\n")?;
        }
        Ok(())
    }

    fn mail(&mut self, arg: &str) -> io::Result<()> {
        if self.tx.is_some() {
            return self.reply(503, "5.5.1 Error: nested MAIL command");
        }
        if let Err(e) = submit::check_free_space(self.config) {
            return self.reply(452, &format!("4.3.1 {e}"));
        }
        let Some(rest) = strip_prefix_ci(arg, "FROM:") else {
            return self.reply(501, "5.5.4 Syntax: MAIL FROM:<address>");
        };
        let Some((addr, params)) = path_and_params(rest) else {
            return self.reply(501, "5.1.7 Bad sender address syntax");
        };
        let sender = if addr.is_empty() {
            String::new()
        } else {
            match address::validate(&addr)
                .and_then(|a| address::validate(&address::qualify(&a, &self.origin.domain)))
            {
                Ok(a) => a,
                Err(_) => return self.reply(501, "5.1.7 Bad sender address syntax"),
            }
        };
        if let Err(e) = address::check_usual(&sender, self.config.allow_unusual_quoted_local_parts)
        {
            return self.reply(553, &format!("5.1.7 {}", one_line(&e)));
        }
        let mut tx = Transaction {
            sender,
            recipients: Vec::new(),
            body: None,
            ret: None,
            envid: None,
            notify: None,
        };
        for p in params {
            let (key, value) = p.split_once('=').unwrap_or((p, ""));
            match key.to_ascii_uppercase().as_str() {
                "SIZE" => match value.parse::<u64>() {
                    Ok(n)
                        if self.config.max_message_size > 0 && n > self.config.max_message_size =>
                    {
                        return self.reply(552, "5.3.4 Message size exceeds fixed limit");
                    }
                    // As Postfix: a SIZE the free space less the reserve
                    // cannot hold is refused before the data comes.
                    Ok(n) => {
                        if let Err(e) = submit::check_free_space_for(self.config, n) {
                            return self.reply(452, &format!("4.3.1 {e}"));
                        }
                    }
                    Err(_) => return self.reply(501, "5.5.4 Bad SIZE parameter"),
                },
                "BODY" => match BodyType::parse(value) {
                    Some(body) => tx.body = Some(body),
                    None => return self.reply(501, "5.5.4 Unsupported BODY parameter"),
                },
                "SMTPUTF8" if value.is_empty() => {}
                "RET" => match Ret::parse(value) {
                    Some(ret) => tx.ret = Some(ret),
                    None => return self.reply(501, "5.5.4 Bad RET parameter"),
                },
                "ENVID" => match decode_xtext(value).filter(|v| {
                    !v.is_empty()
                        && v.len() <= crate::limits::MAX_ENVID_LEN
                        && v.bytes().all(|b| b.is_ascii_graphic())
                }) {
                    Some(v) => tx.envid = Some(v),
                    None => return self.reply(501, "5.5.4 Bad ENVID parameter"),
                },
                _ => return self.reply(555, "5.5.4 Unsupported option"),
            }
        }
        self.tx = Some(tx);
        self.reply(250, "2.1.0 Ok")
    }

    fn rcpt(&mut self, arg: &str) -> io::Result<()> {
        let max = self.config.max_recipients;
        let Some(tx) = self.tx.as_mut() else {
            return self.reply(503, "5.5.1 Error: need MAIL command");
        };
        let Some(rest) = strip_prefix_ci(arg, "TO:") else {
            return self.reply(501, "5.5.4 Syntax: RCPT TO:<address>");
        };
        let Some((addr, params)) = path_and_params(rest) else {
            return self.reply(501, "5.1.3 Bad recipient address syntax");
        };
        let Ok(addr) = address::parse(&addr) else {
            return self.reply(501, "5.1.3 Bad recipient address syntax");
        };
        if let Err(e) =
            address::check_usual_address(&addr, self.config.allow_unusual_quoted_local_parts)
        {
            return self.reply(553, &format!("5.1.3 {}", one_line(&e)));
        }
        let mut notify = None;
        for p in params {
            let (key, value) = p.split_once('=').unwrap_or((p, ""));
            match key.to_ascii_uppercase().as_str() {
                "NOTIFY" => match Notify::parse(value) {
                    Some(n) => notify = Some(n),
                    None => return self.reply(501, "5.5.4 Bad NOTIFY parameter"),
                },
                // Accepted; spoolmail records the address as given instead.
                "ORCPT" => {}
                _ => return self.reply(555, "5.5.4 Unsupported option"),
            }
        }
        if tx.recipients.len() >= max {
            return self.reply(452, "4.5.3 Error: too many recipients");
        }
        // The spool keeps one NOTIFY per message: the first one given.
        if tx.notify.is_none() {
            tx.notify = notify;
        }
        tx.recipients.push(addr);
        self.reply(250, "2.1.5 Ok")
    }

    /// Reads the message and queues it; the envelope when it was queued.
    fn data(&mut self) -> io::Result<Option<Submitted>> {
        let Some(tx) = self.tx.take() else {
            return self
                .reply(503, "5.5.1 Error: need RCPT command")
                .map(|_| None);
        };
        if tx.recipients.is_empty() {
            return self
                .reply(554, "5.5.1 Error: no valid recipients")
                .map(|_| None);
        }
        if let Err(e) = submit::check_free_space(self.config) {
            return self.reply(452, &format!("4.3.1 {e}")).map(|_| None);
        }
        self.reply(354, "End data with <CR><LF>.<CR><LF>")?;
        self.out.flush()?;
        let sub = Submission {
            extra_headers: submit::authentication_warning(
                self.origin,
                &self.peer.user,
                self.peer.trusted,
                &tx.sender,
                submit::SenderSetBy::SmtpSession,
            ),
            sender: tx.sender,
            recipients: tx.recipients,
            extract_recipients: false,
            ignore_dots: true,
            full_name: None,
            body_type: tx.body,
            ret: tx.ret,
            envid: tx.envid,
            notify: tx.notify,
        };
        let mut data = DataReader::new(&mut self.input);
        let result = submit::submit(&sub, self.config, self.origin, &mut data);
        // Whatever happened, the rest of the data is read, so that the
        // session stays in step with the client.
        if !data.eof_before_end {
            io::copy(&mut data, &mut io::sink())?;
        }
        if data.eof_before_end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client went away during DATA",
            ));
        }
        match result {
            Ok(done) => {
                self.reply(250, &format!("2.0.0 Ok: queued as {}", done.envelope.id))?;
                Ok(Some(done))
            }
            Err(Error::TooBig { .. }) => self
                .reply(552, "5.3.4 Error: message file too big")
                .map(|_| None),
            Err(e @ Error::NoSpace(_)) => self
                .reply(452, &format!("4.3.1 {}", one_line(&e)))
                .map(|_| None),
            Err(e @ (Error::Data(_) | Error::Usage(_))) => self
                .reply(554, &format!("5.6.0 Error: {}", one_line(&e)))
                .map(|_| None),
            Err(e) => self
                .reply(
                    451,
                    &format!("4.3.0 Error: queue file write error: {}", one_line(&e)),
                )
                .map(|_| None),
        }
    }
}

fn one_line(e: &Error) -> String {
    e.to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn skip_to_line_end(input: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

fn strip_prefix_ci<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s[prefix.len()..].trim_start())
}

/// `<addr> PARAM=V ...` into the address and its parameters. The address
/// may hold `>` inside a quoted local part.
fn path_and_params(s: &str) -> Option<(String, Vec<&str>)> {
    let rest = s.strip_prefix('<')?;
    let mut in_quotes = false;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in rest.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '>' if !in_quotes => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end?;
    let mut addr = &rest[..end];
    // An obsolete source route, `<@a,@b:user@c>`, is dropped.
    if addr.starts_with('@') {
        addr = addr.split_once(':')?.1;
    }
    let params: Vec<&str> = rest[end + 1..].split_whitespace().collect();
    Some((addr.to_string(), params))
}

fn decode_xtext(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The DATA section: undoes dot-stuffing and ends at CRLF . CRLF only.
struct DataReader<'r, R> {
    input: &'r mut BufReader<R>,
    pending: Vec<u8>,
    pos: usize,
    /// The previous piece ended with CRLF (its CR may have ended the piece
    /// before it): the next one starts a line.
    after_crlf: bool,
    /// The previous piece ended with a CR, which a LF starting the next
    /// piece makes a CRLF: where reads split a line must not matter.
    after_cr: bool,
    done: bool,
    eof_before_end: bool,
}

impl<'r, R: Read> DataReader<'r, R> {
    fn new(input: &'r mut BufReader<R>) -> Self {
        DataReader {
            input,
            pending: Vec::new(),
            pos: 0,
            after_crlf: true,
            after_cr: false,
            done: false,
            eof_before_end: false,
        }
    }

    fn next_piece(&mut self) -> io::Result<()> {
        self.pending.clear();
        self.pos = 0;
        let n = (&mut *self.input)
            .take(crate::limits::SMTPD_DATA_PIECE)
            .read_until(b'\n', &mut self.pending)?;
        if n == 0 {
            // The client went away: an error, so that intake discards the
            // draft instead of queuing a truncated message.
            self.done = true;
            self.eof_before_end = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client went away during DATA",
            ));
        }
        let line_start = self.after_crlf;
        if line_start && self.pending == b".\r\n" {
            self.pending.clear();
            self.done = true;
            return Ok(());
        }
        self.after_crlf =
            self.pending.ends_with(b"\r\n") || (self.after_cr && self.pending == b"\n");
        self.after_cr = self.pending.ends_with(b"\r");
        if line_start && self.pending.first() == Some(&b'.') {
            self.pos = 1;
        }
        Ok(())
    }
}

impl<R: Read> Read for DataReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.pending.len() {
            if self.done {
                return Ok(0);
            }
            self.next_piece()?;
        }
        let n = out.len().min(self.pending.len() - self.pos);
        out[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(input: &[u8]) -> (Vec<u8>, Vec<u8>, bool) {
        let mut r = BufReader::new(input);
        let mut d = DataReader::new(&mut r);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        let eof = d.eof_before_end;
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        (out, rest, eof)
    }

    #[test]
    fn data_ends_only_at_crlf_dot_crlf() {
        let (out, rest, eof) = data(b"a\r\n..b\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"a\r\n.b\r\n");
        assert_eq!(rest, b"QUIT\r\n");
        assert!(!eof);
    }

    #[test]
    fn smuggling_forms_do_not_end_data() {
        for trick in [
            &b"x\n.\r\nMAIL FROM:<e@vil>\r\n"[..],
            b"x\r\n.\nMAIL FROM:<e@vil>\r\n",
            b"x\r.\rMAIL FROM:<e@vil>\r\n",
            b"x\n.\nMAIL FROM:<e@vil>\r\n",
        ] {
            let mut input = trick.to_vec();
            input.extend_from_slice(b"\r\n.\r\n");
            let (out, rest, _) = data(&input);
            assert!(rest.is_empty(), "{trick:?} ended the data early");
            assert!(out.windows(9).any(|w| w == b"MAIL FROM"), "{trick:?}");
        }
    }

    #[test]
    fn paths_and_params() {
        assert_eq!(
            path_and_params("<a@b> SIZE=10 BODY=8BITMIME"),
            Some(("a@b".into(), vec!["SIZE=10", "BODY=8BITMIME"]))
        );
        assert_eq!(
            path_and_params("<\"x>y\"@b>"),
            Some(("\"x>y\"@b".into(), vec![]))
        );
        assert_eq!(
            path_and_params("<@r1,@r2:u@c>"),
            Some(("u@c".into(), vec![]))
        );
        assert_eq!(path_and_params("<>"), Some((String::new(), vec![])));
        assert_eq!(path_and_params("a@b"), None);
        assert_eq!(decode_xtext("a+2Bb").as_deref(), Some("a+b"));
    }

    /// Hands out the input in pieces of a chosen size, as a pipe may.
    struct Pieces<'a> {
        data: &'a [u8],
        size: usize,
    }

    impl Read for Pieces<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.size.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Every position of a line end around the 64 KiB piece (and its
    /// double), read in pieces of several sizes: the line ends where it
    /// ends, the next line's dot is unstuffed and the data ends at the dot.
    #[test]
    fn line_ends_straddling_the_read_piece() {
        let piece = crate::limits::SMTPD_DATA_PIECE as usize;
        let lengths = (piece - 3..=piece + 2).chain(2 * piece - 3..=2 * piece + 2);
        for len in lengths {
            let mut input = b"a\r\n".to_vec();
            input.extend(std::iter::repeat_n(b'x', len));
            input.extend_from_slice(b"\r\n..b\r\n.\r\nQUIT\r\n");
            let mut want = b"a\r\n".to_vec();
            want.extend(std::iter::repeat_n(b'x', len));
            want.extend_from_slice(b"\r\n.b\r\n");
            for size in [7, 4096, piece - 1, piece, piece + 1, usize::MAX] {
                let mut r = BufReader::new(Pieces { data: &input, size });
                let mut d = DataReader::new(&mut r);
                let mut out = Vec::new();
                d.read_to_end(&mut out).unwrap();
                assert!(!d.eof_before_end, "line {len}, reads of {size}");
                assert!(out == want, "line {len}, reads of {size}: wrong data");
                let mut rest = Vec::new();
                r.read_to_end(&mut rest).unwrap();
                assert_eq!(rest, b"QUIT\r\n", "line {len}, reads of {size}");
            }
        }
    }
}
