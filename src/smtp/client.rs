//! The blocking SMTP client: moves bytes between the socket and the rules
//! of `protocol`, and applies what they decide.
//!
//! Securing the connection happens in `connect`: TLS from the first byte or
//! STARTTLS (RFC 3207: nothing the server sent before the handshake may be
//! read after it, and everything learned before it is forgotten), then AUTH
//! (RFC 4954) when credentials are given, never without verified TLS unless
//! allowed, and never shown: the `-v` transcript says `AUTH PLAIN ***`.

use super::protocol::{
    self, Capabilities, Command, DotStuffer, MailParams, Next, RawReply, RcptParams, Replies,
    ReplyReader,
};
use crate::auth::Credentials;
use crate::config::Timeouts;
use crate::limits::{
    AUTH_MAX_ROUNDS, SMTP_MAX_REPLY_LINE, SMTP_QUIT_TIMEOUT, SMTP_QUOTED_REPLY_CHARS,
    SMTP_READ_BUFFER, SMTP_WRITE_CHUNK, SMTP_WRITE_TIMEOUT,
};
use crate::model::{Address, Outcome, Reply};
use crate::spool::Envelope;
use crate::tls::{HandshakeError, Stream, Tls, TlsInfo, Trust};
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

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
    /// The fault is this host's configuration (the server refused the
    /// credentials, or its certificate did not verify under `tls =
    /// required`): the mail waits for the admin, and never bounces for it
    /// before `max_queue_lifetime`.
    pub misconfigured: bool,
    /// The server refused the credentials (530, 534, 535 to AUTH): a new
    /// OAuth2 access token may do.
    pub credentials_refused: bool,
    /// Why the connection has no TLS that verified, when TLS was required
    /// or its handshake failed (`host mx.example[192.0.2.1]:25 does not
    /// offer STARTTLS`): what an MTA-STS policy's refusal names.
    pub no_tls: Option<String>,
    /// The server answered with a throttling reply (421, or a 4.7.x: see
    /// `Reply::is_throttling`) while connecting or authenticating: a
    /// relay asking to be left alone for a while.
    pub throttled: bool,
}

impl SessionError {
    pub fn temporary(text: String) -> SessionError {
        SessionError {
            text,
            permanent: false,
            stale: false,
            tls_failed: false,
            misconfigured: false,
            credentials_refused: false,
            no_tls: None,
            throttled: false,
        }
    }

    /// TLS was required and could not be had, for this reason.
    fn tls_required(why: String) -> SessionError {
        SessionError {
            no_tls: Some(why.clone()),
            ..SessionError::temporary(format!("TLS is required, but {why}"))
        }
    }

    /// A local configuration problem (see `misconfigured`).
    pub fn misconfigured(text: String) -> SessionError {
        SessionError {
            misconfigured: true,
            ..SessionError::temporary(text)
        }
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One recipient of a transaction: its index in the envelope, the address,
/// and the address as the user wrote it (for ORCPT).
pub struct Rcpt<'a> {
    pub index: usize,
    pub address: &'a Address,
    pub orcpt: Option<&'a str>,
}

/// What one transaction did: each recipient's outcome by its envelope
/// index, and the recipients the server had no room for in it, to send at
/// once in a further transaction (RFC 5321 4.5.3.1.10).
#[derive(Debug, Default)]
pub struct Transaction {
    pub outcomes: Vec<(usize, Outcome)>,
    pub again: Vec<usize>,
    /// The reply that asks the relay to be left alone, if one did (see
    /// `protocol::throttling`).
    pub throttled: Option<Reply>,
}

/// The replies of a transaction's envelope: MAIL, each RCPT, DATA if sent.
type EnvelopeReplies = (Reply, Vec<Reply>, Option<Reply>);

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
    /// The socket's timeouts as last set through this client (None: not
    /// known, set before the next use): a setsockopt is made only when the
    /// value changes, not before every read and write of every message.
    timeouts: SocketTimeouts,
}

