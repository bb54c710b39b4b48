//! The sendmail command line, as Postfix's and Sendmail's `sendmail` accept it,
//! turned into one `Invocation`. Nothing else in spoolmail looks at argv.
//!
//! Rule: a flag that spoolmail cannot honour is accepted and noted (shown
//! under `-v`), so that no caller breaks; an unknown flag is a usage error.

use crate::address;
use crate::config::{DeliveryMode, parse_duration};
use crate::error::{Error, Result, arg_text};
use crate::limits;
use crate::model::{BodyType, Notify, Ret};
use crate::spool::Selector;
use crate::submit::{self, Origin, Submission};
use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

mod flags;
pub use flags::{FLAGS, Flag, Section};

/// What the run is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Read a message on stdin and queue it (`-bm`, the default).
    Submit,
    /// List the queue (`-bp`, or run as `mailq`).
    ListQueue,
    /// SMTP on stdin/stdout (`-bs`).
    SmtpStdio,
    /// Check the aliases file (`-bi`, `-I`, or run as `newaliases`).
    Newaliases,
    /// Show where addresses would go (`-bv`).
    Verify,
    /// One dequeue pass, or one every `interval` (`-q`, `-q30m`, `-qR...`).
    QueueRun {
        interval: Option<Duration>,
        select: Option<Selector>,
    },
    Help,
    Version,
    /// `--generate WHAT` (hidden): print generated documentation.
    Generate(Generated),
    /// Run as `spoolctl`: the queue's administration.
    Control(crate::ctl::Command),
}

/// What `--generate` prints, each generated from `FLAGS` and config's `KEYS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    /// spoolmail(8).
    Man,
    /// spoolmail.conf(5).
    ConfMan,
    /// The commented default config file (doc/spoolmail.conf).
    Conf,
    /// The README's config reference.
    ConfReference,
    /// The README's table of flags.
    FlagReference,
    /// spoolctl(8).
    CtlMan,
    /// The README's table of spoolctl's commands and options.
    CtlReference,
}

impl Generated {
    pub const ALL: [(&str, Generated); 7] = [
        ("man", Generated::Man),
        ("conf-man", Generated::ConfMan),
        ("conf", Generated::Conf),
        ("conf-reference", Generated::ConfReference),
        ("flag-reference", Generated::FlagReference),
        ("ctl-man", Generated::CtlMan),
        ("ctl-reference", Generated::CtlReference),
    ];
}

/// How errors found during an interactive delivery are reported (`-oeX`/`-eX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorMode {
    Mail,
    Print,
    Quiet,
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub mode: Mode,
    /// `-t`: recipients from the To, Cc and Bcc headers, added to argv's.
    pub extract_recipients: bool,
    /// `-i`/`-oi`: a line holding a single dot does not end the message.
    pub ignore_dots: bool,
    /// `-f`/`-r`: the envelope sender, as given.
    pub sender: Option<String>,
    /// `-F`: the full name for an added From header.
    pub full_name: Option<String>,
    pub recipients: Vec<String>,
    /// `-C`: another configuration file.
    pub config_file: Option<PathBuf>,
    pub delivery_mode: Option<DeliveryMode>,
    pub error_mode: Option<ErrorMode>,
    pub body_type: Option<BodyType>,
    /// `-N`: DSN NOTIFY for every recipient.
    pub notify: Option<Notify>,
    /// `-R`: DSN RET.
    pub ret: Option<Ret>,
    /// `-V`: DSN ENVID.
    pub envid: Option<String>,
    /// `-L`: the syslog tag.
    pub log_tag: Option<String>,
    pub verbose: bool,
    /// Flags accepted but not honoured, explained under `-v`.
    pub notes: Vec<String>,
}

impl Invocation {
    fn new(mode: Mode) -> Invocation {
        Invocation {
            mode,
            extract_recipients: false,
            ignore_dots: false,
            sender: None,
            full_name: None,
            recipients: Vec::new(),
            config_file: None,
            delivery_mode: None,
            error_mode: None,
            body_type: None,
            notify: None,
            ret: None,
            envid: None,
            log_tag: None,
            verbose: false,
            notes: Vec::new(),
        }
    }

