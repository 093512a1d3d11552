//! The local journal and its drain, without HTTP: durability across reopening, group commits, the size
//! limit, in-order draining, retries while the store is unavailable, and quarantine of poisoned entries.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use chrono::Utc;
use futures_util::future::{self, join_all, BoxFuture};
use futures_util::FutureExt;
use mmo_actors::callback::{CallbackKey, Delivery};
use mmo_actors::drain::{Drain, DrainSettings};
use mmo_actors::journal::{Entry, Journal, JournalOptions};
use mmo_actors::journaled_store::JournaledStore;
use mmo_actors::store::InMemoryStore;
use mmo_actors::{Callback, CallbackStore, RecordOutcome, RejectedCallback, StoreError};
use support::{stk, PoisonedStore};

fn record(key: &str) -> Entry {
    Entry::record(&stk(key), &Delivery::new(Utc::now()))
}

fn directory() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mmo-journal-test-{}",
        mongodb::bson::oid::ObjectId::new().to_hex()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reopens a journal once its previous holder (and writer thread) has let go of the file.
async fn reopen(dir: &std::path::Path) -> Arc<Journal> {
    for _ in 0..100 {
        if let Ok(journal) = Journal::open(dir, 1 << 30) {
            return journal;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("journal could not be reopened");
}

/// Waits (up to 60 s, then fails naming `what`) until `condition` holds.
async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn drained(journal: &Journal) {
    for _ in 0..500 {
        if journal.backlog().entries == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("journal never drained: {:?}", journal.backlog());
}

#[actix::test]
async fn appended_entries_survive_reopening_in_order() {
    let dir = directory();
    let journal = Journal::open(&dir, 1 << 30).unwrap();
    // Concurrent appends share commits; each resolves only once on disk.
    let keys: Vec<String> = (0..200).map(|i| format!("ws_CO_journal_{i:03}")).collect();
    let appends = keys.iter().map(|key| {
        let journal = Arc::clone(&journal);
        let entry = record(key);
        async move { journal.append(&entry).await }
    });
    for result in join_all(appends).await {
        result.unwrap();
    }
    assert_eq!(journal.backlog().entries, 200);
    drop(journal);

    let journal = reopen(&dir).await;
    assert_eq!(journal.backlog().entries, 200);
    let oldest = journal.oldest(1000).unwrap();
    assert_eq!(oldest.len(), 200);
    assert!(oldest.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    let read: std::collections::HashSet<String> = oldest
        .iter()
        .map(|journaled| match journaled.entry.as_ref().unwrap() {
            Entry::Record { document } => document
                .get_str("provider_transaction_id")
                .unwrap()
                .to_owned(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(read.len(), 200);

    let drained: Vec<(u64, u64)> = oldest.iter().map(|j| (j.seq, j.bytes)).collect();
    journal.remove(drained);
    journal.removals_committed().await;
    assert_eq!(journal.backlog().entries, 0);
    assert_eq!(journal.stored_entries().unwrap(), 0);
}

#[actix::test]
async fn with_a_commit_window_appends_still_resolve_only_once_on_disk() {
    let journal = Journal::open_with(JournalOptions {
        commit_window: Duration::from_millis(30),
        ..JournalOptions::new(&directory())
    })
    .unwrap();
    let appends = (0..50).map(|i| {
        let journal = Arc::clone(&journal);
        let entry = record(&format!("ws_CO_window_{i}"));
        async move { journal.append(&entry).await }
    });
    for result in join_all(appends).await {
        result.unwrap();
    }
    assert_eq!(
        journal.stored_entries().unwrap(),
        50,
        "every append is on disk when it resolves"
    );
}

#[actix::test]
async fn a_full_journal_refuses_instead_of_acknowledging() {
    let size = record("fits-1").encode().unwrap().len() as u64;
    let limit = size * 2 + size / 2;
    let journal = Journal::open(&directory(), limit).unwrap();
    journal.append(&record("fits-1")).await.unwrap();
    journal.append(&record("fits-2")).await.unwrap();
    let refused = journal.append(&record("fits-3")).await;
    assert!(matches!(refused, Err(StoreError::Full(_))), "{refused:?}");
    assert_eq!(journal.backlog().entries, 2);
    assert!(journal.backlog().bytes <= limit);
}

#[actix::test]
async fn the_drain_delivers_every_entry_and_empties_the_journal() {
    let journal = Journal::open(&directory(), 1 << 30).unwrap();
    let journaled = JournaledStore::new(Arc::clone(&journal));
    let callback = Arc::new(stk("ws_CO_drain"));
    assert_eq!(
        journaled
            .record(callback.clone(), Delivery::new(Utc::now()))
            .await,
        Ok(RecordOutcome::Journaled)
    );
    journaled
        .count_delivery(callback.key(), Delivery::new(Utc::now()))
        .await
        .unwrap();
    let rejected = RejectedCallback::new(
        b"junk".to_vec(),
        "/p".into(),
        "invalid".into(),
        "req-1".into(),
        Utc::now(),
    );
    journaled.quarantine(Arc::new(rejected)).await.unwrap();

    let store = InMemoryStore::new();
    Drain::new(
        Arc::clone(&journal),
        Arc::new(store.clone()),
        DrainSettings::default(),
    )
    .start();
    drained(&journal).await;
    assert_eq!(
        store.get(&callback.key()).unwrap().deliveries,
        2,
        "record, then its counted repeat, in order"
    );
    assert_eq!(store.rejected().len(), 1);
}

/// Unavailable for its first calls, like MongoDB during an election.
struct FlakyStore {
    inner: InMemoryStore,
    failures_left: AtomicUsize,
}

impl FlakyStore {
    fn unavailable(&self) -> bool {
        self.failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl CallbackStore for FlakyStore {
    fn record(
        &self,
        callback: Arc<Callback>,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<RecordOutcome, StoreError>> {
        if self.unavailable() {
            return future::ready(Err(StoreError::Unavailable("election".into()))).boxed();
        }
        self.inner.record(callback, delivery)
    }
    fn count_delivery(
        &self,
        key: CallbackKey,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner.count_delivery(key, delivery)
    }
    fn quarantine(
        &self,
        rejected: Arc<RejectedCallback>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner.quarantine(rejected)
    }
}

#[actix::test]
async fn the_drain_retries_while_the_store_is_unavailable() {
    let journal = Journal::open(&directory(), 1 << 30).unwrap();
    for i in 0..20 {
        journal
            .append(&record(&format!("ws_CO_flaky_{i}")))
            .await
            .unwrap();
    }
    let store = Arc::new(FlakyStore {
        inner: InMemoryStore::new(),
        failures_left: AtomicUsize::new(30),
    });
    let settings = DrainSettings {
        max_backoff: Duration::from_millis(100),
        ..DrainSettings::default()
    };
    Drain::new(Arc::clone(&journal), store.clone(), settings).start();
    drained(&journal).await;
    assert_eq!(
        store.inner.len(),
        20,
        "every entry arrived despite the outage"
    );
    assert!(
        store.inner.rejected().is_empty(),
        "unavailability never quarantines"
    );
}

#[actix::test]
async fn a_poisoned_entry_is_quarantined_after_bounded_attempts() {
    let journal = Journal::open(&directory(), 1 << 30).unwrap();
    journal.append(&record("before")).await.unwrap();
    journal.append(&record("poison")).await.unwrap();
    journal.append(&record("after")).await.unwrap();
    let store = Arc::new(PoisonedStore::default());
    let settings = DrainSettings {
        max_attempts: 3,
        max_backoff: Duration::from_millis(50),
        ..DrainSettings::default()
    };
    Drain::new(Arc::clone(&journal), store.clone(), settings).start();
    drained(&journal).await;

    assert_eq!(
        store.panics.load(Ordering::SeqCst),
        1 + 3,
        "attempted a bounded number of times: once inside the batch whose panic isolated it, then \
         max_attempts times on its own"
    );
    assert_eq!(store.inner.len(), 2, "the other entries were not held back");
    let rejected = store.inner.rejected();
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0].reason.starts_with("poisoned: failed 3 times"),
        "{}",
        rejected[0].reason
    );
    assert!(
        String::from_utf8_lossy(&rejected[0].raw).contains("poison"),
        "the payload is kept"
    );
}

/// Records the order in which callbacks reach it, taking a little while per callback so that the drain's
/// batches overlap; refuses the callbacks of one key (a document MongoDB would never accept).
#[derive(Default)]
struct RecordingStore {
    inner: InMemoryStore,
    applied: std::sync::Mutex<Vec<(String, chrono::DateTime<Utc>)>>,
    refused_key: Option<String>,
    refusals: AtomicUsize,
}

impl CallbackStore for RecordingStore {
    fn record(
        &self,
        callback: Arc<Callback>,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<RecordOutcome, StoreError>> {
        if self.refused_key.as_deref() == Some(callback.provider_transaction_id.as_str()) {
            self.refusals.fetch_add(1, Ordering::SeqCst);
            return future::ready(Err(StoreError::Rejected("document too large".into()))).boxed();
        }
        self.applied.lock().unwrap().push((
            callback.provider_transaction_id.clone(),
            delivery.received_at,
        ));
        let stored = self.inner.record(callback, delivery);
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            stored.await
        }
        .boxed()
    }
    fn count_delivery(
        &self,
        key: CallbackKey,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner.count_delivery(key, delivery)
    }
    fn quarantine(
        &self,
        rejected: Arc<RejectedCallback>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner.quarantine(rejected)
    }
}

#[actix::test]
async fn overlapping_batches_keep_each_transactions_order() {
    let journal = Journal::open(&directory(), 1 << 30).unwrap();
    let start = Utc::now();
    // 20 transactions, 6 deliveries each, interleaved in the journal; each delivery's time is its rank.
    for round in 0..6_i64 {
        for transaction in 0..20 {
            let delivery = Delivery::new(start + chrono::Duration::milliseconds(round));
            let entry = Entry::record(&stk(&format!("ws_CO_order_{transaction}")), &delivery);
            journal.append(&entry).await.unwrap();
        }
    }
    let store = Arc::new(RecordingStore::default());
    let settings = DrainSettings {
        batch: 7,
        pipeline: 2,
        ..DrainSettings::default()
    };
    Drain::new(Arc::clone(&journal), store.clone(), settings).start();
    drained(&journal).await;

    let applied = store.applied.lock().unwrap().clone();
    assert_eq!(applied.len(), 120, "every delivery was applied once");
    let mut last: std::collections::HashMap<String, chrono::DateTime<Utc>> = Default::default();
    for (key, at) in applied {
        if let Some(previous) = last.insert(key.clone(), at) {
            assert!(previous < at, "{key}: applied out of journal order");
        }
    }
}

#[actix::test]
async fn a_failing_entry_waits_alone_while_the_drain_goes_on() {
    let journal = Journal::open(&directory(), 1 << 30).unwrap();
    let store = Arc::new(RecordingStore {
        refused_key: Some("ws_CO_refused".into()),
        ..RecordingStore::default()
    });
    // The failed entry's second attempt comes 5 s later: the 40 appends below (concurrent, so they share
    // a few fsyncs) are stored well before it on any disk, and the assertion says what it checks.
    let settings = DrainSettings {
        max_attempts: 2,
        retry_after: Duration::from_secs(5),
        ..DrainSettings::default()
    };
    journal.append(&record("ws_CO_refused")).await.unwrap();
    Drain::new(Arc::clone(&journal), store.clone(), settings).start();
    wait_for("the first refusal", || {
        store.refusals.load(Ordering::SeqCst) > 0
    })
    .await;
    // Arriving after the failure, while the failed entry waits for its second attempt.
    let appends = (0..40).map(|i| {
        let journal = Arc::clone(&journal);
        async move { journal.append(&record(&format!("ws_CO_after_{i}"))).await }
    });
    for appended in join_all(appends).await {
        appended.unwrap();
    }
    wait_for("the 40 later entries stored", || {
        store.applied.lock().unwrap().len() >= 40
    })
    .await;
    assert_eq!(
        store.refusals.load(Ordering::SeqCst),
        1,
        "the others were stored while the failed entry waited for its next attempt"
    );
    drained(&journal).await;
    assert_eq!(store.refusals.load(Ordering::SeqCst), 2, "bounded attempts");
    let rejected = store.inner.rejected();
    assert_eq!(rejected.len(), 1, "the failing entry was quarantined");
    assert!(rejected[0].reason.contains("document too large"));
}

#[actix::test]
async fn entries_journaled_as_json_by_an_earlier_version_are_still_drained() {
    let journal = Journal::open(&directory(), 1 << 30).unwrap();
    let callback = stk("ws_CO_legacy");
    let key = callback.key();
    let at = Utc::now();
    let id = mongodb::bson::oid::ObjectId::new().to_hex();
    let legacy = serde_json::json!({"Record": {"callback": callback, "delivery": {"id": id, "received_at": at}}});
    journal
        .append_bytes(serde_json::to_vec(&legacy).unwrap())
        .await
        .unwrap();
    let count = serde_json::json!({"CountDelivery": {"key": key, "delivery": {
        "id": mongodb::bson::oid::ObjectId::new().to_hex(), "received_at": at}}});
    journal
        .append_bytes(serde_json::to_vec(&count).unwrap())
        .await
        .unwrap();
    let store = InMemoryStore::new();
    Drain::new(
        Arc::clone(&journal),
        Arc::new(store.clone()),
        DrainSettings::default(),
    )
    .start();
    drained(&journal).await;
    let stored = store.get(&key).expect("the legacy record was stored");
    assert_eq!(stored.deliveries, 2);
    assert_eq!(stored.callback.amount, callback.amount);
    assert!(store.rejected().is_empty(), "nothing was quarantined");
}

fn probed(probe: &Arc<mmo_actors::journal::testing::SyncProbe>) -> Arc<Journal> {
    use mmo_actors::journal::testing::SyncProbeBackend;
    let dir = directory();
    let backend = SyncProbeBackend::open(&dir, Arc::clone(probe)).unwrap();
    Journal::open_on(JournalOptions::new(&dir), Some(Box::new(backend))).unwrap()
}

#[actix::test]
async fn no_append_is_answered_before_its_fsync_returned() {
    let probe = Arc::new(mmo_actors::journal::testing::SyncProbe::default());
    let journal = probed(&probe);
    let synced = probe.finished();
    probe.hold();
    let appends: Vec<_> = (0..8)
        .map(|i| {
            let journal = Arc::clone(&journal);
            actix::spawn(async move { journal.append(&record(&format!("ws_CO_sync_{i}"))).await })
        })
        .collect();
    // The writer reached the fsync of their commit and is held there (a journal that skipped the
    // fsync would never get here: the bound turns that into a failure).
    for waited in 0.. {
        if probe.started() > synced {
            break;
        }
        assert!(waited < 10_000, "the commit never called fsync");
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(
        appends.iter().all(|append| !append.is_finished()),
        "no append was answered while its fsync had not returned"
    );
    probe.release();
    for append in appends {
        append.await.unwrap().unwrap();
    }
    assert!(probe.finished() > synced);
    assert!(journal.is_healthy());
}

#[actix::test]
async fn a_failed_fsync_fails_every_append_of_its_commit_and_the_journal_reports_it() {
    let probe = Arc::new(mmo_actors::journal::testing::SyncProbe::default());
    let journal = probed(&probe);
    journal
        .append(&record("ws_CO_before_failure"))
        .await
        .unwrap();
    assert!(journal.is_healthy());
    probe.fail(true);
    let appends = (0..8).map(|i| {
        let journal = Arc::clone(&journal);
        async move { journal.append(&record(&format!("ws_CO_failed_{i}"))).await }
    });
    for result in join_all(appends).await {
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "an append whose fsync failed is refused: {result:?}"
        );
    }
    assert!(!journal.is_healthy(), "readiness sees the failing writer");
    assert_eq!(
        journal.backlog().entries,
        1,
        "refused appends are not counted"
    );
}
