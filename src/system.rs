//! What spoolmail asks of the operating system: who is submitting, what this
//! host is called, the local time as RFC 5322 writes it, and the privilege
//! hygiene a setgid program owes its callers.

use crate::error::{Error, Result};
use crate::sys;
use std::ffi::CStr;
use std::io::Write;
use std::path::Path;
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

/// The login name of `uid`; None when it has none (or it cannot be
/// looked up).
pub fn login_name(uid: u32) -> Option<String> {
    let entry = sys::getpwuid(uid).ok()??;
    Some(String::from_utf8_lossy(&entry.name).into_owned())
}

pub fn current_user() -> Result<User> {
    let uid = sys::getuid();
    let entry = match sys::getpwuid(uid) {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            return Err(Error::NoUser(format!(
                "no user name for uid {uid} (no passwd entry); give the sender with -f"
            )));
        }
        Err(e) => {
            return Err(Error::NoUser(format!(
                "no user name for uid {uid} ({e}); give the sender with -f"
            )));
        }
    };
    let name = String::from_utf8_lossy(&entry.name).into_owned();
    let gecos = String::from_utf8_lossy(&entry.gecos);
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
    sys::getuid()
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

/// Who this host says it is in mail: the name in EHLO, Received and
/// Message-ID, and the domain that qualifies bare names and senders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub host: String,
    pub domain: String,
}

/// The identity from the config's `helo_name` and `qualify_domain`, the
/// mail name file (/etc/mailname, Debian policy, as Postfix's myorigin, dma
/// and nullmailer read it) and the host's name.
pub fn identity(helo: Option<&str>, qualify: Option<&str>, mailname_file: &Path) -> Identity {
    let mailname = read_mailname(mailname_file);
    choose_identity(helo, qualify, mailname.as_deref(), &host_name())
}

/// The domain: `qualify_domain`, else the mail name, else the host name.
/// The host: `helo_name`, else a host name with a dot, else the mail name
/// (`EHLO vm` is refused by many servers; the mail name is a real name).
pub fn choose_identity(
    helo: Option<&str>,
    qualify: Option<&str>,
    mailname: Option<&str>,
    host_name: &str,
) -> Identity {
    let dotted = Some(host_name).filter(|h| h.contains('.'));
    let host = helo.or(dotted).or(mailname).unwrap_or(host_name);
    let domain = qualify.or(mailname).unwrap_or(host_name);
    Identity {
        host: host.to_string(),
        domain: domain.to_string(),
    }
}

impl Identity {
    /// Said once per submission when the sender domain is not a real domain
    /// (no dot): receivers refuse such senders, and the fix is one line.
    pub fn warning(&self, mailname_file: &Path) -> Option<String> {
        if self.domain.contains('.') {
            return None;
        }
        Some(format!(
            "the sender domain `{}` is not a real domain (no qualify_domain, no {}, and the \
             host name has no dot), so receivers may refuse this mail; set it with \
             `echo example.org > {}` or `qualify_domain = example.org` in the config",
            self.domain,
            mailname_file.display(),
            mailname_file.display()
        ))
    }
}

/// The first line of the mail name file when it is a usable name; a missing
/// or garbled file is as good as none.
fn read_mailname(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(256)
        .read_to_string(&mut text)
        .ok()?;
    let name = text.lines().next()?.trim().trim_end_matches('.');
    let ok = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    ok.then(|| name.to_ascii_lowercase())
}

pub fn kernel_host_name() -> String {
    let name = sys::gethostname()
        .map(|name| String::from_utf8_lossy(&name).into_owned())
        .unwrap_or_default();
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
    // spoolmail never calls setlocale, so strftime's names are the C locale's,
    // as RFC 5322 requires.
    sys::strftime_local(unix as i64, fmt)
        .unwrap_or_else(|| String::from("Thu, 01 Jan 1970 00:00:00 +0000"))
}

