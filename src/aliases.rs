//! Local recipients: /etc/aliases in its usual text format, read directly
//! (no database: `newaliases` only checks it), nested aliases with loop
//! detection, `:include:` files, and a `*` catch-all.
//!
//! Only unqualified names (`root`, `www-data`) are looked up: they are what
//! cron, mdadm and smartd write to, and what no MX would accept. Pipes and
//! files cannot be honoured by a relay-only MTA: `newaliases` reports them
//! and expansion skips them with a log line, never silently.

use crate::model::Address;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::limits::ALIAS_MAX_DEPTH as MAX_DEPTH;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `user@domain`
    Address(String),
    /// A bare name: another alias, or a local user.
    Name(String),
    /// `|command`: not honoured.
    Pipe(String),
    /// `/path`: not honoured.
    File(String),
}

/// A problem found in the file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub msg: String,
    /// An entry that is valid but cannot be honoured (a pipe, a file):
    /// reported, yet the file is fine.
    pub warning: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = if self.warning { "warning: " } else { "" };
        write!(
            f,
            "{}:{}: {level}{}",
            self.file.display(),
            self.line,
            self.msg
        )
    }
}

#[derive(Debug, Default)]
pub struct Aliases {
    entries: HashMap<String, Vec<Target>>,
    /// Where each entry was defined, for messages.
    origin: HashMap<String, (PathBuf, usize)>,
    pub problems: Vec<Problem>,
}

/// Where one recipient goes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    /// Final addresses, qualified or still bare (the caller qualifies them).
    pub addresses: Vec<String>,
    /// Targets that cannot be delivered (pipes, files, loops), with why.
    pub skipped: Vec<String>,
}

impl Aliases {
    /// Reads `path` and checks it whole, loops included (`newaliases`).
    pub fn check(path: &Path) -> Aliases {
        let mut a = Aliases::load(path);
        a.check_loops();
        a
    }

    /// Reads `path`; a missing file is an empty table. Problems are
    /// collected, never fatal: a bad line must not stop mail to root. Loops
    /// are not searched for here: expansion cuts them where it meets them.
    pub fn load(path: &Path) -> Aliases {
        let mut a = Aliases::default();
        match std::fs::read_to_string(path) {
            Ok(text) => a.parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => a.problems.push(Problem {
                file: path.into(),
                line: 0,
                msg: format!("cannot read: {e}"),
                warning: false,
            }),
        }
        a
    }

    fn parse(&mut self, text: &str, file: &Path) {
        for (line_no, entry) in logical_lines(text) {
            let problem = |msg: String| Problem {
                file: file.into(),
                line: line_no,
                msg,
                warning: false,
            };
            let Some((name, rest)) = entry.split_once(':') else {
                self.problems.push(problem(format!(
                    "expected `name: address, ...`, found `{}`",
                    entry.escape_debug()
                )));
                continue;
            };
            let name = name.trim().trim_matches('"').to_ascii_lowercase();
            if name.is_empty()
                || name.contains(|c: char| c.is_whitespace() || c.is_control() || c == '@')
            {
                self.problems
                    .push(problem(format!("bad alias name `{}`", name.escape_debug())));
                continue;
            }
            let mut targets = Vec::new();
            let mut bad_targets = false;
            for item in split_targets(rest) {
                match parse_target(&item, file, &mut HashSet::new()) {
                    Ok(t) => targets.extend(t),
                    Err(msg) => {
                        self.problems.push(problem(msg));
                        bad_targets = true;
                    }
                }
            }
            for t in &targets {
                let msg = match t {
                    Target::Pipe(c) => {
                        format!("{name}: pipe `|{c}` cannot be honoured by spoolmail (skipped)")
                    }
                    Target::File(p) => {
                        format!("{name}: file `{p}` cannot be honoured by spoolmail (skipped)")
                    }
                    _ => continue,
                };
                self.problems.push(Problem {
                    warning: true,
                    ..problem(msg)
                });
            }
            if targets.is_empty() {
                if !bad_targets {
                    self.problems.push(problem(format!("{name}: no targets")));
                }
                continue;
            }
            if self.entries.contains_key(&name) {
                self.problems.push(problem(format!(
                    "{name}: defined twice (the later one wins)"
                )));
            }
            self.origin
                .insert(name.clone(), (file.to_path_buf(), line_no));
            self.entries.insert(name, targets);
        }
    }

