//! TLS for the SMTP client, with rustls and its `ring` provider: the trust
//! anchors, the handshake (after STARTTLS or from the first byte), and what
//! the log says about each connection.
//!
//! Every handshake verifies the server's certificate against the name
//! connected to (the MX host or the smarthost). Whether a failed
//! verification ends the handshake is the caller's choice: `tls = required`
//! does; `tls = opportunistic` goes on, and the result is recorded so that
//! the log can say Verified, Trusted (the chain is good, the name is not) or
//! Untrusted, as Postfix does.
//!
//! Trust anchors: `tls_ca_file` when set, else the system's CA bundle read
//! from its well-known paths, else Mozilla's (webpki-roots). The paths are
//! fixed, never taken from `SSL_CERT_FILE`: a setgid program must not let its
//! caller choose whom it trusts.
//!
//! Runs in delivery children only (rustls may not start threads, but all of
//! this is per-connection state that the parent never needs).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, ProtocolVersion,
    RootCertStore, SignatureScheme, StreamOwned,
};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where distributions keep the system's CA bundle, in the order tried
/// (the list openssl-probe and Go's crypto/x509 use).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Arch, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // RHEL 7+
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // Alpine, the BSDs
];

/// How far the server's certificate was checked, in Postfix's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The chain leads to a trusted CA and the certificate names the host.
    Verified,
    /// The chain leads to a trusted CA, but the certificate is for another name.
    Trusted,
    /// The chain does not lead to a trusted CA (self-signed, unknown CA,
    /// expired...).
    Untrusted,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trust::Verified => "Verified",
            Trust::Trusted => "Trusted",
            Trust::Untrusted => "Untrusted",
        })
    }
}

/// What a finished handshake gave.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: String,
    /// `TLS13_AES_256_GCM_SHA384`, as rustls names it.
    pub cipher: String,
    pub trust: Trust,
    /// Why the certificate did not verify, when it did not.
    pub problem: Option<String>,
}

impl TlsInfo {
    /// Postfix's line: `Verified TLS connection established to
    /// mx.example.org[192.0.2.1]:25: TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384`.
    pub fn log_line(&self, peer: &str) -> String {
        let mut line = format!(
            "{} TLS connection established to {peer}: {} with cipher {}",
            self.trust, self.version, self.cipher
        );
        if let Some(p) = &self.problem {
            line.push_str(&format!(" ({p})"));
        }
        line
    }
}

/// Why a handshake did not give a usable connection.
#[derive(Debug)]
pub enum HandshakeError {
    /// The certificate did not verify and verification was required.
    NotVerified(String),
    /// Anything else: the server closed, sent garbage, or we could not agree
    /// on a protocol. The connection is gone.
    Failed(String),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::NotVerified(t) | HandshakeError::Failed(t) => f.write_str(t),
        }
    }
}

