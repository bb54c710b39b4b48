//! Which queued messages a queue runner holds now, from one read of the
//! kernel's table of file locks (`/proc/locks`) instead of a flock test
//! per message: a listing of 100,000 messages then makes one read of the
//! table a round of messages, not 100,000 `flock` calls.
//!
//! The table stands in for the test only where it says the same thing
//! ([`LockTable::for_dir`]); anywhere else a listing tests each message's
//! lock as before. Either is a snapshot: a claim taken after the look is
//! missed by both.

use std::io;
use std::os::fd::BorrowedFd;

/// The inode of Linux's initial pid namespace (`PROC_PID_INIT_INO`, fixed
/// since Linux 3.8), as `/proc/self/ns/pid` names it.
const INIT_PID_NAMESPACE: &str = "pid:[4026531836]";

/// File systems whose `st_dev` and `st_ino` (and readdir's `d_ino`) are the
/// device and inode `/proc/locks` prints for their files: ext2/3/4, XFS,
/// tmpfs. Not btrfs (a subvolume's `st_dev` is not its superblock's),
/// overlayfs (the lock is on the layer's inode), nor network file systems
/// (another host's locks are not in this kernel's table).
const TRUSTED_FS: [i64; 3] = [0xEF53, 0x5846_5342, 0x0102_1994];

/// A device as `/proc/locks` prints it: major and minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    pub major: u32,
    pub minor: u32,
}

/// The file system of one directory, where the lock table can be trusted.
#[derive(Clone, Copy, Debug)]
pub struct LockTable {
    device: Device,
}

impl LockTable {
    /// The table for the files of `dir`, when it shows every flock on
    /// them: this process sees the initial pid namespace's table (in
    /// another, the kernel leaves out the locks of processes it cannot
    /// see, a runner's in another container among them) and `dir` is on a
    /// file system in [`TRUSTED_FS`]. None: test each file's lock instead.
    pub fn for_dir(dir: BorrowedFd<'_>) -> Option<LockTable> {
        let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
        if ns.as_os_str() != INIT_PID_NAMESPACE {
            return None;
        }
        let (fs_type, dev) = crate::sys::fs_type_and_device(dir).ok()?;
        if !TRUSTED_FS.contains(&fs_type) {
            return None;
        }
        let device = Device {
            major: libc::major(dev),
            minor: libc::minor(dev),
        };
        Some(LockTable { device })
    }

    /// The inodes of this file system that a flock write lock holds now;
    /// Err when `/proc/locks` cannot be read.
    pub fn read(&self) -> io::Result<Holders> {
        let text = std::fs::read_to_string("/proc/locks")?;
        Ok(Holders::from_table(&text, self.device))
    }
}

/// The inodes a snapshot of the lock table found write-locked by flock
/// on one device, sorted.
#[derive(Debug, Default)]
pub struct Holders(Vec<u64>);

impl Holders {
    /// The write-locked inodes on `device` in `table` (`/proc/locks`'s text).
    pub fn from_table(table: &str, device: Device) -> Holders {
        let mut inodes: Vec<u64> = table
            .lines()
            .filter_map(flock_write_lock)
            .filter(|(dev, _)| *dev == device)
            .map(|(_, ino)| ino)
            .collect();
        inodes.sort_unstable();
        Holders(inodes)
    }

    pub fn holds(&self, ino: u64) -> bool {
        self.0.binary_search(&ino).is_ok()
    }
}

