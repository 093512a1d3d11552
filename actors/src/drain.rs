//! The drain actor: applies journal entries to MongoDB in order, in batches, and removes them only after
//! MongoDB acknowledged them.
//!
//! Entries of one transaction are applied one after another in journal order; different transactions
//! concurrently. While MongoDB is unreachable the drain backs off (doubling up to `max_backoff`) and tries
//! again, for as long as it takes. Applying an entry twice is harmless (unique indexes, delivery ids), so
//! a crash between a write and the entry's removal loses nothing and double-counts nothing.
//!
//! An entry that makes the store fail in a way retrying cannot fix — a panic, a document MongoDB refuses,
//! an entry that cannot be decoded — is attempted `max_attempts` times and then quarantined (as a
//! rejected callback, with the reason) instead of blocking its transaction forever.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, WrapFuture};
use chrono::Utc;
use futures_util::future::join_all;
use futures_util::FutureExt;

use crate::journal::{Entry, Journal, Journaled};
use crate::store::{CallbackStore, RejectedCallback, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct DrainSettings {
    /// Entries read per round.
    pub batch: usize,
    /// Attempts before an entry that keeps failing (not for unavailability) is quarantined.
    pub max_attempts: u32,
    /// Longest pause between rounds while MongoDB fails.
    pub max_backoff: Duration,
}

impl Default for DrainSettings {
    fn default() -> Self {
        Self {
            batch: 512,
            max_attempts: 5,
            max_backoff: Duration::from_secs(5),
        }
    }
}

pub struct Drain {
    journal: Arc<Journal>,
    store: Arc<dyn CallbackStore>,
    settings: DrainSettings,
}

impl Drain {
    pub fn new(
        journal: Arc<Journal>,
        store: Arc<dyn CallbackStore>,
        settings: DrainSettings,
    ) -> Self {
        Self {
            journal,
            store,
            settings,
        }
    }
}

impl Actor for Drain {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (journal, store, settings) = (
            Arc::clone(&self.journal),
            Arc::clone(&self.store),
            self.settings,
        );
        ctx.spawn(drain_forever(journal, store, settings).into_actor(self));
    }
}

/// What happened to one entry this round.
enum Applied {
    Done,
    /// MongoDB unreachable or slow: try again later, as often as needed.
    Unavailable(String),
    /// A failure retrying may not fix (counted towards `max_attempts`).
    Failed(String),
}

