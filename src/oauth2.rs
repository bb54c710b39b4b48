//! OAuth 2.0 access tokens for XOAUTH2 with a smarthost, kept alive by
//! spoolmail itself: the `refresh_token` grant (RFC 6749 section 6) with a
//! refresh token saved by `spoolctl oauth2 authorize` (the device
//! authorization grant, RFC 8628), or the `client_credentials` grant
//! (section 4.4, Microsoft 365's app-only sending).
//!
//! The access token is cached in the spool (`oauth2/token`, see
//! doc/SPOOL.md) with its expiry, so that every delivery child does not ask
//! the token endpoint again; it is refreshed [`OAUTH2_REFRESH_MARGIN`]
//! before it expires, and when the server refuses it, only by the delivery
//! children of root's queue runs (or the spool's group's): a user's own run
//! uses a cached token while it has [`OAUTH2_USE_MARGIN`] left, and
//! otherwise leaves the mail for the next such run (see
//! [`Endpoint::may_refresh`] for why). One child refreshes
//! at a time, under an flock on `oauth2/lock`: the others wait for it and
//! take the token it cached. A refresh token the endpoint sends back (a
//! rotation: Microsoft sends a new one on every use) is saved in its file
//! before the access token is used, so that a crash never leaves only the
//! spent one on disk.
//!
//! Every failure here is a local fault (the mail waits, never bounces for
//! it), and its text says what to run.

use crate::config::{Config, OAuth2 as Settings, OAuth2Grant as Grant};
use crate::https;
use crate::limits::{
    OAUTH2_DEFAULT_LIFETIME, OAUTH2_DEVICE_WAIT, OAUTH2_LOCK_WAIT, OAUTH2_MAX_LIFETIME,
    OAUTH2_MAX_RESPONSE, OAUTH2_REFRESH_MARGIN, OAUTH2_REQUEST_TIMEOUT, OAUTH2_USE_MARGIN,
};
use crate::tls::Anchors;
use serde_json::Value;
use std::fs::File;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// The directory in the spool.
pub const OAUTH2_DIR: &str = "oauth2";

/// What to run when the refresh token no longer serves.
pub const AUTHORIZE_HINT: &str = "run `spoolctl oauth2 authorize`";

/// Why a user's own queue run waits: the token is refreshed only by root's
/// runs (the queue timer, or `sendmail -q` as root).
const NOT_REFRESHED_HERE: &str = "the OAuth2 access token needs a refresh, which only a queue \
     run of root or the spool's group makes (the queue timer, or `sendmail -q` as root)";

/// The client secret, when there is one.
fn client_secret(settings: &Settings) -> Result<Option<String>, String> {
    (settings.client_secret_file.as_deref())
        .map(|f| crate::auth::first_line(f, "auth_oauth2_client_secret_file"))
        .transpose()
}

/// The form of a token request under the configured grant.
fn token_form(settings: &Settings) -> Result<String, String> {
    let secret = client_secret(settings)?;
    let mut pairs: Vec<(&str, String)> = Vec::new();
    match &settings.refresh_token_file {
        Some(file) => {
            let token = crate::auth::first_line(file, "auth_oauth2_refresh_token_file")
                .map_err(|e| format!("{e}; {AUTHORIZE_HINT}"))?;
            pairs.push(("grant_type", "refresh_token".into()));
            pairs.push(("refresh_token", token));
        }
        None => pairs.push(("grant_type", "client_credentials".into())),
    }
    pairs.push(("client_id", settings.client_id.clone()));
    if let Some(secret) = secret {
        pairs.push(("client_secret", secret));
    }
    if let Some(scope) = &settings.scope {
        pairs.push(("scope", scope.clone()));
    }
    Ok(form(&pairs))
}

/// `application/x-www-form-urlencoded` (the WHATWG URL standard's
/// serializer, as RFC 6749 appendix B asks): unreserved bytes as they are,
/// space as `+`, everything else (UTF-8) as `%XX`.
pub fn form<V: AsRef<str>>(pairs: &[(&str, V)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, name);
        out.push('=');
        encode_into(&mut out, value.as_ref());
    }
    out
}

