//! Issue 12's findings on the submission side, each as a hostile caller
//! would try it: what must hold however the input is shaped.

mod harness;

use harness::{Config, Spool};

fn spool(tag: &str) -> Spool {
    Spool::new(tag, &Config::submission())
}

/// A header block over the limit is refused whole: no header line after the
/// limit becomes a body line, so a late Bcc is never shown to the other
/// recipients (finding 1).
#[test]
fn header_over_the_limit_is_refused_and_nothing_queued() {
    let s = spool("bighead");
    let mut input = b"To: bob@example.com\n".to_vec();
    while input.len() < 1024 * 1024 {
        input.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\n");
    }
    input.extend_from_slice(b"Bcc: secret@example.net\n\nbody\n");
    for args in [&["-t"][..], &["-i", "bob@example.com"]] {
        let out = s.run(args, &input);
        let line = out.assert_fails_one_line(&[65]);
        assert!(line.contains("header too large"), "{line}");
        s.assert_empty("a header over the limit");
    }
}