/// Writes `path` as a whole or not at all: a temporary file beside it
/// (`.NAME.PID.tmp`), mode `mode` whatever the umask, fsynced, then renamed
/// over it; never through a symbolic link.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    // Left by a process that died with this pid.
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        // The umask may have taken bits of the mode.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself durable: after a crash, a rotated OAuth2 refresh
        // token must not come back as the spent one. These files are few and
        // rarely written, so the directory fsync costs nothing that matters.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Random bits from the kernel, for queue ids and message ids.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if sys::getrandom(&mut bytes) {
        return u64::from_ne_bytes(bytes);
    }
    // getrandom cannot fail for 8 bytes after boot; fall back to time and pid anyway.
    let (s, us) = now();
    s ^ ((us as u64) << 20) ^ ((std::process::id() as u64) << 40)
}

/// Makes the process safe to run for any caller, first thing in `main`
/// (which is the C entry point, so Rust's runtime has done none of it):
/// fds 0, 1 and 2 opened on /dev/null when the caller closed them (else the
/// spool file could be opened as one and get a stray write); SIGPIPE
/// ignored (a closed pipe is an error to handle); the umask that keeps spool
/// files from other users; and, when running setgid for someone else, an
/// environment emptied but for TZ, so that no library spoolmail uses, now
/// or later, lets a caller steer it (a CA bundle path, a resolver option).
pub fn sanitize_process() -> Result<()> {
    sys::open_standard_fds()
        .map_err(|e| Error::TempFail(format!("cannot open /dev/null for a closed fd 0-2: {e}")))?;
    sys::ignore_signal(libc::SIGPIPE)
        .map_err(|e| Error::TempFail(format!("cannot ignore SIGPIPE: {e}")))?;
    sys::umask(0o027);
    if is_privileged() {
        // Called first thing in main, before any thread exists: clearing the
        // environment is only allowed then (sys checks it).
        sys::clear_env_except("TZ").map_err(|e| Error::TempFail(e.to_string()))?;
    }
    Ok(())
}

/// Writes a line to stdout, ignoring failure. A caller that closed its end
/// (`sendmail -bv root | head -1`) loses the text, never the outcome: the
/// exit code still says what happened to the mail. `println!` would panic
/// on EPIPE; SIGPIPE itself is ignored by [`sanitize_process`].
pub fn outln(text: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(text).and_then(|()| out.write_all(b"\n"));
    let _ = out.flush();
}

/// Writes a line to stderr, ignoring failure, as [`outln`] does for stdout.
pub fn errln(text: std::fmt::Arguments) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(text).and_then(|()| err.write_all(b"\n"));
}

/// Makes this process one that its caller cannot disturb while it
/// delivers: SIGPIPE and SIGXFSZ ignored (a closed stderr or the file-size
/// limit is an error to handle, never the end of the process, which would
/// leave a sent message unrecorded), the soft file-size and open-file
/// limits raised to the hard ones. Refuses (TempFail, one line) when the
/// hard limits are too low to record what delivery does.
pub fn prepare_for_delivery() -> Result<()> {
    for sig in [libc::SIGPIPE, libc::SIGXFSZ] {
        sys::ignore_signal(sig)
            .map_err(|e| Error::TempFail(format!("cannot ignore {sig}: {e}")))?;
    }
    let limit = |resource, name: &str| {
        sys::raise_soft_limit(resource)
            .map_err(|e| Error::TempFail(format!("cannot raise the {name} limit: {e}")))
    };
    let file_size = limit(libc::RLIMIT_FSIZE, "file size")?;
    let open_files = limit(libc::RLIMIT_NOFILE, "open files")?;
    match limits_too_low(file_size, open_files) {
        Some(why) => Err(Error::TempFail(format!("queue run refused: {why}"))),
        None => Ok(()),
    }
}