fn encode_into(out: &mut String, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// What a token endpoint issued (RFC 6749 section 5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub access_token: String,
    /// Seconds from now.
    pub expires_in: u64,
    /// A new refresh token, to be saved before anything else.
    pub refresh_token: Option<String>,
}

/// Why a token endpoint issued nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An RFC 6749 section 5.2 error (`invalid_grant`, RFC 8628's
    /// `authorization_pending`...), with its description.
    Error { code: String, description: String },
    /// Anything else: no JSON, no token, an HTTP status alone.
    Other(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Error { code, description } if description.is_empty() => f.write_str(code),
            Refusal::Error { code, description } => write!(f, "{code} ({description})"),
            Refusal::Other(text) => f.write_str(text),
        }
    }
}

/// A token endpoint's response, read.
pub fn token_response(status: u16, body: &[u8]) -> Result<Issued, Refusal> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        (json.as_ref())
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(code) = field("error") {
        let description = field("error_description").unwrap_or_default();
        return Err(Refusal::Error {
            code: printable(&code),
            description: printable(description.lines().next().unwrap_or("")),
        });
    }
    if status != 200 {
        return Err(Refusal::Other(format!("HTTP status {status}")));
    }
    let Some(json) = json.as_ref().filter(|j| j.is_object()) else {
        return Err(Refusal::Other("the response is not a JSON object".into()));
    };
    let token_type = field("token_type").unwrap_or_else(|| "bearer".into());
    if !token_type.eq_ignore_ascii_case("bearer") {
        let shown = printable(&token_type);
        return Err(Refusal::Other(format!("token_type {shown}, not bearer")));
    }
    let Some(access_token) = field("access_token").filter(|t| usable_token(t)) else {
        return Err(Refusal::Other(
            "no usable access_token in the response".into(),
        ));
    };
    Ok(Issued {
        access_token,
        expires_in: seconds(json.get("expires_in")).unwrap_or(OAUTH2_DEFAULT_LIFETIME),
        refresh_token: field("refresh_token").filter(|t| usable_token(t)),
    })
}

/// A number of seconds, as a JSON number or (as some servers send it) a
/// string of digits.
fn seconds(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A token goes into a file's one line and an SMTP command: printable
/// ASCII only.
fn usable_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 16 * 1024 && token.bytes().all(|b| b.is_ascii_graphic())
}

/// A server's word, fit for one log line or root's terminal: what
/// [`crate::model::sanitize`] makes of reply text (no control characters,
/// bidi and separator characters shown as `<U+202E>`), cut to 200.
fn printable(text: &str) -> String {
    crate::model::excerpt(text, 200)
}

/// The cached access token (`oauth2/token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub token: String,
    /// Unix seconds.
    pub expires: u64,
    /// Whose token it is: another endpoint's or client's is not used.
    pub token_url: String,
    pub client_id: String,
}

const CACHE_MAGIC: &str = "SPOOLMAIL-OAUTH2 1";

impl Cached {
    pub fn encode(&self) -> String {
        format!(
            "{CACHE_MAGIC}\ntoken_url {}\nclient_id {}\nexpires {}\ntoken {}\n",
            self.token_url, self.client_id, self.expires, self.token
        )
    }

    /// None when the text is not a whole cache file of this version.
    pub fn decode(text: &str) -> Option<Cached> {
        let mut lines = text.lines();
        if lines.next()? != CACHE_MAGIC || !text.ends_with('\n') {
            return None;
        }
        let (mut url, mut client, mut expires, mut token) = (None, None, None, None);
        for line in lines {
            let (key, value) = line.split_once(' ')?;
            match key {
                "token_url" => url = Some(value.to_string()),
                "client_id" => client = Some(value.to_string()),
                "expires" => expires = value.parse().ok(),
                "token" => token = Some(value.to_string()).filter(|t| usable_token(t)),
                _ => {} // a later version's key
            }
        }
        Some(Cached {
            token: token?,
            expires: expires?,
            token_url: url?,
            client_id: client?,
        })
    }

