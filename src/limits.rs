//! Every fixed limit of spoolmail in one place: the time-outs, counts and
//! sizes that are not settings, each with its unit and why it is what it is.
//! The defaults of the settings a user can change are here too (the
//! settings themselves are in [`crate::config`]). Protocol constants that no
//! one chooses (reply codes, RFC 5322's 998-octet line in [`crate::mime`])
//! stay where they are used. Exit codes are in [`crate::error::exit`]. The
//! longest address (512 bytes) is the model's, which depends on nothing.

use std::time::Duration;

// ---- The SMTP client ----

/// How long a write of commands or message data may block: RFC 5321
/// section 4.5.3.2.5 gives the server 5 minutes to take a block of data,
/// and the client waits as long for the socket to take it.
pub const SMTP_WRITE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long to wait for the reply to QUIT: the mail has been handed over,
/// so a server slow to say goodbye only keeps the connection.
pub const SMTP_QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// AUTH replies read before giving up: the SASL mechanisms spoolmail uses
/// (PLAIN, LOGIN, XOAUTH2) need at most 3 (LOGIN's two challenges and the
/// outcome), so a server that keeps asking is broken or hostile and is cut short.
pub const AUTH_MAX_ROUNDS: usize = 8;

/// Commands and message data are written in chunks of this size at most
/// (bytes): big enough for few system calls, small enough not to matter
/// in memory.
pub const SMTP_WRITE_CHUNK: usize = 64 * 1024;

/// The buffer replies are read through (bytes).
pub const SMTP_READ_BUFFER: usize = 16 * 1024;

/// A reply line longer than this (bytes, CRLF included), or a reply of more
/// lines than the next, is a protocol error: a hostile server cannot make
/// the client buffer without bound. RFC 5321's reply line is 512 octets; the
/// extra room is for servers that send long EHLO keywords or texts.
pub const SMTP_MAX_REPLY_LINE: usize = 4096;
pub const SMTP_MAX_REPLY_LINES: usize = 200;

/// A reply of more bytes than this in all (its lines and their CRLFs) is a
/// protocol error too: a long EHLO answer is a few hundred bytes, and 200
/// full lines (800 KB) would be read for every recipient of a hostile
/// server's PIPELINING answers. The time-out of the command bounds the
/// whole reply, not each read, so a server trickling a byte at a time ends
/// the session when the time-out is up.
pub const SMTP_MAX_REPLY_BYTES: usize = 64 * 1024;

/// What is kept of a reply's text (bytes, after its code and enhanced
/// code), for each recipient, in the state file, mailq, the log and the
/// bounce: enough for any real server's reason (Postfix and Exim say theirs
/// in under 200), cut with a marker past it, so that a server answering
/// with 800 KB per recipient cannot make a state file of hundreds of MB
/// that is rewritten on every attempt.
pub const REPLY_TEXT_KEPT: usize = 300;

/// A malformed reply is quoted in the error up to this many characters, so
/// that the log line stays one readable line.
pub const SMTP_QUOTED_REPLY_CHARS: usize = 80;

// ---- DNS (hickory-resolver, in the delivery children) ----

/// How long one DNS query may take before it is retried, and how many times
/// it is tried in all: a resolver that does not answer in 2 x 5 s is down,
/// and the message is deferred rather than holding its delivery child.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);
pub const DNS_ATTEMPTS: usize = 2;

// ---- DKIM ----

/// The `dkim_key` lines one domain may have: two, so that mail is signed
/// twice, RSA and Ed25519 (RFC 8463 section 5 advises both while
/// receivers learn Ed25519), and no more, as each costs a signature.
pub const DKIM_KEYS_PER_DOMAIN: usize = 2;

// ---- MTA-STS (RFC 8461) ----

/// The largest MTA-STS policy taken (bytes): RFC 8461 section 3.3 lets
/// senders refuse larger ones, and real policies are a few hundred bytes.
pub const STS_MAX_POLICY: u64 = 64 * 1024;

