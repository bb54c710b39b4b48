//! Envelope addresses: parsing RFC 5322 address lists (groups, comments,
//! quoted local parts, routes, folding) into addr-specs, validating them, and
//! qualifying bare local names.
//!
//! mail-parser decodes addresses for display and in doing so loses quoting
//! (`"john doe"@example.com` comes back as `@example.com`) and reads a bare
//! `root` as a display name, so envelope addresses are parsed here.
//!
//! Every address that leaves this module is free of control characters,
//! spaces outside quotes and angle brackets: nothing a caller writes can end up
//! as an extra SMTP command or header.

use crate::error::{Error, Result};
use crate::model::Address;

#[derive(Debug, PartialEq)]
enum Token {
    /// An atom or dot-atom fragment, as written.
    Word(String),
    /// A quoted string, with its quotes and escapes as written.
    Quoted(String),
    Special(char),
    /// Whitespace or a comment, which separates words.
    Gap,
}

/// Parses an address list (a To/Cc/Bcc value, or a command-line recipient
/// argument) into addr-specs. Group names and display names are dropped;
/// empty groups (`undisclosed-recipients:;`) give nothing.
pub fn parse_list(text: &str) -> Result<Vec<String>> {
    let bad = |why: &str| {
        Error::Data(format!(
            "malformed address list `{}`: {why}",
            text.escape_debug()
        ))
    };
    let tokens = tokenize(text).map_err(&bad)?;
    let mut out = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut angle: Option<Vec<Token>> = None;
    let mut found_angle: Option<String> = None;
    let mut in_group = false;
    let iter = tokens.into_iter();
    for tok in iter {
        if let Some(inner) = angle.as_mut() {
            match tok {
                Token::Special('>') => {
                    let spec = angle_contents(std::mem::take(inner)).map_err(&bad)?;
                    found_angle = Some(spec);
                    angle = None;
                }
                Token::Special('<') => return Err(bad("`<` inside `<...>`")),
                t => inner.push(t),
            }
            continue;
        }
        match tok {
            Token::Special('<') => {
                if found_angle.is_some() {
                    return Err(bad("two `<...>` in one address"));
                }
                angle = Some(Vec::new());
                current.clear(); // the display name
            }
            Token::Special(':') if !in_group && found_angle.is_none() => {
                in_group = true;
                current.clear(); // the group name
            }
            Token::Special(c @ (',' | ';')) => {
                if c == ';' {
                    if !in_group {
                        return Err(bad("`;` outside a group"));
                    }
                    in_group = false;
                }
                finish(&mut out, &mut current, &mut found_angle).map_err(&bad)?;
            }
            t => {
                if found_angle.is_some() && t != Token::Gap {
                    return Err(bad("text after `<...>`"));
                }
                current.push(t);
            }
        }
    }
    if angle.is_some() {
        return Err(bad("missing `>`"));
    }
    finish(&mut out, &mut current, &mut found_angle).map_err(bad)?;
    Ok(out)
}

fn finish(
    out: &mut Vec<String>,
    current: &mut Vec<Token>,
    found_angle: &mut Option<String>,
) -> std::result::Result<(), &'static str> {
    if let Some(spec) = found_angle.take() {
        current.clear();
        if !spec.is_empty() {
            out.push(spec);
        }
        return Ok(());
    }
    let tokens = std::mem::take(current);
    if tokens.iter().all(|t| *t == Token::Gap) {
        return Ok(()); // empty list element, as in `a@b, , c@d`
    }
    out.push(addr_spec(tokens)?);
    Ok(())
}

/// `<@route,@route:local@domain>` or `<local@domain>`: the route is obsolete and dropped.
fn angle_contents(mut tokens: Vec<Token>) -> std::result::Result<String, &'static str> {
    if let Some(colon) = tokens.iter().position(|t| *t == Token::Special(':'))
        && matches!(
            tokens.iter().find(|t| **t != Token::Gap),
            Some(Token::Special('@'))
        )
    {
        tokens.drain(..=colon);
    }
    if tokens.iter().all(|t| *t == Token::Gap) {
        return Ok(String::new()); // <> : the null address
    }
    addr_spec(tokens)
}

