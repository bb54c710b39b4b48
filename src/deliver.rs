//! A delivery child: serves one destination over one connection at a time,
//! taking messages one by one from the queue runner, and records every
//! recipient's outcome durably (with `record`, which the parent uses too)
//! before asking for the next.
//!
//! The conversation with the parent is one line each way over a socketpair
//! (see `pass_protocol`): the child says `next` (or `dead REASON` when the
//! destination cannot be reached at all); the parent answers `job` or `quit`.

use crate::auth::{self, Credentials, Secret};
use crate::config::{Config, SmarthostTls, TlsPolicy};
use crate::dkim;
use crate::limits::{CHILD_KILL_MARGIN, KILL_TIMER_SLACK};
use crate::log::Log;
use crate::mime;
use crate::model::{
    Destination, DkimKey, Outcome, PassId, QueueId, Reply, choose_dkim_keys, refusing_key,
};
use crate::oauth2;
use crate::pass_protocol::Message;
use crate::record::{self, RecordContext, read_claimed};
use crate::route::{RouteError, Router, Target};
use crate::smtp::{Client, Rcpt, SessionError, Setup, TlsMode, Transaction};
use crate::spool::{Claim, ClaimSlot, Envelope, Spool, State};
use crate::sts::{self, Applied, Mode};
use crate::sys;
use crate::system;
use crate::tls::{self, Tls};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;

/// What a job ended with, as far as the parent needs to know.
enum JobEnd {
    Done,
    /// No host of the destination could be reached, for this reason: skip
    /// it for this pass.
    DestinationDead(Outcome),
    /// The relay answered with a throttling reply (what it said): the
    /// connection is closed, and the parent rests the relay.
    Throttled(String),
}

pub struct Worker<'c> {
    config: &'c Config,
    spool: Spool,
    destination: Destination,
    router: Router<'c>,
    targets: Option<Result<Vec<Target>, RouteError>>,
    /// The destination's MTA-STS policy, looked up once per child (None
    /// inside: it has none, or none applies).
    sts: Option<Option<Applied>>,
    client: Option<Client>,
    /// Trust anchors and client certificate, loaded on the first TLS connection.
    tls: Option<Result<Tls, String>>,
    /// AUTH credentials (smarthosts only), read on the first connection.
    credentials: Option<Result<Option<Credentials>, String>>,
    /// The DKIM keys read so far, by their index in `dkim_keys` (each is
    /// read once per child), or why one cannot sign.
    signers: HashMap<usize, Result<dkim::Signer, String>>,
    /// Hosts whose TLS handshake failed in this pass: plain text from now on
    /// (opportunistic TLS only).
    plaintext_only: Vec<SocketAddr>,
    /// Messages sent over the open connection (for
    /// `max_messages_per_connection`).
    sent_here: u32,
    /// The throttling reply a relay gave in the job running, if any.
    throttled: Option<String>,
    host: String,
    log: Log,
    verbose: bool,
    /// The outcomes recorded, added to the spool's counters about once a
    /// second and when the child ends.
    counts: record::Counts,
}

/// The kill timer a delivery child makes and arms first thing after the
/// fork, before anything that could take time (the caller may stop the
/// child at any point, and its slots must be freed within
/// `transaction_deadline` + [`CHILD_KILL_MARGIN`] whatever happens).
pub fn armed_kill_timer(config: &Config) -> std::io::Result<sys::KillTimer> {
    let timer = sys::KillTimer::new()?;
    timer.arm(config.transaction_deadline + CHILD_KILL_MARGIN)?;
    Ok(timer)
}

/// The child's main loop, with the timer [`armed_kill_timer`] made for it;
/// returns its exit code.
pub fn worker_main(
    sock: UnixStream,
    destination: Destination,
    config: &Config,
    verbose: bool,
    timer: std::io::Result<sys::KillTimer>,
) -> i32 {
    let mut worker = Worker::new(config, destination, verbose);
    let mut reader = BufReader::new(match sock.try_clone() {
        Ok(s) => s,
        Err(_) => return i32::from(crate::error::exit::TEMPFAIL),
    });
    let mut writer = sock;
    let (timer, first) = kill_timer(timer, &mut worker.log);
    let mut report = first.encode();
    // The timer bounds every wait and every job, whatever happens to the
    // parent, which its caller may stop: see CHILD_KILL_MARGIN.
    let mut bound = Bound {
        timer: timer.as_ref(),
        limit: config.transaction_deadline + CHILD_KILL_MARGIN,
        armed: None,
    };
    loop {
        let _ = bound.renew();
        if writer.write_all(report.as_bytes()).is_err() {
            break;
        }
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let Some(Message::Job { id, rcpts, pass }) = Message::decode(&line) else {
            break; // quit
        };
        if !bound.renew() {
            break; // never a transaction that nothing bounds
        }
        let (end, failed) = worker.run_job(&id, &rcpts, &pass);
        report = job_report(&id, end, failed);
    }
    if let Some(client) = worker.client.take() {
        client.quit();
    }
    worker.spool.drop_spare();
    worker.counts.flush(&mut worker.log);
    0
}

/// What the child tells the parent of a job: the recipients that failed
/// for good first (for `-odi -oep`, which reports them), then how it ended.
fn job_report(id: &QueueId, end: JobEnd, failed: Vec<(usize, String)>) -> String {
    let mut lines: Vec<Message> = failed
        .into_iter()
        .map(|(index, reason)| Message::Failed {
            id: id.clone(),
            index,
            reason,
        })
        .collect();
    lines.push(match end {
        JobEnd::Done => Message::Next,
        JobEnd::DestinationDead(why) => dead(why),
        JobEnd::Throttled(reason) => Message::Throttled { reason },
    });
    lines.iter().map(Message::encode).collect()
}

/// The bound the kill timer puts on each wait for the parent and each job.
struct Bound<'t> {
    timer: Option<&'t sys::KillTimer>,
    limit: std::time::Duration,
    /// When the timer was last armed with `limit`.
    armed: Option<std::time::Instant>,
}