/// How long one policy fetch (connecting, TLS, request and body) may take:
/// RFC 8461 section 3.3 suggests a minute at most; a policy host that has
/// not answered in 20 s is down, and the cached policy (or none) serves.
pub const STS_FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest `max_age` kept (seconds, about a year): RFC 8461 section 3.2.
pub const STS_MAX_AGE: u64 = 31_557_600;

/// After a fetch that failed while a cached policy still served (a new
/// `id`, or the refresh of a policy past half its `max_age`), how long
/// deliveries use that policy without trying again (seconds): a policy host
/// that is down costs one fetch timeout an hour, not one a delivery.
pub const STS_RETRY_FETCH: u64 = 3600;

/// The files of `sts/` a queue pass reads to remove expired policies: a
/// bound on the pass's start-up, whatever the number of domains mailed.
/// Each pass starts at a random file, so later passes look at the rest.
pub const STS_PRUNE_MAX: usize = 10_000;

// ---- OAuth 2.0 (smarthosts) ----

/// How long one request to a token or device authorization endpoint may
/// take, connecting included.
pub const OAUTH2_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest token endpoint response read (bytes); real ones are a few KB.
pub const OAUTH2_MAX_RESPONSE: u64 = 64 * 1024;

/// A queue run of root or the spool's group (the only ones that refresh:
/// see `oauth2::access_token`) refreshes a cached access token when it has
/// less than this left (seconds): more than the 5-minute queue timer plus
/// [`OAUTH2_USE_MARGIN`], so that users' own runs find a token they may use.
pub const OAUTH2_REFRESH_MARGIN: u64 = 900;

/// Any delivery uses a cached access token while it has more than this
/// left (seconds): enough for a connection and a large message's
/// transaction.
pub const OAUTH2_USE_MARGIN: u64 = 60;

/// How long a delivery child waits for another's refresh (holding the
/// lock for at most one request) before it gives up and defers.
pub const OAUTH2_LOCK_WAIT: Duration = Duration::from_secs(75);

/// The lifetime assumed when a token response has no `expires_in`
/// (RFC 6749 section 5.1 makes it optional); a rejection refreshes earlier.
pub const OAUTH2_DEFAULT_LIFETIME: u64 = 3600;

/// The longest an access token is kept, whatever lifetime its server
/// claims (seconds): a hostile or broken `expires_in` can neither overflow
/// the expiry nor keep a token for years.
pub const OAUTH2_MAX_LIFETIME: u64 = 86_400;

/// The longest `spoolctl oauth2 authorize` waits for the user when the
/// server names no `expires_in` for its device code.
pub const OAUTH2_DEVICE_WAIT: u64 = 900;

// ---- The queue pass ----

/// How often the pass parent wakes when no child speaks, to enforce the
/// transaction deadline and start children for what is queued: short enough
/// that a deadline is met within a fraction of a second, long enough to cost
/// nothing.
pub const PASS_TICK: Duration = Duration::from_millis(200);

/// A child whose message has taken this long is stalled: it no longer counts
/// against its destination's limit (another child starts on the messages
/// behind it), up to `max_children` stalled ones come on top of
/// `max_children`, and messages to the same recipient domain wait while
/// others can go (a relay that holds one domain's RCPT holds them all).
/// A healthy transaction to a nearby server takes well under this.
pub const STALLED_AFTER: Duration = Duration::from_secs(5);

/// How long a background runner's delivery child keeps its connection
/// open after the last message for its destination, in case more come (a
/// burst of submissions goes over a few connections instead of one each);
/// then it says QUIT. Each submission's own runner ends at most this long
/// after its last delivery.
pub const LINGER: Duration = Duration::from_secs(2);

/// A delivery child's claim of a message finds it locked: it tries this
/// many times in all, this far apart, before it leaves the message to
/// whoever holds it. A listing or a look at the queue holds a message's
/// lock for microseconds; a runner delivering it, for its transaction.
pub const CLAIM_TRIES: usize = 5;
pub const CLAIM_PAUSE: Duration = Duration::from_millis(10);

