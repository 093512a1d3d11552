//! The drain actor: applies journal entries to MongoDB in batches, and has the journal remove them only
//! after MongoDB acknowledged them.
//!
//! Each round reads the next entries after a cursor and hands them to the store as one batch (see
//! `store/batch.rs`: a few MongoDB operations per batch, not per entry). Entries of one group (a
//! transaction) are applied in journal order; different groups independently.
//!
//! Failures are handled where they belong:
//! - **MongoDB unavailable** (unreachable, an election, a timeout): the whole drain backs off (doubling up
//!   to `max_backoff`) and reads the same entries again, for as long as it takes. Unavailability never
//!   counts towards quarantine.
//! - **An entry that fails by itself** (a document MongoDB refuses, a panic in the store, an entry that
//!   cannot be decoded): only its group waits — the entry is retried with its own doubling backoff while
//!   the rest of the drain goes on — and after `max_attempts` it is quarantined in `rejected_callbacks`
//!   (once: under an id derived from the entry, so a crash between quarantine and removal keeps one copy)
//!   and removed, so that it never blocks its transaction forever.
//!
//! Applying an entry twice is harmless (unique indexes, delivery ids), so a crash between a write and the
//! entry's removal loses nothing and double-counts nothing.
//!
//! Length: one state machine (batches in flight, groups waiting behind a failure, quarantine), which splits
//! badly; its unit tests are beside it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, WrapFuture};
use chrono::Utc;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use mongodb::bson::oid::ObjectId;
use sha2::{Digest, Sha256};

use crate::backoff::doubled;
use crate::journal::{Entry, Journal, Journaled, Undecodable};
use crate::providers::PROVIDERS;
use crate::store::{
    payload_json, Applied, CallbackStore, EntryOutcome, RejectedCallback, StoreError,
};

#[derive(Debug, Clone, Copy)]
pub struct DrainSettings {
    /// Most entries applied per batch.
    pub batch: usize,
    /// Attempts before an entry that keeps failing (not for unavailability) is quarantined.
    pub max_attempts: u32,
    /// Longest pause while MongoDB is unavailable, and between attempts of a failing entry.
    pub max_backoff: Duration,
    /// First pause before a failing entry is attempted again (then doubling).
    pub retry_after: Duration,
    /// How often callbacks left unprocessed are looked for (also once at start).
    pub sweep_every: Duration,
    /// Batches written at once (different groups only): one is written while the next is prepared.
    pub pipeline: usize,
}

impl Default for DrainSettings {
    fn default() -> Self {
        Self {
            batch: 512,
            max_attempts: 5,
            max_backoff: Duration::from_secs(5),
            retry_after: Duration::from_millis(100),
            sweep_every: Duration::from_secs(300),
            pipeline: 2,
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
        let state = DrainState::new(
            Arc::clone(&self.journal),
            Arc::clone(&self.store),
            self.settings,
        );
        ctx.spawn(state.run().into_actor(self));
    }
}

/// A group that waits: one of its entries failed by itself. Its entries (the failed one first) are
/// retried in order once `not_before` has passed.
struct Waiting {
    seqs: VecDeque<u64>,
    attempts: u32,
    not_before: Instant,
}

struct DrainState {
    journal: Arc<Journal>,
    store: Arc<dyn CallbackStore>,
    settings: DrainSettings,
    /// The next entry number to read.
    cursor: u64,
    waiting: HashMap<String, Waiting>,
    /// Every entry number held by a waiting group.
    held: BTreeSet<u64>,
    /// Groups with entries in a batch being written, and how many such batches.
    busy: HashMap<String, usize>,
    backoff: Duration,
    next_sweep: Instant,
}

/// A batch written to the store, and what became of each entry.
struct Applying {
    slots: Vec<Slot>,
    entries: Vec<Entry>,
    outcomes: Vec<EntryOutcome>,
}

/// What to do with an entry after a round.
enum Verdict {
    Remove,
    /// Its group waits (a failure of its own or of an earlier entry of the group).
    Wait {
        failed: Option<String>,
    },
    /// MongoDB was unavailable: read it again after the drain's backoff.
    Again,
}

impl DrainState {
    fn new(journal: Arc<Journal>, store: Arc<dyn CallbackStore>, settings: DrainSettings) -> Self {
        Self {
            journal,
            store,
            settings,
            cursor: 0,
            waiting: HashMap::new(),
            held: BTreeSet::new(),
            busy: HashMap::new(),
            backoff: settings.retry_after,
            next_sweep: Instant::now(),
        }
    }

