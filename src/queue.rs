//! One dequeue pass (`sendmail -q`): recover leftovers, pick what is due,
//! queue it per destination, and hand it out one message at a time to
//! delivery children, each holding one connection to its destination.
//!
//! The parent is single-threaded and never touches the network: it forks,
//! and DNS, sockets and TLS live in the children. Handing out one message at
//! a time is what keeps one slow message from holding the ones behind it: a
//! child stuck in a transaction holds only that message, the others go to
//! other children. Per-destination limits keep a slow destination from taking
//! every child; a transaction past `transaction_deadline` is killed and
//! deferred; a destination that cannot be reached at all is skipped for the
//! rest of the pass (Postfix's dead destination).

use crate::config::Config;
use crate::deliver;
use crate::error::{Error, Result};
use crate::limits::{
    LEFTOVER_MIN_AGE, LINGER, PACE_HOLD, PASS_READ_PIECE, PASS_TICK, RESCAN_COST_FACTOR,
    RUNNER_FAILED_PASSES, RUNNER_RETRY_PAUSE, RUNNER_SLOT_WAIT, STALLED_AFTER, STARVED_RESCAN,
};
use crate::log::Log;
use crate::model::{Destination, Outcome, PassId, QueueId, SenderPattern};
use crate::pass_protocol::Message;
use crate::record::{self, RecordContext};
use crate::slots::{self, Slot, Slots};
use crate::spool::{Envelope, Selector, Spool, State};
use crate::sys;
use crate::system;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

mod pace;
use pace::{Paces, Rest};

#[derive(Debug, Clone)]
struct Job {
    id: QueueId,
    rcpts: Vec<usize>,
    /// The recipients' domains, to keep messages away from a domain that
    /// has a transaction stalled.
    domains: Vec<String>,
}

struct Child {
    pid: sys::pid_t,
    sock: UnixStream,
    inbox: Vec<u8>,
    destination: Destination,
    job: Option<(Job, Instant)>,
    /// Asked for work while every queued message of its destination was in
    /// another child's hands (a message with recipients at several
    /// destinations); answered as soon as one is free.
    waiting: bool,
    /// Since when it has waited with nothing queued for its destination
    /// (a background runner's child lingers: see [`LINGER`]).
    idle_since: Option<Instant>,
    /// The numbers of its `max_children` and `max_per_destination` slots
    /// (None in a pass without the slots directory).
    slots: Option<(u32, u32)>,
    killed: bool,
    /// Its relay refused or closed its connection with a throttling
    /// reply: it is told to quit.
    throttled: bool,
}

/// Which messages a pass takes.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `-qI`, `-qR`, `-qS`.
    pub select: Option<Selector>,
    /// Deliver what is selected now, whatever its schedule.
    pub force: bool,
    /// Only this message: the one just submitted (`-odb`, `-odi`, `-bs`).
    /// Such a pass opens that message alone: no directory scan, no
    /// leftover recovery, which are the cron pass's work.
    pub message: Option<QueueId>,
    /// Only the messages submitted by this user (the envelope's `uid`):
    /// a pass run by an unprivileged user. None: everyone's mail, for
    /// root, the spool's group and the admin group.
    pub owner: Option<u32>,
    /// Run by root, the spool's group or the admin group (whatever
    /// `owner` says: a background runner always has one): such a pass may
    /// take every slot. Else it leaves the first of each kind to
    /// privileged passes, takes no headroom, and counts its children in
    /// its user's share (see [`slots::user_share`]).
    pub privileged: bool,
    /// A user's background runner (`-odb`, see [`run_background`]): no
    /// leftover recovery, and its children linger for new messages.
    pub background: bool,
}

