//! Journal entries applied to the real MongoDB in batches (the drain's path): what a batch writes, that
//! applying it again changes nothing, and that failures stay with their own transaction.

mod support;

use chrono::{Duration as Age, Utc};
use mmo_actors::callback::Delivery;
use mmo_actors::journal::Entry;
use mmo_actors::store::{Applied, EntryOutcome, MongoStore, RejectedCallback};
use mmo_actors::{CallbackStore, RecordOutcome, StoreError};
use mongodb::bson::{doc, Document};
use support::{mongo_store, mtn, stk, subscribe};

async fn one(store: &MongoStore, collection: &str, filter: Document) -> Document {
    store
        .database()
        .collection::<Document>(collection)
        .find_one(filter)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no document in {collection}"))
}

/// The distinct events the drain wrote that match `filter`: every one its writes carried, read from the
/// feed (the change stream the sender reads, from the position the database was given at its start; no
/// dispatcher runs here) and any already in `events`.
async fn events_written(store: &MongoStore, filter: Document) -> Vec<Document> {
    use futures_util::TryStreamExt;
    use mmo_actors::store::events::feed::Feed;
    let feed = Feed::new(store.database());
    let start = feed.position().await.unwrap().expect("a position");
    let mut stream = feed
        .open(
            Some(start.token),
            std::time::Duration::from_millis(100),
            1_000,
        )
        .await
        .unwrap();
    let mut written = Vec::new();
    // Until two reads in a row find nothing new.
    let mut empty = 0;
    while empty < 2 {
        let (changes, _) = Feed::next(&mut stream, 1_000).await.unwrap();
        empty = if changes.is_empty() { empty + 1 } else { 0 };
        written.extend(changes.into_iter().map(|change| change.event));
    }
    let scratch = store
        .database()
        .collection::<Document>(&format!("written_{}", mongodb::bson::oid::ObjectId::new()));
    if !written.is_empty() {
        scratch.insert_many(&written).ordered(false).await.ok();
    }
    let found = scratch
        .aggregate([
            doc! {"$unionWith": "events"},
            doc! {"$match": filter},
            doc! {"$group": {"_id": "$_id", "event": {"$first": "$$ROOT"}}},
            doc! {"$replaceRoot": {"newRoot": "$event"}},
        ])
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    scratch.drop().await.unwrap();
    found
}

async fn one_event(store: &MongoStore, filter: Document) -> Document {
    let mut found = events_written(store, filter.clone()).await;
    assert_eq!(found.len(), 1, "one event for {filter}");
    found.remove(0)
}

