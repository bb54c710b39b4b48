//! A DKIM signing key of the config (`dkim_key = DOMAIN SELECTOR KEYFILE
//! [users=NAME,...]`), which cover a message, and whether one signs it.

use std::path::PathBuf;

use super::login_names::{LoginNames, users_allow};

/// One `dkim_key = DOMAIN SELECTOR KEYFILE [users=NAME[,NAME...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKey {
    /// Lower case, without a trailing dot.
    pub domain: String,
    pub selector: String,
    pub file: PathBuf,
    /// `users=`: only mail these login names (and root) submitted is
    /// signed with the key, and spoolmail's own notices; None: everyone's.
    pub users: Option<LoginNames>,
}

impl DkimKey {
    /// `DOMAIN SELECTOR KEYFILE [users=NAME[,NAME...]]`, separated by
    /// spaces or tabs; KEYFILE absolute.
    pub fn parse(v: &str) -> Result<DkimKey, String> {
        let words: Vec<&str> = v.split_whitespace().collect();
        let (domain, selector, file, users) = match words[..] {
            [domain, selector, file] => (domain, selector, file, None),
            [domain, selector, file, option] => match option.strip_prefix("users=") {
                Some(names) => (domain, selector, file, Some(LoginNames::parse(names)?)),
                None => return Err(format!("dkim_key: `{option}` is not users=NAME[,NAME...]")),
            },
            _ => {
                return Err(format!(
                    "dkim_key: `{v}` is not DOMAIN SELECTOR KEYFILE [users=NAME,...]"
                ));
            }
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
            users,
        })
    }

    /// Whether the key signs a message that `uid` submitted (`login` gives
    /// its login name, asked only when it matters), or that spoolmail
    /// itself made (`notice`: a bounce or delay notice, whose envelope says
    /// so; no submission can). The keys [`choose_dkim_keys`] finds decide
    /// alone: a user they do not sign for gets no signature, not one of a
    /// parent domain's key, which would align with the From domain.
    pub fn signs_for(
        &self,
        uid: u32,
        notice: bool,
        login: impl FnOnce() -> Option<String>,
    ) -> bool {
        notice || users_allow(self.users.as_ref(), uid, login)
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

/// The keys for a message whose From address is at `domain`: those of
/// that domain or of the closest parent domain that has any (the most
/// specific wins), in the config's order; none when no key covers it.
pub fn choose_dkim_keys<'k>(keys: &'k [DkimKey], domain: &str) -> Vec<&'k DkimKey> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let covers = |k: &DkimKey| {
        domain == k.domain
            || domain
                .strip_suffix(k.domain.as_str())
                .is_some_and(|rest| rest.ends_with('.'))
    };
    let closest = keys
        .iter()
        .filter(|k| covers(k))
        .map(|k| k.domain.len())
        .max();
    (keys.iter())
        .filter(|k| covers(k) && Some(k.domain.len()) == closest)
        .collect()
}

