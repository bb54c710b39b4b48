//! Reading a spool file back, independently of the crate's own reader
//! (format: doc/SPOOL.md): the envelope as key/value lines, the content as
//! bytes, and the header fields of the content.

use super::files::find;
use std::fs;
use std::path::Path;

/// The envelope keys every committed message has.
const REQUIRED: [&str; 6] = ["id", "arrival", "uid", "sender", "body", "rcpt"];

pub fn is_queue_id(name: &str) -> bool {
    name.len() == 16
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// One committed message: its envelope and its content.
#[derive(Clone, Debug)]
pub struct Queued {
    /// The `id` of the envelope.
    pub id: String,
    /// `(key, value)` per envelope line after the magic line, the value
    /// without its trailing padding.
    pub envelope: Vec<(String, String)>,
    pub content: Vec<u8>,
}

impl Queued {
    /// Parses and checks what every committed message must have (the magic
    /// line, a UTF-8 envelope without control characters, its keys); the
    /// error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Queued, String> {
        let end = find(bytes, b"\n\n").ok_or("no empty line after the envelope")?;
        let head = std::str::from_utf8(&bytes[..end]).map_err(|_| "envelope not UTF-8")?;
        let mut lines = head.split('\n');
        let magic = lines.next().unwrap_or("");
        if magic != "SPOOLMAIL 1" {
            return Err(format!("first line is {magic:?}"));
        }
        let mut envelope = Vec::new();
        for l in lines {
            if l.chars().any(char::is_control) {
                return Err(format!("control character in envelope line {l:?}"));
            }
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            envelope.push((k.to_string(), v.trim_end_matches(' ').to_string()));
        }
        let mut q = Queued {
            id: String::new(),
            envelope,
            content: bytes[end + 2..].to_vec(),
        };
        if let Some(key) = REQUIRED.iter().find(|k| q.get(k).is_none()) {
            return Err(format!("envelope without `{key}`"));
        }
        q.id = q.get("id").unwrap_or_default().to_string();
        Ok(q)
    }

    /// Reads `path`, a committed message: parsed, checked, and named by
    /// its own queue id.
    pub fn read(path: &Path) -> Queued {
        let bytes =
            fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            is_queue_id(&name),
            "queue id {name:?} is not 16 upper-case hex digits"
        );
        let q = Queued::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(q.id, name, "file name and envelope id differ");
        q
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.envelope
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn values(&self, key: &str) -> Vec<&str> {
        self.envelope
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn sender(&self) -> &str {
        self.get("sender").expect("sender line")
    }

    pub fn rcpts(&self) -> Vec<&str> {
        self.values("rcpt")
    }

    pub fn body_type(&self) -> &str {
        self.get("body").expect("body line")
    }

    /// `(rcpt, orcpt)` pairs.
    pub fn rcpts_with_orcpt(&self) -> Vec<(&str, Option<&str>)> {
        let mut out: Vec<(&str, Option<&str>)> = Vec::new();
        for (k, v) in &self.envelope {
            match k.as_str() {
                "rcpt" => out.push((v, None)),
                "orcpt" => out.last_mut().expect("orcpt before any rcpt").1 = Some(v),
                _ => {}
            }
        }
        out
    }

    /// The header block, each line with its LF, without the empty line.
    pub fn header_block(&self) -> &[u8] {
        let end = find(&self.content, b"\n\n").expect("no end of header");
        &self.content[..end + 1]
    }

    pub fn header_text(&self) -> String {
        String::from_utf8_lossy(self.header_block()).into_owned()
    }

    pub fn body(&self) -> &[u8] {
        let end = find(&self.content, b"\n\n").expect("no end of header");
        &self.content[end + 2..]
    }

    /// `(name as written, value with folding kept, without the leading space)`.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for line in self.header_text().lines() {
            if line.starts_with([' ', '\t']) {
                let last = out.last_mut().expect("continuation line first");
                last.1.push('\n');
                last.1.push_str(line);
            } else {
                let (n, v) = line.split_once(':').expect("header line without colon");
                out.push((n.to_string(), v.trim_start().to_string()));
            }
        }
        out
    }

    /// Values of the header fields called `name` (any case), folding kept.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    /// The first header field called `name` (any case), folding kept.
    pub fn first_header(&self, name: &str) -> Option<String> {
        self.header_values(name).into_iter().next()
    }

    /// No line of the stored content holds a CR: intake turned every line
    /// end (CRLF, LF or a bare CR) into LF.
    pub fn assert_no_cr(&self) {
        assert!(
            !self.content.contains(&b'\r'),
            "stored content holds a CR: {:?}",
            String::from_utf8_lossy(&self.content)
        );
    }
}
