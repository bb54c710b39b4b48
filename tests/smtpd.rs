//! Integration tests of `sendmail -bs` (issue 6): the real binary speaking
//! SMTP over its standard input and output, driven by real clients
//! (Python's smtplib; Symfony Mailer's sendmail transport when PHP and its
//! packages are installed, and a replay of exactly what it sends otherwise)
//! and by hand-written sessions for pipelining, every error reply and the
//! SMTP smuggling forms. What landed in the spool is read back here,
//! independently of the crate's own reader (format: doc/SPOOL.md).
//!
//! Every test makes its own directory, bounds every process it starts in
//! time (killing it on timeout), and removes its directory when done, so
//! that they all run in parallel, as root (CI) and as any other user.

mod harness;

use harness::{
    Config, Queued, Spool, contains, find, group_name, is_queue_id, is_root, run, set_mode,
    user_name, wait_until_exit,
};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// No process a test starts may take longer than this.
const TIMEOUT: Duration = Duration::from_secs(30);
const DOMAIN: &str = "example.org";
/// `helo_name` in the test config: the greeting, Received and
/// X-Authentication-Warning name it.
const HOST: &str = "spoolmail.test";
/// The user tests run the binary as when they run as root and need an
/// untrusted user (`nobody` on Debian).
const NOBODY: u32 = 65534;

// ---------------------------------------------------------------------------
// A temporary spool and its config
// ---------------------------------------------------------------------------

/// The submission config with `helo_name`, then `extra` (a later line wins
/// over an earlier one).
fn spool(tag: &str, extra: &str) -> Spool {
    Spool::new(
        tag,
        &Config::submission().set("helo_name", HOST).lines(extra),
    )
}

impl Spool {
    /// A whole `-bs` session: `input` in one go, then EOF.
    fn session(&self, input: &[u8]) -> Run {
        run_session(self.cmd(&["-bs"]), input, self.root())
    }
}

// ---------------------------------------------------------------------------
// Running processes with a deadline
// ---------------------------------------------------------------------------

/// Runs a program with no input, collecting its output.
fn run_program(cmd: Command) -> (ExitStatus, String, String) {
    let out = run(cmd, b"", TIMEOUT);
    (out.status, out.stdout, out.stderr)
}

/// One reply, multi-line replies joined: `text` has each line's text after
/// the code and separator, joined with LF.
#[derive(Debug, Clone)]
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    /// The queue id at the end of `250 2.0.0 Ok: queued as QID`.
    fn queue_id(&self) -> String {
        assert_eq!(self.code, 250, "not a queued reply: {self:?}");
        let id = self
            .text
            .strip_prefix("2.0.0 Ok: queued as ")
            .unwrap_or_else(|| panic!("no queue id in {self:?}"));
        assert!(is_queue_id(id), "{id:?} is not a queue id");
        id.to_string()
    }
}

/// The complete replies at the start of `buf` (at most `max`) and the
/// number of bytes they take. Every line must be `DDD text CRLF` or
/// `DDD-text CRLF`; a line without its CRLF is left for later.
fn take_replies(buf: &[u8], max: usize) -> (Vec<Reply>, usize) {
    let mut replies = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut pos = 0;
    let mut used = 0;
    while replies.len() < max {
        let Some(end) = find(&buf[pos..], b"\r\n") else {
            break;
        };
        let line = std::str::from_utf8(&buf[pos..pos + end])
            .unwrap_or_else(|_| panic!("reply line not UTF-8: {:?}", &buf[pos..pos + end]));
        pos += end + 2;
        let b = line.as_bytes();
        assert!(
            b.len() >= 3
                && b[..3].iter().all(u8::is_ascii_digit)
                && (b.len() == 3 || b[3] == b' ' || b[3] == b'-')
                && !line.contains(['\r', '\n']),
            "malformed reply line {line:?}"
        );
        let code: u16 = line[..3].parse().unwrap();
        lines.push(line.get(4..).unwrap_or("").to_string());
        if b.len() == 3 || b[3] == b' ' {
            replies.push(Reply {
                code,
                text: lines.join("\n"),
            });
            lines.clear();
            used = pos;
        }
    }
    (replies, used)
}

fn codes(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.code).collect()
}

/// A finished session.
struct Run {
    status: ExitStatus,
    replies: Vec<Reply>,
    stderr: String,
}

impl Run {
    fn codes(&self) -> Vec<u16> {
        codes(&self.replies)
    }

    /// The replies' codes are `want`, and the process exited 0.
    fn assert_codes(&self, want: &[u16]) {
        assert_eq!(
            self.codes(),
            want,
            "replies: {:#?}\nstderr: {}",
            self.replies,
            self.stderr
        );
    }

    fn assert_exit_ok(&self) {
        assert!(
            self.status.success(),
            "exit {:?}; stderr: {}",
            self.status,
            self.stderr
        );
    }
}

static STDERR_FILES: AtomicUsize = AtomicUsize::new(0);

/// The binary with its stdin and stdout on one end of a socket pair (as
/// Python's smtplib trick has it), stderr in a file under `dir`.
struct Live {
    child: Child,
    sock: UnixStream,
    buf: Vec<u8>,
    deadline: Instant,
    stderr_path: PathBuf,
}

