//! MTA-STS input from a domain's DNS and its policy server (both outside
//! spoolmail's control): the TXT record's id is 1 to 32 letters and
//! digits or refused; a policy that parses has a known mode, a bounded
//! max_age and `mx` patterns that are host names (or `*.` and one), each
//! matching what section 4.1 says; a refusal's reason is short; the cache
//! file round-trips exactly, and any cache file decodes without panic; a
//! recipient domain's policy domain is an A-label host name.

use crate::common::text;
use spoolmail::limits::STS_MAX_AGE;
use spoolmail::sts::{
    Cached, Mode, is_host_name, mx_matches, parse_policy, policy_domain, record_id,
};

pub fn check(data: &[u8]) {
    let input = text(data);
    policy(&input);
    txt_records(&input);
    cache(&input, data);
    domain(&input);
}

/// Any recipient domain (an SMTPUTF8 address's may be Unicode): its policy
/// domain, when it has one, is an ASCII host name in lower case, its own.
fn domain(input: &str) {
    if let Some(d) = policy_domain(input) {
        assert!(is_host_name(&d), "{input:?} -> {d:?}");
        assert_eq!(d, d.to_ascii_lowercase(), "{input:?}");
        assert_eq!(policy_domain(&d).as_deref(), Some(d.as_str()), "{input:?}");
    }
}

fn policy(input: &str) {
    match parse_policy(input) {
        Ok(p) => {
            assert!(p.max_age <= STS_MAX_AGE, "max_age {} unbounded", p.max_age);
            assert!(p.mode == Mode::None || !p.mx.is_empty(), "no mx: {p:?}");
            for pattern in &p.mx {
                patterns_match_as_the_rfc_says(pattern);
            }
        }
        // Reasons quote at most 40 characters of the input.
        Err(why) => assert!(why.chars().count() <= 120, "long reason: {why:?}"),
    }
}

fn patterns_match_as_the_rfc_says(pattern: &str) {
    assert_eq!(pattern, pattern.to_ascii_lowercase(), "pattern case kept");
    assert!(!pattern.ends_with('.'), "trailing dot kept: {pattern:?}");
    match pattern.strip_prefix("*.") {
        Some(parent) => {
            assert!(is_host_name(parent), "{pattern:?}");
            assert!(mx_matches(pattern, &format!("mx.{parent}")));
            assert!(mx_matches(
                pattern,
                &format!("MX.{}.", parent.to_uppercase())
            ));
            // `*` is one label: not the parent itself, not two labels down.
            assert!(
                !mx_matches(pattern, parent),
                "{pattern:?} matched its parent"
            );
            assert!(
                !mx_matches(pattern, &format!("a.b.{parent}")),
                "{pattern:?}"
            );
        }
        None => {
            assert!(is_host_name(pattern), "{pattern:?}");
            assert!(mx_matches(pattern, pattern));
            assert!(mx_matches(pattern, &format!("{}.", pattern.to_uppercase())));
            assert!(!mx_matches(pattern, &format!("x.{pattern}")), "{pattern:?}");
        }
    }
}

fn txt_records(input: &str) {
    let records: Vec<String> = input.split('\n').map(str::to_string).collect();
    if let Ok(Some(id)) = record_id(&records) {
        assert!((1..=32).contains(&id.len()), "id {id:?}");
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "id {id:?}");
    }
}

fn cache(input: &str, data: &[u8]) {
    // Any file in sts/ decodes or not, without panic.
    if let Some(c) = Cached::decode(input) {
        assert!(!c.id.contains('\n'), "{c:?}");
    }
    // What spoolmail writes reads back as written.
    let fetched = data
        .iter()
        .take(8)
        .fold(0u64, |n, b| (n << 8) | u64::from(*b));
    let tried = data.get(8).map(|b| fetched.wrapping_add(u64::from(*b)));
    let cached = Cached {
        id: "id2026".into(),
        fetched,
        text: input.to_string(),
        tried,
    };
    assert_eq!(Cached::decode(&cached.encode()), Some(cached.clone()));
    // A cached policy is the policy its text parses to, while it lasts.
    if let Some(p) = cached.policy_at(fetched) {
        assert_eq!(parse_policy(input).ok(), Some(p));
    }
}
