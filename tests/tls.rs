//! STARTTLS, implicit TLS and AUTH against real TLS servers on loopback
//! (aiosmtpd with certificates made here by a test CA; the scripted server
//! for handshakes that fail, injections and AUTH offered in the clear).
//! Each policy's outcome is checked: delivered, or deferred with its reason
//! in mailq and the log, never bounced; and no secret crosses a connection
//! it should not, nor reaches a log, a transcript or the queue.

mod harness;

use harness::{Cert, Config, Dns, DnsZone, Fixture, Pki, Smtp, Spool};
use spoolmail::mime::base64;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";

/// A spool for delivery tests: `config`, lines added to the delivery config
/// (spool, log, queue-only submissions, short time-outs, a retry schedule
/// that is always due).
fn spool(config: &str) -> Spool {
    Spool::new("tls", &Config::delivery().lines(config))
}

impl Spool {
    /// The delivery config with `config` added, instead of what it was.
    fn reconfigure(&self, config: &str) {
        self.configure(&Config::delivery().lines(config));
    }

    /// Submits a message from alice to `rcpt`.
    fn submit(&self, rcpt: &str) {
        let msg = format!("From: alice@example.org\nTo: {rcpt}\nSubject: tls\n\nover TLS\n");
        self.run_ok(&["-f", "alice@example.org", rcpt], msg.as_bytes());
    }
}

/// sink.py on a loopback address of its own with a certificate `cert_for`
/// makes for that address, and more arguments.
fn tls_sink(cert_for: impl Fn(&str) -> Cert, extra: &[&str]) -> Smtp {
    let host = harness::loopback_host();
    let cert = cert_for(&host);
    let mut args = cert.sink_args();
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Smtp::start(Fixture::Sink, &host, 0, &args).unwrap_or_else(|e| panic!("{e}"))
}

fn verified_line(sink: &Smtp) -> String {
    format!(
        "Verified TLS connection established to {h}[{h}]:{p}: TLSv1.3 with cipher TLS13_",
        h = sink.host,
        p = sink.port
    )
}

/// A spool with `config` that has relayed one message from alice to bob
/// (submitted, then one pass).
fn relay(config: &str) -> Spool {
    let s = spool(config);
    s.submit("bob@example.net");
    s.pass(&[]);
    s
}

/// The same, with alice's credentials and `ca` to verify the server with
/// added to `config`, and `args` for the pass; the pass's stderr too.
fn relay_as_alice(config: &str, ca: &Path, args: &[&str]) -> (Spool, String) {
    let s = spool("");
    s.reconfigure(&format!("{config}{}", auth_config(&s, ca, PASSWORD)));
    s.submit("bob@example.net");
    let stderr = s.pass(args).stderr;
    (s, stderr)
}

fn auth_config(s: &Spool, ca: &Path, password: &str) -> String {
    let pw = s.secret("password", &format!("{password}\n"));
    format!(
        "tls_ca_file = {}\nauth_user = alice\nauth_password_file = {}\n",
        ca.display(),
        pw.display()
    )
}

