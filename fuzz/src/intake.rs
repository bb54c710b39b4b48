//! The intake (`submit::submit`, what `sendmail` does with stdin): with or
//! without `-t` and `-i`, a message is either refused with nothing queued
//! or queued whole: LF line ends only, no Bcc field left, every header line
//! still a header line, and the body exactly the input's body after the
//! line and dot rules.

use crate::common::{
    Bytes, assert_clean_header, config, normalized, origin, split_message, take_queued,
};
use spoolmail::model::Address;
use spoolmail::submit::{self, Submission};

pub fn check(data: &[u8]) {
    let mut b = Bytes(data);
    let flags = b.byte();
    let input = b.rest();
    let sub = Submission {
        sender: "alice@example.org".into(),
        recipients: if flags & 1 == 0 {
            vec![Address::parse("bob@example.com").expect("valid")]
        } else {
            vec![]
        },
        extract_recipients: flags & 1 == 1,
        ignore_dots: flags & 2 == 2,
        ..Submission::default()
    };
    let result = submit::submit(&sub, &config(), &origin(), input);
    let queued = take_queued();
    let Ok(done) = result else {
        assert!(queued.is_empty(), "a refused message was queued");
        return;
    };
    assert_eq!(queued.len(), 1, "one submission, one message");
    let (env, content) = &queued[0];
    assert_eq!(env.id, done.envelope.id);
    assert_eq!(env.recipients, done.envelope.recipients);
    assert_stored_whole(content, &normalized(input, sub.ignore_dots));
}

/// `content` (as stored) holds all of `normalized` (the input after the
/// line and dot rules): its header fields, then its body byte for byte.
pub fn assert_stored_whole(content: &[u8], normalized: &[u8]) {
    assert!(!content.contains(&b'\r'), "CR stored");
    assert!(
        content.is_empty() || content.ends_with(b"\n"),
        "last line unended"
    );
    let (header, body) = split_message(content);
    assert_clean_header(header);
    let want = body_of(normalized);
    assert!(
        body == want,
        "stored body differs from the input's:\nstored {:?}\nwanted {:?}",
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(want)
    );
}

/// Where intake's header ends in a normalized input (see
/// `submit::read_header_block`): at the empty line (dropped), or at the
/// first line that is neither a field nor a continuation (kept as body).
fn body_of(n: &[u8]) -> &[u8] {
    let mut pos = 0;
    let mut fields = 0;
    while pos < n.len() {
        let end = n[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(n.len(), |i| pos + i + 1);
        let line = &n[pos..end];
        if pos == 0 && line.starts_with(b"From ") {
            pos = end;
            continue;
        }
        if line == b"\n" {
            return &n[end..];
        }
        let continuation = matches!(line[0], b' ' | b'\t') && fields > 0;
        let field = match line.iter().position(|b| *b == b':') {
            Some(0) | None => false,
            Some(i) => line[..i].iter().all(|b| (33..=126).contains(b)),
        };
        if !(continuation || field) {
            return &n[pos..];
        }
        fields += 1;
        pos = end;
    }
    &n[n.len()..]
}
