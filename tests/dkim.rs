//! DKIM signing (`dkim_key`), checked by an independent verifier: dkimpy
//! (tests/fixtures/dkim_verify.py) reads what a real SMTP server received,
//! with the public keys served by the DNS fixture. Keys are made with
//! openssl, not with spoolmail's own `spoolctl dkim-keygen` (whose keys
//! are checked the same way at the end).

mod harness;

use harness::{Config, Dns, DnsZone, Json, Message, Smtp, Spool, TempDir};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `openssl ARGS < stdin`, which must succeed; its stdout.
fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    harness::require_program("openssl");
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The kinds of key a test makes.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// RSA 2048, PKCS#8 (`PRIVATE KEY`).
    Rsa,
    /// RSA 2048, PKCS#1 (`RSA PRIVATE KEY`).
    RsaPkcs1,
    Ed25519,
    /// RSA 1024: too small to sign with.
    Rsa1024,
}

/// Makes a key file (mode 0640) in `dir`; returns it and its DNS record.
fn make_key(dir: &Path, name: &str, kind: Kind) -> (PathBuf, String) {
    let file = dir.join(format!("{name}.pem"));
    let f = file.to_str().unwrap();
    match kind {
        Kind::Rsa => openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                f,
            ],
            b"",
        ),
        Kind::Rsa1024 => openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:1024",
                "-out",
                f,
            ],
            b"",
        ),
        Kind::RsaPkcs1 => openssl(&["genrsa", "-traditional", "-out", f, "2048"], b""),
        Kind::Ed25519 => openssl(&["genpkey", "-algorithm", "ed25519", "-out", f], b""),
    };
    harness::set_mode(&file, 0o640);
    let spki = openssl(&["pkey", "-in", f, "-pubout", "-outform", "DER"], b"");
    let (k, public) = match kind {
        // RFC 8463: the bare 32 octets, not a SubjectPublicKeyInfo.
        Kind::Ed25519 => ("ed25519", spki[spki.len() - 32..].to_vec()),
        _ => ("rsa", spki),
    };
    let b64 = String::from_utf8(openssl(&["base64", "-A"], &public)).unwrap();
    (file, format!("v=DKIM1; k={k}; p={}", b64.trim()))
}

/// What dkimpy says of one message.
struct Verdict {
    ok: bool,
    signatures: usize,
    tags: Json,
    error: String,
    /// Every signature checked alone, in order: (ok, a=, s=, the error).
    each: Vec<(bool, String, String, String)>,
}

impl Verdict {
    fn tag(&self, name: &str) -> String {
        self.tags
            .get(name)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// Runs dkimpy over `messages` (as received) with keys from `dns`.
fn verify(dns: &Dns, messages: &[&[u8]]) -> Vec<Verdict> {
    harness::require_python_module("dkim");
    harness::require_python_module("nacl");
    let dir = TempDir::new("dkim-verify");
    let files: Vec<String> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let p = dir.path().join(format!("m{i}.eml"));
            std::fs::write(&p, m).unwrap();
            p.to_string_lossy().into_owned()
        })
        .collect();
    let out = Command::new(harness::python())
        .arg(harness::fixtures_dir().join("dkim_verify.py"))
        .args(["--dns", &dns.addr()])
        .args(&files)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let verdicts: Vec<Verdict> = text
        .lines()
        .map(|l| {
            let j = Json::parse(l).unwrap();
            Verdict {
                ok: j
                    .get("ok")
                    .map(|v| format!("{v:?}").contains("true"))
                    .unwrap(),
                signatures: j.get("signatures").and_then(Json::as_f64).unwrap() as usize,
                error: j.get("error").and_then(Json::as_str).unwrap().to_string(),
                tags: j.get("tags").unwrap().clone(),
                each: (j.get("each").and_then(Json::as_array).unwrap().iter())
                    .map(|e| {
                        let text = |k| e.get(k).and_then(Json::as_str).unwrap().to_string();
                        let ok = format!("{:?}", e.get("ok").unwrap()).contains("true");
                        (ok, text("a"), text("s"), text("error"))
                    })
                    .collect(),
            }
        })
        .collect();
    assert_eq!(verdicts.len(), messages.len(), "{text}");
    verdicts
}

/// Keys for three domains and the zone that publishes them.
struct Setup {
    _dir: TempDir,
    dns: Dns,
    lines: String,
}

