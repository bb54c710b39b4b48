//! The config file: never a panic, and what an accepted file names that
//! later goes into an SMTP command, a header or the envelope (host names,
//! domains, addresses, the AUTH user) holds no control character. The same
//! for the same text read as a `sender_relay_map`, whose lines name relays
//! and their logins.

use crate::common::text;
use spoolmail::config::{Config, parse_duration, parse_relay_map};
use std::path::Path;

pub fn check(data: &[u8]) {
    let input = text(data);
    let _ = parse_duration(input.trim());
    check_relay_map(&input);
    let Ok(cfg) = Config::parse(&input, Path::new("fuzz.conf")) else {
        return;
    };
    let named = [
        &cfg.helo_name,
        &cfg.qualify_domain,
        &cfg.double_bounce_recipient,
        &cfg.local_recipient_fallback,
        &cfg.masquerade_domain,
        &cfg.auth_user,
        &cfg.dns_server,
        &cfg.trusted_group,
    ];
    for value in named.into_iter().flatten().chain(&cfg.smarthosts) {
        assert!(
            !value.chars().any(char::is_control),
            "control character in config value {value:?}"
        );
    }
    // The same text gives the same config.
    let again = Config::parse(&input, Path::new("fuzz.conf")).expect("parses twice");
    assert_eq!(format!("{cfg:?}"), format!("{again:?}"));
}

/// A relay map: no panic; an accepted line's host, login and users hold no
/// control character, each pattern has one line, and every line is either
/// accepted or a problem with its number.
fn check_relay_map(input: &str) {
    let (relays, bad) = parse_relay_map(input);
    for (_, relay) in &relays {
        let users = relay.users.iter().flat_map(|u| u.names());
        let named = relay.user.iter().chain(users);
        for value in named.chain(std::iter::once(&relay.host)) {
            assert!(
                !value.chars().any(char::is_control),
                "control character in relay map value {value:?}"
            );
        }
        let twins = relays.iter().filter(|(_, r)| r.pattern == relay.pattern);
        assert_eq!(twins.count(), 1, "{} has two lines", relay.pattern);
    }
    let lines = input.lines().count();
    let numbers = relays
        .iter()
        .map(|(n, _)| *n)
        .chain(bad.iter().map(|(n, _)| *n));
    for n in numbers {
        assert!(n >= 1 && n <= lines, "line {n} of {lines}");
    }
}