/// How long a background runner waits for a delivery slot while it has
/// no child of its own (every slot it may take held by other passes):
/// then it leaves its messages to the next queue run and says so in the
/// log, instead of polling until the holders' transactions end (up to
/// `transaction_deadline`).
pub const RUNNER_SLOT_WAIT: Duration = Duration::from_secs(20);

/// How often a pass waiting for a slot, with no child of its own, looks at
/// the queue for new messages: a look reads every queued message's state,
/// and none it finds could start before a slot frees.
pub const STARVED_RESCAN: Duration = Duration::from_secs(1);
/// A pass's looks at the queue for new messages (each lists the whole
/// directory) come at most once per this many times what the last look
/// took, so that on a queue of 100,000 messages the parent spends a tenth
/// of its time looking, not all of it.
pub const RESCAN_COST_FACTOR: u32 = 10;

/// Passes in a row that a background runner lets fail (a fork refused
/// under the user's process limit, a queue that cannot be read) before it
/// stops and leaves its messages to the next queue run: one failure does
/// not strand the messages submitted meanwhile, one that repeats does not
/// loop.
pub const RUNNER_FAILED_PASSES: u32 = 3;

/// How long a background runner pauses after a failed pass before it
/// looks at the queue again: long enough for the user's processes that
/// made a fork fail (EAGAIN under RLIMIT_NPROC) to end, short against the
/// wait for the next queue run.
pub const RUNNER_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The hash buckets of destinations for the per-destination slots
/// (`slots/dest.HHH.N`): a fixed number of lock files, with few enough
/// collisions (two destinations in one bucket share one bound, which is
/// only ever tighter).
pub const DESTINATION_BUCKETS: u16 = 1024;

/// The window `max_messages_per_minute` counts in: messages to a relay
/// start at least this divided by the limit apart.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// A relay's rest after a throttling reply (421, 4.7.x) doubles with each
/// repeat in a pass, from `throttle_backoff`, up to this: a relay that
/// keeps refusing is asked again at least this often while the pass has
/// mail for it.
pub const THROTTLE_BACKOFF_MAX: Duration = Duration::from_secs(10 * 60);

/// Rests a relay gets in one pass: the throttling reply after the last
/// one defers the rest of the relay's queue to the next queue run, so that
/// a pass ends (at the default `throttle_backoff`, after at most 60 + 120
/// + 240 + 480 s of rests) instead of waiting on a relay without end.
pub const THROTTLE_RESTS_PER_PASS: u32 = 4;

/// A delivery child whose relay's next message may start within this
/// (`max_messages_per_minute`) waits for it with its connection open; a
/// longer wait (a slower pace, a rest) ends the child, which frees its
/// slots for other destinations, and a new one starts when the time comes.
pub const PACE_HOLD: Duration = Duration::from_secs(10);

/// How long a pass waits for the lock of a relay's pace file
/// (`slots/pace.HASH`), polling; then it goes on with its own pace only.
pub const PACE_LOCK_WAIT: Duration = Duration::from_millis(100);
pub const PACE_LOCK_POLL: Duration = Duration::from_millis(2);

/// The largest `sender_relay_map` read (bytes): a map of thousands of
/// lines is well under it, and a file named by mistake is refused rather
/// than held in memory.
pub const MAX_RELAY_MAP: u64 = 1024 * 1024;

/// Leftovers in tmp/ younger than this may belong to a live writer that has
/// created its file but not yet locked it.
pub const LEFTOVER_MIN_AGE: Duration = Duration::from_secs(60);

/// The piece the parent reads of a child's messages at a time (bytes): the
/// messages are short lines.
pub const PASS_READ_PIECE: usize = 1024;

/// A delivery child kills itself (a kernel timer, SIGKILL) this long after
/// `transaction_deadline` when its job is still running, and after as long
/// idle waiting for its parent: the parent's own kill at the deadline comes
/// first, with its clearer reason, and this one is for when the parent
/// cannot (it is stopped, as its caller may do), so that no claim is held
/// past the deadline by much.
pub const CHILD_KILL_MARGIN: Duration = Duration::from_secs(5);

