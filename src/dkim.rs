//! DKIM signing (RFC 6376; Ed25519 keys, RFC 8463) of the mail spoolmail
//! sends, in the delivery child: over the bytes that go on the wire (after
//! the quoted-printable re-encoding of long lines; masquerading and
//! `rewrite_from` are applied on intake, so the queued message already
//! has them), with relaxed/relaxed canonicalization. The cryptography and
//! canonicalization are mail-auth's; this module chooses the key, reads
//! it, and chooses the headers.

use crate::mime::base64;
use crate::model::DkimKey as KeySpec;
use mail_auth::common::crypto::{Algorithm, DkimKey, Ed25519Key, RsaKey, Sha256, SigningKey};

use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use std::io::BufRead;
use std::path::Path;

/// The fields signed when the message has them (the issue's list, as
/// Gmail's and Microsoft's guides give it); From is signed once more than
/// it occurs, so that no second From can be added.
pub const SIGNED_FIELDS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// The smallest RSA key signed with (RFC 8301 3.2).
pub const MIN_RSA_BITS: usize = 2048;

/// The header fields of a message as stored (LF line endings), up to the
/// empty line: (name, unfolded value).
fn fields(message: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        match (line[0], out.last_mut()) {
            (b' ' | b'\t', Some((_, value))) => value.push_str(&text),
            _ => match text.split_once(':') {
                Some((name, value)) => out.push((name.trim().to_string(), value.to_string())),
                None => break, // not a header field: the body began without its empty line
            },
        }
    }
    out
}

/// The domain of the message's From address (the first From field's first
/// address), lower case; None without one.
pub fn from_domain(header: &[u8]) -> Option<String> {
    let (_, value) = fields(header)
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("From"))?;
    let first = crate::address::parse_list(&value)
        .ok()?
        .into_iter()
        .next()?;
    let address = crate::model::Address::parse(&first).ok()?;
    Some(address.domain()?.to_ascii_lowercase())
}

/// Every domain the message's From fields name, as any reader might take
/// them, for [`crate::model::refusing_key`]: the domain of each address
/// of each field, and each word that could be a domain (letters, digits,
/// `-`, `.`) anywhere in them, display names and comments included. A
/// field that does not parse as an address list names every key's
/// domain: what a lenient reader finds in it is anyone's guess.
pub fn from_names(header: &[u8], keys: &[KeySpec]) -> Vec<String> {
    let mut names = Vec::new();
    for (name, value) in fields(header) {
        if !name.eq_ignore_ascii_case("From") {
            continue;
        }
        let words = value.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '.'));
        names.extend(words.filter(|w| !w.is_empty()).map(str::to_string));
        match crate::address::parse_list(&value) {
            Ok(addresses) => names.extend(
                addresses
                    .iter()
                    .filter_map(|a| Some(crate::model::Address::accepted(a).domain()?.to_string())),
            ),
            Err(_) => names.extend(keys.iter().map(|k| k.domain.clone())),
        }
    }
    names
}

/// The `h=` list to ask mail-auth for: the fields of [`SIGNED_FIELDS`] the
/// header has, each once (mail-auth signs every occurrence of a name it is
/// given), and From once more, which mail-auth then lists as absent: the
/// over-signing that makes an added From break the signature.
pub fn field_names(header: &[u8]) -> Vec<&'static str> {
    let present = fields(header);
    let mut names: Vec<&'static str> = SIGNED_FIELDS
        .iter()
        .copied()
        .filter(|f| present.iter().any(|(n, _)| n.eq_ignore_ascii_case(f)))
        .collect();
    names.push("From");
    names
}

/// A loaded signing key with its domain and selector.
pub struct Signer {
    pub domain: String,
    pub selector: String,
    key: DkimKey,
}