impl Bound<'_> {
    /// Makes sure the timer fires no sooner than `limit` less
    /// [`KILL_TIMER_SLACK`] from now, and never later than `limit`: armed
    /// again only when it was last armed longer ago than the slack. False
    /// when there is no timer, or the kernel refused to arm it.
    fn renew(&mut self) -> bool {
        let Some(timer) = self.timer else {
            return false;
        };
        if self.armed.is_some_and(|at| at.elapsed() < KILL_TIMER_SLACK) {
            return true;
        }
        self.armed = None;
        let armed = timer.arm(self.limit).is_ok();
        if armed {
            self.armed = Some(std::time::Instant::now());
        }
        armed
    }
}

/// The child's kill timer (see [`sys::KillTimer`]) and what the child says
/// first: `next`, or when the kernel refuses a timer (RLIMIT_SIGPENDING),
/// `dead` with why, so that the parent defers the destination's messages
/// for this pass instead of handing them to a child nothing could stop.
fn kill_timer(
    timer: std::io::Result<sys::KillTimer>,
    log: &mut Log,
) -> (Option<sys::KillTimer>, Message) {
    match timer {
        Ok(timer) => (Some(timer), Message::Next),
        Err(e) => {
            let reason =
                format!("delivery refused: cannot create the delivery process's kill timer: {e}");
            log.info(&reason);
            (None, Message::Dead { reason })
        }
    }
}