fn setup(keys: &[(&str, Kind)]) -> Setup {
    let dir = TempDir::new("dkim-keys");
    let mut zone = DnsZone::new();
    let mut lines = String::new();
    for (domain, kind) in keys {
        let (file, record) = make_key(dir.path(), domain, *kind);
        zone = zone.txt(&format!("sel._domainkey.{domain}"), &record);
        lines.push_str(&format!("dkim_key = {domain} sel {}\n", file.display()));
    }
    Setup {
        dns: Dns::start(&zone),
        lines,
        _dir: dir,
    }
}

fn spool(label: &str, relay: &Smtp, s: &Setup, extra: &str) -> Spool {
    Spool::new(
        label,
        &Config::delivery()
            .set("smarthost", relay.addr())
            .set("qualify_domain", "dkim.test")
            .lines(&s.lines)
            .lines(extra),
    )
}

fn received(relay: &Smtp, n: usize) -> Vec<Message> {
    let mut msgs = relay.wait_for_messages(n, SECS(20));
    msgs.sort_by_key(|m| m.seq);
    msgs
}

const EIGHT_BIT: &[u8] = "From: Al\u{ef}ce <alice@dkim.test>\nTo: bob@example.net\n\
    Cc: carol@example.net\nSubject: Gr\u{fc}\u{df}e\n  folded\nDate: Mon, 30 Nov 2026 12:00:00 +0000\n\
    Message-ID: <1@dkim.test>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\
    Content-Transfer-Encoding: 8bit\nList-Unsubscribe: <mailto:u@dkim.test>\nX-Unsigned: 1\n\n\
    sch\u{f6}ne Gr\u{fc}\u{df}e   \n.a line with a dot\n\n\n"
    .as_bytes();

#[test]
fn both_algorithms_and_both_key_formats_verify() {
    let s = setup(&[
        ("dkim.test", Kind::Rsa),
        ("pkcs1.test", Kind::RsaPkcs1),
        ("ed.test", Kind::Ed25519),
    ]);
    let sink = Smtp::sink(&[]);
    let sp = spool("dkim-algorithms", &sink, &s, "");
    let from = |addr: &str| {
        String::from_utf8_lossy(EIGHT_BIT)
            .replace("alice@dkim.test", addr)
            .into_bytes()
    };
    sp.run_ok(&["bob@example.net"], EIGHT_BIT);
    sp.run_ok(&["bob@example.net"], &from("p@pkcs1.test"));
    // A subdomain of a domain with a key is signed with it.
    sp.run_ok(&["bob@example.net"], &from("e@news.ed.test"));
    sp.run_ok(&["bob@example.net"], &from("nokey@other.test"));
    sp.pass(&[]);
    sp.assert_delivered();
    // In the order of submission (the pass may send them in another).
    let msgs = received(&sink, 4);
    let sent = |from: &str| {
        let m = msgs
            .iter()
            .find(|m| harness::contains(&m.data, from.as_bytes()));
        m.unwrap_or_else(|| panic!("nothing from {from}"))
    };
    let msgs: Vec<&Message> = [
        "<alice@dkim.test>",
        "<p@pkcs1.test>",
        "<e@news.ed.test>",
        "<nokey@other.test>",
    ]
    .iter()
    .map(|f| sent(f))
    .collect();
    let data: Vec<&[u8]> = msgs.iter().map(|m| &m.data[..]).collect();
    let v = verify(&s.dns, &data);
    for (verdict, (a, d)) in v.iter().zip([
        ("rsa-sha256", "dkim.test"),
        ("rsa-sha256", "pkcs1.test"),
        ("ed25519-sha256", "ed.test"),
    ]) {
        assert!(verdict.ok, "{d}: {}", verdict.error);
        assert_eq!(
            (verdict.tag("a"), verdict.tag("d")),
            (a.to_string(), d.to_string())
        );
        assert_eq!(verdict.tag("c"), "relaxed/relaxed");
        assert_eq!(verdict.signatures, 1);
    }
    // The listed fields that are present, bottom up, and From once more;
    // not X-Unsigned, nor the absent Reply-To.
    let h = v[0].tag("h").replace([' ', '\t', '\r', '\n'], "");
    assert_eq!(
        h,
        "List-Unsubscribe:Content-Transfer-Encoding:Content-Type:MIME-Version:Message-ID:\
         Date:Subject:Cc:To:From:From"
    );
    // The 8-bit text went as it was, after the signature.
    assert!(
        msgs[0]
            .data
            .starts_with(b"DKIM-Signature: v=1; a=rsa-sha256;")
    );
    assert!(harness::contains(&msgs[0].data, "sch\u{f6}ne".as_bytes()));
    assert_eq!(v[3].signatures, 0, "no key for other.test: not signed");
}