impl Selection {
    /// The pass right after a submission: this message, now.
    pub fn message(id: &QueueId) -> Selection {
        Selection {
            select: None,
            force: true,
            message: Some(id.clone()),
            owner: None,
            privileged: false,
            background: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct PassSummary {
    pub jobs: usize,
    pub children: usize,
    /// (queue id, recipient index, reason) of every recipient that failed
    /// for good in this pass, for `-odi -oep`.
    pub failed: Vec<(QueueId, usize, String)>,
}

pub fn run_pass(config: &Config, selection: &Selection, verbose: bool) -> Result<PassSummary> {
    run_pass_seeing(config, selection, verbose, &mut HashSet::new())
}

/// What a pass over the whole queue clears away first: the files of
/// writers that died, and (a cache, any user's to refill, so only passes
/// over everyone's mail) the MTA-STS policies that can no longer serve.
fn tidy_spool(spool: &Spool, config: &Config, selection: &Selection, log: &mut Log) {
    if selection.message.is_some() || selection.background {
        return;
    }
    let recovered = spool.recover_leftovers(LEFTOVER_MIN_AGE);
    if recovered > 0 {
        log.info(&format!(
            "removed {recovered} leftover files of dead writers"
        ));
    }
    if selection.owner.is_none() {
        let pruned = crate::sts::prune(&config.spool_dir, system::now().0, LEFTOVER_MIN_AGE);
        if pruned > 0 {
            log.info(&format!(
                "removed {pruned} expired MTA-STS policies from sts/"
            ));
        }
    }
}

/// A pass that leaves alone the messages in `seen` and adds every message
/// it looks at to it (a background runner's passes never take one message
/// twice).
fn run_pass_seeing(
    config: &Config,
    selection: &Selection,
    verbose: bool,
    seen: &mut HashSet<QueueId>,
) -> Result<PassSummary> {
    // A pass limited to its owner's mail never locks another's message,
    // even to test it (see Spool::looked_at_by).
    let spool = Spool::new(&config.spool_dir).looked_at_by(selection.owner);
    let mut log = Log::open(config, "spoolmail");
    system::prepare_for_delivery().inspect_err(|e| log.info(&e.to_string()))?;
    tidy_spool(&spool, config, selection, &mut log);
    // The messages whose notices the pass sends once it has no job left
    // for them: those it has jobs for, and those a dead pass left owing.
    let mut notices = BTreeSet::new();
    let looked = Instant::now();
    let queues = collect_jobs(
        &spool,
        config,
        selection,
        seen,
        &mut notices,
        &mut log,
        true,
    )?;
    let scan_cost = looked.elapsed();
    notices.extend(queues.values().flatten().map(|job| job.id.clone()));
    let mut summary = PassSummary {
        jobs: queues.values().map(VecDeque::len).sum(),
        ..Default::default()
    };
    if verbose {
        crate::system::errln(format_args!(
            "spoolmail: queue run: {} deliveries to {} destinations",
            summary.jobs,
            queues.len()
        ));
    }
    let host = system::identity(
        config.helo_name.as_deref(),
        config.qualify_domain.as_deref(),
        &config.mailname_file,
    )
    .host;
    // One counted attempt per message in this pass, whatever its jobs.
    let pass_id = PassId::new(std::process::id(), system::random_u64());
    let ctx = RecordContext {
        spool: &spool,
        config,
        host: &host,
        pass: &pass_id,
        counts: None,
    };
    let mut starter = Starter {
        config,
        verbose,
        slots: open_slots(config, &mut log),
        user: (!selection.privileged).then(|| selection.owner.unwrap_or_else(sys::getuid)),
    };
    let mut pass = Pass {
        selection,
        seen,
        notices,
        queues,
        children: Vec::new(),
        scanned: Instant::now(),
        scan_cost,
        starved_since: None,
        paces: Paces::new(starter.slots.clone()),
    };
    pass.run(&mut starter, &ctx, &mut log, &mut summary)?;
    crate::metrics::after_pass(config, selection.message.is_none(), &mut log);
    Ok(summary)
}

/// The spool's slots directory; None (the pass is bounded by its own
/// limits only, and says so in the log) when it cannot be used.
fn open_slots(config: &Config, log: &mut Log) -> Option<Slots> {
    match Slots::open(&config.spool_dir) {
        Ok(slots) => Some(slots),
        Err(e) => {
            log.info(&format!(
                "cannot use {}/{}: {e}; this pass is bounded by its own limits only",
                config.spool_dir.display(),
                slots::SLOTS_DIR
            ));
            None
        }
    }
}

/// What a pass's loop works on.
struct Pass<'a> {
    selection: &'a Selection,
    seen: &'a mut HashSet<QueueId>,
    /// The messages whose notices it sends once it has no job left for them.
    notices: BTreeSet<QueueId>,
    queues: BTreeMap<Destination, VecDeque<Job>>,
    children: Vec<Child>,
    /// When the queue was last looked at for new messages, and how long
    /// that look took.
    scanned: Instant,
    scan_cost: Duration,
    /// Since when it has had jobs queued but no child (every slot it may
    /// take held by other processes).
    starved_since: Option<Instant>,
    /// The relays' message rates and rests.
    paces: Paces,
}

impl Pass<'_> {
    /// Hands out jobs until nothing is left: no child running, nothing
    /// queued, and no new due message in the queue (bounces this pass has
    /// queued, messages submitted meanwhile).
    fn run(
        &mut self,
        starter: &mut Starter,
        ctx: &RecordContext,
        log: &mut Log,
        summary: &mut PassSummary,
    ) -> Result<()> {
        loop {
            let (queues, children) = (&mut self.queues, &mut self.children);
            start_children(starter, queues, children, &self.paces, summary, log)?;
            if self.children.is_empty() && self.queues.values().all(VecDeque::is_empty) {
                self.flush_finished(ctx, log);
                if self.rescan(ctx, log, summary) == 0 {
                    return Ok(());
                }
                continue;
            }
            if self.starved(log) {
                continue;
            }
            // With no child running (every slot held elsewhere), a pause.
            let ready = wait_for_children(&self.children, PASS_TICK);
            // Only those with something to say: a read of each of the
            // others would be a system call per child per message.
            for i in (0..self.children.len()).filter(|&i| ready[i]) {
                let (queues, paces) = (&mut self.queues, &mut self.paces);
                serve(i, &mut self.children, queues, paces, ctx, log, summary);
            }
            let idle = |c: &Child| {
                c.waiting
                    && self
                        .queues
                        .get(&c.destination)
                        .is_none_or(VecDeque::is_empty)
            };
            // Waiting for a slot, nothing frees in this pass: a look now and then.
            let every = rescan_interval(self.children.is_empty(), self.scan_cost);
            let since = self.scanned.elapsed();
            let affordable = since >= self.scan_cost * RESCAN_COST_FACTOR;
            if since >= every || (affordable && self.children.iter().any(idle)) {
                // Notices first, so that the look finds the bounces; only
                // then, for the check of every message the pass holds
                // would cost each message the length of the queue.
                self.flush_finished(ctx, log);
                self.rescan(ctx, log, summary);
            }
            let linger = self.selection.background;
            for i in 0..self.children.len() {
                if self.children[i].waiting {
                    let (queues, paces) = (&mut self.queues, &mut self.paces);
                    assign(i, &mut self.children, queues, paces, linger, ctx);
                }
            }
            for note in self.paces.take_notes() {
                log.info(&note);
            }
            enforce_deadlines(starter.config, &mut self.children);
            reap(&mut self.children, ctx, log, summary);
        }
    }

    /// Queues the due messages that have come since the pass began (never
    /// for a pass over one message); returns how many jobs that made.
    fn rescan(&mut self, ctx: &RecordContext, log: &mut Log, summary: &mut PassSummary) -> usize {
        self.scanned = Instant::now();
        if self.selection.message.is_some() {
            return 0;
        }
        let (selection, seen, notices) = (self.selection, &mut *self.seen, &mut self.notices);
        let new = collect_jobs(ctx.spool, ctx.config, selection, seen, notices, log, false);
        self.scan_cost = self.scanned.elapsed();
        let Ok(new) = new else {
            return 0; // the queue could be read at the start; the next look may work
        };
        let mut count = 0;
        for (destination, jobs) in new {
            count += jobs.len();
            self.notices.extend(jobs.iter().map(|job| job.id.clone()));
            self.queues.entry(destination).or_default().extend(jobs);
        }
        summary.jobs += count;
        count
    }

    /// Whether a background runner has waited for a slot longer than
    /// [`RUNNER_SLOT_WAIT`] with no child of its own, and so has left its
    /// queued messages to the next queue run (and said so in the log);
    /// tracks since when it has waited.
    fn starved(&mut self, log: &mut Log) -> bool {
        // Waiting for a relay's pace or rest is no want of a slot.
        let now = Instant::now();
        let timed =
            |(d, q): (&Destination, &VecDeque<Job>)| q.is_empty() || !self.paces.may_start(d, now);
        if !self.children.is_empty() || self.queues.iter().all(timed) {
            self.starved_since = None;
            return false;
        }
        let since = *self.starved_since.get_or_insert_with(Instant::now);
        if !self.selection.background || since.elapsed() < RUNNER_SLOT_WAIT {
            return false;
        }
        let left: BTreeSet<&QueueId> = self.queues.values().flatten().map(|j| &j.id).collect();
        log.info(&format!(
            "every delivery slot this runner may take was held for {}s: {} message(s) left to the next queue run",
            RUNNER_SLOT_WAIT.as_secs(),
            left.len()
        ));
        // Still in `seen`: this runner does not take them again.
        self.queues.clear();
        self.starved_since = None;
        true
    }

    /// Sends the notices of the messages it has no job left for.
    fn flush_finished(&mut self, ctx: &RecordContext, log: &mut Log) {
        flush_finished(ctx, &mut self.notices, &self.queues, &self.children, log);
    }
}

/// How long a pass waits between looks at the queue: [`PASS_TICK`], and
/// [`STARVED_RESCAN`] while it has no child (every slot it may take held
/// elsewhere), when a look finds nothing it could start; and never less
/// than [`RESCAN_COST_FACTOR`] times what the last look (`cost`) took.
fn rescan_interval(starved: bool, cost: Duration) -> Duration {
    let base = if starved { STARVED_RESCAN } else { PASS_TICK };
    base.max(cost * RESCAN_COST_FACTOR)
}

/// `-odb`: the delivery after a submission, handed to one runner per user
/// instead of one process per message: a burst of submissions shares a few
/// connections, and at most one runner per user runs.
///
/// The submitter (`owner`'s detached grandchild) tries the user's runner
/// lock: if it gets it, it runs passes over that user's due messages;
/// if not, it exits at once, for the holder will see its message. The
/// handover has no window: a holder with nothing more to do first
/// releases the lock, then looks at the queue once more, and tries the
/// lock again if it finds a due message it has not taken yet. Proof: a
/// submitter S that fails to get the lock failed while some H held it,
/// and S had committed its message M before trying; H releases after
/// that, and looks after releasing, so H's look finds M (new, never
/// attempted, so due). Then either H gets the lock back and delivers M, or
/// another process got it after H's release and, like every holder,
/// scans after acquiring, which finds M. A message whose runner lock
/// cannot be used (a spool without `slots/` it may write) is delivered
/// alone, as before. `privileged`: the submitter may run passes over
/// everyone's mail (see [`Selection::privileged`]); its runner still takes
/// only `owner`'s.
pub fn run_background(
    config: &Config,
    owner: u32,
    privileged: bool,
    message: &QueueId,
) -> Result<()> {
    let lock = Slots::open(&config.spool_dir).and_then(|s| s.runner(owner));
    let Ok(mut lock) = lock else {
        let alone = Selection {
            privileged,
            ..Selection::message(message)
        };
        return run_pass(config, &alone, false).map(drop);
    };
    let selection = Selection {
        owner: Some(owner),
        privileged,
        background: true,
        ..Selection::default()
    };
    let spool = Spool::new(&config.spool_dir).looked_at_by(Some(owner));
    // Every message this runner has taken or found in other hands: taken
    // once per runner, so that one that fails again is not a loop.
    let mut seen = HashSet::new();
    let mut failed = 0;
    while lock
        .try_acquire()
        .map_err(|e| Error::io("cannot take the runner lock", e))?
    {
        let before = seen.clone();
        let pass = run_pass_seeing(config, &selection, false, &mut seen);
        lock.release();
        let mut log = Log::open(config, "spoolmail");
        // A failed pass still ends with the look below: the submitters it
        // turned away count on it.
        if let Err(e) = pass {
            failed += 1;
            log.info(&format!(
                "background runner of uid {owner}: a pass failed ({failed} in a row): {e}"
            ));
            if failed >= RUNNER_FAILED_PASSES {
                return Err(e);
            }
            // What it took and did not finish is taken again, after a
            // pause for what failed (processes of the user's) to go.
            seen = before;
            std::thread::sleep(RUNNER_RETRY_PAUSE);
        } else {
            failed = 0;
        }
        if collect_jobs(
            &spool,
            config,
            &selection,
            &mut seen.clone(),
            &mut BTreeSet::new(),
            &mut log,
            false,
        )?
        .is_empty()
        {
            break;
        }
    }
    Ok(())
}

/// Every due recipient of every selected message not in `seen` (which
/// then holds them all), queued by destination; `first`: the pass's first
/// look, which logs what it skips. A message with notices owed (a pass
/// died before sending them) goes into `notices`, due or not.
fn collect_jobs(
    spool: &Spool,
    config: &Config,
    selection: &Selection,
    seen: &mut HashSet<QueueId>,
    notices: &mut BTreeSet<QueueId>,
    log: &mut Log,
    first: bool,
) -> Result<BTreeMap<Destination, VecDeque<Job>>> {
    let (now, _) = system::now();
    let via_smarthost = !config.smarthosts.is_empty();
    let mut queues: BTreeMap<Destination, VecDeque<Job>> = BTreeMap::new();
    let logins = LoginNames::default();
    let entries = match &selection.message {
        Some(id) => vec![spool.entry(id)],
        None => scan_logging_strays(spool, config, selection, seen, log, first, now)?,
    };
    for entry in entries {
        if !seen.insert(entry.id.clone()) {
            continue;
        }
        // The state first: most of a large queue is waiting for its next
        // attempt, and its envelopes need not be read at all.
        let Some(state) = record::state_or_hold(spool, &entry, log) else {
            continue;
        };
        // Held (`spoolctl hold`): neither delivered nor expired, notices too wait.
        if state.held.is_some() {
            continue;
        }
        let owed = !state.owed.is_empty();
        if !owed && !is_due(&state, now, selection.force) {
            continue;
        }
        let (env, busy) = match spool.read_envelope_for_listing(&entry.id) {
            Ok((env, _, busy)) => (env, busy),
            // Delivered and removed by another pass since.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                // Left as it is (a later version may read it), but never silently.
                log.info(&format!(
                    "{}: cannot read the queued message, left alone: {e}",
                    entry.id
                ));
                continue;
            }
        };
        if selection.select.as_ref().is_some_and(|s| !s.matches(&env))
            || selection.owner.is_some_and(|uid| env.uid != uid)
        {
            continue;
        }
        if busy {
            // Locked: by its writer, between the rename into queue/ and
            // the end of its commit, or by another runner. Not seen, so
            // a later look takes it once it is free: a runner that took it
            // now would find it claimed, and its submitter, finding the
            // runner lock taken, counts on the runner (see run_background).
            seen.remove(&entry.id);
            continue;
        }
        if env.recipients.is_empty() {
            record::remove_without_recipients(spool, &env.id, log);
            continue;
        }
        if owed {
            notices.insert(env.id.clone());
        }
        if !is_due(&state, now, selection.force) {
            continue;
        }
        queue_jobs(&mut queues, &env, &state, config, via_smarthost, &logins);
    }
    Ok(queues)
}

