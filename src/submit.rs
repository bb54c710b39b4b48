//! Intake: from a caller's stdin to a committed spool file.
//!
//! Read the header block (bounded), decide the envelope (sender, recipients
//! from argv and, with `-t`, the headers), then write the envelope, the
//! processed header (Received added, Bcc removed, From/Date/Message-ID
//! completed) and stream the body straight from stdin to the spool file, so
//! memory stays flat however large the message is. Nothing else happens here:
//! no DNS, no connecting; every caller waits on this path.

use crate::address;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{Address, BodyType, Notify, Ret};
use crate::spool::{Draft, Envelope, Recipient, Spool};
use crate::system;
use md5::{Digest, Md5};
use std::borrow::Cow;
use std::io::{self, BufRead, Read, Write};

/// Header fields whose bare local names are qualified, as Postfix's
/// cleanup does.
const ADDRESS_FIELDS: [&str; 9] = [
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
];

use crate::limits::MAX_HEADER_BLOCK;

/// Who is submitting and as which host: the parts of the context that come
/// from the system rather than from the caller.
pub struct Origin {
    pub uid: u32,
    /// Login name, when known (needed unless `-f` gives the sender).
    pub user_name: Option<String>,
    pub user_full_name: Option<String>,
    /// This host's name, for Received and Message-ID.
    pub host: String,
    /// Domain for unqualified addresses.
    pub domain: String,
}

impl Origin {
    pub fn of_current_process(config: &Config, need_user: bool) -> Result<Origin> {
        let system::Identity { host, domain } = system::identity(
            config.helo_name.as_deref(),
            config.qualify_domain.as_deref(),
            &config.mailname_file,
        );
        let (uid, user_name, user_full_name) = if need_user {
            let u = system::current_user()?;
            (u.uid, Some(u.name), u.full_name)
        } else {
            (system::current_uid(), None, None)
        };
        Ok(Origin {
            uid,
            user_name,
            user_full_name,
            host,
            domain,
        })
    }
}

/// A queued message: its envelope, the size of its content, and notes for
/// the log (alias targets that were skipped).
pub struct Submitted {
    pub envelope: Envelope,
    pub size: u64,
    pub notes: Vec<String>,
}

/// What a submission says about its envelope, however it arrived: from the
/// command line, or from an SMTP session on stdin (`-bs`).
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// Validated and qualified; empty for the null sender.
    pub sender: String,
    /// Validated addr-specs; bare names are qualified on intake.
    pub recipients: Vec<Address>,
    /// `-t`: add the recipients of the To, Cc and Bcc headers.
    pub extract_recipients: bool,
    /// Without it, a line holding a single dot ends the input.
    pub ignore_dots: bool,
    /// For an added From header.
    pub full_name: Option<String>,
    pub body_type: Option<BodyType>,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
    pub notify: Option<Notify>,
    /// Whole header fields (each ending in LF) added above the message's own,
    /// under the Received line: X-Authentication-Warning.
    pub extra_headers: String,
}

/// Refuses a submission (a temporary failure) while the spool's file system
/// has less free than `queue_min_free`: the space left is for deliveries to
/// record their outcomes and queue their bounces. Where the free space
/// cannot be told, the submission goes on (its writes will say).
pub fn check_free_space(config: &Config) -> Result<()> {
    check_free_space_for(config, 0)
}

/// As [`check_free_space`], for a message of `size` bytes still to be
/// written (SMTP's SIZE parameter, as Postfix takes it into its check).
pub fn check_free_space_for(config: &Config, size: u64) -> Result<()> {
    let Ok((available, total)) = crate::sys::free_space(&config.spool_dir) else {
        return Ok(());
    };
    let reserve = free_space_reserve(config.queue_min_free, total);
    match has_room(available, reserve, size) {
        true => Ok(()),
        false => Err(Error::NoSpace(format!(
            "spool file system has less than {} free",
            human_size(reserve)
        ))),
    }
}

/// The rule of the reserve: `size` more bytes fit in `available` while
/// `reserve` of it stays free.
fn has_room(available: u64, reserve: u64, size: u64) -> bool {
    reserve
        .checked_add(size)
        .is_some_and(|need| available >= need)
}

/// The check of the reserve once the message is written, just before it
/// is committed: the free space was checked before the data came, but one
/// large message could eat the whole reserve. Below it, the submission
/// fails (temporarily) and the message is not queued.
fn check_free_space_after(config: &Config, draft: &mut Draft) -> Result<()> {
    draft
        .content()
        .flush()
        .map_err(|e| Error::io("cannot write to the spool", e))?;
    check_free_space(config)
        .map_err(|e| Error::NoSpace(format!("message not queued: {e} with it written")))
}

/// The rule of `queue_min_free` (bytes) on a file system of `total` bytes:
/// as configured, else the default or 1% of the file system, the smaller.
fn free_space_reserve(configured: Option<u64>, total: u64) -> u64 {
    use crate::limits::{DEFAULT_QUEUE_MIN_FREE, DEFAULT_QUEUE_MIN_FREE_PERCENT};
    configured.unwrap_or_else(|| {
        (total / 100 * DEFAULT_QUEUE_MIN_FREE_PERCENT).min(DEFAULT_QUEUE_MIN_FREE)
    })
}

