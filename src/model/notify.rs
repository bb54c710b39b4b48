//! When a DSN is wanted (RFC 3461 `NOTIFY=`).

use std::fmt;
use std::ops::BitOr;

/// `-N`, `NOTIFY=`: a set of SUCCESS, FAILURE and DELAY; the empty set is
/// NEVER (RFC 3461 allows NEVER only alone, so the two cannot be mixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify(u8);

impl Notify {
    pub const NEVER: Notify = Notify(0);
    pub const SUCCESS: Notify = Notify(1);
    pub const FAILURE: Notify = Notify(2);
    pub const DELAY: Notify = Notify(4);

    const WORDS: [(Notify, &'static str); 3] = [
        (Notify::SUCCESS, "SUCCESS"),
        (Notify::FAILURE, "FAILURE"),
        (Notify::DELAY, "DELAY"),
    ];

    /// `NEVER`, or a comma list of SUCCESS, FAILURE, DELAY, in any case.
    pub fn parse(text: &str) -> Option<Notify> {
        let words: Vec<String> = text
            .split(',')
            .map(|w| w.trim().to_ascii_uppercase())
            .collect();
        if words.iter().any(|w| w == "NEVER") {
            return (words.len() == 1).then_some(Notify::NEVER);
        }
        words.iter().try_fold(Notify::NEVER, |set, w| {
            let (flag, _) = Notify::WORDS.iter().find(|(_, name)| name == w)?;
            Some(set | *flag)
        })
    }

    /// Whether every flag of `other` is set (`NEVER` is in every set).
    pub fn contains(self, other: Notify) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_never(self) -> bool {
        self == Notify::NEVER
    }
}

impl BitOr for Notify {
    type Output = Notify;
    fn bitor(self, other: Notify) -> Notify {
        Notify(self.0 | other.0)
    }
}

/// The `NOTIFY=` value: `NEVER`, or the flags in RFC 3461's order.
impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_never() {
            return f.write_str("NEVER");
        }
        let words: Vec<&str> = Notify::WORDS
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
            .collect();
        f.write_str(&words.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let sf = Notify::SUCCESS | Notify::FAILURE;
        for (text, want) in [
            ("never", Some(Notify::NEVER)),
            ("NEVER", Some(Notify::NEVER)),
            ("success,failure", Some(sf)),
            ("SUCCESS, FAILURE", Some(sf)),
            ("failure,success", Some(sf)),
            ("delay", Some(Notify::DELAY)),
            ("success,success", Some(Notify::SUCCESS)),
            ("never,success", None),
            ("sometimes", None),
            ("success,", None),
            ("", None),
        ] {
            assert_eq!(Notify::parse(text), want, "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for (n, text) in [
            (Notify::NEVER, "NEVER"),
            (Notify::FAILURE, "FAILURE"),
            (Notify::SUCCESS | Notify::FAILURE, "SUCCESS,FAILURE"),
            (
                Notify::DELAY | Notify::FAILURE | Notify::SUCCESS,
                "SUCCESS,FAILURE,DELAY",
            ),
        ] {
            assert_eq!(n.to_string(), text);
            assert_eq!(Notify::parse(text), Some(n));
        }
        assert!((Notify::SUCCESS | Notify::DELAY).contains(Notify::DELAY));
        assert!(!Notify::SUCCESS.contains(Notify::FAILURE));
    }
}