    /// Whether it serves `settings` at `now` (Unix seconds): theirs, and
    /// with more than `margin` seconds left.
    pub fn serves(&self, settings: &Settings, now: u64, margin: u64) -> bool {
        self.token_url == settings.token_url
            && self.client_id == settings.client_id
            && self.expires > now.saturating_add(margin)
    }
}

/// What a token request needs besides the settings: the trust anchors,
/// a way to find the endpoint's addresses (the MX look-ups' resolver), and
/// the spool.
pub struct Endpoint<'a> {
    pub settings: &'a Settings,
    pub anchors: &'a Anchors,
    pub resolve: &'a mut dyn FnMut(&str) -> Result<Vec<IpAddr>, String>,
    pub spool_dir: &'a Path,
    /// Whether this process may ask the endpoint for a token: only a queue
    /// run of root, the spool's group or `admin_group`
    /// (`system::pass_owner`). A user's own delivery could otherwise be
    /// stopped by its user while it holds the refresh lock (every other
    /// delivery through the smarthost waiting on it), be killed between the
    /// endpoint's rotation of the refresh token and its save (the new one
    /// lost), or own the rotated refresh token file.
    pub may_refresh: bool,
}

/// An access token to use now: the cached one while it serves, else a new
/// one (see the module's notes). `rejected`: the server refused this one,
/// so it is not used again even if it has not expired.
pub fn access_token(ep: &mut Endpoint<'_>, rejected: Option<&str>) -> Result<String, String> {
    let cache = ep.spool_dir.join(OAUTH2_DIR).join("token");
    let now = crate::system::now().0;
    let margin = match ep.may_refresh {
        true => OAUTH2_REFRESH_MARGIN,
        false => OAUTH2_USE_MARGIN,
    };
    let fresh =
        |c: &Cached| c.serves(ep.settings, now, margin) && Some(c.token.as_str()) != rejected;
    if let Some(c) = read_cache(&cache).filter(fresh) {
        return Ok(c.token);
    }
    if !ep.may_refresh {
        return Err(NOT_REFRESHED_HERE.into());
    }
    let _lock = lock(ep.spool_dir)?;
    // Another child may have refreshed while this one waited.
    if let Some(c) = read_cache(&cache).filter(|c| {
        c.serves(ep.settings, crate::system::now().0, margin) && Some(c.token.as_str()) != rejected
    }) {
        return Ok(c.token);
    }
    let issued = request_token(ep)?;
    if let (Some(new), Some(file)) = (&issued.refresh_token, &ep.settings.refresh_token_file) {
        save_secret(file, new).map_err(|e| {
            format!(
                "the token endpoint rotated the refresh token, but it cannot be saved in {}: \
                 {e}; {AUTHORIZE_HINT} once the file can be written",
                file.display()
            )
        })?;
    }
    let cached = Cached {
        token: issued.access_token,
        expires: expiry(crate::system::now().0, issued.expires_in),
        token_url: ep.settings.token_url.clone(),
        client_id: ep.settings.client_id.clone(),
    };
    crate::system::write_atomically(&cache, cached.encode().as_bytes(), 0o640).map_err(|e| {
        format!(
            "cannot cache the OAuth2 access token in {}: {e}",
            cache.display()
        )
    })?;
    Ok(cached.token)
}

/// When a token issued at `now` for `expires_in` seconds expires: the
/// server's lifetime is believed up to [`OAUTH2_MAX_LIFETIME`], without
/// overflow whatever it claims.
fn expiry(now: u64, expires_in: u64) -> u64 {
    now.saturating_add(expires_in.min(OAUTH2_MAX_LIFETIME))
}

/// One request to the token endpoint under the configured grant; an Err
/// says what went wrong and what to do.
fn request_token(ep: &mut Endpoint<'_>) -> Result<Issued, String> {
    let settings = ep.settings;
    let form = token_form(settings)?;
    let hint = match settings.grant() {
        Grant::RefreshToken => format!("if it persists, {AUTHORIZE_HINT}"),
        Grant::ClientCredentials => {
            "check auth_oauth2_client_id, auth_oauth2_client_secret_file and the app's permissions"
                .into()
        }
    };
    let url = &settings.token_url;
    let response = post(ep.anchors, ep.resolve, url, &form)
        .map_err(|e| format!("OAuth2 token endpoint {url}: {e}; the mail waits ({hint})"))?;
    token_response(response.status, &response.body).map_err(|refusal| match &refusal {
        Refusal::Error { code, .. }
            if code == "invalid_grant" && settings.grant() == Grant::RefreshToken =>
        {
            format!(
                "OAuth2 token endpoint {url} refused the refresh token: {refusal}; \
                 {AUTHORIZE_HINT}"
            )
        }
        _ => format!("OAuth2 token endpoint {url} refused: {refusal}; the mail waits ({hint})"),
    })
}