/// A delivery child's kill timer (see [`CHILD_KILL_MARGIN`]) is armed
/// again before a wait or a job only when it was last armed longer ago
/// than this: so each wait and each job has at most the whole bound and at
/// least the bound less this, and a child sending hundreds of messages a
/// second sets its timer a few times a second, not twice a message.
pub const KILL_TIMER_SLACK: Duration = Duration::from_millis(100);

/// A pass sends the failure notices another pass left owed (`owed` lines)
/// only when that pass last wrote the message's state longer ago than
/// `transaction_deadline` and this: a pass still running (the owner's
/// background runner, a cron pass on another host sharing the spool) sends
/// them itself once it has no job left for the message, and a pass that
/// died leaves them to whichever pass comes after this long. A live pass
/// writes the state at every job it runs for the message; the margin covers
/// its jobs for other destinations that wait for a slot in between.
pub const PASS_GONE_MARGIN: Duration = Duration::from_secs(30 * 60);

/// A queue run refuses to start (exit 75) when the hard file-size limit
/// (`ulimit -f`, bytes) is below this: an outcome is recorded in a state
/// file (a line of up to `REPLY_TEXT_KEPT` per recipient) and a bounce
/// returns up to `MAX_RETURNED` of the message or its header of up to
/// `MAX_HEADER_BLOCK`; a run that could send but not record would send
/// again on every run.
pub const MIN_FILE_SIZE_LIMIT: u64 = 16 * 1024 * 1024;

/// A queue run refuses to start (exit 75) when the hard limit of open
/// files is below this: stdio, the log, a message and its state, a
/// temporary file, the connection and its socket to the parent, with room.
pub const MIN_OPEN_FILES: u64 = 64;

// ---- Submission and the spool ----

/// The header block is held in memory to find recipients; a message whose
/// header fields exceed this size (bytes) is refused (exit 65, "header too
/// large"), since moving the rest of the header into the body would show
/// a Bcc to every recipient. Postfix's header_size_limit is 100 KiB; 1 MiB
/// leaves room.
pub const MAX_HEADER_BLOCK: u64 = 1024 * 1024;

/// The longest ENVID (octets), RFC 3461 section 4.4.
pub const MAX_ENVID_LEN: usize = 100;

/// The longest syslog tag `-L` accepts (characters): syslog implementations
/// cut the tag at 32.
pub const MAX_LOG_TAG_LEN: usize = 32;

/// Queue ids drawn before giving up on finding a free one: each is new to
/// the microsecond with 12 random bits, so a collision is rare and 100 in a
/// row means something else is wrong.
pub const QUEUE_ID_TRIES: usize = 100;

/// Alias expansion stops this deep, as a backstop to loop detection.
pub const ALIAS_MAX_DEPTH: usize = 20;

/// An `:include:` file longer than this (bytes) is refused: a list of
/// addresses is a few KiB, and the file is held in memory.
pub const MAX_INCLUDE_FILE: u64 = 1024 * 1024;

/// The buffer that message content is copied through: on intake from
/// stdin, into the spool, and out of it to SMTP (bytes).
pub const IO_BUFFER: usize = 64 * 1024;

/// The intake's first buffer (bytes): a submission reads stdin into this
/// much, and into [`IO_BUFFER`] only once a read has filled it. The buffer
/// is zeroed when made, and zeroing 64 KiB for a 2 KB message was 15 page
/// faults of every submission.
pub const INTAKE_FIRST_BUFFER: usize = 8 * 1024;

/// The shortest input the intake searches with memchr's run-time choice of
/// code (AVX2 where the CPU has it), bytes; shorter input is searched with
/// the SSE2 code every x86_64 CPU has. The choice probes the CPU once, at
/// the first call (`cpuid`, which traps to the hypervisor in a virtual
/// machine: about 25 us), which a small message does not win back.
pub const CPU_PROBE_MIN_INPUT: usize = 16 * 1024;

/// The buffer an envelope (the spool file's head) is read through (bytes):
/// most envelopes fit in one read.
pub const ENVELOPE_READ_BUFFER: usize = 4096;