    /// Reports every alias that can reach itself.
    fn check_loops(&mut self) {
        let mut names: Vec<&String> = self.entries.keys().collect();
        names.sort();
        let mut found = Vec::new();
        for name in names {
            if self.reaches(name, name, &mut HashSet::new()) {
                let (file, line) = self.origin[name].clone();
                found.push(Problem {
                    file,
                    line,
                    msg: format!("{name}: alias loop"),
                    warning: false,
                });
            }
        }
        self.problems.extend(found);
    }

    fn reaches(&self, from: &str, target: &str, seen: &mut HashSet<String>) -> bool {
        let Some(list) = self.entries.get(from) else {
            return false;
        };
        list.iter().any(|t| match t {
            // `root: root, other` delivers to root itself: not a loop.
            Target::Name(n) if n == from => false,
            Target::Name(n) if n == target => true,
            Target::Name(n) => seen.insert(n.clone()) && self.reaches(n, target, seen),
            _ => false,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where `name` (an unqualified recipient) goes.
    pub fn expand(&self, name: &str) -> Expansion {
        let mut out = Expansion::default();
        let mut walk = Walk::default();
        self.expand_into(&name.to_ascii_lowercase(), name, &mut walk, &mut out);
        out.addresses.dedup();
        out
    }

    fn expand_into(&self, key: &str, as_written: &str, walk: &mut Walk, out: &mut Expansion) {
        let path = &mut walk.path;
        if path.iter().any(|p| p == key) || path.len() >= MAX_DEPTH {
            out.skipped.push(format!(
                "{as_written}: alias loop through {}",
                path.join(" -> ")
            ));
            return;
        }
        // A name reached again by another way (a: b, c; b: d; c: d) has
        // given its addresses already: expanding it again would add nothing
        // and, in a file of such diamonds, take exponential time.
        if !walk.done.insert(key.to_string()) {
            return;
        }
        let entry = self.entries.get(key).or_else(|| self.entries.get("*"));
        let Some(targets) = entry else {
            out.addresses.push(as_written.to_string()); // a local user, no alias
            return;
        };
        path.push(key.to_string());
        for t in targets {
            match t {
                Target::Address(a) => out.addresses.push(a.clone()),
                // An alias naming itself means the local user of that name.
                Target::Name(n) if n == key => out.addresses.push(n.clone()),
                Target::Name(n) => self.expand_into(n, n, walk, out),
                Target::Pipe(c) => out
                    .skipped
                    .push(format!("{key}: pipe `|{c}` not supported")),
                Target::File(p) => out.skipped.push(format!("{key}: file `{p}` not supported")),
            }
        }
        walk.path.pop();
    }
}

/// Where one expansion has been: the names on the way to the current one
/// (a name met again there is a loop), and every name already expanded.
#[derive(Default)]
struct Walk {
    path: Vec<String>,
    done: HashSet<String>,
}

/// Where a submission's recipients go: unqualified names through the
/// aliases (the file is read only when there is one), then, still
/// unqualified, to `local_recipient_fallback` or qualified with the domain.
/// Returns the recipients, with the address as written kept as ORCPT when it
/// changed, and notes for the log (skipped pipes, files, loops).
pub fn resolve(
    addrs: Vec<Address>,
    config: &crate::config::Config,
    domain: &str,
) -> (Vec<crate::spool::Recipient>, Vec<String>) {
    let mut table: Option<Aliases> = None;
    let mut out: Vec<crate::spool::Recipient> = Vec::with_capacity(addrs.len());
    let mut notes = Vec::new();
    for written in addrs {
        let finals = if written.is_qualified() {
            vec![written.clone()]
        } else if let Some(path) = &config.aliases_file {
            let t = table.get_or_insert_with(|| Aliases::load(path));
            let e = t.expand(&written.to_string());
            notes.extend(e.skipped.iter().map(|s| format!("alias {s}")));
            if e.addresses.is_empty() {
                notes.push(format!(
                    "alias {written}: nothing deliverable; sent on as {written}"
                ));
                vec![written.clone()]
            } else {
                // Checked when the aliases file was read.
                e.addresses.iter().map(|a| Address::accepted(a)).collect()
            }
        } else {
            vec![written.clone()]
        };
        for f in finals {
            let address = match (&config.local_recipient_fallback, f.is_qualified()) {
                (_, true) => f,
                // Checked when the configuration was read.
                (Some(fallback), false) => Address::accepted(fallback),
                (None, false) => f.qualified(domain),
            };
            let text = address.to_string();
            if (out.iter()).any(|r| r.address.to_string().eq_ignore_ascii_case(&text)) {
                continue;
            }
            let orcpt = (address != written).then(|| written.to_string());
            out.push(crate::spool::Recipient { address, orcpt });
        }
    }
    (out, notes)
}

/// Whether `addr` has a domain: `"x@y"` has none, its `@` is quoted.
fn is_qualified(addr: &str) -> bool {
    Address::split(addr).1.is_some()
}

/// `masquerade_domain`: senders at this host (`user@localhost`,
/// `user@HOSTNAME`, `user@QUALIFY_DOMAIN`) are rewritten to
/// `user@masquerade_domain`, in the envelope and the From header; addresses
/// of other domains are left alone.
pub struct Masquerade {
    domain: String,
    local: Vec<String>,
}

impl Masquerade {
    pub fn new(
        config: &crate::config::Config,
        origin_host: &str,
        origin_domain: &str,
    ) -> Option<Masquerade> {
        let domain = config.masquerade_domain.clone()?;
        let mut local: Vec<String> = vec!["localhost".into(), "localhost.localdomain".into()];
        local.extend([
            crate::system::kernel_host_name(),
            crate::system::host_name(),
            origin_host.into(),
            origin_domain.into(),
        ]);
        local.retain(|d| !d.eq_ignore_ascii_case(&domain));
        Some(Masquerade { domain, local })
    }

    /// The rewritten address, or None when it is not at this host.
    pub fn address(&self, addr: &str) -> Option<String> {
        let (user, dom) = Address::split(addr);
        let dom = dom?;
        self.local
            .iter()
            .any(|l| l.eq_ignore_ascii_case(dom))
            .then(|| format!("{user}@{}", self.domain))
    }

    /// A From header value with its local addresses rewritten in place.
    pub fn header_value(&self, value: &str) -> Option<String> {
        let addrs = crate::address::parse_list(value).ok()?;
        let mut out = value.to_string();
        let mut changed = false;
        for a in addrs {
            if let Some(new) = self.address(&a) {
                out = out.replace(&a, &new);
                changed = true;
            }
        }
        changed.then_some(out)
    }
}

/// Joins continuation lines (starting with a space or tab) to their entry
/// and drops comments and blank lines; yields (first line number, text).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t'])
            && let Some(last) = out.last_mut()
        {
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        out.push((i + 1, line.trim_end().to_string()));
    }
    out
}

/// Splits a target list at commas outside double quotes.
fn split_targets(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_target(
    item: &str,
    file: &Path,
    includes: &mut HashSet<PathBuf>,
) -> Result<Vec<Target>, String> {
    let unquoted = item
        .strip_prefix('"')
        .and_then(|i| i.strip_suffix('"'))
        .unwrap_or(item);
    if let Some(cmd) = unquoted.strip_prefix('|') {
        return Ok(vec![Target::Pipe(cmd.trim().to_string())]);
    }
    if unquoted.starts_with('/') {
        return Ok(vec![Target::File(unquoted.to_string())]);
    }
    if let Some(inc) = unquoted.strip_prefix(":include:") {
        return read_include(Path::new(inc.trim()), file, includes);
    }
    // A wholly quoted item ("o1@x.org", as Sendmail allows) is its contents.
    let addrs = crate::address::parse_list(unquoted).map_err(|e| e.to_string())?;
    addrs
        .into_iter()
        .map(|a| {
            let a = crate::address::validate(&a).map_err(|e| e.to_string())?;
            Ok(if is_qualified(&a) {
                Target::Address(a)
            } else {
                Target::Name(a.to_ascii_lowercase())
            })
        })
        .collect()
}

/// An `:include:` file: addresses one per line or comma-separated, comments
/// allowed. Its owner may be a user, and a user may point it at a file they
/// cannot read (the relay password): it is read with the caller's rights
/// ([`crate::system::open_as_caller`]: no symbolic links, no FIFOs), and no
/// message quotes its text, which `newaliases` and `sendmail -bv` print.
fn read_include(
    path: &Path,
    from: &Path,
    seen: &mut HashSet<PathBuf>,
) -> Result<Vec<Target>, String> {
    let shown = format!(":include:{} (from {})", path.display(), from.display());
    if !path.is_absolute() {
        return Err(format!(":include:{}: not an absolute path", path.display()));
    }
    if !seen.insert(path.to_path_buf()) {
        return Err(format!(":include:{}: includes itself", path.display()));
    }
    let text = read_include_text(path).map_err(|e| format!("{shown}: {e}"))?;
    let mut out = Vec::new();
    for (line_no, line) in logical_lines(&text) {
        for item in split_targets(&line) {
            let nested = item.trim_matches('"').starts_with(":include:");
            let targets = parse_target(&item, path, seen).map_err(|e| {
                if nested {
                    e // about the nested file, and says nothing of this one's text
                } else {
                    format!("{shown}, line {line_no}: not an address (the text is not shown)")
                }
            })?;
            if targets
                .iter()
                .any(|t| matches!(t, Target::Pipe(_) | Target::File(_)))
            {
                return Err(format!(
                    "{shown}, line {line_no}: a pipe or file, which an include file cannot name"
                ));
            }
            out.extend(targets);
        }
    }
    Ok(out)
}

/// The text of an include file, opened with the caller's rights and at most
/// MAX_INCLUDE_FILE long. Errors say why, never what the file holds.
fn read_include_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let limit = crate::limits::MAX_INCLUDE_FILE;
    let mut bytes = Vec::new();
    crate::system::open_as_caller(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "longer than {} KiB (refused)",
            limit / 1024
        )));
    }
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("not valid UTF-8 (refused)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Aliases {
        let mut a = Aliases::default();
        a.parse(text, Path::new("/etc/aliases"));
        a.check_loops();
        a
    }

    #[test]
    fn nested_and_continued() {
        let a = table(
            "# comment\npostmaster: root\nroot: admin@example.org,\n  ops\nops: \"o1@x.org\", o2@x.org\n",
        );
        assert!(a.problems.is_empty(), "{:?}", a.problems);
        assert_eq!(
            a.expand("postmaster").addresses,
            vec!["admin@example.org", "o1@x.org", "o2@x.org"]
        );
        assert_eq!(
            a.expand("ROOT").addresses,
            vec!["admin@example.org", "o1@x.org", "o2@x.org"]
        );
        assert_eq!(a.expand("nobody").addresses, vec!["nobody"]);
    }

    #[test]
    fn diamonds_are_expanded_once_each() {
        // 18 levels (within ALIAS_MAX_DEPTH) where each of three names
        // names all three of the next level: 3^18 paths, 57 names. Before
        // names were expanded once each, this never ended; the fuzzer found
        // a 66-byte file of the same shape (the second case).
        let mut text = String::new();
        for i in 0..18 {
            for side in ["a", "b", "c"] {
                text.push_str(&format!("{side}{i}: a{n}, b{n}, c{n}\n", n = i + 1));
            }
        }
        text.push_str("a18: x@example.org\nb18: y@example.org\nc18: z@example.org\n");
        let a = table(&text);
        let mut got = a.expand("a0").addresses;
        got.sort();
        assert_eq!(got, vec!["x@example.org", "y@example.org", "z@example.org"]);
        let fuzzed = b"a:: 0\n*:,rr\xff\xff\xff\xff,\xff\xff\xffo,,M: o\xff,\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff,l,\xef\xbf\xbdoo,,M,,,\xff\xff.\x01o,,\xff,\xbfo";
        let a = table(&String::from_utf8_lossy(fuzzed));
        assert!(a.expand("a").addresses.len() < 100);
    }

    #[test]
    fn loops_reported_and_cut() {
        let a = table("a: b\nb: c, x@y.org\nc: a\nself: self, z@y.org\n");
        let msgs: Vec<String> = a.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            msgs.contains(&"/etc/aliases:1: a: alias loop".to_string()),
            "{msgs:?}"
        );
        assert!(!msgs.iter().any(|m| m.contains("self:")), "{msgs:?}");
        let e = a.expand("a");
        assert_eq!(e.addresses, vec!["x@y.org"]);
        assert_eq!(e.skipped.len(), 1, "{e:?}");
        assert_eq!(a.expand("self").addresses, vec!["self", "z@y.org"]);
    }

    #[test]
    fn pipes_files_and_catch_all() {
        let a = table(
            "bugs: |/usr/bin/handler, keep@x.org\nlog: /var/log/mail.txt\n*: admin@example.org\n",
        );
        assert_eq!(a.problems.len(), 2, "{:?}", a.problems);
        assert!(
            a.problems[0]
                .to_string()
                .starts_with("/etc/aliases:1: warning: bugs: pipe"),
            "{}",
            a.problems[0]
        );
        assert!(a.problems.iter().all(|p| p.warning));
        let e = a.expand("bugs");
        assert_eq!(e.addresses, vec!["keep@x.org"]);
        assert_eq!(e.skipped.len(), 1);
        assert_eq!(a.expand("www-data").addresses, vec!["admin@example.org"]);
    }

    #[test]
    fn bad_lines_have_file_and_line() {
        let a = table("good: a@b.org\nno colon here\nbad name: x@y.org\nctl: a\u{1}b@c.org\n");
        let lines: Vec<usize> = a.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 3, 4], "{:?}", a.problems);
        assert_eq!(a.len(), 1);
    }

    /// An include file is opened safely and never quoted (finding 2): a
    /// symbolic link and a FIFO are refused (the FIFO without hanging), and
    /// a file that is not an address list (a password, a pipe) is reported
    /// without its text.
    #[test]
    fn include_files_are_opened_safely_and_never_quoted() {
        let dir = std::env::temp_dir().join(format!("spoolmail-incl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "hunter2 is the password\n").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(dir.join("team"), &link).unwrap();
        std::fs::write(dir.join("team"), "t1@x.org\n").unwrap();
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let piped = dir.join("piped");
        std::fs::write(&piped, "ok@x.org, |/usr/bin/evil-command\n").unwrap();
        let text = format!(
            "a: :include:{}\nb: :include:{}\nc: :include:{}\nd: :include:{}\n",
            link.display(),
            fifo.display(),
            secret.display(),
            piped.display()
        );
        // On a thread, so that a hang on the FIFO fails the test instead.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(table(&text)).unwrap());
        let a = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading the aliases hung (on the FIFO?)");
        let msgs: Vec<String> = a.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert!(msgs[0].contains("symbolic link"), "{msgs:?}");
        assert!(msgs[1].contains("not a regular file"), "{msgs:?}");
        for m in &msgs {
            assert!(!m.contains("hunter2") && !m.contains("evil"), "{m}");
            assert!(!a.problems[0].warning);
        }
        for name in ["a", "b", "c", "d"] {
            assert_eq!(a.expand(name).addresses, vec![name], "{name}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn includes() {
        let dir = std::env::temp_dir().join(format!("spoolmail-aliases-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inc = dir.join("team");
        std::fs::write(&inc, "# the team\nt1@x.org, t2@x.org\nt3@x.org\n").unwrap();
        let a = table(&format!(
            "team: :include:{}\nrel: :include:relative\n",
            inc.display()
        ));
        assert_eq!(
            a.expand("team").addresses,
            vec!["t1@x.org", "t2@x.org", "t3@x.org"]
        );
        assert_eq!(a.problems.len(), 1, "{:?}", a.problems);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
