//! Test fixtures for integration tests: real SMTP servers and a real DNS
//! server on loopback, started as child processes and stopped on `Drop`.
//!
//! Use from `tests/NAME.rs` with `mod support;`. Everything listens on
//! 127.0.0.0/8 only: each SMTP fixture gets a loopback address of its own
//! (`loopback_host()`), so tests can run in parallel and several fixtures can
//! share one port (what MX tests need, since `smtp_port` is one port for all
//! MX hosts). Every child also exits by itself after its lifetime (300 s by
//! default) and when this test process dies (its stdin reaches EOF).
//!
//! ```ignore
//! let sink = support::Smtp::sink(&[]);                  // aiosmtpd, accepts all
//! let bad = support::Smtp::faulty("reject-rcpt", &[]);  // scripted faults
//! let dns = support::Dns::start(&support::DnsZone::standard(&sink.host, &bad.host));
//! // point spoolmail at dns.addr() (dns_server) and sink.port (smtp_port) ...
//! let msgs = sink.wait_for_messages(1, Duration::from_secs(10));
//! assert_eq!(msgs[0].rcpt_tos, ["user@mx.test"]);
//! ```
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a fixture may take to print its READY line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Exit status of a fixture whose address was in use.
const EXIT_BINDFAIL: i32 = 98;

// ---------------------------------------------------------------------------
// Setup and paths

/// The directory holding the fixture scripts.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// What to tell a test run that lacks a fixture's program or module.
const INSTALL_HINT: &str = "run scripts/test-deps (as root, or with sudo) to install it";

/// The python interpreter the fixtures run with (`$PYTHON`, else `python3`,
/// resolved to its real executable so that no wrapper script is paid for on
/// each start), once it has shown it can import aiosmtpd and dnspython.
/// Nothing is installed here: a machine without them fails the test with
/// what is missing and how to get it.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let py = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        let out = Command::new(&py)
            .args([
                "-c",
                "import sys, aiosmtpd.smtp, dns.resolver; print(sys.executable)",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("missing {}: {e}; {INSTALL_HINT}", py.to_string_lossy()));
        assert!(
            out.status.success(),
            "missing: the python modules aiosmtpd and dnspython for {} ({}); {INSTALL_HINT}",
            py.to_string_lossy(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if exe.is_empty() {
            PathBuf::from(py)
        } else {
            PathBuf::from(exe)
        }
    })
}

/// Fails the test, saying what is missing and how to install it, unless
/// `program` is on PATH (or in /usr/sbin, where Debian puts dnsmasq).
pub fn require_program(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .any(|dir| dir.join(program).is_file());
    assert!(found, "missing program: {program}; {INSTALL_HINT}");
}

/// A loopback address of its own for each call in this process:
/// 127.X.Y.Z with X from the process id and Y.Z from a counter, never
/// 127.0.0.1 (left to the DNS fixture and other tools).
pub fn loopback_host() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let x = 10 + std::process::id() % 240;
    format!("127.{}.{}.{}", x, (n / 250) % 256, 1 + n % 250)
}

/// A port that was free on `host` for TCP and UDP a moment ago (bound to
/// port 0, then released). Nothing listens there: good for a "connection
/// refused" destination.
pub fn free_port(host: &str) -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind((host, 0)).expect("bind a loopback port");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((host, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {host}")
}

/// "host:port", with IPv6 hosts in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir(kind: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "spoolmail-fixture-{}-{}-{}",
        std::process::id(),
        n,
        kind.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create a scratch dir");
    dir
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Child processes

/// A fixture process: killed (SIGTERM, then SIGKILL) and reaped on drop; its
/// scratch dir is removed then, unless the test is panicking (kept for a
/// look, and its path and stderr printed).
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    dir: PathBuf,
    what: String,
}

enum StartError {
    /// The address or port was in use (exit status 98).
    BindFailed(String),
    Other(String),
}

impl Proc {
    /// Starts `python script args...` with stdout piped and waits for
    /// "READY host port"; stderr goes to DIR/stderr.log.
    fn start(
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

// ---------------------------------------------------------------------------
// SMTP fixtures

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
        file: file.to_path_buf(),
    }
}

// ---------------------------------------------------------------------------
// Certificates for the TLS fixtures

