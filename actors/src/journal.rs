//! The local durable journal: every accepted callback is written here (fsync'd) before its provider is
//! acknowledged, and drained to MongoDB afterwards (see [`crate::drain`]).
//!
//! Storage is an embedded `redb` database (one file, crash-safe commits, no server) in `journal.dir`.
//! Appends go through one writer thread that commits whatever has queued up in a single transaction:
//! many concurrent callbacks share one fsync (group commit). Entries are numbered in arrival order and
//! removed once MongoDB has acknowledged them; redb reuses the freed pages, so the file stays as large as
//! the largest backlog. Past `max_bytes` of backlog an append is refused (the caller answers 503) rather
//! than acknowledging what cannot be kept.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};

use crate::callback::{Callback, CallbackKey, Delivery};
use crate::store::{RejectedCallback, StoreError};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// The most appends committed in one transaction.
const MAX_GROUP: usize = 1024;

/// What the journal keeps: the store operations still to be applied to MongoDB.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Entry {
    Record {
        callback: Box<Callback>,
        delivery: Delivery,
    },
    CountDelivery {
        key: CallbackKey,
        delivery: Delivery,
    },
    Quarantine {
        rejected: RejectedCallback,
    },
}

impl Entry {
    /// Entries of one group are applied in journal order; groups are independent. A transaction's
    /// callbacks share a group, so a `PENDING` is never applied after the `SUCCESSFUL` that followed it.
    pub fn group(&self) -> String {
        match self {
            Self::Record { callback, .. } => {
                format!("{}/{}", callback.provider, callback.provider_transaction_id)
            }
            Self::CountDelivery { key, .. } => {
                format!("{}/{}", key.provider, key.provider_transaction_id)
            }
            Self::Quarantine { rejected } => format!("quarantine/{}", rejected.id),
        }
    }
}

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
}

/// One journaled entry as read back: its number, size, and the entry (or why it could not be decoded).
pub struct Journaled {
    pub seq: u64,
    pub bytes: u64,
    pub entry: Result<Entry, String>,
}

struct Pending {
    bytes: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

pub struct Journal {
    db: Arc<Database>,
    writer: Mutex<mpsc::Sender<Pending>>,
    backlog: Arc<Mutex<Backlog>>,
    max_bytes: u64,
    appended: Arc<Notify>,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and starts its writer thread. What a previous run left
    /// undrained is still there, in order.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Arc<Self>, JournalError> {
        Self::open_with(dir, max_bytes, Duration::ZERO)
    }

