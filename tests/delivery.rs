//! Delivery (`sendmail -q`, `-odi`) against real servers on loopback: the
//! aiosmtpd sink for the normal path, the scripted server for faults, and
//! dnsmasq for MX routing. Every message is either delivered, still queued,
//! or bounced to its sender: these tests look for each of the three.

mod harness;

use harness::{Config, Dns, DnsZone, Fixture, Queued, Smtp, Spool, wait_output};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A spool for delivery tests: `config`, lines added to the delivery config
/// (spool, log, queue-only submissions, short time-outs, a retry schedule
/// that is always due).
fn spool(config: &str) -> Spool {
    Spool::new("delivery", &Config::delivery().lines(config))
}

impl Spool {
    /// Submits `message` with `args`, which must exit 0.
    fn submit(&self, args: &[&str], message: &str) {
        self.run_ok(args, message.as_bytes());
    }
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Alice <alice@example.org>\nTo: someone@example.net\nSubject: {subject}\n\n{body}"
    )
}

/// The bounces (null sender) `server` has received, each as `rcpt ADDR`
/// lines and its text: a bounce goes out in the pass that queued it.
fn bounces_sent(server: &Smtp) -> Vec<String> {
    server
        .messages()
        .iter()
        .filter(|m| m.mail_from.is_empty())
        .map(|m| {
            let rcpts: String = m.rcpt_tos.iter().map(|r| format!("rcpt {r}\n")).collect();
            format!("{rcpts}\n{}", m.text())
        })
        .collect()
}

/// The stored content of a message as the SMTP client sends it: CRLF lines.
fn as_sent(stored: &Queued) -> Vec<u8> {
    let mut wire = Vec::with_capacity(stored.content.len() * 2);
    for &b in &stored.content {
        if b == b'\n' {
            wire.push(b'\r');
        }
        wire.push(b);
    }
    wire
}

#[test]
fn smarthost_receives_the_message_byte_for_byte() {
    let sink = Smtp::sink(&[]);
    let s = spool(&format!("smarthost = {}\n", sink.addr()));
    let body = "first line\n.a line that starts with a dot\n..two dots\n.\nlast line\n";
    let msg = format!("To: bob@example.net\nBcc: hidden@example.net\nSubject: exact\n\n{body}");
    s.submit(&["-i", "-f", "alice@example.org", "-t"], &msg);
    let stored = s.only_message();
    let id = &stored.id;
    s.pass(&[]);
    let got = sink.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.mail_from, "alice@example.org");
    let mut rcpts = m.rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(rcpts, vec!["bob@example.net", "hidden@example.net"]);
    assert_eq!(
        m.data,
        as_sent(&stored),
        "the server got exactly the stored message, CRLF, dots unstuffed"
    );
    assert!(!m.text().contains("Bcc:"), "{}", m.text());
    assert_eq!(m.helo, "client.test");
    assert!(m.esmtp);
    assert!(
        s.queue_ids().is_empty(),
        "delivered messages leave the queue"
    );
    assert_eq!(s.mailq(), "Mail queue is empty\n");
    let log = s.log();
    assert!(
        log.contains(&format!("{id}: to=<bob@example.net>, relay=")),
        "{log}"
    );
    assert!(log.contains("status=sent (250"), "{log}");
}

#[test]
fn one_connection_carries_many_messages() {
    let sink = Smtp::sink(&[]);
    let s = spool(&format!(
        "smarthost = {}\nmax_per_destination = 2\n",
        sink.addr()
    ));
    for i in 0..30 {
        s.submit(&["bob@example.net"], &message(&format!("m{i}"), "hello\n"));
    }
    s.pass(&[]);
    assert_eq!(
        sink.wait_for_messages(30, Duration::from_secs(20)).len(),
        30
    );
    let connections = sink.connections();
    assert!(
        (1..=2).contains(&connections),
        "30 messages over {connections} connections"
    );
    assert!(s.queue_ids().is_empty());
}

#[test]
fn dsn_and_8bitmime_parameters_are_passed_on() {
    let sink = Smtp::sink(&[]);
    let s = spool(&format!("smarthost = {}\n", sink.addr()));
    s.submit(
        &[
            "-N",
            "success,failure",
            "-R",
            "hdrs",
            "-V",
            "env+id=1",
            "bob@example.net",
        ],
        &message("dsn", "caf\u{e9}\n"),
    );
    s.pass(&[]);
    let m = &sink.wait_for_messages(1, Duration::from_secs(10))[0];
    let opts = m.mail_options.join(" ");
    assert!(opts.contains("BODY=8BITMIME"), "{opts}");
    assert!(opts.contains("RET=HDRS"), "{opts}");
    assert!(opts.contains("ENVID=env+2Bid+3D1"), "xtext-encoded: {opts}");
    assert!(opts.contains("SIZE="), "{opts}");
    assert_eq!(m.rcpt_options[0], vec!["NOTIFY=SUCCESS,FAILURE"]);
}

