//! Address lists (To/Cc/Bcc values, command-line recipients, `-f`): every
//! address accepted is free of control characters (so of CR and LF), its
//! display round-trips, accepting is idempotent, and the MAIL and RCPT
//! commands built from it are one line.

use crate::common::text;
use spoolmail::address;
use spoolmail::model::Address;
use spoolmail::smtp::protocol::{Capabilities, MailParams, RcptParams, mail_command, rcpt_command};

pub fn check(data: &[u8]) {
    let input = text(data);
    if let Ok(list) = address::parse_list(&input) {
        for a in &list {
            if let Ok(parsed) = Address::parse(a) {
                accepted(a, &parsed);
            }
        }
    }
    if let Ok(list) = address::parse_argument(&input) {
        for parsed in &list {
            let a = parsed.to_string();
            accepted(&a, parsed);
            assert_eq!(
                address::parse_argument(&a).ok().as_deref(),
                Some(std::slice::from_ref(parsed)),
                "an accepted recipient is not accepted as itself"
            );
        }
    }
    if let Ok(sender) = address::parse_sender(&input)
        && !sender.is_empty()
    {
        let parsed = Address::parse(&sender).expect("parse_sender gives a valid address");
        accepted(&sender, &parsed);
        assert_eq!(address::parse_sender(&sender).ok(), Some(sender.clone()));
    }
    if let Some(value) = address::qualify_header_value(&input, "example.org") {
        // Qualifying adds domains, never a line or a field.
        let lines = |s: &str| s.bytes().filter(|b| *b == b'\n' || *b == b'\r').count();
        assert_eq!(lines(&value), lines(&input), "qualifying changed the lines");
        let list = address::parse_list(&value).expect("a qualified value parses");
        // Every valid address is now qualified (an invalid one is left for
        // the envelope's check to refuse).
        let valid = list.iter().filter_map(|a| Address::parse(a).ok());
        assert!(valid.clone().all(|a| a.is_qualified()), "{value:?}");
    }
}

fn accepted(a: &str, parsed: &Address) {
    assert!(!a.chars().any(char::is_control), "control in {a:?}");
    assert_eq!(parsed.to_string(), a, "display does not round-trip");
    assert_eq!(Address::parse(&parsed.to_string()).as_ref(), Ok(parsed));
    let qualified = parsed.clone().qualified("example.org");
    // Qualifying may take an address over 512 bytes: intake checks the
    // result (submit's recipients and envelope sender, `-bs` MAIL FROM).
    let fits = qualified.to_string().len() <= 512;
    assert!(
        !fits || Address::parse(&qualified.to_string()).is_ok(),
        "qualified {qualified} invalid"
    );
    let caps = Capabilities {
        dsn: true,
        size: Some(0),
        ..Capabilities::default()
    };
    let mail = mail_command(
        &MailParams {
            sender: a,
            envid: Some(a),
            ..MailParams::default()
        },
        &caps,
    );
    let rcpt = rcpt_command(
        &RcptParams {
            address: parsed,
            notify: None,
            orcpt: Some(a),
        },
        &caps,
    );
    for cmd in [mail, rcpt] {
        assert!(
            !cmd.chars().any(char::is_control),
            "control in command {cmd:?}"
        );
        // One address, one `<...>`: nothing after it can pass for a path,
        // unless the config allows unusual quoted local parts (finding 9).
        if parsed.unusual_local_part().is_some() {
            continue;
        }
        assert_eq!(
            cmd.matches(" TO:<").count() + cmd.matches(" FROM:<").count(),
            1
        );
    }
}
