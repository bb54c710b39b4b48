//! `sender_relay_map = FILE`: read with the config file, one
//! [`SenderRelay`] a line; a problem names the map's `FILE:LINE:` and stops
//! queue runs (exit 78), as a bad line of the config itself does.

use super::{Config, Problem, host_port, secret_file};
use crate::limits::MAX_RELAY_MAP;
use crate::model::SenderRelay;
use std::io::Read;
use std::path::Path;

impl Config {
    /// Reads the map named by `sender_relay_map` into `sender_relays`;
    /// every problem it has goes into `problems`, holding delivery.
    pub(super) fn load_relay_map(&mut self, file: &Path) {
        let problem = |line: usize, msg: String| Problem {
            file: file.to_path_buf(),
            line,
            msg,
            holds_delivery: true,
        };
        let text = match read_map(file) {
            Ok(text) => text,
            Err(msg) => return self.problems.push(problem(0, msg)),
        };
        let (relays, bad) = parse_relay_map(&text);
        self.problems
            .extend(bad.into_iter().map(|(line, msg)| problem(line, msg)));
        for (line, relay) in &relays {
            // As private as auth_password_file, checked where it is named.
            if let Some(pw) = &relay.password_file
                && let Err(msg) = secret_file("password_file", &pw.to_string_lossy())
            {
                self.problems.push(problem(*line, msg));
            }
        }
        self.sender_relays = relays.into_iter().map(|(_, r)| r).collect();
    }
}

/// The map's text: a regular file others cannot write (whoever could
/// would send a relay's password, or anyone's mail, where they like), of
/// at most [`MAX_RELAY_MAP`] bytes, in UTF-8.
fn read_map(file: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let opened = std::fs::File::open(file).map_err(|e| format!("cannot read: {e}"))?;
    let meta = opened.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("sender_relay_map is not a regular file".into());
    }
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 {
        return Err(format!(
            "sender_relay_map is mode {:04o}: others can write it; chmod o-w {}",
            mode & 0o7777,
            file.display()
        ));
    }
    let mut bytes = Vec::new();
    opened
        .take(MAX_RELAY_MAP + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_RELAY_MAP {
        return Err(format!(
            "sender_relay_map is larger than {MAX_RELAY_MAP} bytes"
        ));
    }
    String::from_utf8(bytes).map_err(|_| "sender_relay_map is not valid UTF-8".into())
}

/// Numbered lines of a map: (line number, what it holds).
type Numbered<T> = Vec<(usize, T)>;

/// The lines of a map with their numbers, and the problems of the lines
/// that cannot be used (line number, what is wrong): blank lines and
/// lines that begin with `#` are skipped; a pattern given twice is a
/// problem of its second line.
pub fn parse_relay_map(text: &str) -> (Numbered<SenderRelay>, Numbered<String>) {
    let mut relays: Numbered<SenderRelay> = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.chars().any(|c| c.is_control() && c != '\t') {
            bad.push((i + 1, "the line contains a control character".into()));
            continue;
        }
        let relay = SenderRelay::parse(line).and_then(|r| {
            host_port("relay", &r.host)?;
            match relays.iter().find(|(_, o)| o.pattern == r.pattern) {
                Some((n, _)) => Err(format!("{} has a line already (line {n})", r.pattern)),
                None => Ok(r),
            }
        });
        match relay {
            Ok(r) => relays.push((i + 1, r)),
            Err(msg) => bad.push((i + 1, msg)),
        }
    }
    (relays, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SenderPattern;

    #[test]
    fn a_map_is_read_line_by_line() {
        let text = "# sender relays\n\n\
                    billing@shop.example smtp.shop.example:587 user=shop password_file=/p\n\
                    \t@shop.example smtp.shop.example\n\
                    * [::1]:2525\n\
                    @bad.example not a host!\n\
                    @shop.example other.example\n\
                    x@y.example relay.example:0\n\
                    @z.example relay.example tls=\u{7}\n";
        let (relays, bad) = parse_relay_map(text);
        let got: Vec<(usize, String, &str)> = relays
            .iter()
            .map(|(n, r)| (*n, r.pattern.to_string(), r.host.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (3, "billing@shop.example".into(), "smtp.shop.example:587"),
                (4, "@shop.example".into(), "smtp.shop.example"),
                (5, "*".into(), "[::1]:2525"),
            ]
        );
        assert_eq!(relays[2].1.pattern, SenderPattern::Any);
        let lines: Vec<usize> = bad.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [6, 7, 8, 9], "{bad:?}");
        assert!(bad[0].1.contains("`a` is not OPTION=VALUE"), "{bad:?}");
        assert_eq!(bad[1].1, "@shop.example has a line already (line 4)");
        assert_eq!(bad[2].1, "relay: `0` is not a port number");
        assert_eq!(bad[3].1, "the line contains a control character");
    }

    #[test]
    fn the_config_reads_the_map_and_names_its_lines() {
        let dir = std::env::temp_dir().join(format!("spoolmail-relay-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let map = dir.join("relays");
        std::fs::write(&map, "* relay.example\n@a.example relay.example tls=ssl\n").unwrap();
        let conf = format!("sender_relay_map = {}\n", map.display());
        let c = Config::parse(&conf, Path::new("/etc/test.conf")).unwrap();
        assert_eq!(c.sender_relays.len(), 1);
        let e = c.check_for_delivery().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2: tls: `ssl` must be starttls or implicit",
                map.display()
            )
        );
        assert_eq!(e.exit_code(), 78);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&map, std::fs::Permissions::from_mode(0o666)).unwrap();
        let c = Config::parse(&conf, Path::new("/etc/test.conf")).unwrap();
        let e = c.check_for_delivery().unwrap_err().to_string();
        assert!(e.contains("others can write it"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let c = Config::parse(&conf, Path::new("/etc/test.conf")).unwrap();
        let e = c.check_for_delivery().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: cannot read", map.display())),
            "{e}"
        );
    }
}
