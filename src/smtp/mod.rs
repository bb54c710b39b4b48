//! The SMTP client: one connection to one server, any number of
//! transactions over it. EHLO (HELO fallback), PIPELINING, SIZE, 8BITMIME,
//! SMTPUTF8, DSN parameters, enhanced status codes, and the message streamed
//! from the spool with CRLF and dot-stuffing.
//!
//! [`protocol`] holds every rule as a plain function (reading replies, EHLO,
//! command parameters, dot-stuffing, what a transaction's replies mean for
//! each recipient), tested without a socket; [`client`] only moves bytes
//! and applies those rules, as `smtpd` does on the server side.
//!
//! Every read has a timeout (RFC 5321 section 4.5.3.2's by default); a server
//! that stops talking costs one step's timeout, and the queue runner's
//! deadline per transaction bounds the whole.

pub mod client;
pub mod protocol;

pub use client::{Client, Rcpt, SessionError, Setup, TlsMode, Transaction};
pub use protocol::Capabilities;

// The time-outs are configuration: `crate::config::Timeouts`.
