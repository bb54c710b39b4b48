//! What the tests ask of the system: who runs them, names of users and
//! groups, limits. The lookups are done here, not with the crate's own
//! (src/system.rs), so that the tests check it rather than repeat it.

use std::process::{Command, Stdio};

/// Makes `cmd` run as local user `uid` would: primary group `uid`, the
/// one supplementary group `group` (a spool's group in the tests), under
/// the umask 027 of a common login. Needs root.
pub fn as_local_user(cmd: &mut Command, uid: u32, group: u32) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe system calls
    // on values copied into the closure.
    unsafe {
        cmd.pre_exec(move || {
            let groups = [group];
            if libc::setgroups(1, groups.as_ptr()) != 0
                || libc::setgid(uid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::umask(0o027);
            Ok(())
        })
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The name of user `uid`; panics when there is none.
pub fn user_name(uid: u32) -> String {
    getent("passwd", uid)
}

/// The name of group `gid`; panics when there is none.
pub fn group_name(gid: u32) -> String {
    getent("group", gid)
}

/// The first field of `getent DATABASE ID` (what NSS says, as the C
/// library's lookups would).
fn getent(database: &str, id: u32) -> String {
    let out = Command::new("getent")
        .args([database, &id.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run getent");
    let text = String::from_utf8_lossy(&out.stdout);
    let name = text.split(':').next().unwrap_or("").trim();
    assert!(
        out.status.success() && !name.is_empty(),
        "no {database} entry for {id}"
    );
    name.to_string()
}

/// Raises the soft open-file limit towards the hard one (for tests that keep
/// hundreds of pipes open).
pub fn raise_nofile_limit(want: u64) {
    // SAFETY: getrlimit and setrlimit get a pointer to a live, zeroed rlimit.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && (r.rlim_cur as u64) < want {
            r.rlim_cur = (want as libc::rlim_t).min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0), near enough for tests.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
