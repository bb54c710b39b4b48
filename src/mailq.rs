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
//! `*` after the id marks a message a queue runner is delivering now (its
//! claim lock is taken, tried without waiting, where its state has no copy
//! of its envelope, as in a transaction: see
//! [`crate::spool::ListingLines::may_be_in_delivery`]), `!` one on hold
//! (`spoolctl hold`), as Postfix marks them.

use crate::error::{Error, Result};
use crate::model::sanitized;
use crate::spool::{Envelope, QueueEntry, RcptStatus, Spool, State};
use crate::system;
use std::io::{self, Write};

pub fn list(spool: &Spool, out: &mut impl Write) -> Result<()> {
    list_with(spool, out, &|_| true, &|_| None)
}

/// Which messages a listing shows (`spoolctl list`'s selector); shared
/// by the threads that read the queue.
pub type ShownFn<'a> = &'a (dyn Fn(&Listed) -> bool + Sync);
/// The line a listing adds below a message's first; shared as [`ShownFn`].
pub type DetailFn<'a> = &'a (dyn Fn(&Listed) -> Option<String> + Sync);

/// One message of a listing, as a thread made it ready to print.
enum Item {
    /// Its text and its content's size.
    Shown(Vec<u8>, u64),
    /// Not selected, or delivered and removed since the scan.
    Hidden,
    Unreadable(io::Error),
}

/// The listing of the messages `shown` selects, each with the line
/// `detail` gives it below its first (`spoolctl list`).
pub fn list_with(
    spool: &Spool,
    out: &mut impl Write,
    shown: ShownFn,
    detail: DetailFn,
) -> Result<()> {
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
    let item = |entry: &QueueEntry| {
        // Room for a message's lines at once: grown from empty, the text
        // was reallocated five times a message.
        let mut text = Vec::with_capacity(crate::limits::LISTED_MESSAGE_TEXT);
        match show_message(spool, entry, (shown, detail), &mut text) {
            Ok(Some(size)) => Item::Shown(text, size),
            Ok(None) => Item::Hidden,
            Err(e) => Item::Unreadable(e),
        }
    };
    in_order(
        &entries,
        listing_threads(),
        item,
        |entry, item| match item {
            Item::Shown(text, size) => {
                total_size += size;
                count += 1;
                out.write_all(&text)
            }
            Item::Hidden => Ok(()),
            Item::Unreadable(e) => {
                count += 1;
                writeln!(out, "{:<10}  (unreadable: {e})\n", entry.id)
            }
        },
    )
    .map_err(out_err)?;
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

/// Calls `emit` with each entry and what `read` makes of it, in the
/// order of `entries`. The reading (open, lock test, read, parse, format:
/// system calls for the most part) runs on a few threads at once, a round
/// of entries at a time, so that memory stays bounded by a round's
/// results, however long the queue. Only spoolctl and mailq call it (also
/// for spoolctl's actions, whose unlinks and fsyncs wait on the file
/// system's journal, together rather than one after another): a queue
/// pass, which forks, stays single-threaded.
/// The threads a listing reads with: its work is system calls that each
/// take a core, so no more than the machine has.
pub fn listing_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(crate::limits::LISTING_THREADS)
}

pub fn in_order<E: Sync, T: Send>(
    entries: &[E],
    threads: usize,
    read: impl Fn(&E) -> T + Sync,
    mut emit: impl FnMut(&E, T) -> io::Result<()>,
) -> io::Result<()> {
    let threads = threads.max(1);
    for round in entries.chunks(crate::limits::LISTING_ROUND) {
        let part = round.len().div_ceil(threads);
        let results: Vec<Vec<T>> = std::thread::scope(|scope| {
            let mut parts = round.chunks(part);
            let mine = parts.next().unwrap_or_default();
            // A thread that cannot be made (the caller's RLIMIT_NPROC, no
            // memory) leaves its part to this one: never a panic halfway
            // through an action, with some messages acted on and not said.
            let others: Vec<_> = parts
                .map(|p| {
                    let spawned = std::thread::Builder::new()
                        .spawn_scoped(scope, || p.iter().map(&read).collect::<Vec<T>>());
                    spawned.map_err(|_| p)
                })
                .collect();
            let mut results = vec![mine.iter().map(&read).collect()];
            for other in others {
                results.push(match other {
                    // A panic in a reader is a bug: passed on as it is.
                    Ok(thread) => thread
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    Err(part) => part.iter().map(&read).collect(),
                });
            }
            results
        });
        for (entry, result) in round.iter().zip(results.into_iter().flatten()) {
            emit(entry, result)?;
        }
    }
    Ok(())
}

/// One queued message as the listings show it.
pub struct Listed {
    pub envelope: Envelope,
    /// The content's length (what mailq shows as the size).
    pub size: u64,
    /// A queue runner holds the message's claim lock now.
    pub busy: bool,
    pub state: State,
    /// Why the state cannot be read (the message is then left alone), or
    /// empty.
    pub unreadable: String,
}