/// The connection to a server, before or after TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The socket underneath: where time-outs are set.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Ends a TLS session politely (close_notify); nothing for plain TCP.
    pub fn close_notify(&mut self) {
        if let Stream::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// The files TLS is set up from: `tls_ca_file`, `tls_cert_file` and
/// `tls_key_file` of the config (deliver builds this from it, so that this
/// module needs nothing else of the config).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Trust anchors instead of the system's CA bundle.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, shown to servers that ask.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// What every handshake of a delivery child shares: the crypto provider, the
/// certificate verifier with its trust anchors, the client certificate.
/// What `--version` says of TLS: the library, the provider and the
/// versions that `Tls::new` and `client_config` use.
pub const FEATURE: &str = "TLS rustls (ring provider; TLS 1.3, 1.2), trust anchors from the \
     system's bundle or webpki-roots";

pub struct Tls {
    provider: Arc<CryptoProvider>,
    verifier: Arc<WebPkiServerVerifier>,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// The trust anchors, for the HTTPS fetches (`https`) too.
    pub roots: Anchors,
    /// Where the trust anchors came from, for `-v`.
    pub anchors: String,
    /// The anchors are the config's `tls_ca_file`: the hint for a failed
    /// verification is about that file.
    own_ca: bool,
}

impl Tls {
    /// Loads the trust anchors and the client certificate the settings name.
    /// An Err is a reason to defer: the files are wrong or unreadable.
    pub fn new(settings: &Settings) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (roots, anchors) = load_anchors(settings.ca_file.as_deref())?;
        let mut store = RootCertStore::empty();
        match &roots {
            Anchors::Certs(certs) => {
                store.add_parsable_certificates(certs.iter().cloned());
            }
            Anchors::Builtin => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| format!("cannot set up certificate verification: {e}"))?;
        let client_cert = match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => {
                let certs = read_certs(cert, "tls_cert_file")?;
                if certs.is_empty() {
                    return Err(format!(
                        "tls_cert_file {}: no certificate in it",
                        cert.display()
                    ));
                }
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    format!("tls_key_file {}: no usable private key: {e}", key.display())
                })?;
                Some((certs, key))
            }
            (None, None) => None,
            _ => return Err("tls_cert_file and tls_key_file go together".into()),
        };
        Ok(Tls {
            provider,
            verifier,
            client_cert,
            roots,
            anchors,
            own_ca: settings.ca_file.is_some(),
        })
    }

    /// The TLS handshake over `tcp` (whose time-outs bound it), for a server
    /// known as `host`. With `require_verified`, a certificate that does not
    /// verify against `host` ends it; without, the result is recorded in
    /// the `TlsInfo`.
    pub fn handshake(
        &self,
        mut tcp: TcpStream,
        host: &str,
        require_verified: bool,
    ) -> Result<(Stream, TlsInfo), HandshakeError> {
        let name = server_name(host).map_err(HandshakeError::Failed)?;
        let recorder = Arc::new(Recorder {
            inner: self.verifier.clone(),
            enforce: require_verified,
            result: Mutex::new(None),
        });
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| HandshakeError::Failed(format!("TLS set-up: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone());
        let mut config = match &self.client_cert {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs.clone(), key.clone_key())
                .map_err(|e| HandshakeError::Failed(format!("tls_key_file: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        // Each child holds its connection for many messages: few handshakes,
        // and a resumed session would skip the verification the log reports.
        config.resumption = Resumption::disabled();
        let mut conn = ClientConnection::new(Arc::new(config), name)
            .map_err(|e| HandshakeError::Failed(format!("TLS set-up: {e}")))?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                let verification = recorder.result.lock().ok().and_then(|mut r| r.take());
                return Err(match verification {
                    Some(Err(v)) if require_verified => HandshakeError::NotVerified(format!(
                        "{} ({})",
                        describe_cert_error(&v),
                        required_hint(&v, self.own_ca)
                    )),
                    _ => HandshakeError::Failed(describe_handshake_error(&e)),
                });
            }
        }
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "TLS".to_string(),
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|s| {
                let s = s.suite();
                s.as_str().map(str::to_string).unwrap_or(format!("{s:?}"))
            })
            .unwrap_or_else(|| "unknown".into());
        let verification = recorder.result.lock().ok().and_then(|mut r| r.take());
        let (trust, problem) = match verification {
            Some(Ok(())) => (Trust::Verified, None),
            Some(Err(e)) => (trust_of(&e), Some(describe_cert_error(&e))),
            // Cannot happen without resumption; say the least.
            None => (Trust::Untrusted, Some("certificate not checked".into())),
        };
        let info = TlsInfo {
            version,
            cipher,
            trust,
            problem,
        };
        Ok((Stream::Tls(Box::new(StreamOwned::new(conn, tcp))), info))
    }
}

/// The trust anchors every TLS client of spoolmail verifies servers with.
#[derive(Debug, Clone)]
pub enum Anchors {
    /// `tls_ca_file`'s, or the system bundle's.
    Certs(Vec<CertificateDer<'static>>),
    /// No system bundle: Mozilla's, built in (webpki-roots).
    Builtin,
}

/// `tls_ca_file`'s certificates when it is set (an Err when it is broken),
/// else the first system bundle with a usable certificate, else the
/// built-in ones; and where they came from, in words.
pub fn load_anchors(ca_file: Option<&Path>) -> Result<(Anchors, String), String> {
    let usable = |certs: &[CertificateDer<'static>]| {
        RootCertStore::empty()
            .add_parsable_certificates(certs.iter().cloned())
            .0
            > 0
    };
    if let Some(file) = ca_file {
        let certs = read_certs(file, "tls_ca_file")?;
        if !usable(&certs) {
            return Err(format!(
                "tls_ca_file {}: no usable CA certificate in it",
                file.display()
            ));
        }
        return Ok((Anchors::Certs(certs), file.display().to_string()));
    }
    let system = SYSTEM_BUNDLES.iter().find_map(|path| {
        let certs = read_certs(Path::new(path), "").ok()?;
        usable(&certs).then(|| (Anchors::Certs(certs), path.to_string()))
    });
    Ok(system.unwrap_or((
        Anchors::Builtin,
        "webpki-roots (no system CA bundle found)".to_string(),
    )))
}

/// Certificates in a PEM file; Err names the file and key.
fn read_certs(file: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let err = |e: String| format!("{key} {}: {e}", file.display());
    let mut text = Vec::new();
    std::fs::File::open(file)
        .and_then(|mut f| f.read_to_end(&mut text))
        .map_err(|e| err(format!("cannot read: {e}")))?;
    CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM certificate file: {e}")))
}

/// The name to verify: a host name, or an address (`[192.0.2.1]` for an
/// address literal destination, or a smarthost given as an address).
fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let bare = bare.strip_prefix("IPv6:").unwrap_or(bare);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(bare.trim_end_matches('.').to_string())
        .map_err(|_| format!("`{host}` is not a name TLS can verify"))
}

fn trust_of(e: &rustls::Error) -> Trust {
    match e {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => Trust::Trusted,
        _ => Trust::Untrusted,
    }
}

/// A certificate problem in words a mail admin reads in mailq.
fn describe_cert_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "certificate not signed by a trusted CA (unknown issuer)".into()
            }
            CertificateError::NotValidForName => "certificate not valid for the host name".into(),
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => {
                let expected = match expected {
                    ServerName::DnsName(n) => n.as_ref().to_string(),
                    ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
                    other => format!("{other:?}"),
                };
                // rustls gives `DnsName("mx.example.org")`: the name is enough.
                let presented: Vec<&str> = presented
                    .iter()
                    .map(|p| match (p.find('"'), p.rfind('"')) {
                        (Some(a), Some(b)) if a < b => &p[a + 1..b],
                        _ => p.as_str(),
                    })
                    .collect();
                format!(
                    "certificate is for {}, not for {expected}",
                    if presented.is_empty() {
                        "no name".to_string()
                    } else {
                        presented.join(", ")
                    }
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate not valid yet".into()
            }
            CertificateError::Other(o) => webpki_words(&format!("{o:?}")),
            other => cert_error_words(other),
        },
        other => format!("certificate did not verify: {other}"),
    }
}

