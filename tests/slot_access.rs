//! Issue 11, the delivery slots shared by every user of a spool: the lock
//! files one user's pass creates stay usable by every other user's, and
//! one unprivileged user, whatever they do to their own processes, cannot
//! take every slot from the others.
//!
//! Each user runs as a uid whose primary group is its own, with the
//! spool's group as a supplementary group: what the setgid binary's
//! effective group gives a real user (tests run the binary with `-C`,
//! which drops a setgid group), and what makes the group of every file
//! depend on who created it. The top of the spool belongs to root's group,
//! so these users are not the spool's administrators (see
//! `system::pass_owner`).

mod harness;

use harness::{Config, Smtp, Spool};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The spool's group (the setgid binary's, in a real install).
const SPOOL_GROUP: u32 = 4343;
const ALICE: u32 = 4242;
const BOB: u32 = 5151;
const WAIT: Duration = Duration::from_secs(30);

/// A spool whose queue directories belong to `SPOOL_GROUP` (mode 02770),
/// delivering through `relay` with `extra` settings; None when not root.
fn shared_spool(label: &str, relay: &Smtp, extra: &str) -> Option<Spool> {
    if !harness::is_root() {
        eprintln!("skipped: running as other users needs root");
        return None;
    }
    let config = Config::delivery()
        .set("smarthost", relay.addr())
        .lines(extra);
    let s = Spool::new(label, &config);
    s.share_queue_with_group(SPOOL_GROUP);
    Some(s)
}

/// The binary as `uid` (primary group `uid`, supplementary group
/// `SPOOL_GROUP`) under the umask 027 of a common login.
fn as_user(s: &Spool, uid: u32, args: &[&str]) -> Command {
    let mut cmd = s.cmd(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    harness::as_local_user(&mut cmd, uid, SPOOL_GROUP);
    cmd
}

/// Submits a message from `uid` to `rcpt` with `mode` (`-odb`, `-odq`).
fn submit(s: &Spool, uid: u32, mode: &str, rcpt: &str, n: usize) {
    let mut cmd = as_user(s, uid, &[mode, "-f", "user@example.org", rcpt]);
    cmd.stdin(Stdio::piped());
    let mut child = harness::spawn(&mut cmd);
    let text = format!("Subject: from {uid}, {n}\n\nhello\n");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let status = harness::wait_timeout(&mut child, WAIT).expect("submitted");
    assert!(
        status.success(),
        "submission by {uid}: {status:?}\n{}",
        s.log()
    );
}

#[test]
fn slots_one_user_created_serve_every_other_user() {
    let sink = Smtp::sink(&[]);
    let Some(s) = shared_spool("slots-shared", &sink, "") else {
        return;
    };
    // Root's pass makes the slots directory (the spool predates it), and
    // Alice's background delivery then creates most slot files.
    s.pass(&[]).assert_ok();
    submit(&s, ALICE, "-odb", "bob@example.com", 1);
    sink.wait_for_messages(1, WAIT);
    let gone = harness::wait_until(WAIT, || s.running().is_empty());
    assert!(gone, "alice's runner stayed: {:?}", s.running());
    // Bob's gets a runner and the spool-wide bound all the same.
    submit(&s, BOB, "-odb", "carol@example.com", 2);
    sink.wait_for_messages(2, WAIT);
    let log = s.log();
    assert!(!log.contains("cannot use"), "{log}");
    assert!(!log.contains("cannot take"), "{log}");
    // What makes it so: the spool's group and a mode it may use.
    let slots = s.queue_dir().parent().unwrap().join("slots");
    let dir = std::fs::metadata(&slots).expect("slots/ made");
    assert_eq!(
        (dir.mode() & 0o7777, dir.gid()),
        (0o2770, SPOOL_GROUP),
        "slots/"
    );
    for entry in std::fs::read_dir(&slots).unwrap() {
        let meta = entry.as_ref().unwrap().metadata().unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.gid()),
            (0o660, SPOOL_GROUP),
            "{:?}",
            entry.unwrap().file_name()
        );
    }
    // Removed once the runner has recorded the delivery.
    let empty = harness::wait_until(WAIT, || s.queue_ids().is_empty());
    assert!(empty, "{}", s.mailq());
}

