//! The queue listing (`mailq`, `sendmail -bp`) in Postfix's format, which
//! monitoring tools (check_mailq, munin, log summarisers) already parse:
//!
//! ```text
//! -Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
//! 6A3F2C1B0A1B2C3D     2134 Sun Nov 22 00:17:29  alice@example.org
//! (connect to mx.example.com[192.0.2.1]:25: Connection refused)
//!                                          bob@example.com
//!
//! \t\tTotal requests: 1
//! -- 2 Kbytes in 1 Request.
//! ```
//!
//! `*` after the id marks a message a queue runner is delivering now.

use crate::error::{Error, Result};
use crate::model::{QueueId, sanitize};
use crate::spool::{RcptStatus, Spool};
use crate::system;
use std::io::{self, Write};

pub fn list(spool: &Spool, out: &mut impl Write) -> Result<()> {
    let entries = spool.scan()?;
    let out_err = |e| Error::io("cannot write the listing", e);
    if entries.is_empty() {
        writeln!(out, "Mail queue is empty").map_err(out_err)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<11} {:>7} {:<20} -Sender/Recipient-------",
        "-Queue ID-", "--Size--", "----Arrival Time----"
    )
    .map_err(out_err)?;
    let mut total_size = 0u64;
    let mut count = 0usize;
    for entry in entries {
        match show_message(spool, &entry.id, entry.has_state, out) {
            Ok(Some(size)) => {
                total_size += size;
                count += 1;
            }
            Ok(None) => {} // delivered and removed while listing
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Err(out_err(e)),
            Err(e) => {
                writeln!(out, "{:<10}  (unreadable: {e})\n", entry.id).map_err(out_err)?;
                count += 1;
            }
        }
    }
    // Sendmail's count line, for tools that parse Sendmail's listing
    // (check_mailq's default mode); Postfix's parsers read only the last line.
    writeln!(out, "\t\tTotal requests: {count}").map_err(out_err)?;
    let plural = if count == 1 { "" } else { "s" };
    writeln!(
        out,
        "-- {} Kbytes in {count} Request{plural}.",
        total_size / 1024
    )
    .map_err(out_err)?;
    Ok(())
}

/// Prints one message; returns its size, or None when it vanished meanwhile.
fn show_message(
    spool: &Spool,
    id: &QueueId,
    has_state: bool,
    out: &mut impl Write,
) -> io::Result<Option<u64>> {
    let (envelope, size, busy) = match spool.read_envelope_for_listing(id) {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // A state that cannot be read holds the message: every recipient is
    // shown under the reason, as a runner leaves them all alone.
    let (state, held) = match has_state.then(|| spool.read_state(id)) {
        Some(Err(e)) if e.kind() != io::ErrorKind::NotFound => {
            (Default::default(), crate::spool::held_reason(&e))
        }
        Some(Ok(state)) => (state, String::new()),
        _ => (Default::default(), String::new()),
    };
    let mark = if busy { '*' } else { ' ' };
    let sender = if envelope.sender.is_empty() {
        "MAILER-DAEMON"
    } else {
        &envelope.sender
    };
    let arrival = system::mailq_date(envelope.arrival);
    writeln!(out, "{id:<10}{mark}{size:>8} {arrival:<20} {sender}")?;
    // Recipients grouped under their last error, as Postfix shows them; the
    // ones not tried yet first, so that none reads as under another's error.
    let mut groups: Vec<(&str, Vec<String>)> = vec![("", Vec::new())];
    for (i, r) in envelope.recipients.iter().enumerate() {
        let (status, mut reason) = state.status_of(i);
        if !held.is_empty() {
            reason = &held;
        }
        if matches!(status, RcptStatus::Delivered | RcptStatus::Failed) {
            continue;
        }
        // The address as it was written, when aliases or qualifying changed it.
        let shown = match &r.orcpt {
            Some(o) => format!("{} ({o})", r.address),
            None => r.address.to_string(),
        };
        match groups.iter_mut().find(|(g, _)| *g == reason) {
            Some((_, list)) => list.push(shown),
            None => groups.push((reason, vec![shown])),
        }
    }
    if !state.owed.is_empty() {
        // Every recipient may be done: the message stays for its notice.
        writeln!(
            out,
            "(a failure notice to the sender is owed: the next queue run sends it)"
        )?;
    }
    for (reason, list) in groups {
        if !reason.is_empty() {
            // Sanitized when it was recorded; again here for state files
            // written before that was so, since this goes to a terminal.
            writeln!(out, "({})", sanitize(reason))?;
        }
        for address in list {
            writeln!(out, "{:41}{address}", "")?;
        }
    }
    writeln!(out)?;
    Ok(Some(size))
}
