//! Logs that are never lost (issue 13): with `log = syslog` and no syslog
//! socket, the lines of detached deliveries go to the fallback file while
//! foreground runs keep stderr; a log file is created 0660 with the spool's
//! group whoever writes first, so that every user can append.

mod harness;

use harness::{Config, Smtp, Spool, bin, is_root, run, set_mode, wait_until};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const MSG: &[u8] = b"Subject: log\n\nhello\n";

fn has_syslog_socket() -> bool {
    ["/dev/log", "/var/run/syslog", "/var/run/log"]
        .iter()
        .any(|p| fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()))
}

#[test]
fn without_syslog_detached_deliveries_log_to_the_fallback_file() {
    if has_syslog_socket() {
        eprintln!("skipped: this host has a syslog socket (/dev/log)");
        return;
    }
    let sink = Smtp::sink(&[]);
    let s = Spool::new("fallback", &Config::submission());
    let fallback = s.root().join("fallback.log");
    s.configure(
        &Config::delivery()
            .set("smarthost", sink.addr())
            .set("log", "syslog")
            .set("log_fallback_file", fallback.display())
            .set("delivery_mode", "background"),
    );
    // The submission runs in the foreground: its lines are on its stderr.
    let out = s.run_ok(&["-f", "alice@example.org", "bob@example.net"], MSG);
    assert!(
        out.stderr.contains("from=<alice@example.org>"),
        "{}",
        out.stderr
    );
    // The delivery it started is detached: its lines are in the file.
    assert!(
        wait_until(Duration::from_secs(20), || {
            fs::read_to_string(&fallback).is_ok_and(|t| t.contains("status=sent"))
        }),
        "no status=sent in {}: {:?}",
        fallback.display(),
        fs::read_to_string(&fallback)
    );
    assert_eq!(sink.message_count(), 1);
    // Its runner lingers a moment for more mail, then ends.
    assert!(wait_until(Duration::from_secs(20), || s
        .running()
        .is_empty()));
    let mode = fs::metadata(&fallback).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o660, "{mode:o}");
    // A foreground queue run keeps stderr.
    s.run_ok(
        &["-odq", "-f", "alice@example.org", "carol@example.net"],
        MSG,
    );
    let before = fs::read_to_string(&fallback).unwrap();
    let out = s.run_ok(&["-q"], b"");
    assert!(
        out.stderr.contains("to=<carol@example.net>"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read_to_string(&fallback).unwrap(), before);
    // A caller whose stderr is /dev/null (cron's >/dev/null 2>&1) loses nothing.
    let mut cmd = s.cmd(&["-odq", "-f", "dave@example.org", "erin@example.net"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = harness::spawn(&mut cmd);
    child.stdin.take().unwrap().write_all(MSG).unwrap();
    let status = harness::wait_timeout(&mut child, Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let text = fs::read_to_string(&fallback).unwrap();
    assert!(text.contains("from=<dave@example.org>"), "{text}");
}

/// A copy of the binary that uid 65534 can execute, and whether the test
/// directory is reachable by others at all.
fn binary_for_others(root: &Path) -> Option<std::path::PathBuf> {
    let reachable = root
        .ancestors()
        .skip(1)
        .all(|d| fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if !reachable {
        return None;
    }
    let exe = root.join("spoolmail");
    fs::copy(bin(), &exe).unwrap();
    set_mode(&exe, 0o755);
    Some(exe)
}

#[test]
fn a_log_file_a_user_creates_is_0660_with_the_spool_group_for_every_user() {
    if !is_root() {
        eprintln!("skipped: running as two other users needs root");
        return;
    }
    let s = Spool::new("logmode", &Config::submission());
    let Some(exe) = binary_for_others(s.root()) else {
        eprintln!("skipped: the temp dir is private to root");
        return;
    };
    const SPOOL_GROUP: u32 = 65534;
    let logs = s.root().join("logs");
    fs::create_dir(&logs).unwrap();
    set_mode(&logs, 0o777);
    set_mode(s.root(), 0o755);
    for dir in [s.spool.clone(), s.tmp_dir(), s.queue_dir()] {
        std::os::unix::fs::chown(&dir, None, Some(SPOOL_GROUP)).unwrap();
        set_mode(&dir, 0o770);
    }
    let log = logs.join("spoolmail.log");
    s.configure(&Config::submission().set("log", log.display()));
    // Each user submits with the spool's group, as the setgid binary runs.
    let submit_as = |uid: u32, sender: &str| {
        let mut cmd = Command::new(&exe);
        cmd.arg("-C")
            .arg(&s.conf)
            .args(["-f", sender, "bob@example.net"]);
        cmd.uid(uid).gid(SPOOL_GROUP);
        let out = run(cmd, MSG, Duration::from_secs(30));
        assert!(out.success(), "uid {uid}: {}", out.stderr);
        out
    };
    submit_as(65534, "first@example.org");
    let meta = fs::metadata(&log).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660, "{:o}", meta.mode());
    assert_eq!(meta.gid(), SPOOL_GROUP);
    // Another user appends to it: the line is in the file, not on stderr.
    let out = submit_as(65533, "second@example.org");
    assert!(!out.stderr.contains("from=<"), "{}", out.stderr);
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("from=<first@example.org>"), "{text}");
    assert!(text.contains("from=<second@example.org>"), "{text}");
    // Root first: the file is given the spool's group all the same.
    fs::remove_file(&log).unwrap();
    s.run_ok(&["-f", "root-first@example.org", "bob@example.net"], MSG);
    let meta = fs::metadata(&log).unwrap();
    assert_eq!(
        (meta.mode() & 0o777, meta.gid()),
        (0o660, SPOOL_GROUP),
        "{:o}",
        meta.mode()
    );
}
