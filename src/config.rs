//! The configuration file: one `key = value` a line, `#` comments, embedded
//! defaults for every key, and `FILE:LINE:` on every error.

use crate::error::{Error, Result};
use crate::limits;
use crate::model::{
    Address, Destination, DkimKey, RelayLimits, SenderPattern, SenderRelay, choose_sender_relay,
};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod relay_map;
pub use relay_map::parse_relay_map;

/// The config file read without `-C`. Set at build time with
/// `SPOOLMAIL_CONFIG=/path cargo build` (as scripts/install.sh does for a
/// private prefix), never from the run-time environment, which a caller of a
/// setgid program controls.
pub const DEFAULT_FILE: &str = match option_env!("SPOOLMAIL_CONFIG") {
    Some(path) => path,
    None => "/etc/spoolmail.conf",
};
pub const DEFAULT_SPOOL: &str = "/var/spool/spoolmail";
pub const DEFAULT_ALIASES: &str = "/etc/aliases";
pub const DEFAULT_MAILNAME: &str = "/etc/mailname";
pub const DEFAULT_LOG_FALLBACK: &str = "/var/log/spoolmail.log";

/// When a submission's message is delivered: `delivery_mode`, or `-odX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// A pass for this message starts in the background (`-odb`).
    Background,
    /// The submitter waits for the pass (`-odi`).
    Interactive,
    /// Only queued; the next cron pass sends it (`-odq`).
    Queue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    Off,
    Opportunistic,
    Required,
}

/// How TLS starts with a smarthost: STARTTLS on a plain connection, or TLS
/// from the first byte (port 465, RFC 8314).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmarthostTls {
    Starttls,
    Implicit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Syslog,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub spool_dir: PathBuf,
    /// Relays tried in order; empty means direct MX delivery.
    pub smarthosts: Vec<String>,
    pub dns_server: Option<String>,
    pub smtp_port: u16,
    pub helo_name: Option<String>,
    pub tls: TlsPolicy,
    /// None: implicit TLS for a smarthost on port 465, STARTTLS otherwise.
    pub smarthost_tls: Option<SmarthostTls>,
    /// `sender_relay_map`: the file, and its lines (read with the config).
    pub sender_relay_map: Option<PathBuf>,
    pub sender_relays: Vec<SenderRelay>,
    /// `max_messages_per_connection` and `max_messages_per_minute`: the
    /// smarthost's message limits (a map line has its own).
    pub smarthost_limits: RelayLimits,
    /// How long a relay rests after a throttling reply (421, 4.7.x), the
    /// first time in a pass; it doubles for each repeat.
    pub throttle_backoff: Duration,
    /// Trust anchors instead of the system's CA bundle.
    pub tls_ca_file: Option<PathBuf>,
    /// MTA-STS policies (RFC 8461) are looked up and applied (MX delivery).
    pub mta_sts: bool,
    /// The port policy hosts are fetched from (443 but in tests).
    pub mta_sts_port: u16,
    /// A client certificate and its key, shown to servers that ask.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// SMTP AUTH with smarthosts (never with MX hosts) when set.
    pub auth_user: Option<String>,
    pub auth_password_file: Option<PathBuf>,
    pub auth_xoauth2_token_file: Option<PathBuf>,
    /// OAuth 2.0 tokens fetched and refreshed by spoolmail (`auth_oauth2_*`);
    /// [`Config::oauth2`] has them with the provider's defaults.
    pub auth_oauth2_provider: Option<OAuth2Provider>,
    pub auth_oauth2_token_url: Option<String>,
    pub auth_oauth2_device_url: Option<String>,
    pub auth_oauth2_client_id: Option<String>,
    pub auth_oauth2_client_secret_file: Option<PathBuf>,
    pub auth_oauth2_refresh_token_file: Option<PathBuf>,
    pub auth_oauth2_scope: Option<String>,
    /// Credentials may go over a connection without verified TLS.
    pub auth_allow_plaintext: bool,
    /// Quoted local parts holding `<`, `>` or ` KEYWORD=` are accepted.
    pub allow_unusual_quoted_local_parts: bool,
    pub delivery_mode: DeliveryMode,
    /// Bytes; 0 means no limit.
    pub max_message_size: u64,
    /// Submissions are refused while the spool's file system has less free
    /// (bytes); None: `DEFAULT_QUEUE_MIN_FREE` or 1% of it, the smaller.
    pub queue_min_free: Option<u64>,
    /// Domain for unqualified addresses; None: the host's name.
    pub qualify_domain: Option<String>,
    pub log: LogTarget,
    pub max_children: u32,
    pub retry_schedule: RetrySchedule,
    /// As set; [`Config::queue_lifetime`] is the one that applies.
    pub max_queue_lifetime: Option<Duration>,
    pub double_bounce_recipient: Option<String>,
    /// After this long in the queue, one "delayed" DSN to the sender.
    pub delay_warning_time: Option<Duration>,
    /// At most this many children deliver to one destination at once, so
    /// that a slow destination leaves room for the others.
    pub max_per_destination: u32,
    /// One message's transaction (connecting included) is abandoned and
    /// deferred after this long; its child is killed.
    pub transaction_deadline: Duration,
    pub timeouts: Timeouts,
    /// Recipients accepted in one `-bs` transaction.
    pub max_recipients: usize,
    /// Members may set any sender in `-bs` without an X-Authentication-Warning.
    pub trusted_group: Option<String>,
    /// Members may run queue passes over every user's mail (as root and
    /// the spool's group may); other users' passes take their own only.
    pub admin_group: Option<String>,
    /// The aliases file for unqualified recipients; None: no aliases.
    pub aliases_file: Option<PathBuf>,
    /// Where unqualified recipients go when no alias takes them (nullmailer's adminaddr).
    pub local_recipient_fallback: Option<String>,
    /// Senders at this host (`user@localhost`, `user@HOSTNAME`) are rewritten to this domain.
    pub masquerade_domain: Option<String>,
    /// The file naming the mail domain (Debian policy); tests point it elsewhere.
    pub mailname_file: PathBuf,
    /// Every envelope sender becomes this (the account a provider accepts).
    pub sender_address: Option<String>,
    /// The From header becomes `sender_address`, keeping its display name.
    pub rewrite_from: bool,
    /// Where lines go when syslog has no socket and stderr leads nowhere.
    pub log_fallback_file: PathBuf,
    /// Where queue passes write the Prometheus metrics; None: nowhere.
    pub metrics_file: Option<PathBuf>,
    /// `dkim_key` lines: the keys mail is signed with, by its From domain.
    pub dkim_keys: Vec<DkimKey>,
    /// What was wrong in the file: warnings, and values that hold delivery.
    pub problems: Vec<Problem>,
}

/// `retry_schedule`: when attempts come, and when the message expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The first attempt comes `steps[0]` after arrival (0: at once; the
    /// submission's own delivery does not wait for it), the n-th
    /// `steps[n-1]` after the one before.
    pub steps: Vec<Duration>,
    /// A trailing `...`: the last wait repeats until the queue lifetime.
    /// Without it, the message expires after the last step's attempt.
    pub repeat_last: bool,
}

impl Config {
    /// How long a message may wait in the queue: `max_queue_lifetime`, else
    /// 5 days when the schedule repeats (it would never end), else None (the
    /// schedule's end decides, as it did before schedules could repeat).
    pub fn queue_lifetime(&self) -> Option<Duration> {
        self.max_queue_lifetime.or(self
            .retry_schedule
            .repeat_last
            .then_some(limits::DEFAULT_MAX_QUEUE_LIFETIME))
    }
}

/// A line of the config file that could not be used. Submissions go on
/// with a warning (mail is never refused for a config mistake); a problem
/// that `holds_delivery` stops queue runs until the file is fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 0: the file as a whole.
    pub line: usize,
    pub msg: String,
    pub holds_delivery: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file.display(), self.msg),
            n => write!(f, "{}:{n}: {}", self.file.display(), self.msg),
        }
    }
}

impl Problem {
    pub fn to_error(&self) -> Error {
        Error::Config {
            file: self.file.clone(),
            line: self.line,
            msg: self.msg.clone(),
        }
    }
}

/// How long the SMTP client waits for each step of a session.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub greeting: Duration,
    pub helo: Duration,
    pub mail: Duration,
    pub rcpt: Duration,
    pub data_init: Duration,
    pub data_block: Duration,
    pub data_done: Duration,
}

impl Default for Timeouts {
    /// RFC 5321 section 4.5.3.2, and Postfix's 30 s for connecting.
    fn default() -> Timeouts {
        Timeouts {
            connect: limits::DEFAULT_CONNECT_TIMEOUT,
            greeting: limits::DEFAULT_COMMAND_TIMEOUT,
            helo: limits::DEFAULT_COMMAND_TIMEOUT,
            mail: limits::DEFAULT_COMMAND_TIMEOUT,
            rcpt: limits::DEFAULT_COMMAND_TIMEOUT,
            data_init: limits::DEFAULT_DATA_INIT_TIMEOUT,
            data_block: limits::DEFAULT_DATA_BLOCK_TIMEOUT,
            data_done: limits::DEFAULT_DATA_DONE_TIMEOUT,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            spool_dir: PathBuf::from(DEFAULT_SPOOL),
            smarthosts: Vec::new(),
            dns_server: None,
            smtp_port: 25,
            helo_name: None,
            tls: TlsPolicy::Opportunistic,
            smarthost_tls: None,
            sender_relay_map: None,
            sender_relays: Vec::new(),
            smarthost_limits: RelayLimits::default(),
            throttle_backoff: limits::DEFAULT_THROTTLE_BACKOFF,
            tls_ca_file: None,
            mta_sts: true,
            mta_sts_port: 443,
            tls_cert_file: None,
            tls_key_file: None,
            auth_user: None,
            auth_password_file: None,
            auth_xoauth2_token_file: None,
            auth_oauth2_provider: None,
            auth_oauth2_token_url: None,
            auth_oauth2_device_url: None,
            auth_oauth2_client_id: None,
            auth_oauth2_client_secret_file: None,
            auth_oauth2_refresh_token_file: None,
            auth_oauth2_scope: None,
            auth_allow_plaintext: false,
            allow_unusual_quoted_local_parts: false,
            // -odq until the delivery half exists; see README.
            delivery_mode: DeliveryMode::Background,
            max_message_size: limits::DEFAULT_MAX_MESSAGE_SIZE,
            queue_min_free: None,
            qualify_domain: None,
            log: LogTarget::Syslog,
            max_children: limits::DEFAULT_MAX_CHILDREN,
            retry_schedule: RetrySchedule {
                steps: limits::DEFAULT_RETRY_SCHEDULE
                    .iter()
                    .map(|d| parse_duration(d).unwrap())
                    .collect(),
                repeat_last: true,
            },
            max_queue_lifetime: None,
            double_bounce_recipient: None,
            delay_warning_time: None,
            max_per_destination: limits::DEFAULT_MAX_PER_DESTINATION,
            transaction_deadline: limits::DEFAULT_TRANSACTION_DEADLINE,
            timeouts: Timeouts::default(),
            max_recipients: limits::DEFAULT_MAX_RECIPIENTS,
            trusted_group: None,
            admin_group: None,
            aliases_file: Some(PathBuf::from(DEFAULT_ALIASES)),
            local_recipient_fallback: None,
            masquerade_domain: None,
            mailname_file: PathBuf::from(DEFAULT_MAILNAME),
            sender_address: None,
            rewrite_from: false,
            log_fallback_file: PathBuf::from(DEFAULT_LOG_FALLBACK),
            metrics_file: None,
            dkim_keys: Vec::new(),
            problems: Vec::new(),
        }
    }
}