#[test]
fn temporary_failure_then_success_delivers_exactly_once() {
    let server = Smtp::faulty("tempfail-once", &[]);
    let s = spool(&format!("smarthost = {}\n", server.addr()));
    s.submit(&["bob@example.net"], &message("retry", "x\n"));
    let id = s.queue_ids().pop().unwrap();
    s.pass(&[]);
    assert_eq!(server.message_count(), 0);
    assert!(
        s.state(&id).contains("rcpt 0 deferred 451 4.3.0"),
        "{}",
        s.state(&id)
    );
    assert!(
        s.mailq().contains("(451 4.3.0"),
        "mailq shows why: {}",
        s.mailq()
    );
    s.pass(&[]);
    assert_eq!(
        server.wait_for_messages(1, Duration::from_secs(10)).len(),
        1
    );
    s.pass(&[]); // nothing left to send again
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.message_count(), 1, "delivered exactly once");
    assert!(s.queue_ids().is_empty());
}

#[test]
fn permanent_failure_bounces_one_dsn_to_the_sender() {
    let server = Smtp::faulty("reject-rcpt", &[]);
    let s = spool(&format!("smarthost = {}\n", server.addr()));
    s.submit(
        &[
            "-f",
            "alice@example.org",
            "bad1@example.net",
            "good@example.net",
        ],
        &message("bounce me", "body text\n"),
    );
    let id = s.queue_ids().pop().unwrap();
    s.pass(&[]);
    // The good recipient got it; the bad one is bounced: the original is gone,
    // a DSN with the null sender is queued for alice.
    let delivered = server.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(delivered[0].rcpt_tos, vec!["good@example.net"]);
    assert!(!s.queue_ids().contains(&id), "the original is done");
    let bounces = bounces_sent(&server);
    assert_eq!(bounces.len(), 1, "exactly one DSN");
    // The same run delivered the DSN to the sender, with MAIL FROM:<>.
    let all = server.wait_for_messages(2, Duration::from_secs(10));
    let dsn = all
        .iter()
        .find(|m| m.mail_from.is_empty())
        .expect("a DSN with the null sender");
    assert_eq!(dsn.rcpt_tos, vec!["alice@example.org"]);
    let text = dsn.text();
    for needle in [
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Content-Type: message/delivery-status",
        "Final-Recipient: rfc822; bad1@example.net",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; ",
        "Diagnostic-Code: smtp; 550 5.1.1",
        "Content-Type: text/rfc822-headers",
        "Subject: bounce me",
        "Auto-Submitted: auto-replied",
    ] {
        assert!(text.contains(needle), "DSN lacks {needle:?}:\n{text}");
    }
    assert!(
        !text.contains("Final-Recipient: rfc822; good@example.net"),
        "{text}"
    );
    assert!(
        !text.contains("body text"),
        "RET unset: headers only\n{text}"
    );
    assert!(s.queue_ids().is_empty());
}

#[test]
fn rejected_data_bounces_and_dropped_connection_defers() {
    // Only bob's mail is refused: the bounce to alice goes through.
    let rejecting = Smtp::faulty("reject-data", &["--match", "bob@"]);
    let s = spool(&format!("smarthost = {}\n", rejecting.addr()));
    s.submit(
        &["-f", "alice@example.org", "bob@example.net"],
        &message("too big", "x\n"),
    );
    s.pass(&[]);
    let bounces = bounces_sent(&rejecting);
    assert_eq!(bounces.len(), 1, "552 at the end of data bounces");
    assert!(bounces[0].contains("Status: 5.3.4"), "{}", bounces[0]);

    let dropping = Smtp::faulty("drop-mid-data", &[]);
    let s = spool(&format!("smarthost = {}\n", dropping.addr()));
    s.submit(&["bob@example.net"], &message("dropped", "x\ny\nz\n"));
    let id = s.queue_ids().pop().unwrap();
    s.pass(&[]);
    assert_eq!(
        s.queue_ids(),
        vec![id.clone()],
        "still queued after a dropped connection"
    );
    let state = s.state(&id);
    assert!(
        state.contains("rcpt 0 deferred") && state.contains("lost connection"),
        "{state}"
    );
    assert!(s.bounces().is_empty());
}

