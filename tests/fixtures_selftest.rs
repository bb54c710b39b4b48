//! Proves the test fixtures themselves, without spoolmail: each SMTP fixture
//! and script answers as documented and records what it accepted, and the
//! DNS fixture gives each kind of answer. Everything runs on loopback.

mod harness;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Dns, DnsAnswer, DnsZone, Fixture, Reply, Smtp, SmtpConn, dot_stuff};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn connect(s: &Smtp) -> SmtpConn {
    let mut c = SmtpConn::connect(&s.addr()).expect("connect to the fixture");
    let greeting = c.read_reply().expect("greeting");
    assert_eq!(greeting.code, 220, "{greeting:?}");
    c
}

fn ehlo(c: &mut SmtpConn) -> Reply {
    let r = c.cmd("EHLO selftest.test").unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    r
}

fn expect(r: Reply, code: u16, enhanced: &str) -> Reply {
    assert_eq!((r.code, r.enhanced()), (code, Some(enhanced)), "{r:?}");
    r
}

/// MAIL, RCPTs and DATA pipelined in one write; returns the replies.
fn pipelined(c: &mut SmtpConn, mail: &str, rcpts: &[&str]) -> Vec<Reply> {
    let mut batch = format!("MAIL FROM:{mail}\r\n");
    for r in rcpts {
        batch += &format!("RCPT TO:{r}\r\n");
    }
    batch += "DATA\r\n";
    c.send(batch.as_bytes()).unwrap();
    (0..rcpts.len() + 2)
        .map(|_| c.read_reply().unwrap())
        .collect()
}

const BODY: &[u8] = b"From: s@a.test\r\nTo: r1@b.test\r\nSubject: caf\xc3\xa9\r\n\r\n\
.leading dot\r\n..two dots\r\n.\r\nbinary \xff\xfe\x01 end\r\n\r\nlast line\r\n";

#[test]
fn sink_records_envelope_options_and_exact_data() {
    let sink = Smtp::sink(&["--size-limit", "100000"]);
    let mut c = connect(&sink);
    let e = ehlo(&mut c);
    for ext in [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "SIZE 100000",
        "ENHANCEDSTATUSCODES",
        "DSN",
    ] {
        assert!(e.lines.iter().any(|l| l == ext), "EHLO lacks {ext}: {e:?}");
    }

    // One pipelined transaction with DSN parameters, 8-bit and dotted data.
    let r = pipelined(
        &mut c,
        "<s@a.test> BODY=8BITMIME RET=HDRS ENVID=QQ+2Bx",
        &[
            "<r1@b.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;r1@b.test",
            "<r2@b.test>",
        ],
    );
    assert_eq!(
        r.iter().map(|r| r.code).collect::<Vec<_>>(),
        [250, 250, 250, 354],
        "{r:?}"
    );
    assert_eq!(r[0].enhanced(), Some("2.1.0"));
    assert_eq!(r[1].enhanced(), Some("2.1.5"));
    c.send(&dot_stuff(BODY)).unwrap();
    expect(c.read_reply().unwrap(), 250, "2.0.0");

    // A second one on the same connection, with the null sender.
    expect(c.cmd("RSET").unwrap(), 250, "2.0.0");
    let r = pipelined(&mut c, "<>", &["<postmaster@b.test>"]);
    assert_eq!(
        r.iter().map(|r| r.code).collect::<Vec<_>>(),
        [250, 250, 354],
        "{r:?}"
    );
    c.send(&dot_stuff(b"Subject: bounce\r\n\r\nno final newline"))
        .unwrap();
    expect(c.read_reply().unwrap(), 250, "2.0.0");

    // SMTPUTF8 addresses.
    let r = pipelined(
        &mut c,
        "<us\u{e9}r@a.test> SMTPUTF8",
        &["<j\u{f6}rg@b.test>"],
    );
    assert_eq!(
        r.iter().map(|r| r.code).collect::<Vec<_>>(),
        [250, 250, 354],
        "{r:?}"
    );
    c.send(&dot_stuff(b"Subject: utf8\r\n\r\nhi\r\n")).unwrap();
    expect(c.read_reply().unwrap(), 250, "2.0.0");

    // SIZE over the limit, and an unknown parameter.
    expect(
        c.cmd("MAIL FROM:<s@a.test> SIZE=100001").unwrap(),
        552,
        "5.3.4",
    );
    expect(c.cmd("MAIL FROM:<s@a.test> FOO=BAR").unwrap(), 555, "5.5.4");
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);

    let m = sink.wait_for_messages(3, SECS(5));
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].mail_from, "s@a.test");
    assert_eq!(m[0].rcpt_tos, ["r1@b.test", "r2@b.test"]);
    assert_eq!(
        m[0].mail_options,
        ["BODY=8BITMIME", "RET=HDRS", "ENVID=QQ+2Bx"]
    );
    assert_eq!(
        m[0].rcpt_options,
        [
            vec!["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;r1@b.test"],
            vec![]
        ]
    );
    assert_eq!(m[0].data, BODY, "data must arrive byte for byte, unstuffed");
    assert!(m[0].esmtp);
    assert_eq!(m[0].helo, "selftest.test");
    assert_eq!(m[1].mail_from, "", "the null sender is recorded as empty");
    assert_eq!(m[1].data, b"Subject: bounce\r\n\r\nno final newline\r\n");
    assert_eq!(m[2].mail_from, "us\u{e9}r@a.test");
    assert_eq!(m[2].rcpt_tos, ["j\u{f6}rg@b.test"]);
    assert!(m.iter().all(|m| m.connection == 1));
    assert_eq!(m.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);

    // A second connection is counted.
    let mut c2 = connect(&sink);
    assert_eq!(c2.cmd("QUIT").unwrap().code, 221);
    assert!(harness::wait_until(SECS(3), || sink.connections() == 2));
}

