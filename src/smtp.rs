//! The SMTP client: one connection to one server, any number of
//! transactions over it. EHLO (HELO fallback), PIPELINING, SIZE, 8BITMIME,
//! SMTPUTF8, DSN parameters, enhanced status codes, and the message streamed
//! from the spool with CRLF and dot-stuffing.
//!
//! Every read has a timeout (RFC 5321 section 4.5.3.2's by default); a server
//! that stops talking costs one step's timeout, and the queue runner's
//! deadline per transaction bounds the whole.
//!
//! Securing the connection happens in `connect`: TLS from the first byte or
//! STARTTLS (RFC 3207: nothing the server sent before the handshake may be
//! read after it, and everything learned before it is forgotten), then AUTH
//! (RFC 4954) when credentials are given, never without verified TLS unless
//! allowed, and never shown: the `-v` transcript says `AUTH PLAIN ***`.

use crate::auth::Credentials;
use crate::config::Timeouts;
use crate::spool::Envelope;
use crate::tls::{HandshakeError, Stream, Tls, TlsInfo, Trust};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Commands and message data are written in chunks of this size at most.
const WRITE_CHUNK: usize = 64 * 1024;

/// A reply line longer than this, or a reply of more lines, is a protocol
/// error: a hostile server cannot make the client buffer without bound.
const MAX_REPLY_LINE: usize = 4096;
const MAX_REPLY_LINES: usize = 200;

/// One server's reply: the code and its lines, control characters removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl fmt::Display for Reply {
    /// `550 5.1.1 <bob@x>: user unknown`, multi-line replies joined by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" ").trim())
    }
}

/// A failure of the connection as a whole: every recipient of the
/// transaction in progress waits for the next attempt.
#[derive(Debug)]
pub struct SessionError {
    pub text: String,
    /// The server said no with a 5xx at the greeting or EHLO/HELO: another
    /// MX may still take it, but this host will not.
    pub permanent: bool,
    /// A reused connection failed before the server took anything of this
    /// message (the server closed an idle connection, or said 421): safe to
    /// try the message again at once on a fresh connection.
    pub stale: bool,
    /// The TLS handshake failed (not: the certificate did not verify): a
    /// new connection without TLS may work, where policy allows it.
    pub tls_failed: bool,
}