/// The first read of an envelope (bytes, on the stack): one recipient's
/// envelope is about 200 bytes, so this holds nearly every one whole, and
/// copies little of the content that follows (a listing reads every
/// message of the queue).
pub const ENVELOPE_FIRST_READ: usize = 1024;

/// A listing's first read of a message or state file (bytes, on the
/// stack): a file shorter than this is read whole, and its length is the
/// read's count, with no fstat (a state file is a few hundred bytes, a
/// short notice a couple of KiB); a longer message takes an fstat.
pub const LISTING_FIRST_READ: usize = 4096;

/// The longest envelope (bytes, the message file's lines up to its empty
/// line) a state file copies for listings (spool format 1.8): a message
/// with more recipients than fit is listed from its own file, as before.
/// Half of [`LISTING_FIRST_READ`], so that a deferred message's state,
/// its replies included, is still read in one pread.
pub const STATE_ENVELOPE_COPY: usize = 2048;

/// The room a listing makes for one message's lines at first (bytes): a
/// message with a recipient or two and a reason fits.
pub const LISTED_MESSAGE_TEXT: usize = 512;

/// The buffer a scan of `queue/` reads the directory into (bytes, one
/// getdents64 call a buffer): about 8,000 of its names a call.
pub const DIR_READ_BUFFER: usize = 256 * 1024;

/// The threads that read the queue's messages for a listing (`mailq`,
/// `spoolctl list`), at most: its time is system calls, one open, fstat,
/// read and close per file, which run in parallel; more than 4 gain little
/// before the directory's own locks do.
pub const LISTING_THREADS: usize = 4;

/// The threads that act on the queue's messages for `spoolctl delete`,
/// `hold`, `release` and `retry`, whatever the number of cores: their time
/// is waiting on the file system's journal (unlinks, fsyncs), not the
/// processor, and waiting together shares the journal's commits. A delete
/// of 20,000 messages on 2 cores: 2.7 s wall on 2 threads, 1.3 to 2.3 s on
/// 8; a delete --all of 100,000 was 17 times faster on 4 threads than on 1.
pub const ACTION_THREADS: usize = 8;

/// How many messages a listing reads before it prints them: what it holds
/// in memory is one round's text (about 300 bytes a message), whatever the
/// length of the queue.
pub const LISTING_ROUND: usize = 4096;

// ---- Metrics ----

/// How long recording an attempt waits for the counters' lock
/// (`SPOOL_DIR/counters`), and how often it tries: a holder keeps it for
/// one read and write of under 200 bytes (microseconds), so even the
/// attempts of every child of a spool at once wait far less; a longer wait
/// means a stuck holder, and the increment is given up (logged) rather
/// than holding up delivery. The pause between tries starts at
/// `COUNTERS_LOCK_FIRST_POLL` and doubles up to `COUNTERS_LOCK_POLL`: a
/// fixed 2 ms pause cost a queue run's children about one pause per
/// message, for a lock held some microseconds.
pub const COUNTERS_LOCK_WAIT: Duration = Duration::from_millis(100);

/// How often a delivery child adds its outcomes to the counters file, at
/// most (and once more when it ends): see `metrics::Batch`. What a killed
/// child loses is the statistics of this long at most, never mail.
pub const COUNTERS_FLUSH_EVERY: Duration = Duration::from_secs(1);
pub const COUNTERS_LOCK_POLL: Duration = Duration::from_millis(2);
pub const COUNTERS_LOCK_FIRST_POLL: Duration = Duration::from_micros(20);

// ---- The SMTP server of -bs ----

/// Longest command line accepted, CRLF included: RFC 5321's 512 plus room
/// for the ESMTP parameters of MAIL and RCPT.
pub const SMTPD_MAX_COMMAND_LINE: usize = 2048;

/// DATA is read in lines of at most this many bytes at a time, so that a
/// line without an end cannot grow a buffer without bound.
pub const SMTPD_DATA_PIECE: u64 = 64 * 1024;

