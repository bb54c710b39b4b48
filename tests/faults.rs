//! Systematic fault injection: a submission and a delivery pass run under
//! strace, which fails one durability-relevant system call in turn (each
//! call of each kind, by its number: `inject=SYSCALL:error=EIO:when=N`, and
//! ENOSPC where the kernel returns it) or kills the process at it
//! (`signal=SIGKILL`), the code unchanged. After every fault the invariants
//! must hold:
//!
//! - a submission that exits 0 queued the whole message, and mailq lists
//!   it; one that exits with an error queued nothing; one that was killed
//!   queued the whole message or nothing;
//! - a pass never loses a message: each is delivered, still queued whole,
//!   or bounced to its sender, and a pass after it (without a fault)
//!   delivers whatever is left; a message is delivered at most once more
//!   than once per fault injected;
//! - `queue/` never holds a partial message.
//!
//! The counts of faults tried and of their outcomes are printed (run with
//! `--nocapture` to see them). strace is installed by scripts/test-deps.

mod harness;

use harness::{Config, Queued, Smtp, Spool};
use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::Duration;

/// The system calls that decide whether a message is stored, found or
/// removed (those a run does not make are skipped).
const SYSCALLS: &[&str] = &[
    "openat",
    "read",
    "write",
    "pwrite64",
    "fsync",
    "fdatasync",
    "ftruncate",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "linkat",
    "flock",
    "close",
];

/// ENOSPC only where a full disk reports it.
const ENOSPC_TOO: &[&str] = &[
    "openat",
    "write",
    "pwrite64",
    "fsync",
    "fdatasync",
    "ftruncate",
    "rename",
    "renameat",
    "renameat2",
    "linkat",
];

/// A pass makes many calls of some kinds (a socket's reads, closing
/// descriptors); past this many of one kind, every other one is tried.
const DENSE_UP_TO: usize = 12;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Error(&'static str),
    Kill,
}

impl Fault {
    fn inject(self, syscall: &str, n: usize) -> String {
        match self {
            Fault::Error(e) => format!("inject={syscall}:error={e}:when={n}"),
            Fault::Kill => format!("inject={syscall}:signal=SIGKILL:when={n}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fault::Error(e) => e,
            Fault::Kill => "SIGKILL",
        }
    }
}

/// Every (system call, fault) pair to try.
fn plan() -> Vec<(&'static str, Fault)> {
    let mut plan = Vec::new();
    for &syscall in SYSCALLS {
        plan.push((syscall, Fault::Error("EIO")));
        if ENOSPC_TOO.contains(&syscall) {
            plan.push((syscall, Fault::Error("ENOSPC")));
        }
        plan.push((syscall, Fault::Kill));
    }
    plan
}

/// What strace did in one run: how many faults it injected (one per process
/// that reached the call's number), and the binary's exit.
struct Injected {
    faults: usize,
    outcome: harness::Outcome,
}

/// Runs the binary with `args` under strace, with `fault` at the `n`-th
/// `syscall` of each process.
fn under_strace(
    s: &Spool,
    syscall: &str,
    fault: Fault,
    n: usize,
    args: &[&str],
    input: &[u8],
) -> Injected {
    let trace = s.root().join("strace.out");
    let _ = fs::remove_file(&trace);
    let mut cmd = Command::new("strace");
    // cargo's library path would have the loader try a dozen directories
    // for each library: calls of no interest, each one more fault to try.
    cmd.env_remove("LD_LIBRARY_PATH")
        .arg("-f")
        .arg("-o")
        .arg(&trace)
        .arg("-e")
        .arg(format!("trace={syscall}"))
        .arg("-e")
        .arg(fault.inject(syscall, n))
        .arg(harness::bin())
        .arg("-C")
        .arg(&s.conf)
        .args(args);
    let outcome = harness::run(cmd, input, Duration::from_secs(60));
    let text = fs::read_to_string(&trace).unwrap_or_default();
    let faults = text.matches("(INJECTED)").count() + text.matches("killed by SIGKILL").count();
    Injected { faults, outcome }
}

/// How many calls of each kind of SYSCALLS the busiest process of a run
/// makes, from a run under strace without a fault: the calls to try.
fn census(s: &Spool, args: &[&str], input: &[u8]) -> BTreeMap<String, usize> {
    let trace = s.root().join("census.out");
    // `?`: a call this machine does not have (rename on arm64) is no error.
    let kinds: Vec<String> = SYSCALLS.iter().map(|c| format!("?{c}")).collect();
    let mut cmd = Command::new("strace");
    cmd.env_remove("LD_LIBRARY_PATH")
        .arg("-f")
        .arg("-o")
        .arg(&trace)
        .arg("-e")
        .arg(format!("trace={}", kinds.join(",")))
        .arg(harness::bin())
        .arg("-C")
        .arg(&s.conf)
        .args(args);
    harness::run(cmd, input, Duration::from_secs(60)).assert_ok();
    let mut per_process: BTreeMap<(String, String), usize> = BTreeMap::new();
    for line in fs::read_to_string(&trace).unwrap().lines() {
        let mut words = line.split_whitespace();
        let (Some(pid), Some(call)) = (words.next(), words.next()) else {
            continue;
        };
        if let Some((name, _)) = call.split_once('(') {
            *per_process.entry((pid.into(), name.into())).or_default() += 1;
        }
    }
    let mut most = BTreeMap::new();
    for ((_, name), n) in per_process {
        let m = most.entry(name).or_default();
        *m = n.max(*m);
    }
    most
}

/// The numbers of the calls to try for a kind made `count` times: all of
/// the first DENSE_UP_TO, then every other one.
fn numbers(count: usize) -> impl Iterator<Item = usize> {
    (1..=count).filter(|&n| n <= DENSE_UP_TO || (n - DENSE_UP_TO) % 2 == 1)
}

/// Outcome counts by name, printed at the end.
#[derive(Default)]
struct Tally {
    tried: usize,
    outcomes: BTreeMap<String, usize>,
    by_call: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn count(&mut self, syscall: &'static str, fault: Fault, outcome: &str) {
        self.tried += 1;
        *self.by_call.entry(syscall).or_default() += 1;
        let key = format!("{outcome} ({} {syscall})", fault.name());
        *self.outcomes.entry(key).or_default() += 1;
    }