impl Config {
    /// Loads `path`, or the default file; a missing default file means the
    /// embedded defaults, a missing explicit one (`-C`) is an error.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let path = explicit.unwrap_or(Path::new(DEFAULT_FILE));
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| Error::Config {
                    file: path.to_path_buf(),
                    line: 0,
                    msg: "not valid UTF-8".into(),
                })?;
                Config::parse(&text, path)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && explicit.is_none() => {
                Ok(Config::default())
            }
            Err(e) => Err(Error::Config {
                file: path.to_path_buf(),
                line: 0,
                msg: format!("cannot read: {e}"),
            }),
        }
    }

    /// Reads every line; a bad line becomes a `Problem` and its key keeps
    /// its default, so that a mistake never stops submissions. Only a bad
    /// `spool_dir` is an error: without it there is nowhere to queue.
    pub fn parse(text: &str, file: &Path) -> Result<Config> {
        let mut cfg = Config::default();
        for (i, raw) in text.lines().enumerate() {
            if !is_setting(raw) {
                continue;
            }
            let line = raw.trim();
            let problem = |msg: String, holds_delivery| Problem {
                file: file.to_path_buf(),
                line: i + 1,
                msg,
                holds_delivery,
            };
            let Some((key, value)) = line.split_once('=') else {
                cfg.problems.push(problem(NOT_KEY_VALUE.into(), true));
                continue;
            };
            match cfg.set(key.trim(), value.trim()) {
                Ok(()) => {}
                Err(Bad::Key(msg)) => cfg.problems.push(problem(msg, false)),
                Err(Bad::Value(msg)) if key.trim() == "spool_dir" => {
                    return Err(problem(msg, true).to_error());
                }
                Err(Bad::Value(msg)) => cfg.problems.push(problem(msg, true)),
            }
        }
        let garbled = cfg
            .problems
            .iter()
            .filter(|p| p.msg == NOT_KEY_VALUE)
            .count();
        if garbled > 0 && garbled == text.lines().filter(|l| is_setting(l)).count() {
            // Not one `key = value`: this is not a config file at all
            // (`-C /etc/passwd`), and its spool_dir cannot be known.
            return Err(cfg.problems.swap_remove(0).to_error());
        }
        if let Some(map) = cfg.sender_relay_map.clone() {
            cfg.load_relay_map(&map);
        }
        if let Err(msg) = cfg.check_together() {
            cfg.problems.push(Problem {
                file: file.to_path_buf(),
                line: 0,
                msg,
                holds_delivery: true,
            });
        }
        Ok(cfg)
    }

    /// The first problem that holds delivery, as the error a queue run,
    /// mailq or `-bv` stops with (exit 78).
    pub fn check_for_delivery(&self) -> Result<()> {
        match self.problems.iter().find(|p| p.holds_delivery) {
            Some(p) => Err(p.to_error()),
            None => Ok(()),
        }
    }

    /// One `key = value`: the key's parser from `KEYS` stores the value.
    fn set(&mut self, key: &str, v: &str) -> std::result::Result<(), Bad> {
        if v.chars().any(char::is_control) {
            return Err(Bad::Value(format!(
                "{key}: value contains a control character"
            )));
        }
        let found = KEYS.iter().find(|k| k.name == key).ok_or_else(|| {
            Bad::Key(format!(
                "unknown key `{key}` (ignored; see spoolmail.conf(5))"
            ))
        })?;
        (found.set)(self, key, v).map_err(Bad::Value)
    }
}