/// The process ids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<i32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn signal(pids: &[i32], sig: i32) {
    for &p in pids {
        // SAFETY: kill only sends a signal to a process this test started.
        unsafe { libc::kill(p, sig) };
    }
}

/// One unprivileged user holds as many transactions as they can and stops
/// every process of their pass (so its deadline cannot end them early):
/// another user's background delivery still finds a slot and goes at once.
#[test]
fn one_user_cannot_take_every_slot_from_another() {
    let relay = Smtp::faulty("slow-rcpt", &["--delay", "60", "--match", "held"]);
    let Some(s) = shared_spool(
        "slots-share",
        &relay,
        "max_children = 4\nmax_per_destination = 4\ntransaction_deadline = 60s\n",
    ) else {
        return;
    };
    // Root's pass makes slots/, as the package does.
    s.pass(&[]).assert_ok();
    for n in 0..8 {
        submit(&s, ALICE, "-odq", "held@example.com", n);
    }
    let mut pass: Child = harness::spawn(&mut as_user(&s, ALICE, &["-q"]));
    // Past STALLED_AFTER (5 s), when a pass may take headroom slots.
    std::thread::sleep(Duration::from_secs(7));
    let mut stopped = children_of(pass.id());
    stopped.push(pass.id() as i32);
    signal(&stopped, libc::SIGSTOP);
    let held = relay.open_connections();
    let started = Instant::now();
    submit(&s, BOB, "-odb", "carol@example.com", 0);
    let went = harness::wait_until(Duration::from_secs(15), || relay.message_count() > 0);
    let waited = started.elapsed();
    signal(&stopped, libc::SIGKILL);
    let _ = harness::wait_timeout(&mut pass, WAIT);
    assert!(
        went,
        "bob's message still waits after {waited:?} ({held} connections held by alice)\n{}",
        s.log()
    );
    assert!(held >= 1, "alice's pass held no connection: {}", s.log());
    // Her share: half the smaller limit.
    assert!(held <= 2, "alice holds {held} connections");
    assert!(!s.log().contains("cannot use"), "{}", s.log());
}

/// The wait of a background runner for a slot (limits::RUNNER_SLOT_WAIT).
const RUNNER_SLOT_WAIT: Duration = Duration::from_secs(20);

/// A background runner that finds the only slot it may take held (another
/// user's stopped pass holds it, up to its deadline) leaves its message to
/// the next queue run after a bounded wait, and says so, instead of
/// polling the queue until the holder is gone.
#[test]
fn a_runner_waits_for_a_slot_a_bounded_time() {
    let relay = Smtp::faulty("slow-rcpt", &["--delay", "60", "--match", "held"]);
    let Some(s) = shared_spool(
        "slots-wait",
        &relay,
        "max_per_destination = 1\ntransaction_deadline = 60s\n",
    ) else {
        return;
    };
    s.pass(&[]).assert_ok();
    submit(&s, ALICE, "-odq", "held@example.com", 0);
    let mut pass: Child = harness::spawn(&mut as_user(&s, ALICE, &["-q"]));
    let holding = harness::wait_until(WAIT, || relay.open_connections() > 0);
    let mut stopped = children_of(pass.id());
    stopped.push(pass.id() as i32);
    signal(&stopped, libc::SIGSTOP);
    let started = Instant::now();
    submit(&s, BOB, "-odb", "carol@example.com", 0);
    let line = "left to the next queue run";
    let gave_up = harness::wait_until(RUNNER_SLOT_WAIT + Duration::from_secs(10), || {
        s.log().contains(line)
    });
    let waited = started.elapsed();
    signal(&stopped, libc::SIGKILL);
    let _ = harness::wait_timeout(&mut pass, WAIT);
    assert!(holding, "alice's pass never connected: {}", s.log());
    assert!(gave_up, "no {line:?} after {waited:?}:\n{}", s.log());
    assert!(
        waited >= RUNNER_SLOT_WAIT - Duration::from_secs(1),
        "{waited:?}"
    );
    // Left, never lost: both messages wait in the queue.
    assert_eq!(s.queue_ids().len(), 2, "{}", s.mailq());
    assert_eq!(relay.message_count(), 0);
}