/// The login names of the uids a look at the queue has met, looked up once
/// each: a `users=` line of the sender relay map is checked against every
/// due message's submitter, and a look-up can go through NSS (LDAP, a
/// database), so a queue of a user's 100,000 messages costs one, not
/// 100,000.
#[derive(Default)]
struct LoginNames(RefCell<HashMap<u32, Option<String>>>);

impl LoginNames {
    fn of(&self, uid: u32) -> Option<String> {
        let mut names = self.0.borrow_mut();
        names
            .entry(uid)
            .or_insert_with(|| system::login_name(uid))
            .clone()
    }
}

/// Queues a due message's jobs, each under its destination: its sender's
/// relay (taken at each pass from the config, never stored, so that a
/// change of the map applies to the mail already queued; a line with
/// `users=` is for the mail its users submitted), else the smarthost or
/// the recipients' domains.
fn queue_jobs(
    queues: &mut BTreeMap<Destination, VecDeque<Job>>,
    env: &Envelope,
    state: &State,
    config: &Config,
    via_smarthost: bool,
    logins: &LoginNames,
) {
    let login = || logins.of(env.uid);
    let relay = (config.relay_for_sender(&env.sender, env.uid, login)).map(|r| &r.pattern);
    for (destination, job) in jobs_of(env, state, relay, via_smarthost) {
        queues.entry(destination).or_default().push_back(job);
    }
}