/// What `SO_RCVTIMEO` and `SO_SNDTIMEO` were last set to.
#[derive(Debug, Default, Clone, Copy)]
struct SocketTimeouts {
    read: Option<Duration>,
    write: Option<Duration>,
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
            reader: BufReader::with_capacity(SMTP_READ_BUFFER, stream),
            out: Vec::with_capacity(SMTP_WRITE_CHUNK),
            peer,
            caps: Capabilities::default(),
            tls,
            notes: Vec::new(),
            verbose: setup.verbose,
            transactions: 0,
            open_transaction: false,
            timeouts: SocketTimeouts::default(),
        };
        client.show_tls();
        let greeting = client.read_reply(t.greeting, "the greeting")?;
        if greeting.code != 220 {
            return Err(client.refused("greeted us with", &greeting));
        }
        client.send_line(&format!("EHLO {}", setup.helo_name))?;
        let ehlo = client.read_raw_reply(t.helo, "EHLO")?;
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
                let why = format!("host {} does not offer STARTTLS", self.peer);
                self.quit();
                return Err(SessionError::tls_required(why));
            }
            return Ok(self);
        }
        self.send_line("STARTTLS")?;
        let reply = self.read_reply(t.helo, "STARTTLS")?;
        if reply.code != 220 {
            let text = format!("host {} said {reply} to STARTTLS", self.peer);
            if required {
                self.quit();
                return Err(SessionError::tls_required(text));
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
            reader: BufReader::with_capacity(SMTP_READ_BUFFER, stream),
            out,
            peer,
            caps: Capabilities::default(),
            tls: Some(info),
            notes: Vec::new(),
            verbose,
            transactions: 0,
            open_transaction: false,
            timeouts: SocketTimeouts::default(),
        };
        client.show_tls();
        client.send_line(&format!("EHLO {}", setup.helo_name))?;
        let ehlo = client.read_raw_reply(t.helo, "EHLO")?;
        if ehlo.code != 250 {
            return Err(client.refused("refused EHLO after STARTTLS:", &ehlo.reply()));
        }
        client.caps = Capabilities::from_ehlo(&ehlo);
        Ok(client)
    }

    /// AUTH with the first mechanism the server offers that the credentials
    /// can use. Credentials go only over TLS whose certificate verified,
    /// unless `auth_allow_plaintext`. Every failure is temporary: a 535 may
    /// be a password about to be fixed, and must never bounce mail. Refused
    /// credentials and a configuration that does not fit the server are
    /// local configuration problems, which wait up to `max_queue_lifetime`.
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
            return Err(SessionError::misconfigured(text));
        }
        if self.caps.auth.is_empty() {
            let text = format!(
                "host {} does not offer AUTH, but auth_user is set",
                self.peer
            );
            self.quit_in_place();
            return Err(SessionError::misconfigured(text));
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
            return Err(SessionError::misconfigured(text));
        };
        let exchange = creds.exchange(mech);
        self.send_secret(&exchange.command, &format!("AUTH {} ***", mech.name()))?;
        let mut responses = exchange.responses.into_iter();
        // A server that keeps asking is cut short.
        for _ in 0..AUTH_MAX_ROUNDS {
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
                    return Err(match credentials_refused(reply.code) {
                        true => SessionError {
                            credentials_refused: true,
                            ..SessionError::misconfigured(text)
                        },
                        false => SessionError {
                            throttled: reply.is_throttling(),
                            ..SessionError::temporary(text)
                        },
                    });
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
            crate::system::errln(format_args!("spoolmail: {}", info.log_line(&self.peer)));
        }
    }

    fn refused(&self, what: &str, reply: &Reply) -> SessionError {
        SessionError {
            text: format!("host {} {what} {reply}", self.peer),
            permanent: reply.class() == 5,
            stale: false,
            tls_failed: false,
            misconfigured: false,
            credentials_refused: false,
            no_tls: None,
            throttled: reply.is_throttling(),
        }
    }

    /// Sends one message to `rcpts` in one transaction and returns each
    /// recipient's outcome. `content` is the stored message (LF line
    /// endings), `size` its length. An Err means the connection is no
    /// longer usable.
    pub fn send(
        &mut self,
        env: &Envelope,
        rcpts: &[Rcpt],
        content: &mut impl BufRead,
        size: u64,
        t: &Timeouts,
    ) -> Result<Transaction, SessionError> {
        let params = mail_params(env, size);
        if let Some(o) = protocol::refuse_before_mail(&params, &self.caps, &self.peer) {
            return Ok(Transaction {
                outcomes: rcpts.iter().map(|r| (r.index, o.clone())).collect(),
                ..Transaction::default()
            });
        }
        let reused = self.transactions > 0;
        self.nothing_unanswered().map_err(|e| stale(e, reused))?;
        self.reset_if_open(t).map_err(|e| stale(e, reused))?;
        self.transactions += 1;
        let mail = protocol::mail_command(&params, &self.caps);
        let rcpt_cmds: Vec<String> = rcpts
            .iter()
            .map(|r| protocol::rcpt_command(&rcpt_params(env, r), &self.caps))
            .collect();
        let (mail_reply, rcpt_replies, data_reply) = if self.caps.pipelining {
            self.pipelined_envelope(&mail, &rcpt_cmds, reused, t)?
        } else {
            self.stepwise_envelope(&mail, &rcpt_cmds, reused, t)?
        };
        self.open_transaction = mail_reply.class() == 2;
        let next = protocol::after_data(&mail_reply, &rcpt_replies, data_reply.as_ref())
            .map_err(|e| self.protocol_error(e))?;
        let end = match next {
            Next::Content => Some(self.send_content(content, t)?),
            Next::EmptyContent => Some(self.end_data_empty(t)?),
            Next::Stop => None,
        };
        if end.is_some() {
            self.open_transaction = false;
        }
        let replies = Replies {
            mail: &mail_reply,
            rcpts: &rcpt_replies,
            data: data_reply.as_ref(),
            end: end.as_ref(),
        };
        let finished = protocol::finish(&replies).map_err(|e| self.protocol_error(e))?;
        Ok(Transaction {
            throttled: protocol::throttling(&replies).cloned(),
            outcomes: (finished.outcomes.into_iter())
                .map(|(i, o)| (rcpts[i].index, o))
                .collect(),
            again: finished.again.iter().map(|&i| rcpts[i].index).collect(),
        })
    }

    /// Before a transaction, every reply read so far must have answered a
    /// command: a line still buffered (a surplus line after the last reply)
    /// would be taken for the reply to MAIL, and its 550 would fail a
    /// message the server never saw. Nothing of this message was sent yet,
    /// so on a reused connection it goes again over a fresh one.
    fn nothing_unanswered(&self) -> Result<(), SessionError> {
        if self.reader.buffer().is_empty() {
            return Ok(());
        }
        let line = self
            .reader
            .buffer()
            .split(|&b| b == b'\n')
            .next()
            .unwrap_or_default();
        Err(SessionError::temporary(format!(
            "protocol error: `{}` answers no command (host {})",
            protocol::printable(line)
                .chars()
                .take(SMTP_QUOTED_REPLY_CHARS)
                .collect::<String>(),
            self.peer
        )))
    }

    /// RSET only after a transaction left open (MAIL taken, no end of
    /// data): after a finished one the server is ready for MAIL, and an
    /// RSET would cost a round trip per message.
    fn reset_if_open(&mut self, t: &Timeouts) -> Result<(), SessionError> {
        if !self.open_transaction {
            return Ok(());
        }
        self.open_transaction = false;
        self.send_line("RSET")?;
        let rset = self.read_reply(t.mail, "RSET")?;
        match protocol::answer(Command::Rset, &rset) {
            Ok(protocol::Answer::Yes) => Ok(()),
            _ => Err(SessionError::temporary(format!(
                "host {} said {rset} to RSET",
                self.peer
            ))),
        }
    }

    /// With PIPELINING: the whole envelope and DATA in one write, no round
    /// trip per command, then every reply in order.
    fn pipelined_envelope(
        &mut self,
        mail: &str,
        rcpt_cmds: &[String],
        reused: bool,
        t: &Timeouts,
    ) -> Result<EnvelopeReplies, SessionError> {
        self.queue_line(mail)?;
        for c in rcpt_cmds {
            self.queue_line(c)?;
        }
        self.queue_line("DATA")?;
        self.flush().map_err(|e| stale(e, reused))?;
        let m = self.mail_reply(reused, t)?;
        // After a refused MAIL nothing of this message was taken: a
        // connection lost now is as safe to retry as one lost before.
        let taken = m.class() == 2;
        let after_mail = |e: SessionError| stale(e, reused && !taken);
        let mut rs = Vec::with_capacity(rcpt_cmds.len());
        for _ in rcpt_cmds {
            rs.push(self.read_reply(t.rcpt, "RCPT TO").map_err(after_mail)?);
        }
        let d = self.read_reply(t.data_init, "DATA").map_err(after_mail)?;
        Ok((m, rs, Some(d)))
    }

    /// Without PIPELINING: one command, one reply; RCPTs only after an
    /// accepted MAIL, DATA only after an accepted RCPT.
    fn stepwise_envelope(
        &mut self,
        mail: &str,
        rcpt_cmds: &[String],
        reused: bool,
        t: &Timeouts,
    ) -> Result<EnvelopeReplies, SessionError> {
        self.send_line(mail).map_err(|e| stale(e, reused))?;
        let m = self.mail_reply(reused, t)?;
        let mut rs = Vec::new();
        if m.class() == 2 {
            for c in rcpt_cmds {
                self.send_line(c)?;
                rs.push(self.read_reply(t.rcpt, "RCPT TO")?);
            }
        }
        let wanted = protocol::wants_data(&m, &rs).map_err(|e| self.protocol_error(e))?;
        let d = if wanted {
            self.send_line("DATA")?;
            Some(self.read_reply(t.data_init, "DATA")?)
        } else {
            None
        };
        Ok((m, rs, d))
    }

    /// The reply to MAIL; a 421 on a reused connection means the server
    /// closed it while idle, and nothing of this message was taken.
    fn mail_reply(&mut self, reused: bool, t: &Timeouts) -> Result<Reply, SessionError> {
        let m = self
            .read_reply(t.mail, "MAIL FROM")
            .map_err(|e| stale(e, reused))?;
        if reused && m.code == 421 {
            return Err(stale(
                SessionError::temporary(format!("host {} said {m}", self.peer)),
                true,
            ));
        }
        Ok(m)
    }

    /// The replies and the commands are out of step: the session ends, and
    /// whatever it was doing waits for the next attempt.
    fn protocol_error(&self, e: protocol::ProtocolError) -> SessionError {
        SessionError::temporary(format!("{e} (host {})", self.peer))
    }

    pub fn quit(mut self) {
        self.quit_in_place();
    }

    /// QUIT, its reply, and TLS's close_notify; the connection is done.
    fn quit_in_place(&mut self) {
        if self.send_line("QUIT").is_ok() {
            let _ = self.read_reply(SMTP_QUIT_TIMEOUT, "QUIT");
        }
        self.reader.get_mut().close_notify();
    }

    /// The message, dot-stuffed, in large buffered writes (a client that
    /// writes line by line stalls on the peer's delayed ACK), then the reply
    /// to its end. Before the first byte, nothing may be waiting to be read:
    /// a reply there answers no command, and the session is out of step.
    fn send_content(
        &mut self,
        content: &mut impl BufRead,
        t: &Timeouts,
    ) -> Result<Reply, SessionError> {
        if !self.reader.buffer().is_empty() {
            return Err(SessionError::temporary(format!(
                "protocol error: a reply to no command after 354 in reply to DATA (host {})",
                self.peer
            )));
        }
        self.set_write_timeout(t.data_block)?;
        let mut stuffer = DotStuffer::default();
        loop {
            let chunk = content.fill_buf().map_err(|e| {
                SessionError::temporary(format!("cannot read the queued message: {e}"))
            })?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            stuffer.feed(chunk, &mut self.out);
            content.consume(n);
            if self.out.len() >= SMTP_WRITE_CHUNK {
                self.write_out().map_err(|e| self.lost_content(&e))?;
            }
        }
        stuffer.finish(&mut self.out);
        if self.verbose {
            crate::system::errln(format_args!(">>> (message content)"));
            crate::system::errln(format_args!(">>> ."));
        }
        self.write_out().map_err(|e| self.lost_content(&e))?;
        self.read_reply(t.data_done, "the end of data")
    }

    fn lost_content(&self, e: &io::Error) -> SessionError {
        SessionError::temporary(format!(
            "lost connection with {} while sending message content: {}",
            self.peer,
            describe_io(e)
        ))
    }

    /// Ends a DATA nobody is left to receive: just the dot.
    fn end_data_empty(&mut self, t: &Timeouts) -> Result<Reply, SessionError> {
        self.send_line(".")?;
        self.read_reply(t.data_done, "the end of data")
    }

    fn set_write_timeout(&mut self, d: Duration) -> Result<(), SessionError> {
        if self.timeouts.write == Some(d) {
            return Ok(());
        }
        self.timeouts.write = None;
        (self.reader.get_ref().tcp())
            .set_write_timeout(Some(d))
            .map_err(|e| SessionError::temporary(format!("{}: {e}", self.peer)))?;
        self.timeouts.write = Some(d);
        Ok(())
    }

    /// Bounds the next read from the socket by `left`, the time to a
    /// reply's deadline: the socket's timeout is set only when the one it
    /// has could outlast that. A shorter one may run out first: the read
    /// then fails with WouldBlock, and [`Client::read_line`] tries again
    /// with the time left.
    fn bound_read(&mut self, left: Duration) -> io::Result<()> {
        if self.timeouts.read.is_some_and(|set| set <= left) {
            return Ok(());
        }
        self.timeouts.read = None;
        self.reader.get_ref().tcp().set_read_timeout(Some(left))?;
        self.timeouts.read = Some(left);
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
            crate::system::errln(format_args!(">>> {shown}"));
        }
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        let r = if self.out.len() >= SMTP_WRITE_CHUNK {
            self.write_out()
        } else {
            Ok(())
        };
        let during = if line == shown { line } else { "AUTH" };
        r.map_err(|e| self.lost(&e, during))
    }

    fn flush(&mut self) -> Result<(), SessionError> {
        self.write_out().map_err(|e| self.lost(&e, "commands"))
    }

    fn send_line(&mut self, line: &str) -> Result<(), SessionError> {
        self.set_write_timeout(SMTP_WRITE_TIMEOUT)?;
        self.queue_line(line)?;
        self.flush()
    }

    fn send_secret(&mut self, line: &str, shown: &str) -> Result<(), SessionError> {
        self.set_write_timeout(SMTP_WRITE_TIMEOUT)?;
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
        self.read_raw_reply(timeout, after).map(|r| r.reply())
    }

    /// One reply, line by line, each line bounded in length and the whole
    /// reply in lines, bytes and time: `timeout` is a deadline for the
    /// reply, so a server that trickles bytes cannot hold the session
    /// longer than one that says nothing.
    fn read_raw_reply(&mut self, timeout: Duration, after: &str) -> Result<RawReply, SessionError> {
        let peer = self.peer.clone();
        let fail = |what: String| {
            SessionError::temporary(format!(
                "{what} with {peer} while waiting for the reply to {after}"
            ))
        };
        let deadline = Instant::now() + timeout;
        let mut parser = ReplyReader::default();
        let mut line = Vec::with_capacity(128);
        loop {
            line.clear();
            self.read_line(&mut line, deadline)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        fail(format!("timeout after {}s", timeout.as_secs()))
                    }
                    io::ErrorKind::UnexpectedEof => fail("lost connection".into()),
                    _ => fail(format!("lost connection ({})", describe_io(&e))),
                })?;
            if self.verbose {
                crate::system::errln(format_args!("<<< {}", protocol::printable(&line)));
            }
            if let Some(reply) = parser.push(&line).map_err(|e| fail(e.to_string()))? {
                return Ok(reply);
            }
        }
    }

    /// Reads up to and including a line end, or SMTP_MAX_REPLY_LINE + 1
    /// bytes (which the parser refuses), before `deadline`. An end of the
    /// connection before any byte is UnexpectedEof; a line cut by it is
    /// returned as it is.
    fn read_line(&mut self, line: &mut Vec<u8>, deadline: Instant) -> io::Result<()> {
        let most = SMTP_MAX_REPLY_LINE + 1;
        while line.len() < most {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if self.reader.buffer().is_empty() {
                self.bound_read(left)?;
            }
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The socket's timeout, shorter than the time left to
                // the deadline, ran out: again with the time left (the
                // deadline is checked above).
                Err(e) if timed_out(&e) && self.timeouts.read.is_some_and(|set| set < left) => {
                    self.timeouts.read = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return match line.is_empty() {
                    true => Err(io::ErrorKind::UnexpectedEof.into()),
                    false => Ok(()),
                };
            }
            let room = &buf[..buf.len().min(most - line.len())];
            let (n, end) = match room.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (room.len(), false),
            };
            line.extend_from_slice(&room[..n]);
            self.reader.consume(n);
            if end {
                break;
            }
        }
        Ok(())
    }
}