/// A key that does not sign for a message's submitter (`signs`:
/// [`DkimKey::signs_for`]) and covers, with no key that does beside it,
/// a domain of `names`, the domains its From fields name in any way (see
/// `dkim::from_names`), if any. A receiver may take any of them for the
/// author's domain (a second From field or address, a route, a parser
/// that reads a comment), and a signature of the keys the first address
/// chooses would align with it (relaxed alignment: `example.org`'s
/// signature aligns with `shop.example.org`), so such a message is not
/// signed at all.
pub fn refusing_key<'k>(
    keys: &'k [DkimKey],
    names: &[String],
    mut signs: impl FnMut(&DkimKey) -> bool,
) -> Option<&'k DkimKey> {
    names.iter().find_map(|name| {
        let covering = choose_dkim_keys(keys, name.trim_start_matches('.'));
        let refused = !covering.is_empty() && !covering.iter().any(|k| signs(k));
        refused.then(|| covering[0])
    })
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
                users: None,
            }
        );
        let shop = DkimKey::parse("example.org sel /k users=www-data,alice").unwrap();
        let names = shop.users.as_ref().map(|u| u.names().to_vec());
        assert_eq!(names, Some(vec!["www-data".into(), "alice".into()]));
        assert_eq!(k.dns_name(), "mail2026._domainkey.example.org");
        assert!(DkimKey::parse("example.org s1.eu /k").is_ok());
        for bad in [
            "",
            "example.org sel",
            "example.org sel /k extra",
            "example.org sel /k users=",
            "example.org sel /k users=a/b",
            "example.org sel /k users=a users=b",
            "example.org sel /k user=a",
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
            "mail.example.org b2 /b2",
        ]
        .iter()
        .map(|l| DkimKey::parse(l).unwrap())
        .collect();
        let selectors = |from| -> Vec<&str> {
            let chosen = choose_dkim_keys(&keys, from);
            chosen.iter().map(|k| k.selector.as_str()).collect()
        };
        for (from, want) in [
            ("example.org", &["a"][..]),
            ("EXAMPLE.org", &["a"]),
            ("shop.example.org", &["a"]),
            ("mail.example.org", &["b", "b2"]),
            ("x.mail.example.org", &["b", "b2"]),
            ("other.net", &["c"]),
            ("badexample.org", &[]),
            ("example.org.evil", &[]),
            ("org", &[]),
            ("example.com", &[]),
        ] {
            assert_eq!(selectors(from), want, "{from}");
        }
        assert!(choose_dkim_keys(&[], "example.org").is_empty());
    }

    #[test]
    fn a_key_with_users_signs_their_mail_roots_and_notices_only() {
        let open = DkimKey::parse("example.org a /a").unwrap();
        let shop = DkimKey::parse("example.org a /a users=www-data").unwrap();
        let name = |n: &'static str| move || Some(n.to_string());
        // (key, uid, login, notice) -> signs
        let cases = [
            (&open, 1001, name("mallory"), false, true),
            (&shop, 33, name("www-data"), false, true),
            (&shop, 0, name("root"), false, true),
            (&shop, 1001, name("mallory"), false, false),
            (&shop, 1001, name("mallory"), true, true),
        ];
        for (key, uid, login, notice, want) in cases {
            assert_eq!(key.signs_for(uid, notice, login), want, "{uid} {notice}");
        }
        assert!(
            !shop.signs_for(4242, false, || None),
            "a uid without a name"
        );
    }

    #[test]
    fn a_name_whose_keys_do_not_sign_is_refused_whatever_the_others() {
        let keys = [
            DkimKey::parse("example.org a /a").unwrap(),
            DkimKey::parse("shop.example.org a /a users=www-data").unwrap(),
            DkimKey::parse("corp.test a /a users=www-data").unwrap(),
            DkimKey::parse("news.corp.test a /a").unwrap(),
            DkimKey::parse("both.test a /a users=www-data").unwrap(),
            DkimKey::parse("both.test b /b").unwrap(),
        ];
        // Signs for nobody: every key with users= refuses.
        let refused = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|f| f.to_string()).collect();
            refusing_key(&keys, &names, |k| k.users.is_none()).map(|k| k.domain.as_str())
        };
        let (shop, corp) = (Some("shop.example.org"), Some("corp.test"));
        for (names, want) in [
            (&["a", "example.org"][..], None),
            (&["news.corp.test", "x.news.corp.test."], None),
            (&["example.org", "example", "shop"], None),
            (&["example.org", "both.test"], None),
            (&["example.org", "shop.example.org"], shop),
            (&["example.org", "SHOP.Example.org."], shop),
            (&["example.org", ".x.shop.example.org"], shop),
            (&["news.corp.test", "corp.test"], corp),
            (&["news.corp.test", "x.corp.test"], corp),
        ] {
            assert_eq!(refused(names), want, "{names:?}");
        }
        let names = vec!["example.org".to_string(), "shop.example.org".to_string()];
        let www = |k: &DkimKey| k.signs_for(33, false, || Some("www-data".into()));
        assert!(refusing_key(&keys, &names, www).is_none(), "a listed user");
    }
}
