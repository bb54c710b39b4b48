//! The values spoolmail works with, as types that say what they are: an
//! envelope address, a queue id, a DKIM key of the config, where a recipient's mail goes, and the DSN
//! and body parameters of a message; an SMTP reply, and what one delivery
//! attempt did for one recipient.
//!
//! This layer does no I/O and uses nothing else in the crate, so that every
//! other module can depend on it and it can be tested on its own. Its errors
//! are its own small types; callers turn them into `crate::error::Error`.

mod address;
mod body_type;
mod destination;
mod dkim_key;
mod login_names;
mod notify;
mod pass_id;
mod queue_id;
mod reply;
mod ret;
mod sender_relay;

pub use address::{Address, AddressError, UnusualLocalPart};
pub use body_type::BodyType;
pub use destination::Destination;
pub use dkim_key::{DkimKey, choose_dkim_keys, refusing_key};
pub use login_names::{LoginNames, users_allow};
pub use notify::Notify;
pub use pass_id::PassId;
pub use queue_id::QueueId;
pub(crate) use reply::is_format_or_separator;
pub use reply::{EnhancedCode, Local, Outcome, Reply, Verdict, excerpt, sanitize, sanitized};
pub use ret::Ret;
pub use sender_relay::{RelayLimits, SenderPattern, SenderRelay, choose_sender_relay};