#[test]
fn a_tampered_message_fails_verification() {
    let s = setup(&[("dkim.test", Kind::Rsa), ("ed.test", Kind::Ed25519)]);
    let sink = Smtp::sink(&[]);
    let sp = spool("dkim-tampered", &sink, &s, "");
    sp.run_ok(&["bob@example.net"], EIGHT_BIT);
    let ed = String::from_utf8_lossy(EIGHT_BIT).replace("alice@dkim.test", "a@ed.test");
    sp.run_ok(&["bob@example.net"], ed.as_bytes());
    sp.pass(&[]);
    let msgs = received(&sink, 2);
    for m in &msgs {
        let body = String::from_utf8_lossy(&m.data)
            .replace("dot", "dog")
            .into_bytes();
        // A second From above the first: From is signed once more than it
        // occurred, so this breaks the signature too.
        let text = String::from_utf8_lossy(&m.data);
        let (sig, rest) = text.split_at(text.find("\r\nFrom:").unwrap() + 2);
        let from = format!("{sig}From: Mallory <boss@dkim.test>\r\n{rest}").into_bytes();
        // Relaxed canonicalization: whitespace changes at a line's end do not.
        let spaces = String::from_utf8_lossy(&m.data)
            .replace("\r\n\r\n\r\n", "  \r\n\r\n\r\n")
            .into_bytes();
        let v = verify(&s.dns, &[&m.data, &body, &from, &spaces]);
        assert!(v[0].ok, "{}", v[0].error);
        assert!(!v[1].ok, "a changed body must fail");
        assert!(!v[2].ok, "an added From must fail");
        assert!(v[3].ok, "relaxed: {}", v[3].error);
    }
}

#[test]
fn long_lines_are_signed_after_their_reencoding() {
    let s = setup(&[("dkim.test", Kind::Ed25519)]);
    let sink = Smtp::sink(&[]);
    let sp = spool("dkim-long-lines", &sink, &s, "");
    let long = format!(
        "From: alice@dkim.test\nTo: bob@example.net\nSubject: long\n\n<p>{}caf\u{e9}</p>\nend\n",
        "x".repeat(3000)
    );
    sp.run_ok(&["bob@example.net"], long.as_bytes());
    sp.pass(&[]);
    let msgs = received(&sink, 1);
    let text = String::from_utf8_lossy(&msgs[0].data);
    assert!(
        text.contains("Content-Transfer-Encoding: quoted-printable"),
        "{text}"
    );
    assert!(text.lines().all(|l| l.len() <= 998));
    let v = verify(&s.dns, &[&msgs[0].data]);
    assert!(v[0].ok, "{}", v[0].error);
    // The re-encoding added MIME-Version and Content-Transfer-Encoding: signed.
    assert!(
        v[0].tag("h").contains("Content-Transfer-Encoding"),
        "{}",
        v[0].tag("h")
    );
}

#[test]
fn rewritten_senders_are_signed_for_their_new_domain() {
    let s = setup(&[("dkim.test", Kind::Rsa)]);
    let sink = Smtp::sink(&[]);
    let sp = spool(
        "dkim-rewritten",
        &sink,
        &s,
        "sender_address = relay@dkim.test\nrewrite_from = yes\n",
    );
    sp.run_ok(
        &["bob@example.net"],
        b"From: Script <script@elsewhere.example>\nTo: bob@example.net\nSubject: cron\n\nout\n",
    );
    sp.pass(&[]);
    let msgs = received(&sink, 1);
    let text = String::from_utf8_lossy(&msgs[0].data);
    assert!(
        text.contains("\r\nFrom: Script <relay@dkim.test>\r\n"),
        "{text}"
    );
    let v = verify(&s.dns, &[&msgs[0].data]);
    assert!(v[0].ok, "{}", v[0].error);
    assert_eq!(v[0].tag("d"), "dkim.test");
    // The Reply-To rewrite_from added is signed too.
    assert!(v[0].tag("h").contains("Reply-To"), "{}", v[0].tag("h"));
}

#[test]
fn bounces_are_signed_when_a_key_covers_mailer_daemon() {
    let s = setup(&[("dkim.test", Kind::Ed25519)]);
    let relay = Smtp::faulty("reject-rcpt", &[]);
    let sp = spool("dkim-bounce", &relay, &s, "");
    sp.run_ok(
        &["bad@example.net"],
        b"From: alice@dkim.test\nTo: bad@example.net\nSubject: lost\n\nbody\n",
    );
    sp.pass(&[]);
    let msgs = received(&relay, 1);
    assert_eq!(msgs[0].mail_from, "", "a bounce");
    let text = String::from_utf8_lossy(&msgs[0].data);
    assert!(text.contains("From: MAILER-DAEMON@dkim.test"), "{text}");
    let v = verify(&s.dns, &[&msgs[0].data]);
    assert!(v[0].ok, "{}", v[0].error);
    assert_eq!(v[0].tag("d"), "dkim.test");
}

