//! Links the unwinder statically (libgcc_eh, as `gcc -static-libgcc` does)
//! on Linux with glibc: the dynamic loader then has one library fewer to
//! map and bind at every start (libgcc_s, whose constructor also probes the
//! CPU), about 0.1 ms and 0.1 MiB of a submission (README, Benchmarks).
//! glibc itself stays dynamic: a static glibc cannot load the NSS modules
//! that user look-ups may need (it crashed doing so, for a user not in
//! /etc/passwd). Where libgcc_eh.a is not found, libgcc_s is linked as before.
//!
//! In release builds linked by lld (rustc's default linker for
//! x86_64-unknown-linux-gnu), it also hands the linker two things that make
//! every start cheaper (README, Benchmarks: a 2 KB submission's peak RSS
//! and time):
//! - link/hot-text.ld (made by scripts/hot-code): the code a submission, a
//!   listing and a queue pass execute, placed together, so that the pages
//!   the kernel maps around each fault hold code that runs;
//! - `-z pack-relative-relocs`: the ~5,000 relative relocations of a
//!   position-independent binary packed as DT_RELR, 2 KiB for the loader to
//!   read instead of 120 KiB; only where the glibc it links reads them
//!   (2.36 and later), as an older one's loader refuses such a binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let var = |name| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    // The C compiler that links the program (rustc's default linker).
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let found = linker_file(&linker, "libgcc_eh.a");
    link_for_start_up(&linker);
    match found.as_deref().and_then(|path| path.parent()) {
        Some(dir) => {
            println!("cargo::rustc-link-search=native={}", dir.display());
            println!("cargo::rustc-link-lib=static:-bundle=gcc_eh");
        }
        None => println!("cargo::warning=libgcc_eh.a not found ({linker}): linking libgcc_s"),
    }
}

/// A file the linker links, where the C compiler that drives it finds it
/// (`-print-file-name`), if it finds it.
fn linker_file(linker: &str, name: &str) -> Option<PathBuf> {
    Command::new(linker)
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|path| path.is_absolute() && path.is_file())
}

/// The release build's start-up layout (see the top of this file).
fn link_for_start_up(linker: &str) {
    println!("cargo::rerun-if-changed=link/hot-text.ld");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    // scripts/hot-code traces a build without the section: valgrind takes
    // function symbols only from `.text`, and names nothing in `.text.hot`.
    println!("cargo::rerun-if-env-changed=SPOOLMAIL_HOT_TEXT");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let release = env("PROFILE") == "release";
    let libc = release.then(|| linker_file(linker, "libc.so.6")).flatten();
    if let Some(libc) = &libc {
        // A glibc upgrade may make it read packed relocations.
        println!("cargo::rerun-if-changed={}", libc.display());
    }
    for arg in start_up_link_args(env, libc.as_deref()) {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
}

/// The linker arguments of the start-up layout, from cargo's environment
/// (`env` gives "" for a variable not set) and the C library the linker
/// links (`libc`, where found). Only where the linker is known to be lld:
/// another linker may not take a script that only inserts a section.
pub fn start_up_link_args(env: impl Fn(&str) -> String, libc: Option<&Path>) -> Vec<String> {
    let script = Path::new(&env("CARGO_MANIFEST_DIR")).join("link/hot-text.ld");
    let hot = env("SPOOLMAIL_HOT_TEXT") != "0";
    // A linker chosen in RUSTFLAGS or in cargo's target config may not be lld.
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    let own_linker = ["linker", "link-self-contained", "link-arg"]
        .iter()
        .any(|f| flags.contains(f))
        || !env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_empty();
    let lld = env("TARGET") == "x86_64-unknown-linux-gnu" && !own_linker;
    let path = script.to_string_lossy();
    if env("PROFILE") != "release" || !lld {
        return Vec::new();
    }
    let mut args = Vec::new();
    if hot && script.is_file() && !path.contains(',') {
        args.push(format!("-Wl,-T,{path}"));
    }
    // lld marks a packed binary as needing glibc's GLIBC_ABI_DT_RELR
    // whenever it links glibc, even a glibc without that version (2.35 and
    // older), where the binary then does not start.
    if libc.is_some_and(reads_relr) {
        args.push("-Wl,-z,pack-relative-relocs".into());
    }
    args
}

/// The C library at `path` defines the version GLIBC_ABI_DT_RELR (glibc
/// 2.36 and later): its loader applies packed relative relocations.
fn reads_relr(path: &Path) -> bool {
    const VERSION: &[u8] = b"\0GLIBC_ABI_DT_RELR\0";
    std::fs::read(path).is_ok_and(|bytes| bytes.windows(VERSION.len()).any(|w| w == VERSION))
}
