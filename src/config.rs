//! The configuration file: one `key = value` a line, `#` comments, embedded
//! defaults for every key, and `FILE:LINE:` on every error.

use crate::cli::{DeliveryMode, parse_duration};
use crate::error::{Error, Result};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The config file read without `-C`. Set at build time with
/// `SPOOLMAIL_CONFIG=/path cargo build` (as scripts/install.sh does for a
/// private prefix), never from the run-time environment, which a caller of a
/// setgid program controls.
pub const DEFAULT_FILE: &str = match option_env!("SPOOLMAIL_CONFIG") {
    Some(path) => path,
    None => "/etc/spoolmail.conf",
};
pub const DEFAULT_SPOOL: &str = "/var/spool/spoolmail";

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
    /// Trust anchors instead of the system's CA bundle.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate and its key, shown to servers that ask.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// SMTP AUTH with smarthosts (never with MX hosts) when set.
    pub auth_user: Option<String>,
    pub auth_password_file: Option<PathBuf>,
    pub auth_xoauth2_token_file: Option<PathBuf>,
    /// Credentials may go over a connection without verified TLS.
    pub auth_allow_plaintext: bool,
    pub delivery_mode: DeliveryMode,
    /// Bytes; 0 means no limit.
    pub max_message_size: u64,
    /// Domain for unqualified addresses; None: the host's name.
    pub qualify_domain: Option<String>,
    pub log: LogTarget,
    pub max_children: u32,
    pub retry_schedule: Vec<Duration>,
    pub max_queue_lifetime: Option<Duration>,
    pub double_bounce_recipient: Option<String>,
    /// At most this many children deliver to one destination at once, so
    /// that a slow destination leaves room for the others.
    pub max_per_destination: u32,
    /// One message's transaction (connecting included) is abandoned and
    /// deferred after this long; its child is killed.
    pub transaction_deadline: Duration,
    pub timeouts: crate::smtp::Timeouts,
    /// Recipients accepted in one `-bs` transaction.
    pub max_recipients: usize,
    /// Members may set any sender in `-bs` without an X-Authentication-Warning.
    pub trusted_group: Option<String>,
    /// The aliases file for unqualified recipients; None: no aliases.
    pub aliases_file: Option<PathBuf>,
    /// Where unqualified recipients go when no alias takes them (nullmailer's adminaddr).
    pub local_recipient_fallback: Option<String>,
    /// Senders at this host (`user@localhost`, `user@HOSTNAME`) are rewritten to this domain.
    pub masquerade_domain: Option<String>,
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
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            auth_user: None,
            auth_password_file: None,
            auth_xoauth2_token_file: None,
            auth_allow_plaintext: false,
            // -odq until the delivery half exists; see README.
            delivery_mode: DeliveryMode::Background,
            max_message_size: 50 * 1024 * 1024,
            qualify_domain: None,
            log: LogTarget::Syslog,
            max_children: 20,
            retry_schedule: ["0", "30m", "4h", "8h", "16h", "24h", "48h"]
                .iter()
                .map(|d| parse_duration(d).unwrap())
                .collect(),
            max_queue_lifetime: None,
            double_bounce_recipient: None,
            max_per_destination: 10,
            transaction_deadline: Duration::from_secs(15 * 60),
            timeouts: crate::smtp::Timeouts::default(),
            max_recipients: 1000,
            trusted_group: None,
            aliases_file: Some(PathBuf::from(crate::aliases::DEFAULT_FILE)),
            local_recipient_fallback: None,
            masquerade_domain: None,
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

    pub fn parse(text: &str, file: &Path) -> Result<Config> {
        let mut cfg = Config::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |msg: String| Error::Config {
                file: file.to_path_buf(),
                line: i + 1,
                msg,
            };
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err("expected `key = value`".into()))?;
            cfg.set(key.trim(), value.trim()).map_err(err)?;
        }
        cfg.check_tls_auth().map_err(|msg| Error::Config {
            file: file.to_path_buf(),
            line: 0,
            msg,
        })?;
        Ok(cfg)
    }

    fn set(&mut self, key: &str, v: &str) -> std::result::Result<(), String> {
        if v.chars().any(char::is_control) {
            return Err(format!("{key}: value contains a control character"));
        }
        match key {
            "spool_dir" => self.spool_dir = absolute_path(key, v)?,
            "smarthost" => {
                self.smarthosts = words(v)
                    .map(|h| host_port(key, h).map(|_| h.to_string()))
                    .collect::<std::result::Result<_, _>>()?
            }
            "dns_server" => {
                v.parse::<std::net::SocketAddr>()
                    .map(|_| ())
                    .or_else(|_| v.parse::<std::net::IpAddr>().map(|_| ()))
                    .map_err(|_| format!("dns_server: `{v}` is not IP or IP:PORT ([IPv6]:PORT)"))?;
                self.dns_server = Some(v.to_string());
            }
            "smtp_port" => {
                self.smtp_port = v
                    .parse()
                    .map_err(|_| format!("smtp_port: `{v}` is not a port number"))?
            }
            "helo_name" => self.helo_name = Some(hostname(key, v)?),
            "qualify_domain" => self.qualify_domain = Some(hostname(key, v)?),
            "tls" => {
                self.tls = match v {
                    "off" => TlsPolicy::Off,
                    "opportunistic" => TlsPolicy::Opportunistic,
                    "required" => TlsPolicy::Required,
                    _ => return Err(format!("tls: `{v}` must be off, opportunistic or required")),
                }
            }
            "smarthost_tls" => {
                self.smarthost_tls = Some(match v {
                    "starttls" => SmarthostTls::Starttls,
                    "implicit" => SmarthostTls::Implicit,
                    _ => return Err(format!("smarthost_tls: `{v}` must be starttls or implicit")),
                })
            }
            "tls_ca_file" => self.tls_ca_file = Some(absolute_path(key, v)?),
            "tls_cert_file" => self.tls_cert_file = Some(absolute_path(key, v)?),
            "tls_key_file" => self.tls_key_file = Some(absolute_path(key, v)?),
            "auth_user" => {
                if v.is_empty() {
                    return Err("auth_user: empty".into());
                }
                self.auth_user = Some(v.to_string());
            }
            "auth_password_file" => self.auth_password_file = Some(secret_file(key, v)?),
            "auth_xoauth2_token_file" => self.auth_xoauth2_token_file = Some(secret_file(key, v)?),
            "auth_allow_plaintext" => {
                self.auth_allow_plaintext = match v {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(format!("auth_allow_plaintext: `{v}` must be yes or no")),
                }
            }
            "delivery_mode" => {
                self.delivery_mode = match v {
                    "background" => DeliveryMode::Background,
                    "interactive" => DeliveryMode::Interactive,
                    "queue" => DeliveryMode::Queue,
                    _ => {
                        return Err(format!(
                            "delivery_mode: `{v}` must be background, interactive or queue"
                        ));
                    }
                }
            }
            "max_message_size" => self.max_message_size = size(key, v)?,
            "log" => {
                self.log = match v {
                    "syslog" => LogTarget::Syslog,
                    "stderr" => LogTarget::Stderr,
                    _ => LogTarget::File(absolute_path(key, v)?),
                }
            }
            "max_children" => {
                self.max_children = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("max_children: `{v}` is not a positive number"))?
            }
            "retry_schedule" => {
                self.retry_schedule = words(v)
                    .map(|d| {
                        parse_duration(d).ok_or(format!(
                            "retry_schedule: `{d}` is not a duration (30s, 30m, 4h, 2d)"
                        ))
                    })
                    .collect::<std::result::Result<_, _>>()?;
                if self.retry_schedule.is_empty() {
                    return Err("retry_schedule: needs at least one duration".into());
                }
            }
            "max_queue_lifetime" => {
                self.max_queue_lifetime = Some(
                    parse_duration(v)
                        .ok_or(format!("max_queue_lifetime: `{v}` is not a duration"))?,
                )
            }
            "double_bounce_recipient" => {
                let a = crate::address::validate(v)
                    .map_err(|e| format!("double_bounce_recipient: {e}"))?;
                self.double_bounce_recipient = Some(a);
            }
            "max_recipients" => {
                self.max_recipients = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("max_recipients: `{v}` is not a positive number"))?
            }
            "aliases_file" => {
                self.aliases_file = if v == "none" {
                    None
                } else {
                    Some(absolute_path(key, v)?)
                };
            }
            "local_recipient_fallback" => {
                let a = crate::address::validate(v).map_err(|e| format!("{key}: {e}"))?;
                if !a.contains('@') {
                    return Err(format!("{key}: `{v}` must be a full address (user@domain)"));
                }
                self.local_recipient_fallback = Some(a);
            }
            "masquerade_domain" => self.masquerade_domain = Some(hostname(key, v)?),
            "trusted_group" => {
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    return Err(format!("trusted_group: `{v}` is not a group name"));
                }
                self.trusted_group = Some(v.to_string());
            }
            "max_per_destination" => {
                self.max_per_destination = v.parse().ok().filter(|n| *n > 0).ok_or(format!(
                    "max_per_destination: `{v}` is not a positive number"
                ))?
            }
            "transaction_deadline" => self.transaction_deadline = positive_duration(key, v)?,
            "connect_timeout" => self.timeouts.connect = positive_duration(key, v)?,
            "command_timeout" => {
                let d = positive_duration(key, v)?;
                let t = &mut self.timeouts;
                (t.greeting, t.helo, t.mail, t.rcpt, t.data_init) = (d, d, d, d, d);
            }
            "data_timeout" => {
                let d = positive_duration(key, v)?;
                (self.timeouts.data_block, self.timeouts.data_done) = (d, d);
            }
            _ => return Err(format!("unknown key `{key}`")),
        }
        Ok(())
    }
}