#[test]
fn a_key_that_cannot_sign_holds_the_mail_and_says_why() {
    let s = setup(&[("dkim.test", Kind::Ed25519), ("small.test", Kind::Rsa1024)]);
    let sink = Smtp::sink(&[]);
    let dir = TempDir::new("dkim-missing");
    let missing = dir.path().join("later.pem");
    let sp = spool(
        "dkim-missing",
        &sink,
        &s,
        &format!("dkim_key = late.test sel {}\n", missing.display()),
    );
    sp.run_ok(
        &["bob@example.net"],
        b"From: a@late.test\nSubject: 1\n\nx\n",
    );
    sp.pass(&[]);
    sp.assert_deferred("cannot read dkim_key");
    assert!(
        sp.mailq().contains("local configuration problem"),
        "{}",
        sp.mailq()
    );
    assert_eq!(sink.message_count(), 0, "nothing unsigned left");

    // Once the key is there, the next run sends the message, signed.
    let (ed, _) = make_key(dir.path(), "ed", Kind::Ed25519);
    std::fs::rename(&ed, &missing).unwrap();
    sp.pass(&[]);
    sp.assert_delivered();
    assert!(received(&sink, 1)[0].data.starts_with(b"DKIM-Signature: "));

    // An RSA key under 2048 bits is refused, with the reason.
    let sp = spool("dkim-small", &sink, &s, "");
    sp.run_ok(
        &["bob@example.net"],
        b"From: a@small.test\nSubject: 2\n\nx\n",
    );
    sp.pass(&[]);
    sp.assert_deferred("RSA key too small");
    assert_eq!(sink.message_count(), 1);
}

#[test]
fn a_key_others_can_read_is_refused() {
    let s = setup(&[("dkim.test", Kind::Ed25519)]);
    let file = s.lines.split_whitespace().last().unwrap().to_string();
    harness::set_mode(Path::new(&file), 0o644);
    let sink = Smtp::sink(&[]);
    let sp = spool("dkim-open", &sink, &s, "");
    sp.run_ok(
        &["bob@example.net"],
        b"From: a@dkim.test\nSubject: 1\n\nx\n",
    );
    let out = sp.run(&["-q"], b"");
    assert_eq!(out.code(), Some(78), "{}", out.stderr);
    assert!(out.stderr.contains("others can read it"), "{}", out.stderr);
    assert_eq!(sink.message_count(), 0);
    assert_eq!(sp.queue_ids().len(), 1);
}

/// `spoolctl -C CONF ARGS`: the binary through a link named spoolctl.
fn spoolctl(s: &Spool, args: &[&str]) -> harness::Outcome {
    let link = s.root().join("spoolctl");
    if !link.exists() {
        std::os::unix::fs::symlink(harness::bin(), &link).unwrap();
    }
    let mut cmd = Command::new(link);
    cmd.arg("-C").arg(&s.conf).args(args);
    harness::run(cmd, b"", SECS(120))
}

