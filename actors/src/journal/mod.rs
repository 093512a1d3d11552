//! The local durable journal: every accepted callback is written here (fsync'd) before its provider is
//! acknowledged, and drained to MongoDB afterwards (see [`crate::drain`]).
//!
//! Storage is an embedded `redb` database (one file, crash-safe commits, no server) in `journal.dir`.
//! One writer thread owns every write: it commits whatever appends have queued up in a single
//! transaction (many concurrent callbacks share one fsync: group commit), and folds the drain's removals
//! into the same commits. A commit that carries appends is durable (fsync'd) before any of its appends is
//! answered; a commit that only removes drained entries is not synced on its own — it becomes durable with
//! the next append, and should the process die first, those entries are drained again, harmlessly.
//!
//! Entries are numbered in arrival order. Past `max_bytes` of backlog an append is refused (the caller
//! answers 503) rather than acknowledging what cannot be kept. redb's page cache is bounded by
//! `cache_bytes`, so memory does not grow with the backlog.
//!
//! The writer's health is visible ([`Journal::is_healthy`]): after a failed commit (an I/O error, a full
//! disk) or the writer thread's death, readiness reports the journal as failing until a commit succeeds.
//!
//! Files: this one holds the journal's API and its budgets (the callbacks', and the one of senders that
//! did not authenticate) — one type, kept whole, which is why it is longer than the others; the writer
//! thread is in `writer.rs`, the read-only `journal status` in `status.rs`, the boxed storage backend in
//! `backend.rs`, and the tests' fsync probe in `testing.rs` (built only with the `testing` feature).

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{
    Builder, Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    StorageBackend, TableDefinition,
};
use tokio::sync::{oneshot, Notify};

use crate::store::StoreError;
pub use crate::store::{Entry, EntryRef};

mod backend;
mod status;
mod writer;

use backend::BoxedBackend;
pub use backend::StorageBackendBox;
pub use status::{status, JournalStatus};
use writer::Writer;

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// The most appends committed in one transaction.
const MAX_GROUP: usize = 1024;
const FILE_NAME: &str = "journal.redb";

/// How much the journal holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal at {path}: {source}")]
    Open { path: String, source: redb::Error },
    #[error("journal: {0}")]
    Storage(#[from] redb::Error),
    #[error("journal directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error("journal writer thread could not be started: {0}")]
    WriterThread(std::io::Error),
    #[error("the journal is closed")]
    Closed,
}

impl JournalError {
    /// Whether the file was left open by a process that ended without closing it (a crash, a SIGKILL, or
    /// a version before 0.3.0): a read-only reader cannot use it until it is repaired, which the service
    /// does at its next start without losing an entry.
    pub fn left_open(&self) -> bool {
        matches!(
            self,
            Self::Open {
                source: redb::Error::RepairAborted,
                ..
            }
        )
    }
}

/// One journaled entry as read back: its number, size, and the entry (or why it could not be decoded).
pub struct Journaled {
    pub seq: u64,
    pub bytes: u64,
    pub entry: Result<Entry, Undecodable>,
}

/// An entry this version cannot decode: why, and its exact bytes (kept when it is quarantined).
#[derive(Debug, Clone)]
pub struct Undecodable {
    pub error: String,
    pub raw: Vec<u8>,
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

/// How the journal is opened. [`JournalOptions::new`] gives the defaults of `config/default.toml`.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    pub dir: PathBuf,
    /// Largest backlog kept; beyond it appends are refused.
    pub max_bytes: u64,
    /// Sync policy: how long the writer gathers appends before one commit (and its fsync). Zero commits
    /// as soon as the writer is free — under load appends still share commits.
    pub commit_window: Duration,
    /// redb's page cache: what the journal may hold in memory, whatever the backlog.
    pub cache_bytes: usize,
    /// Largest amount of unauthenticated senders' quarantined bodies held at once, apart from
    /// `max_bytes`: however much junk arrives, callbacks keep their whole budget.
    pub unauthenticated_max_bytes: u64,
    /// The share of `unauthenticated_max_bytes` one client may hold, so that one sender cannot take all.
    pub unauthenticated_client_share: f64,
}

