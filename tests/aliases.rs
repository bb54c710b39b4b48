//! Local recipients: /etc/aliases forms, loops, includes, the fallback
//! address, qualifying, masquerading, `newaliases` and `-bv`, through the
//! real binary.

mod harness;

use harness::{Config, Queued, Spool};
use std::fs;

/// A spool, and an aliases file with `aliases`; `extra` config lines.
fn setup(tag: &str, aliases: &str, extra: &str) -> Spool {
    let s = Spool::new(tag, &Config::submission());
    let file = s.write_file("aliases", aliases);
    s.configure(
        &Config::submission()
            .set("qualify_domain", "host.example.org")
            .set("aliases_file", file.display())
            .lines(extra),
    );
    s
}

impl Spool {
    /// Submits, and returns the queued message, leaving the queue empty.
    fn submit(&self, args: &[&str], message: &str) -> Queued {
        let q = self.submit_one(args, message.as_bytes());
        for f in self.queue_files() {
            fs::remove_file(self.queue_dir().join(f)).unwrap();
        }
        q
    }

    fn aliases(&self) -> std::path::PathBuf {
        self.root().join("aliases")
    }
}

const ALIASES: &str = "\
# local recipients
postmaster: root
root: admin@example.org,
  ops
ops: \"o1@example.net\", o2@example.net
loop1: loop2
loop2: loop1, safe@example.net
bugs: |/usr/local/bin/handler, bugs@example.net
";

#[test]
fn nested_aliases_expand_at_submission_with_the_original_kept() {
    let s = setup("nested", ALIASES, "");
    let file = s.submit(&["postmaster"], "Subject: x\n\nbody\n");
    assert_eq!(
        file.values("rcpt"),
        vec!["admin@example.org", "o1@example.net", "o2@example.net"]
    );
    assert_eq!(
        file.values("orcpt"),
        vec!["postmaster", "postmaster", "postmaster"]
    );
    // mailq shows the real address and, in parentheses, the original.
    s.run(&["postmaster"], b"Subject: y\n\nbody\n");
    let q = s.mailq();
    assert!(q.contains("admin@example.org (postmaster)"), "{q}");
}

#[test]
fn loops_pipes_and_unknown_names() {
    let s = setup("loops", ALIASES, "");
    let file = s.submit(&["loop1"], "Subject: x\n\nbody\n");
    assert_eq!(file.values("rcpt"), vec!["safe@example.net"]);
    let file = s.submit(&["bugs"], "Subject: x\n\nbody\n");
    assert_eq!(
        file.values("rcpt"),
        vec!["bugs@example.net"],
        "the pipe is skipped"
    );
    let log = s.log();
    assert!(
        log.contains("pipe `|/usr/local/bin/handler` not supported"),
        "skipped with a log line: {log}"
    );
    // A name without an alias is a local user: qualified.
    let file = s.submit(&["www-data"], "Subject: x\n\nbody\n");
    assert_eq!(file.values("rcpt"), vec!["www-data@host.example.org"]);
}

#[test]
fn includes_and_catch_all() {
    let s = setup("include", "", "");
    let inc = s.root().join("team.list");
    fs::write(&inc, "# team\nt1@example.net, t2@example.net\n").unwrap();
    fs::write(
        s.aliases(),
        format!(
            "team: :include:{}\n*: catchall@example.net\n",
            inc.display()
        ),
    )
    .unwrap();
    let file = s.submit(&["team"], "Subject: x\n\nbody\n");
    assert_eq!(
        file.values("rcpt"),
        vec!["t1@example.net", "t2@example.net"]
    );
    let file = s.submit(&["anybody", "bob@example.com"], "Subject: x\n\nbody\n");
    assert_eq!(
        file.values("rcpt"),
        vec!["catchall@example.net", "bob@example.com"]
    );
}

#[test]
fn fallback_takes_unqualified_names_no_alias_claims() {
    let s = setup(
        "fallback",
        "postmaster: admin@example.org\n",
        "local_recipient_fallback = fallback@example.net\n",
    );
    // cron's own invocation, mailing root.
    let cron = "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> job\n\noutput\n";
    let file = s.submit(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], cron);
    assert_eq!(file.values("rcpt"), vec!["fallback@example.net"]);
    assert_eq!(file.values("orcpt"), vec!["root"]);
    let file = s.submit(&["postmaster"], "Subject: x\n\nbody\n");
    assert_eq!(
        file.values("rcpt"),
        vec!["admin@example.org"],
        "aliases come first"
    );
    let file = s.submit(&["someone@example.com"], "Subject: x\n\nbody\n");
    assert_eq!(
        file.values("rcpt"),
        vec!["someone@example.com"],
        "qualified addresses are left alone"
    );
}

