//! MIME encodings spoolmail writes itself: base64 for encoded words and
//! SASL, and quoted-printable for text parts whose lines are too long for
//! SMTP. (Shared by the submission and delivery stacks.)

/// Standard base64 with padding (RFC 4648).
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Lines longer than SMTP allows (RFC 5321 4.5.3.1.6), without the line end.
pub const MAX_LINE: usize = 998;

/// Whether `content` (LF line endings) has a line over 998 octets.
pub fn has_long_line(content: &[u8]) -> bool {
    content.split(|&b| b == b'\n').any(|l| l.len() > MAX_LINE)
}

/// Re-encodes the text parts that have lines over 998 octets as
/// quoted-printable, so that they can cross SMTP and the recipient decodes
/// exactly what was submitted. Folding instead (inserting line breaks, as
/// Postfix does) would corrupt HTML attributes, URLs and signed content.
/// Parts that are not text, are already encoded, or sit inside an attached
/// message are left alone: there is no faithful way to shorten them.
/// `message` is the stored content (LF line endings); None when nothing
/// needed or allowed a change.
pub fn reencode_long_lines(message: &[u8]) -> Option<Vec<u8>> {
    let parsed = mail_parser::MessageParser::default().parse(message)?;
    // (start, end, replacement): non-overlapping edits of `message`.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for part in &parsed.parts {
        let (body_start, body_end) = (part.offset_body as usize, part.offset_end as usize);
        let reencode = part.is_text()
            && part.encoding == mail_parser::Encoding::None
            && body_start <= body_end
            && body_end <= message.len()
            && has_long_line(&message[body_start..body_end]);
        if !reencode {
            continue;
        }
        let cte = part.headers.iter().find(|h| {
            h.name
                .as_str()
                .eq_ignore_ascii_case("Content-Transfer-Encoding")
        });
        let field = b"Content-Transfer-Encoding: quoted-printable\n".to_vec();
        match cte {
            Some(h) => edits.push((h.offset_field as usize, h.offset_end as usize, field)),
            None if body_start > 0 => {
                let mut added = field;
                if part.offset_header == 0 && parsed.header("MIME-Version").is_none() {
                    added.extend_from_slice(b"MIME-Version: 1.0\n");
                }
                // Before the empty line that ends the part's header.
                edits.push((body_start - 1, body_start - 1, added));
            }
            None => continue,
        }
        edits.push((
            body_start,
            body_end,
            quoted_printable(&message[body_start..body_end]),
        ));
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|e| (e.0, e.1));
    let mut out = Vec::with_capacity(message.len() + message.len() / 8);
    let mut pos = 0;
    for (start, end, replacement) in edits {
        if start < pos {
            return None; // overlapping parts: leave the message as it is
        }
        out.extend_from_slice(&message[pos..start]);
        out.extend_from_slice(&replacement);
        pos = end;
    }
    out.extend_from_slice(&message[pos..]);
    Some(out)
}

/// Quoted-printable (RFC 2045 6.7) of LF-separated text: lines of at most
/// 76 characters, soft breaks as `=`, the line structure kept (a last line
/// without LF stays without one).
pub fn quoted_printable(text: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    // RFC 2045's 76 characters, less the `=` of a soft break.
    const WIDTH: usize = 75;
    let mut out = Vec::with_capacity(text.len() + text.len() / 3);
    let mut lines = text.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let mut width = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal =
                (b'!'..=b'~').contains(&b) && b != b'=' || (b == b' ' || b == b'\t') && !last;
            let token_len = if literal { 1 } else { 3 };
            if width + token_len > WIDTH {
                out.extend_from_slice(b"=\n");
                width = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
            width += token_len;
        }
        if lines.peek().is_some() {
            out.push(b'\n');
        }
    }
    out
}

/// Text on one line, without control characters: for this protocol, log
/// lines, state files and DSNs.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_qp(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'=' if s.get(i + 1) == Some(&b'\n') => i += 2,
                b'=' => {
                    out.push(
                        u8::from_str_radix(std::str::from_utf8(&s[i + 1..i + 3]).unwrap(), 16)
                            .unwrap(),
                    );
                    i += 3;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    }

    #[test]
    fn quoted_printable_round_trips_with_short_lines() {
        let long = format!(
            "<a href=\"https://example.org/{}\">caf\u{e9} = ok</a> \nnext\ttab \nlast",
            "x".repeat(3000)
        );
        let qp = quoted_printable(long.as_bytes());
        assert!(
            qp.split(|&b| b == b'\n').all(|l| l.len() <= 76),
            "{}",
            String::from_utf8_lossy(&qp)
        );
        assert!(qp.is_ascii());
        assert_eq!(decode_qp(&qp), long.as_bytes());
    }

    #[test]
    fn long_text_part_reencoded_others_kept() {
        let long = "y".repeat(2000);
        let msg = format!(
            "Subject: t\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
             Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n<p>{long}</p>\n--b\n\
             Content-Type: text/plain\n\nshort\n--b\nContent-Type: application/octet-stream\n\n{long}\n--b--\n"
        );
        let out = String::from_utf8(reencode_long_lines(msg.as_bytes()).unwrap()).unwrap();
        let parts: Vec<&str> = out.split("--b").collect();
        assert!(
            parts[1].contains("Content-Transfer-Encoding: quoted-printable\n"),
            "{out}"
        );
        assert!(!parts[1].contains("8bit"), "{out}");
        assert!(parts[1].lines().all(|l| l.len() <= 76), "{out}");
        assert_eq!(
            parts[2], "\nContent-Type: text/plain\n\nshort\n",
            "untouched"
        );
        assert!(parts[3].contains(&long), "not text: sent as it is");
        let html = parts[1].split("\n\n").nth(1).unwrap();
        assert_eq!(
            decode_qp(html.trim_end_matches('\n').as_bytes()),
            format!("<p>{long}</p>").as_bytes()
        );
    }

    #[test]
    fn plain_message_gets_mime_headers() {
        let msg = format!("Subject: t\n\n{}\nend\n", "z".repeat(1500));
        let out = String::from_utf8(reencode_long_lines(msg.as_bytes()).unwrap()).unwrap();
        assert!(
            out.starts_with(
                "Subject: t\nContent-Transfer-Encoding: quoted-printable\nMIME-Version: 1.0\n\n"
            ),
            "{out}"
        );
        assert!(reencode_long_lines(b"Subject: t\n\nshort\n").is_none());
        assert!(has_long_line(msg.as_bytes()) && !has_long_line(out.as_bytes()));
    }

    #[test]
    fn base64_vectors() {
        // RFC 4648 section 10.
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }
}
