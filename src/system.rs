//! What spoolmail asks of the operating system: who is submitting, what this
//! host is called, the local time as RFC 5322 writes it, and the privilege
//! hygiene a setgid program owes its callers.

use crate::error::{Error, Result};
use std::ffi::CStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The submitting user, from the real uid (never from the environment,
/// which a caller controls).
#[derive(Debug, Clone)]
pub struct User {
    pub uid: u32,
    pub name: String,
    /// The GECOS full name, for an added From header.
    pub full_name: Option<String>,
}

pub fn current_user() -> Result<User> {
    let uid = unsafe { libc::getuid() };
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
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
        return Err(Error::NoUser(format!(
            "no user name for uid {uid} (no passwd entry); give the sender with -f"
        )));
    }
    let name = unsafe { CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned();
    let gecos = if pwd.pw_gecos.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(pwd.pw_gecos) }
            .to_string_lossy()
            .into_owned()
    };
    let full_name = gecos
        .split(',')
        .next()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(User {
        uid,
        name,
        full_name,
    })
}

/// The uid alone, for when `-f` makes the name unnecessary and the user may
/// have no passwd entry (containers running as an arbitrary uid).
pub fn current_uid() -> u32 {
    unsafe { libc::getuid() }
}

/// This host's name, fully qualified where the system knows it without DNS:
/// the kernel's name if it has a dot, else the canonical name /etc/hosts gives
/// it. Submission never waits on DNS.
pub fn host_name() -> String {
    let short = kernel_host_name();
    if short.contains('.') {
        return short;
    }
    std::fs::read_to_string("/etc/hosts")
        .ok()
        .and_then(|hosts| fqdn_from_hosts(&hosts, &short))
        .unwrap_or(short)
}

pub fn kernel_host_name() -> String {
    let mut buf = [0u8; 256];
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    // Only a name that is safe in EHLO and headers is used.
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        name
    } else {
        "localhost".to_string()
    }
}

/// The first dotted name on an /etc/hosts line that also lists `short`.
fn fqdn_from_hosts(hosts: &str, short: &str) -> Option<String> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next()?;
        let names: Vec<&str> = line.split_whitespace().skip(1).collect();
        let matches = names
            .iter()
            .any(|n| *n == short || n.split('.').next() == Some(short));
        if !matches {
            return None;
        }
        names
            .iter()
            .find(|n| n.contains('.') && n.split('.').next() == Some(short))
            .filter(|n| {
                n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            })
            .map(|n| n.to_string())
    })
}

pub fn now() -> (u64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.subsec_micros())
}

/// An RFC 5322 date in the local time zone: `Sun, 22 Nov 2026 00:17:29 +0000`.
pub fn rfc5322_date(unix: u64) -> String {
    format_local(unix, c"%a, %d %b %Y %H:%M:%S %z")
}

/// The arrival time as mailq shows it: `Sun Nov 22 00:17:29`.
pub fn mailq_date(unix: u64) -> String {
    format_local(unix, c"%a %b %e %H:%M:%S")
}

fn format_local(unix: u64, fmt: &CStr) -> String {
    let t = unix as libc::time_t;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let mut buf = [0u8; 64];
    // spoolmail never calls setlocale, so strftime's names are the C locale's,
    // as RFC 5322 requires.
    let n = unsafe {
        if libc::localtime_r(&t, &mut tm).is_null() {
            return String::from("Thu, 01 Jan 1970 00:00:00 +0000");
        }
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm)
    };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Random bits from the kernel, for queue ids and message ids.
pub fn random_u64() -> u64 {
    let mut v = 0u64;
    let n = unsafe { libc::getrandom((&mut v as *mut u64).cast(), 8, 0) };
    if n != 8 {
        // getrandom cannot fail for 8 bytes after boot; fall back to time and pid anyway.
        let (s, us) = now();
        v = s ^ ((us as u64) << 20) ^ ((std::process::id() as u64) << 40);
    }
    v
}

/// Sets the umask that keeps spool files from other users and, when running
/// setgid for someone else, empties the environment but for TZ, so that no
/// library spoolmail uses, now or later, lets a caller steer it (a CA bundle
/// path, a resolver option). Closed fds 0, 1 and 2 need no care here: Rust's
/// runtime reopens them on /dev/null before `main`.
pub fn sanitize_process() {
    unsafe { libc::umask(0o027) };
    if is_privileged() {
        let names: Vec<std::ffi::OsString> = std::env::vars_os()
            .map(|(k, _)| k)
            .filter(|k| k != "TZ")
            .collect();
        for name in names {
            // SAFETY: called first thing in main, before any thread exists.
            unsafe { std::env::remove_var(name) };
        }
    }
}

/// Points stdin, stdout and stderr at /dev/null (a detached background run).
pub fn detach_stdio() {
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
    if fd >= 0 {
        for target in 0..3 {
            unsafe { libc::dup2(fd, target) };
        }
        if fd > 2 {
            unsafe { libc::close(fd) };
        }
    }
}

/// True when the real user is root or belongs to `group` (by its real or a
/// supplementary group; the setgid group of the binary does not count).
pub fn user_is_trusted(group: Option<&str>) -> bool {
    if unsafe { libc::getuid() } == 0 {
        return true;
    }
    let Some(group) = group else { return false };
    let Ok(cname) = std::ffi::CString::new(group) else {
        return false;
    };
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return false;
    }
    let gid = grp.gr_gid;
    if unsafe { libc::getgid() } == gid {
        return true;
    }
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n <= 0 {
        return false;
    }
    let mut groups = vec![0 as libc::gid_t; n as usize];
    let n = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    n > 0 && groups[..n as usize].contains(&gid)
}

/// True when running setgid (or setuid) for someone else.
pub fn is_privileged() -> bool {
    unsafe { libc::getegid() != libc::getgid() || libc::geteuid() != libc::getuid() }
}

/// Gives up the setgid (and any setuid) privilege for good: used when a user
/// points spoolmail at another config (`-C`), as Sendmail does.
pub fn drop_privileges() -> Result<()> {
    unsafe {
        let (gid, uid) = (libc::getgid(), libc::getuid());
        if libc::setresgid(gid, gid, gid) != 0 || libc::setresuid(uid, uid, uid) != 0 {
            return Err(Error::NoPerm(format!(
                "cannot drop privileges: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_from_etc_hosts() {
        let hosts = "127.0.0.1 localhost\n127.0.1.1 box.example.org box # me\n";
        assert_eq!(
            fqdn_from_hosts(hosts, "box").as_deref(),
            Some("box.example.org")
        );
        assert_eq!(fqdn_from_hosts(hosts, "other"), None);
        assert_eq!(fqdn_from_hosts("10.0.0.1 box\n", "box"), None);
    }

    #[test]
    fn dates_are_rfc5322() {
        let d = rfc5322_date(0);
        assert!(
            d.ends_with("1970 00:00:00 +0000") || d.contains("1970") || d.contains("1969"),
            "{d}"
        );
        let parts: Vec<&str> = d.split(' ').collect();
        assert_eq!(parts.len(), 6, "{d}");
        assert!(parts[0].ends_with(','));
    }
}