async fn count(store: &MongoStore, collection: &str, filter: Document) -> u64 {
    store
        .database()
        .collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

#[actix::test]
async fn a_batch_stores_folds_and_counts_and_applying_it_again_changes_nothing() {
    let store = mongo_store().await;
    let now = Utc::now();
    let at = |seconds: i64| Delivery::new(now + Age::seconds(seconds));
    // Stored before the batch: a repeat of it is counted on its document.
    let earlier = stk("ws_CO_batch_earlier");
    assert_eq!(
        store
            .record(std::sync::Arc::new(earlier.clone()), at(0))
            .await,
        Ok(RecordOutcome::Stored)
    );

    let pending = mtn("batch-mtn-1", "PENDING");
    let successful = mtn("batch-mtn-1", "SUCCESSFUL");
    let first_stk = stk("ws_CO_batch_1");
    let rejected = RejectedCallback::new(
        b"{not json".to_vec(),
        "/v1/webhooks/mtn/collection".into(),
        "invalid format".into(),
        "req-batch".into(),
        now,
    );
    let entries = vec![
        Entry::record(&pending, &at(1)),
        Entry::record(&first_stk, &at(2)),
        Entry::record(&successful, &at(3)),
        // A quick resend of the STK result answered from the cache: counted in the inserted document.
        Entry::CountDelivery {
            key: first_stk.key(),
            delivery: at(4),
        },
        // A repeat of a callback stored earlier: counted on its document.
        Entry::record(&earlier, &at(5)),
        Entry::CountDelivery {
            key: earlier.key(),
            delivery: at(6),
        },
        // A delivery count for a callback nobody stored: refused, for the drain to retry, then quarantine.
        Entry::CountDelivery {
            key: stk("ws_CO_batch_never").key(),
            delivery: at(7),
        },
        Entry::Quarantine { rejected },
    ];

    let outcomes = store.apply(&entries).await;
    assert_eq!(
        outcomes[..6],
        [
            EntryOutcome::Applied(Applied::Record(RecordOutcome::Stored)),
            EntryOutcome::Applied(Applied::Record(RecordOutcome::Stored)),
            EntryOutcome::Applied(Applied::Record(RecordOutcome::Stored)),
            EntryOutcome::Applied(Applied::Counted),
            EntryOutcome::Applied(Applied::Record(RecordOutcome::Duplicate)),
            EntryOutcome::Applied(Applied::Counted),
        ]
    );
    assert!(
        matches!(&outcomes[6], EntryOutcome::Failed(StoreError::Rejected(reason)) if reason.contains("no stored callback")),
        "{:?}",
        outcomes[6]
    );
    assert_eq!(outcomes[7], EntryOutcome::Applied(Applied::Quarantined));

    let check = |store: MongoStore| async move {
        let stk = one(
            &store,
            "callbacks",
            doc! {"provider_transaction_id": "ws_CO_batch_1"},
        )
        .await;
        assert_eq!(stk.get_i64("deliveries").unwrap(), 2);
        assert_eq!(stk.get_array("delivery_ids").unwrap().len(), 2);
        assert!(stk.get_bool("processed").unwrap());
        let earlier = one(
            &store,
            "callbacks",
            doc! {"provider_transaction_id": "ws_CO_batch_earlier"},
        )
        .await;
        assert_eq!(earlier.get_i64("deliveries").unwrap(), 3);
        let transaction = one(
            &store,
            "transactions",
            doc! {"transaction_key": "batch-mtn-1"},
        )
        .await;
        assert_eq!(transaction.get_str("status").unwrap(), "successful");
        assert_eq!(transaction.get_array("callback_ids").unwrap().len(), 2);
        assert_eq!(
            count(
                &store,
                "callbacks",
                doc! {"provider_transaction_id": "batch-mtn-1"}
            )
            .await,
            2,
            "PENDING and SUCCESSFUL are two callbacks of one transaction"
        );
        assert_eq!(count(&store, "rejected_callbacks", doc! {}).await, 1);
    };
    check(store.clone()).await;

    // A crash before the journal removed them: the same entries again change nothing.
    let again = store.apply(&entries).await;
    assert!(again[..6]
        .iter()
        .all(|outcome| matches!(outcome, EntryOutcome::Applied(_))));
    check(store.clone()).await;
    store.database().drop().await.unwrap();
}

#[actix::test]
async fn deliveries_of_a_callback_another_instance_stored_are_counted_in_one_batch() {
    let store = mongo_store().await;
    let now = Utc::now();
    let at = |seconds: i64| Delivery::new(now + Age::seconds(seconds));
    // Behind a load balancer an operator's resends reach both instances: the other one stored the
    // callback first, and this one journaled two deliveries of it before its cache knew it.
    let callback = mtn("batch-raced", "SUCCESSFUL");
    assert_eq!(
        store
            .record(std::sync::Arc::new(callback.clone()), at(0))
            .await,
        Ok(RecordOutcome::Stored)
    );
    let entries = vec![
        Entry::record(&callback, &at(1)),
        Entry::record(&callback, &at(2)),
    ];
    let duplicates = [
        EntryOutcome::Applied(Applied::Record(RecordOutcome::Duplicate)),
        EntryOutcome::Applied(Applied::Record(RecordOutcome::Duplicate)),
    ];
    // Both are repeats of the stored document, counted on it; neither waits for anything.
    assert_eq!(store.apply(&entries).await, duplicates);
    let deliveries = |store: MongoStore| async move {
        one(
            &store,
            "callbacks",
            doc! {"provider_transaction_id": "batch-raced"},
        )
        .await
        .get_i64("deliveries")
        .unwrap()
    };
    assert_eq!(deliveries(store.clone()).await, 3);
    // Applied again (a crash before the journal removed them): counted once.
    assert_eq!(store.apply(&entries).await, duplicates);
    assert_eq!(deliveries(store.clone()).await, 3);
    store.database().drop().await.unwrap();
}

#[actix::test]
async fn a_failure_stays_with_its_transaction() {
    let store = mongo_store().await;
    let now = Utc::now();
    // A delivery count that cannot be applied (its callback was never stored), then a new status of the
    // same transaction, then another transaction: the second waits (order within a transaction), the
    // third goes ahead.
    let entries = vec![
        Entry::CountDelivery {
            key: mtn("fail-1", "PENDING").key(),
            delivery: Delivery::new(now),
        },
        Entry::record(&mtn("fail-1", "SUCCESSFUL"), &Delivery::new(now)),
        Entry::record(&mtn("fail-2", "SUCCESSFUL"), &Delivery::new(now)),
    ];
    let outcomes = store.apply(&entries).await;
    assert!(
        matches!(outcomes[0], EntryOutcome::Failed(StoreError::Rejected(_))),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(outcomes[1], EntryOutcome::Deferred);
    assert_eq!(
        outcomes[2],
        EntryOutcome::Applied(Applied::Record(RecordOutcome::Stored))
    );
    assert_eq!(
        count(
            &store,
            "callbacks",
            doc! {"provider_transaction_id": "fail-1"}
        )
        .await,
        0,
        "nothing of the waiting transaction was written"
    );
    store.database().drop().await.unwrap();
}

#[actix::test]
async fn callbacks_left_unprocessed_are_folded_by_the_sweep() {
    let store = mongo_store().await;
    // As an earlier version (or a failover that lost a derived write) would leave it: stored, not folded.
    let callback = mtn("sweep-1", "SUCCESSFUL");
    let document = mmo_actors::store::callback_document(&callback, &Delivery::new(Utc::now()));
    let mut document = document.to_document().unwrap();
    document.insert("processed", false);
    store.callbacks().insert_one(document).await.unwrap();
    assert_eq!(
        count(&store, "transactions", doc! {"transaction_key": "sweep-1"}).await,
        0
    );

    assert_eq!(store.sweep().await, Ok(1));
    let transaction = one(&store, "transactions", doc! {"transaction_key": "sweep-1"}).await;
    assert_eq!(transaction.get_str("status").unwrap(), "successful");
    let stored = one(
        &store,
        "callbacks",
        doc! {"provider_transaction_id": "sweep-1"},
    )
    .await;
    assert!(stored.get_bool("processed").unwrap());
    assert_eq!(store.sweep().await, Ok(0), "nothing left to fold");
    store.database().drop().await.unwrap();
}

/// The drain writes one event per transaction change, in the change's own write (the transaction's
/// `event`); an entry applied again — after a crash before the journal removed it, or one that cut the
/// batch between the transaction write and the callback's document — writes no second event.
#[actix::test]
async fn every_change_gets_one_event_written_with_it_and_applying_an_entry_again_adds_none() {
    let store = mongo_store().await;
    subscribe(&store, "ep_all", &[], &[]).await;
    let now = Utc::now();
    let at = |seconds: i64| Delivery::new(now + Age::seconds(seconds));
    let pending = mtn("events-1", "PENDING");
    let successful = mtn("events-1", "SUCCESSFUL");
    let first = [Entry::record(&pending, &at(1))];
    let second = [Entry::record(&successful, &at(2))];
    store.apply(&first).await;
    store.apply(&second).await;
    let events = || async {
        events_written(&store, doc! {"transaction_key": "events-1"})
            .await
            .len() as u64
    };
    assert_eq!(events().await, 2, "one event per change");
    let latest = one_event(&store, doc! {"transaction_key": "events-1", "version": 2}).await;
    assert_eq!(latest.get_str("type").unwrap(), "transaction.successful");
    let id = latest.get_str("_id").unwrap().to_owned();

    // Applying both entries again (a crash before the journal removed them) writes nothing new.
    store.apply(&first).await;
    store.apply(&second).await;
    assert_eq!(events().await, 2);

    // The latest event is the transaction's `event`, written by the change's own write.
    let transaction = one(&store, "transactions", doc! {"transaction_key": "events-1"}).await;
    let event = transaction.get_document("event").unwrap();
    assert_eq!(event.get_str("_id").unwrap(), id);
    assert!(!transaction.contains_key("outbox") && !transaction.contains_key("outbox_since"));

    // A crash after the transaction write, before the callback document was written.
    store
        .callbacks()
        .delete_one(doc! {"_id": successful.key().document_id()})
        .await
        .unwrap();
    let outcomes = store.apply(&second).await;
    assert_eq!(
        outcomes,
        [EntryOutcome::Applied(Applied::Record(
            RecordOutcome::Stored
        ))]
    );
    assert_eq!(events().await, 2);
    let again = one_event(&store, doc! {"_id": &id}).await;
    assert_eq!(again.get_i64("version").unwrap(), 2);
    assert_eq!(again.get_str("type").unwrap(), "transaction.successful");
    let payload: serde_json::Value =
        serde_json::from_str(again.get_str("payload").unwrap()).unwrap();
    assert_eq!(payload["data"]["status"], "successful");
    assert_eq!(payload["data"]["version"], 2);

    // A repeat of a final status that changes nothing (pending after successful) bumps no event.
    let late = mtn("events-1", "PENDING");
    store.apply(&[Entry::record(&late, &at(3))]).await;
    assert_eq!(events().await, 2);
}

/// The dispatcher's look for due events is served by the partial index of pending events, never by a
/// scan of every event kept (a scan per round made delivery 5× slower on 300,000 events).
#[actix::test]
async fn the_dispatchers_due_events_come_from_the_pending_index() {
    let store = mongo_store().await;
    store.ensure_indexes().await.unwrap();
    let filter = mmo_actors::store::events::EventLog::due_filter(Utc::now());
    let explained = store
        .database()
        .run_command(doc! {
            "explain": {"find": "events", "filter": filter, "sort": {"due_at": 1}, "limit": 50},
            "verbosity": "queryPlanner",
        })
        .await
        .unwrap();
    let winning = explained
        .get_document("queryPlanner")
        .and_then(|planner| planner.get_document("winningPlan"))
        .unwrap()
        .to_string();
    assert!(
        winning.contains("\"due\"") && !winning.contains("COLLSCAN"),
        "{winning}"
    );
}

/// A repeat whose body disagrees with the stored callback flags its transaction: the first such conflict
/// is an event of its own (`transaction.conflict`), a second one is not.
#[actix::test]
async fn a_first_disagreement_is_a_conflict_event() {
    let store = mongo_store().await;
    subscribe(&store, "ep_all", &[], &[]).await;
    let now = Utc::now();
    let at = |seconds: i64| Delivery::new(now + Age::seconds(seconds));
    let first = mtn("events-conflict", "SUCCESSFUL");
    let mut altered = first.clone();
    altered.amount = Some(rust_decimal::Decimal::new(99_999, 2));
    store.apply(&[Entry::record(&first, &at(1))]).await;
    for (seconds, expected) in [(2, 2), (3, 2)] {
        let outcomes = store.apply(&[Entry::record(&altered, &at(seconds))]).await;
        assert_eq!(
            outcomes,
            [EntryOutcome::Applied(Applied::Record(
                RecordOutcome::Disagreeing
            ))]
        );
        let events = events_written(&store, doc! {"transaction_key": "events-conflict"})
            .await
            .len() as u64;
        assert_eq!(events, expected);
    }
    let conflict = one_event(
        &store,
        doc! {"transaction_key": "events-conflict", "type": "transaction.conflict"},
    )
    .await;
    assert_eq!(conflict.get_i64("version").unwrap(), 2);
}

/// Events are written only for the enabled endpoints that want them, with their targets set: with no
/// endpoint a change writes no event at all; an endpoint's types and providers choose its events.
#[actix::test]
async fn events_are_written_only_for_the_endpoints_that_want_them() {
    let store = mongo_store().await;
    let now = Utc::now();
    let at = |seconds: i64| Delivery::new(now + Age::seconds(seconds));
    let events = |key: &'static str| {
        let store = &store;
        async move {
            events_written(store, doc! {"transaction_key": key})
                .await
                .len() as u64
        }
    };

    store
        .apply(&[Entry::record(&mtn("routes-none", "PENDING"), &at(1))])
        .await;
    assert_eq!(events("routes-none").await, 0, "no endpoint, no event");

    subscribe(&store, "ep_final", &["transaction.successful"], &[]).await;
    subscribe(&store, "ep_mpesa", &[], &["mpesa"]).await;
    subscribe(&store, "ep_all", &[], &[]).await;
    store
        .database()
        .collection::<Document>("endpoints")
        .insert_one(
            doc! {"_id": "ep_off", "url": "http://127.0.0.1:9/", "enabled": false, "secrets": []},
        )
        .await
        .unwrap();
    store
        .apply(&[Entry::record(&mtn("routes-1", "PENDING"), &at(2))])
        .await;
    store
        .apply(&[Entry::record(&mtn("routes-1", "SUCCESSFUL"), &at(3))])
        .await;
    let targets = |event: &Document| -> Vec<String> {
        event
            .get_array("targets")
            .unwrap()
            .iter()
            .map(|target| {
                let target = target.as_document().unwrap();
                assert_eq!(target.get_str("status").unwrap(), "pending");
                target.get_str("endpoint").unwrap().to_owned()
            })
            .collect()
    };
    let pending = one_event(&store, doc! {"transaction_key": "routes-1", "version": 1}).await;
    assert_eq!(targets(&pending), ["ep_all"]);
    let successful = one_event(&store, doc! {"transaction_key": "routes-1", "version": 2}).await;
    assert_eq!(targets(&successful), ["ep_all", "ep_final"]);

    // Once no enabled endpoint is left, changes write no event again.
    store
        .database()
        .collection::<Document>("endpoints")
        .update_many(doc! {}, doc! {"$set": {"enabled": false}})
        .await
        .unwrap();
    store
        .apply(&[Entry::record(&mtn("routes-2", "SUCCESSFUL"), &at(4))])
        .await;
    assert_eq!(events("routes-2").await, 0);
}

/// The drain's real path — small pipelined batches of the journal's entries into MongoDB — keeps one
/// transaction's changes in journal order, a contradicting repeat (`Disagreeing`) among them: its events
/// are versions 1, 2, 3 in the order the callbacks were journaled, and version 2 carries the first
/// successful callback's amount, not the contradicting one's.
#[actix::test]
async fn the_drain_applies_a_transactions_entries_in_journal_order_through_real_batches() {
    use std::sync::Arc;

    use actix::Actor;
    use mmo_actors::drain::{Drain, DrainSettings};
    use mmo_actors::journal::Journal;

    let store = mongo_store().await;
    subscribe(&store, "ep_all", &[], &[]).await;
    let dir = std::env::temp_dir().join(format!(
        "mmo-batches-journal-{}",
        mongodb::bson::oid::ObjectId::new().to_hex()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = Journal::open(&dir, 1 << 30).unwrap();

    let successful = mtn("ordered-real-1", "SUCCESSFUL");
    let mut contradicting = successful.clone();
    contradicting.amount = Some(rust_decimal::Decimal::new(99_999, 2));
    // Other transactions in between, so that batches of two cut the sequence in different places.
    let journaled = [
        mtn("ordered-real-1", "PENDING"),
        mtn("ordered-real-other-1", "SUCCESSFUL"),
        successful.clone(),
        mtn("ordered-real-other-2", "FAILED"),
        mtn("ordered-real-other-3", "PENDING"),
        contradicting,
    ];
    let now = Utc::now();
    for (index, callback) in journaled.iter().enumerate() {
        let delivery = Delivery::new(now + Age::seconds(index as i64));
        journal
            .append(&Entry::record(callback, &delivery))
            .await
            .unwrap();
    }
    let settings = DrainSettings {
        batch: 2,
        pipeline: 2,
        ..DrainSettings::default()
    };
    Drain::new(Arc::clone(&journal), Arc::new(store.clone()), settings).start();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while journal.backlog().entries > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the journal never drained"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let mut events = events_written(&store, doc! {"transaction_key": "ordered-real-1"}).await;
    events.sort_by_key(|event| event.get_i64("version").unwrap());
    let types: Vec<(i64, &str)> = events
        .iter()
        .map(|event| {
            (
                event.get_i64("version").unwrap(),
                event.get_str("type").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            (1, "transaction.pending"),
            (2, "transaction.successful"),
            (3, "transaction.conflict"),
        ]
    );
    let second: serde_json::Value =
        serde_json::from_str(events[1].get_str("payload").unwrap()).unwrap();
    assert_eq!(
        second["data"]["amount"],
        successful.amount.unwrap().to_string(),
        "the first successful callback, not the contradicting one"
    );
    let transaction = one(
        &store,
        "transactions",
        doc! {"transaction_key": "ordered-real-1"},
    )
    .await;
    assert_eq!(transaction.get_str("status").unwrap(), "successful");
    assert_eq!(transaction.get_i64("conflict_count").unwrap(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The catch-up after the feed's history was lost reads the documents: the last event of every
/// transaction whose event was written since a time, a page at a time in `_id` order.
#[actix::test]
async fn the_catch_up_reads_each_transactions_last_event_written_since_a_time() {
    use mmo_actors::store::events::feed::Feed;
    let store = mongo_store().await;
    subscribe(&store, "ep_all", &[], &[]).await;
    let before = Utc::now() - Age::seconds(1);
    let at = |seconds: i64| Delivery::new(Utc::now() + Age::seconds(seconds));
    // Two batches: the second changes the first transaction again (version 2).
    store
        .apply(&[
            Entry::record(&mtn("caught-up-1", "PENDING"), &at(1)),
            Entry::record(&mtn("caught-up-2", "PENDING"), &at(2)),
        ])
        .await;
    store
        .apply(&[Entry::record(&mtn("caught-up-1", "SUCCESSFUL"), &at(3))])
        .await;
    let feed = Feed::new(store.database());
    let first = feed.written_since(before, None, 1).await.unwrap();
    assert_eq!(first.len(), 1, "a page of one");
    let rest = feed
        .written_since(before, Some(&first[0].transaction), 10)
        .await
        .unwrap();
    let mut found: Vec<(String, i64, String)> = first
        .iter()
        .chain(&rest)
        .map(|change| {
            (
                change.event.get_str("transaction_key").unwrap().to_owned(),
                change.event.get_i64("version").unwrap(),
                change.event.get_str("type").unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (
                "caught-up-1".to_owned(),
                2,
                "transaction.successful".to_owned()
            ),
            (
                "caught-up-2".to_owned(),
                1,
                "transaction.pending".to_owned()
            ),
        ],
        "each transaction's last event, once"
    );
    let later = feed
        .written_since(Utc::now() + Age::seconds(60), None, 10)
        .await
        .unwrap();
    assert!(later.is_empty(), "nothing was written after now");
    store.database().drop().await.unwrap();
}
