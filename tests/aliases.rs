//! Local recipients: /etc/aliases forms, loops, includes, the fallback
//! address, qualifying, masquerading, `newaliases` and `-bv`, through the
//! real binary.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_spoolmail");

struct Setup {
    root: PathBuf,
}

impl Setup {
    /// A spool, and an aliases file with `aliases`; `extra` config lines.
    fn new(tag: &str, aliases: &str, extra: &str) -> Setup {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!(
            "spoolmail-aliases-{}-{n}-{tag}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("spool/tmp")).unwrap();
        fs::create_dir_all(root.join("spool/queue")).unwrap();
        fs::write(root.join("aliases"), aliases).unwrap();
        let conf = format!(
            "spool_dir = {}\nlog = {}\nqualify_domain = host.example.org\ndelivery_mode = queue\n\
             smarthost = 127.0.0.1:1\naliases_file = {}\n{extra}",
            root.join("spool").display(),
            root.join("log").display(),
            root.join("aliases").display()
        );
        fs::write(root.join("conf"), conf).unwrap();
        Setup { root }
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(BIN)
            .arg("-C")
            .arg(self.root.join("conf"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Submits and returns the queued file's text.
    fn submit(&self, args: &[&str], message: &str) -> String {
        let out = self.run(args, message);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let queue = self.root.join("spool/queue");
        let mut files: Vec<PathBuf> = fs::read_dir(&queue)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let text = fs::read_to_string(files.last().unwrap()).unwrap();
        for f in files {
            fs::remove_file(f).unwrap();
        }
        text
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn envelope_lines<'a>(file: &'a str, key: &str) -> Vec<&'a str> {
    let envelope = file.split("\n\n").next().unwrap();
    envelope
        .lines()
        .filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .collect()
}

fn header<'a>(file: &'a str, name: &str) -> Option<&'a str> {
    let content = file.split_once("\n\n").unwrap().1;
    let head = content.split("\n\n").next().unwrap();
    head.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
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
    let s = Setup::new("nested", ALIASES, "");
    let file = s.submit(&["postmaster"], "Subject: x\n\nbody\n");
    assert_eq!(
        envelope_lines(&file, "rcpt"),
        vec!["admin@example.org", "o1@example.net", "o2@example.net"]
    );
    assert_eq!(
        envelope_lines(&file, "orcpt"),
        vec!["postmaster", "postmaster", "postmaster"]
    );
    // mailq shows the real address and, in parentheses, the original.
    s.run(&["postmaster"], "Subject: y\n\nbody\n");
    let q = String::from_utf8(s.run(&["-bp"], "").stdout).unwrap();
    assert!(q.contains("admin@example.org (postmaster)"), "{q}");
}

#[test]
fn loops_pipes_and_unknown_names() {
    let s = Setup::new("loops", ALIASES, "");
    let file = s.submit(&["loop1"], "Subject: x\n\nbody\n");
    assert_eq!(envelope_lines(&file, "rcpt"), vec!["safe@example.net"]);
    let file = s.submit(&["bugs"], "Subject: x\n\nbody\n");
    assert_eq!(
        envelope_lines(&file, "rcpt"),
        vec!["bugs@example.net"],
        "the pipe is skipped"
    );
    let log = fs::read_to_string(s.root.join("log")).unwrap();
    assert!(
        log.contains("pipe `|/usr/local/bin/handler` not supported"),
        "skipped with a log line: {log}"
    );
    // A name without an alias is a local user: qualified.
    let file = s.submit(&["www-data"], "Subject: x\n\nbody\n");
    assert_eq!(
        envelope_lines(&file, "rcpt"),
        vec!["www-data@host.example.org"]
    );
}

#[test]
fn includes_and_catch_all() {
    let s = Setup::new("include", "", "");
    let inc = s.root.join("team.list");
    fs::write(&inc, "# team\nt1@example.net, t2@example.net\n").unwrap();
    fs::write(
        s.root.join("aliases"),
        format!(
            "team: :include:{}\n*: catchall@example.net\n",
            inc.display()
        ),
    )
    .unwrap();
    let file = s.submit(&["team"], "Subject: x\n\nbody\n");
    assert_eq!(
        envelope_lines(&file, "rcpt"),
        vec!["t1@example.net", "t2@example.net"]
    );
    let file = s.submit(&["anybody", "bob@example.com"], "Subject: x\n\nbody\n");
    assert_eq!(
        envelope_lines(&file, "rcpt"),
        vec!["catchall@example.net", "bob@example.com"]
    );
}

#[test]
fn fallback_takes_unqualified_names_no_alias_claims() {
    let s = Setup::new(
        "fallback",
        "postmaster: admin@example.org\n",
        "local_recipient_fallback = fallback@example.net\n",
    );
    // cron's own invocation, mailing root.
    let cron = "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> job\n\noutput\n";
    let file = s.submit(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], cron);
    assert_eq!(envelope_lines(&file, "rcpt"), vec!["fallback@example.net"]);
    assert_eq!(envelope_lines(&file, "orcpt"), vec!["root"]);
    let file = s.submit(&["postmaster"], "Subject: x\n\nbody\n");
    assert_eq!(
        envelope_lines(&file, "rcpt"),
        vec!["admin@example.org"],
        "aliases come first"
    );
    let file = s.submit(&["someone@example.com"], "Subject: x\n\nbody\n");
    assert_eq!(
        envelope_lines(&file, "rcpt"),
        vec!["someone@example.com"],
        "qualified addresses are left alone"
    );
}

#[test]
fn bare_names_in_headers_are_qualified() {
    let s = Setup::new("headers", "", "");
    let file = s.submit(
        &["-t"],
        "From: \"(Cron Daemon)\" <root>\nTo: root, ops@example.net\nSubject: x\n\nbody\n",
    );
    assert_eq!(
        header(&file, "From"),
        Some("\"(Cron Daemon)\" <root@host.example.org>")
    );
    assert_eq!(
        header(&file, "To"),
        Some("root@host.example.org, ops@example.net")
    );
}

#[test]
fn masquerading_rewrites_local_senders_only() {
    let s = Setup::new("masq", "", "masquerade_domain = example.com\n");
    let file = s.submit(
        &["-f", "alice@localhost", "bob@example.net"],
        "From: Alice <alice@localhost>\nSubject: x\n\nbody\n",
    );
    assert_eq!(envelope_lines(&file, "sender"), vec!["alice@example.com"]);
    assert_eq!(header(&file, "From"), Some("Alice <alice@example.com>"));
    // Unqualified: qualified with host.example.org, which is this host: masqueraded.
    let file = s.submit(&["-f", "cron", "bob@example.net"], "Subject: x\n\nbody\n");
    assert_eq!(envelope_lines(&file, "sender"), vec!["cron@example.com"]);
    assert_eq!(
        header(&file, "From"),
        Some("cron@example.com"),
        "the added From follows the sender"
    );
    // Other domains are left alone.
    let file = s.submit(
        &["-f", "carol@example.org", "bob@example.net"],
        "From: carol@example.org\nSubject: x\n\nbody\n",
    );
    assert_eq!(envelope_lines(&file, "sender"), vec!["carol@example.org"]);
    assert_eq!(header(&file, "From"), Some("carol@example.org"));
}

#[test]
fn newaliases_reports_problems_with_file_and_line() {
    let s = Setup::new("newaliases", ALIASES, "");
    let out = s.run(&["-bi"], "");
    assert_eq!(out.status.code(), Some(78), "a loop is an error");
    let err = String::from_utf8_lossy(&out.stderr);
    let aliases = s.root.join("aliases").display().to_string();
    assert!(
        err.contains(&format!("{aliases}:6: loop1: alias loop")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{aliases}:8: warning: bugs: pipe")),
        "{err}"
    );

    fs::write(
        s.root.join("aliases"),
        "postmaster: root\nroot: admin@example.org\nbugs: |/bin/cat\n",
    )
    .unwrap();
    let out = s.run(&["-bi"], "");
    assert!(
        out.status.success(),
        "pipes are warnings; the file is fine: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": 3 aliases"));

    fs::write(
        s.root.join("aliases"),
        "ok: a@b.org\nbroken line without colon\n",
    )
    .unwrap();
    let out = s.run(&["-bi"], "");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{aliases}:2: expected")));
}

#[test]
fn verify_shows_where_addresses_go() {
    let s = Setup::new("bv", ALIASES, "");
    let out = s.run(&["-bv", "postmaster", "bugs"], "");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("admin@example.org... deliverable: mailer esmtp, host [smarthost], user admin@example.org (from postmaster)"), "{text}");
    assert!(
        text.contains("bugs... not deliverable: alias bugs: pipe"),
        "{text}"
    );
    assert!(
        s.root
            .join("spool/queue")
            .read_dir()
            .unwrap()
            .next()
            .is_none(),
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
    let s = Setup::new("big", &text, "");
    let started = std::time::Instant::now();
    let out = s.run(&["-bi"], "");
    let checked = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = std::time::Instant::now();
    let file = s.submit(&["user9999"], "Subject: x\n\nbody\n");
    let submitted = started.elapsed();
    assert_eq!(envelope_lines(&file, "rcpt"), vec!["user10000@example.net"]);
    println!("10,000-line aliases: newaliases {checked:?}, a submission to an alias {submitted:?}");
    assert!(
        checked < std::time::Duration::from_secs(5)
            && submitted < std::time::Duration::from_secs(5)
    );
}
