//! How much of a message a DSN returns (RFC 3461 `RET=`).

/// `-R`, `RET=`: the full message or only its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

impl Ret {
    /// `FULL` or `HDRS`, in any case.
    pub fn parse(text: &str) -> Option<Ret> {
        match text.to_ascii_uppercase().as_str() {
            "FULL" => Some(Ret::Full),
            "HDRS" => Some(Ret::Hdrs),
            _ => None,
        }
    }

    /// The keyword as it goes into `RET=`.
    pub fn keyword(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        for (text, want) in [
            ("full", Some(Ret::Full)),
            ("FULL", Some(Ret::Full)),
            ("Hdrs", Some(Ret::Hdrs)),
            ("headers", None),
            ("", None),
        ] {
            assert_eq!(Ret::parse(text), want, "{text}");
            if let Some(r) = want {
                assert_eq!(Ret::parse(r.keyword()), want);
            }
        }
    }
}
