//! Robustness of the real binary against temporary spools: many concurrent
//! submitters, writers killed at random moments, a 100 MB message in flat
//! memory, a full disk, the size limit, a missing or unwritable spool, bad
//! configs, closed stdout/stderr, and mailq on a large queue.
//!
//! Every test is bounded in time (children are killed on a hang) and removes
//! its temporary directory, mounts included.

mod harness;

use harness::*;
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A spool whose log goes to stderr, with `extra` config lines.
fn spool(label: &str, extra: &str) -> Spool {
    Spool::new(label, &config(extra))
}

/// The same, naming `spool` (which the caller prepares, or not).
fn spool_at(dir: TempDir, spool: std::path::PathBuf, extra: &str) -> Spool {
    Spool::with_spool_dir(dir, spool, &config(extra))
}

fn config(extra: &str) -> Config {
    Config::submission().set("log", "stderr").lines(extra)
}

const TRAILER: &str = "-- trailer: the last line of the body --\n";
const SHORT: Duration = Duration::from_secs(20);

/// A one-line error: text without a newline inside, ending in one newline.
fn assert_one_line(stderr: &str, what: &str) {
    assert!(
        stderr.ends_with('\n') && stderr.trim_end().lines().count() == 1,
        "{what}: stderr should be one line, got {stderr:?}"
    );
}

/// The text between `start` and the next `end` in `content`, once.
fn marker_in(content: &[u8], start: &[u8], end: u8) -> Option<String> {
    let i = find(content, start)? + start.len();
    let len = content[i..].iter().position(|&b| b == end)?;
    Some(String::from_utf8_lossy(&content[i..i + len]).into_owned())
}

// ---------------------------------------------------------------------------
// 1. Concurrent submitters
// ---------------------------------------------------------------------------

#[test]
fn concurrent_submitters_each_queue_exactly_once() {
    const N: usize = 300;
    raise_nofile_limit(4 * N as u64);
    let s = spool("concurrent", "");
    let errlog = s.root().join("stderr.log");
    let started = Instant::now();

    // Spawn them all first; each blocks reading its stdin.
    let mut children: Vec<Child> = Vec::with_capacity(N);
    for _ in 0..N {
        let mut c = s.cmd(&["-i", "-f", "sender@example.org", "bob@example.com"]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(append_file(&errlog));
        children.push(c.spawn().expect("spawn submitter"));
    }
    // Then release them all: each message fits in a pipe buffer.
    for (i, child) in children.iter_mut().enumerate() {
        let msg = format!(
            "To: bob@example.com\nSubject: concurrent <MARK-{i:04}>\n\nbody of message {i}\n{TRAILER}"
        );
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(msg.as_bytes()).expect("write message");
    }
    let deadline = started + Duration::from_secs(40);
    let mut failures = Vec::new();
    for (i, child) in children.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        match wait_timeout(child, left.max(Duration::from_millis(1))) {
            Some(st) if st.success() => {}
            Some(st) => failures.push(format!("submitter {i}: {st}")),
            None => failures.push(format!("submitter {i}: hung, killed")),
        }
    }
    let elapsed = started.elapsed();
    assert!(
        failures.is_empty(),
        "{failures:?}\nstderr:\n{}",
        read_to_string_lossy(&errlog)
    );

    assert_eq!(s.tmp_files(), Vec::<String>::new(), "leftovers in tmp/");
    let queued = s.queue_files();
    assert_eq!(queued.len(), N, "one queue file per submitter");
    let mut seen: HashMap<usize, String> = HashMap::new();
    for name in &queued {
        assert!(is_queue_id(name), "odd name in queue/: {name}");
        let bytes = s.read_queued(name);
        let f = Queued::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(f.get("id"), Some(name.as_str()));
        let mark = marker_in(&f.content, b"<MARK-", b'>').unwrap_or_else(|| panic!("{name}"));
        let i: usize = mark.parse().unwrap();
        assert!(i < N, "{name}: marker {mark}");
        assert!(
            f.content
                .ends_with(format!("body of message {i}\n{TRAILER}").as_bytes()),
            "{name}: content does not end with the body sent"
        );
        if let Some(other) = seen.insert(i, name.clone()) {
            panic!("marker {i} in both {other} and {name}");
        }
    }
    assert_eq!(seen.len(), N, "every marker exactly once");
    eprintln!("{N} concurrent submitters: all queued in {elapsed:?}");
}

// ---------------------------------------------------------------------------
// 2. SIGKILL at random moments
// ---------------------------------------------------------------------------

