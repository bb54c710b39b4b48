//! What the binary does with a parsed command line: dispatch by mode
//! (submit, list, `-bs`, `newaliases`, `-bv`, queue runs). Errors are
//! returned to `main`, the one place where they become exit codes.

use crate::cli::{self, Invocation, Mode};
use crate::config::{self, Config, DeliveryMode};
use crate::error::{Error, Result, exit};
use crate::{
    address, aliases, ctl, log, mailq, manual, queue, route, smtpd, spool, submit, sys, system, tls,
};
use std::io::Write;

pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<u8> {
    let inv = cli::parse(args)?;
    // Another config file could name another spool: only with the caller's own rights.
    if inv.config_file.is_some() && system::is_privileged() {
        system::drop_privileges()?;
    }
    if inv.verbose {
        for note in &inv.notes {
            system::errln(format_args!("spoolmail: {note}"));
        }
    }
    match &inv.mode {
        Mode::Help => {
            system::outln(format_args!("{}", manual::help().trim_end_matches('\n')));
            return Ok(exit::OK);
        }
        Mode::Version => return version(&inv),
        Mode::Control(ctl::Command::Help) => {
            system::outln(format_args!(
                "{}",
                manual::ctl_help().trim_end_matches('\n')
            ));
            return Ok(exit::OK);
        }
        Mode::Generate(what) => {
            let text = manual::generate(*what, config::DEFAULT_FILE);
            system::outln(format_args!("{}", text.trim_end_matches('\n')));
            return Ok(exit::OK);
        }
        _ => {}
    }
    let config = Config::load(inv.config_file.as_deref())?;
    match &inv.mode {
        Mode::Submit => submit(&inv, &config),
        Mode::ListQueue => list_queue(&config),
        Mode::SmtpStdio => smtp_session(&inv, &config),
        Mode::Newaliases => Ok(newaliases(&config)),
        Mode::Verify => {
            config.check_for_delivery()?;
            verify(&inv, &config)
        }
        Mode::QueueRun { interval, select } => {
            refuse_a_broken_config(&inv, &config)?;
            let owner = pass_owner(&config, inv.verbose);
            let selection = queue::Selection {
                select: select.clone(),
                force: select.is_some(),
                message: None,
                owner,
                privileged: owner.is_none(),
                background: false,
            };
            let Some(every) = interval else {
                queue::run_pass(&config, &selection, inv.verbose)?;
                return Ok(exit::OK);
            };
            // -qDURATION stands in for cron: a failed pass is reported, not fatal.
            loop {
                if let Err(e) = queue::run_pass(&config, &selection, inv.verbose) {
                    system::errln(format_args!("sendmail: queue run failed: {e}"));
                }
                std::thread::sleep(*every);
            }
        }
        Mode::Control(ctl::Command::OAuth2Authorize) => oauth2_authorize(&config),
        Mode::Control(command) => ctl::run(command, &config, inv.config_file.as_deref()),
        Mode::Help | Mode::Version | Mode::Generate(_) => unreachable!("handled above"),
    }
}

/// `spoolctl oauth2 authorize`, for admins only: the refresh token it
/// saves sends everyone's mail.
fn oauth2_authorize(config: &Config) -> Result<u8> {
    if system::pass_owner(&config.spool_dir, config.admin_group.as_deref()).is_some() {
        return Err(Error::NoPerm(
            "oauth2 authorize is for root, the spool's group and admin_group".into(),
        ));
    }
    crate::oauth2::authorize(config, &mut |line| system::outln(format_args!("{line}")))
        .map_err(Error::TempFail)?;
    Ok(exit::OK)
}

/// `--version`: the version, the config file and the spool it names, and
/// what is compiled in, for a bug report or an admin's first look.
fn version(inv: &Invocation) -> Result<u8> {
    let file = (inv.config_file.as_deref()).unwrap_or(std::path::Path::new(config::DEFAULT_FILE));
    system::outln(format_args!("spoolmail {}", env!("CARGO_PKG_VERSION")));
    let missing = if file.exists() {
        ""
    } else {
        " (not there: the defaults apply)"
    };
    system::outln(format_args!("config file: {}{missing}", file.display()));
    match Config::load(inv.config_file.as_deref()) {
        Ok(config) => system::outln(format_args!(
            "spool directory: {}",
            config.spool_dir.display()
        )),
        Err(e) => system::outln(format_args!(
            "spool directory: unknown, the config has an error: {e}"
        )),
    }
    system::outln(format_args!(
        "features: {}; DNS hickory-resolver; AUTH PLAIN, LOGIN, XOAUTH2; log to syslog, stderr or a file",
        tls::FEATURE
    ));
    Ok(exit::OK)
}