#[test]
fn starttls_and_auth_with_a_trusted_ca_under_required() {
    let pki = Pki::new();
    let user_pass = format!("--auth=alice:{PASSWORD}");
    let sink = tls_sink(|h| pki.server(&[h]), &[&user_pass]);
    let (s, _) = relay_as_alice(
        &format!("smarthost = {}\ntls = required\n", sink.addr()),
        &pki.ca,
        &[],
    );
    let got = sink.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{}", s.log());
    assert_eq!(got[0].tls, "TLSv1.3");
    assert_eq!(got[0].auth, "alice");
    assert_eq!(got[0].helo, "client.test", "EHLO again after STARTTLS");
    s.assert_delivered();
    let log = s.log();
    assert!(log.contains(&verified_line(&sink)), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
}

#[test]
fn mx_host_verified_by_its_name() {
    let pki = Pki::new();
    let sink = tls_sink(|_| pki.server(&["mx1.mx.test"]), &[]);
    let dns = Dns::start(
        &DnsZone::new()
            .mx("mx.test", 10, "mx1.mx.test")
            .host("mx1.mx.test", &[&sink.host]),
    );
    let s = spool(&format!(
        "dns_server = {}\nsmtp_port = {}\ntls = required\ntls_ca_file = {}\n",
        dns.addr(),
        sink.port,
        pki.ca.display()
    ));
    s.submit("user@mx.test");
    s.pass(&[]);
    assert_eq!(
        sink.wait_for_messages(1, Duration::from_secs(10))[0].tls,
        "TLSv1.3"
    );
    s.assert_delivered();
    let expected = format!(
        "Verified TLS connection established to mx1.mx.test[{}]:{}: TLSv1.3",
        sink.host, sink.port
    );
    assert!(s.log().contains(&expected), "{}", s.log());
}

#[test]
fn implicit_tls_with_auth_login() {
    let pki = Pki::new();
    let user_pass = format!("--auth=alice:{PASSWORD}");
    let sink = tls_sink(
        |h| pki.server(&[h]),
        &["--implicit-tls", &user_pass, "--auth-mechanisms=LOGIN"],
    );
    let (s, transcript) = relay_as_alice(
        &format!("smarthost = {}\nsmarthost_tls = implicit\n", sink.addr()),
        &pki.ca,
        &["-v"],
    );
    let got = sink.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(
        (got[0].tls.as_str(), got[0].auth.as_str()),
        ("TLSv1.3", "alice")
    );
    s.assert_delivered();
    assert!(s.log().contains(&verified_line(&sink)), "{}", s.log());
    assert!(transcript.contains(">>> AUTH LOGIN ***"), "{transcript}");
    assert!(!transcript.contains("STARTTLS"), "{transcript}");
    assert!(!transcript.contains(PASSWORD), "{transcript}");
}

#[test]
fn xoauth2_bearer_token() {
    let pki = Pki::new();
    let sink = tls_sink(
        |h| pki.server(&[h]),
        &["--auth=alice:ya29.token-of-the-day"],
    );
    let s = spool("");
    let token = s.secret("token", "ya29.token-of-the-day\n");
    s.reconfigure(&format!(
        "smarthost = {}\ntls_ca_file = {}\nauth_user = alice\nauth_xoauth2_token_file = {}\n",
        sink.addr(),
        pki.ca.display(),
        token.display()
    ));
    s.submit("bob@example.net");
    let transcript = s.pass(&["-v"]).stderr;
    assert_eq!(
        sink.wait_for_messages(1, Duration::from_secs(10))[0].auth,
        "alice"
    );
    s.assert_delivered();
    assert!(transcript.contains(">>> AUTH XOAUTH2 ***"), "{transcript}");
    assert!(!transcript.contains("ya29"), "{transcript}");

    // An expired token: the server's 334 error, an empty answer, its 535.
    fs::write(&token, "ya29.token-of-yesterday\n").unwrap();
    s.submit("bob@example.net");
    let transcript = s.pass(&["-v"]).stderr;
    s.assert_deferred("SASL authentication failed");
    assert!(transcript.contains("<<< 334 "), "{transcript}");
    assert!(!transcript.contains("ya29"), "{transcript}");
    assert_eq!(sink.message_count(), 1);
}

#[test]
fn server_without_starttls() {
    // Opportunistic (the default): plain text.
    let sink = Smtp::sink(&[]);
    let s = relay(&format!("smarthost = {}\n", sink.addr()));
    assert_eq!(
        sink.wait_for_messages(1, Duration::from_secs(10))[0].tls,
        ""
    );
    s.assert_delivered();
    assert!(
        !s.log().contains("TLS connection established"),
        "{}",
        s.log()
    );

    // Required: deferred with the reason, never sent in plain text.
    let s = relay(&format!("smarthost = {}\ntls = required\n", sink.addr()));
    s.assert_deferred("TLS is required, but host");
    assert!(
        s.mailq().contains("does not offer STARTTLS"),
        "{}",
        s.mailq()
    );
    assert_eq!(sink.message_count(), 1, "nothing more was sent");
}

#[test]
fn certificate_that_does_not_verify() {
    let pki = Pki::new();
    let sink = tls_sink(|h| pki.self_signed(&[h]), &[]);
    // Opportunistic: encrypted, delivered, and logged as Untrusted.
    let s = relay(&format!(
        "smarthost = {}\ntls_ca_file = {}\n",
        sink.addr(),
        pki.ca.display()
    ));
    assert_eq!(
        sink.wait_for_messages(1, Duration::from_secs(10))[0].tls,
        "TLSv1.3"
    );
    s.assert_delivered();
    let untrusted = format!(
        "Untrusted TLS connection established to {h}[{h}]:{p}: TLSv1.3",
        h = sink.host,
        p = sink.port
    );
    assert!(s.log().contains(&untrusted), "{}", s.log());

    // Required: deferred, the reason in mailq.
    let s = relay(&format!(
        "smarthost = {}\ntls = required\ntls_ca_file = {}\n",
        sink.addr(),
        pki.ca.display()
    ));
    s.assert_deferred("did not verify");
    assert!(s.mailq().contains("unknown issuer"), "{}", s.mailq());
    // The hint fits the setting: tls_ca_file is set, so it is the suspect.
    assert!(
        s.mailq().contains("check that tls_ca_file holds the CA"),
        "{}",
        s.mailq()
    );
    assert_eq!(sink.message_count(), 1);
}

/// A server that presents the CA certificate itself (a common mistake with
/// a home-made CA) is refused in words, not as
/// `Other(OtherError(CaUsedAsEndEntity))`, with what to do about it.
#[test]
fn a_ca_certificate_as_the_server_certificate_is_said_in_words() {
    let pki = Pki::new();
    let ca_as_server = Cert {
        cert: pki.ca.clone(),
        key: pki.dir.join("ca.key"),
    };
    let sink = tls_sink(|_| ca_as_server.clone(), &[]);
    let s = relay(&format!(
        "smarthost = {}\ntls = required\ntls_ca_file = {}\n",
        sink.addr(),
        pki.ca.display()
    ));
    s.assert_deferred("did not verify");
    let mailq = s.mailq();
    assert!(mailq.contains("presents a CA certificate"), "{mailq}");
    assert!(mailq.contains("signed by the CA in tls_ca_file"), "{mailq}");
    assert!(
        !mailq.contains("OtherError") && !mailq.contains("Other("),
        "{mailq}"
    );
    assert_eq!(sink.message_count(), 0);
}

#[test]
fn certificate_for_another_name() {
    let pki = Pki::new();
    let sink = tls_sink(|_| pki.server(&["other.test"]), &[]);
    let s = relay(&format!(
        "smarthost = {}\ntls_ca_file = {}\n",
        sink.addr(),
        pki.ca.display()
    ));
    s.assert_delivered();
    let trusted = format!("Trusted TLS connection established to {}", sink.host);
    assert!(s.log().contains(&trusted), "{}", s.log());

    let s = relay(&format!(
        "smarthost = {}\ntls = required\ntls_ca_file = {}\n",
        sink.addr(),
        pki.ca.display()
    ));
    s.assert_deferred(&format!(
        "certificate is for other.test, not for {}",
        sink.host
    ));
}

#[test]
fn failed_handshake_falls_back_to_plain_text_in_the_same_pass() {
    for script in ["starttls-garbage", "starttls-close"] {
        let server = Smtp::faulty(script, &[]);
        let s = relay(&format!("smarthost = {}\n", server.addr()));
        assert_eq!(
            server.wait_for_messages(1, Duration::from_secs(10)).len(),
            1,
            "{script}"
        );
        s.assert_delivered();
        assert!(server.session_log(1).contains("C: STARTTLS"), "{script}");
        assert!(
            !server.session_log(2).contains("C: STARTTLS"),
            "{script}: {}",
            server.session_log(2)
        );
        let log = s.log();
        assert!(log.contains("TLS handshake with"), "{script}: {log}");
        assert!(log.contains("trying again without TLS"), "{script}: {log}");

        // Required: no fallback.
        let s = relay(&format!("smarthost = {}\ntls = required\n", server.addr()));
        s.assert_deferred("TLS handshake with");
        assert_eq!(server.message_count(), 1, "{script}");
    }
}

#[test]
fn starttls_refused_with_454() {
    let server = Smtp::faulty("starttls-454", &[]);
    let s = relay(&format!("smarthost = {}\n", server.addr()));
    s.assert_delivered();
    assert_eq!(
        server.connections(),
        1,
        "went on in plain text on the same connection"
    );
    assert!(s.log().contains("said 454 4.7.0"), "{}", s.log());

    let s = relay(&format!("smarthost = {}\ntls = required\n", server.addr()));
    s.assert_deferred("TLS is required, but host");
}

#[test]
fn data_pipelined_after_the_starttls_reply_is_refused() {
    let server = Smtp::faulty("starttls-inject", &[]);
    let s = relay(&format!("smarthost = {}\n", server.addr()));
    s.assert_deferred("sent data after its 220 reply to STARTTLS");
    assert_eq!(server.message_count(), 0);
    let transcript = server.session_log(1);
    let after = transcript
        .split("C: STARTTLS")
        .nth(1)
        .expect("STARTTLS sent");
    assert!(
        !after.contains("C: "),
        "the client sent nothing after STARTTLS:\n{transcript}"
    );
}

#[test]
fn no_password_over_plain_text() {
    let server = Smtp::faulty("auth-plain", &[]);
    let s = spool("");
    let pw = s.secret("password", &format!("{PASSWORD}\n"));
    let config = format!(
        "smarthost = {}\nauth_user = alice\nauth_password_file = {}\n",
        server.addr(),
        pw.display()
    );
    s.reconfigure(&config);
    s.submit("bob@example.net");
    s.pass(&[]);
    s.assert_deferred("not sending credentials to");
    assert_eq!(server.message_count(), 0);
    let transcript = server.session_log(1);
    assert!(
        transcript.contains("AUTH PLAIN LOGIN"),
        "it was offered:\n{transcript}"
    );
    assert!(!transcript.contains("C: AUTH"), "{transcript}");
    let b64 = base64(format!("\0alice\0{PASSWORD}").as_bytes());
    assert!(
        !transcript.contains(PASSWORD) && !transcript.contains(&b64),
        "{transcript}"
    );

    // Only when the admin says so.
    s.reconfigure(&format!("{config}auth_allow_plaintext = yes\n"));
    s.pass(&[]);
    s.assert_delivered();
    assert!(
        server
            .session_log(2)
            .contains(&format!("C: AUTH PLAIN {b64}")),
        "{}",
        server.session_log(2)
    );
}

#[test]
fn no_password_over_tls_that_did_not_verify() {
    let pki = Pki::new();
    let user_pass = format!("--auth=alice:{PASSWORD}");
    let sink = tls_sink(|h| pki.self_signed(&[h]), &[&user_pass]);
    let (s, _) = relay_as_alice(&format!("smarthost = {}\n", sink.addr()), &pki.ca, &[]);
    s.assert_deferred("not sending credentials to");
    assert!(s.mailq().contains("did not verify"), "{}", s.mailq());
    assert_eq!(sink.message_count(), 0);
}

#[test]
fn bad_password_defers_and_never_bounces() {
    let pki = Pki::new();
    let sink = tls_sink(|h| pki.server(&[h]), &["--auth=alice:the-right-one"]);
    let s = spool("");
    s.reconfigure(&format!(
        "smarthost = {}\ntls = required\n{}",
        sink.addr(),
        auth_config(&s, &pki.ca, PASSWORD)
    ));
    s.submit("bob@example.net");
    for _ in 0..2 {
        s.pass(&[]);
    }
    s.assert_deferred("SASL authentication failed");
    assert!(s.mailq().contains("535"), "{}", s.mailq());
    assert_eq!(sink.message_count(), 0);
    let b64 = base64(format!("\0alice\0{PASSWORD}").as_bytes());
    for (what, text) in [
        ("log", s.log()),
        ("mailq", s.mailq()),
        ("queue", s.queue_text()),
    ] {
        assert!(
            !text.contains(PASSWORD) && !text.contains(&b64),
            "{what}: {text}"
        );
    }
}

#[test]
fn verbose_transcript_hides_the_secret() {
    let pki = Pki::new();
    let user_pass = format!("--auth=alice:{PASSWORD}");
    let sink = tls_sink(|h| pki.server(&[h]), &[&user_pass]);
    let (s, transcript) =
        relay_as_alice(&format!("smarthost = {}\n", sink.addr()), &pki.ca, &["-v"]);
    s.assert_delivered();
    assert!(transcript.contains(">>> STARTTLS"), "{transcript}");
    assert!(transcript.contains(">>> AUTH PLAIN ***"), "{transcript}");
    assert!(transcript.contains("<<< 235"), "{transcript}");
    let b64 = base64(format!("\0alice\0{PASSWORD}").as_bytes());
    assert!(
        !transcript.contains(PASSWORD) && !transcript.contains(&b64),
        "{transcript}"
    );
}

#[test]
fn password_file_others_can_read_is_a_config_error() {
    let s = spool("");
    let pw = s.secret("password", "secret\n");
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o644)).unwrap();
    s.reconfigure(&format!(
        "smarthost = relay.test\nauth_user = alice\nauth_password_file = {}\n",
        pw.display()
    ));
    let out = s.run(&["-bp"], b"");
    assert_eq!(out.status.code(), Some(78));
    let err = out.stderr;
    let line = fs::read_to_string(&s.conf)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("auth_password_file"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("{}:{line}: auth_password_file", s.conf.display())),
        "{err}"
    );
    assert!(
        err.contains("0644") && err.contains("others can read"),
        "{err}"
    );
}

