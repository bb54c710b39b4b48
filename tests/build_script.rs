//! The choices build.rs makes, from the environment cargo gives it and the
//! C library the linker finds. build.rs is included whole: its `main` is
//! not called here.

#[allow(dead_code)]
#[path = "../build.rs"]
mod build_script;

use build_script::start_up_link_args;
use std::collections::HashMap;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/link/hot-text.ld");
const PACK: &str = "-Wl,-z,pack-relative-relocs";

/// A release build for x86_64 glibc with rustc's default linker, changed by
/// `changes` (name, value).
fn link_args(changes: &[(&str, &str)]) -> Vec<String> {
    let mut env: HashMap<&str, &str> = HashMap::from([
        ("CARGO_MANIFEST_DIR", env!("CARGO_MANIFEST_DIR")),
        ("PROFILE", "release"),
        ("TARGET", "x86_64-unknown-linux-gnu"),
        ("CARGO_ENCODED_RUSTFLAGS", ""),
    ]);
    env.extend(changes.iter().copied());
    start_up_link_args(|name| env.get(name).unwrap_or(&"").to_string())
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