    async fn run(mut self) {
        let mut in_flight: FuturesUnordered<BoxFuture<'static, Applying>> = FuturesUnordered::new();
        let mut paused_until = Instant::now();
        loop {
            if Instant::now() >= self.next_sweep && in_flight.is_empty() {
                self.sweep().await;
            }
            // Keep up to `pipeline` batches in flight: one is written while the next is prepared.
            while in_flight.len() < self.settings.pipeline && Instant::now() >= paused_until {
                match self.next_batch().await {
                    Ok(batch) if batch.is_empty() => break,
                    Ok(batch) => in_flight.push(self.start(batch)),
                    Err(error) => {
                        tracing::error!(%error, "journal could not be read");
                        paused_until = Instant::now() + self.settings.max_backoff;
                    }
                }
            }
            let Some(done) = in_flight.next().await else {
                if Instant::now() < paused_until {
                    tokio::time::sleep_until(paused_until.into()).await;
                } else {
                    self.idle().await;
                }
                continue;
            };
            match self.finish(done).await {
                Some(error) => {
                    tracing::warn!(%error, backlog = self.journal.backlog().entries, retry_in_ms = self.backoff.as_millis() as u64, "MongoDB did not take the journal's entries; retrying");
                    paused_until = Instant::now() + self.backoff;
                    self.backoff = doubled(self.backoff, 1, self.settings.max_backoff);
                }
                None => {
                    self.backoff = self.settings.retry_after;
                }
            }
        }
    }

    /// Waits for the next append, or for the next waiting group to be due (at most a second: a guard
    /// against a missed wake-up).
    async fn idle(&mut self) {
        let now = Instant::now();
        let due = self
            .waiting
            .values()
            .map(|waiting| waiting.not_before.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        let _ = tokio::time::timeout(due, self.journal.appended()).await;
    }

    async fn sweep(&mut self) {
        self.next_sweep = Instant::now() + self.settings.sweep_every;
        let store = Arc::clone(&self.store);
        if let Err(error) = store.sweep().await {
            tracing::warn!(%error, "unprocessed callbacks could not be looked for; trying again later");
        }
    }

    /// Waiting groups that are due (their entries, in order), then fresh entries after the cursor —
    /// those of waiting groups join their group instead.
    async fn next_batch(&mut self) -> Result<Vec<Slot>, String> {
        let now = Instant::now();
        let due: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(group, waiting)| waiting.not_before <= now && !self.busy.contains_key(*group))
            .flat_map(|(_, waiting)| waiting.seqs.iter().copied())
            .take(self.settings.batch)
            .collect();
        let room = self.settings.batch.saturating_sub(due.len());
        let (journal, cursor) = (Arc::clone(&self.journal), self.cursor);
        let read = tokio::task::spawn_blocking(move || {
            let mut due = journal.read(&due)?;
            if room > 0 {
                due.extend(journal.read_from(cursor, room)?);
            }
            Ok::<_, crate::journal::JournalError>(due)
        })
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())?;

        let mut batch = Vec::with_capacity(read.len());
        for journaled in read {
            let slot = Slot::from(journaled);
            if slot.seq >= self.cursor {
                self.cursor = slot.seq + 1;
                if self.waiting.contains_key(&slot.group) || self.busy.contains_key(&slot.group) {
                    // Behind a failed entry, or behind a batch still being written: in order, later.
                    self.hold(&slot);
                    if let Some(waiting) = self.waiting.get_mut(&slot.group) {
                        if waiting.attempts == 0 && self.busy.contains_key(&slot.group) {
                            waiting.not_before = Instant::now() + Duration::from_secs(3600);
                        }
                    }
                    continue;
                }
            } else if self.busy.contains_key(&slot.group) {
                continue;
            }
            batch.push(slot);
        }
        Ok(batch)
    }