/// The rest of rustls's certificate errors, in words rather than the
/// enum's name.
fn cert_error_words(e: &CertificateError) -> String {
    let words = match e {
        CertificateError::BadEncoding => "certificate is malformed",
        CertificateError::BadSignature => "certificate's signature is invalid",
        CertificateError::Revoked => "certificate has been revoked",
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "certificate is not for TLS servers (extended key usage)"
        }
        CertificateError::UnhandledCriticalExtension => {
            "certificate has a critical extension that cannot be checked"
        }
        _ => return format!("certificate did not verify ({e:?})"),
    };
    words.to_string()
}

/// What webpki found, from its error's name (rustls hands it over only as
/// `Other(OtherError(Name))`), in words a mail admin reads in mailq.
fn webpki_words(debug: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        (
            "CaUsedAsEndEntity",
            "the server presents a CA certificate (CA:TRUE) as its own; a server needs a \
             certificate of its own, signed by that CA",
        ),
        (
            "EndEntityUsedAsCa",
            "a server certificate is used as a CA in the chain",
        ),
        (
            "CertNotValidForName",
            "certificate not valid for the host name",
        ),
        ("CertExpired", "certificate expired"),
        ("CertNotValidYet", "certificate not valid yet"),
        ("CertRevoked", "certificate has been revoked"),
        (
            "UnknownIssuer",
            "certificate not signed by a trusted CA (unknown issuer)",
        ),
        (
            "RequiredEkuNotFound",
            "certificate is not for TLS servers (extended key usage)",
        ),
        (
            "PathLenConstraintViolated",
            "the certificate chain is longer than its CA allows",
        ),
        (
            "NameConstraintViolation",
            "certificate names a host its CA may not vouch for",
        ),
        (
            "UnsupportedSignatureAlgorithm",
            "certificate is signed with an unsupported algorithm",
        ),
        (
            "InvalidSignatureForPublicKey",
            "certificate's signature is invalid",
        ),
        (
            "UnsupportedCertVersion",
            "certificate is not X.509 version 3",
        ),
        ("BadDer", "certificate is malformed"),
    ];
    WORDS
        .iter()
        .find(|(name, _)| debug.contains(name))
        .map(|(_, words)| words.to_string())
        .unwrap_or_else(|| {
            let name: String = debug.chars().filter(|c| c.is_alphanumeric()).collect();
            let name = name.trim_start_matches("OtherError");
            format!("certificate did not verify ({name})")
        })
}