/// Sends the notices of the messages in `notices` that have no job left
/// in this pass, queued or in a child's hands: one bounce per message for
/// every recipient that failed in any of its jobs ([`record::flush_notices`]).
fn flush_finished(
    ctx: &RecordContext,
    notices: &mut BTreeSet<QueueId>,
    queues: &BTreeMap<Destination, VecDeque<Job>>,
    children: &[Child],
    log: &mut Log,
) {
    if notices.is_empty() {
        return;
    }
    let queued = queues.values().flatten().map(|job| &job.id);
    let held = children
        .iter()
        .filter_map(|c| c.job.as_ref().map(|(job, _)| &job.id));
    let busy: std::collections::HashSet<&QueueId> = queued.chain(held).collect();
    notices.retain(|id| {
        let left = busy.contains(id);
        if !left {
            record::flush_notices(ctx, id, log);
        }
        left
    });
}

/// The queue's messages not in `seen`; what is named like one but is not
/// a regular file is left alone, and logged when `first`, which also
/// removes the state files left without their message (unless
/// `background`: a user's runner leaves that to the cron pass). A pass
/// that is not forced leaves out, unread, the messages whose state file's
/// mtime says they wait ([`crate::spool::waits_by_mtime`]), adding them to
/// `seen` as a look that found them not due does.
fn scan_logging_strays(
    spool: &Spool,
    config: &Config,
    selection: &Selection,
    seen: &mut HashSet<QueueId>,
    log: &mut Log,
    first: bool,
    now: u64,
) -> Result<Vec<crate::spool::QueueEntry>> {
    // No pass writes a next attempt further away than the longest wait;
    // the lifetime leaves room for a schedule shortened since.
    let steps = config.retry_schedule.steps.iter().copied();
    let longest = steps.chain(config.queue_lifetime()).max();
    let horizon = match selection.force {
        true => 0,
        false => longest.map_or(0, |d| d.as_secs()),
    };
    let scan = spool.scan_for_pass(now, horizon, seen)?;
    if !first {
        return Ok(scan.entries);
    }
    // Once per pass: its later looks at the queue say nothing new.
    for name in scan.strays {
        log.info(&format!(
            "queue/{name} is not a regular file: skipped, left alone"
        ));
    }
    let orphans = match selection.background {
        true => 0,
        false => spool.remove_orphans(&scan.orphans),
    };
    if orphans > 0 {
        log.info(&format!("removed {orphans} leftover files of dead writers"));
    }
    Ok(scan.entries)
}

/// Whether a message is taken by this pass: one never tried, one whose
/// next attempt has come (`now`, seconds since the epoch), or any when the
/// pass is forced (`-q` with a selection, a submission's own pass).
fn is_due(state: &State, now: u64, force: bool) -> bool {
    force || state.attempts == 0 || state.next_attempt <= now
}

/// A message's jobs: its recipients still to do (pending or deferred),
/// grouped by destination in the destinations' order (all of them at the
/// sender's `relay`, when the map has one for it), each with its
/// recipients' domains, lower-cased (for the stalled-domain rule of
/// [`pick`]; a repeat right after itself is dropped).
fn jobs_of(
    env: &Envelope,
    state: &State,
    relay: Option<&SenderPattern>,
    via_smarthost: bool,
) -> Vec<(Destination, Job)> {
    let mut by_destination: BTreeMap<Destination, Vec<usize>> = BTreeMap::new();
    let all: Vec<usize> = (0..env.recipients.len()).collect();
    for i in state.undone(&all, env.recipients.len()) {
        let address = &env.recipients[i].address;
        let destination = Destination::routed(address, relay, via_smarthost);
        by_destination.entry(destination).or_default().push(i);
    }
    by_destination
        .into_iter()
        .map(|(destination, rcpts)| {
            let mut domains: Vec<String> = rcpts
                .iter()
                .filter_map(|&i| env.recipients[i].address.domain())
                .map(str::to_ascii_lowercase)
                .collect();
            domains.dedup();
            let id = env.id.clone();
            (destination, Job { id, rcpts, domains })
        })
        .collect()
}

/// What starting a child needs besides the queues.
struct Starter<'a> {
    config: &'a Config,
    verbose: bool,
    /// None: no spool-wide bound (see [`open_slots`]).
    slots: Option<Slots>,
    /// The uid of an unprivileged pass: it leaves a slot of each kind to
    /// privileged passes and keeps within its user's share.
    user: Option<u32>,
}

fn start_children(
    starter: &mut Starter,
    queues: &mut BTreeMap<Destination, VecDeque<Job>>,
    children: &mut Vec<Child>,
    paces: &Paces,
    summary: &mut PassSummary,
    log: &mut Log,
) -> Result<()> {
    let config = starter.config;
    let now = Instant::now();
    for (destination, queue) in queues.iter() {
        let limits = Limits::of(config, destination);
        if !paces.may_start(destination, now) {
            continue; // a relay resting, or its next message not yet due
        }
        // A relay that has rested in this pass (too many connections, too
        // fast) goes on with the connections it kept; one when none is left.
        if paces.has_rested(destination) && children.iter().any(|c| c.destination == *destination) {
            continue;
        }
        // A paced relay takes one message at a time: one idle child is enough.
        let paced = config.limits_of(destination).per_minute.is_some();
        let queued = if paced {
            queue.len().min(1)
        } else {
            queue.len()
        };
        while may_start(&loads(children), destination, queued, limits, now) {
            let taken = match &starter.slots {
                None => None,
                Some(slots) => {
                    match take_slots(slots, destination, children, limits, starter.user, now) {
                        Ok(Some(taken)) => Some(taken),
                        Ok(None) => break, // held by other passes: this one waits
                        Err(e) => {
                            log.info(&format!(
                            "cannot take a delivery slot: {e}; this pass is bounded by its own limits only"
                        ));
                            starter.slots = None;
                            None
                        }
                    }
                }
            };
            let child = fork_child(config, destination, children, starter.verbose, taken)?;
            children.push(child);
            summary.children += 1;
        }
    }
    Ok(())
}