#[test]
fn server_size_limit_fails_without_sending() {
    // Room for the bounce (headers only), not for the message.
    let sink = Smtp::sink(&["--size-limit", "4000"]);
    let s = spool(&format!("smarthost = {}\n", sink.addr()));
    s.submit(
        &["-f", "alice@example.org", "bob@example.net"],
        &message("big", &"x".repeat(10_000)),
    );
    s.pass(&[]);
    assert!(
        sink.messages().iter().all(|m| m.mail_from.is_empty()),
        "the big one is not sent"
    );
    // The original is failed; the bounce (small) is sent to alice.
    let bounces = bounces_sent(&sink);
    assert_eq!(bounces.len(), 1);
    assert!(bounces[0].contains("exceeds size limit"), "{}", bounces[0]);
}

#[test]
fn ehlo_refused_falls_back_to_helo() {
    let server = Smtp::faulty("no-ehlo", &[]);
    let s = spool(&format!("smarthost = {}\n", server.addr()));
    s.submit(&["bob@example.net"], &message("helo", "x\n"));
    s.pass(&[]);
    let m = &server.wait_for_messages(1, Duration::from_secs(10))[0];
    assert!(!m.esmtp, "sent after HELO");
    assert!(
        m.mail_options.is_empty(),
        "no ESMTP parameters to a HELO server: {:?}",
        m.mail_options
    );
    assert!(s.queue_ids().is_empty());
}

#[test]
fn smarthost_list_fails_over_in_order() {
    let sink = Smtp::sink(&[]);
    let dead_host = harness::loopback_host();
    let dead = format!("{dead_host}:{}", harness::free_port(&dead_host));
    let s = spool(&format!("smarthost = {dead} {}\n", sink.addr()));
    s.submit(&["bob@example.net"], &message("failover", "x\n"));
    s.pass(&[]);
    assert_eq!(sink.wait_for_messages(1, Duration::from_secs(10)).len(), 1);
    assert!(s.queue_ids().is_empty());
}

#[test]
fn verbose_queue_run_shows_the_conversation() {
    let sink = Smtp::sink(&[]);
    let s = spool(&format!("smarthost = {}\n", sink.addr()));
    s.submit(&["bob@example.net"], &message("v", "x\n"));
    let out = s.run(&["-q", "-v"], b"");
    let err = out.stderr;
    assert!(err.contains(">>> MAIL FROM:<"), "{err}");
    assert!(err.contains(">>> RCPT TO:<bob@example.net>"), "{err}");
    assert!(err.contains("<<< 250"), "{err}");
}

/// `sendmail -v` delivers in the foreground, as Sendmail's does, and shows
/// the conversation: the message has arrived when it returns.
#[test]
fn verbose_submission_delivers_in_the_foreground() {
    let sink = Smtp::sink(&[]);
    let s = Spool::new(
        "verbose-submit",
        &Config::delivery()
            .set("smarthost", sink.addr())
            .set("delivery_mode", "background"),
    );
    let out = s.run(&["-v", "bob@example.net"], message("v", "x\n").as_bytes());
    out.assert_ok();
    let err = out.stderr;
    assert!(err.contains(">>> MAIL FROM:<"), "{err}");
    assert!(err.contains(">>> RCPT TO:<bob@example.net>"), "{err}");
    assert!(err.contains("<<< 250"), "{err}");
    assert!(s.queue_ids().is_empty(), "still queued after -v returned");
    assert_eq!(sink.wait_for_messages(1, Duration::from_secs(1)).len(), 1);
}

#[test]
fn interactive_delivery_reports_permanent_failure_under_oep() {
    let server = Smtp::faulty("reject-rcpt", &[]);
    let s = spool(&format!("smarthost = {}\n", server.addr()));
    let out = s.run(
        &["-odi", "-oep", "-f", "alice@example.org", "bad@example.net"],
        message("i", "x\n").as_bytes(),
    );
    assert_eq!(out.code(), Some(67), "{}", out.stderr);
    let err = out.stderr;
    assert!(
        err.contains("bad@example.net") && err.contains("550 5.1.1"),
        "{err}"
    );

    let sink = Smtp::sink(&[]);
    let s = spool(&format!("smarthost = {}\n", sink.addr()));
    let out = s.run(&["-odi", "bob@example.net"], message("i", "x\n").as_bytes());
    assert!(out.status.success());
    assert_eq!(sink.message_count(), 1, "-odi delivered before returning");
    assert!(s.queue_ids().is_empty());
}

#[test]
fn expired_message_bounces_with_4_4_7() {
    let server = Smtp::faulty("tempfail-always", &[]);
    let s = spool(&format!(
        "smarthost = {}\nretry_schedule = 0 0\n",
        server.addr()
    ));
    s.submit(
        &["-f", "alice@example.org", "bob@example.net"],
        &message("expire", "x\n"),
    );
    let id = s.queue_ids().pop().unwrap();
    s.pass(&[]);
    assert!(
        s.queue_ids().contains(&id),
        "deferred after the first attempt"
    );
    s.pass(&[]);
    assert!(
        !s.queue_ids().contains(&id),
        "expired after the last attempt of the schedule"
    );
    let bounces = s.bounces();
    assert_eq!(bounces.len(), 1, "{:?}", s.queue_ids());
    assert!(bounces[0].contains("Status: 4.4.7"), "{}", bounces[0]);
    assert!(
        bounces[0].contains("message expired after 2 attempts"),
        "{}",
        bounces[0]
    );
    assert!(
        bounces[0].contains("rcpt alice@example.org"),
        "{}",
        bounces[0]
    );
}

