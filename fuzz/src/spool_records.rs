//! The spool's envelope and state records (doc/SPOOL.md): a record built
//! from any values the writers are given round-trips exactly, and any text
//! read back either is refused or reads the same after being written again.

use crate::common::{Bytes, text};
use spoolmail::model::{Address, BodyType, Notify, PassId, QueueId, Ret};
use spoolmail::spool::{
    Envelope, ListingLines, PassMark, RcptStatus, Recipient, State, StateFile, envelope_copy,
    format_state, listing_lines, parse_envelope, parse_state, parse_state_of, write_envelope,
};

pub fn check(data: &[u8]) {
    let mut b = Bytes(data);
    match b.byte() % 4 {
        0 => envelope_round_trip(&mut b),
        1 => state_round_trip(&mut b),
        2 => envelope_text(b.rest()),
        _ => state_text(b.rest()),
    }
}

/// A value as the writers get them: one line, no control characters, no
/// trailing space (values come from checked addresses, ids and numbers).
fn value(b: &mut Bytes) -> String {
    let t: String = text(b.until(0xff))
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    t.trim_end_matches(' ').to_string()
}

fn notify(bits: u8) -> Notify {
    [Notify::SUCCESS, Notify::FAILURE, Notify::DELAY]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .fold(Notify::NEVER, |set, (_, f)| set | f)
}

fn envelope_round_trip(b: &mut Bytes) {
    let flags = b.byte();
    let mut e = Envelope {
        id: QueueId::new(
            u64::from(b.u16()) << 16 | u64::from(b.u16()),
            u32::from(b.u16()),
            u64::from(b.u16()),
        ),
        arrival: u64::from(b.u16()) << 20 | u64::from(b.u16()),
        uid: u32::from(b.u16()),
        sender: value(b),
        recipients: Vec::new(),
        ret: [None, Some(Ret::Full), Some(Ret::Hdrs)][usize::from(flags % 3)],
        envid: (flags & 4 != 0).then(|| value(b)),
        notify: (flags & 8 != 0).then(|| notify(b.byte())),
        body: if flags & 16 != 0 {
            BodyType::EightBitMime
        } else {
            BodyType::SevenBit
        },
        smtputf8: flags & 32 != 0,
        notice: flags & 64 != 0,
    };
    while !b.is_empty() {
        let with_orcpt = b.flag();
        e.recipients.push(Recipient {
            address: Address::accepted(&value(b)),
            orcpt: with_orcpt.then(|| value(b)),
        });
    }
    let mut written = Vec::new();
    write_envelope(&mut written, &e).expect("writing to memory");
    let (back, len) = parse_envelope(&mut &written[..]).expect("a written envelope parses");
    assert_eq!(len as usize, written.len());
    assert_eq!(back, e, "envelope round trip of {:?}", text(&written));
}

fn state_round_trip(b: &mut Bytes) {
    let mut s = State {
        attempts: u32::from(b.u16()),
        next_attempt: u64::from(b.u16()) << 24 | u64::from(b.u16()),
        recipients: Vec::new(),
        ..State::default()
    };
    if b.flag() {
        s.pass = Some(PassMark {
            id: PassId::new(
                u32::from(b.u16()) << 16 | u32::from(b.u16()),
                u64::from(b.u16()) << 48 | u64::from(b.u16()),
            ),
            at: u64::from(b.u16()) << 24 | u64::from(b.u16()),
        });
    }
    while !b.is_empty() {
        let index = usize::from(b.u16());
        let status = [
            RcptStatus::Pending,
            RcptStatus::Delivered,
            RcptStatus::Deferred,
            RcptStatus::Failed,
        ][usize::from(b.byte() % 4)];
        // Reply text may hold anything a server sent; the record keeps one line.
        let reason = text(b.until(0xff));
        s.recipients.push((index, status, reason));
    }
    let written = format_state(&s);
    // Spool format 1.8: no reply text makes a line a listing reads (a copy
    // of an envelope) or a torn state.
    let id = QueueId::new(1, 2, 3);
    let whole = spoolmail::spool::state_text(&id, &s);
    let lines = listing_lines(&id, &whole);
    assert_eq!(lines, ListingLines::default(), "{whole:?}");
    assert!(
        matches!(parse_state_of(&id, &whole), Ok(StateFile::Found(_))),
        "{whole:?}"
    );
    let back = parse_state(&written).expect("a written state parses");
    assert_eq!(back.attempts, s.attempts);
    assert_eq!(back.next_attempt, s.next_attempt);
    assert_eq!(back.pass, s.pass, "the pass line round trip");
    assert_eq!(back.recipients.len(), s.recipients.len(), "{written:?}");
    for ((i, st, t), (bi, bst, bt)) in s.recipients.iter().zip(&back.recipients) {
        assert_eq!((i, st), (bi, bst));
        assert!(!bt.chars().any(char::is_control), "control kept in {bt:?}");
        let want: String = t
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        assert_eq!(bt, &want, "state text round trip");
    }
}

fn envelope_text(data: &[u8]) {
    let Ok((e, len)) = parse_envelope(&mut &data[..]) else {
        return;
    };
    assert!(len as usize <= data.len());
    let mut written = Vec::new();
    write_envelope(&mut written, &e).expect("writing to memory");
    let (again, _) = parse_envelope(&mut &written[..]).expect("rewritten envelope parses");
    assert_eq!(again, e, "an envelope read back does not write the same");
    // Its copy in a state file (spool format 1.8) reads back as it.
    written.extend_from_slice(b"content\n");
    if let Some(copy) = envelope_copy(&written, written.len() as u64) {
        let state = spoolmail::spool::state_text(&e.id, &State::default());
        let with = state.replace("\nend\n", &format!("\n{copy}end\n"));
        let lines = listing_lines(&e.id, &with);
        assert_eq!(lines.copy, Some((e, 8)), "a copy read back: {with}");
    }
}

fn state_text(data: &[u8]) {
    // What a listing reads besides the state: never a panic.
    let _ = listing_lines(&QueueId::new(1, 2, 3), &text(data));
    let Ok(s) = parse_state(&text(data)) else {
        return;
    };
    let again = parse_state(&format_state(&s)).expect("rewritten state parses");
    assert_eq!(again.attempts, s.attempts);
    assert_eq!(again.next_attempt, s.next_attempt);
    assert_eq!(again.recipients.len(), s.recipients.len());
    assert_eq!(again.owed, s.owed, "owed notices read back");
    assert_eq!(again.delay_notified, s.delay_notified);
    assert_eq!(again.pass, s.pass, "the pass line read back");
}