/// The slots a child holds while it lives.
struct Taken {
    child: Slot,
    destination: Slot,
    /// Its user's share, in an unprivileged pass.
    _user: Option<Slot>,
}

/// The slots a new child for `destination` needs: one of `max_children`
/// and one of its destination's `max_per_destination`, with headroom past
/// each in a privileged pass while it has more stalled transactions (of
/// that destination) than headroom slots, as [`may_start`] allows; and
/// for an unprivileged `user`'s pass, one of that user's share first;
/// None while other processes hold every one it may take.
fn take_slots(
    slots: &Slots,
    destination: &Destination,
    children: &[Child],
    limits: Limits,
    user: Option<u32>,
    now: Instant,
) -> std::io::Result<Option<Taken>> {
    let (global_limit, dest_limit) = (limits.children as u32, limits.per_destination as u32);
    let reserve = user.is_some();
    let global = !reserve && headroom(children, now, global_limit, |c| c.slots.map(|s| s.0));
    let own = !reserve
        && !limits.capped
        && headroom(children, now, dest_limit, |c| {
            (c.destination == *destination)
                .then_some(c.slots.map(|s| s.1))
                .flatten()
        });
    let share = match user {
        None => None,
        Some(uid) => {
            let numbers: Vec<u32> = (0..slots::user_share(global_limit, dest_limit)).collect();
            match slots.take(slots::Kind::User(uid), &numbers)? {
                Some(slot) => Some(slot),
                None => return Ok(None), // the user's share is in use
            }
        }
    };
    let Some(child) = slots.take(
        slots::Kind::Child,
        &slots::candidates(global_limit, reserve, global),
    )?
    else {
        return Ok(None);
    };
    let kind = slots::Kind::Destination(slots::bucket(destination));
    let Some(dest) = slots.take(kind, &slots::candidates(dest_limit, reserve, own))? else {
        return Ok(None); // the slots taken are freed as they are dropped
    };
    Ok(Some(Taken {
        child,
        destination: dest,
        _user: share,
    }))
}

/// Whether a pass may take a headroom slot past `limit`: more of its
/// children that `of` counts (Some: their slot number) are stalled than
/// hold headroom slots.
fn headroom(
    children: &[Child],
    now: Instant,
    limit: u32,
    of: impl Fn(&Child) -> Option<u32>,
) -> bool {
    let stalled = children
        .iter()
        .filter(|c| of(c).is_some())
        .filter(|c| {
            c.job
                .as_ref()
                .is_some_and(|(_, s)| now - *s > STALLED_AFTER)
        })
        .count();
    let extra = children
        .iter()
        .filter_map(&of)
        .filter(|&n| n >= limit)
        .count();
    stalled > extra
}

/// What the scheduling rules see of a child: its destination, and when the
/// job it holds started.
#[derive(Debug, Clone, Copy)]
struct Load<'a> {
    destination: &'a Destination,
    started: Option<Instant>,
}

impl Load<'_> {
    fn is_stalled(&self, now: Instant) -> bool {
        self.started
            .is_some_and(|started| now - started > STALLED_AFTER)
    }
}

fn loads(children: &[Child]) -> Vec<Load<'_>> {
    children
        .iter()
        .map(|c| Load {
            destination: &c.destination,
            started: c.job.as_ref().map(|(_, started)| *started),
        })
        .collect()
}

/// `max_children` and `max_per_destination`, or a relay's
/// `max_connections` under it.
#[derive(Debug, Clone, Copy)]
struct Limits {
    children: usize,
    per_destination: usize,
    /// `per_destination` is the relay's own `max_connections`: a bound on
    /// its connections, with no headroom for stalled ones (a relay that
    /// allows N refuses the N+1th, stalled or not).
    capped: bool,
}

impl Limits {
    /// The limits a new child for `destination` starts under.
    fn of(config: &Config, destination: &Destination) -> Limits {
        let spool_wide = config.max_per_destination;
        let cap = config.limits_of(destination).connections;
        Limits {
            children: config.max_children as usize,
            per_destination: cap.map_or(spool_wide, |c| c.min(spool_wide)) as usize,
            capped: cap.is_some(),
        }
    }
}

/// Whether another child may start for `destination`, which has `queued`
/// messages waiting: room under `max_children` (stalled children, up to as
/// many again, do not count), fewer than `max_per_destination` of its own
/// children moving (a capped relay: fewer children at all, stalled or
/// idle, each of which may hold a connection), and fewer idle ones than
/// the messages they would take.
fn may_start(
    children: &[Load],
    destination: &Destination,
    queued: usize,
    limits: Limits,
    now: Instant,
) -> bool {
    let stalled = children.iter().filter(|c| c.is_stalled(now)).count();
    if children.len() >= limits.children + stalled.min(limits.children) || queued == 0 {
        return false;
    }
    let own = || children.iter().filter(|c| c.destination == destination);
    let active = match limits.capped {
        true => own().count(),
        false => own().filter(|c| !c.is_stalled(now)).count(),
    };
    let idle = own().filter(|c| c.started.is_none()).count();
    active < limits.per_destination && idle < queued
}

/// Forks a delivery child for `destination`, which inherits the `slots`
/// taken for it: they stay held as long as it lives, and the parent's
/// copies are closed.
fn fork_child(
    config: &Config,
    destination: &Destination,
    siblings: &mut Vec<Child>,
    verbose: bool,
    slots: Option<Taken>,
) -> Result<Child> {
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| Error::io("cannot create a socket pair", e))?;
    // Nothing buffered may be written twice by parent and child.
    let _ = std::io::stdout().flush();
    match sys::fork() {
        Err(e) => Err(Error::io("cannot fork a delivery child", e)),
        Ok(sys::Forked::Child) => {
            // Before anything else: a child its caller stops right away
            // still frees its slots within the deadline and the margin.
            let timer = deliver::armed_kill_timer(config);
            drop(ours);
            // The copies of the parent's ends of its siblings' sockets are
            // dropped through their owners (never closed by number under them),
            // so that a sibling sees end of file when the parent goes, whatever
            // this child does. The rest of the parent's state stays untouched
            // and undropped: the child ends in exit_child, never returning here.
            siblings.clear();
            let code = deliver::worker_main(theirs, destination.clone(), config, verbose, timer);
            // The slots' files close as the child ends, freeing them.
            drop(slots);
            sys::exit_child(code)
        }
        Ok(sys::Forked::Parent(pid)) => {
            drop(theirs);
            let numbers = (slots.as_ref()).map(|t| (t.child.number, t.destination.number));
            drop(slots); // closes the parent's copies, never unlocks
            let _ = ours.set_nonblocking(true);
            Ok(Child {
                pid,
                sock: ours,
                inbox: Vec::new(),
                destination: destination.clone(),
                job: None,
                waiting: false,
                idle_since: None,
                slots: numbers,
                killed: false,
                throttled: false,
            })
        }
    }
}