/// A size as the config writes it: `2G`, `20M`, `512k`, `100 bytes`, rounded up.
fn human_size(bytes: u64) -> String {
    const K: u64 = 1024;
    match bytes {
        b if b >= K * K * K => format!("{}G", b.div_ceil(K * K * K)),
        b if b >= K * K => format!("{}M", b.div_ceil(K * K)),
        b if b >= K => format!("{}k", b.div_ceil(K)),
        b => format!("{b} bytes"),
    }
}

/// Queues the message on `input` as `sub` describes; returns its envelope
/// and the size of its content.
pub fn submit(
    sub: &Submission,
    config: &Config,
    origin: &Origin,
    input: impl Read,
) -> Result<Submitted> {
    let full_name = sub.full_name.clone();
    let limit = config.max_message_size;
    let mut reader = Normalizer::new(input, sub.ignore_dots);
    let header = read_header_block(&mut reader)?;
    check_size(header.len, limit)?;
    let fields = Fields::parse(&header.bytes);

    address::check_usual(&sub.sender, config.allow_unusual_quoted_local_parts)?;
    let (recipients, mut notes) = recipients_of(sub, &fields, config, origin)?;

    let masquerade = crate::aliases::Masquerade::new(config, &origin.host, &origin.domain);
    let sender = final_sender(&sub.sender, config, masquerade.as_ref(), &mut notes);
    let rewrites = Rewrites {
        domain: &origin.domain,
        masquerade: masquerade.as_ref(),
        from_as: config
            .sender_address
            .as_deref()
            .filter(|_| config.rewrite_from),
    };
    let (now, _) = system::now();
    let envelope = |id| Envelope {
        id,
        arrival: now,
        uid: origin.uid,
        smtputf8: !sender.is_ascii() || recipients.iter().any(|r| !r.address.is_ascii()),
        notice: false,
        sender,
        recipients,
        ret: sub.ret,
        envid: sub.envid.clone(),
        notify: sub.notify,
        body: sub.body_type.unwrap_or(BodyType::SevenBit),
    };
    let spool = Spool::new(&config.spool_dir);
    let mut size = 0;
    let envelope = spool.deposit(envelope, |env, draft| {
        let mut added = added_headers(env, &fields, origin, full_name.as_deref());
        added.top.push_str(&sub.extra_headers);
        write_header(draft, &added, &fields, &rewrites)?;
        if let Some(first) = &header.body_start {
            write_content(draft, first)?;
        }
        let body_8bit = stream_body(&mut reader, draft, limit)?;
        let eight_bit = header.eight_bit
            || body_8bit
            || header.body_start.as_ref().is_some_and(|l| has_8bit(l));
        if eight_bit && env.body != BodyType::EightBitMime {
            env.body = BodyType::EightBitMime;
            draft
                .mark_8bit()
                .map_err(|e| Error::io("cannot write to the spool", e))?;
        }
        size = draft.content_len();
        check_free_space_after(config, draft)
    })?;
    Ok(Submitted {
        envelope,
        size,
        notes,
    })
}

/// The sender as queued: `sender_address` for every sender but the null
/// one (a bounce stays a bounce), else the masqueraded sender. A forced
/// sender is noted for the log, so the log still says who sent it.
fn final_sender(
    given: &str,
    config: &Config,
    masquerade: Option<&crate::aliases::Masquerade>,
    notes: &mut Vec<String>,
) -> String {
    match &config.sender_address {
        Some(forced) if !given.is_empty() => {
            if forced != given {
                notes.push(format!(
                    "sender <{given}> sent as <{forced}> (sender_address)"
                ));
            }
            forced.clone()
        }
        _ => masquerade
            .and_then(|m| m.address(given))
            .unwrap_or_else(|| given.to_string()),
    }
}

/// The message's recipients: the command line's, with -t those of its
/// header, each checked, then through the aliases; with the notes the
/// aliases left (skipped pipes and files, loops).
fn recipients_of(
    sub: &Submission,
    fields: &Fields,
    config: &Config,
    origin: &Origin,
) -> Result<(Vec<Recipient>, Vec<String>)> {
    let extracted = if sub.extract_recipients {
        fields.recipients()?
    } else {
        Vec::new()
    };
    let allowed = config.allow_unusual_quoted_local_parts;
    let mut recipients = sub.recipients.clone();
    for r in &recipients {
        address::check_usual_address(r, allowed)?;
    }
    for text in extracted {
        let r = address::parse(&text)?;
        address::check_usual_address(&r, allowed)?;
        recipients.push(r);
    }
    let (recipients, notes) = crate::aliases::resolve(recipients, config, &origin.domain);
    // Aliases and include files can name addresses too, and qualifying
    // can take a long name past the longest address.
    for r in &recipients {
        address::check_usual_address(&r.address, allowed)?;
        address::validate(&r.address.to_string())?;
    }
    if recipients.is_empty() {
        return Err(Error::Usage(if sub.extract_recipients {
            "no recipients: none on the command line and no To, Cc or Bcc header".into()
        } else {
            "no recipients: name them on the command line, or use -t".into()
        }));
    }
    Ok((recipients, notes))
}

