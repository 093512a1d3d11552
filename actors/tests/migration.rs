//! Documents written by versions that gave callbacks and transactions an ObjectId `_id` (and kept them
//! single with a second unique index) are rewritten, at the first connection of this version, with their
//! identity as `_id`; and they go on working: repeats are counted on them, re-applied deliveries are
//! recognised, entries those versions journaled are stored in today's shape.

mod support;

use std::sync::Arc;

use chrono::{Duration as Age, Utc};
use mmo_actors::callback::Delivery;
use mmo_actors::journal::Entry;
use mmo_actors::store::{callback_document, Applied, EntryOutcome, MongoStore};
use mmo_actors::{Callback, CallbackStore, RecordOutcome};
use mongodb::bson::{doc, oid::ObjectId, Bson, Document, RawDocumentBuf};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;
use support::{mongo_store, mongo_store_on, mtn, stk};

/// A callback's document as earlier versions wrote it: today's fields, the delivery id as `_id`.
fn old_callback(callback: &Callback, delivery: &Delivery) -> Document {
    let mut document = callback_document(callback, delivery).to_document().unwrap();
    document.remove("delivery_id");
    document.insert("_id", delivery.id);
    document
}

async fn ids_of(store: &MongoStore, collection: &str) -> Vec<Bson> {
    let mut cursor = store
        .database()
        .collection::<Document>(collection)
        .find(doc! {})
        .await
        .unwrap();
    let mut ids = Vec::new();
    while cursor.advance().await.unwrap() {
        ids.push(
            cursor
                .deserialize_current()
                .unwrap()
                .get("_id")
                .unwrap()
                .clone(),
        );
    }
    ids
}

async fn index_names(store: &MongoStore, collection: &str) -> Vec<String> {
    store
        .database()
        .collection::<Document>(collection)
        .list_index_names()
        .await
        .unwrap()
}