async fn drain_forever(
    journal: Arc<Journal>,
    store: Arc<dyn CallbackStore>,
    settings: DrainSettings,
) {
    let mut attempts: HashMap<u64, u32> = HashMap::new();
    let mut backoff = Duration::from_millis(50);
    loop {
        let batch = {
            let journal = Arc::clone(&journal);
            tokio::task::spawn_blocking(move || journal.oldest(settings.batch)).await
        };
        let batch = match batch {
            Ok(Ok(batch)) => batch,
            Ok(Err(error)) => {
                tracing::error!(%error, "journal could not be read");
                tokio::time::sleep(settings.max_backoff).await;
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "journal read task failed");
                continue;
            }
        };
        if batch.is_empty() {
            // Woken by the next append; the timeout only guards against a missed wake-up.
            let _ = tokio::time::timeout(Duration::from_secs(1), journal.appended()).await;
            continue;
        }

        let mut groups: Vec<(String, Vec<Journaled>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for journaled in batch {
            let group = match &journaled.entry {
                Ok(entry) => entry.group(),
                Err(_) => format!("undecodable/{}", journaled.seq),
            };
            let slot = *index.entry(group.clone()).or_insert_with(|| {
                groups.push((group, Vec::new()));
                groups.len() - 1
            });
            groups[slot].1.push(journaled);
        }

        let rounds = join_all(groups.into_iter().map(|(_, entries)| {
            let store = Arc::clone(&store);
            async move {
                let mut outcomes = Vec::new();
                for journaled in entries {
                    let applied = apply(store.as_ref(), &journaled).await;
                    let stop = !matches!(applied, Applied::Done);
                    outcomes.push((journaled, applied));
                    if stop {
                        // Later entries of this transaction wait for this one.
                        break;
                    }
                }
                outcomes
            }
        }))
        .await;

        let mut drained = Vec::new();
        let mut unavailable = None;
        for (journaled, applied) in rounds.into_iter().flatten() {
            match applied {
                Applied::Done => {
                    attempts.remove(&journaled.seq);
                    drained.push((journaled.seq, journaled.bytes));
                }
                Applied::Unavailable(error) => unavailable = Some(error),
                Applied::Failed(error) => {
                    let tries = attempts.entry(journaled.seq).or_default();
                    *tries += 1;
                    tracing::error!(seq = journaled.seq, attempt = *tries, %error, "journal entry failed");
                    if *tries >= settings.max_attempts
                        && quarantine_poisoned(store.as_ref(), &journaled, *tries, &error).await
                    {
                        attempts.remove(&journaled.seq);
                        drained.push((journaled.seq, journaled.bytes));
                    } else {
                        unavailable.get_or_insert(error);
                    }
                }
            }
        }

        let removed = {
            let journal = Arc::clone(&journal);
            match tokio::task::spawn_blocking(move || journal.remove(&drained)).await {
                Ok(result) => result.map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            }
        };
        if let Err(error) = removed {
            tracing::error!(%error, "drained entries could not be removed from the journal; they will be applied again, harmlessly");
        }

        match unavailable {
            Some(error) => {
                tracing::warn!(%error, backlog = journal.backlog().entries, retry_in_ms = backoff.as_millis() as u64, "MongoDB did not take the journal's entries; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(settings.max_backoff);
            }
            None => backoff = Duration::from_millis(50),
        }
    }
}

/// Applies one entry, turning a panic inside the store into a failure of that entry.
async fn apply(store: &dyn CallbackStore, journaled: &Journaled) -> Applied {
    let entry = match &journaled.entry {
        Ok(entry) => entry.clone(),
        Err(error) => return Applied::Failed(format!("entry cannot be decoded: {error}")),
    };
    let operation = std::panic::catch_unwind(AssertUnwindSafe(|| match entry {
        Entry::Record { callback, delivery } => store
            .record(Arc::from(callback), delivery)
            .map(|r| r.map(|_| ()))
            .boxed(),
        Entry::CountDelivery { key, delivery } => store.count_delivery(key, delivery),
        Entry::Quarantine { rejected } => store.quarantine(Arc::new(rejected)),
    }));
    let result = match operation {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
        Err(panic) => Err(panic),
    };
    match result {
        Ok(Ok(())) => Applied::Done,
        Ok(Err(
            error @ (StoreError::Unavailable(_) | StoreError::Timeout(_) | StoreError::Full(_)),
        )) => Applied::Unavailable(error.to_string()),
        Ok(Err(StoreError::Rejected(reason))) => Applied::Failed(reason),
        Err(panic) => Applied::Failed(format!("store panicked: {}", panic_message(&panic))),
    }
}

/// Keeps an entry that keeps failing as a rejected callback, so that it stops blocking its transaction.
async fn quarantine_poisoned(
    store: &dyn CallbackStore,
    journaled: &Journaled,
    tries: u32,
    error: &str,
) -> bool {
    let (raw, request_id) = match &journaled.entry {
        Ok(Entry::Record { callback, delivery }) => (
            callback.payload.to_string().into_bytes(),
            delivery.id.clone(),
        ),
        Ok(Entry::CountDelivery { key, delivery }) => (
            serde_json::to_vec(key).unwrap_or_default(),
            delivery.id.clone(),
        ),
        Ok(Entry::Quarantine { rejected }) => (rejected.raw.clone(), rejected.request_id.clone()),
        Err(_) => (Vec::new(), String::new()),
    };
    let rejected = RejectedCallback::new(
        raw,
        "journal".to_owned(),
        format!("poisoned: failed {tries} times: {error}"),
        request_id,
        Utc::now(),
    );
    let kept = std::panic::catch_unwind(AssertUnwindSafe(|| store.quarantine(Arc::new(rejected))));
    match kept {
        Ok(future) => matches!(AssertUnwindSafe(future).catch_unwind().await, Ok(Ok(()))),
        Err(_) => false,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
