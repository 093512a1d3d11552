//! The writer thread: the one owner of every write to the journal's file. It gathers what has queued up
//! (appends, drained entries' removals, barriers) into one commit — group commit — and answers each
//! append only once its commit is on disk.

use super::*;

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) db: Arc<Database>,
    pub(super) next_seq: u64,
    pub(super) appended: Arc<Notify>,
    pub(super) accounting: Arc<Mutex<Accounting>>,
    pub(super) health: Arc<WriterHealth>,
    pub(super) commit_window: Duration,
}

/// What the writer gathered for one commit.
#[derive(Default)]
struct Round {
    appends: Vec<(Vec<u8>, Answer, Option<Owner>)>,
    removals: Vec<(u64, u64)>,
    barriers: Vec<oneshot::Sender<()>>,
    close: Option<mpsc::Sender<()>>,
}

impl Round {
    fn take(&mut self, request: Request) {
        match request {
            Request::Append { bytes, done, owner } => self.appends.push((bytes, done, owner)),
            Request::Remove(drained) => self.removals.extend(drained),
            Request::Barrier(done) => self.barriers.push(done),
            Request::Close(done) => self.close = Some(done),
        }
    }
}

/// Marks the writer stopped when its thread ends, however it ends.
struct StoppedOnDrop(Arc<WriterHealth>);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Relaxed);
    }
}

impl Writer {
    /// Commits every queued request in one transaction, then answers the appends it carried.
    pub(super) fn run(mut self, receiver: &mpsc::Receiver<Request>) {
        let _stopped = StoppedOnDrop(Arc::clone(&self.health));
        while let Ok(first) = receiver.recv() {
            let mut round = Round::default();
            round.take(first);
            let deadline = Instant::now() + self.commit_window;
            while round.appends.len() < MAX_GROUP && round.close.is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                let next = if left.is_zero() {
                    receiver.try_recv().ok()
                } else {
                    receiver.recv_timeout(left).ok()
                };
                match next {
                    Some(request) => round.take(request),
                    None => break,
                }
            }
            let Round {
                appends,
                removals,
                barriers,
                close,
            } = round;
            if !appends.is_empty() || !removals.is_empty() {
                self.commit(appends, removals);
            }
            for barrier in barriers {
                let _ = barrier.send(());
            }
            if let Some(done) = close {
                // Let go of the database before answering: the closer drops the last handle.
                drop(self);
                let _ = done.send(());
                return;
            }
        }
    }

    fn commit(
        &mut self,
        appends: Vec<(Vec<u8>, Answer, Option<Owner>)>,
        removals: Vec<(u64, u64)>,
    ) {
        let stored = appends.len();
        let started = Instant::now();
        let committed = (|| -> Result<u64, redb::Error> {
            let mut txn = self.db.begin_write()?;
            if stored == 0 {
                // Only removals: durable with the next commit that carries appends.
                txn.set_durability(Durability::None)?;
            }
            let mut seq = self.next_seq;
            {
                let mut table = txn.open_table(ENTRIES)?;
                for (bytes, _, _) in &appends {
                    table.insert(seq, bytes.as_slice())?;
                    seq += 1;
                }
                for (drained, _) in &removals {
                    table.remove(*drained)?;
                }
            }
            txn.commit()?;
            Ok(seq)
        })();
        let outcome = match committed {
            Ok(seq) => {
                let first = self.next_seq;
                self.next_seq = seq;
                self.health.failing.store(false, Ordering::Relaxed);
                if stored > 0 {
                    self.health.commits.fetch_add(1, Ordering::Relaxed);
                    // The commit of appends is where the fsync happens: its time is the fsync's.
                    metrics::histogram!("mmo_journal_fsync_duration_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!("mmo_journal_group_commit_size").record(stored as f64);
                }
                let mut accounting = self.accounting.lock().expect("journal lock");
                for (offset, (_, _, owner)) in appends.iter().enumerate() {
                    if let Some(owner) = owner {
                        accounting.owners.insert(first + offset as u64, *owner);
                    }
                }
                for (drained, bytes) in &removals {
                    accounting.release(*drained, *bytes);
                }
                Ok(())
            }
            Err(error) => {
                self.health.failing.store(true, Ordering::Relaxed);
                tracing::error!(%error, appends = stored, "journal commit failed");
                Err(error.to_string())
            }
        };
        for (_, done, _) in appends {
            let _ = done.send(outcome.clone());
        }
        if stored > 0 {
            self.appended.notify_one();
        }
    }
}