impl<'c> Worker<'c> {
    fn new(config: &'c Config, destination: Destination, verbose: bool) -> Worker<'c> {
        let host = system::identity(
            config.helo_name.as_deref(),
            config.qualify_domain.as_deref(),
            &config.mailname_file,
        )
        .host;
        Worker {
            config,
            spool: Spool::new(&config.spool_dir).recycling_states(),
            router: Router::new(config),
            targets: None,
            sts: None,
            client: None,
            tls: None,
            credentials: None,
            signers: HashMap::new(),
            plaintext_only: Vec::new(),
            sent_here: 0,
            throttled: None,
            host,
            log: Log::open(config, "spoolmail"),
            verbose,
            destination,
            counts: record::Counts::new(&config.spool_dir),
        }
    }

    /// Delivers one message to this destination's recipients for `pass`;
    /// returns how the job ended and the recipients that failed for good.
    fn run_job(
        &mut self,
        id: &QueueId,
        indices: &[usize],
        pass: &PassId,
    ) -> (JobEnd, Vec<(usize, String)>) {
        let mut slot = ClaimSlot::default();
        let Ok(Some(claim)) = self.spool.claim_soon(id, &mut slot) else {
            return (JobEnd::Done, Vec::new()); // another runner has it, or it is gone
        };
        let Some(ReadJob {
            envelope,
            stored,
            state,
            stood,
            rcpts,
        }) = self.read_job(&claim, indices)
        else {
            return (JobEnd::Done, Vec::new());
        };
        let ctx = RecordContext {
            spool: &self.spool,
            config: self.config,
            host: &self.host,
            pass,
            counts: Some(&self.counts),
        };
        if let Err(e) = record::begin(&ctx, &claim, &envelope, &state, !stood) {
            // Sent without a counted attempt, it could be sent again on
            // every run; so not at all while the attempt cannot be recorded.
            self.log.info(&format!(
                "{id}: not sent in this pass: the attempt cannot be recorded first: {e}"
            ));
            return (JobEnd::Done, Vec::new());
        }
        let (outcomes, relay, end) = self.attempt(&claim, &envelope, &rcpts, &stored);
        let ctx = RecordContext {
            spool: &self.spool,
            config: self.config,
            host: &self.host,
            pass,
            counts: Some(&self.counts),
        };
        let recorded = record::record(
            &ctx,
            claim,
            &envelope,
            state,
            &outcomes,
            relay.as_deref(),
            &mut self.log,
        );
        // Recorded first: the message that got the reply waits durably.
        let end = match self.throttled.take() {
            Some(reason) => {
                if let Some(client) = self.client.take() {
                    client.quit();
                }
                JobEnd::Throttled(reason)
            }
            None => end,
        };
        match recorded {
            Ok(failed) => (end, failed),
            Err(e) => {
                self.log
                    .info(&format!("{id}: cannot record delivery state: {e}"));
                (end, Vec::new())
            }
        }
    }

    /// A claimed message's envelope, content and state, and the
    /// recipients of `indices` still to be tried; None when there are none
    /// (held since the pass collected it, done meanwhile, unreadable).
    fn read_job(&mut self, claim: &Claim, indices: &[usize]) -> Option<ReadJob> {
        let id = &claim.id;
        let (envelope, stored) = match read_message(claim) {
            Ok(v) => v,
            Err(e) => {
                self.log
                    .info(&format!("{id}: cannot read queued message: {e}"));
                return None;
            }
        };
        // Read under the claim, without a stat first: a state file that is
        // not there reads as the empty state, in one failed open.
        let (state, stood) = record::read_state_or_hold(&self.spool, id, &mut self.log)?;
        // Held since the pass collected it: it waits for its release.
        if state.held.is_some() {
            return None;
        }
        let rcpts = state.undone(indices, envelope.recipients.len());
        (!rcpts.is_empty()).then_some(ReadJob {
            envelope,
            stored,
            state,
            stood,
            rcpts,
        })
    }

    /// One attempt for `rcpts`: the message made ready for the wire (and
    /// signed), a connection, the transactions; each recipient's outcome,
    /// the relay, and how the job ended.
    fn attempt(
        &mut self,
        claim: &Claim,
        env: &Envelope,
        rcpts: &[usize],
        stored: &Stored,
    ) -> (Vec<(usize, Outcome)>, Option<String>, JobEnd) {
        let all = |o: &Outcome| rcpts.iter().map(|&i| (i, o.clone())).collect();
        let wire = match self.wire(claim, env, stored) {
            Ok(wire) => wire,
            // A DKIM key that cannot sign is the admin's to fix: the
            // message waits for them, and never leaves unsigned.
            Err(reason) => return (all(&Outcome::misconfigured(reason)), None, JobEnd::Done),
        };
        match self.connection() {
            Ok(()) => {
                let (outcomes, relay, throttled) = self.transaction(claim, env, rcpts, &wire);
                self.note_throttling(throttled, relay.as_deref());
                self.count_message();
                (outcomes, relay, JobEnd::Done)
            }
            Err((outcome, dead)) => {
                let end = match dead {
                    Some(_) => JobEnd::DestinationDead(outcome.clone()),
                    None => JobEnd::Done,
                };
                (all(&outcome), None, end)
            }
        }
    }

    /// Notes a relay's throttling reply in a transaction (see
    /// `protocol::throttling`: a 421, or a 4.7.x to MAIL); an MX host's is
    /// an ordinary deferral.
    fn note_throttling(&mut self, reply: Option<Reply>, relay: Option<&str>) {
        if let Some(reply) = reply
            && is_relay(&self.destination)
        {
            let host = relay.unwrap_or("the relay");
            self.throttled = Some(format!("host {host} said {reply}"));
        }
    }

    /// Counts a message sent over the open connection; after
    /// `max_messages_per_connection` of them, says QUIT, so that the next
    /// message goes over a new one.
    fn count_message(&mut self) {
        if self.client.is_none() {
            return;
        }
        self.sent_here += 1;
        let limit = self.config.limits_of(&self.destination).per_connection;
        if limit.is_some_and(|n| self.sent_here >= n)
            && let Some(client) = self.client.take()
        {
            client.quit();
        }
    }

    /// The message as it goes on the wire: re-encoded when it has lines
    /// too long for SMTP, then signed when a `dkim_key` covers its From
    /// domain and signs for its submitter. An Err says why it cannot be
    /// signed.
    fn wire<'m>(
        &mut self,
        claim: &Claim,
        env: &Envelope,
        stored: &'m Stored,
    ) -> Result<Wire<'m>, String> {
        let body = match (reencoded_content(claim, stored), stored) {
            (Some(bytes), _) => Body::Bytes(Cow::Owned(bytes)),
            (None, Stored::Memory { bytes, start }) => Body::Bytes(Cow::Borrowed(&bytes[*start..])),
            (None, &Stored::File { header_len, size }) => Body::File { header_len, size },
        };
        let unreadable = |e: std::io::Error| format!("cannot read the queued message: {e}");
        let signature = match (&body, self.config.dkim_keys.is_empty()) {
            (_, true) => Vec::new(),
            (Body::Bytes(bytes), false) => self.dkim_signature(env, &mut &bytes[..])?,
            (&Body::File { header_len, .. }, false) => {
                let mut file = claim.file();
                file.seek(SeekFrom::Start(header_len)).map_err(unreadable)?;
                let mut reader = BufReader::with_capacity(crate::limits::IO_BUFFER, file);
                self.dkim_signature(env, &mut reader)?
            }
        };
        Ok(Wire { signature, body })
    }

    /// The DKIM-Signature fields for `content` (the message as it will be
    /// sent, in the stored form), one per key of its From domain that
    /// signs for its submitter (`users=`, see `signing_keys`); empty
    /// when there is none. Each key is read once per child.
    fn dkim_signature(
        &mut self,
        env: &Envelope,
        content: &mut impl BufRead,
    ) -> Result<Vec<u8>, String> {
        let header = dkim::read_header(content)
            .map_err(|e| format!("cannot read the queued message: {e}"))?;
        let indices = self.signing_keys(env, &header);
        for &index in &indices {
            let key = &self.config.dkim_keys[index];
            let signer = (self.signers.entry(index)).or_insert_with(|| dkim::Signer::load(key));
            signer.as_ref().map_err(Clone::clone)?;
        }
        let signers: Vec<&dkim::Signer> = (indices.iter())
            .filter_map(|i| self.signers.get(i)?.as_ref().ok())
            .collect();
        dkim::sign_all(&signers, &header, content)
    }

    /// The keys (their indices in `dkim_keys`) that sign a message with
    /// `header`: those of its From domain ([`choose_dkim_keys`]) that sign
    /// for its submitter; none when a domain any From field names has keys
    /// that all leave its submitter out ([`refusing_key`]: not only the
    /// first address's), which the log says.
    fn signing_keys(&mut self, env: &Envelope, header: &[u8]) -> Vec<usize> {
        let keys = &self.config.dkim_keys;
        let covering = (dkim::from_domain(header))
            .map(|d| choose_dkim_keys(keys, &d))
            .unwrap_or_default();
        let login = std::cell::OnceCell::new();
        let login = || login.get_or_init(|| system::login_name(env.uid)).clone();
        let signs = |k: &DkimKey| k.signs_for(env.uid, env.notice, login);
        let signing: Vec<&DkimKey> = covering.into_iter().filter(|k| signs(k)).collect();
        // The first address's keys, and those of every other domain the
        // From fields name.
        let names = dkim::from_names(header, keys);
        if let Some(refusing) = refusing_key(keys, &names, signs) {
            self.log.info(&format!(
                "{}: sent unsigned: the dkim_key of {} signs only the mail of its users=, \
                 and uid {} is not among them",
                env.id, refusing.domain, env.uid
            ));
            return Vec::new();
        }
        let index_of = |key: &DkimKey| keys.iter().position(|k| k == key);
        signing.into_iter().filter_map(index_of).collect()
    }

    /// Makes sure a connection is open; on failure, the outcome for the
    /// job's recipients and, when the whole destination is unreachable, why.
    fn connection(&mut self) -> Result<(), (Outcome, Option<String>)> {
        if self.client.is_some() {
            return Ok(());
        }
        let targets = self.targets()?;
        let implicit: Vec<bool> = targets.iter().map(|t| self.implicit_tls(t)).collect();
        // A broken tls_ca_file or an unreadable password file: the admin
        // can fix it, the mail waits.
        let sts_wanted = self.sts_wanted();
        if let Err(broken) = self.load_tls_and_credentials(implicit.contains(&true) || sts_wanted) {
            let outcome = Outcome::misconfigured(broken);
            return Err((outcome.clone(), Some(outcome.to_string())));
        }
        let sts = self.sts_policy();
        let mode = sts.as_ref().map(|a| a.policy.mode);
        let mut errors = Vec::new();
        for (t, implicit) in targets.iter().zip(implicit) {
            if let Some(a) = &sts
                && let Some(why) = a.refuses_host(&t.host)
            {
                if a.policy.mode == Mode::Enforce {
                    errors.push((why, false));
                    continue;
                }
                self.log.info(&testing_note(&why));
            }
            match self.connect_authenticated(t, implicit, mode) {
                Ok(c) => {
                    if let Some(info) = &c.tls {
                        self.log.info(&info.log_line(&c.peer));
                    }
                    for note in &c.notes {
                        self.log.info(note);
                    }
                    if let Some(a) = sts.as_ref().filter(|a| a.policy.mode == Mode::Testing)
                        && let Some(why) = unverified(&c)
                    {
                        self.log.info(&testing_note(&a.requires_tls(&why)));
                    }
                    self.client = Some(c);
                    self.sent_here = 0;
                    self.throttled = None; // another of its hosts took it
                    return Ok(());
                }
                // Ours to fix (credentials refused, a smarthost's
                // certificate that does not verify under `tls = required`):
                // the next host would be configured the same.
                Err(e) if ours_to_fix(&self.destination, &e) => {
                    let outcome = Outcome::misconfigured(e.text);
                    return Err((outcome.clone(), Some(outcome.to_string())));
                }
                // A relay that throttles is not dead: the next of its
                // hosts is tried, and when none takes the connection it
                // rests (the parent sees to it).
                Err(e) if e.throttled && is_relay(&self.destination) => {
                    self.throttled = Some(e.text.clone());
                    errors.push((e.text, false));
                }
                Err(e) => {
                    let text = match (&sts, &e.no_tls) {
                        (Some(a), Some(why)) if a.policy.mode == Mode::Enforce => {
                            a.requires_tls(why)
                        }
                        _ => e.text,
                    };
                    errors.push((text, e.permanent));
                }
            }
        }
        let (outcome, dead) = unreachable(errors);
        Err((outcome, dead.filter(|_| self.throttled.is_none())))
    }

    /// The destination's hosts, looked up once per child.
    fn targets(&mut self) -> Result<Vec<Target>, (Outcome, Option<String>)> {
        if self.targets.is_none() {
            self.targets = Some(self.router.targets(&self.destination));
        }
        match self.targets.as_ref().expect("just set") {
            Ok(t) => Ok(t.clone()),
            Err(e) => Err(unroutable(e)),
        }
    }

    /// Whether this destination's MTA-STS policy is to be looked up: a
    /// domain's MX delivery with `mta_sts = yes`.
    fn sts_wanted(&self) -> bool {
        self.config.mta_sts && matches!(self.destination, Destination::Domain(_))
    }

    /// The destination's MTA-STS policy, looked up on the first connection
    /// (with the trust anchors already loaded, which the fetch uses).
    fn sts_policy(&mut self) -> Option<Applied> {
        if !self.sts_wanted() {
            return None;
        }
        if self.sts.is_none() {
            let Destination::Domain(domain) = &self.destination else {
                return None;
            };
            let anchors = match &self.tls {
                Some(Ok(tls)) => Ok(&tls.roots),
                Some(Err(broken)) => Err(broken.as_str()),
                None => Err("no trust anchors loaded"),
            };
            let mut lookup = sts::Lookup {
                router: &mut self.router,
                anchors,
                spool_dir: &self.config.spool_dir,
                port: self.config.mta_sts_port,
                log: &mut self.log,
            };
            self.sts = Some(sts::policy_for(domain, &mut lookup));
        }
        self.sts.clone().flatten()
    }

    fn implicit_tls(&self, t: &Target) -> bool {
        let configured = match &self.destination {
            Destination::Relay(p) => (self.config.sender_relay(p)).and_then(|r| {
                r.implicit_tls.map(|implicit| match implicit {
                    true => SmarthostTls::Implicit,
                    false => SmarthostTls::Starttls,
                })
            }),
            _ => self.config.smarthost_tls,
        };
        implicit_tls(&self.destination, configured, t.addr.port())
    }

    /// Where this destination's AUTH credentials come from: the
    /// smarthost's keys, or its own `sender_relay_map` line (a relay
    /// never gets another's, nor does an MX host get any); None: no AUTH.
    fn auth_settings(&self) -> Option<auth::Settings> {
        match &self.destination {
            Destination::Smarthost => Some(auth_settings(self.config)),
            Destination::Relay(p) => self.config.sender_relay(p).map(|r| auth::Settings {
                user: r.user.clone(),
                password_file: r.password_file.clone(),
                xoauth2_token_file: None,
                allow_plaintext: self.config.auth_allow_plaintext,
            }),
            _ => None,
        }
    }

    /// Loads the trust anchors when TLS may be used, and the AUTH
    /// credentials for a smarthost, once per child; Err says what is broken.
    fn load_tls_and_credentials(&mut self, any_implicit: bool) -> Result<(), String> {
        let oauth2 = self.destination == Destination::Smarthost && self.config.oauth2().is_some();
        if (self.config.tls != TlsPolicy::Off || any_implicit || oauth2) && self.tls.is_none() {
            let loaded = Tls::new(&tls_settings(self.config));
            if self.verbose
                && let Ok(t) = &loaded
            {
                crate::system::errln(format_args!(
                    "spoolmail: TLS trust anchors from {}",
                    t.anchors
                ));
            }
            self.tls = Some(loaded);
        }
        if let Some(settings) = self.auth_settings()
            && self.credentials.is_none()
        {
            self.credentials = Some(match oauth2 {
                true => self.oauth2_credentials(None).map(Some),
                false => Credentials::load(&settings),
            });
        }
        let tls = self.tls.as_ref().and_then(|t| t.as_ref().err());
        let credentials = self.credentials.as_ref().and_then(|c| c.as_ref().err());
        match tls.or(credentials) {
            Some(broken) => Err(broken.clone()),
            None => Ok(()),
        }
    }

    /// Credentials with an OAuth2 access token spoolmail keeps fresh
    /// (`auth_oauth2_*`); `rejected`: the server refused this one.
    fn oauth2_credentials(&mut self, rejected: Option<&str>) -> Result<Credentials, String> {
        let settings = self.config.oauth2().ok_or("no auth_oauth2_* settings")?;
        let anchors = match &self.tls {
            Some(Ok(tls)) => &tls.roots,
            Some(Err(broken)) => return Err(broken.clone()),
            None => return Err("no trust anchors loaded".into()),
        };
        let router = &mut self.router;
        let mut resolve = |host: &str| router.addresses(host);
        let mut endpoint = oauth2::Endpoint {
            settings: &settings,
            anchors,
            resolve: &mut resolve,
            spool_dir: &self.config.spool_dir,
            may_refresh: crate::system::pass_owner(
                &self.config.spool_dir,
                self.config.admin_group.as_deref(),
            )
            .is_none(),
        };
        let token = oauth2::access_token(&mut endpoint, rejected)?;
        Ok(Credentials {
            user: self.config.auth_user.clone().unwrap_or_default(),
            secret: Secret::Bearer(token),
            allow_plaintext: self.config.auth_allow_plaintext,
        })
    }

    /// [`Worker::connect_to`]; when the server refuses an OAuth2 access
    /// token that spoolmail keeps (it may have been revoked before it
    /// expired), once more on a new connection with a new token.
    fn connect_authenticated(
        &mut self,
        t: &Target,
        implicit: bool,
        sts: Option<Mode>,
    ) -> Result<Client, SessionError> {
        let first = self.connect_to(t, implicit, sts);
        let rejected = match (&first, &self.credentials) {
            (Err(e), Some(Ok(Some(c))))
                if e.credentials_refused && self.config.oauth2().is_some() =>
            {
                match &c.secret {
                    Secret::Bearer(token) => token.clone(),
                    Secret::Password(_) => return first,
                }
            }
            _ => return first,
        };
        if let Err(e) = &first {
            self.log
                .info(&format!("{}; getting a new OAuth2 access token", e.text));
        }
        match self.oauth2_credentials(Some(&rejected)) {
            Ok(c) => self.credentials = Some(Ok(Some(c))),
            Err(text) => return Err(SessionError::misconfigured(text)),
        }
        self.connect_to(t, implicit, sts)
    }

    /// One connection to `t`, secured as the TLS policy says, or as the
    /// destination's MTA-STS policy (`sts`) says when it asks for more.
    fn connect_to(
        &mut self,
        t: &Target,
        implicit: bool,
        sts: Option<Mode>,
    ) -> Result<Client, SessionError> {
        let policy = tls_policy(self.config.tls, sts);
        let required = policy == TlsPolicy::Required;
        let helo = (self.config.helo_name.clone()).unwrap_or_else(|| self.host.clone());
        let tls = self.tls.as_ref().and_then(|t| t.as_ref().ok());
        let auth = (self.credentials.as_ref())
            .and_then(|c| c.as_ref().ok())
            .and_then(Option::as_ref);
        let plaintext_only = self.plaintext_only.contains(&t.addr);
        let mode = match (
            tls,
            tls_use(policy, tls.is_some(), implicit, plaintext_only),
        ) {
            (Some(tls), TlsUse::Implicit) => TlsMode::Implicit { tls, required },
            (Some(tls), TlsUse::Starttls) => TlsMode::Starttls { tls, required },
            _ => TlsMode::Off,
        };
        let starttls = matches!(mode, TlsMode::Starttls { .. });
        let mut setup = Setup {
            helo_name: &helo,
            timeouts: &self.config.timeouts,
            verbose: self.verbose,
            tls: mode,
            auth,
        };
        let result = Client::connect(&t.host, t.addr, &setup);
        match result {
            Err(e) if e.tls_failed && starttls && !required => {
                // Opportunistic TLS, as Postfix's `may`: a failed handshake
                // is retried at once without TLS, and never bounces mail.
                self.log
                    .info(&format!("{}; trying again without TLS", e.text));
                self.plaintext_only.push(t.addr);
                setup.tls = TlsMode::Off;
                Client::connect(&t.host, t.addr, &setup)
            }
            other => other,
        }
    }

    /// Sends the message to `rcpts` over the open connection, in as many
    /// transactions as the server's recipient limit needs (RFC 5321
    /// 4.5.3.1.10): every recipient has its try in this attempt, none waits
    /// for the next one only because the server took too many at once.
    fn transaction(
        &mut self,
        claim: &Claim,
        env: &Envelope,
        rcpts: &[usize],
        wire: &Wire,
    ) -> (Vec<(usize, Outcome)>, Option<String>, Option<Reply>) {
        let mut outcomes = Vec::with_capacity(rcpts.len());
        let (mut relay, mut throttled) = (None, None);
        let mut pending = rcpts.to_vec();
        while !pending.is_empty() {
            let (done, r) = self.one_transaction(claim, env, &pending, wire);
            // `again` is never all of `pending` (see `smtp::protocol::finish`):
            // each round ends at least one recipient, so the loop ends.
            debug_assert!(done.again.len() < pending.len());
            relay = relay.or(r);
            throttled = throttled.or(done.throttled);
            outcomes.extend(done.outcomes);
            pending = done.again;
        }
        (outcomes, relay, throttled)
    }

    /// One transaction over the open connection; when that connection
    /// turns out to have gone stale (the server closed it while idle, or
    /// said 421 before taking anything), once more over a fresh one.
    fn one_transaction(
        &mut self,
        claim: &Claim,
        env: &Envelope,
        rcpts: &[usize],
        wire: &Wire,
    ) -> (Transaction, Option<String>) {
        let all = |o: &Outcome| Transaction {
            outcomes: rcpts.iter().map(|&i| (i, o.clone())).collect(),
            ..Transaction::default()
        };
        let mut result = self.try_transaction(claim, env, rcpts, wire);
        if let Err((e, _)) = &result
            && e.stale
        {
            self.client = None;
            if let Err((outcome, _)) = self.connection() {
                return (all(&outcome), None);
            }
            result = self.try_transaction(claim, env, rcpts, wire);
        }
        match result {
            Ok((done, relay)) => (done, Some(relay)),
            Err((e, relay)) => {
                self.client = None; // the connection is unusable; the next job reconnects
                (all(&Outcome::deferred(e.text)), Some(relay))
            }
        }
    }

    /// One attempt over the open connection: the DKIM-Signature field if
    /// any, then the re-encoded content when there is one, else the
    /// message as stored, streamed from the spool.
    fn try_transaction(
        &mut self,
        claim: &Claim,
        env: &Envelope,
        rcpts: &[usize],
        wire: &Wire,
    ) -> Result<Attempt, (SessionError, String)> {
        let client = self.client.as_mut().expect("connected");
        let relay = client.peer.clone();
        let list: Vec<Rcpt> = rcpts
            .iter()
            .map(|&i| Rcpt {
                index: i,
                address: &env.recipients[i].address,
                orcpt: env.recipients[i].orcpt.as_deref(),
            })
            .collect();
        let t = &self.config.timeouts;
        let signature = &wire.signature[..];
        let signed = signature.len() as u64;
        let result = match &wire.body {
            Body::Bytes(bytes) => {
                let size = signed + bytes.len() as u64;
                client.send(env, &list, &mut signature.chain(&bytes[..]), size, t)
            }
            &Body::File { header_len, size } => {
                let mut file = claim.file();
                match file.seek(SeekFrom::Start(header_len)) {
                    Ok(_) => client.send(
                        env,
                        &list,
                        &mut signature
                            .chain(BufReader::with_capacity(crate::limits::IO_BUFFER, file)),
                        signed + size,
                        t,
                    ),
                    Err(e) => Err(SessionError::temporary(format!(
                        "cannot read the queued message: {e}"
                    ))),
                }
            }
        };
        result.map(|o| (o, relay.clone())).map_err(|e| (e, relay))
    }
}

