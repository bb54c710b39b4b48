//! OAuth 2.0 that keeps itself alive, against real servers on loopback: a
//! token endpoint over HTTPS with a test CA's certificate
//! (token_server.py) and an SMTP smarthost (sink.py with STARTTLS) that
//! takes as XOAUTH2 bearer only the access token the endpoint issued last.
//! The access token is cached in the spool and refreshed before it
//! expires and when the server refuses it; a rotated refresh token is
//! saved and used on the next run; concurrent children refresh once; a
//! refused refresh defers and says what to run; the client_credentials
//! grant; `spoolctl oauth2 authorize`'s device flow.

mod harness;

use harness::{Config, Pki, Smtp, Spool, TokenServer};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const CLIENT: &str = "spoolmail-test-client";

/// The test's world: a CA, the token endpoint, the smarthost, a spool.
struct World {
    pki: Pki,
    endpoint: TokenServer,
    sink: Smtp,
    spool: Spool,
}

impl World {
    /// `endpoint_args`: token_server.py's; `refresh`: the refresh token
    /// file's first content (None: the client_credentials grant).
    fn new(label: &str, endpoint_args: &[&str], refresh: Option<&str>) -> World {
        let pki = Pki::new();
        let endpoint = TokenServer::start(&pki, CLIENT, endpoint_args);
        let token_file = endpoint.access_token_file();
        let mut sink_args = pki.server(&["127.0.0.1"]).sink_args();
        sink_args.push("--auth=alice:none".into());
        sink_args.push(format!("--auth-token-file={}", token_file.display()));
        sink_args.push("--auth-mechanisms=XOAUTH2".into());
        let sink_args: Vec<&str> = sink_args.iter().map(String::as_str).collect();
        let sink = Smtp::start(harness::Fixture::Sink, "127.0.0.1", 0, &sink_args)
            .unwrap_or_else(|e| panic!("{e}"));
        let spool = Spool::new(label, &Config::delivery());
        let w = World {
            pki,
            endpoint,
            sink,
            spool,
        };
        let more = match refresh {
            Some(rt) => {
                let file = w.spool.secret("refresh_token", &format!("{rt}\n"));
                format!("auth_oauth2_refresh_token_file = {}\n", file.display())
            }
            None => {
                let file = w.spool.secret("client_secret", "s3cret\n");
                format!("auth_oauth2_client_secret_file = {}\n", file.display())
            }
        };
        w.configure(&more);
        w
    }

    fn configure(&self, more: &str) {
        self.spool.configure(&Config::delivery().lines(&format!(
            "smarthost = {}\ntls = required\ntls_ca_file = {}\nauth_user = alice\n\
             auth_oauth2_client_id = {CLIENT}\nauth_oauth2_token_url = {}\n\
             auth_oauth2_device_url = {}\nauth_oauth2_scope = mail send\n{more}",
            self.sink.addr(),
            self.pki.ca.display(),
            self.endpoint.url("/token"),
            self.endpoint.url("/device"),
        )));
    }

    /// Submits one message and runs a pass.
    fn send(&self) {
        self.spool.run_ok(
            &["-f", "alice@example.org", "bob@example.net"],
            b"From: alice@example.org\nSubject: oauth2\n\nhello\n",
        );
        self.spool.pass(&[]);
    }

    fn token_requests(&self) -> usize {
        (self.endpoint.requests().iter())
            .filter(|l| l.starts_with("POST /token "))
            .count()
    }

    fn refresh_token_file(&self) -> String {
        fs::read_to_string(self.spool.root().join("refresh_token")).unwrap()
    }

    /// `spoolctl -C CONF ARGS`: the binary through a link named spoolctl.
    fn spoolctl(&self, args: &[&str]) -> harness::Outcome {
        let link = self.spool.root().join("spoolctl");
        if !link.exists() {
            std::os::unix::fs::symlink(harness::bin(), &link).unwrap();
        }
        let mut cmd = std::process::Command::new(link);
        cmd.arg("-C").arg(&self.spool.conf).args(args);
        harness::run(cmd, b"", Duration::from_secs(30))
    }

    fn cache(&self) -> std::path::PathBuf {
        self.spool.spool.join("oauth2").join("token")
    }
}

