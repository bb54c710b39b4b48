//! The metrics file (`metrics_file`): after passes that deliver (to an
//! aiosmtpd sink), bounce (a 550 from faulty.py), defer (its 451) and
//! expire, the file read by `prometheus_client`'s text-format parser says
//! what the queue holds and what the passes did; a message spoolctl holds,
//! or whose state file cannot be read, counts as held; an ordinary user's
//! pass leaves the file alone.

mod harness;

use harness::{Config, Smtp, Spool, python, require_python_module, run};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MESSAGE: &[u8] = b"Subject: metrics\n\nbody\n";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Reads the file with prometheus_client's parser: each sample as
/// `name{label="value",...}` and its value, and each family's type as
/// `# TYPE name`.
fn parse(path: &Path) -> BTreeMap<String, String> {
    require_python_module("prometheus_client.parser");
    const SCRIPT: &str = r##"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    print(f"# TYPE {family.name}\t{family.type}")
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}}\t{s.value:.0f}" if labels else f"{s.name}\t{s.value:.0f}")
"##;
    let mut cmd = Command::new(python());
    cmd.args(["-c", SCRIPT]).arg(path);
    let out = run(cmd, b"", Duration::from_secs(30));
    assert!(out.success(), "the parser refused it: {}", out.stderr);
    out.stdout
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The value of one sample, as a number.
fn value(m: &BTreeMap<String, String>, sample: &str) -> u64 {
    let v = m
        .get(sample)
        .unwrap_or_else(|| panic!("no {sample} in {m:#?}"));
    v.parse().unwrap()
}

/// The queue's gauges: (active, deferred, hold) messages and (pending,
/// deferred, notice_owed) recipients.
fn gauges(m: &BTreeMap<String, String>) -> ([u64; 3], [u64; 3]) {
    let messages = ["active", "deferred", "hold"]
        .map(|s| value(m, &format!("spoolmail_queue_messages{{state=\"{s}\"}}")));
    let recipients = ["pending", "deferred", "notice_owed"]
        .map(|s| value(m, &format!("spoolmail_queue_recipients{{status=\"{s}\"}}")));
    (messages, recipients)
}

/// The counters: delivered, deferred, bounced, expired.
fn counters(m: &BTreeMap<String, String>) -> [u64; 4] {
    ["delivered", "deferred", "bounced", "expired"]
        .map(|o| value(m, &format!("spoolmail_recipients_total{{outcome=\"{o}\"}}")))
}

/// Recipients a server took, over every message it recorded.
fn taken(server: &Smtp) -> u64 {
    server
        .messages()
        .iter()
        .map(|m| m.rcpt_tos.len() as u64)
        .sum()
}

/// `spoolctl -C CONF ARGS`: the binary through a link named spoolctl.
fn spoolctl(s: &Spool, args: &[&str]) -> Command {
    let link = s.root().join("spoolctl");
    if !link.exists() {
        std::os::unix::fs::symlink(harness::bin(), &link).unwrap();
    }
    let mut cmd = Command::new(link);
    cmd.arg("-C").arg(&s.conf).args(args);
    cmd
}

struct Setup {
    s: Spool,
    metrics: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let s = Spool::new("metrics", &Config::delivery());
        let dir = s.root().join("textfile");
        fs::create_dir(&dir).unwrap();
        Setup {
            metrics: dir.join("spoolmail.prom"),
            s,
        }
    }

    /// Delivery through `server`; the first attempt is followed by one more
    /// an hour later, then the message expires.
    fn through(&self, server: &Smtp) {
        let config = Config::delivery()
            .set("smarthost", server.addr())
            .set("retry_schedule", "0 1h")
            .set("metrics_file", self.metrics.display());
        self.s.configure(&config);
    }

    /// A pass (`args` after `-q`), and the file it wrote, parsed; checks
    /// that the pass stamped it and left nothing else in its directory.
    fn pass(&self, args: &[&str]) -> BTreeMap<String, String> {
        let before = now();
        self.s.pass(args);
        let m = parse(&self.metrics);
        let stamp = value(&m, "spoolmail_last_pass_completed_timestamp_seconds");
        assert!((before..=now()).contains(&stamp), "{stamp} {before}");
        let mode = fs::metadata(&self.metrics).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "{mode:o}");
        let names: Vec<_> = fs::read_dir(self.metrics.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["spoolmail.prom"]);
        m
    }
}

