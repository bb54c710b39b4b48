//! The body type of a message (RFC 6152 `BODY=`).

/// `-B`, `BODY=`: whether the content may hold 8-bit octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
}

impl BodyType {
    /// `7BIT` or `8BITMIME`, in any case.
    pub fn parse(text: &str) -> Option<BodyType> {
        match text.to_ascii_uppercase().as_str() {
            "7BIT" => Some(BodyType::SevenBit),
            "8BITMIME" => Some(BodyType::EightBitMime),
            _ => None,
        }
    }

    /// The keyword as it goes into `BODY=`.
    pub fn keyword(self) -> &'static str {
        match self {
            BodyType::SevenBit => "7BIT",
            BodyType::EightBitMime => "8BITMIME",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        for (text, want) in [
            ("7BIT", Some(BodyType::SevenBit)),
            ("7bit", Some(BodyType::SevenBit)),
            ("8BITMIME", Some(BodyType::EightBitMime)),
            ("8bitmime", Some(BodyType::EightBitMime)),
            ("BINARYMIME", None),
            ("", None),
        ] {
            assert_eq!(BodyType::parse(text), want, "{text}");
            if let Some(b) = want {
                assert_eq!(BodyType::parse(b.keyword()), want);
            }
        }
    }
}
