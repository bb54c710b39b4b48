//! The SMTP fixtures (tests/fixtures/sink.py and faulty.py) as child
//! processes: started on a loopback address of their own, stopped and
//! cleaned up on drop, their accepted messages read back from JSON.

use super::files::scratch_dir;
use super::json::{Json, base64_decode};
use super::net::{host_port, loopback_host};
use super::run::wait_until;
use super::tools::{fixtures_dir, python};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a fixture may take to print its READY line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Exit status of a fixture whose address was in use.
const EXIT_BINDFAIL: i32 = 98;

/// A fixture process: killed (SIGTERM, then SIGKILL) and reaped on drop; its
/// scratch dir is removed then, unless the test is panicking (kept for a
/// look, and its path and stderr printed).
pub(super) struct Proc {
    pub(super) child: Child,
    stdin: Option<ChildStdin>,
    dir: PathBuf,
    what: String,
}

pub(super) enum StartError {
    /// The address or port was in use (exit status 98).
    BindFailed(String),
    Other(String),
}

impl Proc {
    /// Starts `python script args...` with stdout piped and waits for
    /// "READY host port"; stderr goes to DIR/stderr.log.
    /// Starts HTTPS fixture `script` (sts_server.py, token_server.py:
    /// fixturelib's `https_parser`) on `host` with `cert`, its files in
    /// `outdir`; `own` are its own arguments. Panics when it cannot start.
    pub(super) fn start_https(
        script: &str,
        host: &str,
        cert: &super::pki::Cert,
        outdir: &Path,
        own: &[String],
    ) -> (Proc, String, u16) {
        let mut argv: Vec<String> = [
            "--host",
            host,
            "--port",
            "0",
            "--outdir",
            &outdir.to_string_lossy(),
            "--cert",
            &cert.cert.to_string_lossy(),
            "--key",
            &cert.key.to_string_lossy(),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        argv.extend(own.iter().cloned());
        let name = script.trim_end_matches(".py");
        match Proc::start(script, &argv, outdir, name) {
            Ok(started) => started,
            Err(StartError::BindFailed(m)) | Err(StartError::Other(m)) => panic!("{m}"),
        }
    }

    pub(super) fn start(
        script: &str,
        args: &[String],
        dir: &Path,
        what: &str,
    ) -> Result<(Proc, String, u16), StartError> {
        let python = python();
        let stderr = fs::File::create(dir.join("stderr.log")).expect("create stderr.log");
        let mut child = Command::new(python)
            .arg(fixtures_dir().join(script))
            .args(args)
            .arg("--exit-on-stdin-eof")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {script}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so that the child never blocks on stdout.
            for _ in lines {}
        });
        let mut proc = Proc {
            child,
            stdin,
            dir: dir.to_path_buf(),
            what: what.to_string(),
        };
        let line = rx.recv_timeout(READY_TIMEOUT);
        let ready = line.as_deref().ok().and_then(|l| {
            let mut it = l.split_whitespace();
            match (
                it.next(),
                it.next(),
                it.next().and_then(|p| p.parse::<u16>().ok()),
            ) {
                (Some("READY"), Some(host), Some(port)) => Some((host.to_string(), port)),
                _ => None,
            }
        });
        match ready {
            Some((host, port)) => Ok((proc, host, port)),
            None => {
                proc.terminate();
                let code = proc.child.wait().ok().and_then(|s| s.code());
                let msg = format!(
                    "{what} did not get ready (first line {:?}, exit {:?}):\n{}",
                    line,
                    code,
                    proc.stderr_log()
                );
                Err(if code == Some(EXIT_BINDFAIL) {
                    StartError::BindFailed(msg)
                } else {
                    StartError::Other(msg)
                })
            }
        }
    }

    fn stderr_log(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid, not yet reaped.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
        if thread::panicking() {
            eprintln!(
                "{}: left in {} for a look; its stderr:\n{}",
                self.what,
                self.dir.display(),
                self.stderr_log()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Which SMTP fixture to start.
#[derive(Clone, Copy, Debug)]
pub enum Fixture<'a> {
    /// tests/fixtures/sink.py: aiosmtpd, accepts and records everything.
    Sink,
    /// tests/fixtures/faulty.py with `--script NAME` (see its header).
    Faulty(&'a str),
}

/// A running SMTP fixture.
pub struct Smtp {
    /// The loopback address it listens on.
    pub host: String,
    pub port: u16,
    /// Where it writes msg-*.json, `connections` and session-N.log.
    pub outdir: PathBuf,
    proc: Proc,
}

/// One message a fixture accepted (from its msg-*.json file).
#[derive(Clone, Debug)]
pub struct Message {
    /// The envelope sender, without angle brackets; "" for `MAIL FROM:<>`.
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// MAIL FROM parameters as the client spelled them ("BODY=8BITMIME").
    pub mail_options: Vec<String>,
    /// RCPT TO parameters, one list per accepted recipient.
    pub rcpt_options: Vec<Vec<String>>,
    /// The message as received, dot-unstuffed, byte for byte (CRLF endings,
    /// as sent), without the terminating ".".
    pub data: Vec<u8>,
    /// The number of the connection it came on (1 for the first).
    pub connection: u64,
    /// The order in which the fixture accepted it (1 for the first).
    pub seq: u64,
    /// The client's address, "127.0.0.1:54321".
    pub peer: String,
    /// The EHLO/HELO argument, and whether it was EHLO.
    pub helo: String,
    pub esmtp: bool,
    /// sink.py: the TLS version of its connection ("TLSv1.3"), "" for none.
    pub tls: String,
    /// The CN of the client certificate presented, "" for none.
    pub client_cert: String,
    /// sink.py: the user its connection authenticated as, "" for none.
    pub auth: String,
    /// When the fixture accepted it (seconds since the epoch).
    pub received_at: f64,
    pub file: PathBuf,
}

impl Message {
    /// The data as text (lossy), for assertions on headers and body.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

impl Smtp {
    /// sink.py on a loopback address of its own and a free port.
    /// `args`: e.g. `["--size-limit", "1000"]`, `["--no-dsn"]`,
    /// `["--max-rcpts", "2"]`, `["--lifetime", "5"]`.
    pub fn sink(args: &[&str]) -> Smtp {
        Smtp::start(Fixture::Sink, &loopback_host(), 0, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// faulty.py `--script script` on a loopback address of its own and a
    /// free port. `args`: e.g. `["--delay", "3", "--match", "slow.test"]`.
    pub fn faulty(script: &str, args: &[&str]) -> Smtp {
        Smtp::start(Fixture::Faulty(script), &loopback_host(), 0, args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a fixture on `host:port` (port 0: a free one). An `Err` says
    /// why it did not start (e.g. the port was in use there).
    pub fn start(fixture: Fixture, host: &str, port: u16, args: &[&str]) -> Result<Smtp, String> {
        Smtp::try_start(fixture, host, port, args).map_err(|e| match e {
            StartError::BindFailed(m) | StartError::Other(m) => m,
        })
    }

    fn try_start(
        fixture: Fixture,
        host: &str,
        port: u16,
        args: &[&str],
    ) -> Result<Smtp, StartError> {
        let (script, what) = match fixture {
            Fixture::Sink => ("sink.py", "sink".to_string()),
            Fixture::Faulty(s) => ("faulty.py", format!("faulty-{s}")),
        };
        let outdir = scratch_dir(&what);
        let mut argv: Vec<String> = vec![
            "--host".into(),
            host.into(),
            "--port".into(),
            port.to_string(),
            "--outdir".into(),
            outdir.to_string_lossy().into_owned(),
            "--lifetime".into(),
            "300".into(),
        ];
        if let Fixture::Faulty(s) = fixture {
            argv.extend(["--script".to_string(), s.to_string()]);
        }
        // Given last, so that the caller's --lifetime etc. win.
        argv.extend(args.iter().map(|a| a.to_string()));
        let what = format!("{what} on {host}:{port}");
        match Proc::start(script, &argv, &outdir, &what) {
            Ok((proc, host, port)) => Ok(Smtp {
                host,
                port,
                outdir,
                proc,
            }),
            Err(e) => {
                let _ = fs::remove_dir_all(&outdir);
                Err(e)
            }
        }
    }

    /// Starts several fixtures on one port, each on a loopback address of
    /// its own (MX hosts all share `smtp_port`); in the order given, e.g.
    /// `[(Fixture::Faulty("greet-421"), &[]), (Fixture::Sink, &[])]`.
    pub fn start_same_port(specs: &[(Fixture, &[&str])]) -> Vec<Smtp> {
        'attempt: for _ in 0..10 {
            let mut started: Vec<Smtp> = Vec::new();
            let mut port = 0;
            for (fixture, args) in specs {
                match Smtp::try_start(*fixture, &loopback_host(), port, args) {
                    Ok(s) => {
                        port = s.port;
                        started.push(s);
                    }
                    Err(StartError::BindFailed(_)) => continue 'attempt,
                    Err(StartError::Other(m)) => panic!("{m}"),
                }
            }
            return started;
        }
        panic!("could not start {} fixtures on one port", specs.len())
    }

    /// "host:port" ("[::1]:port" for IPv6).
    pub fn addr(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// The messages accepted so far, in the order accepted.
    pub fn messages(&self) -> Vec<Message> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.outdir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        let name = p.file_name().unwrap().to_string_lossy();
                        name.starts_with("msg-") && name.ends_with(".json")
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.iter().map(|f| parse_message(f)).collect()
    }

    /// Waits until at least `n` messages are there (or `timeout` passes) and
    /// returns them all.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Message> {
        wait_until(timeout, || self.message_count() >= n);
        self.messages()
    }

    /// How many messages have been accepted (cheaper than `messages()`).
    pub fn message_count(&self) -> usize {
        fs::read_dir(&self.outdir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("msg-"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// How many TCP connections it has accepted.
    pub fn connections(&self) -> usize {
        fs::read_to_string(self.outdir.join("connections"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// When each TCP connection was accepted (seconds since the epoch), in order.
    pub fn connection_times(&self) -> Vec<f64> {
        fs::read_to_string(self.outdir.join("connections"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3)?.parse().ok())
            .collect()
    }

    /// How many logins (successful AUTH) it has seen (sink.py).
    pub fn logins(&self) -> usize {
        fs::read_to_string(self.outdir.join("logins"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// How many of its connections are open now.
    pub fn open_connections(&self) -> usize {
        let closed = fs::read_to_string(self.outdir.join("closed"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        self.connections().saturating_sub(closed)
    }

    /// The most connections that were open at once so far, from the times
    /// they were accepted (`connections`) and ended (`closed`); one still
    /// open counts as open until now.
    pub fn max_concurrent_connections(&self) -> usize {
        let read = |name: &str, field: usize| -> Vec<f64> {
            fs::read_to_string(self.outdir.join(name))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_whitespace().nth(field)?.parse().ok())
                .collect()
        };
        // (time, +1 opened / -1 closed); at a tie the close comes first.
        let mut events: Vec<(f64, i32)> = read("connections", 3)
            .into_iter()
            .map(|t| (t, 1))
            .chain(read("closed", 1).into_iter().map(|t| (t, -1)))
            .collect();
        events.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (mut open, mut most) = (0i32, 0i32);
        for (_, delta) in events {
            open += delta;
            most = most.max(open);
        }
        most as usize
    }

    /// faulty.py only: the transcript of connection `n` (1 for the first):
    /// "C: " lines from the client, "S: " replies, "-- " events.
    pub fn session_log(&self, n: usize) -> String {
        fs::read_to_string(self.outdir.join(format!("session-{n}.log"))).unwrap_or_default()
    }

    /// Its stderr so far.
    pub fn stderr_log(&self) -> String {
        self.proc.stderr_log()
    }

    /// The process id (to check that it is gone after drop, for instance).
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// Waits for the fixture to exit by itself (after its --lifetime).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc.wait_exit(timeout)
    }
}

fn parse_message(file: &Path) -> Message {
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let j = Json::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let s = |k: &str| j.get(k).and_then(Json::as_str).unwrap_or("").to_string();
    let n = |k: &str| j.get(k).and_then(Json::as_f64).unwrap_or(0.0) as u64;
    let strs = |v: Option<&Json>| -> Vec<String> {
        v.and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Json::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    Message {
        mail_from: s("mail_from"),
        rcpt_tos: strs(j.get("rcpt_tos")),
        mail_options: strs(j.get("mail_options")),
        rcpt_options: j
            .get("rcpt_options")
            .and_then(Json::as_array)
            .map(|a| a.iter().map(|o| strs(Some(o))).collect())
            .unwrap_or_default(),
        data: base64_decode(&s("data_b64"))
            .unwrap_or_else(|| panic!("{}: bad data_b64", file.display())),
        connection: n("connection"),
        seq: n("seq"),
        peer: s("peer"),
        helo: s("helo"),
        esmtp: j.get("esmtp") == Some(&Json::Bool(true)),
        tls: s("tls"),
        client_cert: s("client_cert"),
        auth: s("auth"),
        received_at: j.get("received_at").and_then(Json::as_f64).unwrap_or(0.0),
        file: file.to_path_buf(),
    }
}
