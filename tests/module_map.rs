//! The module map: which module of src/ may use which. Every `crate::` path
//! in src/ is checked against it, so a new import that points the wrong
//! way (or closes a circle) fails here instead of rotting into the code.
//!
//! A module is a file or directory directly under src/; its submodules
//! (src/smtp/protocol.rs is part of `smtp`) use each other freely. A new
//! module needs a line in `MAP`. doc/ARCHITECTURE.md explains the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Leaves: they use nothing above them, and any module may use them.
const LEAVES: &[&str] = &[
    "error", "limits", "model", "sys", "system", "mime", "address",
];

/// The submission stack (cli -> smtpd -> submit -> aliases) and the delivery
/// stack (queue -> deliver -> route, smtp -> tls, auth; record, bounce and
/// pass_protocol under both processes of a pass) share only the leaves,
/// config, spool and log.
const SUBMISSION: &[&str] = &["cli", "smtpd", "submit", "aliases", "mailq"];
const DELIVERY: &[&str] = &[
    "queue",
    "deliver",
    "record",
    "bounce",
    "pass_protocol",
    "route",
    "sts",
    "oauth2",
    "https",
    "smtp",
    "tls",
    "auth",
    "dkim",
];

/// Each module and the modules it may use besides the leaves (the leaves,
/// and config, which sits on the model alone, list theirs in full). `app`
/// dispatches by mode and may use everything.
const MAP: &[(&str, &[&str])] = &[
    // Leaves.
    ("error", &[]),
    ("limits", &[]),
    ("model", &["limits"]),
    ("sys", &["error", "limits"]),
    ("system", &["error", "limits", "sys"]),
    ("mime", &["limits"]),
    ("address", &["error", "limits", "model"]),
    // Shared by both stacks.
    ("config", &["error", "limits", "model"]),
    ("log", &["config"]),
    ("spool", &[]),
    ("slots", &[]),
    // Written by record (the counters) and after each pass (the file).
    ("metrics", &["config", "log", "spool"]),
    // Submission.
    ("cli", &["config", "ctl", "spool", "submit"]),
    ("smtpd", &["config", "log", "spool", "submit"]),
    ("submit", &["aliases", "config", "log", "spool"]),
    ("aliases", &["config", "log", "spool"]),
    ("mailq", &["config", "spool"]),
    // The queue's administration, and the JSON it writes.
    (
        "ctl",
        &["config", "dkim", "json", "log", "mailq", "route", "spool"],
    ),
    ("json", &[]),
    // The documentation generated from the flags, the keys and spoolctl's commands.
    ("manual", &["cli", "config", "ctl"]),
    // Delivery.
    (
        "queue",
        &[
            "config",
            "deliver",
            "log",
            "metrics",
            "pass_protocol",
            "record",
            "slots",
            "spool",
            "sts",
        ],
    ),
    (
        "deliver",
        &[
            "auth",
            "config",
            "dkim",
            "log",
            "pass_protocol",
            "record",
            "route",
            "smtp",
            "oauth2",
            "spool",
            "sts",
            "tls",
        ],
    ),
    ("record", &["bounce", "config", "log", "metrics", "spool"]),
    ("bounce", &["spool"]),
    ("pass_protocol", &[]),
    ("route", &["config"]),
    // MTA-STS: the TXT record and the policy host through route's resolver,
    // the policy over https, the cache in the spool (sts/, made as slots/ is).
    ("sts", &["https", "log", "route", "slots", "spool", "tls"]),
    // OAuth 2.0 tokens: the token endpoint over https (its host through
    // route's resolver), the secret files read as auth reads them, the
    // cache in the spool (oauth2/, made as slots/ is).
    (
        "oauth2",
        &["auth", "config", "https", "route", "slots", "spool", "tls"],
    ),
    ("https", &["tls"]),
    ("smtp", &["auth", "config", "spool", "tls"]),
    ("tls", &[]),
    ("auth", &[]),
    ("dkim", &[]),
];

fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    MAP.iter()
        .map(|(module, uses)| {
            let mut set: BTreeSet<&str> = uses.iter().copied().collect();
            if !LEAVES.contains(module) && *module != "config" {
                set.extend(LEAVES);
            }
            (*module, set)
        })
        .collect()
}

#[test]
fn every_import_in_src_follows_the_map() {
    let allowed = allowed();
    let mut wrong = Vec::new();
    for (module, uses) in imports() {
        if module == "app" {
            continue;
        }
        let Some(ok) = allowed.get(module.as_str()) else {
            wrong.push(format!(
                "module `{module}` is not in the map: give it a line in MAP (tests/module_map.rs)"
            ));
            continue;
        };
        for (used, file) in uses {
            if used == module || ok.contains(used.as_str()) {
                continue;
            }
            wrong.push(format!("{file}: `{module}` may not use `{used}`"));
        }
    }
    assert!(wrong.is_empty(), "\n{}\n", wrong.join("\n"));
}

/// The map itself points one way: no circles, and the stacks meet only in
/// the shared modules.
#[test]
fn the_map_has_no_circles_and_the_stacks_do_not_cross() {
    let allowed = allowed();
    for (module, uses) in &allowed {
        for used in uses {
            assert!(allowed.contains_key(used), "{module} uses unknown {used}");
            for (stack, other) in [(SUBMISSION, DELIVERY), (DELIVERY, SUBMISSION)] {
                assert!(
                    !(stack.contains(module) && other.contains(used)),
                    "{module} may not use {used}: the stacks share only leaves, config, spool and log"
                );
            }
        }
    }
    // Take modules whose uses are all taken; what is left is a circle.
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    while taken.len() < allowed.len() {
        let next: Vec<&str> = allowed
            .iter()
            .filter(|(m, uses)| !taken.contains(*m) && uses.iter().all(|u| taken.contains(u)))
            .map(|(m, _)| *m)
            .collect();
        assert!(
            !next.is_empty(),
            "circle among {:?}",
            allowed
                .keys()
                .filter(|m| !taken.contains(*m))
                .collect::<Vec<_>>()
        );
        taken.extend(next);
    }
}

#[test]
fn the_scanner_reads_every_form_of_crate_path() {
    let code = "use crate::config::Config;\n\
                use crate::{log, spool::{Envelope, Spool}, system};\n\
                let x = crate::route::destination_of(a, b); // crate::cli in a comment\n\
                /// [`crate::queue`] in a doc comment\n\
                macro_rules! m { () => { $crate::x } }\n\
                use crate::{\n    aliases,\n    model::{Address, QueueId},\n};\n\
                pub(crate) fn f() {}\n";
    let found = crate_paths(code);
    let found: Vec<(&str, usize)> = found.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    assert_eq!(
        found,
        [
            ("config", 1),
            ("log", 2),
            ("spool", 2),
            ("system", 2),
            ("route", 3),
            ("aliases", 6),
            ("model", 6),
        ]
    );
}

/// Each module of src/ and the modules it uses, with a file and line where.
fn imports() -> BTreeMap<String, Vec<(String, String)>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str();
        let module = top.to_str().unwrap().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue; // the crate root and the binary
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let uses = out.entry(module).or_default();
        for (used, line) in crate_paths(&text) {
            uses.push((used, format!("src/{}:{line}", rel.display())));
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The first module named by each `crate::` path in `code` outside
/// comments, with its line; `crate::{a, b::c}` (on one line or several)
/// names a and b.
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    let code: String = code
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::").map(|i| from + i) {
        from = at + "crate::".len();
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c == '$' || c == '_' || c.is_alphanumeric()) {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let names = match code[from..].strip_prefix('{') {
            Some(group) => group_names(group),
            None => vec![ident(&code[from..])],
        };
        found.extend(names.into_iter().map(|n| (n, line)));
    }
    found.retain(|(n, _)| !n.is_empty());
    found
}

/// The first name of each item of a `{...}` group, up to its closing brace.
fn group_names(group: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && (c.is_alphanumeric() || c == '_') => {
                names.push(ident(&group[i..]));
                start = false;
            }
            _ => {}
        }
    }
    names
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}