#[test]
fn keys_from_dkim_keygen_verify() {
    use std::os::unix::fs::MetadataExt;
    let sink = Smtp::sink(&[]);
    let base = Config::delivery()
        .set("smarthost", sink.addr())
        .set("qualify_domain", "dkim.test");
    let sp = Spool::new("dkim-keygen", &base);
    let mut zone = DnsZone::new();
    let mut lines = String::new();
    for (domain, selector, flag) in [
        ("dkim.test", "kg", None),
        ("ed.test", "kg", Some("--ed25519")),
    ] {
        let mut args = vec!["dkim-keygen", domain, selector];
        args.extend(flag);
        let out = spoolctl(&sp, &args);
        assert!(out.success(), "{}", out.stderr);
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with("dkim_key = "))
            .unwrap();
        lines.push_str(&format!("{line}\n"));
        let file = line.split_whitespace().last().unwrap();
        assert_eq!(
            file,
            sp.root()
                .join(format!("spoolmail/dkim/{domain}.{selector}.pem"))
                .to_str()
                .unwrap()
        );
        let meta = std::fs::metadata(file).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!(
            meta.gid(),
            std::fs::metadata(sp.queue_dir().parent().unwrap())
                .unwrap()
                .gid()
        );
        // The record as a zone file takes it: NAME. IN TXT ( "..." "..." ).
        let record = out.stdout.lines().find(|l| l.contains(" IN TXT ")).unwrap();
        assert!(
            record.starts_with(&format!(
                "{selector}._domainkey.{domain}. IN TXT ( \"v=DKIM1; k="
            )),
            "{record}"
        );
        let text: String = record.split('"').skip(1).step_by(2).collect();
        zone = zone.txt(&format!("{selector}._domainkey.{domain}"), &text);
        // Never over an existing key.
        let again = spoolctl(&sp, &args);
        assert_eq!(again.code(), Some(64), "{}", again.stderr);
        assert!(again.stderr.contains("exists already"), "{}", again.stderr);
    }
    let dns = Dns::start(&zone);
    sp.configure(&base.clone().lines(&lines));
    sp.run_ok(&["bob@example.net"], EIGHT_BIT);
    let ed = String::from_utf8_lossy(EIGHT_BIT).replace("alice@dkim.test", "a@ed.test");
    sp.run_ok(&["bob@example.net"], ed.as_bytes());
    sp.pass(&[]);
    sp.assert_delivered();
    let msgs = received(&sink, 2);
    let v = verify(&dns, &[&msgs[0].data, &msgs[1].data]);
    let mut algorithms: Vec<String> = v.iter().map(|v| v.tag("a")).collect();
    algorithms.sort();
    assert_eq!(algorithms, ["ed25519-sha256", "rsa-sha256"]);
    assert!(
        v.iter().all(|v| v.ok),
        "{:?}",
        v.iter().map(|v| &v.error).collect::<Vec<_>>()
    );
    // spoolctl check finds nothing wrong with the keys it made, and names
    // one that is missing.
    let check = spoolctl(&sp, &["check"]);
    assert!(!check.stdout.contains("dkim_key"), "{}", check.stdout);
    sp.configure(
        &base
            .clone()
            .lines(&lines)
            .set("dkim_key", "gone.test s /nonexistent/k.pem"),
    );
    let check = spoolctl(&sp, &["check"]);
    assert!(
        check
            .stdout
            .contains("/nonexistent/k.pem: dkim_key of gone.test: No such file"),
        "{}",
        check.stdout
    );
    sp.configure(&base.lines(&lines));
    // spoolctl config lists every dkim_key line.
    let config = spoolctl(&sp, &["config"]);
    assert_eq!(
        config.stdout.matches("dkim_key = ").count(),
        2,
        "{}",
        config.stdout
    );
}

/// The spool's group in the `users=` test (the setgid binary's, in a
/// real install).
const SPOOL_GROUP: u32 = 4343;

/// Keys for dkim.test (open to all) and sub.dkim.test (`users=USERS`).
fn sub_restricted(users: &str) -> Setup {
    let mut s = setup(&[
        ("dkim.test", Kind::Ed25519),
        ("sub.dkim.test", Kind::Ed25519),
    ]);
    s.lines = (s.lines.lines())
        .map(|l| match l.starts_with("dkim_key = sub.dkim.test ") {
            true => format!("{l} users={users}\n"),
            false => format!("{l}\n"),
        })
        .collect();
    s
}

/// The log says a message of `uid` went out unsigned for `domain`'s key.
fn assert_logged_unsigned(sp: &Spool, domain: &str, uid: u32) {
    let line = format!(
        "sent unsigned: the dkim_key of {domain} signs only the mail of its users=, \
         and uid {uid} is not among them"
    );
    assert!(sp.log().contains(&line), "{}", sp.log());
}

