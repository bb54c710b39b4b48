//! MTA-STS (RFC 8461) against real servers on loopback: the test DNS zone
//! holds `_mta-sts.sts.test`'s TXT record and the addresses of the MX host
//! and of `mta-sts.sts.test`, whose HTTPS policy server (sts_server.py) has
//! a certificate from a test CA, as the MX hosts (sink.py) do. Under
//! `enforce`, a listed MX with a certificate that verifies gets the mail,
//! anything else defers with a reason naming the policy; `testing` delivers
//! and logs; a cached policy serves while the policy server is down; a new
//! TXT id fetches the policy again; a policy that cannot be had, or is
//! refused, is no policy and never holds mail.

mod harness;

use harness::{Cert, Config, Dns, DnsZone, Fixture, Pki, PolicyServer, Smtp, Spool};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const DOMAIN: &str = "sts.test";
const MX: &str = "mx1.sts.test";
const POLICY_HOST: &str = "mta-sts.sts.test";

fn policy(mode: &str, mx: &[&str]) -> String {
    let mut text = format!("version: STSv1\nmode: {mode}\n");
    for m in mx {
        text.push_str(&format!("mx: {m}\n"));
    }
    text.push_str("max_age: 86400\n");
    text
}

/// The zone: sts.test's MX, its `_mta-sts` record with `id`, and the
/// policy host on `policy_host`.
fn zone(mx_host: &str, id: &str, policy_host: &str) -> DnsZone {
    DnsZone::new()
        .mx(DOMAIN, 10, MX)
        .host(MX, &[mx_host])
        .txt(&format!("_mta-sts.{DOMAIN}"), &format!("v=STSv1; id={id}"))
        .host(POLICY_HOST, &[policy_host])
}

