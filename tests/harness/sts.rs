//! The MTA-STS policy server (tests/fixtures/sts_server.py): HTTPS on a
//! loopback address of its own, serving a policy file the test may rewrite.

use super::files::scratch_dir;
use super::net::loopback_host;
use super::pki::Cert;
use super::servers::Proc;
use std::fs;
use std::path::PathBuf;

/// A running policy server.
pub struct PolicyServer {
    pub host: String,
    pub port: u16,
    /// `requests` (one line per request) and `policy` (what is served).
    pub outdir: PathBuf,
    proc: Proc,
}

impl PolicyServer {
    /// Serves `policy` at /.well-known/mta-sts.txt with `cert`; `extra`
    /// are more sts_server.py arguments (`--content-type`, `--status`...).
    pub fn start(cert: &Cert, policy: &str, extra: &[&str]) -> PolicyServer {
        let outdir = scratch_dir("sts");
        let file = outdir.join("policy");
        fs::write(&file, policy).expect("write the policy");
        let mut own = vec!["--policy".to_string(), file.to_string_lossy().into_owned()];
        own.extend(extra.iter().map(|a| a.to_string()));
        let (proc, host, port) =
            Proc::start_https("sts_server.py", &loopback_host(), cert, &outdir, &own);
        PolicyServer {
            host,
            port,
            outdir,
            proc,
        }
    }

    /// Serves `policy` from now on.
    pub fn set_policy(&self, policy: &str) {
        fs::write(self.outdir.join("policy"), policy).expect("write the policy");
    }

    /// How many requests it has had.
    pub fn requests(&self) -> usize {
        fs::read_to_string(self.outdir.join("requests"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}
