//! `spoolctl show ID [--body]`: one message's envelope, each recipient's
//! state with its last reply, and its header (all of it with `--body`).

use crate::config::Config;
use crate::error::{Error, Result, exit};
use crate::mailq::Listed;
use crate::model::{QueueId, sanitize};
use crate::spool::{RcptStatus, Spool};
use crate::system;
use std::io::{self, BufRead, Write};

pub fn show(config: &Config, text: &str, body: bool) -> Result<u8> {
    // None: root, the spool's group or admin_group; else the caller's uid.
    let owner = system::pass_owner(&config.spool_dir, config.admin_group.as_deref());
    let spool = Spool::new(&config.spool_dir).looked_at_by(owner);
    if body && owner.is_some() {
        return Err(Error::NoPerm(
            "show --body is for root, the spool's group and admin_group".into(),
        ));
    }
    let unknown = || Error::NoUser(format!("{text}: no such message in the queue"));
    let id = QueueId::parse(&text.to_ascii_uppercase()).ok_or_else(unknown)?;
    let listed = Listed::load(&spool, &spool.entry(&id))
        .map_err(|e| Error::io(format!("cannot read {id}"), e))?
        .ok_or_else(unknown)?;
    if owner.is_some_and(|uid| uid != listed.envelope.uid) {
        return Err(Error::NoPerm(format!(
            "{id}: not your message (only root, the spool's group and admin_group see others' mail)"
        )));
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let write_err = |e| Error::io("cannot write the message", e);
    envelope(&listed, &mut out).map_err(write_err)?;
    let (_, mut content) = match spool.open_content(&id) {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(unknown()),
        Err(e) => return Err(Error::io(format!("cannot read {id}"), e)),
    };
    writeln!(out).map_err(write_err)?;
    if body {
        // The message as it is, as `postcat -b` and `cat` show it.
        io::copy(&mut content, &mut out).map_err(write_err)?;
    } else {
        header(&mut content, &mut out).map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    Ok(exit::OK)
}

/// The envelope and the state, one `name: value` line each, then one line
/// per recipient.
fn envelope(l: &Listed, out: &mut impl Write) -> io::Result<()> {
    let env = &l.envelope;
    let state = match (l.state.held, l.busy) {
        (Some(since), _) => format!("held since {}", system::mailq_date(since)),
        (None, true) => "in delivery now".to_string(),
        (None, false) if !l.unreadable.is_empty() => sanitize(&l.unreadable),
        (None, false) => "waiting".to_string(),
    };
    let next = match (l.state.held, l.state.attempts) {
        (Some(_), _) => "none while held".to_string(),
        (None, 0) => "at the next queue run".to_string(),
        (None, _) => system::mailq_date(l.state.next_attempt),
    };
    writeln!(out, "queue id: {}", env.id)?;
    writeln!(
        out,
        "arrival: {} ({})",
        system::mailq_date(env.arrival),
        env.arrival
    )?;
    writeln!(out, "sender: <{}>", sanitize(&env.sender))?;
    writeln!(out, "submitted by: uid {}", env.uid)?;
    writeln!(out, "size: {}", l.size)?;
    writeln!(out, "state: {state}")?;
    writeln!(out, "attempts: {}, next attempt: {next}", l.state.attempts)?;
    for (i, r) in env.recipients.iter().enumerate() {
        let (status, text) = l.state.status_of(i);
        let status = match status {
            RcptStatus::Pending => "pending",
            RcptStatus::Delivered => "delivered",
            RcptStatus::Deferred => "deferred",
            RcptStatus::Failed => "failed",
        };
        let orcpt = (r.orcpt.as_deref()).map_or(String::new(), |o| format!(" ({})", sanitize(o)));
        let text = if text.is_empty() {
            String::new()
        } else {
            format!(": {}", sanitize(text))
        };
        writeln!(out, "recipient: {}{orcpt}: {status}{text}", r.address)?;
    }
    Ok(())
}

/// The message's header, up to its empty line, with control characters
/// (but tabs) shown as `?`: it goes to an admin's terminal.
fn header(content: &mut impl BufRead, out: &mut impl Write) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if content.read_until(b'\n', &mut line)? == 0 || line == b"\n" {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let shown: String = (text.trim_end_matches('\n').chars())
            .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
            .collect();
        writeln!(out, "{shown}")?;
    }
}