/// The values a config file sets, as `spoolctl config` shows them (as
/// `postconf -n`): each key that a line sets to a value it takes, the
/// last such line's value, in the order of `KEYS`. Lines with a problem
/// are left out (`Config::parse` reports them).
pub fn set_values(text: &str) -> Vec<(&'static str, String)> {
    let mut scratch = Config::default();
    let mut values: Vec<(&'static str, String)> = Vec::new();
    for (key, value) in text
        .lines()
        .filter(|l| is_setting(l))
        .filter_map(|l| l.split_once('='))
    {
        let (key, value) = (key.trim(), value.trim());
        if scratch.set(key, value).is_err() {
            continue;
        }
        if let Some(k) = KEYS.iter().find(|k| k.name == key) {
            if !REPEATABLE.contains(&k.name) {
                values.retain(|(name, _)| *name != k.name);
            }
            values.push((k.name, value.to_string()));
        }
    }
    values.sort_by_key(|(name, _)| KEYS.iter().position(|k| k.name == *name));
    values
}

/// The keys that may be given several times, each line adding a value
/// (the others: the last line wins).
pub const REPEATABLE: &[&str] = &["dkim_key"];

const NOT_KEY_VALUE: &str = "expected `key = value`";

/// A line that is neither blank nor a comment.
fn is_setting(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty() && !line.starts_with('#')
}

/// Why a line was not used: a key spoolmail does not know (a warning, as in
/// Postfix), or a value it cannot use.
#[derive(Debug)]
enum Bad {
    Key(String),
    Value(String),
}

/// The file's format, for spoolmail.conf(5): one paragraph each.
pub const FORMAT_DOC: &[&str] = &[
    "One `key = value` a line; blank lines and lines that begin with `#` are ignored. \
     Every key is optional: a key that is not set has the default given below.",
    "An unknown key, or a value that is not what its key takes, is an error: every \
     command exits 78 with `FILE:LINE:` and what is wrong.",
];

/// Parses one key's value (the key is given for the error message) and
/// stores it in the config.
type Setter = fn(&mut Config, &str, &str) -> std::result::Result<(), String>;

/// One key of the config file: how its value is parsed, and what the
/// reference says of it. spoolmail.conf(5), the README's reference and
/// doc/spoolmail.conf are generated from `KEYS` (`spoolmail --generate`),
/// so a key cannot be parsed without being documented.
pub struct Key {
    pub name: &'static str,
    /// What the value is, in the reference's words: `DURATION`, `SIZE`,
    /// `PATH`, a choice of words (`off|opportunistic|required`), ...
    pub value: &'static str,
    pub default: KeyDefault,
    /// What the key does: one paragraph, `literal` text in backquotes.
    pub doc: &'static str,
    set: Setter,
}

/// A key's value when the file does not set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDefault {
    /// The default as the file would say it: `key = VALUE` changes nothing
    /// (a test checks it against `Config::default()`).
    Value(&'static str),
    /// No value; `means` says what happens then, and `example` is what the
    /// commented config file shows.
    Unset {
        means: &'static str,
        example: &'static str,
    },
}

/// What the kinds of value in `Key::value` are, for the reference.
pub const VALUE_KINDS: &[(&str, &str)] = &[
    (
        "DURATION",
        "a number with a unit: `s` seconds, `m` minutes, `h` hours, `d` days, `w` weeks \
         (`90s`, `30m`, `4h`, `2d`); a bare number is seconds",
    ),
    (
        "SIZE",
        "bytes, or with `k`, `M` or `G` for units of 1024, 1024 x 1024 and \
         1024 x 1024 x 1024 bytes (`50M`)",
    ),
    ("NUMBER", "a whole number above 0"),
    ("PORT", "a TCP port number"),
    ("IP", "an IPv4 or IPv6 address"),
    ("PATH", "an absolute file name"),
    (
        "HOST",
        "a DNS name (`smtp.example.org`), an IPv4 address, or `[IPv6]`",
    ),
    ("ADDRESS", "an email address, `user@domain`"),
    ("NAME", "a user name, as the server knows it"),
    ("GROUP", "a group name"),
];

/// Every key of the config file, in the reference's order.
pub const KEYS: &[Key] = &[
    Key {
        name: "spool_dir",
        value: "PATH",
        default: KeyDefault::Value(DEFAULT_SPOOL),
        doc: "Where messages wait: the spool, with its `tmp/` and `queue/` \
              (owned by root, group spoolmail; made by the package or by scripts/install.sh).",
        set: |c, k, v| absolute_path(k, v).map(|p| c.spool_dir = p),
    },
    Key {
        name: "smarthost",
        value: "HOST[:PORT] ...",
        default: KeyDefault::Unset {
            means: "delivery goes directly to each recipient domain's MX hosts",
            example: "smtp.example.org:587",
        },
        doc: "Relay all mail through these hosts, tried in order: `HOST`, `HOST:PORT` \
              or `[IPv6]:PORT`, separated by spaces or commas. Port 465 means implicit TLS \
              (see `smarthost_tls`).",
        set: |c, k, v| list(k, v, host_port).map(|h| c.smarthosts = h),
    },
    Key {
        name: "dns_server",
        value: "IP[:PORT]",
        default: KeyDefault::Unset {
            means: "the servers of /etc/resolv.conf",
            example: "127.0.0.1:53",
        },
        doc: "The DNS server for MX look-ups (`[IPv6]:PORT` with a port).",
        set: |c, _, v| dns_server(v).map(|s| c.dns_server = Some(s)),
    },
    Key {
        name: "smtp_port",
        value: "PORT",
        default: KeyDefault::Value("25"),
        doc: "The port for delivery to MX hosts.",
        set: |c, k, v| port(k, v).map(|p| c.smtp_port = p),
    },
    Key {
        name: "helo_name",
        value: "HOST",
        default: KeyDefault::Unset {
            means: "this host's name",
            example: "host.example.org",
        },
        doc: "The name sent in EHLO, and written in Received headers and Message-IDs.",
        set: |c, k, v| hostname(k, v).map(|h| c.helo_name = Some(h)),
    },
    Key {
        name: "qualify_domain",
        value: "HOST",
        default: KeyDefault::Unset {
            means: "the domain in `mailname_file` (/etc/mailname), else this host's name",
            example: "example.org",
        },
        doc: "The domain added to unqualified addresses such as `root`, the submitting \
              user's sender address included.",
        set: |c, k, v| hostname(k, v).map(|h| c.qualify_domain = Some(h)),
    },
    Key {
        name: "tls",
        value: "off|opportunistic|required",
        default: KeyDefault::Value("opportunistic"),
        doc: "TLS with the servers mail goes to. `off`: never STARTTLS. `opportunistic`: \
              STARTTLS whenever offered, the certificate checked and logged but not required \
              to verify, a failed handshake retried at once in plain text. `required`: \
              STARTTLS or implicit TLS, and a certificate that verifies against the host \
              name connected to, or the mail waits in the queue.",
        set: |c, k, v| choice(k, v, TLS_POLICIES).map(|t| c.tls = t),
    },
    Key {
        name: "smarthost_tls",
        value: "starttls|implicit",
        default: KeyDefault::Unset {
            means: "`implicit` for port 465, `starttls` for any other",
            example: "starttls",
        },
        doc: "How TLS starts with a smarthost: STARTTLS on a plain connection, or TLS \
              from the first byte (implicit TLS, RFC 8314).",
        set: |c, k, v| choice(k, v, SMARTHOST_TLS).map(|t| c.smarthost_tls = Some(t)),
    },
    Key {
        name: "sender_relay_map",
        value: "PATH",
        default: KeyDefault::Unset {
            means: "every message goes through `smarthost`, or to the MX hosts",
            example: "/etc/spoolmail/sender_relays",
        },
        doc: "Relays chosen by the envelope sender, as Postfix's \
              `sender_dependent_relayhost_maps`: a file of lines `PATTERN HOST[:PORT] \
              [user=USER password_file=PATH] [tls=starttls|implicit] \
              [max_messages_per_connection=N] [max_messages_per_minute=N] \
              [max_connections=N] [users=NAME[,NAME...]]` (`#` comments, blank lines), PATTERN \
              `user@domain`, `@domain` or `*`. A message goes, all its recipients in one \
              transaction, through the relay of the line for its sender's exact address, \
              else for its domain, else `*` (the null sender of bounces matches `*` \
              only), skipping a line with `users=` unless root or one of those login \
              names submitted the message; a sender no line takes goes through \
              `smarthost`, or to the MX hosts. AUTH with a line's user goes to that relay \
              only, under the rules of `auth_user`; a password file is as private as \
              `auth_password_file`, and a map others can write is refused. Read with the \
              config: a bad line stops queue runs (exit 78) with `FILE:LINE:`. The map \
              is applied when mail is delivered, so a change applies to queued mail.",
        set: |c, k, v| absolute_path(k, v).map(|p| c.sender_relay_map = Some(p)),
    },
    Key {
        name: "tls_ca_file",
        value: "PATH",
        default: KeyDefault::Unset {
            means: "the system's bundle (/etc/ssl/certs/ca-certificates.crt, or another \
                    distribution's usual place), else Mozilla's, built in",
            example: "/etc/spoolmail/relay-ca.pem",
        },
        doc: "CA certificates (PEM) to verify servers with. Never taken from the \
              environment (`SSL_CERT_FILE`).",
        set: |c, k, v| absolute_path(k, v).map(|p| c.tls_ca_file = Some(p)),
    },
    Key {
        name: "mta_sts",
        value: "yes|no",
        default: KeyDefault::Value("yes"),
        doc: "MTA-STS (RFC 8461) for direct delivery to MX hosts (ignored with a \
              `smarthost`): before a domain's first connection in a queue run, its \
              `_mta-sts` TXT record is looked up and its policy fetched from \
              `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (verified with \
              `tls_ca_file` or the system's CA bundle, its host found through \
              `dns_server` when set) and kept in the spool (`sts/`) for its `max_age` \
              (fetched again on a new `id`, and refreshed once past half its `max_age`). \
              Under `mode: enforce`, mail goes only to the MX hosts the policy lists, \
              only over STARTTLS with a certificate valid for the MX host's name, \
              whatever `tls` says; otherwise it waits in the queue, and mailq says \
              which policy refused what. Under `mode: testing`, it goes as usual and \
              the log says what enforce would have refused. A policy that cannot be \
              fetched (and is not cached) is no policy: mail is never held for it.",
        set: |c, k, v| choice(k, v, YES_NO).map(|b| c.mta_sts = b),
    },
    Key {
        name: "mta_sts_port",
        value: "PORT",
        default: KeyDefault::Value("443"),
        doc: "The port MTA-STS policies are fetched from: 443, as RFC 8461 says; \
              another only for tests (as `smtp_port`).",
        set: |c, k, v| port(k, v).map(|p| c.mta_sts_port = p),
    },
    Key {
        name: "tls_cert_file",
        value: "PATH",
        default: KeyDefault::Unset {
            means: "no client certificate",
            example: "/etc/spoolmail/client.pem",
        },
        doc: "A client certificate (PEM), shown to servers that ask for one; \
              set `tls_key_file` with it.",
        set: |c, k, v| absolute_path(k, v).map(|p| c.tls_cert_file = Some(p)),
    },
    Key {
        name: "tls_key_file",
        value: "PATH",
        default: KeyDefault::Unset {
            means: "no client certificate",
            example: "/etc/spoolmail/client.key",
        },
        doc: "The client certificate's private key (PEM).",
        set: |c, k, v| absolute_path(k, v).map(|p| c.tls_key_file = Some(p)),
    },
    Key {
        name: "auth_user",
        value: "NAME",
        default: KeyDefault::Unset {
            means: "no AUTH",
            example: "me@example.org",
        },
        doc: "SMTP AUTH with the smarthost (never with MX hosts) as this user: PLAIN or \
              LOGIN, whichever the server offers, with `auth_password_file`, or XOAUTH2 \
              with `auth_xoauth2_token_file`. Needs `smarthost`. Credentials go only over \
              TLS whose certificate verified (see `auth_allow_plaintext`).",
        set: |c, k, v| not_empty(k, v).map(|u| c.auth_user = Some(u)),
    },
    Key {
        name: "auth_password_file",
        value: "PATH",
        default: KeyDefault::Unset {
            means: "no password",
            example: "/etc/spoolmail/password",
        },
        doc: "A file whose first line is `auth_user`'s password. Others must not be able \
              to read it (chmod 0640, chown root:spoolmail), or the config is refused.",
        set: |c, k, v| secret_file(k, v).map(|p| c.auth_password_file = Some(p)),
    },
    Key {
        name: "auth_xoauth2_token_file",
        value: "PATH",
        default: KeyDefault::Unset {
            means: "no token",
            example: "/etc/spoolmail/token",
        },
        doc: "Instead of a password, a file holding an OAuth 2.0 bearer token (XOAUTH2), \
              kept fresh by another program and read again for each connection; \
              as private as `auth_password_file`.",
        set: |c, k, v| secret_file(k, v).map(|p| c.auth_xoauth2_token_file = Some(p)),
    },
    Key {
        name: "auth_oauth2_provider",
        value: "google|microsoft",
        default: KeyDefault::Unset {
            means: "give `auth_oauth2_token_url` (and the scope) yourself",
            example: "microsoft",
        },
        doc: "Instead of a password, XOAUTH2 with access tokens that spoolmail gets \
              and refreshes itself from the provider's token endpoint: this fills in \
              `auth_oauth2_token_url`, `auth_oauth2_device_url` and `auth_oauth2_scope` \
              for Google or Microsoft 365 (see the README's set-up). Needs \
              `auth_user` and `auth_oauth2_client_id`.",
        set: |c, k, v| choice(k, v, PROVIDERS).map(|p| c.auth_oauth2_provider = Some(p)),
    },
    Key {
        name: "auth_oauth2_token_url",
        value: "URL",
        default: KeyDefault::Unset {
            means: "the provider's, with `auth_oauth2_provider`",
            example: "https://login.microsoftonline.com/TENANT/oauth2/v2.0/token",
        },
        doc: "The OAuth 2.0 token endpoint (https only, verified as `tls_ca_file` says). \
              With it, the access token is cached in the spool and refreshed shortly \
              before it expires, or when the server refuses it; a refresh the endpoint \
              refuses defers the mail and says what to run.",
        set: |c, k, v| https_url(k, v).map(|u| c.auth_oauth2_token_url = Some(u)),
    },
    Key {
        name: "auth_oauth2_device_url",
        value: "URL",
        default: KeyDefault::Unset {
            means: "the provider's, with `auth_oauth2_provider`",
            example: "https://oauth2.googleapis.com/device/code",
        },
        doc: "The device authorization endpoint (RFC 8628) that `spoolctl oauth2 \
              authorize` starts from.",
        set: |c, k, v| https_url(k, v).map(|u| c.auth_oauth2_device_url = Some(u)),
    },
    Key {
        name: "auth_oauth2_client_id",
        value: "ID",
        default: KeyDefault::Unset {
            means: "no OAuth 2.0",
            example: "0a1b2c3d-0000-0000-0000-000000000000",
        },
        doc: "The OAuth 2.0 client (application) id registered with the provider.",
        set: |c, k, v| not_empty(k, v).map(|id| c.auth_oauth2_client_id = Some(id)),
    },
    Key {
        name: "auth_oauth2_client_secret_file",
        value: "PATH",
        default: KeyDefault::Unset {
            means: "a public client, without a secret",
            example: "/etc/spoolmail/oauth2/client_secret",
        },
        doc: "A file whose first line is the client secret; as private as \
              `auth_password_file`. Needed without a refresh token file.",
        set: |c, k, v| secret_file(k, v).map(|p| c.auth_oauth2_client_secret_file = Some(p)),
    },
    Key {
        name: "auth_oauth2_refresh_token_file",
        value: "PATH",
        default: KeyDefault::Unset {
            means: "the `client_credentials` grant (app-only, no user)",
            example: "/etc/spoolmail/oauth2/refresh_token",
        },
        doc: "The refresh token's file, written by `spoolctl oauth2 authorize`: tokens \
              come from the `refresh_token` grant, and a new refresh token the endpoint \
              sends back is saved in it (temporary file, fsync, rename) before it is \
              used, so its directory must be writable by the spool's group (mode 2770, \
              root:spoolmail). As private as `auth_password_file`.",
        set: |c, k, v| secret_file(k, v).map(|p| c.auth_oauth2_refresh_token_file = Some(p)),
    },
    Key {
        name: "auth_oauth2_scope",
        value: "SCOPES",
        default: KeyDefault::Unset {
            means: "the provider's, with `auth_oauth2_provider`; else none sent",
            example: "https://outlook.office.com/SMTP.Send offline_access",
        },
        doc: "The scopes asked for, separated by spaces.",
        set: |c, k, v| not_empty(k, v).map(|s| c.auth_oauth2_scope = Some(s)),
    },
    Key {
        name: "auth_allow_plaintext",
        value: "yes|no",
        default: KeyDefault::Value("no"),
        doc: "`yes`: credentials may also go over a connection without TLS, or whose \
              certificate did not verify. Only for a relay on a network you trust.",
        set: |c, k, v| choice(k, v, YES_NO).map(|b| c.auth_allow_plaintext = b),
    },
    Key {
        name: "allow_unusual_quoted_local_parts",
        value: "yes|no",
        default: KeyDefault::Value("no"),
        doc: "`yes`: accept addresses whose quoted local part holds `<`, `>` or a space \
              and `KEYWORD=` (`\"x> SIZE=1\"@example.org`). They are legal, but a receiver \
              that splits SMTP commands naively reads another path or extra parameters \
              out of them, so they are refused by default (exit 65, or 553 under `-bs`).",
        set: |c, k, v| choice(k, v, YES_NO).map(|b| c.allow_unusual_quoted_local_parts = b),
    },
    Key {
        name: "delivery_mode",
        value: "background|interactive|queue",
        default: KeyDefault::Value("background"),
        doc: "What a submission does once the message is queued: `background` delivers \
              it at once in a detached process (as `-odb`), `interactive` before returning \
              (`-odi`), `queue` leaves it to the next queue run (`-odq`; a background \
              runner of the same user still running then takes it too).",
        set: |c, k, v| choice(k, v, DELIVERY_MODES).map(|m| c.delivery_mode = m),
    },
    Key {
        name: "max_message_size",
        value: "SIZE",
        default: KeyDefault::Value("50M"),
        doc: "The largest message accepted; 0 for no limit.",
        set: |c, k, v| size(k, v).map(|n| c.max_message_size = n),
    },
    Key {
        name: "queue_min_free",
        value: "SIZE",
        default: KeyDefault::Unset {
            means: "20M or 1% of the spool's file system, whichever is smaller",
            example: "100M",
        },
        doc: "Free space on the spool's file system kept for delivery: while less is \
              free, submissions get a temporary failure before anything is written \
              (exit 75, `spool file system has less than SIZE free`; 452 4.3.1 to MAIL \
              and DATA under `sendmail -bs`, and to a MAIL whose SIZE does not fit), and \
              a written message that leaves less is not queued (the same failure), so \
              that queue runs can always record what they did and queue their bounces, \
              which ignore the reserve. 0: no reserve.",
        set: |c, k, v| size(k, v).map(|n| c.queue_min_free = Some(n)),
    },
    Key {
        name: "log",
        value: "syslog|stderr|PATH",
        default: KeyDefault::Value("syslog"),
        doc: "Where log lines go: syslog (the mail facility), stderr, or a file. Where \
              there is no /dev/log, lines go to stderr, or to `log_fallback_file` when \
              stderr leads nowhere (a detached delivery, a caller's closed stderr).",
        set: |c, k, v| log_target(k, v).map(|l| c.log = l),
    },
    Key {
        name: "max_children",
        value: "NUMBER",
        default: KeyDefault::Value("20"),
        doc: "The most delivery processes on the spool at once, counting every queue \
              run, background delivery and cron run together (also from other hosts \
              sharing the spool), plus as many again while transactions are stalled.",
        set: |c, k, v| positive(k, v).map(|n| c.max_children = n),
    },
    Key {
        name: "max_per_destination",
        value: "NUMBER",
        default: KeyDefault::Value("10"),
        doc: "The most delivery processes, and so connections, for one destination (a \
              smarthost, or one recipient domain) at once on the spool, counting every \
              run together, so that a slow one leaves room for the rest; stalled \
              transactions free as many again.",
        set: |c, k, v| positive(k, v).map(|n| c.max_per_destination = n),
    },
    Key {
        name: "max_messages_per_connection",
        value: "NUMBER",
        default: KeyDefault::Unset {
            means: "no limit",
            example: "100",
        },
        doc: "The most messages sent over one connection to the smarthost (as Postfix's \
              `smtp_connection_reuse_count_limit`): after that many the delivery process \
              says QUIT and opens a new connection. A `sender_relay_map` line has its own.",
        set: |c, k, v| positive(k, v).map(|n| c.smarthost_limits.per_connection = Some(n)),
    },
    Key {
        name: "max_messages_per_minute",
        value: "NUMBER",
        default: KeyDefault::Unset {
            means: "no limit",
            example: "30",
        },
        doc: "The most messages started to the smarthost in any minute: messages are \
              spread out, one every 60/N seconds (as Postfix's \
              `default_destination_rate_delay`), never refused: the queue run waits for \
              them. Every queue run of the spool keeps one pace together (in \
              `slots/`). A `sender_relay_map` line has its own.",
        set: |c, k, v| positive(k, v).map(|n| c.smarthost_limits.per_minute = Some(n)),
    },
    Key {
        name: "throttle_backoff",
        value: "DURATION",
        default: KeyDefault::Value("60s"),
        doc: "How long the smarthost or a `sender_relay_map` relay rests after it \
              answers `421`, or a `4.7.x` reply before RCPT (a rate limit): the \
              connection is closed, the message that got the reply waits for its next \
              attempt, and the rest of the relay's queue waits in the queue run for this \
              long, then goes on; other queue runs of the spool wait as long. A burst of \
              replies is one rest; each later one in a run doubles it, up to 10 minutes; \
              after the fourth rest the relay's untried messages are left, uncounted, to \
              the next run.",
        set: |c, k, v| positive_duration(k, v).map(|d| c.throttle_backoff = d),
    },
    Key {
        name: "retry_schedule",
        value: "DURATION ...",
        default: KeyDefault::Value("0 5m 10m 20m 40m 1h ..."),
        doc: "The waits between delivery attempts: the n-th attempt comes the n-th \
              duration after the one before (the first after arrival: `0`, at once). \
              A trailing `...` repeats the last wait until `max_queue_lifetime` \
              (5 days unless set); without it, the message expires and bounces after \
              the last attempt, as every schedule did before `...` existed (the \
              former default `0 30m 4h 8h 16h 24h 48h`, about 4.2 days, keeps that \
              meaning). The default retries after 5, 10, 20 and 40 minutes, then \
              every hour for 5 days, close to Postfix's (first retry after \
              minimal_backoff_time 300s, the gap doubling up to maximal_backoff_time \
              4000s, maximal_queue_lifetime 5d). A local configuration problem (a \
              refused password, a missing password file) never expires at the \
              schedule's end: it waits, at the last gap, up to the queue lifetime.",
        set: |c, k, v| retry_schedule(k, v).map(|s| c.retry_schedule = s),
    },
    Key {
        name: "max_queue_lifetime",
        value: "DURATION",
        default: KeyDefault::Unset {
            means: "5d when `retry_schedule` ends in `...` (as the default does); \
                    otherwise the schedule's end decides, and a local configuration \
                    problem waits 5d",
            example: "5d",
        },
        doc: "Bounce a message this long after it arrived, whatever the schedule.",
        set: |c, k, v| {
            let d = parse_duration(v).ok_or(format!("{k}: `{v}` is not a duration"))?;
            c.max_queue_lifetime = Some(d);
            Ok(())
        },
    },
    Key {
        name: "double_bounce_recipient",
        value: "ADDRESS",
        default: KeyDefault::Unset {
            means: "such a bounce is logged and dropped",
            example: "postmaster@example.org",
        },
        doc: "Where a bounce that cannot be delivered goes.",
        set: |c, k, v| address(k, v).map(|a| c.double_bounce_recipient = Some(a)),
    },
    Key {
        name: "delay_warning_time",
        value: "DURATION",
        default: KeyDefault::Unset {
            means: "no delay notices, but to senders who asked for them (NOTIFY=DELAY, \
                    after 4h)",
            example: "4h",
        },
        doc: "After a message has waited this long, its sender gets one \"delayed\" \
              notice (an RFC 3464 report, `Action: delayed`) listing the recipients \
              still being retried, and until when; as Postfix's delay_warning_time, \
              unset by default. A message whose sender asked for delay notices \
              (`-N delay`, NOTIFY=DELAY) gets one whether the key is set or not; one \
              that gave NOTIFY without DELAY gets none.",
        set: |c, k, v| positive_duration(k, v).map(|d| c.delay_warning_time = Some(d)),
    },
    Key {
        name: "transaction_deadline",
        value: "DURATION",
        default: KeyDefault::Value("15m"),
        doc: "One message's delivery, connecting included, is abandoned and deferred \
              after this long.",
        set: |c, k, v| positive_duration(k, v).map(|d| c.transaction_deadline = d),
    },
    Key {
        name: "connect_timeout",
        value: "DURATION",
        default: KeyDefault::Value("30s"),
        doc: "How long connecting to a server may take.",
        set: |c, k, v| positive_duration(k, v).map(|d| c.timeouts.connect = d),
    },
    Key {
        name: "command_timeout",
        value: "DURATION",
        default: KeyDefault::Unset {
            means: "RFC 5321's: 5m, and 2m for DATA",
            example: "5m",
        },
        doc: "How long to wait for the reply to each command: the greeting, EHLO, MAIL, \
              RCPT, DATA.",
        set: |c, k, v| {
            let d = positive_duration(k, v)?;
            let t = &mut c.timeouts;
            (t.greeting, t.helo, t.mail, t.rcpt, t.data_init) = (d, d, d, d, d);
            Ok(())
        },
    },
    Key {
        name: "data_timeout",
        value: "DURATION",
        default: KeyDefault::Unset {
            means: "RFC 5321's: 3m for each block, 10m for the final reply",
            example: "10m",
        },
        doc: "How long sending each block of the content, and the reply after it, \
              may take.",
        set: |c, k, v| {
            let d = positive_duration(k, v)?;
            (c.timeouts.data_block, c.timeouts.data_done) = (d, d);
            Ok(())
        },
    },
    Key {
        name: "max_recipients",
        value: "NUMBER",
        default: KeyDefault::Value("1000"),
        doc: "Recipients accepted in one `sendmail -bs` transaction; RCPT past it is \
              answered 452.",
        set: |c, k, v| positive(k, v).map(|n| c.max_recipients = n),
    },
    Key {
        name: "trusted_group",
        value: "GROUP",
        default: KeyDefault::Unset {
            means: "only root",
            example: "mailtrusted",
        },
        doc: "Members of this group (and root) may give any sender, with `-f` or in \
              `sendmail -bs`'s MAIL FROM; others get an X-Authentication-Warning header \
              when it is not their own address, as Sendmail adds.",
        set: |c, k, v| group_name(k, v).map(|g| c.trusted_group = Some(g)),
    },
    Key {
        name: "admin_group",
        value: "GROUP",
        default: KeyDefault::Unset {
            means: "only root and the spool's group",
            example: "mailadm",
        },
        doc: "Members of this group may run queue passes over every user's mail \
              (`sendmail -q`, `-qR`, `-qS`, `-qI`), as root and members of the spool's \
              group (the group of the setgid binary and of `spool_dir`) may. Anyone else's \
              passes deliver only the messages they submitted themselves, so that no \
              user's processes (their signals, limits and closed pipes) ever carry \
              another user's mail.",
        set: |c, k, v| group_name(k, v).map(|g| c.admin_group = Some(g)),
    },
    Key {
        name: "aliases_file",
        value: "PATH|none",
        default: KeyDefault::Value(DEFAULT_ALIASES),
        doc: "Aliases for unqualified recipients (root, postmaster), read as text: \
              no database, `newaliases` only checks it; `none` for no aliases. Pipes and \
              files in it are skipped (spoolmail only relays).",
        set: |c, k, v| {
            let file = if v == "none" {
                None
            } else {
                Some(absolute_path(k, v)?)
            };
            c.aliases_file = file;
            Ok(())
        },
    },
    Key {
        name: "local_recipient_fallback",
        value: "ADDRESS",
        default: KeyDefault::Unset {
            means: "they are qualified with `qualify_domain`",
            example: "admin@example.org",
        },
        doc: "Where unqualified recipients that no alias takes go (nullmailer's \
              adminaddr): a full address.",
        set: |c, k, v| full_address(k, v).map(|a| c.local_recipient_fallback = Some(a)),
    },
    Key {
        name: "masquerade_domain",
        value: "HOST",
        default: KeyDefault::Unset {
            means: "senders are left as they are",
            example: "example.org",
        },
        doc: "Rewrite senders at this host (`user@localhost`, `user@HOSTNAME`, \
              `user@QUALIFY_DOMAIN`) to `user@` this domain, in the envelope and the \
              From header; other domains are left alone.",
        set: |c, k, v| hostname(k, v).map(|h| c.masquerade_domain = Some(h)),
    },
    Key {
        name: "mailname_file",
        value: "PATH",
        default: KeyDefault::Value(DEFAULT_MAILNAME),
        doc: "The file naming this system's mail domain (Debian policy: one line, \
              `example.org`), used when `qualify_domain` is unset, and for EHLO when the \
              host name has no dot. A missing file means the host name.",
        set: |c, k, v| absolute_path(k, v).map(|p| c.mailname_file = p),
    },
    Key {
        name: "sender_address",
        value: "ADDRESS",
        default: KeyDefault::Unset {
            means: "senders are left as they are",
            example: "me@example.org",
        },
        doc: "Every envelope sender becomes this address (the null sender of bounces \
              excepted), for providers that refuse any sender but the account that logged \
              in (msmtp's `from`, dma's MASQUERADE, nullmailer's allmailfrom). Applied on \
              intake: the queued message is what leaves.",
        set: |c, k, v| full_address(k, v).map(|a| c.sender_address = Some(a)),
    },
    Key {
        name: "rewrite_from",
        value: "yes|no",
        default: KeyDefault::Value("no"),
        doc: "With `yes`, the From header becomes `sender_address`, keeping its display \
              name; the original From goes into a Reply-To when there is none, so that \
              replies still reach the author. The bounces and delay notices spoolmail \
              sends have it too (`Mail Delivery System <ADDRESS>`, their envelope sender \
              still null), so that a relay that takes only its account's From takes \
              them. Needs `sender_address`.",
        set: |c, k, v| choice(k, v, YES_NO).map(|b| c.rewrite_from = b),
    },
    Key {
        name: "dkim_key",
        value: "DOMAIN SELECTOR PATH [users=NAME[,NAME...]]",
        default: KeyDefault::Unset {
            means: "mail is not signed",
            example: "example.org mail2026 /etc/spoolmail/dkim/example.org.mail2026.pem",
        },
        doc: "Sign mail whose From address is at DOMAIN, or at a domain under it, with \
              DKIM (RFC 6376): the key in PATH (PEM, PKCS#8 or PKCS#1: an RSA key of 2048 \
              bits or more signs with `rsa-sha256`, an Ed25519 key with `ed25519-sha256`, \
              RFC 8463), published in DNS at `SELECTOR._domainkey.DOMAIN`. May be given \
              for several domains, and twice for one with two selectors (an RSA and an \
              Ed25519 key, with the same `users=`: each message is then signed with \
              both, RFC 8463 section 5); \
              the most specific domain's keys sign. \
              The signature is made in the delivery process over what the server receives \
              (after the re-encoding of long lines), with relaxed/relaxed \
              canonicalization, over From (once more than it occurs, so that no From can \
              be added), To, Cc, Subject, Date, Message-ID, Reply-To, MIME-Version, \
              Content-Type, Content-Transfer-Encoding, List-Unsubscribe and \
              List-Unsubscribe-Post when present; bounces from MAILER-DAEMON at DOMAIN \
              are signed too. The key is as private as `auth_password_file` (0640 \
              root:spoolmail, or the config is refused); a key that is missing or cannot \
              be used holds the mail it should sign in the queue, with the reason in \
              `mailq`: nothing goes out unsigned. `spoolctl dkim-keygen` makes one. With \
              `users=`, the key signs only the mail that root or those login names \
              submitted, and spoolmail's own bounces and delay notices; another user's \
              mail from that domain goes out unsigned (logged), and is not signed by a \
              parent domain's key either.",
        set: |c, k, v| dkim_key(k, v, &c.dkim_keys).map(|key| c.dkim_keys.push(key)),
    },
    Key {
        name: "log_fallback_file",
        value: "PATH",
        default: KeyDefault::Value(DEFAULT_LOG_FALLBACK),
        doc: "Where log lines go when `log = syslog` finds no syslog socket and stderr \
              leads nowhere (detached deliveries). Created mode 0660 with the spool's \
              group, so that every user's deliveries can append to it.",
        set: |c, k, v| absolute_path(k, v).map(|p| c.log_fallback_file = p),
    },
    Key {
        name: "metrics_file",
        value: "PATH",
        default: KeyDefault::Unset {
            means: "no metrics are written",
            example: "/var/lib/prometheus/node-exporter/spoolmail.prom",
        },
        doc: "After every queue pass over the queue (cron's `sendmail -q`, `-qDURATION`, \
              the background runners), write the queue's metrics here in Prometheus's \
              text format, for node_exporter's textfile collector: messages by state, \
              the oldest one's age, recipients by status, recipients delivered, \
              deferred, bounced and expired since the spool's counters were made, and \
              when the pass completed. Written atomically (a temporary file in the \
              same directory, renamed), mode 0644, and only by the passes of root, \
              the spool's group and `admin_group`: a user's own pass leaves it alone. \
              See the README's \"Metrics\".",
        set: |c, k, v| absolute_path(k, v).map(|p| c.metrics_file = Some(p)),
    },
];

const TLS_POLICIES: &[(&str, TlsPolicy)] = &[
    ("off", TlsPolicy::Off),
    ("opportunistic", TlsPolicy::Opportunistic),
    ("required", TlsPolicy::Required),
];
const SMARTHOST_TLS: &[(&str, SmarthostTls)] = &[
    ("starttls", SmarthostTls::Starttls),
    ("implicit", SmarthostTls::Implicit),
];
const DELIVERY_MODES: &[(&str, DeliveryMode)] = &[
    ("background", DeliveryMode::Background),
    ("interactive", DeliveryMode::Interactive),
    ("queue", DeliveryMode::Queue),
];
const YES_NO: &[(&str, bool)] = &[("yes", true), ("no", false)];
const PROVIDERS: &[(&str, OAuth2Provider)] = &[
    ("google", OAuth2Provider::Google),
    ("microsoft", OAuth2Provider::Microsoft),
];

/// A provider whose endpoints and scopes `auth_oauth2_provider` fills in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuth2Provider {
    Google,
    Microsoft,
}

