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
    let entry = passwd_entry(uid).ok()??;
    Some(String::from_utf8_lossy(&entry.name).into_owned())
}

/// The name service's configuration, and the file its `files` source
/// reads for the passwd database.
const NSSWITCH_CONF: &str = "/etc/nsswitch.conf";
const PASSWD_FILE: &str = "/etc/passwd";

/// The passwd entry of `uid`: from /etc/passwd itself when the name
/// service reads that file first ([`files_first`]) and the uid is in it
/// ([`passwd_file_entry`]), which is then the entry getpwuid(3) returns,
/// found without starting the name service (its nscd attempts, its
/// configuration read and its code not yet in memory cost about 70 us,
/// 5% of a submission, which makes this one lookup). In any doubt (no
/// nsswitch.conf, another source or an action first, a line of the file
/// not read here as glibc reads it, the uid not in it: a systemd dynamic
/// user, LDAP), getpwuid(3).
fn passwd_entry(uid: u32) -> std::io::Result<Option<sys::Passwd>> {
    let from_file = read_small(NSSWITCH_CONF)
        .filter(|conf| files_first(conf))
        .and_then(|_| read_small(PASSWD_FILE))
        .and_then(|file| passwd_file_entry(&file, uid));
    match from_file {
        Some(entry) => Ok(Some(entry)),
        None => sys::getpwuid(uid),
    }
}

/// A system file's bytes, when it can be read and is no longer than
/// [`crate::limits::PASSWD_FILE_MAX`].
fn read_small(path: &str) -> Option<Vec<u8>> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len > crate::limits::PASSWD_FILE_MAX {
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).ok()? + 1);
    std::io::Read::read_to_end(&mut file, &mut bytes).ok()?;
    Some(bytes)
}

/// Whether nsswitch.conf (`conf`) has the passwd database read from
/// /etc/passwd first, with the default action on success (return): its
/// one `passwd` line, split as glibc splits it ([`nsswitch_line`]), begins
/// with the `files` source, not followed by an action (`[...]`). False for
/// anything else: no such line or more than one (glibc takes the last), a
/// NUL (which ends a line for glibc), and a line of any database whose
/// actions glibc cannot parse, which makes it refuse the whole file.
fn files_first(conf: &[u8]) -> bool {
    if conf.contains(&0) {
        return false;
    }
    let mut passwd = None;
    // With its newline, as getline(3) gives it to glibc's parser.
    for line in conf.split_inclusive(|&b| b == b'\n') {
        let Some((database, sources)) = nsswitch_line(line) else {
            continue;
        };
        if !actions_well_formed(sources) {
            return false;
        }
        if database == b"passwd" && passwd.replace(sources).is_some() {
            return false;
        }
    }
    passwd.is_some_and(|sources| {
        let (first, rest) = take_until(sources, |b| b == b'[');
        first == b"files" && trim_start(rest).first() != Some(&b'[')
    })
}

/// isspace(3) in the C locale, the blanks glibc's parsers of
/// nsswitch.conf and /etc/passwd skip (Unicode's other spaces are not).
fn c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// `bytes` without the blanks it begins with.
fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| !c_space(b));
    &bytes[start.unwrap_or(bytes.len())..]
}

/// The bytes of `bytes` up to a blank or a byte `end` says ends the word,
/// and the rest.
fn take_until(bytes: &[u8], end: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
    let len = bytes.iter().position(|&b| c_space(b) || end(b));
    bytes.split_at(len.unwrap_or(bytes.len()))
}

/// A line of nsswitch.conf as glibc reads it: the database name (case
/// matters; since 2.33 `#` is no comment mark, a comment line is a
/// database of no such name) up to a blank or `:`, then the sources. None
/// for a line glibc skips. glibc 2.33 on skips a run of blanks and colons
/// before the sources, older ones the one byte: the sources here follow
/// that byte and blanks, so that a second colon begins a source which is
/// not `files` for either.
fn nsswitch_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let (database, rest) = take_until(trim_start(line), |b| b == b':');
    if database.is_empty() || rest.is_empty() {
        return None;
    }
    Some((database, trim_start(&rest[1..])))
}

