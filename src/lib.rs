//! spoolmail: a sendmail-compatible mail transfer agent shim.
//!
//! One binary is `sendmail`, `mailq`, `newaliases` and `spoolctl`. A submission writes
//! the message durably into the spool and returns; a queue pass
//! (`sendmail -q`) forks delivery children that send it over SMTP.
//!
//! # How a message travels
//!
//! Read these modules top to bottom to follow a message from stdin to the
//! remote server (doc/ARCHITECTURE.md has the process model and the rules
//! for which module may use which):
//!
//! 1. [`app`]: dispatch by mode (`src/main.rs` only turns its result into an exit code).
//! 2. [`cli`]: sendmail's flags into one `Invocation`.
//! 3. [`config`]: the config file.
//! 4. [`submit`]: intake, streamed from stdin into the spool.
//! 5. [`spool`]: the on-disk format, the commit protocol, claims and state.
//! 6. [`queue`]: one dequeue pass, the parent that hands messages to children,
//!    within the spool-wide bounds of [`slots`]; and `-odb`'s runner per user.
//! 7. [`deliver`]: a delivery child: claim, route, send;
//!    [`pass_protocol`] is what parent and children say to each other.
//! 8. [`record`]: outcomes into the state, expiry and bounces (both processes).
//! 9. [`route`]: smarthosts or MX via hickory-resolver; [`sts`]: the MX
//!    domain's MTA-STS policy (RFC 8461), fetched with [`https`].
//! 10. [`smtp`]: the SMTP client, with [`tls`] (rustls) and [`auth`] (SASL),
//!     whose OAuth2 access tokens [`oauth2`] keeps fresh; [`dkim`] signs what it sends.
//! 11. [`bounce`]: delivery status notifications.
//!
//! At the bottom, [`model`]: the typed values (addresses, queue ids,
//! destinations, DSN parameters) that everything else uses.
//!
//! Also [`address`] (address lists), [`aliases`], [`smtpd`]
//! (`-bs`), [`mailq`], [`ctl`] (`spoolctl`, with [`json`]), [`metrics`] (Prometheus), [`mime`], [`log`], [`system`] (built on [`sys`], the one module with `unsafe`) and [`error`] (every
//! failure and its sysexits.h code), [`limits`] (every fixed time-out,
//! count and size), and [`manual`] (`--help`, the man pages and the README's
//! references, generated from the flags and the config keys).

// print!, println!, eprint! and eprintln! panic when stdout or stderr is a
// closed pipe (`sendmail -bv root | head -1`): spoolmail writes through
// system::outln and system::errln, which lose the text, never the outcome.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod address;
pub mod aliases;
pub mod app;
pub mod auth;
pub mod bounce;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod deliver;
pub mod dkim;
pub mod error;
pub mod https;
pub mod json;
pub mod limits;
pub mod log;
pub mod mailq;
pub mod manual;
pub mod metrics;
pub mod mime;
pub mod model;
pub mod oauth2;
pub mod pass_protocol;
pub mod queue;
pub mod record;
pub mod route;
pub mod slots;
pub mod smtp;
pub mod smtpd;
pub mod spool;
pub mod sts;
pub mod submit;
pub mod sys;
pub mod system;
pub mod tls;

pub use app::run;