/// The envelope sender a submission with sender `given` would queue:
/// [`envelope_sender`], then `sender_address` or masquerading as
/// [`submit`] applies them (for `-bv`, which routes by it).
pub fn queued_sender(given: Option<&str>, origin: &Origin, config: &Config) -> Result<String> {
    let sender = envelope_sender(given, origin)?;
    let masquerade = crate::aliases::Masquerade::new(config, &origin.host, &origin.domain);
    Ok(final_sender(
        &sender,
        config,
        masquerade.as_ref(),
        &mut Vec::new(),
    ))
}

/// The envelope sender: `given` (from `-f`, or MAIL FROM), qualified, else
/// the submitting user at the qualifying domain.
pub fn envelope_sender(given: Option<&str>, origin: &Origin) -> Result<String> {
    match given {
        Some(s) => {
            let s = address::parse_sender(s)?;
            Ok(if s.is_empty() {
                s
            } else {
                address::validate(&address::qualify(&s, &origin.domain))?
            })
        }
        None => {
            let name = origin
                .user_name
                .as_deref()
                .ok_or_else(|| Error::NoUser("no user name; give the sender with -f".into()))?;
            address::validate(&address::qualify(name, &origin.domain))
        }
    }
}

/// How an untrusted caller set the envelope sender, for the warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderSetBy {
    FlagF,
    SmtpSession,
}

/// Sendmail's X-Authentication-Warning, when a caller who is not trusted
/// (root, or in `trusted_group`) sets a sender other than their own
/// address: the message keeps the sender and says who set it. Empty when no
/// warning is due.
pub fn authentication_warning(
    origin: &Origin,
    user: &str,
    trusted: bool,
    sender: &str,
    how: SenderSetBy,
) -> String {
    let own = address::qualify(user, &origin.domain);
    if trusted || sender.eq_ignore_ascii_case(&own) {
        return String::new();
    }
    let shown = if sender.is_empty() { "<>" } else { sender };
    let flag = match how {
        SenderSetBy::FlagF => "-f",
        SenderSetBy::SmtpSession => "-bs",
    };
    format!(
        "X-Authentication-Warning: {}: {user} set sender to {shown} using {flag}\n",
        origin.host
    )
}

/// `-F` goes into a From header: it must not be able to add header lines.
pub fn check_full_name(name: &str) -> Result<String> {
    if name.chars().any(char::is_control) {
        return Err(Error::Data(format!(
            "full name `{}` contains a control character",
            name.escape_debug()
        )));
    }
    Ok(name.to_string())
}

fn check_size(len: u64, limit: u64) -> Result<()> {
    if limit > 0 && len > limit {
        Err(Error::TooBig { limit })
    } else {
        Ok(())
    }
}

/// Reads stdin as lines ending in LF whatever the caller used (CRLF, LF or a
/// bare CR), ends at a line holding a single dot unless `-i`, and ends the
/// last line with LF.
///
/// It works on whole runs of bytes, not byte by byte: within each read it
/// finds the next CR (and, unless `-i`, the next LF, after which a dot may
/// start a line) with memchr, and moves only what lies after a removed byte.
/// The output is never longer than the input it came from, so it is
/// compacted in place in the one buffer, which it hands out as a [`BufRead`]
/// (no second buffer, no copy when there is nothing to change). What spans
/// two reads (a CR and its LF, a dot at a line start and the byte after it)
/// is carried in the flags, so where reads split the input never matters.
pub struct Normalizer<R> {
    inner: R,
    /// Input is read into `buf[SPARE..]`; `buf[0]` is room for a dot held
    /// over from the previous read.
    buf: Box<[u8]>,
    /// The normalized bytes not yet handed out: `buf[out..end]`.
    out: usize,
    end: usize,
    ignore_dots: bool,
    /// The last byte was a CR (given out as LF): a LF right after it is dropped.
    pending_cr: bool,
    /// The last byte given out ended a line (or nothing was given out yet).
    at_line_start: bool,
    /// A dot started a line and was held back: what follows decides whether
    /// it ends the message or is given out.
    dot_pending: bool,
    done: bool,
    /// The last read filled the buffer: more is likely to follow.
    last_read_filled: bool,
}

/// The byte before where input is read, for a held dot.
const SPARE: usize = 1;

impl<R: Read> Normalizer<R> {
    pub fn new(inner: R, ignore_dots: bool) -> Self {
        Normalizer {
            inner,
            buf: vec![0; SPARE + crate::limits::INTAKE_FIRST_BUFFER].into_boxed_slice(),
            out: 0,
            end: 0,
            ignore_dots,
            pending_cr: false,
            at_line_start: true,
            dot_pending: false,
            done: false,
            last_read_filled: false,
        }
    }