    fn print(&self, what: &str) {
        println!("fault injection, {what}: {} faults tried", self.tried);
        let calls: Vec<String> = (self.by_call.iter())
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        println!("  by system call: {}", calls.join(", "));
        for (outcome, n) in &self.outcomes {
            println!("  {n:5}  {outcome}");
        }
    }
}

/// Every message file of `queue/` parses whole: its envelope, and its
/// content ends as every message this file submits does.
fn assert_queue_whole(s: &Spool, body_end: &[u8], context: &str) {
    for name in s.queue_files() {
        if !harness::is_queue_id(&name) {
            continue;
        }
        let Ok(bytes) = fs::read(s.queue_dir().join(&name)) else {
            continue; // removed meanwhile
        };
        let q = Queued::parse(&bytes)
            .unwrap_or_else(|e| panic!("{context}: partial message {name} in queue/: {e}"));
        assert!(
            q.content.ends_with(body_end) || q.sender().is_empty(),
            "{context}: message {name} is not whole"
        );
    }
}

const SUBMITTED: &[u8] = b"From: alice@example.org\nSubject: fault\n\nfirst line\nlast line\n";
const SUBMIT_ARGS: [&str; 3] = ["-f", "alice@example.org", "bob@example.com"];
const BODY_END: &[u8] = b"\nfirst line\nlast line\n";

/// One fault in a submission, and its invariant; returns the outcome's name.
fn submission_fault(s: &Spool, syscall: &str, fault: Fault, n: usize) -> Option<String> {
    let run = under_strace(s, syscall, fault, n, &SUBMIT_ARGS, SUBMITTED);
    if run.faults == 0 {
        return None;
    }
    let context = format!("{} at {syscall} #{n}", fault.name());
    assert_queue_whole(s, BODY_END, &context);
    let queued = s.queue_ids();
    let outcome = match run.outcome.code() {
        Some(0) => {
            assert_eq!(queued.len(), 1, "{context}: exit 0, yet queued {queued:?}");
            let mailq = s.mailq();
            assert!(mailq.contains(&queued[0]), "{context}: not listed: {mailq}");
            "exit 0, queued whole and listed"
        }
        // The dynamic loader failed before main: nothing ran.
        Some(127) => {
            assert!(
                queued.is_empty(),
                "{context}: exit 127, yet queued {queued:?}"
            );
            "the program could not start, nothing queued"
        }
        Some(code) => {
            assert!(
                queued.is_empty(),
                "{context}: exit {code} ({}), yet queued {queued:?}",
                run.outcome.stderr.trim()
            );
            assert!(
                (64..=78).contains(&code),
                "{context}: exit {code}: {}",
                run.outcome.stderr
            );
            "error exit, nothing queued"
        }
        None if queued.is_empty() => "killed, nothing queued",
        None => "killed after the commit, queued whole",
    };
    clear(s);
    Some(outcome.to_string())
}

/// Empties the spool for the next fault.
fn clear(s: &Spool) {
    for dir in [s.queue_dir(), s.tmp_dir()] {
        for name in harness::list_dir(&dir) {
            let _ = fs::remove_file(dir.join(name));
        }
    }
}

#[test]
fn every_fault_in_a_submission_keeps_the_invariants() {
    harness::require_program("strace");
    let s = Spool::new("faults-submit", &Config::submission());
    let calls = census(&s, &SUBMIT_ARGS, SUBMITTED);
    clear(&s);
    let mut tally = Tally::default();
    for (syscall, fault) in plan() {
        for n in numbers(calls.get(syscall).copied().unwrap_or(0)) {
            if let Some(outcome) = submission_fault(&s, syscall, fault, n) {
                tally.count(syscall, fault, &outcome);
            }
        }
        clear(&s);
    }
    tally.print("submission");
    assert!(tally.tried > 50, "only {} faults", tally.tried);
}

/// The messages of one round of the pass test, each with a subject of its
/// own to find it at the server: the first to an address the server has not
/// seen, which it defers once (so the pass records a deferral), the second
/// to one it knows, which it takes (so the pass removes a message).
fn submit_round(s: &Spool, round: usize) -> [String; 2] {
    let fresh = format!("fresh{round}@example.com");
    let to = [fresh.as_str(), "known@example.com"];
    [0, 1].map(|j| {
        let subject = format!("round {round} message {j}");
        let msg = format!("From: alice@example.org\nSubject: {subject}\n\nfirst line\nlast line\n");
        s.run_ok(&["-f", "alice@example.org", to[j]], msg.as_bytes());
        subject
    })
}

/// How many times the server got the message with `subject`.
fn delivered(sink: &Smtp, subject: &str) -> usize {
    let line = format!("\r\nSubject: {subject}\r\n");
    sink.messages()
        .iter()
        .filter(|m| m.mail_from == "alice@example.org" && m.text().contains(&line))
        .count()
}

/// One fault in a pass over two fresh messages, and its invariants; returns
/// the outcome's name.
fn pass_fault(
    s: &Spool,
    server: &Smtp,
    round: usize,
    syscall: &str,
    fault: Fault,
    n: usize,
) -> Option<String> {
    let subjects = submit_round(s, round);
    let run = under_strace(s, syscall, fault, n, &["-q"], b"");
    let context = format!("{} at {syscall} #{n}", fault.name());
    assert_queue_whole(s, BODY_END, &context);
    let as_without_fault = delivered(server, &subjects[1]) == 1
        && s.queue_ids().len() == 1
        && s.state(&s.queue_ids()[0]).contains("deferred");
    // Whatever the fault left, passes without one deliver it.
    for _ in 0..4 {
        if s.queue_ids().is_empty() {
            break;
        }
        s.cmd(&["-q"]).output().expect("run a pass");
    }
    assert_eq!(
        s.queue_ids(),
        Vec::<String>::new(),
        "{context}: {}",
        s.mailq()
    );
    let bounced = server
        .messages()
        .iter()
        .filter(|m| m.mail_from.is_empty())
        .count();
    assert_eq!(bounced, 0, "{context}: a bounce, yet the server takes all");
    let mut duplicates = 0;
    for sj in &subjects {
        let times = delivered(server, sj);
        assert!(times >= 1, "{context}: {sj} lost: {}", s.log());
        duplicates += times - 1;
    }
    assert!(
        duplicates <= run.faults.max(1),
        "{context}: {duplicates} duplicates"
    );
    if run.faults == 0 {
        return None;
    }
    Some(match (duplicates, as_without_fault) {
        (0, true) => "as without a fault: one delivered, one deferred".into(),
        (0, false) => "left for the next pass, which delivered it".into(),
        _ => format!("one delivery duplicated ({syscall})"),
    })
}

#[test]
fn every_fault_in_a_delivery_pass_keeps_the_invariants() {
    harness::require_program("strace");
    let server = Smtp::faulty("tempfail-once", &[]);
    let config = Config::delivery().set("smarthost", server.addr());
    let s = Spool::new("faults-pass", &config);
    // The server learns the known address (it defers it once), then the
    // census pass takes the first round without a fault.
    s.run_ok(&["-f", "alice@example.org", "known@example.com"], SUBMITTED);
    s.pass(&[]);
    s.pass(&[]);
    assert!(s.queue_ids().is_empty(), "{}", s.log());
    submit_round(&s, 0);
    let calls = census(&s, &["-q"], b"");
    s.pass(&[]);
    let mut tally = Tally::default();
    let mut round = 0;
    for (syscall, fault) in plan() {
        for n in numbers(calls.get(syscall).copied().unwrap_or(0)) {
            round += 1;
            if let Some(outcome) = pass_fault(&s, &server, round, syscall, fault, n) {
                tally.count(syscall, fault, &outcome);
            }
        }
    }
    tally.print("delivery pass");
    assert!(tally.tried > 50, "only {} faults", tally.tried);
}
