//! Every call into the C library that the compiler cannot check, behind safe
//! functions. This is the only module of spoolmail with `unsafe`; each block
//! says why it holds. What is built on these calls (users, host name, dates,
//! privileges) is in [`crate::system`].
//!
//! Two facts about the process make several of these sound, and the rest of
//! the crate keeps them true:
//! - spoolmail's own processes are single-threaded wherever they fork or
//!   change the environment: the submitter and the queue parent start no
//!   threads, and DNS runs in the delivery children on a current-thread
//!   runtime, after which they never fork.
//! - a forked child ends with [`exit_child`], never by returning into its
//!   parent's code.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd};
use std::time::Duration;

use crate::limits::{LOOKUP_BUFFER_MAX, LOOKUP_BUFFER_START};

pub use libc::{gid_t, pid_t, uid_t};

/// Which side of a [`fork`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Child,
    Parent(pid_t),
}

/// Forks the process. The caller must be single-threaded (see the module
/// docs), and the child must end with [`exit_child`].
pub fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety precondition in a single-threaded
    // process, which is the only kind that calls it (module docs): the child
    // gets a copy of every lock and allocator state in a consistent state.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Ends a forked child at once, without running the parent's exit handlers
/// or flushing stdio buffers it inherited (they would be written twice).
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit takes any int and only ends the process.
    unsafe { libc::_exit(code) }
}

/// Starts a new session, letting go of the controlling terminal.
pub fn setsid() {
    // SAFETY: setsid takes no arguments and touches no memory of ours; its
    // failure (already a group leader) leaves the process as it was.
    unsafe { libc::setsid() };
}

/// Waits for one child to end; its wait status, or None when it is not ours.
pub fn wait_for(pid: pid_t) -> Option<i32> {
    let mut status = 0;
    // SAFETY: status is a live, writable int for the duration of the call.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    (rc == pid).then_some(status)
}

/// Collects one child that has ended, without waiting: its pid and wait
/// status, or None when none has ended (or there are no children).
pub fn reap_any() -> Option<(pid_t, i32)> {
    let mut status = 0;
    // SAFETY: status is a live, writable int for the duration of the call.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// Kills a child with SIGKILL (it cannot be caught: the child ends).
pub fn kill_hard(pid: pid_t) {
    // SAFETY: kill only sends a signal; pid is a child this process forked
    // and has not reaped, so the pid cannot have been reused.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Waits until one of `fds` is readable (or closed) or `timeout` passes;
/// returns which are (all of them when poll fails, as on a signal).
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Vec<bool> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: polls is a live array of exactly polls.len() pollfd structs,
    // and every fd in it is open for the call (the BorrowedFds say so).
    let n = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, millis) };
    polls.iter().map(|p| n < 0 || p.revents != 0).collect()
}

/// Makes `file` the process's stdin, stdout and stderr.
pub fn redirect_stdio(file: File) {
    for target in 0..3 {
        // SAFETY: dup2 replaces fds 0-2 atomically; std's stdio handles use
        // them by number and own nothing that this invalidates.
        unsafe { libc::dup2(file.as_raw_fd(), target) };
    }
    if file.as_raw_fd() <= 2 {
        // It is one of the three now: closing it would undo the redirect.
        let _ = file.into_raw_fd();
    }
}

/// Opens /dev/null as each of fds 0, 1 and 2 that is closed, as Rust's
/// runtime does before `fn main` (spoolmail starts at the C `main`).
pub fn open_standard_fds() -> io::Result<()> {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBADF) {
            return Err(err);
        }
        // SAFETY: a constant NUL-terminated path; the new descriptor is
        // the lowest free one, which is `fd` (the ones below are open).
        let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if opened != fd {
            return Err(if opened == -1 {
                io::Error::last_os_error()
            } else {
                io::Error::other(format!("/dev/null opened as fd {opened}, not {fd}"))
            });
        }
    }
    Ok(())
}