/// `mailq`: the listing, then the config problem that holds the queue, if
/// any (exit 78, so that a monitoring check sees it).
fn list_queue(config: &Config) -> Result<u8> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let viewer = system::pass_owner(&config.spool_dir, config.admin_group.as_deref());
    let spool = spool::Spool::new(&config.spool_dir).looked_at_by(viewer);
    mailq::list(&spool, &mut out)?;
    out.flush()
        .map_err(|e| Error::io("cannot write the listing", e))?;
    config.check_for_delivery().map_err(|e| match e {
        Error::Config { file, line, msg } => Error::Config {
            file,
            line,
            msg: format!("{msg} (queue runs wait until this is fixed)"),
        },
        e => e,
    })?;
    Ok(exit::OK)
}

/// A queue run with a value it cannot use would deliver the wrong way:
/// it stops (exit 78), says why in the log, and the mail waits.
fn refuse_a_broken_config(inv: &Invocation, config: &Config) -> Result<()> {
    for p in config.problems.iter().filter(|p| !p.holds_delivery) {
        system::errln(format_args!("spoolmail: warning: {p}"));
    }
    let Err(e) = config.check_for_delivery() else {
        return Ok(());
    };
    let mut log = log::Log::open(config, inv.log_tag.as_deref().unwrap_or("spoolmail"));
    log.info(&format!(
        "queue run refused: {e}; the mail waits until the config is fixed"
    ));
    Err(e)
}

/// Every config problem, on stderr and in the log, when a message is
/// queued anyway (a config mistake must never lose a submission).
fn warn_config_problems(log: &mut log::Log, config: &Config) {
    for p in &config.problems {
        let what = if p.holds_delivery {
            "; the message is queued, and queue runs wait until this is fixed"
        } else {
            ""
        };
        if !log.is_stderr() {
            system::errln(format_args!("spoolmail: warning: {p}{what}"));
        }
        log.info(&format!("warning: {p}{what}"));
    }
}

/// A sender at a domain without a dot (`root@vm`) is refused by most
/// receivers: said once per submission, in the log and under `-v`.
fn warn_identity(
    log: &mut log::Log,
    config: &Config,
    origin: &submit::Origin,
    sender: &str,
    verbose: bool,
) {
    let identity = system::Identity {
        host: origin.host.clone(),
        domain: origin.domain.clone(),
    };
    let at_domain = sender
        .rsplit_once('@')
        .is_some_and(|(_, d)| d.eq_ignore_ascii_case(&identity.domain));
    let Some(warning) = identity.warning(&config.mailname_file) else {
        return;
    };
    if !at_domain {
        return;
    }
    if verbose && !log.is_stderr() {
        system::errln(format_args!("spoolmail: warning: {warning}"));
    }
    log.info(&format!("warning: {warning}"));
}

/// How a submission's message goes on: only queued while the config holds
/// delivery (a queue run would refuse it anyway).
fn delivery_mode(inv: &Invocation, config: &Config) -> DeliveryMode {
    if config.check_for_delivery().is_err() {
        return DeliveryMode::Queue;
    }
    inv.delivery_mode(config.delivery_mode)
}