/// Joins the tokens of one addr-spec, refusing two words side by side
/// (`John Smith` without `<...>` is a phrase, not an address).
fn addr_spec(tokens: Vec<Token>) -> std::result::Result<String, &'static str> {
    let mut s = String::new();
    let mut last_was_word = false;
    let mut gap_since_word = false;
    for t in tokens {
        match t {
            Token::Gap => gap_since_word = last_was_word,
            Token::Word(w) | Token::Quoted(w) => {
                if last_was_word && gap_since_word {
                    return Err("words separated by spaces are not an address (use `Name <addr>`)");
                }
                s.push_str(&w);
                last_was_word = true;
                gap_since_word = false;
            }
            Token::Special(c @ ('.' | '@')) => {
                s.push(c);
                last_was_word = false;
                gap_since_word = false;
            }
            Token::Special(_) => return Err("unexpected special character"),
        }
    }
    Ok(s)
}

fn tokenize(text: &str) -> std::result::Result<Vec<Token>, &'static str> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => tokens.push(Token::Gap),
            '(' => {
                let mut depth = 1;
                while depth > 0 {
                    match chars.next().ok_or("unclosed comment")? {
                        '\\' => {
                            chars.next().ok_or("unclosed comment")?;
                        }
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                }
                tokens.push(Token::Gap);
            }
            '"' => {
                let mut q = String::from('"');
                loop {
                    match chars.next().ok_or("unclosed quoted string")? {
                        '\\' => {
                            let e = chars.next().ok_or("unclosed quoted string")?;
                            if e.is_control() {
                                return Err("control character in quoted string");
                            }
                            q.push('\\');
                            q.push(e);
                        }
                        '"' => break,
                        '\r' | '\n' => {} // folding inside a quoted string
                        c if c.is_control() && c != '\t' => {
                            return Err("control character in quoted string");
                        }
                        c => q.push(c),
                    }
                }
                q.push('"');
                tokens.push(Token::Quoted(q));
            }
            '<' | '>' | '@' | ',' | ';' | ':' | '.' | '[' | ']' => {
                if c == '[' {
                    // a domain literal: [192.0.2.1] or [IPv6:...]
                    let mut lit = String::from('[');
                    loop {
                        match chars.next().ok_or("unclosed domain literal")? {
                            ']' => break,
                            c if c.is_control() || c == '[' || c == '\\' || c == ' ' => {
                                return Err("bad character in domain literal");
                            }
                            c => lit.push(c),
                        }
                    }
                    lit.push(']');
                    tokens.push(Token::Word(lit));
                } else if c == ']' {
                    return Err("unexpected `]`");
                } else {
                    tokens.push(Token::Special(c));
                }
            }
            ')' | '\\' => return Err("unexpected special character"),
            c if c.is_control() => return Err("control character"),
            c => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_control() || " \t()<>@,;:.\"[]\\".contains(n) {
                        break;
                    }
                    w.push(n);
                    chars.next();
                }
                tokens.push(Token::Word(w));
            }
        }
    }
    Ok(tokens)
}

/// Checks one envelope address (already an addr-spec, or one given with
/// `-f`/on the command line in plain form) and returns it. The empty string
/// is the null sender and is only valid where the caller allows it.
pub fn validate(addr: &str) -> Result<String> {
    parse(addr).map(|a| a.to_string())
}

/// [`Address::parse`], with the address named in the error.
pub fn parse(addr: &str) -> Result<Address> {
    Address::parse(addr)
        .map_err(|why| Error::Data(format!("invalid address `{}`: {why}", addr.escape_debug())))
}

/// `root` becomes `root@DOMAIN`; a qualified address is returned as it is.
/// `"x@y"` is unqualified: its `@` is inside the quotes.
pub fn qualify(addr: &str, domain: &str) -> String {
    match Address::split(addr) {
        (_, Some(_)) => addr.to_string(),
        (local, None) => format!("{local}@{domain}"),
    }
}

