//! The command line: arguments separated by NUL bytes (so any other byte,
//! invalid UTF-8 included, can be in one). An accepted invocation's
//! submission holds only valid addresses and no control characters in what
//! reaches a header or an SMTP command.

use spoolmail::cli;
use spoolmail::model::Address;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

pub fn check(data: &[u8]) {
    let mut args: Vec<OsString> = vec!["sendmail".into()];
    args.extend(
        data.split(|b| *b == 0)
            .map(|a| OsString::from_vec(a.to_vec())),
    );
    let Ok(inv) = cli::parse(args) else { return };
    if let Some(f) = &inv.full_name {
        let _ = spoolmail::submit::check_full_name(f);
    }
    let Ok(sub) = inv.submission(&crate::common::origin()) else {
        return;
    };
    if !sub.sender.is_empty() {
        Address::parse(&sub.sender).expect("the sender is a valid address");
    }
    for r in &sub.recipients {
        Address::parse(&r.to_string()).expect("each recipient is a valid address");
    }
    for text in [&sub.full_name, &sub.envid].into_iter().flatten() {
        assert!(!text.chars().any(char::is_control), "control in {text:?}");
    }
    for line in sub.extra_headers.lines() {
        assert!(
            line.contains(':') && !line.chars().any(char::is_control),
            "added header line {line:?}"
        );
    }
}