#[test]
fn sink_without_dsn_and_with_a_recipient_limit() {
    let sink = Smtp::sink(&["--no-dsn", "--max-rcpts", "2"]);
    let mut c = connect(&sink);
    let e = ehlo(&mut c);
    assert!(!e.lines.iter().any(|l| l == "DSN"), "{e:?}");
    expect(
        c.cmd("MAIL FROM:<s@a.test> RET=FULL").unwrap(),
        555,
        "5.5.4",
    );
    let r = pipelined(
        &mut c,
        "<s@a.test>",
        &["<1@b.test>", "<2@b.test>", "<3@b.test>"],
    );
    let codes: Vec<u16> = r.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 250, 452, 354], "{r:?}");
    assert_eq!(r[3].enhanced(), Some("4.5.3"));
    c.send(&dot_stuff(b"Subject: x\r\n\r\ny\r\n")).unwrap();
    expect(c.read_reply().unwrap(), 250, "2.0.0");
    let m = sink.wait_for_messages(1, SECS(5));
    assert_eq!(m[0].rcpt_tos, ["1@b.test", "2@b.test"]);
}

#[test]
fn faulty_accept_answers_pipelined_commands_in_order() {
    let f = Smtp::faulty("accept", &[]);
    let mut c = connect(&f);
    let e = ehlo(&mut c);
    assert!(
        e.lines.len() > 3 && e.lines.iter().any(|l| l == "PIPELINING"),
        "{e:?}"
    );
    let r = pipelined(
        &mut c,
        "<s@a.test> BODY=8BITMIME",
        &["<a@b.test> NOTIFY=NEVER", "<b@b.test>"],
    );
    assert_eq!(
        r.iter().map(|r| r.code).collect::<Vec<_>>(),
        [250, 250, 250, 354]
    );
    // The end of data and QUIT in one write too.
    let mut tail = dot_stuff(BODY);
    tail.extend_from_slice(b"QUIT\r\n");
    c.send(&tail).unwrap();
    expect(c.read_reply().unwrap(), 250, "2.0.0");
    assert_eq!(c.read_reply().unwrap().code, 221);
    let m = f.wait_for_messages(1, SECS(5));
    assert_eq!(m[0].data, BODY);
    assert_eq!(m[0].rcpt_options, [vec!["NOTIFY=NEVER"], vec![]]);
    assert_eq!(m[0].mail_options, ["BODY=8BITMIME"]);
    assert!(f.session_log(1).contains("C: QUIT"));
}

