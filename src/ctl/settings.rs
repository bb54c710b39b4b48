//! `spoolctl config [--all]`: the configuration in effect, as Postfix's
//! `postconf -n` shows it: the values the file sets, `key = value`; with
//! `--all`, every key, the ones not set with their defaults.

use crate::config::{self, Config, KEYS, KeyDefault};
use crate::error::{Error, Result, exit};
use crate::system;
use std::path::Path;

pub fn show(config: &Config, file: Option<&Path>, all: bool) -> Result<u8> {
    let path = file.unwrap_or(Path::new(config::DEFAULT_FILE));
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // No default file: the built-in defaults (Config::load said so).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.is_none() => String::new(),
        Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
    };
    let set = config::set_values(&text);
    for key in KEYS {
        // A key given several times (`dkim_key`) has a line for each value.
        let mut values = set.iter().filter(|(name, _)| *name == key.name).peekable();
        match (values.peek(), key.default) {
            (Some(_), _) => {
                values.for_each(|(name, v)| system::outln(format_args!("{name} = {v}")))
            }
            (None, _) if !all => {}
            (None, KeyDefault::Value(v)) => system::outln(format_args!("{} = {v}", key.name)),
            (None, KeyDefault::Unset { means, .. }) => {
                let means = means.replace('`', "");
                system::outln(format_args!("# {} is not set: {means}", key.name))
            }
        }
    }
    // What the file says that is not used, as every command reports it.
    for p in &config.problems {
        system::errln(format_args!("spoolctl: {p}"));
    }
    Ok(if config.problems.is_empty() {
        exit::OK
    } else {
        exit::CONFIG
    })
}