impl JournalOptions {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            max_bytes: 1 << 30,
            commit_window: Duration::ZERO,
            cache_bytes: 16 << 20,
            unauthenticated_max_bytes: 64 << 20,
            unauthenticated_client_share: 0.1,
        }
    }
}

/// Where the writer answers an append: once it is on disk, or why not.
type Answer = oneshot::Sender<Result<(), String>>;

/// A request to the writer thread.
enum Request {
    Append {
        bytes: Vec<u8>,
        done: Answer,
        /// For an unauthenticated sender's entry: whose it is, released when it drains.
        owner: Option<Owner>,
    },
    /// Drained entries (`seq`, `bytes`) to delete.
    Remove(Vec<(u64, u64)>),
    /// Answered once everything sent before it is committed.
    Barrier(oneshot::Sender<()>),
    /// Commit what came before, let go of the database and end the writer; answered once it has.
    Close(mpsc::Sender<()>),
}

/// Which budget an append counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Callbacks, delivery counts, and what authenticated senders sent: `max_bytes`.
    Callbacks,
    /// A body of a sender that did not authenticate: `unauthenticated_max_bytes`, and a share of it per
    /// client (`None`: a client not known, as for entries left by a previous run).
    Unauthenticated { client: Option<IpAddr> },
}

/// Whose unauthenticated entry this is, and its size.
#[derive(Debug, Clone, Copy)]
struct Owner {
    client: Option<IpAddr>,
    bytes: u64,
}

/// What the journal holds. Unauthenticated senders' bodies are counted apart, so that they can never
/// crowd out callbacks.
#[derive(Default)]
struct Accounting {
    backlog: Backlog,
    unauthenticated: u64,
    by_client: HashMap<Option<IpAddr>, u64>,
    /// Unauthenticated entries by number, released as they drain.
    owners: HashMap<u64, Owner>,
}

impl Accounting {
    fn release(&mut self, seq: u64, bytes: u64) {
        self.backlog.entries = self.backlog.entries.saturating_sub(1);
        self.backlog.bytes = self.backlog.bytes.saturating_sub(bytes);
        if let Some(owner) = self.owners.remove(&seq) {
            self.unreserve(owner);
        }
    }

    fn unreserve(&mut self, owner: Owner) {
        self.unauthenticated = self.unauthenticated.saturating_sub(owner.bytes);
        if let Some(held) = self.by_client.get_mut(&owner.client) {
            *held = held.saturating_sub(owner.bytes);
            if *held == 0 {
                self.by_client.remove(&owner.client);
            }
        }
    }

    /// Bytes counted against `max_bytes`.
    fn callback_bytes(&self) -> u64 {
        self.backlog.bytes.saturating_sub(self.unauthenticated)
    }
}

/// What the writer reports of itself.
#[derive(Default)]
struct WriterHealth {
    failing: AtomicBool,
    /// Set when the writer thread has ended (it only ends when the journal is dropped, or by a panic).
    stopped: AtomicBool,
    /// Durable commits and their fsyncs, for metrics.
    commits: AtomicU64,
}

pub struct Journal {
    /// `None` once [`Journal::close`] closed it.
    db: Mutex<Option<Arc<Database>>>,
    path: PathBuf,
    writer: mpsc::Sender<Request>,
    accounting: Arc<Mutex<Accounting>>,
    max_bytes: u64,
    unauthenticated_max_bytes: u64,
    client_max_bytes: u64,
    appended: Arc<Notify>,
    health: Arc<WriterHealth>,
}

impl Journal {
    /// The journal's file in `dir`.
    pub fn file(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// Opens (or creates) the journal in `dir` with default options and starts its writer thread.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Arc<Self>, JournalError> {
        Self::open_with(JournalOptions {
            max_bytes,
            ..JournalOptions::new(dir)
        })
    }