/// Qualifies the bare local names in an address-list header value (`To:
/// root`, `From: "Cron Daemon" <root>`) with `@domain`, as Postfix does, so
/// that no relay refuses the message for an address without a domain.
/// Everything else in the value (names, comments, folding) is kept as it
/// is. None when nothing needs qualifying or the value is not a parsable list.
pub fn qualify_header_value(value: &str, domain: &str) -> Option<String> {
    let addrs = parse_list(value).ok()?;
    if addrs.iter().all(|a| Address::split(a).1.is_some()) {
        return None;
    }
    let mut inserts = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut comment = 0usize;
    let mut angle: Option<(usize, bool)> = None; // (start of contents, has @)
    let mut seen_angle = false;
    let mut has_at = false;
    let mut word_end: Option<usize> = None;
    let mut in_group = false;
    let finish =
        |inserts: &mut Vec<usize>, seen_angle: bool, has_at: bool, word_end: Option<usize>| {
            if let (false, false, Some(end)) = (seen_angle, has_at, word_end) {
                inserts.push(end);
            }
        };
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if quoted {
            match c {
                '\\' => escaped = true,
                '"' => {
                    quoted = false;
                    if angle.is_none() {
                        word_end = Some(i + 1);
                    }
                }
                _ => {}
            }
            continue;
        }
        if comment > 0 {
            match c {
                '\\' => escaped = true,
                '(' => comment += 1,
                ')' => comment -= 1,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '(' => comment = 1,
            '<' if angle.is_none() => {
                angle = Some((i + 1, false));
                seen_angle = true;
            }
            '>' => {
                if let Some((start, at)) = angle.take()
                    && !at
                    && !value[start..i].trim().is_empty()
                {
                    inserts.push(i);
                }
            }
            '@' => match angle.as_mut() {
                Some((_, at)) => *at = true,
                None => has_at = true,
            },
            ':' if angle.is_none() && !in_group => {
                in_group = true; // what came before was the group's name
                (seen_angle, has_at, word_end) = (false, false, None);
            }
            ',' | ';' if angle.is_none() => {
                finish(&mut inserts, seen_angle, has_at, word_end);
                if c == ';' {
                    in_group = false;
                }
                (seen_angle, has_at, word_end) = (false, false, None);
            }
            c if c.is_whitespace() => {}
            _ if angle.is_none() => word_end = Some(i + c.len_utf8()),
            _ => {}
        }
    }
    finish(&mut inserts, seen_angle, has_at, word_end);
    if inserts.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(value.len() + inserts.len() * (domain.len() + 1));
    let mut last = 0;
    for at in inserts {
        out.push_str(&value[last..at]);
        out.push('@');
        out.push_str(domain);
        last = at;
    }
    out.push_str(&value[last..]);
    Some(out)
}

/// Parses one recipient argument from the command line: an address, a list
/// of them, or `Name <addr>`, each validated.
pub fn parse_argument(arg: &str) -> Result<Vec<String>> {
    if arg.chars().any(|c| c.is_control()) {
        return Err(Error::Data(format!(
            "recipient `{}` contains a control character",
            arg.escape_debug()
        )));
    }
    parse_list(arg)?.iter().map(|a| validate(a)).collect()
}

