//! Delivery slots: the bound on delivery processes and connections that
//! holds for a whole spool, whoever runs the passes (cron, `-q`, every
//! submitter's background runner), without a daemon, also across hosts
//! that share the spool over NFS.
//!
//! A slot is a lock file in `SPOOL_DIR/slots/` (doc/SPOOL.md): `child.N`
//! for the `max_children` delivery processes, `dest.HHH.N` for the
//! `max_per_destination` connections to one destination, where HHH is the
//! destination's hash bucket. A pass parent takes one of each with
//! `flock(LOCK_EX|LOCK_NB)` before it forks a child; the child inherits the
//! open files and the parent closes its copies, so the slots are held
//! exactly as long as the child lives, and a killed child frees them (the
//! kernel closes its files). No slot file is ever removed: removing a lock
//! file races with a process that has just opened it. flock is the only
//! lock used: Linux emulates it over NFS with a lock owned by the open file,
//! as locally, so the same rules hold on a shared spool.
//!
//! `runner.UID` is the lock of one user's background runner (see
//! [`crate::queue::run_background`]).
//!
//! `pace.HASH` holds when the next message to one relay (the smarthost, a
//! `sender_relay_map` line's) may start, for every pass of the spool: its
//! `max_messages_per_minute` and its rests after throttling replies.

use crate::limits::{
    DESTINATION_BUCKETS, PACE_LOCK_POLL, PACE_LOCK_WAIT, RATE_WINDOW, THROTTLE_BACKOFF_MAX,
};
use crate::model::Destination;
use md5::{Digest, Md5};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The directory under the spool directory (doc/SPOOL.md, "Layout").
pub const SLOTS_DIR: &str = "slots";

/// The slots directory of one spool.
#[derive(Debug, Clone)]
pub struct Slots {
    dir: PathBuf,
}

/// Which bound a slot counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `max_children`: delivery processes on the spool.
    Child,
    /// `max_per_destination`: connections to the destinations of this
    /// bucket (see [`bucket`]).
    Destination(u16),
    /// An unprivileged user's share of the delivery processes (see
    /// [`user_share`]).
    User(u32),
}

/// A slot held: an open file with an exclusive flock on it. The lock stays
/// as long as any process has the file open (a forked child inherits it);
/// dropping the last copy frees the slot.
#[derive(Debug)]
pub struct Slot {
    /// The slot's number, from 0: at `max_...` and over it is headroom for
    /// stalled transactions (see [`candidates`]).
    pub number: u32,
    _file: File,
}