    /// Opens (or creates) the journal and starts its writer thread. What a previous run left undrained is
    /// still there, in order.
    pub fn open_with(options: JournalOptions) -> Result<Arc<Self>, JournalError> {
        Self::open_on(options, None)
    }

    /// Like [`Journal::open_with`], on a storage backend of the caller's (tests count and fail fsyncs
    /// with one).
    pub fn open_on(
        options: JournalOptions,
        backend: Option<Box<dyn StorageBackendBox>>,
    ) -> Result<Arc<Self>, JournalError> {
        std::fs::create_dir_all(&options.dir).map_err(|source| JournalError::Directory {
            path: options.dir.display().to_string(),
            source,
        })?;
        let path = Self::file(&options.dir);
        let open_error = |error: redb::Error| JournalError::Open {
            path: path.display().to_string(),
            source: error,
        };
        let mut builder = Builder::new();
        builder.set_cache_size(options.cache_bytes);
        let db = match backend {
            None => builder.create(&path).map_err(|e| open_error(e.into()))?,
            Some(backend) => builder
                .create_with_backend(BoxedBackend(backend))
                .map_err(|e| open_error(e.into()))?,
        };
        let db = Arc::new(db);

        let (mut accounting, mut next_seq) = (Accounting::default(), 0_u64);
        {
            let txn = db.begin_write().map_err(redb::Error::from)?;
            txn.open_table(ENTRIES).map_err(redb::Error::from)?;
            txn.commit().map_err(redb::Error::from)?;
            let read = db.begin_read().map_err(redb::Error::from)?;
            let table = read.open_table(ENTRIES).map_err(redb::Error::from)?;
            for row in table.iter().map_err(redb::Error::from)? {
                let (seq, value) = row.map_err(redb::Error::from)?;
                let (seq, bytes) = (seq.value(), value.value());
                accounting.backlog.entries += 1;
                accounting.backlog.bytes += bytes.len() as u64;
                if is_unauthenticated(bytes) {
                    let owner = Owner {
                        client: None,
                        bytes: bytes.len() as u64,
                    };
                    accounting.unauthenticated += owner.bytes;
                    *accounting.by_client.entry(None).or_default() += owner.bytes;
                    accounting.owners.insert(seq, owner);
                }
                next_seq = next_seq.max(seq + 1);
            }
        }
        if accounting.backlog.entries > 0 {
            tracing::warn!(
                entries = accounting.backlog.entries,
                bytes = accounting.backlog.bytes,
                "journal holds undrained callbacks from a previous run"
            );
        }

        let accounting = Arc::new(Mutex::new(accounting));
        let appended = Arc::new(Notify::new());
        let health = Arc::new(WriterHealth::default());
        let (sender, receiver) = mpsc::channel::<Request>();
        {
            let writer = Writer {
                db: Arc::clone(&db),
                next_seq,
                appended: Arc::clone(&appended),
                accounting: Arc::clone(&accounting),
                health: Arc::clone(&health),
                commit_window: options.commit_window,
            };
            std::thread::Builder::new()
                .name("journal-writer".into())
                .spawn(move || writer.run(&receiver))
                .map_err(JournalError::WriterThread)?;
        }
        Ok(Arc::new(Self {
            db: Mutex::new(Some(db)),
            path,
            writer: sender,
            accounting,
            max_bytes: options.max_bytes,
            unauthenticated_max_bytes: options.unauthenticated_max_bytes,
            client_max_bytes: (options.unauthenticated_max_bytes as f64
                * options.unauthenticated_client_share.clamp(0.0, 1.0))
                as u64,
            appended,
            health,
        }))
    }

    /// Appends an entry; resolves once it is on disk (fsync'd). Refused when the backlog would exceed
    /// the size limit.
    pub async fn append(&self, entry: &Entry) -> Result<(), StoreError> {
        self.append_bytes(entry.encode()?).await
    }

    /// Appends an already encoded entry (see [`EntryRef::encode`]) against the callbacks' budget.
    pub async fn append_bytes(&self, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.append_in(bytes, Budget::Callbacks).await
    }