/// Whether glibc's `nss_action_parse` accepts `sources`: each source
/// optionally followed by `[` `!`? STATUS `=` ACTION ... `]`.
fn actions_well_formed(mut sources: &[u8]) -> bool {
    loop {
        let (name, rest) = take_until(trim_start(sources), |b| b == b'[');
        if name.is_empty() {
            return true; // the end, or a `[` with no source: glibc stops there
        }
        let Some(mut criteria) = trim_start(rest).strip_prefix(b"[") else {
            sources = rest;
            continue;
        };
        loop {
            let body = trim_start(criteria);
            let body = body.strip_prefix(b"!").unwrap_or(body);
            let word = |b| b == b'=' || b == b']';
            let (status, rest) = take_until(body, word);
            let Some(rest) = trim_start(rest).strip_prefix(b"=") else {
                return false;
            };
            let (action, rest) = take_until(trim_start(rest), word);
            let known = |w: &[u8], names: &[&str]| {
                names.iter().any(|n| w.eq_ignore_ascii_case(n.as_bytes()))
            };
            if !known(status, &["SUCCESS", "UNAVAIL", "NOTFOUND", "TRYAGAIN"])
                || !known(action, &["RETURN", "CONTINUE", "MERGE"])
            {
                return false;
            }
            criteria = trim_start(rest);
            if let Some(rest) = criteria.strip_prefix(b"]") {
                sources = rest;
                break;
            }
        }
    }
}

/// The first entry of `uid` in the passwd file `file`, as glibc's `files`
/// source finds it; None when the uid is not there, or when a line before
/// it is one glibc may read otherwise than this strict reading
/// ([`plain_passwd_line`]): the caller then asks getpwuid(3). Comments and
/// empty lines are skipped, as glibc skips them.
fn passwd_file_entry(file: &[u8], uid: u32) -> Option<sys::Passwd> {
    for line in file.split(|&b| b == b'\n') {
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let entry = plain_passwd_line(line)?;
        if entry.uid == uid {
            return Some(sys::Passwd {
                name: entry.name.to_vec(),
                gecos: entry.gecos.to_vec(),
            });
        }
    }
    None
}

/// The fields of a passwd line spoolmail uses.
struct PasswdLine<'a> {
    name: &'a [u8],
    uid: u32,
    gecos: &'a [u8],
}

/// A passwd line read strictly: None for NIS's `+` and `-`, a leading
/// blank, not seven fields, a uid or gid not plain digits of a u32 (glibc
/// skips a line whose gid is no number), a NUL (glibc's line ends there),
/// or a line longer than getpwuid_r's first buffer holds (it may fail
/// with ERANGE on it).
fn plain_passwd_line(line: &[u8]) -> Option<PasswdLine<'_>> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    let number = |field: &[u8]| {
        let digits = !field.is_empty() && field.iter().all(u8::is_ascii_digit);
        digits.then(|| std::str::from_utf8(field).ok()?.parse::<u32>().ok())?
    };
    let plain = fields.len() == 7
        && line.len() + 3 <= crate::limits::LOOKUP_BUFFER_START
        && !c_space(line[0])
        && !matches!(line[0], b'+' | b'-')
        && !line.contains(&0);
    if !plain {
        return None;
    }
    number(fields[3])?;
    Some(PasswdLine {
        name: fields[0],
        uid: number(fields[2])?,
        gecos: fields[4],
    })
}

