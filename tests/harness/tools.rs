//! The programs the fixtures need, found and never installed: a machine
//! that lacks one fails the test saying what is missing and to run
//! scripts/test-deps.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The directory holding the fixture scripts.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// What to tell a test run that lacks a fixture's program or module.
pub const INSTALL_HINT: &str = "run scripts/test-deps (as root, or with sudo) to install it";

/// The python interpreter the fixtures run with (`$PYTHON`, else `python3`,
/// resolved to its real executable so that no wrapper script is paid for on
/// each start), once it has shown it can import aiosmtpd and dnspython.
/// Nothing is installed here: a machine without them fails the test with
/// what is missing and how to get it.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let py = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        let out = Command::new(&py)
            .args([
                "-c",
                "import sys, aiosmtpd.smtp, dns.resolver; print(sys.executable)",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("missing {}: {e}; {INSTALL_HINT}", py.to_string_lossy()));
        assert!(
            out.status.success(),
            "missing: the python modules aiosmtpd and dnspython for {} ({}); {INSTALL_HINT}",
            py.to_string_lossy(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if exe.is_empty() {
            PathBuf::from(py)
        } else {
            PathBuf::from(exe)
        }
    })
}

/// Fails the test, saying what is missing and how to install it, unless
/// `program` is on PATH (or in /usr/sbin, where Debian puts dnsmasq).
pub fn require_program(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .any(|dir| dir.join(program).is_file());
    assert!(found, "missing program: {program}; {INSTALL_HINT}");
}

/// Fails the test, saying what is missing and how to install it, unless
/// the fixtures' python ([`python`]) can import `module`.
pub fn require_python_module(module: &str) {
    let out = Command::new(python())
        .args(["-c", &format!("import {module}")])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    assert!(
        out.status.success(),
        "missing: the python module {module} for {} ({}); {INSTALL_HINT}",
        python().display(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
}