/// A body of about `size` bytes: numbered lines, then the trailer.
fn body_of_size(size: usize, tag: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(size + 128);
    let mut n = 0;
    while b.len() < size {
        writeln!(
            b,
            "{tag} body line {n:07} the quick brown fox jumps over the lazy dog"
        )
        .unwrap();
        n += 1;
    }
    b.extend_from_slice(TRAILER.as_bytes());
    b
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Feed {
    /// All at once, then EOF.
    Fast,
    /// In 16 KB pieces with short pauses, then EOF.
    Trickle,
    /// In pieces with pauses, and EOF only after the kill: the writer is
    /// certainly killed before its message is complete.
    HoldOpen,
}

struct Plan {
    body: usize,
    feed: Feed,
    kill_after: Duration,
}

#[derive(Debug)]
enum Fate {
    /// Exited (with this status) before the kill was sent.
    ExitedFirst(std::process::ExitStatus),
    /// Reaped after SIGKILL was sent (it may still have exited on its own).
    AfterKill(std::process::ExitStatus),
}

#[test]
fn sigkill_at_random_moments_leaves_whole_messages_or_nothing() {
    const RUNS: usize = 200;
    const LANES: usize = 4;
    let seed = 0x5EED_F00D_D00D_u64;
    let mut rng = Rng::new(seed);
    // Shared bodies: small, medium, large (the kill lands mid-write).
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(vec![
        body_of_size(2 * 1024, "small"),
        body_of_size(256 * 1024, "medium"),
        body_of_size(3 * 1024 * 1024, "large"),
    ]);
    let plans: Vec<Plan> = (0..RUNS)
        .map(|_| {
            let r = rng.below(100);
            let (body, feed, max_us) = match r {
                0..40 => (0, Feed::Fast, 5_000),
                40..55 => (1, Feed::Fast, 10_000),
                55..65 => (1, Feed::Trickle, 20_000),
                65..85 => (2, Feed::Fast, 60_000),
                _ => (rng.below(2) as usize, Feed::HoldOpen, 15_000),
            };
            // Some small ones are left long enough to finish.
            let max_us = if body == 0 && feed == Feed::Fast && rng.below(4) == 0 {
                100_000
            } else {
                max_us
            };
            Plan {
                body,
                feed,
                kill_after: Duration::from_micros(rng.below(max_us)),
            }
        })
        .collect();
    let plans = Arc::new(plans);
    let s = Arc::new(spool("sigkill", ""));
    let started = Instant::now();

    let lanes: Vec<_> = (0..LANES)
        .map(|lane| {
            let (s, plans, bodies) = (s.clone(), plans.clone(), bodies.clone());
            std::thread::spawn(move || {
                let mut fates = Vec::new();
                for i in (lane..RUNS).step_by(LANES) {
                    fates.push((i, kill_one(&s, i, &plans[i], &bodies[plans[i].body])));
                }
                fates
            })
        })
        .collect();
    let mut fates: Vec<(usize, Fate)> = lanes
        .into_iter()
        .flat_map(|l| l.join().expect("lane"))
        .collect();
    fates.sort_by_key(|(i, _)| *i);
    let elapsed = started.elapsed();

    // Which runs must, may, or must not be queued.
    let mut must = Vec::new();
    let mut must_not = Vec::new();
    let mut killed = 0;
    for (i, fate) in &fates {
        let st = match fate {
            Fate::ExitedFirst(st) | Fate::AfterKill(st) => st,
        };
        if st.success() {
            must.push(*i);
        } else if st.signal() == Some(libc::SIGKILL) {
            killed += 1;
        } else {
            panic!("run {i} ({:?}): unexpected {st}", plans[*i].feed);
        }
        if plans[*i].feed == Feed::HoldOpen {
            assert_eq!(
                st.signal(),
                Some(libc::SIGKILL),
                "run {i}: killed before its EOF"
            );
            must_not.push(*i);
        }
    }

    // Every queued file is a whole, valid message of one run.
    let mut queued: HashMap<usize, String> = HashMap::new();
    for name in s.queue_files() {
        assert!(is_queue_id(&name), "odd name in queue/: {name}");
        let bytes = s.read_queued(&name);
        let f = Queued::parse(&bytes).unwrap_or_else(|e| panic!("queue/{name}: {e}"));
        assert_eq!(f.get("id"), Some(name.as_str()));
        assert_eq!(f.get("rcpt"), Some("bob@example.com"));
        let i: usize = marker_in(&f.content, b"<RUN-", b'>')
            .unwrap_or_else(|| panic!("queue/{name}: no run marker"))
            .parse()
            .unwrap();
        assert!(
            f.content.ends_with(&bodies[plans[i].body]),
            "queue/{name} (run {i}, {} bytes sent): content is not the whole body; \
             it ends {:?}",
            bodies[plans[i].body].len(),
            String::from_utf8_lossy(&f.content[f.content.len().saturating_sub(80)..])
        );
        assert!(f.content.ends_with(TRAILER.as_bytes()));
        if let Some(other) = queued.insert(i, name.clone()) {
            panic!("run {i} queued twice: {other} and {name}");
        }
    }
    for i in &must {
        assert!(
            queued.contains_key(i),
            "run {i} exited 0 but is not in queue/"
        );
    }
    for i in &must_not {
        assert!(
            !queued.contains_key(i),
            "run {i} was killed before its input ended, yet is in queue/"
        );
    }
    // What the killed writers left is in tmp/ only, one file at most each.
    let tmp = s.tmp_files();
    assert!(
        tmp.len() <= killed,
        "{} files in tmp/ for {killed} kills",
        tmp.len()
    );
    for name in &tmp {
        assert!(is_queue_id(name), "odd name in tmp/: {name}");
    }
    // mailq sees exactly the committed messages.
    let out = run(s.cmd(&["-bp"]), b"", SHORT);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let listing = &out.stdout;
    let n = queued.len();
    let want = format!("in {n} Request{}.", if n == 1 { "" } else { "s" });
    assert!(
        n == 0 || listing.trim_end().ends_with(&want),
        "mailq: {listing}"
    );
    assert!(!must_not.is_empty() && killed >= must_not.len());
    eprintln!(
        "sigkill (seed {seed:#x}): {RUNS} runs in {elapsed:?}: {killed} killed, {} exited 0, \
         {} queued, {} left in tmp/",
        must.len(),
        queued.len(),
        tmp.len()
    );
}

/// One submission, killed at `plan.kill_after`.
fn kill_one(s: &Spool, i: usize, plan: &Plan, body: &[u8]) -> Fate {
    let mut c = s.cmd(&["-i", "-f", "sender@example.org", "bob@example.com"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let header = format!("To: bob@example.com\nSubject: killed? <RUN-{i:03}>\n\n");
    let body = body.to_vec();
    let feed = plan.feed;
    let (killed_tx, killed_rx) = mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let mut msg = header.into_bytes();
        msg.extend_from_slice(&body);
        // Errors are expected: the reader may be dead.
        match feed {
            Feed::Fast => {
                let _ = stdin.write_all(&msg);
            }
            Feed::Trickle | Feed::HoldOpen => {
                for piece in msg.chunks(16 * 1024) {
                    if stdin.write_all(piece).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_micros(300));
                }
                if feed == Feed::HoldOpen {
                    let _ = killed_rx.recv_timeout(Duration::from_secs(10));
                }
            }
        }
    });
    std::thread::sleep(plan.kill_after);
    let fate = match child.try_wait().expect("try_wait") {
        Some(st) => Fate::ExitedFirst(st),
        None => {
            child.kill().expect("SIGKILL");
            let st = wait_timeout(&mut child, SHORT).expect("reaped after SIGKILL");
            Fate::AfterKill(st)
        }
    };
    let _ = killed_tx.send(());
    writer.join().expect("writer");
    fate
}

