//! `spoolctl check`: the config, the spool's layout, owners and modes, and
//! the modes of the secret files, each problem on one line (exit 78).

use crate::config::Config;
use crate::error::{Result, exit};
use crate::system;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub fn check(config: &Config) -> Result<u8> {
    let mut problems: Vec<String> = config.problems.iter().map(|p| p.to_string()).collect();
    problems.extend(spool_problems(&config.spool_dir));
    // The password and token files' modes are config problems already
    // (`config::secret_file`); the client key is checked here.
    if let Some(path) = &config.tls_key_file {
        problems.extend(secret_problem("tls_key_file", path));
    }
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
        problems.extend(mode_problems(&path, m.mode(), m.gid(), meta.gid()));
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
    if gid != spool_gid {
        problems.push(format!(
            "{shown}: group {gid}, not the spool directory's ({spool_gid})"
        ));
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
