//! `spoolctl`, the binary by its fourth name: the queue's administration
//! (Postfix's `postqueue` and `postsuper`, OpenSMTPD's `smtpctl`). Its
//! command line is its own, parsed here into one `Command`; the commands
//! and options are defined once in `commands.rs`, from which `manual`
//! makes `spoolctl --help` and spoolctl(8).

use crate::config::{Config, parse_duration};
use crate::error::{Error, Result};
use crate::spool::{Envelope, Selector};
use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

mod commands;
mod list;
pub use commands::{COMMANDS, Entry, OPTIONS};

/// The program name that makes the binary spoolctl.
pub const PROGRAM: &str = "spoolctl";

/// What spoolctl is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    /// `list [--json] [SELECTOR]`.
    List {
        json: bool,
        filter: Option<Filter>,
    },
}

/// SELECTOR: which messages, by a part of a recipient or of the sender (in
/// any case, as `sendmail -qR`/`-qS`), or by age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Recipient(String),
    Sender(String),
    OlderThan(Duration),
}

impl Filter {
    /// Whether the message `env` is selected at `now` (Unix seconds).
    pub fn matches(&self, env: &Envelope, now: u64) -> bool {
        match self {
            Filter::Recipient(r) => Selector::Recipient(r.clone()).matches(env),
            Filter::Sender(s) => Selector::Sender(s.clone()).matches(env),
            Filter::OlderThan(d) => now.saturating_sub(env.arrival) >= d.as_secs(),
        }
    }
}

/// A parsed spoolctl command line: the command and `-C FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub command: Command,
    pub config_file: Option<PathBuf>,
}

/// The options seen, before they are checked against the command.
#[derive(Default)]
struct Seen {
    words: Vec<String>,
    json: bool,
    filter: Option<Filter>,
    /// The options given, by name, for the check that the command takes them.
    given: Vec<&'static str>,
    help: bool,
}

/// spoolctl's arguments, after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut config_file = None;
    let mut seen = Seen::default();
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Short('C') => config_file = Some(PathBuf::from(value(&mut parser)?)),
            Short('h') | Long("help") => seen.help = true,
            Long("json") => {
                seen.json = true;
                seen.given.push("--json");
            }
            Long("recipient") => set_filter(&mut seen, Filter::Recipient(value(&mut parser)?))?,
            Long("sender") => set_filter(&mut seen, Filter::Sender(value(&mut parser)?))?,
            Long("older-than") => {
                let v = value(&mut parser)?;
                let d = parse_duration(&v).ok_or_else(|| {
                    Error::Usage(format!("--older-than {v}: not a duration (30m, 4h, 2d)"))
                })?;
                set_filter(&mut seen, Filter::OlderThan(d))?;
            }
            Value(v) => seen.words.push(to_string(v)?),
            Short(c) => return Err(Error::Usage(format!("unknown option -{c} (see --help)"))),
            Long(name) => {
                return Err(Error::Usage(format!(
                    "unknown option --{name} (see --help)"
                )));
            }
        }
    }
    let command = command(seen)?;
    Ok(Parsed {
        command,
        config_file,
    })
}

fn set_filter(seen: &mut Seen, filter: Filter) -> Result<()> {
    if seen.filter.is_some() {
        return Err(Error::Usage(
            "one selector at a time: --recipient, --sender or --older-than".into(),
        ));
    }
    seen.filter = Some(filter);
    seen.given.push("SELECTOR");
    Ok(())
}

/// The command the words name, with the options it takes (any other is a
/// usage error naming it).
fn command(seen: Seen) -> Result<Command> {
    let Some((verb, rest)) = seen.words.split_first() else {
        if seen.help {
            return Ok(Command::Help);
        }
        return Err(Error::Usage("a command is needed (see --help)".into()));
    };
    if seen.help {
        return Ok(Command::Help);
    }
    let takes: &[&str] = match verb.as_str() {
        "list" => &["--json", "SELECTOR"],
        _ => return Err(Error::Usage(format!("unknown command {verb} (see --help)"))),
    };
    if let Some(other) = seen.given.iter().find(|o| !takes.contains(o)) {
        let what = if *other == "SELECTOR" {
            "a selector"
        } else {
            other
        };
        return Err(Error::Usage(format!("{verb} does not take {what}")));
    }
    if let Some(word) = rest.first() {
        return Err(Error::Usage(format!("{verb}: unexpected argument {word}")));
    }
    Ok(Command::List {
        json: seen.json,
        filter: seen.filter,
    })
}

/// Runs a command (other than `Help`, which needs no config).
pub fn run(command: &Command, config: &Config) -> Result<u8> {
    match command {
        Command::Help => unreachable!("handled before the config is read"),
        Command::List { json, filter } => list::list(config, *json, filter.as_ref()),
    }
}

fn usage(e: lexopt::Error) -> Error {
    Error::Usage(e.to_string())
}

fn to_string(v: OsString) -> Result<String> {
    v.into_string().map_err(|v| {
        Error::Usage(format!(
            "argument is not valid UTF-8: {}",
            v.to_string_lossy()
        ))
    })
}

fn value(parser: &mut lexopt::Parser) -> Result<String> {
    to_string(parser.value().map_err(usage)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Parsed> {
        parse(line.split_whitespace().map(OsString::from))
    }

    #[test]
    fn every_documented_command_line_parses() {
        for entry in COMMANDS.iter().chain(OPTIONS) {
            for args in entry.args {
                assert!(p(args).is_ok(), "{args}: {:?}", p(args).err());
            }
        }
    }

    #[test]
    fn list_and_its_options() {
        assert_eq!(
            p("list").unwrap().command,
            Command::List {
                json: false,
                filter: None
            }
        );
        assert_eq!(
            p("-C /x.conf list --json --sender Bob").unwrap(),
            Parsed {
                command: Command::List {
                    json: true,
                    filter: Some(Filter::Sender("Bob".into()))
                },
                config_file: Some("/x.conf".into()),
            }
        );
        assert_eq!(
            p("list --older-than 2h").unwrap().command,
            Command::List {
                json: false,
                filter: Some(Filter::OlderThan(Duration::from_secs(7200)))
            }
        );
        assert_eq!(p("--help").unwrap().command, Command::Help);
        assert_eq!(p("list --help").unwrap().command, Command::Help);
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for line in [
            "",
            "frobnicate",
            "list extra",
            "list --sender a --recipient b",
            "list --older-than soon",
            "list --bogus",
            "list -x",
        ] {
            let e = p(line).unwrap_err();
            assert_eq!(e.exit_code(), 64, "{line}: {e}");
        }
    }

    #[test]
    fn older_than_compares_the_age_with_the_duration() {
        let mut env = crate::spool::Envelope {
            id: crate::model::QueueId::parse("1A2B3C4D5E00F1AB").unwrap(),
            arrival: 1000,
            uid: 0,
            sender: "a@b".into(),
            recipients: Vec::new(),
            ret: None,
            envid: None,
            notify: None,
            body: crate::model::BodyType::SevenBit,
            smtputf8: false,
        };
        let f = Filter::OlderThan(Duration::from_secs(60));
        assert!(f.matches(&env, 1060));
        assert!(!f.matches(&env, 1059));
        env.arrival = 2000;
        assert!(!f.matches(&env, 1060));
    }
}