/// What the parent is told of a destination that cannot be used in this
/// pass: a local configuration problem defers the rest of its queue as one
/// too, never to expire before `max_queue_lifetime`.
fn dead(why: Outcome) -> Message {
    match why {
        Outcome::Local(l) if l.misconfigured => Message::Misconfigured { reason: l.text },
        other => Message::Dead {
            reason: other.to_string(),
        },
    }
}

/// Whether a session's error is a local configuration problem, which
/// waits for the admin up to `max_queue_lifetime`: only when the host is
/// the admin's own choice, a smarthost or a sender's relay. An MX host's certificate that does
/// not verify under `tls = required` is the remote side's to fix: an
/// ordinary deferral, bounced when the schedule runs out, as in Postfix.
fn ours_to_fix(destination: &Destination, e: &SessionError) -> bool {
    e.misconfigured && is_relay(destination)
}

/// Whether `destination` is a relay the admin chose (the smarthost, or a
/// `sender_relay_map` line's), not the recipients' own MX hosts.
fn is_relay(destination: &Destination) -> bool {
    matches!(destination, Destination::Smarthost | Destination::Relay(_))
}

/// Whether a host of `destination` on `port` speaks TLS from the first
/// byte: a smarthost or sender's relay configured so (`smarthost_tls`, a
/// map line's `tls=`), or on port 465 when not configured (RFC 8314).
/// Never an MX host.
fn implicit_tls(destination: &Destination, configured: Option<SmarthostTls>, port: u16) -> bool {
    is_relay(destination)
        && match configured {
            Some(SmarthostTls::Implicit) => true,
            Some(SmarthostTls::Starttls) => false,
            None => port == 465,
        }
}