/// A password file only root can read (0600 root:root, the msmtp and
/// Postfix habit) would hold every other user's mail: it is refused where
/// the config is checked, with the fix, while submissions still queue.
#[test]
fn password_file_only_root_can_read_is_refused_with_the_fix() {
    if !harness::is_root() {
        eprintln!("skipped: a root-owned password file needs root");
        return;
    }
    let s = spool("");
    let pw = s.secret("password", "secret\n");
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
    s.reconfigure(&format!(
        "smarthost = relay.test\nauth_user = alice\nauth_password_file = {}\n",
        pw.display()
    ));
    let out = s.run(&["-bp"], b"");
    assert_eq!(out.status.code(), Some(78));
    assert!(
        out.stderr.contains("only root can read it"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("chmod 0640"), "{}", out.stderr);
    assert!(
        out.stderr.contains("chown root:spoolmail"),
        "{}",
        out.stderr
    );
    // A submission still queues, with the same words as a warning.
    s.submit("bob@example.net");
    assert_eq!(s.queued().len(), 1);
    // 0640 with the spool's group is what it asks for, and is accepted.
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(s.run(&["-bp"], b"").status.code(), Some(0));
}

#[test]
fn keys_that_only_make_sense_together() {
    let s = spool("");
    let pw = s.secret("password", "secret\n");
    for (config, error) in [
        (
            format!("auth_user = alice\nauth_password_file = {}\n", pw.display()),
            "auth_user is only used with a smarthost",
        ),
        (
            "smarthost = relay.test\nauth_user = alice\n".to_string(),
            "auth_user needs auth_password_file",
        ),
        (
            "tls_cert_file = /etc/client.pem\n".to_string(),
            "tls_cert_file and tls_key_file go together",
        ),
        (
            "smarthost_tls = maybe\n".to_string(),
            "smarthost_tls: `maybe` must be starttls or implicit",
        ),
        (
            "auth_allow_plaintext = sometimes\n".to_string(),
            "auth_allow_plaintext: `sometimes` must be yes or no",
        ),
    ] {
        s.reconfigure(&config);
        let out = s.run(&["-bp"], b"");
        let err = out.stderr;
        assert_eq!(out.status.code(), Some(78), "{config}: {err}");
        assert!(err.contains(error), "{config}: {err}");
    }
}

#[test]
fn tls_connections_are_reused() {
    let pki = Pki::new();
    let sink = tls_sink(|h| pki.server(&[h]), &[]);
    let s = spool(&format!(
        "smarthost = {}\ntls = required\ntls_ca_file = {}\nmax_per_destination = 2\n",
        sink.addr(),
        pki.ca.display()
    ));
    for _ in 0..20 {
        s.submit("bob@example.net");
    }
    s.pass(&[]);
    let got = sink.wait_for_messages(20, Duration::from_secs(20));
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|m| m.tls == "TLSv1.3"));
    assert!(
        sink.connections() <= 2,
        "{} handshakes for 20 messages",
        sink.connections()
    );
    s.assert_delivered();
}

