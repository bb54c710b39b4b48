//! A DKIM signing key of the config (`dkim_key = DOMAIN SELECTOR KEYFILE`)
//! and which one signs a message.

use std::path::PathBuf;

/// One `dkim_key = DOMAIN SELECTOR KEYFILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKey {
    /// Lower case, without a trailing dot.
    pub domain: String,
    pub selector: String,
    pub file: PathBuf,
}

impl DkimKey {
    /// `DOMAIN SELECTOR KEYFILE`, separated by spaces or tabs; KEYFILE
    /// absolute.
    pub fn parse(v: &str) -> Result<DkimKey, String> {
        let words: Vec<&str> = v.split_whitespace().collect();
        let [domain, selector, file] = words[..] else {
            return Err(format!(
                "dkim_key: `{v}` is not DOMAIN SELECTOR KEYFILE (three words)"
            ));
        };
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if !is_dns_name(&domain) || !domain.contains('.') {
            return Err(format!("dkim_key: `{domain}` is not a domain name"));
        }
        if !is_dns_name(selector) {
            return Err(format!(
                "dkim_key: `{selector}` is not a selector (letters, digits, `-` and `.`)"
            ));
        }
        let file = PathBuf::from(file);
        if !file.is_absolute() {
            return Err(format!(
                "dkim_key: `{}` is not an absolute file name",
                file.display()
            ));
        }
        Ok(DkimKey {
            domain,
            selector: selector.to_string(),
            file,
        })
    }

    /// The DNS name the public key is published at.
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }
}

/// Labels of letters, digits and inner hyphens, at most 63 octets each
/// and 253 in all (RFC 1035 2.3.1, the syntax of DKIM's selectors too).
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The key for a message whose From address is at `domain`: the key of
/// that domain or of the closest parent domain that has one (the most
/// specific wins); None when no key covers it.
pub fn choose_dkim_key<'k>(keys: &'k [DkimKey], domain: &str) -> Option<&'k DkimKey> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    keys.iter()
        .filter(|k| {
            domain == k.domain
                || domain
                    .strip_suffix(k.domain.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        })
        .max_by_key(|k| k.domain.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines() {
        let k = DkimKey::parse("Example.ORG.  mail2026\t/etc/spoolmail/dkim/a.pem").unwrap();
        assert_eq!(
            k,
            DkimKey {
                domain: "example.org".into(),
                selector: "mail2026".into(),
                file: "/etc/spoolmail/dkim/a.pem".into(),
            }
        );
        assert_eq!(k.dns_name(), "mail2026._domainkey.example.org");
        assert!(DkimKey::parse("example.org s1.eu /k").is_ok());
        for bad in [
            "",
            "example.org sel",
            "example.org sel /k extra",
            "example.org sel relative.pem",
            "localhost sel /k",
            "exa_mple.org sel /k",
            "-x.org sel /k",
            "example.org se_l /k",
            "example.org .sel /k",
        ] {
            assert!(DkimKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_most_specific_domain_wins() {
        let keys: Vec<DkimKey> = [
            "example.org a /a",
            "mail.example.org b /b",
            "other.net c /c",
        ]
        .iter()
        .map(|l| DkimKey::parse(l).unwrap())
        .collect();
        for (from, selector) in [
            ("example.org", Some("a")),
            ("EXAMPLE.org", Some("a")),
            ("shop.example.org", Some("a")),
            ("mail.example.org", Some("b")),
            ("x.mail.example.org", Some("b")),
            ("other.net", Some("c")),
            ("badexample.org", None),
            ("example.org.evil", None),
            ("org", None),
            ("example.com", None),
        ] {
            assert_eq!(
                choose_dkim_key(&keys, from).map(|k| k.selector.as_str()),
                selector,
                "{from}"
            );
        }
        assert!(choose_dkim_key(&[], "example.org").is_none());
    }
}