/// What to change when a certificate does not verify under `tls = required`.
fn required_hint(e: &rustls::Error, own_ca: bool) -> &'static str {
    let ca = if own_ca {
        "check that tls_ca_file holds the CA that signed the server's certificate"
    } else {
        "set tls_ca_file to the CA that signed it if the server uses a private CA"
    };
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => ca,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "name the server in smarthost as its certificate does",
        rustls::Error::InvalidCertificate(CertificateError::Other(o))
            if format!("{o:?}").contains("CaUsedAsEndEntity") =>
        {
            "give the server a certificate signed by the CA in tls_ca_file"
        }
        _ => "tls = opportunistic would send it encrypted without verifying",
    }
}

fn describe_handshake_error(e: &io::Error) -> String {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match inner {
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                format!("the server did not speak TLS ({inner})")
            }
            other => other.to_string(),
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "the server closed the connection".into(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        _ => e.to_string(),
    }
}

/// The webpki verifier, recording its verdict for the log, and ending the
/// handshake on a bad certificate only when told to.
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    enforce: bool,
    result: Mutex<Option<Result<(), rustls::Error>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if let Ok(mut slot) = self.result.lock() {
            *slot = Some(verdict.as_ref().map(|_| ()).map_err(Clone::clone));
        }
        match verdict {
            Ok(v) => Ok(v),
            Err(e) if self.enforce => Err(e),
            // Opportunistic: encryption without authentication, recorded as such.
            Err(_) => Ok(ServerCertVerified::assertion()),
        }
    }

    // The handshake signatures are always checked: they prove the server
    // holds the key of the certificate it showed, whoever signed that.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_to_verify() {
        assert!(matches!(
            server_name("mx1.example.org").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            server_name("mx1.example.org.").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            server_name("[192.0.2.1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[IPv6:2001:db8::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
    }

    #[test]
    fn log_line_as_postfix() {
        let info = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
            trust: Trust::Verified,
            problem: None,
        };
        assert_eq!(
            info.log_line("mx.example.org[192.0.2.1]:25"),
            "Verified TLS connection established to mx.example.org[192.0.2.1]:25: \
             TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384"
        );
        assert_eq!(
            trust_of(&rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName
            )),
            Trust::Trusted
        );
        assert_eq!(
            trust_of(&rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            )),
            Trust::Untrusted
        );
    }
}
