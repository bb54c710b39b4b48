//! MTA-STS (RFC 8461): whether a recipient domain asks that its mail go
//! only to the MX hosts it names, and only over TLS that verifies.
//!
//! Runs in a delivery child, before its first connection to a domain: the
//! `_mta-sts.DOMAIN` TXT record says whether the domain has a policy and
//! which (`id`); the policy itself is fetched over HTTPS from
//! `mta-sts.DOMAIN` and kept in the spool (`sts/DOMAIN`, doc/SPOOL.md) for
//! its `max_age`. A new `id` fetches it again, and so does a policy past
//! half its `max_age` (section 5.1's proactive refresh, so that a policy
//! host that is down when the policy expires does not leave the domain
//! without one); a failed fetch uses the cached policy, or none (section
//! 5: no policy never stops mail), and is not tried again for
//! [`STS_RETRY_FETCH`] while the cached one serves. A policy that is
//! malformed, too large or served wrongly is refused with a log line, as if
//! the fetch had failed.
//!
//! The rules themselves (the TXT record, the policy's text, the `mx`
//! patterns, the cache file) are pure functions with table tests.

use crate::https;
use crate::limits::{STS_FETCH_TIMEOUT, STS_MAX_AGE, STS_MAX_POLICY, STS_RETRY_FETCH};
use crate::log::Log;
use crate::route::Router;
use crate::tls::Anchors;
use std::path::{Path, PathBuf};

/// The cache directory in the spool.
pub const STS_DIR: &str = "sts";

/// The cache file's first line.
const CACHE_MAGIC: &str = "SPOOLMAIL-STS 1";

/// What a policy asks of senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only the listed MX hosts, only over TLS that verifies.
    Enforce,
    /// Deliver as usual; say what `Enforce` would have refused.
    Testing,
    /// No policy (a domain that is withdrawing one).
    None,
}

/// A domain's policy, as its text says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// `mx` patterns, lower case, without a trailing dot: `mx1.example.com`,
    /// `*.example.com`.
    pub mx: Vec<String>,
    /// Seconds the policy may be kept, at most [`STS_MAX_AGE`].
    pub max_age: u64,
}

impl Policy {
    /// Whether `host` (an MX host's name) is one the policy lists.
    pub fn allows(&self, host: &str) -> bool {
        self.mx.iter().any(|p| mx_matches(p, host))
    }
}

/// The policy in force for one domain, and the domain's name for the
/// reasons that name it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub domain: String,
    pub policy: Policy,
}

impl Applied {
    /// Why `host` may not be used under this policy, when it may not.
    pub fn refuses_host(&self, host: &str) -> Option<String> {
        (!self.policy.allows(host)).then(|| {
            format!(
                "MTA-STS policy of {} does not list MX host {host} (mx: {})",
                self.domain,
                self.policy.mx.join(", ")
            )
        })
    }

    /// The reason for a connection that did not give verified TLS.
    pub fn requires_tls(&self, why: &str) -> String {
        format!("MTA-STS policy of {} requires TLS: {why}", self.domain)
    }
}

/// The `id` of the domain's `_mta-sts` TXT record (section 3.1): Ok(None)
/// when no record begins `v=STSv1`; Err when there is not exactly one, or
/// it is not well formed (both mean: no policy announced).
pub fn record_id(records: &[String]) -> Result<Option<String>, String> {
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| r.split(';').next().map(str::trim) == Some("v=STSv1"))
        .collect();
    let record = match sts.as_slice() {
        [] => return Ok(None),
        [one] => one,
        _ => return Err(format!("{} records begin v=STSv1", sts.len())),
    };
    let mut id = None;
    for field in record.split(';').skip(1).map(str::trim) {
        if let Some(value) = field.strip_prefix("id=") {
            id.get_or_insert(value);
        }
    }
    match id {
        Some(v)
            if !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Ok(Some(v.to_string()))
        }
        Some(v) => Err(format!("its id `{v}` is not 1 to 32 letters and digits")),
        None => Err("it has no id".into()),
    }
}