#[test]
fn client_certificate_presented_when_configured() {
    let pki = Pki::new();
    let ca = pki.ca.display().to_string();
    let sink = tls_sink(|h| pki.server(&[h]), &["--client-ca", &ca]);
    let client = pki.server(&["client.test"]);
    let s = spool("");
    s.reconfigure(&format!(
        "smarthost = {}\ntls = required\ntls_ca_file = {ca}\ntls_cert_file = {}\ntls_key_file = {}\n",
        sink.addr(),
        client.cert.display(),
        client.key.display()
    ));
    s.submit("bob@example.net");
    s.pass(&[]);
    let got = sink.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{}", s.log());
    assert_eq!(
        got[0].client_cert, "client.test",
        "the server saw our certificate"
    );
    s.assert_delivered();

    // Without one, the server refuses the handshake: deferred, not bounced.
    let s = spool("");
    s.reconfigure(&format!(
        "smarthost = {}\ntls = required\ntls_ca_file = {ca}\n",
        sink.addr()
    ));
    s.submit("carol@example.net");
    s.pass(&[]);
    assert_eq!(sink.message_count(), 1, "nothing more arrived");
    assert_eq!(s.queue_ids().len(), 1, "still queued: {}", s.mailq());
    assert_eq!(s.bounces().len(), 0);
}