/// sink.py on an address of its own, with STARTTLS and `cert` when given.
fn sink(cert: Option<&Cert>) -> Smtp {
    let args = cert.map(Cert::sink_args).unwrap_or_default();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Smtp::start(Fixture::Sink, &harness::loopback_host(), 0, &args)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The test's world: a test CA, an MX sink, the DNS zone, the policy
/// server, and a spool whose config points at them.
struct World {
    pki: Pki,
    mx: Smtp,
    dns: Dns,
    server: PolicyServer,
    spool: Spool,
}

impl World {
    /// `mx_cert` makes the MX host's certificate (None: no STARTTLS).
    fn new(label: &str, policy_text: &str, mx_cert: impl Fn(&Pki) -> Option<Cert>) -> World {
        let pki = Pki::new();
        let mx = sink(mx_cert(&pki).as_ref());
        let server = PolicyServer::start(&pki.server(&[POLICY_HOST]), policy_text, &[]);
        let dns = Dns::start(&zone(&mx.host, "1", &server.host));
        let spool = Spool::new(label, &Config::delivery());
        let w = World {
            pki,
            mx,
            dns,
            server,
            spool,
        };
        w.configure("");
        w
    }

    fn configure(&self, more: &str) {
        self.spool.configure(&Config::delivery().lines(&format!(
            "dns_server = {}\nsmtp_port = {}\nmta_sts_port = {}\ntls_ca_file = {}\n{more}",
            self.dns.addr(),
            self.mx.port,
            self.server.port,
            self.pki.ca.display()
        )));
    }

    /// Serves `zone` from a new DNS server from now on.
    fn new_dns(&mut self, zone: &DnsZone) {
        self.dns = Dns::start(zone);
        self.configure("");
    }

    /// Submits one message to user@sts.test and runs a pass.
    fn send(&self) {
        self.spool.run_ok(
            &["-f", "alice@example.org", "user@sts.test"],
            b"From: alice@example.org\nSubject: sts\n\nhello\n",
        );
        self.spool.pass(&[]);
    }

    fn cache(&self) -> std::path::PathBuf {
        self.spool.spool.join("sts").join(DOMAIN)
    }
}

fn valid(pki: &Pki) -> Option<Cert> {
    Some(pki.server(&[MX]))
}

#[test]
fn enforce_with_a_listed_mx_and_a_valid_certificate_delivers() {
    let w = World::new("sts-ok", &policy("enforce", &[MX]), valid);
    w.send();
    assert_eq!(
        w.mx.wait_for_messages(1, Duration::from_secs(10))[0].tls,
        "TLSv1.3"
    );
    w.spool.assert_delivered();
    assert_eq!(w.server.requests(), 1);
    let log = w.spool.log();
    assert!(
        log.contains("MTA-STS policy of sts.test fetched (id 1): mode enforce, max_age 86400"),
        "{log}"
    );
    // Cached in the spool, as doc/SPOOL.md says.
    let cache = fs::read_to_string(w.cache()).expect("the policy is cached");
    assert!(
        cache.starts_with("SPOOLMAIL-STS 1\nid 1\nfetched "),
        "{cache}"
    );
    assert!(cache.ends_with(&policy("enforce", &[MX])), "{cache}");
    let mode = fs::metadata(w.cache()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    let dir_mode = fs::metadata(w.spool.spool.join("sts"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o7777, 0o2770);
    // A wildcard matches one label.
    w.server.set_policy(&policy("enforce", &["*.sts.test"]));
    fs::remove_file(w.cache()).unwrap();
    w.send();
    w.mx.wait_for_messages(2, Duration::from_secs(10));
    assert_eq!(w.server.requests(), 2);
}

#[test]
fn enforce_refuses_an_mx_the_policy_does_not_list() {
    let w = World::new(
        "sts-unlisted",
        &policy("enforce", &["mx9.sts.test", "*.other.test"]),
        valid,
    );
    w.send();
    w.spool
        .assert_deferred("MTA-STS policy of sts.test does not list MX host mx1.sts.test");
    assert_eq!(w.mx.message_count(), 0);
    assert_eq!(w.mx.connections(), 0, "not even a connection");
}

#[test]
fn enforce_refuses_an_mx_without_starttls() {
    let w = World::new("sts-plain", &policy("enforce", &[MX]), |_| None);
    w.send();
    w.spool.assert_deferred(&format!(
        "MTA-STS policy of sts.test requires TLS: host {MX}[{}]:{} does not offer STARTTLS",
        w.mx.host, w.mx.port
    ));
    assert_eq!(w.mx.message_count(), 0);
    // Whatever `tls` says.
    w.configure("tls = off\n");
    w.spool.pass(&[]);
    assert_eq!(w.mx.message_count(), 0);
}

#[test]
fn enforce_refuses_a_certificate_that_does_not_verify() {
    // Signed by nobody the spool trusts.
    let w = World::new("sts-selfsigned", &policy("enforce", &[MX]), |pki| {
        Some(pki.self_signed(&[MX]))
    });
    w.send();
    w.spool.assert_deferred(
        "MTA-STS policy of sts.test requires TLS: the certificate of mx1.sts.test",
    );
    assert!(
        w.spool.mailq().contains("unknown issuer"),
        "{}",
        w.spool.mailq()
    );
    assert_eq!(w.mx.message_count(), 0);

    // Signed by the CA, but for another name.
    let w = World::new("sts-othername", &policy("enforce", &[MX]), |pki| {
        Some(pki.server(&["mx2.sts.test"]))
    });
    w.send();
    w.spool.assert_deferred("did not verify");
    assert!(
        w.spool
            .mailq()
            .contains("MTA-STS policy of sts.test requires TLS")
    );
    assert_eq!(w.mx.message_count(), 0);
}

#[test]
fn testing_delivers_and_logs_what_enforce_would_refuse() {
    let w = World::new("sts-testing", &policy("testing", &["mx9.sts.test"]), |_| {
        None
    });
    w.send();
    w.mx.wait_for_messages(1, Duration::from_secs(10));
    w.spool.assert_delivered();
    let log = w.spool.log();
    assert!(
        log.contains(
            "MTA-STS policy of sts.test does not list MX host mx1.sts.test (mx: mx9.sts.test) \
             (policy in testing mode: delivering anyway)"
        ),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "MTA-STS policy of sts.test requires TLS: host {MX}[{}]:{} does not offer STARTTLS \
             (policy in testing mode: delivering anyway)",
            w.mx.host, w.mx.port
        )),
        "{log}"
    );
}

#[test]
fn a_cached_policy_serves_while_the_policy_server_is_down() {
    let pki = Pki::new();
    // Two MX sinks on one port (smtp_port): one with a valid certificate,
    // one without STARTTLS.
    let tls_args = pki.server(&[MX]).sink_args();
    let tls_args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    let mut sinks = Smtp::start_same_port(&[(Fixture::Sink, &tls_args), (Fixture::Sink, &[])]);
    let plain = sinks.pop().unwrap();
    let good = sinks.pop().unwrap();
    let server = PolicyServer::start(&pki.server(&[POLICY_HOST]), &policy("enforce", &[MX]), &[]);
    let mut w = World {
        dns: Dns::start(&zone(&good.host, "1", &server.host)),
        mx: good,
        pki,
        server,
        spool: Spool::new("sts-cached", &Config::delivery()),
    };
    w.configure("");
    w.send();
    w.mx.wait_for_messages(1, Duration::from_secs(10));
    w.spool.assert_delivered();

    // The policy server goes down, the record announces a new policy, and
    // the MX host no longer offers STARTTLS: the cached policy still
    // enforces.
    let policy_host = w.server.host.clone();
    // Stopped: its address refuses connections (the new one listens elsewhere).
    drop(std::mem::replace(
        &mut w.server,
        PolicyServer::start(&w.pki.server(&[POLICY_HOST]), "unused", &[]),
    ));
    w.new_dns(&zone(&plain.host, "2", &policy_host));
    w.send();
    w.spool
        .assert_deferred("MTA-STS policy of sts.test requires TLS");
    assert!(
        w.spool
            .log()
            .contains("MTA-STS policy of sts.test not fetched: "),
        "{}",
        w.spool.log()
    );
    assert!(w.spool.log().contains("the cached policy serves"));
    assert_eq!(plain.message_count(), 0);
}

#[test]
fn a_new_txt_id_fetches_the_policy_again() {
    let mut w = World::new("sts-refetch", &policy("enforce", &[MX]), valid);
    w.send();
    w.mx.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(w.server.requests(), 1);

    // The same id: the cached policy serves, the server is not asked.
    w.server.set_policy(&policy("enforce", &["mx9.sts.test"]));
    w.send();
    w.mx.wait_for_messages(2, Duration::from_secs(10));
    assert_eq!(w.server.requests(), 1);

    // A new id: fetched again, and the new policy applies.
    let zone = zone(&w.mx.host, "2", &w.server.host);
    w.new_dns(&zone);
    w.send();
    assert_eq!(w.server.requests(), 2);
    w.spool
        .assert_deferred("MTA-STS policy of sts.test does not list MX host mx1.sts.test");
    assert!(
        fs::read_to_string(w.cache()).unwrap().contains("\nid 2\n"),
        "the new policy is cached"
    );
}

#[test]
fn no_policy_to_be_had_never_holds_mail() {
    // The record announces a policy, but nothing serves it and none is cached.
    let pki = Pki::new();
    let mx = sink(None);
    let dns = Dns::start(&zone(&mx.host, "1", &harness::loopback_host()));
    let s = Spool::new("sts-none", &Config::delivery());
    s.configure(&Config::delivery().lines(&format!(
        "dns_server = {}\nsmtp_port = {}\nmta_sts_port = {}\ntls_ca_file = {}\n",
        dns.addr(),
        mx.port,
        harness::free_port("127.0.0.1"),
        pki.ca.display()
    )));
    s.run_ok(
        &["-f", "alice@example.org", "user@sts.test"],
        b"Subject: x\n\nx\n",
    );
    s.pass(&[]);
    mx.wait_for_messages(1, Duration::from_secs(10));
    s.assert_delivered();
    assert!(
        s.log().contains("MTA-STS policy of sts.test not fetched: ")
            && s.log().contains("no policy applies"),
        "{}",
        s.log()
    );
}

#[test]
fn a_hostile_or_malformed_policy_is_refused_and_mail_goes_as_without_one() {
    let enforce = policy("enforce", &["mx9.sts.test"]);
    let huge = format!("{enforce}{}", "x: y\n".repeat(14_000));
    for (text, extra, logged) in [
        (huge.as_str(), vec![], "larger than 65536 bytes"),
        (
            enforce.as_str(),
            vec!["--content-type", "text/html"],
            "served as text/html, not text/plain",
        ),
        (
            enforce.as_str(),
            vec!["--status", "301", "--location", "https://elsewhere.test/"],
            "HTTP status 301 (redirects are not followed)",
        ),
        (enforce.as_str(), vec!["--status", "404"], "HTTP status 404"),
        (
            "<html>no</html>",
            vec![],
            "policy refused: line `<html>no</html>` is not `key: value`",
        ),
        (
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            vec![],
            "policy refused: it lists no mx",
        ),
    ] {
        let pki = Pki::new();
        let mx = sink(None);
        let server = PolicyServer::start(&pki.server(&[POLICY_HOST]), text, &extra);
        let w = World {
            dns: Dns::start(&zone(&mx.host, "1", &server.host)),
            mx,
            pki,
            server,
            spool: Spool::new("sts-hostile", &Config::delivery()),
        };
        w.configure("");
        w.send();
        w.mx.wait_for_messages(1, Duration::from_secs(10));
        w.spool.assert_delivered();
        let log = w.spool.log();
        assert!(log.contains(logged), "{extra:?}: {log}");
        assert!(log.contains("no policy applies"), "{log}");
        assert!(!w.cache().exists(), "nothing refused is cached");
    }
}

#[test]
fn mta_sts_no_skips_the_lookup() {
    let w = World::new("sts-off", &policy("enforce", &["mx9.sts.test"]), |_| None);
    w.configure("mta_sts = no\n");
    w.send();
    w.mx.wait_for_messages(1, Duration::from_secs(10));
    w.spool.assert_delivered();
    assert_eq!(w.server.requests(), 0);
    assert!(
        !w.dns.query_log().contains("_mta-sts"),
        "{}",
        w.dns.query_log()
    );
}

/// Rewrites the cached policy's head: `fetched` (and `tried`, when given)
/// that many seconds ago.
fn age_cache(w: &World, fetched_ago: u64, tried_ago: Option<u64>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let text = fs::read_to_string(w.cache()).unwrap();
    let (head, policy) = text.split_once("\n\n").unwrap();
    let mut lines: Vec<String> = (head.lines())
        .filter(|l| !l.starts_with("fetched ") && !l.starts_with("tried "))
        .map(String::from)
        .collect();
    lines.push(format!("fetched {}", now - fetched_ago));
    if let Some(ago) = tried_ago {
        lines.push(format!("tried {}", now - ago));
    }
    fs::write(w.cache(), format!("{}\n\n{policy}", lines.join("\n"))).unwrap();
}

#[test]
fn a_policy_past_half_its_max_age_is_refreshed_and_a_failed_refresh_waits_an_hour() {
    let w = World::new("sts-refresh", &policy("enforce", &[MX]), valid);
    w.send();
    w.mx.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(w.server.requests(), 1);

    // Past half its max_age (86400), the id unchanged: a refresh. The
    // server now serves something that is no policy: the refresh fails,
    // the cached policy still enforces (the mail goes to the listed MX
    // over verified TLS), and the try is noted.
    age_cache(&w, 50_000, None);
    w.server.set_policy("not a policy\n");
    w.send();
    w.mx.wait_for_messages(2, Duration::from_secs(10));
    assert_eq!(w.server.requests(), 2, "{}", w.spool.log());
    let log = w.spool.log();
    assert!(
        log.contains("MTA-STS policy of sts.test not refreshed: ")
            && log.contains("; the cached policy serves"),
        "{log}"
    );
    let cache = fs::read_to_string(w.cache()).unwrap();
    assert!(cache.contains("\ntried "), "{cache}");
    assert!(cache.contains("mx: mx1.sts.test"), "{cache}");

    // Within the hour: not tried again.
    w.send();
    w.mx.wait_for_messages(3, Duration::from_secs(10));
    assert_eq!(w.server.requests(), 2, "{}", w.spool.log());

    // An hour after the failed try, a good policy: refreshed, cached with
    // a new fetch time, and it applies.
    age_cache(&w, 50_000, Some(3600));
    w.server.set_policy(&policy("enforce", &["mx9.sts.test"]));
    w.send();
    assert_eq!(w.server.requests(), 3);
    assert!(
        w.spool
            .log()
            .contains("MTA-STS policy of sts.test refreshed (id 1): mode enforce"),
        "{}",
        w.spool.log()
    );
    w.spool
        .assert_deferred("MTA-STS policy of sts.test does not list MX host mx1.sts.test");
    let cache = fs::read_to_string(w.cache()).unwrap();
    assert!(!cache.contains("\ntried "), "{cache}");
    assert!(cache.contains("mx: mx9.sts.test"), "{cache}");
}

#[test]
fn a_domain_in_unicode_has_its_policy_under_its_a_labels() {
    let ace = "xn--bcher-kva.test"; // bücher.test
    let mx_name = format!("mx1.{ace}");
    let policy_host = format!("mta-sts.{ace}");
    let pki = Pki::new();
    let mx = sink(Some(&pki.server(&[&mx_name])));
    let text = policy("enforce", &[&format!("mx9.{ace}")]);
    let server = PolicyServer::start(&pki.server(&[&policy_host]), &text, &[]);
    let dns = Dns::start(
        &DnsZone::new()
            .mx(ace, 10, &mx_name)
            .host(&mx_name, &[&mx.host])
            .txt(&format!("_mta-sts.{ace}"), "v=STSv1; id=1")
            .host(&policy_host, &[&server.host]),
    );
    let spool = Spool::new("sts-idna", &Config::delivery());
    spool.configure(&Config::delivery().lines(&format!(
        "dns_server = {}\nsmtp_port = {}\nmta_sts_port = {}\ntls_ca_file = {}\n",
        dns.addr(),
        mx.port,
        server.port,
        pki.ca.display()
    )));
    spool.run_ok(
        &["-f", "alice@example.org", "user@bücher.test"],
        b"From: alice@example.org\nSubject: idna\n\nhello\n",
    );
    spool.pass(&[]);
    assert_eq!(server.requests(), 1, "{}", spool.log());
    spool.assert_deferred(&format!(
        "MTA-STS policy of {ace} does not list MX host {mx_name}"
    ));
    assert_eq!(mx.message_count(), 0);
    assert!(spool.spool.join("sts").join(ace).exists());
}