impl Signer {
    /// Reads `spec`'s key file: PEM, PKCS#8 (RSA or Ed25519) or PKCS#1
    /// (RSA), not readable by others; RSA keys of 2048 bits and more. An
    /// Err says what is wrong, for the admin (the mail waits for them).
    pub fn load(spec: &KeySpec) -> Result<Signer, String> {
        let file = spec.file.display();
        check_mode(&spec.file)?;
        let pem = std::fs::read(&spec.file)
            .map_err(|e| format!("cannot read dkim_key {file} for {}: {e}", spec.domain))?;
        let key = key_from_pem(&pem).map_err(|e| format!("dkim_key {file}: {e}"))?;
        Ok(Signer {
            domain: spec.domain.clone(),
            selector: spec.selector.clone(),
            key,
        })
    }

    /// `rsa-sha256` or `ed25519-sha256`.
    pub fn algorithm(&self) -> &'static str {
        algorithm_name(self.key.algorithm())
    }

    /// What this key's DNS record must hold: its `k=` and `p=` (base64 of
    /// the public key: an RSA key's SubjectPublicKeyInfo, an Ed25519 key's
    /// 32 octets), as `spoolctl dkim-keygen` printed them.
    pub fn record_key(&self) -> (&'static str, String) {
        match &self.key {
            DkimKey::Rsa(k) => ("rsa", base64(&rsa_spki(&k.public_key()))),
            DkimKey::Ed25519(k) => ("ed25519", base64(&k.public_key())),
        }
    }

    /// This key's signer for a message whose header has these fields.
    fn stream_for(&self, header: &[u8]) -> DkimSigner<Borrowed<'_>, mail_auth::dkim::Done> {
        DkimSigner::from_key(Borrowed(&self.key))
            .domain(&self.domain)
            .selector(&self.selector)
            .headers(field_names(header))
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
    }
}

/// The DKIM-Signature fields of `signers`, in their order, for a message as
/// stored (LF line endings): `header` (its header, as [`read_header`] read
/// it) and the rest from `body`, read once whatever the number of keys.
/// The fields are in the stored form too (LF line endings, folded): what
/// goes before the message. Each signature covers the message as the SMTP
/// client sends it (every LF as CRLF, a last line without one ended), not
/// the other signatures: either verifies alone (RFC 8463 section 5's RSA
/// and Ed25519 side by side). No signers, no fields (the body unread).
pub fn sign_all(
    signers: &[&Signer],
    header: &[u8],
    body: &mut impl BufRead,
) -> Result<Vec<u8>, String> {
    let Some(first) = signers.first() else {
        return Ok(Vec::new()); // no key: no field
    };
    let failed = |s: &Signer, e: &dyn std::fmt::Display| {
        format!("DKIM signing for {} failed: {e}", s.domain)
    };
    let mut streams: Vec<_> = (signers.iter()).map(|s| s.stream_for(header)).collect();
    let mut streams: Vec<_> = streams.iter_mut().map(|s| s.sign_streaming()).collect();
    let mut wire = WireForm::default();
    let mut write = |bytes: &[u8]| streams.iter_mut().for_each(|s| s.write(bytes));
    write(wire.crlf(header));
    loop {
        let chunk = body.fill_buf().map_err(|e| failed(first, &e))?;
        if chunk.is_empty() {
            break;
        }
        write(wire.crlf(chunk));
        let n = chunk.len();
        body.consume(n);
    }
    if wire.open_line {
        write(b"\r\n");
    }
    let mut fields = Vec::new();
    for (stream, signer) in streams.into_iter().zip(signers) {
        let signature = stream.finish().map_err(|e| failed(signer, &e))?;
        fields.extend(signature.to_header().replace("\r\n", "\n").into_bytes());
    }
    Ok(fields)
}

/// The header of a message as stored, up to and with its empty line (all
/// of it when it has none).
pub fn read_header(message: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut header = Vec::new();
    loop {
        let start = header.len();
        if message.read_until(b'\n', &mut header)? == 0 || &header[start..] == b"\n" {
            return Ok(header);
        }
    }
}

