//! Metrics for Prometheus: the queue's gauges and the spool's counters,
//! written after each queue pass to `metrics_file` in the text exposition
//! format, for node_exporter's textfile collector.
//!
//! Two halves, written by different processes:
//!
//! - The counters (`SPOOL_DIR/counters`, doc/SPOOL.md): recipients
//!   delivered, deferred, bounced and expired since the file was made.
//!   Whoever records an attempt ([`crate::record`]: a delivery child, or a
//!   pass parent taking a job back) adds its outcomes with one locked
//!   read-modify-write. They are real outcomes whoever's pass it was, so an
//!   unprivileged user's pass counts too.
//! - The metrics file: the gauges (messages by state, the oldest one's age,
//!   recipients by status), the counters and the time the pass completed.
//!   Only a pass that may take everyone's mail (root, the spool's group,
//!   `admin_group`: [`crate::system::pass_owner`]) writes it, so that the
//!   file always says what a privileged pass saw; a user's own pass or
//!   background runner leaves it alone.
//!
//! Neither can lose or hold up mail: every failure is logged and ignored,
//! and the counters' lock is waited for a bounded time only.

use crate::config::Config;
use crate::limits::{
    COUNTERS_FLUSH_EVERY, COUNTERS_LOCK_FIRST_POLL, COUNTERS_LOCK_POLL, COUNTERS_LOCK_WAIT,
};
use crate::log::Log;
use crate::spool::{RcptStatus, Spool, Standing, State, standing};
use crate::system;
use std::cell::Cell;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The counters' file under the spool directory (doc/SPOOL.md, "Layout").
pub const COUNTERS_FILE: &str = "counters";

/// The counters file's first line: its format and version.
const COUNTERS_MAGIC: &str = "SPOOLMAIL-COUNTERS 1";

/// Recipients by the outcome an attempt recorded for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub delivered: u64,
    pub deferred: u64,
    /// Failed for good by a refusal.
    pub bounced: u64,
    /// Failed for good because the attempts ran out.
    pub expired: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.delivered = self.delivered.saturating_add(other.delivered);
        self.deferred = self.deferred.saturating_add(other.deferred);
        self.bounced = self.bounced.saturating_add(other.bounced);
        self.expired = self.expired.saturating_add(other.expired);
    }

    fn is_empty(&self) -> bool {
        *self == Tally::default()
    }

    /// (label, value) in the order the file and the metrics list them.
    fn outcomes(&self) -> [(&'static str, u64); 4] {
        [
            ("delivered", self.delivered),
            ("deferred", self.deferred),
            ("bounced", self.bounced),
            ("expired", self.expired),
        ]
    }
}

/// The counters file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// When the file was made (Unix seconds): the counts are since then.
    pub since: u64,
    pub tally: Tally,
    /// Lines of a later version this one does not know, kept as they are.
    other: Vec<String>,
}

/// Parses the counters file; None when it is not one (a file cut short by
/// a crash: see [`count`]). Unknown keys are kept, not refused.
pub fn parse_counters(text: &str) -> Option<Counters> {
    let mut lines = text.lines();
    if lines.next()? != COUNTERS_MAGIC {
        return None;
    }
    let mut c = Counters::default();
    for line in lines.filter(|l| !l.is_empty()) {
        let (key, value) = line.split_once(' ')?;
        let field = match key {
            "since" => &mut c.since,
            "delivered" => &mut c.tally.delivered,
            "deferred" => &mut c.tally.deferred,
            "bounced" => &mut c.tally.bounced,
            "expired" => &mut c.tally.expired,
            _ => {
                c.other.push(line.to_string());
                continue;
            }
        };
        *field = value.trim().parse().ok()?;
    }
    Some(c)
}

/// The counters file's text, as [`parse_counters`] reads it.
pub fn format_counters(c: &Counters) -> String {
    let mut text = format!("{COUNTERS_MAGIC}\nsince {}\n", c.since);
    for (key, value) in c.tally.outcomes() {
        let _ = writeln!(text, "{key} {value}");
    }
    for line in &c.other {
        let _ = writeln!(text, "{line}");
    }
    text
}

