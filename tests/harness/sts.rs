//! The MTA-STS policy server (tests/fixtures/sts_server.py): HTTPS on a
//! loopback address of its own, serving a policy file the test may rewrite.

use super::files::scratch_dir;
use super::net::loopback_host;
use super::pki::Cert;
use super::servers::{Proc, StartError};
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
        let host = loopback_host();
        let mut argv: Vec<String> = [
            "--host",
            &host,
            "--port",
            "0",
            "--outdir",
            &outdir.to_string_lossy(),
            "--cert",
            &cert.cert.to_string_lossy(),
            "--key",
            &cert.key.to_string_lossy(),
            "--policy",
            &file.to_string_lossy(),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        argv.extend(extra.iter().map(|a| a.to_string()));
        match Proc::start("sts_server.py", &argv, &outdir, "sts_server") {
            Ok((proc, host, port)) => PolicyServer {
                host,
                port,
                outdir,
                proc,
            },
            Err(StartError::BindFailed(m)) | Err(StartError::Other(m)) => panic!("{m}"),
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