/// Waits for a child to say something (or end), at most `timeout`;
/// returns which children have (see [`sys::poll_readable`]).
fn wait_for_children(children: &[Child], timeout: Duration) -> Vec<bool> {
    let fds: Vec<BorrowedFd> = children.iter().map(|c| c.sock.as_fd()).collect();
    sys::poll_readable(&fds, timeout)
}

/// Reads what a child said (the pass answers every waiting child after
/// looking for new messages: see [`assign`]).
fn serve(
    i: usize,
    children: &mut [Child],
    queues: &mut BTreeMap<Destination, VecDeque<Job>>,
    paces: &mut Paces,
    ctx: &RecordContext,
    log: &mut Log,
    summary: &mut PassSummary,
) {
    let mut buf = [0u8; PASS_READ_PIECE];
    loop {
        match children[i].sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => children[i].inbox.extend_from_slice(&buf[..n]),
            Err(_) => break, // WouldBlock: nothing more for now
        }
    }
    while let Some(end) = children[i].inbox.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = children[i].inbox.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line);
        let reason = match Message::decode(&line) {
            Some(Message::Failed { id, index, reason }) => {
                summary.failed.push((id, index, reason));
                continue;
            }
            Some(Message::Next) => None,
            Some(Message::Dead { reason }) => Some(Outcome::deferred(reason)),
            Some(Message::Misconfigured { reason }) => Some(Outcome::misconfigured(reason)),
            Some(Message::Throttled { reason }) => {
                let handed = children[i].job.as_ref().map(|(_, at)| *at);
                let handed = handed.unwrap_or_else(Instant::now);
                throttled(
                    &children[i].destination,
                    &reason,
                    handed,
                    queues,
                    paces,
                    ctx,
                    log,
                );
                // Its connection was refused or closed: the relay goes on
                // with the ones it kept (see `start_children`).
                children[i].throttled = true;
                None
            }
            _ => {
                log.info(&format!(
                    "delivery child for {} said {:?}: ignored",
                    children[i].destination,
                    line.trim_end()
                ));
                continue;
            }
        };
        children[i].job = None; // `next`, `dead`, `throttled`: its last job is recorded
        children[i].waiting = true;
        if let Some(reason) = reason {
            // Every other message for this destination would wait out the same failure.
            if let Some(queue) = queues.get_mut(&children[i].destination) {
                for job in queue.drain(..) {
                    let failed = record::defer_with(ctx, &job.id, &job.rcpts, &reason, log);
                    summary
                        .failed
                        .extend(failed.into_iter().map(|(i, t)| (job.id.clone(), i, t)));
                }
            }
        }
    }
}

/// A relay's throttling reply (`reason`) to a message handed out at
/// `handed`: it rests (a new child starts after the rest), once for a
/// burst of replies; when its rests in this pass are used up, the rest of
/// its queue is left, untried and uncounted, to the next queue run, as a
/// pass leaves what it has no slot for (see `Pass::starved`): its messages
/// stay in `seen`, and their state files are not touched, so no attempt
/// is counted and no other message's reply is recorded for them.
fn throttled(
    destination: &Destination,
    reason: &str,
    handed: Instant,
    queues: &mut BTreeMap<Destination, VecDeque<Job>>,
    paces: &mut Paces,
    ctx: &RecordContext,
    log: &mut Log,
) {
    let base = ctx.config.throttle_backoff;
    match paces.throttled(destination, base, handed, Instant::now()) {
        Rest::Begins(rest) => log.info(&format!(
            "{destination} throttles: {reason}; it rests {}s before its next connection",
            rest.as_secs()
        )),
        Rest::Taken => {}
        Rest::UsedUp(times) => {
            let left = queues
                .get_mut(destination)
                .map_or(0, |q| q.drain(..).count());
            log.info(&format!(
                "{destination} throttled {times} times in this queue run (421/4.7.x): {left} message(s) left untried to the next queue run"
            ));
        }
    }
}

/// Gives a waiting child the first message of its destination that no other
/// child holds, or `quit` when there is none left or its relay rests;
/// leaves it waiting while the only ones left are in other children's
/// hands or its relay's next message is not yet due (`paces`), and, in a
/// pass that `linger`s, for [`LINGER`] after its destination's queue ran
/// empty. A job goes with the pass's id.
fn assign(
    i: usize,
    children: &mut [Child],
    queues: &mut BTreeMap<Destination, VecDeque<Job>>,
    paces: &mut Paces,
    linger: bool,
    ctx: &RecordContext,
) {
    let destination = children[i].destination.clone();
    let queue = queues.entry(destination.clone()).or_default();
    let now = Instant::now();
    if linger && queue.is_empty() {
        let since = *children[i].idle_since.get_or_insert(now);
        if now - since < LINGER {
            return;
        }
    }
    let held: Vec<&(Job, Instant)> = children.iter().filter_map(|c| c.job.as_ref()).collect();
    // A relay resting, or whose next turn is further off than a child
    // keeps its connection for, gets a new child when the time comes.
    let told = match paces.wait(&destination, now) {
        _ if children[i].throttled => Answer::Quit,
        Some(wait) if wait > PACE_HOLD => Answer::Quit,
        Some(_) if !queue.is_empty() => Answer::Wait,
        _ => answer(queue, &held, now),
    };
    let (pass, per_minute) = (ctx.pass, ctx.config.limits_of(&destination).per_minute);
    let (reply, free) = match told {
        Answer::Wait => return,
        Answer::Quit => (Message::Quit, None),
        Answer::Give(_) if !paces.take_turn(&destination, per_minute, now) => return,
        Answer::Give(pos) => {
            let job = &queue[pos];
            let (id, rcpts, pass) = (job.id.clone(), job.rcpts.clone(), pass.clone());
            (Message::Job { id, rcpts, pass }, Some(pos))
        }
    };
    let child = &mut children[i];
    child.waiting = false;
    child.idle_since = None;
    let _ = child.sock.set_nonblocking(false);
    let sent = child.sock.write_all(reply.encode().as_bytes()).is_ok();
    let _ = child.sock.set_nonblocking(true);
    if let Some(pos) = free
        && sent
    {
        let job = queue.remove(pos).expect("found above");
        child.job = Some((job, Instant::now()));
    }
}

/// What a child asking for work is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The message at this position of its destination's queue.
    Give(usize),
    /// Nothing yet: the messages left are in other children's hands, and
    /// come back to the queue if those children die.
    Wait,
    /// Nothing left for its destination: exit.
    Quit,
}

/// The answer to a child of the destination whose `queue` this is, given
/// the jobs children hold and since when (see [`pick`]).
fn answer(queue: &VecDeque<Job>, held: &[&(Job, Instant)], now: Instant) -> Answer {
    match pick(queue, held, now) {
        Some(pos) => Answer::Give(pos),
        None if queue.is_empty() => Answer::Quit,
        None => Answer::Wait,
    }
}