/// The rule of [`prepare_for_delivery`]: what is wrong with the hard limits
/// of file size (bytes) and open files (None: unlimited), if anything.
fn limits_too_low(file_size: Option<u64>, open_files: Option<u64>) -> Option<String> {
    use crate::limits::{MIN_FILE_SIZE_LIMIT, MIN_OPEN_FILES};
    if let Some(n) = file_size.filter(|&n| n < MIN_FILE_SIZE_LIMIT) {
        return Some(format!(
            "the file size limit (ulimit -f) is {n} bytes, below the {MIN_FILE_SIZE_LIMIT} \
             needed to record delivery outcomes"
        ));
    }
    if let Some(n) = open_files.filter(|&n| n < MIN_OPEN_FILES) {
        return Some(format!(
            "the open files limit (ulimit -n) is {n}, below the {MIN_OPEN_FILES} needed to deliver"
        ));
    }
    None
}

/// Points stdin, stdout and stderr at /dev/null (a detached background run).
pub fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        sys::redirect_stdio(null);
    }
}

/// True when the real user is root or belongs to `group` (by its real or a
/// supplementary group; the setgid group of the binary does not count).
pub fn user_is_trusted(group: Option<&str>) -> bool {
    if sys::getuid() == 0 {
        return true;
    }
    let Some(group) = group else { return false };
    let Ok(Some(gid)) = sys::getgrnam_gid(group) else {
        return false;
    };
    sys::getgid() == gid || sys::getgroups().is_ok_and(|groups| groups.contains(&gid))
}

/// Who runs a queue pass, as far as whose mail it may take: `None` for
/// everyone's (root; a member of the spool's group, which is the binary's
/// setgid group and the group owning `spool_dir`; a member of
/// `admin_group`), else `Some(uid)`: only the caller's own messages. The
/// setgid binary gives every user the spool's group while it runs, so only
/// the real ids count here: a pass over other users' mail must not run in
/// processes whose signals, limits and stdio an ordinary user controls.
pub fn pass_owner(spool_dir: &Path, admin_group: Option<&str>) -> Option<u32> {
    let uid = sys::getuid();
    let mut spool_groups = Vec::new();
    if sys::getegid() != sys::getgid() {
        spool_groups.push(sys::getegid());
    }
    if let Ok(meta) = std::fs::metadata(spool_dir) {
        spool_groups.push(std::os::unix::fs::MetadataExt::gid(&meta));
    }
    if let Some(Ok(Some(gid))) = admin_group.map(sys::getgrnam_gid) {
        spool_groups.push(gid);
    }
    let mut own_groups = sys::getgroups().unwrap_or_default();
    own_groups.push(sys::getgid());
    (!may_take_everyones_mail(uid, &own_groups, &spool_groups)).then_some(uid)
}

/// The rule of [`pass_owner`]: root, or a real or supplementary group
/// (`own_groups`) among the groups that administer the spool.
fn may_take_everyones_mail(uid: u32, own_groups: &[u32], spool_groups: &[u32]) -> bool {
    uid == 0 || own_groups.iter().any(|g| spool_groups.contains(g))
}

/// Opens a file a caller can name or influence (an `:include:` list) with
/// the caller's own rights: the effective group is the real one for the
/// open, so the setgid group's files (the relay password) stay closed to
/// it. A symbolic link is refused (O_NOFOLLOW), and the open does not wait
/// on a FIFO (O_NONBLOCK); only a regular file is returned.
pub fn open_as_caller(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let privileged = sys::getegid();
    sys::set_effective_gid(sys::getgid())?;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let restored = sys::set_effective_gid(privileged);
    let file = opened.map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => std::io::Error::other("a symbolic link (refused)"),
        _ => e,
    })?;
    restored?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file (refused)"));
    }
    Ok(file)
}

/// True when running setgid (or setuid) for someone else.
pub fn is_privileged() -> bool {
    sys::getegid() != sys::getgid() || sys::geteuid() != sys::getuid()
}