/// The TLS policy of a connection: the config's, unless the destination's
/// MTA-STS policy asks for more (`enforce`: verified TLS or nothing;
/// `testing`: at least an attempt, so that the log can say what enforce
/// would have refused).
fn tls_policy(configured: TlsPolicy, sts: Option<Mode>) -> TlsPolicy {
    match (sts, configured) {
        (Some(Mode::Enforce), _) => TlsPolicy::Required,
        (Some(Mode::Testing), TlsPolicy::Off) => TlsPolicy::Opportunistic,
        _ => configured,
    }
}

/// Why an open connection's TLS would not do for an MTA-STS policy in
/// `enforce` mode, when it would not.
fn unverified(c: &Client) -> Option<String> {
    match &c.tls {
        // The log's line before says why a handshake failed.
        None if c.caps.starttls => Some(format!("the TLS handshake with {} failed", c.peer)),
        None => Some(format!("host {} does not offer STARTTLS", c.peer)),
        Some(info) if info.trust != tls::Trust::Verified => Some(format!(
            "the certificate of {} did not verify: {}",
            c.peer,
            info.problem.as_deref().unwrap_or("not checked")
        )),
        Some(_) => None,
    }
}

/// The log line of what an MTA-STS policy in `testing` mode would have refused.
fn testing_note(why: &str) -> String {
    format!("{why} (policy in testing mode: delivering anyway)")
}