impl SessionError {
    pub fn temporary(text: String) -> SessionError {
        SessionError {
            text,
            permanent: false,
            stale: false,
            tls_failed: false,
        }
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What happened to one recipient in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent(String),
    Deferred(String),
    Failed(String),
}

impl Outcome {
    fn from_reply(r: &Reply) -> Outcome {
        if r.is_positive() {
            Outcome::Sent(r.to_string())
        } else if r.is_permanent() {
            Outcome::Failed(r.to_string())
        } else {
            Outcome::Deferred(r.to_string())
        }
    }
}

#[derive(Debug, Default, Clone)]
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
    fn from_ehlo(reply: &Reply) -> Capabilities {
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

/// One recipient of a transaction: its index in the envelope, the address,
/// and the address as the user wrote it (for ORCPT).
pub struct Rcpt<'a> {
    pub index: usize,
    pub address: &'a str,
    pub orcpt: Option<&'a str>,
}

/// How one connection is secured.
pub enum TlsMode<'a> {
    /// Plain text (`tls = off`, or a retry after a failed handshake).
    Off,
    /// STARTTLS when offered; with `required`, STARTTLS is mandatory and the
    /// certificate must verify.
    Starttls { tls: &'a Tls, required: bool },
    /// TLS from the first byte (port 465); with `required`, the certificate
    /// must verify.
    Implicit { tls: &'a Tls, required: bool },
}

/// Everything `connect` needs besides the address.
pub struct Setup<'a> {
    pub helo_name: &'a str,
    pub timeouts: &'a Timeouts,
    pub verbose: bool,
    pub tls: TlsMode<'a>,
    /// AUTH with these (smarthosts only).
    pub auth: Option<&'a Credentials>,
}

pub struct Client {
    /// Reads go through the buffer; writes collect in `out` and go to
    /// `reader.get_mut()` in large chunks.
    reader: BufReader<Stream>,
    out: Vec<u8>,
    /// `host[ip]:port`, as Postfix logs a relay.
    pub peer: String,
    pub caps: Capabilities,
    /// The connection's TLS, when it has any.
    pub tls: Option<TlsInfo>,
    /// What happened while connecting that the log should say (STARTTLS
    /// refused, going on in plain text).
    pub notes: Vec<String>,
    verbose: bool,
    transactions: u32,
    /// A MAIL was accepted and the transaction did not reach its end of
    /// data: the next one starts with RSET.
    open_transaction: bool,
}

impl Client {
    /// Connects, reads the greeting and introduces itself with EHLO (HELO
    /// when EHLO is refused), secures the connection as `setup.tls` says
    /// and authenticates when credentials are given.
    pub fn connect(host: &str, addr: SocketAddr, setup: &Setup) -> Result<Client, SessionError> {
        let t = setup.timeouts;
        let peer = format!("{host}[{}]:{}", addr.ip(), addr.port());
        let tcp = TcpStream::connect_timeout(&addr, t.connect).map_err(|e| {
            SessionError::temporary(format!("connect to {peer}: {}", describe_io(&e)))
        })?;
        let _ = tcp.set_nodelay(true);
        let (stream, tls) = match setup.tls {
            TlsMode::Implicit { tls, required } => {
                let (s, info) = handshake(tls, tcp, host, required, &peer, t.greeting)?;
                (s, Some(info))
            }
            _ => (Stream::Plain(tcp), None),
        };
        let mut client = Client {
            reader: BufReader::with_capacity(16 * 1024, stream),
            out: Vec::with_capacity(WRITE_CHUNK),
            peer,
            caps: Capabilities::default(),
            tls,
            notes: Vec::new(),
            verbose: setup.verbose,
            transactions: 0,
            open_transaction: false,
        };
        client.show_tls();
        let greeting = client.read_reply(t.greeting, "the greeting")?;
        if greeting.code != 220 {
            return Err(client.refused("greeted us with", &greeting));
        }
        client.send_line(&format!("EHLO {}", setup.helo_name))?;
        let ehlo = client.read_reply(t.helo, "EHLO")?;
        if ehlo.code == 250 {
            client.caps = Capabilities::from_ehlo(&ehlo);
        } else {
            client.send_line(&format!("HELO {}", setup.helo_name))?;
            let helo = client.read_reply(t.helo, "HELO")?;
            if helo.code != 250 {
                return Err(client.refused("refused HELO:", &helo));
            }
        }
        if let TlsMode::Starttls { tls, required } = setup.tls {
            client = client.starttls(tls, required, host, setup)?;
        }
        if let Some(creds) = setup.auth {
            client.authenticate(creds, t)?;
        }
        Ok(client)
    }

    /// STARTTLS when offered (or required), the handshake, and EHLO again
    /// over TLS with everything learned before forgotten (RFC 3207 4.2).
    fn starttls(
        mut self,
        tls: &Tls,
        required: bool,
        host: &str,
        setup: &Setup,
    ) -> Result<Client, SessionError> {
        let t = setup.timeouts;
        if !self.caps.starttls {
            if required {
                let text = format!(
                    "TLS is required, but host {} does not offer STARTTLS",
                    self.peer
                );
                self.quit();
                return Err(SessionError::temporary(text));
            }
            return Ok(self);
        }
        self.send_line("STARTTLS")?;
        let reply = self.read_reply(t.helo, "STARTTLS")?;
        if reply.code != 220 {
            let text = format!("host {} said {reply} to STARTTLS", self.peer);
            if required {
                self.quit();
                return Err(SessionError::temporary(format!(
                    "TLS is required, but {text}"
                )));
            }
            self.notes.push(format!("{text}; going on without TLS"));
            return Ok(self);
        }
        // Whatever follows the 220 before our handshake was never sent under
        // TLS, yet would be read as if it were (the STARTTLS injection of
        // CVE-2011-0411, turned against a client): refuse, say nothing more.
        if !self.reader.buffer().is_empty() || bytes_waiting(self.reader.get_ref().tcp()) {
            return Err(SessionError::temporary(format!(
                "host {} sent data after its 220 reply to STARTTLS, before the TLS handshake \
                 (a STARTTLS injection attempt?); connection closed",
                self.peer
            )));
        }
        let Client {
            reader,
            out,
            peer,
            verbose,
            ..
        } = self;
        let Stream::Plain(tcp) = reader.into_inner() else {
            unreachable!("STARTTLS is only offered to a plain connection")
        };
        let (stream, info) = handshake(tls, tcp, host, required, &peer, t.helo)?;
        let mut client = Client {
            reader: BufReader::with_capacity(16 * 1024, stream),
            out,
            peer,
            caps: Capabilities::default(),
            tls: Some(info),
            notes: Vec::new(),
            verbose,
            transactions: 0,
            open_transaction: false,
        };
        client.show_tls();
        client.send_line(&format!("EHLO {}", setup.helo_name))?;
        let ehlo = client.read_reply(t.helo, "EHLO")?;
        if ehlo.code != 250 {
            return Err(client.refused("refused EHLO after STARTTLS:", &ehlo));
        }
        client.caps = Capabilities::from_ehlo(&ehlo);
        Ok(client)
    }

