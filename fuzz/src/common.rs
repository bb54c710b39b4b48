//! What several targets share: reading structure out of the fuzzer's bytes,
//! a scratch spool, and the reference model of intake's line rules.

use spoolmail::config::{Config, LogTarget};
use spoolmail::spool::{Envelope, Spool};
use spoolmail::submit::Origin;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The fuzzer's bytes, taken from the front as a target builds its input.
/// Running out is not an error: every read then gives zero or empty.
pub struct Bytes<'a>(pub &'a [u8]);

impl<'a> Bytes<'a> {
    pub fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }

    pub fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from(self.byte()) << 8 | u16::from(self.byte())
    }

    /// Up to the next `sep` (dropped), or the rest.
    pub fn until(&mut self, sep: u8) -> &'a [u8] {
        match self.0.iter().position(|b| *b == sep) {
            Some(i) => {
                let piece = &self.0[..i];
                self.0 = &self.0[i + 1..];
                piece
            }
            None => std::mem::take(&mut self.0),
        }
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Characters that reorder or break a line on a terminal (bidi controls,
/// U+2028 and U+2029, invisible marks): none may reach a header, mailq or
/// a log from a server's text (issue 12, finding 6).
pub fn is_spoofing(c: char) -> bool {
    matches!(
        u32::from(c),
        0x061C | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
    )
}

/// Text as a server or caller could send it: invalid UTF-8 replaced.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// This process's scratch directory: under `SPOOLMAIL_FUZZ_DIR` (which
/// scripts/fuzz makes and removes), else the system's temporary directory.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("SPOOLMAIL_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("spoolmail-fuzz-{}", std::process::id()));
        for sub in ["tmp", "queue"] {
            std::fs::create_dir_all(dir.join("spool").join(sub)).expect("scratch spool");
        }
        dir
    })
}

/// A config whose spool is the scratch one, without aliases or a log.
pub fn config() -> Config {
    Config {
        spool_dir: scratch().join("spool"),
        log: LogTarget::Stderr,
        aliases_file: None,
        ..Config::default()
    }
}

pub fn origin() -> Origin {
    Origin {
        uid: 1000,
        user_name: Some("alice".into()),
        user_full_name: Some("Alice".into()),
        host: "host.example.org".into(),
        domain: "example.org".into(),
    }
}

/// Every message queued in the scratch spool, as (envelope, content), and
/// removed: each run of a check starts with an empty queue.
pub fn take_queued() -> Vec<(Envelope, Vec<u8>)> {
    let spool = Spool::new(&config().spool_dir);
    let mut out = Vec::new();
    for entry in spool.scan().expect("scan the scratch spool") {
        let path = spool.message_path(&entry.id);
        let bytes = std::fs::read(&path).expect("read a queued message");
        let mut reader = &bytes[..];
        let (env, len) = spoolmail::spool::parse_envelope(&mut reader).expect("own envelope");
        assert_eq!(
            reader.fill_buf().map(|b| b.len()).ok(),
            Some(bytes.len() - len as usize)
        );
        out.push((env, bytes[len as usize..].to_vec()));
        std::fs::remove_file(&path).expect("remove a queued message");
        let _ = std::fs::remove_file(spool.state_path(&entry.id));
    }
    // A draft left in tmp/ by a refused message would be a leak.
    let tmp = config().spool_dir.join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).expect("tmp").collect();
    assert!(left.is_empty(), "a refused message left a draft in tmp/");
    out
}

/// What intake makes of `input`, by the rules the README gives: CRLF, a
/// bare CR and a bare LF each end a line, stored as LF; the last line gets
/// an LF; unless `ignore_dots`, a line holding a single dot ends the input
/// (and is not stored). A leading dot is otherwise kept as it is.
pub fn normalized(input: &[u8], ignore_dots: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 1);
    let mut line: Vec<u8> = Vec::new();
    let mut i = 0;
    let ended = |line: &mut Vec<u8>, out: &mut Vec<u8>| -> bool {
        if !ignore_dots && line == b"." {
            return true;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
        line.clear();
        false
    };
    while i < input.len() {
        match input[i] {
            b'\r' => {
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                if ended(&mut line, &mut out) {
                    return out;
                }
            }
            b'\n' => {
                if ended(&mut line, &mut out) {
                    return out;
                }
            }
            b => line.push(b),
        }
        i += 1;
    }
    if !line.is_empty() {
        ended(&mut line, &mut out);
    }
    out
}

/// The header block and body of a stored message (split at its first empty line).
pub fn split_message(content: &[u8]) -> (&[u8], &[u8]) {
    if content.starts_with(b"\n") {
        return (&[], &content[1..]);
    }
    match content.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&content[..i + 1], &content[i + 2..]),
        None => (content, &[]),
    }
}

/// No line of `header` is a Bcc field (any case), and every line is a field
/// or a continuation of one: nothing of the header became body or vice versa.
pub fn assert_clean_header(header: &[u8]) {
    for line in header.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let is_continuation = line[0] == b' ' || line[0] == b'\t';
        let name_end = line.iter().position(|b| *b == b':');
        assert!(
            is_continuation || name_end.is_some_and(|i| i > 0),
            "stored header line is not a field: {:?}",
            text(line)
        );
        if let Some(i) = name_end.filter(|_| !is_continuation) {
            assert!(
                !line[..i].trim_ascii().eq_ignore_ascii_case(b"bcc"),
                "a Bcc field survived intake: {:?}",
                text(line)
            );
        }
        assert!(!line.contains(&b'\r'), "CR in a stored header line");
    }
}
