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
use std::iter::Peekable;
use std::ops::Range;
use std::str::CharIndices;

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
    let tokens = tokenize(text).map_err(&bad)?.into_iter().map(|(t, _)| t);
    let mut out = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut angle: Option<Vec<Token>> = None;
    let mut found_angle: Option<String> = None;
    let mut in_group = false;
    for tok in tokens {
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

/// A token and the byte range of `text` it was read from.
type Spanned = (Token, Range<usize>);

type Chars<'t> = Peekable<CharIndices<'t>>;

/// The byte offset of the next character (the end of what was read so far).
fn offset(chars: &mut Chars, text: &str) -> usize {
    chars.peek().map_or(text.len(), |&(i, _)| i)
}

fn tokenize(text: &str) -> std::result::Result<Vec<Spanned>, &'static str> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let token = match c {
            ' ' | '\t' | '\r' | '\n' => Token::Gap,
            '(' => comment(&mut chars)?,
            '"' => quoted(&mut chars)?,
            '[' => domain_literal(&mut chars)?,
            ']' => return Err("unexpected `]`"),
            '<' | '>' | '@' | ',' | ';' | ':' | '.' => Token::Special(c),
            ')' | '\\' => return Err("unexpected special character"),
            c if c.is_control() => return Err("control character"),
            c => word(c, &mut chars),
        };
        tokens.push((token, start..offset(&mut chars, text)));
    }
    Ok(tokens)
}

/// A comment, nested ones included, after its `(`: a gap between words.
fn comment(chars: &mut Chars) -> std::result::Result<Token, &'static str> {
    let mut depth = 1;
    while depth > 0 {
        match chars.next().ok_or("unclosed comment")?.1 {
            '\\' => {
                chars.next().ok_or("unclosed comment")?;
            }
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
    }
    Ok(Token::Gap)
}

/// A quoted string after its `"`, kept with its quotes and escapes; folding
/// inside it is removed.
fn quoted(chars: &mut Chars) -> std::result::Result<Token, &'static str> {
    let mut q = String::from('"');
    loop {
        match chars.next().ok_or("unclosed quoted string")?.1 {
            '\\' => {
                let e = chars.next().ok_or("unclosed quoted string")?.1;
                if e.is_control() {
                    return Err("control character in quoted string");
                }
                q.push('\\');
                q.push(e);
            }
            '"' => break,
            '\r' | '\n' => {}
            c if c.is_control() && c != '\t' => {
                return Err("control character in quoted string");
            }
            c => q.push(c),
        }
    }
    q.push('"');
    Ok(Token::Quoted(q))
}

/// A domain literal after its `[`: `[192.0.2.1]` or `[IPv6:...]`, one word.
fn domain_literal(chars: &mut Chars) -> std::result::Result<Token, &'static str> {
    let mut lit = String::from('[');
    loop {
        match chars.next().ok_or("unclosed domain literal")?.1 {
            ']' => break,
            c if c.is_control() || c == '[' || c == '\\' || c == ' ' => {
                return Err("bad character in domain literal");
            }
            c => lit.push(c),
        }
    }
    lit.push(']');
    Ok(Token::Word(lit))
}

/// An atom (or a dot-atom fragment) starting with `first`.
fn word(first: char, chars: &mut Chars) -> Token {
    let mut w = String::from(first);
    while let Some(&(_, n)) = chars.peek() {
        if n.is_control() || " \t()<>@,;:.\"[]\\".contains(n) {
            break;
        }
        w.push(n);
        chars.next();
    }
    Token::Word(w)
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

/// Refuses an address whose quoted local part could mislead a receiver (see
/// [`crate::model::UnusualLocalPart`]), unless `allowed`
/// (`allow_unusual_quoted_local_parts`). Text that is not an address is
/// left to the parser's own check.
pub fn check_usual(addr: &str, allowed: bool) -> Result<()> {
    match Address::parse(addr) {
        Ok(a) => check_usual_address(&a, allowed),
        Err(_) => Ok(()),
    }
}

/// [`check_usual`] of an address already parsed.
pub fn check_usual_address(addr: &Address, allowed: bool) -> Result<()> {
    match addr.unusual_local_part() {
        Some(why) if !allowed => Err(Error::Data(format!(
            "address `{}` refused: {why} (allow_unusual_quoted_local_parts = yes accepts it)",
            addr.to_string().escape_debug()
        ))),
        _ => Ok(()),
    }
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
    let inserts = unqualified_ends(&tokenize(value).ok()?);
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

/// A From value rewritten to `sender` (`rewrite_from`): the display name of
/// its one mailbox kept as written (`"Bob B." <bob@vm>` becomes
/// `"Bob B." <sender>`), or `sender` alone. None when the value is already
/// `sender` alone, or holds no single mailbox (then it is left as it is).
/// The value keeps its leading space and line end.
pub fn from_value_as(value: &str, sender: &str) -> Option<String> {
    let addrs = parse_list(value).ok()?;
    let [only] = addrs.as_slice() else {
        return None;
    };
    if only.eq_ignore_ascii_case(sender) {
        return None;
    }
    let tokens = tokenize(value).ok()?;
    let before_angle = tokens
        .iter()
        .take_while(|(t, _)| *t != Token::Special('<'))
        .collect::<Vec<_>>();
    let phrase = match tokens.get(before_angle.len()) {
        Some((_, at)) if before_angle.iter().all(|(t, _)| *t != Token::Special(':')) => {
            value[..at.start].replace(['\r', '\n'], "")
        }
        _ => String::new(),
    };
    let end = if value.ends_with('\n') { "\n" } else { "" };
    Some(match phrase.trim() {
        "" => format!(" {sender}{end}"),
        name => format!(" {name} <{sender}>{end}"),
    })
}

/// The offsets, in order, where `@domain` goes in a list that `parse_list`
/// accepts: before the `>` of a `<...>` without `@`, and after the last
/// token of a bare addr-spec without `@`. Elements are split as
/// `parse_list` splits them (at `,` and `;`, after a group's `:`).
fn unqualified_ends(tokens: &[Spanned]) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut start, mut in_group, mut seen_angle) = (0, false, false);
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].0 {
            Token::Special('<') => {
                let close = (i..tokens.len())
                    .find(|&j| tokens[j].0 == Token::Special('>'))
                    .unwrap_or(tokens.len());
                if close < tokens.len() && lacks_at(after_route(&tokens[i + 1..close])).is_some() {
                    out.push(tokens[close].1.start);
                }
                seen_angle = true;
                i = close;
            }
            Token::Special(':') if !in_group && !seen_angle => {
                in_group = true; // what came before was the group's name
                start = i + 1;
            }
            Token::Special(c @ (',' | ';')) => {
                if !seen_angle {
                    out.extend(lacks_at(&tokens[start..i]));
                }
                in_group &= c != ';';
                (start, seen_angle) = (i + 1, false);
            }
            _ => {}
        }
        i += 1;
    }
    if !seen_angle {
        out.extend(lacks_at(&tokens[start..]));
    }
    out
}

