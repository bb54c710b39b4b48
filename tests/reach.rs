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
use std::os::unix::fs::PermissionsExt;
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
    for dir in [s.tmp_dir(), s.queue_dir()] {
        std::os::unix::fs::chown(&dir, None, Some(NOBODY)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2770)).unwrap();
    }
    std::fs::write(s.log_path(), b"").unwrap();
    harness::set_mode(&s.log_path(), 0o666);
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
