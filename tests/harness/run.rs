//! Running the binary (or any program) with a deadline, and waiting for
//! things to happen.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_spoolmail")
}

/// What a finished run left behind. `stdout` is read as text (lossily):
/// what the binary prints on stdout (mailq, -bv, -bs replies) is text;
/// `stdout_bytes` is what it was, for a test that checks the bytes.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
}

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Exit 0, or a panic that shows both outputs.
    pub fn assert_ok(&self) -> &Outcome {
        assert_eq!(
            self.code(),
            Some(0),
            "expected exit 0; stderr: {:?}; stdout: {:?}",
            self.stderr,
            self.stdout
        );
        self
    }

    /// An exit code among `codes`, and exactly one line on stderr, which is
    /// returned without its newline.
    pub fn assert_fails_one_line(&self, codes: &[i32]) -> &str {
        let code = self.code().expect("killed by a signal");
        assert!(
            codes.contains(&code),
            "expected exit in {codes:?}, got {code}; stderr: {:?}",
            self.stderr
        );
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "expected exactly one stderr line, got {:?}",
            self.stderr
        );
        assert!(self.stderr.ends_with('\n'), "{:?}", self.stderr);
        self.stderr.trim_end()
    }
}

/// Runs `cmd` with `input` on stdin, collecting stdout and stderr; kills it
/// and panics if it takes longer than `timeout`. A child that exits without
/// reading all its input is not an error (the write just stops).
pub fn run(mut cmd: Command, input: &[u8], timeout: Duration) -> Outcome {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut cmd);
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = wait_output(child, timeout);
    writer.join().unwrap();
    out
}

/// Spawns `cmd`. A program a test has just copied can be "busy" for a
/// moment (ETXTBSY): a child another test thread forked meanwhile holds the
/// copy's write descriptor until it execs; that passes, so it is retried.
pub fn spawn(cmd: &mut Command) -> Child {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot run {:?}: {e}", cmd.get_program()),
        }
    }
}

/// Waits for a spawned `child` at most `timeout` (killing it and panicking
/// on a hang) and collects what it wrote to the pipes it has (stdout and
/// stderr not piped read as "").
pub fn wait_output(mut child: Child, timeout: Duration) -> Outcome {
    let out = child.stdout.take().map(read_all);
    let err = child.stderr.take().map(read_all);
    let status = wait_timeout(&mut child, timeout)
        .unwrap_or_else(|| panic!("spoolmail did not finish within {timeout:?} (killed)"));
    let bytes =
        |h: Option<thread::JoinHandle<Vec<u8>>>| h.map(|h| h.join().unwrap()).unwrap_or_default();
    let stdout_bytes = bytes(out);
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stdout_bytes,
        stderr: String::from_utf8_lossy(&bytes(err)).into_owned(),
    }
}

/// Reads `from` to its end on a thread of its own (so that neither pipe can
/// fill up and block the child).
pub fn read_all(mut from: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = from.read_to_end(&mut v);
        v
    })
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
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    }
}

/// Waits for `child` until `deadline`; kills and reaps it and panics on a hang.
pub fn wait_until_exit(child: &mut Child, deadline: Instant, what: &str) -> ExitStatus {
    let left = deadline.saturating_duration_since(Instant::now());
    wait_timeout(child, left).unwrap_or_else(|| panic!("{what} did not finish in time (killed)"))
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
