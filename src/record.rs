//! Recording a delivery attempt, in both processes of a queue pass: a
//! delivery child records what its transaction did, the pass's parent
//! records a deferral for the jobs it takes back (a dead destination, a
//! child that died or ran out of time). Either way the message is claimed
//! first; the state (or the message's removal) and any bounce are written
//! here, with the same rules.

use crate::bounce::{self, Failure};
use crate::config::Config;
use crate::log::Log;
use crate::mime::one_line;
use crate::model::{EnhancedCode, Outcome, Verdict};
use crate::spool::{Claim, ClaimSlot, Envelope, RcptStatus, Spool, State};
use crate::system;
use std::io::{BufReader, Seek, SeekFrom};
use std::time::Duration;

/// The envelope of a claimed message, the length of the envelope (where the
/// content starts) and the content's size. Reads from the start of the file,
/// wherever an earlier read left its position.
pub fn read_claimed(claim: &Claim) -> std::io::Result<(Envelope, u64, u64)> {
    let total = claim.file().metadata()?.len();
    let mut file = claim.file();
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::with_capacity(crate::limits::ENVELOPE_READ_BUFFER, file);
    let (envelope, header_len) = crate::spool::parse_envelope(&mut reader)?;
    Ok((envelope, header_len, total.saturating_sub(header_len)))
}

/// What recording needs besides the message: where the spool is, the
/// retry and bounce settings, and this host's name for the DSN.
pub struct RecordContext<'a> {
    pub spool: &'a Spool,
    pub config: &'a Config,
    pub host: &'a str,
}

/// Records the outcomes of one attempt for a claimed message: advances the
/// retry schedule, expires what has waited too long, queues the bounce for
/// what failed (before the failure is recorded, so a crash in between can
/// only bounce twice, never lose the notice), then writes the state or
/// removes the message when every recipient is done. Returns the recipients
/// that failed for good in this attempt, with why.
pub fn record(
    ctx: &RecordContext,
    claim: Claim,
    env: &Envelope,
    mut state: State,
    outcomes: &[(usize, Outcome)],
    relay: Option<&str>,
    log: &mut Log,
) -> crate::error::Result<Vec<(usize, String)>> {
    let (now, _) = system::now();
    let config = ctx.config;
    let step = Step::of(
        &state,
        env.arrival,
        now,
        &config.retry_schedule,
        config.max_queue_lifetime,
    );
    state.attempts = step.attempts;
    let (expiry, age) = (step.expiry, step.age);
    let failures = apply_outcomes(env, &mut state, outcomes, relay, expiry, age, log);
    if !failures.is_empty() {
        let notices: Vec<Failure> = failures.iter().map(|(_, f)| f.clone()).collect();
        if let Err(e) = queue_bounce(ctx, &claim, env, &notices, log) {
            // The notice is all the sender will get: rather than lose it, the
            // recipients wait for the next attempt, which fails and bounces again.
            for (i, f) in &failures {
                let text = format!("{} (its bounce could not be queued: {e})", f.reason);
                state.set(*i, RcptStatus::Deferred, &one_line(&text));
            }
        }
    }
    if let Some(next) = step.next_attempt {
        state.next_attempt = next;
    }
    let done = (0..env.recipients.len()).all(|i| {
        matches!(
            state.status_of(i).0,
            RcptStatus::Delivered | RcptStatus::Failed
        )
    });
    if done {
        ctx.spool.remove(claim)?;
        log.info(&format!("{}: removed", env.id));
    } else {
        ctx.spool.write_state(&claim, &state)?;
    }
    Ok(outcomes
        .iter()
        .filter_map(|(i, _)| match state.status_of(*i) {
            (RcptStatus::Failed, text) => Some((*i, text.to_string())),
            _ => None,
        })
        .collect())
}