/// Which message of `queue` to hand out next, given the jobs children hold
/// and since when: the first that no child holds, and among those the
/// first whose recipients' domains have no stalled transaction, if any.
fn pick(queue: &VecDeque<Job>, held: &[&(Job, Instant)], now: Instant) -> Option<usize> {
    let in_flight = |job: &Job| held.iter().any(|(j, _)| j.id == job.id);
    let slow_domains: Vec<&str> = held
        .iter()
        .filter(|(_, started)| now - *started > STALLED_AFTER)
        .flat_map(|(j, _)| j.domains.iter().map(String::as_str))
        .collect();
    let to_slow_domain = |job: &Job| {
        job.domains
            .iter()
            .any(|d| slow_domains.contains(&d.as_str()))
    };
    queue
        .iter()
        .position(|job| !in_flight(job) && !to_slow_domain(job))
        .or_else(|| queue.iter().position(|job| !in_flight(job)))
}

/// Kills every child whose transaction has run past `transaction_deadline`.
fn enforce_deadlines(config: &Config, children: &mut [Child]) {
    let now = Instant::now();
    for child in children.iter_mut() {
        let started = child.job.as_ref().map(|(_, started)| *started);
        if overdue(started, child.killed, now, config.transaction_deadline) {
            sys::kill_hard(child.pid);
            child.killed = true;
        }
    }
}

/// Whether a child must be killed: it holds a job started longer than
/// `deadline` before `now`, and has not been killed already.
fn overdue(started: Option<Instant>, killed: bool, now: Instant, deadline: Duration) -> bool {
    !killed && started.is_some_and(|started| now - started > deadline)
}

/// Why the job of a child that ended without reporting it is deferred:
/// killed at its deadline after `ran`, or died with wait status `status`.
fn taken_back(destination: &Destination, killed: bool, ran: Duration, status: i32) -> String {
    if killed {
        format!(
            "delivery to {destination} timed out after {}s",
            ran.as_secs()
        )
    } else {
        format!("delivery process for {destination} died (wait status {status})")
    }
}

