//! Who mail says it is from (issue 13): /etc/mailname as the default
//! domain, the warning for a domain without a dot, and the forced sender
//! (`sender_address`, `rewrite_from`) that providers ask for, each checked
//! at a real SMTP server.

mod harness;

use harness::{Config, Message, Smtp, Spool};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// The delivery config to `sink` with neither `qualify_domain` nor
/// `helo_name`: the identity comes from the mail name file and the host.
fn bare(sink: &Smtp) -> Config {
    Config::delivery()
        .without("qualify_domain")
        .without("helo_name")
        .set("smarthost", sink.addr())
}

/// Delivers what is queued and returns the one message the sink got.
fn deliver_one(s: &Spool, sink: &Smtp) -> Message {
    s.pass(&[]);
    let mut msgs = sink.wait_for_messages(1, WAIT);
    assert_eq!(msgs.len(), 1);
    msgs.pop().unwrap()
}

fn header<'m>(text: &'m str, name: &str) -> Vec<&'m str> {
    text.split("\r\n\r\n")
        .next()
        .unwrap()
        .split("\r\n")
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
        })
        .collect()
}

#[test]
fn mailname_is_the_sender_domain_and_the_helo_of_a_host_without_a_dot() {
    let sink = Smtp::sink(&[]);
    let s = Spool::new("mailname", &Config::submission());
    let mailname = s.write_file("mailname", "mail.example.net\n");
    s.configure(&bare(&sink).set("mailname_file", mailname.display()));
    s.run_ok(&["bob@example.com"], b"To: root\nSubject: hi\n\nhello\n");
    let msg = deliver_one(&s, &sink);
    let user = harness::user_name(current_uid());
    assert_eq!(msg.mail_from, format!("{user}@mail.example.net"));
    let text = msg.text();
    assert!(
        header(&text, "From")[0].contains(&format!("{user}@mail.example.net")),
        "{text}"
    );
    // A bare name in the header is qualified with it too.
    assert_eq!(header(&text, "To"), ["To: root@mail.example.net"], "{text}");
    // EHLO: the host's name when it has a dot, else the mail name.
    assert!(msg.helo.contains('.'), "EHLO {}", msg.helo);
    if !spoolmail::system::kernel_host_name().contains('.') {
        let fqdn = spoolmail::system::host_name();
        let want = if fqdn.contains('.') {
            fqdn
        } else {
            "mail.example.net".into()
        };
        assert_eq!(msg.helo, want);
    }
    // qualify_domain still wins over the mail name.
    s.configure(
        &bare(&sink)
            .set("mailname_file", mailname.display())
            .set("qualify_domain", "q.example"),
    );
    let q = s.submit_one(&["bob@example.com"], b"Subject: q\n\nq\n");
    assert_eq!(q.sender(), format!("{user}@q.example"));
}

