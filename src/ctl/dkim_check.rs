//! `spoolctl dkim-check`: for each `dkim_key`, whether the DNS record at
//! `SELECTOR._domainkey.DOMAIN` holds that key, as a receiver would look
//! it up (through `dns_server` when set), before mail signed with it is
//! judged by it. The check itself is `dkim::record_verdict`.

use crate::config::{self, Config};
use crate::dkim;
use crate::error::{Error, Result, exit};
use crate::route::Router;
use crate::system;

pub fn dkim_check(config: &Config, file: Option<&std::path::Path>) -> Result<u8> {
    // The keys are secrets: an admin's to read, as dkim-keygen's to make.
    if system::pass_owner(&config.spool_dir, config.admin_group.as_deref()).is_some() {
        return Err(Error::NoPerm(
            "dkim-check is for root, the spool's group and admin_group".into(),
        ));
    }
    if config.dkim_keys.is_empty() {
        return Err(Error::Config {
            file: file
                .unwrap_or(std::path::Path::new(config::DEFAULT_FILE))
                .into(),
            line: 0,
            msg: "no dkim_key: nothing to check".into(),
        });
    }
    let mut router = Router::new(config);
    let (mut wrong, mut unknown) = (false, false);
    for key in &config.dkim_keys {
        let name = key.dns_name();
        let line = match dkim::Signer::load(key) {
            Err(e) => {
                wrong = true;
                e
            }
            Ok(signer) => match router.txt(&name) {
                Err(e) => {
                    unknown = true;
                    format!("{name}: cannot be looked up: {e}")
                }
                Ok(records) => {
                    let (k, p) = signer.record_key();
                    match dkim::record_verdict(&records, k, &p) {
                        Ok(note) => {
                            let note = note.map(|n| format!(" ({n})")).unwrap_or_default();
                            format!("{name}: ok, {}{note}", signer.algorithm())
                        }
                        Err(e) => {
                            wrong = true;
                            format!("{name}: {e}")
                        }
                    }
                }
            },
        };
        system::outln(format_args!("{line}"));
    }
    Ok(match (wrong, unknown) {
        (true, _) => exit::CONFIG,
        (false, true) => exit::TEMPFAIL,
        (false, false) => exit::OK,
    })
}
