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

use crate::limits::DESTINATION_BUCKETS;
use crate::model::Destination;
use md5::{Digest, Md5};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

    /// Opens a lock file read-only (flock needs no more), creating it
    /// mode 0660 whatever the umask: a file only its creator could open
    /// would take the spool-wide bound away from everyone else. Never
    /// follows a symbolic link.
    fn file(&self, name: &str) -> io::Result<File> {
        let path = self.dir.join(name);
        let open = |extra: i32| {
            OpenOptions::new()
                .read(true)
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
}
