//! Integration tests of the front door (issue 2): the real `spoolmail` binary
//! run as `sendmail` and `mailq` against a temporary spool, checking the exit
//! code, stderr, and what landed in `queue/` (envelope and content parsed
//! here, independently of the crate's own reader; format: doc/SPOOL.md).
//!
//! Every test makes its own directory, bounds each run of the binary in time,
//! and removes its directory when done, so that they all run in parallel.

mod harness;

use harness::{Config, Outcome, Spool, contains, find, run};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// No single run of the binary may take longer than this.
const TIMEOUT: Duration = Duration::from_secs(30);
const DOMAIN: &str = "example.org";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs `program` with `args` and `stdin`, killing it after TIMEOUT.
fn run_program(program: &Path, args: &[&str], stdin: &[u8]) -> Outcome {
    let mut cmd = Command::new(program);
    cmd.args(args);
    run(cmd, stdin, TIMEOUT)
}

/// A spool with the submission config (qualify_domain = DOMAIN).
fn spool(tag: &str) -> Spool {
    spool_with(tag, "")
}

/// `extra` is appended to the submission config.
fn spool_with(tag: &str, extra: &str) -> Spool {
    Spool::new(tag, &Config::submission().lines(extra))
}

fn id_output(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().expect("run id");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The login name of the current uid (`id -un`).
fn user_name() -> String {
    id_output("-un")
}

fn user_id() -> String {
    id_output("-u")
}

const SIMPLE: &[u8] = b"Subject: test\nTo: bob@example.com\n\nHello.\n";

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

#[test]
fn help_and_version_exit_zero() {
    let out = run_program(Path::new(harness::bin()), &["--help"], b"");
    out.assert_ok();
    assert!(out.stdout.contains("Usage"), "{}", out.stdout);
    assert!(out.stdout.contains("-t"), "{}", out.stdout);
    let out = run_program(Path::new(harness::bin()), &["--version"], b"");
    out.assert_ok();
    assert!(out.stdout.starts_with("spoolmail "), "{}", out.stdout);
}

/// `--version` says which config file and spool this binary uses, and what
/// is compiled in: what an admin (or a bug report) needs first.
#[test]
fn version_names_config_spool_and_features() {
    let t = spool("version");
    let out = t.run(&["--version"], b"");
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("spoolmail {}", env!("CARGO_PKG_VERSION")),
        "{}",
        out.stdout
    );
    assert_eq!(lines[1], format!("config file: {}", t.conf.display()));
    assert_eq!(lines[2], format!("spool directory: {}", t.spool.display()));
    assert!(
        lines[3].starts_with("features: TLS rustls (ring provider"),
        "{}",
        out.stdout
    );
    let missing = t.root().join("absent.conf");
    let out = run_program(
        Path::new(harness::bin()),
        &["-C", &missing.display().to_string(), "--version"],
        b"",
    );
    out.assert_ok();
    assert!(
        out.stdout.contains("spool directory: unknown"),
        "{}",
        out.stdout
    );
}

