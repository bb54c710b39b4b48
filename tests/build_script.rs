//! The choices build.rs makes, from the environment cargo gives it and the
//! C library the linker finds. build.rs is included whole: its `main` is
//! not called here.

#[allow(dead_code)]
#[path = "../build.rs"]
mod build_script;

use build_script::start_up_link_args;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/link/hot-text.ld");
const PACK: &str = "-Wl,-z,pack-relative-relocs";

/// A release build for x86_64 glibc 2.36 or later with rustc's default
/// linker, changed by `changes` (name, value).
fn link_args(changes: &[(&str, &str)]) -> Vec<String> {
    let glibc = libc("2.36", b"\0GLIBC_2.35\0GLIBC_ABI_DT_RELR\0GLIBC_2.36\0");
    link_args_with(changes, Some(&glibc))
}

/// A stand-in for a libc.so.6 defining the version names in `versions`,
/// one of its own for each call (tests run in parallel).
fn libc(name: &str, versions: &[u8]) -> PathBuf {
    static MADE: AtomicUsize = AtomicUsize::new(0);
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("build-script.{}", std::process::id()));
    let path = dir.join(format!("{name}.{n}")).join("libc.so.6");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, versions).unwrap();
    path
}

fn link_args_with(changes: &[(&str, &str)], libc: Option<&Path>) -> Vec<String> {
    let mut env: HashMap<&str, &str> = HashMap::from([
        ("CARGO_MANIFEST_DIR", env!("CARGO_MANIFEST_DIR")),
        ("PROFILE", "release"),
        ("TARGET", "x86_64-unknown-linux-gnu"),
        ("CARGO_ENCODED_RUSTFLAGS", ""),
    ]);
    env.extend(changes.iter().copied());
    start_up_link_args(|name| env.get(name).unwrap_or(&"").to_string(), libc)
}

#[test]
fn a_release_build_linked_by_lld_gets_the_layout() {
    let script = format!("-Wl,-T,{SCRIPT}");
    assert_eq!(link_args(&[]), [script.as_str(), PACK]);
    assert_eq!(link_args(&[("SPOOLMAIL_HOT_TEXT", "0")]), [PACK]);
    assert_eq!(link_args(&[("CARGO_MANIFEST_DIR", "/nonexistent")]), [PACK]);
}

#[test]
fn other_builds_and_linkers_get_none_of_it() {
    let none: Vec<String> = Vec::new();
    for change in [
        ("PROFILE", "debug"),
        ("TARGET", "aarch64-unknown-linux-gnu"),
        ("TARGET", "x86_64-unknown-linux-musl"),
        ("CARGO_ENCODED_RUSTFLAGS", "-C\x1flinker=clang"),
        ("CARGO_ENCODED_RUSTFLAGS", "-Clink-arg=-fuse-ld=mold"),
        ("CARGO_ENCODED_RUSTFLAGS", "-Clinker-features=-lld"),
        ("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER", "gcc"),
    ] {
        assert_eq!(link_args(&[change]), none, "{change:?}");
    }
}

/// lld marks a packed binary as needing GLIBC_ABI_DT_RELR whenever it links
/// glibc, whether the glibc it links has that version or not: built
/// against glibc 2.35 (Ubuntu 22.04), the binary did not start ("version
/// `GLIBC_ABI_DT_RELR' not found"). Packed only for a libc that reads it.
#[test]
fn relocations_are_packed_only_for_a_glibc_that_reads_them() {
    let script = format!("-Wl,-T,{SCRIPT}");
    let old = libc("2.35", b"\0GLIBC_2.34\0GLIBC_2.35\0GLIBC_PRIVATE\0");
    assert_eq!(link_args_with(&[], Some(&old)), [script.as_str()]);
    let missing = old.with_file_name("libc.so.7");
    assert_eq!(link_args_with(&[], Some(&missing)), [script.as_str()]);
    assert_eq!(link_args_with(&[], None), [script.as_str()]);
    assert_eq!(link_args(&[]), [script.as_str(), PACK]);
}