impl Listed {
    /// Reads one message for a listing; None when it vanished meanwhile
    /// (delivered and removed). The state comes first: since spool format
    /// 1.8 a deferred message's carries a copy of the envelope, and the
    /// message file is not opened. A state without a whole copy of its
    /// own (the one a runner writes before its transaction, one written
    /// before 1.8, or an envelope too long to copy) sends the listing to
    /// the message file, whose lock it tests (`*`), as before.
    pub fn load(spool: &Spool, entry: &QueueEntry) -> io::Result<Option<Listed>> {
        // A state that cannot be read holds the message: every recipient is
        // shown under the reason, as a runner leaves them all alone.
        let (state, lines, unreadable) =
            match entry.has_state.then(|| spool.read_state_listed(entry)) {
                Some(Err(e)) if e.kind() != io::ErrorKind::NotFound => (
                    Default::default(),
                    Default::default(),
                    crate::spool::held_reason(&e),
                ),
                Some(Ok((state, lines))) => (state, lines, String::new()),
                _ => Default::default(),
            };
        // A copy means no transaction is under way (see
        // `ListingLines::may_be_in_delivery`): nothing to test the lock for.
        let read = match lines.copy {
            Some((envelope, size)) => Ok((envelope, size, false)),
            None => spool.read_for_listing(entry),
        };
        let (envelope, size, busy) = match read {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Listed {
            envelope,
            size,
            busy,
            state,
            unreadable,
        }))
    }

    /// The recipients still waiting (pending or deferred), each with the
    /// reason of its last attempt (empty when none was made).
    pub fn waiting(&self) -> Vec<(usize, RcptStatus, &str)> {
        let mut out = Vec::new();
        for i in 0..self.envelope.recipients.len() {
            let (status, mut reason) = self.state.status_of(i);
            if !self.unreadable.is_empty() {
                reason = &self.unreadable;
            }
            if !matches!(status, RcptStatus::Delivered | RcptStatus::Failed) {
                out.push((i, status, reason));
            }
        }
        out
    }

    /// The sender as the listings show it: `MAILER-DAEMON` for `<>`.
    pub fn sender(&self) -> &str {
        if self.envelope.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &self.envelope.sender
        }
    }
}

/// The messages a listing shows, and the line it adds below each one's first.
type Shown<'a> = (ShownFn<'a>, DetailFn<'a>);

/// Prints one message; returns its size, or None when it vanished meanwhile
/// (or is not shown).
fn show_message(
    spool: &Spool,
    entry: &QueueEntry,
    (shown, detail): Shown,
    out: &mut impl Write,
) -> io::Result<Option<u64>> {
    let Some(listed) = Listed::load(spool, entry)? else {
        return Ok(None);
    };
    if !shown(&listed) {
        return Ok(None);
    }
    write_message(&listed, detail(&listed).as_deref(), out)?;
    Ok(Some(listed.size))
}

/// Writes one message in mailq's form; `detail`, a line printed after the
/// message's own (spoolctl's attempts and next attempt).
pub fn write_message(
    listed: &Listed,
    detail: Option<&str>,
    out: &mut impl Write,
) -> io::Result<()> {
    let envelope = &listed.envelope;
    let id = &envelope.id;
    let size = listed.size;
    // Postfix's marks: `!` on hold, `*` being delivered.
    let mark = match (listed.state.held, listed.busy) {
        (Some(_), _) => '!',
        (None, true) => '*',
        (None, false) => ' ',
    };
    let arrival = system::mailq_date(envelope.arrival);
    writeln!(
        out,
        "{id:<10}{mark}{size:>8} {arrival:<20} {}",
        listed.sender()
    )?;
    if let Some(detail) = detail {
        writeln!(out, "{:21}{detail}", "")?;
    }
    // Recipients grouped under their last error, as Postfix shows them; the
    // ones not tried yet first, so that none reads as under another's error.
    let mut groups: Vec<(&str, Vec<usize>)> = vec![("", Vec::new())];
    for (i, _, reason) in listed.waiting() {
        match groups.iter_mut().find(|(g, _)| *g == reason) {
            Some((_, list)) => list.push(i),
            None => groups.push((reason, vec![i])),
        }
    }
    if !listed.state.owed.is_empty() {
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
            writeln!(out, "({})", sanitized(reason))?;
        }
        for i in list {
            let r = &envelope.recipients[i];
            write!(out, "{:41}{}", "", r.address)?;
            // The address as it was written, when aliases or qualifying
            // changed it.
            match &r.orcpt {
                Some(o) => writeln!(out, " ({o})")?,
                None => writeln!(out)?,
            }
        }
    }
    writeln!(out)?;
    Ok(())
}
