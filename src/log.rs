//! Log lines in Postfix's style (`QUEUEID: from=<...>, size=N, nrcpt=M`),
//! which log summarisers already parse, to syslog's mail facility, to stderr
//! where there is no syslog socket (containers), or to a file.

use crate::config::LogTarget;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

enum Sink {
    Syslog(syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>),
    Stderr,
    File(File),
}

pub struct Log {
    tag: String,
    sink: Sink,
}

impl Log {
    /// Opens the configured target; falls back to stderr when syslog or the
    /// file cannot be opened, so that a line is never lost silently.
    pub fn open(target: &LogTarget, tag: &str) -> Log {
        let sink = match target {
            LogTarget::Syslog => {
                let formatter = syslog::Formatter3164 {
                    facility: syslog::Facility::LOG_MAIL,
                    hostname: None,
                    process: tag.to_string(),
                    pid: std::process::id(),
                };
                match syslog::unix(formatter) {
                    Ok(logger) => Sink::Syslog(logger),
                    Err(_) => Sink::Stderr,
                }
            }
            LogTarget::Stderr => Sink::Stderr,
            LogTarget::File(path) => match OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
            {
                Ok(f) => Sink::File(f),
                Err(e) => {
                    crate::system::errln(format_args!(
                        "{tag}: cannot open log file {}: {e}; logging to stderr",
                        path.display()
                    ));
                    Sink::Stderr
                }
            },
        };
        Log {
            tag: tag.to_string(),
            sink,
        }
    }

    pub fn info(&mut self, msg: &str) {
        self.write(msg);
    }

    fn write(&mut self, msg: &str) {
        // Text from outside (addresses, SMTP replies) is logged escaped, so a
        // log line cannot be forged or split.
        let msg = escape_controls(msg);
        let pid = std::process::id();
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

fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}
