//! spoolmail's binary: `sendmail`, `mailq`, `newaliases` and `spoolctl` by the name it
//! is called with. Everything is in the library; this is the one place where
//! an error becomes a line on stderr and a sysexits.h exit code.

#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let sanitized = spoolmail::system::sanitize_process();
    let program = std::env::args()
        .next()
        .and_then(|a| a.rsplit('/').next().map(str::to_string))
        .unwrap_or_else(|| "sendmail".into());
    match sanitized.and_then(|()| spoolmail::run(std::env::args_os())) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            spoolmail::system::errln(format_args!("{program}: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}
