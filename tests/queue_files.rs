//! What a pass and mailq do with files in `queue/` that are not what they
//! should be: a state file of garbage, a FIFO, a directory or a symbolic
//! link named like a message or its state, a message without recipients.
//! None of them may be delivered blindly, hang a run, or stay unsaid.

mod harness;

use harness::{Config, Smtp, Spool};
use std::ffi::CString;
use std::fs;
use std::path::Path;
use std::time::Duration;

fn spool(sink: &Smtp) -> Spool {
    Spool::new(
        "queue-files",
        &Config::delivery()
            .set("smarthost", sink.addr())
            .deadline(Duration::from_secs(20)),
    )
}

const MESSAGE: &[u8] = b"From: alice@example.org\nSubject: hygiene\n\nbody\n";

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn a_state_file_of_garbage_holds_the_message_and_says_so() {
    let sink = Smtp::sink(&[]);
    let s = spool(&sink);
    let q = s.submit_one(&["bob@example.net", "carol@example.net"], MESSAGE);
    fs::write(
        s.queue_dir().join(format!("{}.state", q.id)),
        "\u{0}\u{7f}garbage that is no state\n",
    )
    .unwrap();
    s.pass(&[]);
    s.pass(&["-qR@"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.message_count(), 0, "never delivered blindly");
    assert_eq!(s.queue_ids(), vec![q.id.clone()], "left alone");
    let log = s.log();
    assert_eq!(
        log.matches("delivery state unreadable, message held")
            .count(),
        2,
        "once per pass:\n{log}"
    );
    let mailq = s.mailq();
    assert!(
        mailq.contains("(delivery state unreadable, message held: "),
        "{mailq}"
    );
    assert!(
        mailq.contains("bob@example.net") && mailq.contains("carol@example.net"),
        "{mailq}"
    );
}

#[test]
fn fifos_directories_and_links_in_the_queue_are_skipped_unopened() {
    let sink = Smtp::sink(&[]);
    let s = spool(&sink);
    let good = s.submit_one(&["bob@example.net"], MESSAGE);
    let held = s.submit_one(&["carol@example.net"], MESSAGE);
    // A FIFO as a message, a FIFO as the state of a real message, a
    // directory and a link named like messages (the link to a real one).
    let outside = s.root().join("outside");
    fs::copy(s.queue_dir().join(&good.id), &outside).unwrap();
    mkfifo(&s.queue_dir().join("6A3F2C1B0A1B2C3D"));
    mkfifo(&s.queue_dir().join(format!("{}.state", held.id)));
    fs::create_dir(s.queue_dir().join("6A3F2C1B0A1B2C3E")).unwrap();
    std::os::unix::fs::symlink(&outside, s.queue_dir().join("6A3F2C1B0A1B2C3F")).unwrap();

    let mailq = s.mailq(); // bounded by the spool's deadline: a hang fails
    assert!(mailq.contains(&good.id), "{mailq}");
    assert!(!mailq.contains("6A3F2C1B0A1B2C3"), "{mailq}");
    s.pass(&[]);
    let got = sink.wait_for_messages(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.message_count(), 1, "the good one only: {got:?}");
    assert_eq!(got[0].rcpt_tos, ["bob@example.net"]);
    assert_eq!(s.queue_ids().len(), 4, "{:?}", s.queue_files());
    assert!(s.queue_ids().contains(&held.id));
    let log = s.log();
    for name in ["6A3F2C1B0A1B2C3D", "6A3F2C1B0A1B2C3E", "6A3F2C1B0A1B2C3F"] {
        assert!(
            log.contains(&format!("queue/{name} is not a regular file")),
            "{log}"
        );
    }
    assert!(
        log.contains(&format!(
            "{}: delivery state unreadable, message held: not a regular file",
            held.id
        )),
        "{log}"
    );
    // A forced run selecting the FIFO by its name does not hang either.
    s.run_ok(&["-qI6A3F2C1B0A1B2C3D"], b"");
    assert!(s.mailq().contains("not a regular file"), "{}", s.mailq());
}

#[test]
fn a_message_without_recipients_is_logged_and_removed() {
    let sink = Smtp::sink(&[]);
    let s = spool(&sink);
    let id = "6A3F2C1B0A1B2C3D";
    fs::write(
        s.queue_dir().join(id),
        format!("SPOOLMAIL 1\nid {id}\narrival 1795305600\nuid 0\nsender a@example.org\nbody 7bit    \n\nSubject: none\n\nx\n"),
    )
    .unwrap();
    s.pass(&[]);
    assert!(s.queue_files().is_empty(), "{:?}", s.queue_files());
    assert!(
        s.log()
            .contains(&format!("{id}: message without recipients, removed")),
        "{}",
        s.log()
    );
    assert_eq!(sink.message_count(), 0);
}

/// A state file a crash left torn (spool format 1.7: a first attempt's
/// state is written without fsync): empty, all NUL bytes, cut short, or
/// the whole state of the message whose recycled file it was (here one
/// saying the recipient was delivered, which believed would lose the
/// mail). Each is read as no state, and logged: the message is delivered,
/// not held, not taken for delivered.
#[test]
fn a_torn_or_foreign_state_file_is_read_as_no_state_and_the_message_delivered() {
    let sink = Smtp::sink(&[]);
    let s = spool(&sink);
    let other = "6A3F2C1B0A1B2C3D";
    let foreign = format!(
        "SPOOLMAIL-STATE 1\nid {other}\nattempts 1\nnext 4102444800\nrcpt 0 delivered 250 ok\nend\n"
    );
    let torn = |id: &str| -> Vec<(String, String)> {
        vec![
            (String::new(), "an empty state file".into()),
            ("\0".repeat(90), "an empty state file".into()),
            (
                format!("SPOOLMAIL-STATE 1\nid {id}\nattempts 1\nnext 41"),
                "a state file that is not whole".into(),
            ),
            (foreign.clone(), "the state file of another message".into()),
        ]
    };
    let mut expected = Vec::new();
    for i in 0..4 {
        let q = s.submit_one(&["bob@example.net"], MESSAGE);
        let (text, why) = torn(&q.id).swap_remove(i);
        fs::write(s.queue_dir().join(format!("{}.state", q.id)), text).unwrap();
        expected.push((q.id, why));
    }
    let mailq = s.mailq();
    assert!(
        !mailq.contains("unreadable"),
        "listed as never attempted:\n{mailq}"
    );
    s.pass(&[]);
    assert_eq!(sink.wait_for_messages(4, Duration::from_secs(10)).len(), 4);
    assert!(s.queue_ids().is_empty(), "{:?}", s.queue_ids());
    let log = s.log();
    for (id, why) in expected {
        assert!(
            log.contains(&format!("{id}: {why} (a crash")) && log.contains("read as no state"),
            "{id}: {why}\n{log}"
        );
    }
}
