//! Issue 12's findings on the submission side, each as a hostile caller
//! would try it: what must hold however the input is shaped.

mod harness;

use harness::{Config, Spool};
use std::os::unix::process::CommandExt;

fn spool(tag: &str) -> Spool {
    Spool::new(tag, &Config::submission())
}

/// A header block over the limit is refused whole: no header line after the
/// limit becomes a body line, so a late Bcc is never shown to the other
/// recipients (finding 1).
#[test]
fn header_over_the_limit_is_refused_and_nothing_queued() {
    let s = spool("bighead");
    let mut input = b"To: bob@example.com\n".to_vec();
    while input.len() < 1024 * 1024 {
        input.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\n");
    }
    input.extend_from_slice(b"Bcc: secret@example.net\n\nbody\n");
    for args in [&["-t"][..], &["-i", "bob@example.com"]] {
        let out = s.run(args, &input);
        let line = out.assert_fails_one_line(&[65]);
        assert!(line.contains("header too large"), "{line}");
        s.assert_empty("a header over the limit");
    }
}

/// An untrusted caller: uid 65534 when the tests run as root, else the
/// current user. Returns (command with `args`, user name).
fn untrusted_cmd(s: &Spool, args: &[&str]) -> (std::process::Command, String) {
    let mut cmd = s.cmd(args);
    if harness::is_root() {
        s.open_to_all();
        cmd.uid(NOBODY).gid(NOBODY);
        (cmd, harness::user_name(NOBODY))
    } else {
        // SAFETY: getuid cannot fail and touches no memory.
        (cmd, harness::user_name(unsafe { libc::getuid() }))
    }
}

const NOBODY: u32 = 65534;

/// `-f` by an untrusted user naming someone else's address leaves the trace
/// Sendmail leaves, as `-bs` already did; their own address leaves none
/// (finding 5).
#[test]
fn untrusted_f_with_a_foreign_sender_gets_x_authentication_warning() {
    let s = spool("untrusted-f");
    let msg = b"Subject: s\n\nbody\n";
    let (mut cmd, user) = untrusted_cmd(&s, &["-f", "evil@elsewhere.example", "b@example.net"]);
    harness::run(cmd, msg, std::time::Duration::from_secs(30)).assert_ok();
    let m = s.only_message();
    assert_eq!(m.sender(), "evil@elsewhere.example");
    let host = m.header_values("received")[0]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(
        m.header_values("x-authentication-warning"),
        [format!(
            "{host}: {user} set sender to evil@elsewhere.example using -f"
        )],
        "{}",
        m.header_text()
    );
    fs_clear(&s);
    for own in [user.clone(), format!("{user}@example.org")] {
        (cmd, _) = untrusted_cmd(&s, &["-f", &own, "b@example.net"]);
        harness::run(cmd, msg, std::time::Duration::from_secs(30)).assert_ok();
        let m = s.only_message();
        assert!(
            m.header_values("x-authentication-warning").is_empty(),
            "own address {own}, yet: {}",
            m.header_text()
        );
        fs_clear(&s);
    }
}

/// Empties queue/ between cases.
fn fs_clear(s: &Spool) {
    for name in s.queue_files() {
        std::fs::remove_file(s.queue_dir().join(name)).unwrap();
    }
}

/// Which of the binary's outputs a caller closed before it wrote.
#[derive(Clone, Copy, Debug)]
enum Closed {
    Stdout,
    Stderr,
}

/// Runs the binary with `args` and `closed` a pipe whose reader is gone
/// (`sendmail -bv root | head -1` after head has ended): its exit code.
fn run_with_closed(s: &Spool, args: &[&str], closed: Closed) -> Option<i32> {
    use std::process::Stdio;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = s.cmd(args);
    cmd.stdin(Stdio::piped());
    match closed {
        Closed::Stdout => cmd.stdout(writer).stderr(Stdio::null()),
        Closed::Stderr => cmd.stderr(writer).stdout(Stdio::null()),
    };
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"Subject: s\n\nbody\n");
    drop(stdin);
    let status = harness::wait_timeout(&mut child, std::time::Duration::from_secs(30))
        .expect("the binary did not end");
    status.code()
}

/// No write to a closed stdout or stderr kills the binary: the text is
/// lost, the exit code still says what happened to the mail (finding 7).
#[test]
fn closed_stdout_or_stderr_loses_text_never_the_outcome() {
    let s = spool("closed-out");
    let aliases = s.write_file("aliases", "root: admin@example.net\n");
    s.configure(&Config::submission().set("aliases_file", aliases.display()));
    let cases: &[(&[&str], Closed, i32, usize)] = &[
        (&["-bv", "root"], Closed::Stdout, 0, 0),
        (&["-bi"], Closed::Stdout, 0, 0),
        (&["-bv"], Closed::Stderr, 64, 0),
        (
            &["-v", "-f", "a@example.org", "bob@example.com"],
            Closed::Stderr,
            0,
            1,
        ),
        (&["--no-such-flag"], Closed::Stderr, 64, 0),
    ];
    for &(args, closed, code, queued) in cases {
        fs_clear(&s);
        let got = run_with_closed(&s, args, closed);
        assert_eq!(got, Some(code), "{args:?} with {closed:?} closed");
        assert_eq!(
            s.queue_ids().len(),
            queued,
            "{args:?} with {closed:?} closed"
        );
    }
}