impl OAuth2Provider {
    /// The token endpoint; None where it depends on the tenant
    /// (Microsoft's app-only grant needs the tenant's own endpoint).
    pub fn token_url(self, grant: OAuth2Grant) -> Option<&'static str> {
        match (self, grant) {
            (OAuth2Provider::Google, _) => Some("https://oauth2.googleapis.com/token"),
            (OAuth2Provider::Microsoft, OAuth2Grant::RefreshToken) => {
                Some("https://login.microsoftonline.com/common/oauth2/v2.0/token")
            }
            (OAuth2Provider::Microsoft, OAuth2Grant::ClientCredentials) => None,
        }
    }

    /// The device authorization endpoint (RFC 8628 section 3.1).
    pub fn device_url(self) -> &'static str {
        match self {
            OAuth2Provider::Google => "https://oauth2.googleapis.com/device/code",
            OAuth2Provider::Microsoft => {
                "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"
            }
        }
    }

    /// The scope SMTP needs under each grant; None: the provider has no
    /// such grant for SMTP (Google's service accounts sign a JWT instead).
    pub fn scope(self, grant: OAuth2Grant) -> Option<&'static str> {
        match (self, grant) {
            (OAuth2Provider::Google, OAuth2Grant::RefreshToken) => Some("https://mail.google.com/"),
            (OAuth2Provider::Google, OAuth2Grant::ClientCredentials) => None,
            (OAuth2Provider::Microsoft, OAuth2Grant::RefreshToken) => {
                Some("https://outlook.office.com/SMTP.Send offline_access")
            }
            (OAuth2Provider::Microsoft, OAuth2Grant::ClientCredentials) => {
                Some("https://outlook.office365.com/.default")
            }
        }
    }
}

