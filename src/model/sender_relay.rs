//! A relay chosen by the envelope sender: one line of `sender_relay_map`
//! (`PATTERN HOST[:PORT] [OPTION=VALUE ...]`), and which line a sender
//! matches, as Postfix's `sender_dependent_relayhost_maps` chooses.

use super::login_names::{LoginNames, users_allow};
use std::fmt;
use std::path::PathBuf;

/// Which senders a line takes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SenderPattern {
    /// `user@domain`: that address (compared without regard to case, as
    /// Postfix's table lookups are).
    Address(String),
    /// `@domain`: every sender at that domain (not its subdomains).
    Domain(String),
    /// `*`: every sender, the null sender `<>` of bounces included.
    Any,
}

impl SenderPattern {
    fn parse(word: &str) -> Result<SenderPattern, String> {
        if word == "*" {
            return Ok(SenderPattern::Any);
        }
        let lower = word.trim_end_matches('.').to_ascii_lowercase();
        let (local, domain) = lower
            .rsplit_once('@')
            .ok_or(format!("`{word}` is not user@domain, @domain or *"))?;
        let domain_ok = !domain.is_empty()
            && domain.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !domain_ok {
            return Err(format!("`{word}`: `{domain}` is not a domain name"));
        }
        let bad_local = local
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>');
        match local {
            "" => Ok(SenderPattern::Domain(domain.to_string())),
            _ if bad_local => Err(format!("`{word}` is not an address")),
            _ => Ok(SenderPattern::Address(lower)),
        }
    }
}

/// As written in the map, lower-cased: `billing@shop.example`,
/// `@shop.example`, `*`.
impl fmt::Display for SenderPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SenderPattern::Address(a) => f.write_str(a),
            SenderPattern::Domain(d) => write!(f, "@{d}"),
            SenderPattern::Any => f.write_str("*"),
        }
    }
}

/// Message limits of a relay (`max_messages_per_connection`,
/// `max_messages_per_minute`) and, for a `sender_relay_map` line, its
/// connections at once (`max_connections`); None: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayLimits {
    pub per_connection: Option<u32>,
    pub per_minute: Option<u32>,
    /// The most connections open to the relay at once, from the whole
    /// spool, under `max_per_destination`: for a relay that refuses more
    /// (a provider's 421 at the greeting), which every new queue run would
    /// otherwise meet again with its first messages.
    pub connections: Option<u32>,
}

/// One line of `sender_relay_map`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderRelay {
    pub pattern: SenderPattern,
    /// `HOST[:PORT]` as written (the config checks its form).
    pub host: String,
    /// AUTH as this user, with the password in `password_file`.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// `tls=implicit` (Some(true)) or `tls=starttls` (Some(false)); None:
    /// implicit on port 465, STARTTLS otherwise, as for `smarthost`.
    pub implicit_tls: Option<bool>,
    pub limits: RelayLimits,
    /// `users=NAME[,NAME...]`: only mail these login names (and root)
    /// submitted may use the line; others' falls through to the next
    /// match. None: everyone's.
    pub users: Option<LoginNames>,
}