/// Where an attempt stands in the retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    /// Attempts made, this one included when it was due (a forced run
    /// ahead of the schedule does not count, nor move the next attempt).
    attempts: u32,
    /// When to try next (seconds since the epoch); None: as it was.
    next_attempt: Option<u64>,
    /// The attempts ran out (the schedule's, or `max_queue_lifetime`): a
    /// deferral now fails for good. The attempts made and the age.
    expiry: Option<(u32, u64)>,
    /// Seconds since the message arrived.
    age: u64,
}

impl Step {
    /// The rule of the retry schedule: attempt N (counting from 1) waits
    /// `schedule[N]` for the next; after `schedule.len()` attempts, or past
    /// `lifetime`, what is still deferred expires.
    fn of(
        state: &State,
        arrival: u64,
        now: u64,
        schedule: &[Duration],
        lifetime: Option<Duration>,
    ) -> Step {
        let due = state.attempts == 0 || state.next_attempt <= now;
        let attempts = state.attempts + u32::from(due);
        let age = now.saturating_sub(arrival);
        let out_of_time =
            attempts as usize >= schedule.len() || lifetime.is_some_and(|l| age >= l.as_secs());
        let wait = schedule.get(attempts as usize).copied().unwrap_or_default();
        Step {
            attempts,
            next_attempt: due.then_some(now + wait.as_secs()),
            expiry: out_of_time.then_some((attempts, age)),
            age,
        }
    }
}

/// Sets each recipient's state from its outcome and logs it; returns the
/// recipients that failed, by index, with what their bounce says.
fn apply_outcomes(
    env: &Envelope,
    state: &mut State,
    outcomes: &[(usize, Outcome)],
    relay: Option<&str>,
    expiry: Option<(u32, u64)>,
    age: u64,
    log: &mut Log,
) -> Vec<(usize, Failure)> {
    let mut failures = Vec::new();
    for (i, outcome) in outcomes {
        let r = &env.recipients[*i];
        let rec = recorded(outcome, expiry);
        log.info(&format!(
            "{}: to=<{}>, relay={}, delay={age}, dsn={}, status={} ({})",
            env.id,
            r.address,
            relay.unwrap_or("none"),
            rec.dsn,
            rec.log_status,
            rec.text
        ));
        if rec.status == RcptStatus::Failed {
            // Remote-MTA and an `smtp;` diagnostic only for a server's own
            // refusal, not for an expiry or a reason of ours.
            let server_said = !rec.expired && outcome.reply().is_some();
            let failure = Failure {
                address: r.address.clone(),
                orcpt: r.orcpt.clone(),
                reason: rec.text.clone(),
                status: own_status(outcome),
                remote: relay.filter(|_| server_said).map(str::to_string),
                expired: rec.expired,
            };
            failures.push((*i, failure));
        }
        state.set(*i, rec.status, &rec.text);
    }
    failures
}

/// Queues the DSN for `failures`, or decides that none is sent (null
/// sender, NOTIFY=NEVER). An Err means a notice is owed and not queued.
fn queue_bounce(
    ctx: &RecordContext,
    claim: &Claim,
    env: &Envelope,
    failures: &[Failure],
    log: &mut Log,
) -> Result<(), String> {
    let Some(to) = bounce::recipient_for(env, ctx.config) else {
        log.info(&format!(
            "{}: no bounce sent (null sender or NOTIFY=NEVER)",
            env.id
        ));
        return Ok(());
    };
    let (_, header_len, size) =
        read_claimed(claim).map_err(|e| format!("cannot read the message: {e}"))?;
    let mut file = claim.file();
    file.seek(SeekFrom::Start(header_len))
        .map_err(|e| format!("cannot read the message: {e}"))?;
    let domain = ctx
        .config
        .qualify_domain
        .clone()
        .unwrap_or_else(|| ctx.host.to_string());
    let mta = bounce::Mta {
        host: ctx.host,
        domain: &domain,
    };
    match bounce::queue(
        ctx.spool,
        &mta,
        env,
        &mut BufReader::new(file),
        size,
        failures,
        &to,
    ) {
        Ok(id) => {
            log.info(&format!(
                "{}: sender non-delivery notification: {id}",
                env.id
            ));
            Ok(())
        }
        Err(e) => {
            log.info(&format!("{}: cannot queue the bounce: {e}", env.id));
            Err(e.to_string())
        }
    }
}