fn counters_path(spool_dir: &Path) -> PathBuf {
    spool_dir.join(COUNTERS_FILE)
}

/// Adds one attempt's outcomes to the spool's counters. A failure is
/// logged and ignored: the outcome is in the state already, and counting
/// it is only for the metrics.
pub fn count(spool_dir: &Path, tally: &Tally, log: &mut Log) {
    if tally.is_empty() {
        return;
    }
    let path = counters_path(spool_dir);
    match add_to(&path, tally, system::now().0) {
        Ok(true) => {}
        Ok(false) => log.info(&format!(
            "{} was not a whole counters file (a crash?): counting again from zero",
            path.display()
        )),
        Err(e) => log.info(&format!(
            "cannot update the counters in {}: {e} (mail is not affected)",
            path.display()
        )),
    }
}

/// A delivery child's counts not yet added to the counters file: a child
/// records a message every fraction of a millisecond, and the file's
/// read-modify-write under its lock was ten system calls a message. The
/// counts are added every [`COUNTERS_FLUSH_EVERY`] at most and when the
/// child ends ([`Batch::flush`]); a child killed in between loses the
/// counts since its last flush, statistics only (doc/SPOOL.md).
pub struct Batch {
    spool_dir: PathBuf,
    pending: Cell<Tally>,
    flushed: Cell<Instant>,
}

impl Batch {
    pub fn new(spool_dir: &Path) -> Batch {
        Batch {
            spool_dir: spool_dir.to_path_buf(),
            pending: Cell::new(Tally::default()),
            flushed: Cell::new(Instant::now()),
        }
    }

    /// Adds one attempt's outcomes; to the file when the last flush is
    /// [`COUNTERS_FLUSH_EVERY`] ago.
    pub fn add(&self, tally: &Tally, log: &mut Log) {
        let mut pending = self.pending.get();
        pending.add(tally);
        self.pending.set(pending);
        if self.flushed.get().elapsed() >= COUNTERS_FLUSH_EVERY {
            self.flush(log);
        }
    }

    /// Adds what is pending to the counters file ([`count`]).
    pub fn flush(&self, log: &mut Log) {
        count(&self.spool_dir, &self.pending.take(), log);
        self.flushed.set(Instant::now());
    }
}

/// The read-modify-write of [`count`], under an exclusive flock on the file.
///
/// No fsync: the counters are statistics, and the outcome they count is
/// already durable in the state file. A flush per attempt would cost a
/// disk write for every delivery; what a crash can do instead is lose the
/// last few increments, or leave a file cut short, which then reads as not
/// a counters file and starts again from zero with a new `since`. Prometheus
/// takes a counter that went down as a reset (`rate`, `increase`), so
/// neither shows as a false rate. The write is in place (one pwrite, then
/// the length) so that the lock is on the file itself, and the content only
/// grows but at such a restart. Returns false when it restarted so from a
/// file that was not empty.
fn add_to(path: &Path, tally: &Tally, now: u64) -> io::Result<bool> {
    let file = open_counters(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    locked(&file, true, |mut f| {
        let mut text = String::new();
        f.read_to_string(&mut text)?;
        let read = parse_counters(&text);
        let whole = read.is_some() || text.is_empty();
        let mut counters = read.unwrap_or(Counters {
            since: now,
            ..Counters::default()
        });
        counters.tally.add(tally);
        let new = format_counters(&counters);
        f.write_all_at(new.as_bytes(), 0)?;
        // Counters only grow: a truncation (which ext4 makes costly, under
        // the lock every child waits for) only after a restart from zero.
        if new.len() < text.len() {
            f.set_len(new.len() as u64)?;
        }
        Ok(whole)
    })
}

/// Opens the counters file for update, making it (mode 0660, the spool's
/// group, whatever the umask, so that every user's deliveries can count)
/// when there is none.
fn open_counters(path: &Path) -> io::Result<File> {
    let open = |create_new| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create_new)
            .mode(0o660)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
    };
    // There is one but the first time: it is opened first.
    match open(false) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    match open(true) {
        Ok(file) => {
            file.set_permissions(std::fs::Permissions::from_mode(0o660))?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open(false),
        Err(e) => Err(e),
    }
}