    /// Appends an encoded entry against `budget`; resolves once it is on disk (fsync'd). Refused
    /// ([`StoreError::Full`]) when the budget would be exceeded.
    pub async fn append_in(&self, bytes: Vec<u8>, budget: Budget) -> Result<(), StoreError> {
        let size = bytes.len() as u64;
        let owner = {
            let mut accounting = self.accounting.lock().expect("journal lock");
            let owner = match budget {
                Budget::Callbacks => {
                    if accounting.callback_bytes() + size > self.max_bytes {
                        return Err(StoreError::Full(format!(
                            "{} of {} bytes in use",
                            accounting.callback_bytes(),
                            self.max_bytes
                        )));
                    }
                    None
                }
                Budget::Unauthenticated { client } => {
                    let held = accounting.by_client.get(&client).copied().unwrap_or(0);
                    if accounting.unauthenticated + size > self.unauthenticated_max_bytes
                        || held + size > self.client_max_bytes
                    {
                        return Err(StoreError::Full(format!(
                            "unauthenticated bodies: {} of {} bytes in use, {held} by this client",
                            accounting.unauthenticated, self.unauthenticated_max_bytes
                        )));
                    }
                    accounting.unauthenticated += size;
                    *accounting.by_client.entry(client).or_default() += size;
                    Some(Owner {
                        client,
                        bytes: size,
                    })
                }
            };
            accounting.backlog.bytes += size;
            accounting.backlog.entries += 1;
            owner
        };
        let (done, written) = oneshot::channel();
        let result = match self.writer.send(Request::Append { bytes, done, owner }) {
            Ok(()) => written
                .await
                .unwrap_or_else(|_| Err("journal writer stopped".into())),
            Err(_) => Err("journal writer stopped".into()),
        };
        result.map_err(|error| {
            let mut accounting = self.accounting.lock().expect("journal lock");
            accounting.backlog.bytes -= size;
            accounting.backlog.entries -= 1;
            if let Some(owner) = owner {
                accounting.unreserve(owner);
            }
            StoreError::Unavailable(format!("journal write failed: {error}"))
        })
    }

    /// Up to `max` entries numbered `from` or later, in order. Blocking: call from a blocking context.
    pub fn read_from(&self, from: u64, max: usize) -> Result<Vec<Journaled>, JournalError> {
        let read = self.database()?.begin_read().map_err(redb::Error::from)?;
        let table = read.open_table(ENTRIES).map_err(redb::Error::from)?;
        let mut entries = Vec::new();
        for row in table.range(from..).map_err(redb::Error::from)?.take(max) {
            let (seq, value) = row.map_err(redb::Error::from)?;
            entries.push(journaled(seq.value(), value.value()));
        }
        Ok(entries)
    }