#[test]
fn faulty_tempfail_once_accepts_the_retry() {
    let f = Smtp::faulty("tempfail-once", &[]);
    let mut c = connect(&f);
    ehlo(&mut c);
    let r = pipelined(&mut c, "<s@a.test>", &["<r@b.test>"]);
    assert_eq!(
        (r[1].code, r[1].text().as_str()),
        (451, "4.3.0 try again later")
    );
    assert_eq!(r[2].code, 554, "DATA without recipients: {r:?}");
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    // The retry, on a new connection as a later queue run would, succeeds.
    let mut c = connect(&f);
    ehlo(&mut c);
    let r = pipelined(&mut c, "<s@a.test>", &["<r@b.test>"]);
    assert_eq!(
        r.iter().map(|r| r.code).collect::<Vec<_>>(),
        [250, 250, 354]
    );
    c.send(&dot_stuff(BODY)).unwrap();
    expect(c.read_reply().unwrap(), 250, "2.0.0");
    let m = f.wait_for_messages(1, SECS(5));
    assert_eq!((m.len(), m[0].connection), (1, 2));
    assert_eq!(f.connections(), 2);
}

#[test]
fn faulty_tempfail_data_once() {
    let f = Smtp::faulty("tempfail-data-once", &[]);
    let mut c = connect(&f);
    ehlo(&mut c);
    for expected in [451, 250] {
        let r = pipelined(&mut c, "<s@a.test>", &["<r@b.test>"]);
        assert_eq!(r[2].code, 354);
        c.send(&dot_stuff(BODY)).unwrap();
        assert_eq!(c.read_reply().unwrap().code, expected);
    }
    assert_eq!(f.wait_for_messages(1, SECS(5)).len(), 1);
}

#[test]
fn faulty_reject_rcpt() {
    let f = Smtp::faulty("reject-rcpt", &[]);
    let mut c = connect(&f);
    ehlo(&mut c);
    let r = pipelined(&mut c, "<s@a.test>", &["<bad1@b.test>", "<good@b.test>"]);
    assert_eq!(
        (r[1].code, r[1].text().as_str()),
        (550, "5.1.1 <bad1@b.test>: user unknown")
    );
    assert_eq!((r[2].code, r[3].code), (250, 354));
    c.send(&dot_stuff(BODY)).unwrap();
    expect(c.read_reply().unwrap(), 250, "2.0.0");
    let m = f.wait_for_messages(1, SECS(5));
    assert_eq!(m[0].rcpt_tos, ["good@b.test"]);
}

#[test]
fn faulty_reject_data() {
    let f = Smtp::faulty("reject-data", &[]);
    let mut c = connect(&f);
    ehlo(&mut c);
    let r = pipelined(&mut c, "<s@a.test>", &["<r@b.test>"]);
    assert_eq!(r[2].code, 354);
    c.send(&dot_stuff(BODY)).unwrap();
    let r = c.read_reply().unwrap();
    assert_eq!((r.code, r.text().as_str()), (552, "5.3.4 message too big"));
    assert_eq!(f.message_count(), 0);
}

#[test]
fn faulty_drop_mid_data() {
    let f = Smtp::faulty("drop-mid-data", &[]);
    let mut c = connect(&f);
    ehlo(&mut c);
    let r = pipelined(&mut c, "<s@a.test>", &["<r@b.test>"]);
    assert_eq!(r[2].code, 354);
    c.send(b"Subject: first line\r\n").unwrap();
    assert!(c.closed_within(SECS(5)), "the connection should be dropped");
    assert!(c.read_reply().is_err(), "no reply to the data");
    assert_eq!(f.message_count(), 0);
    assert!(f.session_log(1).contains("dropping the connection"));
}

#[test]
fn faulty_tarpit_says_nothing() {
    let f = Smtp::faulty("tarpit", &[]);
    let mut c = SmtpConn::connect(&f.addr()).expect("the TCP connection is accepted");
    c.set_read_timeout(Duration::from_millis(1500)).unwrap();
    let err = c.read_reply().expect_err("no greeting");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );
    assert!(harness::wait_until(SECS(3), || f.connections() == 1));
}

