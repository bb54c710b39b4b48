//! `spoolctl`, the binary by its fourth name: the queue's administration
//! (Postfix's `postqueue` and `postsuper`, OpenSMTPD's `smtpctl`). Its
//! command line is its own, parsed here into one `Command`; the commands
//! and options are defined once in `commands.rs`, from which `manual`
//! makes `spoolctl --help` and spoolctl(8).

use crate::config::{Config, parse_duration};
use crate::error::{Error, Result, arg_text};
use crate::spool::{Envelope, Selector};
use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

mod act;
mod check;
mod commands;
mod dkim_check;
mod keygen;
mod list;
mod settings;
mod show;
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
    /// `show ID [--body]`.
    Show {
        id: String,
        body: bool,
    },
    /// `delete|hold|release|retry ID... | --all | SELECTOR`.
    Act {
        action: Action,
        target: Target,
    },
    /// `config [--all]`.
    Config {
        all: bool,
    },
    /// `check`.
    Check,
    /// `dkim-check`.
    DkimCheck,
    /// `dkim-keygen DOMAIN SELECTOR [--ed25519]`.
    DkimKeygen {
        domain: String,
        selector: String,
        ed25519: bool,
    },
    /// `oauth2 authorize`: the device flow that gets the first refresh
    /// token (run by `app`, as delivery's OAuth2 is not the queue's).
    OAuth2Authorize,
}

/// What `spoolctl` does to the messages it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Removed for good, logged, no bounce.
    Delete,
    /// Neither delivered nor expired until released.
    Hold,
    Release,
    /// Due at the next queue run, whatever the schedule.
    Retry,
}

impl Action {
    fn of(verb: &str) -> Option<Action> {
        Some(match verb {
            "delete" => Action::Delete,
            "hold" => Action::Hold,
            "release" => Action::Release,
            "retry" => Action::Retry,
            _ => return None,
        })
    }
}