// ---------------------------------------------------------------------------
// 3. Flat memory for a 100 MB message
// ---------------------------------------------------------------------------

const LINE_LEN: usize = 128;
const BIG_LINES: usize = 100 * 1024 * 1024 / LINE_LEN; // 819,200 lines, 100 MiB
const BIG_TRAILER: &[u8] = b"END OF THE 100 MB BODY: trailer line intact\n";
const LINES_PER_CHUNK: usize = 8192; // 1 MiB

/// Fills `buf` with body lines `first..first + count`: `line NNNNNNNNN ...`.
fn big_body_chunk(buf: &mut Vec<u8>, first: usize, count: usize) {
    const FILL: &[u8] = b" abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 \
        the quick brown fox jumps over the lazy dog -_-_-_-_-_-_-_-";
    buf.clear();
    for n in first..first + count {
        let start = buf.len();
        buf.extend_from_slice(b"line ");
        let mut digits = [b'0'; 9];
        let mut v = n;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        buf.extend_from_slice(&digits);
        let room = LINE_LEN - 1 - (buf.len() - start);
        buf.extend_from_slice(&FILL[..room]);
        buf.push(b'\n');
    }
}

/// A `/proc/PID/status` figure in KB (absent once the process is a zombie).
fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// VmHWM: the peak resident set of the process's current address space.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmHWM")
}

