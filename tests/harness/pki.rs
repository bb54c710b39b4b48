//! Certificates for the TLS fixtures.

use super::files::scratch_dir;
use super::tools::{INSTALL_HINT, require_program};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

/// A test CA and the certificates it (or nobody) signs, made with the
/// `openssl` command (scripts/test-deps installs it) in a scratch dir
/// removed on drop. EC P-256 keys: fast to make, and what rustls and
/// Python's ssl both speak.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA certificate (PEM): what `tls_ca_file` points at.
    pub ca: PathBuf,
    next: AtomicU32,
}

/// A certificate and its key (PEM files).
#[derive(Clone, Debug)]
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Cert {
    /// sink.py's arguments to offer STARTTLS with it.
    pub fn sink_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

impl Pki {
    /// A new CA (`CN=spoolmail test CA`), valid for two days.
    pub fn new() -> Pki {
        require_program("openssl");
        let dir = scratch_dir("pki");
        let ca = dir.join("ca.pem");
        new_key(
            &dir,
            "-x509",
            ("ca.key", "ca.pem"),
            "spoolmail test CA",
            &[
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Pki {
            dir,
            ca,
            next: AtomicU32::new(0),
        }
    }

    /// A server certificate signed by the CA for these names: host names
    /// (`mx1.mx.test`) and IP addresses (`127.10.0.1`) alike.
    pub fn server(&self, names: &[&str]) -> Cert {
        let (cert, key, csr, ext) = self.paths();
        new_key(&self.dir, "-new", (&key, &csr), names[0], &[]);
        fs::write(self.dir.join(&ext), server_extensions(names)).unwrap();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &cert,
                "-extfile",
                &ext,
                "-extensions",
                "server",
            ],
        );
        Cert {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }

    /// A self-signed server certificate for these names: no CA vouches for it.
    pub fn self_signed(&self, names: &[&str]) -> Cert {
        let (cert, key, _, ext) = self.paths();
        fs::write(self.dir.join(&ext), server_extensions(names)).unwrap();
        new_key(
            &self.dir,
            "-x509",
            (&key, &cert),
            names[0],
            &["-days", "2", "-extensions", "server", "-config", &ext],
        );
        Cert {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }

    fn paths(&self) -> (String, String, String, String) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (
            format!("server{n}.pem"),
            format!("server{n}.key"),
            format!("server{n}.csr"),
            format!("server{n}.cnf"),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// An openssl config whose `[server]` section holds a server certificate's
/// extensions (for `x509 -req -extfile F -extensions server` and
/// `req -x509 -config F -extensions server`).
fn server_extensions(names: &[&str]) -> String {
    let san: Vec<String> = names
        .iter()
        .map(|n| {
            if n.parse::<std::net::IpAddr>().is_ok() {
                format!("IP:{n}")
            } else {
                format!("DNS:{n}")
            }
        })
        .collect();
    format!(
        "[req]\ndistinguished_name = dn\n[dn]\n[server]\nsubjectAltName = {}\n\
         basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = serverAuth,clientAuth\n",
        san.join(",")
    )
}

/// `openssl req MODE` with a new P-256 key written to `key` and `CN=cn`:
/// MODE `-x509` makes a self-signed certificate, `-new` a signing request,
/// written to `out`; `extra` arguments follow.
fn new_key(dir: &Path, mode: &str, (key, out): (&str, &str), cn: &str, extra: &[&str]) {
    let subj = format!("/CN={cn}");
    let mut args = vec![
        "req",
        mode,
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        out,
        "-subj",
        &subj,
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running openssl: {e}; {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