#[test]
fn a_failed_bounce_is_never_bounced_again() {
    let server = Smtp::faulty("reject-rcpt", &[]);
    let s = spool(&format!("smarthost = {}\n", server.addr()));
    s.submit(
        &["-f", "<>", "bad@example.net"],
        &message("null sender", "x\n"),
    );
    s.pass(&[]);
    assert!(
        s.queue_ids().is_empty(),
        "dropped, not bounced: {:?}",
        s.queue_ids()
    );
    assert!(s.log().contains("no bounce sent"), "{}", s.log());

    let s = spool(&format!(
        "smarthost = {}\ndouble_bounce_recipient = postmaster@example.org\n",
        server.addr()
    ));
    s.submit(
        &["-f", "<>", "bad@example.net"],
        &message("null sender", "x\n"),
    );
    s.pass(&[]);
    let bounces = bounces_sent(&server);
    assert_eq!(bounces.len(), 1);
    assert!(
        bounces[0].contains("rcpt postmaster@example.org"),
        "{}",
        bounces[0]
    );
}

#[test]
fn stuck_transaction_is_killed_at_the_deadline_and_deferred() {
    let server = Smtp::faulty("slow-rcpt", &["--delay", "60"]);
    let s = spool(&format!(
        "smarthost = {}\ntransaction_deadline = 2s\n",
        server.addr()
    ));
    s.submit(&["bob@example.net"], &message("slow", "x\n"));
    let id = s.queue_ids().pop().unwrap();
    let started = Instant::now();
    s.pass(&[]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the pass ended at the deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(s.queue_ids(), vec![id.clone()]);
    assert!(s.state(&id).contains("timed out"), "{}", s.state(&id));
}

fn dns_config(dns: &Dns, port: u16) -> String {
    format!("dns_server = {}\nsmtp_port = {port}\n", dns.addr())
}

/// A DNS server that does not answer is named, instead of hickory's bare
/// "no connections available".
#[test]
fn a_dns_server_that_does_not_answer_is_named() {
    let host = harness::loopback_host();
    let port = harness::free_port(&host);
    let server = harness::host_port(&host, port);
    let s = spool(&format!("dns_server = {server}\n"));
    s.submit(
        &["-f", "alice@example.org", "bob@nowhere.test"],
        &message("dns", "x\n"),
    );
    s.pass(&[]);
    let mailq = s.mailq();
    assert!(
        mailq.contains(&format!("the DNS server {server} did not answer")),
        "{mailq}"
    );
    assert_eq!(s.bounces().len(), 0, "{mailq}");
}

#[test]
fn mx_routing_with_dnsmasq() {
    let servers = Smtp::start_same_port(&[(Fixture::Sink, &[]), (Fixture::Sink, &[])]);
    let (primary, secondary) = (&servers[0], &servers[1]);
    let dns = Dns::start(&DnsZone::standard(&primary.host, &secondary.host));
    let s = spool(&dns_config(&dns, primary.port));
    s.submit(
        &["-f", "alice@mx.test", "a@mx.test", "b@implicit.test"],
        &message("mx", "x\n"),
    );
    s.submit(
        &["-f", "alice@mx.test", "c@servfail.test"],
        &message("servfail", "x\n"),
    );
    s.submit(
        &["-f", "alice@mx.test", "d@nullmx.test"],
        &message("nullmx", "x\n"),
    );
    s.submit(
        &["-f", "alice@mx.test", "e@nxdomain.test"],
        &message("nx", "x\n"),
    );
    s.submit(
        &["-f", "alice@mx.test", "f@dangling.test"],
        &message("dangling", "x\n"),
    );
    s.pass(&[]);
    // MX and implicit MX both lead to the primary.
    let got = primary.wait_for_messages(2, Duration::from_secs(10));
    let mut rcpts: Vec<String> = (got.iter().filter(|m| !m.mail_from.is_empty()))
        .flat_map(|m| m.rcpt_tos.clone())
        .collect();
    rcpts.sort();
    assert_eq!(rcpts, vec!["a@mx.test", "b@implicit.test"]);
    // SERVFAIL: deferred, with the DNS error as the reason.
    let mailq = s.mailq();
    assert!(mailq.contains("c@servfail.test"), "{mailq}");
    assert!(
        mailq.contains("DNS lookup of MX for servfail.test failed"),
        "{mailq}"
    );
    assert!(
        mailq.contains(&dns.addr()),
        "names the server asked: {mailq}"
    );
    // Null MX, NXDOMAIN, a dangling MX: bounced (one DSN each) to alice,
    // whose domain's MX took them in the same pass.
    let bounces = bounces_sent(primary);
    assert_eq!(bounces.len(), 3, "{mailq}");
    let all = bounces.join("\n");
    assert!(
        all.contains("Final-Recipient: rfc822; d@nullmx.test") && all.contains("null MX"),
        "{all}"
    );
    assert!(
        all.contains("Final-Recipient: rfc822; e@nxdomain.test"),
        "{all}"
    );
    assert!(
        all.contains("Final-Recipient: rfc822; f@dangling.test"),
        "{all}"
    );
}

#[test]
fn mx_failover_to_the_secondary() {
    // The primary MX host's address has nothing listening; the secondary
    // (preference 20) is the sink.
    let sink = Smtp::sink(&[]);
    let dead = harness::loopback_host();
    let dns = Dns::start(&DnsZone::standard(&dead, &sink.host));
    let s = spool(&dns_config(&dns, sink.port));
    s.submit(&["a@failover.test"], &message("failover", "x\n"));
    s.pass(&[]);
    assert_eq!(sink.wait_for_messages(1, Duration::from_secs(10)).len(), 1);
    assert!(s.queue_ids().is_empty());
}

#[test]
fn tarpit_does_not_delay_other_destinations() {
    let servers = Smtp::start_same_port(&[(Fixture::Sink, &[]), (Fixture::Faulty("tarpit"), &[])]);
    let (fast, tarpit) = (&servers[0], &servers[1]);
    let zone = DnsZone::new()
        .mx("fast.test", 10, "mx.fast.test")
        .host("mx.fast.test", &[&fast.host])
        .mx("slow.test", 10, "mx.slow.test")
        .host("mx.slow.test", &[&tarpit.host]);
    let dns = Dns::start(&zone);
    let s = spool(&format!(
        "{}transaction_deadline = 60s\n",
        dns_config(&dns, fast.port)
    ));
    for i in 0..5 {
        s.submit(&[&format!("u{i}@slow.test")], &message("slow", "x\n"));
    }
    for i in 0..40 {
        s.submit(&[&format!("u{i}@fast.test")], &message("fast", "x\n"));
    }
    let (all_fast, elapsed, still_running) =
        pass_until(&s, Duration::from_secs(20), || fast.message_count() == 40);
    assert!(
        all_fast,
        "only {} of 40 fast messages arrived",
        fast.message_count()
    );
    assert!(
        still_running,
        "the tarpit was still holding the pass when the fast host had everything"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "fast messages took {elapsed:?}"
    );
    assert!(tarpit.connections() >= 1);
    // Killing the pass loses nothing: the tarpit's five are still queued.
    // (The sink counts a message before its 250 reaches the child, which
    // may still be removing the last one it delivered.)
    harness::wait_until(Duration::from_secs(5), || s.queue_ids().len() <= 5);
    let left: Vec<String> = s.queue_ids().iter().map(|id| s.file(id)).collect();
    assert_eq!(left.len(), 5, "{left:?}");
    assert!(left.iter().all(|f| f.contains("@slow.test")));
}

/// Starts a queue run and waits (at most `limit`) until `done` holds, then
/// kills the run: whether `done` held, how long that took, and whether the
/// run was still going then (held up elsewhere).
fn pass_until(s: &Spool, limit: Duration, done: impl FnMut() -> bool) -> (bool, Duration, bool) {
    let started = Instant::now();
    let mut pass = s.spawn_pass();
    let held = harness::wait_until(limit, done);
    let elapsed = started.elapsed();
    let still_running = pass.try_wait().unwrap().is_none();
    let _ = pass.kill();
    let _ = pass.wait();
    (held, elapsed, still_running)
}

fn marker_counts(server: &Smtp) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for m in server.messages() {
        let text = m.text();
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or("")
            .to_string();
        *counts.entry(subject).or_insert(0) += 1;
    }
    counts
}