#[test]
fn a_cached_access_token_serves_until_it_nears_expiry() {
    let w = World::new("oauth2-cache", &["--refresh-token", "rt-0"], Some("rt-0"));
    w.send();
    assert_eq!(
        w.sink.wait_for_messages(1, Duration::from_secs(10))[0].auth,
        "alice"
    );
    w.spool.assert_delivered();
    assert_eq!(w.token_requests(), 1);
    let requests = w.endpoint.requests();
    assert!(
        requests[0].contains(" refresh_token mail+send "),
        "{requests:?}"
    );
    let cache = fs::read_to_string(w.cache()).unwrap();
    assert!(cache.starts_with("SPOOLMAIL-OAUTH2 1\n"), "{cache}");
    assert!(cache.contains("\ntoken at-1\n"), "{cache}");
    let mode = fs::metadata(w.cache()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    // The cached token serves the next run: no request.
    w.send();
    w.sink.wait_for_messages(2, Duration::from_secs(10));
    assert_eq!(w.token_requests(), 1);

    // A token that expires within the margin is refreshed first.
    w.endpoint.set_state("expires_in", "60");
    fs::remove_file(w.cache()).unwrap();
    w.send();
    w.sink.wait_for_messages(3, Duration::from_secs(10));
    assert_eq!(w.token_requests(), 2);
    w.send();
    w.sink.wait_for_messages(4, Duration::from_secs(10));
    assert_eq!(w.token_requests(), 3, "{:?}", w.endpoint.requests());
    w.spool.assert_delivered();
}

#[test]
fn a_refused_access_token_is_refreshed_and_the_message_sent_on_a_new_connection() {
    let w = World::new("oauth2-535", &["--refresh-token", "rt-0"], Some("rt-0"));
    w.send();
    w.sink.wait_for_messages(1, Duration::from_secs(10));
    // Revoked at the server before it expired.
    w.endpoint.set_state("access_token", "revoked");
    w.send();
    w.sink.wait_for_messages(2, Duration::from_secs(10));
    w.spool.assert_delivered();
    assert_eq!(w.token_requests(), 2);
    assert!(
        w.spool.log().contains("getting a new OAuth2 access token"),
        "{}",
        w.spool.log()
    );
    assert!(
        fs::read_to_string(w.cache())
            .unwrap()
            .contains("\ntoken at-2\n")
    );
}

#[test]
fn a_rotated_refresh_token_is_saved_and_used_on_the_next_run() {
    let w = World::new(
        "oauth2-rotate",
        &["--refresh-token", "rt-0", "--rotate", "--expires-in", "60"],
        Some("rt-0"),
    );
    w.send();
    w.sink.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(w.refresh_token_file(), "rt-1\n");
    let path = w.spool.root().join("refresh_token");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // The endpoint now takes only rt-1; the short lifetime refreshes again.
    w.send();
    w.sink.wait_for_messages(2, Duration::from_secs(10));
    w.spool.assert_delivered();
    assert_eq!(w.refresh_token_file(), "rt-2\n");
    assert_eq!(w.token_requests(), 2);
}

#[test]
fn concurrent_children_refresh_once() {
    let w = World::new(
        "oauth2-concurrent",
        &["--refresh-token", "rt-0", "--rotate", "--delay", "1"],
        Some("rt-0"),
    );
    const N: usize = 4;
    for i in 0..N {
        w.spool.run_ok(
            &["-f", "alice@example.org", &format!("bob{i}@example.net")],
            b"Subject: together\n\nhello\n",
        );
    }
    // One pass per message, all at once: each its own delivery child.
    let passes: Vec<_> = (0..N).map(|_| w.spool.spawn_pass()).collect();
    for p in passes {
        harness::wait_output(p, Duration::from_secs(60));
    }
    w.sink.wait_for_messages(N, Duration::from_secs(20));
    w.spool.assert_delivered();
    assert_eq!(w.token_requests(), 1, "{:?}", w.endpoint.requests());
    assert_eq!(w.refresh_token_file(), "rt-1\n");
}

#[test]
fn a_refused_refresh_token_defers_and_says_what_to_run() {
    let w = World::new(
        "oauth2-invalid-grant",
        &["--refresh-token", "rt-9"],
        Some("rt-0"),
    );
    w.send();
    w.spool.assert_deferred("spoolctl oauth2 authorize");
    let mailq = w.spool.mailq();
    assert!(mailq.contains("invalid_grant"), "{mailq}");
    assert_eq!(w.sink.message_count(), 0);
    // Authorized again (the file fixed): the waiting mail goes.
    fs::write(w.spool.root().join("refresh_token"), "rt-9\n").unwrap();
    w.spool.pass(&[]);
    w.sink.wait_for_messages(1, Duration::from_secs(10));
    w.spool.assert_delivered();
}

#[test]
fn client_credentials_for_app_only_sending() {
    let w = World::new("oauth2-app-only", &["--client-secret", "s3cret"], None);
    w.send();
    w.sink.wait_for_messages(1, Duration::from_secs(10));
    w.spool.assert_delivered();
    let requests = w.endpoint.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].contains(" client_credentials "), "{requests:?}");
}

#[test]
fn a_wrong_client_secret_defers() {
    let w = World::new("oauth2-bad-secret", &["--client-secret", "other"], None);
    w.send();
    w.spool.assert_deferred("invalid_client");
    assert_eq!(w.sink.message_count(), 0);
}