    /// Starts writing a batch: its groups are busy until it is finished (see [`DrainState::finish`]).
    fn start(&mut self, mut batch: Vec<Slot>) -> BoxFuture<'static, Applying> {
        for slot in &batch {
            *self.busy.entry(slot.group.clone()).or_default() += 1;
        }
        let entries: Vec<Entry> = batch
            .iter_mut()
            .filter_map(|slot| match std::mem::replace(&mut slot.entry, Ok(None)) {
                Ok(Some(entry)) => Some(entry),
                undecodable => {
                    slot.entry = undecodable;
                    None
                }
            })
            .collect();
        let store = Arc::clone(&self.store);
        async move {
            let started = Instant::now();
            let outcomes = apply_isolating_panics(store.as_ref(), &entries).await;
            metrics::histogram!("mmo_drain_batch_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            Applying {
                slots: batch,
                entries,
                outcomes,
            }
        }
        .boxed()
    }

    /// Settles a written batch; returns the unavailability that stopped part of it, if any.
    async fn finish(&mut self, done: Applying) -> Option<String> {
        let Applying {
            slots,
            entries,
            outcomes,
        } = done;
        let mut outcomes = outcomes.into_iter();
        let mut unavailable = None;
        let mut applied = 0_u64;
        let mut decoded = entries.into_iter();
        let mut verdicts = Vec::with_capacity(slots.len());
        for mut slot in slots {
            let verdict = match &slot.entry {
                Err(undecodable) => Verdict::Wait {
                    failed: Some(format!("entry cannot be decoded: {undecodable}")),
                },
                Ok(_) => {
                    slot.entry = Ok(decoded.next());
                    match outcomes.next().unwrap_or(EntryOutcome::Deferred) {
                        EntryOutcome::Applied(result) => {
                            applied += 1;
                            if let Some(entry) = slot.entry.as_ref().ok().and_then(Option::as_ref) {
                                count_callback(entry, result);
                            }
                            Verdict::Remove
                        }
                        EntryOutcome::Failed(error) if error.is_unavailability() => {
                            unavailable.get_or_insert(error.to_string());
                            Verdict::Again
                        }
                        EntryOutcome::Failed(error) => Verdict::Wait {
                            failed: Some(error.to_string()),
                        },
                        EntryOutcome::Deferred => Verdict::Wait { failed: None },
                    }
                }
            };
            verdicts.push((slot, verdict));
        }
        metrics::counter!("mmo_drain_applied_total").increment(applied);
        let groups: Vec<String> = verdicts
            .iter()
            .map(|(slot, _)| slot.group.clone())
            .collect();
        self.settle(verdicts).await;
        // Entries of these groups that arrived while the batch was written may go now (unless the group
        // waits after a failure).
        let now = Instant::now();
        for group in groups {
            if let Some(count) = self.busy.get_mut(&group) {
                *count -= 1;
                if *count == 0 {
                    self.busy.remove(&group);
                }
            }
            if let Some(waiting) = self.waiting.get_mut(&group) {
                if waiting.attempts == 0 {
                    waiting.not_before = now;
                }
            }
        }
        unavailable
    }

    /// Removes applied entries, queues failed ones on their group, rewinds for unavailable ones.
    async fn settle(&mut self, verdicts: Vec<(Slot, Verdict)>) {
        let mut removed = Vec::new();
        let mut again = u64::MAX;
        let mut failures: Vec<(Slot, String)> = Vec::new();
        for (slot, verdict) in verdicts {
            match verdict {
                Verdict::Remove => {
                    self.release(&slot);
                    removed.push((slot.seq, slot.bytes));
                }
                Verdict::Again => {
                    if !self.held.contains(&slot.seq) {
                        again = again.min(slot.seq);
                    }
                }
                Verdict::Wait { failed: None } => self.hold(&slot),
                Verdict::Wait {
                    failed: Some(error),
                } => failures.push((slot, error)),
            }
        }
        if again != u64::MAX {
            self.cursor = self.cursor.min(again);
        }
        for (slot, error) in failures {
            if self.fail(&slot, &error).await {
                self.release(&slot);
                removed.push((slot.seq, slot.bytes));
            }
        }
        self.journal.remove(removed);
    }

    /// Holds an entry in its group's queue (the group waits).
    fn hold(&mut self, slot: &Slot) {
        let waiting = self
            .waiting
            .entry(slot.group.clone())
            .or_insert_with(|| Waiting {
                seqs: VecDeque::new(),
                attempts: 0,
                not_before: Instant::now(),
            });
        if self.held.insert(slot.seq) {
            // Keep the group's queue in journal order.
            let at = waiting
                .seqs
                .iter()
                .position(|seq| *seq > slot.seq)
                .unwrap_or(waiting.seqs.len());
            waiting.seqs.insert(at, slot.seq);
        }
    }

    /// Forgets a held entry that is done; a group with nothing left stops waiting.
    fn release(&mut self, slot: &Slot) {
        if !self.held.remove(&slot.seq) {
            return;
        }
        if let Some(waiting) = self.waiting.get_mut(&slot.group) {
            waiting.seqs.retain(|seq| *seq != slot.seq);
            if waiting.seqs.is_empty() {
                self.waiting.remove(&slot.group);
            } else {
                // The group moves again: what follows starts afresh.
                waiting.attempts = 0;
                waiting.not_before = Instant::now();
            }
        }
    }

    /// Counts a failed attempt of an entry; returns true when it was quarantined (and may be removed).
    async fn fail(&mut self, slot: &Slot, error: &str) -> bool {
        self.hold(slot);
        let Some(waiting) = self.waiting.get_mut(&slot.group) else {
            return false;
        };
        waiting.attempts += 1;
        let attempts = waiting.attempts;
        let pause = doubled(
            self.settings.retry_after,
            attempts,
            self.settings.max_backoff,
        );
        waiting.not_before = Instant::now() + pause;
        tracing::error!(seq = slot.seq, attempt = attempts, %error, "journal entry failed");
        if attempts < self.settings.max_attempts {
            return false;
        }
        let quarantined = quarantine_poisoned(self.store.as_ref(), slot, attempts, error).await;
        if quarantined {
            metrics::counter!("mmo_drain_poisoned_total").increment(1);
            if let Some(waiting) = self.waiting.get_mut(&slot.group) {
                // The next entry of the group starts afresh.
                waiting.attempts = 0;
                waiting.not_before = Instant::now();
            }
        }
        quarantined
    }
}