    /// Reads the next input into `buf[SPARE..]`, first growing the buffer
    /// to [`crate::limits::IO_BUFFER`] when the last read filled it (a large
    /// message: fewer, larger reads). Nothing in `buf` outlives a fill (a
    /// held dot is a flag), so the new buffer starts empty.
    fn fill(&mut self) -> io::Result<usize> {
        let full = SPARE + crate::limits::IO_BUFFER;
        if self.last_read_filled && self.buf.len() < full {
            self.buf = vec![0; full].into_boxed_slice();
        }
        loop {
            match self.inner.read(&mut self.buf[SPARE..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(n) => {
                    self.last_read_filled = n == self.buf.len() - SPARE;
                    return Ok(n);
                }
                other => return other,
            }
        }
    }

    /// The end of the input: a final line without its newline gets one; a
    /// final lone dot without newline still ends the message.
    fn finish(&mut self) {
        self.done = true;
        (self.out, self.end) = (0, 0);
        if !self.at_line_start && !self.dot_pending {
            self.buf[0] = b'\n';
            self.end = 1;
        }
    }

    /// Normalizes the `n` bytes just read into `buf[SPARE..]`, in place:
    /// the output starts at `SPARE`, or one byte before for a held dot, and
    /// never overtakes the input still to be read (`w <= r`).
    fn normalize(&mut self, n: usize) {
        let end = SPARE + n;
        let mut r = SPARE;
        let mut w = if self.dot_pending { SPARE - 1 } else { SPARE };
        self.out = w;
        while r < end && !self.done {
            let b = self.buf[r];
            if std::mem::take(&mut self.pending_cr) && b == b'\n' {
                r += 1; // the LF of a CRLF, already given out
                continue;
            }
            if std::mem::take(&mut self.dot_pending) {
                if b == b'\r' || b == b'\n' {
                    self.done = true; // "." alone on a line
                    break;
                }
                self.buf[w] = b'.';
                w += 1;
            } else if b == b'.' && self.at_line_start && !self.ignore_dots {
                (self.dot_pending, self.at_line_start) = (true, false);
                r += 1;
                continue;
            }
            let run = self.line_run(r, end);
            self.buf.copy_within(r..r + run, w);
            (r, w) = (r + run, w + run);
            let last = self.buf[w - 1];
            if last == b'\r' {
                self.buf[w - 1] = b'\n';
                self.pending_cr = true;
            }
            self.at_line_start = last == b'\r' || last == b'\n';
        }
        self.end = w;
    }

    /// The length of the run from `buf[r..end]` that is given out as it is,
    /// through the first byte that needs a decision (a CR, or unless `-i` a
    /// LF, after which a dot may start a line), or to `end`.
    fn line_run(&self, r: usize, end: usize) -> usize {
        let rest = &self.buf[r..end];
        let found = find_line_stop(rest, !self.ignore_dots);
        found.map_or(rest.len(), |i| i + 1)
    }
}

/// The first CR in `hay`, or with `lf_too` the first CR or LF. Short input
/// goes to memchr's SSE2 code (see [`crate::limits::CPU_PROBE_MIN_INPUT`]
/// for why), long input to memchr's own choice.
fn find_line_stop(hay: &[u8], lf_too: bool) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if hay.len() < crate::limits::CPU_PROBE_MIN_INPUT {
        use memchr::arch::x86_64::sse2::memchr::{One, Two};
        let found = match lf_too {
            true => Two::new(b'\r', b'\n').map(|sse2| sse2.find(hay)),
            false => One::new(b'\r').map(|sse2| sse2.find(hay)),
        };
        if let Some(found) = found {
            return found;
        }
    }
    match lf_too {
        true => memchr::memchr2(b'\r', b'\n', hay),
        false => memchr::memchr(b'\r', hay),
    }
}

impl<R: Read> BufRead for Normalizer<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.out == self.end && !self.done {
            match self.fill()? {
                0 => self.finish(),
                n => self.normalize(n),
            }
        }
        Ok(&self.buf[self.out..self.end])
    }

    fn consume(&mut self, amt: usize) {
        self.out = (self.out + amt).min(self.end);
    }
}

impl<R: Read> Read for Normalizer<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

struct HeaderBlock {
    /// The header fields, each line ending in LF.
    bytes: Vec<u8>,
    /// The first body line when the header ended at a line that is not a
    /// header field (rather than at an empty line); it is kept as body.
    body_start: Option<Vec<u8>>,
    len: u64,
    eight_bit: bool,
}

fn read_header_block(reader: &mut impl BufRead) -> Result<HeaderBlock> {
    let read_err = |e| Error::io("cannot read the message from standard input", e);
    let mut bytes = Vec::with_capacity(4096);
    let mut line = Vec::with_capacity(256);
    let mut first = true;
    let mut len = 0;
    let body_start = loop {
        line.clear();
        let room = MAX_HEADER_BLOCK.saturating_sub(bytes.len() as u64);
        let n = reader
            .by_ref()
            .take(room.max(1))
            .read_until(b'\n', &mut line)
            .map_err(read_err)?;
        len += n as u64;
        if n == 0 {
            break None;
        }
        // An mbox "From " line from the caller is not a header; Postfix drops it too.
        if first && line.starts_with(b"From ") {
            first = false;
            len -= n as u64;
            continue;
        }
        first = false;
        let complete = line.ends_with(b"\n");
        if line == b"\n" {
            break Some(Vec::new()); // the empty line; written back by write_header
        }
        let continuation = matches!(line[0], b' ' | b'\t') && !bytes.is_empty();
        // A line cut short by the limit may be a field whose colon is past the cut.
        let field = is_field_start(&line) || (!complete && is_field_name(&line));
        if !(continuation || field) {
            break Some(std::mem::take(&mut line));
        }
        if !complete || n as u64 > room {
            return Err(header_too_large());
        }
        bytes.extend_from_slice(&line);
    };
    let eight_bit = has_8bit(&bytes);
    Ok(HeaderBlock {
        bytes,
        body_start,
        len,
        eight_bit,
    })
}