/// Sets signal `sig` to be ignored (SIGPIPE, SIGXFSZ): a write to a closed
/// pipe then fails with EPIPE, and one past the file-size limit with EFBIG,
/// instead of ending the process.
pub fn ignore_signal(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: SIG_IGN installs no handler of ours, so nothing runs in
    // signal context; signal touches no memory of the process.
    if unsafe { libc::signal(sig, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the soft limit of `resource` (RLIMIT_FSIZE, RLIMIT_NOFILE) to its
/// hard limit, which an unprivileged process may always do; returns the hard
/// limit (None: unlimited).
pub fn raise_soft_limit(resource: libc::__rlimit_resource_t) -> io::Result<Option<u64>> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a live, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if r.rlim_cur != r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: r is a live rlimit; the call only reads it.
        if unsafe { libc::setrlimit(resource, &r) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((r.rlim_max != libc::RLIM_INFINITY).then_some(r.rlim_max))
}

/// A kernel timer that kills this process with SIGKILL when it expires:
/// the kernel delivers it, so it works while the process is stopped or
/// blocked, and no handler of the process is involved. Deleted on drop.
pub struct KillTimer(libc::timer_t);

impl KillTimer {
    /// Creates the timer, on the monotonic clock, disarmed. Fails when the
    /// kernel refuses (RLIMIT_SIGPENDING reached: a timer reserves a
    /// queued signal).
    pub fn new() -> io::Result<KillTimer> {
        // SAFETY: sigevent is a plain C struct (integers, a union, a
        // pointer) for which all zeros is a valid value.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_SIGNAL;
        event.sigev_signo = libc::SIGKILL;
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: event and id are live locals for the duration of the call;
        // the kernel copies event and writes the new timer's id into id.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut id) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(KillTimer(id))
    }

    /// (Re)arms the timer to fire once, `after` from now (rounded up to a
    /// millisecond, so that it is never disarmed by a zero).
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_millis(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: self.0 is a timer timer_create made and Drop has not yet
        // deleted; spec is a live local; a null old value is allowed.
        if unsafe { libc::timer_settime(self.0, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for KillTimer {
    fn drop(&mut self) {
        // SAFETY: self.0 is a live timer of this process, deleted only here.
        unsafe { libc::timer_delete(self.0) };
    }
}

/// Opens `name`, a file in the directory `dir`, read-only with `flags`
/// added (openat(2)): the kernel looks up one name, not every directory of
/// a path, which a listing of the queue does for every message.
pub fn open_in(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<File> {
    // SAFETY: name is NUL-terminated and lives for the call; dir is an open
    // descriptor borrowed for the call.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_RDONLY | flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened by this call and is owned by nothing else.
    Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// One entry of a directory as getdents64(2) gives it: the name (with its
/// NUL, for the *at calls) and the type (`d_type`, `libc::DT_REG` and so
/// on; `DT_UNKNOWN` where the file system does not say).
pub struct RawDirEntry<'a> {
    pub name: &'a CStr,
    pub kind: u8,
}

/// Calls `each` with every entry of the directory open as `dir` (a
/// descriptor of its own, read from its offset to the end), but `.` and
/// `..`: getdents64 into one large buffer, each name handed out in place.
/// std's `read_dir` reads through glibc's 32 KiB buffer and allocates each
/// name (a queue of a million messages is two million names).
pub fn for_each_dir_entry(dir: &File, mut each: impl FnMut(RawDirEntry<'_>)) -> io::Result<()> {
    let mut buf = vec![0u8; crate::limits::DIR_READ_BUFFER];
    loop {
        // SAFETY: buf is writable for buf.len() bytes, the length passed;
        // dir is an open descriptor borrowed for the call.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        let Ok(n) = usize::try_from(n) else {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        };
        if n == 0 {
            return Ok(());
        }
        for entry in dirent64_records(&buf[..n.min(buf.len())]) {
            let entry = entry?;
            if !matches!(entry.name.to_bytes(), b"." | b"..") {
                each(entry);
            }
        }
    }
}

/// The records of a buffer getdents64 filled (struct linux_dirent64:
/// `d_ino` u64, `d_off` i64, `d_reclen` u16, `d_type` u8, then the name and
/// its NUL, padded to `d_reclen`); an Err for a record that does not fit.
pub fn dirent64_records(buf: &[u8]) -> impl Iterator<Item = io::Result<RawDirEntry<'_>>> {
    const NAME: usize = 19;
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let bad = || io::Error::other("a malformed directory record");
        let record = || -> io::Result<(RawDirEntry<'_>, usize)> {
            let head = rest.get(..NAME).ok_or_else(bad)?;
            let len = usize::from(u16::from_ne_bytes([head[16], head[17]]));
            let name = rest.get(NAME..len).ok_or_else(bad)?;
            let name = CStr::from_bytes_until_nul(name).map_err(|_| bad())?;
            let kind = head[18];
            Ok((RawDirEntry { name, kind }, len))
        };
        match record() {
            Ok((entry, len)) => {
                rest = &rest[len..];
                Some(Ok(entry))
            }
            Err(e) => {
                rest = &[];
                Some(Err(e))
            }
        }
    })
}

/// Whether `name` in the directory `dir` is a regular file, and its mtime
/// (Unix seconds): fstatat(2), not following a symbolic link.
pub fn stat_in(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<(bool, i64)> {
    // SAFETY: stat is a plain C struct of integers; all zeros is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: name is NUL-terminated and lives for the call; dir is an open
    // descriptor borrowed for the call; st is a live, writable local.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    #[allow(clippy::unnecessary_cast)] // st_mtime's width differs by architecture
    Ok((regular, st.st_mtime as i64))
}

/// The space of the file system holding `path`: (bytes available to
/// unprivileged users, total bytes).
pub fn free_space(path: &std::path::Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("a path with a NUL byte"))?;
    // SAFETY: statvfs is a plain C struct of integers; all zeros is valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: cpath is NUL-terminated; st is a live, writable local.
    if unsafe { libc::statvfs(cpath.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let unit = st.f_frsize as u64;
    Ok((
        (st.f_bavail as u64).saturating_mul(unit),
        (st.f_blocks as u64).saturating_mul(unit),
    ))
}

/// The real user id.
pub fn getuid() -> uid_t {
    // SAFETY: getuid takes nothing and cannot fail.
    unsafe { libc::getuid() }
}

/// The effective user id.
pub fn geteuid() -> uid_t {
    // SAFETY: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

/// The real group id.
pub fn getgid() -> gid_t {
    // SAFETY: getgid takes nothing and cannot fail.
    unsafe { libc::getgid() }
}

/// The effective group id.
pub fn getegid() -> gid_t {
    // SAFETY: getegid takes nothing and cannot fail.
    unsafe { libc::getegid() }
}

/// The supplementary groups of the process.
pub fn getgroups() -> io::Result<Vec<gid_t>> {
    // SAFETY: a size of 0 with a null list only asks for the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut groups = vec![0 as gid_t; n as usize];
    // SAFETY: groups has room for exactly n entries, the size passed.
    let n = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    groups.truncate(n as usize);
    Ok(groups)
}

/// Sets the real, effective and saved group ids, then user ids, to `gid` and
/// `uid`: after this no earlier privilege can be taken back.
pub fn set_all_ids(uid: uid_t, gid: gid_t) -> io::Result<()> {
    // SAFETY: setresgid and setresuid take plain integers and touch no memory.
    let rc = unsafe { libc::setresgid(gid, gid, gid) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let rc = unsafe { libc::setresuid(uid, uid, uid) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the effective group id, leaving the real and saved ones as they
/// are: while the saved id is still the setgid group, the privilege can be
/// taken back with another call.
pub fn set_effective_gid(gid: gid_t) -> io::Result<()> {
    const UNCHANGED: gid_t = gid_t::MAX; // (gid_t)-1
    // SAFETY: setresgid takes plain integers and touches no memory.
    let rc = unsafe { libc::setresgid(UNCHANGED, gid, UNCHANGED) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the file mode creation mask.
pub fn umask(mask: u32) {
    // SAFETY: umask takes a plain integer and cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}

/// The kernel's host name, as bytes.
pub fn gethostname() -> io::Result<Vec<u8>> {
    // Linux host names are at most 64 bytes; 256 is POSIX's HOST_NAME_MAX bound.
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for buf.len() bytes, the length passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(buf[..end].to_vec())
}

/// `unix` in the local time zone, formatted by strftime's `fmt`; None when
/// the time cannot be converted or the result does not fit in 64 bytes.
pub fn strftime_local(unix: i64, fmt: &CStr) -> Option<String> {
    let t = unix as libc::time_t;
    // SAFETY: tm is a plain C struct of integers and a pointer, for which
    // all zeros is a valid value; localtime_r fills it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals for the duration of the call.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return None;
    }
    let mut buf = [0u8; 64];
    // SAFETY: buf is writable for buf.len() bytes, the length passed; fmt is
    // NUL-terminated; tm was filled by localtime_r.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm) };
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Fills `buf` from the kernel's random source; false when it could not.
pub fn getrandom(buf: &mut [u8]) -> bool {
    // SAFETY: buf is writable for buf.len() bytes, the length passed.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    n == buf.len() as isize
}

/// How many threads the process has, as Linux's /proc/self/status says;
/// None when that cannot be read (no /proc in a chroot or container).
pub fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Removes every environment variable but `keep`. Refuses (changing nothing)
/// when the process is seen to have more than one thread, as removing a
/// variable while another thread reads the environment is undefined
/// behaviour. Where /proc cannot tell, the caller's word stands: it is only
/// called first thing in `main`, before spoolmail starts any thread (Rust's
/// runtime starts none), and refusing there would refuse every submission
/// on a machine without /proc.
pub fn clear_env_except(keep: &str) -> io::Result<()> {
    if thread_count().is_some_and(|n| n != 1) {
        return Err(io::Error::other(
            "cannot clear the environment: the process has more than one thread",
        ));
    }
    let names: Vec<std::ffi::OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k != keep)
        .collect();
    for name in names {
        // SAFETY: the process has one thread (checked above where /proc can
        // tell; else by the caller's contract: first thing in main, before
        // any thread), so nothing reads the environment while it changes.
        unsafe { std::env::remove_var(name) };
    }
    Ok(())
}

/// A user's passwd entry, the fields spoolmail uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    pub name: Vec<u8>,
    pub gecos: Vec<u8>,
}

/// The passwd entry of `uid`; None when there is none.
pub fn getpwuid(uid: uid_t) -> io::Result<Option<Passwd>> {
    getpwuid_from(uid, LOOKUP_BUFFER_START)
}

fn getpwuid_from(uid: uid_t, start: usize) -> io::Result<Option<Passwd>> {
    with_growing_buffer(start, |buf| {
        // SAFETY: passwd is a C struct of integers and pointers, for which
        // all zeros is a valid value; getpwuid_r fills it.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local or to buf, writable for
        // buf.len() bytes, the length passed.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() {
            return (rc, None);
        }
        // SAFETY: on success pw_name and pw_gecos are null or NUL-terminated
        // strings inside buf, which lives until after they are copied here.
        let entry = unsafe {
            Passwd {
                name: c_bytes(pwd.pw_name),
                gecos: c_bytes(pwd.pw_gecos),
            }
        };
        (0, Some(entry))
    })
}

/// The id of the group named `name`; None when there is none.
pub fn getgrnam_gid(name: &str) -> io::Result<Option<gid_t>> {
    getgrnam_gid_from(name, LOOKUP_BUFFER_START)
}

fn getgrnam_gid_from(name: &str, start: usize) -> io::Result<Option<gid_t>> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None); // a name with a NUL names no group
    };
    with_growing_buffer(start, |buf| {
        // SAFETY: group is a C struct of integers and pointers, for which
        // all zeros is a valid value; getgrnam_r fills it.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: cname is NUL-terminated; every other pointer is to a live
        // local or to buf, writable for buf.len() bytes, the length passed.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if !result.is_null() => (0, Some(grp.gr_gid)),
            rc => (rc, None),
        }
    })
}

/// Whether a user named `name` exists (getpwnam_r).
pub fn user_exists(name: &str) -> io::Result<bool> {
    let Ok(cname) = CString::new(name) else {
        return Ok(false); // a name with a NUL names no user
    };
    let found = with_growing_buffer(LOOKUP_BUFFER_START, |buf| {
        // SAFETY: passwd is a C struct of integers and pointers, for which
        // all zeros is a valid value; getpwnam_r fills it.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: cname is NUL-terminated; every other pointer is to a live
        // local or to buf, writable for buf.len() bytes, the length passed.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            0 if !result.is_null() => (0, Some(())),
            rc => (rc, None),
        }
    })?;
    Ok(found.is_some())
}

/// Runs a `get*_r` lookup with a buffer that doubles on ERANGE (the entry
/// did not fit) up to LOOKUP_BUFFER_MAX. `lookup` returns the call's error
/// number (0 for success or no entry) and what it found.
fn with_growing_buffer<T>(
    start: usize,
    mut lookup: impl FnMut(&mut [u8]) -> (i32, Option<T>),
) -> io::Result<Option<T>> {
    let mut size = start.max(1);
    loop {
        let mut buf = vec![0u8; size];
        match lookup(&mut buf) {
            (0, found) => return Ok(found),
            (libc::ERANGE, _) if size < LOOKUP_BUFFER_MAX => size *= 2,
            (libc::EINTR, _) => {}
            (rc, _) => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

/// The bytes of a C string, or none for a null pointer.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that stays valid for the call.
// SAFETY: an unsafe fn because its caller must uphold the contract above;
// every caller passes a field of a passwd or group entry that getpwuid_r or
// getgrnam_r has just filled in, in a buffer alive for the call.
unsafe fn c_bytes(p: *const libc::c_char) -> Vec<u8> {
    if p.is_null() {
        return Vec::new();
    }
    // SAFETY: p is non-null and, by this function's contract, NUL-terminated and valid.
    unsafe { CStr::from_ptr(p) }.to_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A linux_dirent64 record as the kernel lays it out, padded to 8.
    fn record(ino: u64, kind: u8, name: &[u8]) -> Vec<u8> {
        let len = (19 + name.len() + 1).div_ceil(8) * 8;
        let mut r = Vec::new();
        r.extend_from_slice(&ino.to_ne_bytes());
        r.extend_from_slice(&0i64.to_ne_bytes());
        r.extend_from_slice(&(len as u16).to_ne_bytes());
        r.push(kind);
        r.extend_from_slice(name);
        r.resize(len, 0);
        r
    }

    #[test]
    fn dirent64_records_are_read_in_place() {
        let mut buf = record(7, libc::DT_REG, b"6A3F2C1B0A1B2C3D");
        buf.extend(record(8, libc::DT_UNKNOWN, b"6A3F2C1B0A1B2C3D.state"));
        buf.extend(record(1, libc::DT_DIR, b"."));
        let got: Vec<_> = dirent64_records(&buf)
            .map(|e| e.map(|e| (e.kind, e.name.to_bytes().to_vec())))
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(
            got,
            [
                (libc::DT_REG, b"6A3F2C1B0A1B2C3D".to_vec()),
                (libc::DT_UNKNOWN, b"6A3F2C1B0A1B2C3D.state".to_vec()),
                (libc::DT_DIR, b".".to_vec()),
            ]
        );
        assert_eq!(dirent64_records(&[]).count(), 0);
        // Cut short, a length past the end, a name without its NUL, a
        // length too short for the header: one Err, then the end.
        let whole = record(7, libc::DT_REG, b"x");
        let mut long = whole.clone();
        long[16] = 200;
        let mut no_nul = whole.clone();
        no_nul[19..].fill(b'x');
        let mut short = whole.clone();
        short[16] = 3;
        short[17] = 0;
        for bad in [&whole[..12], &long[..], &no_nul[..], &short[..]] {
            let mut records = dirent64_records(bad);
            assert!(records.next().unwrap().is_err());
            assert!(records.next().is_none());
        }
    }

    #[test]
    fn for_each_dir_entry_lists_a_directory_as_read_dir_does() {
        let dir = std::env::temp_dir().join(format!("spoolmail-sys-dir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let mut want: Vec<Vec<u8>> = vec![b"sub".to_vec()];
        for i in 0..3000 {
            let name = format!("{i:040}");
            std::fs::write(dir.join(&name), "").unwrap();
            want.push(name.into_bytes());
        }
        use std::os::fd::AsFd;
        let mut got = Vec::new();
        let open = File::open(&dir).unwrap();
        for_each_dir_entry(&open, |e| {
            let (regular, _) = stat_in(open.as_fd(), e.name).unwrap();
            assert_eq!(regular, e.name.to_bytes() != b"sub");
            got.push(e.name.to_bytes().to_vec());
        })
        .unwrap();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn passwd_lookup_grows_a_tiny_buffer() {
        let uid = getuid();
        let full = getpwuid(uid).unwrap();
        assert_eq!(getpwuid_from(uid, 1).unwrap(), full);
        if let Some(p) = &full {
            assert!(!p.name.is_empty());
        }
    }

    #[test]
    fn group_lookup_grows_a_tiny_buffer() {
        let full = getgrnam_gid("root").unwrap();
        assert_eq!(getgrnam_gid_from("root", 1).unwrap(), full);
        assert_eq!(getgrnam_gid_from("no such group here", 1).unwrap(), None);
        assert_eq!(getgrnam_gid("a\0b").unwrap(), None);
    }

    #[test]
    fn the_buffer_doubles_on_erange_only() {
        let mut sizes = Vec::new();
        let found = with_growing_buffer(1, |buf| {
            sizes.push(buf.len());
            if buf.len() < 8 {
                (libc::ERANGE, None)
            } else {
                (0, Some(buf.len()))
            }
        });
        assert_eq!(found.unwrap(), Some(8));
        assert_eq!(sizes, [1, 2, 4, 8]);
        let err = with_growing_buffer::<()>(1, |_| (libc::EIO, None)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        let mut calls = 0;
        let gave_up = with_growing_buffer::<()>(LOOKUP_BUFFER_MAX, |_| {
            calls += 1;
            (libc::ERANGE, None)
        });
        assert!(gave_up.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_second_thread_is_seen_so_the_environment_is_left_alone() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        assert!(thread_count().is_some_and(|n| n >= 2));
        let before: Vec<_> = std::env::vars_os().collect();
        assert!(clear_env_except("TZ").is_err());
        assert_eq!(std::env::vars_os().collect::<Vec<_>>(), before);
        tx.send(()).unwrap();
        other.join().unwrap().unwrap();
    }

    #[test]
    fn a_kill_timer_is_created_rearmed_and_deleted() {
        // Armed far away and dropped: it never fires on the test process.
        let t = KillTimer::new().unwrap();
        t.arm(Duration::from_secs(3600)).unwrap();
        t.arm(Duration::from_secs(7200)).unwrap();
        drop(t);
        let (avail, total) = free_space(std::path::Path::new("/")).unwrap();
        assert!(total > 0 && avail <= total, "{avail} of {total}");
    }

    #[test]
    fn dates_and_random_bytes() {
        assert!(strftime_local(0, c"%Y").is_some_and(|y| y == "1970" || y == "1969"));
        let mut a = [0u8; 16];
        assert!(getrandom(&mut a));
        assert_ne!(a, [0u8; 16]);
    }
}