/// Our own faults are the admin's to fix, not the sender's: a password the
/// server refuses, a password file that is missing, a certificate that does
/// not verify under `tls = required`. With a schedule that would expire
/// the message after its first attempt, each waits, says "local
/// configuration problem" in mailq and the log, and bounces only at
/// `max_queue_lifetime`.
#[test]
fn local_configuration_problems_wait_for_the_queue_lifetime() {
    let pki = Pki::new();
    let good = tls_sink(|h| pki.server(&[h]), &["--auth=alice:the-right-one"]);
    let unverified = tls_sink(|h| pki.self_signed(&[h]), &[]);
    // (what, the config it makes for a spool, the reason shown)
    type Case<'a> = (&'a str, Box<dyn Fn(&Spool) -> String + 'a>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "535",
            Box::new(|s| {
                format!(
                    "smarthost = {}\ntls = required\n{}",
                    good.addr(),
                    auth_config(s, &pki.ca, PASSWORD)
                )
            }),
            "local configuration problem: SASL authentication failed",
        ),
        (
            "missing password file",
            Box::new(|s| {
                let config = format!(
                    "smarthost = {}\ntls = required\n{}",
                    good.addr(),
                    auth_config(s, &pki.ca, PASSWORD)
                );
                fs::remove_file(s.root().join("password")).unwrap();
                config
            }),
            "local configuration problem: ",
        ),
        (
            "certificate",
            Box::new(|_| {
                format!(
                    "smarthost = {}\ntls = required\ntls_ca_file = {}\n",
                    unverified.addr(),
                    pki.ca.display()
                )
            }),
            "local configuration problem: TLS is required, but the certificate",
        ),
    ];
    for (what, config, reason) in cases {
        let s = spool("");
        let config = format!("{}retry_schedule = 0\n", config(&s));
        s.reconfigure(&config);
        s.submit("bob@example.net");
        for _ in 0..2 {
            s.run_ok(&["-qR@"], b"");
        }
        assert_eq!(s.queue_ids().len(), 1, "{what}: {}", s.log());
        assert!(s.bounces().is_empty(), "{what}: {}", s.log());
        let (mailq, log) = (s.mailq(), s.log());
        assert!(mailq.contains(reason), "{what}: {mailq}");
        assert!(log.contains(reason), "{what}: {log}");
        assert!(log.contains("dsn=4.3.5, status=deferred"), "{what}: {log}");
        // The queue lifetime ends the wait.
        let id = s.queue_ids()[0].clone();
        s.reconfigure(&format!("{config}max_queue_lifetime = 1s\n"));
        std::thread::sleep(Duration::from_millis(1100));
        s.run_ok(&["-qR@"], b"");
        // One notice, in the log (the notice may itself be tried, and
        // outlive the 1 s lifetime, before the test looks at the queue).
        let log = s.log();
        assert!(!s.queue_ids().contains(&id), "{what}: {log}");
        let notices = format!("{id}: sender non-delivery notification");
        assert_eq!(log.matches(&notices).count(), 1, "{what}: {log}");
    }
    assert_eq!(good.message_count() + unverified.message_count(), 0);
}