/// `Name:` with a name of printable ASCII other than the colon.
fn is_field_start(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(0) | None => false,
        Some(i) => is_field_name(&line[..i]),
    }
}

/// Printable ASCII, as a field name is (a colon included: `line` may be a
/// name and the start of its value).
fn is_field_name(line: &[u8]) -> bool {
    !line.is_empty() && line.iter().all(|&b| (33..=126).contains(&b))
}

/// Past the limit, header lines must not become body lines (a Bcc there
/// would be shown to every recipient), and dropping them would change who
/// gets the message under `-t`: the message is refused.
fn header_too_large() -> Error {
    Error::Data(format!(
        "header too large: the header fields exceed {} KiB; nothing was queued",
        MAX_HEADER_BLOCK / 1024
    ))
}

/// The header fields, split by mail-parser's header parser, which gives each
/// field's byte range so that fields are kept byte for byte as submitted.
struct Fields<'a> {
    raw: &'a [u8],
    /// (lower-case name, start of field, start of value, end of field)
    list: Vec<(String, usize, usize, usize)>,
}

impl<'a> Fields<'a> {
    fn parse(raw: &'a [u8]) -> Fields<'a> {
        let mut list = Vec::new();
        if !raw.is_empty() {
            let mut block = raw.to_vec();
            block.push(b'\n'); // the parser wants the empty line that ends the header
            if let Some(msg) = mail_parser::MessageParser::default().parse_headers(&block) {
                for h in msg.headers() {
                    let (field, value, end) = (
                        h.offset_field as usize,
                        h.offset_start as usize,
                        h.offset_end as usize,
                    );
                    if field < value && value <= end && end <= raw.len() {
                        let name = String::from_utf8_lossy(&raw[field..value - 1])
                            .trim()
                            .to_ascii_lowercase();
                        list.push((name, field, value, end));
                    }
                }
            }
        }
        Fields { raw, list }
    }

    fn has(&self, name: &str) -> bool {
        self.list.iter().any(|(n, ..)| n == name)
    }

    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.list
            .iter()
            .filter(move |(n, ..)| n == name)
            .map(|&(_, _, v, e)| &self.raw[v..e])
    }

    /// `-t`: To, Cc and Bcc, or Resent-To/Cc/Bcc when Resent- headers are present.
    fn recipients(&self) -> Result<Vec<String>> {
        let resent = self.list.iter().any(|(n, ..)| n.starts_with("resent-"));
        let names: [&str; 3] = if resent {
            ["resent-to", "resent-cc", "resent-bcc"]
        } else {
            ["to", "cc", "bcc"]
        };
        let mut out = Vec::new();
        for name in names {
            for value in self.values(name) {
                // Decoding lossily would queue U+FFFD in place of the octet:
                // an envelope recipient that differs from the header's.
                let value = std::str::from_utf8(value)
                    .map_err(|_| Error::Data(format!("{name} header: not valid UTF-8")))?;
                let list = address::parse_list(value)
                    .map_err(|e| Error::Data(format!("{name} header: {e}")))?;
                out.extend(list);
            }
        }
        Ok(out)
    }

    /// The header as it is written out, in the order submitted: without Bcc
    /// and Resent-Bcc, which must never leave this host, and with bare local
    /// names in address fields qualified (`To: root` to `To: root@DOMAIN`),
    /// and the From rewritten as `rw` says. Anything between the parser's
    /// fields (it should be nothing) is kept.
    fn output(&self, rw: &Rewrites) -> Vec<Cow<'a, [u8]>> {
        let mut out = Vec::with_capacity(self.list.len() + 1);
        let mut pos = 0;
        for (name, start, value, end) in &self.list {
            if pos < *start {
                out.push(Cow::Borrowed(&self.raw[pos..*start]));
            }
            pos = *end;
            if name == "bcc" || name == "resent-bcc" {
                continue;
            }
            let original = ADDRESS_FIELDS
                .contains(&name.as_str())
                .then(|| std::str::from_utf8(&self.raw[*value..*end]).ok())
                .flatten();
            let (rewritten, reply_to) = self.rewrite(name, original, rw);
            match rewritten {
                Some(v) => {
                    let mut field = self.raw[*start..*value].to_vec();
                    field.extend_from_slice(v.as_bytes());
                    out.push(Cow::Owned(field));
                }
                None => out.push(Cow::Borrowed(&self.raw[*start..*end])),
            }
            if let Some(v) = reply_to {
                out.push(Cow::Owned(format!("Reply-To:{v}").into_bytes()));
            }
        }
        if pos < self.raw.len() {
            out.push(Cow::Borrowed(&self.raw[pos..]));
        }
        out
    }

    /// An address field's new value (None: as submitted) and, when the
    /// From is rewritten to `sender_address` and there is no Reply-To, the
    /// original From as a Reply-To value, so that replies reach the author.
    fn rewrite(
        &self,
        name: &str,
        original: Option<&str>,
        rw: &Rewrites,
    ) -> (Option<String>, Option<String>) {
        let Some(v) = original else {
            return (None, None);
        };
        let mut value = address::qualify_header_value(v, rw.domain);
        if name != "from" {
            return (value, None);
        }
        if let Some(m) = rw.masquerade {
            value = m.header_value(value.as_deref().unwrap_or(v)).or(value);
        }
        let current = value.clone().unwrap_or_else(|| v.to_string());
        match rw.from_as.and_then(|a| address::from_value_as(&current, a)) {
            Some(forced) => {
                let reply_to = (!self.has("reply-to")).then(|| with_line_end(current));
                (Some(forced), reply_to)
            }
            None => (value, None),
        }
    }
}