impl Live {
    fn start(mut cmd: Command, dir: &Path) -> Live {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let stderr_path = dir.join(format!(
            "stderr-{}",
            STDERR_FILES.fetch_add(1, Ordering::SeqCst)
        ));
        let stderr = fs::File::create(&stderr_path).unwrap();
        cmd.stdin(Stdio::from(OwnedFd::from(theirs.try_clone().unwrap())))
            .stdout(Stdio::from(OwnedFd::from(theirs)))
            .stderr(Stdio::from(stderr));
        let child = cmd.spawn().expect("spawn spoolmail -bs");
        // The command holds the other end until dropped: drop it now, so that
        // the child's exit is seen as EOF here.
        drop(cmd);
        Live {
            child,
            sock: ours,
            buf: Vec::new(),
            deadline: Instant::now() + TIMEOUT,
            stderr_path,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.sock
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        self.sock.write_all(bytes).expect("write to the session");
    }

    /// Reads until `n` complete replies have arrived; returns them.
    fn replies(&mut self, n: usize) -> Vec<Reply> {
        loop {
            let (replies, used) = take_replies(&self.buf, n);
            if replies.len() == n {
                self.buf.drain(..used);
                return replies;
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {n} replies; got {:?}; stderr: {}",
                String::from_utf8_lossy(&self.buf),
                self.stderr()
            );
            self.sock.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 64 * 1024];
            match self.sock.read(&mut chunk) {
                Ok(0) => panic!(
                    "session closed after {:?}, expected {n} replies; stderr: {}",
                    String::from_utf8_lossy(&self.buf),
                    self.stderr()
                ),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "reading replies: {e}; so far {:?}; stderr: {}",
                    String::from_utf8_lossy(&self.buf),
                    self.stderr()
                ),
            }
        }
    }

    fn reply(&mut self) -> Reply {
        self.replies(1).pop().unwrap()
    }

    /// Sends `bytes` and expects one reply with `code`.
    fn step(&mut self, bytes: &[u8], code: u16) -> Reply {
        self.send(bytes);
        let r = self.reply();
        assert_eq!(
            r.code,
            code,
            "after {:?}: {r:?}",
            String::from_utf8_lossy(bytes)
        );
        r
    }

    fn stderr(&self) -> String {
        fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Closes our side for writing, reads everything left, waits for exit.
    fn finish(self) -> Run {
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        self.read_to_end()
    }

    /// Reads everything left and waits for the exit.
    fn read_to_end(mut self) -> Run {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 64 * 1024];
            match self.sock.read(&mut chunk) {
                Ok(0) => break,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let status = wait_until_exit(&mut self.child, self.deadline, "spoolmail -bs");
        let (replies, used) = take_replies(&self.buf, usize::MAX);
        assert_eq!(
            used,
            self.buf.len(),
            "output does not end with a complete reply: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        Run {
            status,
            replies,
            stderr: self.stderr(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A whole session: `input` written (from a thread, so that neither side
/// can block the other) and then EOF; all replies read; the exit awaited.
fn run_session(cmd: Command, input: &[u8], dir: &Path) -> Run {
    let live = Live::start(cmd, dir);
    let mut writer = live.sock.try_clone().unwrap();
    let input = input.to_vec();
    let w = thread::spawn(move || {
        let _ = writer.set_write_timeout(Some(TIMEOUT));
        // The binary may stop reading (it exited): ignore EPIPE.
        let _ = writer.write_all(&input);
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    // The writer closes its side when done: EOF only after all the input.
    let run = live.read_to_end();
    w.join().unwrap();
    run
}

/// What spoolmail's SMTP client sends for stored `content`, done as
/// src/smtp.rs `stream_data` does it: every LF line becomes a CRLF line,
/// every line that begins with a dot gets a second dot, whatever follows it
/// (so a stored line holding a single `.` is sent as `..`), then `.` CRLF.
fn relay_wire(content: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(content.len() + 64);
    let mut rest = content;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        if line.first() == Some(&b'.') {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
        wire.extend_from_slice(b"\r\n");
        rest = next;
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

/// The relayed data cannot be cut short by any server downstream, however
/// lax: every CR is part of a CRLF, every LF of a CRLF, and the only line
/// holding a lone dot (even one followed by NUL or space, as lax parsers
/// read it) is the final terminator.
fn assert_cannot_end_early(wire: &[u8], what: &str) {
    let show = || String::from_utf8_lossy(wire).into_owned();
    for (i, &b) in wire.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(
                wire.get(i + 1),
                Some(&b'\n'),
                "{what}: bare CR at {i}: {:?}",
                show()
            );
        }
        if b == b'\n' {
            assert!(
                i > 0 && wire[i - 1] == b'\r',
                "{what}: bare LF at {i}: {:?}",
                show()
            );
        }
    }
    let end = wire.len() - 3;
    assert_eq!(&wire[end..], b".\r\n");
    for (i, &b) in wire.iter().enumerate() {
        let at_line_start = i == 0 || matches!(wire[i - 1], b'\r' | b'\n');
        if b == b'.' && at_line_start && i != end {
            let after = wire[i + 1..]
                .iter()
                .find(|&&c| c != 0 && c != b' ' && c != b'\t');
            assert!(
                !matches!(after, Some(b'\r' | b'\n') | None),
                "{what}: a lone dot line at {i} would end the data early: {:?}",
                show()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Python's smtplib over the process's stdio
// ---------------------------------------------------------------------------

/// smtplib has no pipe transport: the usual trick is a socket pair, the
/// binary's stdin and stdout on one end, `smtp.sock` the other. Prints one
/// line per reply (`REPLY LABEL CODE TEXT`), the EHLO keywords
/// (`FEATURE KEY VALUE`) and the binary's exit status (`EXIT N`).
const SMTPLIB_SCRIPT: &str = r#"
import smtplib, socket, subprocess, sys
from email.message import EmailMessage

binary, conf = sys.argv[1], sys.argv[2]

def show(label, code, text):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    print("REPLY", label, code, text.replace("\n", " | "), flush=True)

class Recording(smtplib.SMTP):
    label = "?"
    def data(self, msg):
        code, text = super().data(msg)
        show("DATA-" + self.label, code, text)
        return code, text

ours, theirs = socket.socketpair()
proc = subprocess.Popen([binary, "-C", conf, "-bs"], stdin=theirs, stdout=theirs)
theirs.close()
ours.settimeout(20)
# local_hostname given: smtplib would otherwise ask DNS for this host's name.
smtp = Recording(local_hostname="client.example.org", timeout=20)
smtp.sock = ours
show("GREETING", *smtp.getreply())
show("EHLO", *smtp.ehlo())
for k, v in sorted(smtp.esmtp_features.items()):
    print("FEATURE", k, v, flush=True)

# 1. Raw bytes through sendmail(): a Bcc header that spoolmail must drop,
#    and lines that begin with dots (smtplib stuffs them, spoolmail unstuffs).
smtp.label = "raw"
raw = (b"From: Alice <alice@example.com>\r\n"
       b"To: bob@example.net\r\n"
       b"Bcc: secret@example.net\r\n"
       b"Subject: one\r\n"
       b"\r\n"
       b"line one\r\n.\r\n..two dots\r\n.leading\r\nlast\r\n")
refused = smtp.sendmail("alice@example.com", ["bob@example.net", "secret@example.net"], raw)
print("REFUSED raw", len(refused), flush=True)

# 2. send_message() with a Bcc header: smtplib puts the Bcc recipient into
#    the envelope and leaves the header out.
m = EmailMessage()
m["From"] = "Alice <alice@example.com>"
m["To"] = "carol@example.net"
m["Bcc"] = "dan@example.net"
m["Subject"] = "two"
m.set_content("second message\n")
smtp.label = "bcc"
smtp.send_message(m)

# 3. UTF-8 addresses and content: smtplib adds SMTPUTF8 and BODY=8BITMIME.
m = EmailMessage()
m["From"] = "Jörg <jörg@exämple.org>"
m["To"] = "Zoë <zoë@exämple.net>"
m["Subject"] = "grüße ✓"
m.set_content("Grüße aus Python ✓ ünïcödé\n", cte="8bit")
smtp.label = "utf8"
smtp.send_message(m)

# 4. 8-bit content without BODY=8BITMIME: spoolmail must notice it.
smtp.label = "latin1"
smtp.sendmail("alice@example.com", ["erin@example.net"],
              b"Subject: latin-1\r\n\r\ncaf\xe9 cr\xe8me\r\n")

# 5. ASCII content declared BODY=8BITMIME: the declaration is kept.
smtp.label = "declared"
smtp.sendmail("alice@example.com", ["frank@example.net"],
              b"Subject: declared\r\n\r\nplain\r\n", mail_options=["BODY=8BITMIME"])

show("NOOP", *smtp.noop())
show("VRFY", *smtp.verify("bob"))
show("RSET", *smtp.rset())
show("QUIT", *smtp.quit())
print("EXIT", proc.wait(timeout=20), flush=True)
"#;

#[test]
fn smtplib_sends_several_messages_in_one_session() {
    let s = spool("smtplib", "");
    let script = s.root().join("client.py");
    fs::write(&script, SMTPLIB_SCRIPT).unwrap();
    harness::require_program("python3");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(harness::bin()).arg(&s.conf);
    let (status, out, err) = run_program(cmd);
    assert!(status.success(), "python3 failed: {status:?}\n{out}\n{err}");

    let mut replies: Vec<(String, u16, String)> = Vec::new();
    let mut features: Vec<(String, String)> = Vec::new();
    let mut exit = None;
    for line in out.lines() {
        let mut w = line.splitn(4, ' ');
        match w.next() {
            Some("REPLY") => {
                let label = w.next().unwrap().to_string();
                let code = w.next().unwrap().parse().unwrap();
                replies.push((label, code, w.next().unwrap_or("").to_string()));
            }
            Some("FEATURE") => {
                let k = w.next().unwrap().to_string();
                features.push((k, w.collect::<Vec<_>>().join(" ")));
            }
            Some("EXIT") => exit = Some(w.next().unwrap().to_string()),
            _ => {}
        }
    }
    let reply = |label: &str| {
        replies
            .iter()
            .find(|r| r.0 == label)
            .unwrap_or_else(|| panic!("no {label} reply in {out}"))
            .clone()
    };
    assert_eq!(reply("GREETING").1, 220);
    assert!(reply("GREETING").2.starts_with(HOST), "{out}");
    assert_eq!(reply("EHLO").1, 250);
    for k in [
        "pipelining",
        "8bitmime",
        "smtputf8",
        "dsn",
        "enhancedstatuscodes",
    ] {
        assert!(features.iter().any(|f| f.0 == k), "EHLO lacks {k}: {out}");
    }
    // The default max_message_size, 50 MiB.
    assert!(
        features.contains(&("size".into(), "52428800".into())),
        "SIZE: {features:?}"
    );
    assert_eq!(reply("NOOP").1, 250);
    assert_eq!(reply("VRFY").1, 252);
    assert_eq!(reply("RSET").1, 250);
    assert_eq!(reply("QUIT").1, 221);
    assert_eq!(exit.as_deref(), Some("0"), "{out}\n{err}");

    // Each message queued once, under the id its 250 named.
    let mut ids = Vec::new();
    for label in ["raw", "bcc", "utf8", "latin1", "declared"] {
        let (_, code, text) = reply(&format!("DATA-{label}"));
        let id = Reply { code, text }.queue_id();
        assert!(
            s.spool.join("queue").join(&id).is_file(),
            "{label}: queue/{id} does not exist"
        );
        ids.push(id);
    }
    let mut all = s.queue_ids();
    all.sort();
    let mut named = ids.clone();
    named.sort();
    named.dedup();
    assert_eq!(all, named, "every message queued exactly once");
    s.assert_tmp_empty();

    // 1: the SMTP envelope, Bcc gone, dots unstuffed, 7bit.
    let m = s.message(&ids[0]);
    assert_eq!(m.sender(), "alice@example.com");
    assert_eq!(m.rcpts(), ["bob@example.net", "secret@example.net"]);
    assert!(m.header_values("bcc").is_empty(), "{}", m.header_text());
    assert!(!contains(&m.content, b"secret@example.net"));
    assert_eq!(m.header_values("to"), ["bob@example.net"]);
    assert_eq!(m.header_values("subject"), ["one"]);
    assert_eq!(m.body(), b"line one\n.\n..two dots\n.leading\nlast\n");
    assert_eq!(m.body_type(), "7bit");
    assert_eq!(m.header_values("received").len(), 1);
    m.assert_no_cr();

    // 2: the Bcc recipient is in the envelope only.
    let m = s.message(&ids[1]);
    assert_eq!(m.rcpts(), ["carol@example.net", "dan@example.net"]);
    assert!(m.header_values("bcc").is_empty(), "{}", m.header_text());
    assert!(!contains(&m.content, b"dan@example.net"));
    assert!(contains(m.body(), b"second message\n"));

    // 3: UTF-8 envelope and content stored as they came.
    let m = s.message(&ids[2]);
    assert_eq!(m.sender(), "jörg@exämple.org");
    assert_eq!(m.rcpts(), ["zoë@exämple.net"]);
    assert_eq!(m.get("smtputf8"), Some("yes"));
    assert_eq!(m.body_type(), "8bitmime");
    assert_eq!(m.header_values("subject"), ["grüße ✓"]);
    assert!(
        contains(m.body(), "Grüße aus Python ✓ ünïcödé\n".as_bytes()),
        "{:?}",
        String::from_utf8_lossy(m.body())
    );

    // 4: 8-bit content found without being declared.
    let m = s.message(&ids[3]);
    assert_eq!(m.body(), b"caf\xe9 cr\xe8me\n");
    assert_eq!(m.body_type(), "8bitmime");
    assert_eq!(m.get("smtputf8"), None);

    // 5: BODY=8BITMIME kept.
    let m = s.message(&ids[4]);
    assert_eq!(m.body(), b"plain\n");
    assert_eq!(m.body_type(), "8bitmime");
}

// ---------------------------------------------------------------------------
// Pipelining
// ---------------------------------------------------------------------------

#[test]
fn pipelined_batch_in_one_write_is_answered_in_order() {
    let s = spool("pipelining", "");
    let mut live = Live::start(s.cmd(&["-bs"]), s.root());
    let greeting = live.reply();
    assert_eq!(greeting.code, 220);
    assert_eq!(greeting.text, format!("{HOST} ESMTP spoolmail"));
    // The whole batch in one write, without QUIT: the replies must come
    // while the session waits for more (RFC 2920), not only at EOF.
    live.send(
        b"EHLO client.example.org\r\n\
          MAIL FROM:<alice@example.com> SIZE=200\r\n\
          RCPT TO:<bob@example.net>\r\n\
          RCPT TO:<carol@example.net> NOTIFY=SUCCESS,FAILURE\r\n\
          RCPT TO:<dave@example.net>\r\n\
          DATA\r\n\
          Subject: first\r\n\
          \r\n\
          first body\r\n\
          ..dotted\r\n\
          .\r\n\
          MAIL FROM:<erin@example.com> RET=HDRS ENVID=abc+2Bdef\r\n\
          RCPT TO:<frank@example.net>\r\n\
          DATA\r\n\
          Subject: second\r\n\
          \r\n\
          second body\r\n\
          .\r\n",
    );
    let r = live.replies(11);
    assert_eq!(
        codes(&r),
        [250, 250, 250, 250, 250, 354, 250, 250, 250, 354, 250],
        "{r:#?}"
    );
    let ehlo: Vec<&str> = r[0].text.lines().collect();
    assert_eq!(ehlo[0], HOST);
    for k in [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "SMTPUTF8",
        "DSN",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(&k), "EHLO lacks {k}: {ehlo:?}");
    }
    let first = r[6].queue_id();
    let second = r[10].queue_id();
    assert_ne!(first, second);
    // Both durable before their 250.
    for id in [&first, &second] {
        assert!(s.spool.join("queue").join(id).is_file(), "queue/{id}");
    }
    live.send(b"QUIT\r\n");
    assert_eq!(live.reply().code, 221);
    let run = live.finish();
    run.assert_exit_ok();
    assert!(run.replies.is_empty(), "after QUIT: {:?}", run.replies);

    let mut ids = s.queue_ids();
    ids.sort();
    let mut want = vec![first.clone(), second.clone()];
    want.sort();
    assert_eq!(ids, want);
    let m = s.message(&first);
    assert_eq!(m.sender(), "alice@example.com");
    assert_eq!(
        m.rcpts(),
        ["bob@example.net", "carol@example.net", "dave@example.net"]
    );
    assert_eq!(m.get("notify"), Some("SUCCESS,FAILURE"));
    assert_eq!(m.body(), b"first body\n.dotted\n");
    let m = s.message(&second);
    assert_eq!(m.sender(), "erin@example.com");
    assert_eq!(m.rcpts(), ["frank@example.net"]);
    assert_eq!(m.get("ret"), Some("hdrs"));
    assert_eq!(m.get("envid"), Some("abc+def"));
    assert_eq!(m.body(), b"second body\n");
    s.assert_tmp_empty();
}

// ---------------------------------------------------------------------------
// Error replies
// ---------------------------------------------------------------------------

/// `lines` as one pipelined input, each given its CRLF.
fn crlf(lines: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in lines {
        v.extend_from_slice(l.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v
}

#[test]
fn syntax_errors_get_501_and_500() {
    let s = spool("syntax", "");
    let run = s.session(&crlf(&[
        "EHLO client",
        "FROB",                                       // 500
        "",                                           // 500: empty line
        "MAIL",                                       // 501
        "MAIL FROM a@example.com",                    // 501: no colon
        "MAIL TO:<a@example.com>",                    // 501
        "MAIL FROM:a@example.com",                    // 501: no angle brackets
        "MAIL FROM:<a@example.com",                   // 501: unclosed
        "MAIL FROM:<a@example.com> SIZE=ten",         // 501
        "MAIL FROM:<a@example.com> BODY=9BIT",        // 501
        "MAIL FROM:<a@example.com> RET=SOME",         // 501
        "MAIL FROM:<a@example.com> ENVID=a+zz",       // 501: bad xtext
        "MAIL FROM:<a@example.com>",                  // 250
        "RCPT",                                       // 501
        "RCPT FROM:<b@example.net>",                  // 501
        "RCPT TO:b@example.net",                      // 501
        "RCPT TO:<b@example.net> NOTIFY=NEVER,DELAY", // 501
        "RCPT TO:<b@example.net> NOTIFY=SOMETIMES",   // 501
        "RCPT TO:<b@example.net>",                    // 250
        "DATA",                                       // 354
        "Subject: after the errors",
        "",
        "still fine",
        ".",
        "QUIT",
    ]));
    run.assert_codes(&[
        220, 250, 500, 500, 501, 501, 501, 501, 501, 501, 501, 501, 501, 250, 501, 501, 501, 501,
        501, 250, 354, 250, 221,
    ]);
    run.assert_exit_ok();
    let m = s.only_message();
    assert_eq!(m.sender(), "a@example.com");
    assert_eq!(m.rcpts(), ["b@example.net"]);
    assert_eq!(m.body(), b"still fine\n");
}

#[test]
fn bad_addresses_get_501() {
    let s = spool("badaddr", "");
    let mut input = Vec::new();
    let bad_senders: [&[u8]; 8] = [
        b"<a\x01b@example.com>",    // control character
        b"<a\x7fb@example.com>",    // DEL
        b"<a\rb@example.com>",      // bare CR inside the command
        b"<a\x1b[31m@example.com>", // escape sequence
        b"<a b@example.com>",       // space in the local part
        b"<a..b@example.com>",      // empty dot-atom part
        b"<a@exa mple.com>",        // space in the domain
        b"<a@@example.com>",        // two @
    ];
    let bad_rcpts: [&[u8]; 7] = [
        b"<>",                      // the null path is a sender only
        b"<b\x00@example.net>",     // NUL
        b"<b@example.net\x0b>",     // vertical tab
        b"<\"b\x01\"@example.net>", // control character even when quoted
        b"<b@>",                    // empty domain
        b"<@example.net>",          // empty local part
        b"<b@exa,mple.net>",        // comma
    ];
    input.extend_from_slice(b"EHLO client\r\n");
    for a in bad_senders {
        input.extend_from_slice(b"MAIL FROM:");
        input.extend_from_slice(a);
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(b"MAIL FROM:<ok@example.com>\r\n");
    for a in bad_rcpts {
        input.extend_from_slice(b"RCPT TO:");
        input.extend_from_slice(a);
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(b"RCPT TO:<ok@example.net>\r\nDATA\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    let run = s.session(&input);
    let mut want = vec![220, 250];
    want.extend([501; 8]);
    want.push(250);
    want.extend([501; 7]);
    want.extend([250, 354, 250, 221]);
    run.assert_codes(&want);
    for r in &run.replies[2..10] {
        assert!(r.text.starts_with("5.1.7 "), "{r:?}");
    }
    for r in &run.replies[11..18] {
        assert!(r.text.starts_with("5.1.3 "), "{r:?}");
    }
    let m = s.only_message();
    assert_eq!(m.sender(), "ok@example.com");
    assert_eq!(m.rcpts(), ["ok@example.net"]);
}

/// RFC 6531 addresses are UTF-8; bytes that are not UTF-8 are bad syntax
/// (501, or 500 for a command line that is not text), not something to
/// store with U+FFFD in their place.
#[test]
fn address_that_is_not_utf8_is_refused() {
    let s = spool("notutf8", "");
    let run = s.session(
        b"EHLO client\r\n\
          MAIL FROM:<caf\xe9@example.com>\r\n\
          MAIL FROM:<ok@example.com>\r\n\
          RCPT TO:<b\xff@example.net>\r\n\
          QUIT\r\n",
    );
    let c = run.codes();
    let refused = |code: u16| code == 500 || code == 501;
    assert!(
        c.len() == 6
            && c[..2] == [220, 250]
            && refused(c[2])
            && c[3] == 250
            && refused(c[4])
            && c[5] == 221,
        "a MAIL or RCPT address that is not UTF-8 was not refused: {:#?}",
        run.replies
    );
    s.assert_untouched();
}

#[test]
fn unknown_mail_and_rcpt_parameters_get_555() {
    let s = spool("params", "");
    let run = s.session(&crlf(&[
        "EHLO client",
        "MAIL FROM:<a@example.com> FOO=BAR",
        "MAIL FROM:<a@example.com> AUTH=<>",
        "MAIL FROM:<a@example.com> SMTPUTF8=yes",
        "MAIL FROM:<a@example.com> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x",
        "RCPT TO:<b@example.net> FOO",
        "RCPT TO:<b@example.net> ORCPT=rfc822;b@example.net XTRA=1",
        "RCPT TO:<b@example.net> ORCPT=rfc822;b@example.net NOTIFY=DELAY",
        "QUIT",
    ]));
    run.assert_codes(&[220, 250, 555, 555, 555, 250, 555, 555, 250, 221]);
    for r in [&run.replies[2], &run.replies[6]] {
        assert!(r.text.starts_with("5.5.4 "), "{r:?}");
    }
    s.assert_untouched();
}

#[test]
fn commands_out_of_sequence_get_503() {
    let s = spool("sequence", "");
    let run = s.session(&crlf(&[
        "EHLO client",
        "RCPT TO:<b@example.net>",   // 503: no MAIL
        "DATA",                      // 503: no MAIL
        "MAIL FROM:<a@example.com>", // 250
        "MAIL FROM:<c@example.com>", // 503: nested
        "DATA",                      // 503 or 554: no RCPT
        "RSET",
        "MAIL FROM:<a@example.com>",
        "RCPT TO:<b@example.net>",
        "DATA",
        "",
        "one",
        ".",
        "DATA", // 503: the transaction is over
        "QUIT",
    ]));
    let c = run.codes();
    assert_eq!(c.len(), 14, "{:#?}", run.replies);
    assert_eq!(
        &c[..6],
        [220, 250, 503, 503, 250, 503],
        "{:#?}",
        run.replies
    );
    assert!(
        c[6] == 503 || c[6] == 554,
        "DATA without RCPT: {:?}",
        run.replies[6]
    );
    assert_eq!(
        &c[7..],
        [250, 250, 250, 354, 250, 503, 221],
        "{:#?}",
        run.replies
    );
    let m = s.only_message();
    assert_eq!(m.sender(), "a@example.com", "not the nested MAIL's sender");
    assert_eq!(m.body(), b"one\n");
}

#[test]
fn recipients_past_max_recipients_get_452() {
    let s = spool("maxrcpt", "max_recipients = 3");
    let run = s.session(&crlf(&[
        "EHLO client",
        "MAIL FROM:<a@example.com>",
        "RCPT TO:<r1@example.net>",
        "RCPT TO:<r2@example.net>",
        "RCPT TO:<r3@example.net>",
        "RCPT TO:<r4@example.net>",
        "RCPT TO:<r5@example.net>",
        "DATA",
        "",
        "to three",
        ".",
        "QUIT",
    ]));
    run.assert_codes(&[220, 250, 250, 250, 250, 250, 452, 452, 354, 250, 221]);
    assert!(
        run.replies[6].text.starts_with("4.5.3 "),
        "{:?}",
        run.replies[6]
    );
    let m = s.only_message();
    assert_eq!(
        m.rcpts(),
        ["r1@example.net", "r2@example.net", "r3@example.net"]
    );
}

#[test]
fn message_over_max_message_size_gets_552_after_the_data() {
    let s = spool("toobig", "max_message_size = 10k");
    let mut input = crlf(&[
        "EHLO client",
        "MAIL FROM:<a@example.com>",
        "RCPT TO:<b@example.net>",
        "DATA",
        "Subject: too big",
        "",
    ]);
    // 30 KB of lines that would be commands if the rest of an oversized
    // message were read as commands.
    for _ in 0..1000 {
        input.extend_from_slice(b"MAIL FROM:<x@y.example>\r\n");
    }
    input.extend_from_slice(b".\r\n");
    // The same with a header alone over the limit.
    input.extend_from_slice(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
    for i in 0..500 {
        input.extend_from_slice(format!("X-Pad-{i}: RCPT TO:<x@y.example>\r\n").as_bytes());
    }
    input.extend_from_slice(b"\r\nbody\r\n.\r\n");
    input.extend_from_slice(&crlf(&[
        "NOOP",
        "MAIL FROM:<a@example.com>",
        "RCPT TO:<b@example.net>",
        "DATA",
        "Subject: small",
        "",
        "small enough",
        ".",
        "QUIT",
    ]));
    let run = s.session(&input);
    run.assert_codes(&[
        220, 250, 250, 250, 354, 552, 250, 250, 354, 552, 250, 250, 250, 354, 250, 221,
    ]);
    assert!(
        run.replies[5].text.starts_with("5.3.4 "),
        "{:?}",
        run.replies[5]
    );
    let id = run.replies[14].queue_id();
    assert_eq!(s.queue_ids(), [id], "only the small message is queued");
    assert_eq!(s.only_message().body(), b"small enough\n");
    s.assert_tmp_empty();
}

#[test]
fn mail_with_size_over_the_limit_gets_552() {
    let s = spool("mailsize", "max_message_size = 10k");
    let run = s.session(&crlf(&[
        "EHLO client",
        "MAIL FROM:<a@example.com> SIZE=10241",
        "RCPT TO:<b@example.net>", // 503: the MAIL was refused
        "MAIL FROM:<a@example.com> SIZE=10240",
        "QUIT",
    ]));
    run.assert_codes(&[220, 250, 552, 503, 250, 221]);
    assert!(
        run.replies[1].text.contains("SIZE 10240"),
        "{:?}",
        run.replies[1]
    );
    assert!(
        run.replies[2].text.starts_with("5.3.4 "),
        "{:?}",
        run.replies[2]
    );
    s.assert_untouched();
}

#[test]
fn command_line_over_2048_octets_gets_500_and_the_session_goes_on() {
    let s = spool("longline", "");
    let mut input = crlf(&["EHLO client"]);
    // Exactly 2048 octets with the CRLF: accepted.
    let fits = format!("NOOP {}", "a".repeat(2048 - 2 - 5));
    assert_eq!(fits.len() + 2, 2048);
    input.extend_from_slice(&crlf(&[&fits]));
    // One octet more: refused.
    input.extend_from_slice(&crlf(&[&format!("{fits}a")]));
    // A long MAIL with QUIT at its end: neither half may act.
    input.extend_from_slice(&crlf(&[&format!(
        "MAIL FROM:<{}@example.com> QUIT",
        "x".repeat(3000)
    )]));
    input.extend_from_slice(&crlf(&["RCPT TO:<b@example.net>"])); // 503: no MAIL
    // A megabyte without a line end, then one: refused, not buffered.
    let mut huge = vec![b'z'; 1 << 20];
    huge.extend_from_slice(b"\r\n");
    input.extend_from_slice(&huge);
    input.extend_from_slice(&crlf(&[
        "NOOP",
        "MAIL FROM:<a@example.com>",
        "RCPT TO:<b@example.net>",
        "DATA",
        "",
        "after long lines",
        ".",
        "QUIT",
    ]));
    let run = s.session(&input);
    run.assert_codes(&[
        220, 250, 250, 500, 500, 503, 500, 250, 250, 250, 354, 250, 221,
    ]);
    assert!(
        run.replies[3].text.starts_with("5.5.2 "),
        "{:?}",
        run.replies[3]
    );
    assert_eq!(s.only_message().body(), b"after long lines\n");
}

/// A message then NOOP, a second message, QUIT: when the spool cannot be
/// written, each DATA gets 451 and the session goes on.
fn spool_failure_session(s: &Spool, what: &str) {
    let run = s.session(&crlf(&[
        "EHLO client",
        "MAIL FROM:<a@example.com>",
        "RCPT TO:<b@example.net>",
        "DATA",
        "Subject: nowhere to go",
        "",
        "body",
        ".",
        "NOOP",
        "MAIL FROM:<a@example.com>",
        "RCPT TO:<b@example.net>",
        "DATA",
        "",
        "second",
        ".",
        "QUIT",
    ]));
    assert_eq!(
        run.codes(),
        [220, 250, 250, 250, 354, 451, 250, 250, 250, 354, 451, 221],
        "{what}: {:#?}\nstderr: {}",
        run.replies,
        run.stderr
    );
    assert!(
        run.replies[5].text.starts_with("4.3.0 "),
        "{:?}",
        run.replies[5]
    );
    run.assert_exit_ok();
}

#[test]
fn spool_that_cannot_be_written_gets_451_and_the_session_goes_on() {
    // No tmp/: the message file cannot be created (works as root too).
    let s = spool("notmp", "");
    fs::remove_dir(s.spool.join("tmp")).unwrap();
    spool_failure_session(&s, "no tmp/");
    assert!(s.queue_ids().is_empty());

    // No queue/: the file is written but cannot be committed; nothing may
    // be left in tmp/.
    let s = spool("noqueue", "");
    fs::remove_dir(s.spool.join("queue")).unwrap();
    spool_failure_session(&s, "no queue/");
    s.assert_tmp_empty();

    // tmp/ not writable: only meaningful for a user the mode binds.
    if !is_root() {
        let s = spool("rotmp", "");
        set_mode(&s.spool.join("tmp"), 0o555);
        spool_failure_session(&s, "read-only tmp/");
        set_mode(&s.spool.join("tmp"), 0o755);
        s.assert_untouched();
    }
}

#[test]
fn eof_in_the_middle_of_data_queues_nothing() {
    let cases: [(&str, &[u8]); 7] = [
        ("right after 354", b""),
        ("inside the header", b"Subject: cut"),
        ("mid-line", b"Subject: cut short\r\n\r\npartial line"),
        ("after a line", b"Subject: cut short\r\n\r\na full line\r\n"),
        ("after the dot", b"Subject: cut short\r\n\r\nline\r\n."),
        ("after dot CR", b"Subject: cut short\r\n\r\nline\r\n.\r"),
        ("after LF dot LF", b"Subject: cut short\r\n\r\nline\n.\n"),
    ];
    let mut queued = Vec::new();
    for (what, tail) in cases {
        let s = spool("eofdata", "");
        let mut input = crlf(&[
            "EHLO client",
            "MAIL FROM:<a@example.com>",
            "RCPT TO:<b@example.net>",
            "DATA",
        ]);
        input.extend_from_slice(tail);
        // The session ends by itself (run_session panics on a hang).
        let run = s.session(&input);
        assert_eq!(
            run.codes(),
            [220, 250, 250, 250, 354],
            "{what}: no reply after 354 may claim the message: {:#?}",
            run.replies
        );
        // The process ended by itself; nothing it wrote may stay behind.
        assert!(run.status.code().is_some(), "{what}: {:?}", run.status);
        s.assert_tmp_empty();
        for id in s.queue_ids() {
            let m = s.message(&id);
            queued.push(format!(
                "{what}: queued {id}, content {:?}",
                String::from_utf8_lossy(&m.content)
            ));
        }
    }
    assert!(
        queued.is_empty(),
        "messages cut short by EOF were queued:\n{}",
        queued.join("\n")
    );
}

#[test]
fn vrfy_help_noop_rset_and_rset_discards_the_transaction() {
    let s = spool("misc", "");
    let run = s.session(&crlf(&[
        "HELO client",
        "VRFY bob",
        "HELP",
        "NOOP",
        "EXPN staff",
        "mail from:<before@example.com>",
        "rcpt to:<dropped@example.net>",
        "RSET",
        "RCPT TO:<b@example.net>",   // 503: RSET ended the transaction
        "DATA",                      // 503
        "MAIL FROM:<a@example.com>", // 250: not nested
        "RCPT TO:<kept@example.net>",
        "DATA",
        "",
        "after rset",
        ".",
        "QUIT",
    ]));
    run.assert_codes(&[
        220, 250, 252, 214, 250, 502, 250, 250, 250, 503, 503, 250, 250, 354, 250, 221,
    ]);
    assert!(run.replies[3].text.contains("MAIL"), "{:?}", run.replies[3]);
    run.assert_exit_ok();
    let m = s.only_message();
    assert_eq!(m.sender(), "a@example.com");
    assert_eq!(m.rcpts(), ["kept@example.net"]);
}

// ---------------------------------------------------------------------------
// SMTP smuggling (SEC Consult, December 2023)
// ---------------------------------------------------------------------------

/// The end-of-data forms that some servers accept besides CRLF . CRLF (the
/// 2023 research and its follow-ups): each is put in a message's data,
/// followed by a second, smuggled transaction, then the real CRLF . CRLF.
const SMUGGLING: [(&str, &[u8]); 16] = [
    ("LF . CRLF", b"\n.\r\n"),
    ("CRLF . LF", b"\r\n.\n"),
    ("CR . CR", b"\r.\r"),
    ("LF . LF", b"\n.\n"),
    ("CRLF . CR", b"\r\n.\r"),
    ("CR . CRLF", b"\r.\r\n"),
    ("LF . CR", b"\n.\r"),
    ("CR . LF", b"\r.\n"),
    ("CRLF . NUL CRLF", b"\r\n.\x00\r\n"),
    ("CRLF NUL . CRLF", b"\r\n\x00.\r\n"),
    ("CRLF . CR CRLF", b"\r\n.\r\r\n"),
    ("CR CR . CR CR", b"\r\r.\r\r"),
    ("CRLF . SP CRLF", b"\r\n. \r\n"),
    ("LF LF . LF LF", b"\n\n.\n\n"),
    ("CRLF . TAB LF", b"\r\n.\t\n"),
    ("LF . NUL LF", b"\n.\x00\n"),
];

fn smuggling_session(s: &Spool, data: &[u8]) -> Run {
    let mut input = crlf(&[
        "EHLO client",
        "MAIL FROM:<legit@example.com>",
        "RCPT TO:<friend@example.net>",
        "DATA",
    ]);
    input.extend_from_slice(data);
    input.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
    s.session(&input)
}

const SMUGGLED: &[u8] = b"MAIL FROM:<evil@x.example>\r\n\
    RCPT TO:<victim@y.example>\r\n\
    DATA\r\n\
    From: evil@x.example\r\n\
    Subject: smuggled\r\n\
    \r\n\
    smuggled body";

#[test]
fn smtp_smuggling_forms_do_not_end_the_data() {
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, trick) in SMUGGLING {
        let mut data = b"From: legit@example.com\r\nSubject: legit\r\n\r\nlegit body".to_vec();
        data.extend_from_slice(trick);
        data.extend_from_slice(SMUGGLED);
        cases.push((format!("body, {name}"), data));
    }
    // The same forms right at the start of the data, where the CRLF of the
    // DATA command is the one before the dot.
    for (name, trick) in [
        (". LF", &b".\n"[..]),
        (". CR", b".\r"),
        (". NUL CRLF", b".\x00\r\n"),
    ] {
        let mut data = trick.to_vec();
        data.extend_from_slice(SMUGGLED);
        cases.push((format!("start, {name}"), data));
    }
    for (what, data) in cases {
        let s = spool("smuggle", "");
        let run = smuggling_session(&s, &data);
        assert_eq!(
            run.codes(),
            [220, 250, 250, 250, 354, 250, 221],
            "{what}: the smuggled commands must be data: {:#?}",
            run.replies
        );
        let ids = s.queue_ids();
        assert_eq!(ids.len(), 1, "{what}: exactly one message: {ids:?}");
        assert_eq!(run.replies[5].queue_id(), ids[0]);
        let m = s.message(&ids[0]);
        assert_eq!(m.sender(), "legit@example.com", "{what}");
        assert_eq!(m.rcpts(), ["friend@example.net"], "{what}");
        for needle in [
            &b"MAIL FROM:<evil@x.example>\n"[..],
            b"RCPT TO:<victim@y.example>\n",
            b"Subject: smuggled\n",
            b"smuggled body\n",
        ] {
            assert!(
                contains(&m.content, needle),
                "{what}: {:?} not in the stored content {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&m.content)
            );
        }
        m.assert_no_cr();
        // Stored lines that are a single `.` can exist (`LF . CRLF` leaves
        // one): src/smtp.rs `stream_data` doubles the dot of every line that
        // begins with one, so relayed they cannot end the data anywhere.
        assert_cannot_end_early(&relay_wire(&m.content), &what);
    }
}

/// The checker above is not vacuous: relayed without dot-stuffing, content
/// with a lone dot line would end early, and it says so.
#[test]
fn smuggling_checker_catches_an_unstuffed_dot() {
    let naive = b"a\r\n.\r\nMAIL FROM:<e@x>\r\n.\r\n";
    let r = std::panic::catch_unwind(|| assert_cannot_end_early(naive, "naive"));
    assert!(r.is_err(), "a lone dot in the middle must be caught");
    let bare = b"a\n.\r\n";
    let r = std::panic::catch_unwind(|| assert_cannot_end_early(bare, "bare"));
    assert!(r.is_err(), "a bare LF must be caught");
    assert_cannot_end_early(&relay_wire(b"a\n.\n..\n.x\n"), "stuffed");
    assert_eq!(
        relay_wire(b"a\n.\n..\n.x\n"),
        b"a\r\n..\r\n...\r\n..x\r\n.\r\n"
    );
}

// ---------------------------------------------------------------------------
// Trusted and untrusted senders
// ---------------------------------------------------------------------------

/// An untrusted caller: uid 65534 when the tests run as root, else the
/// current user. Returns (command, user name).
fn untrusted_cmd(s: &Spool) -> (Command, String) {
    let mut cmd = s.cmd(&["-bs"]);
    if is_root() {
        s.open_to_all();
        cmd.uid(NOBODY).gid(NOBODY);
        (cmd, user_name(NOBODY))
    } else {
        (cmd, user_name(unsafe { libc::getuid() }))
    }
}

/// Three messages, from `foreign`, from `own` and from `own` bare: their
/// ids in that order.
fn sender_session(s: &Spool, cmd: Command, own_bare: &str) -> Vec<String> {
    let input = crlf(&[
        "EHLO client",
        "MAIL FROM:<evil@elsewhere.example>",
        "RCPT TO:<b@example.net>",
        "DATA",
        "Subject: foreign",
        "",
        "x",
        ".",
        &format!("MAIL FROM:<{own_bare}@{DOMAIN}>"),
        "RCPT TO:<b@example.net>",
        "DATA",
        "Subject: own",
        "",
        "y",
        ".",
        &format!("MAIL FROM:<{own_bare}>"),
        "RCPT TO:<b@example.net>",
        "DATA",
        "Subject: own, bare",
        "",
        "z",
        ".",
        "QUIT",
    ]);
    let run = run_session(cmd, &input, s.root());
    run.assert_codes(&[
        220, 250, 250, 250, 354, 250, 250, 250, 354, 250, 250, 250, 354, 250, 221,
    ]);
    vec![
        run.replies[5].queue_id(),
        run.replies[9].queue_id(),
        run.replies[13].queue_id(),
    ]
}

#[test]
fn untrusted_user_gets_x_authentication_warning_for_a_foreign_sender() {
    let s = spool("untrusted", "");
    let (cmd, user) = untrusted_cmd(&s);
    let ids = sender_session(&s, cmd, &user);
    let uid = if is_root() {
        NOBODY
    } else {
        unsafe { libc::getuid() }
    };

    let m = s.message(&ids[0]);
    // Sendmail keeps the sender and says who set it.
    assert_eq!(m.sender(), "evil@elsewhere.example");
    assert_eq!(m.get("uid"), Some(uid.to_string().as_str()));
    assert_eq!(
        m.header_values("x-authentication-warning"),
        [format!(
            "{HOST}: {user} set sender to evil@elsewhere.example using -bs"
        )],
        "{}",
        m.header_text()
    );
    for id in &ids[1..] {
        let m = s.message(id);
        assert_eq!(m.sender(), format!("{user}@{DOMAIN}"));
        assert!(
            m.header_values("x-authentication-warning").is_empty(),
            "own address, yet: {}",
            m.header_text()
        );
    }
}

#[test]
fn trusted_user_gets_no_x_authentication_warning() {
    // Root is trusted; anyone else is when in trusted_group.
    let gid = unsafe { libc::getgid() };
    let s = spool(
        "trusted",
        &if is_root() {
            String::new()
        } else {
            format!("trusted_group = {}", group_name(gid))
        },
    );
    let own = user_name(unsafe { libc::getuid() });
    let ids = sender_session(&s, s.cmd(&["-bs"]), &own);
    let m = s.message(&ids[0]);
    assert_eq!(m.sender(), "evil@elsewhere.example");
    assert!(
        m.header_values("x-authentication-warning").is_empty(),
        "{}",
        m.header_text()
    );

    // As root, uid 65534 made trusted by trusted_group.
    if is_root() {
        let s = spool(
            "trustedgroup",
            &format!("trusted_group = {}", group_name(NOBODY)),
        );
        s.open_to_all();
        let mut cmd = s.cmd(&["-bs"]);
        cmd.uid(NOBODY).gid(NOBODY);
        let ids = sender_session(&s, cmd, &user_name(NOBODY));
        let m = s.message(&ids[0]);
        assert_eq!(m.get("uid"), Some(NOBODY.to_string().as_str()));
        assert!(
            m.header_values("x-authentication-warning").is_empty(),
            "{}",
            m.header_text()
        );
    }
}

// ---------------------------------------------------------------------------
// Delivery afterwards
// ---------------------------------------------------------------------------

fn one_message_session(s: &Spool) -> String {
    let run = s.session(&crlf(&[
        "EHLO client",
        "MAIL FROM:<a@example.com>",
        "RCPT TO:<b@example.net>",
        "DATA",
        "Subject: deliver me",
        "",
        "body",
        ".",
        "QUIT",
    ]));
    run.assert_codes(&[220, 250, 250, 250, 354, 250, 221]);
    run.assert_exit_ok();
    run.replies[5].queue_id()
}

#[test]
fn delivery_mode_queue_does_not_deliver() {
    let s = spool("modequeue", "");
    let id = one_message_session(&s);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(s.queue_files(), [id], "no state file: no attempt was made");
}

#[test]
fn delivery_mode_background_attempts_delivery_after_the_session() {
    let s = spool("modebg", "delivery_mode = background");
    let id = one_message_session(&s);
    let state = s.spool.join("queue").join(format!("{id}.state"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        // Written first when the attempt begins (issue 11), then with its outcome.
        if let Ok(t) = fs::read_to_string(&state)
            && t.contains("\nrcpt 0 ")
        {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "no outcome in a state file for {id} within 20 s: {:?}",
            s.queue_files()
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(text.starts_with("SPOOLMAIL-STATE 1\n"), "{text}");
    let rcpt = text
        .lines()
        .find(|l| l.starts_with("rcpt 0 "))
        .unwrap_or_else(|| panic!("no rcpt line: {text}"));
    assert!(
        rcpt.starts_with("rcpt 0 deferred ") && rcpt.contains("Connection refused"),
        "{text}"
    );
    assert_eq!(s.queue_ids(), [id], "still queued after the deferral");
    // Let the detached delivery process finish before the directory goes.
    thread::sleep(Duration::from_millis(200));
}

// ---------------------------------------------------------------------------
// Symfony Mailer's sendmail transport
// ---------------------------------------------------------------------------

/// Where Debian's php-symfony-mailer keeps its autoloaders.
const PHP_AUTOLOAD_DIR: &str = "/usr/share/php";

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// tests/fixtures/symfony_bs.php run with PHP against the binary, when PHP
/// and Symfony Mailer are installed (Debian: php-cli, php-symfony-mailer);
/// otherwise a SKIP line and no assertion (the transcript test below covers
/// the same exchange).
#[test]
fn symfony_mailer_sendmail_transport() {
    let autoload = Path::new(PHP_AUTOLOAD_DIR).join("Symfony/Component/Mailer/autoload.php");
    let php = Command::new("php")
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(php, Ok(st) if st.success()) {
        eprintln!("SKIP symfony_mailer_sendmail_transport: no `php` on PATH");
        return;
    }
    if !autoload.is_file() {
        eprintln!(
            "SKIP symfony_mailer_sendmail_transport: no {} (apt-get install php-symfony-mailer)",
            autoload.display()
        );
        return;
    }
    let s = spool("symfony", "");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/symfony_bs.php");
    let command = format!(
        "{} -C {} -bs",
        shell_quote(harness::bin()),
        shell_quote(&s.conf.display().to_string())
    );
    let mut cmd = Command::new("php");
    cmd.arg(&script).arg(PHP_AUTOLOAD_DIR).arg(&command);
    let (status, out, err) = run_program(cmd);
    assert!(status.success(), "php failed: {status:?}\n{out}\n{err}");
    assert!(out.lines().any(|l| l == "DONE"), "{out}\n{err}");

    let sent: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("SENT "))
        .collect();
    let ids: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("DEBUG < 250 2.0.0 Ok: queued as "))
        .map(str::to_string)
        .collect();
    assert_eq!(sent.len(), 3, "{out}");
    assert_eq!(ids.len(), 3, "{out}");
    // One session: one greeting, one HELO.
    assert_eq!(out.matches("DEBUG > HELO ").count(), 1, "{out}");
    for (i, m) in symfony_queued(&s, &ids).iter().enumerate() {
        assert_eq!(m.header_values("message-id"), [format!("<{}>", sent[i])]);
        assert_eq!(m.header_values("date").len(), 1, "{}", m.header_text());
        assert!(m.header_values("bcc").is_empty(), "{}", m.header_text());
        assert!(!contains(&m.content, b"hidden@example.net"));
        m.assert_no_cr();
    }
    // Symfony stuffed the dots; spoolmail took them off again.
    let m = s.message(&ids[1]);
    assert!(
        contains(m.body(), b"=E2=9C=93\n.\n..leading dots\n.end\n"),
        "{:?}",
        String::from_utf8_lossy(m.body())
    );
}

/// The recipients of the three messages the Symfony script sends.
const SYMFONY_RCPTS: [&[&str]; 3] = [
    &["alice@example.net", "hidden@example.net"],
    &["bob@example.net", "carol@example.net"],
    &["dave@example.net"],
];

/// The queue holds the messages `ids`, each once, and each is from
/// app@example.com to its SYMFONY_RCPTS; returns them in that order.
fn symfony_queued(s: &Spool, ids: &[String]) -> Vec<Queued> {
    let mut all = s.queue_ids();
    all.sort();
    let mut named = ids.to_vec();
    named.sort();
    assert_eq!(all, named, "each message queued once");
    assert_eq!(ids.len(), SYMFONY_RCPTS.len(), "{ids:?}");
    ids.iter()
        .zip(SYMFONY_RCPTS)
        .map(|(id, rcpts)| {
            let m = s.message(id);
            assert_eq!(m.sender(), "app@example.com");
            assert_eq!(m.rcpts(), rcpts);
            m
        })
        .collect()
}

/// Exactly what Symfony Mailer 5.4.53 (Debian bookworm's php-symfony-mailer
/// 5.4.53+dfsg-0+deb12u1) wrote to `sendmail -bs` for
/// tests/fixtures/symfony_bs.php, recorded byte for byte with a `tee` in
/// front of the binary. `SendmailTransport` wraps `SmtpTransport` (not
/// `EsmtpTransport`) around a `ProcessStream`: it says `HELO [127.0.0.1]`,
/// waits for each reply, stuffs dots (`\r\n.` -> `\r\n..`), writes the
/// message, then `\r\n.\r\n` (so each message gains an empty last line) and
/// at the end `QUIT`. Lines here end in LF; they are sent with CRLF.
/// Each step: what the client writes, the reply code it waits for.
const SYMFONY_TRANSCRIPT: [(&str, u16); 16] = [
    ("HELO [127.0.0.1]\n", 250),
    ("MAIL FROM:<app@example.com>\n", 250),
    ("RCPT TO:<alice@example.net>\n", 250),
    ("RCPT TO:<hidden@example.net>\n", 250),
    ("DATA\n", 354),
    (
        "From: The App <app@example.com>\n\
         To: alice@example.net\n\
         Subject: symfony one\n\
         Message-ID: <8d8ac6db329465118b23f66c68c993a9@example.com>\n\
         MIME-Version: 1.0\n\
         Date: Sun, 22 Nov 2026 00:47:32 +0000\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: quoted-printable\n\
         \n\
         First message from Symfony.\n\
         Second line.\n\
         \n.\n",
        250,
    ),
    ("MAIL FROM:<app@example.com>\n", 250),
    ("RCPT TO:<bob@example.net>\n", 250),
    ("RCPT TO:<carol@example.net>\n", 250),
    ("DATA\n", 354),
    (
        "From: app@example.com\n\
         To: =?utf-8?Q?B=C3=B3b_=C3=9Cn=C3=AFcode?= <bob@example.net>\n\
         Cc: carol@example.net\n\
         Subject: symfony two: =?utf-8?Q?gr=C3=BC=C3=9Fe?=\n\
         Message-ID: <c295d3ad697a6428fcdfb98172ed375e@example.com>\n\
         MIME-Version: 1.0\n\
         Date: Sun, 22 Nov 2026 00:47:32 +0000\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: quoted-printable\n\
         \n\
         Gr=C3=BC=C3=9Fe aus Symfony =E2=9C=93\n\
         ..\n\
         ...leading dots\n\
         ..end\n\
         last li=\n\
         ne\n\
         \n.\n",
        250,
    ),
    ("MAIL FROM:<app@example.com>\n", 250),
    ("RCPT TO:<dave@example.net>\n", 250),
    ("DATA\n", 354),
    (
        "From: app@example.com\n\
         To: dave@example.net\n\
         Subject: symfony three\n\
         Message-ID: <3862a254e7149a3b6619453dbf9196a1@example.com>\n\
         MIME-Version: 1.0\n\
         Date: Sun, 22 Nov 2026 00:47:32 +0000\n\
         Content-Type: multipart/mixed; boundary=AdhRfv2E\n\
         \n\
         --AdhRfv2E\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: quoted-printable\n\
         \n\
         See the attachment.\n\
         \n\
         --AdhRfv2E\n\
         Content-Type: text/plain; name=note.txt\n\
         Content-Transfer-Encoding: base64\n\
         Content-Disposition: attachment; name=note.txt; filename=note.txt\n\
         \n\
         YXR0YWNoZWQgdGV4dAouCndpdGggYSBsb25lIGRvdCBsaW5lCg==\n\
         --AdhRfv2E--\n\
         \n.\n",
        250,
    ),
    ("QUIT\n", 221),
];

#[test]
fn symfony_sendmail_transport_transcript_replayed() {
    let s = spool("symfonyreplay", "");
    let mut live = Live::start(s.cmd(&["-bs"]), s.root());
    assert_eq!(live.reply().code, 220);
    let mut ids = Vec::new();
    for (client, code) in SYMFONY_TRANSCRIPT {
        let bytes = client.replace('\n', "\r\n");
        let r = live.step(bytes.as_bytes(), code);
        if code == 250 && r.text.contains("queued as") {
            ids.push(r.queue_id());
        }
    }
    let run = live.finish();
    run.assert_exit_ok();
    assert_eq!(ids.len(), 3);
    // Each stored message is what was sent: CRLF as LF, dots unstuffed,
    // under spoolmail's Received line and nothing else added (From, Date,
    // Message-ID and To were all there).
    let sent_messages: Vec<&str> = SYMFONY_TRANSCRIPT
        .iter()
        .filter(|(c, _)| c.ends_with("\n\n.\n"))
        .map(|(c, _)| &c[..c.len() - 2])
        .collect();
    for (i, m) in symfony_queued(&s, &ids).iter().enumerate() {
        let unstuffed: String = sent_messages[i]
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix('.').unwrap_or(l)))
            .collect();
        // The Received field is two lines; a user other than root also gets
        // an X-Authentication-Warning (app@example.com is not theirs).
        assert!(m.content.starts_with(b"Received: by spoolmail.test"));
        let mut rest = m.content.as_slice();
        for _ in 0..2 {
            rest = &rest[find(rest, b"\n").unwrap() + 1..];
        }
        if !is_root() && rest.starts_with(b"X-Authentication-Warning: ") {
            rest = &rest[find(rest, b"\n").unwrap() + 1..];
        }
        assert_eq!(String::from_utf8_lossy(rest), unstuffed, "message {i}");
        assert_eq!(m.body_type(), "7bit");
        m.assert_no_cr();
    }
}