    /// Like [`Journal::open`], with a sync policy: `commit_window` is how long the writer gathers appends
    /// before one commit (and its fsync). Zero commits as soon as the writer is free — under load appends
    /// still share commits; a few milliseconds trade that much latency for fewer fsyncs on slow disks.
    pub fn open_with(
        dir: &Path,
        max_bytes: u64,
        commit_window: Duration,
    ) -> Result<Arc<Self>, JournalError> {
        std::fs::create_dir_all(dir).map_err(|source| JournalError::Directory {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join("journal.redb");
        let db = Database::create(&path).map_err(|error| JournalError::Open {
            path: path.display().to_string(),
            source: error.into(),
        })?;
        let db = Arc::new(db);

        let (mut backlog, mut next_seq) = (Backlog::default(), 0_u64);
        {
            let txn = db.begin_write().map_err(redb::Error::from)?;
            txn.open_table(ENTRIES).map_err(redb::Error::from)?;
            txn.commit().map_err(redb::Error::from)?;
            let read = db.begin_read().map_err(redb::Error::from)?;
            let table = read.open_table(ENTRIES).map_err(redb::Error::from)?;
            for row in table.iter().map_err(redb::Error::from)? {
                let (seq, value) = row.map_err(redb::Error::from)?;
                backlog.entries += 1;
                backlog.bytes += value.value().len() as u64;
                next_seq = next_seq.max(seq.value() + 1);
            }
        }
        if backlog.entries > 0 {
            tracing::warn!(
                entries = backlog.entries,
                bytes = backlog.bytes,
                "journal holds undrained callbacks from a previous run"
            );
        }

        let backlog = Arc::new(Mutex::new(backlog));
        let appended = Arc::new(Notify::new());
        let (sender, receiver) = mpsc::channel::<Pending>();
        {
            let (db, appended) = (Arc::clone(&db), Arc::clone(&appended));
            std::thread::Builder::new()
                .name("journal-writer".into())
                .spawn(move || write_groups(&db, &receiver, next_seq, &appended, commit_window))
                .map_err(|source| JournalError::Directory {
                    path: dir.display().to_string(),
                    source,
                })?;
        }
        Ok(Arc::new(Self {
            db,
            writer: Mutex::new(sender),
            backlog,
            max_bytes,
            appended,
        }))
    }

    /// Appends `entry`; resolves once it is on disk (fsync'd). Refused when the backlog would exceed
    /// the size limit.
    pub async fn append(&self, entry: &Entry) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec(entry).map_err(|error| StoreError::Rejected(error.to_string()))?;
        let size = bytes.len() as u64;
        {
            let mut backlog = self.backlog.lock().expect("journal lock");
            if backlog.bytes + size > self.max_bytes {
                return Err(StoreError::Full(format!(
                    "{} of {} bytes in use",
                    backlog.bytes, self.max_bytes
                )));
            }
            backlog.bytes += size;
            backlog.entries += 1;
        }
        let (done, written) = oneshot::channel();
        let sent = self
            .writer
            .lock()
            .expect("journal lock")
            .send(Pending { bytes, done });
        let result = match sent {
            Ok(()) => written
                .await
                .unwrap_or_else(|_| Err("journal writer stopped".into())),
            Err(_) => Err("journal writer stopped".into()),
        };
        result.map_err(|error| {
            let mut backlog = self.backlog.lock().expect("journal lock");
            backlog.bytes -= size;
            backlog.entries -= 1;
            StoreError::Unavailable(format!("journal write failed: {error}"))
        })
    }

    /// Up to `max` of the oldest entries, in order. Blocking: call from a blocking context.
    pub fn oldest(&self, max: usize) -> Result<Vec<Journaled>, JournalError> {
        let read = self.db.begin_read().map_err(redb::Error::from)?;
        let table = read.open_table(ENTRIES).map_err(redb::Error::from)?;
        let mut entries = Vec::new();
        for row in table.iter().map_err(redb::Error::from)?.take(max) {
            let (seq, value) = row.map_err(redb::Error::from)?;
            let bytes = value.value();
            entries.push(Journaled {
                seq: seq.value(),
                bytes: bytes.len() as u64,
                entry: serde_json::from_slice(bytes).map_err(|error| error.to_string()),
            });
        }
        Ok(entries)
    }

    /// Removes drained entries (`seq`, `bytes`). Blocking: call from a blocking context.
    pub fn remove(&self, drained: &[(u64, u64)]) -> Result<(), JournalError> {
        if drained.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(redb::Error::from)?;
            for (seq, _) in drained {
                table.remove(*seq).map_err(redb::Error::from)?;
            }
        }
        txn.commit().map_err(redb::Error::from)?;
        let mut backlog = self.backlog.lock().expect("journal lock");
        for (_, bytes) in drained {
            backlog.entries = backlog.entries.saturating_sub(1);
            backlog.bytes = backlog.bytes.saturating_sub(*bytes);
        }
        Ok(())
    }

    pub fn backlog(&self) -> Backlog {
        *self.backlog.lock().expect("journal lock")
    }

    /// Whether another callback of typical size can be accepted.
    pub fn is_accepting(&self) -> bool {
        self.backlog().bytes + 64 * 1024 <= self.max_bytes
    }

    /// Resolves at the next append (or at once if one happened since the last call).
    pub async fn appended(&self) {
        self.appended.notified().await;
    }

    /// How many entries the file holds (for tests).
    pub fn stored_entries(&self) -> Result<u64, JournalError> {
        let read = self.db.begin_read().map_err(redb::Error::from)?;
        let table = read.open_table(ENTRIES).map_err(redb::Error::from)?;
        Ok(table.len().map_err(redb::Error::from)?)
    }
}

/// The writer thread: commits every queued append in one transaction (one fsync), then answers them all.
fn write_groups(
    db: &Database,
    receiver: &mpsc::Receiver<Pending>,
    mut next_seq: u64,
    appended: &Notify,
    commit_window: Duration,
) {
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        let deadline = std::time::Instant::now() + commit_window;
        while group.len() < MAX_GROUP {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let next = if left.is_zero() {
                receiver.try_recv().ok()
            } else {
                receiver.recv_timeout(left).ok()
            };
            match next {
                Some(pending) => group.push(pending),
                None => break,
            }
        }
        let committed = (|| -> Result<u64, redb::Error> {
            let txn = db.begin_write()?;
            let mut seq = next_seq;
            {
                let mut table = txn.open_table(ENTRIES)?;
                for pending in &group {
                    table.insert(seq, pending.bytes.as_slice())?;
                    seq += 1;
                }
            }
            txn.commit()?;
            Ok(seq)
        })();
        let outcome = match committed {
            Ok(seq) => {
                next_seq = seq;
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "journal commit failed");
                Err(error.to_string())
            }
        };
        for pending in group {
            let _ = pending.done.send(outcome.clone());
        }
        appended.notify_one();
    }
}