#[test]
fn passes_that_deliver_bounce_defer_and_expire_are_in_the_metrics() {
    let t = Setup::new();
    let sink = Smtp::sink(&[]);
    t.through(&sink);
    // Delivered.
    t.s.submit_one(&["a@example.net"], MESSAGE);
    let m = t.pass(&[]);
    assert_eq!(m["# TYPE spoolmail_queue_messages"], "gauge");
    assert_eq!(m["# TYPE spoolmail_recipients"], "counter");
    assert_eq!(gauges(&m), ([0, 0, 0], [0, 0, 0]));
    assert_eq!(value(&m, "spoolmail_queue_oldest_message_age_seconds"), 0);
    assert_eq!(counters(&m), [1, 0, 0, 0]);
    assert_eq!(taken(&sink), 1);

    // One recipient refused (550), one taken; the bounce is delivered too.
    let refusing = Smtp::faulty("reject-rcpt", &[]);
    t.through(&refusing);
    t.s.submit_one(&["ok@example.net", "bad@example.net"], MESSAGE);
    let m = t.pass(&[]);
    assert_eq!(gauges(&m), ([0, 0, 0], [0, 0, 0]), "{}", t.s.log());
    let delivered = 1 + taken(&refusing);
    assert_eq!(delivered, 3, "ok@ and the bounce: {}", t.s.log());
    assert_eq!(counters(&m), [delivered, 0, 1, 0]);

    // Deferred (451): waits an hour for its next attempt.
    let later = Smtp::faulty("tempfail-always", &[]);
    t.through(&later);
    let c = t.s.submit_one(&["c@example.net"], MESSAGE);
    let m = t.pass(&[]);
    assert_eq!(gauges(&m), ([0, 1, 0], [0, 1, 0]), "{}", t.s.log());
    assert_eq!(counters(&m), [delivered, 1, 1, 0]);
    assert!(value(&m, "spoolmail_queue_oldest_message_age_seconds") < 60);

    // Its second and last attempt, forced: it expires, and its bounce is
    // queued (not attempted: the forced pass takes that message only).
    let m = t.pass(&["-qI", &c.id]);
    assert_eq!(gauges(&m), ([1, 0, 0], [1, 0, 0]), "{}", t.s.log());
    assert_eq!(counters(&m), [delivered, 1, 1, 1]);

    // A message whose state cannot be read is held, and so is one that
    // spoolctl holds.
    let unreadable = t.s.submit_one(&["h@example.net"], MESSAGE);
    let state = t.s.queue_dir().join(format!("{}.state", unreadable.id));
    fs::write(state, "garbage\n").unwrap();
    let held = t.s.submit_one(&["held@example.net"], MESSAGE);
    let out = run(
        spoolctl(&t.s, &["hold", &held.id]),
        b"",
        Duration::from_secs(30),
    );
    assert!(out.success(), "{}", out.stderr);
    let m = t.pass(&[]);
    let ([_, _, hold], _) = gauges(&m);
    assert_eq!(hold, 2, "{m:#?}");
    // The counters are the spool's: the file says so too.
    let file = fs::read_to_string(t.s.spool.join("counters")).unwrap();
    assert!(file.starts_with("SPOOLMAIL-COUNTERS 1\nsince "), "{file}");
    assert!(file.contains("\nbounced 1\nexpired 1\n"), "{file}");
}

/// `spoolctl list --json`: each message's (queue_id, queue_name), read by
/// Python's JSON parser.
fn queue_names(t: &Setup) -> Vec<(String, String)> {
    let out = run(
        spoolctl(&t.s, &["list", "--json"]),
        b"",
        Duration::from_secs(30),
    );
    assert!(out.success(), "{}", out.stderr);
    let mut cmd = Command::new(python());
    cmd.args([
        "-c",
        "import json, sys\nfor l in sys.stdin: o = json.loads(l); print(o['queue_id'], o['queue_name'])",
    ]);
    let parsed = run(cmd, out.stdout.as_bytes(), Duration::from_secs(30));
    assert!(parsed.success(), "{}", parsed.stderr);
    (parsed.stdout.lines())
        .map(|l| {
            let (id, name) = l.split_once(' ').unwrap();
            (id.to_string(), name.to_string())
        })
        .collect()
}

