//! Links the unwinder statically (libgcc_eh, as `gcc -static-libgcc` does)
//! on Linux with glibc: the dynamic loader then has one library fewer to
//! map and bind at every start (libgcc_s, whose constructor also probes the
//! CPU), about 0.1 ms and 0.1 MiB of a submission (README, Benchmarks).
//! glibc itself stays dynamic: a static glibc cannot load the NSS modules
//! that user look-ups may need (it crashed doing so, for a user not in
//! /etc/passwd). Where libgcc_eh.a is not found, libgcc_s is linked as before.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let var = |name| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    // The C compiler that links the program (rustc's default linker).
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let found = Command::new(&linker)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|path| path.is_absolute() && path.is_file());
    match found.as_deref().and_then(|path| path.parent()) {
        Some(dir) => {
            println!("cargo::rustc-link-search=native={}", dir.display());
            println!("cargo::rustc-link-lib=static:-bundle=gcc_eh");
        }
        None => println!("cargo::warning=libgcc_eh.a not found ({linker}): linking libgcc_s"),
    }
}
