//! `spoolctl check`: the config, the spool's layout, owners and modes, the
//! modes of the secret files (DKIM keys and the relays' password files
//! too), and the login names `users=` options give, each problem on one
//! line (exit 78).

use crate::config::Config;
use crate::error::{Result, exit};
use crate::system;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub fn check(config: &Config) -> Result<u8> {
    let mut problems: Vec<String> = config.problems.iter().map(|p| p.to_string()).collect();
    problems.extend(spool_problems(&config.spool_dir));
    let spool_gid = std::fs::metadata(&config.spool_dir).map(|m| m.gid()).ok();
    // The password and token files' modes are config problems already
    // (`config::secret_file`); the client key's is checked here, and the
    // owners and groups of all three.
    if let Some(path) = &config.tls_key_file {
        problems.extend(secret_problem("tls_key_file", path));
    }
    let secrets = [
        ("auth_password_file", &config.auth_password_file),
        ("auth_xoauth2_token_file", &config.auth_xoauth2_token_file),
        // Not auth_oauth2_refresh_token_file: delivery rewrites it, as
        // whichever user's delivery child got a new one.
        (
            "auth_oauth2_client_secret_file",
            &config.auth_oauth2_client_secret_file,
        ),
        ("tls_key_file", &config.tls_key_file),
    ];
    for (key, path) in secrets {
        if let (Some(path), Some(gid)) = (path, spool_gid) {
            problems.extend(secret_owner_problems(key, path, gid));
        }
    }
    // The relays' password files are a map's config problems too; the
    // map itself must not be another user's to change.
    for relay in &config.sender_relays {
        if let (Some(path), Some(gid)) = (&relay.password_file, spool_gid) {
            problems.extend(secret_owner_problems("password_file", path, gid));
        }
    }
    if let Some(map) = &config.sender_relay_map
        && let Ok(m) = std::fs::metadata(map)
    {
        problems.extend(owner_problem(map, m.uid()));
    }
    if let (Some(path), Some(gid)) = (&config.auth_oauth2_refresh_token_file, spool_gid) {
        problems.extend(refresh_token_problems(path, gid));
    }
    // The DKIM keys' modes are config problems too (`dkim_key`); a missing
    // key holds the mail it should sign.
    for key in &config.dkim_keys {
        if let Err(e) = std::fs::metadata(&key.file) {
            problems.push(format!(
                "{}: dkim_key of {}: {e}",
                key.file.display(),
                key.domain
            ));
        }
        if let Some(gid) = spool_gid {
            problems.extend(secret_owner_problems("dkim_key", &key.file, gid));
        }
    }
    problems.extend(unknown_users(config));
    for p in &problems {
        system::outln(format_args!("{p}"));
    }
    if problems.is_empty() {
        system::outln(format_args!("no problem found"));
        return Ok(exit::OK);
    }
    Ok(exit::CONFIG)
}

/// The spool directory and its `tmp/` and `queue/` (doc/SPOOL.md): there,
/// directories, not open to others, and the two writable by the spool's
/// group, which must be the spool directory's.
fn spool_problems(dir: &Path) -> Vec<String> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => return vec![format!("{}: spool_dir is not a directory", dir.display())],
        Err(e) => return vec![format!("{}: spool_dir: {e}", dir.display())],
    };
    let mut problems = Vec::new();
    if meta.mode() & 0o002 != 0 {
        problems.push(format!(
            "{}: writable by everyone (0750 expected)",
            dir.display()
        ));
    }
    problems.extend(owner_problem(dir, meta.uid()));
    for sub in ["slots", "counters", "sts", "oauth2"] {
        // Made on first use: checked where they are.
        let path = dir.join(sub);
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            problems.extend(owner_problem(&path, m.uid()));
            problems.extend(group_problem(&path, m.gid(), meta.gid()));
        }
    }
    for sub in ["tmp", "queue"] {
        let path = dir.join(sub);
        let m = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => {
                problems.push(format!("{}: not a directory", path.display()));
                continue;
            }
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        problems.extend(owner_problem(&path, m.uid()));
        problems.extend(mode_problems(&path, m.mode(), m.gid(), meta.gid()));
    }
    problems.extend(queue_file_groups(&dir.join("queue"), meta.gid()));
    problems
}

/// Who may own the spool's directories and the secret files: root, or the
/// user running the check when that is not root (a spool of one user's
/// own). Any other owner can change their modes, or swap a file.
fn owner_problem(path: &Path, uid: u32) -> Option<String> {
    let me = system::current_uid();
    (uid != 0 && uid != me).then(|| {
        format!(
            "{}: owned by uid {uid}, not root: that user can change it (chown root)",
            path.display()
        )
    })
}

/// A file or directory of the spool must have the spool directory's group,
/// which every user's submissions and deliveries run with.
fn group_problem(path: &Path, gid: u32, spool_gid: u32) -> Option<String> {
    (gid != spool_gid).then(|| {
        format!(
            "{}: group {gid}, not the spool directory's ({spool_gid})",
            path.display()
        )
    })
}