// ---- Delivery ----

/// Messages up to this size (bytes) are re-encoded in memory when a text
/// part has lines too long for SMTP; larger ones go as they are.
pub const MAX_REENCODE: u64 = 32 * 1024 * 1024;

/// The original is returned whole in a bounce (RET=FULL) only up to this
/// size (bytes); past it, its header only.
pub const MAX_RETURNED: u64 = 1024 * 1024;

// ---- System lookups (getpwuid_r, getgrnam_r) ----

/// The first size of the buffer the lookups fill, and the most they grow
/// it to on ERANGE, doubling (bytes): a group with thousands of members
/// needs more than the first, nothing sane needs more than the last.
pub const LOOKUP_BUFFER_START: usize = 4096;
pub const LOOKUP_BUFFER_MAX: usize = 1 << 20;

/// The longest /etc/nsswitch.conf or /etc/passwd (bytes) read directly for
/// a user's passwd entry (`system::passwd_entry`); a longer one is left to
/// getpwuid(3).
pub const PASSWD_FILE_MAX: u64 = 4 << 20;

// ---- Defaults of the settings (config.rs has the settings) ----

/// `retry_schedule`: when the attempts come, each counted from the one
/// before, the last wait repeating (`...`) until the queue lifetime: the
/// next attempt comes quickly after a short outage, and the gap never
/// grows past an hour (Postfix: 300s doubling up to 4000s).
pub const DEFAULT_RETRY_SCHEDULE: &[&str] = &["0", "5m", "10m", "20m", "40m", "1h"];
/// The queue lifetime of a repeating schedule when `max_queue_lifetime` is
/// not set, and of a local configuration problem: Postfix's
/// maximal_queue_lifetime.
pub const DEFAULT_MAX_QUEUE_LIFETIME: Duration = Duration::from_secs(5 * 86400);
/// When a sender whose message asked NOTIFY=DELAY hears that it is
/// delayed, if `delay_warning_time` does not say: Sendmail's
/// Timeout.queuewarn.
pub const DEFAULT_DELAY_NOTICE: Duration = Duration::from_secs(4 * 3600);
/// `connect_timeout`: Postfix's smtp_connect_timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The SMTP command time-outs of RFC 5321 section 4.5.3.2: 5 minutes for
/// the greeting, EHLO, MAIL and RCPT; 2 for the DATA command; 3 for each
/// block of data; 10 for the reply to the final dot.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_DATA_INIT_TIMEOUT: Duration = Duration::from_secs(2 * 60);
pub const DEFAULT_DATA_BLOCK_TIMEOUT: Duration = Duration::from_secs(3 * 60);
pub const DEFAULT_DATA_DONE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// `transaction_deadline`: one message's whole transaction; past it the
/// child is killed and the message deferred.
pub const DEFAULT_TRANSACTION_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// `max_message_size` (bytes): Postfix's message_size_limit is 10 MB; 50 MiB
/// lets through what common providers accept.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 50 * 1024 * 1024;
/// `queue_min_free` when unset: the smaller of this (bytes) and
/// `DEFAULT_QUEUE_MIN_FREE_PERCENT` of the spool's file system. Enough for
/// the state files and bounces of a busy spool's deliveries, which the
/// reserve is kept for; no more than a small share of a small disk.
pub const DEFAULT_QUEUE_MIN_FREE: u64 = 20 * 1024 * 1024;
pub const DEFAULT_QUEUE_MIN_FREE_PERCENT: u64 = 1;
/// `max_children`: delivery children at once in a pass.
pub const DEFAULT_MAX_CHILDREN: u32 = 20;
/// `max_per_destination`: children at once to one destination.
pub const DEFAULT_MAX_PER_DESTINATION: u32 = 10;
/// `throttle_backoff`: a relay's first rest after a throttling reply.
pub const DEFAULT_THROTTLE_BACKOFF: Duration = Duration::from_secs(60);
/// `max_recipients`: recipients of one submission.
pub const DEFAULT_MAX_RECIPIENTS: usize = 1000;
