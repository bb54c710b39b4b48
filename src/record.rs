//! Recording a delivery attempt, in both processes of a queue pass: a
//! delivery child records what its transaction did, the pass's parent
//! records a deferral for the jobs it takes back (a dead destination, a
//! child that died or ran out of time). Either way the message is claimed
//! first; the state (or the message's removal) and any bounce are written
//! here, with the same rules.

use crate::bounce::{self, Failure};
use crate::config::Config;
use crate::limits::{DEFAULT_DELAY_NOTICE, PASS_GONE_MARGIN};
use crate::log::Log;
use crate::mime::one_line;
use crate::model::{EnhancedCode, Notify, Outcome, PassId, QueueId, Verdict};
use crate::spool::{
    Claim, ClaimSlot, Envelope, Owed, PassMark, QueueEntry, RcptStatus, Recipient, Spool, State,
    StateFile,
};
use crate::system;
use std::io::{BufReader, Seek, SeekFrom};
use std::time::Duration;

/// The envelope of a claimed message, the length of the envelope (where the
/// content starts) and the content's size. Reads from the start of the file,
/// wherever an earlier read left its position.
pub fn read_claimed(claim: &Claim) -> std::io::Result<(Envelope, u64, u64)> {
    let total = claim.file_len();
    let mut file = claim.file();
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::with_capacity(crate::limits::ENVELOPE_READ_BUFFER, file);
    let (envelope, header_len) = crate::spool::parse_envelope(&mut reader)?;
    Ok((envelope, header_len, total.saturating_sub(header_len)))
}

/// The outcomes a delivery child recorded, added to the spool's counters
/// in batches ([`crate::metrics::Batch`]): a child counts through here.
pub use crate::metrics::Batch as Counts;

/// What recording needs besides the message: where the spool is, the
/// retry and bounce settings, this host's name for the DSN, and the pass
/// it records for (one counted attempt per message per pass).
pub struct RecordContext<'a> {
    pub spool: &'a Spool,
    pub config: &'a Config,
    pub host: &'a str,
    pub pass: &'a PassId,
    /// Where the outcomes are counted: a delivery child's batch
    /// ([`crate::metrics::Batch`]); None: added to the counters file at once.
    pub counts: Option<&'a Counts>,
}

impl RecordContext<'_> {
    /// This pass's mark for a state written at `now`.
    fn mark(&self, now: u64) -> PassMark {
        PassMark {
            id: self.pass.clone(),
            at: now,
        }
    }
}

/// Records the outcomes of one attempt for a claimed message: applies what
/// [`decide`] made of them. A failure whose notice is owed is recorded as
/// owed in the state, with the failure: the pass queues one bounce per
/// message for all of them ([`flush_notices`]) once the message has no job
/// left in it. The state is written, or the message removed when every
/// recipient is done and no notice is owed. Returns the recipients that
/// failed for good in this attempt, with why.
pub fn record(
    ctx: &RecordContext,
    claim: Claim,
    env: &Envelope,
    state: State,
    outcomes: &[(usize, Outcome)],
    relay: Option<&str>,
    log: &mut Log,
) -> crate::error::Result<Vec<(usize, String)>> {
    let (now, _) = system::now();
    let policy = Policy::of(ctx.config);
    let decision = decide_in(env, state, outcomes, relay, &policy, ctx.mark(now));
    for line in &decision.log {
        log.info(line);
    }
    if !decision.failures.is_empty() && decision.bounce_to.is_none() {
        log.info(&format!(
            "{}: no bounce sent (null sender or NOTIFY=NEVER)",
            env.id
        ));
    }
    store(ctx, claim, env, &decision.state, log)?;
    match ctx.counts {
        Some(batch) => batch.add(&decision.tally(), log),
        None => crate::metrics::count(&ctx.config.spool_dir, &decision.tally(), log),
    }
    Ok(decision.failed())
}

/// Writes the state of a claimed message, or removes the message when
/// every recipient is done and no notice is owed.
fn store(
    ctx: &RecordContext,
    claim: Claim,
    env: &Envelope,
    state: &State,
    log: &mut Log,
) -> crate::error::Result<()> {
    let done = (0..env.recipients.len()).all(|i| {
        matches!(
            state.status_of(i).0,
            RcptStatus::Delivered | RcptStatus::Failed
        )
    });
    if done && state.owed.is_empty() {
        ctx.spool.remove(claim)?;
        log.info(&format!("{}: removed", env.id));
        Ok(())
    } else {
        ctx.spool.write_state(&claim, state)
    }
}

/// The settings an attempt is recorded by: the retry schedule, the queue
/// lifetime, and where a failed bounce's notice goes.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub schedule: &'a [Duration],
    /// The schedule's last wait repeats (`...`) until `lifetime`.
    pub repeat: bool,
    /// [`Config::queue_lifetime`].
    pub lifetime: Option<Duration>,
    pub double_bounce: Option<&'a str>,
}

impl<'a> Policy<'a> {
    pub fn of(config: &'a Config) -> Policy<'a> {
        Policy {
            schedule: &config.retry_schedule.steps,
            repeat: config.retry_schedule.repeat_last,
            lifetime: config.queue_lifetime(),
            double_bounce: config.double_bounce_recipient.as_deref(),
        }
    }

    /// How long a local configuration problem waits: never less than the
    /// queue lifetime, whatever the schedule says.
    fn local_lifetime(&self) -> Duration {
        self.lifetime
            .unwrap_or(crate::limits::DEFAULT_MAX_QUEUE_LIFETIME)
    }
}

/// What one attempt's outcomes come to, decided before anything is
/// written: the new state (each recipient delivered, deferred or failed,
/// the attempt counted and the next one scheduled), the log's lines, the
/// recipients that failed for good with their notices, and where the
/// notice goes.
#[derive(Debug)]
pub struct Decision {
    pub state: State,
    /// One line per outcome.
    pub log: Vec<String>,
    /// The recipients that failed for good in this attempt (refused, or
    /// expired), by index, with what their bounce says.
    pub failures: Vec<(usize, Failure)>,
    /// Where the notice of `failures` goes; None when there are none, or
    /// none is sent (null sender without a double-bounce recipient, a
    /// double bounce already, NOTIFY=NEVER).
    pub bounce_to: Option<String>,
    /// The recipients this attempt had outcomes for.
    attempted: Vec<usize>,
    /// How many recipients the message has.
    recipients: usize,
}

impl Decision {
    /// Every recipient is delivered or failed: the message goes.
    pub fn finished(&self) -> bool {
        (0..self.recipients).all(|i| {
            matches!(
                self.state.status_of(i).0,
                RcptStatus::Delivered | RcptStatus::Failed
            )
        })
    }

