//! Issue 11, out of other users' reach: whatever an unprivileged user does
//! to the processes of a queue run they start (a closed stderr, a file-size
//! limit, stopping them), nothing happens to another user's queued message:
//! no copy, no delay. Each attack is tried as uid 65534 on a spool it can
//! read and write as the setgid binary's group would let it (the queue
//! directories belong to its group), against a message root queued, with a
//! real SMTP sink counting copies.

mod harness;

use harness::{Config, Smtp, Spool};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NOBODY: u32 = 65534;
const WAIT: Duration = Duration::from_secs(30);
const MSG: &[u8] = b"Subject: for bob\n\nonly once\n";

/// A spool whose queue directories uid 65534 can use (group 65534, setgid
/// so that every file in them gets that group, as the setgid binary's
/// files do), delivering to `sink`; None when not root.
fn shared_spool(label: &str, sink: &Smtp) -> Option<Spool> {
    if !harness::is_root() {
        eprintln!("skipped: running as another user needs root");
        return None;
    }
    let s = Spool::new(label, &Config::delivery().set("smarthost", sink.addr()));
    s.share_queue_with_group(NOBODY);
    Some(s)
}

/// The binary as uid and gid 65534, not in the spool directory's group.
fn as_nobody(s: &Spool, args: &[&str]) -> Command {
    let mut cmd = s.cmd(args);
    cmd.uid(NOBODY).gid(NOBODY).stdin(Stdio::null());
    cmd
}

/// Root queues a message from victim@ (delivery_mode = queue).
fn victims_message(s: &Spool) -> String {
    s.submit_one(&["-f", "victim@example.org", "bob@example.com"], MSG)
        .id
}

/// Reads `child`'s stderr up to its first `>>>` line (what the client
/// sends); false when it ended without one.
fn read_to_first_command(child: &mut Child) -> (bool, BufReader<std::process::ChildStderr>) {
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return (false, reader);
        }
        if line.starts_with(">>>") {
            return (true, reader);
        }
    }
}

/// After the attacks: no copy reached the sink; root's next pass delivers
/// the message exactly once.
fn assert_untouched_then_delivered(s: &Spool, sink: &Smtp, id: &str) {
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sink.message_count(),
        0,
        "copies sent by the attacks:\n{}",
        s.log()
    );
    assert_eq!(s.queue_ids(), [id.to_string()], "{}", s.log());
    s.pass(&[]);
    let msgs = sink.wait_for_messages(1, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.message_count(), 1, "{}", s.log());
    assert_eq!(msgs[0].mail_from, "victim@example.org");
    s.assert_delivered();
}