#[test]
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped with wait4, for its rusage"
)]
fn hundred_megabyte_message_in_flat_memory() {
    // The whole resident set, the mapped binary included, and the anonymous
    // part alone (heap and stacks: a message buffered in memory shows here).
    const LIMIT_KB: u64 = 24 * 1024;
    const ANON_LIMIT_KB: u64 = 4 * 1024;
    let s = spool("bigmsg", "max_message_size = 200M\n");
    let started = Instant::now();
    let mut child = s
        .cmd(&["-i", "-f", "sender@example.org", "bob@example.com"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut v = String::new();
        let _ = stderr.read_to_string(&mut v);
        v
    });
    // The writer streams 100 MiB in 1 MiB chunks and samples the child's
    // VmHWM as it goes; the last sample is taken when all but the final pipe
    // buffer has been consumed, just before EOF.
    let writer = std::thread::spawn(move || -> std::io::Result<(u64, u64)> {
        stdin.write_all(b"To: bob@example.com\nSubject: one hundred megabytes\n\n")?;
        let mut buf = Vec::with_capacity(LINES_PER_CHUNK * LINE_LEN);
        let mut written = 0u64;
        let mut peak = 0;
        for first in (0..BIG_LINES).step_by(LINES_PER_CHUNK) {
            big_body_chunk(&mut buf, first, LINES_PER_CHUNK.min(BIG_LINES - first));
            stdin.write_all(&buf)?;
            written += buf.len() as u64;
            if (first / LINES_PER_CHUNK).is_multiple_of(4) {
                peak = peak.max(vm_hwm_kb(pid).unwrap_or(0));
            }
        }
        stdin.write_all(BIG_TRAILER)?;
        written += BIG_TRAILER.len() as u64;
        stdin.flush()?;
        peak = peak.max(vm_hwm_kb(pid).unwrap_or(0));
        Ok((written, peak))
    });
    // The main thread samples too, reaps with wait4 (for ru_maxrss), and
    // kills the child if it runs past the deadline.
    let deadline = started + Duration::from_secs(45);
    let mut peak_polled = 0;
    let mut anon_polled = 0; // heap and stacks, without the mapped binary
    let mut status: libc::c_int = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        let r = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid as i32 {
            break;
        }
        assert_eq!(r, 0, "wait4: {}", std::io::Error::last_os_error());
        if let Some(kb) = vm_hwm_kb(pid) {
            peak_polled = peak_polled.max(kb);
        }
        if let Some(kb) = proc_status_kb(pid, "RssAnon") {
            anon_polled = anon_polled.max(kb);
        }
        if Instant::now() > deadline && !timed_out {
            // Not yet reaped, so the pid is still ours.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            timed_out = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    let write_result = writer.join().expect("writer");
    let stderr = err_reader.join().unwrap();
    assert!(!timed_out, "100 MB submission hung; killed");
    let (written, peak_writer) = write_result.expect("stream 100 MB to spoolmail");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}, stderr {stderr}"
    );
    let peak_kb = peak_polled.max(peak_writer);
    let maxrss_kb = usage.ru_maxrss as u64;
    eprintln!(
        "100 MB message: {written} bytes in {elapsed:?}; peak RSS (VmHWM) {peak_kb} KB \
         (largest RssAnon seen {anon_polled} KB); ru_maxrss {maxrss_kb} KB"
    );
    // VmHWM is the child's own address space. ru_maxrss also counts the
    // address space the child had before exec (for a vfork/posix_spawn, the
    // test process's), so it is only an upper bound: when it is under the
    // limit, that settles it too.
    assert!(peak_kb > 0, "could not read VmHWM from /proc/{pid}/status");
    assert!(
        peak_kb < LIMIT_KB,
        "peak resident size {peak_kb} KB for a 100 MB message (ru_maxrss {maxrss_kb} KB)"
    );
    // VmHWM counts the pages of the binary it touched, which grow with the
    // (debug) build; the heap and stacks are what must stay flat.
    assert!(
        anon_polled > 0,
        "could not read RssAnon from /proc/{pid}/status"
    );
    assert!(
        anon_polled < ANON_LIMIT_KB,
        "heap and stacks reached {anon_polled} KB for a 100 MB message"
    );

    // The stored message: whole, in order, the right size, the last line intact.
    assert_eq!(s.tmp_files(), Vec::<String>::new());
    let queued = s.queue_files();
    assert_eq!(queued.len(), 1, "{queued:?}");
    let path = s.queue_dir().join(&queued[0]);
    let file_len = fs::metadata(&path).unwrap().len();
    let mut r = BufReader::with_capacity(1 << 20, fs::File::open(&path).unwrap());
    let mut envelope_len = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).unwrap();
        assert!(n > 0, "envelope without its empty line");
        envelope_len += n as u64;
        if line == "\n" {
            break;
        }
    }
    let content_len = file_len - envelope_len;
    let body_len = (BIG_LINES * LINE_LEN + BIG_TRAILER.len()) as u64;
    assert!(
        content_len >= body_len && content_len - body_len < 2048,
        "content is {content_len} bytes for a body of {body_len}"
    );
    // Skip the message header, then compare the body chunk by chunk.
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "no end of header");
        if line == "\n" {
            break;
        }
    }
    let mut expect = Vec::with_capacity(LINES_PER_CHUNK * LINE_LEN);
    let mut got = vec![0u8; LINES_PER_CHUNK * LINE_LEN];
    for first in (0..BIG_LINES).step_by(LINES_PER_CHUNK) {
        big_body_chunk(&mut expect, first, LINES_PER_CHUNK.min(BIG_LINES - first));
        let got = &mut got[..expect.len()];
        r.read_exact(got).unwrap();
        assert!(*got == expect[..], "body differs in lines from {first}");
    }
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&rest),
        String::from_utf8_lossy(BIG_TRAILER)
    );
    // The last body line, read from the end of the file.
    let mut f = fs::File::open(&path).unwrap();
    f.seek(SeekFrom::End(-(LINE_LEN as i64 + BIG_TRAILER.len() as i64)))
        .unwrap();
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).unwrap();
    assert!(tail.starts_with(format!("line {:09} ", BIG_LINES - 1).as_bytes()));
    assert!(tail.ends_with(BIG_TRAILER));
}