/// The metrics' `state` and the JSON listing's `queue_name` are one rule
/// (Postfix's queues): a message in a runner's hands is active in both (the
/// metrics called it deferred), one made due by `spoolctl retry` is active
/// (the listing called it deferred), one waiting for its retry deferred.
/// In a runner's hands: its claim lock taken and, since spool format 1.8,
/// its state without a copy of its envelope, as a runner writes the state
/// that begins its transaction; a lock on a message whose state has the
/// copy (an outcome's, an admin's) is a moment's (a spoolctl action), and
/// deferred in both.
#[test]
fn the_metrics_and_the_json_listing_agree_on_what_is_active() {
    let t = Setup::new();
    let later = Smtp::faulty("tempfail-always", &[]);
    t.through(&later);
    let busy = t.s.submit_one(&["busy@example.net"], MESSAGE);
    let waiting = t.s.submit_one(&["waiting@example.net"], MESSAGE);
    let m = t.pass(&[]);
    assert_eq!(gauges(&m).0, [0, 2, 0], "{}", t.s.log());
    // The claim lock a delivery holds, taken as a runner takes it.
    let claim = fs::File::open(t.s.queue_dir().join(&busy.id)).unwrap();
    claim.lock().unwrap();
    let named = |id: &str, name: &str| (id.to_string(), name.to_string());
    let m = t.pass(&[]);
    assert_eq!(gauges(&m).0, [0, 2, 0], "{}", t.s.log());
    assert_eq!(
        queue_names(&t),
        [named(&busy.id, "deferred"), named(&waiting.id, "deferred")]
    );
    // And the state without the copy it writes before its transaction.
    let state_path = t.s.queue_dir().join(format!("{}.state", busy.id));
    let state = fs::read_to_string(&state_path).unwrap();
    assert!(state.contains("\ncontent-size "), "{state}");
    let begun: String = state
        .lines()
        .filter(|l| !l.starts_with("envelope ") && !l.starts_with("content-size "))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&state_path, begun).unwrap();
    let m = t.pass(&[]);
    assert_eq!(gauges(&m).0, [1, 1, 0], "{}", t.s.log());
    assert_eq!(
        queue_names(&t),
        [named(&busy.id, "active"), named(&waiting.id, "deferred")]
    );
    drop(claim);
    let out = run(
        spoolctl(&t.s, &["retry", &waiting.id]),
        b"",
        Duration::from_secs(30),
    );
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(
        queue_names(&t),
        [named(&busy.id, "deferred"), named(&waiting.id, "active")]
    );
}

/// A pass that may not take everyone's mail (an ordinary user's) does not
/// write the file; the counters are still the spool's.
#[test]
fn an_ordinary_users_pass_leaves_the_metrics_file_alone() {
    if !harness::is_root() {
        eprintln!("skipped: needs root to run a pass as another user");
        return;
    }
    const NOBODY: u32 = 65534;
    let t = Setup::new();
    let sink = Smtp::sink(&[]);
    t.through(&sink);
    t.s.open_to_all();
    let dir = t.metrics.parent().unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(&t.s.spool, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(t.s.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = t.s.cmd(&["a@example.net"]);
    std::os::unix::process::CommandExt::uid(&mut cmd, NOBODY);
    std::os::unix::process::CommandExt::gid(&mut cmd, NOBODY);
    assert!(run(cmd, MESSAGE, Duration::from_secs(30)).success());
    let mut cmd = t.s.cmd(&["-q"]);
    std::os::unix::process::CommandExt::uid(&mut cmd, NOBODY);
    std::os::unix::process::CommandExt::gid(&mut cmd, NOBODY);
    let out = run(cmd, b"", Duration::from_secs(60));
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(taken(&sink), 1, "nobody's own message: {}", t.s.log());
    assert!(!t.metrics.exists(), "{}", t.s.log());
    let file = fs::read_to_string(t.s.spool.join("counters")).unwrap();
    assert!(file.contains("\ndelivered 1\n"), "{file}");
    // Root's pass writes it.
    let m = t.pass(&[]);
    assert_eq!(counters(&m), [1, 0, 0, 0]);
}

/// A submission's background runner (`-odb`) runs passes over the queue
/// too: root's writes the file when it is done.
#[test]
fn a_background_runner_writes_the_metrics_when_its_pass_completes() {
    let t = Setup::new();
    let sink = Smtp::sink(&[]);
    t.through(&sink);
    let before = now();
    t.s.run_ok(&["-odb", "a@example.net"], MESSAGE);
    // The runner's children linger for new messages before the pass ends.
    let done = harness::wait_until(Duration::from_secs(30), || t.s.running().is_empty());
    assert!(done, "still running: {:?}", t.s.running());
    assert_eq!(taken(&sink), 1, "{}", t.s.log());
    let m = parse(&t.metrics);
    assert_eq!(counters(&m), [1, 0, 0, 0]);
    assert_eq!(gauges(&m), ([0, 0, 0], [0, 0, 0]));
    let stamp = value(&m, "spoolmail_last_pass_completed_timestamp_seconds");
    assert!((before..=now()).contains(&stamp), "{stamp} {before}");
}