/// `-bs`: an SMTP session on stdin/stdout; every accepted message is
/// logged and delivered as any submission is.
fn smtp_session(inv: &Invocation, config: &Config) -> Result<u8> {
    let origin = submit::Origin::of_current_process(config, false)?;
    let user = system::current_user()
        .map(|u| u.name)
        .unwrap_or_else(|_| format!("uid{}", origin.uid));
    let peer = smtpd::Peer {
        trusted: system::user_is_trusted(config.trusted_group.as_deref()),
        user,
    };
    let mut log = log::Log::open(config, inv.log_tag.as_deref().unwrap_or("spoolmail"));
    warn_config_problems(&mut log, config);
    let mode = delivery_mode(inv, config);
    let stdout = std::io::stdout();
    let result = smtpd::serve(
        config,
        &origin,
        &peer,
        std::io::stdin().lock(),
        stdout.lock(),
        |done| {
            warn_identity(&mut log, config, &origin, &done.envelope.sender, false);
            log_queued(&mut log, done);
            let envelope = &done.envelope;
            if mode != DeliveryMode::Queue {
                // An SMTP client waits for the next reply: delivery goes to the background.
                deliver_in_background(config, envelope);
            }
        },
    );
    result.map_err(|e| Error::io("SMTP session on standard input", e))?;
    Ok(exit::OK)
}

/// `newaliases`, `-bi`: checks the aliases file (spoolmail reads the text
/// itself; there is no database to build) and reports every problem.
fn newaliases(config: &Config) -> u8 {
    let Some(path) = &config.aliases_file else {
        system::outln(format_args!(
            "newaliases: aliases are off (aliases_file = none)"
        ));
        return exit::OK;
    };
    if !path.exists() {
        system::outln(format_args!(
            "newaliases: {}: no such file; no aliases",
            path.display()
        ));
        return exit::OK;
    }
    let table = aliases::Aliases::check(path);
    for p in &table.problems {
        system::errln(format_args!("newaliases: {p}"));
    }
    system::outln(format_args!("{}: {} aliases", path.display(), table.len()));
    if table.problems.iter().any(|p| !p.warning) {
        exit::CONFIG
    } else {
        exit::OK
    }
}

/// `-bv`: where each address would go, in Sendmail's words.
fn verify(inv: &Invocation, config: &Config) -> Result<u8> {
    if inv.recipients.is_empty() {
        return Err(Error::Usage("-bv needs addresses to verify".into()));
    }
    // With a sender_relay_map, the sender a submission would queue (-f,
    // else the user's) picks the relay, as a queue run picks it.
    let mapped = !config.sender_relays.is_empty();
    let origin = submit::Origin::of_current_process(config, mapped && inv.sender.is_none())?;
    let relay = match mapped {
        true => {
            let sender = submit::queued_sender(inv.sender.as_deref(), &origin, config)?;
            let login = || system::login_name(origin.uid);
            (config.relay_for_sender(&sender, origin.uid, login)).map(|r| &r.pattern)
        }
        false => None,
    };
    for arg in &inv.recipients {
        let addrs = address::parse_argument(arg)?;
        let (recipients, notes) = aliases::resolve(addrs, config, &origin.domain);
        for r in recipients {
            let host = route::destination_of(&r.address, relay, config);
            let via = r
                .orcpt
                .as_ref()
                .map(|o| format!(" (from {o})"))
                .unwrap_or_default();
            system::outln(format_args!(
                "{}... deliverable: mailer esmtp, host {host}, user {}{via}",
                r.address, r.address
            ));
        }
        for n in notes {
            system::outln(format_args!("{arg}... not deliverable: {n}"));
        }
    }
    Ok(exit::OK)
}

fn log_queued(log: &mut log::Log, done: &submit::Submitted) {
    let envelope = &done.envelope;
    for note in &done.notes {
        log.info(&format!("{}: {note}", envelope.id));
    }
    log.info(&format!(
        "{}: from=<{}>, size={}, nrcpt={} (queue active)",
        envelope.id,
        envelope.sender,
        done.size,
        envelope.recipients.len()
    ));
}

fn submit(inv: &Invocation, config: &Config) -> Result<u8> {
    let origin = submit::Origin::of_current_process(config, inv.sender.is_none())?;
    let mut submission = inv.submission(&origin)?;
    if inv.sender.is_some() {
        submission.extra_headers = sender_warning(config, &origin, &submission.sender);
    }
    let mut log = log::Log::open(config, inv.log_tag.as_deref().unwrap_or("spoolmail"));
    warn_config_problems(&mut log, config);
    submit::check_free_space(config).inspect_err(|e| {
        if !log.is_stderr() {
            log.info(&format!("submission refused: {e}"));
        }
    })?;
    let done = submit::submit(&submission, config, &origin, std::io::stdin().lock())?;
    warn_identity(
        &mut log,
        config,
        &origin,
        &done.envelope.sender,
        inv.verbose,
    );
    log_queued(&mut log, &done);
    let envelope = done.envelope;
    if inv.verbose {
        system::errln(format_args!("spoolmail: queued as {}", envelope.id));
    }
    match delivery_mode(inv, config) {
        DeliveryMode::Queue => Ok(exit::OK),
        DeliveryMode::Background => {
            deliver_in_background(config, &envelope);
            Ok(exit::OK)
        }
        DeliveryMode::Interactive => {
            let selection = own_pass(config, &envelope.id);
            let summary = queue::run_pass(config, &selection, inv.verbose)?;
            Ok(report_interactive(inv, &envelope, &summary))
        }
    }
}