/// The addr-spec of an angle-addr's tokens: what follows an obsolete
/// source route (`@a,@b:user`), whose `@`s say nothing of the user's own.
fn after_route(tokens: &[Spanned]) -> &[Spanned] {
    match tokens.iter().rposition(|(t, _)| *t == Token::Special(':')) {
        Some(colon) => &tokens[colon + 1..],
        None => tokens,
    }
}

/// For the tokens of one addr-spec: the end of its last token when it has
/// some and no `@`.
fn lacks_at(tokens: &[Spanned]) -> Option<usize> {
    if tokens.iter().any(|(t, _)| *t == Token::Special('@')) {
        return None;
    }
    tokens
        .iter()
        .rev()
        .find(|(t, _)| *t != Token::Gap)
        .map(|(_, span)| span.end)
}

/// Parses one recipient argument from the command line: an address, a list
/// of them, or `Name <addr>`, each validated.
pub fn parse_argument(arg: &str) -> Result<Vec<Address>> {
    if arg.chars().any(|c| c.is_control()) {
        return Err(Error::Data(format!(
            "recipient `{}` contains a control character",
            arg.escape_debug()
        )));
    }
    parse_list(arg)?.iter().map(|a| parse(a)).collect()
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
    #[test]
    fn from_values_rewritten_to_the_sender_keep_the_name() {
        let me = "me@example.org";
        let cases = [
            (" Bob <bob@vm>\n", Some(" Bob <me@example.org>\n")),
            (
                " \"Bob, B.\" <bob@vm>\n",
                Some(" \"Bob, B.\" <me@example.org>\n"),
            ),
            (
                " =?UTF-8?B?w4lsaWU=?= <e@vm>\n",
                Some(" =?UTF-8?B?w4lsaWU=?= <me@example.org>\n"),
            ),
            (
                " Bob\n Smith <bob@vm>\n",
                Some(" Bob Smith <me@example.org>\n"),
            ),
            (" bob@vm\n", Some(" me@example.org\n")),
            (" <bob@vm>", Some(" me@example.org")),
            (" bob@vm (Bob)\n", Some(" me@example.org\n")),
            (" Me <ME@example.org>\n", None),
            (" a@vm, b@vm\n", None),
            (" <broken\n", None),
        ];
        for (value, want) in cases {
            assert_eq!(from_value_as(value, me).as_deref(), want, "{value:?}");
        }
    }

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
        for (value, want) in [
            (" \"x@y\"\n", Some(" \"x@y\"@example.org\n")),
            ("root, <@a.b:c@d>", Some("root@example.org, <@a.b:c@d>")),
            (
                "Team: <a>, \"B\" <b>;",
                Some("Team: <a@example.org>, \"B\" <b@example.org>;"),
            ),
            ("\"a,b\" <c>, x@y", Some("\"a,b\" <c@example.org>, x@y")),
            ("a (x,y) , b", Some("a@example.org (x,y) , b@example.org")),
            // `<(c)>` is the null address: nothing to qualify in it.
            ("<(c)>, root", Some("<(c)>, root@example.org")),
            (
                "root@[127.0.0.1], bob",
                Some("root@[127.0.0.1], bob@example.org"),
            ),
            ("<a", None),
            // The user after an obsolete source route, whose `@`s are the route's.
            ("<@a.b,@c.d:user>", Some("<@a.b,@c.d:user@example.org>")),
            ("x <()@r@e,@f:u> ", Some("x <()@r@e,@f:u@example.org> ")),
        ] {
            assert_eq!(q(value).as_deref(), want, "{value:?}");
        }
    }

    #[test]
    fn qualifying() {
        assert_eq!(qualify("root", "host.example.org"), "root@host.example.org");
        assert_eq!(qualify("a@b", "host"), "a@b");
        assert_eq!(qualify("\"x@y\"", "h"), "\"x@y\"@h");
    }
}