/// Quoted local parts that a naive receiver would misread as the end of the
/// path or as SMTP parameters are refused with the reason, from `-f`, argv,
/// `-t` and `-bs`, unless the config allows them (finding 9).
#[test]
fn unusual_quoted_local_parts_are_refused_unless_allowed() {
    let s = spool("unusual-quoted");
    let smuggler = "\"x> SIZE=1 RCPT TO:<e@vil\"@b.com";
    let msg = b"Subject: s\n\nbody\n".to_vec();
    let to_header = b"To: \"a SIZE=1\"@example.net\n\nbody\n".to_vec();
    let cases: Vec<(Vec<&str>, &Vec<u8>)> = vec![
        (vec!["-f", smuggler, "bob@example.com"], &msg),
        (vec!["\"a<b\"@example.com"], &msg),
        (vec!["\"a>b\"@example.com"], &msg),
        (vec!["\"x NOTIFY=NEVER\"@example.com"], &msg),
        (vec!["-t"], &to_header),
    ];
    for (args, input) in &cases {
        let out = s.run(args, input);
        let line = out.assert_fails_one_line(&[65]);
        assert!(line.contains("quoted local part"), "{args:?}: {line}");
        assert!(line.contains("allow_unusual_quoted_local_parts"), "{line}");
        s.assert_empty("an unusual quoted local part");
    }
    let session = format!(
        "EHLO c\r\nMAIL FROM:<{smuggler}>\r\nMAIL FROM:<a@example.org>\r\n\
         RCPT TO:<\"x NOTIFY=NEVER\"@example.com>\r\nQUIT\r\n"
    );
    let out = s.run(&["-bs"], session.as_bytes());
    let codes: Vec<&str> = out.stdout.lines().map(|l| &l[..3]).collect();
    assert_eq!(
        codes,
        [
            "220", "250", "250", "250", "250", "250", "250", "250", "553", "250", "553", "221"
        ],
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("quoted local part"), "{}", out.stdout);
    // Legal quoted local parts stay accepted, and the key lets the rest in.
    s.submit_one(&["\"john smith\"@example.com", "\"a=b\"@example.com"], &msg);
    fs_clear(&s);
    s.configure(&Config::submission().set("allow_unusual_quoted_local_parts", "yes"));
    for (args, input) in &cases {
        s.submit_one(args, input);
        fs_clear(&s);
    }
}

/// Each fsync of a submission failed in turn with EIO and with ENOSPC (by
/// strace, the code unchanged): exit 0 means the message is queued whole,
/// any other exit means it is not queued, so a caller that retries on
/// failure never ends up with two (finding 8: the queue/ fsync after the
/// rename used to fail the submission and leave the message queued).
#[test]
fn a_failed_fsync_leaves_the_message_queued_only_on_success() {
    harness::require_program("strace");
    let s = spool("fsync-fault");
    let mut tried = 0;
    for error in ["EIO", "ENOSPC"] {
        for n in 1.. {
            let mut cmd = std::process::Command::new("strace");
            cmd.args(["-f", "-o", "/dev/null", "-e", "trace=fsync,fdatasync"])
                .arg("-e")
                .arg(format!("inject=fsync,fdatasync:error={error}:when={n}"))
                .arg(harness::bin())
                .arg("-C")
                .arg(&s.conf)
                .args(["-f", "a@example.org", "bob@example.com"]);
            let out = harness::run(
                cmd,
                b"Subject: s\n\nbody\n",
                std::time::Duration::from_secs(30),
            );
            let queued = s.queue_ids();
            s.assert_tmp_empty();
            if out.success() {
                assert_eq!(queued.len(), 1, "{error} at fsync {n}");
                s.only_message();
                assert!(n > 1, "no fsync failed, yet exit 0 at the first");
                fs_clear(&s);
                break;
            }
            tried += 1;
            assert!(
                queued.is_empty(),
                "{error} at fsync {n}: exit {:?} ({}), yet queued {queued:?}",
                out.code(),
                out.stderr.trim()
            );
            assert!(matches!(out.code(), Some(74 | 75)), "{out:?}");
        }
    }
    assert!(tried >= 4, "only {tried} faults injected");
}