    /// What to submit, as the flags and arguments say: the command line's
    /// end of the submission stack (submit never looks at an `Invocation`).
    pub fn submission(&self, origin: &Origin) -> Result<Submission> {
        let mut recipients = Vec::new();
        for arg in &self.recipients {
            recipients.extend(address::parse_argument(arg)?);
        }
        Ok(Submission {
            sender: submit::envelope_sender(self.sender.as_deref(), origin)?,
            recipients,
            extract_recipients: self.extract_recipients,
            ignore_dots: self.ignore_dots,
            full_name: (self.full_name.as_deref())
                .map(submit::check_full_name)
                .transpose()?,
            body_type: self.body_type,
            ret: self.ret,
            envid: self.envid.clone(),
            notify: self.notify,
            extra_headers: String::new(),
        })
    }

    /// The delivery mode: `-odX`, else the config's. `-v` delivers in the
    /// foreground, as Sendmail's does, so that its conversation can be
    /// shown; only queuing (`-odq`) stays as it is.
    pub fn delivery_mode(&self, configured: DeliveryMode) -> DeliveryMode {
        match self.delivery_mode.unwrap_or(configured) {
            DeliveryMode::Background if self.verbose => DeliveryMode::Interactive,
            mode => mode,
        }
    }

    fn ignore(&mut self, flag: &str, why: &str) {
        self.notes.push(format!("ignoring {flag}: {why}"));
    }
}

/// The mode implied by the name the binary was run as.
pub fn mode_for_program(argv0: &str) -> Mode {
    let name = argv0.rsplit('/').next().unwrap_or(argv0);
    match name {
        "mailq" => Mode::ListQueue,
        "newaliases" => Mode::Newaliases,
        crate::ctl::PROGRAM => Mode::Control(crate::ctl::Command::Help),
        _ => Mode::Submit,
    }
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation> {
    let mut args = args.into_iter();
    let argv0 = args.next().map(arg_text).transpose()?.unwrap_or_default();
    let mut inv = Invocation::new(mode_for_program(&argv0));
    if let Mode::Control(_) = inv.mode {
        // spoolctl's command line is its own.
        let parsed = crate::ctl::parse(args)?;
        inv.mode = Mode::Control(parsed.command);
        inv.config_file = parsed.config_file;
        return Ok(inv);
    }
    parse_flags(inv, args)
}

/// sendmail's flags and arguments, after the program name.
fn parse_flags(mut inv: Invocation, args: impl Iterator<Item = OsString>) -> Result<Invocation> {
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        match arg {
            Short('t') => inv.extract_recipients = true,
            Short('i') => inv.ignore_dots = true,
            Short('v') => inv.verbose = true,
            Short('f') | Short('r') => inv.sender = Some(value(&mut parser)?),
            Short('F') => inv.full_name = Some(value(&mut parser)?),
            Short('C') => inv.config_file = Some(PathBuf::from(value(&mut parser)?)),
            Short('b') => set_b_mode(&mut inv, &value(&mut parser)?)?,
            Short('I') => inv.mode = Mode::Newaliases,
            Short('q') => parse_queue_flag(&mut inv, &mut parser)?,
            Short('o') => parse_o_option(&mut inv, &value(&mut parser)?)?,
            Short('e') => inv.error_mode = Some(error_mode(&value(&mut parser)?, "-e")?),
            Short('B') => inv.body_type = Some(body_type(&value(&mut parser)?)?),
            Short('N') => inv.notify = Some(notify(&value(&mut parser)?)?),
            Short('R') => inv.ret = Some(ret(&value(&mut parser)?)?),
            Short('V') => inv.envid = Some(envid(&value(&mut parser)?)?),
            Short('L') => inv.log_tag = Some(log_tag(&value(&mut parser)?)?),
            Short('h') => {
                let v = value(&mut parser)?;
                inv.ignore(
                    &format!("-h {v}"),
                    "hop counts are taken from Received headers",
                );
            }
            Short('O') => {
                let v = value(&mut parser)?;
                inv.ignore(&format!("-O {v}"), "Sendmail options are not used");
            }
            Short('X') => {
                let v = value(&mut parser)?;
                inv.ignore(
                    &format!("-X {v}"),
                    "no traffic log is written to a caller's file",
                );
            }
            Short('A') => {
                let v = value(&mut parser)?;
                inv.ignore(&format!("-A{v}"), "there is only one configuration");
            }
            Short('p') => {
                let v = value(&mut parser)?;
                inv.ignore(
                    &format!("-p {v}"),
                    "the protocol is always recorded as local",
                );
            }
            Short('d') => {
                let v = value(&mut parser)?;
                inv.ignore(
                    &format!("-d{v}"),
                    "Sendmail debugging is not available; use -v",
                );
            }
            Short('M') => {
                let v = value(&mut parser)?;
                inv.ignore(&format!("-M{v}"), "Sendmail macros are not used");
            }
            Short(c @ ('G' | 'U' | 'm' | 'n' | 's' | 'x')) => {
                inv.ignore(&format!("-{c}"), "no effect in spoolmail");
            }
            Long("help") => inv.mode = Mode::Help,
            Long("version") => inv.mode = Mode::Version,
            Long("generate") => inv.mode = Mode::Generate(generated(&value(&mut parser)?)?),
            Value(v) => inv.recipients.push(arg_text(v)?),
            Short(c) => return Err(Error::Usage(format!("unknown option -{c} (see --help)"))),
            Long(name) => {
                return Err(Error::Usage(format!(
                    "unknown option --{name} (see --help)"
                )));
            }
        }
    }
    Ok(inv)
}