/// The stored form (LF line endings) as the SMTP client sends it
/// (`smtp::protocol::DotStuffer`, less the dot-stuffing that the receiver
/// undoes): CRLF line endings, a last line without one ended.
#[derive(Default)]
struct WireForm {
    buf: Vec<u8>,
    /// The last byte seen did not end a line.
    open_line: bool,
}

impl WireForm {
    fn crlf(&mut self, chunk: &[u8]) -> &[u8] {
        self.buf.clear();
        for line in chunk.split_inclusive(|&b| b == b'\n') {
            match line.strip_suffix(b"\n") {
                Some(text) => {
                    self.buf.extend_from_slice(text);
                    self.buf.extend_from_slice(b"\r\n");
                }
                None => self.buf.extend_from_slice(line),
            }
        }
        if let Some(&last) = chunk.last() {
            self.open_line = last != b'\n';
        }
        &self.buf
    }
}

/// mail-auth's signer owns its key; a child signs many messages with one
/// loaded key, so it lends it.
struct Borrowed<'k>(&'k DkimKey);

impl SigningKey for Borrowed<'_> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
        Algorithm::RsaSha1 => "rsa-sha1",
    }
}

/// A key others can read is refused, as `auth_password_file` is.
fn check_mode(file: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(file) else {
        return Ok(()); // reading it says why
    };
    let mode = meta.permissions().mode();
    if mode & 0o007 != 0 {
        return Err(format!(
            "dkim_key {} is mode {:04o}: others can read it; make it readable only by root \
             and spoolmail's group (chmod 0640, chown root:spoolmail)",
            file.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// A signing key from its PEM: PKCS#1 (RSA) or PKCS#8 (RSA or Ed25519).
fn key_from_pem(pem: &[u8]) -> Result<DkimKey, String> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        format!("not a PEM private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`): {e}")
    })?;
    let rsa = |der| {
        RsaKey::<Sha256>::from_key_der(der).map_err(|e| match e.to_string() {
            t if t.contains("TooSmall") => too_small(None),
            t if t.contains("TooLarge") => "RSA key larger than 4096 bits: not supported".into(),
            t => format!("not a usable RSA or Ed25519 key: {t}"),
        })
    };
    let key = match der {
        PrivateKeyDer::Pkcs1(_) => rsa(der)?,
        PrivateKeyDer::Pkcs8(ref p) => {
            match Ed25519Key::from_pkcs8_maybe_unchecked_der(p.secret_pkcs8_der()) {
                Ok(ed) => return Ok(DkimKey::Ed25519(ed)),
                Err(_) => rsa(der)?,
            }
        }
        _ => return Err("an EC key: DKIM signs with RSA (rsa-sha256) or Ed25519 keys".into()),
    };
    match rsa_modulus_bits(&key.public_key()) {
        Some(bits) if bits >= MIN_RSA_BITS => Ok(DkimKey::Rsa(key)),
        bits => Err(too_small(bits)),
    }
}

fn too_small(bits: Option<usize>) -> String {
    let size = bits.map(|b| format!(" ({b} bits)")).unwrap_or_default();
    format!(
        "RSA key too small{size}: DKIM needs {MIN_RSA_BITS} bits or more (RFC 8301); \
         make a new one with `spoolctl dkim-keygen`"
    )
}

/// The size of the modulus of a DER RSAPublicKey (`SEQUENCE { INTEGER n,
/// INTEGER e }`), in bits.
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let (tag, body, _) = der_item(der)?;
    let (int_tag, n, _) = der_item((tag == 0x30).then_some(body)?)?;
    if int_tag != 0x02 {
        return None;
    }
    let n = &n[n.iter().position(|&b| b != 0)?..];
    Some(n.len() * 8 - n[0].leading_zeros() as usize)
}