#[actix::test]
async fn documents_of_earlier_versions_get_their_identity_as_id_and_keep_working() {
    // What an earlier version left: two callbacks of one MTN transaction, the transaction listing them
    // by delivery id, and the identity indexes that kept them single.
    let old = mongo_store().await;
    let database = old.database().clone();
    let now = Utc::now();
    let pending = mtn("migrated-1", "PENDING");
    let successful = mtn("migrated-1", "SUCCESSFUL");
    let (first, second) = (
        Delivery::new(now - Age::seconds(60)),
        Delivery::new(now - Age::seconds(30)),
    );
    let callbacks = database.collection::<Document>("callbacks");
    let transactions = database.collection::<Document>("transactions");
    callbacks
        .insert_many([
            old_callback(&pending, &first),
            old_callback(&successful, &second),
        ])
        .await
        .unwrap();
    let flow = pending.flow().unwrap();
    transactions
        .insert_one(doc! {
            "_id": ObjectId::new(),
            "provider": pending.provider,
            "flow": flow,
            "transaction_key": "migrated-1",
            "status": "successful",
            "callback_ids": [first.id, second.id],
            "conflict": false,
            "conflicts": [],
            "conflict_count": 0_i64,
            "linked_transactions": [],
            "version": 2_i64,
        })
        .await
        .unwrap();
    let unique = |name: &str| {
        IndexOptions::builder()
            .unique(true)
            .name(name.to_owned())
            .build()
    };
    callbacks
        .create_index(
            IndexModel::builder()
                .keys(doc! {"provider": 1, "callback_type": 1, "provider_transaction_id": 1, "status": 1})
                .options(unique("callback_identity"))
                .build(),
        )
        .await
        .unwrap();
    transactions
        .create_index(
            IndexModel::builder()
                .keys(doc! {"provider": 1, "flow": 1, "transaction_key": 1})
                .options(unique("transaction_identity"))
                .build(),
        )
        .await
        .unwrap();

    // This version starts on that database.
    let store = mongo_store_on(database.name()).await;
    store.ensure_indexes().await.unwrap();

    let (pending_id, successful_id) = (pending.key().document_id(), successful.key().document_id());
    let mut stored = ids_of(&store, "callbacks").await;
    stored.sort_by_key(|id| id.to_string());
    assert_eq!(
        stored,
        [
            Bson::String(pending_id.clone()),
            Bson::String(successful_id.clone())
        ]
    );
    let migrated = callbacks
        .find_one(doc! {"_id": &pending_id})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(migrated.get_object_id("delivery_id").unwrap(), first.id);
    assert_eq!(
        migrated.get_str("provider_transaction_id").unwrap(),
        "migrated-1"
    );
    assert!(migrated.get_document("callback_data").is_ok());

    let transaction_id = mmo_actors::store::transaction_id(pending.provider, flow, "migrated-1");
    assert_eq!(
        ids_of(&store, "transactions").await,
        [Bson::String(transaction_id.clone())]
    );
    let transaction = transactions
        .find_one(doc! {"_id": &transaction_id})
        .await
        .unwrap()
        .unwrap();
    let mut listed: Vec<&str> = transaction
        .get_array("callback_ids")
        .unwrap()
        .iter()
        .filter_map(Bson::as_str)
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, [pending_id.as_str(), successful_id.as_str()]);
    assert_eq!(transaction.get_i64("version").unwrap(), 2);

    for (collection, replaced) in [
        ("callbacks", "callback_identity"),
        ("transactions", "transaction_identity"),
        ("callbacks", "migration_delivery_id"),
    ] {
        assert!(
            !index_names(&store, collection)
                .await
                .contains(&replaced.to_owned()),
            "{collection} still has {replaced}"
        );
    }

    // The migrated documents work as today's: a new delivery is a repeat counted on them; the delivery
    // that stored one, applied again, is recognised and not counted twice; a new status folds in.
    assert_eq!(
        store
            .record(Arc::new(successful.clone()), Delivery::new(now))
            .await,
        Ok(RecordOutcome::Duplicate)
    );
    assert_eq!(
        store.record(Arc::new(pending.clone()), first.clone()).await,
        Ok(RecordOutcome::Stored)
    );
    let counted = |id: String| {
        let callbacks = callbacks.clone();
        async move {
            callbacks
                .find_one(doc! {"_id": id})
                .await
                .unwrap()
                .unwrap()
                .get_i64("deliveries")
                .unwrap()
        }
    };
    assert_eq!(counted(successful_id.clone()).await, 2);
    assert_eq!(counted(pending_id.clone()).await, 1);

    // Starting again finds nothing left to rewrite and changes nothing.
    let again = mongo_store_on(database.name()).await;
    again.ensure_indexes().await.unwrap();
    assert_eq!(callbacks.count_documents(doc! {}).await.unwrap(), 2);
    assert_eq!(transactions.count_documents(doc! {}).await.unwrap(), 1);
}

#[actix::test]
async fn an_entry_journaled_by_an_earlier_version_is_stored_in_todays_shape() {
    let store = mongo_store().await;
    let callback = stk("ws_CO_journaled_before");
    let delivery = Delivery::new(Utc::now());
    let journaled = RawDocumentBuf::from_document(&old_callback(&callback, &delivery)).unwrap();
    let entries = [
        Entry::Record {
            document: journaled,
        },
        Entry::CountDelivery {
            key: callback.key(),
            delivery: Delivery::new(Utc::now()),
        },
    ];
    assert_eq!(
        store.apply(&entries).await,
        [
            EntryOutcome::Applied(Applied::Record(RecordOutcome::Stored)),
            EntryOutcome::Applied(Applied::Counted),
        ]
    );
    let stored = store
        .callbacks()
        .find_one(doc! {"_id": callback.key().document_id()})
        .await
        .unwrap()
        .expect("stored under its identity");
    assert_eq!(stored.get_object_id("delivery_id").unwrap(), delivery.id);
    assert_eq!(stored.get_i64("deliveries").unwrap(), 2);
    // Applied again (a crash before the journal dropped it): recognised as its own document.
    assert_eq!(
        store.apply(&entries[..1]).await,
        [EntryOutcome::Applied(Applied::Record(
            RecordOutcome::Stored
        ))]
    );
    assert_eq!(store.callbacks().count_documents(doc! {}).await.unwrap(), 1);
}