/// The spool's counters; zero when none was ever counted (no file).
pub fn read_counters(spool_dir: &Path) -> io::Result<Counters> {
    let path = counters_path(spool_dir);
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Counters::default()),
        Err(e) => return Err(e),
    };
    let text = locked(&file, false, |mut f| {
        let mut text = String::new();
        f.read_to_string(&mut text).map(|_| text)
    })?;
    if text.is_empty() {
        return Ok(Counters::default()); // made, and killed before its first write
    }
    parse_counters(&text).ok_or_else(|| io::Error::other("not a counters file"))
}

/// Runs `f` holding a flock on `file` (exclusive or shared), waiting for it
/// [`COUNTERS_LOCK_WAIT`] at most: a holder keeps it for one small read and
/// write, so a longer wait means something is wrong, and delivery goes on.
fn locked<T>(
    file: &File,
    exclusive: bool,
    f: impl FnOnce(&File) -> io::Result<T>,
) -> io::Result<T> {
    let mut lock = fd_lock::RwLock::new(file);
    let start = Instant::now();
    let mut pause = COUNTERS_LOCK_FIRST_POLL;
    loop {
        let refused = if exclusive {
            match lock.try_write() {
                Ok(_held) => return f(file),
                Err(e) => e,
            }
        } else {
            match lock.try_read() {
                Ok(_held) => return f(file),
                Err(e) => e,
            }
        };
        if refused.kind() != io::ErrorKind::WouldBlock {
            return Err(refused);
        }
        if start.elapsed() >= COUNTERS_LOCK_WAIT {
            return Err(io::Error::other("locked by another process for too long"));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(COUNTERS_LOCK_POLL);
    }
}

/// The queue's gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    pub active: u64,
    pub deferred: u64,
    pub hold: u64,
    /// Seconds since the oldest message arrived; 0 for an empty queue.
    pub oldest_age: u64,
    /// Recipients not attempted yet.
    pub pending: u64,
    /// Recipients waiting for a retry.
    pub rcpt_deferred: u64,
    /// Failed recipients whose failure notice is not queued yet.
    pub notice_owed: u64,
}

impl Gauges {
    /// Counts one message. `recipients`: how many its envelope has, when it
    /// was read; without it, only what the state's lines say is counted.
    fn count(&mut self, standing: Standing, state: Option<&State>, recipients: Option<usize>) {
        match standing {
            Standing::Active => self.active += 1,
            Standing::Deferred => self.deferred += 1,
            Standing::Hold => self.hold += 1,
        }
        let Some(state) = state else { return };
        let statuses: Vec<RcptStatus> = match recipients {
            Some(n) => (0..n).map(|i| state.status_of(i).0).collect(),
            None => state.recipients.iter().map(|(_, s, _)| *s).collect(),
        };
        for status in statuses {
            match status {
                RcptStatus::Pending => self.pending += 1,
                RcptStatus::Deferred => self.rcpt_deferred += 1,
                RcptStatus::Delivered | RcptStatus::Failed => {}
            }
        }
        self.notice_owed += state.owed.len() as u64;
    }
}

/// The gauges of the queue at `now`, from what a queue pass reads anyway:
/// one directory scan, the state files, and the envelopes of the active
/// messages only (the pass reads those to deliver them). A deferred
/// message's recipients are counted from its state's lines, which an
/// attempt writes for each recipient it tried.
pub fn gauges(spool: &Spool, now: u64) -> crate::error::Result<Gauges> {
    let entries = spool.scan()?;
    let mut g = Gauges {
        oldest_age: entries
            .first()
            .map_or(0, |e| now.saturating_sub(e.id.arrival())),
        ..Gauges::default()
    };
    for entry in &entries {
        let (state, lines) = match entry.has_state.then(|| spool.read_state_listed(entry)) {
            None => (Some(State::default()), Default::default()),
            Some(Ok((state, lines))) => (Some(state), lines),
            // Delivered and removed since the scan (the state goes with it).
            Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => continue,
            Some(Err(_)) => (None, Default::default()),
        };
        let mut standing = standing(state.as_ref(), false, now);
        // Only a message otherwise waiting may be in a runner's hands (a
        // held one is not, and a due one is active anyway): its lock is
        // tried for those alone, by the listings' rule.
        if standing == Standing::Deferred
            && lines.may_be_in_delivery()
            && spool.in_delivery(&entry.id)
        {
            standing = Standing::Active;
        }
        let mut recipients = None;
        if standing == Standing::Active {
            match spool.read_envelope(&entry.id) {
                Ok((env, _)) => recipients = Some(env.recipients.len()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(_) => {} // counted as a message; a pass logs why it cannot read it
            }
        }
        g.count(standing, state.as_ref(), recipients);
    }
    Ok(g)
}

/// What the metrics file says.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub gauges: Gauges,
    /// None: the counters could not be read, and are left out.
    pub counters: Option<Tally>,
    /// When the pass completed (Unix seconds).
    pub completed: u64,
}