    /// AUTH with the first mechanism the server offers that the credentials
    /// can use. Credentials go only over TLS whose certificate verified,
    /// unless `auth_allow_plaintext`. Every failure is temporary: a 535 may
    /// be a password about to be fixed, and must never bounce mail.
    fn authenticate(&mut self, creds: &Credentials, t: &Timeouts) -> Result<(), SessionError> {
        let verified = self
            .tls
            .as_ref()
            .is_some_and(|i| i.trust == Trust::Verified);
        if !verified && !creds.allow_plaintext {
            let how = match &self.tls {
                None => "without TLS".to_string(),
                Some(i) => format!(
                    "over TLS whose certificate did not verify ({})",
                    i.problem.as_deref().unwrap_or("not verified")
                ),
            };
            let text = format!(
                "not sending credentials to {} {how} (tls = required, tls_ca_file, \
                 or auth_allow_plaintext = yes)",
                self.peer
            );
            self.quit_in_place();
            return Err(SessionError::temporary(text));
        }
        if self.caps.auth.is_empty() {
            let text = format!(
                "host {} does not offer AUTH, but auth_user is set",
                self.peer
            );
            self.quit_in_place();
            return Err(SessionError::temporary(text));
        }
        let Some(mech) = creds.choose(&self.caps.auth) else {
            let usable: Vec<&str> = creds.usable().iter().map(|m| m.name()).collect();
            let text = format!(
                "host {} offers AUTH {}, but these credentials need {}",
                self.peer,
                self.caps.auth.join(" "),
                usable.join(" or ")
            );
            self.quit_in_place();
            return Err(SessionError::temporary(text));
        };
        let exchange = creds.exchange(mech);
        self.send_secret(&exchange.command, &format!("AUTH {} ***", mech.name()))?;
        let mut responses = exchange.responses.into_iter();
        // A server that keeps asking is cut short.
        for _ in 0..8 {
            let reply = self.read_reply(t.helo, "AUTH")?;
            match reply.code {
                235 => return Ok(()),
                334 => {
                    let next = responses.next().unwrap_or_default();
                    self.send_secret(&next, if next.is_empty() { "" } else { "***" })?;
                }
                _ => {
                    let text = format!(
                        "SASL authentication failed; server {} said: {reply} (AUTH {})",
                        self.peer,
                        mech.name()
                    );
                    self.quit_in_place();
                    return Err(SessionError::temporary(text));
                }
            }
        }
        Err(SessionError::temporary(format!(
            "SASL authentication with {} did not end (AUTH {})",
            self.peer,
            mech.name()
        )))
    }

    fn show_tls(&self) {
        if self.verbose
            && let Some(info) = &self.tls
        {
            eprintln!("spoolmail: {}", info.log_line(&self.peer));
        }
    }

    fn refused(&self, what: &str, reply: &Reply) -> SessionError {
        SessionError {
            text: format!("host {} {what} {reply}", self.peer),
            permanent: reply.is_permanent(),
            stale: false,
            tls_failed: false,
        }
    }

