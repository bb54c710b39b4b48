//! Pass ids: which queue pass wrote a message's state (doc/SPOOL.md, the
//! `pass` line), so that a pass counts one attempt per message however many
//! jobs it has for it, and leaves another live pass's notices to it.

use std::fmt;

/// A queue pass's id: the pass parent's pid and 64 random bits, as
/// `PID-HEX` (`4242-0123456789abcdef`). Unique enough across the hosts
/// sharing a spool; only ever compared for equality.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PassId(String);

impl PassId {
    /// The longest id `parse` takes (a pid of 10 digits, `-`, 16 digits).
    pub const MAX_LEN: usize = 32;

    /// The id of a pass run by process `pid` with `random` bits.
    pub fn new(pid: u32, random: u64) -> PassId {
        PassId(format!("{pid}-{random:016x}"))
    }

    /// The id if `text` has an id's form: digits, lower-case letters and
    /// `-`, at most [`PassId::MAX_LEN`] of them.
    pub fn parse(text: &str) -> Option<PassId> {
        let ok = !text.is_empty()
            && text.len() <= PassId::MAX_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-');
        ok.then(|| PassId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PassId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_id_is_its_pid_and_random_bits_and_parses_back() {
        let id = PassId::new(4242, 0x0123_4567_89ab_cdef);
        assert_eq!(id.as_str(), "4242-0123456789abcdef");
        assert_eq!(PassId::parse(id.as_str()), Some(id));
        let longest = PassId::new(u32::MAX, u64::MAX);
        assert_eq!(PassId::parse(longest.as_str()), Some(longest));
        assert_ne!(PassId::new(1, 2), PassId::new(1, 3));
        for bad in [
            "",
            "a b",
            "4242-0123456789ABCDEF",
            "1\n2",
            "../x",
            &"1".repeat(33),
        ] {
            assert_eq!(PassId::parse(bad), None, "{bad:?}");
        }
    }
}