/// What a device authorization endpoint answered (RFC 8628 section 3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    /// Google calls it `verification_url`.
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    /// Seconds the codes are good for.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// A device authorization endpoint's response, read.
pub fn device_response(status: u16, body: &[u8]) -> Result<DeviceAuthorization, Refusal> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        (json.as_ref())
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
            .map(printable)
    };
    if let Some(code) = field("error") {
        let description = field("error_description").unwrap_or_default();
        return Err(Refusal::Error { code, description });
    }
    if status != 200 {
        return Err(Refusal::Other(format!("HTTP status {status}")));
    }
    let missing = |name: &str| Refusal::Other(format!("no {name} in the response"));
    let device_code = (json.as_ref())
        .and_then(|j| j.get("device_code"))
        .and_then(Value::as_str)
        .filter(|c| usable_token(c))
        .ok_or_else(|| missing("device_code"))?
        .to_string();
    let verification_uri = field("verification_uri")
        .or_else(|| field("verification_url"))
        .ok_or_else(|| missing("verification_uri"))?;
    let number = |name: &str| seconds(json.as_ref().and_then(|j| j.get(name)));
    Ok(DeviceAuthorization {
        device_code,
        user_code: field("user_code").ok_or_else(|| missing("user_code"))?,
        verification_uri,
        verification_uri_complete: field("verification_uri_complete"),
        expires_in: number("expires_in").unwrap_or(OAUTH2_DEVICE_WAIT),
        interval: number("interval").unwrap_or(5).clamp(1, 60),
    })
}

/// What one poll of the token endpoint says (RFC 8628 section 3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    Done(Issued),
    /// `authorization_pending`: ask again after the interval.
    Pending,
    /// `slow_down`: ask again, 5 seconds more apart from now on.
    SlowDown,
    Failed(Refusal),
}

impl Poll {
    pub fn of(status: u16, body: &[u8]) -> Poll {
        match token_response(status, body) {
            Ok(issued) => Poll::Done(issued),
            Err(Refusal::Error { code, .. }) if code == "authorization_pending" => Poll::Pending,
            Err(Refusal::Error { code, .. }) if code == "slow_down" => Poll::SlowDown,
            Err(refusal) => Poll::Failed(refusal),
        }
    }

    /// The interval (seconds) after this answer.
    pub fn next_interval(&self, interval: u64) -> u64 {
        match self {
            Poll::SlowDown => interval + 5,
            _ => interval,
        }
    }
}

