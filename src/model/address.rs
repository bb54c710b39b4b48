//! One envelope address, as an addr-spec: a local part and, when qualified,
//! a domain. This is the one place an address is split, checked and written.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An addr-spec that passed [`Address::parse`]: no control characters, no
/// spaces or angle brackets outside quotes, so nothing written from it can
/// become an extra SMTP command or header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// As written, with its quotes and escapes when quoted.
    local: String,
    /// None for an unqualified address (`root`, `"x@y"`).
    domain: Option<String>,
}

/// Why a text is not an address (the caller adds the text itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressError(pub &'static str);

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for AddressError {}

/// Longer addresses are refused (RFC 5321 allows 64 + 1 + 255).
const MAX_LEN: usize = 512;

impl Address {
    /// Splits at the last `@` outside quotes: (local part, domain). An `@`
    /// inside a quoted local part (`"x@y"`) does not qualify the address.
    pub fn split(text: &str) -> (&str, Option<&str>) {
        let mut in_quotes = false;
        let mut escaped = false;
        let mut at = None;
        for (i, c) in text.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                '@' if !in_quotes => at = Some(i),
                _ => {}
            }
        }
        match at {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        }
    }

    /// Checks an addr-spec (`local`, `local@domain`, `"quoted"@domain`,
    /// `local@[192.0.2.1]`, `local@[IPv6:2001:db8::1]`).
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        if text.chars().any(|c| c.is_control()) {
            return Err(AddressError("contains a control character"));
        }
        if text.len() > MAX_LEN {
            return Err(AddressError("longer than 512 characters"));
        }
        let (local, domain) = Address::split(text);
        check_local(local)?;
        if let Some(domain) = domain {
            check_domain(domain)?;
        }
        Ok(Address {
            local: local.to_string(),
            domain: domain.map(str::to_string),
        })
    }

    /// An address spoolmail accepted earlier (read back from the spool, or
    /// the result of alias expansion and qualifying): parsed when it
    /// parses; otherwise split as it is written, as an earlier release (or
    /// an unusual host name) may have made it, so that a queued message is
    /// still delivered or bounced rather than refused. Written back, it is
    /// the same text.
    pub fn accepted(text: &str) -> Address {
        Address::parse(text).unwrap_or_else(|_| {
            let (local, domain) = Address::split(text);
            Address {
                local: local.to_string(),
                domain: domain.map(str::to_string),
            }
        })
    }

    /// Whether every character is ASCII (else SMTPUTF8 is needed).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.as_deref().is_none_or(str::is_ascii)
    }

    /// The local part as written (quoted ones with their quotes).
    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    pub fn is_quoted(&self) -> bool {
        self.local.starts_with('"')
    }

    pub fn is_qualified(&self) -> bool {
        self.domain.is_some()
    }

    /// `root` becomes `root@domain`; a qualified address stays as it is.
    pub fn qualified(self, domain: &str) -> Address {
        match self.domain {
            Some(_) => self,
            None => self.with_domain(domain),
        }
    }

    /// The same local part at another domain (masquerading).
    pub fn with_domain(self, domain: &str) -> Address {
        Address {
            local: self.local,
            domain: Some(domain.to_string()),
        }
    }

    /// The address of a domain literal: `Some(Some(ip))` for `[192.0.2.1]`
    /// or `[IPv6:2001:db8::1]` (the tag in any case, RFC 5321 4.1.3),
    /// `Some(None)` for a bracketed text that is neither, None for a name.
    pub fn literal(domain: &str) -> Option<Option<IpAddr>> {
        let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
        let v6 = inner
            .get(..5)
            .filter(|tag| tag.eq_ignore_ascii_case("IPv6:"))
            .map(|_| &inner[5..]);
        Some(match v6 {
            Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            None => inner.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        })
    }
}

/// Why a quoted local part, legal as it is, is refused unless the config
/// allows it: a receiver that splits SMTP commands naively would read a
/// different path or extra parameters out of it (`MAIL
/// FROM:<"x> SIZE=1 RCPT TO:<e@vil"@b.com>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnusualLocalPart {
    /// `<` or `>`: the path could be read as ending there.
    AngleBracket,
    /// A space and `KEYWORD=`: what follows could be read as a parameter.
    LooksLikeParameter,
}

impl fmt::Display for UnusualLocalPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnusualLocalPart::AngleBracket => {
                "its quoted local part contains `<` or `>`, which a receiver could read as the end of the path"
            }
            UnusualLocalPart::LooksLikeParameter => {
                "its quoted local part contains ` KEYWORD=`, which a receiver could read as an SMTP parameter"
            }
        })
    }
}

