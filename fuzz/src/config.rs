//! The config file: never a panic, and what an accepted file names that
//! later goes into an SMTP command, a header or the envelope (host names,
//! domains, addresses, the AUTH user) holds no control character.

use crate::common::text;
use spoolmail::config::{Config, parse_duration};
use std::path::Path;

pub fn check(data: &[u8]) {
    let input = text(data);
    let _ = parse_duration(input.trim());
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
