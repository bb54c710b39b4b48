//! `spoolctl` (issue 14): the binary by its fourth name, on a real spool.
//! The JSON listing is checked by Python's json module against the
//! message and state files (tests/fixtures/check_queue_json.py reads them
//! itself, as doc/SPOOL.md describes them).

mod harness;

use harness::{Config, Outcome, Spool, fixtures_dir, python, run};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const MSG: &[u8] = b"Subject: queued\n\nwaiting\n";

/// `spoolctl -C CONF ARGS`: the binary through a link named spoolctl.
fn ctl_cmd(s: &Spool, args: &[&str]) -> Command {
    let link = s.root().join("spoolctl");
    if !link.exists() {
        std::os::unix::fs::symlink(harness::bin(), &link).unwrap();
    }
    let mut cmd = Command::new(link);
    cmd.arg("-C").arg(&s.conf).args(args);
    cmd
}

fn ctl(s: &Spool, args: &[&str]) -> Outcome {
    run(ctl_cmd(s, args), b"", TIMEOUT)
}

/// A spool whose messages stay queued, with a smarthost that refuses
/// connections: a pass defers them.
fn spool(label: &str) -> Spool {
    Spool::new(
        label,
        &Config::submission().set("retry_schedule", "1h 1h 1h"),
    )
}

/// The JSON listing checked against the files by Python; the number of
/// messages it listed.
fn check_json(s: &Spool, listing: &str) -> usize {
    let checker: PathBuf = fixtures_dir().join("check_queue_json.py");
    let mut cmd = Command::new(python());
    cmd.arg(checker).arg(s.queue_dir());
    let out = run(cmd, listing.as_bytes(), TIMEOUT);
    assert!(out.success(), "{}{}", out.stdout, out.stderr);
    let count = out.stdout.trim().strip_prefix("ok ").expect("ok N");
    count.parse().unwrap()
}

#[test]
fn help_and_usage_errors() {
    let s = spool("ctl-help");
    let out = ctl(&s, &["--help"]);
    out.assert_ok();
    assert!(out.stdout.starts_with("spoolctl: "), "{}", out.stdout);
    assert!(out.stdout.contains("list [--json] [SELECTOR]"));
    for args in [
        &[][..],
        &["frobnicate"],
        &["list", "--bogus"],
        &["list", "x"],
    ] {
        let line = ctl(&s, args).assert_fails_one_line(&[64]).to_string();
        assert!(line.starts_with("spoolctl: "), "{line}");
    }
}

#[test]
fn list_is_mailqs_listing_with_attempts_and_next_attempt() {
    let s = spool("ctl-list");
    let a = s.submit_one(&["-f", "alice@example.org", "bob@example.net"], MSG);
    s.pass(&[]);
    let b = s.submit_one(&["-f", "carol@example.org", "dave@example.net"], MSG);
    let out = ctl(&s, &["list"]);
    out.assert_ok();
    let text = &out.stdout;
    assert!(
        text.starts_with("-Queue ID-  --Size-- ----Arrival Time----"),
        "{text}"
    );
    assert!(text.contains(&format!("{} ", a.id)) && text.contains(&format!("{} ", b.id)));
    assert!(text.contains("attempts: 1, next attempt: "), "{text}");
    assert!(
        text.contains("attempts: 0, next attempt: at the next queue run"),
        "{text}"
    );
    assert!(
        text.contains("(connect to 127.0.0.1[127.0.0.1]:1: "),
        "{text}"
    );
    assert!(text.ends_with("-- 0 Kbytes in 2 Requests.\n"), "{text}");
    // A selector lists only what it selects.
    let out = ctl(&s, &["list", "--sender", "CAROL"]);
    assert!(out.stdout.contains(&b.id) && !out.stdout.contains(&a.id));
    assert!(out.stdout.ends_with("in 1 Request.\n"), "{}", out.stdout);
    let out = ctl(&s, &["list", "--recipient", "bob@"]);
    assert!(out.stdout.contains(&a.id) && !out.stdout.contains(&b.id));
    let out = ctl(&s, &["list", "--older-than", "1h"]);
    assert!(!out.stdout.contains(&a.id) && !out.stdout.contains(&b.id));
}

#[test]
fn json_listing_agrees_with_the_message_files_field_by_field() {
    let s = spool("ctl-json");
    s.submit_one(&["-f", "alice@example.org", "bob@example.net"], MSG);
    s.submit_one(&["-f", "<>", "\"bob \\\\ smith\"@example.net"], MSG);
    s.pass(&[]);
    s.submit_one(
        &[
            "-f",
            "jos\u{e9}@ex\u{e4}mple.org",
            "carol@example.net, dave@example.net",
        ],
        "Subject: caf\u{e9}\n\nna\u{ef}ve\n".as_bytes(),
    );
    let out = ctl(&s, &["list", "--json"]);
    out.assert_ok();
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
    assert_eq!(check_json(&s, &out.stdout), 3);
    assert!(out.stdout.contains(r#""queue_name": "deferred""#));
    assert!(out.stdout.contains(r#""status": "deferred""#));
    // A selector: only the matching message.
    let out = ctl(&s, &["list", "--json", "--recipient", "dave@"]);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("\"sender\": \"jos\u{e9}@ex\u{e4}mple.org\"")
    );
}

#[test]
fn empty_queue_lists_nothing_in_json() {
    let s = spool("ctl-empty");
    let out = ctl(&s, &["list", "--json"]);
    out.assert_ok();
    assert_eq!(out.stdout, "");
    assert_eq!(ctl(&s, &["list"]).stdout, "Mail queue is empty\n");
}

/// 1000 messages (copies of one submitted message under new ids): the
/// listing holds every one, and each agrees with its files.
#[test]
fn a_listing_of_1000_messages_parses() {
    let s = spool("ctl-1000");
    let first = s.submit_one(&["-f", "alice@example.org", "bob@example.net"], MSG);
    let text = String::from_utf8(s.read_queued(&first.id)).unwrap();
    let stem = &first.id[..13];
    for n in 1..1000u32 {
        let id = format!("{stem}{n:03X}");
        let copy = text.replacen(&format!("id {}", first.id), &format!("id {id}"), 1);
        std::fs::write(s.queue_dir().join(&id), copy).unwrap();
    }
    let out = ctl(&s, &["list", "--json"]);
    out.assert_ok();
    assert_eq!(check_json(&s, &out.stdout), 1000);
    let out = ctl(&s, &["list"]);
    assert!(
        out.stdout.ends_with("in 1000 Requests.\n"),
        "{}",
        out.stdout
    );
}