/// How intake rewrites the header's addresses.
struct Rewrites<'r> {
    /// Qualifies bare names.
    domain: &'r str,
    masquerade: Option<&'r crate::aliases::Masquerade>,
    /// `rewrite_from`: the From becomes this address.
    from_as: Option<&'r str>,
}

/// A header value that ends its line (the last field may lack the LF).
fn with_line_end(mut value: String) -> String {
    if !value.ends_with('\n') {
        value.push('\n');
    }
    value
}

struct AddedHeaders {
    top: String,
    bottom: String,
}

/// Received on top; From, Date, Message-ID and To where missing, at the end,
/// as Postfix adds them. The From name is `-F`'s, else the user's GECOS name.
fn added_headers(
    env: &Envelope,
    fields: &Fields,
    origin: &Origin,
    full_name: Option<&str>,
) -> AddedHeaders {
    let date = system::rfc5322_date(env.arrival);
    let top = format!(
        "Received: by {} (spoolmail, from userid {})\n\tid {}; {}\n",
        origin.host, origin.uid, env.id, date
    );
    let mut bottom = String::new();
    if !fields.has("from") {
        let addr = if env.sender.is_empty() {
            address::qualify(
                origin.user_name.as_deref().unwrap_or("MAILER-DAEMON"),
                &origin.domain,
            )
        } else {
            env.sender.clone()
        };
        let name = full_name
            .map(str::to_string)
            .or_else(|| origin.user_full_name.clone());
        match name {
            Some(n) => bottom.push_str(&format!("From: {} <{addr}>\n", display_name(&n))),
            None => bottom.push_str(&format!("From: {addr}\n")),
        }
    }
    if !fields.has("date") {
        bottom.push_str(&format!("Date: {date}\n"));
    }
    if !fields.has("message-id") {
        bottom.push_str(&format!(
            "Message-ID: <{}@{}>\n",
            message_id_local(env, origin),
            origin.host
        ));
    }
    if !["to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"]
        .iter()
        .any(|n| fields.has(n))
    {
        bottom.push_str("To: undisclosed-recipients:;\n");
    }
    AddedHeaders { top, bottom }
}