impl Config {
    /// What only the keys together can tell about TLS and AUTH.
    fn check_tls_auth(&self) -> std::result::Result<(), String> {
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err("tls_cert_file and tls_key_file go together".into());
        }
        let secret = self.auth_password_file.is_some() || self.auth_xoauth2_token_file.is_some();
        if self.auth_password_file.is_some() && self.auth_xoauth2_token_file.is_some() {
            return Err(
                "auth_password_file and auth_xoauth2_token_file: give one, not both".into(),
            );
        }
        match (&self.auth_user, secret) {
            (Some(_), false) => {
                Err("auth_user needs auth_password_file or auth_xoauth2_token_file".into())
            }
            (None, true) => Err("auth_password_file or auth_xoauth2_token_file needs auth_user".into()),
            (Some(_), true) if self.smarthosts.is_empty() => Err(
                "auth_user is only used with a smarthost (credentials never go to MX hosts); set smarthost"
                    .into(),
            ),
            _ => Ok(()),
        }
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

    #[test]
    fn defaults_serve_without_a_file() {
        let c = Config::load(Some(Path::new("/nonexistent/spoolmail.conf")));
        assert_eq!(c.unwrap_err().exit_code(), 78);
        let c = parse("# nothing\n\n").unwrap();
        assert_eq!(c.spool_dir, Path::new(DEFAULT_SPOOL));
        assert_eq!(c.max_message_size, 50 * 1024 * 1024);
        assert_eq!(c.retry_schedule.len(), 7);
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
            c.retry_schedule,
            vec![
                Duration::ZERO,
                Duration::from_secs(60),
                Duration::from_secs(7200)
            ]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("spool_dir = /x\n\nbogus = 1\n").unwrap_err();
        assert_eq!(e.exit_code(), 78);
        assert_eq!(e.to_string(), "/etc/test.conf:3: unknown key `bogus`");
        let e = parse("smtp_port = 99999\n").unwrap_err();
        assert!(
            e.to_string().starts_with("/etc/test.conf:1: smtp_port"),
            "{e}"
        );
        assert!(parse("spool_dir = relative\n").is_err());
        assert!(parse("smarthost = bad host!\n").is_err());
        assert!(parse("tls = maybe\n").is_err());
        assert!(parse("no equals sign\n").is_err());
    }
}
