//! The on-disk queue (format: doc/SPOOL.md, version 1): writing a message
//! durably, reading envelopes and delivery state back, and listing the queue.
//!
//! The commit protocol is the whole promise of `sendmail`'s exit 0: write
//! under `tmp/` with the file locked, fsync, rename into `queue/`, fsync the
//! directory. A writer killed at any instant leaves nothing in `queue/` or the
//! whole message; what it leaves in `tmp/` is unlocked and so recognisably dead.

use crate::error::{Error, Result};
use crate::model::{Address, BodyType, EnhancedCode, Notify, PassId, QueueId, Ret};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const MAGIC: &str = "SPOOLMAIL 1";
pub const STATE_MAGIC: &str = "SPOOLMAIL-STATE 1";
/// The magic line of a held message's state file (version 1.2): a reader
/// of version 1 or 1.1 does not know it, and so leaves the message alone,
/// which is what holding it means.
pub const HELD_STATE_MAGIC: &str = "SPOOLMAIL-STATE 1.2";
const STATE_SUFFIX: &str = ".state";
/// The `body` value is written with room for the longest value, and patched
/// in place once the content has been seen.
const BODY_WIDTH: usize = "8bitmime".len();

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub address: Address,
    /// The address as the user wrote it, when it was rewritten (qualified).
    pub orcpt: Option<String>,
}

/// `-qI`, `-qR`, `-qS`: which messages a forced queue run takes, by a
/// case-insensitive part of their queue id, a recipient or the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    QueueId(String),
    Recipient(String),
    Sender(String),
}

impl Selector {
    /// Whether `env` is one of the messages this selects.
    pub fn matches(&self, env: &Envelope) -> bool {
        let contains = |hay: &str, needle: &str| {
            hay.to_ascii_lowercase()
                .contains(&needle.to_ascii_lowercase())
        };
        match self {
            Selector::QueueId(id) => contains(env.id.as_str(), id),
            Selector::Recipient(r) => {
                (env.recipients.iter()).any(|x| contains(&x.address.to_string(), r))
            }
            Selector::Sender(s) => contains(&env.sender, s),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: QueueId,
    pub arrival: u64,
    pub uid: u32,
    /// Empty for the null sender `<>`.
    pub sender: String,
    pub recipients: Vec<Recipient>,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
    pub notify: Option<Notify>,
    pub body: BodyType,
    pub smtputf8: bool,
    /// A notice spoolmail made (a bounce, a delay notice), never a
    /// submission: `notice yes` (since 1.9), which a `dkim_key` with
    /// `users=` signs whoever the original's submitter was.
    pub notice: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptStatus {
    Pending,
    Delivered,
    Deferred,
    Failed,
}

/// Per-recipient delivery state (`queue/QID.state`), written by queue runners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub attempts: u32,
    pub next_attempt: u64,
    /// (recipient index, status, last reply or error)
    pub recipients: Vec<(usize, RcptStatus, String)>,
    /// Failed recipients whose failure notice is owed to the sender: one
    /// bounce per message per pass lists them all, and they are cleared
    /// only once it is queued (`owed` lines).
    pub owed: Vec<Owed>,
    /// When the delay notice was queued (`delayed` line): there is one at
    /// most.
    pub delay_notified: Option<u64>,
    /// The queue pass that last wrote the state, and when (`pass` line).
    pub pass: Option<PassMark>,
    /// Since when the message is on hold (`spoolctl hold`, a `held` line):
    /// queue runs neither deliver nor expire it until it is released.
    pub held: Option<u64>,
}

/// Which queue pass wrote a state, and when (Unix seconds): `pass ID TIME`.
/// A pass counts one attempt per message ([`PassMark::id`] differs from its
/// own), and sends owed notices another pass wrote only once that pass is
/// gone (`record::may_send_owed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassMark {
    pub id: PassId,
    pub at: u64,
}

/// What a bounce needs of a failed recipient besides its state line (whose
/// text is the reason): `owed INDEX STATUS KIND REMOTE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    pub index: usize,
    /// The enhanced status code of the reply or the reason, if it had one.
    pub status: Option<EnhancedCode>,
    /// The attempts ran out, rather than a refusal.
    pub expired: bool,
    /// `host[ip]:port` of the server whose refusal it was.
    pub remote: Option<String>,
}

impl State {
    /// Records a recipient's outcome, replacing any earlier line for it.
    pub fn set(&mut self, index: usize, status: RcptStatus, text: &str) {
        self.recipients.retain(|(i, _, _)| *i != index);
        self.recipients.push((index, status, text.to_string()));
        self.recipients.sort_by_key(|(i, _, _)| *i);
    }

    /// Of `indices`, the recipients still to do (pending or deferred) of a
    /// message with `recipients` of them, in the order given; an index past
    /// the envelope's recipients (never written by spoolmail) is left out.
    pub fn undone(&self, indices: &[usize], recipients: usize) -> Vec<usize> {
        indices
            .iter()
            .copied()
            .filter(|&i| {
                i < recipients
                    && matches!(
                        self.status_of(i).0,
                        RcptStatus::Pending | RcptStatus::Deferred
                    )
            })
            .collect()
    }

    /// The state as written by the pass of `mark`.
    pub fn marked(self, mark: PassMark) -> State {
        State {
            pass: Some(mark),
            ..self
        }
    }

    pub fn status_of(&self, index: usize) -> (RcptStatus, &str) {
        self.recipients
            .iter()
            .rev()
            .find(|(i, _, _)| *i == index)
            .map(|(_, s, t)| (*s, t.as_str()))
            .unwrap_or((RcptStatus::Pending, ""))
    }
}

/// Where a queued message stands, by the names of Postfix's queues: what
/// the metrics count and `spoolctl list --json` calls its `queue_name`,
/// from the one rule of [`standing`]. Postfix's `active` is the messages
/// its queue manager has in hand: being delivered, or taken for delivery
/// now (a message new or whose retry time came is moved there). Without a
/// resident queue manager, spoolmail's nearest is the same: in a runner's
/// hands now, or due, so that the next pass takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Being delivered now (a runner holds its claim lock), or due: never
    /// attempted, or its next attempt has come.
    Active,
    /// Waiting for a later attempt.
    Deferred,
    /// No pass takes it: held (`spoolctl hold`), or its state file cannot
    /// be read.
    Hold,
}

impl Standing {
    /// The name Postfix gives the queue (`postqueue -j`'s `queue_name`),
    /// which is also the metrics' label.
    pub fn name(self) -> &'static str {
        match self {
            Standing::Active => "active",
            Standing::Deferred => "deferred",
            Standing::Hold => "hold",
        }
    }
}

/// The rule of [`Standing`], for the metrics and the listings alike:
/// `state` is None when it cannot be read (no pass takes the message);
/// `busy`, a runner holds the message's claim lock now.
pub fn standing(state: Option<&State>, busy: bool, now: u64) -> Standing {
    match state {
        None => Standing::Hold,
        Some(s) if s.held.is_some() => Standing::Hold,
        Some(_) if busy => Standing::Active,
        Some(s) if s.attempts == 0 || s.next_attempt <= now => Standing::Active,
        Some(_) => Standing::Deferred,
    }
}

pub struct Spool {
    dir: PathBuf,
    /// `queue/`, opened on first use, for opening its files by name alone
    /// (None when it could not be opened: then by their paths).
    queue: std::sync::OnceLock<Option<File>>,
    /// A delivery child's spare state file (see [`Spool::recycling_states`]).
    spare: Option<Spare>,
    /// Whose messages a listing here may test the claim lock of: `Some(uid)`
    /// when an ordinary user controls this process (see [`Spool::looked_at_by`]).
    lock_tests_of: Option<u32>,
}

/// A delivery child's spare state file `tmp/spare.PID`, and the file kept
/// open from one message to the next (no open and close a message).
struct Spare {
    path: PathBuf,
    open: std::sync::Mutex<Option<OpenSpare>>,
}

/// Whether the state of a message's attempt, `len` bytes, may be written
/// into the spare without `fsync` (since 1.7): only when no state of the
/// message stood before (`first`), so that a state torn by a crash is read
/// as what there was, none ([`parse_state_of`]); only when it fits one disk
/// sector, so that it cannot be found half old and half new; and only into
/// a file whose text is known (`known`: empty, or a 1.7 state this process
/// wrote, which names another message), so that what a crash may leave
/// there is recognised as torn. Anything else is written with `fsync`.
fn unsynced(first: bool, len: usize, known: Option<usize>) -> bool {
    first && len <= UNSYNCED_STATE_MAX && known.is_some()
}

/// The largest state written without `fsync`: one sector (see [`unsynced`]).
const UNSYNCED_STATE_MAX: usize = 512;

/// The open spare: at `tmp/spare.PID` while `out` is None, else renamed to
/// the state file of message `out` (and so never written again through
/// this descriptor, which is dropped once that state is replaced or goes
/// elsewhere).
struct OpenSpare {
    file: File,
    /// The length of its text, when this process wrote it.
    len: Option<usize>,
    out: Option<QueueId>,
}

impl Spare {
    /// The spare opened at its path (made when there is none); its text
    /// known only when it is empty.
    fn reopen(&self) -> io::Result<OpenSpare> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)?;
        let empty = file.metadata()?.len() == 0;
        Ok(OpenSpare {
            file,
            len: empty.then_some(0),
            out: None,
        })
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Option<OpenSpare>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state file of `id`, which may be the open spare, is replaced or
    /// unlinked: the descriptor is let go.
    fn forget(&self, id: &QueueId) {
        let mut kept = self.kept();
        if kept.as_ref().is_some_and(|o| o.out.as_ref() == Some(id)) {
            *kept = None;
        }
    }

    /// The state file of `id` was renamed to the spare's path: the open
    /// spare is there again when it was that state, and let go otherwise
    /// (the file at the path is another, of unknown length).
    fn came_home(&self, id: &QueueId) {
        let mut kept = self.kept();
        match kept.as_mut() {
            Some(o) if o.out.as_ref() == Some(id) => o.out = None,
            _ => *kept = None,
        }
    }
}

pub struct QueueEntry {
    pub id: QueueId,
    /// A state file exists: at least one delivery attempt was made. (Also
    /// when `QID.state` is not a regular file: [`Spool::read_state`] then
    /// refuses it, and the message is left alone.)
    pub has_state: bool,
    /// The directory says the state file is a regular file (its `d_type`,
    /// or an lstat where the file system does not say), so that a listing
    /// may read it without an fstat of its own ([`Spool::read_state_listed`]).
    pub state_regular: bool,
    /// Found by a scan, which found the message a regular file (not made
    /// by [`Spool::entry`]): a listing reads it without an fstat.
    scanned: bool,
    /// The scan found its state waiting by the mtime (it then leaves the
    /// entry out: only while a scan sorts its entries).
    waits: bool,
}

impl QueueEntry {
    /// A message not found by a scan, whose state file may exist or not
    /// (`has_state`): listings read it with every check.
    pub fn unscanned(id: QueueId, has_state: bool) -> QueueEntry {
        QueueEntry {
            id,
            has_state,
            state_regular: false,
            scanned: false,
            waits: false,
        }
    }

    fn scanned(id: QueueId) -> QueueEntry {
        QueueEntry {
            scanned: true,
            ..QueueEntry::unscanned(id, false)
        }
    }
}

/// One scan of `queue/`: the messages, and the names of what is there
/// that is not a regular file but is named like a message (a FIFO, a
/// directory, a symbolic link), which no runner opens.
pub struct Scan {
    pub entries: Vec<QueueEntry>,
    pub strays: Vec<String>,
    /// State files without their message in the scan: left by a runner
    /// that died between removing the two (see [`Spool::remove_orphans`]).
    pub orphans: Vec<QueueId>,
}

/// A message being written: the envelope has been written; the content goes
/// through `content()`.
pub struct Draft<'f> {
    out: BufWriter<&'f File>,
    file: &'f File,
    body_offset: u64,
    content_len: u64,
}

impl Draft<'_> {
    pub fn content(&mut self) -> &mut impl Write {
        &mut self.out
    }

    pub fn add_content_len(&mut self, n: usize) {
        self.content_len += n as u64;
    }

    pub fn content_len(&self) -> u64 {
        self.content_len
    }

    /// Records that the content needs 8BITMIME, found after the envelope was written.
    pub fn mark_8bit(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.file.write_all_at(b"8bitmime", self.body_offset)
    }
}

