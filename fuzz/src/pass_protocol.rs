//! What the queue parent and its delivery children say to each other: any
//! line either decodes or is refused, what encodes is one line, and a
//! decoded message encodes back to itself (reasons lose only control
//! characters).

use crate::common::text;
use spoolmail::mime::one_line;
use spoolmail::pass_protocol::Message;

pub fn check(data: &[u8]) {
    // Lines as the reader gives them: up to and with the first `\n`.
    let input = text(data);
    let line = input.split_inclusive('\n').next().unwrap_or("");
    let Some(m) = Message::decode(line) else {
        return;
    };
    let encoded = m.encode();
    assert!(encoded.ends_with('\n'));
    // One line: ids are queue ids, reasons lose their control characters.
    assert!(
        !encoded[..encoded.len() - 1].chars().any(char::is_control),
        "encoded message is not one line: {encoded:?}"
    );
    let back = Message::decode(&encoded).expect("an encoded message decodes");
    assert_eq!(back, sanitized(m), "round trip of {line:?}");
}

/// The message as it can go over the socket.
fn sanitized(m: Message) -> Message {
    match m {
        Message::Dead { reason } => Message::Dead {
            reason: one_line(&reason),
        },
        Message::Failed { id, index, reason } => Message::Failed {
            id,
            index,
            reason: one_line(&reason),
        },
        other => other,
    }
}