// ---------------------------------------------------------------------------
// 4. Disk full
// ---------------------------------------------------------------------------

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Mount {
    /// Mounts a tmpfs of `size` (e.g. "1m") on `dir`; None where mounting is
    /// not permitted (not root, or no CAP_SYS_ADMIN in a container).
    fn tmpfs(dir: &Path, size: &str, read_only: bool) -> Option<Mount> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let target = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let opts = CString::new(format!("size={size},mode=0755")).unwrap();
        let flags = if read_only { libc::MS_RDONLY } else { 0 };
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                flags,
                opts.as_ptr().cast(),
            )
        };
        if rc == 0 {
            Some(Mount(dir.to_path_buf()))
        } else {
            eprintln!(
                "mount tmpfs on {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
            None
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let target = CString::new(self.0.as_os_str().as_bytes()).unwrap();
        unsafe {
            if libc::umount2(target.as_ptr(), 0) != 0 {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

fn message_with_body(subject: &str, body_size: usize) -> Vec<u8> {
    let mut m = format!("To: bob@example.com\nSubject: {subject}\n\n").into_bytes();
    m.extend_from_slice(&body_of_size(body_size, subject));
    m
}

/// Limits the child's file size to `bytes`, with SIGXFSZ ignored so that a
/// write past it fails with EFBIG instead of killing the process.
fn limit_file_size(cmd: &mut std::process::Command, bytes: u64) {
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
}

/// A full disk. As root a 1 MB tmpfs is the spool and a 2 MB message fills
/// it: ENOSPC, exit 75. Where mounting is not permitted, the fallback is a
/// file-size limit (EFBIG), which is not "disk full" and so exits 74; the
/// mechanism that ran is printed.
#[test]
fn disk_full_refuses_with_tempfail_and_leaves_nothing() {
    let dir = TempDir::new("diskfull");
    let spool = dir.path().join("spool");
    fs::create_dir(&spool).unwrap();
    let s = spool_at(dir, spool, "max_message_size = 0\n");
    // Declared after `s`, so it is dropped (unmounted) before the directory goes.
    let mount = Mount::tmpfs(&s.spool, "1m", false);
    make_spool_dirs(&s.spool);
    let big = message_with_body("too big for the disk", 2 * 1024 * 1024);
    let args = ["-i", "-f", "sender@example.org", "bob@example.com"];
    if mount.is_some() {
        eprintln!("disk full: mechanism = 1 MB tmpfs (ENOSPC)");
        let out = run(s.cmd(&args), &big, SHORT);
        assert_eq!(out.code(), Some(75), "full disk: {out:?}");
        assert_one_line(&out.stderr, "full disk");
        assert!(
            out.stderr.contains("No space left"),
            "stderr: {}",
            out.stderr
        );
        s.assert_empty("after a full disk");
        // The space is given back: a small message fits again.
        let small = message_with_body("fits", 2048);
        let out = run(s.cmd(&args), &small, SHORT);
        assert_eq!(
            out.code(),
            Some(0),
            "small message after a full disk: {out:?}"
        );
        assert_eq!(s.queue_files().len(), 1);
        assert_eq!(s.tmp_files(), Vec::<String>::new());
    } else {
        eprintln!("disk full: mounting not permitted; mechanism = RLIMIT_FSIZE (EFBIG)");
        let mut cmd = s.cmd(&args);
        limit_file_size(&mut cmd, 256 * 1024);
        let out = run(cmd, &big, SHORT);
        assert_eq!(out.code(), Some(74), "file size limit: {out:?}");
        assert_one_line(&out.stderr, "file size limit");
        s.assert_empty("after EFBIG");
    }
    drop(mount);
}

/// Writes that fail with EFBIG (RLIMIT_FSIZE, SIGXFSZ ignored) give a clean
/// I/O error and no leftovers, whatever the privileges.
#[test]
fn file_size_limit_gives_ioerr_and_leaves_nothing() {
    let s = spool("efbig", "max_message_size = 0\n");
    let args = ["-i", "-f", "sender@example.org", "bob@example.com"];
    let mut cmd = s.cmd(&args);
    limit_file_size(&mut cmd, 256 * 1024);
    let out = run(cmd, &message_with_body("efbig", 1024 * 1024), SHORT);
    assert_eq!(out.code(), Some(74), "{out:?}");
    assert_one_line(&out.stderr, "EFBIG");
    assert!(out.stderr.contains("File too large"), "{}", out.stderr);
    s.assert_empty("after EFBIG");
    // Under the same limit, a small message goes through.
    let mut cmd = s.cmd(&args);
    limit_file_size(&mut cmd, 256 * 1024);
    let out = run(cmd, &message_with_body("small", 4096), SHORT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(s.queue_files().len(), 1);
}

// ---------------------------------------------------------------------------
// 5. Size limit
// ---------------------------------------------------------------------------

#[test]
fn message_over_max_message_size_is_refused_cleanly() {
    let s = spool("sizelimit", "max_message_size = 10k\n");
    let args = ["-i", "-f", "sender@example.org", "bob@example.com"];
    // A body over the limit.
    let out = run(
        s.cmd(&args),
        &message_with_body("big body", 50 * 1024),
        SHORT,
    );
    assert_eq!(out.code(), Some(65), "{out:?}");
    assert_one_line(&out.stderr, "size limit");
    assert!(out.stderr.contains("max_message_size"), "{}", out.stderr);
    s.assert_empty("after an oversized body");
    // A header block over the limit (refused before anything is written).
    let mut m = format!("To: bob@example.com\nX-Long: {}\n", "x".repeat(20 * 1024)).into_bytes();
    m.extend_from_slice(b"\nshort body\n");
    let out = run(s.cmd(&args), &m, SHORT);
    assert_eq!(out.code(), Some(65), "{out:?}");
    assert_one_line(&out.stderr, "size limit (header)");
    assert!(out.stderr.contains("max_message_size"), "{}", out.stderr);
    s.assert_empty("after an oversized header");
    // Under the limit: accepted.
    let out = run(s.cmd(&args), &message_with_body("small", 4 * 1024), SHORT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(s.queue_files().len(), 1);
    assert_eq!(s.tmp_files(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// 6. Spool missing or not writable; bad configs
// ---------------------------------------------------------------------------

const SMALL: &[u8] = b"To: bob@example.com\nSubject: s\n\nbody\n";

#[test]
fn missing_spool_dir_is_cantcreat_naming_the_path() {
    let dir = TempDir::new("nospool");
    let missing = dir.path().join("no-such-spool");
    let s = spool_at(dir, missing.clone(), "");
    let out = run(s.cmd(&["-i", "bob@example.com"]), SMALL, SHORT);
    assert_eq!(out.code(), Some(73), "{out:?}");
    assert_one_line(&out.stderr, "missing spool");
    assert!(
        out.stderr.contains(&*missing.to_string_lossy()),
        "should name {}: {}",
        missing.display(),
        out.stderr
    );
    assert!(
        !missing.exists(),
        "the spool must not be created on the fly"
    );
}

/// A spool whose tmp/ the user cannot write: as root, the binary runs as
/// nobody (65534) against a root-owned 0755 tmp/; otherwise tmp/ is made 0555.
#[test]
fn unwritable_spool_is_noperm_naming_the_path() {
    let s = spool("rospool", "");
    let mut cmd;
    if is_root() {
        // nobody must be able to reach the config and the spool.
        let reachable = s.root().ancestors().skip(1).all(|d| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
        });
        if !reachable {
            eprintln!("unwritable spool: skipped, the temp dir is private to root");
            return;
        }
        // A copy of the binary nobody can certainly execute.
        let exe = s.root().join("spoolmail");
        fs::copy(bin(), &exe).unwrap();
        set_mode(&exe, 0o755);
        cmd = std::process::Command::new(&exe);
        cmd.arg("-C").arg(&s.conf);
        cmd.uid(65534).gid(65534);
    } else {
        set_mode(&s.tmp_dir(), 0o555);
        cmd = s.cmd(&[]);
    }
    cmd.args(["-i", "-f", "sender@example.org", "bob@example.com"]);
    let out = run(cmd, SMALL, SHORT);
    set_mode(&s.tmp_dir(), 0o755);
    assert_eq!(out.code(), Some(77), "{out:?}");
    assert_one_line(&out.stderr, "unwritable spool");
    assert!(
        out.stderr.contains(&*s.tmp_dir().to_string_lossy()),
        "should name {}: {}",
        s.tmp_dir().display(),
        out.stderr
    );
    s.assert_empty("unwritable spool");
}

#[test]
fn bad_config_files_are_config_errors() {
    let s = spool("badconf", "");
    let args = ["-i", "bob@example.com"];
    let try_conf = |conf: &Path, what: &str| {
        let mut cmd = std::process::Command::new(bin());
        cmd.arg("-C").arg(conf).args(args);
        let out = run(cmd, SMALL, SHORT);
        assert_eq!(out.code(), Some(78), "{what}: {out:?}");
        assert_one_line(&out.stderr, what);
        assert!(
            out.stderr.contains(&*conf.to_string_lossy()),
            "{what}: should name {}: {}",
            conf.display(),
            out.stderr
        );
        out.stderr
    };
    // Nonexistent.
    try_conf(&s.root().join("no-such.conf"), "nonexistent config");
    // Unreadable: a directory (root reads any file), and, when not root, mode 000.
    try_conf(s.root(), "config that is a directory");
    if !is_root() {
        let locked = s.root().join("locked.conf");
        fs::copy(&s.conf, &locked).unwrap();
        set_mode(&locked, 0o000);
        try_conf(&locked, "unreadable config");
    }
    // An unknown key, on line 3: a warning naming FILE:LINE; the message
    // is queued all the same (issue 13: a config mistake never loses mail).
    let bad = s.root().join("unknown-key.conf");
    fs::write(
        &bad,
        format!(
            "spool_dir = {}\n# a comment\nno_such_key = 1\n",
            s.spool.display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("-C").arg(&bad).args(["-odq"]).args(args);
    let out = run(cmd, SMALL, SHORT);
    assert_eq!(out.code(), Some(0), "unknown key: {out:?}");
    let err = out.stderr;
    assert!(
        err.contains(&format!("{}:3:", bad.display())),
        "FILE:LINE: {err}"
    );
    assert!(err.contains("no_such_key"), "{err}");
    for f in list_dir(&s.queue_dir()) {
        fs::remove_file(s.queue_dir().join(f)).unwrap();
    }
    s.assert_empty("config errors");
}

// ---------------------------------------------------------------------------
// 7. Closed stdout/stderr
// ---------------------------------------------------------------------------

fn fd_target(pid: u32, fd: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()
}

/// Submits with the given fds closed in the child; with `log = stderr` and
/// `-v` the binary has things to say on fd 2, which must not land in the
/// spool file.
fn submit_with_closed_fds(close: &'static [i32]) {
    let s = spool("closedfds", "");
    let mut cmd = s.cmd(&["-v", "-i", "-f", "sender@example.org", "bob@example.com"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    unsafe {
        cmd.pre_exec(move || {
            for &fd in close {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    // Half a header: the child waits for the rest with only fds 0-2 open.
    stdin.write_all(b"To: bob@example.com\n").unwrap();
    if Path::new("/proc/self/fd").exists() {
        let deadline = Instant::now() + Duration::from_secs(10);
        let dev_null = Some(PathBuf::from("/dev/null"));
        while close.iter().any(|&fd| fd_target(pid, fd) != dev_null) {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "closed fds {close:?} not reopened on /dev/null: {:?}",
                    close
                        .iter()
                        .map(|&fd| fd_target(pid, fd))
                        .collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    stdin
        .write_all(format!("Subject: closed fds {close:?}\n\nthe body\n{TRAILER}").as_bytes())
        .unwrap();
    drop(stdin);
    let st = wait_timeout(&mut child, SHORT).expect("hung");
    assert!(st.success(), "closed {close:?}: {st}");
    assert_eq!(s.tmp_files(), Vec::<String>::new());
    let queued = s.queue_files();
    assert_eq!(queued.len(), 1, "closed {close:?}");
    let bytes = s.read_queued(&queued[0]);
    let f = Queued::parse(&bytes).unwrap_or_else(|e| panic!("closed {close:?}: {e}"));
    assert_eq!(f.get("id"), Some(queued[0].as_str()));
    assert!(
        f.content
            .ends_with(format!("\n\nthe body\n{TRAILER}").as_bytes())
    );
    // Nothing but the expected header fields and the body: no stray text.
    let content = std::str::from_utf8(&f.content).expect("UTF-8 content");
    let (header, body) = content.split_once("\n\n").expect("header and body");
    let known = [
        "Received: ",
        "\tid ",
        "To: ",
        "Subject: ",
        "From: ",
        "Date: ",
        "Message-ID: ",
    ];
    for line in header.lines() {
        assert!(
            known.iter().any(|k| line.starts_with(k)),
            "closed {close:?}: stray header line {line:?} in the spool file"
        );
    }
    assert_eq!(body, format!("the body\n{TRAILER}"), "closed {close:?}");
    let keys = [
        "SPOOLMAIL",
        "id",
        "arrival",
        "uid",
        "sender",
        "body",
        "rcpt",
    ];
    for (key, value) in &f.envelope {
        assert!(
            keys.contains(&key.as_str()),
            "closed {close:?}: stray envelope line {key:?} {value:?}"
        );
    }
}

#[test]
fn closed_stdout_and_stderr_still_queue_cleanly() {
    submit_with_closed_fds(&[1, 2]);
    submit_with_closed_fds(&[2]);
    submit_with_closed_fds(&[1]);
}

// ---------------------------------------------------------------------------
// 8. mailq on a large queue
// ---------------------------------------------------------------------------

#[test]
fn mailq_lists_two_thousand_messages() {
    const N: usize = 2000;
    let s = spool("mailq", "");
    let out = run(
        s.cmd(&["-i", "-f", "sender@example.org", "bob@example.com"]),
        &message_with_body("template", 3000),
        SHORT,
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    let queued = s.queue_files();
    assert_eq!(queued.len(), 1);
    let original = queued[0].clone();
    // Pad the body so that the content is a multiple of 64 bytes: then the
    // total (2000 times it) is a whole number of Kbytes, whichever way the
    // listing rounds.
    let mut template = s.read_queued(&original);
    let content_len = Queued::parse(&template).unwrap().content.len();
    let pad = 2 + (64 - (content_len + 2) % 64) % 64;
    template.extend_from_slice(&[b'p'; 64][..pad - 1]);
    template.push(b'\n');
    fs::write(s.queue_dir().join(&original), &template).unwrap();
    let content_len = (content_len + pad) as u64;
    assert_eq!(content_len % 64, 0);
    let id_line = format!("\nid {original}\n");
    let at = find(&template, id_line.as_bytes()).expect("id line");

    // N - 1 copies under new ids (with the id line rewritten), plus the original.
    let mut ids = vec![original.clone()];
    for i in 1..N {
        let id = format!(
            "{:08X}{:08X}",
            0x6000_0000u32 + i as u32,
            0xABC0_0000u32 + i as u32
        );
        let mut copy = template[..at].to_vec();
        copy.extend_from_slice(format!("\nid {id}\n").as_bytes());
        copy.extend_from_slice(&template[at + id_line.len()..]);
        fs::write(s.queue_dir().join(&id), &copy).unwrap();
        ids.push(id);
    }
    let started = Instant::now();
    let out = run(s.cmd(&["-bp"]), b"", SHORT);
    let elapsed = started.elapsed();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let listing = String::from_utf8(out.stdout_bytes).expect("UTF-8 listing");
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for line in listing.lines() {
        let mut words = line.split_whitespace();
        if let Some(first) = words.next()
            && is_queue_id(first.trim_end_matches('*'))
        {
            *seen.entry(first).or_default() += 1;
            let size = words.next().unwrap_or("");
            assert_eq!(size, content_len.to_string(), "size on {line:?}");
        }
    }
    for id in &ids {
        assert_eq!(seen.get(id.as_str()), Some(&1), "id {id} in the listing");
    }
    assert_eq!(seen.len(), N, "no other ids listed");
    let want = format!(
        "-- {} Kbytes in {N} Requests.",
        content_len * N as u64 / 1024
    );
    assert_eq!(listing.lines().last(), Some(want.as_str()), "trailer line");
    assert_eq!(
        listing.matches("bob@example.com").count(),
        N,
        "one recipient line per message"
    );
    eprintln!("mailq: {N} messages listed in {elapsed:?}");
}