    /// Sends one message to `rcpts` and returns each recipient's outcome.
    /// `content` is the stored message (LF line endings), `size` its length.
    /// An Err means the connection is no longer usable.
    pub fn send(
        &mut self,
        env: &Envelope,
        rcpts: &[Rcpt],
        content: &mut impl BufRead,
        size: u64,
        t: &Timeouts,
    ) -> Result<Vec<(usize, Outcome)>, SessionError> {
        let all = |o: Outcome| {
            rcpts
                .iter()
                .map(|r| (r.index, o.clone()))
                .collect::<Vec<_>>()
        };
        if let Some(limit) = self.caps.size.filter(|l| *l > 0 && size > *l) {
            return Ok(all(Outcome::Failed(format!(
                "552 5.3.4 message size {size} exceeds size limit {limit} of server {}",
                self.peer
            ))));
        }
        if env.smtputf8 && !self.caps.smtputf8 {
            return Ok(all(Outcome::Failed(format!(
                "553 5.6.7 SMTPUTF8 is required for a non-ASCII address, but was not offered by {}",
                self.peer
            ))));
        }
        let reused = self.transactions > 0;
        let stale = |mut e: SessionError| {
            e.stale = reused;
            e
        };
        // RSET only after a transaction left open (MAIL taken, no end of
        // data): after a finished one the server is ready for MAIL, and an
        // RSET would cost a round trip per message.
        if self.open_transaction {
            self.open_transaction = false;
            self.send_line("RSET").map_err(stale)?;
            let rset = self.read_reply(t.mail, "RSET").map_err(stale)?;
            if !rset.is_positive() {
                return Err(stale(SessionError::temporary(format!(
                    "host {} said {rset} to RSET",
                    self.peer
                ))));
            }
        }
        self.transactions += 1;

        let mail = self.mail_command(env, size);
        let rcpt_cmds: Vec<String> = rcpts.iter().map(|r| self.rcpt_command(env, r)).collect();
        let (mail_reply, rcpt_replies, data_reply) = if self.caps.pipelining {
            // One write for the whole envelope: no round trip per command.
            self.queue_line(&mail)?;
            for c in &rcpt_cmds {
                self.queue_line(c)?;
            }
            self.queue_line("DATA")?;
            self.flush().map_err(stale)?;
            let m = self.read_reply(t.mail, "MAIL FROM").map_err(stale)?;
            if reused && m.code == 421 {
                return Err(stale(SessionError::temporary(format!(
                    "host {} said {m}",
                    self.peer
                ))));
            }
            // After a refused MAIL nothing of this message was taken: a
            // connection lost now is as safe to retry as one lost before.
            let taken = m.is_positive();
            let after_mail = |e: SessionError| if taken { e } else { stale(e) };
            let mut rs = Vec::with_capacity(rcpts.len());
            for _ in rcpts {
                rs.push(self.read_reply(t.rcpt, "RCPT TO").map_err(after_mail)?);
            }
            let d = self.read_reply(t.data_init, "DATA").map_err(after_mail)?;
            (m, rs, Some(d))
        } else {
            self.send_line(&mail).map_err(stale)?;
            let m = self.read_reply(t.mail, "MAIL FROM").map_err(stale)?;
            let mut rs = Vec::new();
            if m.is_positive() {
                for c in &rcpt_cmds {
                    self.send_line(c)?;
                    rs.push(self.read_reply(t.rcpt, "RCPT TO")?);
                }
            }
            let d = if rs.iter().any(Reply::is_positive) {
                self.send_line("DATA")?;
                Some(self.read_reply(t.data_init, "DATA")?)
            } else {
                None
            };
            (m, rs, d)
        };

        self.open_transaction = mail_reply.is_positive();
        if reused && mail_reply.code == 421 {
            return Err(stale(SessionError::temporary(format!(
                "host {} said {mail_reply}",
                self.peer
            ))));
        }
        if !mail_reply.is_positive() {
            if data_reply.as_ref().is_some_and(|d| d.code == 354) {
                self.end_data_empty(t)?;
            }
            return Ok(all(Outcome::from_reply(&mail_reply)));
        }
        let mut outcomes: Vec<(usize, Outcome)> = Vec::with_capacity(rcpts.len());
        let mut accepted = Vec::new();
        for (r, reply) in rcpts.iter().zip(&rcpt_replies) {
            if reply.is_positive() {
                accepted.push(r.index);
            } else {
                outcomes.push((r.index, Outcome::from_reply(reply)));
            }
        }
        let Some(data_reply) = data_reply else {
            return Ok(outcomes);
        };
        if data_reply.code != 354 {
            for i in accepted {
                outcomes.push((i, Outcome::from_reply(&data_reply)));
            }
            return Ok(outcomes);
        }
        if accepted.is_empty() {
            // Every RCPT failed but the server still wants data: send none.
            self.end_data_empty(t)?;
            self.open_transaction = false;
            return Ok(outcomes);
        }
        self.stream_data(content, t)?;
        let done = self.read_reply(t.data_done, "the end of data")?;
        self.open_transaction = false;
        for i in accepted {
            outcomes.push((i, Outcome::from_reply(&done)));
        }
        Ok(outcomes)
    }