/// How an access token is had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuth2Grant {
    /// With the refresh token in `auth_oauth2_refresh_token_file`.
    RefreshToken,
    /// With the client's own secret (no user, no refresh token).
    ClientCredentials,
}

/// The `auth_oauth2_*` keys, with the provider's defaults filled in
/// (what `oauth2` needs of the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2 {
    pub token_url: String,
    /// For `spoolctl oauth2 authorize`.
    pub device_url: Option<String>,
    pub client_id: String,
    pub client_secret_file: Option<PathBuf>,
    pub refresh_token_file: Option<PathBuf>,
    pub scope: Option<String>,
}

impl OAuth2 {
    pub fn grant(&self) -> OAuth2Grant {
        match self.refresh_token_file {
            Some(_) => OAuth2Grant::RefreshToken,
            None => OAuth2Grant::ClientCredentials,
        }
    }
}

impl Config {
    /// The `sender_relay_map` line for a message from `sender` (empty for
    /// the null sender) submitted by `uid`, whose login name `login` gives
    /// (asked only for a line with `users=`: [`SenderRelay::allows`]), if
    /// any line takes it. The one choice of a queue run and of `-bv`.
    pub fn relay_for_sender(
        &self,
        sender: &str,
        uid: u32,
        login: impl Fn() -> Option<String>,
    ) -> Option<&SenderRelay> {
        choose_sender_relay(&self.sender_relays, sender, |r| r.allows(uid, &login))
    }

