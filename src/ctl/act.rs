//! `spoolctl delete|hold|release|retry`: each message is changed under its
//! claim lock (`spool::claim`), the one a queue runner holds while it
//! delivers, so an action never races a delivery: a message in delivery
//! is not waited for (a transaction may take minutes) but reported "in
//! delivery, try again" (exit 75).

use super::{Action, Target};
use crate::config::Config;
use crate::error::{Error, Result, exit};
use crate::log::Log;
use crate::model::QueueId;
use crate::spool::{Claim, ClaimSlot, Envelope, Spool};
use crate::system;
use std::io::{self, Write};

/// How the action went for one message, with what is said of it.
enum Outcome {
    /// The line for standard output, and the log's line (None: nothing
    /// changed).
    Done(String, Option<String>),
    /// Not in the queue (never was, or delivered meanwhile): the line for
    /// standard error.
    Unknown(String),
    /// Refused, with the exit code that says why and the line for
    /// standard error.
    Failed(u8, String),
}

/// The outcomes of a run, for its exit code.
struct Tally {
    done: usize,
    unknown: usize,
    failed: Vec<u8>,
    /// Standard output, buffered: one write for many messages' lines, not
    /// one each. Flushed before anything goes to standard error, so that
    /// the two, on one terminal, keep their order.
    out: io::BufWriter<io::Stdout>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            done: 0,
            unknown: 0,
            failed: Vec::new(),
            out: io::BufWriter::new(io::stdout()),
        }
    }

    /// Counts one outcome and says it; returns the line for the log.
    fn add(&mut self, outcome: Outcome) -> Option<String> {
        let said = match outcome {
            Outcome::Done(said, logged) => {
                // A closed standard output stops nothing: the log has it.
                let _ = writeln!(self.out, "{said}");
                self.done += 1;
                return logged;
            }
            Outcome::Unknown(said) => {
                self.unknown += 1;
                said
            }
            Outcome::Failed(code, said) => {
                self.failed.push(code);
                said
            }
        };
        let _ = self.out.flush();
        system::errln(format_args!("{said}"));
        None
    }

    /// 67 when no message matched; else the first refusal's code (75 for
    /// one in delivery: trying again helps); else 0.
    fn exit_code(&self) -> u8 {
        if self.done == 0 && self.failed.is_empty() {
            return exit::NOUSER;
        }
        let code = |c| self.failed.contains(&c).then_some(c);
        (code(exit::TEMPFAIL).or(self.failed.first().copied())).unwrap_or(exit::OK)
    }
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Delete => "delete",
        Action::Hold => "hold",
        Action::Release => "release",
        Action::Retry => "retry",
    }
}

pub fn act(config: &Config, action: Action, target: &Target) -> Result<u8> {
    let spool = Spool::new(&config.spool_dir);
    // None: root, the spool's group or admin_group; else the caller's uid.
    let owner = system::pass_owner(&config.spool_dir, config.admin_group.as_deref());
    if owner.is_some() && matches!(action, Action::Hold | Action::Release) {
        return Err(Error::NoPerm(format!(
            "{} is for root, the spool's group and admin_group",
            verb(action)
        )));
    }
    let mut tally = Tally::new();
    let ids = selected(&spool, target, owner, &mut tally)?;
    if ids.is_empty() && !matches!(target, Target::Ids(_)) {
        system::errln(format_args!("spoolctl: no queued message matches"));
    }
    let mut log = Log::open(config, "spoolctl");
    // Each message's action runs on one of several threads: an unlink or
    // an fsync waits on the file system's journal, and many waiting
    // together share its commits. The lines come out in order.
    let act = |id: &QueueId| act_on(&spool, id, action, owner);
    crate::mailq::in_order(&ids, crate::limits::ACTION_THREADS, act, |_, outcome| {
        if let Some(line) = tally.add(outcome) {
            log.info(&line);
        }
        Ok(())
    })
    .map_err(|e| Error::io("cannot act on the queue", e))?;
    // One fsync of queue/ for every deletion (100,000 of them take seconds,
    // not the minutes of one each): a crash before it may bring deleted
    // messages back, never lose one. Holds and releases sync their own.
    if action == Action::Delete && tally.done > 0 {
        spool.sync_queue()?;
    }
    let _ = tally.out.flush();
    Ok(tally.exit_code())
}