fn submit_many(s: &Spool, n: usize, rcpt: &str) {
    // Queue-only submissions in parallel batches, for speed.
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let children: Vec<Child> = chunk
            .iter()
            .map(|i| {
                let mut c = s
                    .cmd(&[rcpt])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(message(&format!("m{i:04}"), "x\n").as_bytes())
                    .unwrap();
                c
            })
            .collect();
        for c in children {
            let out = wait_output(c, Duration::from_secs(30));
            assert!(out.status.success(), "{}", out.stderr);
        }
    }
}

#[test]
fn three_concurrent_passes_deliver_each_message_once() {
    let sink = Smtp::sink(&[]);
    let s = spool(&format!("smarthost = {}\n", sink.addr()));
    submit_many(&s, 500, "bob@example.net");
    let passes: Vec<Child> = (0..3).map(|_| s.spawn_pass()).collect();
    for p in passes {
        assert!(wait_output(p, Duration::from_secs(120)).status.success());
    }
    let counts = marker_counts(&sink);
    assert_eq!(counts.len(), 500, "every message arrived");
    let doubles: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubles.is_empty(), "delivered more than once: {doubles:?}");
    assert!(s.queue_ids().is_empty());
    // Each delivery child's spare state file goes with it.
    let left: Vec<_> = fs::read_dir(s.tmp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in tmp/: {left:?}");
}

