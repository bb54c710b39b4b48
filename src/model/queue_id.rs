//! Queue ids: the names of messages in the spool (doc/SPOOL.md).

use std::fmt;

/// A message's queue id: 16 upper-case hexadecimal digits, the arrival
/// second (8), its microseconds (5) and 12 random bits (3). Sorting ids sorts
/// by arrival; the random bits keep two submissions in one microsecond apart.
/// Kept as its 16 ASCII digits in place, not a `String`: a pass or a
/// listing holds every id of the queue at once (17 bytes an entry of a
/// scan rather than 56 and an allocation: a million of them fit in
/// 17 MB), and bytes compare as the text does, so the order is the same.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId([u8; QueueId::LEN]);

impl QueueId {
    pub const LEN: usize = 16;

    /// The id of a message arriving at `secs`.`micros` with `random` bits
    /// (only the low 12 are used; the second wraps at 2^32 as the format has 8 digits).
    pub fn new(secs: u64, micros: u32, random: u64) -> QueueId {
        let text = format!(
            "{:08X}{:05X}{:03X}",
            secs as u32,
            micros % 1_000_000,
            random & 0xfff
        );
        let mut id = [0; QueueId::LEN];
        id.copy_from_slice(text.as_bytes());
        QueueId(id)
    }

    /// The id if `text` has the id form, as in a file name in `queue/`.
    pub fn parse(text: &str) -> Option<QueueId> {
        let ok = text.len() == QueueId::LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        let mut id = [0; QueueId::LEN];
        ok.then(|| {
            id.copy_from_slice(text.as_bytes());
            QueueId(id)
        })
    }

    /// Parses a file name's bytes as [`QueueId::parse`] parses text.
    pub fn parse_bytes(name: &[u8]) -> Option<QueueId> {
        std::str::from_utf8(name).ok().and_then(QueueId::parse)
    }

    pub fn as_str(&self) -> &str {
        // Hex digits by construction (`new`, `parse`): never the default.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The arrival second the id begins with (Unix time; the id keeps its
    /// low 32 bits, enough until 2106), read without opening the message.
    pub fn arrival(&self) -> u64 {
        u64::from_str_radix(&self.as_str()[..8], 16).unwrap_or(0)
    }
}

/// The id; a width (`{:<10}` in listings) pads it as it pads a string.
impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueId({:?})", self.as_str())
    }
}

impl AsRef<str> for QueueId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        for (text, ok) in [
            ("65A1B2C30F4240ABC", false), // 17 digits
            ("65A1B2C3F4240ABC", true),
            ("0000000000000000", true),
            ("65a1b2c3f4240abc", false), // lower case
            ("65A1B2C3F4240AB", false),
            ("65A1B2C3F4240ABG", false),
            ("65A1B2C3F4240AB\u{e9}", false),
            ("65A1B2C3F4240ABC.state", false),
            ("", false),
        ] {
            assert_eq!(QueueId::parse(text).is_some(), ok, "{text}");
        }
    }

    #[test]
    fn new_ids_have_the_form_and_sort_by_arrival() {
        let a = QueueId::new(1_700_000_000, 999_999, u64::MAX);
        let b = QueueId::new(1_700_000_001, 0, 0);
        assert_eq!(a.as_str(), "6553F100F423FFFF");
        assert_eq!(QueueId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(QueueId::parse(b.as_str()), Some(b.clone()));
        assert!(a < b);
        assert_eq!(b.to_string(), "6553F10100000000");
        assert_eq!((a.arrival(), b.arrival()), (1_700_000_000, 1_700_000_001));
    }
}