    /// The `sender_relay_map` line with this pattern.
    pub fn sender_relay(&self, pattern: &SenderPattern) -> Option<&SenderRelay> {
        self.sender_relays.iter().find(|r| r.pattern == *pattern)
    }

    /// The message limits of a destination: the smarthost's keys, a map
    /// line's own; none for MX hosts.
    pub fn limits_of(&self, destination: &Destination) -> RelayLimits {
        match destination {
            Destination::Smarthost => self.smarthost_limits,
            Destination::Relay(p) => self.sender_relay(p).map(|r| r.limits).unwrap_or_default(),
            _ => RelayLimits::default(),
        }
    }

    /// What only the keys together can tell about TLS and AUTH.
    fn check_together(&self) -> std::result::Result<(), String> {
        self.check_tls_auth()?;
        self.oauth2_settings()?;
        let secrets = [
            &self.auth_password_file,
            &self.auth_xoauth2_token_file,
            &self.auth_oauth2_client_secret_file,
            &self.auth_oauth2_refresh_token_file,
        ];
        for path in secrets.into_iter().flatten() {
            readable_by_spool_group(path, &self.spool_dir)?;
        }
        for key in &self.dkim_keys {
            readable_by_spool_group(&key.file, &self.spool_dir)?;
        }
        for relay in &self.sender_relays {
            if let Some(file) = &relay.password_file {
                readable_by_spool_group(file, &self.spool_dir)?;
            }
        }
        if self.rewrite_from && self.sender_address.is_none() {
            return Err("rewrite_from = yes needs sender_address".into());
        }
        Ok(())
    }

    fn check_tls_auth(&self) -> std::result::Result<(), String> {
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err("tls_cert_file and tls_key_file go together".into());
        }
        let given = [
            self.auth_password_file
                .is_some()
                .then_some("auth_password_file"),
            self.auth_xoauth2_token_file
                .is_some()
                .then_some("auth_xoauth2_token_file"),
            self.oauth2_keys_set().then_some("auth_oauth2_client_id"),
        ];
        let given: Vec<&str> = given.into_iter().flatten().collect();
        if let [a, b, ..] = given[..] {
            return Err(format!("{a} and {b}: give one, not both"));
        }
        const SECRETS: &str =
            "auth_password_file, auth_xoauth2_token_file or auth_oauth2_client_id";
        match (&self.auth_user, !given.is_empty()) {
            (Some(_), false) => Err(format!("auth_user needs {SECRETS}")),
            (None, true) => Err(format!("{} needs auth_user", given[0])),
            (Some(_), true) if self.smarthosts.is_empty() => Err(
                "auth_user is only used with a smarthost (credentials never go to MX hosts); set smarthost"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// Whether any `auth_oauth2_*` key is set.
    fn oauth2_keys_set(&self) -> bool {
        self.auth_oauth2_provider.is_some()
            || self.auth_oauth2_token_url.is_some()
            || self.auth_oauth2_device_url.is_some()
            || self.auth_oauth2_client_id.is_some()
            || self.auth_oauth2_client_secret_file.is_some()
            || self.auth_oauth2_refresh_token_file.is_some()
            || self.auth_oauth2_scope.is_some()
    }

    /// The `auth_oauth2_*` keys with the provider's defaults, when set.
    pub fn oauth2(&self) -> Option<OAuth2> {
        self.oauth2_settings().ok().flatten()
    }

    /// As [`Config::oauth2`]; Err says which key is missing.
    fn oauth2_settings(&self) -> std::result::Result<Option<OAuth2>, String> {
        if !self.oauth2_keys_set() {
            return Ok(None);
        }
        let Some(client_id) = self.auth_oauth2_client_id.clone() else {
            return Err("the auth_oauth2_* keys need auth_oauth2_client_id".into());
        };
        let grant = match self.auth_oauth2_refresh_token_file {
            Some(_) => OAuth2Grant::RefreshToken,
            None => OAuth2Grant::ClientCredentials,
        };
        let provider = self.auth_oauth2_provider;
        if grant == OAuth2Grant::ClientCredentials && self.auth_oauth2_client_secret_file.is_none()
        {
            return Err(
                "without auth_oauth2_refresh_token_file (the client_credentials grant), \
                 auth_oauth2_client_secret_file is needed"
                    .into(),
            );
        }
        if provider == Some(OAuth2Provider::Google) && grant == OAuth2Grant::ClientCredentials {
            return Err(
                "auth_oauth2_provider = google needs auth_oauth2_refresh_token_file \
                 (Google has no client_credentials grant for SMTP)"
                    .into(),
            );
        }
        let from_provider = provider.and_then(|p| p.token_url(grant)).map(String::from);
        let Some(token_url) = self.auth_oauth2_token_url.clone().or(from_provider) else {
            return Err(match provider {
                Some(_) => "the client_credentials grant needs auth_oauth2_token_url with your \
                     tenant: https://login.microsoftonline.com/TENANT/oauth2/v2.0/token"
                    .into(),
                None => "auth_oauth2_client_id needs auth_oauth2_token_url or auth_oauth2_provider"
                    .into(),
            });
        };
        Ok(Some(OAuth2 {
            token_url,
            device_url: (self.auth_oauth2_device_url.clone())
                .or_else(|| provider.map(|p| p.device_url().to_string())),
            client_id,
            client_secret_file: self.auth_oauth2_client_secret_file.clone(),
            refresh_token_file: self.auth_oauth2_refresh_token_file.clone(),
            scope: (self.auth_oauth2_scope.clone())
                .or_else(|| provider.and_then(|p| p.scope(grant)).map(String::from)),
        }))
    }
}

/// An `https://` URL with a host, without spaces or controls.
fn https_url(key: &str, v: &str) -> std::result::Result<String, String> {
    let host = v
        .strip_prefix("https://")
        .and_then(|rest| rest.split(['/', '?']).next());
    match host {
        Some(h) if !h.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()) => Ok(v.to_string()),
        _ => Err(format!("{key}: `{v}` is not an https:// URL")),
    }
}

/// A file holding a password or token: absolute, and not readable (nor
/// writable) by others. Its absence or a directory we may not search is
/// left to delivery, which defers with the reason, rather than refusing
/// every submission for a delivery setting.
fn secret_file(key: &str, v: &str) -> std::result::Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = absolute_path(key, v)?;
    if let Ok(meta) = std::fs::metadata(&path) {
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0 {
            return Err(format!(
                "{key}: {v} is mode {:04o}: others can read it; make it readable only by root \
                 and spoolmail's group (chmod 0640, chown root:spoolmail)",
                mode & 0o7777
            ));
        }
    }
    Ok(path)
}

/// One `dkim_key` line: its words, a key file as private as a password
/// file, and a selector no earlier line of its domain has, which has at
/// most [`limits::DKIM_KEYS_PER_DOMAIN`] lines, all with the same `users=`.
fn dkim_key(key: &str, v: &str, earlier: &[DkimKey]) -> std::result::Result<DkimKey, String> {
    let dkim = DkimKey::parse(v)?;
    secret_file(key, &dkim.file.to_string_lossy())?;
    let same_domain: Vec<&DkimKey> = (earlier.iter())
        .filter(|k| k.domain == dkim.domain)
        .collect();
    if same_domain.iter().any(|k| k.selector == dkim.selector) {
        return Err(format!(
            "dkim_key: {} has a key with selector {} already",
            dkim.domain, dkim.selector
        ));
    }
    if same_domain.len() >= limits::DKIM_KEYS_PER_DOMAIN {
        return Err(format!(
            "dkim_key: {} has {} keys already (RSA and Ed25519 at most)",
            dkim.domain,
            limits::DKIM_KEYS_PER_DOMAIN
        ));
    }
    // A domain's keys sign the same mail: a user one key's `users=` leaves
    // out would otherwise get the other's signature, which aligns with the
    // From domain as well as the first would have.
    let same_users = |k: &DkimKey| match (&k.users, &dkim.users) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same_users(b),
        _ => false,
    };
    if !same_domain.iter().all(|k| same_users(k)) {
        return Err(format!(
            "dkim_key: {} has a key with other users= \
             (a domain's keys sign the same mail: give each the same users=)",
            dkim.domain
        ));
    }
    Ok(dkim)
}

/// A secret owned by root must be readable by the spool's group: a
/// delivery started by a user's submission runs as that user with the
/// spool's group (setgid), and a file only root can read would hold every
/// such user's mail (the msmtp and Postfix habit of 0600 root:root).
fn readable_by_spool_group(path: &Path, spool: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let (Ok(file), Ok(dir)) = (std::fs::metadata(path), std::fs::metadata(spool)) else {
        return Ok(()); // missing: delivery defers with the reason
    };
    if file.uid() != 0 || (file.mode() & 0o040 != 0 && file.gid() == dir.gid()) {
        return Ok(());
    }
    Err(format!(
        "{p} is mode {:04o}, owner root, group {}: only root can read it, so the mail of \
         every other user would wait; make it readable by the spool's group: \
         chmod 0640 {p}; chown root:spoolmail {p} (the spool's group, gid {})",
        file.mode() & 0o7777,
        file.gid(),
        dir.gid(),
        p = path.display()
    ))
}

/// One of the words in `options`: `tls: `maybe` must be off, opportunistic or required`.
fn choice<T: Copy>(key: &str, v: &str, options: &[(&str, T)]) -> std::result::Result<T, String> {
    if let Some((_, value)) = options.iter().find(|(word, _)| *word == v) {
        return Ok(*value);
    }
    let words: Vec<&str> = options.iter().map(|(word, _)| *word).collect();
    let (last, rest) = words.split_last().expect("options are never empty");
    Err(format!(
        "{key}: `{v}` must be {} or {last}",
        rest.join(", ")
    ))
}