impl Spool {
    pub fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            queue: std::sync::OnceLock::new(),
            spare: None,
            lock_tests_of: None,
        }
    }

    /// This spool, read by a process that the ordinary user `owner`
    /// controls (None: root or the spool's group, see
    /// [`crate::system::pass_owner`]): its listings test the claim lock
    /// (the `*` of mailq, the pass's "busy") of `owner`'s own messages
    /// only. The test takes a shared lock, held until the file is closed;
    /// a user who stopped their own mailq or pass inside that window
    /// (SIGSTOP, over and over until it lands) would keep the lock, and
    /// every runner would find the message busy and leave it, for as long
    /// as they liked. Another user's message is read without a lock (its
    /// file is whole once it is in `queue/`), and shown as not in delivery.
    pub fn looked_at_by(mut self, owner: Option<u32>) -> Spool {
        self.lock_tests_of = owner;
        self
    }

    /// Whether a runner holds the message now, tried on its open file
    /// without waiting, when this reader may test `uid`'s messages (see
    /// [`Spool::looked_at_by`]); false when it may not.
    fn busy_for(&self, file: &File, uid: u32) -> io::Result<bool> {
        if self.lock_tests_of.is_some_and(|owner| owner != uid) {
            return Ok(false);
        }
        match file.try_lock_shared() {
            Ok(()) => Ok(false),
            Err(std::fs::TryLockError::WouldBlock) => Ok(true),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// This spool, recycling its state files, for a delivery child: the
    /// state file of a message it removes is renamed to `tmp/spare.PID.RAND`
    /// instead of unlinked, and the next record that an attempt begins is
    /// written into it, so that a run of deliveries creates no inode for its
    /// states and frees only its messages'. On ext4 without a journal, which
    /// skips every inode freed in the last minutes when it picks one for a
    /// new file, the cost of each new file grows with the files freed
    /// before it (a profile of a queue run: 40% of its CPU time). Only this
    /// process writes its spare, in `tmp/`, where no reader looks; a state
    /// file in `queue/` is still never written in place.
    ///
    /// The name is this spool's own, random besides the pid: another child
    /// of the same pid (in another pid namespace, or on another host
    /// sharing the spool) that found the file at its path would keep it
    /// open as its spare, and write its next state into what is by then
    /// this child's state file of another message.
    pub fn recycling_states(mut self) -> Spool {
        let (pid, rand) = (std::process::id(), crate::system::random_u64());
        let name = format!("spare.{pid}.{rand:016x}");
        self.spare = Some(Spare {
            path: self.tmp_dir().join(name),
            open: std::sync::Mutex::new(None),
        });
        self
    }

    /// Removes the spare state file, if any (at the end of a delivery
    /// child; one a killed child leaves is a leftover `tmp/` file).
    pub fn drop_spare(&self) {
        if let Some(spare) = &self.spare {
            *spare.kept() = None;
            let _ = std::fs::remove_file(&spare.path);
        }
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn queue_dir(&self) -> PathBuf {
        self.dir.join("queue")
    }

    /// Opens `queue/ID` (or `queue/ID.state` when `state`) as
    /// [`open_regular_sized`] opens a path, through the open `queue/`.
    fn open_queued(&self, id: &QueueId, state: bool) -> io::Result<(File, u64)> {
        checked_regular(self.open_queued_unchecked(id, state))
    }

    /// `queue/`, opened once (None when it cannot be opened).
    fn queue_fd(&self) -> Option<&File> {
        let dir = self.queue.get_or_init(|| {
            let flags = libc::O_DIRECTORY | libc::O_CLOEXEC;
            OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(self.queue_dir())
                .ok()
        });
        dir.as_ref()
    }

    /// As [`Spool::open_queued`], without the fstat that checks it is a
    /// regular file: for a claim, which checks it once it holds the lock
    /// ([`Spool::try_claim`]), before reading a byte.
    fn open_queued_unchecked(&self, id: &QueueId, state: bool) -> io::Result<File> {
        let Some(dir) = self.queue_fd() else {
            let path = match state {
                true => self.state_path(id),
                false => self.message_path(id),
            };
            return open_unchecked(&path);
        };
        // The name and its NUL on the stack: no allocation per message.
        let mut name = [0u8; QueueId::LEN + STATE_SUFFIX.len() + 1];
        let mut len = QueueId::LEN;
        name[..len].copy_from_slice(id.as_str().as_bytes());
        if state {
            name[len..len + STATE_SUFFIX.len()].copy_from_slice(STATE_SUFFIX.as_bytes());
            len += STATE_SUFFIX.len();
        }
        let name = std::ffi::CStr::from_bytes_with_nul(&name[..=len]).map_err(io::Error::other)?;
        let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        crate::sys::open_in(dir.as_fd(), name, flags).map_err(not_a_link)
    }

    pub fn message_path(&self, id: &QueueId) -> PathBuf {
        self.queue_dir().join(id.as_str())
    }

    pub fn state_path(&self, id: &QueueId) -> PathBuf {
        self.queue_dir().join(format!("{id}{STATE_SUFFIX}"))
    }

    /// Writes a new message: the envelope `envelope` makes with the new
    /// message's queue id, then whatever `write_content` writes, and commits
    /// it durably. Returns the envelope. On any error nothing is left in
    /// `queue/`, and the file in `tmp/` is removed.
    pub fn deposit<E, F>(&self, envelope: E, write_content: F) -> Result<Envelope>
    where
        E: FnOnce(QueueId) -> Envelope,
        F: FnOnce(&mut Envelope, &mut Draft) -> Result<()>,
    {
        let (id, tmp_path, file) = self.create_tmp()?;
        let mut envelope = envelope(id);
        let result = self.write_and_commit(&mut envelope, &tmp_path, file, write_content);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp_path);
        }
        result.map(|()| envelope)
    }

    fn write_and_commit<F>(
        &self,
        envelope: &mut Envelope,
        tmp_path: &Path,
        file: File,
        write_content: F,
    ) -> Result<()>
    where
        F: FnOnce(&mut Envelope, &mut Draft) -> Result<()>,
    {
        let write_err = |e| Error::io(format!("cannot write {}", tmp_path.display()), e);
        let mut lock = fd_lock::RwLock::new(file);
        let guard = lock.try_write().map_err(write_err)?;
        let file: &File = &guard;
        let mut out = BufWriter::with_capacity(crate::limits::IO_BUFFER, file);
        let body_offset = write_envelope(&mut out, envelope).map_err(write_err)?;
        let mut draft = Draft {
            out,
            file,
            body_offset,
            content_len: 0,
        };
        write_content(envelope, &mut draft)?;
        draft.out.flush().map_err(write_err)?;
        file.sync_all()
            .map_err(|e| Error::io(format!("cannot fsync {}", tmp_path.display()), e))?;
        let final_path = self.message_path(&envelope.id);
        std::fs::rename(tmp_path, &final_path).map_err(|e| {
            Error::io(
                format!("cannot move {} into the queue", tmp_path.display()),
                e,
            )
        })?;
        sync_dir(&self.queue_dir()).inspect_err(|_| self.take_back(&final_path))
    }

    /// A commit whose directory fsync failed is reported as a failure, so
    /// the message must not stay queued: a caller that retries would send
    /// it twice. It is still locked (no queue run can have claimed it), so
    /// it is unlinked, and the directory synced again if it can be.
    fn take_back(&self, final_path: &Path) {
        if std::fs::remove_file(final_path).is_ok() {
            let _ = sync_dir(&self.queue_dir());
        }
    }

    /// Creates `tmp/QID` exclusively, drawing a new id on a collision.
    fn create_tmp(&self) -> Result<(QueueId, PathBuf, File)> {
        let dir = self.tmp_dir();
        for _ in 0..crate::limits::QUEUE_ID_TRIES {
            let id = new_queue_id();
            let path = dir.join(id.as_str());
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(f) => return Ok((id, path, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::CantCreate {
                        path,
                        source: io::Error::new(
                            e.kind(),
                            format!(
                                "spool directory {} is missing (spool_dir; run scripts/install.sh)",
                                dir.display()
                            ),
                        ),
                    });
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOSPC)
                            | Some(libc::EDQUOT)
                            | Some(libc::EACCES)
                            | Some(libc::EPERM)
                            | Some(libc::EROFS)
                    ) =>
                {
                    return Err(Error::io(format!("cannot create {}", path.display()), e));
                }
                Err(e) => return Err(Error::CantCreate { path, source: e }),
            }
        }
        Err(Error::TempFail(format!(
            "cannot find a free queue id in {}",
            dir.display()
        )))
    }

    /// The queued messages, oldest first, from one directory scan.
    pub fn scan(&self) -> Result<Vec<QueueEntry>> {
        self.scan_all().map(|scan| scan.entries)
    }

    /// As `scan`, with the strays. The file type comes from the directory
    /// entry (lstat where the file system does not say): nothing is opened,
    /// so a FIFO named like a message cannot hang a pass or mailq.
    pub fn scan_all(&self) -> Result<Scan> {
        self.scan_for_pass(0, 0, &mut std::collections::HashSet::new())
    }

    /// As `scan_all` for a queue pass at `now`: the messages in `seen`
    /// (looked at already) are left out, and so is a message whose state
    /// file's mtime says it waits ([`waits_by_mtime`], within `horizon`
    /// seconds of `now`; 0 trusts no mtime, as a forced pass), which is
    /// added to `seen` without its state being opened: one `fstatat` per
    /// state file, relative to the open `queue/`.
    pub fn scan_for_pass(
        &self,
        now: u64,
        horizon: u64,
        seen: &mut std::collections::HashSet<QueueId>,
    ) -> Result<Scan> {
        let dir = self.queue_dir();
        let read_err = |e| Error::io(format!("cannot read {}", dir.display()), e);
        // A descriptor of its own: reading moves its offset.
        let listing = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dir)
            .map_err(read_err)?;
        let mut entries = Vec::new();
        let mut strays = Vec::new();
        // Each state file's message, whether its mtime says it waits, and
        // whether the directory says it is a regular file.
        let mut states = Vec::new();
        crate::sys::for_each_dir_entry(&listing, |entry| {
            let name = entry.name.to_bytes();
            let (id, state) = match name.strip_suffix(STATE_SUFFIX.as_bytes()) {
                Some(id) => (QueueId::parse_bytes(id), true),
                None => (QueueId::parse_bytes(name), false),
            };
            let Some(id) = id.filter(|id| !seen.contains(id)) else {
                return;
            };
            // The type from the directory; an lstat where it does not say
            // (DT_UNKNOWN), or where a pass needs the mtime anyway.
            let stat = || crate::sys::stat_in(listing.as_fd(), entry.name);
            let said = match entry.kind {
                libc::DT_UNKNOWN => None,
                kind => Some(kind == libc::DT_REG),
            };
            if state {
                let (regular, waits) = match horizon {
                    0 => (said.unwrap_or_else(|| stat().is_ok_and(|(r, _)| r)), false),
                    _ => match stat() {
                        Ok((r, mtime)) => (r, r && waits_by_mtime(Some(mtime), now, horizon)),
                        Err(_) => (false, false),
                    },
                };
                states.push((id, waits, regular));
            } else if said.unwrap_or_else(|| stat().is_ok_and(|(r, _)| r)) {
                entries.push(QueueEntry::scanned(id));
            } else {
                strays.push(String::from_utf8_lossy(name).into_owned());
            }
        })
        .map_err(read_err)?;
        strays.sort_unstable();
        let orphans = merge_states(&mut entries, states);
        // Into `seen` at once, the names gone: a set grown one id at a
        // time holds its old table and the new one at each doubling,
        // beside the names (on a queue of a million, 87 MB against 52).
        // The waiting copied out and the entries' room given back before
        // the set grows: entries and set together were 64 MB at a million.
        let mut waiting = Vec::with_capacity(entries.iter().filter(|e| e.waits).count());
        waiting.extend(entries.iter().filter(|e| e.waits).map(|e| e.id.clone()));
        entries.retain(|e| !e.waits);
        entries.shrink_to_fit();
        seen.reserve(waiting.len());
        seen.extend(waiting);
        Ok(Scan {
            entries,
            strays,
            orphans,
        })
    }

    /// One message as `scan` would list it, without reading the directory.
    pub fn entry(&self, id: &QueueId) -> QueueEntry {
        let has_state = may_exist(&std::fs::symlink_metadata(self.state_path(id)));
        QueueEntry::unscanned(id.clone(), has_state)
    }

    /// Reads a message's envelope and the size of its content.
    pub fn read_envelope(&self, id: &QueueId) -> io::Result<(Envelope, u64)> {
        let (file, len) = self.open_queued(id, false)?;
        read_envelope_from(&file, len)
    }

    /// A message's envelope and its content, the reader at the content's
    /// first byte (`spoolctl show`).
    pub fn open_content(&self, id: &QueueId) -> io::Result<(Envelope, BufReader<File>)> {
        let file = open_regular(&self.message_path(id))?;
        let mut reader = BufReader::with_capacity(crate::limits::ENVELOPE_READ_BUFFER, file);
        let (envelope, _) = parse_envelope(&mut reader)?;
        Ok((envelope, reader))
    }

    /// As `read_envelope`, and whether a queue runner holds the message now.
    /// The shared lock that tells is kept until the file is closed, a few
    /// microseconds later: letting it go would cost a system call per
    /// message of a listing (a claim waits such a look out: `claim_soon`).
    /// It is taken after the envelope is read, and only on the messages
    /// this reader may test ([`Spool::looked_at_by`]).
    pub fn read_envelope_for_listing(&self, id: &QueueId) -> io::Result<(Envelope, u64, bool)> {
        let (file, len) = self.open_queued(id, false)?;
        let (envelope, size) = read_envelope_from(&file, len)?;
        let busy = self.busy_for(&file, envelope.uid)?;
        Ok((envelope, size, busy))
    }

    /// A message of a scan for a listing, as [`Spool::read_envelope_for_listing`]
    /// reads one, in as few system calls as a listing of a large queue
    /// wants: open, one pread into the stack, the lock test, close. The
    /// scan has read the file's type from the directory, so no fstat checks
    /// it again; a short read is the end of a regular file and gives its
    /// length, so only a message longer than
    /// [`crate::limits::LISTING_FIRST_READ`] takes an fstat for it. The
    /// type read from the directory can be stale only if someone put
    /// another kind of file in its place since the scan, which only the
    /// spool's owner can: the open still never blocks (`O_NONBLOCK`) nor
    /// follows a link, and the pread refuses a FIFO, a socket or a terminal.
    pub fn read_for_listing(&self, entry: &QueueEntry) -> io::Result<(Envelope, u64, bool)> {
        // Not from a scan ([`Spool::entry`]): its type is not known yet.
        if !entry.scanned {
            return self.read_envelope_for_listing(&entry.id);
        }
        let file = self.open_queued_unchecked(&entry.id, false)?;
        let mut head = [0u8; crate::limits::LISTING_FIRST_READ];
        let n = read_head(&file, &mut head)?;
        if n < head.len() {
            let (envelope, header_len) = parse_envelope(&mut &head[..n])?;
            // Kept until the close, as read_envelope_for_listing keeps it.
            let busy = self.busy_for(&file, envelope.uid)?;
            return Ok((envelope, (n as u64).saturating_sub(header_len), busy));
        }
        let (file, total) = checked_regular(Ok(file))?;
        io::Seek::seek(&mut &file, io::SeekFrom::Start(n as u64))?;
        let (envelope, size) = envelope_after(&file, &head, total)?;
        let busy = self.busy_for(&file, envelope.uid)?;
        Ok((envelope, size, busy))
    }

    /// A message's state for a listing, with the lines a listing reads
    /// besides ([`listing_lines`], none when the state is absent or torn):
    /// as [`Spool::read_state`], without an fstat when the scan found the
    /// state file regular (see [`Spool::read_for_listing`]): one pread
    /// into the stack, whose short count is the whole file. A state that
    /// fills it is read again the ordinary way.
    /// NotFound when the state file is gone (its message removed since
    /// the scan).
    pub fn read_state_listed(&self, entry: &QueueEntry) -> io::Result<(State, ListingLines)> {
        let found = |text: &str| match parse_state_of(&entry.id, text)? {
            StateFile::Found(state) => Ok((state, listing_lines(&entry.id, text))),
            other => Ok((other.state(), ListingLines::default())),
        };
        let whole = || match self.read_state_text(&entry.id)? {
            Some(text) => found(&text),
            None => Err(io::ErrorKind::NotFound.into()),
        };
        if !entry.state_regular {
            return whole();
        }
        let file = self.open_queued_unchecked(&entry.id, true)?;
        let mut buf = [0u8; crate::limits::LISTING_FIRST_READ];
        let n = read_head(&file, &mut buf)?;
        if n == buf.len() {
            return whole();
        }
        found(std::str::from_utf8(&buf[..n]).map_err(|_| not_utf8())?)
    }

    /// Whether a runner holds the message's claim lock now (tried without
    /// waiting); false when it is gone or cannot be opened.
    pub fn in_delivery(&self, id: &QueueId) -> bool {
        self.open_queued(id, false).is_ok_and(|(file, _)| {
            matches!(
                file.try_lock_shared(),
                Err(std::fs::TryLockError::WouldBlock)
            )
        })
    }

    /// Claims a message for delivery; None when another runner holds it or
    /// it has been delivered and removed meanwhile. The message file stays
    /// open in `slot`, which the claim borrows: the flock is held until the
    /// claim is dropped.
    pub fn claim<'s>(
        &self,
        id: &QueueId,
        slot: &'s mut ClaimSlot,
    ) -> io::Result<Option<Claim<'s>>> {
        match self.try_claim(id) {
            Ok(Taken::Locked(file, len)) => Ok(Some(Claim::new(id, slot, file, len))),
            Ok(Taken::Busy | Taken::Gone) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One try at a claim: the message opened, locked without waiting, and
    /// only then checked (fstat) to be a regular file that is still in
    /// `queue/`; a file that is not is refused before a byte is read.
    fn try_claim(&self, id: &QueueId) -> io::Result<Taken> {
        let file = match self.open_queued_unchecked(id, false) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Taken::Gone),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(Taken::Busy),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let meta = file.metadata()?;
        let len = regular_len(&meta)?;
        // Removed by the runner that held it before us: nothing left to do.
        if std::os::unix::fs::MetadataExt::nlink(&meta) == 0 {
            return Ok(Taken::Gone);
        }
        Ok(Taken::Locked(file, len))
    }

    /// As [`Spool::claim`], waiting out a lock held only for a moment: a
    /// listing or another runner's look at the queue reads the envelope
    /// under a shared lock, and a claim that ran into it would skip a
    /// message nobody delivers (`limits::CLAIM_TRIES`, `CLAIM_PAUSE` apart).
    pub fn claim_soon<'s>(
        &self,
        id: &QueueId,
        slot: &'s mut ClaimSlot,
    ) -> io::Result<Option<Claim<'s>>> {
        for _ in 1..crate::limits::CLAIM_TRIES {
            match self.try_claim(id)? {
                Taken::Locked(file, len) => return Ok(Some(Claim::new(id, slot, file, len))),
                Taken::Gone => return Ok(None),
                Taken::Busy => std::thread::sleep(crate::limits::CLAIM_PAUSE),
            }
        }
        self.claim(id, slot)
    }

    /// Replaces the state of a claimed message durably: temporary file in
    /// `tmp/`, fsync, rename, directory fsync. The state carries the copy
    /// of the message's envelope that listings read instead of the message
    /// ([`envelope_copy`], from the claimed file: a message never changes
    /// after its commit); one that cannot be read is left out.
    pub fn write_state(&self, claim: &Claim, state: &State) -> Result<()> {
        let copy = claim.envelope_copy().unwrap_or_default();
        self.replace_state(claim, state, &copy)?;
        self.sync_queue()
    }

    /// Replaces the state of a claimed message as [`Spool::write_state`]
    /// does, without the directory fsync: for the record that an attempt
    /// begins, written before every transaction, where the cost counts. A
    /// killed process loses nothing by it (the rename is in the kernel's
    /// cache, and survives the process); only a crash of the machine may
    /// lose the rename, and then the attempt, which gives at most one
    /// duplicate, as a crash before the record always could.
    ///
    /// `first`: no state of the message stood before (none, or a torn one):
    /// then the state may be written without `fsync` ([`unsynced`]).
    pub fn write_state_before_attempt(
        &self,
        claim: &Claim,
        state: &State,
        first: bool,
    ) -> Result<()> {
        if let Some(spare) = &self.spare
            && self.state_through_spare(spare, claim, state, first).is_ok()
        {
            return Ok(());
        }
        self.replace_state(claim, state, "")
    }

    /// The state written into the spare file (see
    /// [`Spool::recycling_states`]), created when there is none: in place,
    /// with no block freed or allocated when it fits the one it has, cut to
    /// its length when the text before was longer, fsync, renamed to the
    /// state file. The file stays open for the next message, which finds it
    /// at the spare's path again when this message is removed. An Err
    /// leaves the ordinary way to the caller.
    fn state_through_spare(
        &self,
        spare: &Spare,
        claim: &Claim,
        state: &State,
        first: bool,
    ) -> io::Result<()> {
        let text = state_text(&claim.id, state);
        let mut kept = spare.kept();
        let mut open = match kept.take() {
            Some(o) if o.out.is_none() => o,
            _ => spare.reopen()?,
        };
        let f = &open.file;
        let skip_fsync = unsynced(first, text.len(), open.len);
        f.write_all_at(text.as_bytes(), 0)?;
        if open.len.is_none_or(|len| len > text.len()) {
            f.set_len(text.len() as u64)?;
        }
        set_due_time(f, state);
        if !skip_fsync {
            f.sync_all()?;
        }
        std::fs::rename(&spare.path, self.state_path(&claim.id))?;
        open.len = Some(text.len());
        open.out = Some(claim.id.clone());
        *kept = Some(open);
        Ok(())
    }

    /// The state file replaced by a temporary file in `tmp/`, fsync, rename;
    /// `listing`: its lines for listings ([`state_text_with`]).
    fn replace_state(&self, claim: &Claim, state: &State, listing: &str) -> Result<()> {
        if let Some(spare) = &self.spare {
            spare.forget(&claim.id);
        }
        let tmp = self
            .tmp_dir()
            .join(format!("{}.state.{}", claim.id, std::process::id()));
        let text = state_text_with(&claim.id, state, listing);
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o640)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            set_due_time(&f, state);
            f.sync_all()?;
            std::fs::rename(&tmp, self.state_path(&claim.id))
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!("cannot write the state of {}", claim.id), e)
        })
    }

    /// Removes a message whose every recipient is done. The message goes
    /// first: a state file without its message is a harmless leftover, a
    /// message without its state would be delivered again.
    pub fn remove(&self, claim: Claim) -> Result<()> {
        self.remove_unsynced(claim)?;
        self.after_removal(self.sync_queue())
    }

    /// What a removal's fsync of `queue/` (`synced`) leaves: when it
    /// failed (an EIO), the renames before it may not be on disk, and after
    /// a crash the spare may be the removed message's state file again,
    /// beside the message. The spare is then let go and unlinked, never
    /// written again: a later state goes through a new file, and the
    /// message, if a crash brings it back, keeps its own state (it is sent
    /// again at worst, never read with another message's state).
    fn after_removal(&self, synced: Result<()>) -> Result<()> {
        if synced.is_err() {
            self.drop_spare();
        }
        synced
    }

    /// As [`Spool::remove`], without the fsync of `queue/` that makes the
    /// removal durable: for removing many messages at once (`spoolctl
    /// delete --all`), which calls [`Spool::sync_queue`] once at the end.
    /// A crash before that may bring a removed message back, never lose one.
    pub fn remove_unsynced(&self, mut claim: Claim) -> Result<()> {
        let rm = |p: PathBuf| match std::fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io(format!("cannot remove {}", p.display()), e))
            }
            _ => Ok(()),
        };
        rm(self.message_path(&claim.id))?;
        claim.unlock = false;
        let state = self.state_path(&claim.id);
        // A child's spare: the state this process wrote under the claim.
        // Any failure (no state, no `tmp/`) leaves it to the unlink.
        let Some(spare) = &self.spare else {
            return rm(state);
        };
        if std::fs::rename(&state, &spare.path).is_ok() {
            spare.came_home(&claim.id);
            return Ok(());
        }
        spare.forget(&claim.id);
        rm(state)
    }

    /// Makes the removals and renames in `queue/` so far durable, through
    /// the `queue/` kept open when there is one.
    pub fn sync_queue(&self) -> Result<()> {
        match self.queue_fd() {
            Some(dir) => dir.sync_all().map_err(|e| {
                let path = self.queue_dir();
                Error::io(format!("cannot fsync directory {}", path.display()), e)
            }),
            None => sync_dir(&self.queue_dir()),
        }
    }

    /// Removes what dead writers left: unlocked files in `tmp/` older
    /// than `min_age` (younger ones may belong to a writer that has created
    /// its file but not locked it yet). Returns how many files were removed.
    /// (The state files whose message is gone are found by the pass's scan
    /// of `queue/`: [`Spool::remove_orphans`].)
    pub fn recover_leftovers(&self, min_age: std::time::Duration) -> usize {
        let mut removed = 0;
        let now = std::time::SystemTime::now();
        if let Ok(entries) = std::fs::read_dir(self.tmp_dir()) {
            for entry in entries.flatten() {
                // Never open what is not a regular file (a FIFO would hang).
                if !entry.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                let old_enough = entry.metadata().is_ok_and(|m| unix_age(&m, now) >= min_age);
                if !old_enough {
                    continue;
                }
                let Ok(f) = open_regular(&entry.path()) else {
                    continue;
                };
                let mut lock = fd_lock::RwLock::new(f);
                if lock.try_write().is_ok() && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Removes the state files of `orphans` (a scan's, see [`Scan`])
    /// whose message is still gone: a runner died between removing the
    /// message and its state. Returns how many were removed.
    pub fn remove_orphans(&self, orphans: &[QueueId]) -> usize {
        let gone = |id: &&QueueId| !self.message_path(id).exists();
        let removed = orphans.iter().filter(gone);
        removed
            .filter(|id| std::fs::remove_file(self.state_path(id)).is_ok())
            .count()
    }

    /// The delivery state, or the empty state when no attempt has been made.
    /// An Err (a state that cannot be read, is not a regular file, or is not
    /// a state file spoolmail can parse) must leave the message alone: taken
    /// as "never attempted", every recipient would get the message again.
    pub fn read_state(&self, id: &QueueId) -> io::Result<State> {
        self.read_state_file(id).map(StateFile::state)
    }

    /// As [`Spool::read_state`], saying whether the state file was there,
    /// absent, or torn (see [`parse_state_of`]).
    pub fn read_state_file(&self, id: &QueueId) -> io::Result<StateFile> {
        match self.read_state_text(id)? {
            Some(text) => parse_state_of(id, &text),
            None => Ok(StateFile::Absent),
        }
    }

    /// The text of message `id`'s state file; None when there is none.
    fn read_state_text(&self, id: &QueueId) -> io::Result<Option<String>> {
        // A state file is replaced by rename, never written in place: the
        // length fstat gives is the whole of it, read in one read(2)
        // (read_to_string would ask fstat and lseek again, and read once
        // more to find the end: on a large queue, per message).
        let read = || -> io::Result<String> {
            let (mut file, len) = self.open_queued(id, true)?;
            let mut text = vec![0; usize::try_from(len).map_err(io::Error::other)?];
            io::Read::read_exact(&mut file, &mut text)?;
            String::from_utf8(text).map_err(|_| not_utf8())
        };
        match read() {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A message's state file as read.
#[derive(Debug, PartialEq, Eq)]
pub enum StateFile {
    Found(State),
    /// No state file: never attempted (nor held).
    Absent,
    /// A state file left torn by a crash (see [`parse_state_of`]): no state,
    /// for the reason said.
    Torn(&'static str),
}

impl StateFile {
    /// The state; the empty one when there is none, or none that stands.
    pub fn state(self) -> State {
        match self {
            StateFile::Found(state) => state,
            StateFile::Absent | StateFile::Torn(_) => State::default(),
        }
    }
}

/// Sorts a scan's messages and marks each with its state file from
/// `states` (id, waits by its mtime, regular by the directory), in one
/// sorted merge (no hash set of every state); returns the states left
/// without their message.
fn merge_states(
    entries: &mut [QueueEntry],
    mut states: Vec<(QueueId, bool, bool)>,
) -> Vec<QueueId> {
    entries.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    states.sort_unstable();
    let mut orphans = Vec::new();
    let mut states = states.into_iter().peekable();
    for e in entries {
        while let Some((orphan, ..)) = states.next_if(|(s, ..)| *s < e.id) {
            orphans.push(orphan);
        }
        if let Some((_, waits, regular)) = states.next_if(|(s, ..)| *s == e.id) {
            (e.has_state, e.waits, e.state_regular) = (true, waits, regular);
        }
    }
    orphans.extend(states.map(|(id, ..)| id));
    orphans
}

/// Sets the times of a state file being written, after its text and
/// before its fsync (so that they are as durable as the text), when
/// [`mtime_hint`] gives a due time: the mtime that, and the atime a second
/// later (under `relatime`, a read of a file whose atime is not after its
/// mtime writes the inode back, which every mailq would do for every
/// waiting state). Not set (a file system that refuses it): the file keeps
/// the time of writing, and every pass reads it, as before 1.6.
fn set_due_time(file: &File, state: &State) {
    let Some(due) = mtime_hint(state, crate::system::now().0) else {
        return;
    };
    let due = std::time::UNIX_EPOCH + std::time::Duration::from_secs(due);
    let read = due + std::time::Duration::from_secs(1);
    let times = std::fs::FileTimes::new().set_modified(due);
    let _ = file.set_times(times.set_accessed(read));
}

/// The due time a state file's mtime carries (doc/SPOOL.md, "Due times",
/// since 1.6): the next attempt, when the message only waits for it (no
/// notice owed, not held, attempted, the time still to come at `now`, when
/// the state is written); None leaves the mtime at the time of writing,
/// which says "read me". Every state file a pass must act on before its
/// next attempt has None, so that no pass passes it by.
pub fn mtime_hint(state: &State, now: u64) -> Option<u64> {
    let waits_only = state.held.is_none() && state.owed.is_empty() && state.attempts > 0;
    (waits_only && state.next_attempt > now).then_some(state.next_attempt)
}

/// The due decision of a pass that is not forced, from a state file's
/// mtime alone (`mtime`, Unix seconds; None when `fstatat` failed or it is
/// not a regular file): the message waits, and its state need not be
/// read, only when the mtime is after `now` and no further than `horizon`
/// seconds (the retry schedule's longest wait) beyond. Any other mtime, a
/// file older than 1.6 (mtime = when it was written) or one set by hand
/// past the horizon, is read as before: in doubt, read.
pub fn waits_by_mtime(mtime: Option<i64>, now: u64, horizon: u64) -> bool {
    let Some(mtime) = mtime.and_then(|m| u64::try_from(m).ok()) else {
        return false;
    };
    mtime > now && mtime - now <= horizon
}

/// How long ago a file in `tmp/` was last written, by the earlier of its
/// mtime and ctime: a state file about to be renamed into `queue/` has its
/// mtime set to its due time (see [`mtime_hint`]), which a writer that
/// died before the rename would leave behind in the future; its ctime,
/// which nobody can set, is then when it was written.
fn unix_age(meta: &std::fs::Metadata, now: std::time::SystemTime) -> std::time::Duration {
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, UNIX_EPOCH};
    let at = |secs: i64, nanos: i64| {
        let nanos = u32::try_from(nanos).unwrap_or(0);
        UNIX_EPOCH + Duration::new(u64::try_from(secs).unwrap_or(0), nanos)
    };
    let written = at(meta.mtime(), meta.mtime_nsec()).min(at(meta.ctime(), meta.ctime_nsec()));
    now.duration_since(written).unwrap_or_default()
}

/// Whether a file may exist, from what `stat` said of it: only NotFound
/// says it does not. Any other error (EIO, ENOMEM, a stale NFS handle) is
/// taken as "there", so that reading it fails and the message is held:
/// a state taken as absent would send the message again to every
/// recipient already delivered.
fn may_exist<T>(stat: &io::Result<T>) -> bool {
    !matches!(stat, Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// Why a message whose state cannot be read is held, as the log and mailq say it.
pub fn held_reason(e: &std::io::Error) -> String {
    format!("delivery state unreadable, message held: {e}")
}

/// Opens a spool file for reading, only if it is a regular file: never
/// through a symbolic link, never blocking (a FIFO named like a message
/// would hang `open` until a writer came), and checked with fstat on the
/// open descriptor, so nothing can be swapped in between.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    open_regular_sized(path).map(|(file, _)| file)
}

/// As [`open_regular`], with the file's length from the same fstat.
fn open_regular_sized(path: &Path) -> io::Result<(File, u64)> {
    checked_regular(open_unchecked(path))
}

/// Opens a spool file for reading as [`open_regular`] does, without the
/// fstat: the caller checks before reading ([`checked_regular`]).
fn open_unchecked(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(not_a_link)
}

/// The error of an open refused with O_NOFOLLOW, as the reader says it.
fn not_a_link(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => invalid("a symbolic link, not a regular file".into()),
        _ => e,
    }
}

/// What [`open_unchecked`] opened, checked with fstat to be a regular file.
fn checked_regular(opened: io::Result<File>) -> io::Result<(File, u64)> {
    let file = opened?;
    let len = regular_len(&file.metadata()?)?;
    Ok((file, len))
}

/// The length of a file from its fstat, refused when it is not a regular file.
fn regular_len(meta: &std::fs::Metadata) -> io::Result<u64> {
    match meta.is_file() {
        true => Ok(meta.len()),
        false => Err(invalid("not a regular file".into())),
    }
}

/// The first bytes of `file` into `buf` (a pread at 0), how many: a
/// short count from a regular file is its end. A FIFO, socket or terminal
/// has no offset (ESPIPE): not a regular file.
fn read_head(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read_at(buf, 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ESPIPE) => {
                return Err(invalid("not a regular file".into()));
            }
            other => return other,
        }
    }
}

/// The envelope of the message `file`, `total` bytes long, and the length
/// of its content. Listings and queue runs read every envelope of the
/// queue: the first read(2) is into the stack and nearly always holds the
/// whole envelope; a longer one goes on through a reader allocated then.
fn read_envelope_from(file: &File, total: u64) -> io::Result<(Envelope, u64)> {
    let mut head = [0u8; crate::limits::ENVELOPE_FIRST_READ];
    let n = loop {
        match io::Read::read(&mut &*file, &mut head) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    envelope_after(file, &head[..n], total)
}

/// The envelope of the message `file`, `total` bytes long, whose first
/// bytes `head` have been read, the file's offset just after them.
fn envelope_after(file: &File, head: &[u8], total: u64) -> io::Result<(Envelope, u64)> {
    let (envelope, header_len) = if head.windows(2).any(|w| w == b"\n\n") {
        parse_envelope(&mut &*head)?
    } else {
        let rest = BufReader::with_capacity(crate::limits::ENVELOPE_READ_BUFFER, file);
        parse_envelope(&mut io::Read::chain(head, rest))?
    };
    Ok((envelope, total.saturating_sub(header_len)))
}

/// A message claimed by one queue runner: an exclusive flock on
/// `queue/QID`, held until the claim is dropped. Only the holder writes the
/// message's state or removes it, so concurrent runners (also on other hosts
/// sharing the spool) never deliver to the same recipient twice.
pub struct Claim<'s> {
    pub id: QueueId,
    /// The locked file, in the [`ClaimSlot`] the claim borrows, so that it
    /// cannot be closed before the claim lets go of its lock.
    file: &'s File,
    /// The file's length when it was claimed (a message never changes
    /// after its commit).
    len: u64,
    /// False once the message is removed: its lock then goes with the file
    /// when the slot closes it (a runner that opened it before the removal
    /// finds it unlinked), without a system call of its own.
    unlock: bool,
}

/// What one try at a claim found.
enum Taken {
    Locked(File, u64),
    Busy,
    Gone,
}

impl<'s> Claim<'s> {
    fn new(id: &QueueId, slot: &'s mut ClaimSlot, file: File, len: u64) -> Claim<'s> {
        Claim {
            id: id.clone(),
            file: slot.0.insert(file),
            len,
            unlock: true,
        }
    }

    /// The claimed message file.
    pub fn file(&self) -> &File {
        self.file
    }

    /// The message file's length.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// The whole message file, when it is no longer than `most` bytes:
    /// read in one pread(2) at most, envelope and content together.
    pub fn read_whole(&self, most: u64) -> io::Result<Option<Vec<u8>>> {
        if self.len > most {
            return Ok(None);
        }
        let mut bytes = vec![0; usize::try_from(self.len).map_err(io::Error::other)?];
        self.file.read_exact_at(&mut bytes, 0)?;
        Ok(Some(bytes))
    }

    /// The lines of a state of the claimed message that copy its envelope
    /// for listings ([`envelope_copy`]): one pread of the file's beginning.
    pub fn envelope_copy(&self) -> Option<String> {
        let most = (crate::limits::STATE_ENVELOPE_COPY as u64).min(self.len);
        let mut head = vec![0; usize::try_from(most).ok()?];
        self.file.read_exact_at(&mut head, 0).ok()?;
        envelope_copy(&head, self.len)
    }

    /// The claimed message's envelope and the size of its content, read
    /// through the claim's own open file (no second open of the message).
    pub fn envelope(&self) -> io::Result<(Envelope, u64)> {
        let mut file: &File = self.file;
        io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
        read_envelope_from(file, self.len)
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.unlock {
            let _ = self.file.unlock();
        }
    }
}

/// Where a [`Claim`] keeps the message file it locks. The claim borrows
/// the file, which so outlives the lock; the caller keeps this one for the
/// claim's lifetime:
/// `let mut slot = ClaimSlot::default(); let claim = spool.claim(id, &mut slot)?;`
#[derive(Default)]
pub struct ClaimSlot(Option<File>);

/// 8 hex digits of seconds/// 8 hex digits of seconds, 5 of microseconds, 3 random: sorts by arrival.
fn new_queue_id() -> QueueId {
    let (secs, micros) = crate::system::now();
    QueueId::new(secs, micros, crate::system::random_u64())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("cannot fsync directory {}", dir.display()), e))
}

/// Writes the envelope and its closing empty line; returns the file offset of
/// the `body` value, to be patched when 8-bit content turns up. Public for
/// the round-trip fuzz target (fuzz/src/spool_records.rs), with `format_state`.
pub fn write_envelope(out: &mut impl Write, e: &Envelope) -> io::Result<u64> {
    let mut head = String::with_capacity(256);
    use std::fmt::Write as _;
    let _ = writeln!(
        head,
        "{MAGIC}\nid {}\narrival {}\nuid {}\nsender {}",
        e.id, e.arrival, e.uid, e.sender
    );
    if let Some(ret) = e.ret {
        let _ = writeln!(
            head,
            "ret {}",
            if ret == Ret::Full { "full" } else { "hdrs" }
        );
    }
    if let Some(envid) = &e.envid {
        let _ = writeln!(head, "envid {envid}");
    }
    if let Some(notify) = e.notify {
        let _ = writeln!(head, "notify {notify}");
    }
    if e.smtputf8 {
        head.push_str("smtputf8 yes\n");
    }
    if e.notice {
        head.push_str("notice yes\n");
    }
    head.push_str("body ");
    let body_offset = head.len() as u64;
    let body = if e.body == BodyType::EightBitMime {
        "8bitmime"
    } else {
        "7bit"
    };
    let _ = writeln!(head, "{body:BODY_WIDTH$}");
    for r in &e.recipients {
        let _ = writeln!(head, "rcpt {}", r.address);
        if let Some(o) = &r.orcpt {
            let _ = writeln!(head, "orcpt {o}");
        }
    }
    head.push('\n');
    out.write_all(head.as_bytes())?;
    Ok(body_offset)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn not_utf8() -> io::Error {
    invalid("a state file that is not UTF-8".into())
}

/// Reads the envelope up to its empty line; returns it with its length in bytes.
pub fn parse_envelope(reader: &mut impl BufRead) -> io::Result<(Envelope, u64)> {
    // Room for an envelope's usual line: grown from empty, each envelope
    // reallocated it several times (a listing parses every one).
    let mut line = String::with_capacity(256);
    let mut consumed = reader.read_line(&mut line)? as u64;
    if line.trim_end() != MAGIC {
        return Err(invalid(format!(
            "not a spool file of version 1 (first line `{}`)",
            line.trim_end().escape_debug()
        )));
    }
    let mut id = None;
    let mut e = Envelope {
        // Replaced by the `id` line, which every envelope has.
        id: QueueId::new(0, 0, 0),
        arrival: 0,
        uid: 0,
        sender: String::new(),
        recipients: Vec::new(),
        ret: None,
        envid: None,
        notify: None,
        body: BodyType::SevenBit,
        smtputf8: false,
        notice: false,
    };
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        consumed += n as u64;
        if n == 0 {
            return Err(invalid("envelope without its closing empty line".into()));
        }
        let l = line.trim_end_matches('\n');
        if l.is_empty() {
            break;
        }
        let (key, value) = l.split_once(' ').unwrap_or((l, ""));
        let value = value.trim_end_matches(' ');
        match key {
            "id" => id = QueueId::parse(value),
            "arrival" => e.arrival = number("arrival", value)?,
            "uid" => e.uid = number("uid", value)?,
            "sender" => e.sender = value.to_string(),
            "ret" => {
                e.ret = Some(if value == "full" {
                    Ret::Full
                } else {
                    Ret::Hdrs
                })
            }
            "envid" => e.envid = Some(value.to_string()),
            // Written from a checked value; anything else is read as no NOTIFY.
            "notify" => e.notify = Notify::parse(value),
            "smtputf8" => e.smtputf8 = value == "yes",
            "notice" => e.notice = value == "yes",
            "body" => {
                e.body = if value == "8bitmime" {
                    BodyType::EightBitMime
                } else {
                    BodyType::SevenBit
                }
            }
            "rcpt" => e.recipients.push(Recipient {
                address: Address::accepted(value),
                orcpt: None,
            }),
            "orcpt" => {
                if let Some(last) = e.recipients.last_mut() {
                    last.orcpt = Some(value.to_string());
                }
            }
            _ => {} // a later minor version's key
        }
    }
    e.id = id.ok_or_else(|| invalid("envelope without a valid id".into()))?;
    Ok((e, consumed))
}

/// The text of a state file (`queue/QID.state`), as `write_state` stores it.
pub fn format_state(state: &State) -> String {
    use std::fmt::Write as _;
    let magic = match state.held {
        Some(_) => HELD_STATE_MAGIC,
        None => STATE_MAGIC,
    };
    let mut out = format!(
        "{magic}\nattempts {}\nnext {}\n",
        state.attempts, state.next_attempt
    );
    for (i, status, text) in &state.recipients {
        let status = match status {
            RcptStatus::Pending => "pending",
            RcptStatus::Delivered => "delivered",
            RcptStatus::Deferred => "deferred",
            RcptStatus::Failed => "failed",
        };
        // Replies come from remote servers: one line, no control characters.
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let _ = writeln!(out, "rcpt {i} {status} {text}");
    }
    for o in &state.owed {
        let status = o.status.map_or("-".to_string(), |c| c.to_string());
        let kind = if o.expired { "expired" } else { "failed" };
        // A relay is `host[ip]:port`, written by spoolmail: no spaces.
        let remote = o.remote.as_deref().unwrap_or("-").replace(' ', "_");
        let _ = writeln!(out, "owed {} {status} {kind} {remote}", o.index);
    }
    if let Some(t) = state.delay_notified {
        let _ = writeln!(out, "delayed {t}");
    }
    if let Some(p) = &state.pass {
        let _ = writeln!(out, "pass {} {}", p.id, p.at);
    }
    if let Some(t) = state.held {
        let _ = writeln!(out, "held {t}");
    }
    out
}

/// A `pass` line's value: `ID TIME`.
fn parse_pass(value: &str) -> io::Result<PassMark> {
    let bad = || invalid(format!("bad pass `{value}`"));
    let (id, at) = value.split_once(' ').ok_or_else(bad)?;
    Ok(PassMark {
        id: PassId::parse(id).ok_or_else(bad)?,
        at: at.parse().map_err(|_| bad())?,
    })
}

/// An `owed` line's value: `INDEX STATUS KIND REMOTE`.
fn parse_owed(value: &str) -> io::Result<Owed> {
    let bad = || invalid(format!("bad owed `{value}`"));
    let mut parts = value.split(' ');
    let index = parts.next().and_then(|i| i.parse().ok()).ok_or_else(bad)?;
    let status = match parts.next().ok_or_else(bad)? {
        "-" => None,
        code => Some(EnhancedCode::parse(code).ok_or_else(bad)?),
    };
    let expired = match parts.next() {
        Some("expired") => true,
        Some("failed") => false,
        _ => return Err(bad()),
    };
    let remote = match parts.next().ok_or_else(bad)? {
        "-" => None,
        r => Some(r.to_string()),
    };
    Ok(Owed {
        index,
        status,
        expired,
        remote,
    })
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> io::Result<T> {
    value
        .parse()
        .map_err(|_| invalid(format!("bad {key} `{value}`")))
}

/// The state file of message `id` as written since 1.7: the magic line,
/// `id QID`, the lines [`format_state`] writes, and `end`, so that a state
/// torn by a crash can be told (see [`parse_state_of`]).
pub fn state_text(id: &QueueId, state: &State) -> String {
    state_text_with(id, state, "")
}

/// [`state_text`] with `listing` (the lines of [`envelope_copy`], for
/// listings alone, since 1.8) before its `end`.
fn state_text_with(id: &QueueId, state: &State, listing: &str) -> String {
    let body = format_state(state);
    let (magic, rest) = body.split_once('\n').unwrap_or((&body, ""));
    format!("{magic}\nid {id}\n{rest}{listing}{STATE_END}\n")
}

/// The lines a state file carries (since 1.8) so that a listing need not
/// open the message: `envelope LINE` for each line of the message file's
/// envelope (`head`, the file's first bytes, up to its empty line), then
/// `content-size N` (the file's length, `file_len`, less the envelope's).
/// None when the envelope does not end within
/// [`crate::limits::STATE_ENVELOPE_COPY`] bytes of `head`, or is not
/// what a spool file's envelope can be (UTF-8, no control character): a
/// listing then reads the message file, as it did before 1.8.
pub fn envelope_copy(head: &[u8], file_len: u64) -> Option<String> {
    use std::fmt::Write as _;
    let head = &head[..head.len().min(crate::limits::STATE_ENVELOPE_COPY)];
    let end = memchr::memmem::find(head, b"\n\n")?;
    let block = std::str::from_utf8(&head[..end]).ok()?;
    if block.chars().any(|c| c.is_control() && c != '\n') {
        return None;
    }
    let size = file_len.checked_sub(end as u64 + 2)?;
    let mut out = String::with_capacity(block.len() * 2);
    for line in block.split('\n') {
        let _ = writeln!(out, "envelope {}", line.trim_end_matches(' '));
    }
    let _ = writeln!(out, "content-size {size}");
    Some(out)
}

/// What a listing reads in a state file besides the state (since 1.8).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListingLines {
    /// The message's envelope and content size, from the state's copy
    /// ([`envelope_copy`]) when it is whole and is the message's own.
    pub copy: Option<(Envelope, u64)>,
}

impl ListingLines {
    /// Whether a runner may hold the message in a transaction, so that a
    /// test of its claim lock is worth an open of the message file: the
    /// state has no copy. A runner writes the state that begins its
    /// transactions without one (and a state of 1.7 or before has none),
    /// and every state with a copy records an outcome or an admin's
    /// action, after which the lock is held only for a moment. The one
    /// rule of listings and metrics.
    pub fn may_be_in_delivery(&self) -> bool {
        self.copy.is_none()
    }
}

/// The [`ListingLines`] of the state file text of message `id`, read
/// leniently: a copy that is not whole, not a version 1 envelope, or
/// another message's is no copy, and never makes the state unreadable.
pub fn listing_lines(id: &QueueId, text: &str) -> ListingLines {
    let mut lines = ListingLines::default();
    let mut envelope = String::new();
    let mut size = None;
    for l in text.lines() {
        let (key, value) = l.split_once(' ').unwrap_or((l, ""));
        match key {
            "envelope" => {
                envelope.push_str(value);
                envelope.push('\n');
            }
            "content-size" => size = value.parse::<u64>().ok(),
            _ => {}
        }
    }
    envelope.push('\n');
    lines.copy = match (parse_envelope(&mut envelope.as_bytes()), size) {
        (Ok((env, used)), Some(size)) if env.id == *id && used == envelope.len() as u64 => {
            Some((env, size))
        }
        _ => None,
    };
    lines
}

/// The last line of a state file since 1.7.
const STATE_END: &str = "end";

/// The state file of message `id` from its text. A state whose attempt
/// was recorded without `fsync` (a first attempt's, see doc/SPOOL.md,
/// "The state file") may be found torn after a crash: empty or all NUL
/// bytes, cut short, longer than written, or the whole of the state of
/// the message the recycled file held before. Such a file is read as no
/// state ([`StateFile::Torn`]): since only a message that had no state is
/// written so, there was none before it. Recognised: an empty or all-NUL
/// text, a beginning of the 1.7 header (`SPOOLMAIL-STATE 1`, `id `) cut
/// short, and a 1.7 state (one with an `id` line) whose `id` is another
/// message's, or which does not end with its one `end` line. A state of
/// 1.6 or before (no `id` line) is read as ever; anything else that is not
/// a state file is an Err, which holds the message.
pub fn parse_state_of(id: &QueueId, text: &str) -> io::Result<StateFile> {
    if text.bytes().all(|b| b == 0) {
        return Ok(StateFile::Torn("an empty state file"));
    }
    let header = format!("{STATE_MAGIC}\nid ");
    if header.starts_with(text) {
        return Ok(StateFile::Torn("a state file cut short"));
    }
    let Some(rest) = text.strip_prefix(&header) else {
        return parse_state(text).map(StateFile::Found); // 1.6 or before
    };
    let (written_for, _) = rest.split_once('\n').unwrap_or((rest, ""));
    if written_for != id.as_str() {
        return Ok(StateFile::Torn("the state file of another message"));
    }
    let ends = text.lines().filter(|l| *l == STATE_END).count();
    let end_line = format!("\n{STATE_END}\n");
    if ends != 1 || !text.ends_with(&end_line) {
        return Ok(StateFile::Torn("a state file that is not whole"));
    }
    parse_state(text).map(StateFile::Found)
}

pub fn parse_state(text: &str) -> io::Result<State> {
    let mut lines = text.lines();
    if !matches!(lines.next(), Some(STATE_MAGIC | HELD_STATE_MAGIC)) {
        return Err(invalid("not a state file of version 1".into()));
    }
    let mut state = State::default();
    for l in lines {
        let (key, value) = l.split_once(' ').unwrap_or((l, ""));
        match key {
            "attempts" => state.attempts = number("attempts", value)?,
            "next" => state.next_attempt = number("next", value)?,
            "owed" => state.owed.push(parse_owed(value)?),
            "delayed" => state.delay_notified = Some(number("delayed", value)?),
            "pass" => state.pass = Some(parse_pass(value)?),
            "held" => state.held = Some(number("held", value)?),
            "rcpt" => {
                let mut parts = value.splitn(3, ' ');
                let index = parts
                    .next()
                    .and_then(|i| i.parse().ok())
                    .ok_or_else(|| invalid(format!("bad rcpt `{value}`")))?;
                let status = match parts.next() {
                    Some("pending") => RcptStatus::Pending,
                    Some("delivered") => RcptStatus::Delivered,
                    Some("deferred") => RcptStatus::Deferred,
                    Some("failed") => RcptStatus::Failed,
                    other => {
                        return Err(invalid(format!(
                            "bad rcpt status `{}`",
                            other.unwrap_or("")
                        )));
                    }
                };
                state
                    .recipients
                    .push((index, status, parts.next().unwrap_or("").to_string()));
            }
            _ => {}
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(id: QueueId) -> Envelope {
        Envelope {
            id,
            arrival: 1795305600,
            uid: 1000,
            sender: "alice@example.org".into(),
            recipients: vec![
                Recipient {
                    address: Address::accepted("\"bob smith\"@example.com"),
                    orcpt: None,
                },
                Recipient {
                    address: Address::accepted("root@host.example.org"),
                    orcpt: Some("root".into()),
                },
            ],
            ret: Some(Ret::Hdrs),
            envid: Some("abc".into()),
            notify: Some(Notify::SUCCESS | Notify::FAILURE),
            body: BodyType::SevenBit,
            smtputf8: false,
            notice: false,
        }
    }

    #[test]
    fn selectors_match_a_part_of_id_recipient_or_sender_in_any_case() {
        let env = envelope(QueueId::parse("1A2B3C4D5E00F1AB").unwrap());
        let cases = [
            (Selector::QueueId("3c4d".into()), true),
            (Selector::QueueId("0F2".into()), false),
            (Selector::QueueId("0f1ab".into()), true),
            (Selector::Recipient("HOST.example".into()), true),
            (Selector::Recipient("bob smith".into()), true),
            (Selector::Recipient("alice".into()), false),
            (Selector::Sender("Alice@".into()), true),
            (Selector::Sender("root".into()), false),
        ];
        for (selector, expected) in cases {
            assert_eq!(selector.matches(&env), expected, "{selector:?}");
        }
    }

    fn spool() -> (PathBuf, Spool) {
        let dir = std::env::temp_dir().join(format!(
            "spoolmail-unit-{}-{}",
            std::process::id(),
            crate::system::random_u64()
        ));
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        std::fs::create_dir_all(dir.join("queue")).unwrap();
        let s = Spool::new(&dir);
        (dir, s)
    }

    #[test]
    fn a_claim_waits_out_a_lock_held_for_a_moment() {
        let (dir, spool) = spool();
        let id = spool.deposit(envelope, |_, _| Ok(())).unwrap().id;
        // A listing's look: a shared lock, for a moment.
        let file = File::open(spool.message_path(&id)).unwrap();
        let look = fd_lock::RwLock::new(file);
        let guard = look.try_read().unwrap();
        let mut slot = ClaimSlot::default();
        assert!(spool.claim(&id, &mut slot).unwrap().is_none());
        let (done, let_go) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(15));
                drop(guard);
                done.send(()).unwrap();
            });
            let mut slot = ClaimSlot::default();
            assert!(spool.claim_soon(&id, &mut slot).unwrap().is_some());
            let_go.recv().unwrap();
        });
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn deposit_then_read_back() {
        let (dir, spool) = spool();
        let written = spool
            .deposit(envelope, |_, d| {
                d.content()
                    .write_all(b"Subject: hi\n\nb\xc3\xa4dy\n")
                    .unwrap();
                d.add_content_len(19);
                d.mark_8bit().unwrap();
                Ok(())
            })
            .unwrap();
        assert!(
            QueueId::parse(written.id.as_str()).is_some(),
            "{}",
            written.id
        );
        assert_eq!(
            spool
                .scan()
                .unwrap()
                .iter()
                .map(|e| e.id.clone())
                .collect::<Vec<_>>(),
            vec![written.id.clone()]
        );
        let (read, size) = spool.read_envelope(&written.id).unwrap();
        assert_eq!(size, 19);
        assert_eq!(read.body, BodyType::EightBitMime);
        assert_eq!(
            read,
            Envelope {
                body: BodyType::EightBitMime,
                ..written
            }
        );
        assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let (dir, spool) = spool();
        let r = spool.deposit(envelope, |_, d| {
            d.content().write_all(b"partial").unwrap();
            Err(Error::TooBig { limit: 1 })
        });
        assert!(r.is_err());
        assert!(spool.scan().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn state_written_and_claims_exclusive() {
        let (dir, spool) = spool();
        let env = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        let mut slot = ClaimSlot::default();
        let claim = spool
            .claim(&env.id, &mut slot)
            .unwrap()
            .expect("first claim");
        assert!(
            spool
                .claim(&env.id, &mut ClaimSlot::default())
                .unwrap()
                .is_none(),
            "second claim must fail"
        );
        let mut st = State {
            attempts: 1,
            next_attempt: 42,
            ..State::default()
        };
        st.set(1, RcptStatus::Deferred, "451 4.3.0 later\r\nINJECT");
        st.set(0, RcptStatus::Delivered, "250 ok");
        spool.write_state(&claim, &st).unwrap();
        let back = spool.read_state(&env.id).unwrap();
        assert_eq!(back.status_of(0), (RcptStatus::Delivered, "250 ok"));
        assert_eq!(
            back.status_of(1),
            (RcptStatus::Deferred, "451 4.3.0 later  INJECT")
        );
        spool.remove(claim).unwrap();
        assert!(spool.scan().unwrap().is_empty());
        assert!(spool.claim(&env.id, &mut slot).unwrap().is_none());
        assert!(!spool.state_path(&env.id).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_delivery_child_recycles_its_state_files_through_one_spare() {
        use std::os::unix::fs::MetadataExt;
        let (dir, plain) = spool();
        let spool = Spool::new(&dir).recycling_states();
        let spare = spool.spare.as_ref().unwrap().path.clone();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        // A long state first, then a shorter one through the same file.
        let mut long = State {
            attempts: 1,
            next_attempt: 42,
            ..State::default()
        };
        long.set(0, RcptStatus::Deferred, &"451 4.3.0 busy ".repeat(40));
        let short = State {
            attempts: 2,
            next_attempt: 7,
            ..State::default()
        };
        let first = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        let mut slot = ClaimSlot::default();
        let claim = spool.claim(&first.id, &mut slot).unwrap().unwrap();
        spool
            .write_state_before_attempt(&claim, &long, false)
            .unwrap();
        assert!(!spare.exists(), "the spare became the state file");
        let state_ino = ino(&spool.state_path(&first.id));
        spool.remove(claim).unwrap();
        assert!(!spool.message_path(&first.id).exists());
        assert!(!spool.state_path(&first.id).exists());
        assert_eq!(ino(&spare), state_ino, "the state file is the spare now");
        let second = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        let mut slot = ClaimSlot::default();
        let claim = spool.claim(&second.id, &mut slot).unwrap().unwrap();
        spool
            .write_state_before_attempt(&claim, &short, false)
            .unwrap();
        assert_eq!(
            ino(&spool.state_path(&second.id)),
            state_ino,
            "no new inode"
        );
        assert!(!spare.exists());
        // Read as any other process reads it: exactly the shorter state.
        assert_eq!(plain.read_state(&second.id).unwrap(), short);
        // A state written the ordinary way is recycled as well.
        spool.write_state(&claim, &long).unwrap();
        spool.remove(claim).unwrap();
        assert!(spare.exists());
        spool.drop_spare();
        assert!(!spare.exists());
        // Without `tmp/`, the state file is unlinked as ever.
        let fourth = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        let mut slot = ClaimSlot::default();
        let claim = spool.claim(&fourth.id, &mut slot).unwrap().unwrap();
        spool
            .write_state_before_attempt(&claim, &short, false)
            .unwrap();
        std::fs::remove_dir(dir.join("tmp")).unwrap();
        spool.remove(claim).unwrap();
        assert!(!spool.state_path(&fourth.id).exists());
        std::fs::create_dir(dir.join("tmp")).unwrap();
        // A spool that does not recycle unlinks its state files.
        let third = plain.deposit(envelope, |_, _| Ok(())).unwrap();
        let mut slot = ClaimSlot::default();
        let claim = plain.claim(&third.id, &mut slot).unwrap().unwrap();
        plain
            .write_state_before_attempt(&claim, &short, false)
            .unwrap();
        plain.remove(claim).unwrap();
        assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(dir.join("queue")).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A removal whose fsync of `queue/` failed leaves the spare, which
    /// may still be the removed message's state on disk, unwritten: the
    /// next message's state goes into another file.
    #[test]
    fn a_spare_is_not_reused_after_a_removal_that_was_not_made_durable() {
        let (dir, _) = spool();
        let spool = Spool::new(&dir).recycling_states();
        let state = State {
            attempts: 1,
            next_attempt: 42,
            ..State::default()
        };
        let first = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        let mut slot = ClaimSlot::default();
        let claim = spool.claim(&first.id, &mut slot).unwrap().unwrap();
        spool
            .write_state_before_attempt(&claim, &state, true)
            .unwrap();
        // The first message's state file itself, as a crash could bring it
        // back: held open here, whatever its name becomes.
        let first_state = File::open(spool.state_path(&first.id)).unwrap();
        // The removal, its fsync failing.
        spool.remove_unsynced(claim).unwrap();
        let eio = Error::io("fsync", io::Error::from_raw_os_error(libc::EIO));
        assert!(spool.after_removal(Err(eio)).is_err());
        let second = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        let mut slot = ClaimSlot::default();
        let claim = spool.claim(&second.id, &mut slot).unwrap().unwrap();
        spool
            .write_state_before_attempt(&claim, &state, true)
            .unwrap();
        let text = std::io::read_to_string(&first_state).unwrap();
        assert!(
            text.contains(&format!("\nid {}\n", first.id)),
            "the first message's state was overwritten: {text}"
        );
        spool.drop_spare();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_childs_open_spare_never_writes_a_state_it_no_longer_is() {
        let (dir, plain) = spool();
        let spool = Spool::new(&dir).recycling_states();
        let spare = spool.spare.as_ref().unwrap().path.clone();
        let state = |attempts: u32, text: &str| {
            let mut s = State {
                attempts,
                next_attempt: 42,
                ..State::default()
            };
            s.set(0, RcptStatus::Deferred, text);
            s
        };
        let (short, long) = (state(1, "x"), state(1, &"451 busy ".repeat(30)));
        let deferred = state(2, "451 4.3.0 try later");
        // Each step: a message claimed, its attempt begun through the spare.
        let begin = |s: &State| {
            let env = spool.deposit(envelope, |_, _| Ok(())).unwrap();
            let mut slot = ClaimSlot::default();
            let claim = spool.claim(&env.id, &mut slot).unwrap().unwrap();
            spool.write_state_before_attempt(&claim, s, true).unwrap();
            drop(claim);
            // Exactly this text, nothing of an earlier one after it.
            let text = std::fs::read_to_string(spool.state_path(&env.id)).unwrap();
            assert_eq!(text, state_text(&env.id, s));
            (env.id, slot)
        };
        // A deferred: its state replaced the ordinary way; the open spare
        // (A's state before) must not be written again.
        let a = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        {
            let mut slot = ClaimSlot::default();
            let claim = spool.claim(&a.id, &mut slot).unwrap().unwrap();
            spool
                .write_state_before_attempt(&claim, &long, false)
                .unwrap();
            spool.write_state(&claim, &deferred).unwrap();
        }
        // B begun and never recorded (its record failed): its state stays
        // as the spare made it, and the next attempt's goes elsewhere.
        let (b, _slot) = begin(&long);
        // C, D, E, F delivered one after the other: short, long, short
        // again through the one spare, each read back exactly.
        for s in [&short, &long, &short, &long] {
            let (id, mut slot) = begin(s);
            let claim = spool.claim(&id, &mut slot).unwrap().unwrap();
            spool.remove(claim).unwrap();
            assert!(spare.exists());
            assert_eq!(plain.read_state(&a.id).unwrap(), deferred, "A untouched");
            assert_eq!(plain.read_state(&b).unwrap(), long, "B untouched");
        }
        // The spare removed behind the child's back (a pass's clean-up of
        // `tmp/`): the state is written the ordinary way, whole.
        std::fs::remove_file(&spare).unwrap();
        let (id, _slot) = begin(&long);
        assert_eq!(plain.read_state(&id).unwrap(), long);
        assert_eq!(plain.read_state(&a.id).unwrap(), deferred);
        spool.drop_spare();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn two_children_of_one_pid_never_write_into_each_others_states() {
        // Two delivery children with the same pid (in two pid namespaces,
        // or on two hosts sharing the spool): two spools of this process.
        let (dir, plain) = spool();
        let (x, y) = (
            Spool::new(&dir).recycling_states(),
            Spool::new(&dir).recycling_states(),
        );
        let mut mine = State {
            attempts: 3,
            next_attempt: 42,
            ..State::default()
        };
        mine.set(0, RcptStatus::Delivered, "250 ok");
        mine.set(1, RcptStatus::Deferred, "451 later");
        let first = State {
            attempts: 1,
            next_attempt: 42,
            ..State::default()
        };
        let begin = |spool: &Spool, state: &State, first: bool| {
            let env = spool.deposit(envelope, |_, _| Ok(())).unwrap();
            let mut slot = ClaimSlot::default();
            let claim = spool.claim(&env.id, &mut slot).unwrap().unwrap();
            spool
                .write_state_before_attempt(&claim, state, first)
                .unwrap();
            env.id
        };
        // Y's first message delivered: its spare home, and kept open.
        let b = begin(&y, &first, true);
        let mut slot = ClaimSlot::default();
        y.remove(y.claim(&b, &mut slot).unwrap().unwrap()).unwrap();
        // X's message A, delivered to one recipient before, begins again.
        let a = begin(&x, &mine, false);
        // Y's next message begins: A's state must stay A's.
        let c = begin(&y, &first, true);
        assert_eq!(plain.read_state_file(&a).unwrap(), StateFile::Found(mine));
        assert_eq!(plain.read_state(&c).unwrap(), first);
        x.drop_spare();
        y.drop_spare();
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A message file's bytes: `env`'s envelope, then `content`.
    fn message_bytes(env: &Envelope, content: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_envelope(&mut bytes, env).unwrap();
        bytes.extend_from_slice(content);
        bytes
    }

    #[test]
    fn a_state_copies_the_envelope_only_when_it_is_whole_and_short() {
        let env = envelope(QueueId::new(1, 2, 3));
        let bytes = message_bytes(&env, b"Subject: x\n\nhello\n");
        let copy = envelope_copy(&bytes, bytes.len() as u64).unwrap();
        // Line by line, the body's padding trimmed, then the content's size.
        let expected = format!(
            "envelope {MAGIC}\nenvelope id {}\nenvelope arrival 1795305600\n\
             envelope uid 1000\nenvelope sender alice@example.org\n",
            env.id
        );
        assert!(copy.starts_with(&expected), "{copy}");
        assert!(copy.contains("\nenvelope body 7bit\n"), "{copy}");
        assert!(copy.ends_with("\ncontent-size 18\n"), "{copy}");
        let mut wide = env.clone();
        wide.recipients = vec![env.recipients[0].clone(); 100];
        let wide = message_bytes(&wide, b"x\n");
        let cases: &[(&str, &[u8], u64)] = &[
            ("longer than the limit", &wide, wide.len() as u64),
            ("no empty line", &bytes[..40], 40),
            (
                "a control character",
                b"SPOOLMAIL 1\nsender a\x1b@b\n\nx",
                30,
            ),
            ("not UTF-8", b"SPOOLMAIL 1\nsender \xff@b\n\nx", 30),
            ("a file shorter than its envelope", &bytes, 10),
        ];
        for (why, head, len) in cases {
            assert_eq!(envelope_copy(head, *len), None, "{why}");
        }
    }

    #[test]
    fn a_listing_takes_a_copy_only_when_it_is_the_message_s_own_and_whole() {
        let id = QueueId::new(1, 2, 3);
        let env = envelope(id.clone());
        let bytes = message_bytes(&env, &[b'x'; 100]);
        let copy = envelope_copy(&bytes, bytes.len() as u64).unwrap();
        let mut state = State {
            attempts: 2,
            next_attempt: 42,
            ..State::default()
        };
        state.set(0, RcptStatus::Deferred, "451 4.3.0 later");
        let whole = state_text_with(&id, &state, &copy);
        // Older readers ignore the lines; the state is the same.
        assert_eq!(parse_state(&whole).unwrap(), state);
        assert_eq!(
            parse_state_of(&id, &whole).unwrap(),
            StateFile::Found(state.clone())
        );
        let lines = listing_lines(&id, &whole);
        assert_eq!(lines.copy, Some((env.clone(), 100)));
        assert!(!lines.may_be_in_delivery());
        let other = QueueId::new(9, 9, 9);
        let no_copy = [
            ("another message's copy", listing_lines(&other, &whole)),
            (
                "no size",
                listing_lines(&id, &whole.replace("content-size", "size")),
            ),
            (
                "a bad size",
                listing_lines(&id, &whole.replace("size 100", "size -1")),
            ),
            (
                "an empty line in it",
                listing_lines(&id, &whole.replace("envelope uid 1000", "envelope")),
            ),
            (
                "another version",
                listing_lines(&id, &whole.replace(MAGIC, "SPOOLMAIL 2")),
            ),
            ("no envelope", listing_lines(&id, &state_text(&id, &state))),
        ];
        for (why, lines) in no_copy {
            assert_eq!(lines.copy, None, "{why}");
        }
    }

    /// Spool format 1.8, through a child's spare and the ordinary way: the
    /// state written before a transaction has no copy (a listing reads the
    /// message file and tests its lock while it stands); the outcome's,
    /// written durably, has the copy.
    #[test]
    fn the_state_before_a_transaction_has_no_copy_and_the_outcome_s_has() {
        let (dir, plain) = spool();
        let recycling = Spool::new(&dir).recycling_states();
        let mut state = State {
            attempts: 1,
            next_attempt: 42,
            ..State::default()
        };
        for spool in [&plain, &recycling] {
            let env = spool.deposit(envelope, |_, _| Ok(())).unwrap();
            let entry = QueueEntry::unscanned(env.id.clone(), true);
            let mut slot = ClaimSlot::default();
            let claim = spool.claim(&env.id, &mut slot).unwrap().unwrap();
            spool
                .write_state_before_attempt(&claim, &state, false)
                .unwrap();
            let (_, lines) = spool.read_state_listed(&entry).unwrap();
            assert!(lines.copy.is_none(), "{lines:?}");
            assert!(lines.may_be_in_delivery());
            state.set(0, RcptStatus::Deferred, "451 4.3.0 later");
            spool.write_state(&claim, &state).unwrap();
            let (read, lines) = spool.read_state_listed(&entry).unwrap();
            assert_eq!(read, state);
            assert_eq!(lines.copy, Some((env.clone(), 0)));
            assert!(!lines.may_be_in_delivery());
            // The same text cut before its `end` (as a crash may leave a
            // first attempt's state): torn, so no copy, whatever it holds.
            drop(claim);
            let text = std::fs::read_to_string(spool.state_path(&env.id)).unwrap();
            let cut = text.strip_suffix("end\n").unwrap();
            std::fs::write(spool.state_path(&env.id), cut).unwrap();
            let read = spool.read_state_listed(&entry).unwrap();
            assert_eq!(read, (State::default(), ListingLines::default()));
        }
        recycling.drop_spare();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_state_torn_by_a_crash_is_read_as_no_state_and_no_other_is() {
        let id = QueueId::new(1_795_305_600, 1, 2);
        let other = QueueId::new(1_795_305_600, 3, 4);
        let mut state = State {
            attempts: 1,
            next_attempt: 1_795_305_900,
            ..State::default()
        };
        state.set(0, RcptStatus::Delivered, "250 ok");
        let whole = state_text(&id, &state);
        let foreign = state_text(&other, &state);
        let old = format_state(&state); // 1.6 and before: no id, no end
        let torn = |why: &'static str| Ok(StateFile::Torn(why));
        let cut = &whole[..whole.len() - 3];
        let longer = format!("{whole}{}", &foreign[foreign.len() - 9..]);
        let header_cut = &whole[..STATE_MAGIC.len() + 3];
        let id_cut = &whole[..STATE_MAGIC.len() + 8];
        let twice = format!("{whole}{STATE_END}\n");
        for (text, read) in [
            (whole.as_str(), Ok(StateFile::Found(state.clone()))),
            (old.as_str(), Ok(StateFile::Found(state.clone()))),
            ("", torn("an empty state file")),
            ("\0\0\0\0", torn("an empty state file")),
            ("SPOOLM", torn("a state file cut short")),
            (header_cut, torn("a state file cut short")),
            (id_cut, torn("the state file of another message")),
            (foreign.as_str(), torn("the state file of another message")),
            (cut, torn("a state file that is not whole")),
            (longer.as_str(), torn("a state file that is not whole")),
            (twice.as_str(), torn("a state file that is not whole")),
        ] {
            let got = parse_state_of(&id, text).map_err(|e| e.to_string());
            assert_eq!(got, read, "{text:?}");
        }
        // Not torn, not a state: held, as before 1.7.
        for text in [
            "\0\u{7f}garbage that is no state\n",
            "SPOOLMAIL-STATE 2\nid 0\n",
            "hello\n",
        ] {
            assert!(parse_state_of(&id, text).is_err(), "{text:?}");
        }
        // A held state (1.2's magic) carries its id and end line as well.
        let held = State {
            held: Some(1_795_305_600),
            ..state.clone()
        };
        let text = state_text(&id, &held);
        assert!(text.starts_with("SPOOLMAIL-STATE 1.2\nid ") && text.ends_with("\nend\n"));
        assert_eq!(parse_state_of(&id, &text).unwrap(), StateFile::Found(held));
    }

    #[test]
    fn only_a_first_attempts_small_state_into_a_known_file_skips_the_fsync() {
        // (no state stood before, length, the spare's text known) -> unsynced
        for (first, len, known, expected) in [
            (true, 90, Some(0), true),
            (true, 90, Some(120), true),
            (true, UNSYNCED_STATE_MAX, Some(90), true),
            (true, UNSYNCED_STATE_MAX + 1, Some(90), false),
            (true, 90, None, false),
            (false, 90, Some(90), false),
        ] {
            assert_eq!(
                unsynced(first, len, known),
                expected,
                "{first} {len} {known:?}"
            );
        }
    }

    #[test]
    fn a_claim_refuses_a_fifo_or_a_link_in_a_message_s_place() {
        let (dir, spool) = spool();
        let outside = dir.join("outside");
        std::fs::write(&outside, "not a message\n").unwrap();
        let fifo = QueueId::new(1_795_305_600, 1, 1);
        let made = std::process::Command::new("mkfifo")
            .arg(spool.message_path(&fifo))
            .status();
        assert!(made.unwrap().success());
        let link = QueueId::new(1_795_305_600, 1, 2);
        std::os::unix::fs::symlink(&outside, spool.message_path(&link)).unwrap();
        for id in [&fifo, &link] {
            let mut slot = ClaimSlot::default();
            // Refused at once (an open of the FIFO never blocks), unread.
            let e = spool.claim_soon(id, &mut slot).err().expect("refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_claim_holds_its_lock_until_it_is_dropped() {
        let (dir, spool) = spool();
        let env = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        let busy = |spool: &Spool| spool.read_envelope_for_listing(&env.id).unwrap().2;
        assert!(!busy(&spool));
        let mut slot = ClaimSlot::default();
        let claim = spool.claim(&env.id, &mut slot).unwrap().expect("claim");
        assert!(busy(&spool), "mailq sees the claim");
        assert!(
            spool
                .claim(&env.id, &mut ClaimSlot::default())
                .unwrap()
                .is_none()
        );
        drop(claim);
        assert!(
            !busy(&spool),
            "dropping the claim unlocks, with the slot still open"
        );
        let again = spool.claim(&env.id, &mut slot).unwrap();
        assert!(again.is_some(), "the message can be claimed again");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_listing_sees_a_claim_and_not_another_look() {
        let (dir, spool) = spool();
        let env = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        let entry = spool.scan().unwrap().pop().unwrap();
        let busy = || spool.read_for_listing(&entry).unwrap().2;
        assert!(!busy());
        let mut slot = ClaimSlot::default();
        let claim = spool.claim(&env.id, &mut slot).unwrap().expect("claim");
        assert!(busy(), "mailq sees the claim");
        drop(claim);
        assert!(!busy());
        // A listing's own look (a shared lock) is not a claim.
        let other = File::open(spool.message_path(&env.id)).unwrap();
        other.lock_shared().unwrap();
        assert!(!busy());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_users_listing_or_pass_never_locks_another_users_message() {
        // The message is uid 1000's (`envelope`). A reader an ordinary
        // user controls tests the claim lock of their own messages only:
        // a lock it took on another's, kept by stopping the process, would
        // make every runner leave that message alone.
        let (dir, spool) = spool();
        let env = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        assert_eq!(env.uid, 1000);
        let entry = spool.scan().unwrap().pop().unwrap();
        let mut slot = ClaimSlot::default();
        let claim = spool.claim(&env.id, &mut slot).unwrap().expect("claim");
        for (viewer, tested) in [(None, true), (Some(1000), true), (Some(1001), false)] {
            let spool = Spool::new(&spool.dir).looked_at_by(viewer);
            let scanned = spool.read_for_listing(&entry).unwrap();
            let by_id = spool.read_envelope_for_listing(&env.id).unwrap();
            assert_eq!(scanned.0, env, "{viewer:?} reads the message");
            assert_eq!(by_id.0, env, "{viewer:?} reads the message");
            // Claimed: only a reader that tested the lock sees it.
            assert_eq!((scanned.2, by_id.2), (tested, tested), "{viewer:?}");
        }
        drop(claim);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_listing_reads_what_the_checked_reads_read() {
        let (dir, spool) = spool();
        let many = |id| {
            let mut e = envelope(id);
            let r = e.recipients[0].clone();
            e.recipients = vec![r; 200]; // an envelope longer than the first read
            e
        };
        let short = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        let content = |_: &mut Envelope, d: &mut Draft| {
            d.content().write_all(&[b'x'; 10_000]).unwrap();
            d.add_content_len(10_000);
            Ok(())
        };
        let long = spool.deposit(envelope, content).unwrap();
        let wide = spool.deposit(many, |_, _| Ok(())).unwrap();
        let mut st = State {
            attempts: 1,
            next_attempt: 42,
            ..State::default()
        };
        st.set(0, RcptStatus::Deferred, "451 later");
        let mut big = st.clone();
        big.set(1, RcptStatus::Deferred, &"y".repeat(5000));
        for (id, state) in [(&short.id, &st), (&long.id, &big), (&wide.id, &st)] {
            let mut slot = ClaimSlot::default();
            let claim = spool.claim(id, &mut slot).unwrap().unwrap();
            spool.write_state(&claim, state).unwrap();
        }
        let state_len = std::fs::metadata(spool.state_path(&long.id)).unwrap().len();
        assert!(state_len > crate::limits::LISTING_FIRST_READ as u64);
        for entry in spool.scan().unwrap() {
            assert!(entry.scanned);
            let (env, size, busy) = spool.read_envelope_for_listing(&entry.id).unwrap();
            let listed = spool.read_for_listing(&entry).unwrap();
            assert_eq!(listed, (env.clone(), size, busy));
            assert_eq!(entry.has_state, entry.state_regular);
            let state = spool.read_state(&entry.id).unwrap();
            let (listed_state, lines) = spool.read_state_listed(&entry).unwrap();
            assert_eq!(listed_state, state);
            // The state's copy is the message's envelope and size, but for
            // an envelope too long to copy (200 recipients).
            let copied = (entry.id != wide.id).then_some((env, size));
            assert_eq!(lines.copy, copied, "{}", entry.id);
        }
        let size = |id| spool.read_for_listing(&spool.entry(id));
        assert_eq!(size(&long.id).unwrap().1, 10_000);
        assert_eq!(size(&short.id).unwrap().1, 0);
        assert_eq!(size(&wide.id).unwrap().0.recipients.len(), 200);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_listing_never_reads_a_fifo_put_in_a_file_s_place() {
        let (dir, spool) = spool();
        let env = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        let mut slot = ClaimSlot::default();
        let claim = spool.claim(&env.id, &mut slot).unwrap().unwrap();
        spool.write_state(&claim, &State::default()).unwrap();
        drop(claim);
        let entry = spool.scan().unwrap().pop().unwrap();
        // Swapped for FIFOs after the scan: refused, without blocking.
        for path in [spool.message_path(&env.id), spool.state_path(&env.id)] {
            std::fs::remove_file(&path).unwrap();
            let made = std::process::Command::new("mkfifo").arg(&path).status();
            assert!(made.unwrap().success());
        }
        let e = spool.read_for_listing(&entry).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let e = spool.read_state_listed(&entry).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // And a scan that sees the FIFO state refuses it as read_state does.
        let entry = spool.entry(&env.id);
        assert!(!entry.state_regular);
        assert!(spool.read_state_listed(&entry).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn undone_recipients() {
        let mut s = State::default();
        s.set(0, RcptStatus::Delivered, "250 ok");
        s.set(1, RcptStatus::Deferred, "451 later");
        s.set(2, RcptStatus::Failed, "550 no");
        // 3 was never tried: pending.
        assert_eq!(s.undone(&[0, 1, 2, 3], 4), [1, 3]);
        assert_eq!(s.undone(&[3, 1], 4), [3, 1]);
        assert_eq!(s.undone(&[1, 3, 4, 9], 4), [1, 3]);
        assert_eq!(s.undone(&[], 4), Vec::<usize>::new());
    }

    #[test]
    fn state_round_trip() {
        let s = parse_state("SPOOLMAIL-STATE 1\nattempts 2\nnext 99\nrcpt 0 delivered 250 2.0.0 Ok\nrcpt 1 deferred 451 4.3.0 later\n").unwrap();
        assert_eq!(s.attempts, 2);
        assert_eq!(s.status_of(1), (RcptStatus::Deferred, "451 4.3.0 later"));
        assert_eq!(s.status_of(5), (RcptStatus::Pending, ""));
        assert!(parse_state("SPOOLMAIL-STATE 9\n").is_err());
    }

    #[test]
    fn owed_notices_and_the_delay_notice_round_trip() {
        let text = "SPOOLMAIL-STATE 1\nattempts 1\nnext 99\n\
                    rcpt 0 failed 550 5.1.1 no\nrcpt 1 failed message expired\n\
                    owed 0 5.1.1 failed mx.example[192.0.2.1]:25\nowed 1 - expired -\n\
                    delayed 1795305600\n";
        let s = parse_state(text).unwrap();
        assert_eq!(
            s.owed,
            [
                Owed {
                    index: 0,
                    status: EnhancedCode::parse("5.1.1"),
                    expired: false,
                    remote: Some("mx.example[192.0.2.1]:25".into()),
                },
                Owed {
                    index: 1,
                    status: None,
                    expired: true,
                    remote: None,
                },
            ]
        );
        assert_eq!(s.delay_notified, Some(1795305600));
        assert_eq!(format_state(&s), text);
        // A version 1 state has neither.
        let v1 = parse_state("SPOOLMAIL-STATE 1\nattempts 2\nnext 99\n").unwrap();
        assert!(v1.owed.is_empty() && v1.delay_notified.is_none());
        // A broken line makes the state unreadable (the message is held).
        for bad in [
            "owed x 5.1.1 failed -",
            "owed 0 5.1 failed -",
            "owed 0 - gone -",
            "owed 0 - failed",
            "delayed soon",
        ] {
            let text = format!("SPOOLMAIL-STATE 1\n{bad}\n");
            assert!(parse_state(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_not_found_says_a_state_file_is_absent() {
        use io::ErrorKind::*;
        assert!(may_exist(&Ok(())));
        assert!(!may_exist::<()>(&Err(NotFound.into())));
        for kind in [
            PermissionDenied,
            Interrupted,
            OutOfMemory,
            StaleNetworkFileHandle,
            Other,
        ] {
            assert!(may_exist::<()>(&Err(kind.into())), "{kind:?}");
        }
        let eio = io::Error::from_raw_os_error(libc::EIO);
        assert!(may_exist::<()>(&Err(eio)));
    }

    #[test]
    fn the_pass_that_wrote_a_state_round_trips() {
        let text = "SPOOLMAIL-STATE 1\nattempts 1\nnext 99\n\
                    rcpt 0 deferred 451 later\npass 4242-0123456789abcdef 1795305600\n";
        let s = parse_state(text).unwrap();
        assert_eq!(
            s.pass,
            Some(PassMark {
                id: PassId::new(4242, 0x0123_4567_89ab_cdef),
                at: 1795305600
            })
        );
        assert_eq!(format_state(&s), text);
        // A version 1 (or an earlier 1.1) state has none.
        let v1 = parse_state("SPOOLMAIL-STATE 1\nattempts 2\nnext 99\n").unwrap();
        assert_eq!(v1.pass, None);
        // A broken one makes the state unreadable (the message is held).
        for bad in [
            "pass",
            "pass 42-ab",
            "pass 42-ab soon",
            "pass A-B 1",
            "pass  1",
        ] {
            let text = format!("SPOOLMAIL-STATE 1\n{bad}\n");
            assert!(parse_state(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_held_state_has_its_own_magic_line_and_round_trips() {
        let text = "SPOOLMAIL-STATE 1.2\nattempts 1\nnext 99\nrcpt 0 deferred 451 later\nheld 1795305600\n";
        let s = parse_state(text).unwrap();
        assert_eq!(s.held, Some(1795305600));
        assert_eq!(s.status_of(0), (RcptStatus::Deferred, "451 later"));
        assert_eq!(format_state(&s), text);
        // Released: the version 1 magic line again, no held line.
        let released = State { held: None, ..s };
        assert_eq!(
            format_state(&released),
            "SPOOLMAIL-STATE 1\nattempts 1\nnext 99\nrcpt 0 deferred 451 later\n"
        );
        // What a version 1 or 1.1 reader does with it: the magic line it
        // compares with is not there, so the state is unreadable and the
        // message left alone.
        assert!(!text.starts_with("SPOOLMAIL-STATE 1\n"));
        assert!(parse_state("SPOOLMAIL-STATE 1.2\nheld soon\n").is_err());
    }

    #[test]
    fn a_state_carries_its_next_attempt_in_its_mtime_only_when_it_only_waits() {
        const NOW: u64 = 1_795_305_600;
        let waiting = State {
            attempts: 1,
            next_attempt: NOW + 600,
            ..State::default()
        };
        let owed = Owed {
            index: 0,
            status: None,
            expired: false,
            remote: None,
        };
        let cases = [
            (waiting.clone(), Some(NOW + 600)),
            // Due already, or now: read at once.
            (
                State {
                    next_attempt: NOW,
                    ..waiting.clone()
                },
                None,
            ),
            (
                State {
                    next_attempt: NOW - 1,
                    ..waiting.clone()
                },
                None,
            ),
            // Never attempted (a hold's state of a new message): due.
            (
                State {
                    attempts: 0,
                    ..waiting.clone()
                },
                None,
            ),
            // A notice owed is sent by the next pass, due or not.
            (
                State {
                    owed: vec![owed],
                    ..waiting.clone()
                },
                None,
            ),
            // Held: read, as before, so that mailq and passes see the hold.
            (
                State {
                    held: Some(NOW),
                    ..waiting.clone()
                },
                None,
            ),
            (
                State {
                    pass: Some(PassMark {
                        id: PassId::new(1, 2),
                        at: NOW,
                    }),
                    ..waiting.clone()
                },
                Some(NOW + 600),
            ),
            (
                State {
                    delay_notified: Some(NOW),
                    ..waiting
                },
                Some(NOW + 600),
            ),
        ];
        for (state, hint) in cases {
            assert_eq!(mtime_hint(&state, NOW), hint, "{state:?}");
        }
    }

    #[test]
    fn a_pass_passes_a_state_by_only_when_its_mtime_is_to_come_within_the_horizon() {
        const NOW: u64 = 1_795_305_600;
        const DAY: u64 = 86_400;
        let t = |secs: u64| Some(secs as i64);
        let cases = [
            (t(NOW + 1), true),
            (t(NOW + DAY), true),
            // Its time has come: read, and taken.
            (t(NOW), false),
            (t(NOW - 1), false),
            // Written by 1.5 or earlier: the time of writing, in the past.
            (t(NOW - 3 * DAY), false),
            // Past the longest wait of the schedule: not written by a pass
            // (by hand, or a clock that jumped): in doubt, read.
            (t(NOW + DAY + 1), false),
            (Some(i64::MAX), false),
            (Some(-1), false),
            // fstatat failed, or not a regular file: read (and held, logged).
            (None, false),
        ];
        for (mtime, waits) in cases {
            assert_eq!(waits_by_mtime(mtime, NOW, DAY), waits, "{mtime:?}");
        }
        assert!(
            !waits_by_mtime(t(NOW + 1), NOW, 0),
            "no schedule: no hint trusted"
        );
    }

    #[test]
    fn written_states_carry_their_due_time_and_a_scan_leaves_out_those_that_wait() {
        use std::os::unix::fs::MetadataExt;
        let (dir, spool) = spool();
        let (now, _) = crate::system::now();
        let mut ids = Vec::new();
        for (attempts, next) in [(1, now + 3600), (1, now), (0, 0), (1, now + 60)] {
            let env = spool.deposit(envelope, |_, _| Ok(())).unwrap();
            let mut slot = ClaimSlot::default();
            let claim = spool.claim(&env.id, &mut slot).unwrap().unwrap();
            let state = State {
                attempts,
                next_attempt: next,
                ..State::default()
            };
            spool.write_state(&claim, &state).unwrap();
            ids.push(env.id);
        }
        let untouched = spool.deposit(envelope, |_, _| Ok(())).unwrap().id;
        let mtime = |id: &QueueId| std::fs::metadata(spool.state_path(id)).unwrap().mtime();
        assert_eq!(mtime(&ids[0].clone()), (now + 3600) as i64);
        let atime = std::fs::metadata(spool.state_path(&ids[0]))
            .unwrap()
            .atime();
        assert_eq!(atime, (now + 3601) as i64, "not written back when read");
        assert!(mtime(&ids[1].clone()) <= now as i64 + 1);
        let sorted = |mut v: Vec<QueueId>| {
            v.sort();
            v
        };
        let mut seen = std::collections::HashSet::new();
        let scan = spool.scan_for_pass(now, 3600, &mut seen).unwrap();
        assert_eq!(
            sorted(seen.into_iter().collect()),
            sorted(vec![ids[0].clone(), ids[3].clone()])
        );
        let listed: Vec<_> = scan
            .entries
            .iter()
            .map(|e| (e.id.clone(), e.has_state))
            .collect();
        let mut want = vec![
            (ids[1].clone(), true),
            (ids[2].clone(), true),
            (untouched.clone(), false),
        ];
        want.sort();
        assert_eq!(listed, want);
        // A horizon shorter than the wait: in doubt, read.
        let mut seen = std::collections::HashSet::new();
        let scan = spool.scan_for_pass(now, 60, &mut seen).unwrap();
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            [ids[3].clone()],
            "an hour is past it"
        );
        assert_eq!(scan.entries.len(), 4);
        // Those seen already are left out, their state files not looked at.
        let mut seen = std::collections::HashSet::from([ids[1].clone(), untouched]);
        let scan = spool.scan_for_pass(now, 0, &mut seen).unwrap();
        let listed: Vec<_> = scan.entries.iter().map(|e| e.id.clone()).collect();
        assert_eq!(
            listed,
            sorted(vec![ids[0].clone(), ids[2].clone(), ids[3].clone()])
        );
        assert!(scan.orphans.is_empty());
        // A state file left without its message is an orphan.
        std::fs::remove_file(spool.message_path(&ids[2].clone())).unwrap();
        assert_eq!(spool.scan_all().unwrap().orphans, [ids[2].clone()]);
        assert_eq!(spool.remove_orphans(&[ids[2].clone(), ids[1].clone()]), 1);
        assert!(
            !spool.state_path(&ids[2].clone()).exists()
                && spool.state_path(&ids[1].clone()).exists()
        );
        std::fs::write(spool.message_path(&ids[2].clone()), "").unwrap();
        assert_eq!(spool.scan_all().unwrap().entries.len(), 5);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_state_written_through_a_childs_spare_file_carries_its_due_time_too() {
        use std::os::unix::fs::MetadataExt;
        let (dir, spool) = spool();
        let spool = spool.recycling_states();
        let (now, _) = crate::system::now();
        let env = spool.deposit(envelope, |_, _| Ok(())).unwrap();
        let mut slot = ClaimSlot::default();
        let claim = spool.claim(&env.id, &mut slot).unwrap().unwrap();
        let state = State {
            attempts: 1,
            next_attempt: now + 600,
            ..State::default()
        };
        spool
            .write_state_before_attempt(&claim, &state, false)
            .unwrap();
        let meta = std::fs::metadata(spool.state_path(&env.id)).unwrap();
        assert_eq!(meta.mtime(), (now + 600) as i64);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_leftover_state_with_its_due_time_set_ages_by_its_ctime() {
        let (dir, spool) = spool();
        let leftover = dir.join("tmp").join("6553F100F423FFFF.state.1");
        let f = File::create(&leftover).unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
        f.set_times(std::fs::FileTimes::new().set_modified(later))
            .unwrap();
        let meta = std::fs::metadata(&leftover).unwrap();
        let age = unix_age(
            &meta,
            std::time::SystemTime::now() + std::time::Duration::from_secs(61),
        );
        assert!(age >= std::time::Duration::from_secs(61), "{age:?}");
        assert_eq!(spool.recover_leftovers(std::time::Duration::ZERO), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_version_refused() {
        let mut r = io::Cursor::new(b"SPOOLMAIL 2\nid X\n\n".to_vec());
        assert!(parse_envelope(&mut r).is_err());
    }

    #[test]
    fn an_envelope_has_an_id() {
        let read = |text: &str| parse_envelope(&mut io::Cursor::new(text.as_bytes().to_vec()));
        let (e, len) = read("SPOOLMAIL 1\nid 6B0D5DC9B1892870\nrcpt a@b\n\n").unwrap();
        assert_eq!((e.id.as_str(), len), ("6B0D5DC9B1892870", 42));
        assert!(read("SPOOLMAIL 1\nid ../x\nrcpt a@b\n\n").is_err());
        assert!(read("SPOOLMAIL 1\nrcpt a@b\n\n").is_err());
    }
}