/// The messages `target` names. An id that is not in the queue is said on
/// stderr and counted; `--all` and a selector take only the caller's own
/// messages when `owner` limits them.
fn selected(
    spool: &Spool,
    target: &Target,
    owner: Option<u32>,
    tally: &mut Tally,
) -> Result<Vec<QueueId>> {
    let filter = match target {
        Target::Ids(ids) => {
            let mut found = Vec::new();
            for text in ids {
                match QueueId::parse(&text.to_ascii_uppercase()) {
                    Some(id) => found.push(id),
                    None => {
                        tally.add(unknown(text));
                    }
                }
            }
            return Ok(found);
        }
        Target::All => None,
        Target::Filter(f) => Some(f),
    };
    let entries = spool.scan()?;
    if filter.is_none() && owner.is_none() {
        // Every message: no envelope needs reading to choose.
        return Ok(entries.into_iter().map(|e| e.id).collect());
    }
    let (now, _) = system::now();
    let mut found = Vec::new();
    for entry in entries {
        let Ok((env, _)) = spool.read_envelope(&entry.id) else {
            continue; // gone meanwhile, or unreadable: never taken blindly
        };
        let mine = owner.is_none_or(|uid| env.uid == uid);
        if mine && filter.is_none_or(|f| f.matches(&env, now)) {
            found.push(entry.id);
        }
    }
    Ok(found)
}

fn unknown(id: &str) -> Outcome {
    Outcome::Unknown(format!("spoolctl: {id}: no such message in the queue"))
}

fn failed(id: &QueueId, why: &str, code: u8) -> Outcome {
    Outcome::Failed(code, format!("spoolctl: {id}: {why}"))
}

/// One message: its owner checked, its claim taken without waiting, and
/// the action done under it.
fn act_on(spool: &Spool, id: &QueueId, action: Action, owner: Option<u32>) -> Outcome {
    // A caller acting on its own mail only never locks another's message,
    // even for a moment (a runner meeting the lock would pass it over):
    // its envelope is read first. The envelope never changes once
    // committed, so reading it before the claim is as good as after.
    if let Some(uid) = owner {
        match spool.read_envelope(id) {
            Ok((env, _)) if env.uid == uid => {}
            Ok(_) => {
                let why = "not your message (only root, the spool's group and admin_group act on others' mail)";
                return failed(id, why, exit::NOPERM);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return unknown(id.as_str()),
            Err(e) => return failed(id, &format!("cannot read it: {e}"), exit::IOERR),
        }
    }
    let mut slot = ClaimSlot::default();
    // A listing's look at the envelope holds a shared lock for a moment:
    // waited out (a few milliseconds), a delivery is not.
    let claim = match spool.claim_soon(id, &mut slot) {
        Ok(Some(claim)) => claim,
        Ok(None) if spool.message_path(id).exists() => {
            return failed(id, "in delivery, try again", exit::TEMPFAIL);
        }
        Ok(None) => return unknown(id.as_str()),
        Err(e) => return failed(id, &format!("cannot lock it: {e}"), exit::IOERR),
    };
    let env = match claim.envelope() {
        Ok((env, _)) => env,
        Err(e) => return failed(id, &format!("cannot read it: {e}"), exit::IOERR),
    };
    match apply(spool, claim, &env, action) {
        Ok((done, logged)) => Outcome::Done(format!("{id}: {done}"), logged),
        Err((why, code)) => failed(id, &why, code),
    }
}

/// The action on a claimed message; what was done, in a few words, and
/// the log's line when something changed.
fn apply(
    spool: &Spool,
    claim: Claim,
    env: &Envelope,
    action: Action,
) -> std::result::Result<(&'static str, Option<String>), (String, u8)> {
    let id = &env.id;
    let by = format!("by spoolctl (uid {})", system::current_uid());
    if action == Action::Delete {
        spool
            .remove_unsynced(claim)
            .map_err(|e| (e.to_string(), e.exit_code()))?;
        let logged = format!(
            "{id}: deleted {by}, no bounce: from=<{}>, nrcpt={}",
            env.sender,
            env.recipients.len()
        );
        return Ok(("deleted", Some(logged)));
    }
    // Never rewritten from a state that cannot be read: it may record
    // deliveries that a default state would forget.
    let mut state = spool.read_state(id).map_err(|e| {
        let why = format!("delivery state unreadable, left as it is: {e}");
        (why, exit::IOERR)
    })?;
    let (now, _) = system::now();
    let done = match (action, state.held) {
        (Action::Hold, Some(_)) => return Ok(("already held", None)),
        (Action::Hold, None) => {
            state.held = Some(now);
            "held"
        }
        (Action::Release, None) => return Ok(("not held", None)),
        (Action::Release, Some(_)) => {
            state.held = None;
            state.next_attempt = now;
            "released: the next queue run takes it"
        }
        (_, Some(_)) => return Ok(("held: release it to deliver it", None)),
        (_, None) => {
            state.next_attempt = now;
            "the next queue run takes it"
        }
    };
    spool
        .write_state(&claim, &state)
        .map_err(|e| (e.to_string(), e.exit_code()))?;
    let logged = match action {
        Action::Hold => "held",
        Action::Release => "released",
        _ => "made due now",
    };
    Ok((done, Some(format!("{id}: {logged} {by}"))))
}
