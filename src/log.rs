//! Log lines in Postfix's style (`QUEUEID: from=<...>, size=N, nrcpt=M`),
//! which log summarisers already parse, to syslog's mail facility, to stderr
//! or the fallback file where there is no syslog socket (containers), or to
//! a file.

use crate::config::{Config, LogTarget};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

enum Sink {
    Syslog(syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>),
    Stderr,
    File(File),
}

pub struct Log {
    tag: String,
    sink: Sink,
    /// This process's id, asked once (a delivery child logs two lines a
    /// message); a log is not carried across a fork.
    pid: u32,
}

impl Log {
    /// Opens the configured target. Where syslog has no socket, lines go to
    /// stderr in the foreground, and to `log_fallback_file` when stderr
    /// leads nowhere (a detached delivery: /dev/null); where a file cannot
    /// be opened, to stderr: a line is never lost silently.
    pub fn open(config: &Config, tag: &str) -> Log {
        let sink = match &config.log {
            LogTarget::Syslog => match syslog::unix(syslog::Formatter3164 {
                facility: syslog::Facility::LOG_MAIL,
                hostname: None,
                process: tag.to_string(),
                pid: std::process::id(),
            }) {
                Ok(logger) => Sink::Syslog(logger),
                Err(_) if stderr_leads_nowhere() => {
                    file_sink(&config.log_fallback_file, &config.spool_dir, tag)
                }
                Err(_) => Sink::Stderr,
            },
            LogTarget::Stderr => Sink::Stderr,
            LogTarget::File(path) => file_sink(path, &config.spool_dir, tag),
        };
        Log {
            tag: tag.to_string(),
            sink,
            pid: std::process::id(),
        }
    }

    /// True when lines go to stderr (no syslog socket, `log = stderr`):
    /// what is also said on stderr need not be said twice.
    pub fn is_stderr(&self) -> bool {
        matches!(self.sink, Sink::Stderr)
    }

    pub fn info(&mut self, msg: &str) {
        self.write(msg);
    }

    fn write(&mut self, msg: &str) {
        // Text from outside (addresses, SMTP replies) is logged escaped, so a
        // log line cannot be forged or split.
        let msg = escape_controls(msg);
        let pid = self.pid;
        let ok = match &mut self.sink {
            Sink::Syslog(logger) => logger.info(&*msg).is_ok(),
            Sink::File(f) => {
                // One write(2) per line: with O_APPEND, lines of concurrent
                // processes never interleave.
                let stamp = crate::system::mailq_date(crate::system::now().0);
                let line = format!("{stamp} {}[{pid}]: {msg}\n", self.tag);
                f.write_all(line.as_bytes()).is_ok()
            }
            Sink::Stderr => false,
        };
        if !ok {
            let line = format!("{}[{pid}]: {msg}\n", self.tag);
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

fn file_sink(path: &Path, spool: &Path, tag: &str) -> Sink {
    match open_shared(path, spool) {
        Ok(f) => Sink::File(f),
        Err(e) => {
            crate::system::errln(format_args!(
                "{tag}: cannot open log file {}: {e}; logging to stderr",
                path.display()
            ));
            Sink::Stderr
        }
    }
}

/// Opens a log file for appending. One this call creates is made mode 0660
/// with the spool's group, whoever creates it: every user's deliveries run
/// with that group, so all of them can append (with the umask's 0640 and
/// the first writer's group, the lines of every other user went to their
/// own stderr: cron mail, PHP's error log).
fn open_shared(path: &Path, spool: &Path) -> std::io::Result<File> {
    let open = |create: bool| {
        OpenOptions::new()
            .append(true)
            .create_new(create)
            .mode(0o660)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    // The file exists at nearly every start: open it first, create it only
    // when it is missing (one failing system call fewer per submission).
    match open(false) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        other => return other,
    }
    match open(true) {
        Ok(f) => {
            if let Ok(dir) = std::fs::metadata(spool) {
                // Only root may give a file away; others' egid is the spool's group already.
                let _ = std::os::unix::fs::fchown(&f, None, Some(dir.gid()));
            }
            let _ = f.set_permissions(std::fs::Permissions::from_mode(0o660));
            Ok(f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => open(false),
        Err(e) => Err(e),
    }
}

/// True when stderr is /dev/null (a detached delivery, a caller that
/// closed it): a line written there would be lost.
fn stderr_leads_nowhere() -> bool {
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return true;
    };
    match (File::from(fd).metadata(), std::fs::metadata("/dev/null")) {
        (Ok(err), Ok(null)) => err.file_type().is_char_device() && err.rdev() == null.rdev(),
        _ => false,
    }
}

/// A log line shows what it was given, but no control character and no
/// Unicode format or separator character (bidi overrides, U+2028) can
/// reorder or break what a reader of the log sees: those are escaped, as
/// `\u{1b}` and `<U+202E>`. Text from servers (policies, token endpoints)
/// reaches log lines.
fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    use crate::model::is_format_or_separator;
    if !s
        .chars()
        .any(|c| c.is_control() || is_format_or_separator(c))
    {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else if is_format_or_separator(c) {
            out.push_str(&format!("<U+{:04X}>", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn a_log_line_shows_no_control_or_bidi_character_raw() {
        for (given, shown) in [
            ("plain text", "plain text"),
            (
                "bell\u{7} and escape\u{1b}[31m",
                "bell\\u{7} and escape\\u{1b}[31m",
            ),
            ("mode: \u{202e}ecrofne", "mode: <U+202E>ecrofne"),
            ("a\u{2028}b\u{2066}c", "a<U+2028>b<U+2066>c"),
            ("caf\u{e9} \u{65e5}\u{672c}", "caf\u{e9} \u{65e5}\u{672c}"),
        ] {
            assert_eq!(escape_controls(given), shown, "{given:?}");
        }
    }
}