/// Whether a read or write failed because the socket's timeout ran out.
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
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
        HandshakeError::NotVerified(why) => SessionError {
            misconfigured: true,
            ..SessionError::tls_required(format!("the certificate of {peer} did not verify: {why}"))
        },
        HandshakeError::Failed(why) => {
            let text = format!("TLS handshake with {peer} failed: {why}");
            SessionError {
                tls_failed: true,
                no_tls: Some(text.clone()),
                ..SessionError::temporary(text)
            }
        }
    })
}

/// Whether an AUTH reply says the credentials themselves are wrong (RFC
/// 4954: 530 authentication required, 534 mechanism too weak, 535
/// credentials invalid), which only the admin can fix; any other refusal
/// (454 temporary failure, ...) is the server's.
fn credentials_refused(code: u16) -> bool {
    matches!(code, 530 | 534 | 535)
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

fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "Connection timed out".into(),
        io::ErrorKind::ConnectionRefused => "Connection refused".into(),
        io::ErrorKind::ConnectionReset => "Connection reset by peer".into(),
        io::ErrorKind::BrokenPipe => "Broken pipe".into(),
        _ => e.to_string(),
    }
}

/// A failure before the server took anything of the message, on a reused
/// connection: the caller may try again on a fresh one.
fn stale(mut e: SessionError, reused: bool) -> SessionError {
    e.stale |= reused;
    e
}

/// What MAIL FROM may say about the message, from its envelope.
fn mail_params(env: &Envelope, size: u64) -> MailParams<'_> {
    MailParams {
        sender: &env.sender,
        size,
        eight_bit: env.body == crate::model::BodyType::EightBitMime,
        smtputf8: env.smtputf8,
        ret_full: env.ret.map(|r| r == crate::model::Ret::Full),
        envid: env.envid.as_deref(),
    }
}

fn rcpt_params<'a>(env: &'a Envelope, r: &Rcpt<'a>) -> RcptParams<'a> {
    RcptParams {
        address: r.address,
        notify: env.notify,
        orcpt: r.orcpt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refused_credentials_are_a_local_configuration_problem() {
        for (code, ours) in [
            (530, true),
            (534, true),
            (535, true),
            (454, false),
            (421, false),
            (504, false),
            (550, false),
        ] {
            assert_eq!(credentials_refused(code), ours, "{code}");
        }
    }
}
