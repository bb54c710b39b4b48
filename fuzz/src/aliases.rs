//! The aliases file: loading never panics, expansion ends, and every
//! recipient that resolving gives is a valid, qualified address without
//! control characters (it goes into RCPT TO and the envelope).

use crate::common::{config, scratch, text};
use spoolmail::aliases::{self, Aliases};
use spoolmail::model::Address;

pub fn check(data: &[u8]) {
    let input = text(data);
    let path = scratch().join("aliases");
    std::fs::write(&path, &input).expect("write the scratch aliases file");
    let table = Aliases::check(&path);
    // Every name the file could define, and a few it may not.
    let mut names: Vec<String> = input
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .filter(|n| !n.is_empty())
        .take(16)
        .collect();
    names.extend(["root".to_string(), "postmaster".to_string()]);
    // Only valid addresses are ever expanded (intake checks them first).
    names.retain(|n| Address::parse(n).is_ok());
    for n in &names {
        let e = table.expand(n);
        for a in &e.addresses {
            assert!(
                !a.chars().any(char::is_control),
                "control in expansion {a:?}"
            );
        }
    }
    let cfg = spoolmail::config::Config {
        aliases_file: Some(path),
        ..config()
    };
    let names = names
        .iter()
        .filter_map(|n| Address::parse(n).ok())
        .collect();
    let (recipients, _notes) = aliases::resolve(names, &cfg, "example.org");
    for r in &recipients {
        // A name qualified past the longest address is refused by intake,
        // which checks every resolved recipient again (submit.rs).
        let a = match Address::parse(&r.address.to_string()) {
            Err(e) if e.to_string().contains("longer than 512") => continue,
            parsed => parsed.expect("resolved recipients are valid"),
        };
        assert!(a.is_qualified(), "unqualified recipient {}", r.address);
        if let Some(o) = &r.orcpt {
            assert!(!o.chars().any(char::is_control), "control in ORCPT {o:?}");
        }
    }
}