#[test]
fn a_key_with_users_signs_only_their_mail_roots_and_notices() {
    if !harness::is_root() {
        eprintln!("skipped: running as other users needs root");
        return;
    }
    // uid 1 and 2 have login names (daemon and bin on most systems).
    let (allowed, other) = (1, 2);
    let name = harness::user_name(allowed);
    let s = sub_restricted(&format!("{name},nosuchuser"));
    assert!(
        s.lines.contains(&format!(" users={name},nosuchuser\n")),
        "{}",
        s.lines
    );
    let relay = Smtp::faulty("reject-rcpt", &[]);
    let sp = Spool::new(
        "dkim-users",
        &Config::delivery()
            .set("smarthost", relay.addr())
            .set("qualify_domain", "sub.dkim.test")
            .lines(&s.lines),
    );
    sp.share_queue_with_group(SPOOL_GROUP);
    let message = |from: &str, subject: &str| {
        format!("From: {from}\nTo: x@example.net\nSubject: {subject}\n\nbody\n").into_bytes()
    };
    let submit = |uid: u32, from: &str, rcpt: &str, subject: &str| {
        let args = ["-f", "sender@example.net", rcpt];
        let out = sp.run_as(uid, SPOOL_GROUP, &args, &message(from, subject));
        assert!(out.success(), "{uid}: {}", out.stderr);
    };
    submit(allowed, "a@sub.dkim.test", "ok@example.net", "allowed");
    submit(other, "a@sub.dkim.test", "ok@example.net", "other");
    submit(
        other,
        "a@dkim.test",
        "ok@example.net",
        "other, the open key",
    );
    // Its bounce, From MAILER-DAEMON@sub.dkim.test, is spoolmail's own.
    submit(other, "a@dkim.test", "bad@example.net", "bounced");
    sp.run_ok(&["ok@example.net"], &message("a@sub.dkim.test", "root"));
    sp.pass(&[]);
    sp.pass(&[]);
    let msgs = received(&relay, 5);
    let data: Vec<&[u8]> = msgs.iter().map(|m| &m.data[..]).collect();
    let verdicts = verify(&s.dns, &data);
    let mut got: Vec<(String, usize, String)> = (msgs.iter().zip(&verdicts))
        .map(|(m, v)| {
            let text = String::from_utf8_lossy(&m.data);
            let what = if m.mail_from.is_empty() {
                "the bounce".to_string()
            } else {
                let subject = text.lines().find_map(|l| l.strip_prefix("Subject: "));
                subject.unwrap_or_default().to_string()
            };
            assert!(v.signatures == 0 || v.ok, "{what}: {}", v.error);
            (what, v.signatures, v.tag("d"))
        })
        .collect();
    got.sort();
    let want = [
        ("allowed", 1, "sub.dkim.test"),
        ("other", 0, ""),
        ("other, the open key", 1, "dkim.test"),
        ("root", 1, "sub.dkim.test"),
        ("the bounce", 1, "sub.dkim.test"),
    ];
    let want: Vec<(String, usize, String)> = (want.iter())
        .map(|(w, n, d)| (w.to_string(), *n, d.to_string()))
        .collect();
    assert_eq!(got, want, "{}", sp.log());
    assert_logged_unsigned(&sp, "sub.dkim.test", other);
}

#[test]
fn a_domain_with_an_rsa_and_an_ed25519_key_signs_twice_and_each_verifies() {
    let dir = TempDir::new("dkim-dual");
    let (rsa, rsa_record) = make_key(dir.path(), "rsa", Kind::Rsa);
    let (ed, ed_record) = make_key(dir.path(), "ed", Kind::Ed25519);
    let dns = Dns::start(
        &DnsZone::new()
            .txt("r2026._domainkey.dkim.test", &rsa_record)
            .txt("e2026._domainkey.dkim.test", &ed_record),
    );
    let lines = format!(
        "dkim_key = dkim.test r2026 {}\ndkim_key = dkim.test e2026 {}\n",
        rsa.display(),
        ed.display()
    );
    let s = Setup {
        _dir: dir,
        dns,
        lines,
    };
    let sink = Smtp::sink(&[]);
    let sp = spool("dkim-dual", &sink, &s, "");
    sp.run_ok(&["bob@example.net"], EIGHT_BIT);
    sp.pass(&[]);
    let msgs = received(&sink, 1);
    let v = verify(&s.dns, &[&msgs[0].data]);
    assert_eq!(
        v[0].signatures,
        2,
        "{}",
        String::from_utf8_lossy(&msgs[0].data)
    );
    let each: Vec<(bool, &str, &str)> = (v[0].each.iter())
        .map(|(ok, a, sel, error)| {
            assert!(*ok, "{a} {sel}: {error}");
            (*ok, a.as_str(), sel.as_str())
        })
        .collect();
    // In the config's order, the first field first.
    assert_eq!(
        each,
        [
            (true, "rsa-sha256", "r2026"),
            (true, "ed25519-sha256", "e2026")
        ]
    );
    // Either verifies with the other's key gone from DNS: neither covers
    // the other.
    for (gone, left) in [("r2026", "ed25519-sha256"), ("e2026", "rsa-sha256")] {
        let record = if gone == "r2026" {
            &ed_record
        } else {
            &rsa_record
        };
        let kept = if gone == "r2026" { "e2026" } else { "r2026" };
        let only = Dns::start(&DnsZone::new().txt(&format!("{kept}._domainkey.dkim.test"), record));
        let v = verify(&only, &[&msgs[0].data]);
        let ok: Vec<&str> = (v[0].each.iter())
            .filter(|e| e.0)
            .map(|e| e.1.as_str())
            .collect();
        assert_eq!(ok, [left], "with {gone} gone");
    }
}

