//! Property checks for spoolmail's parsers of outside input, one module per
//! fuzz target. Each `check` takes the fuzzer's bytes, runs the real code
//! (`spoolmail::...`) and panics when a property does not hold: libFuzzer
//! reports a panic as a finding, and `tests/corpus.rs` replays the committed
//! corpus through the same checks under `cargo test`.
//!
//! A check that needs a spool makes one under [`common::scratch`].

pub mod common;

pub mod address;
pub mod aliases;
pub mod cli;
pub mod config;
pub mod dsn;
pub mod intake;
pub mod normalizer;
pub mod pass_protocol;
pub mod reply;
pub mod smtpd;
pub mod spool_records;
pub mod sts;

/// A target's checks: panics when a property fails for the input.
pub type Check = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: &[(&str, Check)] = &[
    ("address", address::check),
    ("aliases", aliases::check),
    ("cli", cli::check),
    ("config", config::check),
    ("dsn", dsn::check),
    ("intake", intake::check),
    ("normalizer", normalizer::check),
    ("pass_protocol", pass_protocol::check),
    ("reply", reply::check),
    ("smtpd", smtpd::check),
    ("spool_records", spool_records::check),
    ("sts", sts::check),
];