/// Defers a job without trying it (its destination is dead for this pass,
/// or its child was killed): claims the message and records `reason`.
/// Returns the recipients that failed for good (the deferral expired them).
pub fn defer(
    ctx: &RecordContext,
    id: &str,
    indices: &[usize],
    reason: &str,
    log: &mut Log,
) -> Vec<(usize, String)> {
    let mut slot = ClaimSlot::default();
    let Ok(Some(claim)) = ctx.spool.claim(id, &mut slot) else {
        return Vec::new();
    };
    let Ok((env, _, _)) = read_claimed(&claim) else {
        return Vec::new();
    };
    let state = ctx.spool.read_state(id).unwrap_or_default();
    let outcomes: Vec<(usize, Outcome)> = indices
        .iter()
        .filter(|&&i| {
            i < env.recipients.len()
                && matches!(
                    state.status_of(i).0,
                    RcptStatus::Pending | RcptStatus::Deferred
                )
        })
        .map(|&i| (i, Outcome::deferred(reason)))
        .collect();
    if outcomes.is_empty() {
        return Vec::new();
    }
    record(ctx, claim, &env, state, &outcomes, None, log).unwrap_or_else(|e| {
        log.info(&format!("{id}: cannot record delivery state: {e}"));
        Vec::new()
    })
}

/// How one outcome is recorded: the recipient's status and its text (one
/// line), the log's word for it, whether the attempts ran out, and the
/// enhanced status code the log shows.
#[derive(Debug, PartialEq, Eq)]
struct Recorded {
    status: RcptStatus,
    text: String,
    log_status: &'static str,
    expired: bool,
    dsn: EnhancedCode,
}

/// The rule from an outcome to what is recorded: the verdict comes from the
/// outcome's type; a deferral when the schedule or the queue lifetime ran
/// out (`expiry`: the attempts made and the message's age) fails for good.
fn recorded(outcome: &Outcome, expiry: Option<(u32, u64)>) -> Recorded {
    // Our own errors (I/O, DNS) may span lines; server replies are already
    // one. Nothing here may add a line to a log, a state file or the DSN.
    let text = one_line(&outcome.to_string());
    let (status, log_status) = match outcome.verdict() {
        Verdict::Sent => (RcptStatus::Delivered, "sent"),
        Verdict::Failed => (RcptStatus::Failed, "bounced"),
        Verdict::Deferred => (RcptStatus::Deferred, "deferred"),
    };
    match expiry {
        Some((attempts, age)) if status == RcptStatus::Deferred => Recorded {
            status: RcptStatus::Failed,
            text: format!(
                "message expired after {attempts} attempts over {}; last error: {text}",
                human_age(age)
            ),
            log_status: "expired",
            expired: true,
            dsn: EnhancedCode::new(5, 0, 0),
        },
        _ => Recorded {
            status,
            text,
            log_status,
            expired: false,
            dsn: outcome.status(),
        },
    }
}

/// The enhanced status code the outcome itself gives, if any.
fn own_status(outcome: &Outcome) -> Option<EnhancedCode> {
    match outcome {
        Outcome::Reply(r) => r.enhanced,
        Outcome::Local(l) => l.status,
    }
}