#[test]
fn pass_killed_halfway_loses_nothing() {
    let server = Smtp::faulty("slow-data", &["--delay", "0.05"]);
    let s = spool(&format!(
        "smarthost = {}\nmax_per_destination = 2\n",
        server.addr()
    ));
    submit_many(&s, 100, "bob@example.net");
    let mut pass = s.spawn_pass();
    let some = harness::wait_until(Duration::from_secs(30), || server.message_count() >= 20);
    // The parent dies at once; its children notice the closed socket and stop.
    unsafe { libc::kill(pass.id() as i32, libc::SIGKILL) };
    let _ = pass.wait();
    assert!(some, "the pass made progress before the kill");
    assert!(server.message_count() < 100, "killed before the end");
    std::thread::sleep(Duration::from_millis(500));
    s.pass(&[]);
    let counts = marker_counts(&server);
    assert_eq!(
        counts.len(),
        100,
        "nothing lost: {} distinct of 100",
        counts.len()
    );
    assert!(s.queue_ids().is_empty(), "{:?}", s.queue_ids());
}

#[test]
fn leftovers_of_dead_writers_are_removed_by_the_pass() {
    let sink = Smtp::sink(&[]);
    let s = spool(&format!("smarthost = {}\n", sink.addr()));
    let tmp = s.tmp_dir();
    let old = tmp.join("0000000000000AAA");
    let young = tmp.join("0000000000000BBB");
    fs::write(&old, "SPOOLMAIL 1\nid 0000000000000AAA\n").unwrap();
    fs::write(&young, "SPOOLMAIL 1\n").unwrap();
    set_mtime(&old, 3600);
    let orphan_state = s.queue_dir().join("0000000000000CCC.state");
    fs::write(&orphan_state, "SPOOLMAIL-STATE 1\n").unwrap();
    s.pass(&[]);
    assert!(!old.exists(), "an unlocked hour-old leftover is removed");
    assert!(young.exists(), "a fresh file may belong to a live writer");
    assert!(
        !orphan_state.exists(),
        "a state file without its message is removed"
    );
}

fn set_mtime(path: &Path, seconds_ago: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = libc::timespec {
        tv_sec: (now - seconds_ago) as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) },
        0
    );
}