/// One metric family: its HELP and TYPE lines and its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// The metrics in Prometheus's text exposition format (version 0.0.4).
pub fn render(s: &Snapshot) -> String {
    let g = &s.gauges;
    let labeled = |label: &str, values: &[(&str, u64)]| -> Vec<(String, u64)> {
        (values.iter())
            .map(|(v, n)| (format!("{{{label}=\"{v}\"}}"), *n))
            .collect()
    };
    let mut out = String::new();
    family(
        &mut out,
        "spoolmail_queue_messages",
        "gauge",
        "Messages in the queue: active (being delivered, never attempted, or due), \
         deferred (waiting for a later attempt), hold (taken by no pass: held by spoolctl, \
         or its state file cannot be read).",
        &labeled(
            "state",
            &[
                ("active", g.active),
                ("deferred", g.deferred),
                ("hold", g.hold),
            ],
        ),
    );
    family(
        &mut out,
        "spoolmail_queue_oldest_message_age_seconds",
        "gauge",
        "Seconds since the oldest queued message arrived; 0 when the queue is empty.",
        &[(String::new(), g.oldest_age)],
    );
    family(
        &mut out,
        "spoolmail_queue_recipients",
        "gauge",
        "Recipients of queued messages by last status: pending (not attempted yet), \
         deferred (waiting for a retry), notice_owed (failed, the notice to the sender \
         not queued yet).",
        &labeled(
            "status",
            &[
                ("pending", g.pending),
                ("deferred", g.rcpt_deferred),
                ("notice_owed", g.notice_owed),
            ],
        ),
    );
    if let Some(tally) = &s.counters {
        family(
            &mut out,
            "spoolmail_recipients_total",
            "counter",
            "Recipients by the outcome of each attempt since the spool's counters were \
             made: delivered, deferred (every deferral), bounced (refused for good), \
             expired (out of attempts).",
            &labeled("outcome", &tally.outcomes()),
        );
    }
    family(
        &mut out,
        "spoolmail_last_pass_completed_timestamp_seconds",
        "gauge",
        "When the last queue pass that wrote this file completed (Unix time).",
        &[(String::new(), s.completed)],
    );
    out
}

/// After a queue pass over the whole queue (`whole_queue`: not the pass of
/// one submitted message) that completed: writes `metrics_file`, when it
/// is set and the pass may take everyone's mail (see the module's doc).
/// Failures are logged; the pass's outcome stays what it was.
pub fn after_pass(config: &Config, whole_queue: bool, log: &mut Log) {
    let Some(path) = &config.metrics_file else {
        return;
    };
    let privileged = system::pass_owner(&config.spool_dir, config.admin_group.as_deref()).is_none();
    if !whole_queue || !privileged {
        return;
    }
    let completed = system::now().0;
    let gauges = match gauges(&Spool::new(&config.spool_dir), completed) {
        Ok(g) => g,
        Err(e) => {
            log.info(&format!("metrics not written: {e}"));
            return;
        }
    };
    let counters = read_counters(&config.spool_dir)
        .inspect_err(|e| log.info(&format!("metrics without the counters: {e}")))
        .ok()
        .map(|c| c.tally);
    let text = render(&Snapshot {
        gauges,
        counters,
        completed,
    });
    if let Err(e) = write_atomically(path, &text) {
        log.info(&format!("cannot write {}: {e}", path.display()));
    }
}