impl Address {
    /// Whether the local part is one of the legal but misleading kinds.
    pub fn unusual_local_part(&self) -> Option<UnusualLocalPart> {
        // Unquoted local parts can hold neither angle brackets nor spaces.
        if !self.is_quoted() {
            return None;
        }
        if self.local.contains(['<', '>']) {
            return Some(UnusualLocalPart::AngleBracket);
        }
        let parameter = self.local.split(' ').skip(1).any(|word| {
            // RFC 5321's esmtp-keyword: (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
            let key_len = word
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(word.len());
            key_len > 0
                && word.starts_with(|c: char| c.is_ascii_alphanumeric())
                && word[key_len..].starts_with('=')
        });
        parameter.then_some(UnusualLocalPart::LooksLikeParameter)
    }
}

fn check_local(local: &str) -> Result<(), AddressError> {
    if local.is_empty() {
        return Err(AddressError("empty local part"));
    }
    if local.starts_with('"') {
        if !is_quoted_string(local) {
            return Err(AddressError("bad quoting"));
        }
    } else if local.split('.').any(str::is_empty)
        || local.contains(|c: char| " <>()[]\\,;:\"@".contains(c))
    {
        return Err(AddressError("bad local part"));
    }
    Ok(())
}

/// One quoted string, whole: no unescaped quote inside and no escape of the
/// closing one, so that qualifying it cannot move its end (`"""` is not).
fn is_quoted_string(text: &str) -> bool {
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return false;
    };
    let mut escaped = false;
    for c in inner.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return false,
            _ => {}
        }
    }
    !escaped
}

fn check_domain(domain: &str) -> Result<(), AddressError> {
    match Address::literal(domain) {
        Some(Some(_)) => Ok(()),
        Some(None) => Err(AddressError(
            "invalid address literal (use [192.0.2.1] or [IPv6:2001:db8::1])",
        )),
        None => {
            let name = domain.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
            });
            if name {
                Ok(())
            } else {
                Err(AddressError("bad domain"))
            }
        }
    }
}