#[test]
fn long_lines_in_text_parts_go_as_quoted_printable() {
    // The sink, like a strict server, refuses lines over 1001 octets; the
    // message must arrive anyway, and decode to exactly what was submitted.
    let sink = Smtp::sink(&[]);
    let s = spool(&format!("smarthost = {}\n", sink.addr()));
    let line = format!(
        "<a href=\"https://example.org/{}\">caf\u{e9} = ok</a>",
        "x".repeat(3000)
    );
    let msg = format!(
        "From: a@example.org\nTo: b@example.net\nSubject: long\nMIME-Version: 1.0\n\
         Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{line}\nshort line\n"
    );
    s.submit(&["b@example.net"], &msg);
    let stored = s.file(&s.queue_ids()[0]);
    assert!(stored.contains(&line), "stored as it came");
    s.pass(&[]);
    let m = &sink.wait_for_messages(1, Duration::from_secs(10))[0];
    let text = m.text();
    assert!(
        text.split("\r\n").all(|l| l.len() <= 998),
        "no line over 998 octets on the wire"
    );
    assert!(
        text.contains("Content-Transfer-Encoding: quoted-printable\r\n"),
        "{text}"
    );
    assert!(!text.contains("Content-Transfer-Encoding: 8bit"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(
        decode_qp(body.as_bytes()),
        format!("{line}\r\nshort line\r\n").as_bytes()
    );
    assert!(s.queue_ids().is_empty());
}

/// Quoted-printable decoding (RFC 2045 6.7) of CRLF text.
fn decode_qp(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'=' && s.get(i + 1) == Some(&b'\r') {
            i += 3; // soft line break
        } else if s[i] == b'=' {
            let hex = std::str::from_utf8(&s[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn a_server_closing_reused_connections_costs_no_message_an_attempt() {
    let server = Smtp::faulty("one-per-connection", &[]);
    let s = spool(&format!(
        "smarthost = {}\nmax_per_destination = 1\n",
        server.addr()
    ));
    for i in 0..5 {
        s.submit(&["bob@example.net"], &message(&format!("m{i}"), "x\n"));
    }
    s.pass(&[]);
    assert_eq!(
        server.wait_for_messages(5, Duration::from_secs(10)).len(),
        5
    );
    assert!(s.queue_ids().is_empty(), "none deferred: {}", s.mailq());
    assert_eq!(
        server.connections(),
        5,
        "a new connection for each after the 421"
    );
}

#[test]
fn relay_holding_one_domain_does_not_hold_the_others() {
    // The relay trap: through one smarthost, a relay holds the reply to
    // RCPT TO for one recipient domain. More such messages than max_children
    // are queued first; the ordinary ones behind them must still go out.
    let relay = Smtp::faulty("slow-rcpt", &["--delay", "60", "--match", "@slow.example"]);
    let s = spool(&format!(
        "smarthost = {}\nmax_children = 3\nmax_per_destination = 3\n",
        relay.addr()
    ));
    for i in 0..6 {
        s.submit(
            &[&format!("u{i}@slow.example")],
            &message(&format!("slow{i}"), "x\n"),
        );
    }
    for i in 0..10 {
        s.submit(
            &[&format!("u{i}@example.net")],
            &message(&format!("ordinary{i}"), "x\n"),
        );
    }
    let (all, elapsed, still_running) =
        pass_until(&s, Duration::from_secs(40), || relay.message_count() == 10);
    assert!(
        all,
        "only {} of 10 ordinary messages arrived",
        relay.message_count()
    );
    assert!(still_running, "the slow ones were still held");
    assert!(
        elapsed < Duration::from_secs(20),
        "ordinary messages took {elapsed:?}"
    );
    assert!(
        relay
            .messages()
            .iter()
            .all(|m| m.rcpt_tos[0].ends_with("@example.net"))
    );
    harness::wait_until(Duration::from_secs(5), || s.queue_ids().len() <= 6);
    assert_eq!(
        s.queue_ids().len(),
        6,
        "the held ones are still queued, none lost"
    );
}

#[test]
fn a_bounce_that_cannot_be_queued_keeps_the_message() {
    let server = Smtp::faulty("reject-rcpt", &[]);
    let s = spool(&format!("smarthost = {}\n", server.addr()));
    s.submit(
        &["-f", "alice@example.org", "bad@example.net"],
        &message("no room", "x\n"),
    );
    let id = s.queue_ids().pop().unwrap();
    // New spool files start in tmp/: without it no bounce can be written.
    let tmp = s.tmp_dir();
    fs::remove_dir(&tmp).unwrap();
    s.pass(&[]);
    assert_eq!(
        s.queue_ids(),
        vec![id.clone()],
        "the failed message stays until its notice exists"
    );
    fs::create_dir(&tmp).unwrap();
    s.pass(&[]);
    assert!(
        !s.queue_ids().contains(&id),
        "failed again, and now bounced"
    );
    let bounces = bounces_sent(&server);
    assert_eq!(bounces.len(), 1);
    assert!(
        bounces[0].contains("Final-Recipient: rfc822; bad@example.net"),
        "{}",
        bounces[0]
    );
}

#[test]
fn a_submissions_own_pass_takes_that_message_only() {
    let sink = Smtp::sink(&[]);
    let s = spool(&format!("smarthost = {}\n", sink.addr()));
    s.submit(
        &["-odq", "waiting@example.net"],
        &message("waits for cron", "x\n"),
    );
    let waiting = s.queue_ids();
    let out = s.run(
        &["-odi", "now@example.net"],
        message("now", "x\n").as_bytes(),
    );
    assert!(out.status.success());
    let got = sink.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, vec!["now@example.net"]);
    assert_eq!(
        s.queue_ids(),
        waiting,
        "the rest of the queue is the cron pass's"
    );
}

/// `a@[IPv6:::1]` once bounced ("bad address literal"): the domain was
/// lower-cased before the `IPv6:` tag was looked for.
#[test]
fn address_literals_are_delivered_to_that_address() {
    let sink = Smtp::sink(&[]);
    let s = spool(&format!("smtp_port = {}\n", sink.port));
    let rcpt = format!("b@[{}]", sink.host);
    s.submit(&["-f", "alice@example.org", &rcpt], &message("v4", "x\n"));
    s.pass(&[]);
    let got = sink.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(got[0].rcpt_tos, [rcpt.as_str()]);
    assert!(s.queue_ids().is_empty(), "{}", s.log());

    let v6 = match Smtp::start(Fixture::Sink, "::1", 0, &[]) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("SKIPPED the IPv6 half: no sink on ::1 ({e})");
            return;
        }
    };
    let s = spool(&format!("smtp_port = {}\n", v6.port));
    for rcpt in ["a@[IPv6:::1]", "c@[ipv6:0::1]"] {
        s.submit(&["-f", "alice@example.org", rcpt], &message("v6", "x\n"));
    }
    s.pass(&[]);
    let got = v6.wait_for_messages(2, Duration::from_secs(10));
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpt_tos.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["a@[IPv6:::1]", "c@[ipv6:0::1]"]);
    assert!(s.queue_ids().is_empty(), "{}", s.log());
}

/// One message to one recipient through a server that answers out of the
/// protocol: the recipient must be deferred with `reason`, never counted
/// sent, and the server must not have kept the message.
fn deferred_by_protocol_error(script: &str, reason: &str) {
    let server = Smtp::faulty(script, &[]);
    let s = spool(&format!("smarthost = {}\n", server.addr()));
    s.submit(&["bob@example.net"], &message(script, "x\n"));
    let id = s.queue_ids().pop().unwrap();
    s.pass(&[]);
    let state = s.state(&id);
    assert!(
        state.contains(&format!("rcpt 0 deferred {reason}")),
        "{script}: {state}"
    );
    assert!(!s.log().contains("status=sent"), "{script}: {}", s.log());
    assert!(s.log().contains("status=deferred"), "{script}: {}", s.log());
    assert_eq!(server.message_count(), 0, "{script}");
    assert_eq!(s.queue_ids(), vec![id], "{script}: still queued");
}

#[test]
fn a_2xx_reply_to_data_defers_as_a_protocol_error() {
    deferred_by_protocol_error("data-250", "protocol error: 250 in reply to DATA");
}

#[test]
fn a_3xx_reply_to_rcpt_defers_as_a_protocol_error() {
    deferred_by_protocol_error("rcpt-350", "protocol error: 350 in reply to RCPT TO");
}

#[test]
fn a_3xx_reply_to_the_end_of_data_defers_as_a_protocol_error() {
    deferred_by_protocol_error("dot-354", "protocol error: 354 in reply to the end of data");
}

#[test]
fn a_surplus_reply_line_under_pipelining_defers_as_a_protocol_error() {
    deferred_by_protocol_error("surplus-reply", "protocol error: 250 in reply to DATA");
}

#[test]
fn a_recipient_limit_sends_the_rest_at_once_on_the_same_connection() {
    let server = Smtp::faulty("rcpt-limit", &["--max-rcpts", "3"]);
    let s = spool(&format!("smarthost = {}\n", server.addr()));
    let rcpts: Vec<String> = (0..8).map(|i| format!("r{i}@example.net")).collect();
    let args: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    s.submit(&args, &message("many", "x\n"));
    s.pass(&[]);
    let got = server.wait_for_messages(3, Duration::from_secs(10));
    let mut delivered: Vec<String> = got.iter().flat_map(|m| m.rcpt_tos.clone()).collect();
    delivered.sort();
    assert_eq!(delivered, rcpts, "every recipient in one pass");
    assert_eq!(
        got.iter().map(|m| m.rcpt_tos.len()).collect::<Vec<_>>(),
        vec![3, 3, 2]
    );
    assert_eq!(server.connections(), 1, "one connection");
    assert!(s.queue_ids().is_empty(), "{}", s.log());
    assert_eq!(s.log().matches("status=sent").count(), 8, "{}", s.log());
}

/// A surplus line after the reply to the end of data answers nothing; taken
/// for the next message's reply to MAIL, its 550 would bounce a message the
/// server never saw. The next message goes over a fresh connection instead.
/// (One child for the destination, so that the messages share a connection.)
#[test]
fn a_surplus_line_after_a_transaction_is_never_the_next_messages_reply() {
    let server = Smtp::faulty("surplus-after-data", &[]);
    let s = spool(&format!(
        "smarthost = {}\nmax_per_destination = 1\n",
        server.addr()
    ));
    for i in 0..3 {
        s.submit(&["bob@example.net"], &message(&format!("m{i}"), "x\n"));
    }
    s.pass(&[]);
    let got = server.wait_for_messages(3, Duration::from_secs(10));
    assert_eq!(got.len(), 3, "all delivered: {}", s.log());
    assert!(s.bounces().is_empty(), "nothing bounced: {}", s.log());
    assert!(s.queue_ids().is_empty(), "{}", s.log());
    assert_eq!(
        server.connections(),
        3,
        "each after the first on a fresh connection"
    );
}