fn generated(v: &str) -> Result<Generated> {
    (Generated::ALL.iter().find(|(name, _)| *name == v))
        .map(|(_, what)| *what)
        .ok_or_else(|| Error::Usage(format!("--generate {v}: unknown document")))
}

fn value(parser: &mut lexopt::Parser) -> Result<String> {
    arg_text(parser.value()?)
}

fn set_b_mode(inv: &mut Invocation, v: &str) -> Result<()> {
    inv.mode = match v {
        "m" => Mode::Submit,
        "p" => Mode::ListQueue,
        "s" => Mode::SmtpStdio,
        "i" => Mode::Newaliases,
        "v" => Mode::Verify,
        "d" | "D" => {
            return Err(Error::Unsupported(format!(
                "-b{v}: spoolmail runs no daemon; queue runs come from `sendmail -q` in cron or `sendmail -q30m`"
            )));
        }
        "t" | "h" | "H" | "a" | "l" | "P" => {
            return Err(Error::Unsupported(format!(
                "-b{v} is a Sendmail mode that spoolmail does not have"
            )));
        }
        _ => return Err(Error::Usage(format!("unknown mode -b{v} (see --help)"))),
    };
    Ok(())
}

/// `-q`, `-q30m`, `-q5`, `-qRsubstr`, `-qR substr`, `-qSsubstr`, `-qIqueueid`.
fn parse_queue_flag(inv: &mut Invocation, parser: &mut lexopt::Parser) -> Result<()> {
    let attached = parser.optional_value().map(arg_text).transpose()?;
    let mut interval = None;
    let mut select = None;
    if let Some(v) = attached {
        let (kind, rest) = v.split_at(v.chars().next().map_or(0, char::len_utf8));
        match kind {
            "R" | "S" | "I" => select = Some(selector(kind, rest, parser)?),
            "f" | "p" => inv.ignore(
                &format!("-q{v}"),
                "queue runs always run in the foreground once",
            ),
            _ => interval = Some(queue_interval(&v)?),
        }
    }
    inv.mode = Mode::QueueRun { interval, select };
    Ok(())
}

/// `-qR TEXT` (or `-qRTEXT`), `-qS TEXT`, `-qI TEXT`.
fn selector(kind: &str, rest: &str, parser: &mut lexopt::Parser) -> Result<Selector> {
    let what = if rest.is_empty() {
        let Ok(next) = parser.value() else {
            return Err(Error::Usage(format!(
                "-q{kind} needs TEXT, a part of the messages' {} (-qR@ selects every message)",
                match kind {
                    "R" => "recipients",
                    "S" => "senders",
                    _ => "queue ids",
                }
            )));
        };
        arg_text(next)?
    } else {
        rest.to_string()
    };
    Ok(match kind {
        "R" => Selector::Recipient(what),
        "S" => Selector::Sender(what),
        _ => Selector::QueueId(what),
    })
}