/// The addr-spec: `local@domain`, or `local` when unqualified.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.domain {
            Some(d) => write!(f, "{}@{d}", self.local),
            None => f.write_str(&self.local),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusual_quoted_local_parts() {
        let why_angle = Some(UnusualLocalPart::AngleBracket);
        let why_param = Some(UnusualLocalPart::LooksLikeParameter);
        for (text, why) in [
            ("a@b.c", None),
            ("\"john smith\"@b.c", None),
            ("\"a=b\"@b.c", None),
            ("\"a =\"@b.c", None),
            ("\"x y=z\"", why_param),
            ("\"a<b\"@b.c", why_angle),
            ("\"a>b\"@b.c", why_angle),
            ("\"x> SIZE=1 RCPT TO:<e@vil\"@b.com", why_angle),
            ("\"x SIZE=1\"@b.com", why_param),
            ("\"x NOTIFY=NEVER\"@b.com", why_param),
            ("\"x\\ ORCPT=rfc822;a\"@b.com", why_param),
            ("\"x X-Y9=\"@b.com", why_param),
            ("\"x -A=\"@b.com", None),
        ] {
            let a = Address::parse(text).unwrap();
            assert_eq!(a.unusual_local_part(), why, "{text}");
        }
    }

    #[test]
    fn splitting() {
        for (text, local, domain) in [
            ("a@b.c", "a", Some("b.c")),
            ("root", "root", None),
            ("\"x@y\"", "\"x@y\"", None),
            ("\"x@y\"@z.org", "\"x@y\"", Some("z.org")),
            ("\"a\\\"@b\"@c", "\"a\\\"@b\"", Some("c")),
            ("a@b@c", "a@b", Some("c")),
            ("a@", "a", Some("")),
            ("@b", "", Some("b")),
            ("", "", None),
        ] {
            assert_eq!(Address::split(text), (local, domain), "{text}");
        }
    }

    #[test]
    fn parsing_and_display() {
        for (text, local, domain, quoted) in [
            ("a@b.c", "a", Some("b.c"), false),
            (
                "first.last@ex-ample.org",
                "first.last",
                Some("ex-ample.org"),
                false,
            ),
            ("root", "root", None, false),
            ("\"x@y\"", "\"x@y\"", None, true),
            (
                "\"john doe\"@example.com",
                "\"john doe\"",
                Some("example.com"),
                true,
            ),
            ("jörg@exämple.de", "jörg", Some("exämple.de"), false),
            ("u@[192.0.2.1]", "u", Some("[192.0.2.1]"), false),
            ("u@[IPv6:::1]", "u", Some("[IPv6:::1]"), false),
            (
                "u@[ipv6:2001:DB8::1]",
                "u",
                Some("[ipv6:2001:DB8::1]"),
                false,
            ),
        ] {
            let a = Address::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (a.local(), a.domain(), a.is_quoted(), a.is_qualified()),
                (local, domain, quoted, domain.is_some()),
                "{text}"
            );
            assert_eq!(a.to_string(), text);
        }
    }

    #[test]
    fn refused() {
        let long = format!("{}@b", "a".repeat(511));
        for (text, why) in [
            ("", "empty local part"),
            ("@b", "empty local part"),
            ("a b@c", "bad local part"),
            ("a..b@c", "bad local part"),
            (".a@c", "bad local part"),
            ("<a@b>", "bad local part"),
            ("\"a@b", "bad quoting"),
            ("\"@b", "bad quoting"),
            // Found by the aliases fuzz target: accepted unqualified, these
            // were refused once qualified (`"""@example.org` reads as one
            // unterminated quoted string).
            ("\"\"\"", "bad quoting"),
            ("\"a\"b\"@c", "bad quoting"),
            ("\"a\\\"", "bad quoting"),
            ("a@b c", "bad domain"),
            ("a@b>", "bad domain"),
            ("a@", "bad domain"),
            ("a@b..c", "bad domain"),
            ("a@b\r\nRCPT TO:<x@y>", "contains a control character"),
            ("a\0@b", "contains a control character"),
            (long.as_str(), "longer than 512 characters"),
        ] {
            assert_eq!(Address::parse(text), Err(AddressError(why)), "{text}");
        }
        for text in [
            "a@[smarthost]",
            "a@[bogus]",
            "a@[::1]",
            "a@[IPv6:127.0.0.1]",
            "a@[IPv6:zz::1]",
            "a@[256.0.0.1]",
            "a@[]",
            "a@[1.2.3.4",
        ] {
            let e = Address::parse(text).unwrap_err();
            assert!(
                e.0.contains("address literal") || e.0 == "bad domain",
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn literals() {
        for (domain, want) in [
            ("[127.0.0.1]", Some(Some("127.0.0.1"))),
            ("[IPv6:::1]", Some(Some("::1"))),
            ("[IPV6:2001:db8::1]", Some(Some("2001:db8::1"))),
            ("[ipv6:::1]", Some(Some("::1"))),
            ("[smarthost]", Some(None)),
            ("[::1]", Some(None)),
            ("[IPv6:]", Some(None)),
            ("example.org", None),
            ("[example.org", None),
        ] {
            let got = Address::literal(domain).map(|o| o.map(|ip| ip.to_string()));
            assert_eq!(got.as_ref().map(|o| o.as_deref()), want, "{domain}");
        }
    }

    #[test]
    fn accepted_addresses_keep_their_text() {
        for (text, local, domain) in [
            ("a@b.c", "a", Some("b.c")),
            ("\"x@y\"@h", "\"x@y\"", Some("h")),
            // What Address::parse refuses, a queue of an earlier release
            // may hold: split as written.
            ("a@[smarthost]", "a", Some("[smarthost]")),
            ("a b@c", "a b", Some("c")),
            ("a@", "a", Some("")),
            ("", "", None),
        ] {
            let a = Address::accepted(text);
            assert_eq!((a.local(), a.domain()), (local, domain), "{text}");
            assert_eq!(a.to_string(), text);
        }
        assert!(Address::accepted("a@b.c").is_ascii());
        assert!(!Address::accepted("j\u{f6}rg@b.c").is_ascii());
        assert!(!Address::accepted("a@b\u{e4}.c").is_ascii());
    }

    #[test]
    fn qualifying() {
        let q =
            |text: &str, domain: &str| Address::parse(text).unwrap().qualified(domain).to_string();
        assert_eq!(q("root", "host.example.org"), "root@host.example.org");
        assert_eq!(q("a@b", "host"), "a@b");
        assert_eq!(q("\"x@y\"", "h"), "\"x@y\"@h");
        let moved = Address::parse("u@localhost")
            .unwrap()
            .with_domain("example.org");
        assert_eq!(moved.to_string(), "u@example.org");
    }
}