#[test]
fn a_sender_domain_without_a_dot_queues_and_says_how_to_set_it() {
    let sink = Smtp::sink(&[]);
    let s = Spool::new("nodot", &Config::submission());
    let missing = s.root().join("no-mailname");
    s.configure(&bare(&sink).set("mailname_file", missing.display()));
    let before = s.queue_ids();
    let out = s.run(&["-v", "bob@example.com"], b"Subject: hi\n\nhello\n");
    out.assert_ok();
    let q = s
        .queued()
        .into_iter()
        .find(|q| !before.contains(&q.id))
        .expect("queued");
    let domain = q.sender().rsplit_once('@').unwrap().1.to_string();
    let log = s.log();
    if domain.contains('.') {
        // This host's name is a real domain: nothing to say.
        assert!(!out.stderr.contains("not a real domain"), "{}", out.stderr);
        assert!(!log.contains("not a real domain"), "{log}");
        return;
    }
    let said = format!("the sender domain `{domain}` is not a real domain");
    assert_eq!(out.stderr.matches(&said).count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("> {}", missing.display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("qualify_domain = example.org"),
        "{}",
        out.stderr
    );
    assert_eq!(log.matches(&said).count(), 1, "{log}");
    // Without -v, the log alone says it.
    let out = s.run(&["bob@example.com"], b"Subject: hi\n\nhello\n");
    out.assert_ok();
    assert!(!out.stderr.contains(&said), "{}", out.stderr);
    assert_eq!(s.log().matches(&said).count(), 2);
    // And the mail goes out all the same.
    s.pass(&[]);
    assert_eq!(sink.wait_for_messages(2, WAIT).len(), 2);
}

#[test]
fn sender_address_is_every_envelope_sender_but_the_null_one() {
    let sink = Smtp::sink(&[]);
    let config = Config::delivery()
        .set("smarthost", sink.addr())
        .set("sender_address", "me@example.org");
    let s = Spool::new("forced", &config);
    let msg = b"From: Alice <alice@example.org>\nSubject: s\n\nbody\n";
    s.run_ok(&["-f", "alice@example.org", "bob@example.net"], msg);
    s.run_ok(&["bob@example.net"], b"Subject: as the user\n\nbody\n");
    s.run_ok(
        &["-f", "<>", "bob@example.net"],
        b"Subject: a notice\n\nbody\n",
    );
    s.pass(&[]);
    let mut msgs = sink.wait_for_messages(3, WAIT);
    msgs.sort_by_key(|m| m.seq);
    let from: Vec<&str> = msgs.iter().map(|m| m.mail_from.as_str()).collect();
    let mut want = vec!["me@example.org", "me@example.org", ""];
    let mut got = from.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // Without rewrite_from the header stays as written.
    let alice = msgs
        .iter()
        .find(|m| m.text().contains("Subject: s\r\n"))
        .unwrap();
    assert_eq!(
        header(&alice.text(), "From"),
        ["From: Alice <alice@example.org>"]
    );
    assert!(header(&alice.text(), "Reply-To").is_empty());
    // The log still names who sent it.
    assert!(
        s.log()
            .contains("sender <alice@example.org> sent as <me@example.org>"),
        "{}",
        s.log()
    );
}

#[test]
fn rewrite_from_keeps_the_name_and_the_author_in_reply_to() {
    let sink = Smtp::sink(&[]);
    let config = Config::delivery()
        .set("smarthost", sink.addr())
        .set("sender_address", "me@example.org")
        .set("rewrite_from", "yes");
    let s = Spool::new("rewritefrom", &config);
    let plain = b"From: \"Smith, Alice\" <alice@example.org>\nSubject: one\n\nbody\n";
    s.run_ok(&["-f", "alice@example.org", "bob@example.net"], plain);
    let q = s.queued().pop().unwrap();
    // Intake rewrites: the queued message is what leaves.
    assert_eq!(
        q.first_header("From").as_deref().map(str::trim),
        Some("\"Smith, Alice\" <me@example.org>")
    );
    let msg = deliver_one(&s, &sink);
    let text = msg.text();
    assert_eq!(msg.mail_from, "me@example.org");
    assert_eq!(
        header(&text, "From"),
        ["From: \"Smith, Alice\" <me@example.org>"],
        "{text}"
    );
    assert_eq!(
        header(&text, "Reply-To"),
        ["Reply-To: \"Smith, Alice\" <alice@example.org>"],
        "{text}"
    );

    // A Reply-To already there is kept, and none is added.
    let with_reply = b"From: alice@example.org\nReply-To: list@example.org\nSubject: two\n\nbody\n";
    s.run_ok(&["-f", "alice@example.org", "bob@example.net"], with_reply);
    s.pass(&[]);
    let msgs = sink.wait_for_messages(2, WAIT);
    let two = msgs
        .iter()
        .find(|m| m.text().contains("Subject: two"))
        .unwrap()
        .text();
    assert_eq!(header(&two, "From"), ["From: me@example.org"], "{two}");
    assert_eq!(
        header(&two, "Reply-To"),
        ["Reply-To: list@example.org"],
        "{two}"
    );
}

/// The uid these tests run as (from `id -u`: the tests use no unsafe code).
fn current_uid() -> u32 {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
