//! Every failure spoolmail can report, and the one place where each becomes a
//! sysexits.h exit code. Messages are one line and name the cause.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// sysexits.h codes that callers (cron, PHP, mail clients) understand.
pub mod exit {
    pub const OK: u8 = 0;
    pub const USAGE: u8 = 64;
    pub const DATAERR: u8 = 65;
    pub const NOUSER: u8 = 67;
    pub const CANTCREAT: u8 = 73;
    pub const IOERR: u8 = 74;
    pub const TEMPFAIL: u8 = 75;
    pub const NOPERM: u8 = 77;
    pub const CONFIG: u8 = 78;
}

/// A command-line mistake lexopt finds (an unknown flag, a missing value).
impl From<lexopt::Error> for Error {
    fn from(e: lexopt::Error) -> Error {
        Error::Usage(e.to_string())
    }
}

/// A command-line argument as text: addresses and values are text, so one
/// that is not valid UTF-8 is a usage error naming it.
pub fn arg_text(v: std::ffi::OsString) -> Result<String> {
    v.into_string().map_err(|v| {
        Error::Usage(format!(
            "argument is not valid UTF-8: {}",
            v.to_string_lossy()
        ))
    })
}

#[derive(Debug)]
pub enum Error {
    /// A bad command line: unknown flag, missing value, no recipients.
    Usage(String),
    /// Bad input data: an address with control characters, a malformed header address.
    Data(String),
    /// The message is larger than `max_message_size`.
    TooBig { limit: u64 },
    /// The submitting user cannot be identified.
    NoUser(String),
    /// A configuration file problem, with the line it is on (0: the file as a whole).
    Config {
        file: PathBuf,
        line: usize,
        msg: String,
    },
    /// A file or directory could not be created where spoolmail must create it.
    CantCreate { path: PathBuf, source: io::Error },
    /// An I/O failure while doing `what`.
    Io { what: String, source: io::Error },
    /// A problem that should go away if the caller tries again later.
    TempFail(String),
    /// The spool's file system is short of space (below `queue_min_free`,
    /// or full): temporary, and `452 4.3.1` under `-bs`.
    NoSpace(String),
    /// A permission problem.
    NoPerm(String),
    /// Something spoolmail does not do (yet), asked for explicitly.
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with what was being done, choosing the exit code
    /// from its kind: a full disk is temporary, a refused permission is 77.
    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        let what = what.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace(format!("{what}: {source}")),
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
                Error::NoPerm(format!("{what}: {source}"))
            }
            _ => Error::Io { what, source },
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Unsupported(_) => exit::USAGE,
            Error::Data(_) | Error::TooBig { .. } => exit::DATAERR,
            Error::NoUser(_) => exit::NOUSER,
            Error::Config { .. } => exit::CONFIG,
            Error::CantCreate { .. } => exit::CANTCREAT,
            Error::Io { .. } => exit::IOERR,
            Error::TempFail(_) | Error::NoSpace(_) => exit::TEMPFAIL,
            Error::NoPerm(_) => exit::NOPERM,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Data(m) | Error::NoUser(m) => f.write_str(m),
            Error::TempFail(m) | Error::NoSpace(m) => f.write_str(m),
            Error::NoPerm(m) | Error::Unsupported(m) => f.write_str(m),
            Error::TooBig { limit } => write!(
                f,
                "message is larger than the limit of {limit} bytes (max_message_size)"
            ),
            Error::Config { file, line: 0, msg } => write!(f, "{}: {msg}", file.display()),
            Error::Config { file, line, msg } => write!(f, "{}:{line}: {msg}", file.display()),
            Error::CantCreate { path, source } => {
                write!(f, "cannot create {}: {source}", path.display())
            }
            Error::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for Error {}