fn human_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    // A table's row type is spelled out where the table is.
    #![allow(clippy::type_complexity)]

    use super::*;
    use crate::model::Reply;

    fn reply(code: u16, text: &str) -> Outcome {
        Outcome::Reply(Reply::new(code, &[text.to_string()]))
    }

    #[test]
    fn outcomes_are_recorded_by_their_type() {
        let sent = RcptStatus::Delivered;
        let (deferred, failed) = (RcptStatus::Deferred, RcptStatus::Failed);
        let size = Outcome::failed("message size 9 exceeds", Some(EnhancedCode::new(5, 3, 4)));
        // (outcome, expiry, status, text, log word, dsn)
        let cases: Vec<(Outcome, Option<(u32, u64)>, RcptStatus, &str, &str, &str)> = vec![
            (
                reply(250, "2.0.0 Ok: queued"),
                None,
                sent,
                "250 2.0.0 Ok: queued",
                "sent",
                "2.0.0",
            ),
            (
                reply(250, "2.0.0 Ok"),
                Some((3, 60)),
                sent,
                "250 2.0.0 Ok",
                "sent",
                "2.0.0",
            ),
            (
                reply(550, "5.1.1 unknown"),
                None,
                failed,
                "550 5.1.1 unknown",
                "bounced",
                "5.1.1",
            ),
            (
                reply(451, "later"),
                None,
                deferred,
                "451 later",
                "deferred",
                "4.0.0",
            ),
            (
                reply(451, "4.3.0 later"),
                Some((2, 7200)),
                failed,
                "message expired after 2 attempts over 2h; last error: 451 4.3.0 later",
                "expired",
                "5.0.0",
            ),
            (
                Outcome::deferred("lost\nconnection"),
                None,
                deferred,
                "lost connection",
                "deferred",
                "4.0.0",
            ),
            (
                size,
                None,
                failed,
                "message size 9 exceeds",
                "bounced",
                "5.3.4",
            ),
            // A reply that cannot be final is never "sent".
            (
                Outcome::from_final(&Reply::new(354, &["go".into()]), "the end of data"),
                None,
                deferred,
                "protocol error: 354 in reply to the end of data",
                "deferred",
                "4.0.0",
            ),
        ];
        for (outcome, expiry, status, text, word, dsn) in cases {
            let r = recorded(&outcome, expiry);
            assert_eq!(
                (
                    r.status,
                    r.text.as_str(),
                    r.log_status,
                    r.dsn.to_string().as_str()
                ),
                (status, text, word, dsn),
                "{outcome}"
            );
            assert_eq!(r.expired, word == "expired");
        }
    }

    #[test]
    fn the_retry_schedule_counts_due_attempts_and_expires_at_its_end() {
        let m = |n: u64| Duration::from_secs(60 * n);
        let schedule = [m(0), m(30), m(240)];
        let (arrival, now) = (1_000_000, 1_000_000 + 3600);
        let state = |attempts: u32, next_attempt: u64| State {
            attempts,
            next_attempt,
            ..State::default()
        };
        // (attempts made, next attempt, lifetime) -> (attempts, next, expired)
        let cases: Vec<(u32, u64, Option<Duration>, u32, Option<u64>, bool)> = vec![
            // The first attempt waits schedule[1] for the second.
            (0, 0, None, 1, Some(now + 1800), false),
            // Due again: the second waits schedule[2].
            (1, now, None, 2, Some(now + 14400), false),
            // The last attempt the schedule has: what is deferred expires.
            (2, now - 1, None, 3, Some(now), true),
            // A forced run before the next attempt is due counts nothing
            // and moves nothing.
            (1, now + 60, None, 1, None, false),
            (3, now + 60, None, 3, None, true),
            // max_queue_lifetime: the message is an hour old.
            (1, now, Some(m(60)), 2, Some(now + 14400), true),
            (1, now, Some(m(61)), 2, Some(now + 14400), false),
        ];
        for (made, next, lifetime, attempts, next_attempt, expired) in cases {
            let step = Step::of(&state(made, next), arrival, now, &schedule, lifetime);
            let expected = Step {
                attempts,
                next_attempt,
                expiry: expired.then_some((attempts, 3600)),
                age: 3600,
            };
            assert_eq!(step, expected, "{made} made, next {next}, {lifetime:?}");
        }
        // `retry_schedule = 0`: one attempt, and what it defers expires.
        let once = Step::of(&state(0, 0), arrival, now, &[m(0)], None);
        assert_eq!((once.attempts, once.expiry), (1, Some((1, 3600))));
    }
}