/// `-q5` runs the queue every five minutes, as in Sendmail (a bare number
/// is minutes): in 7 seconds there is one pass, not two.
#[test]
fn q_with_a_bare_number_waits_minutes() {
    let t = spool("q5");
    let mut cmd = t.cmd(&["-q5", "-v"]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = harness::spawn(&mut cmd);
    std::thread::sleep(Duration::from_secs(7));
    child.kill().unwrap();
    let out = harness::wait_output(child, TIMEOUT);
    let passes = out.stderr.matches("spoolmail: queue run:").count();
    assert_eq!(passes, 1, "{}", out.stderr);
}

/// `-qR` with nothing after it says what is missing, naming `-qR`.
#[test]
fn queue_selector_without_text_names_the_flag() {
    let t = spool("qr");
    for flag in ["-qR", "-qS", "-qI"] {
        let out = t.run(&[flag], b"");
        assert_eq!(out.code(), Some(64), "{flag}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("{flag} needs TEXT")),
            "{flag}: {}",
            out.stderr
        );
    }
}

/// The man pages render without a warning (`man` shows what groff says).
#[test]
fn man_pages_render_without_warnings() {
    harness::require_program("groff");
    for page in ["doc/man/spoolmail.8", "doc/man/spoolmail.conf.5"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(page);
        let out = run_program(
            Path::new("groff"),
            &["-man", "-ww", "-z", &path.display().to_string()],
            b"",
        );
        out.assert_ok();
        assert_eq!(out.stderr, "", "{page}");
    }
}

#[test]
fn every_submission_flag_is_accepted() {
    let t = spool("flags");
    let xfile = t.root().join("traffic.log");
    let x = xfile.display().to_string();
    let x_attached = format!("-X{x}");
    let cases: Vec<Vec<&str>> = vec![
        vec!["-t"],
        vec!["-i"],
        vec!["-oi"],
        vec!["-f", "alice@example.com"],
        vec!["-falice@example.com"],
        vec!["-r", "alice@example.com"],
        vec!["-ralice@example.com"],
        vec!["-F", "Cron Daemon"],
        vec!["-FCronDaemon"],
        vec!["-bm"],
        vec!["-odb"],
        vec!["-odi"],
        vec!["-odq"],
        vec!["-oem"],
        vec!["-oep"],
        vec!["-oeq"],
        vec!["-oew"],
        vec!["-em"],
        vec!["-ep"],
        vec!["-eq"],
        vec!["-ew"],
        vec!["-B", "7BIT"],
        vec!["-B8BITMIME"],
        vec!["-N", "success,failure,delay"],
        vec!["-Nnever"],
        vec!["-R", "full"],
        vec!["-Rhdrs"],
        vec!["-V", "envid-123"],
        vec!["-Venvid-123"],
        vec!["-L", "mytag"],
        vec!["-Lmytag"],
        vec!["-h", "5"],
        vec!["-h5"],
        vec!["-O", "DeliveryMode=b"],
        vec!["-ODeliveryMode=b"],
        vec!["-oQ/var/spool/mqueue"],
        vec!["-oA/etc/aliases"],
        vec!["-X", &x],
        vec![&x_attached],
        vec!["-v"],
        vec!["-G"],
        vec!["-U"],
        vec!["-Ac"],
        vec!["-Am"],
        vec!["--"],
        // Debian cron and cronie as they call sendmail.
        vec!["-FCronDaemon", "-i", "-B8BITMIME", "-oem"],
        vec![
            "-FCronDaemon",
            "-i",
            "-odi",
            "-oem",
            "-oi",
            "-t",
            "-f",
            "root",
        ],
        // git send-email, mutt, PHP.
        vec!["-i", "-f", "alice@example.com", "-oi", "-oem"],
        vec!["-t", "-i", "-odq"],
    ];
    let mut expected = 0;
    for args in cases {
        let mut full = args.clone();
        full.push("bob@example.com");
        let out = t.run(&full, SIMPLE);
        out.assert_ok();
        expected += 1;
        assert_eq!(t.queued().len(), expected, "{args:?}: not queued");
        if !args.contains(&"-v") {
            assert_eq!(out.stderr, "", "{args:?}: stderr without -v");
        }
        assert!(!xfile.exists(), "{args:?}: -X created its file");
    }
    for q in t.queued() {
        assert!(q.rcpts().contains(&"bob@example.com"), "{:?}", q.rcpts());
    }
}

#[test]
fn ignored_flags_are_noted_only_under_v() {
    let t = spool("notes");
    let xfile = t.root().join("x.log");
    let x = xfile.display().to_string();
    let cases: [(&[&str], &str); 8] = [
        (&["-h", "5"], "-h"),
        (&["-O", "DeliveryMode=b"], "-O"),
        (&["-oQ/var/spool/mqueue"], "-oQ"),
        (&["-X", &x], "-X"),
        (&["-G"], "-G"),
        (&["-U"], "-U"),
        (&["-Ac"], "-Ac"),
        (&["-Am"], "-Am"),
    ];
    for (flags, named) in cases {
        let mut args = flags.to_vec();
        args.push("bob@example.com");
        let quiet = t.run(&args, SIMPLE);
        quiet.assert_ok();
        assert_eq!(quiet.stderr, "", "{flags:?} without -v");
        args.insert(0, "-v");
        let loud = t.run(&args, SIMPLE);
        loud.assert_ok();
        assert!(
            loud.stderr.contains(named),
            "{flags:?} under -v: no note naming {named}: {:?}",
            loud.stderr
        );
    }
    assert_eq!(t.queued().len(), 16);
    assert!(!xfile.exists(), "-X created its file");
}

#[test]
fn odb_and_odi_try_delivery_and_keep_what_fails_queued() {
    // The test config's smarthost (127.0.0.1:1) refuses connections: each
    // message must stay queued, deferred with the reason, never lost.
    let t = spool("od");
    let q = t.submit_one(&["-odi", "bob@example.com"], SIMPLE);
    let state = fs::read_to_string(t.spool.join("queue").join(format!("{}.state", q.id)))
        .expect("-odi made an attempt and recorded it");
    assert!(state.contains("rcpt 0 deferred"), "{state}");
    assert!(state.contains("Connection refused"), "{state}");

    let q = t.submit_one(&["-odb", "carol@example.com"], SIMPLE);
    let state_path = t.spool.join("queue").join(format!("{}.state", q.id));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The state is written first when the attempt begins (issue 11), then
    // again with its outcome.
    let recorded = || fs::read_to_string(&state_path).is_ok_and(|s| s.contains("rcpt 0"));
    while !recorded() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let state = fs::read_to_string(&state_path).expect("-odb attempted delivery in the background");
    assert!(state.contains("rcpt 0 deferred"), "{state}");
    assert_eq!(t.queued().len(), 2, "both messages stay queued");
}

#[test]
fn attached_and_detached_values_are_the_same() {
    let t = spool("attached");
    let a = t.submit_one(
        &[
            "-falice@example.com",
            "-FAlice",
            "-B8BITMIME",
            "-Nsuccess",
            "-Rhdrs",
            "-Vxyz",
            "bob@example.com",
        ],
        b"Subject: a\n\nx\n",
    );
    let b = t.submit_one(
        &[
            "-f",
            "alice@example.com",
            "-F",
            "Alice",
            "-B",
            "8BITMIME",
            "-N",
            "success",
            "-R",
            "hdrs",
            "-V",
            "xyz",
            "bob@example.com",
        ],
        b"Subject: a\n\nx\n",
    );
    let r = t.submit_one(&["-ralice@example.com", "bob@example.com"], b"\nx\n");
    let r2 = t.submit_one(&["-r", "alice@example.com", "bob@example.com"], b"\nx\n");
    for q in [&a, &b, &r, &r2] {
        assert_eq!(q.sender(), "alice@example.com");
    }
    for q in [&a, &b] {
        assert_eq!(q.header_values("From"), vec!["Alice <alice@example.com>"]);
        assert_eq!(q.get("body"), Some("8bitmime"));
        assert_eq!(q.get("notify"), Some("SUCCESS"));
        assert_eq!(q.get("ret"), Some("hdrs"));
        assert_eq!(q.get("envid"), Some("xyz"));
    }
}

#[test]
fn dsn_flags_are_recorded_in_the_envelope() {
    let t = spool("dsn");
    let q = t.submit_one(
        &[
            "-N",
            "success,failure",
            "-R",
            "full",
            "-V",
            "abc123",
            "bob@example.com",
        ],
        SIMPLE,
    );
    assert_eq!(q.get("notify"), Some("SUCCESS,FAILURE"));
    assert_eq!(q.get("ret"), Some("full"));
    assert_eq!(q.get("envid"), Some("abc123"));
    let q = t.submit_one(&["bob@example.com"], SIMPLE);
    assert_eq!(q.get("notify"), None);
    assert_eq!(q.get("ret"), None);
    assert_eq!(q.get("envid"), None);
}

#[test]
fn log_tag_flag_names_the_log_lines() {
    let t = spool("logtag");
    let q = t.submit_one(&["-L", "cronmail", "bob@example.com"], SIMPLE);
    let log = fs::read_to_string(t.log_path()).unwrap();
    let line = log.lines().find(|l| l.contains(&q.id)).expect("log line");
    assert!(line.contains("cronmail["), "{line}");
}

#[test]
fn double_dash_ends_the_options() {
    let t = spool("dashdash");
    let q = t.submit_one(
        &["-i", "--", "-weird@example.com", "bob@example.com"],
        SIMPLE,
    );
    assert_eq!(q.rcpts(), vec!["-weird@example.com", "bob@example.com"]);
}

#[test]
fn unknown_flag_exits_64_naming_it() {
    let t = spool("unknown");
    for (flag, named) in [
        ("-Z", "-Z"),
        ("-j", "-j"),
        ("--bogus", "--bogus"),
        ("-bz", "-bz"),
    ] {
        let out = t.run(&[flag, "bob@example.com"], SIMPLE);
        let line = out.assert_fails_one_line(&[64]);
        assert!(line.contains(named), "{flag}: {line}");
        t.assert_untouched();
    }
    // A flag missing its value is a usage error too.
    let out = t.run(&["-f"], SIMPLE);
    let line = out.assert_fails_one_line(&[64]);
    assert!(line.contains("-f"), "{line}");
    t.assert_untouched();
}

#[test]
fn smtp_mode_bs_speaks_smtp_on_stdio() {
    // The full -bs behaviour is tested in tests/smtpd.rs; here only that the
    // flag selects the mode and a session queues a message.
    let t = spool("mode-bs");
    let session =
        b"EHLO c\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n\
Subject: bs\r\n\r\nhello\r\n.\r\nQUIT\r\n";
    let out = t.run(&["-bs"], session);
    out.assert_ok();
    assert!(out.stdout.starts_with("220 "), "{}", out.stdout);
    assert!(
        out.stdout.contains("250 2.0.0 Ok: queued as "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.ends_with("221 2.0.0 Bye\r\n"), "{}", out.stdout);
    let q = t.only_message();
    assert_eq!(q.rcpts(), vec!["bob@example.com"]);
}

#[test]
fn newaliases_modes_check_the_aliases_file() {
    // tests/aliases.rs covers the file's contents; here only the flags.
    let t = spool("mode-bi");
    for flag in ["-bi", "-I"] {
        let out = t.run(&[flag], b"");
        out.assert_ok();
        assert!(
            out.stdout.contains("no aliases") || out.stdout.contains("aliases"),
            "{flag}: {}",
            out.stdout
        );
        t.assert_untouched();
    }
}

#[test]
fn verify_bv_says_where_mail_would_go() {
    let t = spool("mode-bv");
    let out = t.run(&["-bv", "bob@example.com"], b"");
    out.assert_ok();
    assert!(
        out.stdout
            .starts_with("bob@example.com... deliverable: mailer esmtp"),
        "{}",
        out.stdout
    );
    t.assert_untouched();
    let out = t.run(&["-bv"], b"");
    assert_eq!(
        out.code(),
        Some(64),
        "-bv without addresses is a usage error"
    );
}

#[test]
fn queue_run_flags_run_a_pass() {
    let t = spool("mode-q");
    t.submit_one(&["bob@example.com"], SIMPLE);
    let cases: [&[&str]; 7] = [
        &["-q"],
        &["-qR@example.com"],
        &["-qR", "@example.com"],
        &["-qSalice"],
        &["-qS", "alice"],
        &["-qI6A3F2C1B0A1B2C3D"],
        &["-q", "-v"],
    ];
    for args in cases {
        let out = t.run(args, b"");
        out.assert_ok();
    }
    // The smarthost refuses: the message is still there, with its reason.
    let listing = t.run(&["-bp"], b"");
    assert!(
        listing.stdout.contains("Connection refused"),
        "{}",
        listing.stdout
    );
    assert_eq!(t.queued().len(), 1);
}

#[test]
fn program_names_mailq_and_newaliases() {
    let t = spool("argv0");
    let mailq = t.root().join("mailq");
    let newaliases = t.root().join("newaliases");
    std::os::unix::fs::symlink(harness::bin(), &mailq).unwrap();
    std::os::unix::fs::symlink(harness::bin(), &newaliases).unwrap();
    let conf = t.conf.display().to_string();

    let out = run_program(&mailq, &["-C", &conf], b"");
    out.assert_ok();
    assert_eq!(out.stdout, "Mail queue is empty\n");

    let q = t.submit_one(&["-f", "alice@example.com", "bob@example.com"], SIMPLE);
    let out = run_program(&mailq, &["-C", &conf], b"");
    out.assert_ok();
    assert!(out.stdout.contains(&q.id), "{}", out.stdout);
    assert!(out.stdout.contains("alice@example.com"), "{}", out.stdout);
    let bp = t.run(&["-bp"], b"");
    bp.assert_ok();
    assert_eq!(out.stdout, bp.stdout, "mailq and sendmail -bp differ");

    let out = run_program(&newaliases, &["-C", &conf], b"");
    out.assert_ok();
    let bi = t.run(&["-bi"], b"");
    assert_eq!(out.stdout, bi.stdout, "newaliases and sendmail -bi differ");
}

// ---------------------------------------------------------------------------
// Recipients
// ---------------------------------------------------------------------------

#[test]
fn argv_recipients_named_and_comma_lists() {
    let t = spool("argv");
    let q = t.submit_one(
        &[
            "Bob Smith <bob@example.com>",
            "carol@example.com, dave@example.com",
            "\"Smith, Erin\" <erin@example.com>",
        ],
        b"Subject: x\n\nbody\n",
    );
    assert_eq!(
        q.rcpts(),
        vec![
            "bob@example.com",
            "carol@example.com",
            "dave@example.com",
            "erin@example.com"
        ]
    );
}

#[test]
fn t_takes_to_cc_bcc_added_to_argv() {
    let t = spool("t");
    let q = t.submit_one(
        &["-t", "argv@example.com"],
        b"To: to@example.com\nCc: cc@example.com\nBcc: bcc@example.com\nSubject: s\n\nbody\n",
    );
    let mut r = q.rcpts();
    r.sort();
    assert_eq!(
        r,
        vec![
            "argv@example.com",
            "bcc@example.com",
            "cc@example.com",
            "to@example.com"
        ]
    );
    // Without -t the headers are not read for recipients.
    let q = t.submit_one(
        &["argv@example.com"],
        b"To: to@example.com\nCc: cc@example.com\n\nbody\n",
    );
    assert_eq!(q.rcpts(), vec!["argv@example.com"]);
}

#[test]
fn t_uses_resent_headers_when_present() {
    let t = spool("resent");
    let msg = b"From: orig@example.net\nTo: old@example.com\nCc: oldcc@example.com\n\
Resent-From: fwd@example.net\nResent-To: new@example.com\nResent-Cc: newcc@example.com\n\
Resent-Bcc: hidden@example.com\nSubject: s\n\nbody\n";
    let q = t.submit_one(&["-t"], msg);
    let mut r = q.rcpts();
    r.sort();
    assert_eq!(
        r,
        vec!["hidden@example.com", "new@example.com", "newcc@example.com"]
    );
    assert_eq!(q.header_values("Resent-Bcc"), Vec::<String>::new());
    assert!(!contains(&q.content, b"hidden@example.com"));
    assert_eq!(q.header_values("To"), vec!["old@example.com"]);
    assert_eq!(q.header_values("Resent-To"), vec!["new@example.com"]);
}

#[test]
fn t_parses_groups() {
    let t = spool("groups");
    let q = t.submit_one(
        &["-t", "argv@example.com"],
        b"To: undisclosed-recipients:;\nSubject: s\n\nbody\n",
    );
    assert_eq!(q.rcpts(), vec!["argv@example.com"]);
    assert_eq!(q.header_values("To"), vec!["undisclosed-recipients:;"]);

    let q = t.submit_one(
        &["-t"],
        b"To: Team: a@example.com, \"Bee, B\" <b@example.net>;, solo@example.com\n\
Cc: Empty:;\n\nbody\n",
    );
    assert_eq!(
        q.rcpts(),
        vec!["a@example.com", "b@example.net", "solo@example.com"]
    );
}

#[test]
fn t_parses_comments_quoted_local_parts_and_folding() {
    let t = spool("parse");
    let q = t.submit_one(
        &["-t"],
        b"To: alice@example.com (Alice A.), Bob (the (nested) builder) <bob@example.com>\n\
Cc: \"john doe\"@example.com,\n\t\"Doe, Jane\" <jane@example.com>,\n  \
last@example.com\nSubject: folded\n  subject\n\nbody\n",
    );
    assert_eq!(
        q.rcpts(),
        vec![
            "alice@example.com",
            "bob@example.com",
            "\"john doe\"@example.com",
            "jane@example.com",
            "last@example.com"
        ]
    );
    // The folded header is stored as it came.
    assert!(
        contains(
            &q.content,
            b"Cc: \"john doe\"@example.com,\n\t\"Doe, Jane\" <jane@example.com>,\n  last@example.com\n"
        ),
        "{}",
        q.header_text()
    );
}

#[test]
fn quoted_local_part_survives_from_argv() {
    let t = spool("quoted");
    let q = t.submit_one(&["\"john doe\"@example.com"], b"Subject: s\n\nbody\n");
    assert_eq!(q.rcpts(), vec!["\"john doe\"@example.com"]);
    let q = t.submit_one(
        &["-f", "\"mail sender\"@example.com", "<\"x y\"@example.net>"],
        b"Subject: s\n\nbody\n",
    );
    assert_eq!(q.sender(), "\"mail sender\"@example.com");
    assert_eq!(q.rcpts(), vec!["\"x y\"@example.net"]);
}

#[test]
fn duplicate_recipients_are_collapsed() {
    let t = spool("dups");
    let q = t.submit_one(
        &["-t", "a@example.com", "a@example.com, b@example.com"],
        b"To: A <a@example.com>, b@example.com\nCc: a@example.com\nBcc: b@example.com\n\nbody\n",
    );
    assert_eq!(q.rcpts(), vec!["a@example.com", "b@example.com"]);
}

#[test]
fn bare_names_are_qualified_with_orcpt() {
    let t = spool("qualify");
    let q = t.submit_one(&["root"], b"Subject: s\n\nbody\n");
    assert_eq!(
        q.rcpts_with_orcpt(),
        vec![(format!("root@{DOMAIN}").as_str(), Some("root"))]
    );
    let q = t.submit_one(
        &["-t"],
        b"To: root, postmaster@example.com\nCc: Admin <admin>\n\nbody\n",
    );
    assert_eq!(
        q.rcpts_with_orcpt(),
        vec![
            (format!("root@{DOMAIN}").as_str(), Some("root")),
            ("postmaster@example.com", None),
            (format!("admin@{DOMAIN}").as_str(), Some("admin")),
        ]
    );
}

// ---------------------------------------------------------------------------
// Bcc removal
// ---------------------------------------------------------------------------

#[test]
fn bcc_removed_without_t_nodemailer_case() {
    let t = spool("bcc-nodemailer");
    // Nodemailer: `sendmail -i -f from to`, with the Bcc header left in.
    let msg = b"From: app@example.com\nTo: to@example.com\nBcc: hidden@example.com,\n other@example.com\n\
Subject: s\nBCC: upper@example.com\nbcc: lower@example.com\nResent-Bcc: rb@example.com\n\nBcc: in the body stays\n";
    let q = t.submit_one(&["-i", "-f", "app@example.com", "to@example.com"], msg);
    assert_eq!(q.rcpts(), vec!["to@example.com"]);
    assert_eq!(q.header_values("Bcc"), Vec::<String>::new());
    assert_eq!(q.header_values("Resent-Bcc"), Vec::<String>::new());
    let header = q.header_text();
    for hidden in ["hidden@", "other@", "upper@", "lower@", "rb@"] {
        assert!(!header.contains(hidden), "{hidden} left in:\n{header}");
    }
    assert!(header.contains("To: to@example.com\n"), "{header}");
    assert!(header.contains("Subject: s\n"), "{header}");
    assert_eq!(q.body(), b"Bcc: in the body stays\n");
}

#[test]
fn bcc_removed_with_t_and_its_recipients_kept() {
    let t = spool("bcc-t");
    let q = t.submit_one(
        &["-t", "-i"],
        b"To: to@example.com\nBcc: hidden@example.com,\n\tother@example.com\nSubject: s\n\nbody\n",
    );
    assert_eq!(
        q.rcpts(),
        vec!["to@example.com", "hidden@example.com", "other@example.com"]
    );
    assert_eq!(q.header_values("Bcc"), Vec::<String>::new());
    assert!(!contains(q.header_block(), b"hidden@"));
    assert!(!contains(q.header_block(), b"other@"));
    assert_eq!(q.body(), b"body\n");
}

// ---------------------------------------------------------------------------
// Intake: the dot rule, line endings, storage as it came
// ---------------------------------------------------------------------------

#[test]
fn lone_dot_ends_input_without_i() {
    let t = spool("dot");
    let q = t.submit_one(&["bob@example.com"], b"Subject: s\n\nbefore\n.\nafter\n");
    assert_eq!(q.body(), b"before\n");
    let q = t.submit_one(
        &["bob@example.com"],
        b"Subject: s\r\n\r\nbefore\r\n.\r\nafter\r\n",
    );
    assert_eq!(q.body(), b"before\n");
    // A final dot without its newline ends the input too.
    let q = t.submit_one(&["bob@example.com"], b"Subject: s\n\nbefore\n.");
    assert_eq!(q.body(), b"before\n");
}

#[test]
fn lone_dot_kept_with_i_and_oi() {
    let t = spool("dot-i");
    for flag in ["-i", "-oi"] {
        let q = t.submit_one(
            &[flag, "bob@example.com"],
            b"Subject: s\n\nbefore\n.\nafter\n",
        );
        assert_eq!(q.body(), b"before\n.\nafter\n", "{flag}");
        let q = t.submit_one(
            &[flag, "bob@example.com"],
            b"Subject: s\r\n\r\nbefore\r\n.\r\nafter\r\n",
        );
        assert_eq!(q.body(), b"before\n.\nafter\n", "{flag} CRLF");
    }
}

#[test]
fn dot_dot_and_dot_text_lines_are_kept() {
    let t = spool("dotdot");
    let body = b"a\n..\n.b\n...\n. \nend\n";
    let mut msg = b"Subject: s\n\n".to_vec();
    msg.extend_from_slice(body);
    let q = t.submit_one(&["bob@example.com"], &msg);
    assert_eq!(q.body(), body);
    let q = t.submit_one(&["-i", "bob@example.com"], &msg);
    assert_eq!(q.body(), body);
}

#[test]
fn line_endings_are_stored_as_lf() {
    let t = spool("eol");
    let cases: [&[u8]; 4] = [
        b"Subject: s\r\nX-A: 1\r\n\r\none\r\ntwo\r\n\r\nthree\r\n",
        b"Subject: s\nX-A: 1\n\none\ntwo\n\nthree\n",
        b"Subject: s\rX-A: 1\r\rone\rtwo\r\rthree\r",
        b"Subject: s\r\nX-A: 1\n\rone\r\ntwo\n\rthree",
    ];
    for msg in cases {
        let q = t.submit_one(&["-i", "bob@example.com"], msg);
        assert!(!q.content.contains(&b'\r'), "CR stored for {msg:?}");
        assert_eq!(q.body(), b"one\ntwo\n\nthree\n", "{msg:?}");
        assert!(
            contains(q.header_block(), b"\nSubject: s\nX-A: 1\n"),
            "{msg:?}: {}",
            q.header_text()
        );
    }
}

#[test]
fn final_line_without_newline_gets_one() {
    let t = spool("lastline");
    let q = t.submit_one(&["-i", "bob@example.com"], b"Subject: s\n\nno newline");
    assert_eq!(q.body(), b"no newline\n");
    assert!(q.content.ends_with(b"no newline\n"));
}

#[test]
fn long_lines_are_stored_intact() {
    let t = spool("long");
    let line: String = (0..5000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let header_line = format!("X-Long: {}", &line[..1500]);
    let msg = format!("Subject: long\n{header_line}\n\n{line}\nshort\n");
    let q = t.submit_one(&["-i", "bob@example.com"], msg.as_bytes());
    assert_eq!(q.body(), format!("{line}\nshort\n").as_bytes());
    assert!(contains(
        q.header_block(),
        format!("\n{header_line}\n").as_bytes()
    ));
}

#[test]
fn eight_bit_content_is_stored_byte_for_byte() {
    let t = spool("8bit");
    let body = "Grüße aus Köln — naïve café, 日本語のテキスト\n".as_bytes();
    let mut msg = b"Subject: plain\n\n".to_vec();
    msg.extend_from_slice(body);
    let q = t.submit_one(&["-i", "bob@example.com"], &msg);
    assert_eq!(q.body(), body);
    assert_eq!(q.get("body"), Some("8bitmime"));

    // Latin-1 (not UTF-8) is kept as it came too.
    let q = t.submit_one(
        &["-i", "bob@example.com"],
        b"Subject: latin1\n\ncaf\xe9 \xfc\xff\n",
    );
    assert_eq!(q.body(), b"caf\xe9 \xfc\xff\n");
    assert_eq!(q.get("body"), Some("8bitmime"));

    // 8-bit in a header only.
    let q = t.submit_one(
        &["-i", "bob@example.com"],
        "Subject: Grüße\n\nascii\n".as_bytes(),
    );
    assert!(contains(q.header_block(), "Subject: Grüße\n".as_bytes()));
    assert_eq!(q.get("body"), Some("8bitmime"));

    // A 7-bit message is 7bit, unless -B8BITMIME says otherwise.
    let q = t.submit_one(&["-i", "bob@example.com"], b"Subject: s\n\nascii\n");
    assert_eq!(q.get("body"), Some("7bit"));
    let q = t.submit_one(
        &["-i", "-B8BITMIME", "bob@example.com"],
        b"Subject: s\n\nascii\n",
    );
    assert_eq!(q.get("body"), Some("8bitmime"));
    // -B7BIT cannot make 8-bit content 7-bit.
    let mut msg = b"Subject: s\n\n".to_vec();
    msg.extend_from_slice(body);
    let q = t.submit_one(&["-i", "-B", "7BIT", "bob@example.com"], &msg);
    assert_eq!(q.get("body"), Some("8bitmime"));
}

#[test]
fn odd_but_legal_headers_are_kept_verbatim() {
    let t = spool("odd");
    let header: &[u8] =
        b"Subject:no space\nX-Empty:\nX-Weird_Name.1!: v\nX-Tabbed:\tvalue\n\tcontinued\n\
Comments: (a (nested) comment)\nTo: bob@example.com\nFrom: Ann <ann@example.com>\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <m1@example.com>\n";
    let mut msg = header.to_vec();
    msg.extend_from_slice(b"\nbody\n");
    let q = t.submit_one(&["-i", "bob@example.com"], &msg);
    // Received on top, then the caller's header byte for byte, then nothing
    // added (From, Date, Message-ID and To are all present).
    let block = q.header_block();
    assert!(block.starts_with(b"Received: "), "{}", q.header_text());
    let at = find(block, header).expect("the submitted header is not stored verbatim");
    assert_eq!(&block[at..], header, "something added after the header");
    assert_eq!(q.body(), b"body\n");
}

// ---------------------------------------------------------------------------
// Header completion
// ---------------------------------------------------------------------------

#[test]
fn missing_headers_are_added() {
    let t = spool("complete");
    let q = t.submit_one(
        &[
            "-i",
            "-f",
            "alice@example.com",
            "-F",
            "Alice Liddell",
            "bob@example.com",
        ],
        b"Subject: no from, date, id or to\n\nbody\n",
    );
    assert_eq!(
        q.header_values("From"),
        vec!["Alice Liddell <alice@example.com>"]
    );
    let dates = q.header_values("Date");
    assert_eq!(dates.len(), 1, "{}", q.header_text());
    // `Sun, 22 Nov 2026 00:17:29 +0000`
    let d: Vec<&str> = dates[0].split_whitespace().collect();
    assert_eq!(d.len(), 6, "{}", dates[0]);
    assert!(d[0].ends_with(','), "{}", dates[0]);
    assert!(
        d[5].starts_with(['+', '-']) && d[5].len() == 5,
        "{}",
        dates[0]
    );
    let ids = q.header_values("Message-ID");
    assert_eq!(ids.len(), 1, "{}", q.header_text());
    assert!(
        ids[0].starts_with('<') && ids[0].ends_with('>') && ids[0].contains('@'),
        "{}",
        ids[0]
    );
    assert_eq!(q.header_values("To"), vec!["undisclosed-recipients:;"]);
    assert_eq!(q.header_values("Subject"), vec!["no from, date, id or to"]);

    // Two submissions get two different Message-IDs.
    let q2 = t.submit_one(&["-i", "bob@example.com"], b"Subject: s\n\nbody\n");
    assert_ne!(q2.header_values("Message-ID"), ids);
}

#[test]
fn from_header_quotes_a_full_name_with_specials() {
    let t = spool("fullname");
    let q = t.submit_one(
        &[
            "-f",
            "js@example.com",
            "-F",
            "Smith, John",
            "bob@example.com",
        ],
        b"Subject: s\n\nbody\n",
    );
    assert_eq!(
        q.header_values("From"),
        vec!["\"Smith, John\" <js@example.com>"]
    );
}

#[test]
fn present_headers_are_left_alone() {
    let t = spool("present");
    let msg = b"FROM: Someone <someone@example.net>\ndate: Tue, 2 Jan 2024 03:04:05 +0100\n\
message-id: <keep.me@example.net>\nCC: cc@example.com\nSubject: s\n\nbody\n";
    let q = t.submit_one(
        &[
            "-i",
            "-f",
            "alice@example.com",
            "-F",
            "Alice",
            "bob@example.com",
        ],
        msg,
    );
    assert_eq!(
        q.header_values("From"),
        vec!["Someone <someone@example.net>"]
    );
    assert_eq!(
        q.header_values("Date"),
        vec!["Tue, 2 Jan 2024 03:04:05 +0100"]
    );
    assert_eq!(q.header_values("Message-ID"), vec!["<keep.me@example.net>"]);
    // Cc present: no `To: undisclosed-recipients:;`.
    assert_eq!(q.header_values("To"), Vec::<String>::new());
}

#[test]
fn received_header_comes_first() {
    let t = spool("received");
    let q = t.submit_one(
        &["-i", "bob@example.com"],
        b"Received: from old.example.net by x; Mon, 1 Jan 2024 00:00:00 +0000\nSubject: s\n\nbody\n",
    );
    let headers = q.headers();
    assert_eq!(headers[0].0, "Received");
    let ours = &headers[0].1;
    assert!(
        ours.contains(&format!("from userid {}", user_id())),
        "{ours}"
    );
    assert!(ours.contains(&q.id), "{ours}");
    assert!(ours.contains("spoolmail"), "{ours}");
    // Ends with a date after `;`.
    assert!(
        ours.rsplit(';').next().unwrap().trim().len() >= 25,
        "{ours}"
    );
    // The caller's Received stays, after ours.
    assert_eq!(headers[1].0, "Received");
    assert!(headers[1].1.starts_with("from old.example.net"));
    assert_eq!(q.header_values("Received").len(), 2);
}

// ---------------------------------------------------------------------------
// Envelope sender
// ---------------------------------------------------------------------------

#[test]
fn envelope_sender_forms() {
    let t = spool("sender");
    let q = t.submit_one(&["-f", "alice@example.com", "bob@example.com"], SIMPLE);
    assert_eq!(q.sender(), "alice@example.com");
    let q = t.submit_one(&["-f", "<alice@example.com>", "bob@example.com"], SIMPLE);
    assert_eq!(q.sender(), "alice@example.com");
    let q = t.submit_one(&["-f", "<>", "bob@example.com"], SIMPLE);
    assert_eq!(q.sender(), "", "null sender");
    assert!(
        q.envelope
            .iter()
            .any(|(k, v)| k == "sender" && v.is_empty()),
        "{:?}",
        q.envelope
    );
    let q = t.submit_one(&["-f", "root", "bob@example.com"], SIMPLE);
    assert_eq!(q.sender(), format!("root@{DOMAIN}"));
    let q = t.submit_one(&["bob@example.com"], SIMPLE);
    assert_eq!(q.sender(), format!("{}@{DOMAIN}", user_name()));
    assert_eq!(q.get("uid"), Some(user_id().as_str()));
    // The added From names the submitting user when there is no -f.
    let from = q.header_values("From");
    assert_eq!(from.len(), 1);
    assert!(
        from[0] == format!("{}@{DOMAIN}", user_name())
            || from[0].ends_with(&format!("<{}@{DOMAIN}>", user_name())),
        "{from:?}"
    );
}

#[test]
fn arrival_is_now() {
    let t = spool("arrival");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let q = t.submit_one(&["bob@example.com"], SIMPLE);
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let arrival: u64 = q.get("arrival").unwrap().parse().unwrap();
    assert!(before <= arrival && arrival <= after, "{arrival}");
    // Queue ids start with the arrival time in hex.
    assert_eq!(&q.id[..8], format!("{:08X}", arrival as u32));
}

// ---------------------------------------------------------------------------
// Injection
// ---------------------------------------------------------------------------

#[test]
fn control_characters_in_command_line_addresses_are_refused() {
    let t = spool("inject-argv");
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "-f",
            "a@example.com\r\nRCPT TO:<victim@example.net>",
            "bob@example.com",
        ],
        vec!["-f", "a@example.com\nX-Injected: 1", "bob@example.com"],
        vec!["-f", "a@exa\x1bmple.com", "bob@example.com"],
        vec!["-f", "a@example.com\x7f", "bob@example.com"],
        vec!["-f", "a@example.com\tb", "bob@example.com"],
        vec!["-r", "<a@example.com>\r\n", "bob@example.com"],
        vec!["bob@example.com\r\nDATA"],
        vec!["bob@example.com\nBcc: victim@example.net"],
        vec!["b\x01ob@example.com"],
        vec!["\"bo\x0bb\"@example.com"],
        vec!["Bob <bob@example.com>\r\nRCPT TO:<victim@example.net>"],
        vec!["ok@example.com", "bad@example.com\r"],
        vec!["-F", "Cron\r\nBcc: victim@example.net", "bob@example.com"],
        vec!["-F", "Cron\x1b[31m", "bob@example.com"],
        vec!["-F", "Cron\nDaemon", "bob@example.com"],
        vec![
            "-V",
            "abc\r\nRCPT TO:<victim@example.net>",
            "bob@example.com",
        ],
        vec!["-V", "ab\x01c", "bob@example.com"],
    ];
    for args in cases {
        let out = t.run(&args, SIMPLE);
        out.assert_fails_one_line(&[64, 65]);
        t.assert_untouched();
    }
}

#[test]
fn control_characters_in_header_addresses_are_refused_under_t() {
    let t = spool("inject-header");
    let cases: [&[u8]; 8] = [
        b"To: \"a\x01b\"@example.com\n\nbody\n",
        b"To: \"a\x00b\"@example.com\n\nbody\n",
        b"To: bob@example.com\x1b\n\nbody\n",
        b"To: bob@example.com\x02\n\nbody\n",
        b"To: <bob@example.com\x7f>\n\nbody\n",
        b"To: ok@example.com\nCc: x@exa\x00mple.com\n\nbody\n",
        b"To: ok@example.com\nBcc: \"evil\x08\"@example.com\n\nbody\n",
        b"Resent-To: r\x0c@example.com\nTo: ok@example.com\n\nbody\n",
    ];
    for msg in cases {
        let out = t.run(&["-t", "-i"], msg);
        let line = out.assert_fails_one_line(&[64, 65]);
        assert!(!line.is_empty(), "{msg:?}");
        t.assert_untouched();
    }
}

#[test]
fn bare_cr_in_a_header_cannot_smuggle_a_recipient() {
    let t = spool("inject-cr");
    let out = t.run(
        &["-t", "-i"],
        b"To: bob@example.com\rRCPT TO:<victim@example.net>\nSubject: s\n\nbody\n",
    );
    if out.code() == Some(0) {
        let q = t.only_message();
        assert_eq!(q.rcpts(), vec!["bob@example.com"]);
    } else {
        out.assert_fails_one_line(&[64, 65]);
        t.assert_untouched();
    }
}

#[test]
fn phpmailer_style_x_and_c_injection_creates_no_file() {
    let t = spool("phpmailer");
    let shell = t.root().join("phpcode.php");
    let shell_s = shell.display().to_string();
    let conf = t.root().join("evil.conf");
    let conf_s = conf.display().to_string();

    // CVE-2016-10033: the sender `"attacker\" -oQ/tmp/ -X/path some"@email.com`
    // as the shell splits it.
    let x = format!("-X{shell_s}");
    let out = t.run(
        &[
            "-i",
            "-f\"attacker\\",
            "-oQ/tmp/",
            &x,
            "some\"@email.com",
            "bob@example.com",
        ],
        b"Subject: <?php system($_GET['c']); ?>\n\nbody\n",
    );
    assert!(!shell.exists(), "-X created {shell_s}");
    if out.code() == Some(0) {
        // If accepted, the payload is only ever in the spool.
        assert_eq!(t.queued().len(), 1);
    } else {
        out.assert_fails_one_line(&[64, 65]);
        t.assert_untouched();
    }
    for q in t.queued() {
        fs::remove_file(t.spool.join("queue").join(&q.id)).unwrap();
    }

    // The whole thing as one -f value.
    let sender = format!("\"attacker\\\" -oQ/tmp/ -X{shell_s} some\"@email.com");
    let out = t.run(&["-i", "-f", &sender, "bob@example.com"], SIMPLE);
    assert!(!shell.exists());
    if out.code() == Some(0) {
        let q = t.only_message();
        assert_eq!(q.sender(), sender);
        fs::remove_file(t.spool.join("queue").join(&q.id)).unwrap();
    }

    // A sender that looks like a flag stays a sender.
    for s in [x.as_str(), &format!("-C{conf_s}")] {
        let out = t.run(&["-i", "-f", s, "bob@example.com"], SIMPLE);
        assert!(!shell.exists());
        assert!(!conf.exists());
        if out.code() == Some(0) {
            let q = t.only_message();
            assert!(q.sender().starts_with(s), "{}", q.sender());
            fs::remove_file(t.spool.join("queue").join(&q.id)).unwrap();
        } else {
            out.assert_fails_one_line(&[64, 65]);
        }
    }

    // -X itself, detached, writes nothing.
    let out = t.run(&["-i", "-X", &shell_s, "bob@example.com"], SIMPLE);
    out.assert_ok();
    assert!(!shell.exists());

    // -C to a file that does not exist: refused, and not created.
    let c = format!("-C{conf_s}");
    let out = t.run(&["-i", &c, "bob@example.com"], SIMPLE);
    out.assert_fails_one_line(&[78]);
    assert!(!conf.exists());
}

#[test]
fn c_pointing_at_a_non_config_file_leaks_nothing() {
    let t = spool("c-passwd");
    let out = run_program(
        Path::new(harness::bin()),
        &["-C", "/etc/passwd", "-i", "bob@example.com"],
        SIMPLE,
    );
    let line = out.assert_fails_one_line(&[78]);
    assert!(line.contains("/etc/passwd"), "{line}");
    assert!(
        !line.contains("root:"),
        "config error echoes file content: {line}"
    );
    t.assert_untouched();
}

// ---------------------------------------------------------------------------
// Error paths
// ---------------------------------------------------------------------------

#[test]
fn no_recipients_is_a_usage_error() {
    let t = spool("norcpt");
    let out = t.run(&["-i"], SIMPLE);
    let line = out.assert_fails_one_line(&[64]);
    assert!(line.contains("-t"), "{line}");
    t.assert_untouched();
    let out = t.run(
        &["-t", "-i"],
        b"To: undisclosed-recipients:;\nSubject: s\n\nbody\n",
    );
    let line = out.assert_fails_one_line(&[64]);
    assert!(line.contains("recipient"), "{line}");
    t.assert_untouched();
    let out = t.run(&["-t", "-i"], b"Subject: none\n\nbody\n");
    out.assert_fails_one_line(&[64]);
    t.assert_untouched();
}

/// A config mistake never loses a submission (issue 13): an unknown key is
/// a warning naming FILE:LINE, as in Postfix; a value spoolmail cannot use
/// is a warning too, the message is queued, and the queue run refuses with
/// exit 78, the reason in the log, while the mail waits.
#[test]
fn config_mistakes_warn_and_still_queue() {
    let t = spool_with("badkey", "\n# comment\nno_such_key = 1\n");
    let out = t.run(&["-i", "bob@example.com"], SIMPLE);
    out.assert_ok();
    // Lines: comment, spool_dir, log, qualify_domain, delivery_mode,
    // smarthost, empty, comment, the key.
    let want = format!("{}:9:", t.conf.display());
    assert!(
        out.stderr.contains(&want),
        "{} does not name {want}",
        out.stderr
    );
    assert!(out.stderr.contains("no_such_key"), "{}", out.stderr);
    t.only_message();
    // An unknown key holds nothing: the queue run goes on.
    t.pass(&[]);

    let t = spool_with("badvalue", "max_message_size = 25MB\n");
    let out = t.run(&["-i", "bob@example.com"], SIMPLE);
    out.assert_ok();
    assert!(
        out.stderr
            .contains(&format!("{}:7: max_message_size", t.conf.display())),
        "{}",
        out.stderr
    );
    let queued = t.only_message();
    let log = fs::read_to_string(t.log_path()).unwrap();
    assert!(log.contains("max_message_size: `25MB`"), "{log}");
    let out = t.run(&["-q"], b"");
    let line = out.assert_fails_one_line(&[78]);
    assert!(line.contains(&format!("{}:7:", t.conf.display())), "{line}");
    let log = fs::read_to_string(t.log_path()).unwrap();
    assert!(log.contains("queue run refused"), "{log}");
    assert_eq!(t.only_message().id, queued.id, "the mail waits");
    // mailq lists it, and says why it waits.
    let out = t.run(&["-bp"], b"");
    assert_eq!(out.code(), Some(78));
    assert!(out.stdout.contains(&queued.id), "{}", out.stdout);
    assert!(out.stderr.contains("queue runs wait"), "{}", out.stderr);
}

#[test]
fn unreadable_config_exits_78() {
    let t = spool("noconf");
    let missing = t.root().join("does-not-exist.conf");
    let out = run_program(
        Path::new(harness::bin()),
        &[
            "-C",
            &missing.display().to_string(),
            "-i",
            "bob@example.com",
        ],
        SIMPLE,
    );
    let line = out.assert_fails_one_line(&[78]);
    assert!(line.contains("does-not-exist.conf"), "{line}");
    t.assert_untouched();
    // A directory is not a readable config either.
    let out = run_program(
        Path::new(harness::bin()),
        &[
            "-C",
            &t.root().display().to_string(),
            "-i",
            "bob@example.com",
        ],
        SIMPLE,
    );
    out.assert_fails_one_line(&[78]);
    t.assert_untouched();
}

#[test]
fn message_over_max_message_size_exits_65() {
    let t = spool_with("toobig", "max_message_size = 1k\n");
    // Body over the limit.
    let mut msg = b"Subject: big\n\n".to_vec();
    msg.extend(std::iter::repeat_n(b'x', 3000));
    msg.push(b'\n');
    let out = t.run(&["-i", "bob@example.com"], &msg);
    let line = out.assert_fails_one_line(&[65]);
    assert!(line.contains("max_message_size"), "{line}");
    t.assert_untouched();
    // Header over the limit.
    let mut msg = b"Subject: big\nX-Big: ".to_vec();
    msg.extend(std::iter::repeat_n(b'y', 3000));
    msg.extend_from_slice(b"\n\nbody\n");
    let out = t.run(&["-i", "bob@example.com"], &msg);
    out.assert_fails_one_line(&[65]);
    t.assert_untouched();
    // Well under the limit is fine.
    t.submit_one(&["-i", "bob@example.com"], b"Subject: small\n\nx\n");
}

#[test]
fn missing_spool_dir_exits_73() {
    let t = spool("nospool");
    let conf = t.root().join("missing.conf");
    let missing = t.root().join("no-such-spool");
    fs::write(
        &conf,
        format!(
            "spool_dir = {}\nlog = {}\nqualify_domain = {DOMAIN}\n",
            missing.display(),
            t.log_path().display()
        ),
    )
    .unwrap();
    let out = run_program(
        Path::new(harness::bin()),
        &["-C", &conf.display().to_string(), "-i", "bob@example.com"],
        SIMPLE,
    );
    let line = out.assert_fails_one_line(&[73]);
    assert!(line.contains("no-such-spool"), "{line}");
    assert!(!missing.exists(), "the spool was created");
}

#[test]
fn missing_queue_dir_leaves_nothing_in_tmp() {
    let t = spool("noqueue");
    fs::remove_dir(t.spool.join("queue")).unwrap();
    let out = t.run(&["-i", "bob@example.com"], SIMPLE);
    assert_ne!(out.code(), Some(0));
    assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
    assert_eq!(fs::read_dir(t.spool.join("tmp")).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------
// mailq
// ---------------------------------------------------------------------------

/// Postfix's heading (showq_compat.c: `"%-11s %7s %-20s %s\n"`).
const POSTFIX_HEADING: &str = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------";

fn indent(addr: &str) -> String {
    format!("{}{addr}", " ".repeat(41))
}

#[test]
fn mailq_empty_queue() {
    let t = spool("mailq-empty");
    let out = t.run(&["-bp"], b"");
    out.assert_ok();
    assert_eq!(out.stdout, "Mail queue is empty\n");
    assert_eq!(out.stderr, "");
    // Files that are not messages are not listed.
    fs::write(t.spool.join("queue/README"), "x").unwrap();
    let out = t.run(&["-bp"], b"");
    out.assert_ok();
    assert_eq!(out.stdout, "Mail queue is empty\n");
}

#[test]
fn mailq_heading_is_postfixs() {
    let t = spool("mailq-heading");
    t.submit_one(&["-i", "bob@example.com"], SIMPLE);
    let out = t.run(&["-bp"], b"");
    out.assert_ok();
    assert_eq!(out.stdout.lines().next(), Some(POSTFIX_HEADING));
}

/// `*` marks the message a runner holds (its claim: an exclusive flock),
/// read from the kernel's lock table where it can be trusted, else by a
/// lock test; a shared lock (another listing's look) is not a claim.
#[test]
fn mailq_marks_only_the_claimed_message_in_delivery() {
    let t = spool("mailq-busy");
    if harness::is_root() {
        t.share_queue_with_group(4343); // for a user's listing, below
    }
    let held = t.submit_one(&["-i", "bob@example.com"], SIMPLE);
    let free = t.submit_one(&["-i", "carol@example.com"], SIMPLE);
    let looked = t.submit_one(&["-i", "dave@example.com"], SIMPLE);
    let open = |q: &str| std::fs::File::open(t.queue_dir().join(q)).unwrap();
    let claim = open(&held.id);
    claim.lock().unwrap();
    let look = open(&looked.id);
    look.lock_shared().unwrap();
    let out = t.run(&["-bp"], b"");
    out.assert_ok();
    let mark = |id: &str| {
        let line = out.stdout.lines().find(|l| l.starts_with(id));
        line.unwrap_or_else(|| panic!("{id} not listed: {}", out.stdout))
            .as_bytes()[id.len()]
    };
    assert_eq!(mark(&held.id), b'*', "{}", out.stdout);
    assert_eq!(mark(&free.id), b' ', "{}", out.stdout);
    assert_eq!(mark(&looked.id), b' ', "{}", out.stdout);
    if harness::is_root() {
        // An ordinary user's mailq never locks another user's message,
        // not even to test it (a test's lock, kept by stopping the
        // process, would stall the message): root's claimed one shows no `*`.
        let mut cmd = t.cmd(&["-bp"]);
        harness::as_local_user(&mut cmd, 4242, 4343);
        let user = cmd.output().expect("mailq as a user");
        let listing = String::from_utf8_lossy(&user.stdout);
        assert!(user.status.success(), "{listing}{:?}", user.stderr);
        assert!(listing.contains("bob@example.com"), "read: {listing}");
        assert!(!listing.contains("unreadable"), "{listing}");
        assert!(!listing.contains('*'), "{listing}");
    }
    drop(claim);
    let out = t.run(&["-bp"], b"");
    assert!(!out.stdout.contains('*'), "{}", out.stdout);
}

#[test]
fn mailq_lists_messages_senders_and_recipients() {
    let t = spool("mailq-full");
    let q1 = t.submit_one(
        &[
            "-i",
            "-f",
            "alice@example.com",
            "bob@example.com",
            "carol@example.net",
        ],
        b"Subject: one\n\nfirst\n",
    );
    let q2 = t.submit_one(
        &["-i", "-f", "<>", "dave@example.com"],
        b"Subject: two\n\nsecond\n",
    );
    let out = t.run(&["-bp"], b"");
    out.assert_ok();
    assert_eq!(out.stderr, "");
    let lines: Vec<&str> = out.stdout.lines().collect();
    // Heading, message 1 (3 lines), empty, message 2 (2 lines), empty,
    // Sendmail's count line (for check_mailq's sendmail mode), trailer.
    assert_eq!(lines.len(), 10, "{}", out.stdout);
    let (a, b) = if q1.id < q2.id {
        (&q1, &q2)
    } else {
        (&q2, &q1)
    };
    for (first, q) in [(1, a), (5, b)] {
        let fields: Vec<&str> = lines[first].split_whitespace().collect();
        assert_eq!(fields[0], q.id, "{}", lines[first]);
        assert_eq!(
            fields[1],
            q.content.len().to_string(),
            "size is the content length: {}",
            lines[first]
        );
        // Dow Mon Day HH:MM:SS, then the sender.
        assert_eq!(fields.len(), 7, "{}", lines[first]);
        assert_eq!(fields[5].len(), 8, "{}", lines[first]);
        let sender = if q.sender().is_empty() {
            "MAILER-DAEMON"
        } else {
            q.sender()
        };
        assert_eq!(fields[6], sender, "{}", lines[first]);
        for (i, r) in q.rcpts().iter().enumerate() {
            assert_eq!(lines[first + 1 + i], indent(r));
        }
    }
    assert_eq!(lines[4], "");
    assert_eq!(lines[7], "");
    assert_eq!(lines[8], "\t\tTotal requests: 2");
    assert!(
        lines[9].starts_with("-- ") && lines[9].ends_with(" Kbytes in 2 Requests."),
        "{}",
        lines[9]
    );
    let n: u64 = lines[9][3..lines[9].find(" Kbytes").unwrap()]
        .parse()
        .unwrap();
    let total = (q1.content.len() + q2.content.len()) as u64;
    assert!(
        n == total / 1024 || n == total.div_ceil(1024),
        "{n} for {total}"
    );
}

#[test]
fn mailq_trailer_counts_kbytes_as_postfix_does() {
    // Postfix: `"-- %lu Kbytes in %lu Request%s.\n", queue_size / 1024, ...`.
    let t = spool("mailq-kbytes");
    let body = "x".repeat(1500);
    let msg = format!("Subject: s\n\n{body}\n");
    let q = t.submit_one(&["-i", "bob@example.com"], msg.as_bytes());
    let size = q.content.len() as u64;
    assert!(!size.is_multiple_of(1024));
    let out = t.run(&["-bp"], b"");
    out.assert_ok();
    assert_eq!(
        out.stdout.lines().last(),
        Some(format!("-- {} Kbytes in 1 Request.", size / 1024).as_str()),
        "{}",
        out.stdout
    );
}

#[test]
fn mailq_shows_reasons_and_omits_delivered_recipients() {
    let t = spool("mailq-state");
    let q = t.submit_one(
        &[
            "-i",
            "-f",
            "alice@example.com",
            "pending@example.com",
            "done@example.com",
            "later@example.net",
            "gone@example.org",
        ],
        SIMPLE,
    );
    fs::write(
        t.spool.join("queue").join(format!("{}.state", q.id)),
        "SPOOLMAIL-STATE 1\nattempts 2\nnext 1795307400\n\
rcpt 1 delivered 250 2.0.0 Ok: queued as 1234\n\
rcpt 2 deferred 451 4.3.0 Try again later\n\
rcpt 3 failed 550 5.1.1 No such user\n",
    )
    .unwrap();
    let out = t.run(&["-bp"], b"");
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(!out.stdout.contains("done@example.com"), "{}", out.stdout);
    assert!(!out.stdout.contains("gone@example.org"), "{}", out.stdout);
    assert!(out.stdout.contains(&indent("pending@example.com")));
    let later = lines
        .iter()
        .position(|l| *l == indent("later@example.net"))
        .expect("deferred recipient listed");
    assert_eq!(lines[later - 1].trim(), "(451 4.3.0 Try again later)");
    assert!(
        lines.last().unwrap().ends_with("in 1 Request."),
        "{}",
        out.stdout
    );
}

#[test]
fn mailq_does_not_show_a_pending_recipient_under_anothers_reason() {
    // A reader of Postfix's format takes the last `(reason)` above a recipient
    // as that recipient's; Postfix prints `(reason unavailable)` to end it.
    let t = spool("mailq-reason-scope");
    let q = t.submit_one(
        &["-i", "deferred@example.com", "pending@example.com"],
        SIMPLE,
    );
    fs::write(
        t.spool.join("queue").join(format!("{}.state", q.id)),
        "SPOOLMAIL-STATE 1\nattempts 1\nnext 1795307400\nrcpt 0 deferred 421 4.7.0 Slow down\n",
    )
    .unwrap();
    let out = t.run(&["-bp"], b"");
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let at = |addr: &str| {
        lines
            .iter()
            .position(|l| *l == indent(addr))
            .unwrap_or_else(|| panic!("{addr} not listed:\n{}", out.stdout))
    };
    let reason_above = |i: usize| {
        lines[..i]
            .iter()
            .rev()
            .take_while(|l| !l.is_empty() && !l.starts_with(&q.id))
            .find(|l| l.trim_start().starts_with('('))
            .map(|l| l.trim().to_string())
    };
    assert_eq!(
        reason_above(at("deferred@example.com")).as_deref(),
        Some("(421 4.7.0 Slow down)")
    );
    assert_ne!(
        reason_above(at("pending@example.com")).as_deref(),
        Some("(421 4.7.0 Slow down)"),
        "the pending recipient reads as deferred:\n{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------
// Log
// ---------------------------------------------------------------------------

#[test]
fn one_postfix_style_log_line_per_message() {
    let t = spool("log");
    let q1 = t.submit_one(
        &[
            "-i",
            "-f",
            "alice@example.com",
            "bob@example.com",
            "carol@example.com",
        ],
        SIMPLE,
    );
    let q2 = t.submit_one(&["-i", "-f", "<>", "bob@example.com"], SIMPLE);
    let log = fs::read_to_string(t.log_path()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    for (q, from, n) in [(&q1, "alice@example.com", 2), (&q2, "", 1)] {
        let want = format!(
            "{}: from=<{from}>, size={}, nrcpt={n} (queue active)",
            q.id,
            q.content.len()
        );
        let line = lines
            .iter()
            .find(|l| l.contains(&q.id))
            .unwrap_or_else(|| panic!("no log line for {}:\n{log}", q.id));
        assert!(line.ends_with(&want), "{line}\nwant: {want}");
        assert!(line.contains("spoolmail["), "{line}");
    }
}

// ---------------------------------------------------------------------------
// Addresses (issue 10)
// ---------------------------------------------------------------------------

#[test]
fn address_literals_that_are_no_addresses_are_refused_at_submission() {
    // Without a smarthost, `[smarthost]` once matched the routing marker and
    // waited days for "the smarthost"; it is no literal, like `[bogus]`.
    let t = spool_with("bad-literal", "smarthost =\n");
    for rcpt in ["a@[smarthost]", "a@[bogus]", "a@[IPv6:bogus]", "a@[::1]"] {
        let out = t.run(&["-i", rcpt], SIMPLE);
        let line = out.assert_fails_one_line(&[65]);
        assert!(line.contains("address literal"), "{rcpt}: {line}");
        t.assert_untouched();
    }
    let out = t.run(&["-i", "-t"], b"To: a@[smarthost]\n\nbody\n");
    assert!(out.assert_fails_one_line(&[65]).contains("address literal"));
    t.assert_untouched();
    let q = t.submit_one(&["-i", "b@[127.0.0.1]", "c@[IPv6:::1]"], SIMPLE);
    assert_eq!(q.rcpts(), ["b@[127.0.0.1]", "c@[IPv6:::1]"]);
}

#[test]
fn quoted_local_part_with_at_is_unqualified() {
    let t = spool_with("quoted-at", "smarthost =\n");
    let out = t.run(&["-bv", "\"x@y\""], b"");
    out.assert_ok();
    assert_eq!(
        out.stdout,
        "\"x@y\"@example.org... deliverable: mailer esmtp, host example.org, \
         user \"x@y\"@example.org (from \"x@y\")\n"
    );
    let q = t.submit_one(&["-i", "\"x@y\""], SIMPLE);
    assert_eq!(
        q.rcpts_with_orcpt(),
        [("\"x@y\"@example.org", Some("\"x@y\""))]
    );
}

#[test]
fn invalid_utf8_in_an_address_header_under_t_is_refused() {
    let t = spool("t-bad-utf8");
    for (msg, header) in [
        (&b"To: b\xffob@example.com\n\nbody\n"[..], "to"),
        (
            b"To: a@example.com\nCc: <c\xc3@example.com>\n\nbody\n",
            "cc",
        ),
    ] {
        let out = t.run(&["-i", "-t"], msg);
        let line = out.assert_fails_one_line(&[65]).to_ascii_lowercase();
        assert!(line.contains(&format!("{header} header")), "{line}");
        t.assert_untouched();
    }
}

/// A name that fits alone but not once qualified (the longest address is
/// 512 characters) is refused at intake, as a recipient, as `-f` and as a
/// name an alias leads to, instead of being queued for a server to refuse.
#[test]
fn a_name_too_long_once_qualified_is_refused() {
    let t = spool("toolong");
    let name = "a".repeat(505);
    let aliases = t.write_file("aliases", &format!("list: {name}\n"));
    t.configure(
        &Config::submission()
            .set("qualify_domain", "example.org")
            .set("aliases_file", aliases.display()),
    );
    for args in [
        vec!["-i", name.as_str()],
        vec!["-i", "-f", name.as_str(), "bob@example.net"],
        vec!["-i", "list"],
    ] {
        let out = t.run(&args, b"Subject: x\n\nbody\n");
        let line = out.assert_fails_one_line(&[65]);
        assert!(line.contains("longer than 512"), "{args:?}: {line}");
        assert!(t.queue_files().is_empty(), "{args:?}: nothing queued");
    }
}