/// The messages and state files in `queue/` whose group is not the
/// spool's: a user's delivery (which has only that group) cannot read
/// them. One line for all of them, with the first few names.
fn queue_file_groups(queue: &Path, spool_gid: u32) -> Option<String> {
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(queue).ok()?.flatten() {
        if let Ok(m) = entry.metadata()
            && m.is_file()
            && m.gid() != spool_gid
        {
            wrong.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    wrong.sort_unstable();
    let first: Vec<&str> = wrong.iter().take(3).map(String::as_str).collect();
    let more = if wrong.len() > 3 { ", ..." } else { "" };
    (!wrong.is_empty()).then(|| {
        format!(
            "{}: {} files not of the spool directory's group ({spool_gid}): {}{more} (chgrp)",
            queue.display(),
            wrong.len(),
            first.join(", ")
        )
    })
}

/// A secret file's owner (root) and group (the spool's: a user's delivery
/// reads it with that group alone).
fn secret_owner_problems(key: &str, path: &Path, spool_gid: u32) -> Vec<String> {
    let Ok(m) = std::fs::metadata(path) else {
        return Vec::new(); // said already, as a config problem or by secret_problem
    };
    let mut problems = Vec::new();
    problems.extend(owner_problem(path, m.uid()).map(|p| format!("{key}: {p}")));
    if m.gid() != spool_gid {
        problems.push(format!(
            "{key}: {}: group {}, not the spool directory's ({spool_gid}): users' deliveries cannot read it",
            path.display(),
            m.gid()
        ));
    }
    problems
}

/// A queue directory's mode: the group reads, writes and enters it, others
/// nothing (their mail would be theirs to read); its group is the spool's.
fn mode_problems(path: &Path, mode: u32, gid: u32, spool_gid: u32) -> Vec<String> {
    let mut problems = Vec::new();
    let shown = path.display();
    if mode & 0o070 != 0o070 {
        problems.push(format!(
            "{shown}: mode {:04o}, the group cannot write (0770 expected)",
            mode & 0o7777
        ));
    }
    if mode & 0o007 != 0 {
        problems.push(format!(
            "{shown}: mode {:04o}, open to others (0770 expected)",
            mode & 0o7777
        ));
    }
    problems.extend(group_problem(path, gid, spool_gid));
    problems
}

/// The refresh token's file and directory: delivery replaces the file
/// (a temporary file beside it, then a rename) as whichever user's
/// delivery child got a new token, with the spool's group alone, so the
/// directory is the group's to write and nobody else's to enter; the
/// file's owner may then be any of those users.
fn refresh_token_problems(path: &Path, spool_gid: u32) -> Vec<String> {
    const KEY: &str = "auth_oauth2_refresh_token_file";
    let mut problems: Vec<String> = secret_problem(KEY, path).into_iter().collect();
    if let Ok(m) = std::fs::metadata(path)
        && m.gid() != spool_gid
    {
        problems.push(format!(
            "{KEY}: {}: group {}, not the spool directory's ({spool_gid}): users' deliveries cannot read it",
            path.display(),
            m.gid()
        ));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) => {
            problems.extend(owner_problem(dir, m.uid()).map(|p| format!("{KEY}: {p}")));
            let modes = mode_problems(dir, m.mode(), m.gid(), spool_gid);
            problems.extend(modes.into_iter().map(|p| {
                format!("{KEY}: {p}: delivery rewrites the refresh token there (install -d -m 2770 -g spoolmail)")
            }));
        }
        Err(e) => problems.push(format!("{KEY}: {}: {e}", dir.display())),
    }
    problems
}

/// A secret's file must not be readable by others.
fn secret_problem(key: &str, path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.mode() & 0o004 != 0 => Some(format!(
            "{}: {key} is readable by everyone (mode {:04o}; 0640 root:spoolmail expected)",
            path.display(),
            m.mode() & 0o7777
        )),
        Ok(_) => None,
        Err(e) => Some(format!("{}: {key}: {e}", path.display())),
    }
}

/// The login names of `users=` options that name no local user: a typo
/// there leaves that user's mail unsigned (`dkim_key`) or on another relay
/// (`sender_relay_map`), with nothing else to say so.
fn unknown_users(config: &Config) -> Vec<String> {
    let dkim = (config.dkim_keys.iter()).map(|k| {
        (
            format!("dkim_key of {} ({})", k.domain, k.selector),
            &k.users,
        )
    });
    let relays = (config.sender_relays.iter())
        .map(|r| (format!("sender_relay_map line {}", r.pattern), &r.users));
    let mut problems = Vec::new();
    for (what, users) in dkim.chain(relays) {
        for name in users.iter().flat_map(|u| u.names()) {
            if let Ok(false) = crate::sys::user_exists(name) {
                problems.push(format!("{what}: users= names {name}, who is no local user"));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_directory_modes() {
        let p = Path::new("/s/queue");
        assert!(mode_problems(p, 0o40770, 5, 5).is_empty());
        assert!(mode_problems(p, 0o42770, 5, 5).is_empty());
        assert_eq!(mode_problems(p, 0o40750, 5, 5).len(), 1);
        assert_eq!(mode_problems(p, 0o40777, 5, 5).len(), 1);
        assert_eq!(mode_problems(p, 0o40770, 6, 5).len(), 1);
        assert_eq!(mode_problems(p, 0o40700, 6, 5).len(), 2);
    }
}