/// The device and inode of one line of `/proc/locks` that says a flock
/// write (exclusive) lock is held, as a claim or a writer's lock is:
///
/// ```text
/// 1: FLOCK  ADVISORY  WRITE 4711 fd:01:1835010 0 EOF
/// ```
///
/// None for any other line: a shared (READ) lock, as a listing's own look
/// takes; a POSIX, OFD or lease lock; a waiter (`2: -> FLOCK ...`), which
/// holds nothing yet; a line in a form not known.
pub fn flock_write_lock(line: &str) -> Option<(Device, u64)> {
    let mut words = line.split_ascii_whitespace();
    words.next()?.strip_suffix(':')?;
    let kind = [words.next()?, words.next()?, words.next()?];
    if kind != ["FLOCK", "ADVISORY", "WRITE"] {
        return None;
    }
    let _pid = words.next()?;
    let mut parts = words.next()?.split(':');
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    let major = hex(parts.next()?)?;
    let minor = hex(parts.next()?)?;
    let ino = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((Device { major, minor }, ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Device = Device {
        major: 0xfd,
        minor: 1,
    };

    #[test]
    fn flock_write_lock_lines() {
        let cases: &[(&str, Option<(Device, u64)>)] = &[
            (
                "1: FLOCK  ADVISORY  WRITE 4711 fd:01:1835010 0 EOF",
                Some((D, 1835010)),
            ),
            // Minors and majors in hex, the inode in decimal.
            (
                "12: FLOCK  ADVISORY  WRITE 1 103:1a:42 0 EOF",
                Some((
                    Device {
                        major: 0x103,
                        minor: 0x1a,
                    },
                    42,
                )),
            ),
            // A remote or dead owner's pid is printed as it is.
            ("3: FLOCK  ADVISORY  WRITE -1 fd:01:7 0 EOF", Some((D, 7))),
            // Shared: a listing's look, not a claim.
            ("2: FLOCK  ADVISORY  READ 4712 fd:01:1835010 0 EOF", None),
            ("4: POSIX  ADVISORY  WRITE 99 fd:01:1835010 0 EOF", None),
            ("5: OFDLCK ADVISORY  WRITE -1 fd:01:1835010 0 EOF", None),
            ("6: LEASE  ACTIVE    READ 99 fd:01:1835010 0 EOF", None),
            ("7: FLOCK  MSNFS     WRITE 99 fd:01:1835010 0 EOF", None),
            // A waiter holds nothing yet.
            (
                "8: -> FLOCK  ADVISORY  WRITE 4713 fd:01:1835010 0 EOF",
                None,
            ),
            ("9: FLOCK  ADVISORY  UNLCK 4713 fd:01:1835010 0 EOF", None),
            ("10: FLOCK  ADVISORY  WRITE 4713 <none>:0 0 EOF", None),
            ("11: FLOCK  ADVISORY  WRITE 4713 fd:01 0 EOF", None),
            ("11: FLOCK  ADVISORY  WRITE 4713 fd:01:2:3 0 EOF", None),
            ("11: FLOCK  ADVISORY  WRITE 4713 zz:01:2 0 EOF", None),
            ("FLOCK  ADVISORY  WRITE 4713 fd:01:2 0 EOF", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(flock_write_lock(line), *want, "{line}");
        }
    }

    #[test]
    fn holders_are_the_write_locks_on_the_device() {
        let table = "1: FLOCK  ADVISORY  WRITE 1 fd:01:30 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1 fd:02:31 0 EOF\n\
                     3: FLOCK  ADVISORY  READ 1 fd:01:32 0 EOF\n\
                     4: -> FLOCK  ADVISORY  WRITE 1 fd:01:33 0 EOF\n\
                     5: FLOCK  ADVISORY  WRITE 1 fd:01:10 0 EOF\n";
        let h = Holders::from_table(table, D);
        assert!(h.holds(30) && h.holds(10));
        assert!(!h.holds(31) && !h.holds(32) && !h.holds(33) && !h.holds(1));
        assert!(!Holders::from_table("", D).holds(30));
    }

    #[test]
    fn the_live_table_shows_a_flock_held_here() {
        let dir = std::env::temp_dir().join(format!("spoolmail-flocks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let file = std::fs::File::create(&path).unwrap();
        let opened = std::fs::File::open(&dir).unwrap();
        let table = {
            use std::os::fd::AsFd;
            LockTable::for_dir(opened.as_fd())
        };
        // Only where the table is trusted (ext4, XFS, tmpfs, the initial
        // pid namespace); elsewhere listings test each lock.
        if let Some(table) = table {
            use std::os::unix::fs::MetadataExt;
            let ino = file.metadata().unwrap().ino();
            assert!(!table.read().unwrap().holds(ino));
            file.lock().unwrap();
            assert!(table.read().unwrap().holds(ino), "an exclusive flock shows");
            file.unlock().unwrap();
            file.lock_shared().unwrap();
            assert!(!table.read().unwrap().holds(ino), "a shared one does not");
        }
        drop(file);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
