//! A temporary spool with its config file and log: what every test of the
//! binary starts from.

use super::files::{TempDir, list_dir, set_mode};
use super::queued::Queued;
use super::run::{Outcome, bin, run, spawn};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The config lines of a test spool after `spool_dir` and `log` (which
/// `Spool` writes first). A later line wins over an earlier one, so a test
/// changes a default by adding its own line.
#[derive(Clone, Debug)]
pub struct Config {
    text: String,
    /// How long one run of the binary may take before the test fails.
    deadline: Duration,
}

impl Config {
    /// For tests of submission: messages stay queued (no delivery attempt
    /// touches the spool behind a test's back or outlives it), and a
    /// delivery that starts anyway finds a closed port.
    pub fn submission() -> Config {
        Config {
            text: "qualify_domain = example.org\ndelivery_mode = queue\nsmarthost = 127.0.0.1:1\n"
                .into(),
            deadline: Duration::from_secs(30),
        }
    }

    /// For tests of delivery: queue-only submissions, short time-outs, a
    /// retry schedule that is always due; the destination is the test's.
    pub fn delivery() -> Config {
        Config {
            text: "qualify_domain = example.org\nhelo_name = client.test\ndelivery_mode = queue\n\
                   connect_timeout = 3s\ncommand_timeout = 10s\ndata_timeout = 10s\n\
                   retry_schedule = 0 0 0 0\n"
                .into(),
            deadline: Duration::from_secs(60),
        }
    }

    /// Adds `key = value`.
    pub fn set(mut self, key: &str, value: impl std::fmt::Display) -> Config {
        self.text.push_str(&format!("{key} = {value}\n"));
        self
    }

    /// Drops every `key = ...` line, so that the key has its built-in default.
    pub fn without(mut self, key: &str) -> Config {
        self.text = self
            .text
            .lines()
            .filter(|l| l.split('=').next().map(str::trim) != Some(key))
            .map(|l| format!("{l}\n"))
            .collect();
        self
    }

    /// Adds `lines` as they are (several lines, comments, errors).
    pub fn lines(mut self, lines: &str) -> Config {
        self.text.push_str(lines);
        if !lines.is_empty() && !lines.ends_with('\n') {
            self.text.push('\n');
        }
        self
    }

    /// How long one run of the binary may take.
    pub fn deadline(mut self, d: Duration) -> Config {
        self.deadline = d;
        self
    }
}

/// `ROOT/spool/{tmp,queue}`, `ROOT/spoolmail.conf` naming it and
/// `ROOT/maillog`, in a temporary directory removed on drop.
pub struct Spool {
    dir: TempDir,
    pub spool: PathBuf,
    pub conf: PathBuf,
    deadline: Duration,
}

impl Spool {
    pub fn new(label: &str, config: &Config) -> Spool {
        let dir = TempDir::new(label);
        let spool = dir.path().join("spool");
        make_spool_dirs(&spool);
        Spool::with_spool_dir(dir, spool, config)
    }

    /// A config naming `spool` (which the caller prepares, or not) as
    /// spool_dir.
    pub fn with_spool_dir(dir: TempDir, spool: PathBuf, config: &Config) -> Spool {
        let conf = dir.path().join("spoolmail.conf");
        let s = Spool {
            dir,
            spool,
            conf,
            deadline: config.deadline,
        };
        s.configure(config);
        s
    }

    /// Rewrites the config file with `config`.
    pub fn configure(&self, config: &Config) {
        let text = format!(
            "# test config\nspool_dir = {}\nlog = {}\n{}",
            self.spool.display(),
            self.log_path().display(),
            config.text
        );
        fs::write(&self.conf, text).expect("write config");
        set_mode(&self.conf, 0o644);
    }

    /// The temporary directory holding it all.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.root().join("maillog")
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.spool.join("queue")
    }

    /// Opens the spool to other users as the setgid binary's group does:
    /// `tmp/` and `queue/` go to group `gid` with mode 02770 (setgid, so
    /// every file made in them gets that group), and the log is open to all.
    /// For tests that run the binary as other uids; they need root.
    pub fn share_queue_with_group(&self, gid: u32) {
        for dir in [self.tmp_dir(), self.queue_dir()] {
            std::os::unix::fs::chown(&dir, None, Some(gid)).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o2770)).unwrap();
        }
        fs::write(self.log_path(), b"").unwrap();
        set_mode(&self.log_path(), 0o666);
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.spool.join("tmp")
    }

    /// Writes `ROOT/name` and returns its path.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.root().join(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// A file only its owner and the spool's group can read (as a password
    /// file must be: 0640 root:spoolmail in an installed system).
    pub fn secret(&self, name: &str, text: &str) -> PathBuf {
        let path = self.write_file(name, text);
        set_mode(&path, 0o640);
        path
    }

    /// Lets another user (uid 65534) write the spool and the log.
    pub fn open_to_all(&self) {
        set_mode(&self.tmp_dir(), 0o777);
        set_mode(&self.queue_dir(), 0o777);
        fs::write(self.log_path(), b"").unwrap();
        set_mode(&self.log_path(), 0o666);
    }

    /// `spoolmail -C CONF` with `args`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("-C").arg(&self.conf).args(args);
        c
    }

    /// `spoolmail -C CONF ARGS < stdin`, bounded by the config's deadline.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Outcome {
        run(self.cmd(args), stdin, self.deadline)
    }

    /// `spoolmail -C CONF ARGS < stdin` as local user `uid` would run it
    /// (see [`super::as_local_user`]; the spool shared with
    /// `group` by [`Spool::share_queue_with_group`]). Needs root.
    pub fn run_as(&self, uid: u32, group: u32, args: &[&str], stdin: &[u8]) -> Outcome {
        let mut cmd = self.cmd(args);
        super::as_local_user(&mut cmd, uid, group);
        run(cmd, stdin, self.deadline)
    }

    /// Runs and expects exit 0 (the panic shows stderr).
    pub fn run_ok(&self, args: &[&str], stdin: &[u8]) -> Outcome {
        let out = self.run(args, stdin);
        assert!(out.success(), "{args:?}: {}", out.stderr);
        out
    }

    /// Submits `stdin`, expects exit 0 and exactly one new message, returns it.
    pub fn submit_one(&self, args: &[&str], stdin: &[u8]) -> Queued {
        let before = self.queue_ids();
        self.run(args, stdin).assert_ok();
        let mut new: Vec<Queued> = self
            .queued()
            .into_iter()
            .filter(|q| !before.contains(&q.id))
            .collect();
        assert_eq!(new.len(), 1, "{args:?}: exactly one message must be queued");
        new.pop().unwrap()
    }

    /// One queue run (`-q` and `args`), to completion, which must exit 0.
    pub fn pass(&self, args: &[&str]) -> Outcome {
        let mut all = vec!["-q"];
        all.extend(args);
        self.run_ok(&all, b"")
    }

    /// The pids of the spoolmail processes running with this spool's config
    /// (submitters, background runners, delivery children: all keep the
    /// command line they were started with), zombies left out.
    pub fn running(&self) -> Vec<u32> {
        let conf = self.conf.to_string_lossy().into_owned();
        let Ok(dir) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                !state.starts_with('Z')
                    && String::from_utf8_lossy(&cmdline)
                        .split('\0')
                        .any(|a| a == conf)
            })
            .collect()
    }

    /// A queue run started in the background, its output discarded.
    pub fn spawn_pass(&self) -> Child {
        let mut cmd = self.cmd(&["-q"]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        spawn(&mut cmd)
    }

    /// Names in `queue/` (state files too), sorted.
    pub fn queue_files(&self) -> Vec<String> {
        list_dir(&self.queue_dir())
    }

    /// Names in `tmp/`, sorted.
    pub fn tmp_files(&self) -> Vec<String> {
        list_dir(&self.tmp_dir())
    }

    /// Ids of the committed messages (not the `.state` files), sorted.
    pub fn queue_ids(&self) -> Vec<String> {
        self.queue_files()
            .into_iter()
            .filter(|n| !n.ends_with(".state"))
            .collect()
    }

    /// The committed messages, by id.
    pub fn queued(&self) -> Vec<Queued> {
        self.queue_ids().iter().map(|id| self.message(id)).collect()
    }

    pub fn message(&self, id: &str) -> Queued {
        Queued::read(&self.queue_dir().join(id))
    }

    pub fn only_message(&self) -> Queued {
        let mut all = self.queued();
        assert_eq!(all.len(), 1, "expected exactly one queued message");
        all.pop().unwrap()
    }

    /// A file of `queue/` as bytes.
    pub fn read_queued(&self, name: &str) -> Vec<u8> {
        fs::read(self.queue_dir().join(name)).expect("read queued file")
    }

    /// A file of `queue/` as text.
    pub fn file(&self, id: &str) -> String {
        fs::read_to_string(self.queue_dir().join(id)).unwrap()
    }

    /// A message's state file, "" when it has none.
    pub fn state(&self, id: &str) -> String {
        fs::read_to_string(self.queue_dir().join(format!("{id}.state"))).unwrap_or_default()
    }

    /// Every file of the queue, state files included, as one text.
    pub fn queue_text(&self) -> String {
        let files = self.queue_files();
        files
            .iter()
            .map(|n| fs::read_to_string(self.queue_dir().join(n)).unwrap_or_default())
            .collect()
    }

    /// Queued bounces (messages with the null sender), each file's whole
    /// text.
    pub fn bounces(&self) -> Vec<String> {
        self.queued()
            .into_iter()
            .filter(|q| q.sender().is_empty())
            .map(|q| self.file(&q.id))
            .collect()
    }

    /// The log so far ("" before the first line).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// What `-bp` prints (which must be UTF-8).
    pub fn mailq(&self) -> String {
        String::from_utf8(self.run(&["-bp"], b"").stdout_bytes).expect("mailq output is UTF-8")
    }

    pub fn assert_tmp_empty(&self) {
        assert_eq!(self.tmp_files(), Vec::<String>::new(), "tmp/");
    }

    /// Nothing in `queue/`, nothing left in `tmp/`.
    pub fn assert_untouched(&self) {
        self.assert_empty("untouched");
    }

    /// Nothing in `queue/`, nothing left in `tmp/`; `what` names the case.
    pub fn assert_empty(&self, what: &str) {
        assert_eq!(self.queue_files(), Vec::<String>::new(), "{what}: queue/");
        assert_eq!(self.tmp_files(), Vec::<String>::new(), "{what}: tmp/");
    }

    /// Still queued, deferred (not bounced), with `reason` in mailq and the log.
    pub fn assert_deferred(&self, reason: &str) {
        assert_eq!(self.queue_ids().len(), 1, "still queued: {}", self.mailq());
        assert_eq!(self.bounces().len(), 0, "no bounce: {}", self.mailq());
        let mailq = self.mailq();
        assert!(mailq.contains(reason), "mailq lacks {reason:?}:\n{mailq}");
        let log = self.log();
        assert!(log.contains("status=deferred"), "{log}");
        assert!(log.contains(reason), "log lacks {reason:?}:\n{log}");
    }

    /// Nothing queued, and the log says sent.
    pub fn assert_delivered(&self) {
        assert!(
            self.queue_ids().is_empty(),
            "{}\n{}",
            self.mailq(),
            self.log()
        );
        assert!(self.log().contains("status=sent"), "{}", self.log());
    }
}

/// `spool/`, `spool/tmp` and `spool/queue`, mode 0755.
pub fn make_spool_dirs(spool: &Path) {
    for sub in ["", "tmp", "queue"] {
        let d = spool.join(sub);
        fs::create_dir_all(&d).expect("create spool dir");
        set_mode(&d, 0o755);
    }
}
