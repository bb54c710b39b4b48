//! Helpers shared by the integration tests: temporary spools that clean up
//! after themselves, running the real binary with a deadline, a seeded RNG,
//! and reading spool files back.
//!
//! Each test binary uses only some of these.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_spoolmail")
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// A directory under the system temp dir, removed (with everything in it) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "spoolmail-{label}-{}-{}-{nanos:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&path).expect("create temp dir");
        set_mode(&path, 0o755);
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A test may have made a directory read-only; make it removable again.
        restore_modes(&self.path);
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn restore_modes(dir: &Path) {
    set_mode(dir, 0o755);
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                restore_modes(&e.path());
            }
        }
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
}

/// A spool (`DIR/spool/{tmp,queue}`) and a config file (`DIR/spoolmail.conf`)
/// naming it, in a temporary directory.
pub struct TestSpool {
    pub dir: TempDir,
    pub spool: PathBuf,
    pub conf: PathBuf,
}

impl TestSpool {
    /// `extra` is appended to the config (one `key = value` a line).
    pub fn new(label: &str, extra: &str) -> TestSpool {
        let dir = TempDir::new(label);
        let spool = dir.path().join("spool");
        Self::make_spool_dirs(&spool);
        Self::with_spool_dir(dir, spool, extra)
    }

    /// A config naming `spool` (which the caller prepares) as spool_dir.
    /// Messages stay queued (`delivery_mode = queue`): no delivery attempt
    /// touches the spool behind a test's back or outlives it.
    pub fn with_spool_dir(dir: TempDir, spool: PathBuf, extra: &str) -> TestSpool {
        let conf = dir.path().join("spoolmail.conf");
        let text = format!(
            "spool_dir = {}\nlog = stderr\nqualify_domain = example.org\n\
             delivery_mode = queue\n{extra}",
            spool.display()
        );
        fs::write(&conf, text).expect("write config");
        set_mode(&conf, 0o644);
        TestSpool { dir, spool, conf }
    }

    pub fn make_spool_dirs(spool: &Path) {
        for sub in ["", "tmp", "queue"] {
            let d = spool.join(sub);
            fs::create_dir_all(&d).expect("create spool dir");
            set_mode(&d, 0o755);
        }
    }

    /// `spoolmail -C CONF` with `args`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("-C").arg(&self.conf).args(args);
        c
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.spool.join("queue")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.spool.join("tmp")
    }

    /// Names in `queue/`, sorted.
    pub fn queue_files(&self) -> Vec<String> {
        list_dir(&self.queue_dir())
    }

    /// Names in `tmp/`, sorted.
    pub fn tmp_files(&self) -> Vec<String> {
        list_dir(&self.tmp_dir())
    }

    pub fn read_queued(&self, name: &str) -> Vec<u8> {
        fs::read(self.queue_dir().join(name)).expect("read queued file")
    }

    pub fn assert_empty(&self, what: &str) {
        assert_eq!(self.queue_files(), Vec::<String>::new(), "{what}: queue/");
        assert_eq!(self.tmp_files(), Vec::<String>::new(), "{what}: tmp/");
    }
}

pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

pub fn is_queue_id(name: &str) -> bool {
    name.len() == 16
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `cmd` with `input` on stdin, collecting stdout and stderr; kills it
/// and panics if it takes longer than `timeout`. A child that exits without
/// reading all its input is not an error (the write just stops).
pub fn run(mut cmd: Command, input: &[u8], timeout: Duration) -> Outcome {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn spoolmail");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let status = wait_timeout(&mut child, timeout)
        .unwrap_or_else(|| panic!("spoolmail did not finish within {timeout:?}"));
    writer.join().unwrap();
    Outcome {
        status,
        stdout: out.join().unwrap(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

/// Waits for `child` at most `timeout`; on a hang kills it, reaps it and
/// returns None.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => return Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            None => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    }
}

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0), near enough for tests.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A spool file split into its envelope lines and its content.
pub struct SpoolFile<'a> {
    pub envelope: Vec<&'a str>,
    pub content: &'a [u8],
}

impl<'a> SpoolFile<'a> {
    /// Parses and checks the parts every committed message must have; the
    /// error says what is wrong.
    pub fn parse(bytes: &'a [u8]) -> Result<SpoolFile<'a>, String> {
        let end = find(bytes, b"\n\n").ok_or("no empty line after the envelope")?;
        let head = std::str::from_utf8(&bytes[..end]).map_err(|_| "envelope not UTF-8")?;
        let envelope: Vec<&str> = head.split('\n').collect();
        if envelope[0] != "SPOOLMAIL 1" {
            return Err(format!("first line is {:?}", envelope[0]));
        }
        let f = SpoolFile {
            envelope,
            content: &bytes[end + 2..],
        };
        for key in ["id", "arrival", "uid", "sender", "body", "rcpt"] {
            if f.value(key).is_none() {
                return Err(format!("envelope without `{key}`"));
            }
        }
        Ok(f)
    }

    /// The first value of `key` (trailing padding removed).
    pub fn value(&self, key: &str) -> Option<&'a str> {
        self.envelope.iter().find_map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k == key).then(|| v.trim_end_matches(' '))
        })
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// Raises the soft open-file limit towards the hard one (for tests that keep
/// hundreds of pipes open).
pub fn raise_nofile_limit(want: u64) {
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && (r.rlim_cur as u64) < want {
            r.rlim_cur = (want as libc::rlim_t).min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Appends to a shared file, for many children's stderr.
pub fn append_file(path: &Path) -> File {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file")
}

pub fn read_to_string_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e: io::Error| format!("({e})"))
}