/// A policy's text (section 3.2): `key: value` lines (LF or CRLF);
/// `version: STSv1`, `mode` and `max_age` needed, `mx` too unless the mode
/// is `none`; unknown keys ignored; of a repeated key other than `mx`, the
/// first counts. Err says what is wrong.
pub fn parse_policy(text: &str) -> Result<Policy, String> {
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line `{}` is not `key: value`", shorten(line)))?;
        let value = value.trim_matches([' ', '\t']);
        match key {
            "version" => _ = version.get_or_insert(value),
            "mode" => _ = mode.get_or_insert(value),
            "max_age" => _ = max_age.get_or_insert(value),
            "mx" => mx.push(mx_pattern(value)?),
            _ => {}
        }
    }
    if version != Some("STSv1") {
        return Err(format!("version is {}, not STSv1", shown(version)));
    }
    let mode = match mode {
        Some("enforce") => Mode::Enforce,
        Some("testing") => Mode::Testing,
        Some("none") => Mode::None,
        other => return Err(format!("mode is {}", shown(other))),
    };
    let max_age = match max_age {
        Some(v) if (1..=10).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse::<u64>().unwrap_or(u64::MAX).min(STS_MAX_AGE)
        }
        other => return Err(format!("max_age is {}", shown(other))),
    };
    if mx.is_empty() && mode != Mode::None {
        return Err("it lists no mx".into());
    }
    Ok(Policy { mode, mx, max_age })
}

/// An `mx` value as a pattern: a host name, or `*.` and one (section 3.2).
fn mx_pattern(value: &str) -> Result<String, String> {
    let pattern = value.trim_end_matches('.').to_ascii_lowercase();
    let name = pattern.strip_prefix("*.").unwrap_or(&pattern);
    if is_host_name(name) {
        Ok(pattern)
    } else {
        Err(format!("mx `{}` is not a host name", shorten(value)))
    }
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63, at most
/// 253 in all: what a policy may name, and what a cache file may be named.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Whether MX host `host` matches `pattern` (section 4.1): equal names,
/// or `*.` standing for exactly one label. Case and a trailing dot do not
/// matter.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => host == pattern,
    }
}

fn mode_word(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Testing => "testing",
        Mode::None => "none",
    }
}

fn shown(value: Option<&str>) -> String {
    match value {
        Some(v) => format!("`{}`", shorten(v)),
        None => "missing".into(),
    }
}

/// At most 40 characters of text from outside, for a log line.
fn shorten(text: &str) -> String {
    crate::model::excerpt(text, 40)
}

/// A cached policy: the TXT id it was fetched under, when, its text, and
/// when a fetch that would have replaced it last failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub id: String,
    /// Unix seconds.
    pub fetched: u64,
    pub text: String,
    /// Unix seconds of the last failed fetch since `fetched` (`tried`).
    pub tried: Option<u64>,
}

impl Cached {
    /// The cache file's content (doc/SPOOL.md, "MTA-STS policies").
    pub fn encode(&self) -> String {
        let tried = self
            .tried
            .map(|t| format!("tried {t}\n"))
            .unwrap_or_default();
        format!(
            "{CACHE_MAGIC}\nid {}\nfetched {}\n{tried}\n{}",
            self.id, self.fetched, self.text
        )
    }

    /// A cache file's content; None when it is not one of this version.
    pub fn decode(text: &str) -> Option<Cached> {
        let (head, policy) = text.split_once("\n\n")?;
        let mut lines = head.lines();
        if lines.next()? != CACHE_MAGIC {
            return None;
        }
        let (mut id, mut fetched, mut tried) = (None, None, None);
        for line in lines {
            match line.split_once(' ') {
                Some(("id", v)) => id = Some(v.trim_end().to_string()),
                Some(("fetched", v)) => fetched = v.trim_end().parse().ok(),
                Some(("tried", v)) => tried = v.trim_end().parse().ok(),
                _ => {} // a later version's key
            }
        }
        Some(Cached {
            id: id?,
            fetched: fetched?,
            text: policy.to_string(),
            tried,
        })
    }

    /// Its policy, while `now` is within its `max_age` of the fetch.
    pub fn policy_at(&self, now: u64) -> Option<Policy> {
        let policy = parse_policy(&self.text).ok()?;
        (now < self.fetched.saturating_add(policy.max_age)).then_some(policy)
    }
}

/// A cache file's text with its `tried` line set to `at`, its other lines
/// as they are; None when it has no head.
fn with_tried(text: &str, at: u64) -> Option<String> {
    let (head, policy) = text.split_once("\n\n")?;
    let mut out: String = (head.lines())
        .filter(|l| !l.starts_with("tried "))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("tried {at}\n\n{policy}"));
    Some(out)
}