/// How a connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsUse {
    Off,
    Implicit,
    Starttls,
}

/// The TLS rule for one connection: `loaded` says the trust anchors are
/// (TLS is possible at all), `implicit` that the host speaks TLS from the
/// first byte, `plaintext_only` that its handshake already failed in this
/// pass, which under opportunistic TLS means plain text from then on.
fn tls_use(policy: TlsPolicy, loaded: bool, implicit: bool, plaintext_only: bool) -> TlsUse {
    match policy {
        _ if !loaded => TlsUse::Off,
        _ if implicit => TlsUse::Implicit,
        TlsPolicy::Off => TlsUse::Off,
        TlsPolicy::Opportunistic if plaintext_only => TlsUse::Off,
        _ => TlsUse::Starttls,
    }
}

/// A job's outcome when its destination has no route, and whether the
/// destination is dead for this pass (why, when it is): a domain that
/// cannot receive mail fails for good; a temporary failure defers, and
/// would defer every other message to it too.
fn unroutable(e: &RouteError) -> (Outcome, Option<String>) {
    match e {
        RouteError::Permanent(r) => (Outcome::failed(r.clone(), None), None),
        RouteError::Temporary(r) => (Outcome::deferred(r.clone()), Some(r.clone())),
    }
}

/// A job's outcome when no host of its destination took a connection,
/// from each host's error (text, permanent) in the order they were tried:
/// failed for good only when every host refused for good; otherwise
/// deferred with the last error, and the destination is dead for this pass.
fn unreachable(errors: Vec<(String, bool)>) -> (Outcome, Option<String>) {
    let all_permanent = !errors.is_empty() && errors.iter().all(|(_, permanent)| *permanent);
    let reason = (errors.into_iter().last())
        .map(|(text, _)| text)
        .unwrap_or_else(|| "no address to connect to".into());
    if all_permanent {
        (Outcome::failed(reason, None), None)
    } else {
        (Outcome::deferred(reason.clone()), Some(reason))
    }
}