/// `spoolctl oauth2 authorize`: the device authorization grant. Prints
/// (through `say`) where to go and the code to enter, polls the token
/// endpoint until the user has agreed, saves the refresh token in
/// `auth_oauth2_refresh_token_file` (mode 0640, the spool's group) and
/// caches the access token. Err says why not.
pub fn authorize(config: &Config, say: &mut dyn FnMut(&str)) -> Result<(), String> {
    let settings = config
        .oauth2()
        .ok_or("the auth_oauth2_* keys are not set (see the README's OAuth2 set-up)")?;
    let file = (settings.refresh_token_file.clone())
        .ok_or("auth_oauth2_refresh_token_file is not set: the client_credentials grant needs no authorization")?;
    let device_url = (settings.device_url.clone())
        .ok_or("auth_oauth2_device_url is not set (or auth_oauth2_provider)")?;
    let tls = crate::tls::Tls::new(&crate::tls::Settings {
        ca_file: config.tls_ca_file.clone(),
        cert_file: None,
        key_file: None,
    })?;
    let mut router = crate::route::Router::new(config);
    let mut resolve = |host: &str| router.addresses(host);
    let mut pairs = vec![("client_id", settings.client_id.clone())];
    if let Some(scope) = &settings.scope {
        pairs.push(("scope", scope.clone()));
    }
    let response = post(&tls.roots, &mut resolve, &device_url, &form(&pairs))
        .map_err(|e| format!("{device_url}: {e}"))?;
    let device = device_response(response.status, &response.body)
        .map_err(|r| format!("{device_url} refused: {r}"))?;
    say(&format!(
        "To let spoolmail send as {}, open {} and enter the code {} (within {} minutes).",
        config.auth_user.as_deref().unwrap_or("the account"),
        device.verification_uri,
        device.user_code,
        device.expires_in.div_ceil(60)
    ));
    if let Some(direct) = &device.verification_uri_complete {
        say(&format!("Or open {direct}"));
    }
    let issued = poll(&settings, &tls.roots, &mut resolve, &device)?;
    let refresh = (issued.refresh_token.as_deref()).ok_or(
        "the token endpoint sent no refresh token (Microsoft needs the offline_access scope)",
    )?;
    // Under the refresh lock, so that a delivery refreshing with the old
    // refresh token at this moment cannot save its rotation over this one;
    // and the cached access token goes, as it may be another account's.
    let _lock = lock(&config.spool_dir)?;
    save_secret(&file, refresh).map_err(|e| format!("cannot save {}: {e}", file.display()))?;
    give_to_spool_group(&file, &config.spool_dir);
    match std::fs::remove_file(config.spool_dir.join(OAUTH2_DIR).join("token")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(format!("cannot remove the cached access token: {e}"));
        }
        _ => {}
    }
    say(&format!("Saved the refresh token in {}.", file.display()));
    Ok(())
}

/// Polls the token endpoint every `interval` (longer after `slow_down`)
/// until the user agrees, refuses, or the code expires.
fn poll(
    settings: &Settings,
    anchors: &Anchors,
    resolve: &mut dyn FnMut(&str) -> Result<Vec<IpAddr>, String>,
    device: &DeviceAuthorization,
) -> Result<Issued, String> {
    let mut pairs = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:device_code".to_string(),
        ),
        ("device_code", device.device_code.clone()),
        ("client_id", settings.client_id.clone()),
    ];
    if let Some(secret) = client_secret(settings)? {
        pairs.push(("client_secret", secret)); // Google asks for it
    }
    let body = form(&pairs);
    let url = &settings.token_url;
    let deadline = Instant::now() + Duration::from_secs(device.expires_in);
    let mut interval = device.interval;
    loop {
        std::thread::sleep(Duration::from_secs(interval));
        if Instant::now() > deadline {
            return Err("the code expired before it was entered; run this again".into());
        }
        let poll = match post(anchors, resolve, url, &body) {
            Ok(response) => Poll::of(response.status, &response.body),
            // RFC 8628 section 3.5: a time-out is a reason to slow down.
            Err(_) => Poll::SlowDown,
        };
        interval = poll.next_interval(interval);
        match poll {
            Poll::Done(issued) => return Ok(issued),
            Poll::Pending | Poll::SlowDown => {}
            Poll::Failed(refusal) => return Err(format!("{url} refused: {refusal}")),
        }
    }
}

/// The refresh token file gets the spool's group, so that delivery (setgid
/// to it) can read it; only root can give it (others' files already have it).
fn give_to_spool_group(file: &Path, spool_dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let group =
        std::fs::metadata(spool_dir.join("queue")).or_else(|_| std::fs::metadata(spool_dir));
    if let Ok(meta) = group {
        let _ = std::os::unix::fs::chown(file, None, Some(meta.gid()));
    }
}

/// POSTs `form` to `url`, its host resolved by `resolve` (an IP literal
/// as it is).
pub fn post(
    anchors: &Anchors,
    resolve: &mut dyn FnMut(&str) -> Result<Vec<IpAddr>, String>,
    url: &str,
    form: &str,
) -> Result<https::Response, String> {
    let host = url_host(url).ok_or_else(|| "not an https:// URL with a host".to_string())?;
    let addrs = match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(ip) => vec![ip],
        Err(_) => resolve(&host)?,
    };
    let request = https::Get {
        url,
        addrs: &addrs,
        timeout: OAUTH2_REQUEST_TIMEOUT,
        max_body: OAUTH2_MAX_RESPONSE,
    };
    https::post_form(anchors, &request, form)
}

