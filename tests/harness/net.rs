//! Loopback addresses and ports for the servers a test starts.

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// A loopback address of its own for each call in this process:
/// 127.X.Y.Z with X from the process id and Y.Z from a counter, never
/// 127.0.0.1 (left to the DNS fixture and other tools).
pub fn loopback_host() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let x = 10 + std::process::id() % 240;
    format!("127.{}.{}.{}", x, (n / 250) % 256, 1 + n % 250)
}

/// A port that was free on `host` for TCP and UDP a moment ago (bound to
/// port 0, then released). Nothing listens there: good for a "connection
/// refused" destination.
pub fn free_port(host: &str) -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind((host, 0)).expect("bind a loopback port");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((host, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {host}")
}

/// "host:port", with IPv6 hosts in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