#[test]
fn a_closed_stderr_pipe_sends_no_copy_of_another_users_message() {
    let sink = Smtp::sink(&[]);
    let Some(s) = shared_spool("reach-epipe", &sink) else {
        return;
    };
    let id = victims_message(&s);
    for _ in 0..3 {
        let mut cmd = as_nobody(&s, &["-qR@", "-v"]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = harness::spawn(&mut cmd);
        let (_, reader) = read_to_first_command(&mut child);
        drop(reader);
        harness::wait_timeout(&mut child, WAIT).expect("the attacker's run ended");
    }
    assert_untouched_then_delivered(&s, &sink, &id);
}

#[test]
fn a_file_size_limit_of_zero_sends_no_copy_of_another_users_message() {
    let sink = Smtp::sink(&[]);
    let Some(s) = shared_spool("reach-fsize", &sink) else {
        return;
    };
    let id = victims_message(&s);
    for _ in 0..3 {
        let mut cmd = as_nobody(&s, &["-qR@"]);
        // `ulimit -f 0` in a shell: soft and hard, SIGXFSZ as it comes.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let zero = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
                if libc::setrlimit(libc::RLIMIT_FSIZE, &zero) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        harness::run(cmd, b"", WAIT);
    }
    assert_untouched_then_delivered(&s, &sink, &id);
}

/// The pids of `pid`'s children, from /proc.
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_stopped_run_does_not_hold_another_users_message() {
    let sink = Smtp::sink(&[]);
    let Some(s) = shared_spool("reach-stopped", &sink) else {
        return;
    };
    let id = victims_message(&s);
    let mut cmd = as_nobody(&s, &["-qR@", "-v"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut attacker = harness::spawn(&mut cmd);
    let (talking, reader) = read_to_first_command(&mut attacker);
    let pid = attacker.id();
    let stopped: Vec<i32> = if talking {
        let mut all = children_of(pid);
        all.push(pid as i32);
        all
    } else {
        Vec::new()
    };
    for &p in &stopped {
        // SAFETY: kill only sends a signal to a process this test started.
        unsafe { libc::kill(p, libc::SIGSTOP) };
    }
    assert_untouched_then_delivered(&s, &sink, &id);
    for &p in &stopped {
        // SAFETY: as above.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    drop(reader);
    let _ = harness::wait_timeout(&mut attacker, WAIT);
}

#[test]
fn an_unprivileged_run_takes_its_own_messages_and_an_admin_every_one() {
    let sink = Smtp::sink(&[]);
    let Some(s) = shared_spool("reach-own", &sink) else {
        return;
    };
    let theirs = victims_message(&s);
    let mut submit = as_nobody(&s, &["-f", "nobody@example.org", "carol@example.com"]);
    submit.stdin(Stdio::piped());
    harness::run(submit, MSG, WAIT).assert_ok();
    let out = harness::run(as_nobody(&s, &["-q", "-v"]), b"", WAIT);
    out.assert_ok();
    assert!(
        out.stderr
            .contains("spoolmail: queue run limited to your own messages (uid 65534)"),
        "{}",
        out.stderr
    );
    let msgs = sink.wait_for_messages(1, WAIT);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].mail_from, "nobody@example.org");
    assert_eq!(s.queue_ids(), [theirs]);
    // A member of admin_group runs over everyone's mail, and says nothing of it.
    let group = harness::group_name(NOBODY);
    s.configure(
        &Config::delivery()
            .set("smarthost", sink.addr())
            .set("admin_group", &group),
    );
    let out = harness::run(as_nobody(&s, &["-q", "-v"]), b"", WAIT);
    out.assert_ok();
    assert!(!out.stderr.contains("limited"), "{}", out.stderr);
    let msgs = sink.wait_for_messages(2, WAIT);
    assert_eq!(msgs[1].mail_from, "victim@example.org");
    assert!(s.queue_ids().is_empty(), "{}", s.log());
}

/// Issue 11, attempts count whoever runs them: forced runs (`-qI`) of a
/// message its server always defers count as attempts, so the loop ends
/// in expiry and a bounce instead of going on forever.
#[test]
fn a_loop_of_forced_runs_ends_in_expiry() {
    let server = Smtp::faulty("tempfail-always", &[]);
    let s = Spool::new(
        "forced-loop",
        &Config::delivery()
            .set("smarthost", server.addr())
            .set("retry_schedule", "0 1h 1h"),
    );
    let id = s
        .submit_one(&["-f", "alice@example.org", "bob@example.com"], MSG)
        .id;
    for run in 1..=3 {
        assert!(s.queue_ids().contains(&id), "gone after {run} runs");
        s.pass(&["-qI", &id]);
    }
    assert!(!s.queue_ids().contains(&id), "{}", s.log());
    assert!(
        s.log()
            .contains("status=expired (message expired after 3 attempts"),
        "{}",
        s.log()
    );
    assert_eq!(s.bounces().len(), 1, "{}", s.mailq());
}

/// When the attempt cannot be recorded before the transaction (here
/// `tmp/`, where the state is written first, is not a directory), the
/// message is not sent, and the log says why; once it can, it goes once.
#[test]
fn a_message_whose_attempt_cannot_be_recorded_first_is_not_sent() {
    let sink = Smtp::sink(&[]);
    let s = Spool::new(
        "prerecord",
        &Config::delivery().set("smarthost", sink.addr()),
    );
    let id = s
        .submit_one(&["-f", "alice@example.org", "bob@example.com"], MSG)
        .id;
    let tmp = s.tmp_dir();
    std::fs::remove_dir(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    for _ in 0..2 {
        s.pass(&[]);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.message_count(), 0, "{}", s.log());
    assert!(
        s.log().contains(&format!(
            "{id}: not sent in this pass: the attempt cannot be recorded first"
        )),
        "{}",
        s.log()
    );
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    s.pass(&[]);
    sink.wait_for_messages(1, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.message_count(), 1);
    s.assert_delivered();
}

/// Sets a hard and soft limit of `resource` in the child before exec.
fn limit(cmd: &mut Command, resource: libc::__rlimit_resource_t, value: u64) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::rlimit {
                rlim_cur: value as libc::rlim_t,
                rlim_max: value as libc::rlim_t,
            };
            if libc::setrlimit(resource, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A queue run whose hard file-size limit could not record outcomes does
/// not start: one line, exit 75, nothing sent.
#[test]
fn a_run_with_too_low_a_file_size_limit_is_refused() {
    let sink = Smtp::sink(&[]);
    let s = Spool::new(
        "low-fsize",
        &Config::delivery().set("smarthost", sink.addr()),
    );
    s.submit_one(&["-f", "alice@example.org", "bob@example.com"], MSG);
    let mut cmd = s.cmd(&["-q"]);
    limit(&mut cmd, libc::RLIMIT_FSIZE, 1024 * 1024);
    let out = harness::run(cmd, b"", WAIT);
    let line = out.assert_fails_one_line(&[75]);
    assert!(
        line.contains("queue run refused") && line.contains("ulimit -f"),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.message_count(), 0);
    s.pass(&[]);
    sink.wait_for_messages(1, WAIT);
    s.assert_delivered();
}

/// A delivery process that cannot have its kill timer (no signal may be
/// queued: RLIMIT_SIGPENDING 0) does not deliver, and says why.
#[test]
fn a_delivery_process_without_its_kill_timer_refuses_to_deliver() {
    let sink = Smtp::sink(&[]);
    let s = Spool::new(
        "no-timer",
        &Config::delivery().set("smarthost", sink.addr()),
    );
    s.submit_one(&["-f", "alice@example.org", "bob@example.com"], MSG);
    let mut cmd = s.cmd(&["-q"]);
    limit(&mut cmd, libc::RLIMIT_SIGPENDING, 0);
    harness::run(cmd, b"", WAIT).assert_ok();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.message_count(), 0);
    s.assert_deferred("cannot create the delivery process's kill timer");
}

/// A run stopped mid-transaction with its parent (so that the parent's
/// deadline cannot kill the child) holds the message no longer than
/// `transaction_deadline` and a few seconds: the child's own kernel timer
/// kills it, and the next run delivers the message, once.
#[test]
fn a_stopped_run_holds_its_message_no_longer_than_the_deadline() {
    // RCPT answered after a second: the run is stopped mid-transaction,
    // never after a transaction a fast child finished before the stop
    // landed (a message sent, its removal not yet recorded: queued still,
    // as the SMTP duplicate window has it).
    let sink = Smtp::faulty("slow-rcpt", &["--delay", "1"]);
    let s = Spool::new(
        "stopped-own",
        &Config::delivery()
            .set("smarthost", sink.addr())
            .set("transaction_deadline", "2s"),
    );
    s.submit_one(&["-f", "alice@example.org", "bob@example.com"], MSG);
    let mut cmd = s.cmd(&["-qR@", "-v"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut run = harness::spawn(&mut cmd);
    let (talking, reader) = read_to_first_command(&mut run);
    assert!(talking, "the run said nothing");
    let mut stopped = children_of(run.id());
    stopped.push(run.id() as i32);
    for &p in &stopped {
        // SAFETY: kill only sends a signal to a process this test started.
        unsafe { libc::kill(p, libc::SIGSTOP) };
    }
    let started = std::time::Instant::now();
    let delivered = harness::wait_until(Duration::from_secs(20), || {
        s.pass(&[]);
        sink.message_count() > 0
    });
    for &p in &stopped {
        // SAFETY: as above.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    drop(reader);
    let _ = harness::wait_timeout(&mut run, WAIT);
    assert!(
        delivered,
        "still held after {:?}: {}",
        started.elapsed(),
        s.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.message_count(), 1);
    s.assert_delivered();
}

/// Issue 11, a free-space reserve: below `queue_min_free` a submission
/// gets a temporary failure before anything is written (exit 75, one line;
/// 452 4.3.1 to MAIL under -bs), and delivery goes on regardless.
#[test]
fn below_queue_min_free_submissions_wait_and_delivery_goes_on() {
    let sink = Smtp::sink(&[]);
    let config = Config::delivery().set("smarthost", sink.addr());
    let s = Spool::new("min-free", &config);
    let queued = s.submit_one(&["-f", "alice@example.org", "bob@example.com"], MSG);
    // More than any test machine's disk has free.
    s.configure(&config.clone().set("queue_min_free", "100000G"));
    let out = s.run(&["-f", "alice@example.org", "carol@example.com"], MSG);
    let line = out.assert_fails_one_line(&[75]);
    assert!(
        line.ends_with("spool file system has less than 100000G free"),
        "{line}"
    );
    assert_eq!(s.queue_ids(), std::slice::from_ref(&queued.id));
    s.assert_tmp_empty();
    let session = "EHLO c\r\nMAIL FROM:<alice@example.org>\r\nQUIT\r\n";
    let out = s.run(&["-bs"], session.as_bytes());
    assert!(
        out.stdout
            .contains("452 4.3.1 spool file system has less than 100000G free\r\n"),
        "{}",
        out.stdout
    );
    assert_eq!(s.queue_ids(), [queued.id]);
    // Delivery ignores the reserve: it is what the reserve is for.
    s.pass(&[]);
    sink.wait_for_messages(1, WAIT);
    s.assert_delivered();
}

/// The free space of the file system holding `dir`, for unprivileged users.
fn available(dir: &std::path::Path) -> u64 {
    spoolmail::sys::free_space(dir).expect("statvfs").0
}

/// A message of `size` bytes (a header and lines of 76 `x`), CRLF line
/// endings, as -bs takes it (the command line takes it as well).
fn large_message(size: usize) -> Vec<u8> {
    let mut msg = b"Subject: large\r\n\r\n".to_vec();
    let line = [&[b'x'; 76][..], b"\r\n"].concat();
    while msg.len() < size {
        msg.extend_from_slice(&line);
    }
    msg
}

/// The reserve is checked again once the message is written, just before
/// it is committed: one large message cannot eat it (its space was there
/// when it began). Exit 75 and 452 under -bs, nothing queued, nothing
/// left in tmp/; under -bs a SIZE larger than the free space less the
/// reserve is refused at MAIL, as Postfix does.
#[test]
fn a_message_that_would_eat_the_reserve_is_not_queued() {
    const M: u64 = 1024 * 1024;
    let config = Config::delivery().set("max_message_size", 0);
    let s = Spool::new("min-free-after", &config);
    let msg = large_message(128 * M as usize);
    // Room for the message's start, not for all of it: the reserve ends
    // 48M below what is free now (other processes write too: it is set
    // anew each time), the message has 128M.
    let reserve_below_free = |margin: u64| {
        let reserve = available(s.root()) - margin;
        s.configure(&config.clone().set("queue_min_free", reserve));
    };
    reserve_below_free(48 * M);
    let out = s.run(&["-f", "alice@example.org", "bob@example.com"], &msg);
    let line = out.assert_fails_one_line(&[75]);
    assert!(
        line.contains("message not queued: spool file system has less than"),
        "{line}"
    );
    assert!(s.queue_ids().is_empty());
    s.assert_tmp_empty();
    let session = |mail: &str, data: &[u8]| {
        let head = format!("EHLO c\r\n{mail}\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n");
        [head.as_bytes(), data, b".\r\nQUIT\r\n"].concat()
    };
    reserve_below_free(48 * M);
    let out = s.run(&["-bs"], &session("MAIL FROM:<alice@example.org>", &msg));
    assert!(
        out.stdout.contains("\r\n452 4.3.1 message not queued: "),
        "{}",
        out.stdout
    );
    assert!(s.queue_ids().is_empty());
    s.assert_tmp_empty();
    // SIZE: refused at MAIL when it does not fit, taken when it does.
    reserve_below_free(48 * M);
    let mail = format!("MAIL FROM:<alice@example.org> SIZE={}", 128 * M);
    let out = s.run(&["-bs"], &session(&mail, &large_message(1000)));
    assert!(
        out.stdout
            .contains("\r\n452 4.3.1 spool file system has less than"),
        "{}",
        out.stdout
    );
    assert!(s.queue_ids().is_empty());
    reserve_below_free(48 * M);
    let out = s.run(
        &["-bs"],
        &session(
            "MAIL FROM:<alice@example.org> SIZE=1000",
            &large_message(1000),
        ),
    );
    assert!(
        out.stdout.contains("\r\n250 2.0.0 Ok: queued as"),
        "{}",
        out.stdout
    );
    assert_eq!(s.queue_ids().len(), 1);
}

/// A delivery killed mid-transaction (its server holds the reply to the
/// data past `transaction_deadline`) leaves one counted attempt: the child
/// counted it before the transaction, and the parent that takes the job
/// back does not count it again.
#[test]
fn a_delivery_killed_mid_transaction_counts_one_attempt() {
    let server = Smtp::faulty("slow-data", &["--delay", "20"]);
    let s = Spool::new(
        "killed-once",
        &Config::delivery()
            .set("smarthost", server.addr())
            .set("transaction_deadline", "2s"),
    );
    let id = s
        .submit_one(&["-f", "alice@example.org", "bob@example.com"], MSG)
        .id;
    s.pass(&[]);
    let state = s.state(&id);
    assert!(state.contains("\nattempts 1\n"), "{state}");
    assert!(state.contains("timed out"), "{state}");
}
