//! `spoolctl dkim-keygen DOMAIN SELECTOR [--ed25519]`: a new DKIM key,
//! written where the config's other secrets live, as private as they are
//! (0640, the spool's group), and the lines to add to the config and to
//! publish in DNS.

use crate::config::{self, Config};
use crate::dkim;
use crate::error::{Error, Result, exit};
use crate::model::DkimKey;
use crate::system;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where a new key goes: `spoolmail/dkim/DOMAIN.SELECTOR.pem` beside the
/// config file (`/etc/spoolmail/dkim/...` for `/etc/spoolmail.conf`).
pub fn key_path(config_file: &Path, domain: &str, selector: &str) -> PathBuf {
    config_file
        .parent()
        .unwrap_or(Path::new("/"))
        .join("spoolmail/dkim")
        .join(format!("{domain}.{selector}.pem"))
}

pub fn keygen(
    config: &Config,
    file: Option<&Path>,
    (domain, selector): (&str, &str),
    ed25519: bool,
) -> Result<u8> {
    // The key signs everyone's mail from the domain: an admin's to make,
    // as `oauth2 authorize` is (file permissions alone would let a user
    // with a writable config directory of their own through).
    if system::pass_owner(&config.spool_dir, config.admin_group.as_deref()).is_some() {
        return Err(Error::NoPerm(
            "dkim-keygen is for root, the spool's group and admin_group".into(),
        ));
    }
    let config_file = file.unwrap_or(Path::new(config::DEFAULT_FILE));
    let path = key_path(config_file, &domain.to_ascii_lowercase(), selector);
    let spec =
        DkimKey::parse(&format!("{domain} {selector} {}", path.display())).map_err(Error::Usage)?;
    let group = std::fs::metadata(&config.spool_dir)
        .map_err(|e| Error::io(format!("cannot read {}", config.spool_dir.display()), e))?
        .gid();
    let key = dkim::generate(ed25519).map_err(Error::TempFail)?;
    write_key(&spec.file, &key.pem, group)?;
    system::outln(format_args!(
        "wrote {} (mode 0640, group {group}); add this line to {}:",
        spec.file.display(),
        config_file.display()
    ));
    system::outln(format_args!(
        "dkim_key = {} {} {}",
        spec.domain,
        spec.selector,
        spec.file.display()
    ));
    system::outln(format_args!("and publish this record in DNS:"));
    system::outln(format_args!(
        "{}",
        dkim::zone_line(&spec.dns_name(), &key.record)
    ));
    Ok(exit::OK)
}

/// Writes a new key file, never over an existing one (a new key wants a
/// new selector, so that mail signed with the old one still verifies).
/// Its directory is made 0750 when missing; both get the spool's group.
fn write_key(path: &Path, pem: &str, group: u32) -> Result<()> {
    let dir = path.parent().expect("a file in a directory");
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        std::os::unix::fs::chown(dir, None, Some(group)).map_err(|e| {
            Error::io(
                format!("cannot give {} the spool's group", dir.display()),
                e,
            )
        })?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Usage(format!(
                "{} exists already: choose a new selector for a new key",
                path.display()
            )),
            _ => Error::io(format!("cannot create {}", path.display()), e),
        })?;
    let written = std::os::unix::fs::fchown(&file, None, Some(group))
        .and_then(|()| file.write_all(pem.as_bytes()))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(Error::io(format!("cannot write {}", path.display()), e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_beside_the_config_file() {
        assert_eq!(
            key_path(Path::new("/etc/spoolmail.conf"), "example.org", "s1"),
            Path::new("/etc/spoolmail/dkim/example.org.s1.pem")
        );
        assert_eq!(
            key_path(Path::new("/opt/sm/etc/spoolmail.conf"), "a.example", "x"),
            Path::new("/opt/sm/etc/spoolmail/dkim/a.example.x.pem")
        );
    }
}
