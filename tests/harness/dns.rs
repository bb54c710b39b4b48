//! The DNS fixture: dnsmasq (tests/fixtures/dns_server.py) serving `.test`.

use super::files::scratch_dir;
use super::json::Json;
use super::net::host_port;
use super::servers::{Proc, StartError};
use super::tools::{fixtures_dir, python, require_program};
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The records the DNS fixture serves. Everything must be under `.test`,
/// and addresses must be loopback ones. Names under .test that are not given
/// are NXDOMAIN; other types of given names are NODATA.
#[derive(Clone, Debug, Default)]
pub struct DnsZone {
    mx: Vec<(String, String, u16)>,
    hosts: BTreeMap<String, Vec<String>>,
    txt: Vec<(String, String)>,
    servfail: Vec<String>,
    timeout: Vec<String>,
}

impl DnsZone {
    pub fn new() -> DnsZone {
        DnsZone::default()
    }

    /// An MX record: `domain` MX `pref` `target`.
    pub fn mx(mut self, domain: &str, pref: u16, target: &str) -> DnsZone {
        self.mx.push((domain.into(), target.into(), pref));
        self
    }

    /// A null MX (RFC 7505): `domain` MX 0 ".".
    pub fn null_mx(self, domain: &str) -> DnsZone {
        self.mx(domain, 0, ".")
    }

    /// A and AAAA records (IPv4 and IPv6 loopback addresses) for `name`;
    /// called twice for one name, the addresses add up.
    pub fn host(mut self, name: &str, addrs: &[&str]) -> DnsZone {
        self.hosts
            .entry(name.into())
            .or_default()
            .extend(addrs.iter().map(|a| a.to_string()));
        self
    }

    /// A TXT record for `name` (a DKIM key, an MTA-STS or SPF record): one
    /// record whose strings are `text` in pieces of 255 octets. Printable
    /// text without quotes or backslashes.
    pub fn txt(mut self, name: &str, text: &str) -> DnsZone {
        self.txt.push((name.into(), text.into()));
        self
    }

    /// `domain` and every name under it answer SERVFAIL.
    pub fn servfail(mut self, domain: &str) -> DnsZone {
        self.servfail.push(domain.into());
        self
    }

    /// Queries for `domain` and every name under it get no answer at all.
    pub fn timeout(mut self, domain: &str) -> DnsZone {
        self.timeout.push(domain.into());
        self
    }

    /// The standard test zone, with the SMTP fixtures' addresses filled in:
    ///
    /// | name | answer |
    /// |---|---|
    /// | `mx.test` | MX 10 `mx1.mx.test` (A `primary`) |
    /// | `failover.test` | MX 10 `mx1.failover.test` (A `primary`), MX 20 `mx2.failover.test` (A `secondary`) |
    /// | `multi.test` | MX 10 `mx.multi.test` with two addresses: A `primary`, A `secondary` |
    /// | `implicit.test` | no MX (NODATA), A `primary` (the implicit MX) |
    /// | `nullmx.test` | MX 0 `.` (RFC 7505) |
    /// | `dangling.test` | MX 10 `gone.dangling.test`, which is NXDOMAIN |
    /// | `nxdomain.test`, any other name under .test | NXDOMAIN |
    /// | `servfail.test` (and names under it) | SERVFAIL |
    /// | `timeout.test` (and names under it) | no answer |
    pub fn standard(primary: &str, secondary: &str) -> DnsZone {
        DnsZone::new()
            .mx("mx.test", 10, "mx1.mx.test")
            .host("mx1.mx.test", &[primary])
            .mx("failover.test", 10, "mx1.failover.test")
            .mx("failover.test", 20, "mx2.failover.test")
            .host("mx1.failover.test", &[primary])
            .host("mx2.failover.test", &[secondary])
            .mx("multi.test", 10, "mx.multi.test")
            .host("mx.multi.test", &[primary, secondary])
            .host("implicit.test", &[primary])
            .null_mx("nullmx.test")
            .mx("dangling.test", 10, "gone.dangling.test")
            .servfail("servfail.test")
            .timeout("timeout.test")
    }

    fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (domain, target, pref) in &self.mx {
            a.push(format!("--mx-host={domain},{target},{pref}"));
        }
        for (name, addrs) in &self.hosts {
            a.push(format!("--host-record={name},{}", addrs.join(",")));
        }
        for (name, text) in &self.txt {
            a.push(format!("--txt-record={name},{text}"));
        }
        for d in &self.servfail {
            a.push(format!("--servfail={d}"));
        }
        for d in &self.timeout {
            a.push(format!("--timeout={d}"));
        }
        a
    }
}

/// A running DNS fixture (dnsmasq, through tests/fixtures/dns_server.py).
pub struct Dns {
    /// Always 127.0.0.1.
    pub host: String,
    /// The UDP and TCP port it answers on.
    pub port: u16,
    /// dnsmasq.conf, dnsmasq.log (every query), dnsmasq.stderr.
    pub outdir: PathBuf,
    proc: Proc,
}

/// One answer from the DNS fixture, as `Dns::query` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsAnswer {
    /// "NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", ... or "TIMEOUT".
    pub rcode: String,
    /// The answer records of the asked type in text form, sorted:
    /// "10 mx1.mx.test." for MX, "127.0.0.2" for A, "0 ." for a null MX.
    pub records: Vec<String>,
}

impl Dns {
    /// Starts dnsmasq on 127.0.0.1 and a free port (found by binding UDP and
    /// TCP to port 0 and releasing them; retried if dnsmasq cannot bind).
    pub fn start(zone: &DnsZone) -> Dns {
        Dns::start_with(zone, &[])
    }

    /// Same, with extra dns_server.py arguments (e.g. `["--lifetime", "5"]`).
    pub fn start_with(zone: &DnsZone, extra: &[&str]) -> Dns {
        require_program("dnsmasq");
        let outdir = scratch_dir("dns");
        let mut argv: Vec<String> = vec![
            "--outdir".into(),
            outdir.to_string_lossy().into_owned(),
            "--listen".into(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
            "--lifetime".into(),
            "300".into(),
        ];
        argv.extend(zone.args());
        argv.extend(extra.iter().map(|a| a.to_string()));
        match Proc::start("dns_server.py", &argv, &outdir, "dns") {
            Ok((proc, host, port)) => Dns {
                host,
                port,
                outdir,
                proc,
            },
            Err(StartError::BindFailed(m)) | Err(StartError::Other(m)) => panic!("{m}"),
        }
    }

    /// "127.0.0.1:PORT", the form of spoolmail's `dns_server`.
    pub fn addr(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// Asks one question over UDP (dnsq.py, dnspython), `qtype` as "MX",
    /// "A", "AAAA"...; no answer within 3 s gives rcode "TIMEOUT" (a
    /// forwarded question's answer comes through dnsmasq and a Python stub,
    /// which a loaded machine can hold up past a second).
    pub fn query(&self, name: &str, qtype: &str) -> DnsAnswer {
        self.query_many(&[(name, qtype)]).remove(0)
    }

    /// Asks several questions in one python process; a qtype written
    /// "tcp:MX" asks over TCP.
    pub fn query_many(&self, questions: &[(&str, &str)]) -> Vec<DnsAnswer> {
        let mut cmd = Command::new(python());
        cmd.arg(fixtures_dir().join("dnsq.py")).args([
            "--timeout",
            "3",
            "--json",
            &self.host,
            &self.port.to_string(),
        ]);
        for (name, qtype) in questions {
            cmd.arg(format!("{name}/{qtype}"));
        }
        let out = cmd
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .output()
            .expect("running dnsq.py");
        assert!(
            out.status.success(),
            "dnsq.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let answers: Vec<DnsAnswer> = text
            .lines()
            .map(|line| {
                let j = Json::parse(line).unwrap_or_else(|e| panic!("dnsq.py said {line:?}: {e}"));
                DnsAnswer {
                    rcode: j
                        .get("rcode")
                        .and_then(Json::as_str)
                        .unwrap_or("")
                        .to_string(),
                    records: j
                        .get("records")
                        .and_then(Json::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Json::as_str)
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        assert_eq!(answers.len(), questions.len(), "dnsq.py output: {text}");
        answers
    }

    /// dnsmasq's query log so far (one "query[MX] name from ..." line per
    /// question it got).
    pub fn query_log(&self) -> String {
        fs::read_to_string(self.outdir.join("dnsmasq.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }
}
