//! spoolmail: one binary that is `sendmail`, `mailq` and `newaliases`.
//! This file dispatches on the mode and is the one place where an error
//! becomes a line on stderr and a sysexits.h exit code.

mod address;
mod cli;
mod config;
mod error;
mod log;
mod mailq;
mod spool;
mod submit;
mod system;

use cli::{DeliveryMode, Invocation, Mode};
use config::Config;
use error::{Error, Result, exit};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    system::sanitize_process();
    let program = std::env::args()
        .next()
        .and_then(|a| a.rsplit('/').next().map(str::to_string))
        .unwrap_or_else(|| "sendmail".into());
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run() -> Result<u8> {
    let inv = cli::parse(std::env::args_os())?;
    // Another config file could name another spool: only with the caller's own rights.
    if inv.config_file.is_some() && system::is_privileged() {
        system::drop_privileges()?;
    }
    if inv.verbose {
        for note in &inv.notes {
            eprintln!("spoolmail: {note}");
        }
    }
    match &inv.mode {
        Mode::Help => {
            print!("{}", cli::HELP);
            return Ok(exit::OK);
        }
        Mode::Version => {
            println!("spoolmail {}", env!("CARGO_PKG_VERSION"));
            return Ok(exit::OK);
        }
        _ => {}
    }
    let config = Config::load(inv.config_file.as_deref())?;
    match &inv.mode {
        Mode::Submit => submit(&inv, &config),
        Mode::ListQueue => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            mailq::list(&spool::Spool::new(&config.spool_dir), &mut out)?;
            out.flush()
                .map_err(|e| Error::io("cannot write the listing", e))?;
            Ok(exit::OK)
        }
        Mode::SmtpStdio => Err(Error::Unsupported(
            "-bs (SMTP on standard input) is not built yet".into(),
        )),
        Mode::Newaliases => Err(Error::Unsupported(
            "newaliases (-bi): aliases are not built yet".into(),
        )),
        Mode::Verify => Err(Error::Unsupported(
            "-bv (address verification) is not built yet".into(),
        )),
        Mode::QueueRun { .. } => Err(Error::Unsupported(
            "queue runs (-q) are not built yet: messages stay queued; see README".into(),
        )),
        Mode::Help | Mode::Version => unreachable!("handled above"),
    }
}

fn submit(inv: &Invocation, config: &Config) -> Result<u8> {
    let origin = submit::Origin::of_current_process(config, inv.sender.is_none())?;
    let (envelope, size) = submit::submit(inv, config, &origin, std::io::stdin().lock())?;
    let mut log = log::Log::open(&config.log, inv.log_tag.as_deref().unwrap_or("spoolmail"));
    log.info(&format!(
        "{}: from=<{}>, size={size}, nrcpt={} (queue active)",
        envelope.id,
        envelope.sender,
        envelope.recipients.len()
    ));
    let mode = inv.delivery_mode.unwrap_or(config.delivery_mode);
    if inv.verbose {
        eprintln!("spoolmail: queued as {}", envelope.id);
        if mode != DeliveryMode::Queue {
            eprintln!(
                "spoolmail: delivery is not built yet; the message stays queued (as with -odq)"
            );
        }
    }
    Ok(exit::OK)
}
