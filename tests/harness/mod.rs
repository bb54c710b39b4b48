//! The one helper module of the integration tests (`mod harness;` in
//! tests/NAME.rs): a temporary spool and its config, the binary run with a
//! deadline, spool files read back independently of the crate's own reader,
//! and real servers on loopback (the SMTP sink and fault server, dnsmasq, a
//! test PKI, an MTA-STS policy server, an OAuth 2.0 token endpoint) started as child processes and stopped on drop.
//!
//! Everything listens on 127.0.0.0/8 only: each SMTP fixture gets a loopback
//! address of its own (`loopback_host()`), so tests can run in parallel and
//! several fixtures can share one port (what MX tests need, since
//! `smtp_port` is one port for all MX hosts). Every child also exits by
//! itself after its lifetime (300 s by default) and when this test process
//! dies (its stdin reaches EOF). Nothing is installed here: a missing
//! program fails the test, naming it and scripts/test-deps.
//!
//! ```ignore
//! let sink = harness::Smtp::sink(&[]);                  // aiosmtpd, accepts all
//! let s = harness::Spool::new("label", &Config::delivery().set("smarthost", sink.addr()));
//! s.run_ok(&["bob@example.net"], b"Subject: hi\n\nhello\n");
//! s.pass(&[]);
//! let msgs = sink.wait_for_messages(1, Duration::from_secs(10));
//! ```
// Each test binary uses only some of it: what it leaves unused is no warning.
#![allow(dead_code, unused_imports)]

mod dns;
mod files;
mod json;
mod net;
mod oauth2;
mod pki;
mod queued;
mod run;
mod servers;
mod smtp_client;
mod spool;
mod sts;
mod system;
mod tools;

pub use dns::{Dns, DnsAnswer, DnsZone};
pub use files::{
    TempDir, append_file, contains, find, list_dir, read_to_string_lossy, scratch_dir, set_mode,
};
pub use json::{Json, base64_decode};
pub use net::{free_port, host_port, loopback_host};
pub use oauth2::TokenServer;
pub use pki::{Cert, Pki};
pub use queued::{Queued, is_queue_id};
pub use run::{
    Outcome, bin, read_all, run, spawn, wait_output, wait_timeout, wait_until, wait_until_exit,
};
pub use servers::{Fixture, Message, Smtp};
pub use smtp_client::{Reply, SmtpConn, dot_stuff};
pub use spool::{Config, Spool, make_spool_dirs};
pub use sts::PolicyServer;
pub use system::{Rng, as_local_user, group_name, is_root, raise_nofile_limit, user_name};
pub use tools::{fixtures_dir, python, require_program, require_python_module};
