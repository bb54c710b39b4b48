//! Where a recipient's mail goes: the key by which a queue pass groups
//! recipients and hands them to one delivery child.

use super::{Address, SenderPattern};
use std::fmt;
use std::net::IpAddr;

/// A destination of its own kind, so that no domain or literal can be taken
/// for the smarthost (or the other way round).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    /// Every recipient when smarthosts are configured.
    Smarthost,
    /// A domain, lower-cased, whose MX hosts take the mail. A bracketed text
    /// that is no address literal (a queue written before literals were
    /// checked at submission) stays here and bounces as a bad literal.
    Domain(String),
    /// An address literal: that host, directly.
    Literal(IpAddr),
    /// The relay of the `sender_relay_map` line with this pattern: every
    /// recipient of a message whose sender that line takes.
    Relay(SenderPattern),
}

impl Destination {
    /// The destination of `recipient` of a message whose sender's
    /// `sender_relay_map` line is `relay`: that relay for every recipient,
    /// else [`Destination::of`].
    pub fn routed(
        recipient: &Address,
        relay: Option<&SenderPattern>,
        via_smarthost: bool,
    ) -> Destination {
        match relay {
            Some(pattern) => Destination::Relay(pattern.clone()),
            None => Destination::of(recipient, via_smarthost),
        }
    }

    /// The destination of `recipient`.
    pub fn of(recipient: &Address, via_smarthost: bool) -> Destination {
        if via_smarthost {
            return Destination::Smarthost;
        }
        let domain = recipient.domain().unwrap_or_default();
        match Address::literal(domain) {
            Some(Some(ip)) => Destination::Literal(ip),
            _ => Destination::Domain(domain.to_ascii_lowercase()),
        }
    }
}

/// As in logs and `-bv`: `[smarthost]`, the domain, the literal
/// (`[192.0.2.1]`, `[IPv6:2001:db8::1]`), or a sender's relay
/// (`[relay:@shop.example]`).
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Smarthost => f.write_str("[smarthost]"),
            Destination::Domain(d) => f.write_str(d),
            Destination::Literal(IpAddr::V4(ip)) => write!(f, "[{ip}]"),
            Destination::Literal(IpAddr::V6(ip)) => write!(f, "[IPv6:{ip}]"),
            Destination::Relay(pattern) => write!(f, "[relay:{pattern}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let ip = |s: &str| Destination::Literal(s.parse().unwrap());
        let dom = |s: &str| Destination::Domain(s.into());
        for (rcpt, smarthost, want, shown) in [
            ("a@Example.ORG", false, dom("example.org"), "example.org"),
            ("a@example.org", true, Destination::Smarthost, "[smarthost]"),
            ("a@[127.0.0.1]", true, Destination::Smarthost, "[smarthost]"),
            ("b@[127.0.0.1]", false, ip("127.0.0.1"), "[127.0.0.1]"),
            ("a@[IPv6:::1]", false, ip("::1"), "[IPv6:::1]"),
            (
                "a@[ipv6:2001:DB8::1]",
                false,
                ip("2001:db8::1"),
                "[IPv6:2001:db8::1]",
            ),
            ("a@[smarthost]", false, dom("[smarthost]"), "[smarthost]"),
            ("a@[Bogus]", false, dom("[bogus]"), "[bogus]"),
            ("\"x@y\"@z.org", false, dom("z.org"), "z.org"),
            ("root", false, dom(""), ""),
        ] {
            let d = Destination::of(&Address::accepted(rcpt), smarthost);
            assert_eq!(d, want, "{rcpt}");
            assert_eq!(d.to_string(), shown, "{rcpt}");
        }
        // Shown alike, but never equal: the marker is not a domain.
        assert_ne!(Destination::Smarthost, dom("[smarthost]"));
        let relay = Destination::Relay(SenderPattern::Domain("shop.example".into()));
        assert_eq!(relay.to_string(), "[relay:@shop.example]");
        assert_eq!(
            Destination::Relay(SenderPattern::Any).to_string(),
            "[relay:*]"
        );
        // A sender's relay takes every recipient, smarthost or not.
        let shop = SenderPattern::Domain("shop.example".into());
        for (rcpt, smarthost) in [("a@example.org", false), ("b@[127.0.0.1]", true)] {
            let a = Address::accepted(rcpt);
            assert_eq!(Destination::routed(&a, Some(&shop), smarthost), relay);
            assert_eq!(
                Destination::routed(&a, None, smarthost),
                Destination::of(&a, smarthost)
            );
        }
    }
}