/// One entry of a round: its number, size and group, and the entry itself (taken out while the store
/// applies it, put back for quarantining) or why it cannot be decoded.
struct Slot {
    seq: u64,
    bytes: u64,
    /// See [`Entry::group`]; an undecodable entry is a group of its own.
    group: String,
    entry: Result<Option<Entry>, Undecodable>,
}

impl From<Journaled> for Slot {
    fn from(journaled: Journaled) -> Self {
        let group = match &journaled.entry {
            Ok(entry) => entry.group(),
            Err(_) => format!("undecodable/{}", journaled.seq),
        };
        Self {
            seq: journaled.seq,
            bytes: journaled.bytes,
            group,
            entry: journaled.entry.map(Some),
        }
    }
}

/// Counts what MongoDB now holds, per provider, callback type and outcome (`stored`, `repeat`,
/// `conflict`).
fn count_callback(entry: &Entry, applied: Applied) {
    let (provider, callback_type, outcome) = match (entry, applied) {
        (Entry::Record { document }, Applied::Record(outcome)) => (
            document.get_str("provider").unwrap_or_default(),
            document.get_str("callback_type").unwrap_or_default(),
            outcome.as_str(),
        ),
        (Entry::CountDelivery { key, .. }, _) => {
            (key.provider, key.callback_type.as_str(), "repeat")
        }
        _ => return,
    };
    metrics::counter!(
        "mmo_callbacks_total",
        "provider" => provider.to_owned(),
        "callback_type" => callback_type.to_owned(),
        "outcome" => outcome,
    )
    .increment(1);
}

/// Applies a batch, turning a panic inside the store into a failure of the entry that caused it: after a
/// panic the entries are applied one at a time, so that only the poisoned one fails.
async fn apply_isolating_panics(store: &dyn CallbackStore, entries: &[Entry]) -> Vec<EntryOutcome> {
    let count = entries.len();
    let attempt = std::panic::catch_unwind(AssertUnwindSafe(|| store.apply(entries)));
    let whole = match attempt {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
        Err(panic) => Err(panic),
    };
    match whole {
        Ok(outcomes) if outcomes.len() == count => return outcomes,
        // Alone in its batch: that entry is the one.
        Err(panic) if count == 1 => {
            return vec![EntryOutcome::Failed(StoreError::Rejected(format!(
                "store panicked: {}",
                panic_message(&panic)
            )))]
        }
        _ => {}
    }
    let mut outcomes = Vec::with_capacity(count);
    for entry in entries {
        let single = std::panic::catch_unwind(AssertUnwindSafe(|| {
            store.apply(std::slice::from_ref(entry))
        }));
        let outcome = match single {
            Ok(future) => match AssertUnwindSafe(future).catch_unwind().await {
                Ok(mut result) => result.pop(),
                Err(panic) => Some(EntryOutcome::Failed(StoreError::Rejected(format!(
                    "store panicked: {}",
                    panic_message(&panic)
                )))),
            },
            Err(panic) => Some(EntryOutcome::Failed(StoreError::Rejected(format!(
                "store panicked: {}",
                panic_message(&panic)
            )))),
        };
        outcomes.push(outcome.unwrap_or(EntryOutcome::Deferred));
    }
    outcomes
}