/// The local part of an added Message-ID: an MD5 of what makes this message
/// unique, as Mail::Spool made its ids.
fn message_id_local(env: &Envelope, origin: &Origin) -> String {
    let mut h = Md5::new();
    h.update(env.id.as_str().as_bytes());
    h.update(origin.host.as_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(system::random_u64().to_le_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}.{}", env.id, &hex[..16])
}

/// A display name as a phrase: plain words as they are, anything with
/// specials quoted, non-ASCII as an RFC 2047 encoded word.
fn display_name(name: &str) -> String {
    if !name.is_ascii() {
        return format!("=?UTF-8?B?{}?=", crate::mime::base64(name.as_bytes()));
    }
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " !#$%&'*+-/=?^_`{|}~".contains(c))
    {
        return name.to_string();
    }
    let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

fn write_content(draft: &mut Draft, bytes: &[u8]) -> Result<()> {
    draft
        .content()
        .write_all(bytes)
        .map_err(|e| Error::io("cannot write to the spool", e))?;
    draft.add_content_len(bytes.len());
    Ok(())
}

fn write_header(
    draft: &mut Draft,
    added: &AddedHeaders,
    fields: &Fields,
    rewrites: &Rewrites,
) -> Result<()> {
    write_content(draft, added.top.as_bytes())?;
    for field in fields.output(rewrites) {
        write_content(draft, &field)?;
    }
    write_content(draft, added.bottom.as_bytes())?;
    write_content(draft, b"\n")
}

/// Word at a time (the standard library's `is_ascii`), not byte by byte.
fn has_8bit(bytes: &[u8]) -> bool {
    !bytes.is_ascii()
}

/// Copies the rest of stdin into the spool file, checking the size limit as
/// it goes, so that an oversized message is refused without being held.
fn stream_body(reader: &mut impl BufRead, draft: &mut Draft, limit: u64) -> Result<bool> {
    let mut eight_bit = false;
    loop {
        let chunk = reader
            .fill_buf()
            .map_err(|e| Error::io("cannot read the message from standard input", e))?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        check_size(draft.content_len() + n as u64, limit)?;
        eight_bit = eight_bit || has_8bit(chunk);
        draft
            .content()
            .write_all(chunk)
            .map_err(|e| Error::io("cannot write to the spool", e))?;
        draft.add_content_len(n);
        reader.consume(n);
    }
    Ok(eight_bit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(input: &[u8], ignore_dots: bool) -> Vec<u8> {
        let mut out = Vec::new();
        Normalizer::new(input, ignore_dots)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn line_endings_become_lf() {
        assert_eq!(norm(b"a\r\nb\nc\rd", true), b"a\nb\nc\nd\n");
        assert_eq!(norm(b"a\r\r\nb", true), b"a\n\nb\n");
        assert_eq!(norm(b"", true), b"");
        assert_eq!(norm(b"x\n", true), b"x\n");
    }

    #[test]
    fn lone_dot_ends_input_without_i() {
        assert_eq!(norm(b"a\n.\nb\n", false), b"a\n");
        assert_eq!(norm(b"a\r\n.\r\nb\n", false), b"a\n");
        assert_eq!(norm(b"a\n.", false), b"a\n");
        assert_eq!(norm(b"a\n..\n.b\n", false), b"a\n..\n.b\n");
        assert_eq!(norm(b".\n", false), b"");
        assert_eq!(norm(b"a\n.\nb\n", true), b"a\n.\nb\n");
    }

    #[test]
    fn normalizer_handles_tiny_reads() {
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() || out.is_empty() {
                    return Ok(0);
                }
                out[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let mut out = Vec::new();
        Normalizer::new(OneByte(b"a\r\n.x\r\n.\r\nafter"), false)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"a\n.x\n");
    }

    /// The line-end and dot rules of intake do not depend on where reads
    /// split the stream: a CRLF and a lone dot at every position around
    /// the first buffer (8 KiB), the search's switch to memchr's own choice
    /// of code (16 KiB) and the 64 KiB buffer, read in pieces of several
    /// sizes.
    #[test]
    fn normalizer_splits_anywhere_around_its_buffer() {
        struct Pieces<'a>(&'a [u8], usize);
        impl Read for Pieces<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.1.min(out.len()).min(self.0.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let buf = crate::limits::IO_BUFFER;
        let first = crate::limits::INTAKE_FIRST_BUFFER;
        let probe = crate::limits::CPU_PROBE_MIN_INPUT;
        let lens = (first - 4..=first + 2)
            .chain(probe - 3..=probe + 1)
            .chain(buf - 4..=buf + 2)
            .chain(2 * buf - 3..=2 * buf + 1);
        for len in lens {
            let mut input = b"a\r\n".to_vec();
            input.extend(std::iter::repeat_n(b'x', len));
            input.extend_from_slice(b"\r\n..b\r\n.\r\nafter\n");
            let mut want = b"a\n".to_vec();
            want.extend(std::iter::repeat_n(b'x', len));
            want.extend_from_slice(b"\n..b\n");
            for size in [
                7,
                first - 1,
                first,
                first + 1,
                buf - 1,
                buf,
                buf + 1,
                usize::MAX,
            ] {
                let mut out = Vec::new();
                Normalizer::new(Pieces(&input, size), false)
                    .read_to_end(&mut out)
                    .unwrap();
                assert!(out == want, "line {len}, reads of {size}");
            }
        }
    }

    /// The SSE2 search of short input and memchr's own of long input
    /// find the same bytes.
    #[test]
    fn short_and_long_searches_agree() {
        let probe = crate::limits::CPU_PROBE_MIN_INPUT;
        for len in [0, 1, 15, 16, 17, 63, 64, 65, probe - 1, probe, probe + 1] {
            for at in [None, Some(0), Some(len / 2), len.checked_sub(1)] {
                for byte in [b'\r', b'\n'] {
                    let mut hay = vec![b'x'; len];
                    if let Some(i) = at.filter(|&i| i < len) {
                        hay[i] = byte;
                    }
                    let cr = hay.iter().position(|&b| b == b'\r');
                    let either = hay.iter().position(|&b| b == b'\r' || b == b'\n');
                    assert_eq!(find_line_stop(&hay, false), cr, "{len} {at:?} {byte}");
                    assert_eq!(find_line_stop(&hay, true), either, "{len} {at:?} {byte}");
                }
            }
        }
    }

    #[test]
    fn header_block_split() {
        let mut r = io::Cursor::new(b"From x\nTo: a@b\n\tc@d\nSubject: s\n\nbody\n".to_vec());
        let h = read_header_block(&mut r).unwrap();
        assert_eq!(h.bytes, b"To: a@b\n\tc@d\nSubject: s\n");
        assert_eq!(h.body_start, Some(Vec::new()));
        let mut r = io::Cursor::new(b"To: a@b\nnot a header line\nmore\n".to_vec());
        let h = read_header_block(&mut r).unwrap();
        assert_eq!(h.bytes, b"To: a@b\n");
        assert_eq!(h.body_start.as_deref(), Some(&b"not a header line\n"[..]));
    }

    /// Past the header limit no header line may become a body line (a Bcc
    /// there would be shown to every recipient): the message is refused,
    /// whether the limit falls between lines, inside a field or inside a
    /// field's name.
    #[test]
    fn header_over_the_limit_is_refused() {
        let limit = MAX_HEADER_BLOCK as usize;
        let filler = |n: usize| {
            let mut h = Vec::new();
            while h.len() < n {
                h.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\n");
            }
            h
        };
        let mut cases = Vec::new();
        let mut between = filler(limit);
        between.extend_from_slice(b"Bcc: secret@x.org\n\nbody\n");
        cases.push(between);
        let mut long_field = b"To: a@b\nX-Long: ".to_vec();
        long_field.extend(std::iter::repeat_n(b'y', limit));
        long_field.extend_from_slice(b"\nBcc: secret@x.org\n\nbody\n");
        cases.push(long_field);
        let mut long_name = b"To: a@b\n".to_vec();
        long_name.extend(std::iter::repeat_n(b'N', limit));
        long_name.extend_from_slice(b": v\nBcc: secret@x.org\n\nbody\n");
        cases.push(long_name);
        let mut continued = filler(limit - 10);
        continued.extend_from_slice(b"X-Folded: a\n");
        for _ in 0..4 {
            continued.extend_from_slice(b" continued line\n");
        }
        continued.extend_from_slice(b"Bcc: secret@x.org\n\nbody\n");
        cases.push(continued);
        for (i, input) in cases.into_iter().enumerate() {
            match read_header_block(&mut io::Cursor::new(input)) {
                Err(Error::Data(msg)) => assert!(msg.contains("header too large"), "{i}: {msg}"),
                Err(e) => panic!("case {i}: {e}"),
                Ok(h) => panic!(
                    "case {i}: accepted, body starts {:?}",
                    h.body_start
                        .map(|b| String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned())
                ),
            }
        }
        // A header under the limit ends at its empty line or at its first
        // line that is not a field, as before.
        let mut fits = filler(limit - 100);
        fits.extend_from_slice(b"\nbody\n");
        let h = read_header_block(&mut io::Cursor::new(fits)).unwrap();
        assert_eq!(h.body_start, Some(Vec::new()));
        let mut fits = filler(limit - 100);
        fits.extend_from_slice(b"<not a field>\nX: y\n");
        let h = read_header_block(&mut io::Cursor::new(fits)).unwrap();
        assert_eq!(h.body_start.as_deref(), Some(&b"<not a field>\n"[..]));
    }

    #[test]
    fn fields_and_bcc_removal() {
        let raw = b"To: a@b,\n root\nBcc: secret@x\nSubject: s\nResent-Bcc: r@x\nX: y\n";
        let f = Fields::parse(raw);
        assert_eq!(f.recipients().unwrap(), vec!["r@x"]); // Resent- present
        let rw = Rewrites {
            domain: "ex.org",
            masquerade: None,
            from_as: None,
        };
        let kept: Vec<u8> = f.output(&rw).concat();
        assert_eq!(kept, b"To: a@b,\n root@ex.org\nSubject: s\nX: y\n");
        let f = Fields::parse(b"To: a@b\nCc: G: c@d;\nBcc: e@f\n");
        assert_eq!(f.recipients().unwrap(), vec!["a@b", "c@d", "e@f"]);
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("CronDaemon"), "CronDaemon");
        assert_eq!(display_name("Smith, John"), "\"Smith, John\"");
        assert_eq!(display_name("Jörg"), "=?UTF-8?B?SsO2cmc=?=");
    }

    #[test]
    fn a_message_fits_while_the_reserve_stays_free() {
        const M: u64 = 1024 * 1024;
        // (available, reserve, size) -> room
        for (available, reserve, size, room) in [
            (100 * M, 20 * M, 0, true),
            (100 * M, 20 * M, 80 * M, true),
            (100 * M, 20 * M, 80 * M + 1, false),
            (100 * M, 20 * M, 50 * M, true),
            (60 * M, 20 * M, 50 * M, false),
            (20 * M - 1, 20 * M, 0, false),
            (u64::MAX, 1, u64::MAX, false),
            (u64::MAX, 0, u64::MAX, true),
        ] {
            assert_eq!(
                has_room(available, reserve, size),
                room,
                "{available} {reserve} {size}"
            );
        }
    }

    #[test]
    fn the_free_space_reserve_is_the_smaller_of_20m_and_one_percent() {
        const M: u64 = 1024 * 1024;
        // (configured, file system size) -> reserve
        for (configured, total, reserve) in [
            (None, 100 * 1024 * M, 20 * M),
            (None, 1000 * M, 10 * M),
            (None, 0, 0),
            (Some(0), 100 * 1024 * M, 0),
            (Some(500 * M), 1000 * M, 500 * M),
        ] {
            assert_eq!(
                free_space_reserve(configured, total),
                reserve,
                "{configured:?} of {total}"
            );
        }
        assert_eq!(human_size(20 * M), "20M");
        assert_eq!(human_size(3 * 1024 * M), "3G");
        assert_eq!(human_size(10 * M + 1), "11M");
        assert_eq!(human_size(1536), "2k");
        assert_eq!(human_size(100), "100 bytes");
    }
}