    /// What this attempt adds to the spool's counters
    /// ([`crate::metrics::count`]): each recipient it had an outcome for.
    pub fn tally(&self) -> crate::metrics::Tally {
        let mut t = crate::metrics::Tally::default();
        for &i in &self.attempted {
            let expired = || self.failures.iter().any(|(f, x)| *f == i && x.expired);
            match self.state.status_of(i).0 {
                RcptStatus::Delivered => t.delivered += 1,
                RcptStatus::Deferred => t.deferred += 1,
                RcptStatus::Failed if expired() => t.expired += 1,
                RcptStatus::Failed => t.bounced += 1,
                RcptStatus::Pending => {}
            }
        }
        t
    }

    /// The recipients of this attempt that failed for good, with why.
    pub fn failed(&self) -> Vec<(usize, String)> {
        self.attempted
            .iter()
            .filter_map(|&i| match self.state.status_of(i) {
                (RcptStatus::Failed, text) => Some((i, text.to_string())),
                _ => None,
            })
            .collect()
    }
}

/// The rule for recording an attempt: its place in the retry schedule
/// ([`Step::of`]), each outcome as recorded (a deferral past the schedule
/// or the lifetime expires), and whether a notice is owed for the failures.
/// `relay` is the server that gave the replies, `now` seconds since the epoch.
pub fn decide(
    env: &Envelope,
    mut state: State,
    outcomes: &[(usize, Outcome)],
    relay: Option<&str>,
    now: u64,
    policy: &Policy,
) -> Decision {
    let step = Step::under(&state, env.arrival, now, policy);
    state.attempts = step.attempts;
    state.next_attempt = step.next_attempt;
    let local_expiry =
        (step.age >= policy.local_lifetime().as_secs()).then_some((step.attempts, step.age));
    let mut log = Vec::with_capacity(outcomes.len());
    let mut failures = Vec::new();
    for (i, outcome) in outcomes {
        let r = &env.recipients[*i];
        let expiry = match outcome.is_misconfigured() {
            true => local_expiry,
            false => step.expiry,
        };
        let rec = recorded(outcome, expiry);
        log.push(format!(
            "{}: to=<{}>, relay={}, delay={}, dsn={}, status={} ({})",
            env.id,
            r.address,
            relay.unwrap_or("none"),
            step.age,
            rec.dsn,
            rec.log_status,
            rec.text
        ));
        if rec.status == RcptStatus::Failed {
            failures.push((*i, failure(r, outcome, &rec, relay)));
        }
        state.set(*i, rec.status, &rec.text);
    }
    if let Some(next) = local_wait(outcomes, &step, now, policy) {
        state.next_attempt = next;
    }
    let bounce_to = if failures.is_empty() {
        None
    } else {
        bounce::recipient_for(env, policy.double_bounce)
    };
    if bounce_to.is_some() {
        for (i, f) in &failures {
            state.owed.retain(|o| o.index != *i);
            state.owed.push(Owed {
                index: *i,
                status: f.status,
                expired: f.expired,
                remote: f.remote.clone(),
            });
        }
    }
    Decision {
        state,
        log,
        failures,
        bounce_to,
        attempted: outcomes.iter().map(|(i, _)| *i).collect(),
        recipients: env.recipients.len(),
    }
}

/// When to try again a message kept past the end of a schedule that does
/// not repeat by a local configuration problem: at the schedule's last
/// gap, not at every pass. None: as the schedule says.
fn local_wait(
    outcomes: &[(usize, Outcome)],
    step: &Step,
    now: u64,
    policy: &Policy,
) -> Option<u64> {
    let waiting = outcomes.iter().any(|(_, o)| o.is_misconfigured());
    let last = policy.schedule.last().copied().unwrap_or_default();
    (waiting && step.expiry.is_some()).then_some(now + last.as_secs())
}

/// What the bounce says of a recipient recorded as failed.
fn failure(r: &Recipient, outcome: &Outcome, rec: &Recorded, relay: Option<&str>) -> Failure {
    // Remote-MTA and an `smtp;` diagnostic only for a server's own
    // refusal, not for an expiry or a reason of ours.
    let server_said = !rec.expired && outcome.reply().is_some();
    Failure {
        address: r.address.clone(),
        orcpt: r.orcpt.clone(),
        reason: rec.text.clone(),
        status: own_status(outcome),
        remote: relay.filter(|_| server_said).map(str::to_string),
        expired: rec.expired,
    }
}

/// Where an attempt stands in the retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    /// Attempts made, this one included, whoever ran it: a forced run
    /// (`-qR`, `-qI`, a submission's own pass) counts as well, so that a
    /// loop of forced runs ends in expiry instead of sending forever.
    attempts: u32,
    /// When to try next (seconds since the epoch).
    next_attempt: u64,
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
        let attempts = state.attempts.saturating_add(1);
        let age = now.saturating_sub(arrival);
        let out_of_time =
            attempts as usize >= schedule.len() || lifetime.is_some_and(|l| age >= l.as_secs());
        let wait = schedule.get(attempts as usize).copied().unwrap_or_default();
        Step {
            attempts,
            next_attempt: now.saturating_add(wait.as_secs()),
            expiry: out_of_time.then_some((attempts, age)),
            age,
        }
    }

    /// [`Step::of`] under a policy: a schedule that repeats (`...`) never
    /// runs out; its last wait comes again until the lifetime expires it.
    fn under(state: &State, arrival: u64, now: u64, policy: &Policy) -> Step {
        let mut step = Step::of(state, arrival, now, policy.schedule, policy.lifetime);
        if policy.repeat {
            let lived = policy.lifetime.is_some_and(|l| step.age >= l.as_secs());
            step.expiry = lived.then_some((step.attempts, step.age));
            let last = policy.schedule.last().copied().unwrap_or_default();
            if step.attempts as usize >= policy.schedule.len() {
                step.next_attempt = now.saturating_add(last.as_secs());
            }
        }
        step
    }
}

/// The state of a message whose delivery attempt is about to begin: the
/// attempt counted and the next one scheduled, exactly as [`decide`] will
/// record them afterwards from the same state. Written before the
/// transaction, so that a delivery killed between the server's reply and
/// the record (by its caller, by the file-size limit, by a crash) still
/// counts, and a message cannot be sent again without bound.
pub fn attempt_begins(state: &State, arrival: u64, now: u64, policy: &Policy) -> State {
    let step = Step::under(state, arrival, now, policy);
    State {
        attempts: step.attempts,
        next_attempt: step.next_attempt,
        ..state.clone()
    }
}

/// Records that an attempt of a claimed message begins ([`attempt_begins`]);
/// an Err means it could not be written, and the message must not be sent.
///
/// `first`: no state of the message stood before (see
/// `Spool::write_state_before_attempt`).
pub fn begin(
    ctx: &RecordContext,
    claim: &Claim,
    env: &Envelope,
    state: &State,
    first: bool,
) -> Result<(), String> {
    let (now, _) = system::now();
    let policy = Policy::of(ctx.config);
    let begun = attempt_begins_in(state, env.arrival, &policy, ctx.mark(now));
    (ctx.spool.write_state_before_attempt(claim, &begun, first)).map_err(|e| e.to_string())
}