impl Slots {
    /// `SPOOL_DIR/slots`, made when a spool older than it has none: mode
    /// 02770 and the group of `queue/` (the spool's group), so that every
    /// lock file in it gets that group whoever creates it (root, a user
    /// through the setgid binary) and every user's process can open it.
    pub fn open(spool_dir: &Path) -> io::Result<Slots> {
        let dir = spool_dir.join(SLOTS_DIR);
        match DirBuilder::new().mode(0o770).create(&dir) {
            Ok(()) => share(&dir, spool_dir)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let slots = Slots { dir };
        // A first slot that cannot be opened: the directory is not usable.
        slots.file(&name(Kind::Child, 0))?;
        Ok(slots)
    }

    /// The first of `numbers` whose slot of `kind` is free, taken; None
    /// while every one is held. A file that cannot be opened counts as
    /// held; Err when none of them could be.
    pub fn take(&self, kind: Kind, numbers: &[u32]) -> io::Result<Option<Slot>> {
        let (mut opened, mut error) = (false, None);
        for &number in numbers {
            let file = match self.file(&name(kind, number)) {
                Ok(f) => f,
                Err(e) => {
                    error = Some(e);
                    continue;
                }
            };
            opened = true;
            if try_lock(&file)? {
                return Ok(Some(Slot {
                    number,
                    _file: file,
                }));
            }
        }
        match error {
            Some(e) if !opened => Err(e),
            _ => Ok(None),
        }
    }

    /// The open (not yet locked) runner lock of user `uid`.
    pub fn runner(&self, uid: u32) -> io::Result<RunnerLock> {
        Ok(RunnerLock {
            file: self.file(&format!("runner.{uid}"))?,
            held: false,
        })
    }

    /// Takes a turn to start a message to `destination`, at most one every
    /// `spacing` across every pass of the spool and none while it rests:
    /// Ok(None) when taken, Ok(Some(wait)) while the next turn is that far.
    /// An Err (the file cannot be used, or its lock is held too long) is
    /// for the caller to go on with its own pace.
    pub fn take_turn(
        &self,
        destination: &Destination,
        spacing: Duration,
    ) -> io::Result<Option<Duration>> {
        let spacing = spacing.as_millis() as u64;
        self.with_pace(destination, |not_before, now| {
            match turn(not_before, now, spacing) {
                Ok(next) => (Some(next), None),
                Err(wait) => (None, Some(Duration::from_millis(wait))),
            }
        })
    }

    /// How long until `destination` may have its next message, as its
    /// pace file says (a rest, or another pass's pace): None when now, or
    /// when it has no file. Read without the lock, which only writers
    /// need: a file written in place, whole, at one offset, by one write
    /// (see [`Slots::with_pace`]), and a time further off than any rest
    /// reads as none, so a holder of the lock, even one its caller
    /// stopped, never holds up a relay without a rate limit.
    pub fn pace_wait(&self, destination: &Destination) -> io::Result<Option<Duration>> {
        let path = self.dir.join(pace_name(destination));
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = [0u8; 128];
        let n = file.read_at(&mut buf, 0)?;
        let (secs, micros) = crate::system::now();
        let now = secs * 1000 + u64::from(micros / 1000);
        Ok(turn(parse_pace(&buf[..n]), now, 0)
            .err()
            .map(Duration::from_millis))
    }

    /// Rests `destination` for `rest` from now, for every pass of the spool.
    pub fn rest(&self, destination: &Destination, rest: Duration) -> io::Result<()> {
        let rest = rest.as_millis() as u64;
        self.with_pace(destination, |not_before, now| {
            (Some(not_before.max(now + rest)), ())
        })
    }

    /// Runs `f` on the time `destination`'s pace file holds (milliseconds
    /// since the epoch; 0 when it holds none) and the time now, under its
    /// lock, and writes the time `f` returns, if any. The lock is waited
    /// for [`PACE_LOCK_WAIT`] at most: a holder keeps it for one small read
    /// and write, and one stopped by its caller must not hold up others.
    fn with_pace<T>(
        &self,
        destination: &Destination,
        f: impl FnOnce(u64, u64) -> (Option<u64>, T),
    ) -> io::Result<T> {
        let file = self.open_file(&pace_name(destination), true)?;
        let mut lock = fd_lock::RwLock::new(&file);
        let started = Instant::now();
        let _held = loop {
            match lock.try_write() {
                Ok(held) => break held,
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                Err(_) if started.elapsed() >= PACE_LOCK_WAIT => {
                    return Err(io::Error::other("locked by another process for too long"));
                }
                Err(_) => std::thread::sleep(PACE_LOCK_POLL),
            }
        };
        let mut buf = [0u8; 128];
        let n = file.read_at(&mut buf, 0)?;
        let not_before = parse_pace(&buf[..n]);
        let (secs, micros) = crate::system::now();
        let now = secs * 1000 + u64::from(micros / 1000);
        let (write, result) = f(not_before, now);
        if let Some(t) = write {
            // Over the old text first, then cut to length: a writer killed
            // in between leaves the new time (or the old one), never an
            // empty file, which would read as no pace and lose a rest.
            let text = format!("{PACE_MAGIC}\nnot_before {t}\n");
            file.write_at(text.as_bytes(), 0)?;
            file.set_len(text.len() as u64)?;
        }
        Ok(result)
    }

    /// Opens a lock file read-only (flock needs no more), creating it
    /// mode 0660 whatever the umask: a file only its creator could open
    /// would take the spool-wide bound away from everyone else. Never
    /// follows a symbolic link.
    fn file(&self, name: &str) -> io::Result<File> {
        self.open_file(name, false)
    }

    /// As [`Slots::file`], for writing too when `write`.
    fn open_file(&self, name: &str, write: bool) -> io::Result<File> {
        let path = self.dir.join(name);
        let open = |extra: i32| {
            OpenOptions::new()
                .read(true)
                .write(write)
                .mode(0o660)
                .custom_flags(extra | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
        };
        match open(libc::O_CREAT | libc::O_EXCL) {
            Ok(file) => {
                file.set_permissions(std::fs::Permissions::from_mode(0o660))?;
                Ok(file)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open(0),
            Err(e) => Err(e),
        }
    }
}

/// Gives a slots directory this process has just made the group of the
/// spool's `queue/` (of the spool directory, without one) and mode 02770
/// (the umask took bits of the mode).
pub(crate) fn share(dir: &Path, spool_dir: &Path) -> io::Result<()> {
    let group = std::fs::metadata(spool_dir.join("queue"))
        .or_else(|_| std::fs::metadata(spool_dir))?
        .gid();
    std::os::unix::fs::chown(dir, None, Some(group))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2770))
}

/// One user's runner lock (`slots/runner.UID`).
#[derive(Debug)]
pub struct RunnerLock {
    file: File,
    held: bool,
}

impl RunnerLock {
    /// Takes the lock if no one holds it; false when someone does.
    pub fn try_acquire(&mut self) -> io::Result<bool> {
        self.held = try_lock(&self.file)?;
        Ok(self.held)
    }