/// The host of an `https://` URL (an IPv6 literal in its brackets).
pub fn url_host(url: &str) -> Option<String> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    if uri.scheme_str() != Some("https") {
        return None;
    }
    uri.host().filter(|h| !h.is_empty()).map(str::to_string)
}

fn read_cache(path: &Path) -> Option<Cached> {
    let file = crate::spool::open_regular(path).ok()?;
    let mut text = String::new();
    file.take(64 * 1024).read_to_string(&mut text).ok()?;
    Cached::decode(&text)
}

/// Writes a refresh token as its file's one line: a temporary file beside
/// it, mode 0640, fsync, rename (its directory must be writable by the
/// spool's group, see the README). The group stays the spool's.
pub fn save_secret(file: &Path, token: &str) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let group = std::fs::metadata(file).ok().map(|m| m.gid());
    crate::system::write_atomically(file, format!("{token}\n").as_bytes(), 0o640)?;
    if let Some(gid) = group {
        // Kept where it can be (root may; others own the file with their
        // setgid group already).
        let _ = std::os::unix::fs::chown(file, None, Some(gid));
    }
    Ok(())
}

/// The refresh lock: `oauth2/lock`, flocked exclusively, waited for
/// [`OAUTH2_LOCK_WAIT`] at most (its holder makes one bounded request).
fn lock(spool_dir: &Path) -> Result<File, String> {
    let dir = spool_dir.join(OAUTH2_DIR);
    let fail = |e: io::Error| format!("cannot lock {}/lock: {e}", dir.display());
    ensure_dir(&dir, spool_dir).map_err(fail)?;
    let file = open_lock_file(&dir.join("lock")).map_err(fail)?;
    let start = Instant::now();
    loop {
        // The guard is forgotten: the flock stays until the file is closed.
        let taken = fd_lock::RwLock::new(&file)
            .try_write()
            .map(std::mem::forget);
        match taken {
            Ok(()) => return Ok(file),
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(fail(e)),
            Err(_) if start.elapsed() > OAUTH2_LOCK_WAIT => {
                return Err(format!(
                    "another delivery has been refreshing the OAuth2 token for over {}s",
                    OAUTH2_LOCK_WAIT.as_secs()
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `oauth2/` as `sts/` is: mode 02770, the spool's group.
pub fn ensure_dir(dir: &Path, spool_dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o770).create(dir) {
        Ok(()) => crate::slots::share(dir, spool_dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The lock file, made mode 0660 whatever the umask, never through a link.
fn open_lock_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o660)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.permissions().mode() & 0o777 != 0o660 {
        // Only its owner may change it; anyone in the group can still lock.
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o660));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_words_cannot_reorder_what_root_reads() {
        // The device flow prints these on root's terminal; refusals go to logs.
        let body = r#"{"device_code":"d","user_code":"AB\u202eCD",
                      "verification_uri":"https://e.test/\u2028x\u0007"}"#;
        let d = device_response(200, body.as_bytes()).unwrap();
        assert_eq!(d.user_code, "AB<U+202E>CD");
        assert_eq!(d.verification_uri, "https://e.test/<U+2028>x");
        let refusal = token_response(
            400,
            br#"{"error":"invalid_grant","error_description":"a\u2066b"}"#,
        );
        let Err(Refusal::Error { description, .. }) = refusal else {
            panic!("{refusal:?}")
        };
        assert_eq!(description, "a<U+2066>b");
    }

    #[test]
    fn a_claimed_lifetime_is_believed_up_to_a_day() {
        let now = 1_800_000_000;
        for (expires_in, expected) in [
            (0, now),
            (3599, now + 3599),
            (OAUTH2_MAX_LIFETIME, now + OAUTH2_MAX_LIFETIME),
            (OAUTH2_MAX_LIFETIME + 1, now + OAUTH2_MAX_LIFETIME),
            (u64::MAX, now + OAUTH2_MAX_LIFETIME),
        ] {
            assert_eq!(expiry(now, expires_in), expected, "{expires_in}");
        }
        assert_eq!(expiry(u64::MAX - 1, 3600), u64::MAX);
    }

    #[test]
    fn forms_are_url_encoded() {
        for (pairs, expected) in [
            (vec![("a", "b")], "a=b"),
            (
                vec![("grant_type", "refresh_token"), ("x", "")],
                "grant_type=refresh_token&x=",
            ),
            (
                vec![("scope", "https://mail.google.com/ offline_access")],
                "scope=https%3A%2F%2Fmail.google.com%2F+offline_access",
            ),
            (vec![("t", "a+b&c=d%e")], "t=a%2Bb%26c%3Dd%25e"),
            (vec![("t", "-._*~")], "t=-._*%7E"),
            (vec![("t", "é")], "t=%C3%A9"),
        ] {
            assert_eq!(form(&pairs), expected, "{pairs:?}");
        }
    }

    #[test]
    fn token_responses() {
        let ok = |body: &str| token_response(200, body.as_bytes());
        assert_eq!(
            ok(
                r#"{"access_token":"at","token_type":"Bearer","expires_in":3599,"refresh_token":"rt"}"#
            ),
            Ok(Issued {
                access_token: "at".into(),
                expires_in: 3599,
                refresh_token: Some("rt".into())
            })
        );
        // expires_in as a string (some servers), or absent; no token_type.
        let issued = ok(r#"{"access_token":"at","expires_in":"60"}"#).unwrap();
        assert_eq!((issued.expires_in, issued.refresh_token), (60, None));
        let issued = ok(r#"{"access_token":"at","token_type":"bearer"}"#).unwrap();
        assert_eq!(issued.expires_in, OAUTH2_DEFAULT_LIFETIME);
        for (status, body, expected) in [
            (
                400,
                r#"{"error":"invalid_grant","error_description":"AADSTS70000: expired\nmore"}"#,
                "invalid_grant (AADSTS70000: expired)",
            ),
            (
                400,
                r#"{"error":"authorization_pending"}"#,
                "authorization_pending",
            ),
            (200, r#"{"error":"invalid_client"}"#, "invalid_client"),
            (500, "<html>oops</html>", "HTTP status 500"),
            (200, "not json", "the response is not a JSON object"),
            (200, "[1]", "the response is not a JSON object"),
            (
                200,
                r#"{"access_token":"at","token_type":"mac"}"#,
                "token_type mac, not bearer",
            ),
            (
                200,
                r#"{"access_token":"a t"}"#,
                "no usable access_token in the response",
            ),
            (
                200,
                r#"{"access_token":7}"#,
                "no usable access_token in the response",
            ),
            (200, r#"{}"#, "no usable access_token in the response"),
        ] {
            let refusal = token_response(status, body.as_bytes()).unwrap_err();
            assert_eq!(refusal.to_string(), expected, "{body}");
        }
        // A refresh token that could not be one line of a file is not taken.
        let issued = ok(r#"{"access_token":"at","refresh_token":"r\nt"}"#).unwrap();
        assert_eq!(issued.refresh_token, None);
    }

    fn settings() -> Settings {
        Settings {
            token_url: "https://login.example/token".into(),
            device_url: None,
            client_id: "client".into(),
            client_secret_file: None,
            refresh_token_file: None,
            scope: None,
        }
    }

    #[test]
    fn cache_files_read_back_and_serve_until_the_margin() {
        let c = Cached {
            token: "at-1".into(),
            expires: 10_000,
            token_url: "https://login.example/token".into(),
            client_id: "client".into(),
        };
        let text = c.encode();
        assert_eq!(Cached::decode(&text), Some(c.clone()));
        assert_eq!(
            Cached::decode(&format!("{text}later_key x\n")),
            Some(c.clone())
        );
        assert_eq!(Cached::decode(&text[..text.len() - 1]), None, "not whole");
        assert_eq!(
            Cached::decode(&text.replace(" 1\n", " 2\n")),
            None,
            "another version"
        );
        assert_eq!(
            Cached::decode(&text.replace("token at-1", "token a\tb")),
            None
        );
        let s = settings();
        for margin in [OAUTH2_REFRESH_MARGIN, OAUTH2_USE_MARGIN] {
            assert!(c.serves(&s, 10_000 - margin - 1, margin));
            assert!(!c.serves(&s, 10_000 - margin, margin));
        }
        let other = Settings {
            client_id: "another".into(),
            ..settings()
        };
        assert!(!c.serves(&other, 0, OAUTH2_USE_MARGIN));
    }

    #[test]
    fn url_hosts() {
        for (url, host) in [
            ("https://login.example/token", Some("login.example")),
            ("https://127.0.0.1:8443/token", Some("127.0.0.1")),
            ("https://[::1]:8443/token", Some("[::1]")),
            ("http://login.example/token", None),
            ("login.example/token", None),
            ("https:///token", None),
        ] {
            assert_eq!(url_host(url).as_deref(), host, "{url}");
        }
    }

    #[test]
    fn provider_defaults() {
        use crate::config::OAuth2Provider::*;
        use Grant::*;
        assert_eq!(Microsoft.token_url(ClientCredentials), None);
        assert_eq!(
            Microsoft.scope(ClientCredentials),
            Some("https://outlook.office365.com/.default")
        );
        assert!(
            Microsoft
                .scope(RefreshToken)
                .unwrap()
                .contains("offline_access")
        );
        assert_eq!(Google.scope(ClientCredentials), None);
        assert_eq!(Google.scope(RefreshToken), Some("https://mail.google.com/"));
    }

    #[test]
    fn polls() {
        let poll = |status, body: &str| Poll::of(status, body.as_bytes());
        assert_eq!(
            poll(400, r#"{"error":"authorization_pending"}"#),
            Poll::Pending
        );
        assert_eq!(poll(400, r#"{"error":"slow_down"}"#), Poll::SlowDown);
        assert_eq!(poll(400, r#"{"error":"slow_down"}"#).next_interval(5), 10);
        assert_eq!(Poll::Pending.next_interval(5), 5);
        assert!(matches!(
            poll(400, r#"{"error":"access_denied"}"#),
            Poll::Failed(_)
        ));
        assert!(matches!(
            poll(400, r#"{"error":"expired_token"}"#),
            Poll::Failed(_)
        ));
        assert!(matches!(
            poll(200, r#"{"access_token":"at","refresh_token":"rt"}"#),
            Poll::Done(Issued { .. })
        ));
    }

    #[test]
    fn device_responses() {
        let microsoft = r#"{"device_code":"DAQABAAEAAAD","user_code":"WDJB-MJHT",
            "verification_uri":"https://microsoft.com/devicelogin","expires_in":900,
            "interval":5,"message":"To sign in..."}"#;
        let d = device_response(200, microsoft.as_bytes()).unwrap();
        assert_eq!(
            (
                d.user_code.as_str(),
                d.verification_uri.as_str(),
                d.expires_in,
                d.interval
            ),
            ("WDJB-MJHT", "https://microsoft.com/devicelogin", 900, 5)
        );
        // Google's spelling; no interval: 5 s.
        let google = r#"{"device_code":"AH-1Ng","user_code":"GQVQ-JKEC",
            "verification_url":"https://www.google.com/device","expires_in":1800}"#;
        let d = device_response(200, google.as_bytes()).unwrap();
        assert_eq!(
            (d.verification_uri.as_str(), d.interval),
            ("https://www.google.com/device", 5)
        );
        for (status, body, expected) in [
            (400, r#"{"error":"invalid_client"}"#, "invalid_client"),
            (
                200,
                r#"{"user_code":"X","verification_uri":"u"}"#,
                "no device_code in the response",
            ),
            (
                200,
                r#"{"device_code":"d","verification_uri":"u"}"#,
                "no user_code in the response",
            ),
            (502, "", "HTTP status 502"),
        ] {
            let refusal = device_response(status, body.as_bytes()).unwrap_err();
            assert_eq!(refusal.to_string(), expected, "{body}");
        }
    }
}
