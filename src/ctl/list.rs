//! `spoolctl list`: mailq's listing with each message's attempts and next
//! attempt, or with `--json` one object per message per line, in the field
//! names of Postfix's `postqueue -j` (so that tools written for Postfix
//! read it unchanged) plus spoolmail's own.

use super::Filter;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::json::Object;
use crate::mailq::{self, Listed, ShownFn};
use crate::spool::{QueueEntry, RcptStatus, Spool, Standing};
use crate::system;
use std::io::{self, Write};

pub fn list(config: &Config, json: bool, filter: Option<&Filter>) -> Result<u8> {
    let viewer = system::pass_owner(&config.spool_dir, config.admin_group.as_deref());
    let spool = Spool::new(&config.spool_dir).looked_at_by(viewer);
    let (now, _) = system::now();
    let shown = |l: &Listed| filter.is_none_or(|f| f.matches(&l.envelope, now));
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if json {
        list_json(&spool, &mut out, &shown, now)?;
    } else {
        let detail = |l: &Listed| Some(detail(l, now));
        mailq::list_with(&spool, &mut out, &shown, &detail)?;
    }
    out.flush()
        .map_err(|e| Error::io("cannot write the listing", e))?;
    Ok(crate::error::exit::OK)
}

/// The line below a message's first: its attempts and the next one.
fn detail(l: &Listed, now: u64) -> String {
    let next = if let Some(since) = l.state.held {
        format!("none: held since {}", system::mailq_date(since))
    } else if l.state.attempts == 0 || l.state.next_attempt <= now {
        "at the next queue run".to_string()
    } else {
        system::mailq_date(l.state.next_attempt)
    };
    format!("attempts: {}, next attempt: {next}", l.state.attempts)
}

fn list_json(spool: &Spool, out: &mut impl Write, shown: ShownFn, now: u64) -> Result<()> {
    let out_err = |e| Error::io("cannot write the listing", e);
    let read = |entry: &QueueEntry| match Listed::load(spool, entry) {
        Ok(Some(l)) => Ok(shown(&l).then(|| object(&l, now).render())),
        Ok(None) => Ok(None), // delivered and removed meanwhile
        Err(e) => Err(e),
    };
    let entries = spool.scan()?;
    mailq::in_order(&entries, mailq::listing_threads(), read, |entry, line| {
        match line {
            Ok(Some(line)) => writeln!(out, "{line}")?,
            Ok(None) => {}
            // Never silently missing from a count: said on stderr.
            Err(e) => system::errln(format_args!("spoolctl: {}: unreadable: {e}", entry.id)),
        }
        Ok(())
    })
    .map_err(out_err)
}

/// Where the message stands, by the rule the metrics count by
/// ([`crate::spool::standing`]): a state that cannot be read holds it.
fn standing(l: &Listed, now: u64) -> Standing {
    let state = l.unreadable.is_empty().then_some(&l.state);
    crate::spool::standing(state, l.busy, now)
}

/// One message as `postqueue -j` writes it, plus spoolmail's fields.
fn object(l: &Listed, now: u64) -> Object {
    let recipients = (l.waiting().into_iter())
        .map(|(i, status, reason)| {
            let status = match status {
                RcptStatus::Deferred => "deferred",
                _ => "pending",
            };
            Object::new()
                .str("address", &l.envelope.recipients[i].address.to_string())
                .str("delay_reason", reason)
                .str("status", status)
        })
        .collect();
    let standing = standing(l, now);
    let next = match (standing, l.state.attempts) {
        (Standing::Hold, _) => None,
        (_, 0) => Some(0),
        (_, _) => Some(l.state.next_attempt),
    };
    Object::new()
        .str("queue_name", standing.name())
        .str("queue_id", l.envelope.id.as_str())
        .num("arrival_time", l.envelope.arrival)
        .num("message_size", l.size)
        .bool("forced_expire", false)
        .str("sender", &l.envelope.sender)
        .array("recipients", recipients)
        .num("attempts", u64::from(l.state.attempts))
        .opt_num("next_attempt", next)
}
