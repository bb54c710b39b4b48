//! HTTPS requests of a delivery child (MTA-STS policies, OAuth 2.0 tokens;
//! every HTTPS request
//! spoolmail makes goes through here): ureq over the project's rustls with
//! its ring provider, verified against the same trust anchors as SMTP
//! (`tls_ca_file`, else the system's bundle, see [`crate::tls`]).
//!
//! What a setgid program must not take from its caller is set here, not
//! left to ureq's defaults: no proxy from the environment (`HTTPS_PROXY`
//! would let a local user read or forge what is fetched), and the host's
//! addresses come from the caller, which resolves them as the MX hosts are
//! (`dns_server`). Redirects are never followed (RFC 8461 section 3.3), and
//! both the time and the size of a response are bounded.

use crate::tls::Anchors;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use ureq::http::Uri;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// One request (a GET, or the POST of [`post_form`]): where, to which
/// addresses of the URL's host, and its bounds.
pub struct Get<'a> {
    /// `https://HOST[:PORT]/PATH`.
    pub url: &'a str,
    /// The addresses of the URL's host, as the caller's resolver found them.
    pub addrs: &'a [IpAddr],
    /// The whole exchange, connecting included.
    pub timeout: Duration,
    /// A larger body is an error.
    pub max_body: u64,
}

/// What the server answered, whatever its status.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The media type, lower case, without its parameters (`text/plain`).
    pub media_type: Option<String>,
    pub body: Vec<u8>,
}

/// Sends the GET; an Err says in words why there is no response.
pub fn get(anchors: &Anchors, request: &Get) -> Result<Response, String> {
    let response = agent(anchors, request)
        .get(request.url)
        .call()
        .map_err(|e| words(&e))?;
    read_response(response, request.max_body)
}

/// Sends `form` (already `application/x-www-form-urlencoded`) as a POST
/// to `request.url`, as an OAuth 2.0 token endpoint wants it (RFC 6749
/// section 3.2); the same bounds and trust anchors as [`get`].
pub fn post_form(anchors: &Anchors, request: &Get, form: &str) -> Result<Response, String> {
    let response = agent(anchors, request)
        .post(request.url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .send(form)
        .map_err(|e| words(&e))?;
    read_response(response, request.max_body)
}

/// An agent for one request: the trust anchors, no proxy, no redirect,
/// the request's time bound, and the caller's addresses for its host.
fn agent(anchors: &Anchors, request: &Get) -> ureq::Agent {
    let roots = match anchors {
        Anchors::Certs(certs) => RootCerts::Specific(Arc::new(
            certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect(),
        )),
        Anchors::Builtin => RootCerts::WebPki,
    };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .https_only(true)
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .timeout_global(Some(request.timeout))
        .user_agent(concat!("spoolmail/", env!("CARGO_PKG_VERSION")))
        .max_idle_connections(0)
        .build();
    let resolver = Addresses(request.addrs.to_vec());
    ureq::Agent::with_parts(config, DefaultConnector::default(), resolver)
}

/// The status, media type and (bounded) body of a response.
fn read_response(
    mut response: ureq::http::Response<ureq::Body>,
    max_body: u64,
) -> Result<Response, String> {
    let media_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(media_type);
    let body = response
        .body_mut()
        .with_config()
        .limit(max_body)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(n) => format!("the response is larger than {n} bytes"),
            other => words(&other),
        })?;
    Ok(Response {
        status: response.status().as_u16(),
        media_type,
        body,
    })
}

/// `text/plain; charset=utf-8` -> `text/plain`.
fn media_type(header: &str) -> String {
    let bare = header.split(';').next().unwrap_or("");
    bare.trim().to_ascii_lowercase()
}

/// ureq's error, in words for a log line or mailq.
fn words(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(what) => format!("timed out ({what})"),
        ureq::Error::HostNotFound => "the host has no address".into(),
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// The resolver ureq asks: the addresses the caller found, on the URL's port.
#[derive(Debug)]
struct Addresses(Vec<IpAddr>);

impl Resolver for Addresses {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let port = uri.port_u16().unwrap_or(443);
        let mut addrs = self.empty();
        // ureq keeps 16 at most.
        for ip in self.0.iter().take(16) {
            addrs.push(SocketAddr::new(*ip, port));
        }
        if addrs.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_without_parameters() {
        for (header, expected) in [
            ("text/plain", "text/plain"),
            ("Text/Plain; charset=utf-8", "text/plain"),
            (" text/html ;x=1", "text/html"),
            ("", ""),
        ] {
            assert_eq!(media_type(header), expected, "{header:?}");
        }
    }
}