/// A number above zero.
fn positive<T>(key: &str, v: &str) -> std::result::Result<T, String>
where
    T: std::str::FromStr + PartialOrd + Default,
{
    v.parse()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or(format!("{key}: `{v}` is not a positive number"))
}

/// Items separated by spaces, tabs or commas, each checked by `item`.
fn list(
    key: &str,
    v: &str,
    item: fn(&str, &str) -> std::result::Result<(), String>,
) -> std::result::Result<Vec<String>, String> {
    words(v)
        .map(|w| item(key, w).map(|_| w.to_string()))
        .collect()
}

fn not_empty(key: &str, v: &str) -> std::result::Result<String, String> {
    if v.is_empty() {
        return Err(format!("{key}: empty"));
    }
    Ok(v.to_string())
}

fn dns_server(v: &str) -> std::result::Result<String, String> {
    v.parse::<std::net::SocketAddr>()
        .map(|_| ())
        .or_else(|_| v.parse::<std::net::IpAddr>().map(|_| ()))
        .map_err(|_| format!("dns_server: `{v}` is not IP or IP:PORT ([IPv6]:PORT)"))?;
    Ok(v.to_string())
}

/// Any port number, 0 included (as before: the tests' servers never use it).
fn port(key: &str, v: &str) -> std::result::Result<u16, String> {
    v.parse()
        .map_err(|_| format!("{key}: `{v}` is not a port number"))
}

fn log_target(key: &str, v: &str) -> std::result::Result<LogTarget, String> {
    Ok(match v {
        "syslog" => LogTarget::Syslog,
        "stderr" => LogTarget::Stderr,
        _ => LogTarget::File(absolute_path(key, v)?),
    })
}

fn retry_schedule(key: &str, v: &str) -> std::result::Result<RetrySchedule, String> {
    let mut words: Vec<&str> = words(v).collect();
    let repeat_last = words.last() == Some(&"...");
    if repeat_last {
        words.pop();
    }
    let steps = words
        .into_iter()
        .map(|d| match d {
            "..." => Err(format!("{key}: `...` may only end the schedule")),
            _ => parse_duration(d)
                .ok_or(format!("{key}: `{d}` is not a duration (30s, 30m, 4h, 2d)")),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if steps.is_empty() {
        return Err(format!("{key}: needs at least one duration"));
    }
    Ok(RetrySchedule { steps, repeat_last })
}

fn address(key: &str, v: &str) -> std::result::Result<String, String> {
    Address::parse(v)
        .map(|a| a.to_string())
        .map_err(|why| format!("{key}: invalid address `{}`: {why}", v.escape_debug()))
}

/// An address with its domain: where mail for local names may go.
fn full_address(key: &str, v: &str) -> std::result::Result<String, String> {
    let a = address(key, v)?;
    if Address::split(&a).1.is_none() {
        return Err(format!("{key}: `{v}` must be a full address (user@domain)"));
    }
    Ok(a)
}

fn group_name(key: &str, v: &str) -> std::result::Result<String, String> {
    let ok = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        return Err(format!("{key}: `{v}` is not a group name"));
    }
    Ok(v.to_string())
}

fn positive_duration(key: &str, v: &str) -> std::result::Result<Duration, String> {
    parse_duration(v)
        .filter(|d| !d.is_zero())
        .ok_or(format!("{key}: `{v}` is not a duration (30s, 5m, 1h)"))
}

fn words(v: &str) -> impl Iterator<Item = &str> {
    v.split([' ', '\t', ',']).filter(|w| !w.is_empty())
}

fn absolute_path(key: &str, v: &str) -> std::result::Result<PathBuf, String> {
    if !v.starts_with('/') {
        return Err(format!("{key}: `{v}` is not an absolute path"));
    }
    Ok(PathBuf::from(v))
}

/// A DNS name as spoolmail will put it in EHLO or an address: letters, digits,
/// hyphens, dots, and UTF-8 for internationalised names.
fn hostname(key: &str, v: &str) -> std::result::Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!("{key}: `{v}` is not a host name"))
    }
}

fn host_port(key: &str, v: &str) -> std::result::Result<(), String> {
    // [IPv6]:PORT, HOST:PORT, or HOST
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or(format!("{key}: `{v}`: missing ]"))?;
        h.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{key}: `{h}` is not an IPv6 address"))?;
        (None, after.strip_prefix(':'))
    } else {
        match v.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(v), None),
        }
    };
    if let Some(h) = host {
        hostname(key, h)?;
    }
    if let Some(p) = port {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or(format!("{key}: `{p}` is not a port number"))?;
    }
    Ok(())
}