impl SenderRelay {
    /// One line without its comment: `PATTERN HOST[:PORT]` and options
    /// `user=`, `password_file=`, `tls=starttls|implicit`,
    /// `max_messages_per_connection=N`, `max_messages_per_minute=N`,
    /// `max_connections=N`, each at most once; `user` and `password_file`
    /// go together.
    pub fn parse(line: &str) -> Result<SenderRelay, String> {
        let mut words = line.split_whitespace();
        let (Some(pattern), Some(host)) = (words.next(), words.next()) else {
            return Err("expected PATTERN HOST[:PORT] [OPTION=VALUE ...]".into());
        };
        let mut relay = SenderRelay {
            pattern: SenderPattern::parse(pattern)?,
            host: host.to_string(),
            user: None,
            password_file: None,
            implicit_tls: None,
            limits: RelayLimits::default(),
            users: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        for word in words {
            let (name, value) = word
                .split_once('=')
                .ok_or(format!("`{word}` is not OPTION=VALUE"))?;
            if seen.contains(&name) {
                return Err(format!("{name} is given twice"));
            }
            seen.push(name);
            relay.set(name, value)?;
        }
        if relay.user.is_some() != relay.password_file.is_some() {
            return Err("user= and password_file= go together".into());
        }
        Ok(relay)
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let count = || {
            value
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{name}: `{value}` is not a positive number"))
        };
        match name {
            "user" if !value.is_empty() => self.user = Some(value.to_string()),
            "password_file" if value.starts_with('/') => {
                self.password_file = Some(PathBuf::from(value));
            }
            "password_file" => return Err(format!("password_file: `{value}` is not absolute")),
            "tls" => {
                self.implicit_tls = Some(match value {
                    "implicit" => true,
                    "starttls" => false,
                    _ => return Err(format!("tls: `{value}` must be starttls or implicit")),
                });
            }
            "users" => self.users = Some(LoginNames::parse(value)?),
            "max_messages_per_connection" => self.limits.per_connection = Some(count()?),
            "max_messages_per_minute" => self.limits.per_minute = Some(count()?),
            "max_connections" => self.limits.connections = Some(count()?),
            "oauth2" => {
                return Err("oauth2= is not supported in sender_relay_map (see the README)".into());
            }
            _ => return Err(format!("unknown option `{name}`")),
        }
        Ok(())
    }
}

impl SenderRelay {
    /// Whether mail submitted by `uid` may use this line: everyone's
    /// without `users=`; with it, root's and that of the login names
    /// listed (`login` gives `uid`'s, None when it has none; asked only
    /// then).
    pub fn allows(&self, uid: u32, login: impl FnOnce() -> Option<String>) -> bool {
        users_allow(self.users.as_ref(), uid, login)
    }
}

/// The relay for a message from `sender` (empty: the null sender): the
/// line for that exact address, else for its domain, else `*`, among the
/// lines `may_use` (see [`SenderRelay::allows`]); the null sender of
/// bounces matches `*` only. None: no line takes it.
pub fn choose_sender_relay<'r>(
    relays: &'r [SenderRelay],
    sender: &str,
    may_use: impl Fn(&SenderRelay) -> bool,
) -> Option<&'r SenderRelay> {
    let find = |p: &SenderPattern| relays.iter().find(|r| r.pattern == *p && may_use(r));
    let lower = sender.trim_end_matches('.').to_ascii_lowercase();
    let exact = match lower.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Some((
            SenderPattern::Address(lower.clone()),
            SenderPattern::Domain(domain.to_string()),
        )),
        _ => None,
    };
    exact
        .and_then(|(address, domain)| find(&address).or_else(|| find(&domain)))
        .or_else(|| find(&SenderPattern::Any))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse() {
        let r = SenderRelay::parse(
            "billing@Shop.Example smtp.shop.example:587 user=shop password_file=/etc/pw \
             tls=starttls max_messages_per_connection=10 max_messages_per_minute=30 \
             max_connections=2",
        )
        .unwrap();
        assert_eq!(
            r,
            SenderRelay {
                pattern: SenderPattern::Address("billing@shop.example".into()),
                host: "smtp.shop.example:587".into(),
                user: Some("shop".into()),
                password_file: Some("/etc/pw".into()),
                implicit_tls: Some(false),
                limits: RelayLimits {
                    per_connection: Some(10),
                    per_minute: Some(30),
                    connections: Some(2),
                },
                users: None,
            }
        );
        for (line, pattern, shown) in [
            (
                "@Shop.example relay",
                SenderPattern::Domain("shop.example".into()),
                "@shop.example",
            ),
            ("* relay:25", SenderPattern::Any, "*"),
            (
                "Sales+X@x.example relay",
                SenderPattern::Address("sales+x@x.example".into()),
                "sales+x@x.example",
            ),
        ] {
            let r = SenderRelay::parse(line).unwrap();
            assert_eq!(r.pattern, pattern, "{line}");
            assert_eq!(r.pattern.to_string(), shown, "{line}");
            assert_eq!((r.user, r.limits), (None, RelayLimits::default()), "{line}");
        }
        assert_eq!(
            SenderRelay::parse("* r tls=implicit").unwrap().implicit_tls,
            Some(true)
        );
    }

    #[test]
    fn bad_lines_say_why() {
        for (line, why) in [
            ("*", "expected PATTERN HOST[:PORT]"),
            ("shop.example relay", "is not user@domain, @domain or *"),
            ("@ relay", "is not a domain name"),
            ("@a..b relay", "is not a domain name"),
            ("a@b_c relay", "is not a domain name"),
            ("* relay user", "`user` is not OPTION=VALUE"),
            ("* relay user=a", "user= and password_file= go together"),
            (
                "* relay password_file=/p",
                "user= and password_file= go together",
            ),
            (
                "* relay user=a user=b password_file=/p",
                "user is given twice",
            ),
            ("* relay user=a password_file=p", "is not absolute"),
            ("* relay tls=ssl", "must be starttls or implicit"),
            (
                "* relay max_messages_per_minute=0",
                "is not a positive number",
            ),
            (
                "* relay max_messages_per_connection=x",
                "is not a positive number",
            ),
            ("* relay max_connections=0", "is not a positive number"),
            ("* relay oauth2=default", "oauth2= is not supported"),
            ("* relay port=2", "unknown option `port`"),
        ] {
            let e = SenderRelay::parse(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }

    #[test]
    fn the_most_specific_line_wins() {
        let map: Vec<SenderRelay> = [
            "@shop.example domain",
            "billing@shop.example exact",
            "* any",
            "@other.example other",
        ]
        .iter()
        .map(|l| SenderRelay::parse(l).unwrap())
        .collect();
        let chosen = |s: &str| choose_sender_relay(&map, s, |_| true).map(|r| r.host.as_str());
        for (sender, relay) in [
            ("billing@shop.example", Some("exact")),
            ("Billing@SHOP.example", Some("exact")),
            ("sales@shop.example", Some("domain")),
            ("a@sub.shop.example", Some("any")),
            ("a@other.example", Some("other")),
            ("root@host.example", Some("any")),
            ("", Some("any")),
            ("root", Some("any")),
        ] {
            assert_eq!(chosen(sender), relay, "{sender:?}");
        }
        // Without `*`: bounces and unlisted senders take the default route.
        let no_any: Vec<SenderRelay> = map
            .into_iter()
            .filter(|r| r.pattern != SenderPattern::Any)
            .collect();
        for (sender, relay) in [
            ("", None),
            ("x@elsewhere.example", None),
            ("billing@shop.example", Some("exact")),
        ] {
            let got = choose_sender_relay(&no_any, sender, |_| true).map(|r| r.host.as_str());
            assert_eq!(got, relay, "{sender:?}");
        }
    }

    #[test]
    fn a_line_with_users_is_for_those_logins_and_root_only() {
        let parse = |l: &str| SenderRelay::parse(l).map(|r| r.users.map(|u| u.names().to_vec()));
        for (line, users) in [
            ("* r users=alice", Ok(Some(vec!["alice".to_string()]))),
            (
                "* r users=alice,bob.smith,www-data,_svc",
                Ok(Some(vec![
                    "alice".into(),
                    "bob.smith".into(),
                    "www-data".into(),
                    "_svc".into(),
                ])),
            ),
            ("* r", Ok(None)),
            (
                "* r users=",
                Err("users: `` is not a login name".to_string()),
            ),
            (
                "* r users=alice,",
                Err("users: `` is not a login name".into()),
            ),
            (
                "* r users=-x",
                Err("users: `-x` is not a login name".into()),
            ),
            (
                "* r users=a/b",
                Err("users: `a/b` is not a login name".into()),
            ),
            ("* r users=a users=b", Err("users is given twice".into())),
        ] {
            assert_eq!(parse(line), users, "{line}");
        }
        let map: Vec<SenderRelay> = [
            "billing@shop.example exact users=alice,bob",
            "@shop.example domain users=carol",
            "* any",
        ]
        .iter()
        .map(|l| SenderRelay::parse(l).unwrap())
        .collect();
        let login = |uid: u32| match uid {
            1000 => Some("alice".to_string()),
            1001 => Some("mallory".to_string()),
            1002 => Some("carol".to_string()),
            _ => None,
        };
        for (uid, sender, relay) in [
            (1000, "billing@shop.example", "exact"),
            (0, "billing@shop.example", "exact"),
            (1001, "billing@shop.example", "any"),
            (1002, "billing@shop.example", "domain"),
            (1001, "sales@shop.example", "any"),
            (1002, "sales@shop.example", "domain"),
            (4242, "billing@shop.example", "any"),
        ] {
            let may_use = |r: &SenderRelay| r.allows(uid, || login(uid));
            let got = choose_sender_relay(&map, sender, may_use).map(|r| r.host.as_str());
            assert_eq!(got, Some(relay), "{uid} {sender}");
        }
    }
}