/// One DER item: (tag, contents, what follows).
fn der_item(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |l, &b| l << 8 | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A DER length.
fn der_len(len: usize) -> Vec<u8> {
    match len {
        0..0x80 => vec![len as u8],
        0x80..0x100 => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

/// The SubjectPublicKeyInfo of an RSA public key (RSAPublicKey DER), the
/// form of a DKIM record's `p=` (RFC 6376 3.6.1).
fn rsa_spki(rsa_public: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x03];
    bits.extend(der_len(rsa_public.len() + 1));
    bits.push(0); // no unused bits
    bits.extend_from_slice(rsa_public);
    let mut spki = vec![0x30];
    spki.extend(der_len(ALGORITHM.len() + bits.len()));
    spki.extend_from_slice(ALGORITHM);
    spki.extend(bits);
    spki
}

/// Whether the TXT records published for a key (each its strings joined)
/// let verifiers check its signatures (RFC 6376 3.6.1): Ok, with a note
/// when the record is in test mode (`t=y`), when there is one record and
/// it holds this key's `k` and `p`; Err says what is wrong.
pub fn record_verdict(records: &[String], k: &str, p: &str) -> Result<Option<String>, String> {
    let record = match records {
        [] => return Err("no TXT record: publish the one `spoolctl dkim-keygen` printed".into()),
        [one] => one,
        more => return Err(format!("{} TXT records: publish one", more.len())),
    };
    let tags = record_tags(record)?;
    let tag = |name: &str| {
        tags.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if tags.first().is_some_and(|(n, _)| n != "v") && tag("v").is_some() {
        return Err("v= is not the record's first tag".into());
    }
    if let Some(v) = tag("v").filter(|v| *v != "DKIM1") {
        return Err(format!("v={} is not DKIM1", shown(v)));
    }
    let published_k = tag("k").unwrap_or("rsa");
    if !published_k.eq_ignore_ascii_case(k) {
        return Err(format!(
            "the record is for k={}, the key is {k}",
            shown(published_k)
        ));
    }
    let published = tag("p").map(|v| v.split_ascii_whitespace().collect::<String>());
    match published.as_deref() {
        None => return Err("the record has no p= (no public key)".into()),
        Some("") => return Err("the record revokes the key (empty p=)".into()),
        Some(published) if published != p => {
            return Err("the record's public key (p=) is not this key's".into());
        }
        Some(_) => {}
    }
    let listed = |name: &str, want: &str| {
        tag(name).is_none_or(|v| {
            v.split(':')
                .any(|x| x.trim().eq_ignore_ascii_case(want) || x.trim() == "*")
        })
    };
    if !listed("h", "sha256") {
        return Err("the record's h= leaves out sha256".into());
    }
    if !listed("s", "email") {
        return Err("the record's s= leaves out email".into());
    }
    let testing = tag("t").is_some_and(|t| t.split(':').any(|f| f.trim() == "y"));
    Ok(testing.then(|| "t=y: receivers treat its signatures as a test".into()))
}

/// A record's tag=value list (RFC 6376 3.2), names as written; Err when a
/// tag has no `=` or comes twice.
fn record_tags(record: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags: Vec<(String, String)> = Vec::new();
    for spec in record.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) =
            (spec.split_once('=')).ok_or_else(|| format!("`{}` is not tag=value", shown(spec)))?;
        let name = name.trim().to_string();
        if tags.iter().any(|(n, _)| *n == name) {
            return Err(format!("the record has {} twice", shown(&name)));
        }
        tags.push((name, value.trim().to_string()));
    }
    Ok(tags)
}

/// A piece of a record as a message may quote it: printable, short.
fn shown(text: &str) -> String {
    crate::model::excerpt(text, 40)
}

/// A new key pair, as `spoolctl dkim-keygen` writes it.
pub struct NewKey {
    /// The private key in PEM: PKCS#1 for RSA, PKCS#8 for Ed25519.
    pub pem: String,
    /// The DNS record's text: `v=DKIM1; k=...; p=...`.
    pub record: String,
}

/// Makes a key: RSA of [`MIN_RSA_BITS`] bits, or Ed25519.
pub fn generate(ed25519: bool) -> Result<NewKey, String> {
    use mail_auth::dkim::generate::DkimKeyPair;
    let pair = if ed25519 {
        DkimKeyPair::generate_ed25519()
    } else {
        DkimKeyPair::generate_rsa(MIN_RSA_BITS)
    }
    .map_err(|e| format!("cannot make a key: {e}"))?;
    let (label, k, public) = if ed25519 {
        ("PRIVATE KEY", "ed25519", pair.public_key().to_vec())
    } else {
        ("RSA PRIVATE KEY", "rsa", rsa_spki(pair.public_key()))
    };
    Ok(NewKey {
        pem: pem(label, pair.private_key()),
        record: format!("v=DKIM1; k={k}; p={}", base64(&public)),
    })
}

/// PEM (RFC 7468): base64 in lines of 64.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A TXT record in zone-file form, its text in quoted strings of at most
/// 255 octets (RFC 1035 3.3.14): what most DNS providers take as it is.
pub fn zone_line(name: &str, text: &str) -> String {
    let strings: Vec<String> = text
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!("{name}. IN TXT ( {} )", strings.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "From: Alice <alice@Mail.Example.org>\nTo: bob@example.net\n\
                           Subject: caf\u{e9}\n \tfolded\nX-Other: 1\n\nbody \u{e9}\n.line\n\n\n";

    #[test]
    fn the_from_domain() {
        for (header, domain) in [
            (
                "From: Alice <alice@Mail.Example.org>\n\n",
                Some("mail.example.org"),
            ),
            (
                "Subject: x\nfrom:\n  a@b.example, c@d.example\n\nbody",
                Some("b.example"),
            ),
            ("Sender: a@b.example\n\n", None),
            ("From: undisclosed\n\n", None),
            ("Subject: x\n\nFrom: a@b.example\n", None),
        ] {
            assert_eq!(
                from_domain(header.as_bytes()).as_deref(),
                domain,
                "{header}"
            );
        }
    }

    #[test]
    fn every_domain_any_from_field_names() {
        let keys = [KeySpec::parse("shop.example a /a users=x").unwrap()];
        let names = |header: &str| from_names(header.as_bytes(), &keys).join(" ");
        for (header, want) in [
            ("From: a@b.example\n\n", "a b.example b.example"),
            (
                "From: A <a@b.example>, c@d.example\nTo: x@y.example\n\n",
                "A a b.example c d.example b.example d.example",
            ),
            // The domain with its CFWS, as a parser reads it, and its words.
            (
                "From: a@shop (x) .example\n\n",
                "a shop x .example shop.example",
            ),
            (
                "From: a@b.example\nSubject: s\nfrom: <@shop.example:a@b.example>\n\n",
                "a b.example b.example shop.example a b.example b.example",
            ),
            (
                "From: =?utf-8?q?x?= (c@Shop.example.)\n\n",
                "utf-8 q x c Shop.example.",
            ),
            (
                "From: a@b.example\nFrom: a@b.example (\n\n",
                "a b.example b.example a b.example shop.example",
            ),
            ("Subject: x\n\nFrom: a@shop.example\n", ""),
        ] {
            assert_eq!(names(header), want, "{header}");
        }
    }

    #[test]
    fn the_fields_signed_are_those_present_and_from_once_more() {
        let names = field_names(MESSAGE.as_bytes());
        assert_eq!(names, ["From", "To", "Subject", "From"]);
        let two = "From: a@b.example\nfrom: c@b.example\nMIME-Version: 1.0\n\n";
        assert_eq!(
            field_names(two.as_bytes()),
            ["From", "MIME-Version", "From"]
        );
    }

    #[test]
    fn the_wire_form_is_what_the_smtp_client_sends() {
        let mut w = WireForm::default();
        assert_eq!(w.crlf(b"a\nb"), b"a\r\nb");
        assert!(w.open_line);
        assert_eq!(w.crlf(b"c\n\n"), b"c\r\n\r\n");
        assert!(!w.open_line);
        let mut header = &b"A: 1\nB: 2\n\nbody\n"[..];
        assert_eq!(read_header(&mut header).unwrap(), b"A: 1\nB: 2\n\n");
        assert_eq!(header, b"body\n");
        let mut no_body = &b"A: 1\n"[..];
        assert_eq!(read_header(&mut no_body).unwrap(), b"A: 1\n");
    }

    fn key_file(dir: &Path, name: &str, pem: &str, mode: u32) -> KeySpec {
        use std::os::unix::fs::PermissionsExt;
        let file = dir.join(name);
        std::fs::write(&file, pem).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        KeySpec::parse(&format!("example.org sel {}", file.display())).unwrap()
    }

    #[test]
    fn an_ed25519_key_signs_the_wire_form() {
        let dir = std::env::temp_dir().join(format!("spoolmail-dkim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let new = generate(true).unwrap();
        assert!(
            new.pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{}",
            new.pem
        );
        assert!(
            new.record.starts_with("v=DKIM1; k=ed25519; p="),
            "{}",
            new.record
        );
        let signer = Signer::load(&key_file(&dir, "ed.pem", &new.pem, 0o640)).unwrap();
        assert_eq!(signer.algorithm(), "ed25519-sha256");
        // The record dkim-keygen prints is the one dkim-check wants.
        let (k, p) = signer.record_key();
        assert_eq!(
            record_verdict(std::slice::from_ref(&new.record), k, &p),
            Ok(None)
        );
        let rsa = generate(false).unwrap();
        let rsa_signer = Signer::load(&key_file(&dir, "rsa.pem", &rsa.pem, 0o640)).unwrap();
        let (k, p) = rsa_signer.record_key();
        assert_eq!(record_verdict(&[rsa.record], k, &p), Ok(None));
        assert!(record_verdict(std::slice::from_ref(&new.record), k, &p).is_err());
        let mut content = MESSAGE.as_bytes();
        let header = read_header(&mut content).unwrap();
        let field =
            String::from_utf8(sign_all(&[&signer], &header, &mut content).unwrap()).unwrap();
        assert!(
            field.starts_with(
                "DKIM-Signature: v=1; a=ed25519-sha256; s=sel; d=example.org; c=relaxed/relaxed;"
            ),
            "{field}"
        );
        // Bottom up (the order a verifier takes them in), the absent From last.
        assert!(field.contains("\th=Subject:To:From:From;"), "{field}");
        assert!(field.ends_with(";\n") && !field.contains('\r'), "{field}");
        assert!(
            field.lines().skip(1).all(|l| l.starts_with('\t')),
            "{field}"
        );

        // Others may not read a key; a file that is no key says so.
        let open = key_file(&dir, "open.pem", &new.pem, 0o644);
        assert!(
            Signer::load(&open)
                .err()
                .unwrap()
                .contains("others can read it")
        );
        let junk = key_file(&dir, "junk.pem", "not a key\n", 0o600);
        assert!(
            Signer::load(&junk)
                .err()
                .unwrap()
                .contains("not a PEM private key")
        );
        let mut gone = junk.clone();
        gone.file = dir.join("missing.pem");
        assert!(
            Signer::load(&gone)
                .err()
                .unwrap()
                .contains("cannot read dkim_key")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn der_helpers() {
        // RSAPublicKey { n: 0x00 0x80 .. (1024 bits), e: 65537 }
        let mut n = vec![0x02, 0x81, 0x81, 0x00, 0x80];
        n.extend(vec![0x11; 127]);
        let mut der = vec![0x30, 0x81, (n.len() + 5) as u8];
        der.extend(&n);
        der.extend([0x02, 0x03, 0x01, 0x00, 0x01]);
        assert_eq!(rsa_modulus_bits(&der), Some(1024));
        assert_eq!(rsa_modulus_bits(&der[..10]), None);
        let spki = rsa_spki(&der);
        let (tag, body, rest) = der_item(&spki).unwrap();
        assert_eq!((tag, rest.len()), (0x30, 0));
        let (_, _, bits) = der_item(body).unwrap();
        let (tag, inner, _) = der_item(bits).unwrap();
        assert_eq!((tag, &inner[1..]), (0x03, &der[..]));
        assert_eq!(der_len(0x7f), [0x7f]);
        assert_eq!(der_len(0x80), [0x81, 0x80]);
        assert_eq!(der_len(0x10e), [0x82, 0x01, 0x0e]);
    }

    #[test]
    fn no_signers_make_no_field_and_read_nothing() {
        let mut body = &b"body\n"[..];
        assert_eq!(sign_all(&[], b"A: 1\n\n", &mut body), Ok(Vec::new()));
        assert_eq!(body, b"body\n");
    }

    #[test]
    fn what_a_published_record_says_of_a_key() {
        let one = |r: &str| vec![r.to_string()];
        let (k, p) = ("rsa", "MIIBIjANBgkqAB");
        // (published records) -> Ok(a note) or Err(what is wrong)
        type Want = Result<Option<&'static str>, &'static str>;
        let cases: &[(Vec<String>, Want)] = &[
            (one("v=DKIM1; k=rsa; p=MIIBIjANBgkqAB"), Ok(None)),
            (one("p=MIIBIjANBgkqAB"), Ok(None)),
            (one("v=DKIM1;k=RSA;p=MIIBIj ANBg\tkqAB;"), Ok(None)),
            (
                one("v=DKIM1; h=sha1:sha256; s=email; p=MIIBIjANBgkqAB"),
                Ok(None),
            ),
            (one("v=DKIM1; s=*; p=MIIBIjANBgkqAB; x=future"), Ok(None)),
            (
                one("v=DKIM1; t=y; p=MIIBIjANBgkqAB"),
                Ok(Some("t=y: receivers treat its signatures as a test")),
            ),
            (
                vec![],
                Err("no TXT record: publish the one `spoolctl dkim-keygen` printed"),
            ),
            (
                vec!["p=MIIBIjANBgkqAB".into(), "p=other".into()],
                Err("2 TXT records: publish one"),
            ),
            (
                one("v=DKIM1; p="),
                Err("the record revokes the key (empty p=)"),
            ),
            (
                one("v=DKIM1; k=rsa"),
                Err("the record has no p= (no public key)"),
            ),
            (
                one("v=DKIM1; p=MIIBIjANBgkqAC"),
                Err("the record's public key (p=) is not this key's"),
            ),
            (
                one("v=DKIM1; k=ed25519; p=MIIBIjANBgkqAB"),
                Err("the record is for k=ed25519, the key is rsa"),
            ),
            (
                one("v=DKIM2; p=MIIBIjANBgkqAB"),
                Err("v=DKIM2 is not DKIM1"),
            ),
            (
                one("p=MIIBIjANBgkqAB; v=DKIM1"),
                Err("v= is not the record's first tag"),
            ),
            (
                one("v=DKIM1; h=sha1; p=MIIBIjANBgkqAB"),
                Err("the record's h= leaves out sha256"),
            ),
            (
                one("v=DKIM1; s=tlsrpt; p=MIIBIjANBgkqAB"),
                Err("the record's s= leaves out email"),
            ),
            (
                one("v=DKIM1; p=MIIBIjANBgkqAB; p=x"),
                Err("the record has p twice"),
            ),
            (
                one("v=DKIM1; garbage; p=MIIBIjANBgkqAB"),
                Err("`garbage` is not tag=value"),
            ),
        ];
        for (records, want) in cases {
            let got = record_verdict(records, k, p);
            let want = want.map(|n| n.map(String::from)).map_err(String::from);
            assert_eq!(got, want, "{records:?}");
        }
    }

    #[test]
    fn zone_lines_split_long_text() {
        let text = "x".repeat(300);
        assert_eq!(
            zone_line("s._domainkey.example.org", &text),
            format!(
                "s._domainkey.example.org. IN TXT ( \"{}\" \"{}\" )",
                "x".repeat(255),
                "x".repeat(45)
            )
        );
    }
}
