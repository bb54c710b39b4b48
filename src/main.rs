//! spoolmail's binary: `sendmail`, `mailq`, `newaliases` and `spoolctl` by the name it
//! is called with. Everything is in the library; this is the one place where
//! an error becomes a line on stderr and a sysexits.h exit code.

// The C entry point instead of Rust's `fn main`: Rust's runtime start-up
// (a stack-overflow handler and its stack, for which glibc reads and parses
// /proc/self/maps) cost about 0.1 ms and 0.4 MiB of every submission. What
// of it spoolmail needs, `sanitize_process` does: fds 0-2 opened on
// /dev/null when closed, SIGPIPE ignored.
// The unit-test build keeps the test harness's own main (with `no_main`
// it ran this one, which refuses the harness's arguments).
#![cfg_attr(not(test), no_main)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

#[cfg(not(test))]
use std::ffi::{c_char, c_int};

// SAFETY (of the unsafe attribute): no other symbol of the program is named
// `main`; this is the one the C runtime calls, with the C signature.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    // A panic ends the process with 101, as under Rust's runtime (its
    // message is printed by the panic hook), instead of unwinding into C.
    let code = std::panic::catch_unwind(run).unwrap_or(101);
    // Rust's runtime flushes stdout at exit; without it, this does.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    c_int::from(code)
}

#[cfg(not(test))]
fn run() -> u8 {
    let sanitized = spoolmail::system::sanitize_process();
    let program = std::env::args()
        .next()
        .and_then(|a| a.rsplit('/').next().map(str::to_string))
        .unwrap_or_else(|| "sendmail".into());
    match sanitized.and_then(|()| spoolmail::run(std::env::args_os())) {
        Ok(code) => code,
        Err(e) => {
            spoolmail::system::errln(format_args!("{program}: {e}"));
            e.exit_code()
        }
    }
}

// The two functions of the C maths library the dependency tree calls (`exp`
// in hickory's decaying round-trip time, `pow` in tokio), defined here so
// that the linker, which links libm.so only when something needs it, leaves
// it out: every start of the program then maps and relocates one shared
// library fewer (0.3 MiB of peak RSS; README, Benchmarks). The libm crate is
// musl's maths library ported to Rust.
// SAFETY (of the unsafe attributes): nothing else in the program defines
// these C symbols, and the signatures are C's `double f(double[, double])`.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn exp(x: f64) -> f64 {
    libm::exp(x)
}

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}