/// Gives up the setgid (and any setuid) privilege for good: used when a user
/// points spoolmail at another config (`-C`), as Sendmail does.
pub fn drop_privileges() -> Result<()> {
    sys::set_all_ids(sys::getuid(), sys::getgid())
        .map_err(|e| Error::NoPerm(format!("cannot drop privileges: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_and_the_spool_groups_may_take_everyones_mail() {
        const SPOOL: u32 = 995;
        const ADMIN: u32 = 27;
        // (real uid, real and supplementary groups) -> everyone's mail
        for (uid, groups, everyone) in [
            (0, &[0][..], true),
            (0, &[100][..], true),
            (1000, &[1000][..], false),
            (1000, &[1000, SPOOL][..], true),
            (1000, &[SPOOL][..], true),
            (1000, &[1000, ADMIN, 100][..], true),
            (1000, &[][..], false),
        ] {
            assert_eq!(
                may_take_everyones_mail(uid, groups, &[SPOOL, ADMIN]),
                everyone,
                "uid {uid}, groups {groups:?}"
            );
        }
        assert!(!may_take_everyones_mail(1000, &[1000], &[]));
    }

    #[test]
    fn a_run_is_refused_only_below_the_minimum_limits() {
        use crate::limits::{MIN_FILE_SIZE_LIMIT as FSIZE, MIN_OPEN_FILES as NOFILE};
        // (hard file size limit, hard open files limit) -> refused, naming
        for (file_size, open_files, refused) in [
            (None, None, None),
            (Some(FSIZE), Some(NOFILE), None),
            (Some(0), None, Some("ulimit -f")),
            (Some(FSIZE - 1), Some(NOFILE), Some("ulimit -f")),
            (None, Some(NOFILE - 1), Some("ulimit -n")),
            (Some(0), Some(3), Some("ulimit -f")),
        ] {
            let got = limits_too_low(file_size, open_files);
            assert_eq!(
                got.as_deref()
                    .map(|w| refused.is_some_and(|r| w.contains(r))),
                refused.map(|_| true),
                "{file_size:?} {open_files:?}: {got:?}"
            );
        }
    }

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
    fn identity_prefers_config_then_mailname_then_host() {
        let id = |helo, qualify, mailname, host| {
            let i = choose_identity(helo, qualify, mailname, host);
            (i.host, i.domain)
        };
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        let cases = [
            // helo, qualify, mailname, host name: host, domain
            ((None, None, None, "vm"), s("vm", "vm")),
            (
                (None, None, Some("example.org"), "vm"),
                s("example.org", "example.org"),
            ),
            (
                (None, None, Some("example.org"), "vm.lan"),
                s("vm.lan", "example.org"),
            ),
            (
                (None, Some("q.org"), Some("example.org"), "vm"),
                s("example.org", "q.org"),
            ),
            (
                (Some("h.test"), None, Some("example.org"), "vm.lan"),
                s("h.test", "example.org"),
            ),
            (
                (Some("h.test"), Some("q.org"), None, "vm"),
                s("h.test", "q.org"),
            ),
        ];
        for ((helo, qualify, mailname, host), want) in cases {
            assert_eq!(
                id(helo, qualify, mailname, host),
                want,
                "{helo:?} {qualify:?} {mailname:?} {host}"
            );
        }
        let file = Path::new("/etc/mailname");
        assert!(
            choose_identity(None, None, None, "vm")
                .warning(file)
                .unwrap()
                .contains("`vm`")
        );
        assert_eq!(
            choose_identity(None, None, None, "vm.lan").warning(file),
            None
        );
    }

    #[test]
    fn mailname_file_first_line_only_if_a_name() {
        let dir = std::env::temp_dir().join(format!("spoolmail-mailname-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("mailname");
        for (text, want) in [
            ("Example.ORG\n", Some("example.org")),
            ("mail.example.org.\nignored\n", Some("mail.example.org")),
            ("\n", None),
            ("bad name\n", None),
            ("a..b\n", None),
        ] {
            std::fs::write(&f, text).unwrap();
            assert_eq!(read_mailname(&f).as_deref(), want, "{text:?}");
        }
        assert_eq!(read_mailname(&dir.join("none")), None);
        std::fs::remove_dir_all(&dir).unwrap();
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
