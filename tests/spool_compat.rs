//! The spool format is a public interface: a queue written by an earlier
//! release must still be read and delivered. tests/fixtures/spool-v1/ holds
//! a queue that the first release (spool format 1) wrote itself, unedited:
//!
//! - 6B0D5DC9B1892870: never attempted (no state file); `-t`, `-N`, `-R`,
//!   `-V`, 8-bit body, a quoted local part, a body line starting with "..";
//! - 6B0D5DC9B285B606: null sender, an `orcpt` line, a `body` value padded
//!   with spaces, tried once and deferred for all three recipients;
//! - 6B0D5DCD888417D2: tried once, one recipient delivered and one deferred,
//!   so the delivered one must not get it again.
//!
//! The test copies that queue into a fresh spool, forces a pass to a real
//! SMTP sink and checks what arrives, byte for byte where it matters.

mod harness;

use harness::{Config, Smtp, Spool};
use std::fs;
use std::path::Path;
use std::time::Duration;

fn fixture_queue() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spool-v1/queue")
}

#[test]
fn a_queue_written_by_format_1_is_delivered() {
    let sink = Smtp::sink(&[]);
    // The fixture's arrival times are fixed: a long lifetime keeps them from
    // expiring whenever the test runs.
    let s = Spool::new(
        "spool-v1",
        &Config::submission()
            .set("smarthost", sink.addr())
            .set("qualify_domain", "host.example.org")
            .set("aliases_file", "none")
            .set("max_queue_lifetime", "36500d")
            .set("connect_timeout", "3s"),
    );
    for entry in fs::read_dir(fixture_queue()).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), s.queue_dir().join(entry.file_name())).unwrap();
    }

    s.run_ok(&["-qR@"], b"");

    let mut got = sink.wait_for_messages(3, Duration::from_secs(20));
    got.sort_by(|a, b| a.mail_from.cmp(&b.mail_from));
    assert_eq!(got.len(), 3, "{got:?}");

    // The null sender's message: all three deferred recipients.
    assert_eq!(got[0].mail_from, "");
    let mut rcpts = got[0].rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(
        rcpts,
        [
            "deferred1@example.com",
            "deferred2@example.com",
            "root@host.example.org"
        ]
    );
    assert!(
        got[0]
            .text()
            .contains("\r\n\r\nThis one was tried once and deferred.\r\n")
    );

    // The never-attempted one, with its DSN parameters and 8-bit body.
    let a = &got[1];
    assert_eq!(a.mail_from, "alice@example.org");
    let mut rcpts = a.rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["\"carol smith\"@example.net", "bob@example.com"]);
    assert!(a.mail_options.iter().any(|o| o == "BODY=8BITMIME"), "{a:?}");
    let body = "\r\n\r\nA message written by spoolmail spool format 1.\r\n\
                ..a line that starts with a dot\r\n\u{e9}t\u{e9} 8-bit body\r\n";
    assert!(a.text().ends_with(body), "{:?}", a.text());
    assert!(a.text().contains("Subject: caf\u{e9} v1\r\n"));

    // The half-delivered one goes only to the recipient still owed it.
    assert_eq!(got[2].mail_from, "ops@example.org");
    assert_eq!(got[2].rcpt_tos, ["fresh@example.com"]);

    // Delivered, so nothing is left in the queue.
    let left = s.queue_files();
    assert!(left.is_empty(), "left in the queue: {left:?}");
}