/// Collects exited children; a message a child held when it died or was
/// killed is deferred, never lost: the state it had stays, with the reason.
fn reap(children: &mut Vec<Child>, ctx: &RecordContext, log: &mut Log, summary: &mut PassSummary) {
    while let Some((pid, status)) = sys::reap_any() {
        let Some(pos) = children.iter().position(|c| c.pid == pid) else {
            continue;
        };
        let child = children.swap_remove(pos);
        if let Some((job, started)) = child.job {
            let reason = taken_back(&child.destination, child.killed, started.elapsed(), status);
            let failed = record::defer(ctx, &job.id, &job.rcpts, &reason, log);
            summary
                .failed
                .extend(failed.into_iter().map(|(i, t)| (job.id.clone(), i, t)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(d: &str) -> Destination {
        Destination::Domain(d.into())
    }

    const LIMITS: Limits = Limits {
        children: 4,
        per_destination: 2,
        capped: false,
    };

    /// Children as (destination, seconds their job has run; None: idle).
    type Children = Vec<(Destination, Option<u64>)>;

    fn loads(children: &Children, now: Instant) -> Vec<Load<'_>> {
        children
            .iter()
            .map(|(d, secs)| Load {
                destination: d,
                started: secs.map(|s| now - Duration::from_secs(s)),
            })
            .collect()
    }

    #[test]
    fn children_start_within_the_limits() {
        let now = Instant::now();
        let (a, b) = (dest("a.example"), dest("b.example"));
        let stalled = STALLED_AFTER.as_secs() + 1;
        // (children, queued for a, may another start for a)
        let cases: Vec<(Children, usize, bool)> = vec![
            (vec![], 1, true),
            (vec![], 0, false),
            // One idle child of a per queued message is enough.
            (vec![(a.clone(), None)], 1, false),
            (vec![(a.clone(), None)], 2, true),
            // max_per_destination moving children of a.
            (vec![(a.clone(), Some(0)), (a.clone(), Some(1))], 5, false),
            // A stalled one no longer counts against its destination.
            (
                vec![(a.clone(), Some(0)), (a.clone(), Some(stalled))],
                5,
                true,
            ),
            // max_children in all...
            (vec![(b.clone(), Some(0)); 3], 5, true),
            (vec![(b.clone(), Some(0)); 4], 5, false),
            // ...with up to as many again while some are stalled.
            (
                vec![
                    (b.clone(), Some(stalled)),
                    (b.clone(), Some(0)),
                    (b.clone(), Some(0)),
                    (b.clone(), Some(0)),
                ],
                5,
                true,
            ),
            (vec![(b.clone(), Some(stalled)); 8], 5, false),
            (vec![(b.clone(), Some(stalled)); 7], 5, true),
        ];
        for (children, queued, expected) in cases {
            let got = may_start(&loads(&children, now), &a, queued, LIMITS, now);
            assert_eq!(got, expected, "{children:?}, {queued} queued");
        }
        // A relay's max_connections (2): every child of it counts, stalled
        // or idle, since each may hold a connection the relay counts.
        let capped = Limits {
            capped: true,
            ..LIMITS
        };
        let cases: Vec<(Children, usize, bool)> = vec![
            (vec![], 1, true),
            (vec![(a.clone(), None)], 2, true),
            (vec![(a.clone(), None), (a.clone(), Some(0))], 5, false),
            (
                vec![(a.clone(), Some(0)), (a.clone(), Some(stalled))],
                5,
                false,
            ),
            (vec![(a.clone(), Some(stalled))], 5, true),
            (vec![(b.clone(), Some(0)); 3], 5, true),
        ];
        for (children, queued, expected) in cases {
            let got = may_start(&loads(&children, now), &a, queued, capped, now);
            assert_eq!(got, expected, "capped: {children:?}, {queued} queued");
        }
    }

    /// A job of message `Qn`.
    fn job(id: &str, domains: &[&str]) -> Job {
        let n = id.trim_start_matches('Q');
        Job {
            id: QueueId::parse(&format!("{n:0>16}")).unwrap(),
            rcpts: vec![0],
            domains: domains.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn the_next_message_is_one_no_child_holds_away_from_stalled_domains() {
        let now = Instant::now();
        let stalled = now - STALLED_AFTER - Duration::from_secs(1);
        let queue: VecDeque<Job> = [
            job("Q1", &["slow.example"]),
            job("Q2", &["slow.example", "b.example"]),
            job("Q3", &["b.example"]),
        ]
        .into();
        let held = |jobs: &[(Job, Instant)]| pick(&queue, &jobs.iter().collect::<Vec<_>>(), now);
        assert_eq!(held(&[]), Some(0));
        // Q1 is in another child's hands (its recipients at other destinations).
        assert_eq!(held(&[(job("Q1", &["slow.example"]), now)]), Some(1));
        // A transaction to slow.example has stalled: messages to it wait.
        assert_eq!(held(&[(job("Q9", &["slow.example"]), stalled)]), Some(2));
        // ...unless nothing else is left.
        assert_eq!(
            held(&[
                (job("Q9", &["slow.example"]), stalled),
                (job("Q3", &["b.example"]), now),
            ]),
            Some(0)
        );
        // Every message held: none to give (the child waits).
        let all: Vec<(Job, Instant)> = queue.iter().map(|j| (j.clone(), now)).collect();
        assert_eq!(held(&all), None);
        assert_eq!(pick(&VecDeque::new(), &[], now), None);
        // What the asking child is told.
        let told = |q: &VecDeque<Job>, jobs: &[(Job, Instant)]| {
            answer(q, &jobs.iter().collect::<Vec<_>>(), now)
        };
        let one = [(job("Q1", &["slow.example"]), now)];
        assert_eq!(told(&queue, &[]), Answer::Give(0));
        assert_eq!(told(&queue, &one), Answer::Give(1));
        assert_eq!(told(&queue, &all), Answer::Wait);
        assert_eq!(told(&VecDeque::new(), &all), Answer::Quit);
        assert_eq!(told(&VecDeque::new(), &[]), Answer::Quit);
    }

    #[test]
    fn looks_at_the_queue_come_no_more_often_than_they_can_be_afforded() {
        let ms = Duration::from_millis;
        // (starved, what the last look took) -> the wait before the next
        for (starved, cost, wait) in [
            (false, ms(1), PASS_TICK),
            (true, ms(1), STARVED_RESCAN),
            (false, ms(150), ms(150) * RESCAN_COST_FACTOR),
            (true, ms(150), ms(150) * RESCAN_COST_FACTOR),
            (false, Duration::ZERO, PASS_TICK),
        ] {
            assert_eq!(rescan_interval(starved, cost), wait, "{starved} {cost:?}");
        }
    }

    #[test]
    fn a_message_is_due_when_never_tried_its_time_has_come_or_the_pass_is_forced() {
        let now = 1_000_000;
        let state = |attempts: u32, next_attempt: u64| State {
            attempts,
            next_attempt,
            ..State::default()
        };
        // (attempts, next attempt, forced) -> due
        for (attempts, next, force, due) in [
            (0, 0, false, true),
            (0, now + 60, false, true),
            (1, now - 1, false, true),
            (1, now, false, true),
            (1, now + 1, false, false),
            (1, now + 1, true, true),
            (7, u64::MAX, true, true),
        ] {
            assert_eq!(
                is_due(&state(attempts, next), now, force),
                due,
                "{attempts} made, next {next}, forced {force}"
            );
        }
    }

    fn envelope(rcpts: &[&str]) -> Envelope {
        Envelope {
            id: QueueId::parse("65A1B2C3F4240ABC").unwrap(),
            arrival: 0,
            uid: 0,
            sender: "s@example.org".into(),
            recipients: rcpts
                .iter()
                .map(|a| crate::spool::Recipient {
                    address: crate::model::Address::accepted(a),
                    orcpt: None,
                })
                .collect(),
            ret: None,
            envid: None,
            notify: None,
            body: crate::model::BodyType::SevenBit,
            smtputf8: false,
            notice: false,
        }
    }

    #[test]
    fn a_message_becomes_one_job_per_destination_of_its_recipients_still_to_do() {
        use crate::spool::RcptStatus::{Deferred, Delivered, Failed};
        let env = envelope(&[
            "a@B.example",
            "b@b.example",
            "c@[127.0.0.1]",
            "d@a.example",
            "e@b.EXAMPLE",
            "f@a.example",
            "g@c.example",
        ]);
        let mut state = State::default();
        state.set(1, Deferred, "451 later");
        state.set(5, Delivered, "250 ok");
        state.set(6, Failed, "550 no");
        let shown = |jobs: Vec<(Destination, Job)>| -> Vec<(String, Vec<usize>, Vec<String>)> {
            jobs.into_iter()
                .map(|(d, j)| {
                    assert_eq!(j.id, env.id);
                    (d.to_string(), j.rcpts, j.domains)
                })
                .collect()
        };
        let v = |d: &[&str]| d.iter().map(|d| d.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shown(jobs_of(&env, &state, None, false)),
            [
                ("a.example".into(), vec![3], v(&["a.example"])),
                ("b.example".into(), vec![0, 1, 4], v(&["b.example"])),
                ("[127.0.0.1]".into(), vec![2], v(&["[127.0.0.1]"])),
            ]
        );
        // Through a smarthost: one job, with every domain for the stalled rule.
        assert_eq!(
            shown(jobs_of(&env, &state, None, true)),
            [(
                "[smarthost]".into(),
                vec![0, 1, 2, 3, 4],
                v(&["b.example", "[127.0.0.1]", "a.example", "b.example"])
            )]
        );
        // Nothing left to do: no job.
        let mut done = State::default();
        for i in 0..env.recipients.len() {
            done.set(i, Delivered, "250 ok");
        }
        assert!(jobs_of(&env, &done, None, false).is_empty());
        // The sender's relay: one job, whatever the smarthost setting.
        let shop = SenderPattern::Domain("shop.example".into());
        for via_smarthost in [false, true] {
            assert_eq!(
                shown(jobs_of(&env, &state, Some(&shop), via_smarthost)),
                [(
                    "[relay:@shop.example]".into(),
                    vec![0, 1, 2, 3, 4],
                    v(&["b.example", "[127.0.0.1]", "a.example", "b.example"])
                )]
            );
        }
    }

    #[test]
    fn a_transaction_past_its_deadline_is_killed_once() {
        let now = Instant::now();
        let deadline = Duration::from_secs(600);
        let ago = |s: u64| Some(now - Duration::from_secs(s));
        // (job started, killed already) -> kill now
        for (started, killed, kill) in [
            (None, false, false),
            (ago(0), false, false),
            (ago(600), false, false),
            (ago(601), false, true),
            (ago(601), true, false),
        ] {
            assert_eq!(
                overdue(started, killed, now, deadline),
                kill,
                "{started:?} killed {killed}"
            );
        }
    }

    #[test]
    fn a_job_taken_back_says_why() {
        let d = dest("b.example");
        let ran = Duration::from_millis(601_900);
        assert_eq!(
            taken_back(&d, true, ran, 9),
            "delivery to b.example timed out after 601s"
        );
        assert_eq!(
            taken_back(&Destination::Smarthost, false, ran, 134),
            "delivery process for [smarthost] died (wait status 134)"
        );
    }
}