/// The part of the config that TLS is set up from.
fn tls_settings(config: &Config) -> tls::Settings {
    tls::Settings {
        ca_file: config.tls_ca_file.clone(),
        cert_file: config.tls_cert_file.clone(),
        key_file: config.tls_key_file.clone(),
    }
}

/// The part of the config that AUTH credentials come from.
fn auth_settings(config: &Config) -> auth::Settings {
    auth::Settings {
        user: config.auth_user.clone(),
        password_file: config.auth_password_file.clone(),
        xoauth2_token_file: config.auth_xoauth2_token_file.clone(),
        allow_plaintext: config.auth_allow_plaintext,
    }
}

/// A message as it goes on the wire: its DKIM-Signature field (empty when
/// it is not signed), then its content.
struct Wire<'m> {
    signature: Vec<u8>,
    body: Body<'m>,
}

/// The content of a message as it goes on the wire: re-encoded or read
/// already (bytes), or the content as stored, streamed from the file
/// (from `header_len`, `size` octets).
enum Body<'m> {
    Bytes(Cow<'m, [u8]>),
    File { header_len: u64, size: u64 },
}

/// A claimed message as a job reads it ([`Worker::read_job`]).
struct ReadJob {
    envelope: Envelope,
    stored: Stored,
    state: State,
    /// A state stood (false: none, or a torn one, see `record::read_state_or_hold`).
    stood: bool,
    /// The job's recipients still to be tried.
    rcpts: Vec<usize>,
}

/// A claimed message's content as the child holds it: in memory when the
/// whole file is no larger than [`IN_MEMORY`] (read with its envelope in
/// one pread: most messages are a few kilobytes), the content from
/// `start`; otherwise left in the file, from `header_len`, `size` octets.
enum Stored {
    Memory { bytes: Vec<u8>, start: usize },
    File { header_len: u64, size: u64 },
}

/// The largest message file a delivery child reads whole into memory.
const IN_MEMORY: u64 = crate::limits::IO_BUFFER as u64;

/// The envelope of a claimed message and its content ([`Stored`]).
fn read_message(claim: &Claim) -> std::io::Result<(Envelope, Stored)> {
    if let Some(bytes) = claim.read_whole(IN_MEMORY)? {
        let (envelope, header_len) = crate::spool::parse_envelope(&mut &bytes[..])?;
        let start = usize::try_from(header_len).map_err(std::io::Error::other)?;
        return Ok((envelope, Stored::Memory { bytes, start }));
    }
    let (envelope, header_len, size) = read_claimed(claim)?;
    Ok((envelope, Stored::File { header_len, size }))
}

/// What a transaction did, and the relay (`host[ip]:port`).
type Attempt = (Transaction, String);

use crate::limits::MAX_REENCODE;

/// The content re-encoded for SMTP when a text part has lines over 998
/// octets (see `mime::reencode_long_lines`); None to send it as stored. A
/// streaming scan comes first, so that ordinary messages are never held in
/// memory (one held already is scanned where it is).
fn reencoded_content(claim: &Claim, stored: &Stored) -> Option<Vec<u8>> {
    let (header_len, size) = match stored {
        Stored::Memory { bytes, start } => {
            let content = &bytes[*start..];
            return has_long_line(content)
                .then(|| mime::reencode_long_lines(content))
                .flatten();
        }
        &Stored::File { header_len, size } => (header_len, size),
    };
    if size <= mime::MAX_LINE as u64 || size > MAX_REENCODE {
        return None;
    }
    let mut file = claim.file();
    file.seek(SeekFrom::Start(header_len)).ok()?;
    let mut reader = BufReader::with_capacity(crate::limits::IO_BUFFER, file);
    let mut line_len = 0usize;
    let mut long = false;
    while !long {
        let chunk = reader.fill_buf().ok()?;
        if chunk.is_empty() {
            break;
        }
        long = long_line_in(chunk, &mut line_len);
        let n = chunk.len();
        reader.consume(n);
    }
    if !long {
        return None;
    }
    let mut content = Vec::with_capacity(size as usize);
    file.seek(SeekFrom::Start(header_len)).ok()?;
    std::io::Read::read_to_end(&mut file, &mut content).ok()?;
    mime::reencode_long_lines(&content)
}

/// Whether `content` has a line longer than SMTP allows (more than
/// `mime::MAX_LINE` octets before its line feed, a CR counted).
fn has_long_line(content: &[u8]) -> bool {
    long_line_in(content, &mut 0)
}

/// Whether `chunk`, coming after `line_len` octets of a line not ended
/// yet, has a line longer than SMTP allows; `line_len` becomes the length
/// of the line its end leaves open. Line feeds found with memchr, not a
/// byte at a time: the same rule for a message in memory and one streamed.
fn long_line_in(chunk: &[u8], line_len: &mut usize) -> bool {
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', chunk) {
        if *line_len + (end - start) > mime::MAX_LINE {
            return true;
        }
        *line_len = 0;
        start = end + 1;
    }
    *line_len += chunk.len() - start;
    *line_len > mime::MAX_LINE
}

#[cfg(test)]
mod tests {
    // A table's row type is spelled out where the table is.
    #![allow(clippy::type_complexity)]

    use super::*;
    use crate::model::Verdict;

    #[test]
    fn a_long_line_is_found_in_memory_as_the_streaming_scan_finds_it() {
        let max = mime::MAX_LINE;
        let line = |n: usize| vec![b'a'; n];
        let join = |parts: &[&[u8]]| parts.concat();
        for (content, long) in [
            (Vec::new(), false),
            (b"\n\n".to_vec(), false),
            (line(max), false),
            (line(max + 1), true),
            (join(&[&line(max), b"\n", &line(max)]), false),
            (join(&[&line(max), b"\n", &line(max + 1)]), true),
            (join(&[&line(max + 1), b"\n", &line(3)]), true),
            // A CR counts, as in the file's scan.
            (join(&[&line(max), b"\r\n"]), true),
            (join(&[&line(max - 1), b"\r\n"]), false),
        ] {
            assert_eq!(has_long_line(&content), long, "{} octets", content.len());
            // Streamed in two chunks, split anywhere: the same answer.
            for cut in 0..=content.len() {
                let (a, b) = content.split_at(cut);
                let mut line_len = 0;
                let found = long_line_in(a, &mut line_len) || long_line_in(b, &mut line_len);
                assert_eq!(found, long, "{} octets cut at {cut}", content.len());
            }
        }
    }