/// Only a smarthost's certificate is the admin's to fix: an MX host whose
/// certificate does not verify under `tls = required` defers as any
/// unreachable host does, and bounces when the schedule runs out (as in
/// Postfix), not at `max_queue_lifetime`.
#[test]
fn an_mx_hosts_certificate_that_does_not_verify_is_an_ordinary_deferral() {
    let pki = Pki::new();
    let unverified = tls_sink(|h| pki.self_signed(&[h]), &[]);
    let s = spool(&format!(
        "smtp_port = {}\ntls = required\ntls_ca_file = {}\nretry_schedule = 0 0\n",
        unverified.port,
        pki.ca.display()
    ));
    s.submit(&format!("bob@[{}]", unverified.host));
    s.run_ok(&["-qR@"], b"");
    let (mailq, log) = (s.mailq(), s.log());
    assert!(mailq.contains("did not verify"), "{mailq}");
    assert!(!mailq.contains("local configuration problem"), "{mailq}");
    assert!(!log.contains("dsn=4.3.5"), "{log}");
    assert!(s.bounces().is_empty(), "{log}");
    // The schedule's second and last attempt: expired, bounced.
    s.run_ok(&["-qR@"], b"");
    let log = s.log();
    assert!(
        log.contains("status=expired (message expired after 2 attempts"),
        "{log}"
    );
    assert!(log.contains("sender non-delivery notification"), "{log}");
    assert_eq!(unverified.message_count(), 0);
}