#[test]
fn dkim_check_says_whether_each_record_holds_its_key() {
    let dir = TempDir::new("dkim-check");
    let (good, good_record) = make_key(dir.path(), "good", Kind::Rsa);
    let (swapped, _) = make_key(dir.path(), "swapped", Kind::Ed25519);
    let (_, other_record) = make_key(dir.path(), "other", Kind::Ed25519);
    let (absent, _) = make_key(dir.path(), "absent", Kind::Ed25519);
    let dns = Dns::start(
        &DnsZone::new()
            .txt("s1._domainkey.good.test", &good_record)
            .txt("s1._domainkey.swapped.test", &other_record)
            .servfail("failing.test"),
    );
    let line = |domain: &str, file: &Path| format!("dkim_key = {domain} s1 {}\n", file.display());
    let base = Config::delivery().set("dns_server", dns.addr());
    let all = format!(
        "{}{}{}",
        line("good.test", &good),
        line("swapped.test", &swapped),
        line("absent.test", &absent)
    );
    let sp = Spool::new("dkim-check", &base.clone().lines(&all));
    let out = spoolctl(&sp, &["dkim-check"]);
    assert_eq!(out.code(), Some(78), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            "s1._domainkey.good.test: ok, rsa-sha256",
            "s1._domainkey.swapped.test: the record's public key (p=) is not this key's",
            "s1._domainkey.absent.test: no TXT record: publish the one `spoolctl dkim-keygen` printed",
        ],
        "{}",
        out.stderr
    );
    // Every record right: exit 0.
    sp.configure(&base.clone().lines(&line("good.test", &good)));
    let out = spoolctl(&sp, &["dkim-check"]);
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    // A record that cannot be looked up now: exit 75, try again later.
    let failing = line("failing.test", &good);
    sp.configure(
        &base
            .clone()
            .lines(&format!("{}{failing}", line("good.test", &good))),
    );
    let out = spoolctl(&sp, &["dkim-check"]);
    assert_eq!(out.code(), Some(75), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("s1._domainkey.failing.test: cannot be looked up: "),
        "{}",
        out.stdout
    );
    // No key at all: a config problem, said on stderr.
    sp.configure(&base);
    let out = spoolctl(&sp, &["dkim-check"]);
    assert_eq!(out.code(), Some(78), "{}", out.stderr);
    assert!(
        out.stderr.contains("no dkim_key: nothing to check"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_names_a_users_entry_that_is_no_local_user() {
    let mut s = setup(&[("dkim.test", Kind::Ed25519)]);
    s.lines = s.lines.replace('\n', " users=root,nosuch-user\n");
    let sink = Smtp::sink(&[]);
    let sp = spool("dkim-check-users", &sink, &s, "");
    let out = spoolctl(&sp, &["check"]);
    assert!(
        out.stdout.contains(
            "dkim_key of dkim.test (sel): users= names nosuch-user, who is no local user"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("names root"), "{}", out.stdout);
    assert_eq!(out.code(), Some(78), "{}", out.stdout);
}

/// A From that names a `users=` key's domain anywhere (a second address,
/// a second From field, an obsolete route) gets no signature of another
/// key from a user the key does not sign for: a receiver may read that
/// domain as the author's, and the other key's signature would align
/// with it (relaxed alignment: `dkim.test` aligns with `sub.dkim.test`).
#[test]
fn a_from_naming_a_users_key_domain_is_not_signed_with_another_key() {
    if !harness::is_root() {
        eprintln!("skipped: running as other users needs root");
        return;
    }
    let (allowed, other) = (1, 2);
    let name = harness::user_name(allowed);
    let s = sub_restricted(&name);
    let relay = Smtp::sink(&[]);
    let sp = Spool::new(
        "dkim-users-from",
        &Config::delivery()
            .set("smarthost", relay.addr())
            .set("qualify_domain", "dkim.test")
            .lines(&s.lines),
    );
    sp.share_queue_with_group(SPOOL_GROUP);
    let froms = [
        "From: a@dkim.test, ceo@sub.dkim.test",
        "From: a@dkim.test\nFrom: ceo@sub.dkim.test",
        "From: <@sub.dkim.test:a@dkim.test>",
        "From: a@dkim.test (ceo@SUB.dkim.test.)",
    ];
    for (uid, who) in [(allowed, "allowed"), (other, "other")] {
        for (i, from) in froms.iter().enumerate() {
            let message = format!("{from}\nTo: x@example.net\nSubject: {who} {i}\n\nbody\n");
            let args = ["-f", "sender@example.net", "ok@example.net"];
            let out = sp.run_as(uid, SPOOL_GROUP, &args, message.as_bytes());
            assert!(out.success(), "{uid}: {}", out.stderr);
        }
    }
    sp.pass(&[]);
    let msgs = received(&relay, 2 * froms.len());
    let data: Vec<&[u8]> = msgs.iter().map(|m| &m.data[..]).collect();
    let verdicts = verify(&s.dns, &data);
    let mut got: Vec<(String, usize, String)> = (msgs.iter().zip(&verdicts))
        .map(|(m, v)| {
            let text = String::from_utf8_lossy(&m.data);
            let subject = text.lines().find_map(|l| l.strip_prefix("Subject: "));
            let subject = subject.unwrap_or_default().to_string();
            assert!(v.signatures == 0 || v.ok, "{subject}: {}", v.error);
            (subject, v.signatures, v.tag("d"))
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, usize, String)> = Vec::new();
    for i in 0..froms.len() {
        want.push((format!("allowed {i}"), 1, "dkim.test".into()));
        want.push((format!("other {i}"), 0, String::new()));
    }
    want.sort();
    assert_eq!(got, want, "{}", sp.log());
    assert_logged_unsigned(&sp, "sub.dkim.test", other);
}

/// Two keys of one domain (RSA and Ed25519) over every shape of body: each
/// signature verifies alone in each. A key of the two that cannot be used
/// holds the mail, as one key does: none goes out with a signature fewer.
#[test]
fn two_keys_sign_every_body_shape_and_one_that_cannot_sign_holds_the_mail() {
    let dir = TempDir::new("dkim-dual-shapes");
    let (rsa, rsa_record) = make_key(dir.path(), "rsa", Kind::Rsa);
    let (ed, ed_record) = make_key(dir.path(), "ed", Kind::Ed25519);
    let dns = Dns::start(
        &DnsZone::new()
            .txt("r._domainkey.dkim.test", &rsa_record)
            .txt("e._domainkey.dkim.test", &ed_record),
    );
    let missing = dir.path().join("later.pem");
    let lines = format!(
        "dkim_key = dkim.test r {}\ndkim_key = dkim.test e {}\n\
         dkim_key = half.test r {}\ndkim_key = half.test e {}\n",
        rsa.display(),
        ed.display(),
        rsa.display(),
        missing.display()
    );
    let s = Setup {
        _dir: dir,
        dns,
        lines,
    };
    let sink = Smtp::sink(&[]);
    let sp = spool("dkim-dual-shapes", &sink, &s, "");
    let head =
        |subject: &str| format!("From: alice@dkim.test\nTo: bob@example.net\nSubject: {subject}\n");
    let shapes: [(&str, Vec<u8>); 5] = [
        ("empty", (head("empty") + "\n").into_bytes()),
        ("no body", head("no body").into_bytes()),
        (
            "no final newline",
            (head("no final newline") + "\nlast  line").into_bytes(),
        ),
        (
            "long",
            (head("long") + &format!("\n{}caf\u{e9}\nend\n", "x".repeat(3000))).into_bytes(),
        ),
        ("8bit", EIGHT_BIT.to_vec()),
    ];
    for (_, message) in &shapes {
        sp.run_ok(&["bob@example.net"], message);
    }
    sp.pass(&[]);
    let msgs = received(&sink, shapes.len());
    for (what, _) in &shapes {
        let m = (msgs.iter())
            .find(|m| {
                let text = String::from_utf8_lossy(&m.data);
                let subject = text.lines().find_map(|l| l.strip_prefix("Subject: "));
                subject.is_some_and(|s| s == *what || (*what == "8bit" && s.starts_with("Gr")))
            })
            .unwrap_or_else(|| panic!("{what} not received"));
        let v = verify(&s.dns, &[&m.data]);
        let each: Vec<(bool, &str)> = (v[0].each.iter())
            .map(|(ok, a, _, error)| {
                assert!(*ok, "{what}: {a}: {error}");
                (*ok, a.as_str())
            })
            .collect();
        assert_eq!(
            each,
            [(true, "rsa-sha256"), (true, "ed25519-sha256")],
            "{what}"
        );
    }

    // half.test's Ed25519 key is missing: its mail waits (not sent with
    // the RSA signature alone) until the key is there.
    sp.run_ok(
        &["bob@example.net"],
        b"From: a@half.test\nSubject: half\n\nx\n",
    );
    sp.pass(&[]);
    sp.assert_deferred("cannot read dkim_key");
    assert_eq!(sink.message_count(), shapes.len());
}