    #[test]
    fn implicit_tls_only_for_a_smarthost_so_configured_or_on_port_465() {
        let (smarthost, mx) = (
            Destination::Smarthost,
            Destination::Domain("example.org".into()),
        );
        let (implicit, starttls) = (Some(SmarthostTls::Implicit), Some(SmarthostTls::Starttls));
        let relay = Destination::Relay(crate::model::SenderPattern::Any);
        for (destination, configured, port, expected) in [
            (&smarthost, None, 465, true),
            (&smarthost, None, 587, false),
            (&smarthost, None, 25, false),
            (&smarthost, implicit, 587, true),
            (&smarthost, starttls, 465, false),
            (&mx, None, 465, false),
            (&mx, implicit, 465, false),
            (&relay, None, 465, true),
            (&relay, None, 587, false),
            (&relay, implicit, 587, true),
            (&relay, starttls, 465, false),
        ] {
            assert_eq!(
                implicit_tls(destination, configured, port),
                expected,
                "{destination} {configured:?} {port}"
            );
        }
    }

    #[test]
    fn only_a_smarthost_or_a_senders_relay_can_be_misconfigured() {
        let (smarthost, mx, literal) = (
            Destination::Smarthost,
            Destination::Domain("example.org".into()),
            Destination::Literal("192.0.2.1".parse().unwrap()),
        );
        let relay = Destination::Relay(crate::model::SenderPattern::Any);
        let (ours, theirs) = (
            SessionError::misconfigured("certificate did not verify".into()),
            SessionError::temporary("421 busy".into()),
        );
        for (destination, e, expected) in [
            (&smarthost, &ours, true),
            (&smarthost, &theirs, false),
            (&mx, &ours, false),
            (&mx, &theirs, false),
            (&literal, &ours, false),
            (&relay, &ours, true),
            (&relay, &theirs, false),
        ] {
            assert_eq!(ours_to_fix(destination, e), expected, "{destination} {e}");
        }
    }

    #[test]
    fn the_tls_rule_for_a_connection() {
        use TlsPolicy::{Off, Opportunistic, Required};
        // (policy, anchors loaded, implicit, handshake failed before) -> use
        for (policy, loaded, implicit, failed_before, expected) in [
            (Opportunistic, true, false, false, TlsUse::Starttls),
            (Opportunistic, true, false, true, TlsUse::Off),
            (Opportunistic, true, true, true, TlsUse::Implicit),
            (Required, true, false, false, TlsUse::Starttls),
            // Required never falls back to plain text.
            (Required, true, false, true, TlsUse::Starttls),
            (Required, true, true, false, TlsUse::Implicit),
            (Off, true, false, false, TlsUse::Off),
            // A smarthost on 465 speaks TLS whatever `tls` says.
            (Off, true, true, false, TlsUse::Implicit),
            // No anchors (tls = off and no implicit host): nothing to use.
            (Off, false, false, false, TlsUse::Off),
            (Opportunistic, false, true, false, TlsUse::Off),
        ] {
            assert_eq!(
                tls_use(policy, loaded, implicit, failed_before),
                expected,
                "{policy:?} loaded {loaded} implicit {implicit} failed before {failed_before}"
            );
        }
    }

    #[test]
    fn an_mta_sts_policy_asks_for_more_tls_never_less() {
        use TlsPolicy::{Off, Opportunistic, Required};
        for (configured, sts, expected) in [
            (Opportunistic, None, Opportunistic),
            (Off, None, Off),
            (Off, Some(Mode::Enforce), Required),
            (Opportunistic, Some(Mode::Enforce), Required),
            (Off, Some(Mode::Testing), Opportunistic),
            (Opportunistic, Some(Mode::Testing), Opportunistic),
            (Required, Some(Mode::Testing), Required),
            (Off, Some(Mode::None), Off),
        ] {
            assert_eq!(
                tls_policy(configured, sts),
                expected,
                "{configured:?} {sts:?}"
            );
        }
    }

    #[test]
    fn a_destination_that_cannot_be_reached() {
        let e = |text: &str, permanent: bool| (text.to_string(), permanent);
        // (errors of the hosts in order) -> (verdict, text, dead for the pass)
        let cases: Vec<(Vec<(String, bool)>, Verdict, &str, bool)> = vec![
            (vec![], Verdict::Deferred, "no address to connect to", true),
            (
                vec![e("refused", false)],
                Verdict::Deferred,
                "refused",
                true,
            ),
            (
                vec![e("554 go away", true), e("timed out", false)],
                Verdict::Deferred,
                "timed out",
                true,
            ),
            (
                vec![e("timed out", false), e("554 go away", true)],
                Verdict::Deferred,
                "554 go away",
                true,
            ),
            (
                vec![e("554 no", true), e("550 neither", true)],
                Verdict::Failed,
                "550 neither",
                false,
            ),
        ];
        for (errors, verdict, text, dead) in cases {
            let shown = format!("{errors:?}");
            let (outcome, why) = unreachable(errors);
            assert_eq!(outcome.verdict(), verdict, "{shown}");
            assert_eq!(outcome.to_string(), text, "{shown}");
            assert_eq!(why.as_deref(), dead.then_some(text), "{shown}");
        }
        let (outcome, why) = unroutable(&RouteError::Permanent("null MX".into()));
        assert_eq!((outcome.verdict(), why), (Verdict::Failed, None));
        let (outcome, why) = unroutable(&RouteError::Temporary("SERVFAIL".into()));
        assert_eq!(
            (outcome.verdict(), why.as_deref()),
            (Verdict::Deferred, Some("SERVFAIL"))
        );
    }
}