pub fn current_user() -> Result<User> {
    let uid = sys::getuid();
    let entry = match passwd_entry(uid) {
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
    fn the_passwd_file_is_read_only_where_the_name_service_reads_it_first() {
        for (conf, first) in [
            ("passwd: files\n", true),
            ("passwd:         files systemd\ngroup: files\n", true),
            ("# comment\npasswd:files\n", true),
            ("passwd: files # then nothing\n", true),
            ("passwd: files [NOTFOUND=return] ldap\n", false),
            ("passwd: files [SUCCESS=continue] ldap\n", false),
            ("passwd: sss files\n", false),
            ("passwd: compat\n", false),
            ("passwd: ldap files\n", false),
            ("passwd: Files\n", false),
            ("passwd: files[NOTFOUND=return]\n", false),
            ("#passwd: files\n", false),
            ("group: files\n", false),
            ("passwd: files\npasswd: ldap\n", false),
            ("", false),
            ("passwd: \n", false),
            // glibc's database names are case-sensitive: "Passwd" is none.
            ("Passwd: files\n", false),
        ] {
            assert_eq!(files_first(conf.as_bytes()), first, "{conf:?}");
        }
        assert!(!files_first(b"passwd: files\xff\n"));
    }

    #[test]
    fn nsswitch_conf_is_split_as_glibc_splits_it() {
        for (conf, first) in [
            // The colon is optional; after a second one glibc before 2.33
            // reads a source ":" (2.33 on skips it).
            ("passwd files\n", true),
            ("passwd :: files\n", false),
            ("passwd : files\n", false),
            ("\tpasswd:\x0bfiles\r\n", true),
            // glibc (2.33 on) takes the last of two: this one's ldap.
            ("passwd: files\npasswd ldap\n", false),
            ("passwd: files\npasswd\n", false),
            // No comment mark inside a line: the source is "files#".
            ("passwd: files# [NOTFOUND=return]\n", false),
            ("passwd: files #c\n", true),
            // A NUL ends glibc's line; Unicode spaces are no blanks for it.
            ("passwd: files\0\n", false),
            ("passwd: files\u{a0}ldap\n", false),
            // An action glibc cannot parse makes it refuse the whole file.
            ("passwd: files\nhosts: files [NOTFOUND=retrun] dns\n", false),
            ("passwd: files\nhosts: files [NOTFOUND=return\n", false),
            ("passwd: files\nhosts: files [] dns\n", false),
            (
                "passwd: files\nhosts: files [ !UNAVAIL = return ] dns\n",
                true,
            ),
            (
                "passwd: files\nhosts: mdns4_minimal [NOTFOUND=return]dns\n",
                true,
            ),
        ] {
            assert_eq!(files_first(conf.as_bytes()), first, "{conf:?}");
        }
    }

    #[test]
    fn a_passwd_line_glibc_skips_or_reads_otherwise_is_not_decided_here() {
        let long = format!("carol:x:1002:1002:{}:/:/bin/sh\n", "c".repeat(2 << 20));
        for before in [
            "carol:x:1002:x:Carol:/:/bin/sh\n",
            "carol:x:1002::Carol:/:/bin/sh\n",
            "carol:x:1002:99999999999:Carol:/:/bin/sh\n",
            "\x0bcarol:x:1002:1002::/:/bin/sh\n",
            "car\0ol:x:1002:1002::/:/bin/sh\n",
            &long,
        ] {
            let text = format!("{before}alice:x:1000:1000:A:/home/alice:/bin/sh\n");
            let shown: String = before.chars().take(40).collect();
            assert_eq!(passwd_file_entry(text.as_bytes(), 1000), None, "{shown:?}");
        }
        // glibc's gecos ends at a NUL: not this reading's.
        let nul = b"alice:x:1000:1000:Al\0ice:/home/alice:/bin/sh\n";
        assert_eq!(passwd_file_entry(nul, 1000), None);
        // An uid as glibc would read it, the highest there is.
        let max = b"alice:x:4294967295:0004294967295:A:/:/bin/sh\n";
        assert!(passwd_file_entry(max, u32::MAX).is_some());
    }

    #[test]
    fn a_passwd_line_is_taken_only_as_glibc_would_take_it() {
        let file = b"root:x:0:0:root:/root:/bin/bash\n\
# a comment\n\
\n\
alice:x:1000:1000:Alice Liddell,,,:/home/alice:/bin/bash\n\
toor:x:0:0:second root:/root:/bin/sh\n\
bob:x:01001:1001::/home/bob:/bin/sh\n";
        let entry = |uid| passwd_file_entry(file, uid).map(|e| (e.name, e.gecos));
        let some = |n: &str, g: &str| Some((n.as_bytes().to_vec(), g.as_bytes().to_vec()));
        assert_eq!(entry(0), some("root", "root"), "the first of two");
        assert_eq!(entry(1000), some("alice", "Alice Liddell,,,"));
        assert_eq!(entry(1001), some("bob", ""));
        assert_eq!(entry(1002), None, "not there");
        // A line before the uid that glibc may read otherwise: not decided here.
        for before in [
            "+@nis::::::\n",
            "-bob:x:1001:1001::/:/bin/sh\n",
            " carol:x:1002:1002::/:/bin/sh\n",
            "carol:x:1002:1002::/\n",
            "carol:x:x1:1002::/:/bin/sh\n",
            "carol:x::1002::/:/bin/sh\n",
            "carol:x:99999999999:1002::/:/bin/sh\n",
        ] {
            let text = format!("{before}alice:x:1000:1000:A:/home/alice:/bin/sh\n");
            assert_eq!(passwd_file_entry(text.as_bytes(), 1000), None, "{before:?}");
        }
    }

    #[test]
    fn the_passwd_entry_is_what_getpwuid_returns() {
        // Every uid of this machine's passwd file, and one that is in none.
        let file = std::fs::read(PASSWD_FILE).unwrap_or_default();
        let mut uids: Vec<u32> = file
            .split(|&b| b == b'\n')
            .filter_map(|l| l.split(|&b| b == b':').nth(2))
            .filter_map(|id| std::str::from_utf8(id).ok()?.parse().ok())
            .collect();
        uids.push(4_000_000_007);
        for uid in uids {
            assert_eq!(
                passwd_entry(uid).unwrap(),
                sys::getpwuid(uid).unwrap(),
                "uid {uid}"
            );
        }
    }

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
