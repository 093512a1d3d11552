//! A storage backend for tests that must see the journal's fsyncs: it counts them, can hold them until
//! released, and can make them fail — what proves that no append is answered before its sync returned.
//! Built only with the `testing` feature (the tests' dev-dependencies turn it on), never in the release
//! binary.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use redb::backends::FileBackend;
use redb::StorageBackend;

/// Shared controls of a [`SyncProbeBackend`].
#[derive(Debug, Default)]
pub struct SyncProbe {
    started: AtomicU64,
    finished: AtomicU64,
    fail: AtomicBool,
    held: Mutex<bool>,
    released: Condvar,
}

impl SyncProbe {
    /// Syncs begun (a commit reached its fsync).
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// Syncs returned.
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
    }

    /// From now on, syncs wait until [`SyncProbe::release`].
    pub fn hold(&self) {
        *self.held.lock().expect("probe lock") = true;
    }

    pub fn release(&self) {
        *self.held.lock().expect("probe lock") = false;
        self.released.notify_all();
    }

    /// From now on, syncs fail (as a disk error would).
    pub fn fail(&self, failing: bool) {
        self.fail.store(failing, Ordering::SeqCst);
    }
}

/// A file backend whose `sync_data` is observed and controlled by a [`SyncProbe`].
#[derive(Debug)]
pub struct SyncProbeBackend {
    inner: FileBackend,
    probe: Arc<SyncProbe>,
}

impl SyncProbeBackend {
    /// Opens (or creates) the journal file in `dir` for [`super::Journal::open_on`].
    pub fn open(dir: &std::path::Path, probe: Arc<SyncProbe>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(super::Journal::file(dir))?;
        let inner = FileBackend::new(file).map_err(std::io::Error::other)?;
        Ok(Self { inner, probe })
    }
}

impl StorageBackend for SyncProbeBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.probe.started.fetch_add(1, Ordering::SeqCst);
        let mut held = self.probe.held.lock().expect("probe lock");
        while *held {
            held = self.probe.released.wait(held).expect("probe lock");
        }
        drop(held);
        let result = if self.probe.fail.load(Ordering::SeqCst) {
            Err(std::io::Error::other("injected fsync failure"))
        } else {
            self.inner.sync_data()
        };
        self.probe.finished.fetch_add(1, Ordering::SeqCst);
        result
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