/// What a delivery does about a domain's policy, from the `id` its TXT
/// record announces and the cache alone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// No policy: none announced, and none cached that still serves.
    Nothing,
    /// The cached policy serves; nothing is fetched.
    Cached(Policy),
    /// Fetch the policy; when that fails, `fallback` serves (the cached
    /// one, while valid). `refresh`: the cached policy's `id` is still the
    /// one announced (or none is), and it is past half its `max_age`.
    Fetch {
        fallback: Option<Policy>,
        refresh: bool,
    },
}

/// Section 5.1: a cached policy within its `max_age` serves, even when the
/// record is gone, until the record announces another `id`, which is
/// fetched; it is refreshed once past half its `max_age`, so that it does
/// not lapse while its host is down. A fetch that failed while a cached
/// policy served is not tried again for [`STS_RETRY_FETCH`].
fn plan(announced: Option<&str>, cached: Option<&Cached>, now: u64) -> Plan {
    let fresh = cached.and_then(|c| c.policy_at(now).map(|p| (c, p)));
    let Some((cached, policy)) = fresh else {
        return match announced {
            Some(_) => Plan::Fetch {
                fallback: None,
                refresh: false,
            },
            None => Plan::Nothing,
        };
    };
    let new_id = announced.is_some_and(|id| id != cached.id);
    // A time ahead of `now` is of a clock since set back: the policy is
    // refreshed, and such a try does not hold the next one back.
    let aging = now >= cached.fetched.saturating_add(policy.max_age / 2) || cached.fetched > now;
    let tried_lately =
        (cached.tried).is_some_and(|t| t <= now && now < t.saturating_add(STS_RETRY_FETCH));
    match (new_id || aging) && !tried_lately {
        true => Plan::Fetch {
            fallback: Some(policy),
            refresh: !new_id,
        },
        false => Plan::Cached(policy),
    }
}

/// What a delivery child needs to find a domain's policy.
pub struct Lookup<'a, 'c> {
    pub router: &'a mut Router<'c>,
    /// The trust anchors for the fetch; Err says why there are none.
    pub anchors: Result<&'a Anchors, &'a str>,
    pub spool_dir: &'a Path,
    /// 443; another only where `mta_sts_port` says so (tests).
    pub port: u16,
    pub log: &'a mut Log,
}

/// The policy in force for `domain`: None when it has none (or `mode:
/// none`), whatever failed on the way (each failure logged).
pub fn policy_for(domain: &str, lookup: &mut Lookup<'_, '_>) -> Option<Applied> {
    let Some(domain) = policy_domain(domain) else {
        return None; // an address literal, or a name no policy host can have
    };
    let now = crate::system::now().0;
    let cache = CacheFile::new(lookup.spool_dir, &domain);
    let cached = cache.read();
    let announced = announced_id(&domain, lookup);
    let policy = match plan(announced.as_deref(), cached.as_ref(), now) {
        Plan::Nothing => None,
        Plan::Cached(policy) => Some(policy),
        Plan::Fetch { fallback, refresh } => {
            let known = Known {
                domain: &domain,
                cache: &cache,
                cached,
                announced,
                now,
            };
            fetch_and_cache(&known, fallback, refresh, lookup)
        }
    };
    policy
        .filter(|p| p.mode != Mode::None)
        .map(|policy| Applied { domain, policy })
}

/// The `id` the domain's `_mta-sts` TXT record announces; None when there
/// is none, or it cannot be had (logged).
fn announced_id(domain: &str, lookup: &mut Lookup<'_, '_>) -> Option<String> {
    match lookup.router.txt(&format!("_mta-sts.{domain}")) {
        Ok(records) => record_id(&records).unwrap_or_else(|why| {
            lookup
                .log
                .info(&format!("MTA-STS record of {domain} ignored: {why}"));
            None
        }),
        Err(why) => {
            lookup.log.info(&format!("MTA-STS: {why}"));
            None
        }
    }
}

/// What a fetch of a domain's policy starts from.
struct Known<'a> {
    domain: &'a str,
    cache: &'a CacheFile,
    cached: Option<Cached>,
    announced: Option<String>,
    now: u64,
}