#[test]
fn the_device_flow_saves_the_first_refresh_token() {
    let w = World::new("oauth2-device", &["--pending", "1"], Some("old"));
    let path = w.spool.root().join("refresh_token");
    fs::remove_file(&path).unwrap();
    // An access token cached for the account authorized before.
    fs::create_dir_all(w.cache().parent().unwrap()).unwrap();
    fs::write(
        w.cache(),
        format!(
            "SPOOLMAIL-OAUTH2 1\ntoken_url {}\nclient_id {CLIENT}\nexpires 99999999999\ntoken at-old\n",
            w.endpoint.url("/token")
        ),
    )
    .unwrap();
    let out = w.spoolctl(&["oauth2", "authorize"]);
    assert!(out.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("https://login.example.test/device"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("WDJB-MJHT"), "{}", out.stdout);
    assert_eq!(fs::read_to_string(&path).unwrap(), "rt-1\n");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let requests = w.endpoint.requests();
    assert!(
        requests[0].starts_with("POST /device - mail+send "),
        "{requests:?}"
    );
    assert_eq!(requests.len(), 3, "{requests:?}"); // device, pending, tokens
    assert!(
        !w.cache().exists(),
        "the old account's access token is gone"
    );
    // And it serves delivery.
    w.endpoint.set_state("expires_in", "60");
    w.send();
    w.sink.wait_for_messages(1, Duration::from_secs(10));
    w.spool.assert_delivered();
}

#[test]
fn the_device_flow_stops_on_a_refusal() {
    // Here only the refusal: slow_down's five seconds more are a unit test
    // (oauth2::tests::polls), not a wait in every run.
    let w = World::new(
        "oauth2-device-refused",
        &["--client-secret", "s3cret"],
        Some("old"),
    );
    let out = w.spoolctl(&["oauth2", "authorize"]);
    assert_eq!(out.code(), Some(75), "{}", out.stderr);
    assert!(out.stderr.contains("invalid_client"), "{}", out.stderr);
    assert_eq!(w.refresh_token_file(), "old\n");
}

const NOBODY: u32 = 65534;
/// `spoolmail -C CONF ARGS < stdin` as uid and gid 65534, not in the
/// spool's group (issue 15's review: only root's runs refresh).
fn as_nobody(w: &World, args: &[&str], stdin: &[u8]) -> harness::Outcome {
    use std::os::unix::process::CommandExt;
    let mut cmd = w.spool.cmd(args);
    cmd.uid(NOBODY).gid(NOBODY);
    harness::run(cmd, stdin, Duration::from_secs(60))
}

/// Sets the cached access token's expiry to `left` seconds from now.
fn expire_cache_in(w: &World, left: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let text = fs::read_to_string(w.cache()).unwrap();
    let changed: Vec<String> = text
        .lines()
        .map(|l| match l.starts_with("expires ") {
            true => format!("expires {}", now + left),
            false => l.to_string(),
        })
        .collect();
    fs::write(w.cache(), changed.join("\n") + "\n").unwrap();
}

#[test]
fn a_users_own_run_uses_the_cached_token_but_never_asks_the_endpoint() {
    if !harness::is_root() {
        eprintln!("skipped: running as another user needs root");
        return;
    }
    let w = World::new("oauth2-user", &["--refresh-token", "rt-0"], Some("rt-0"));
    w.send();
    w.sink.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(w.token_requests(), 1);
    // What the user's setgid process could read and write in an installed
    // spool: its queue, the token cache and lock, and the refresh token
    // (0640 root:spoolmail there). Without a setgid binary here, the user
    // gets them by group (queue) or as their owner (the rest; the spool's
    // group stays root's, so the user is not one of it).
    w.spool.share_queue_with_group(NOBODY);
    let oauth2 = w.spool.spool.join("oauth2");
    let refresh_token = w.spool.root().join("refresh_token");
    for path in [
        oauth2.clone(),
        w.cache(),
        oauth2.join("lock"),
        refresh_token,
    ] {
        std::os::unix::fs::chown(&path, Some(NOBODY), None).unwrap();
    }
    let message: &[u8] = b"From: carol@example.org\nSubject: mine\n\nhello\n";
    let submit = ["-f", "carol@example.org", "bob@example.net"];

    // Ten minutes left: root's runs would refresh (under 15), the user's
    // run uses it.
    expire_cache_in(&w, 600);
    as_nobody(&w, &submit, message).assert_ok();
    as_nobody(&w, &["-q"], b"").assert_ok();
    w.sink.wait_for_messages(2, Duration::from_secs(10));
    assert_eq!(w.token_requests(), 1, "{}", w.spool.log());

    // Thirty seconds left: the user's run leaves the message for root's.
    expire_cache_in(&w, 30);
    as_nobody(&w, &submit, message).assert_ok();
    as_nobody(&w, &["-q"], b"").assert_ok();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(w.sink.message_count(), 2, "{}", w.spool.log());
    assert_eq!(w.token_requests(), 1, "{}", w.spool.log());
    assert_eq!(w.spool.queue_ids().len(), 1, "the message waits");
    assert!(
        w.spool.log().contains("only a queue run of root"),
        "{}",
        w.spool.log()
    );
    w.spool.pass(&[]);
    w.sink.wait_for_messages(3, Duration::from_secs(10));
    assert_eq!(w.token_requests(), 2, "root's run refreshed");
    w.spool.assert_delivered();
}
