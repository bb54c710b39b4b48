//! `users=NAME[,NAME...]`: the local users a config line is for (a
//! `sender_relay_map` line, a `dkim_key`), and whose mail may use it.

/// The login names of a `users=` option: letters, digits, `.`, `_` and
/// `-` (not first), none empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginNames(Vec<String>);

impl LoginNames {
    pub fn parse(value: &str) -> Result<LoginNames, String> {
        value
            .split(',')
            .map(|name| {
                let ok = !name.is_empty()
                    && !name.starts_with('-')
                    && (name.bytes()).all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                ok.then(|| name.to_string())
                    .ok_or(format!("users: `{name}` is not a login name"))
            })
            .collect::<Result<_, _>>()
            .map(LoginNames)
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// Whether both name the same users, in any order.
    pub fn same_users(&self, other: &LoginNames) -> bool {
        use std::collections::BTreeSet;
        self.0.iter().collect::<BTreeSet<_>>() == other.0.iter().collect::<BTreeSet<_>>()
    }
}

/// Whether mail submitted by `uid` may use a line with `users` (None: no
/// `users=`, everyone's): root's always, and that of the login names
/// listed (`login` gives `uid`'s, None when it has none; asked only then).
pub fn users_allow(
    users: Option<&LoginNames>,
    uid: u32,
    login: impl FnOnce() -> Option<String>,
) -> bool {
    match users {
        None => true,
        Some(_) if uid == 0 => true,
        Some(names) => login().is_some_and(|name| names.0.contains(&name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_names_listed_may_use_a_line_with_users() {
        let users = LoginNames::parse("alice,www-data").unwrap();
        let asked = std::cell::Cell::new(0);
        let login = |name: Option<&str>| {
            asked.set(asked.get() + 1);
            name.map(String::from)
        };
        // (users=, uid, its login name) -> allowed
        let cases = [
            (None, 1000, Some("mallory"), true),
            (None, 1000, None, true),
            (Some(&users), 0, None, true),
            (Some(&users), 1000, Some("alice"), true),
            (Some(&users), 33, Some("www-data"), true),
            (Some(&users), 1001, Some("mallory"), false),
            (Some(&users), 1001, Some("Alice"), false),
            (Some(&users), 4242, None, false),
        ];
        for (users, uid, name, want) in cases {
            assert_eq!(
                users_allow(users, uid, || login(name)),
                want,
                "{uid} {name:?}"
            );
        }
        assert_eq!(asked.get(), 5, "the name is looked up only when it matters");
        let same = |a: &str, b: &str| {
            LoginNames::parse(a)
                .unwrap()
                .same_users(&LoginNames::parse(b).unwrap())
        };
        assert!(same("al,bo", "bo,al") && same("al,al", "al"));
        assert!(!same("al", "al,bo") && !same("al", "Al"));
    }
}