/// Fetches the policy and caches it under the announced `id` (a refresh
/// without one keeps the cached `id`); when that fails, `fallback` serves
/// and the cache notes the try, so that the next deliveries do not try
/// again before [`STS_RETRY_FETCH`].
fn fetch_and_cache(
    known: &Known<'_>,
    fallback: Option<Policy>,
    refresh: bool,
    lookup: &mut Lookup<'_, '_>,
) -> Option<Policy> {
    let (domain, now) = (known.domain, known.now);
    let kept_id = known.cached.as_ref().map(|c| c.id.clone());
    let Some(id) = known.announced.clone().or(kept_id) else {
        return fallback; // unreachable: a fetch has an id to cache under
    };
    let what = if refresh { "refreshed" } else { "fetched" };
    match fetch(domain, lookup) {
        Ok((text, policy)) => {
            lookup.log.info(&format!(
                "MTA-STS policy of {domain} {what} (id {id}): mode {}, max_age {}",
                mode_word(policy.mode),
                policy.max_age
            ));
            let fresh = Cached {
                id,
                fetched: now,
                text,
                tried: None,
            };
            known.cache.write(&fresh, lookup.log);
            Some(policy)
        }
        Err(why) => {
            let fallback_says = match fallback {
                Some(_) => "the cached policy serves",
                None => "no policy applies",
            };
            lookup.log.info(&format!(
                "MTA-STS policy of {domain} not {what}: {why}; {fallback_says}"
            ));
            if let (Some(cached), Some(_)) = (&known.cached, &fallback)
                && let Err(e) = known.cache.note_tried(cached, now)
            {
                known.cache.log_unwritten(&e, lookup.log);
            }
            fallback
        }
    }
}

/// A recipient domain as its policy's names are written: lower case,
/// without a trailing dot, and a name in Unicode as its A-labels (IDNA, as
/// the MX look-up resolves it: `bücher.example` is `xn--bcher-kva.example`,
/// whose `_mta-sts` record, policy host and cache file these are); None
/// when no policy host can have it (an address literal, a name that is no
/// domain).
pub fn policy_domain(domain: &str) -> Option<String> {
    let domain = domain.trim_end_matches('.');
    let ascii = match domain.is_ascii() {
        true => domain.to_string(),
        false => hickory_resolver::proto::rr::Name::from_utf8(domain)
            .ok()?
            .to_ascii(),
    };
    let ascii = ascii.trim_end_matches('.').to_ascii_lowercase();
    is_host_name(&ascii).then_some(ascii)
}

/// Fetches and parses `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`
/// (section 3.3): status 200, `text/plain`, at most [`STS_MAX_POLICY`]
/// bytes, no redirect; the text and its policy.
fn fetch(domain: &str, lookup: &mut Lookup<'_, '_>) -> Result<(String, Policy), String> {
    let anchors = lookup.anchors.map_err(str::to_string)?;
    let host = format!("mta-sts.{domain}");
    let addrs = lookup.router.addresses(&host)?;
    let url = match lookup.port {
        443 => format!("https://{host}/.well-known/mta-sts.txt"),
        port => format!("https://{host}:{port}/.well-known/mta-sts.txt"),
    };
    let response = https::get(
        anchors,
        &https::Get {
            url: &url,
            addrs: &addrs,
            timeout: STS_FETCH_TIMEOUT,
            max_body: STS_MAX_POLICY,
        },
    )
    .map_err(|e| format!("{url}: {e}"))?;
    let text = accepted(&response).map_err(|e| format!("{url}: {e}"))?;
    let policy = parse_policy(&text).map_err(|e| format!("{url}: policy refused: {e}"))?;
    Ok((text, policy))
}

/// The policy text of a response that may carry one.
fn accepted(response: &https::Response) -> Result<String, String> {
    match response.status {
        200 => {}
        s @ 300..=399 => return Err(format!("HTTP status {s} (redirects are not followed)")),
        s => return Err(format!("HTTP status {s}")),
    }
    match response.media_type.as_deref() {
        Some("text/plain") => {}
        other => {
            return Err(format!(
                "served as {}, not text/plain",
                shorten(other.unwrap_or("no Content-Type"))
            ));
        }
    }
    String::from_utf8(response.body.clone()).map_err(|_| "the policy is not UTF-8".to_string())
}

