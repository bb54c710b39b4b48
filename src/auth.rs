//! SMTP AUTH (RFC 4954) for smarthosts: the credentials (read from their
//! files in the delivery child, never kept anywhere else), the choice of a
//! mechanism from what the server offers, and what goes on the wire.
//!
//! PLAIN (RFC 4616) is preferred, LOGIN where only it is offered; a bearer
//! token (`auth_xoauth2_token_file`) goes as XOAUTH2 (Google's and
//! Microsoft's SASL mechanism for OAuth 2.0). This module only encodes: the
//! SMTP client drives the exchange and shows every secret line as `***`.

use crate::mime::base64;
use std::fmt;
use std::path::{Path, PathBuf};

/// What proves who we are.
pub enum Secret {
    Password(String),
    /// An OAuth 2.0 access token, kept fresh in its file by another program.
    Bearer(String),
}

/// Where the credentials come from: `auth_user`, `auth_password_file`,
/// `auth_xoauth2_token_file` and `auth_allow_plaintext` of the config
/// (deliver builds this from it, so that this module needs nothing else of
/// the config).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub xoauth2_token_file: Option<PathBuf>,
    /// Credentials may go over a connection without verified TLS.
    pub allow_plaintext: bool,
}

pub struct Credentials {
    pub user: String,
    pub secret: Secret,
    /// `auth_allow_plaintext = yes`: send them without (verified) TLS too.
    pub allow_plaintext: bool,
}

impl fmt::Debug for Credentials {
    /// Never the secret, whoever prints this.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ user: {:?}, secret: *** }}", self.user)
    }
}

impl Credentials {
    /// The configured credentials, read from their file; None when no
    /// `auth_user` is set. An Err says which file could not be read (the
    /// message then waits: the file may be fixed).
    pub fn load(settings: &Settings) -> Result<Option<Credentials>, String> {
        let Some(user) = &settings.user else {
            return Ok(None);
        };
        let secret = match (&settings.password_file, &settings.xoauth2_token_file) {
            (_, Some(file)) => Secret::Bearer(first_line(file, "auth_xoauth2_token_file")?),
            (Some(file), None) => Secret::Password(first_line(file, "auth_password_file")?),
            (None, None) => {
                return Err(
                    "auth_user is set, but neither auth_password_file nor auth_xoauth2_token_file"
                        .into(),
                );
            }
        };
        Ok(Some(Credentials {
            user: user.clone(),
            secret,
            allow_plaintext: settings.allow_plaintext,
        }))
    }

    /// The mechanisms these credentials can use, in order of preference.
    pub fn usable(&self) -> &'static [Mechanism] {
        match self.secret {
            Secret::Password(_) => &[Mechanism::Plain, Mechanism::Login],
            Secret::Bearer(_) => &[Mechanism::XOAuth2],
        }
    }

    /// The first usable mechanism the server offers (`offered`: the words
    /// after AUTH in its EHLO reply).
    pub fn choose(&self, offered: &[String]) -> Option<Mechanism> {
        self.usable()
            .iter()
            .copied()
            .find(|m| offered.iter().any(|o| o.eq_ignore_ascii_case(m.name())))
    }

    /// The exchange for `mech`: the AUTH command, then the response to each
    /// 334 challenge in turn. Every element is secret.
    pub fn exchange(&self, mech: Mechanism) -> Exchange {
        let secret = match &self.secret {
            Secret::Password(p) | Secret::Bearer(p) => p.as_str(),
        };
        match mech {
            Mechanism::Plain => Exchange {
                command: format!(
                    "AUTH PLAIN {}",
                    base64(format!("\0{}\0{secret}", self.user).as_bytes())
                ),
                responses: Vec::new(),
            },
            Mechanism::Login => Exchange {
                command: "AUTH LOGIN".into(),
                responses: vec![base64(self.user.as_bytes()), base64(secret.as_bytes())],
            },
            Mechanism::XOAuth2 => Exchange {
                command: format!(
                    "AUTH XOAUTH2 {}",
                    base64(
                        format!("user={}\x01auth=Bearer {secret}\x01\x01", self.user).as_bytes()
                    )
                ),
                // On failure the server sends a 334 with an error in JSON and
                // waits for an empty line before its 535.
                responses: Vec::new(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    XOAuth2,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }
}

/// The lines one AUTH sends.
pub struct Exchange {
    pub command: String,
    pub responses: Vec<String>,
}

/// The first line of a secret file, without its line end. A secret may
/// hold any character but a line break (spaces included).
pub(crate) fn first_line(file: &Path, key: &str) -> Result<String, String> {
    let text =
        std::fs::read(file).map_err(|e| format!("cannot read {key} {}: {e}", file.display()))?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = String::from_utf8(line.to_vec())
        .map_err(|_| format!("{key} {}: not UTF-8", file.display()))?;
    if line.is_empty() {
        return Err(format!("{key} {}: empty", file.display()));
    }
    if line.chars().any(|c| c.is_control()) {
        return Err(format!(
            "{key} {}: control characters in the first line",
            file.display()
        ));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(secret: Secret) -> Credentials {
        Credentials {
            user: "alice".into(),
            secret,
            allow_plaintext: false,
        }
    }

    #[test]
    fn mechanism_choice() {
        let pw = creds(Secret::Password("s3cret".into()));
        let offer = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(pw.choose(&offer("LOGIN PLAIN")), Some(Mechanism::Plain));
        assert_eq!(pw.choose(&offer("login")), Some(Mechanism::Login));
        assert_eq!(pw.choose(&offer("CRAM-MD5 XOAUTH2")), None);
        let tok = creds(Secret::Bearer("ya29.token".into()));
        assert_eq!(
            tok.choose(&offer("PLAIN LOGIN XOAUTH2")),
            Some(Mechanism::XOAuth2)
        );
        assert_eq!(tok.choose(&offer("PLAIN LOGIN")), None);
    }

    #[test]
    fn exchanges() {
        let pw = creds(Secret::Password("s3cret".into()));
        let e = pw.exchange(Mechanism::Plain);
        assert_eq!(
            e.command,
            format!("AUTH PLAIN {}", base64(b"\0alice\0s3cret"))
        );
        assert!(e.responses.is_empty());
        let e = pw.exchange(Mechanism::Login);
        assert_eq!(e.command, "AUTH LOGIN");
        assert_eq!(e.responses, vec!["YWxpY2U=", "czNjcmV0"]);
        let tok = creds(Secret::Bearer("tok".into()));
        let e = tok.exchange(Mechanism::XOAuth2);
        assert_eq!(
            e.command,
            format!(
                "AUTH XOAUTH2 {}",
                base64(b"user=alice\x01auth=Bearer tok\x01\x01")
            )
        );
        assert!(!format!("{pw:?}").contains("s3cret"));
    }

    #[test]
    fn secret_files() {
        let dir = std::env::temp_dir().join(format!("spoolmail-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "pass word\r\nignored\n").unwrap();
        assert_eq!(first_line(&f, "k").unwrap(), "pass word");
        std::fs::write(&f, "\n").unwrap();
        assert!(first_line(&f, "k").unwrap_err().contains("empty"));
        assert!(
            first_line(&dir.join("none"), "k")
                .unwrap_err()
                .contains("cannot read")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