#[test]
fn bare_names_in_headers_are_qualified() {
    let s = setup("headers", "", "");
    let file = s.submit(
        &["-t"],
        "From: \"(Cron Daemon)\" <root>\nTo: root, ops@example.net\nSubject: x\n\nbody\n",
    );
    assert_eq!(
        file.first_header("From").as_deref(),
        Some("\"(Cron Daemon)\" <root@host.example.org>")
    );
    assert_eq!(
        file.first_header("To").as_deref(),
        Some("root@host.example.org, ops@example.net")
    );
}

#[test]
fn masquerading_rewrites_local_senders_only() {
    let s = setup("masq", "", "masquerade_domain = example.com\n");
    let file = s.submit(
        &["-f", "alice@localhost", "bob@example.net"],
        "From: Alice <alice@localhost>\nSubject: x\n\nbody\n",
    );
    assert_eq!(file.values("sender"), vec!["alice@example.com"]);
    assert_eq!(
        file.first_header("From").as_deref(),
        Some("Alice <alice@example.com>")
    );
    // Unqualified: qualified with host.example.org, which is this host: masqueraded.
    let file = s.submit(&["-f", "cron", "bob@example.net"], "Subject: x\n\nbody\n");
    assert_eq!(file.values("sender"), vec!["cron@example.com"]);
    assert_eq!(
        file.first_header("From").as_deref(),
        Some("cron@example.com"),
        "the added From follows the sender"
    );
    // Other domains are left alone.
    let file = s.submit(
        &["-f", "carol@example.org", "bob@example.net"],
        "From: carol@example.org\nSubject: x\n\nbody\n",
    );
    assert_eq!(file.values("sender"), vec!["carol@example.org"]);
    assert_eq!(
        file.first_header("From").as_deref(),
        Some("carol@example.org")
    );
}

#[test]
fn newaliases_reports_problems_with_file_and_line() {
    let s = setup("newaliases", ALIASES, "");
    let out = s.run(&["-bi"], b"");
    assert_eq!(out.code(), Some(78), "a loop is an error");
    let err = out.stderr;
    let aliases = s.aliases().display().to_string();
    assert!(
        err.contains(&format!("{aliases}:6: loop1: alias loop")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{aliases}:8: warning: bugs: pipe")),
        "{err}"
    );

    fs::write(
        s.aliases(),
        "postmaster: root\nroot: admin@example.org\nbugs: |/bin/cat\n",
    )
    .unwrap();
    let out = s.run(&["-bi"], b"");
    assert!(
        out.status.success(),
        "pipes are warnings; the file is fine: {}",
        out.stderr
    );
    assert!(out.stdout.contains(": 3 aliases"));

    fs::write(s.aliases(), "ok: a@b.org\nbroken line without colon\n").unwrap();
    let out = s.run(&["-bi"], b"");
    assert_eq!(out.code(), Some(78));
    assert!(out.stderr.contains(&format!("{aliases}:2: expected")));
}

#[test]
fn verify_shows_where_addresses_go() {
    let s = setup("bv", ALIASES, "");
    let out = s.run(&["-bv", "postmaster", "bugs"], b"");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout_bytes).unwrap();
    assert!(text.contains("admin@example.org... deliverable: mailer esmtp, host [smarthost], user admin@example.org (from postmaster)"), "{text}");
    assert!(
        text.contains("bugs... not deliverable: alias bugs: pipe"),
        "{text}"
    );
    assert!(
        s.queue_dir().read_dir().unwrap().next().is_none(),
        "-bv queues nothing"
    );
}

#[test]
fn a_ten_thousand_line_file_is_read_quickly() {
    // Measured, not asserted tightly: the figure is printed; the bound only
    // catches something pathological (quadratic parsing).
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!("user{i}: user{}@example.net\n", i + 1));
    }
    let s = setup("big", &text, "");
    let started = std::time::Instant::now();
    let out = s.run(&["-bi"], b"");
    let checked = started.elapsed();
    assert!(out.status.success(), "{}", out.stderr);
    let started = std::time::Instant::now();
    let file = s.submit(&["user9999"], "Subject: x\n\nbody\n");
    let submitted = started.elapsed();
    assert_eq!(file.values("rcpt"), vec!["user10000@example.net"]);
    println!("10,000-line aliases: newaliases {checked:?}, a submission to an alias {submitted:?}");
    assert!(
        checked < std::time::Duration::from_secs(5)
            && submitted < std::time::Duration::from_secs(5)
    );
}
