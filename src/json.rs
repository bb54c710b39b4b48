//! JSON output, written by hand: `spoolctl list --json` prints a few flat
//! objects, which needs string escaping and nothing else (spoolmail never
//! reads JSON). A string is escaped as RFC 8259 says: `"` and `\`, and
//! every control character (U+0000 to U+001F) as `\uXXXX` or its short
//! form; everything else, non-ASCII included, is written as UTF-8. Bytes
//! that are not UTF-8 become U+FFFD, so the output is always valid JSON.

use std::fmt::Write as _;

/// `text` as a JSON string, quotes included.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Bytes as a JSON string: what is not UTF-8 becomes U+FFFD.
pub fn bytes(raw: &[u8]) -> String {
    string(&String::from_utf8_lossy(raw))
}

/// One JSON object, its members in the order they are added.
#[derive(Default)]
pub struct Object {
    members: Vec<(&'static str, String)>,
}

impl Object {
    pub fn new() -> Object {
        Object::default()
    }

    pub fn str(mut self, key: &'static str, value: &str) -> Object {
        self.members.push((key, string(value)));
        self
    }

    pub fn num(mut self, key: &'static str, value: u64) -> Object {
        self.members.push((key, value.to_string()));
        self
    }

    pub fn bool(mut self, key: &'static str, value: bool) -> Object {
        self.members.push((key, value.to_string()));
        self
    }

    /// A number, or `null` for None.
    pub fn opt_num(mut self, key: &'static str, value: Option<u64>) -> Object {
        let v = value.map_or_else(|| "null".to_string(), |v| v.to_string());
        self.members.push((key, v));
        self
    }

    /// An array of objects.
    pub fn array(mut self, key: &'static str, items: Vec<Object>) -> Object {
        let items: Vec<String> = items.into_iter().map(Object::render).collect();
        self.members.push((key, format!("[{}]", items.join(", "))));
        self
    }

    /// The object on one line, as `{"key": value, ...}`.
    pub fn render(self) -> String {
        let members: Vec<String> = (self.members.into_iter())
            .map(|(k, v)| format!("{}: {v}", string(k)))
            .collect();
        format!("{{{}}}", members.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_rfc_8259_says() {
        let cases: &[(&str, &str)] = &[
            ("", r#""""#),
            ("plain", r#""plain""#),
            ("say \"hi\"", r#""say \"hi\"""#),
            ("back\\slash", r#""back\\slash""#),
            ("a\nb\rc\td", r#""a\nb\rc\td""#),
            ("\u{0}\u{1}\u{1f}", r#""\u0000\u0001\u001f""#),
            ("\u{7f}", "\"\u{7f}\""),
            ("\u{8}\u{c}", r#""\u0008\u000c""#),
            ("josé@exämple.org", "\"josé@exämple.org\""),
            ("日本 😀", "\"日本 😀\""),
            ("/", r#""/""#),
        ];
        for (input, want) in cases {
            assert_eq!(string(input), *want, "{input:?}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_become_the_replacement_character() {
        let cases: &[(&[u8], &str)] = &[
            (b"ok", "\"ok\""),
            (b"a\xffb", "\"a\u{fffd}b\""),
            (b"\xc3", "\"\u{fffd}\""),
            (b"\xc3\xa9", "\"\u{e9}\""),
            (b"\xed\xa0\x80", "\"\u{fffd}\u{fffd}\u{fffd}\""),
            (b"\x00\"", r#""\u0000\"""#),
        ];
        for (input, want) in cases {
            assert_eq!(bytes(input), *want, "{input:?}");
        }
    }

    #[test]
    fn objects_render_on_one_line_in_order() {
        let o = Object::new()
            .str("a", "x")
            .num("n", 7)
            .bool("b", false)
            .opt_num("z", None)
            .array("r", vec![Object::new().str("k", "v"), Object::new()]);
        assert_eq!(
            o.render(),
            r#"{"a": "x", "n": 7, "b": false, "z": null, "r": [{"k": "v"}, {}]}"#
        );
    }
}
