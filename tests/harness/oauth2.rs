//! The OAuth 2.0 token endpoint (tests/fixtures/token_server.py): HTTPS
//! on a loopback address of its own, its state in files of its outdir.

use super::files::scratch_dir;
use super::net::loopback_host;
use super::pki::Pki;
use super::servers::Proc;
use std::fs;
use std::path::PathBuf;

/// A running token endpoint.
pub struct TokenServer {
    pub host: String,
    pub port: u16,
    /// `requests`, `access_token` (the one sink.py's `--auth-token-file`
    /// accepts) and `refresh_token` (the one it takes).
    pub outdir: PathBuf,
    proc: Proc,
}

impl TokenServer {
    /// Serves client `client_id` with a certificate of `pki` for its
    /// address; `extra` are more token_server.py arguments
    /// (`--refresh-token`, `--rotate`...).
    pub fn start(pki: &Pki, client_id: &str, extra: &[&str]) -> TokenServer {
        let outdir = scratch_dir("token");
        let host = loopback_host();
        let cert = pki.server(&[&host]);
        let mut own = vec!["--client-id".to_string(), client_id.to_string()];
        own.extend(extra.iter().map(|a| a.to_string()));
        let (proc, host, port) = Proc::start_https("token_server.py", &host, &cert, &outdir, &own);
        TokenServer {
            host,
            port,
            outdir,
            proc,
        }
    }

    /// `https://HOST:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.host, self.port)
    }

    /// The requests it has had, one line each: `POST PATH GRANT SCOPE TIME`.
    pub fn requests(&self) -> Vec<String> {
        fs::read_to_string(self.outdir.join("requests"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// The file holding the access token it issued last.
    pub fn access_token_file(&self) -> PathBuf {
        self.outdir.join("access_token")
    }

    /// What one of its state files holds (`access_token`, `refresh_token`).
    pub fn state(&self, name: &str) -> String {
        fs::read_to_string(self.outdir.join(name))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Writes one of its state files (`refresh_token`, `expires_in`).
    pub fn set_state(&self, name: &str, text: &str) {
        fs::write(self.outdir.join(name), format!("{text}\n")).expect("write token state");
    }
}