/// [`attempt_begins`] in the pass of `mark` at its time: the attempt
/// counts unless the pass counted one for the message already, and the
/// state says which pass wrote it.
pub fn attempt_begins_in(state: &State, arrival: u64, policy: &Policy, mark: PassMark) -> State {
    let state = as_counted_by(state.clone(), &mark.id);
    attempt_begins(&state, arrival, mark.at, policy).marked(mark)
}

/// [`decide`] in the pass of `mark` at its time, counting as
/// [`attempt_begins_in`] does.
pub fn decide_in(
    env: &Envelope,
    state: State,
    outcomes: &[(usize, Outcome)],
    relay: Option<&str>,
    policy: &Policy,
    mark: PassMark,
) -> Decision {
    let state = as_counted_by(state, &mark.id);
    let mut decision = decide(env, state, outcomes, relay, mark.at, policy);
    decision.state = decision.state.marked(mark);
    decision
}

/// The rule for counting attempts: a pass counts at most one per message,
/// the first job it begins or defers for it, whatever the number of its
/// destinations, so that a message's place in the retry schedule is its
/// passes, not its jobs; forced passes count too, so that a loop of them
/// ends in expiry. True when `state` was last written by another pass (or
/// before passes were marked): this pass has not counted its attempt yet.
pub fn counts_an_attempt(state: &State, pass: &PassId) -> bool {
    state.pass.as_ref().is_none_or(|mark| mark.id != *pass)
}

/// The state an attempt of `pass` is decided from ([`decide`] and
/// [`attempt_begins`] count one): as it is when the pass has not counted
/// its attempt yet, else with that attempt taken off, so that it counts once.
fn as_counted_by(state: State, pass: &PassId) -> State {
    match counts_an_attempt(&state, pass) {
        true => state,
        false => uncounted(state),
    }
}

/// The rule for owed notices another pass wrote: they are its to send
/// once it has no job left for the message, so a pass sends them only when
/// it wrote them itself, when they were written before passes were marked,
/// or when the pass that did is gone: it last wrote the state longer ago
/// than `deadline` (`transaction_deadline`) and [`PASS_GONE_MARGIN`].
/// Otherwise two passes could each send a bounce for one failure.
pub fn may_send_owed(state: &State, pass: &PassId, now: u64, deadline: Duration) -> bool {
    match &state.pass {
        None => true,
        Some(mark) if mark.id == *pass => true,
        Some(mark) => now.saturating_sub(mark.at) > (deadline + PASS_GONE_MARGIN).as_secs(),
    }
}

/// Queues the DSN `notice` of a claimed message; an Err says why it could
/// not be.
fn queue_notice(
    ctx: &RecordContext,
    claim: &Claim,
    env: &Envelope,
    notice: &bounce::Notice,
    log: &mut Log,
) -> Result<(), String> {
    let (_, header_len, size) =
        read_claimed(claim).map_err(|e| format!("cannot read the message: {e}"))?;
    let mut file = claim.file();
    file.seek(SeekFrom::Start(header_len))
        .map_err(|e| format!("cannot read the message: {e}"))?;
    let domain = crate::system::identity(
        ctx.config.helo_name.as_deref(),
        ctx.config.qualify_domain.as_deref(),
        &ctx.config.mailname_file,
    )
    .domain;
    let mta = bounce::Mta {
        host: ctx.host,
        domain: &domain,
        from: (ctx.config.sender_address.as_deref()).filter(|_| ctx.config.rewrite_from),
    };
    let content = (&mut BufReader::new(file), size);
    let what = match notice.report {
        bounce::Report::Failed => "sender non-delivery notification",
        bounce::Report::Delayed { .. } => "sender delay notification",
    };
    match bounce::queue(ctx.spool, &mta, env, content, notice) {
        Ok(id) => {
            log.info(&format!("{}: {what}: {id}", env.id));
            Ok(())
        }
        Err(e) => {
            let what = match notice.report {
                bounce::Report::Failed => "bounce",
                bounce::Report::Delayed { .. } => "delay notice",
            };
            log.info(&format!("{}: cannot queue the {what}: {e}", env.id));
            Err(e.to_string())
        }
    }
}

/// Sends what a message owes its sender, once the pass has no job left
/// for it: ONE bounce listing every recipient whose failure notice is owed
/// (failed in any job of this pass, or left owed by a pass that died), and
/// the delay notice when it is due ([`delay_notice_due`]). Each is queued
/// (committed) before the state says it was sent, so a crash in between
/// can only send one twice, never lose it; one that cannot be queued stays
/// owed for the next pass. Then the state is written, or the message
/// removed when every recipient is done. A message another runner holds is
/// left to it (its notices stay owed).
pub fn flush_notices(ctx: &RecordContext, id: &QueueId, log: &mut Log) {
    let mut slot = ClaimSlot::default();
    let Ok(Some(claim)) = ctx.spool.claim(id, &mut slot) else {
        return;
    };
    let Ok((env, _, _)) = read_claimed(&claim) else {
        return;
    };
    let Some(mut state) = state_or_hold(ctx.spool, &ctx.spool.entry(id), log) else {
        return;
    };
    let policy = Policy::of(ctx.config);
    let (now, _) = system::now();
    let mut changed = send_owed(ctx, &claim, &env, &mut state, &policy, log);
    let delay = ctx.config.delay_warning_time;
    let delayed = delay_notice_due(&env, &state, now, delay);
    if !delayed.is_empty() {
        let failures = notices_of(&env, &state, &delayed);
        let until = env.arrival + retry_span(&policy).as_secs();
        let notice = bounce::Notice {
            report: bounce::Report::Delayed { retry_until: until },
            failures: &failures,
            to: &env.sender,
        };
        if queue_notice(ctx, &claim, &env, &notice, log).is_ok() {
            state.delay_notified = Some(now);
            changed = true;
        }
    }
    if changed && let Err(e) = store(ctx, claim, &env, &state, log) {
        log.info(&format!("{id}: cannot record delivery state: {e}"));
    }
}