    pub fn quit(mut self) {
        self.quit_in_place();
    }

    /// QUIT, its reply, and TLS's close_notify; the connection is done.
    fn quit_in_place(&mut self) {
        if self.send_line("QUIT").is_ok() {
            let _ = self.read_reply(Duration::from_secs(5), "QUIT");
        }
        self.reader.get_mut().close_notify();
    }

    fn mail_command(&self, env: &Envelope, size: u64) -> String {
        let mut cmd = format!("MAIL FROM:<{}>", env.sender);
        if self.caps.size.is_some() {
            cmd.push_str(&format!(" SIZE={size}"));
        }
        if env.body == crate::cli::BodyType::EightBitMime && self.caps.eightbitmime {
            cmd.push_str(" BODY=8BITMIME");
        }
        if env.smtputf8 {
            cmd.push_str(" SMTPUTF8");
        }
        if self.caps.dsn {
            if let Some(ret) = env.ret {
                cmd.push_str(if ret == crate::cli::Ret::Full {
                    " RET=FULL"
                } else {
                    " RET=HDRS"
                });
            }
            if let Some(envid) = &env.envid {
                cmd.push_str(&format!(" ENVID={}", xtext(envid)));
            }
        }
        cmd
    }

    fn rcpt_command(&self, env: &Envelope, r: &Rcpt) -> String {
        let mut cmd = format!("RCPT TO:<{}>", r.address);
        if self.caps.dsn {
            if let Some(notify) = &env.notify {
                cmd.push_str(&format!(" NOTIFY={notify}"));
            }
            if let Some(orcpt) = r.orcpt.filter(|o| o.is_ascii()) {
                cmd.push_str(&format!(" ORCPT=rfc822;{}", xtext(orcpt)));
            }
        }
        cmd
    }