/// The messages an action is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Queue ids, as given (an unknown one is an error naming it).
    Ids(Vec<String>),
    All,
    Filter(Filter),
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
    body: bool,
    all: bool,
    ed25519: bool,
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
    while let Some(arg) = parser.next()? {
        match arg {
            Short('C') => config_file = Some(PathBuf::from(value(&mut parser)?)),
            Short('h') | Long("help") => seen.help = true,
            Long("json") => {
                seen.json = true;
                seen.given.push("--json");
            }
            Long("body") => {
                seen.body = true;
                seen.given.push("--body");
            }
            Long("all") => {
                seen.all = true;
                seen.given.push("--all");
            }
            Long("ed25519") => {
                seen.ed25519 = true;
                seen.given.push("--ed25519");
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
            Value(v) => seen.words.push(arg_text(v)?),
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
    let action = Action::of(verb);
    let takes: &[&str] = match verb.as_str() {
        "list" => &["--json", "SELECTOR"],
        "show" => &["--body"],
        "config" => &["--all"],
        "check" | "oauth2" | "dkim-check" => &[],
        "dkim-keygen" => &["--ed25519"],
        _ if action.is_some() => &["--all", "SELECTOR"],
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
    match (verb.as_str(), action, rest) {
        ("list", _, []) => Ok(Command::List {
            json: seen.json,
            filter: seen.filter,
        }),
        ("show", _, [id]) => Ok(Command::Show {
            id: id.clone(),
            body: seen.body,
        }),
        ("show", _, _) => Err(Error::Usage("show takes one queue id".into())),
        ("config", _, []) => Ok(Command::Config { all: seen.all }),
        ("check", _, []) => Ok(Command::Check),
        ("dkim-check", _, []) => Ok(Command::DkimCheck),
        ("dkim-keygen", _, [domain, selector]) => Ok(Command::DkimKeygen {
            domain: domain.clone(),
            selector: selector.clone(),
            ed25519: seen.ed25519,
        }),
        ("dkim-keygen", _, _) => Err(Error::Usage(
            "dkim-keygen takes a domain and a selector".into(),
        )),
        ("oauth2", _, [sub]) if sub == "authorize" => Ok(Command::OAuth2Authorize),
        ("oauth2", _, _) => Err(Error::Usage("oauth2 takes one word: authorize".into())),
        (_, Some(action), ids) => Ok(Command::Act {
            action,
            target: target(verb, ids, seen.all, seen.filter)?,
        }),
        (_, _, rest) => Err(Error::Usage(format!(
            "{verb}: unexpected argument {}",
            rest.join(" ")
        ))),
    }
}

/// An action's messages: ids, `--all` or a selector, exactly one of them.
fn target(verb: &str, ids: &[String], all: bool, filter: Option<Filter>) -> Result<Target> {
    match (ids.is_empty(), all, filter) {
        (false, false, None) => Ok(Target::Ids(ids.to_vec())),
        (true, true, None) => Ok(Target::All),
        (true, false, Some(f)) => Ok(Target::Filter(f)),
        (true, false, None) => Err(Error::Usage(format!(
            "{verb} needs queue ids, --all or a selector"
        ))),
        _ => Err(Error::Usage(format!(
            "{verb}: queue ids, --all or a selector, one of them"
        ))),
    }
}

/// Runs a command (other than `Help`, which needs no config); `file` is
/// the config file `-C` named.
pub fn run(command: &Command, config: &Config, file: Option<&std::path::Path>) -> Result<u8> {
    match command {
        Command::Help => unreachable!("handled before the config is read"),
        Command::OAuth2Authorize => unreachable!("run by app"),
        Command::List { json, filter } => list::list(config, *json, filter.as_ref()),
        Command::Show { id, body } => show::show(config, id, *body),
        Command::Act { action, target } => act::act(config, *action, target),
        Command::Config { all } => settings::show(config, file, *all),
        Command::Check => check::check(config),
        Command::DkimCheck => dkim_check::dkim_check(config, file),
        Command::DkimKeygen {
            domain,
            selector,
            ed25519,
        } => keygen::keygen(config, file, (domain, selector), *ed25519),
    }
}

fn value(parser: &mut lexopt::Parser) -> Result<String> {
    arg_text(parser.value()?)
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
        assert_eq!(
            p("config --all").unwrap().command,
            Command::Config { all: true }
        );
        assert_eq!(
            p("show 6A3F2C1B0A1B2C3D --body").unwrap().command,
            Command::Show {
                id: "6A3F2C1B0A1B2C3D".into(),
                body: true
            }
        );
        assert_eq!(
            p("hold A B").unwrap().command,
            Command::Act {
                action: Action::Hold,
                target: Target::Ids(vec!["A".into(), "B".into()])
            }
        );
        assert_eq!(
            p("delete --all").unwrap().command,
            Command::Act {
                action: Action::Delete,
                target: Target::All
            }
        );
        assert_eq!(
            p("retry --recipient x@").unwrap().command,
            Command::Act {
                action: Action::Retry,
                target: Target::Filter(Filter::Recipient("x@".into()))
            }
        );
        assert_eq!(p("list --help").unwrap().command, Command::Help);
        assert_eq!(p("dkim-check").unwrap().command, Command::DkimCheck);
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
            "list --all",
            "list --body",
            "show",
            "show A B",
            "show A --all",
            "delete",
            "delete A --all",
            "hold --all --sender x",
            "release --json A",
            "config x",
            "config --json",
            "check --all",
            "check x",
            "dkim-check example.org",
            "dkim-check --all",
            "dkim-keygen",
            "dkim-keygen example.org",
            "dkim-keygen example.org s1 extra",
            "dkim-keygen example.org s1 --all",
            "list --ed25519",
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
            notice: false,
        };
        let f = Filter::OlderThan(Duration::from_secs(60));
        assert!(f.matches(&env, 1060));
        assert!(!f.matches(&env, 1059));
        env.arrival = 2000;
        assert!(!f.matches(&env, 1060));
    }
}