/// Writes `path` as a whole or not at all (see [`system::write_atomically`]),
/// mode 0644 so that node_exporter's user can read it; the temporary file's
/// name (a dot, `.tmp`) is not one node_exporter reads (`*.prom`).
fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    crate::system::write_atomically(path, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counters_read_back_what_was_written_and_keep_unknown_lines() {
        let c = Counters {
            since: 1_795_305_600,
            tally: Tally {
                delivered: 12,
                deferred: 3,
                bounced: 1,
                expired: 0,
            },
            other: vec!["queued 40".into()],
        };
        let text = format_counters(&c);
        assert_eq!(
            text,
            "SPOOLMAIL-COUNTERS 1\nsince 1795305600\ndelivered 12\ndeferred 3\n\
             bounced 1\nexpired 0\nqueued 40\n"
        );
        assert_eq!(parse_counters(&text), Some(c));
        // Not a counters file, or one cut short by a crash: none.
        for bad in [
            "",
            "SPOOLMAIL-COUNTERS 2\n",
            "SPOOLMAIL-COUNTERS 1\ndelivered\n",
            "SPOOLMAIL-COUNTERS 1\ndelivered x\n",
        ] {
            assert_eq!(parse_counters(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_counters("SPOOLMAIL-COUNTERS 1\ndelivered 5\n").map(|c| c.tally.delivered),
            Some(5)
        );
    }

    #[test]
    fn counts_add_up_in_the_file_and_a_garbled_file_starts_again() {
        let dir = std::env::temp_dir().join(format!("spoolmail-counters-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(COUNTERS_FILE);
        let _ = std::fs::remove_file(&path);
        assert_eq!(read_counters(&dir).unwrap(), Counters::default());
        let one = Tally {
            delivered: 2,
            bounced: 1,
            ..Tally::default()
        };
        assert!(add_to(&path, &one, 100).unwrap());
        assert!(add_to(&path, &one, 200).unwrap());
        let c = read_counters(&dir).unwrap();
        assert_eq!((c.since, c.tally.delivered, c.tally.bounced), (100, 4, 2));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660, "{mode:o}");
        std::fs::write(&path, "SPOOLMAIL-COUNTERS 1\ndeliv").unwrap();
        assert!(read_counters(&dir).is_err());
        assert!(!add_to(&path, &one, 300).unwrap(), "started again");
        let c = read_counters(&dir).unwrap();
        assert_eq!((c.since, c.tally.delivered), (300, 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A delivery child's counts reach the file about once a second, and
    /// whatever is left when it ends: none lost, none counted twice.
    #[test]
    fn a_childs_counts_reach_the_file_in_batches() {
        let dir = std::env::temp_dir().join(format!("spoolmail-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config {
            log: crate::config::LogTarget::Stderr,
            ..Config::default()
        };
        let mut log = Log::open(&config, "test");
        let one = Tally {
            delivered: 1,
            ..Tally::default()
        };
        let batch = Batch::new(&dir);
        let delivered = || read_counters(&dir).unwrap().tally.delivered;
        batch.add(&one, &mut log);
        batch.add(&one, &mut log);
        assert_eq!(delivered(), 0, "held in the child");
        std::thread::sleep(COUNTERS_FLUSH_EVERY);
        batch.add(&one, &mut log);
        assert_eq!(delivered(), 3, "a second on: all of them");
        batch.add(&one, &mut log);
        assert_eq!(delivered(), 3);
        batch.flush(&mut log);
        assert_eq!(delivered(), 4, "the rest when the child ends");
        batch.flush(&mut log);
        assert_eq!(delivered(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A holder that never lets go (a stopped process) costs an attempt a
    /// bounded wait and its increment, never the delivery.
    #[test]
    fn a_counters_lock_held_too_long_gives_up_the_increment() {
        let dir = std::env::temp_dir().join(format!("spoolmail-stuck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(COUNTERS_FILE);
        let one = Tally {
            delivered: 1,
            ..Tally::default()
        };
        add_to(&path, &one, 100).unwrap();
        let holder = File::open(&path).unwrap();
        let mut lock = fd_lock::RwLock::new(&holder);
        let held = lock.try_write().unwrap();
        let start = Instant::now();
        let e = add_to(&path, &one, 200).unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
        let waited = start.elapsed();
        assert!(
            waited >= COUNTERS_LOCK_WAIT && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        drop(held);
        add_to(&path, &one, 300).unwrap();
        assert_eq!(read_counters(&dir).unwrap().tally.delivered, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_message_stands_as_a_pass_would_take_it() {
        let now = 1_000;
        let state = |attempts, next_attempt| State {
            attempts,
            next_attempt,
            ..State::default()
        };
        let held = State {
            held: Some(now - 5),
            ..state(2, now)
        };
        // (state; None: unreadable), in a runner's hands -> standing
        for (s, busy, expected) in [
            (Some(state(0, 0)), false, Standing::Active),
            (Some(state(0, now + 60)), false, Standing::Active),
            (Some(state(2, now)), false, Standing::Active),
            (Some(state(2, now + 1)), false, Standing::Deferred),
            (Some(state(2, now + 1)), true, Standing::Active),
            (Some(state(0, 0)), true, Standing::Active),
            (None, false, Standing::Hold),
            (Some(held.clone()), false, Standing::Hold),
            (Some(held), true, Standing::Hold),
        ] {
            assert_eq!(standing(s.as_ref(), busy, now), expected, "{s:?} {busy}");
        }
    }

    #[test]
    fn recipients_are_counted_from_the_state_and_the_envelope_when_read() {
        let mut state = State::default();
        state.set(0, RcptStatus::Delivered, "250 ok");
        state.set(1, RcptStatus::Deferred, "451 later");
        state.set(2, RcptStatus::Failed, "550 no");
        state.owed.push(crate::spool::Owed {
            index: 2,
            status: None,
            expired: false,
            remote: None,
        });
        let mut g = Gauges::default();
        // Five recipients in the envelope: 3 and 4 have no line, so pending.
        g.count(Standing::Active, Some(&state), Some(5));
        g.count(Standing::Deferred, Some(&state), None);
        g.count(Standing::Hold, None, None);
        assert_eq!(
            g,
            Gauges {
                active: 1,
                deferred: 1,
                hold: 1,
                oldest_age: 0,
                pending: 2,
                rcpt_deferred: 2,
                notice_owed: 2,
            }
        );
    }

    #[test]
    fn the_exposition_has_help_and_type_for_each_family() {
        let s = Snapshot {
            gauges: Gauges {
                active: 1,
                deferred: 2,
                oldest_age: 30,
                pending: 3,
                ..Gauges::default()
            },
            counters: Some(Tally {
                delivered: 7,
                ..Tally::default()
            }),
            completed: 1_795_305_600,
        };
        let text = render(&s);
        for line in [
            "# TYPE spoolmail_queue_messages gauge",
            "spoolmail_queue_messages{state=\"active\"} 1",
            "spoolmail_queue_messages{state=\"deferred\"} 2",
            "spoolmail_queue_messages{state=\"hold\"} 0",
            "spoolmail_queue_oldest_message_age_seconds 30",
            "spoolmail_queue_recipients{status=\"pending\"} 3",
            "spoolmail_queue_recipients{status=\"notice_owed\"} 0",
            "# TYPE spoolmail_recipients_total counter",
            "spoolmail_recipients_total{outcome=\"delivered\"} 7",
            "spoolmail_recipients_total{outcome=\"expired\"} 0",
            "spoolmail_last_pass_completed_timestamp_seconds 1795305600",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!((helps, types), (5, 5));
        // Counters that could not be read are left out, not shown as 0.
        let without = render(&Snapshot {
            counters: None,
            ..s
        });
        assert!(!without.contains("spoolmail_recipients_total"));
    }

    #[test]
    fn the_file_is_replaced_whole_and_readable_by_all() {
        let dir = std::env::temp_dir().join(format!("spoolmail-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spoolmail.prom");
        write_atomically(&path, "a 1\n").unwrap();
        write_atomically(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["spoolmail.prom"]);
        assert!(write_atomically(&dir.join("none/x.prom"), "a 1\n").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