    /// The message, LF lines turned into CRLF and leading dots doubled,
    /// then the terminating dot. Written in large buffered writes: a client
    /// that writes line by line stalls on the peer's delayed ACK.
    fn stream_data(
        &mut self,
        content: &mut impl BufRead,
        t: &Timeouts,
    ) -> Result<(), SessionError> {
        self.set_write_timeout(t.data_block)?;
        let peer = self.peer.clone();
        let werr = |e: io::Error| {
            SessionError::temporary(format!(
                "lost connection with {peer} while sending message content: {}",
                describe_io(&e)
            ))
        };
        let mut at_line_start = true;
        loop {
            let chunk = content.fill_buf().map_err(|e| {
                SessionError::temporary(format!("cannot read the queued message: {e}"))
            })?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            let mut rest = chunk;
            while !rest.is_empty() {
                if at_line_start && rest[0] == b'.' {
                    self.put(b".").map_err(werr)?;
                }
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.put(&rest[..i]).map_err(werr)?;
                        self.put(b"\r\n").map_err(werr)?;
                        rest = &rest[i + 1..];
                        at_line_start = true;
                    }
                    None => {
                        self.put(rest).map_err(werr)?;
                        rest = &[];
                        at_line_start = false;
                    }
                }
            }
            content.consume(n);
        }
        if !at_line_start {
            self.put(b"\r\n").map_err(werr)?;
        }
        if self.verbose {
            eprintln!(">>> (message content)");
        }
        self.queue_line(".")?;
        self.flush()
    }

    fn end_data_empty(&mut self, t: &Timeouts) -> Result<(), SessionError> {
        self.send_line(".")?;
        self.read_reply(t.data_done, "the end of data").map(|_| ())
    }

    fn set_write_timeout(&mut self, d: Duration) -> Result<(), SessionError> {
        self.reader
            .get_ref()
            .tcp()
            .set_write_timeout(Some(d))
            .map_err(|e| SessionError::temporary(format!("{}: {e}", self.peer)))
    }

    /// Adds to the output, writing it out once a chunk is full.
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(bytes);
        if self.out.len() >= WRITE_CHUNK {
            self.write_out()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(&self.out)?;
        stream.flush()?;
        self.out.clear();
        Ok(())
    }

    fn queue_line(&mut self, line: &str) -> Result<(), SessionError> {
        self.queue_line_shown(line, line)
    }

    /// Queues `line`, showing `shown` in the `-v` transcript instead (a
    /// secret as `***`).
    fn queue_line_shown(&mut self, line: &str, shown: &str) -> Result<(), SessionError> {
        debug_assert!(
            !line.contains(['\r', '\n']),
            "SMTP command with a line break"
        );
        if self.verbose {
            eprintln!(">>> {shown}");
        }
        let r = self.put(line.as_bytes()).and_then(|()| self.put(b"\r\n"));
        let during = if line == shown { line } else { "AUTH" };
        r.map_err(|e| self.lost(&e, during))
    }

    fn flush(&mut self) -> Result<(), SessionError> {
        self.write_out().map_err(|e| self.lost(&e, "commands"))
    }

    fn send_line(&mut self, line: &str) -> Result<(), SessionError> {
        self.set_write_timeout(Duration::from_secs(300))?;
        self.queue_line(line)?;
        self.flush()
    }

    fn send_secret(&mut self, line: &str, shown: &str) -> Result<(), SessionError> {
        self.set_write_timeout(Duration::from_secs(300))?;
        self.queue_line_shown(line, shown)?;
        self.flush()
    }

    fn lost(&self, e: &io::Error, during: &str) -> SessionError {
        let during = during.split(':').next().unwrap_or(during);
        SessionError::temporary(format!(
            "lost connection with {} while sending {during}: {}",
            self.peer,
            describe_io(e)
        ))
    }

    fn read_reply(&mut self, timeout: Duration, after: &str) -> Result<Reply, SessionError> {
        let peer = self.peer.clone();
        let fail = |what: String| {
            SessionError::temporary(format!(
                "{what} with {peer} while waiting for the reply to {after}"
            ))
        };
        self.reader
            .get_ref()
            .tcp()
            .set_read_timeout(Some(timeout))
            .map_err(|e| fail(e.to_string()))?;
        let mut lines = Vec::new();
        let mut line = Vec::with_capacity(128);
        loop {
            line.clear();
            let n = (&mut self.reader)
                .take(MAX_REPLY_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        fail(format!("timeout after {}s", timeout.as_secs()))
                    }
                    _ => fail(format!("lost connection ({})", describe_io(&e))),
                })?;
            if n == 0 {
                return Err(fail("lost connection".into()));
            }
            if n > MAX_REPLY_LINE || lines.len() >= MAX_REPLY_LINES {
                return Err(fail("reply too long".into()));
            }
            let text: String = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            if self.verbose {
                eprintln!("<<< {text}");
            }
            let code = text
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c));
            let Some(code) = code else {
                return Err(fail(format!(
                    "malformed reply `{}`",
                    text.chars().take(80).collect::<String>()
                )));
            };
            let sep = text.as_bytes().get(3).copied();
            lines.push(text.get(4..).unwrap_or("").to_string());
            match sep {
                Some(b'-') => continue,
                None | Some(b' ') => return Ok(Reply { code, lines }),
                Some(_) => return Err(fail("malformed reply".into())),
            }
        }
    }
}