/// `-f` by a caller who is not trusted, naming another sender: the warning
/// Sendmail adds (as `-bs` does for MAIL FROM).
fn sender_warning(config: &Config, origin: &submit::Origin, sender: &str) -> String {
    if system::user_is_trusted(config.trusted_group.as_deref()) {
        return String::new();
    }
    let user = match &origin.user_name {
        Some(name) => name.clone(),
        None => system::current_user()
            .map(|u| u.name)
            .unwrap_or_else(|_| format!("uid{}", origin.uid)),
    };
    submit::authentication_warning(origin, &user, false, sender, submit::SenderSetBy::FlagF)
}

/// Whose mail a queue run may take (see `system::pass_owner`); under `-v`
/// a run limited to the caller's own messages says so.
fn pass_owner(config: &Config, verbose: bool) -> Option<u32> {
    let owner = system::pass_owner(&config.spool_dir, config.admin_group.as_deref());
    if let (Some(uid), true) = (owner, verbose) {
        system::errln(format_args!(
            "spoolmail: queue run limited to your own messages (uid {uid})"
        ));
    }
    owner
}

/// The pass right after a submission: that message, now, taken as any of
/// the caller's passes is (only their own, unless they may take everyone's).
fn own_pass(config: &Config, id: &crate::model::QueueId) -> queue::Selection {
    let owner = system::pass_owner(&config.spool_dir, config.admin_group.as_deref());
    queue::Selection {
        owner,
        privileged: owner.is_none(),
        ..queue::Selection::message(id)
    }
}

/// `-odb`: a detached grandchild hands the message to its user's runner
/// (becoming that runner when there is none: `queue::run_background`)
/// while the caller goes on. It lets go of the caller's stdin, stdout and
/// stderr first, so that a caller reading our output to its end is not
/// kept waiting for the delivery.
fn deliver_in_background(config: &Config, envelope: &spool::Envelope) {
    match sys::fork() {
        Ok(sys::Forked::Child) => {
            sys::setsid();
            if let Ok(sys::Forked::Child) = sys::fork() {
                system::detach_stdio();
                let privileged =
                    system::pass_owner(&config.spool_dir, config.admin_group.as_deref()).is_none();
                let run = queue::run_background(config, envelope.uid, privileged, &envelope.id);
                if let Err(e) = run {
                    // Detached: the log is the only place to say it.
                    let mut log = log::Log::open(config, "spoolmail");
                    log.info(&format!(
                        "{}: background delivery stopped: {e}; the message waits for the next queue run",
                        envelope.id
                    ));
                }
            }
            sys::exit_child(0)
        }
        Err(_) => {} // the message is queued; the next queue run delivers it
        Ok(sys::Forked::Parent(pid)) => {
            sys::wait_for(pid);
        }
    }
}

/// `-odi`: after the attempt, under `-oep` the recipients that failed are
/// printed and the exit code says so (they are bounced as well); under the
/// other error modes the bounce is the report.
fn report_interactive(
    inv: &Invocation,
    envelope: &spool::Envelope,
    summary: &queue::PassSummary,
) -> u8 {
    if inv.error_mode != Some(cli::ErrorMode::Print) {
        return exit::OK;
    }
    let mut code = exit::OK;
    for (id, i, text) in &summary.failed {
        if *id == envelope.id
            && let Some(r) = envelope.recipients.get(*i)
        {
            system::errln(format_args!("sendmail: {}: {text}", r.address));
            code = exit::NOUSER;
        }
    }
    code
}