    /// Lets go of the lock at once, whoever else has the file open.
    pub fn release(&mut self) {
        if self.held {
            // flock on the open file that holds the lock succeeds at once;
            // dropping the guard is the LOCK_UN.
            drop(fd_lock::RwLock::new(&self.file).try_write());
            self.held = false;
        }
    }
}

/// `flock(LOCK_EX|LOCK_NB)` on `file`, kept after return (until the file's
/// last copy is closed or the lock released): true when taken.
fn try_lock(file: &File) -> io::Result<bool> {
    let mut lock = fd_lock::RwLock::new(file);
    match lock.try_write() {
        Ok(guard) => {
            // The guard would unlock on drop; the lock belongs to the open
            // file instead, for as long as it (or a child's copy) is open.
            std::mem::forget(guard);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// The file name of slot `number` of `kind`: `child.N`, `dest.HHH.N`.
pub fn name(kind: Kind, number: u32) -> String {
    match kind {
        Kind::Child => format!("child.{number}"),
        Kind::Destination(b) => format!("dest.{b:03x}.{number}"),
        Kind::User(uid) => format!("user.{uid}.{number}"),
    }
}

/// The first line of a pace file: its format and version.
const PACE_MAGIC: &str = "SPOOLMAIL-PACE 1";

/// The pace file of a relay: `pace.` and 16 hex digits of the md5 of its
/// display (one file per relay: no bucket to share, as a shared pace
/// would slow another relay down).
fn pace_name(destination: &Destination) -> String {
    let digest = Md5::digest(destination.to_string().as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("pace.{hex}")
}

/// The `not_before` time a pace file holds; 0 (none) for anything else (an
/// empty file, one a crash left half written).
fn parse_pace(bytes: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines();
    if lines.next() != Some(PACE_MAGIC) {
        return 0;
    }
    lines
        .find_map(|l| l.strip_prefix("not_before ")?.parse().ok())
        .unwrap_or(0)
}

/// A turn at `now` (milliseconds) for a relay whose next start is
/// `not_before`, one every `spacing`: Ok(the next one's time) when it has
/// come, Err(milliseconds to wait) otherwise. A time further off than any
/// rest and spacing can make (a clock set back, a damaged file) is no pace.
fn turn(not_before: u64, now: u64, spacing: u64) -> Result<u64, u64> {
    let longest = (THROTTLE_BACKOFF_MAX + RATE_WINDOW).as_millis() as u64;
    match not_before.checked_sub(now) {
        Some(wait) if wait > 0 && wait <= longest => Err(wait),
        _ => Ok(now + spacing),
    }
}

/// The hash bucket of a destination, from its display (`[smarthost]`, a
/// lower-case domain, a literal), 0 to `DESTINATION_BUCKETS - 1`: two
/// destinations in one bucket only share one bound, which is never
/// exceeded; a bucket keeps the number of slot files fixed.
pub fn bucket(destination: &Destination) -> u16 {
    let digest = Md5::digest(destination.to_string().as_bytes());
    u16::from_be_bytes([digest[0], digest[1]]) % DESTINATION_BUCKETS
}

/// The slot numbers a pass may try for a bound of `limit`, in order.
/// Slots 0 to limit - 1 are the bound itself; `headroom` (a privileged
/// pass with more stalled transactions than headroom slots: see `queue`)
/// adds limit to 2 x limit - 1, as a stalled transaction does not count
/// against the bound. `reserve` (an unprivileged user's pass) leaves the
/// first of each range to privileged passes when the limit is 3 or more:
/// with a user's share at most limit - 2 (see [`user_share`]), one user who
/// stops their own processes leaves a slot to root and one to other users.
pub fn candidates(limit: u32, reserve: bool, headroom: bool) -> Vec<u32> {
    let skip = u32::from(reserve && limit >= 3);
    let mut numbers: Vec<u32> = (skip..limit).collect();
    if headroom {
        numbers.extend(limit + skip..limit.saturating_mul(2));
    }
    numbers
}

/// How many delivery processes one unprivileged user's passes may run at
/// once on the spool, together (`slots/user.UID.N`, N below it): half the
/// smaller of `max_children` and `max_per_destination`, at least 1, so
/// that whatever one user does to their processes, others still find a
/// slot of each kind (except with a limit of 1: see README, "Delivery").
pub fn user_share(max_children: u32, max_per_destination: u32) -> u32 {
    (max_children.min(max_per_destination) / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relays_turns_across_passes() {
        // (not before, now, spacing) -> taken (next) or wait
        for (not_before, now, spacing, want) in [
            (0, 1_000, 1_500, Ok(2_500)),
            (1_000, 1_000, 1_500, Ok(2_500)),
            (2_500, 1_000, 1_500, Err(1_500)),
            (2_500, 2_499, 0, Err(1)),
            // Further off than anything a pass writes: no pace.
            (10_000_000, 1_000, 0, Ok(1_000)),
        ] {
            assert_eq!(turn(not_before, now, spacing), want, "{not_before} {now}");
        }
        assert_eq!(parse_pace(b"SPOOLMAIL-PACE 1\nnot_before 42\n"), 42);
        for damaged in [
            &b""[..],
            b"SPOOLMAIL-PACE 1\nnot_bef",
            b"x\nnot_before 42\n",
        ] {
            assert_eq!(parse_pace(damaged), 0);
        }
        let (a, b) = (
            Destination::Smarthost,
            Destination::Domain("a.example".into()),
        );
        assert_ne!(pace_name(&a), pace_name(&b));
        assert_eq!(pace_name(&a).len(), "pace.".len() + 16);
    }

    #[test]
    fn the_slots_a_pass_may_try() {
        // (limit, reserve, headroom) -> numbers
        let cases: &[(u32, bool, bool, &[u32])] = &[
            (3, false, false, &[0, 1, 2]),
            (3, true, false, &[1, 2]),
            (3, false, true, &[0, 1, 2, 3, 4, 5]),
            (3, true, true, &[1, 2, 4, 5]),
            // A limit of 1 or 2 has nothing to spare: a user's share of
            // 1 leaves the other slot of 2 to everyone else.
            (1, true, false, &[0]),
            (1, true, true, &[0, 1]),
            (2, true, false, &[0, 1]),
            (4, true, false, &[1, 2, 3]),
            (0, false, true, &[]),
        ];
        for &(limit, reserve, headroom, expected) in cases {
            assert_eq!(
                candidates(limit, reserve, headroom),
                expected,
                "{limit} reserve {reserve} headroom {headroom}"
            );
        }
    }

    #[test]
    fn one_user_leaves_a_slot_to_others_and_one_to_root() {
        // (max_children, max_per_destination) -> share
        for (children, per_destination, share) in [
            (20, 10, 5),
            (4, 4, 2),
            (3, 3, 1),
            (2, 5, 1),
            (1, 1, 1),
            (0, 0, 1),
        ] {
            assert_eq!(user_share(children, per_destination), share);
        }
        for limit in 2..40 {
            let share = user_share(limit, limit) as usize;
            let open = candidates(limit, true, false).len();
            assert!(open - share >= 1, "limit {limit}: none left to others");
            if limit >= 3 {
                assert!(!candidates(limit, true, false).contains(&0));
            }
        }
    }

    #[test]
    fn slot_names_and_buckets() {
        assert_eq!(name(Kind::Child, 7), "child.7");
        assert_eq!(name(Kind::Destination(0x2a), 0), "dest.02a.0");
        assert_eq!(name(Kind::Destination(1023), 12), "dest.3ff.12");
        assert_eq!(name(Kind::User(4242), 1), "user.4242.1");
        let smarthost = bucket(&Destination::Smarthost);
        let domain = |d: &str| bucket(&Destination::Domain(d.into()));
        // Fixed by the display alone: every process and host agrees.
        assert_eq!(smarthost, bucket(&Destination::Smarthost));
        assert_eq!(domain("example.org"), domain("example.org"));
        let all: Vec<u16> = (0..2000)
            .map(|i| domain(&format!("d{i}.example")))
            .chain([smarthost])
            .collect();
        assert!(all.iter().all(|&b| b < DESTINATION_BUCKETS));
        // Spread over the buckets, not piled into a few.
        let distinct: std::collections::BTreeSet<u16> = all.iter().copied().collect();
        assert!(distinct.len() > 800, "{} buckets used", distinct.len());
    }

    #[test]
    fn a_slot_is_held_until_its_last_copy_is_closed() {
        let dir = std::env::temp_dir().join(format!("slots-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let slots = Slots::open(&dir).unwrap();
        let a = slots.take(Kind::Child, &[0, 1]).unwrap().unwrap();
        let b = slots.take(Kind::Child, &[0, 1]).unwrap().unwrap();
        assert_eq!((a.number, b.number), (0, 1));
        assert!(slots.take(Kind::Child, &[0, 1]).unwrap().is_none());
        drop(a);
        assert_eq!(slots.take(Kind::Child, &[0, 1]).unwrap().unwrap().number, 0);
        let mut r1 = slots.runner(1000).unwrap();
        let mut r2 = slots.runner(1000).unwrap();
        assert!(r1.try_acquire().unwrap());
        assert!(!r2.try_acquire().unwrap());
        r1.release();
        assert!(r2.try_acquire().unwrap());
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rest_is_read_past_a_held_lock_and_written_over_in_place() {
        let dir = std::env::temp_dir().join(format!("slots-pace-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let slots = Slots::open(&dir).unwrap();
        let relay = Destination::Smarthost;
        assert_eq!(slots.pace_wait(&relay).unwrap(), None, "no file: no pace");
        assert!(!dir.join(SLOTS_DIR).join(pace_name(&relay)).exists());
        slots.rest(&relay, Duration::from_secs(5)).unwrap();
        let path = dir.join(SLOTS_DIR).join(pace_name(&relay));
        let written = std::fs::read_to_string(&path).unwrap();
        // A holder of the lock (a pass its caller stopped inside it).
        let held = File::open(&path).unwrap();
        let mut lock = fd_lock::RwLock::new(&held);
        let _guard = lock.try_write().unwrap();
        let started = Instant::now();
        let wait = slots.pace_wait(&relay).unwrap().expect("resting");
        assert!(started.elapsed() < PACE_LOCK_WAIT, "read without the lock");
        assert!(wait > Duration::from_secs(4) && wait <= Duration::from_secs(5));
        let taken = slots.take_turn(&relay, Duration::ZERO);
        assert!(taken.is_err(), "a writer waits for the lock, then gives up");
        drop(_guard);
        // A longer old text (a damaged file) is written over, then cut.
        std::fs::write(&path, format!("{written}{}", "x".repeat(60))).unwrap();
        slots.rest(&relay, Duration::from_secs(5)).unwrap();
        let now = std::fs::read_to_string(&path).unwrap();
        assert_eq!(now.len(), written.len(), "{now:?}");
        assert!(parse_pace(now.as_bytes()) > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