/// Queues the one bounce for the owed notices of a claimed message and
/// clears them; whether the state changed.
fn send_owed(
    ctx: &RecordContext,
    claim: &Claim,
    env: &Envelope,
    state: &mut State,
    policy: &Policy,
    log: &mut Log,
) -> bool {
    if state.owed.is_empty() {
        return false;
    }
    let (now, _) = system::now();
    if !may_send_owed(state, ctx.pass, now, ctx.config.transaction_deadline) {
        log.info(&format!(
            "{}: failure notice left to the pass that owes it, still running",
            env.id
        ));
        return false;
    }
    let Some(to) = bounce::recipient_for(env, policy.double_bounce) else {
        log.info(&format!(
            "{}: no bounce sent (null sender or NOTIFY=NEVER)",
            env.id
        ));
        state.owed.clear();
        return true;
    };
    let indices: Vec<usize> = state.owed.iter().map(|o| o.index).collect();
    let failures = notices_of(env, state, &indices);
    let notice = bounce::Notice {
        report: bounce::Report::Failed,
        failures: &failures,
        to: &to,
    };
    let sent = queue_notice(ctx, claim, env, &notice, log).is_ok();
    if sent {
        state.owed.clear();
    }
    sent
}

/// What a DSN says of each of `indices` (recipients of `env`): the
/// address, the last reply or reason from the state, and what an owed
/// failure recorded of it.
fn notices_of(env: &Envelope, state: &State, indices: &[usize]) -> Vec<Failure> {
    indices
        .iter()
        .filter_map(|&i| {
            let r = env.recipients.get(i)?;
            let text = state.status_of(i).1;
            let owed = state.owed.iter().find(|o| o.index == i);
            Some(Failure {
                address: r.address.clone(),
                orcpt: r.orcpt.clone(),
                reason: text.to_string(),
                status: owed.map_or_else(|| deferred_status(text), |o| o.status),
                remote: owed.and_then(|o| o.remote.clone()),
                expired: owed.is_some_and(|o| o.expired),
            })
        })
        .collect()
}

/// The enhanced code of a deferral as the state recorded it (`451 4.3.0
/// ...`), if it had one.
fn deferred_status(text: &str) -> Option<EnhancedCode> {
    let mut words = text.split(' ');
    let code = words
        .next()
        .filter(|c| c.len() == 3 && c.starts_with('4'))?;
    EnhancedCode::parse(words.next()?).filter(|_| code.bytes().all(|b| b.is_ascii_digit()))
}

/// How long after arrival a message is retried: the queue lifetime, else
/// the whole schedule.
fn retry_span(policy: &Policy) -> Duration {
    policy
        .lifetime
        .unwrap_or_else(|| policy.schedule.iter().sum())
}

/// The rule for delay notices (RFC 3461 section 4.1): the recipients of
/// `env` that a "delayed" DSN lists now, or none. There is one at most per
/// message, to a sender that is not the null sender, for the recipients
/// still deferred once the message has waited `delay_warning_time`. A
/// message without NOTIFY (where RFC 3461 lets an MTA act as if
/// FAILURE,DELAY was asked) gets one only when the key is set, as in
/// Postfix; NOTIFY=DELAY gets one whether it is set or not (after the key's
/// time, else [`DEFAULT_DELAY_NOTICE`]); NOTIFY without DELAY, or NEVER,
/// gets none.
pub fn delay_notice_due(
    env: &Envelope,
    state: &State,
    now: u64,
    delay_warning_time: Option<Duration>,
) -> Vec<usize> {
    let after = match env.notify {
        None => delay_warning_time,
        Some(n) if n.contains(Notify::DELAY) => {
            Some(delay_warning_time.unwrap_or(DEFAULT_DELAY_NOTICE))
        }
        Some(_) => None,
    };
    let due = after.is_some_and(|d| now.saturating_sub(env.arrival) >= d.as_secs());
    if !due || env.sender.is_empty() || state.delay_notified.is_some() {
        return Vec::new();
    }
    (0..env.recipients.len())
        .filter(|&i| state.status_of(i).0 == RcptStatus::Deferred)
        .collect()
}

/// Defers a job without trying it: its destination is dead for this pass,
/// or its child died or was killed holding it. Claims the message and
/// records `reason` as an attempt, counted when this pass has not counted
/// one for the message yet ([`counts_an_attempt`]: a child that died after
/// [`begin`] counted it). Returns the recipients that failed for good (the
/// deferral expired them).
pub fn defer(
    ctx: &RecordContext,
    id: &QueueId,
    indices: &[usize],
    reason: &str,
    log: &mut Log,
) -> Vec<(usize, String)> {
    defer_with(ctx, id, indices, &Outcome::deferred(reason), log)
}

/// As [`defer`], with the deferral's outcome (a local configuration
/// problem is recorded as one).
pub fn defer_with(
    ctx: &RecordContext,
    id: &QueueId,
    indices: &[usize],
    outcome: &Outcome,
    log: &mut Log,
) -> Vec<(usize, String)> {
    let mut slot = ClaimSlot::default();
    let Ok(Some(claim)) = ctx.spool.claim(id, &mut slot) else {
        return Vec::new();
    };
    let Ok((env, _, _)) = read_claimed(&claim) else {
        return Vec::new();
    };
    let Some(state) = state_or_hold(ctx.spool, &ctx.spool.entry(id), log) else {
        return Vec::new();
    };
    let outcomes: Vec<(usize, Outcome)> = (state.undone(indices, env.recipients.len()).into_iter())
        .map(|i| (i, outcome.clone()))
        .collect();
    if outcomes.is_empty() {
        return Vec::new();
    }
    record(ctx, claim, &env, state, &outcomes, None, log).unwrap_or_else(|e| {
        log.info(&format!("{id}: cannot record delivery state: {e}"));
        Vec::new()
    })
}

/// A state whose last attempt is counted already, made ready for
/// [`decide`], which counts the attempt it records: so it counts once.
fn uncounted(state: State) -> State {
    State {
        attempts: state.attempts.saturating_sub(1),
        ..state
    }
}

/// The delivery state of a queued message, or None when it cannot be read:
/// the message is then left alone (neither delivered nor expired), and the
/// log says why. Taking it as "never attempted" would send the message again
/// to every recipient already delivered.
pub fn state_or_hold(spool: &Spool, entry: &QueueEntry, log: &mut Log) -> Option<State> {
    if !entry.has_state {
        return Some(State::default());
    }
    read_state_or_hold(spool, &entry.id, log).map(|(state, _)| state)
}

/// As [`state_or_hold`], reading the state file whatever a scan said, and
/// whether a state stood (false: none, or one a crash left torn, which is
/// logged and read as none: see `spool::parse_state_of`).
pub fn read_state_or_hold(spool: &Spool, id: &QueueId, log: &mut Log) -> Option<(State, bool)> {
    match spool.read_state_file(id) {
        Ok(StateFile::Found(state)) => Some((state, true)),
        Ok(StateFile::Absent) => Some((State::default(), false)),
        Ok(StateFile::Torn(why)) => {
            log.info(&format!(
                "{id}: {why} (a crash while its first attempt began?): read as no state, the message as never attempted"
            ));
            Some((State::default(), false))
        }
        // Delivered and removed since (the state goes with the message).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some((State::default(), false)),
        Err(e) => {
            log.info(&format!("{id}: {}", crate::spool::held_reason(&e)));
            None
        }
    }
}