/// `-qDURATION`: a bare number is minutes, as in Sendmail (`-q5`), else
/// a duration with its unit (`-q30s`, `-q1h`).
fn queue_interval(v: &str) -> Result<Duration> {
    let minutes = v.bytes().all(|b| b.is_ascii_digit());
    let parsed = if minutes {
        v.parse::<u64>()
            .ok()
            .and_then(|m| m.checked_mul(60))
            .map(Duration::from_secs)
    } else {
        parse_duration(v)
    };
    parsed.ok_or_else(|| {
        Error::Usage(format!(
            "-q{v}: not a duration (5 for minutes, 30s, 30m, 1h) or R/S/I selector"
        ))
    })
}

/// `-oi`, `-odb`, `-oem`, and any other `-oX`, ignored with a note.
fn parse_o_option(inv: &mut Invocation, v: &str) -> Result<()> {
    match v.as_bytes() {
        [b'i'] => inv.ignore_dots = true,
        [b'd', m] => {
            inv.delivery_mode = Some(match m {
                b'b' => DeliveryMode::Background,
                b'i' => DeliveryMode::Interactive,
                b'q' | b'd' => DeliveryMode::Queue,
                _ => {
                    return Err(Error::Usage(format!(
                        "-o{v}: delivery mode must be b, i or q"
                    )));
                }
            })
        }
        [b'e', ..] => inv.error_mode = Some(error_mode(&v[1..], "-oe")?),
        _ => inv.ignore(&format!("-o{v}"), "Sendmail option not used by spoolmail"),
    }
    Ok(())
}

fn error_mode(v: &str, flag: &str) -> Result<ErrorMode> {
    Ok(match v {
        "m" => ErrorMode::Mail,
        "p" => ErrorMode::Print,
        "q" => ErrorMode::Quiet,
        "w" => ErrorMode::Write,
        "e" => ErrorMode::Mail, // Berknet "error to sender", treated as -oem
        _ => {
            return Err(Error::Usage(format!(
                "{flag}{v}: error mode must be m, p, q or w"
            )));
        }
    })
}

fn body_type(v: &str) -> Result<BodyType> {
    BodyType::parse(v)
        .ok_or_else(|| Error::Usage(format!("-B {v}: body type must be 7BIT or 8BITMIME")))
}

fn notify(v: &str) -> Result<Notify> {
    Notify::parse(v).ok_or_else(|| {
        Error::Usage(format!(
            "-N {v}: must be never, or a comma list of success, failure, delay"
        ))
    })
}

fn ret(v: &str) -> Result<Ret> {
    Ret::parse(v).ok_or_else(|| Error::Usage(format!("-R {v}: must be full or hdrs")))
}

/// ENVID travels in MAIL FROM as xtext: printable ASCII without spaces, at most 100 octets (RFC 3461).
fn envid(v: &str) -> Result<String> {
    if v.is_empty() || v.len() > limits::MAX_ENVID_LEN || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Usage(format!(
            "-V {}: an envelope id is 1 to 100 printable ASCII characters without spaces",
            v.escape_debug()
        )));
    }
    Ok(v.to_string())
}