/// A test CA and the certificates it (or nobody) signs, made with the
/// `openssl` command (scripts/test-deps installs it) in a scratch dir
/// removed on drop. EC P-256 keys: fast to make, and what rustls and
/// Python's ssl both speak.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA certificate (PEM): what `tls_ca_file` points at.
    pub ca: PathBuf,
    next: AtomicU32,
}

/// A certificate and its key (PEM files).
#[derive(Clone, Debug)]
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Cert {
    /// sink.py's arguments to offer STARTTLS with it.
    pub fn sink_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

impl Pki {
    /// A new CA (`CN=spoolmail test CA`), valid for two days.
    pub fn new() -> Pki {
        require_program("openssl");
        let dir = scratch_dir("pki");
        let ca = dir.join("ca.pem");
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=spoolmail test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Pki {
            dir,
            ca,
            next: AtomicU32::new(0),
        }
    }

    /// A server certificate signed by the CA for these names: host names
    /// (`mx1.mx.test`) and IP addresses (`127.10.0.1`) alike.
    pub fn server(&self, names: &[&str]) -> Cert {
        let (cert, key, csr, ext) = self.paths();
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={}", names[0]),
            ],
        );
        fs::write(self.dir.join(&ext), server_extensions(names)).unwrap();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &cert,
                "-extfile",
                &ext,
                "-extensions",
                "server",
            ],
        );
        Cert {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }

    /// A self-signed server certificate for these names: no CA vouches for it.
    pub fn self_signed(&self, names: &[&str]) -> Cert {
        let (cert, key, _, ext) = self.paths();
        fs::write(self.dir.join(&ext), server_extensions(names)).unwrap();
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "2",
                "-subj",
                &format!("/CN={}", names[0]),
                "-extensions",
                "server",
                "-config",
                &ext,
            ],
        );
        Cert {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }

    fn paths(&self) -> (String, String, String, String) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (
            format!("server{n}.pem"),
            format!("server{n}.key"),
            format!("server{n}.csr"),
            format!("server{n}.cnf"),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// An openssl config whose `[server]` section holds a server certificate's
/// extensions (for `x509 -req -extfile F -extensions server` and
/// `req -x509 -config F -extensions server`).
fn server_extensions(names: &[&str]) -> String {
    let san: Vec<String> = names
        .iter()
        .map(|n| {
            if n.parse::<std::net::IpAddr>().is_ok() {
                format!("IP:{n}")
            } else {
                format!("DNS:{n}")
            }
        })
        .collect();
    format!(
        "[req]\ndistinguished_name = dn\n[dn]\n[server]\nsubjectAltName = {}\n\
         basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = serverAuth,clientAuth\n",
        san.join(",")
    )
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running openssl: {e}; {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// DNS fixture

/// The records the DNS fixture serves. Everything must be under `.test`,
/// and addresses must be loopback ones. Names under .test that are not given
/// are NXDOMAIN; other types of given names are NODATA.
#[derive(Clone, Debug, Default)]
pub struct DnsZone {
    mx: Vec<(String, String, u16)>,
    hosts: BTreeMap<String, Vec<String>>,
    servfail: Vec<String>,
    timeout: Vec<String>,
}

impl DnsZone {
    pub fn new() -> DnsZone {
        DnsZone::default()
    }

    /// An MX record: `domain` MX `pref` `target`.
    pub fn mx(mut self, domain: &str, pref: u16, target: &str) -> DnsZone {
        self.mx.push((domain.into(), target.into(), pref));
        self
    }

    /// A null MX (RFC 7505): `domain` MX 0 ".".
    pub fn null_mx(self, domain: &str) -> DnsZone {
        self.mx(domain, 0, ".")
    }

    /// A and AAAA records (IPv4 and IPv6 loopback addresses) for `name`;
    /// called twice for one name, the addresses add up.
    pub fn host(mut self, name: &str, addrs: &[&str]) -> DnsZone {
        self.hosts
            .entry(name.into())
            .or_default()
            .extend(addrs.iter().map(|a| a.to_string()));
        self
    }

    /// `domain` and every name under it answer SERVFAIL.
    pub fn servfail(mut self, domain: &str) -> DnsZone {
        self.servfail.push(domain.into());
        self
    }

    /// Queries for `domain` and every name under it get no answer at all.
    pub fn timeout(mut self, domain: &str) -> DnsZone {
        self.timeout.push(domain.into());
        self
    }

    /// The standard test zone, with the SMTP fixtures' addresses filled in:
    ///
    /// | name | answer |
    /// |---|---|
    /// | `mx.test` | MX 10 `mx1.mx.test` (A `primary`) |
    /// | `failover.test` | MX 10 `mx1.failover.test` (A `primary`), MX 20 `mx2.failover.test` (A `secondary`) |
    /// | `multi.test` | MX 10 `mx.multi.test` with two addresses: A `primary`, A `secondary` |
    /// | `implicit.test` | no MX (NODATA), A `primary` (the implicit MX) |
    /// | `nullmx.test` | MX 0 `.` (RFC 7505) |
    /// | `dangling.test` | MX 10 `gone.dangling.test`, which is NXDOMAIN |
    /// | `nxdomain.test`, any other name under .test | NXDOMAIN |
    /// | `servfail.test` (and names under it) | SERVFAIL |
    /// | `timeout.test` (and names under it) | no answer |
    pub fn standard(primary: &str, secondary: &str) -> DnsZone {
        DnsZone::new()
            .mx("mx.test", 10, "mx1.mx.test")
            .host("mx1.mx.test", &[primary])
            .mx("failover.test", 10, "mx1.failover.test")
            .mx("failover.test", 20, "mx2.failover.test")
            .host("mx1.failover.test", &[primary])
            .host("mx2.failover.test", &[secondary])
            .mx("multi.test", 10, "mx.multi.test")
            .host("mx.multi.test", &[primary, secondary])
            .host("implicit.test", &[primary])
            .null_mx("nullmx.test")
            .mx("dangling.test", 10, "gone.dangling.test")
            .servfail("servfail.test")
            .timeout("timeout.test")
    }

    fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (domain, target, pref) in &self.mx {
            a.push(format!("--mx-host={domain},{target},{pref}"));
        }
        for (name, addrs) in &self.hosts {
            a.push(format!("--host-record={name},{}", addrs.join(",")));
        }
        for d in &self.servfail {
            a.push(format!("--servfail={d}"));
        }
        for d in &self.timeout {
            a.push(format!("--timeout={d}"));
        }
        a
    }
}

/// A running DNS fixture (dnsmasq, through tests/fixtures/dns_server.py).
pub struct Dns {
    /// Always 127.0.0.1.
    pub host: String,
    /// The UDP and TCP port it answers on.
    pub port: u16,
    /// dnsmasq.conf, dnsmasq.log (every query), dnsmasq.stderr.
    pub outdir: PathBuf,
    proc: Proc,
}

/// One answer from the DNS fixture, as `Dns::query` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsAnswer {
    /// "NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", ... or "TIMEOUT".
    pub rcode: String,
    /// The answer records of the asked type in text form, sorted:
    /// "10 mx1.mx.test." for MX, "127.0.0.2" for A, "0 ." for a null MX.
    pub records: Vec<String>,
}

impl Dns {
    /// Starts dnsmasq on 127.0.0.1 and a free port (found by binding UDP and
    /// TCP to port 0 and releasing them; retried if dnsmasq cannot bind).
    pub fn start(zone: &DnsZone) -> Dns {
        Dns::start_with(zone, &[])
    }

    /// Same, with extra dns_server.py arguments (e.g. `["--lifetime", "5"]`).
    pub fn start_with(zone: &DnsZone, extra: &[&str]) -> Dns {
        require_program("dnsmasq");
        let outdir = scratch_dir("dns");
        let mut argv: Vec<String> = vec![
            "--outdir".into(),
            outdir.to_string_lossy().into_owned(),
            "--listen".into(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
            "--lifetime".into(),
            "300".into(),
        ];
        argv.extend(zone.args());
        argv.extend(extra.iter().map(|a| a.to_string()));
        match Proc::start("dns_server.py", &argv, &outdir, "dns") {
            Ok((proc, host, port)) => Dns {
                host,
                port,
                outdir,
                proc,
            },
            Err(StartError::BindFailed(m)) | Err(StartError::Other(m)) => panic!("{m}"),
        }
    }

    /// "127.0.0.1:PORT", the form of spoolmail's `dns_server`.
    pub fn addr(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// Asks one question over UDP (dnsq.py, dnspython), `qtype` as "MX",
    /// "A", "AAAA"...; a timeout of 1 s gives rcode "TIMEOUT".
    pub fn query(&self, name: &str, qtype: &str) -> DnsAnswer {
        self.query_many(&[(name, qtype)]).remove(0)
    }

    /// Asks several questions in one python process; a qtype written
    /// "tcp:MX" asks over TCP.
    pub fn query_many(&self, questions: &[(&str, &str)]) -> Vec<DnsAnswer> {
        let mut cmd = Command::new(python());
        cmd.arg(fixtures_dir().join("dnsq.py")).args([
            "--timeout",
            "1",
            "--json",
            &self.host,
            &self.port.to_string(),
        ]);
        for (name, qtype) in questions {
            cmd.arg(format!("{name}/{qtype}"));
        }
        let out = cmd
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .output()
            .expect("running dnsq.py");
        assert!(
            out.status.success(),
            "dnsq.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let answers: Vec<DnsAnswer> = text
            .lines()
            .map(|line| {
                let j = Json::parse(line).unwrap_or_else(|e| panic!("dnsq.py said {line:?}: {e}"));
                DnsAnswer {
                    rcode: j
                        .get("rcode")
                        .and_then(Json::as_str)
                        .unwrap_or("")
                        .to_string(),
                    records: j
                        .get("records")
                        .and_then(Json::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Json::as_str)
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        assert_eq!(answers.len(), questions.len(), "dnsq.py output: {text}");
        answers
    }

    /// dnsmasq's query log so far (one "query[MX] name from ..." line per
    /// question it got).
    pub fn query_log(&self) -> String {
        fs::read_to_string(self.outdir.join("dnsmasq.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }
}

// ---------------------------------------------------------------------------
// A minimal SMTP client, to talk to the fixtures directly

/// An SMTP reply: the code and the text of each line (after "250-").
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// All lines joined with "\n".
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The enhanced status code at the start of the first line, if any.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?.split(' ').next()?;
        let parts: Vec<&str> = first.split('.').collect();
        (parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
        .then_some(first)
    }
}

/// A plain TCP SMTP conversation, one reply read at a time.
pub struct SmtpConn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl SmtpConn {
    /// Connects with a 5 s connect, read and write timeout.
    pub fn connect(addr: &str) -> io::Result<SmtpConn> {
        let sa = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other("no address"))?;
        let stream = TcpStream::connect_timeout(&sa, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(SmtpConn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    pub fn set_read_timeout(&mut self, t: Duration) -> io::Result<()> {
        self.writer.set_read_timeout(Some(t))
    }

    /// Reads one (possibly multi-line) reply. EOF is `UnexpectedEof`.
    pub fn read_reply(&mut self) -> io::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut buf = Vec::new();
            let n = self.reader.read_until(b'\n', &mut buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            let line = String::from_utf8_lossy(&buf)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad reply line {line:?}"),
                    )
                })?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Ok(Reply { code, lines });
            }
        }
    }

    /// Sends bytes as they are (several pipelined commands, message data).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub fn cmd(&mut self, line: &str) -> io::Result<Reply> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }

    /// Reads until EOF or error; true if the peer closed (EOF or reset)
    /// before `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let _ = self.writer.set_read_timeout(Some(timeout));
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}

/// Dot-stuffs `data` and appends the end-of-data line, for `SmtpConn::send`
/// after a 354 (`data` must use CRLF line endings).
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut at_line_start = true;
    for &b in data {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

// ---------------------------------------------------------------------------
// A small JSON reader and base64 decoder (std only)

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at {}", p.i));
        }
        Ok(v)
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("JSON: {what} at byte {}", self.i))
    }

    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            self.err(&format!("expected {lit}"))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            None => self.err("unexpected end"),
            Some(b'n') => self.eat("null").map(|_| Json::Null),
            Some(b't') => self.eat("true").map(|_| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|_| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return self.err("expected , or ]"),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    let v = self.value()?;
                    members.push((key, v));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(members));
                        }
                        _ => return self.err("expected , or }"),
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .map(Json::Num)
                    .map_or_else(|| self.err("bad value"), Ok)
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let t = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match t.and_then(|h| u32::from_str_radix(h, 16).ok()) {
            Some(v) => {
                self.i += 4;
                Ok(v)
            }
            None => self.err("bad \\u escape"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat("\"")?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match b {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    self.i = save;
                                    0xFFFD
                                }
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => return self.err("bad escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(b),
            }
        }
    }
}

/// Decodes standard base64 (with or without padding); None if malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