/// The TLS handshake, bounded by `timeout` each way, as a SessionError
/// when it fails.
fn handshake(
    tls: &Tls,
    tcp: TcpStream,
    host: &str,
    required: bool,
    peer: &str,
    timeout: Duration,
) -> Result<(Stream, TlsInfo), SessionError> {
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    tls.handshake(tcp, host, required).map_err(|e| match e {
        HandshakeError::NotVerified(why) => SessionError::temporary(format!(
            "TLS is required, but the certificate of {peer} did not verify: {why}"
        )),
        HandshakeError::Failed(why) => SessionError {
            text: format!("TLS handshake with {peer} failed: {why}"),
            permanent: false,
            stale: false,
            tls_failed: true,
        },
    })
}

/// Whether the server has sent anything not yet read (without waiting).
fn bytes_waiting(tcp: &TcpStream) -> bool {
    if tcp.set_nonblocking(true).is_err() {
        return true; // cannot tell: assume the worst
    }
    let waiting = matches!(tcp.peek(&mut [0u8; 1]), Ok(n) if n > 0);
    let _ = tcp.set_nonblocking(false);
    waiting
}

/// The enhanced status code (RFC 3463) of a reply as spoolmail records it
/// (`550 5.1.1 <bob@x>: user unknown` gives `5.1.1`), if it has one.
pub fn enhanced_code(reply: &str) -> Option<&str> {
    let mut words = reply.split_whitespace();
    let (code, enhanced) = (words.next()?, words.next()?);
    let parts: Vec<&str> = enhanced.split('.').collect();
    let ok = code.len() == 3
        && code.bytes().all(|b| b.is_ascii_digit())
        && parts.len() == 3
        && parts[0] == &code[..1]
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(enhanced)
}

/// RFC 3461 xtext: `+` and `=`, controls and non-printables as `+HH`.
fn xtext(s: &str) -> String {
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

fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "Connection timed out".into(),
        io::ErrorKind::ConnectionRefused => "Connection refused".into(),
        io::ErrorKind::ConnectionReset => "Connection reset by peer".into(),
        io::ErrorKind::BrokenPipe => "Broken pipe".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_display_on_one_line() {
        let r = Reply {
            code: 550,
            lines: vec!["5.1.1 <a@b>:".into(), "user unknown".into()],
        };
        assert_eq!(r.to_string(), "550 5.1.1 <a@b>: user unknown");
        assert!(r.is_permanent() && !r.is_positive());
    }

    #[test]
    fn ehlo_capabilities() {
        let r = Reply {
            code: 250,
            lines: [
                "mx.example",
                "PIPELINING",
                "SIZE 10240000",
                "8BITMIME",
                "DSN",
                "SMTPUTF8",
                "STARTTLS",
            ]
            .map(String::from)
            .to_vec(),
        };
        let c = Capabilities::from_ehlo(&r);
        assert!(c.pipelining && c.eightbitmime && c.dsn && c.smtputf8 && c.starttls);
        assert_eq!(c.size, Some(10240000));
        assert!(c.auth.is_empty());
        let r = Reply {
            code: 250,
            lines: ["relay.example", "AUTH plain LOGIN", "AUTH=XOAUTH2"]
                .map(String::from)
                .to_vec(),
        };
        assert_eq!(
            Capabilities::from_ehlo(&r).auth,
            vec!["PLAIN", "LOGIN", "XOAUTH2"]
        );
    }

    #[test]
    fn enhanced_codes() {
        assert_eq!(
            enhanced_code("550 5.1.1 <a@b>: user unknown"),
            Some("5.1.1")
        );
        assert_eq!(enhanced_code("451 4.3.0 later"), Some("4.3.0"));
        assert_eq!(enhanced_code("550 user unknown"), None);
        assert_eq!(enhanced_code("550 4.1.1 mismatched class"), None);
        assert_eq!(enhanced_code("connect to x: refused"), None);
    }

    #[test]
    fn xtext_encoding() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    }
}