fn log_tag(v: &str) -> Result<String> {
    if v.is_empty() || v.len() > limits::MAX_LOG_TAG_LEN || !v.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::Usage(format!(
            "-L {}: a log tag is 1 to 32 printable characters",
            v.escape_debug()
        )));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn attached_and_detached_values() {
        let a = p(&["sendmail", "-fme@x", "-FCronDaemon", "bob"]).unwrap();
        let b = p(&["sendmail", "-f", "me@x", "-F", "CronDaemon", "bob"]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.sender.as_deref(), Some("me@x"));
        assert_eq!(a.full_name.as_deref(), Some("CronDaemon"));
        assert_eq!(a.recipients, vec!["bob"]);
    }

    #[test]
    fn debian_cron_invocation() {
        let inv = p(&[
            "sendmail",
            "-FCronDaemon",
            "-i",
            "-B8BITMIME",
            "-oem",
            "root",
        ])
        .unwrap();
        assert!(inv.ignore_dots);
        assert_eq!(inv.body_type, Some(BodyType::EightBitMime));
        assert_eq!(inv.error_mode, Some(ErrorMode::Mail));
        assert_eq!(inv.recipients, vec!["root"]);
    }

    #[test]
    fn cronie_invocation() {
        let inv = p(&[
            "sendmail",
            "-FCronDaemon",
            "-i",
            "-odi",
            "-oem",
            "-oi",
            "-t",
            "-f",
            "root",
        ])
        .unwrap();
        assert!(inv.extract_recipients && inv.ignore_dots);
        assert_eq!(inv.delivery_mode, Some(DeliveryMode::Interactive));
        assert_eq!(inv.sender.as_deref(), Some("root"));
        assert!(inv.recipients.is_empty());
    }

    #[test]
    fn double_dash_ends_options() {
        let inv = p(&["sendmail", "-oem", "-oi", "--", "-weird@x", "b@y"]).unwrap();
        assert_eq!(inv.recipients, vec!["-weird@x", "b@y"]);
    }

    #[test]
    fn q_does_not_swallow_next_argument() {
        let inv = p(&["sendmail", "-q", "-v"]).unwrap();
        assert_eq!(
            inv.mode,
            Mode::QueueRun {
                interval: None,
                select: None
            }
        );
        assert!(inv.verbose);
        let inv = p(&["sendmail", "-q30m"]).unwrap();
        assert_eq!(
            inv.mode,
            Mode::QueueRun {
                interval: Some(Duration::from_secs(1800)),
                select: None
            }
        );
    }

    #[test]
    fn q_selectors_attached_and_detached() {
        for args in [&["sendmail", "-qR@"][..], &["sendmail", "-qR", "@"][..]] {
            let inv = p(args).unwrap();
            assert_eq!(
                inv.mode,
                Mode::QueueRun {
                    interval: None,
                    select: Some(Selector::Recipient("@".into()))
                }
            );
        }
        let inv = p(&["sendmail", "-qSalice"]).unwrap();
        assert_eq!(
            inv.mode,
            Mode::QueueRun {
                interval: None,
                select: Some(Selector::Sender("alice".into()))
            }
        );
        let inv = p(&["sendmail", "-qIABC"]).unwrap();
        assert_eq!(
            inv.mode,
            Mode::QueueRun {
                interval: None,
                select: Some(Selector::QueueId("ABC".into()))
            }
        );
    }

    #[test]
    fn modes_and_program_names() {
        assert_eq!(p(&["/usr/bin/mailq"]).unwrap().mode, Mode::ListQueue);
        assert_eq!(p(&["newaliases"]).unwrap().mode, Mode::Newaliases);
        assert_eq!(p(&["sendmail", "-bp"]).unwrap().mode, Mode::ListQueue);
        assert_eq!(p(&["sendmail", "-bs"]).unwrap().mode, Mode::SmtpStdio);
        assert_eq!(p(&["sendmail", "-bi"]).unwrap().mode, Mode::Newaliases);
        assert_eq!(p(&["sendmail", "-I"]).unwrap().mode, Mode::Newaliases);
        assert_eq!(p(&["spoolmail", "--version"]).unwrap().mode, Mode::Version);
        assert_eq!(p(&["sendmail", "-bd"]).unwrap_err().exit_code(), 64);
    }

    #[test]
    fn ignored_flags_are_noted_not_fatal() {
        let inv = p(&[
            "sendmail",
            "-Ac",
            "-Am",
            "-G",
            "-U",
            "-h",
            "5",
            "-O",
            "DeliveryMode=b",
            "-X",
            "/tmp/log",
            "-oQ/tmp",
            "-m",
            "-L",
            "tag",
            "-v",
            "a@b",
        ])
        .unwrap();
        assert_eq!(inv.notes.len(), 9, "{:?}", inv.notes);
        assert_eq!(inv.log_tag.as_deref(), Some("tag"));
        assert_eq!(inv.recipients, vec!["a@b"]);
    }

    #[test]
    fn error_modes_both_spellings() {
        for (flag, mode) in [
            ("-em", ErrorMode::Mail),
            ("-oep", ErrorMode::Print),
            ("-eq", ErrorMode::Quiet),
            ("-oew", ErrorMode::Write),
        ] {
            assert_eq!(p(&["sendmail", flag]).unwrap().error_mode, Some(mode));
        }
    }

    #[test]
    fn dsn_flags_validated() {
        let inv = p(&[
            "sendmail",
            "-N",
            "success,failure",
            "-R",
            "hdrs",
            "-V",
            "abc123",
        ])
        .unwrap();
        assert_eq!(
            inv.notify.map(|n| n.to_string()).as_deref(),
            Some("SUCCESS,FAILURE")
        );
        assert_eq!(inv.ret, Some(Ret::Hdrs));
        assert_eq!(inv.envid.as_deref(), Some("abc123"));
        assert!(p(&["sendmail", "-N", "never,success"]).is_err());
        assert!(p(&["sendmail", "-V", "a b"]).is_err());
        assert!(p(&["sendmail", "-V", "a\r\nRCPT TO:<x>"]).is_err());
    }

    /// The reference and the parser agree: every letter `parse` takes is in
    /// `FLAGS`, and every use `FLAGS` shows parses.
    #[test]
    fn every_flag_is_documented_and_every_documented_flag_parses() {
        let documented = |c: char| FLAGS.iter().any(|f| f.synopsis.contains(&format!("`-{c}")));
        for c in ('a'..='z').chain('A'..='Z').chain('0'..='9') {
            let flag = format!("-{c}");
            let unknown = match p(&["sendmail", &flag, "x"]) {
                Err(e) => e.to_string().contains("unknown option"),
                Ok(_) => false,
            };
            assert_eq!(
                !unknown,
                documented(c),
                "{flag}: parsed and documented differ"
            );
        }
        for flag in FLAGS {
            let mut args = vec!["sendmail"];
            args.extend(flag.args);
            if let Err(e) = p(&args) {
                // Sendmail's daemon and test modes are refused, knowingly.
                assert_eq!(e.exit_code(), 64, "{args:?}: {e}");
                assert!(!e.to_string().contains("unknown"), "{args:?}: {e}");
                assert!(flag.doc.contains("refused"), "{args:?}: {e}");
            }
        }
    }

    /// `-qN` is N minutes, as in Sendmail; units as before.
    #[test]
    fn queue_intervals() {
        let minutes = |m: u64| Some(Duration::from_secs(60 * m));
        for (arg, want) in [
            ("-q5", minutes(5)),
            ("-q0", minutes(0)),
            ("-q30m", minutes(30)),
            ("-q1h", minutes(60)),
            ("-q30s", Some(Duration::from_secs(30))),
            ("-q2d", minutes(2 * 24 * 60)),
        ] {
            let mode = p(&["sendmail", arg]).unwrap().mode;
            let want = Mode::QueueRun {
                interval: want,
                select: None,
            };
            assert_eq!(mode, want, "{arg}");
        }
        for bad in ["-q5x", "-q99999999999999999999", "-q-1"] {
            let e = p(&["sendmail", bad]).unwrap_err();
            assert!(e.to_string().starts_with(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn a_selector_without_text_names_itself() {
        for (flag, what) in [
            ("-qR", "recipients"),
            ("-qS", "senders"),
            ("-qI", "queue ids"),
        ] {
            let e = p(&["sendmail", flag]).unwrap_err();
            assert_eq!(e.exit_code(), 64);
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("{flag} needs TEXT")), "{msg}");
            assert!(msg.contains(what), "{msg}");
        }
    }

    /// `-v` delivers in the foreground, as Sendmail's does; `-odq` still
    /// only queues.
    #[test]
    fn verbose_delivers_in_the_foreground() {
        use DeliveryMode::*;
        for (args, configured, want) in [
            (&["sendmail", "-v"][..], Background, Interactive),
            (&["sendmail", "-v", "-odb"][..], Queue, Interactive),
            (&["sendmail", "-v"][..], Queue, Queue),
            (&["sendmail", "-v", "-odq"][..], Background, Queue),
            (&["sendmail"][..], Background, Background),
            (&["sendmail", "-odi"][..], Background, Interactive),
        ] {
            assert_eq!(p(args).unwrap().delivery_mode(configured), want, "{args:?}");
        }
    }

    #[test]
    fn unknown_flag_names_it() {
        let e = p(&["sendmail", "-Z"]).unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().contains("-Z"), "{e}");
        assert!(p(&["sendmail", "-f"]).is_err());
    }
}