/// `90s`, `30m`, `4h`, `2d`, `1w`, or plain seconds; also used by the
/// command line (`-q30m`).
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86400)?,
        "w" => n.checked_mul(7 * 86400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// `52428800`, `50M`, `512k`, `1G`; 0 for no limit.
fn size(key: &str, v: &str) -> std::result::Result<u64, String> {
    let err = || format!("{key}: `{v}` is not a size (bytes, or with k, M or G)");
    let (num, mult) = match v.char_indices().last() {
        Some((i, 'k' | 'K')) => (&v[..i], 1024),
        Some((i, 'm' | 'M')) => (&v[..i], 1024 * 1024),
        Some((i, 'g' | 'G')) => (&v[..i], 1024 * 1024 * 1024),
        _ => (v, 1),
    };
    num.trim()
        .parse::<u64>()
        .map_err(|_| err())?
        .checked_mul(mult)
        .ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/test.conf"))
    }

    /// The error a queue run stops with: the first problem that holds delivery.
    fn first_problem(text: &str) -> Error {
        match parse(text) {
            Ok(c) => c.check_for_delivery().unwrap_err(),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_serve_without_a_file() {
        let c = Config::load(Some(Path::new("/nonexistent/spoolmail.conf")));
        assert_eq!(c.unwrap_err().exit_code(), 78);
        let c = parse("# nothing\n\n").unwrap();
        assert_eq!(c.spool_dir, Path::new(DEFAULT_SPOOL));
        assert_eq!(c.max_message_size, 50 * 1024 * 1024);
        assert_eq!(c.retry_schedule.steps.len(), 6);
        assert!(c.retry_schedule.repeat_last);
        assert_eq!(c.queue_lifetime(), Some(Duration::from_secs(5 * 86400)));
        assert!(c.smarthosts.is_empty());
    }

    #[test]
    fn keys_parse() {
        let c = parse(
            "spool_dir = /tmp/q\nsmarthost = relay.example.org:587, [::1]:2525 backup\n\
             dns_server = 127.0.0.1:5353\nsmtp_port=2525\ntls = required\ndelivery_mode = queue\n\
             max_message_size = 10M\nlog = /var/log/spoolmail.log\nqualify_domain = example.org\n\
             retry_schedule = 0, 1m 2h\n",
        )
        .unwrap();
        assert_eq!(c.spool_dir, Path::new("/tmp/q"));
        assert_eq!(
            c.smarthosts,
            vec!["relay.example.org:587", "[::1]:2525", "backup"]
        );
        assert_eq!(c.smtp_port, 2525);
        assert_eq!(c.tls, TlsPolicy::Required);
        assert_eq!(c.delivery_mode, DeliveryMode::Queue);
        assert_eq!(c.max_message_size, 10 * 1024 * 1024);
        assert_eq!(c.log, LogTarget::File("/var/log/spoolmail.log".into()));
        assert_eq!(
            c.retry_schedule.steps,
            vec![
                Duration::ZERO,
                Duration::from_secs(60),
                Duration::from_secs(7200)
            ]
        );
        // Without `...`, as every schedule was before: the schedule's end
        // decides, not a default lifetime.
        assert!(!c.retry_schedule.repeat_last);
        assert_eq!(c.queue_lifetime(), None);
    }

    /// The reference says what the defaults are: setting a key to its
    /// documented default changes nothing.
    #[test]
    fn documented_defaults_are_the_defaults() {
        let default = format!("{:?}", Config::default());
        for key in KEYS {
            if let KeyDefault::Value(v) = key.default {
                let c = parse(&format!("{} = {v}\n", key.name)).unwrap();
                assert_eq!(format!("{c:?}"), default, "{}", key.name);
            }
        }
    }

    #[test]
    fn documented_examples_parse() {
        for key in KEYS {
            if let KeyDefault::Unset { example, .. } = key.default {
                let mut c = Config::default();
                let set = c.set(key.name, example);
                // Secret files are checked for their mode when they exist.
                assert!(set.is_ok(), "{} = {example}: {set:?}", key.name);
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172800)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("5y"), None);
    }

    /// Every kind of value refuses bad input with the message it always had.
    #[test]
    fn every_kind_of_value_says_what_is_wrong() {
        let cases = [
            ("spool_dir = q", "spool_dir: `q` is not an absolute path"),
            ("smarthost = a:0", "smarthost: `0` is not a port number"),
            ("smarthost = [::1", "smarthost: `[::1`: missing ]"),
            (
                "dns_server = x",
                "dns_server: `x` is not IP or IP:PORT ([IPv6]:PORT)",
            ),
            ("smtp_port = -1", "smtp_port: `-1` is not a port number"),
            ("helo_name = a..b", "helo_name: `a..b` is not a host name"),
            (
                "tls = on",
                "tls: `on` must be off, opportunistic or required",
            ),
            (
                "smarthost_tls = ssl",
                "smarthost_tls: `ssl` must be starttls or implicit",
            ),
            ("auth_user =", "auth_user: empty"),
            (
                "auth_password_file = pw",
                "auth_password_file: `pw` is not an absolute path",
            ),
            (
                "auth_allow_plaintext = 1",
                "auth_allow_plaintext: `1` must be yes or no",
            ),
            (
                "delivery_mode = now",
                "delivery_mode: `now` must be background, interactive or queue",
            ),
            (
                "max_message_size = 5T",
                "max_message_size: `5T` is not a size (bytes, or with k, M or G)",
            ),
            ("log = syslog2", "log: `syslog2` is not an absolute path"),
            (
                "max_children = 0",
                "max_children: `0` is not a positive number",
            ),
            (
                "retry_schedule = 1m, soon",
                "retry_schedule: `soon` is not a duration (30s, 30m, 4h, 2d)",
            ),
            (
                "retry_schedule = ,",
                "retry_schedule: needs at least one duration",
            ),
            (
                "retry_schedule = ...",
                "retry_schedule: needs at least one duration",
            ),
            (
                "retry_schedule = 0 ... 1h",
                "retry_schedule: `...` may only end the schedule",
            ),
            (
                "max_queue_lifetime = 5y",
                "max_queue_lifetime: `5y` is not a duration",
            ),
            (
                "double_bounce_recipient = <a@x",
                "double_bounce_recipient: invalid address `<a@x`: bad local part",
            ),
            (
                "max_recipients = -3",
                "max_recipients: `-3` is not a positive number",
            ),
            (
                "aliases_file = aliases",
                "aliases_file: `aliases` is not an absolute path",
            ),
            (
                "local_recipient_fallback = root",
                "local_recipient_fallback: `root` must be a full address (user@domain)",
            ),
            (
                "trusted_group = a b",
                "trusted_group: `a b` is not a group name",
            ),
            (
                "max_per_destination = x",
                "max_per_destination: `x` is not a positive number",
            ),
            (
                "transaction_deadline = 0",
                "transaction_deadline: `0` is not a duration (30s, 5m, 1h)",
            ),
            (
                "connect_timeout = 1y",
                "connect_timeout: `1y` is not a duration (30s, 5m, 1h)",
            ),
            (
                "command_timeout = 0s",
                "command_timeout: `0s` is not a duration (30s, 5m, 1h)",
            ),
            (
                "data_timeout = -",
                "data_timeout: `-` is not a duration (30s, 5m, 1h)",
            ),
            (
                "helo_name = a\u{7}b",
                "helo_name: value contains a control character",
            ),
        ];
        for (line, msg) in cases {
            let e = first_problem(&format!("{line}\n"));
            assert_eq!(e.to_string(), format!("/etc/test.conf:1: {msg}"), "{line}");
            assert_eq!(e.exit_code(), 78, "{line}");
        }
    }

    #[test]
    fn a_domain_has_two_dkim_keys_at_most_each_with_its_selector() {
        let c = parse(
            "dkim_key = example.org rsa /k1\ndkim_key = example.org ed /k2\n\
             dkim_key = shop.example.org rsa /k3\n",
        )
        .unwrap();
        let keys: Vec<(&str, &str)> = (c.dkim_keys.iter())
            .map(|k| (k.domain.as_str(), k.selector.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("example.org", "rsa"),
                ("example.org", "ed"),
                ("shop.example.org", "rsa")
            ]
        );
        let a = "dkim_key = example.org a /k1\n";
        for (text, line, msg) in [
            (
                format!("{a}dkim_key = Example.ORG. a /k2\n"),
                2,
                "dkim_key: example.org has a key with selector a already",
            ),
            (
                format!("{a}dkim_key = example.org b /k2\ndkim_key = example.org c /k3\n"),
                3,
                "dkim_key: example.org has 2 keys already (RSA and Ed25519 at most)",
            ),
        ] {
            let e = first_problem(&text);
            assert_eq!(e.to_string(), format!("/etc/test.conf:{line}: {msg}"));
        }
    }

    /// A domain's two keys sign the same mail: with `users=` on one line
    /// only (or other names), a user it leaves out would still get the
    /// other key's signature, aligned with the From domain as well.
    #[test]
    fn a_domains_dkim_keys_have_the_same_users() {
        let ok = [
            "dkim_key = example.org a /k1\ndkim_key = example.org b /k2\n",
            "dkim_key = example.org a /k1 users=al,bo\ndkim_key = example.org b /k2 users=bo,al\n",
            "dkim_key = example.org a /k1 users=al\ndkim_key = shop.example.org b /k2\n",
        ];
        for text in ok {
            assert!(parse(text).is_ok(), "{text}");
        }
        let msg = "dkim_key: example.org has a key with other users= \
                   (a domain's keys sign the same mail: give each the same users=)";
        for text in [
            "dkim_key = example.org a /k1 users=al\ndkim_key = example.org b /k2\n",
            "dkim_key = example.org a /k1\ndkim_key = example.org b /k2 users=al\n",
            "dkim_key = example.org a /k1 users=al\ndkim_key = example.org b /k2 users=al,bo\n",
        ] {
            let e = first_problem(text);
            assert_eq!(e.to_string(), format!("/etc/test.conf:2: {msg}"), "{text}");
        }
    }

    #[test]
    fn timeouts_and_lists_set_every_field() {
        let c = parse(
            "command_timeout = 7s\ndata_timeout = 9s\nconnect_timeout = 3s\n\
             aliases_file = none\nmax_queue_lifetime = 0\nauth_allow_plaintext = yes\n\
             smarthost_tls = implicit\nmax_children = 3\nmax_recipients = 5\n",
        )
        .unwrap();
        let s = Duration::from_secs;
        let t = &c.timeouts;
        assert_eq!(
            (t.greeting, t.helo, t.mail, t.rcpt, t.data_init),
            (s(7), s(7), s(7), s(7), s(7))
        );
        assert_eq!((t.data_block, t.data_done, t.connect), (s(9), s(9), s(3)));
        assert_eq!(c.aliases_file, None);
        assert_eq!(c.max_queue_lifetime, Some(Duration::ZERO));
        assert!(c.auth_allow_plaintext);
        assert_eq!(c.smarthost_tls, Some(SmarthostTls::Implicit));
        assert_eq!((c.max_children, c.max_recipients), (3, 5));
        assert_eq!(
            Config::default().aliases_file.as_deref(),
            Some(Path::new("/etc/aliases"))
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        // An unknown key is a warning (as in Postfix): it names file and
        // line, and holds nothing.
        let c = parse("spool_dir = /x\n\nbogus = 1\n").unwrap();
        assert_eq!(c.problems.len(), 1);
        assert!(!c.problems[0].holds_delivery);
        assert!(
            c.problems[0]
                .to_string()
                .starts_with("/etc/test.conf:3: unknown key `bogus`"),
            "{}",
            c.problems[0]
        );
        assert!(c.check_for_delivery().is_ok());
        let e = first_problem("smtp_port = 99999\n");
        assert!(
            e.to_string().starts_with("/etc/test.conf:1: smtp_port"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 78);
        assert!(parse("spool_dir = relative\n").is_err());
        // Not one `key = value`: not a config file at all (`-C /etc/passwd`).
        assert!(parse("no equals sign\n").is_err());
        for bad in [
            "smarthost = bad host!\n",
            "tls = maybe\n",
            "tls = off\nno equals sign\n",
        ] {
            assert!(parse(bad).unwrap().check_for_delivery().is_err(), "{bad}");
        }
    }

    /// A bad value keeps the key's default, so that submission goes on.
    #[test]
    fn a_bad_value_keeps_the_default_and_holds_delivery() {
        let c = parse("max_message_size = 25MB\nsmtp_port = 2525\n").unwrap();
        assert_eq!(c.max_message_size, limits::DEFAULT_MAX_MESSAGE_SIZE);
        assert_eq!(c.smtp_port, 2525);
        assert_eq!(c.problems.len(), 1);
        assert!(c.problems[0].holds_delivery);
        let e = parse("rewrite_from = yes\n").unwrap().check_for_delivery();
        assert!(e.unwrap_err().to_string().contains("needs sender_address"));
        let c = parse("sender_address = me@example.org\nrewrite_from = yes\n").unwrap();
        assert_eq!(c.sender_address.as_deref(), Some("me@example.org"));
        assert!(c.rewrite_from && c.problems.is_empty());
        assert!(
            first_problem("sender_address = me\n")
                .to_string()
                .contains("must be a full address")
        );
    }

    #[test]
    fn oauth2_keys_with_the_providers_defaults() {
        let base = "smarthost = smtp.example\nauth_user = me@example.org\n";
        let ok = |more: &str| parse(&format!("{base}{more}")).unwrap().oauth2().unwrap();
        let s = ok("auth_oauth2_provider = google\nauth_oauth2_client_id = c\n\
                    auth_oauth2_refresh_token_file = /nonexistent/rt\n");
        assert_eq!(s.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(s.scope.as_deref(), Some("https://mail.google.com/"));
        assert_eq!(s.grant(), OAuth2Grant::RefreshToken);
        let s = ok(
            "auth_oauth2_provider = microsoft\nauth_oauth2_client_id = c\n\
                    auth_oauth2_client_secret_file = /nonexistent/cs\n\
                    auth_oauth2_token_url = https://login.microsoftonline.com/t/oauth2/v2.0/token\n",
        );
        assert_eq!(s.grant(), OAuth2Grant::ClientCredentials);
        assert_eq!(
            s.scope.as_deref(),
            Some("https://outlook.office365.com/.default")
        );
        assert!(s.device_url.unwrap().contains("devicecode"));
        let s = ok(
            "auth_oauth2_provider = microsoft\nauth_oauth2_client_id = c\n\
                    auth_oauth2_scope = x y\nauth_oauth2_refresh_token_file = /nonexistent/rt\n",
        );
        assert_eq!(s.scope.as_deref(), Some("x y"));
        assert!(s.token_url.contains("/common/"));
        assert_eq!(
            parse(base.trim_end_matches("auth_user = me@example.org\n"))
                .unwrap()
                .oauth2(),
            None
        );
        for (more, error) in [
            (
                "auth_oauth2_provider = google\n",
                "need auth_oauth2_client_id",
            ),
            (
                "auth_oauth2_provider = yahoo\n",
                "must be google or microsoft",
            ),
            (
                "auth_oauth2_token_url = http://x/t\n",
                "is not an https:// URL",
            ),
            (
                "auth_oauth2_client_id = c\nauth_oauth2_refresh_token_file = /n/rt\n",
                "needs auth_oauth2_token_url or auth_oauth2_provider",
            ),
            (
                "auth_oauth2_provider = microsoft\nauth_oauth2_client_id = c\n\
                 auth_oauth2_client_secret_file = /n/cs\n",
                "TENANT",
            ),
            (
                "auth_oauth2_provider = microsoft\nauth_oauth2_client_id = c\n",
                "auth_oauth2_client_secret_file is needed",
            ),
            (
                "auth_oauth2_provider = google\nauth_oauth2_client_id = c\n\
                 auth_oauth2_client_secret_file = /n/cs\n",
                "Google has no client_credentials grant",
            ),
            (
                "auth_password_file = /n/pw\nauth_oauth2_provider = google\n\
                 auth_oauth2_client_id = c\nauth_oauth2_refresh_token_file = /n/rt\n",
                "auth_password_file and auth_oauth2_client_id: give one, not both",
            ),
        ] {
            // A key's bad value is refused; keys that do not go together
            // are a problem that holds delivery.
            let err = match parse(&format!("{base}{more}")) {
                Err(e) => e.to_string(),
                Ok(c) => (c.problems.iter().map(|p| p.msg.as_str()))
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            assert!(err.contains(error), "{more}: {err}");
        }
    }
}