#[test]
fn faulty_slow_rcpt() {
    // A delay of 2 s, so that a fast reply a loaded machine holds up for
    // a second is not taken for a delayed one, and a delayed one still
    // comes well within the client's 5 s read time-out.
    let f = Smtp::faulty("slow-rcpt", &["--delay", "2", "--match", "@slow.test"]);
    let mut c = connect(&f);
    ehlo(&mut c);
    expect(c.cmd("MAIL FROM:<s@a.test>").unwrap(), 250, "2.1.0");
    let t = Instant::now();
    expect(c.cmd("RCPT TO:<fast@b.test>").unwrap(), 250, "2.1.5");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    expect(c.cmd("RCPT TO:<x@slow.test>").unwrap(), 250, "2.1.5");
    assert!(
        t.elapsed() >= Duration::from_millis(1950),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn faulty_no_ehlo_falls_back_to_helo() {
    let f = Smtp::faulty("no-ehlo", &[]);
    let mut c = connect(&f);
    expect(c.cmd("EHLO selftest.test").unwrap(), 502, "5.5.1");
    assert_eq!(c.cmd("HELO selftest.test").unwrap().code, 250);
    assert_eq!(c.cmd("MAIL FROM:<s@a.test> SIZE=10").unwrap().code, 501);
    let r = pipelined(&mut c, "<s@a.test>", &["<r@b.test>"]);
    assert_eq!(
        r.iter().map(|r| r.code).collect::<Vec<_>>(),
        [250, 250, 354]
    );
    c.send(&dot_stuff(BODY)).unwrap();
    assert_eq!(c.read_reply().unwrap().code, 250);
    let m = f.wait_for_messages(1, SECS(5));
    assert!(!m[0].esmtp);
    assert_eq!(m[0].data, BODY);
}

#[test]
fn faulty_greet_554() {
    let f = Smtp::faulty("greet-554", &[]);
    let mut c = SmtpConn::connect(&f.addr()).unwrap();
    expect(c.read_reply().unwrap(), 554, "5.3.2");
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    assert!(c.closed_within(SECS(3)));
}

#[test]
fn same_port_on_two_addresses() {
    let s = Smtp::start_same_port(&[(Fixture::Faulty("greet-554"), &[]), (Fixture::Sink, &[])]);
    assert_eq!(s[0].port, s[1].port);
    assert_ne!(s[0].host, s[1].host);
    let mut c = SmtpConn::connect(&s[0].addr()).unwrap();
    assert_eq!(c.read_reply().unwrap().code, 554);
    connect(&s[1]);
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn fixtures_stop_on_drop_lifetime_and_stdin_eof() {
    // Drop kills and reaps.
    let sink = Smtp::sink(&[]);
    let pid = sink.pid();
    drop(sink);
    assert!(!pid_alive(pid));

    // --lifetime ends a fixture by itself, even with a connection held.
    let mut tarpit = Smtp::faulty("tarpit", &["--lifetime", "1"]);
    let _held = SmtpConn::connect(&tarpit.addr()).unwrap();
    let status = tarpit.wait_exit(SECS(5)).expect("exits after its lifetime");
    assert!(status.success(), "{status:?}");

    // EOF on stdin (the test process died) ends it too.
    let dir = harness::scratch_dir("stdin-eof");
    let mut child = Command::new(harness::python())
        .arg(harness::fixtures_dir().join("sink.py"))
        .args(["--host", &harness::loopback_host(), "--outdir"])
        .arg(&dir)
        .arg("--exit-on-stdin-eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("READY "), "{line:?}");
    drop(child.stdin.take());
    assert!(harness::wait_until(SECS(5), || matches!(
        child.try_wait(),
        Ok(Some(_))
    )));
    let _ = std::fs::remove_dir_all(dir);
}

/// The pids of processes whose command line mentions `needle`.
fn pids_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn dns_serves_txt_records_longer_than_one_string() {
    // A DKIM key is longer than the 255 octets of one TXT string: the
    // fixture splits it, and a reader joins the strings back.
    let key = format!("v=DKIM1; k=rsa; p={}", "A".repeat(400));
    let dns = Dns::start(
        &DnsZone::new()
            .txt("sel._domainkey.dkim.test", &key)
            .txt("_mta-sts.dkim.test", "v=STSv1; id=1, with a comma"),
    );
    let a = dns.query_many(&[
        ("sel._domainkey.dkim.test", "TXT"),
        ("_mta-sts.dkim.test", "TXT"),
        ("dkim.test", "TXT"),
    ]);
    let strings =
        |r: &str| -> String { r.split('"').skip(1).step_by(2).collect::<Vec<_>>().concat() };
    assert_eq!(a[0].rcode, "NOERROR");
    assert_eq!(a[0].records.len(), 1, "{a:?}");
    assert_eq!(strings(&a[0].records[0]), key);
    assert!(
        a[0].records[0].matches('"').count() == 4,
        "two strings: {a:?}"
    );
    assert_eq!(strings(&a[1].records[0]), "v=STSv1; id=1, with a comma");
    // A name with records only below it: no data, not NXDOMAIN.
    assert_eq!((a[2].rcode.as_str(), a[2].records.len()), ("NOERROR", 0));
}

#[test]
fn dns_answers_each_kind_of_domain() {
    let dns = Dns::start(&DnsZone::standard("127.0.0.2", "127.0.0.3"));
    let q: &[(&str, &str)] = &[
        ("mx.test", "MX"),
        ("mx1.mx.test", "A"),
        ("mx1.mx.test", "AAAA"),
        ("failover.test", "MX"),
        ("mx1.failover.test", "A"),
        ("mx2.failover.test", "A"),
        ("mx.multi.test", "A"),
        ("implicit.test", "MX"),
        ("implicit.test", "A"),
        ("nullmx.test", "MX"),
        ("dangling.test", "MX"),
        ("gone.dangling.test", "A"),
        ("nxdomain.test", "MX"),
        ("nxdomain.test", "A"),
        ("servfail.test", "MX"),
        ("host.servfail.test", "A"),
        ("example.com", "A"),
        ("mx.test", "tcp:MX"),
        ("servfail.test", "tcp:MX"),
        ("timeout.test", "MX"),
    ];
    let a = dns.query_many(q);
    let ans = |rcode: &str, recs: &[&str]| DnsAnswer {
        rcode: rcode.into(),
        records: recs.iter().map(|r| r.to_string()).collect(),
    };
    let expected = [
        ans("NOERROR", &["10 mx1.mx.test."]),
        ans("NOERROR", &["127.0.0.2"]),
        ans("NOERROR", &[]),
        ans(
            "NOERROR",
            &["10 mx1.failover.test.", "20 mx2.failover.test."],
        ),
        ans("NOERROR", &["127.0.0.2"]),
        ans("NOERROR", &["127.0.0.3"]),
        ans("NOERROR", &["127.0.0.2", "127.0.0.3"]),
        ans("NOERROR", &[]),
        ans("NOERROR", &["127.0.0.2"]),
        ans("NOERROR", &["0 ."]),
        ans("NOERROR", &["10 gone.dangling.test."]),
        ans("NXDOMAIN", &[]),
        ans("NXDOMAIN", &[]),
        ans("NXDOMAIN", &[]),
        ans("SERVFAIL", &[]),
        ans("SERVFAIL", &[]),
        ans("REFUSED", &[]),
        ans("NOERROR", &["10 mx1.mx.test."]),
        ans("SERVFAIL", &[]),
        ans("TIMEOUT", &[]),
    ];
    for ((question, got), want) in q.iter().zip(&a).zip(&expected) {
        assert_eq!(got, want, "{question:?}");
    }
    assert!(dns.query_log().contains("query[MX] nullmx.test"));
    // Nothing is forwarded except to this fixture's own loopback stubs.
    let conf = std::fs::read_to_string(dns.outdir.join("dnsmasq.conf")).unwrap();
    for line in conf.lines().filter(|l| l.starts_with("server=")) {
        assert!(line.contains("/127.0.0.1#"), "{line}");
    }
    assert!(conf.contains("\nno-resolv\n"));

    // Dropping it stops dnsmasq as well.
    let conf_path = dns
        .outdir
        .join("dnsmasq.conf")
        .to_string_lossy()
        .into_owned();
    let dnsmasq = pids_mentioning(&conf_path);
    assert!(!dnsmasq.is_empty());
    drop(dns);
    assert!(harness::wait_until(SECS(3), || pids_mentioning(&conf_path).is_empty()));
}
