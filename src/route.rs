//! Where a destination's mail goes: the smarthosts in order, or the
//! domain's MX hosts by preference (equal preferences shuffled), the domain's
//! own address when it has no MX (the implicit MX), never anywhere for a null
//! MX (RFC 7505) or a domain that does not exist.
//!
//! Runs in a delivery child only: hickory-resolver is asynchronous, and its
//! current-thread runtime is built here, after the fork, never in the parent.

use crate::config::Config;
use crate::limits;
use crate::model::{Address, Destination, SenderPattern};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// One address to try, with the name it was found under (for EHLO logs,
/// TLS names and the Remote-MTA of bounces).
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The domain cannot receive mail: bounce.
    Permanent(String),
    /// Try again later.
    Temporary(String),
}

/// The destination a recipient belongs to: its sender's relay (`relay`,
/// the `sender_relay_map` line's) for all of them, else the smarthost for
/// all of them, otherwise recipients are grouped by domain (or address
/// literal).
pub fn destination_of(
    recipient: &Address,
    relay: Option<&SenderPattern>,
    config: &Config,
) -> Destination {
    Destination::routed(recipient, relay, !config.smarthosts.is_empty())
}

pub struct Router<'c> {
    config: &'c Config,
    dns: Option<(tokio::runtime::Runtime, TokioResolver)>,
}

impl<'c> Router<'c> {
    pub fn new(config: &'c Config) -> Router<'c> {
        Router { config, dns: None }
    }

    /// Every address to try for `destination`, in order.
    pub fn targets(&mut self, destination: &Destination) -> Result<Vec<Target>, RouteError> {
        match destination {
            Destination::Smarthost => relay_targets(&self.config.smarthosts, "the smarthost"),
            Destination::Relay(pattern) => match self.config.sender_relay(pattern) {
                Some(relay) => relay_targets(std::slice::from_ref(&relay.host), &relay.host),
                // The map changed under a pass: read at its start, so never.
                None => Err(RouteError::Temporary(format!(
                    "sender_relay_map has no line for {pattern}"
                ))),
            },
            Destination::Literal(ip) => Ok(vec![Target {
                host: destination.to_string(),
                addr: SocketAddr::new(*ip, self.config.smtp_port),
            }]),
            // Refused at submission; only a queue written before that has these.
            Destination::Domain(d) if d.starts_with('[') => {
                Err(RouteError::Permanent(format!("bad address literal {d}")))
            }
            Destination::Domain(d) => self.mx_targets(d),
        }
    }

    fn mx_targets(&mut self, domain: &str) -> Result<Vec<Target>, RouteError> {
        let port = self.config.smtp_port;
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let servers = dns_servers(self.config.dns_server.as_deref());
        let (rt, resolver) = self.resolver()?;
        let dns = Dns {
            rt,
            resolver,
            servers: &servers,
        };
        let mut exchanges = dns.exchanges(domain, &fqdn)?;
        if exchanges.len() == 1 && exchanges[0].1 == "." {
            return Err(RouteError::Permanent(format!(
                "domain {domain} does not accept mail (null MX)"
            )));
        }
        exchanges.retain(|(_, host)| host != ".");
        if exchanges.is_empty() {
            return dns.implicit_mx(domain, &fqdn, port);
        }
        shuffle_equal_preferences(&mut exchanges);
        dns.hosts(domain, &exchanges, port)
    }

    /// The TXT records of `name` through the MX look-ups' resolver, each
    /// record's strings joined (RFC 7208 3.3, RFC 8461 3.1): Ok(empty) when
    /// the name has none or does not exist; Err when the look-up failed.
    pub fn txt(&mut self, name: &str) -> Result<Vec<String>, String> {
        let servers = dns_servers(self.config.dns_server.as_deref());
        let (rt, resolver) = self.resolver().map_err(route_text)?;
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match rt.block_on(resolver.txt_lookup(fqdn)) {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(dns_failure(
                &format!("DNS lookup of TXT for {name}"),
                &servers,
                &e,
            )),
        }
    }

    /// The addresses of `host` through the MX look-ups' resolver (the
    /// hosts of HTTPS fetches are found as the MX hosts are).
    pub fn addresses(&mut self, host: &str) -> Result<Vec<IpAddr>, String> {
        let servers = dns_servers(self.config.dns_server.as_deref());
        let (rt, resolver) = self.resolver().map_err(route_text)?;
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match rt.block_on(resolver.lookup_ip(fqdn)) {
            Ok(ips) => Ok(ips.iter().collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                Err(format!("{host} has no address"))
            }
            Err(e) => Err(dns_failure(&format!("DNS lookup of {host}"), &servers, &e)),
        }
    }

    fn resolver(&mut self) -> Result<(&tokio::runtime::Runtime, &TokioResolver), RouteError> {
        if self.dns.is_none() {
            let fail =
                |e: String| RouteError::Temporary(format!("cannot start the DNS resolver: {e}"));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| fail(e.to_string()))?;
            let provider = TokioRuntimeProvider::default();
            let mut builder = match &self.config.dns_server {
                Some(server) => {
                    let (ip, port) = parse_dns_server(server);
                    let mut ns = NameServerConfig::udp_and_tcp(ip);
                    for c in &mut ns.connections {
                        c.port = port;
                    }
                    TokioResolver::builder_with_config(
                        ResolverConfig::from_name_servers(vec![ns]),
                        provider,
                    )
                }
                None => TokioResolver::builder(provider).map_err(|e| fail(e.to_string()))?,
            };
            let opts = builder.options_mut();
            opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
            opts.timeout = limits::DNS_TIMEOUT;
            opts.attempts = limits::DNS_ATTEMPTS;
            let resolver = {
                let _guard = rt.enter();
                builder.build().map_err(|e| fail(e.to_string()))?
            };
            self.dns = Some((rt, resolver));
        }
        let (rt, r) = self.dns.as_ref().expect("just built");
        Ok((rt, r))
    }
}