/// The reconciler's documents of versions before 0.3.0 — an ObjectId `_id`, and unique identity indexes no
/// shard key could prefix — are rewritten with their identity as `_id`: the expectation keeps the id the
/// API showed, registering it again finds it, and the open item is still claimed and written by `_id`.
#[actix::test]
async fn expectations_and_work_items_of_earlier_versions_get_their_identity_as_id() {
    let old = mongo_store().await;
    let database = old.database().clone();
    let now = Utc::now();
    let shown_id = ObjectId::new();
    let expectations = database.collection::<Document>("expectations");
    let items = database.collection::<Document>("reconciliations");
    let unique = |keys: Document, name: &str| {
        IndexModel::builder()
            .keys(keys)
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name(name.to_owned())
                    .build(),
            )
            .build()
    };
    expectations
        .create_index(unique(
            doc! {"provider": 1, "callback_type": 1, "key": 1},
            "expectation_identity",
        ))
        .await
        .unwrap();
    items
        .create_index(unique(
            doc! {"provider": 1, "flow": 1, "key": 1},
            "reconciliation_identity",
        ))
        .await
        .unwrap();
    let due = mongodb::bson::DateTime::from_chrono(now - Age::seconds(5));
    expectations
        .insert_one(doc! {
            "_id": shown_id, "provider": "mtn_mobile_money", "callback_type": "collection",
            "flow": "collection", "key": "migrated-exp", "amount": mongodb::bson::Decimal128::from_bytes([0; 16]),
            "currency": "UGX", "msisdn": Bson::Null, "expected_within_secs": 60_i64,
            "created_at": due, "due_at": due,
        })
        .await
        .unwrap();
    items
        .insert_one(doc! {
            "_id": ObjectId::new(), "provider": "mtn_mobile_money", "flow": "collection", "key": "migrated-exp",
            "state": "open", "due_at": due, "attempts": 0_i32, "opened_at": due,
            "give_up_at": mongodb::bson::DateTime::from_chrono(now + Age::hours(1)),
            "claim": Bson::Null, "reasons": ["expectation"],
        })
        .await
        .unwrap();

    // This version's first connection.
    let store = mongo_store_on(database.name()).await;
    store.ensure_indexes().await.unwrap();
    assert_eq!(
        ids_of(&store, "expectations").await,
        [Bson::String(
            "mtn_mobile_money|collection|migrated-exp".into()
        )]
    );
    assert_eq!(
        ids_of(&store, "reconciliations").await,
        [Bson::String(
            "mtn_mobile_money|collection|migrated-exp".into()
        )]
    );
    assert!(!index_names(&store, "expectations")
        .await
        .contains(&"expectation_identity".to_owned()));
    assert!(!index_names(&store, "reconciliations")
        .await
        .contains(&"reconciliation_identity".to_owned()));
    let migrated = expectations.find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(migrated.get_object_id("expectation_id").unwrap(), shown_id);

    // Registering it again finds the migrated one; its item is claimed and finished by `_id`.
    let registered = store
        .reconciliations()
        .expect(
            &mmo_actors::store::Expectation {
                provider: "mtn_mobile_money",
                callback_type: mmo_actors::CallbackType::Collection,
                key: "migrated-exp".into(),
                amount: rust_decimal::Decimal::ONE,
                currency: "UGX".into(),
                msisdn: None,
                expected_within: std::time::Duration::from_secs(60),
            },
            now,
            std::time::Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert!(!registered.created);
    assert_eq!(
        registered.document.get_object_id("expectation_id").unwrap(),
        shown_id
    );
    let claimed = store
        .reconciliations()
        .claim("mtn_mobile_money", std::time::Duration::from_secs(30), &[])
        .await
        .unwrap()
        .expect("the migrated item is claimed");
    assert_eq!(claimed.id, "mtn_mobile_money|collection|migrated-exp");
    assert_eq!(claimed.reasons, ["expectation"]);
}