    /// The entries with these numbers that are still journaled, in the order given.
    pub fn read(&self, seqs: &[u64]) -> Result<Vec<Journaled>, JournalError> {
        let read = self.database()?.begin_read().map_err(redb::Error::from)?;
        let table = read.open_table(ENTRIES).map_err(redb::Error::from)?;
        let mut entries = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(value) = table.get(seq).map_err(redb::Error::from)? {
                entries.push(journaled(*seq, value.value()));
            }
        }
        Ok(entries)
    }

    /// Up to `max` of the oldest entries, in order. Blocking: call from a blocking context.
    pub fn oldest(&self, max: usize) -> Result<Vec<Journaled>, JournalError> {
        self.read_from(0, max)
    }

    /// Hands drained entries (`seq`, `bytes`) to the writer, which deletes them in its next commit. The
    /// backlog shrinks once that commit is done.
    pub fn remove(&self, drained: Vec<(u64, u64)>) {
        if !drained.is_empty() {
            // Should the writer have stopped, the entries stay and are drained again: harmless.
            let _ = self.writer.send(Request::Remove(drained));
        }
    }

    pub fn backlog(&self) -> Backlog {
        self.accounting.lock().expect("journal lock").backlog
    }

    /// Bytes of unauthenticated senders' bodies held (their own budget).
    pub fn unauthenticated_bytes(&self) -> u64 {
        self.accounting
            .lock()
            .expect("journal lock")
            .unauthenticated
    }

    /// When the oldest entry still journaled was received, if any. Blocking: reads the first entry.
    pub fn oldest_received_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let first = self.read_from(0, 1).ok()?.into_iter().next()?;
        first.entry.ok().map(|entry| entry.received_at())
    }

    /// Whether another callback of typical size can be accepted.
    pub fn is_accepting(&self) -> bool {
        let callback_bytes = self
            .accounting
            .lock()
            .expect("journal lock")
            .callback_bytes();
        callback_bytes + 64 * 1024 <= self.max_bytes
    }

    /// Whether the writer is alive and its last commit succeeded.
    pub fn is_healthy(&self) -> bool {
        !self.health.failing.load(Ordering::Relaxed) && !self.health.stopped.load(Ordering::Relaxed)
    }

    /// Durable commits since the journal was opened.
    pub fn commits(&self) -> u64 {
        self.health.commits.load(Ordering::Relaxed)
    }

    /// Where the journal file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resolves at the next append (or at once if one happened since the last call).
    pub async fn appended(&self) {
        self.appended.notified().await;
    }

    /// Waits until every removal handed to the writer so far has been committed.
    pub async fn removals_committed(&self) {
        let (done, committed) = oneshot::channel();
        if self.writer.send(Request::Barrier(done)).is_ok() {
            let _ = committed.await;
        }
    }

    /// The open database, for one read.
    fn database(&self) -> Result<Arc<Database>, JournalError> {
        self.db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(JournalError::Closed)
    }

    /// Closes the journal on a clean stop: what was appended is committed, the writer ends, and the file
    /// is closed, so that the next reader (`mmo-webhooks journal status`, the next start) finds it clean
    /// instead of repairing it as after a crash. Appends and reads fail afterwards. Waits up to `wait` for
    /// reads in progress to let go of the file; returns whether it was closed.
    pub fn close(&self, wait: Duration) -> bool {
        let Some(db) = self
            .db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        else {
            return true;
        };
        let (done, closed) = mpsc::channel();
        if self.writer.send(Request::Close(done)).is_ok() {
            let _ = closed.recv_timeout(wait);
        }
        let deadline = Instant::now() + wait;
        while Arc::strong_count(&db) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The last handle: dropping it writes the file's clean-shutdown mark.
        let last = Arc::strong_count(&db) == 1;
        drop(db);
        last
    }

    /// How many entries the file holds (for tests).
    pub fn stored_entries(&self) -> Result<u64, JournalError> {
        let read = self.database()?.begin_read().map_err(redb::Error::from)?;
        let table = read.open_table(ENTRIES).map_err(redb::Error::from)?;
        Ok(table.len().map_err(redb::Error::from)?)
    }
}

/// Whether journaled bytes are the quarantined body of a sender that did not authenticate (read cheaply:
/// only quarantine entries are decoded).
fn is_unauthenticated(bytes: &[u8]) -> bool {
    let quarantine = mongodb::bson::RawDocument::from_bytes(bytes)
        .ok()
        .and_then(|document| document.iter().next())
        .and_then(Result::ok)
        .is_some_and(|(key, _)| key == "Quarantine");
    quarantine
        && matches!(Entry::decode(bytes), Ok(Entry::Quarantine { rejected }) if !rejected.authenticated)
}

fn journaled(seq: u64, bytes: &[u8]) -> Journaled {
    Journaled {
        seq,
        bytes: bytes.len() as u64,
        entry: Entry::decode(bytes).map_err(|error| Undecodable {
            error,
            raw: bytes.to_vec(),
        }),
    }
}

/// Test doubles (a storage backend that holds and fails fsyncs): only with the `testing` feature, which
/// the tests' dev-dependencies turn on, never in the release binary.
#[cfg(feature = "testing")]
pub mod testing;