/// Parses the sender given with `-f`/`-r`: an address, `<addr>`, or `<>`/empty for the null sender.
pub fn parse_sender(arg: &str) -> Result<String> {
    if arg.chars().any(|c| c.is_control()) {
        return Err(Error::Data(format!(
            "sender `{}` contains a control character",
            arg.escape_debug()
        )));
    }
    let list = parse_list(arg)?;
    match list.as_slice() {
        [] => Ok(String::new()),
        [one] => validate(one),
        _ => Err(Error::Data(format!(
            "sender `{}` names more than one address",
            arg.escape_debug()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        parse_list(s).unwrap()
    }

    #[test]
    fn plain_and_named() {
        assert_eq!(list("a@b.c"), vec!["a@b.c"]);
        assert_eq!(
            list("Bob (comment) <bob@x.org>, c@d"),
            vec!["bob@x.org", "c@d"]
        );
        assert_eq!(list("\"Smith, John\" <js@x.org>"), vec!["js@x.org"]);
        assert_eq!(list("root"), vec!["root"]);
    }

    #[test]
    fn quoted_local_parts_kept() {
        assert_eq!(
            list("\"john doe\"@example.com"),
            vec!["\"john doe\"@example.com"]
        );
        assert_eq!(list("<\"a\\\"b\"@q.org>"), vec!["\"a\\\"b\"@q.org"]);
    }

    #[test]
    fn groups_and_empty_groups() {
        assert_eq!(list("undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(
            list("team: c1@x.org, \"C Two\" <c2@x.org>; , plain@z"),
            vec!["c1@x.org", "c2@x.org", "plain@z"]
        );
    }

    #[test]
    fn folding_and_comments() {
        assert_eq!(
            list("a@b,\n\tc (x (nested)) @ d.org"),
            vec!["a@b", "c@d.org"]
        );
        assert_eq!(list("<@relay.example:user@x.org>"), vec!["user@x.org"]);
        assert_eq!(list("user@[192.0.2.1]"), vec!["user@[192.0.2.1]"]);
        assert_eq!(list("jörg@exämple.de"), vec!["jörg@exämple.de"]);
    }

    #[test]
    fn malformed_lists_refused() {
        for s in [
            "John Smith",
            "a@b <c@d>x",
            "<a@b",
            "(unclosed",
            "\"open",
            "a@b;",
            "x <a\r\nRCPT TO:b>",
        ] {
            assert!(parse_list(s).is_err(), "{s}");
        }
    }

    #[test]
    fn injection_refused() {
        for s in [
            "a@b\r\nRCPT TO:<x@y>",
            "a@b\nBcc: x@y",
            "a\0@b",
            "a@b\x1b",
            "a@b>\r\n",
        ] {
            assert!(parse_argument(s).is_err(), "{s:?}");
            assert!(parse_sender(s).is_err(), "{s:?}");
        }
        assert!(validate("a b@c").is_err());
        assert!(validate("a@b c").is_err());
        assert!(validate("a@b>").is_err());
        assert!(validate("<a@b>").is_err());
    }

    #[test]
    fn sender_forms() {
        assert_eq!(parse_sender("<>").unwrap(), "");
        assert_eq!(parse_sender("").unwrap(), "");
        assert_eq!(parse_sender("Me <me@x.org>").unwrap(), "me@x.org");
        assert!(parse_sender("a@b, c@d").is_err());
    }

    #[test]
    fn header_values_qualified_in_place() {
        let q = |v: &str| qualify_header_value(v, "example.org");
        assert_eq!(q(" root\n").as_deref(), Some(" root@example.org\n"));
        assert_eq!(
            q(" \"(Cron Daemon)\" <root>\n").as_deref(),
            Some(" \"(Cron Daemon)\" <root@example.org>\n")
        );
        assert_eq!(
            q(" root (Cron Daemon), bob@x.org,\n\tadmin\n").as_deref(),
            Some(" root@example.org (Cron Daemon), bob@x.org,\n\tadmin@example.org\n")
        );
        assert_eq!(
            q(" Team: root, a@b;\n").as_deref(),
            Some(" Team: root@example.org, a@b;\n")
        );
        assert_eq!(q(" \"x y\"\n").as_deref(), Some(" \"x y\"@example.org\n"));
        assert_eq!(q(" a@b, \"C\" <c@d>\n"), None);
        assert_eq!(q(" undisclosed-recipients:;\n"), None);
        assert_eq!(q(" John Smith\n"), None);
    }

    #[test]
    fn qualifying() {
        assert_eq!(qualify("root", "host.example.org"), "root@host.example.org");
        assert_eq!(qualify("a@b", "host"), "a@b");
        assert_eq!(qualify("\"x@y\"", "h"), "\"x@y\"@h");
    }
}
