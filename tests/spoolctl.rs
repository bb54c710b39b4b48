//! `spoolctl` (issue 14): the binary by its fourth name, on a real spool.
//! The JSON listing is checked by Python's json module against the
//! message and state files (tests/fixtures/check_queue_json.py reads them
//! itself, as doc/SPOOL.md describes them).

mod harness;

use harness::{Config, Outcome, Smtp, Spool, fixtures_dir, python, run};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
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

/// Spool format 1.8: a deferred message's state carries a copy of its
/// envelope, which mailq lists instead of opening the message; a copy
/// too long to keep, or none (a state of 1.7), sends it to the file, and
/// both give the same listing.
#[test]
fn mailq_lists_a_deferred_message_from_its_states_copy_as_from_its_file() {
    let s = spool("ctl-copy");
    let a = s.submit_one(&["-f", "alice@example.org", "bob@example.net", "root"], MSG);
    let many: Vec<String> = (0..100)
        .map(|i| format!("rcpt{i:03}@example.net"))
        .collect();
    let mut args = vec!["-f", "carol@example.org"];
    args.extend(many.iter().map(String::as_str));
    let wide = s.submit_one(&args, MSG);
    s.pass(&[]);
    let state_path = s.queue_dir().join(format!("{}.state", a.id));
    let state = std::fs::read_to_string(&state_path).unwrap();
    assert!(
        state.contains("\nenvelope sender alice@example.org\n"),
        "{state}"
    );
    assert!(state.contains("\nenvelope orcpt root\n"), "{state}");
    assert!(
        state.contains(&format!("\ncontent-size {}\n", a.content.len())),
        "{state}"
    );
    let wide_state = String::from_utf8(s.read_queued(&format!("{}.state", wide.id))).unwrap();
    assert!(!wide_state.contains("envelope "), "{wide_state}");
    let mailq = || {
        let out = s.run(&["-bp"], b"");
        out.assert_ok();
        out.stdout
    };
    let listed = mailq();
    assert!(
        listed.contains("alice@example.org") && listed.contains("rcpt099@"),
        "{listed}"
    );
    // The message file's sender changed behind mailq's back: still the
    // copy's, so the file was not read.
    let file = s.queue_dir().join(&a.id);
    let original = std::fs::read(&file).unwrap();
    let text = String::from_utf8(original.clone()).unwrap();
    std::fs::write(&file, text.replace("sender alice@", "sender alica@")).unwrap();
    assert_eq!(mailq(), listed);
    // Without the copy (as 1.7 wrote the state): the file is read.
    let old: String = state
        .lines()
        .filter(|l| !l.starts_with("envelope ") && !l.starts_with("content-size "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&state_path, &old).unwrap();
    assert_eq!(mailq(), listed.replace("alice@", "alica@"));
    std::fs::write(&file, &original).unwrap();
    assert_eq!(mailq(), listed);
    // `*`: tested where the state has no copy, which the state a runner
    // writes before each transaction never has; a lock on a message whose
    // state has one is a moment's (a spoolctl action).
    let claim = std::fs::File::open(&file).unwrap();
    claim.lock().unwrap();
    let mark = |listing: &str| {
        let line = listing.lines().find(|l| l.starts_with(&a.id)).unwrap();
        line.as_bytes()[a.id.len()]
    };
    assert_eq!(mark(&mailq()), b'*');
    std::fs::write(&state_path, &state).unwrap();
    assert_eq!(mark(&mailq()), b' ');
    std::fs::write(&state_path, &old).unwrap();
    assert_eq!(mark(&mailq()), b'*');
    drop(claim);
    assert_eq!(mark(&mailq()), b' ');
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
    let ids = (0..0x1000u32).map(|n| format!("{stem}{n:03X}"));
    for id in ids.filter(|id| *id != first.id).take(999) {
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

// ---------------------------------------------------------------------------
// show, delete, hold, release, retry
// ---------------------------------------------------------------------------

/// A spool delivering to `server`, messages queued only.
fn delivering(label: &str, server: &Smtp) -> Spool {
    Spool::new(label, &Config::delivery().set("smarthost", server.addr()))
}

#[test]
fn show_prints_envelope_state_and_header_and_the_body_on_request() {
    let s = spool("ctl-show");
    let q = s.submit_one(
        &["-f", "alice@example.org", "bob@example.net"],
        b"Subject: looked at\x1b[31m\n\nthe body line\n",
    );
    s.pass(&[]);
    let out = ctl(&s, &["show", &q.id.to_lowercase()]);
    out.assert_ok();
    let text = &out.stdout;
    for want in [
        format!("queue id: {}\n", q.id),
        "sender: <alice@example.org>\n".into(),
        "state: waiting\n".into(),
        "attempts: 1, next attempt: ".into(),
        "recipient: bob@example.net: deferred: connect to 127.0.0.1[127.0.0.1]:1: ".into(),
        "\nSubject: looked at?[31m\n".into(),
    ] {
        assert!(text.contains(&want), "{want:?} in {text}");
    }
    assert!(!text.contains("the body line"), "{text}");
    let out = ctl(&s, &["show", &q.id, "--body"]);
    out.assert_ok();
    assert!(
        out.stdout_bytes.ends_with(b"\n\nthe body line\n"),
        "{}",
        out.stdout
    );
    assert!(harness::contains(
        &out.stdout_bytes,
        b"Subject: looked at\x1b[31m\n"
    ));
    let line = ctl(&s, &["show", "0000000000000000"])
        .assert_fails_one_line(&[67])
        .to_string();
    assert!(line.contains("0000000000000000: no such message"), "{line}");
}

#[test]
fn delete_removes_for_good_logs_and_sends_no_bounce() {
    let s = spool("ctl-delete");
    let a = s.submit_one(&["-f", "alice@example.org", "bob@example.net"], MSG);
    let b = s.submit_one(&["-f", "carol@example.org", "dave@example.net"], MSG);
    s.pass(&[]);
    let out = ctl(&s, &["delete", &a.id]);
    out.assert_ok();
    assert_eq!(out.stdout, format!("{}: deleted\n", a.id));
    assert_eq!(s.queue_ids(), vec![b.id.clone()]);
    assert!(
        !s.queue_files().iter().any(|f| f.starts_with(&a.id)),
        "state gone too"
    );
    assert!(
        s.log()
            .contains(&format!("{}: deleted by spoolctl (uid ", a.id))
    );
    assert!(s.log().contains("no bounce"));
    // Unknown ids: named; 67 when none matched, 0 when some did.
    let out = ctl(&s, &["delete", &a.id]);
    assert_eq!(out.code(), Some(67));
    assert!(
        out.stderr
            .contains(&format!("{}: no such message in the queue", a.id))
    );
    let out = ctl(&s, &["delete", "NOSUCHID", "--", &b.id]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("NOSUCHID: no such message in the queue")
    );
    assert!(s.queue_ids().is_empty());
    s.pass(&[]);
    assert!(s.queue_ids().is_empty(), "no bounce was queued");
    assert_eq!(ctl(&s, &["delete", "--all"]).code(), Some(67));
}

#[test]
fn delete_by_selector_and_all() {
    let s = spool("ctl-delete-sel");
    let a = s.submit_one(&["-f", "script@example.org", "x@example.net"], MSG);
    let b = s.submit_one(&["-f", "script@example.org", "y@example.net"], MSG);
    let c = s.submit_one(&["-f", "alice@example.org", "z@example.net"], MSG);
    let out = ctl(&s, &["delete", "--sender", "script@"]);
    out.assert_ok();
    assert_eq!(
        out.stdout,
        format!("{}: deleted\n{}: deleted\n", a.id, b.id)
    );
    assert_eq!(s.queue_ids(), vec![c.id.clone()]);
    assert_eq!(ctl(&s, &["delete", "--older-than", "1h"]).code(), Some(67));
    assert_eq!(
        ctl(&s, &["delete", "--recipient", "nobody@"]).code(),
        Some(67)
    );
    ctl(&s, &["delete", "--all"]).assert_ok();
    assert!(s.queue_ids().is_empty());
}

#[test]
fn a_held_message_is_neither_delivered_nor_expired_until_released() {
    let sink = Smtp::sink(&[]);
    let s = Spool::new(
        "ctl-hold",
        &Config::delivery()
            .set("smarthost", sink.addr())
            .set("max_queue_lifetime", "1s"),
    );
    let q = s.submit_one(&["-f", "alice@example.org", "bob@example.net"], MSG);
    let out = ctl(&s, &["hold", &q.id]);
    out.assert_ok();
    assert_eq!(out.stdout, format!("{}: held\n", q.id));
    assert!(s.state(&q.id).starts_with("SPOOLMAIL-STATE 1.2\n"));
    // mailq and sendmail -bp mark it `!`; the JSON says hold.
    let mailq = s.mailq();
    assert!(mailq.contains(&format!("{}!", q.id)), "{mailq}");
    assert_eq!(s.run_ok(&["-bp"], b"").stdout, mailq);
    let json = ctl(&s, &["list", "--json"]).stdout;
    assert!(json.contains(r#""queue_name": "hold""#) && json.contains(r#""next_attempt": null"#));
    assert_eq!(check_json(&s, &json), 1);
    // Past its lifetime, a pass and a forced pass leave it alone.
    std::thread::sleep(Duration::from_millis(1100));
    s.pass(&[]);
    s.pass(&["-qR@"]);
    assert_eq!(s.queue_ids(), vec![q.id.clone()]);
    assert_eq!(sink.message_count(), 0);
    assert_eq!(
        ctl(&s, &["hold", &q.id]).stdout,
        format!("{}: already held\n", q.id)
    );
    assert_eq!(
        ctl(&s, &["retry", &q.id]).stdout,
        format!("{}: held: release it to deliver it\n", q.id)
    );
    let out = ctl(&s, &["release", &q.id]);
    assert_eq!(
        out.stdout,
        format!("{}: released: the next queue run takes it\n", q.id)
    );
    assert!(s.state(&q.id).starts_with("SPOOLMAIL-STATE 1\n"));
    s.pass(&[]);
    sink.wait_for_messages(1, Duration::from_secs(10));
    assert!(s.queue_ids().is_empty(), "{}", s.mailq());
    assert!(s.log().contains(&format!("{}: held by spoolctl", q.id)));
    assert!(s.log().contains(&format!("{}: released by spoolctl", q.id)));
}

#[test]
fn retry_makes_a_deferred_message_due_now() {
    let sink = Smtp::sink(&[]);
    let s = Spool::new(
        "ctl-retry",
        &Config::submission().set("retry_schedule", "1h 1h"),
    );
    let q = s.submit_one(&["-f", "alice@example.org", "bob@example.net"], MSG);
    s.pass(&[]);
    assert!(s.state(&q.id).contains("\nattempts 1\n"));
    // Now the relay works; the schedule says an hour.
    s.configure(
        &Config::submission()
            .set("retry_schedule", "1h 1h")
            .set("smarthost", sink.addr()),
    );
    s.pass(&[]);
    assert_eq!(s.queue_ids(), vec![q.id.clone()], "not due yet");
    let out = ctl(&s, &["retry", "--recipient", "BOB@"]);
    out.assert_ok();
    assert_eq!(
        out.stdout,
        format!("{}: the next queue run takes it\n", q.id)
    );
    s.pass(&[]);
    sink.wait_for_messages(1, Duration::from_secs(10));
    assert!(s.queue_ids().is_empty(), "{}", s.mailq());
}

/// A pass is in the middle of a transaction (the server holds its reply
/// to the data): delete and hold do not wait for it, and change nothing.
#[test]
fn delete_and_hold_racing_a_running_pass_fail_with_in_delivery() {
    let server = Smtp::faulty("slow-data", &["--delay", "4"]);
    let s = delivering("ctl-race", &server);
    let q = s.submit_one(&["-f", "alice@example.org", "bob@example.net"], MSG);
    let pass = s.spawn_pass();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !s.mailq().contains(&format!("{}*", q.id)) {
        assert!(std::time::Instant::now() < deadline, "never in delivery");
        std::thread::sleep(Duration::from_millis(20));
    }
    // In delivery: the JSON says active, and both actions are refused at once.
    let json = ctl(&s, &["list", "--json"]).stdout;
    assert!(json.contains(r#""queue_name": "active""#), "{json}");
    for verb in ["delete", "hold"] {
        let started = std::time::Instant::now();
        let out = ctl(&s, &[verb, &q.id]);
        assert_eq!(out.code(), Some(75), "{verb}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            format!("spoolctl: {}: in delivery, try again\n", q.id)
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{verb} waited");
    }
    // The transaction ended as it would have: delivered once, removed.
    pass_delivers_once(&s, pass, &server);
    assert!(!s.log().contains("spoolctl"), "nothing was changed");
}

/// Spool format 1.8: a message whose state carries a copy of its envelope
/// (here `spoolctl hold` and `release` wrote it) is marked `*` and listed
/// active all the same while a runner is in its transaction: the state the
/// runner writes before it has no copy, so the listing reads the message
/// file and tests its lock.
#[test]
fn a_retried_message_in_its_transaction_is_marked_in_delivery_despite_its_copy() {
    let server = Smtp::faulty("slow-data", &["--delay", "4"]);
    let s = delivering("ctl-in-transaction", &server);
    let q = s.submit_one(&["-f", "alice@example.org", "bob@example.net"], MSG);
    for verb in ["hold", "release"] {
        ctl(&s, &[verb, &q.id]).assert_ok();
    }
    let state_path = s.queue_dir().join(format!("{}.state", q.id));
    let before = std::fs::read_to_string(&state_path).unwrap();
    assert!(before.contains("\ncontent-size "), "{before}");
    let pass = s.spawn_pass();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !s.mailq().contains(&format!("{}*", q.id)) {
        assert!(std::time::Instant::now() < deadline, "never in delivery");
        std::thread::sleep(Duration::from_millis(20));
    }
    let during = std::fs::read_to_string(&state_path).unwrap();
    assert!(!during.contains("\nenvelope "), "{during}");
    let json = ctl(&s, &["list", "--json"]).stdout;
    assert!(json.contains(r#""queue_name": "active""#), "{json}");
    pass_delivers_once(&s, pass, &server);
}

/// Waits for the spawned `pass` to end well, with the one queued message
/// delivered to `server` once and removed.
fn pass_delivers_once(s: &Spool, mut pass: std::process::Child, server: &Smtp) {
    assert!(
        harness::wait_timeout(&mut pass, Duration::from_secs(30))
            .unwrap()
            .success()
    );
    assert_eq!(
        server.wait_for_messages(1, Duration::from_secs(10)).len(),
        1
    );
    assert!(s.queue_ids().is_empty(), "{}", s.mailq());
}

// ---------------------------------------------------------------------------
// Who may do what
// ---------------------------------------------------------------------------

const NOBODY: u32 = 65534;

/// A spool whose queue directories uid 65534 can use (group 65534, setgid),
/// its log open to all; None when not root.
fn shared_spool(label: &str) -> Option<Spool> {
    if !harness::is_root() {
        eprintln!("skipped: running as another user needs root");
        return None;
    }
    let s = spool(label);
    s.share_queue_with_group(NOBODY);
    Some(s)
}

/// spoolctl as uid and gid 65534, not in the spool directory's group.
fn ctl_as_nobody(s: &Spool, args: &[&str]) -> Outcome {
    let mut cmd = ctl_cmd(s, args);
    cmd.uid(NOBODY).gid(NOBODY);
    run(cmd, b"", TIMEOUT)
}

#[test]
fn a_user_acts_on_their_own_messages_only() {
    let Some(s) = shared_spool("ctl-nobody") else {
        return;
    };
    let roots = s.submit_one(&["-f", "root@example.org", "bob@example.net"], MSG);
    let mut submit = s.cmd(&["-f", "nobody@example.org", "carol@example.net"]);
    submit.uid(NOBODY).gid(NOBODY);
    run(submit, MSG, TIMEOUT).assert_ok();
    let own = s
        .queue_ids()
        .into_iter()
        .find(|id| *id != roots.id)
        .unwrap();
    // Someone else's message: refused, untouched.
    for args in [
        &["show", &roots.id][..],
        &["delete", &roots.id],
        &["retry", &roots.id],
    ] {
        let out = ctl_as_nobody(&s, args);
        assert_eq!(out.code(), Some(77), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("not your message"), "{}", out.stderr);
    }
    for args in [
        &["hold", &own][..],
        &["release", &own],
        &["show", &own, "--body"],
        &["dkim-keygen", "example.org", "sel1"],
        &["oauth2", "authorize"],
    ] {
        let out = ctl_as_nobody(&s, args);
        assert_eq!(out.code(), Some(77), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("admin_group"), "{}", out.stderr);
    }
    assert!(!s.log().contains("spoolctl"), "nothing was changed");
    // The listing is everyone's, as mailq's is.
    let out = ctl_as_nobody(&s, &["list", "--json"]);
    assert_eq!(check_json(&s, &out.stdout), 2);
    // Their own: shown, retried, deleted; --all takes only theirs.
    ctl_as_nobody(&s, &["show", &own]).assert_ok();
    ctl_as_nobody(&s, &["retry", &own]).assert_ok();
    let out = ctl_as_nobody(&s, &["delete", "--all"]);
    out.assert_ok();
    assert_eq!(out.stdout, format!("{own}: deleted\n"));
    assert_eq!(s.queue_ids(), vec![roots.id.clone()]);
}

/// A hold that lands while a pass runs, after the pass has taken the
/// message as a job but before a child claims it: the child finds it held
/// and leaves it, undelivered and unexpired, for its release.
#[test]
fn a_hold_racing_a_running_pass_keeps_a_message_the_pass_has_queued() {
    let server = Smtp::faulty("slow-data", &["--delay", "3"]);
    let s = Spool::new(
        "ctl-race-hold",
        &Config::delivery()
            .set("smarthost", server.addr())
            .set("max_children", 1)
            .set("max_per_destination", 1),
    );
    let first = s.submit_one(&["-f", "alice@example.org", "bob@example.net"], MSG);
    let second = s.submit_one(&["-f", "carol@example.org", "dave@example.net"], MSG);
    let mut pass = s.spawn_pass();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !s.mailq().contains(&format!("{}*", first.id)) {
        assert!(std::time::Instant::now() < deadline, "never in delivery");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first is in its transaction; the second waits in the pass's queue.
    let out = ctl(&s, &["hold", &second.id]);
    assert_eq!(
        out.stdout,
        format!("{}: held\n", second.id),
        "{}",
        out.stderr
    );
    assert!(
        harness::wait_timeout(&mut pass, Duration::from_secs(30))
            .unwrap()
            .success()
    );
    let got = server.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, vec!["bob@example.net"]);
    assert_eq!(s.queue_ids(), vec![second.id.clone()], "{}", s.log());
    let state = s.state(&second.id);
    assert!(
        state.starts_with("SPOOLMAIL-STATE 1.2\n") && state.contains("\nattempts 0\n"),
        "{state}"
    );
    assert_eq!(server.messages().len(), 1, "the held one was not sent");
}

#[test]
fn config_shows_the_values_set_and_with_all_every_key() {
    let s = Spool::new(
        "ctl-config",
        &Config::submission()
            .set("retry_schedule", "5m 1h")
            .set("retry_schedule", "10m"),
    );
    let out = ctl(&s, &["config"]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.contains(&"retry_schedule = 10m"), "{}", out.stdout);
    assert!(lines.contains(&"delivery_mode = queue"));
    assert!(!out.stdout.contains("5m 1h") && !out.stdout.contains("smtp_port"));
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("retry_schedule"))
            .count(),
        1
    );
    let all = ctl(&s, &["config", "--all"]);
    all.assert_ok();
    assert!(all.stdout.contains("\nsmtp_port = 25\n"), "{}", all.stdout);
    assert!(
        all.stdout.contains("# auth_user is not set: "),
        "{}",
        all.stdout
    );
    assert!(all.stdout.lines().count() > lines.len());
    // A line the config cannot use: left out, said on stderr, exit 78.
    s.configure(
        &Config::submission()
            .set("smtp_port", "none")
            .set("bogus", 1),
    );
    let out = ctl(&s, &["config"]);
    assert_eq!(out.code(), Some(78));
    assert!(!out.stdout.contains("smtp_port"), "{}", out.stdout);
    assert_eq!(out.stderr.lines().count(), 2, "{}", out.stderr);
}

#[test]
fn check_says_each_problem_on_one_line() {
    let s = spool("ctl-check");
    harness::set_mode(&s.spool, 0o750);
    harness::set_mode(&s.tmp_dir(), 0o770);
    harness::set_mode(&s.queue_dir(), 0o770);
    let out = ctl(&s, &["check"]);
    assert_eq!(out.code(), Some(0), "{}", out.stdout);
    assert_eq!(out.stdout, "no problem found\n");
    let secret = s.write_file("password", "hunter2\n");
    harness::set_mode(&secret, 0o644);
    s.configure(
        &Config::submission()
            .set("auth_password_file", secret.display())
            .set("bogus", 1),
    );
    harness::set_mode(&s.queue_dir(), 0o777);
    let out = ctl(&s, &["check"]);
    assert_eq!(out.code(), Some(78), "{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[0].contains("auth_password_file: "), "{}", lines[0]);
    assert!(lines[0].contains("others can read it"), "{}", lines[0]);
    assert!(lines[1].contains("unknown key `bogus`"), "{}", lines[1]);
    assert!(
        lines[2].contains("queue: mode 0777, open to others"),
        "{}",
        lines[2]
    );
    // The client key's mode.
    let key = s.write_file("client.key", "not a key\n");
    harness::set_mode(&key, 0o644);
    harness::set_mode(&s.queue_dir(), 0o770);
    s.configure(&Config::submission().set("tls_key_file", key.display()));
    let out = ctl(&s, &["check"]);
    assert!(
        out.stdout.contains("tls_key_file is readable by everyone"),
        "{}",
        out.stdout
    );
}

/// Delivery rewrites the OAuth2 refresh token (a temporary file beside it,
/// then a rename) with the spool's group alone: a directory that group
/// cannot write would fail the first rotation, so check says so.
#[test]
fn check_says_when_the_refresh_tokens_directory_is_not_the_groups() {
    let s = spool("ctl-refresh-dir");
    harness::set_mode(&s.spool, 0o750);
    harness::set_mode(&s.tmp_dir(), 0o770);
    harness::set_mode(&s.queue_dir(), 0o770);
    let dir = s.root().join("oauth2-secrets");
    std::fs::create_dir(&dir).unwrap();
    harness::set_mode(&dir, 0o755);
    let token = dir.join("refresh_token");
    std::fs::write(&token, "1//refresh\n").unwrap();
    harness::set_mode(&token, 0o640);
    s.configure(
        &Config::submission()
            .set("smarthost", "127.0.0.1:587")
            .set("auth_user", "me@example.org")
            .set("auth_oauth2_token_url", "https://127.0.0.1:1/token")
            .set("auth_oauth2_client_id", "spoolmail-test")
            .set("auth_oauth2_refresh_token_file", token.display()),
    );
    let out = ctl(&s, &["check"]);
    assert_eq!(out.code(), Some(78), "{}", out.stdout);
    let line = |what: &str| {
        format!(
            "auth_oauth2_refresh_token_file: {}: mode 0755, {what} (0770 expected): \
             delivery rewrites the refresh token there (install -d -m 2770 -g spoolmail)",
            dir.display()
        )
    };
    let expected = [line("the group cannot write"), line("open to others")];
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), expected);
    harness::set_mode(&dir, 0o2770);
    let out = ctl(&s, &["check"]);
    assert_eq!(out.code(), Some(0), "{}", out.stdout);
    assert_eq!(out.stdout, "no problem found\n");
}

/// Owners and groups, as root can get them wrong: a queue directory
/// another user owns, a message not of the spool's group, a password file
/// of another user and group; each is one line (exit 78).
#[test]
fn check_says_which_owner_or_group_is_wrong() {
    if !harness::is_root() {
        eprintln!("skipped: needs root to give files to another user");
        return;
    }
    let s = spool("ctl-owners");
    harness::set_mode(&s.spool, 0o750);
    harness::set_mode(&s.tmp_dir(), 0o770);
    harness::set_mode(&s.queue_dir(), 0o770);
    let q = s.submit_one(&["bob@example.net"], MSG);
    let secret = s.write_file("password", "hunter2\n");
    harness::set_mode(&secret, 0o640);
    s.configure(
        &Config::submission()
            .set("retry_schedule", "1h 1h 1h")
            .set("auth_user", "alice")
            .set("auth_password_file", secret.display()),
    );
    let out = ctl(&s, &["check"]);
    assert_eq!(out.code(), Some(0), "{}", out.stdout);
    let spool_gid = std::fs::metadata(&s.spool).unwrap().gid();
    assert_ne!(spool_gid, NOBODY);
    use std::os::unix::fs::chown;
    chown(s.queue_dir(), Some(NOBODY), None).unwrap();
    chown(s.queue_dir().join(&q.id), None, Some(NOBODY)).unwrap();
    chown(&secret, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = ctl(&s, &["check"]);
    assert_eq!(out.code(), Some(78), "{}", out.stdout);
    let queue = s.queue_dir().display().to_string();
    let secret = secret.display().to_string();
    let expected = [
        format!("{queue}: owned by uid {NOBODY}, not root: that user can change it (chown root)"),
        format!(
            "{queue}: 1 files not of the spool directory's group ({spool_gid}): {} (chgrp)",
            q.id
        ),
        format!(
            "auth_password_file: {secret}: owned by uid {NOBODY}, not root: that user can change it (chown root)"
        ),
        format!(
            "auth_password_file: {secret}: group {NOBODY}, not the spool directory's ({spool_gid}): users' deliveries cannot read it"
        ),
    ];
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), expected);
}