/// The addresses of relays (`HOST[:PORT]`, port 25 unless given) in
/// order, each name through the system resolver, so that /etc/hosts works
/// for them; `what` names them in the error when none resolves.
fn relay_targets(entries: &[String], what: &str) -> Result<Vec<Target>, RouteError> {
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        let (host, port) = split_host_port(entry, 25);
        match (host.as_str(), port).to_socket_addrs() {
            Ok(addrs) => targets.extend(addrs.map(|addr| Target {
                host: host.clone(),
                addr,
            })),
            Err(e) => errors.push(format!("{host}: {e}")),
        }
    }
    if targets.is_empty() {
        return Err(RouteError::Temporary(format!(
            "cannot resolve {what}: {}",
            errors.join("; ")
        )));
    }
    Ok(targets)
}

/// The resolver of one delivery child, for the lookups of one domain.
struct Dns<'r> {
    rt: &'r tokio::runtime::Runtime,
    resolver: &'r TokioResolver,
    /// Who is asked, for a failure's message.
    servers: &'r str,
}

impl Dns<'_> {
    /// The domain's MX records as (preference, exchange); none when it has
    /// no MX (but exists).
    fn exchanges(&self, domain: &str, fqdn: &str) -> Result<Vec<(u16, String)>, RouteError> {
        match self.rt.block_on(self.resolver.mx_lookup(fqdn)) {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_nx_domain() => Err(RouteError::Permanent(format!(
                "Host or domain name not found. Name service error for name={domain} type=MX: Host not found"
            ))),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(RouteError::Temporary(dns_failure(
                &format!("DNS lookup of MX for {domain}"),
                self.servers,
                &e,
            ))),
        }
    }

    /// No MX: the domain's own addresses (the implicit MX, RFC 5321 5.1).
    fn implicit_mx(&self, domain: &str, fqdn: &str, port: u16) -> Result<Vec<Target>, RouteError> {
        match self.rt.block_on(self.resolver.lookup_ip(fqdn)) {
            Ok(ips) => Ok(ips
                .iter()
                .map(|ip| Target {
                    host: domain.to_string(),
                    addr: SocketAddr::new(ip, port),
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Err(RouteError::Permanent(format!(
                "Host or domain name not found: no MX or address records for {domain}"
            ))),
            Err(e) => Err(RouteError::Temporary(dns_failure(
                &format!("DNS lookup of {domain}"),
                self.servers,
                &e,
            ))),
        }
    }

    /// The addresses of the MX hosts, in the order given.
    fn hosts(
        &self,
        domain: &str,
        exchanges: &[(u16, String)],
        port: u16,
    ) -> Result<Vec<Target>, RouteError> {
        let mut targets = Vec::new();
        let mut last_error = String::new();
        let mut only_missing_hosts = true;
        for (_, host) in exchanges {
            match self.rt.block_on(self.resolver.lookup_ip(host.as_str())) {
                Ok(ips) => {
                    let name = host.trim_end_matches('.').to_string();
                    targets.extend(ips.iter().map(|ip| Target {
                        host: name.clone(),
                        addr: SocketAddr::new(ip, port),
                    }));
                }
                Err(e) => {
                    only_missing_hosts &= e.is_no_records_found();
                    let what = format!(
                        "cannot resolve MX host {} of {domain}",
                        host.trim_end_matches('.')
                    );
                    last_error = if e.is_no_records_found() {
                        format!("{what}: {e}")
                    } else {
                        dns_failure(&what, self.servers, &e)
                    };
                }
            }
        }
        if targets.is_empty() {
            // MX hosts that do not exist will not exist on retry either.
            return Err(if only_missing_hosts {
                RouteError::Permanent(format!("Host or domain name not found: {last_error}"))
            } else {
                RouteError::Temporary(last_error)
            });
        }
        Ok(targets)
    }
}

fn route_text(e: RouteError) -> String {
    match e {
        RouteError::Permanent(t) | RouteError::Temporary(t) => t,
    }
}

/// The servers a lookup asks: `dns_server`, else /etc/resolv.conf's.
fn dns_servers(configured: Option<&str>) -> String {
    if let Some(server) = configured {
        return server.to_string();
    }
    match hickory_resolver::system_conf::read_system_conf() {
        Ok((conf, _)) if !conf.name_servers().is_empty() => {
            let mut ips: Vec<String> = conf
                .name_servers()
                .iter()
                .map(|ns| ns.ip.to_string())
                .collect();
            ips.dedup();
            ips.join(", ")
        }
        _ => "of /etc/resolv.conf".to_string(),
    }
}

/// A lookup that got no usable answer, naming the server asked: hickory
/// says only "no connections available" when none answered.
fn dns_failure(what: &str, servers: &str, e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let silent = ["no connections available", "timed out", "timeout"]
        .iter()
        .any(|t| text.to_ascii_lowercase().contains(t));
    if silent {
        format!("{what} failed: the DNS server {servers} did not answer ({text})")
    } else {
        format!("{what} failed at the DNS server {servers}: {text}")
    }
}

fn parse_dns_server(s: &str) -> (IpAddr, u16) {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return (sa.ip(), sa.port());
    }
    (s.parse().unwrap_or(IpAddr::from([127, 0, 0, 1])), 53)
}

/// `host`, `host:port`, `[v6]:port`.
fn split_host_port(entry: &str, default_port: u16) -> (String, u16) {
    if let Some(rest) = entry.strip_prefix('[')
        && let Some((h, after)) = rest.split_once(']')
    {
        return (
            h.to_string(),
            after
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(default_port),
        );
    }
    match entry.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(default_port)),
        None => (entry.to_string(), default_port),
    }
}

/// Sorts by preference; hosts of equal preference in random order (RFC 5321 5.1).
fn shuffle_equal_preferences(list: &mut [(u16, String)]) {
    let mut keyed: Vec<(u16, u64, String)> = list
        .iter()
        .map(|(p, h)| (*p, crate::system::random_u64(), h.clone()))
        .collect();
    keyed.sort();
    for (slot, (p, _, h)) in list.iter_mut().zip(keyed) {
        *slot = (p, h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("relay.example:587", 25),
            ("relay.example".into(), 587)
        );
        assert_eq!(
            split_host_port("relay.example", 25),
            ("relay.example".into(), 25)
        );
        assert_eq!(split_host_port("[::1]:2525", 25), ("::1".into(), 2525));
    }

    #[test]
    fn preferences_sorted() {
        let mut l = vec![
            (20, "b".to_string()),
            (10, "a".to_string()),
            (20, "c".to_string()),
        ];
        shuffle_equal_preferences(&mut l);
        assert_eq!(l[0], (10, "a".to_string()));
        assert!(l[1..].iter().all(|(p, _)| *p == 20));
    }
}