/// Removes a message without recipients (nothing can deliver it), saying so
/// in the log; left alone when another runner holds it.
pub fn remove_without_recipients(spool: &Spool, id: &QueueId, log: &mut Log) {
    let mut slot = ClaimSlot::default();
    let Ok(Some(claim)) = spool.claim(id, &mut slot) else {
        return;
    };
    match spool.remove(claim) {
        Ok(()) => log.info(&format!("{id}: message without recipients, removed")),
        Err(e) => log.info(&format!("{id}: message without recipients: {e}")),
    }
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
    use crate::model::{Notify, Reply};

    fn reply(code: u16, text: &str) -> Outcome {
        Outcome::Reply(Reply::new(code, &[text.to_string()]))
    }

    fn envelope(sender: &str, notify: Option<Notify>, rcpts: &[&str]) -> Envelope {
        Envelope {
            id: crate::model::QueueId::parse("65A1B2C3F4240ABC").unwrap(),
            arrival: ARRIVAL,
            uid: 0,
            sender: sender.into(),
            recipients: rcpts
                .iter()
                .map(|a| Recipient {
                    address: crate::model::Address::accepted(a),
                    orcpt: None,
                })
                .collect(),
            ret: None,
            envid: None,
            notify,
            body: crate::model::BodyType::SevenBit,
            smtputf8: false,
            notice: false,
        }
    }

    const ARRIVAL: u64 = 1_000_000;
    const NOW: u64 = ARRIVAL + 3600;

    /// A recipient's status in a decision, as a word: `sent`, `deferred`,
    /// `failed`, `expired` (failed when the attempts ran out), `pending`.
    fn word(d: &Decision, i: usize) -> &'static str {
        match d.state.status_of(i) {
            (RcptStatus::Delivered, _) => "sent",
            (RcptStatus::Deferred, _) => "deferred",
            (RcptStatus::Failed, t) if t.starts_with("message expired") => "expired",
            (RcptStatus::Failed, _) => "failed",
            (RcptStatus::Pending, _) => "pending",
        }
    }

    #[test]
    fn an_attempt_is_decided_from_the_state_the_outcomes_and_the_clock() {
        let m = |n: u64| Duration::from_secs(60 * n);
        let schedule = [m(0), m(30), m(240)];
        let state = |attempts: u32, next_attempt: u64, done: &[(usize, RcptStatus)]| {
            let mut s = State {
                attempts,
                next_attempt,
                ..State::default()
            };
            for (i, status) in done {
                s.set(*i, *status, "earlier");
            }
            s
        };
        let (ok, later, no) = (
            reply(250, "2.0.0 Ok"),
            reply(451, "4.3.0 later"),
            reply(550, "5.1.1 no"),
        );
        let delivered = RcptStatus::Delivered;
        // (what, state before, lifetime, outcomes) ->
        // (statuses of the three recipients, attempts, next attempt, notice owed, finished)
        let cases: Vec<(
            &str,
            State,
            Option<Duration>,
            Vec<(usize, Outcome)>,
            [&str; 3],
            u32,
            u64,
            bool,
            bool,
        )> = vec![
            (
                "first attempt, all sent",
                state(0, 0, &[]),
                None,
                vec![(0, ok.clone()), (1, ok.clone()), (2, ok.clone())],
                ["sent", "sent", "sent"],
                1,
                NOW + 1800,
                false,
                true,
            ),
            (
                "first attempt, mixed",
                state(0, 0, &[]),
                None,
                vec![(0, ok.clone()), (1, later.clone()), (2, no.clone())],
                ["sent", "deferred", "failed"],
                1,
                NOW + 1800,
                true,
                false,
            ),
            (
                "due again: the second attempt waits schedule[2]",
                state(1, NOW, &[(0, delivered)]),
                None,
                vec![(1, later.clone()), (2, later.clone())],
                ["sent", "deferred", "deferred"],
                2,
                NOW + 14400,
                false,
                false,
            ),
            (
                "forced before it is due: counts, and moves the next (issue 11)",
                state(1, NOW + 60, &[]),
                None,
                vec![(0, later.clone()), (1, ok.clone()), (2, later.clone())],
                ["deferred", "sent", "deferred"],
                2,
                NOW + 14400,
                false,
                false,
            ),
            (
                "the schedule's last attempt: deferrals expire",
                state(2, NOW - 1, &[(0, delivered)]),
                None,
                vec![(1, later.clone()), (2, ok.clone())],
                ["sent", "expired", "sent"],
                3,
                NOW,
                true,
                true,
            ),
            (
                "forced after the last attempt: still expired",
                state(3, NOW + 60, &[(0, delivered), (1, delivered)]),
                None,
                vec![(2, later.clone())],
                ["sent", "sent", "expired"],
                4,
                NOW,
                true,
                true,
            ),
            (
                "max_queue_lifetime reached",
                state(1, NOW, &[]),
                Some(m(60)),
                vec![(0, later.clone()), (1, no.clone()), (2, ok.clone())],
                ["expired", "failed", "sent"],
                2,
                NOW + 14400,
                true,
                true,
            ),
            (
                "max_queue_lifetime not yet reached",
                state(1, NOW, &[]),
                Some(m(61)),
                vec![(0, later.clone()), (1, later.clone()), (2, later.clone())],
                ["deferred", "deferred", "deferred"],
                2,
                NOW + 14400,
                false,
                false,
            ),
        ];
        let env = envelope("alice@example.org", None, &["a@x", "b@x", "c@y"]);
        for (what, before, lifetime, outcomes, statuses, attempts, next, owed, finished) in cases {
            let policy = Policy {
                schedule: &schedule,
                repeat: false,
                lifetime,
                double_bounce: None,
            };
            let d = decide(
                &env,
                before,
                &outcomes,
                Some("mx[192.0.2.1]:25"),
                NOW,
                &policy,
            );
            let got = [word(&d, 0), word(&d, 1), word(&d, 2)];
            assert_eq!(got, statuses, "{what}");
            assert_eq!(
                (d.state.attempts, d.state.next_attempt),
                (attempts, next),
                "{what}"
            );
            assert_eq!(d.bounce_to.is_some(), owed, "{what}");
            assert_eq!(d.finished(), finished, "{what}");
            assert_eq!(d.log.len(), outcomes.len(), "{what}");
            let failed: Vec<usize> = d.failures.iter().map(|(i, _)| *i).collect();
            let expected: Vec<usize> = (0..3)
                .filter(|&i| {
                    matches!(statuses[i], "failed" | "expired")
                        && outcomes.iter().any(|(j, _)| *j == i)
                })
                .collect();
            assert_eq!(failed, expected, "{what}");
            assert_eq!(
                d.failed().iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn a_failure_notice_names_the_server_only_for_its_own_refusal() {
        let policy = Policy {
            schedule: &[Duration::ZERO],
            repeat: false,
            lifetime: None,
            double_bounce: None,
        };
        let env = envelope("alice@example.org", None, &["a@x", "b@x", "c@x"]);
        let outcomes = [
            (0, reply(550, "5.1.1 unknown user")),
            (1, reply(451, "4.3.0 later")),
            (2, Outcome::failed("no MX", None)),
        ];
        let d = decide(
            &env,
            State::default(),
            &outcomes,
            Some("mx[192.0.2.1]:25"),
            NOW,
            &policy,
        );
        let shown: Vec<(String, Option<&str>, bool, Option<String>)> = d
            .failures
            .iter()
            .map(|(_, f)| {
                (
                    f.address.to_string(),
                    f.remote.as_deref(),
                    f.expired,
                    f.status.map(|s| s.to_string()),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "a@x".into(),
                    Some("mx[192.0.2.1]:25"),
                    false,
                    Some("5.1.1".into())
                ),
                ("b@x".into(), None, true, Some("4.3.0".into())),
                ("c@x".into(), None, false, None),
            ]
        );
        assert_eq!(d.bounce_to.as_deref(), Some("alice@example.org"));
        assert_eq!(
            d.log[0],
            "65A1B2C3F4240ABC: to=<a@x>, relay=mx[192.0.2.1]:25, delay=3600, dsn=5.1.1, \
             status=bounced (550 5.1.1 unknown user)"
        );
        assert!(d.log[1].contains("dsn=5.0.0, status=expired (message expired after 1 attempts over 60m; last error: 451 4.3.0 later)"), "{}", d.log[1]);
    }

    #[test]
    fn a_failure_owes_its_notice_in_the_state_until_it_is_sent() {
        // The bounce is no longer queued with the failure (one bounce per
        // message per pass lists them all): the notice is owed in the
        // state, durably, and a message whose recipients are all done
        // stays until its notice is queued.
        let policy = Policy {
            schedule: &[Duration::ZERO, Duration::from_secs(60)],
            repeat: false,
            lifetime: None,
            double_bounce: None,
        };
        let env = envelope("alice@example.org", None, &["a@x", "b@x", "c@x"]);
        let outcomes = [
            (0, reply(550, "5.1.1 no")),
            (1, reply(250, "ok")),
            (2, Outcome::failed("no MX", None)),
        ];
        let d = decide(
            &env,
            State::default(),
            &outcomes,
            Some("mx[192.0.2.1]:25"),
            NOW,
            &policy,
        );
        assert!(d.finished());
        let owed = |s: &State| -> Vec<(usize, Option<String>, bool, Option<String>)> {
            s.owed
                .iter()
                .map(|o| {
                    (
                        o.index,
                        o.status.map(|c| c.to_string()),
                        o.expired,
                        o.remote.clone(),
                    )
                })
                .collect()
        };
        let expected = vec![
            (
                0,
                Some("5.1.1".to_string()),
                false,
                Some("mx[192.0.2.1]:25".to_string()),
            ),
            (2, None, false, None),
        ];
        assert_eq!(owed(&d.state), expected);
        // Durable: the state file says so, and reads back the same.
        let text = crate::spool::format_state(&d.state);
        assert!(
            text.contains("owed 0 5.1.1 failed mx[192.0.2.1]:25\nowed 2 - failed -\n"),
            "{text}"
        );
        assert_eq!(owed(&crate::spool::parse_state(&text).unwrap()), expected);
        // What the bounce then says of them.
        let failures = notices_of(&env, &d.state, &[0, 2]);
        assert_eq!(failures[0].reason, "550 5.1.1 no");
        assert_eq!(failures[0].remote.as_deref(), Some("mx[192.0.2.1]:25"));
        assert_eq!(failures[1].reason, "no MX");
        // Nothing owed where nothing is sent.
        let never = envelope(
            "alice@example.org",
            Some(Notify::NEVER),
            &["a@x", "b@x", "c@x"],
        );
        let d = decide(&never, State::default(), &outcomes, None, NOW, &policy);
        assert!(d.state.owed.is_empty());
    }

    #[test]
    fn one_delay_notice_when_asked_for_or_configured() {
        let h = |n: u64| Duration::from_secs(3600 * n);
        let mut deferred = State::default();
        deferred.set(0, RcptStatus::Deferred, "451 4.3.0 later");
        deferred.set(1, RcptStatus::Delivered, "250 ok");
        deferred.set(2, RcptStatus::Deferred, "connection refused");
        let mut notified = deferred.clone();
        notified.delay_notified = Some(NOW - 60);
        let none: Vec<usize> = Vec::new();
        let delay = Notify::DELAY | Notify::FAILURE;
        // (sender, NOTIFY, state, waited, delay_warning_time) -> listed
        let cases: Vec<(
            &str,
            Option<Notify>,
            &State,
            u64,
            Option<Duration>,
            Vec<usize>,
        )> = vec![
            // No NOTIFY: only when the key is set, once it has waited that long.
            ("alice@x", None, &deferred, 3, None, none.clone()),
            ("alice@x", None, &deferred, 3, Some(h(4)), none.clone()),
            ("alice@x", None, &deferred, 4, Some(h(4)), vec![0, 2]),
            // NOTIFY=DELAY: whether the key is set or not.
            ("alice@x", Some(delay), &deferred, 4, None, vec![0, 2]),
            ("alice@x", Some(delay), &deferred, 3, None, none.clone()),
            (
                "alice@x",
                Some(Notify::DELAY),
                &deferred,
                1,
                Some(h(1)),
                vec![0, 2],
            ),
            // NOTIFY without DELAY, or NEVER: none.
            (
                "alice@x",
                Some(Notify::FAILURE),
                &deferred,
                9,
                Some(h(1)),
                none.clone(),
            ),
            (
                "alice@x",
                Some(Notify::NEVER),
                &deferred,
                9,
                Some(h(1)),
                none.clone(),
            ),
            // Once only; never to the null sender.
            (
                "alice@x",
                Some(delay),
                &notified,
                9,
                Some(h(1)),
                none.clone(),
            ),
            ("", None, &deferred, 9, Some(h(1)), none.clone()),
        ];
        for (sender, notify, state, waited, key, listed) in cases {
            let mut env = envelope(sender, notify, &["a@x", "b@x", "c@x"]);
            env.arrival = NOW - 3600 * waited;
            assert_eq!(
                delay_notice_due(&env, state, NOW, key),
                listed,
                "<{sender}> {notify:?} {waited}h {key:?}"
            );
        }
        // What the notice says of them: the deferral's own code, if any.
        let env = envelope("alice@x", None, &["a@x", "b@x", "c@x"]);
        let failures = notices_of(&env, &deferred, &[0, 2]);
        let codes: Vec<Option<String>> = failures
            .iter()
            .map(|f| f.status.map(|c| c.to_string()))
            .collect();
        assert_eq!(codes, [Some("4.3.0".to_string()), None]);
    }

    /// The counters get one outcome per recipient attempted: a refusal is
    /// bounced, a deferral past the schedule's end expired.
    #[test]
    fn an_attempt_tallies_each_recipient_it_tried() {
        use crate::metrics::Tally;
        let env = envelope(
            "s@example.org",
            None,
            &["a@x.example", "b@x.example", "c@x.example"],
        );
        let m = |n: u64| Duration::from_secs(60 * n);
        let (ok, later, no) = (
            reply(250, "ok"),
            reply(451, "4.3.0 later"),
            reply(550, "5.1.1 no"),
        );
        let tally = |schedule: &[Duration], outcomes: &[(usize, Outcome)]| {
            let state = State::default();
            let policy = Policy {
                schedule,
                repeat: false,
                lifetime: None,
                double_bounce: None,
            };
            decide(&env, state, outcomes, None, NOW, &policy).tally()
        };
        let all = [(0, ok.clone()), (1, later.clone()), (2, no.clone())];
        assert_eq!(
            tally(&[m(0), m(30)], &all),
            Tally {
                delivered: 1,
                deferred: 1,
                bounced: 1,
                expired: 0
            }
        );
        // The schedule's only attempt: the deferral expires.
        assert_eq!(
            tally(&[m(0)], &all),
            Tally {
                delivered: 1,
                deferred: 0,
                bounced: 1,
                expired: 1
            }
        );
        // Only the recipients tried count.
        assert_eq!(
            tally(&[m(0), m(30)], &[(1, later)]),
            Tally {
                deferred: 1,
                ..Tally::default()
            }
        );
    }

    #[test]
    fn who_gets_the_notice() {
        let no = [(0, reply(550, "5.1.1 no"))];
        let ok = [(0, reply(250, "ok"))];
        // (sender, NOTIFY, recipient, double_bounce_recipient, outcomes) -> notice to
        let cases: Vec<(
            &str,
            Option<Notify>,
            &str,
            Option<&str>,
            &[(usize, Outcome)],
            Option<&str>,
        )> = vec![
            ("alice@x", None, "a@y", None, &no, Some("alice@x")),
            (
                "alice@x",
                Some(Notify::FAILURE),
                "a@y",
                None,
                &no,
                Some("alice@x"),
            ),
            ("alice@x", Some(Notify::NEVER), "a@y", None, &no, None),
            // Nothing failed: nothing owed.
            ("alice@x", None, "a@y", None, &ok, None),
            // A bounce that failed: the postmaster, if configured, once.
            ("", None, "a@y", None, &no, None),
            ("", None, "a@y", Some("pm@x"), &no, Some("pm@x")),
            ("", None, "PM@x", Some("pm@x"), &no, None),
        ];
        for (sender, notify, rcpt, double, outcomes, to) in cases {
            let policy = Policy {
                schedule: &[Duration::ZERO],
                repeat: false,
                lifetime: None,
                double_bounce: double,
            };
            let env = envelope(sender, notify, &[rcpt]);
            let d = decide(&env, State::default(), outcomes, None, NOW, &policy);
            assert_eq!(
                d.bounce_to.as_deref(),
                to,
                "<{sender}> {notify:?} {rcpt} {double:?}"
            );
            // Whether or not a notice goes, the failure is final.
            assert!(d.finished());
        }
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
        let cases: Vec<(u32, u64, Option<Duration>, u32, u64, bool)> = vec![
            // The first attempt waits schedule[1] for the second.
            (0, 0, None, 1, now + 1800, false),
            // Due again: the second waits schedule[2].
            (1, now, None, 2, now + 14400, false),
            // The last attempt the schedule has: what is deferred expires.
            (2, now - 1, None, 3, now, true),
            // A forced run before the next attempt is due counts as well
            // (issue 11: a loop of forced runs must end), and moves the next.
            (1, now + 60, None, 2, now + 14400, false),
            (3, now + 60, None, 4, now, true),
            // max_queue_lifetime: the message is an hour old.
            (1, now, Some(m(60)), 2, now + 14400, true),
            (1, now, Some(m(61)), 2, now + 14400, false),
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

    #[test]
    fn a_repeating_schedule_waits_its_last_gap_until_the_lifetime() {
        let m = |n: u64| Duration::from_secs(60 * n);
        let schedule = [m(0), m(5), m(10), m(60)];
        let (arrival, now) = (1_000_000, 1_000_000 + 3600);
        let state = |attempts: u32, next_attempt: u64| State {
            attempts,
            next_attempt,
            ..State::default()
        };
        let policy = |lifetime: Option<Duration>| Policy {
            schedule: &schedule,
            repeat: true,
            lifetime,
            double_bounce: None,
        };
        // (attempts made, next, lifetime) -> (attempts, next, expired)
        let cases: Vec<(u32, u64, Option<Duration>, u32, u64, bool)> = vec![
            (0, 0, Some(m(600)), 1, now + 300, false),
            (2, now, Some(m(600)), 3, now + 3600, false),
            // Past the listed steps: the last gap again, no expiry.
            (3, now, Some(m(600)), 4, now + 3600, false),
            (40, now, Some(m(600)), 41, now + 3600, false),
            (40, now, None, 41, now + 3600, false),
            // The lifetime ends it.
            (40, now, Some(m(60)), 41, now + 3600, true),
            // Forced early: counted as well (issue 11), and the next moved.
            (40, now + 9, Some(m(600)), 41, now + 3600, false),
        ];
        for (made, next, lifetime, attempts, next_attempt, expired) in cases {
            let step = Step::under(&state(made, next), arrival, now, &policy(lifetime));
            let expected = Step {
                attempts,
                next_attempt,
                expiry: expired.then_some((attempts, 3600)),
                age: 3600,
            };
            assert_eq!(step, expected, "{made} made, next {next}, {lifetime:?}");
        }
    }

    #[test]
    fn a_local_configuration_problem_waits_for_the_queue_lifetime() {
        let local = Outcome::misconfigured("cannot read auth_password_file /x");
        assert_eq!(
            local.to_string(),
            "local configuration problem: cannot read auth_password_file /x"
        );
        let env = envelope("alice@example.org", None, &["a@x", "b@x"]);
        let outcomes = [(0, local.clone()), (1, reply(451, "4.3.0 later"))];
        // A schedule that ends at once: the ordinary deferral expires, the
        // local problem waits, at the schedule's last gap.
        let short = [Duration::ZERO, Duration::from_secs(600)];
        let policy = |lifetime: Option<Duration>| Policy {
            schedule: &short,
            repeat: false,
            lifetime,
            double_bounce: None,
        };
        let state = State {
            attempts: 1,
            next_attempt: NOW,
            ..State::default()
        };
        let d = decide(&env, state.clone(), &outcomes, None, NOW, &policy(None));
        assert_eq!(word(&d, 0), "deferred");
        assert_eq!(word(&d, 1), "expired");
        assert_eq!(d.state.next_attempt, NOW + 600);
        assert_eq!(
            d.state.status_of(0).1,
            "local configuration problem: cannot read auth_password_file /x"
        );
        assert!(
            d.log[0].contains("dsn=4.3.5, status=deferred"),
            "{}",
            d.log[0]
        );
        // Past the queue lifetime it expires too.
        let d = decide(
            &env,
            state,
            &outcomes,
            None,
            NOW,
            &policy(Some(Duration::from_secs(60))),
        );
        assert_eq!(word(&d, 0), "expired");
    }

    fn mark(pass: &PassId, at: u64) -> PassMark {
        PassMark {
            id: pass.clone(),
            at,
        }
    }

    #[test]
    fn a_pass_counts_one_attempt_per_message_whatever_its_jobs() {
        let m = |n: u64| Duration::from_secs(60 * n);
        let schedule = [m(0), m(30), m(240), m(480)];
        let policy = Policy {
            schedule: &schedule,
            repeat: false,
            lifetime: None,
            double_bounce: None,
        };
        let (this, other) = (PassId::new(1, 1), PassId::new(2, 2));
        let later = reply(451, "4.3.0 later");
        let env = envelope("alice@example.org", None, &["a@x", "b@y", "c@z"]);
        // (attempts made, the pass that wrote the state) -> counted
        for (made, wrote, counted) in [
            (0, None, true),
            (2, None, true),
            (2, Some(&other), true),
            (2, Some(&this), false),
        ] {
            let state = State {
                attempts: made,
                pass: wrote.map(|p| mark(p, NOW - 60)),
                ..State::default()
            };
            assert_eq!(
                counts_an_attempt(&state, &this),
                counted,
                "{made} {wrote:?}"
            );
            let begun = attempt_begins_in(&state, ARRIVAL, &policy, mark(&this, NOW));
            let want = made + u32::from(counted);
            assert_eq!(begun.attempts, want, "{made} {wrote:?}");
            assert_eq!(begun.pass, Some(mark(&this, NOW)));
            let d = decide_in(
                &env,
                state,
                &[(0, later.clone())],
                None,
                &policy,
                mark(&this, NOW),
            );
            assert_eq!(d.state.attempts, want, "{made} {wrote:?} recorded");
        }
        // A message at three destinations, each job begun and recorded in
        // turn by one pass (a dead destination's deferral among them):
        // one attempt, the next at schedule[1], nothing expired.
        let mut state = State::default();
        for i in 0..3 {
            state = attempt_begins_in(&state, ARRIVAL, &policy, mark(&this, NOW));
            let d = decide_in(
                &env,
                state,
                &[(i, later.clone())],
                None,
                &policy,
                mark(&this, NOW),
            );
            state = d.state;
        }
        assert_eq!((state.attempts, state.next_attempt), (1, NOW + 1800));
        assert!((0..3).all(|i| state.status_of(i).0 == RcptStatus::Deferred));
        // The next pass counts again, forced or not; the schedule then ends it.
        for (n, pass) in [(2, PassId::new(3, 3)), (3, PassId::new(4, 4))] {
            let d = decide_in(
                &env,
                state,
                &[(0, later.clone())],
                None,
                &policy,
                mark(&pass, NOW),
            );
            state = d.state;
            assert_eq!(state.attempts, n);
        }
        let d = decide_in(
            &env,
            state,
            &[(0, later.clone())],
            None,
            &policy,
            mark(&other, NOW),
        );
        assert_eq!(word(&d, 0), "expired");
    }

    #[test]
    fn owed_notices_are_sent_by_the_pass_that_wrote_them_or_after_it_is_gone() {
        let deadline = Duration::from_secs(900);
        let gone = (deadline + PASS_GONE_MARGIN).as_secs();
        let (this, other) = (PassId::new(1, 1), PassId::new(2, 2));
        // (the pass that wrote the state, when) -> this pass may send
        for (wrote, at, may) in [
            (None, 0, true),
            (Some(&this), NOW, true),
            (Some(&this), NOW - gone - 1, true),
            (Some(&other), NOW, false),
            (Some(&other), NOW - deadline.as_secs(), false),
            (Some(&other), NOW - gone, false),
            (Some(&other), NOW - gone - 1, true),
            // A clock that went back: still running.
            (Some(&other), NOW + 60, false),
        ] {
            let state = State {
                pass: wrote.map(|p| mark(p, at)),
                ..State::default()
            };
            assert_eq!(
                may_send_owed(&state, &this, NOW, deadline),
                may,
                "{wrote:?} at {at}"
            );
        }
    }

    #[test]
    fn an_attempt_is_counted_before_it_begins_as_it_is_recorded_after() {
        let m = |n: u64| Duration::from_secs(60 * n);
        let schedule = [m(0), m(30), m(240)];
        let policy = Policy {
            schedule: &schedule,
            repeat: false,
            lifetime: None,
            double_bounce: None,
        };
        let later = reply(451, "4.3.0 later");
        let env = envelope("alice@example.org", None, &["a@x"]);
        // (attempts made, next attempt) -> (attempts, next) once it begins;
        // due or forced, it counts.
        for (made, next, attempts, next_after) in [
            (0, 0, 1, NOW + 1800),
            (1, NOW, 2, NOW + 14400),
            (1, NOW + 60, 2, NOW + 14400),
            (2, NOW - 1, 3, NOW),
            (9, NOW + 60, 10, NOW),
        ] {
            let mut before = State {
                attempts: made,
                next_attempt: next,
                ..State::default()
            };
            before.set(0, RcptStatus::Deferred, "earlier");
            let begun = attempt_begins(&before, ARRIVAL, NOW, &policy);
            assert_eq!(
                (begun.attempts, begun.next_attempt),
                (attempts, next_after),
                "{made} made, next {next}"
            );
            assert_eq!(begun.recipients, before.recipients);
            // What is recorded after the transaction, from the state before
            // it, counts the same attempt, not one more.
            let d = decide(
                &env,
                before.clone(),
                &[(0, later.clone())],
                None,
                NOW,
                &policy,
            );
            assert_eq!(d.state.attempts, begun.attempts, "{made} made");
            // A child that died after the record: taken back, counted once.
            let d = decide(
                &env,
                uncounted(begun),
                &[(0, later.clone())],
                None,
                NOW,
                &policy,
            );
            assert_eq!(d.state.attempts, attempts, "{made} made, taken back");
        }
    }
}