/// Keeps an entry that keeps failing as a rejected callback, so that it stops blocking its transaction.
/// Its id derives from the entry, so quarantining it twice (a crash before its removal) keeps one copy.
///
/// What a replay needs is kept: a callback's provider, callback type, endpoint and original `received_at`,
/// and its body as today's parsers read it (the payload the journal holds, as JSON); a rejection that
/// could not be written keeps everything it had, its reason extended.
async fn quarantine_poisoned(
    store: &dyn CallbackStore,
    slot: &Slot,
    tries: u32,
    error: &str,
) -> bool {
    let note = format!("poisoned: failed {tries} times: {error}");
    let (mut rejected, identity) = match &slot.entry {
        Ok(Some(Entry::Record { document })) => {
            // The delivery's id (documents journaled by earlier versions carry it as `_id`).
            let id = document
                .get_object_id("delivery_id")
                .or_else(|_| document.get_object_id("_id"))
                .unwrap_or_default();
            let received_at = document
                .get_datetime("received_at")
                .map(|at| at.to_chrono())
                .unwrap_or_else(|_| Utc::now());
            let provider = document.get_str("provider").unwrap_or_default();
            let callback_type = document.get_str("callback_type").unwrap_or_default();
            let rejected = RejectedCallback::new(
                payload_json(document),
                endpoint_path(provider, callback_type),
                note,
                id.to_hex(),
                received_at,
            );
            let mut rejected = if provider.is_empty() || callback_type.is_empty() {
                rejected
            } else {
                rejected.for_endpoint(provider, callback_type)
            };
            rejected.parsed = true;
            (rejected, format!("record/{id}"))
        }
        Ok(Some(Entry::CountDelivery { key, delivery })) => (
            // A count of a repeat, not a body: kept for audit, nothing to replay.
            RejectedCallback::new(
                serde_json::to_vec(key).unwrap_or_default(),
                "journal".to_owned(),
                format!("a repeat's delivery count, {note}"),
                delivery.id.to_hex(),
                delivery.received_at,
            ),
            format!("count/{}", delivery.id),
        ),
        Ok(Some(Entry::Quarantine { rejected })) => {
            let mut kept = rejected.clone();
            kept.reason = format!("{}; {note}", rejected.reason);
            (kept, format!("quarantine/{}", rejected.id))
        }
        Err(undecodable) => {
            let identity = format!(
                "undecodable/{}",
                hex::encode(Sha256::digest(&undecodable.raw))
            );
            let rejected = RejectedCallback::new(
                undecodable.raw.clone(),
                "journal".to_owned(),
                format!("a journal entry that cannot be decoded, {note}"),
                String::new(),
                Utc::now(),
            );
            (rejected, identity)
        }
        Ok(None) => return false,
    };
    rejected.id = poisoned_id(&identity);
    let kept = std::panic::catch_unwind(AssertUnwindSafe(|| store.quarantine(Arc::new(rejected))));
    match kept {
        Ok(future) => matches!(AssertUnwindSafe(future).catch_unwind().await, Ok(Ok(()))),
        Err(_) => false,
    }
}

/// The path a callback of `provider` (stored name) and `callback_type` is posted to, or `journal` when no
/// endpoint takes it (an operator's status answer, recorded by the reconciler).
fn endpoint_path(provider: &str, callback_type: &str) -> String {
    PROVIDERS
        .iter()
        .filter(|candidate| candidate.name() == provider)
        .find_map(|candidate| {
            let endpoint = candidate
                .endpoints()
                .iter()
                .find(|endpoint| endpoint.callback_type.as_str() == callback_type)?;
            Some(format!(
                "/v1/webhooks/{}/{}",
                candidate.slug(),
                endpoint.path
            ))
        })
        .unwrap_or_else(|| "journal".to_owned())
}

/// A stable ObjectId for a poisoned entry: the first 12 bytes of a SHA-256 of what identifies it.
fn poisoned_id(identity: &str) -> ObjectId {
    let digest = Sha256::digest(format!("poisoned:{identity}").as_bytes());
    let mut bytes = [0_u8; 12];
    bytes.copy_from_slice(&digest[..12]);
    ObjectId::from_bytes(bytes)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_entry_always_gets_the_same_id() {
        assert_eq!(poisoned_id("record/1"), poisoned_id("record/1"));
        assert_ne!(poisoned_id("record/1"), poisoned_id("record/2"));
    }
}