/// Removes from `sts/` the policies that can no longer serve (their
/// `max_age` has passed: a new fetch is needed in any case) and the
/// temporary files of delivery children killed while writing one, older
/// than `min_age`. Without this, `sts/` keeps a file for every domain ever
/// mailed. At most `limits::STS_PRUNE_MAX` files are looked at, in the
/// directory's order. A file this version cannot read (a later version's)
/// is left alone. Returns how many files were removed.
pub fn prune(spool_dir: &Path, now: u64, min_age: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(spool_dir.join(STS_DIR)) else {
        return 0; // no sts/ yet
    };
    // Names are cheap to list; reading is what costs. A random start, so
    // that over passes every file gets looked at, however many there are.
    let names: Vec<std::ffi::OsString> = entries.flatten().map(|e| e.file_name()).collect();
    let start = random_below(names.len());
    let mut removed = 0;
    let window = names[start..].iter().chain(&names[..start]);
    for name in window.take(crate::limits::STS_PRUNE_MAX) {
        let path = spool_dir.join(STS_DIR).join(name);
        if is_stale(spool_dir, &path, now, min_age) && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether a file of `sts/` can go: a policy past its `max_age`, or a
/// temporary file older than `min_age`. Never follows a symbolic link.
fn is_stale(spool_dir: &Path, path: &Path, now: u64, min_age: std::time::Duration) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if name.starts_with('.') && name.ends_with(".tmp") {
        let age = meta.modified().ok().and_then(|m| m.elapsed().ok());
        return meta.is_file() && age.is_some_and(|a| a >= min_age);
    }
    let cache = CacheFile::new(spool_dir, &name);
    is_host_name(&name) && cache.read().is_some_and(|c| c.policy_at(now).is_none())
}

/// A number below `n` (0 when `n` is 0), from the standard library's
/// randomly keyed hasher: enough to spread work, not for secrets.
fn random_below(n: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    if n == 0 {
        0
    } else {
        (random % n as u64) as usize
    }
}

/// `SPOOL_DIR/sts/DOMAIN`.
struct CacheFile {
    dir: PathBuf,
    path: PathBuf,
}

impl CacheFile {
    fn new(spool_dir: &Path, domain: &str) -> CacheFile {
        let dir = spool_dir.join(STS_DIR);
        CacheFile {
            path: dir.join(domain),
            dir,
        }
    }

    /// The cached policy; None when there is none, or it is not one this
    /// version reads (left alone: a later version's is rewritten only on
    /// the next fetch).
    fn read(&self) -> Option<Cached> {
        Cached::decode(&self.read_text()?)
    }

    fn read_text(&self) -> Option<String> {
        use std::io::Read;
        let file = crate::spool::open_regular(&self.path).ok()?;
        let mut text = String::new();
        // A policy is at most STS_MAX_POLICY bytes; the head is a few lines.
        file.take(STS_MAX_POLICY + 1024)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    }

    /// Notes a failed fetch at `now` in the file, when it still holds the
    /// policy `read`: another delivery child may have fetched a newer one
    /// meanwhile (a fetch takes up to [`STS_FETCH_TIMEOUT`]), which the
    /// older must not replace. The head's other lines stay as they are (a
    /// later version's keys).
    fn note_tried(&self, read: &Cached, now: u64) -> std::io::Result<()> {
        let Some(text) = self.read_text() else {
            return Ok(());
        };
        let unchanged = Cached::decode(&text)
            .is_some_and(|c| (&c.id, c.fetched, &c.text) == (&read.id, read.fetched, &read.text));
        match (unchanged, with_tried(&text, now)) {
            (true, Some(noted)) => self.write_text(&noted),
            _ => Ok(()),
        }
    }

    /// Writes the cache file as a whole; failing to is logged, and costs
    /// only a fetch next time.
    fn write(&self, cached: &Cached, log: &mut Log) {
        if let Err(e) = self.write_text(&cached.encode()) {
            self.log_unwritten(&e, log);
        }
    }

    fn log_unwritten(&self, e: &std::io::Error, log: &mut Log) {
        log.info(&format!(
            "MTA-STS policy not cached in {}: {e}",
            self.path.display()
        ));
    }

    /// Writes the file atomically, making `sts/` where it may.
    fn write_text(&self, text: &str) -> std::io::Result<()> {
        self.ensure_dir()
            .and_then(|()| crate::system::write_atomically(&self.path, text.as_bytes(), 0o640))
    }

    /// `sts/` as `slots/` is: mode 02770, the spool's group.
    fn ensure_dir(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(0o770).create(&self.dir) {
            Ok(()) => crate::slots::share(&self.dir, self.dir.parent().unwrap_or(&self.dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prune_removes_expired_policies_and_old_temporary_files_only() {
        let spool =
            std::env::temp_dir().join(format!("spoolmail-sts-prune-{}", std::process::id()));
        let dir = spool.join(STS_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let policy = |fetched| Cached {
            id: "1".into(),
            fetched,
            text: "version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 100\n".into(),
            tried: None,
        };
        let now = 1_800_000_000;
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        write("expired.example", &policy(now - 100).encode());
        write("live.example", &policy(now - 99).encode());
        write("later.example", "SPOOLMAIL-STS 2\nid 1\n\nwhatever\n");
        write(".live.example.123.tmp", "half");
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(prune(&spool, now, hour), 1);
        let mut left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [".live.example.123.tmp", "later.example", "live.example"]
        );
        assert_eq!(prune(&spool, now, std::time::Duration::ZERO), 1);
        assert!(!dir.join(".live.example.123.tmp").exists());
        assert_eq!(prune(&spool.join("none"), now, hour), 0);
        // Past STS_PRUNE_MAX files, each pass starts at a random one: the
        // expired policy behind many live ones is found in a few passes.
        for i in 0..crate::limits::STS_PRUNE_MAX + 10 {
            write(&format!("live{i:05}.example"), &policy(now).encode());
        }
        write("zzz-expired.example", &policy(now - 100).encode());
        let found = (0..20).any(|_| prune(&spool, now, hour) == 1);
        assert!(found, "the expired policy was never looked at");
        std::fs::remove_dir_all(&spool).unwrap();
    }

    #[test]
    fn the_txt_record() {
        let ok = |id: &str| Ok(Some(id.to_string()));
        for (records, expected) in [
            (vec!["v=STSv1; id=20160831085700Z;"], ok("20160831085700Z")),
            (vec!["v=STSv1;id=abc"], ok("abc")),
            (vec!["v=STSv1 ; id=abc ; ext=1"], ok("abc")),
            (vec!["v=spf1 -all", "v=STSv1; id=1"], ok("1")),
            (vec![], Ok(None)),
            (vec!["v=spf1 -all"], Ok(None)),
            (vec!["v=STSv10; id=1"], Ok(None)),
            (
                vec!["v=STSv1; id=1", "v=STSv1; id=2"],
                Err("2 records begin v=STSv1".into()),
            ),
            (vec!["v=STSv1;"], Err("it has no id".into())),
            (
                vec!["v=STSv1; id=a-b"],
                Err("its id `a-b` is not 1 to 32 letters and digits".into()),
            ),
            (
                vec!["v=STSv1; id=123456789012345678901234567890123"],
                Err(
                    "its id `123456789012345678901234567890123` is not 1 to 32 letters and digits"
                        .into(),
                ),
            ),
        ] {
            assert_eq!(record_id(&strings(&records)), expected, "{records:?}");
        }
    }

    #[test]
    fn policies() {
        let policy = |mode, mx: &[&str], max_age| {
            Ok(Policy {
                mode,
                mx: strings(mx),
                max_age,
            })
        };
        for (text, expected) in [
            (
                "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n",
                policy(Mode::Enforce, &["mail.example.com", "*.example.net"], 86400),
            ),
            (
                "version: STSv1\r\nmode: testing\r\nmx: MX.Example.COM.\r\nmax_age:604800\r\n",
                policy(Mode::Testing, &["mx.example.com"], 604800),
            ),
            (
                "version: STSv1\nmode: none\nmax_age: 1",
                policy(Mode::None, &[], 1),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\nfuture: x\n",
                policy(Mode::Enforce, &["a.example"], STS_MAX_AGE),
            ),
            (
                "version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 5\n",
                policy(Mode::Enforce, &["a.example"], 5),
            ),
            (
                "version: STSv2\nmode: enforce\nmx: a\nmax_age: 5",
                Err("version is `STSv2`, not STSv1".into()),
            ),
            (
                "mode: enforce\nmx: a\nmax_age: 5",
                Err("version is missing, not STSv1".into()),
            ),
            (
                "version: STSv1\nmode: strict\nmx: a\nmax_age: 5",
                Err("mode is `strict`".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a\nmax_age: -5",
                Err("max_age is `-5`".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a\nmax_age: 12345678901",
                Err("max_age is `12345678901`".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmax_age: 5",
                Err("it lists no mx".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a b\nmax_age: 5",
                Err("mx `a b` is not a host name".into()),
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 5",
                Err("mx `a.*.example` is not a host name".into()),
            ),
            (
                "<html><body>hello</body></html>",
                Err("line `<html><body>hello</body></html>` is not `key: value`".into()),
            ),
            ("", Err("version is missing, not STSv1".into())),
        ] {
            assert_eq!(parse_policy(text), expected, "{text:?}");
        }
    }

    #[test]
    fn responses_that_may_carry_a_policy() {
        let response = |status, media_type: Option<&str>, body: &[u8]| https::Response {
            status,
            media_type: media_type.map(str::to_string),
            body: body.to_vec(),
        };
        let text = Some("text/plain");
        for (r, expected) in [
            (
                response(200, text, b"version: STSv1"),
                Ok("version: STSv1".to_string()),
            ),
            (
                response(301, text, b""),
                Err("HTTP status 301 (redirects are not followed)".to_string()),
            ),
            (response(404, text, b""), Err("HTTP status 404".into())),
            (
                response(200, Some("text/html"), b""),
                Err("served as text/html, not text/plain".into()),
            ),
            (
                response(200, None, b""),
                Err("served as no Content-Type, not text/plain".into()),
            ),
            (
                response(200, text, b"\xff\xfe"),
                Err("the policy is not UTF-8".into()),
            ),
        ] {
            assert_eq!(accepted(&r), expected, "{r:?}");
        }
    }

    #[test]
    fn mx_patterns() {
        for (pattern, host, expected) in [
            ("mx1.example.com", "mx1.example.com", true),
            ("mx1.example.com", "MX1.Example.Com.", true),
            ("mx1.example.com", "mx2.example.com", false),
            ("*.example.com", "mx1.example.com", true),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", "example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "mx1.example.com.evil.test", false),
            ("example.com", "example.com", true),
        ] {
            assert_eq!(mx_matches(pattern, host), expected, "{pattern} {host}");
        }
    }

    #[test]
    fn cache_files_read_back_and_expire() {
        let c = Cached {
            id: "20260101".into(),
            fetched: 1000,
            text: "version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 100\n".into(),
            tried: None,
        };
        let text = c.encode();
        assert!(text.starts_with("SPOOLMAIL-STS 1\nid 20260101\nfetched 1000\n\n"));
        assert_eq!(Cached::decode(&text), Some(c.clone()));
        let tried = Cached {
            tried: Some(1050),
            ..c.clone()
        };
        let text = tried.encode();
        assert!(text.starts_with("SPOOLMAIL-STS 1\nid 20260101\nfetched 1000\ntried 1050\n\n"));
        assert_eq!(Cached::decode(&text), Some(tried));
        assert!(c.policy_at(1099).is_some());
        assert!(c.policy_at(1100).is_none());
        assert_eq!(
            Cached::decode("SPOOLMAIL-STS 2\nid 1\nfetched 1\n\nx"),
            None
        );
        assert_eq!(Cached::decode("garbage"), None);
        assert_eq!(Cached::decode("SPOOLMAIL-STS 1\nid 1\n\nx"), None);
        let later = "SPOOLMAIL-STS 1\nid 1\nfetched 5\nnew key\n\ntext";
        assert_eq!(Cached::decode(later).map(|c| c.fetched), Some(5));
    }

    #[test]
    fn what_a_delivery_does_about_a_policy() {
        let text = "version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 10000\n";
        let policy = parse_policy(text).unwrap();
        let cached = |fetched, tried| Cached {
            id: "1".into(),
            fetched,
            text: text.into(),
            tried,
        };
        let hour = STS_RETRY_FETCH;
        let fetch = |fallback: bool, refresh| Plan::Fetch {
            fallback: fallback.then(|| policy.clone()),
            refresh,
        };
        let serves = Plan::Cached(policy.clone());
        let now = 1_000_000;
        // (announced id, cache) -> plan
        let cases = [
            (None, None, Plan::Nothing),
            (Some("1"), None, fetch(false, false)),
            // Within half its max_age, under the announced id or none.
            (Some("1"), Some(cached(now - 4999, None)), serves.clone()),
            (None, Some(cached(now - 4999, None)), serves.clone()),
            // A new id fetches, the cached policy as the fallback.
            (Some("2"), Some(cached(now - 10, None)), fetch(true, false)),
            // Past half its max_age: refreshed, with or without a record.
            (Some("1"), Some(cached(now - 5000, None)), fetch(true, true)),
            (None, Some(cached(now - 9999, None)), fetch(true, true)),
            // A failed try within the hour: the cached policy serves.
            (
                Some("1"),
                Some(cached(now - 6000, Some(now - hour + 1))),
                serves.clone(),
            ),
            (
                Some("2"),
                Some(cached(now - 10, Some(now - 5))),
                serves.clone(),
            ),
            // An hour later it is tried again.
            (
                Some("1"),
                Some(cached(now - 6000, Some(now - hour))),
                fetch(true, true),
            ),
            (
                Some("2"),
                Some(cached(now - 10, Some(now - hour))),
                fetch(true, false),
            ),
            // Expired: as if nothing were cached, whatever was tried.
            (
                Some("1"),
                Some(cached(now - 10000, Some(now - 5))),
                fetch(false, false),
            ),
            (None, Some(cached(now - 10000, None)), Plan::Nothing),
            // The clock set back: a fetch or a try in the future refreshes.
            (
                Some("1"),
                Some(cached(now + 86400, None)),
                fetch(true, true),
            ),
            (
                Some("1"),
                Some(cached(now - 6000, Some(now + 86400))),
                fetch(true, true),
            ),
            (
                Some("2"),
                Some(cached(now - 10, Some(now + 1))),
                fetch(true, false),
            ),
        ];
        for (announced, cache, want) in cases {
            let got = plan(announced, cache.as_ref(), now);
            assert_eq!(got, want, "{announced:?} {cache:?}");
        }
    }

    /// A failed fetch notes its try in the file it read, and only there: a
    /// policy another delivery child fetched meanwhile is not replaced by
    /// the older one, and a later version's head lines are kept.
    #[test]
    fn a_failed_fetch_notes_its_try_only_on_the_policy_it_read() {
        let spool =
            std::env::temp_dir().join(format!("spoolmail-sts-tried-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&spool);
        let now = 1_800_000_000;
        let text = |mx: &str| format!("version: STSv1\nmode: enforce\nmx: {mx}\nmax_age: 10000\n");
        let (old, newer) = (text("old.example"), text("new.example"));
        let head = |id, fetched, more: &str| {
            format!("SPOOLMAIL-STS 1\nid {id}\nfetched {fetched}\n{more}\n")
        };
        let tried = format!("tried {now}\n");
        // (what the child read, what the file holds when its fetch fails,
        // what the file holds after)
        let read = head(1, now - 6000, "") + &old;
        let cases = [
            (
                read.clone(),
                read.clone(),
                Some(head(1, now - 6000, &tried) + &old),
            ),
            (
                head(1, now - 6000, "tried 5\n") + &old,
                head(1, now - 6000, "tried 5\n") + &old,
                Some(head(1, now - 6000, &tried) + &old),
            ),
            // Another child fetched a policy meanwhile: a new id, or the
            // same id refreshed.
            (read.clone(), head(2, now - 5, "") + &newer, None),
            (read.clone(), head(1, now - 5, "") + &old, None),
            (read.clone(), head(1, now - 6000, "") + &newer, None),
            (
                head(1, now - 6000, "later-key x\n") + &old,
                head(1, now - 6000, "later-key x\n") + &old,
                Some(head(1, now - 6000, &format!("later-key x\n{tried}")) + &old),
            ),
        ];
        std::fs::create_dir_all(&spool).unwrap();
        for (read, then, want) in cases {
            let cache = CacheFile::new(&spool, "race.example");
            cache.write_text(&read).unwrap();
            let cached = cache.read().unwrap();
            cache.write_text(&then).unwrap();
            cache.note_tried(&cached, now).unwrap();
            let after = std::fs::read_to_string(&cache.path).unwrap();
            assert_eq!(after, want.unwrap_or(then), "{read}");
        }
        std::fs::remove_dir_all(&spool).unwrap();
    }

    #[test]
    fn a_domain_in_unicode_has_its_policy_under_its_a_labels() {
        for (domain, want) in [
            ("Example.COM.", Some("example.com")),
            ("bücher.example", Some("xn--bcher-kva.example")),
            ("BÜCHER.example.", Some("xn--bcher-kva.example")),
            ("xn--bcher-kva.example", Some("xn--bcher-kva.example")),
            ("例え.テスト", Some("xn--r8jz45g.xn--zckzah")),
            ("[192.0.2.1]", None),
            ("a..b", None),
            ("", None),
            ("bad_name.example", None),
        ] {
            assert_eq!(policy_domain(domain).as_deref(), want, "{domain:?}");
        }
    }

    #[test]
    fn names_a_cache_file_may_have() {
        for (name, expected) in [
            ("example.com", true),
            ("mx-1.example", true),
            ("", false),
            ("..", false),
            ("a/b", false),
            (".example", false),
            ("example..com", false),
            ("[192.0.2.1]", false),
        ] {
            assert_eq!(is_host_name(name), expected, "{name:?}");
        }
    }
}
