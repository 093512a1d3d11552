//! Test doubles and payload helpers shared by the actor-level test files.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use mmo_actors::callback::{CallbackKey, Delivery};
use mmo_actors::providers::by_slug;
use mmo_actors::providers::fixtures::MpesaCallbackFixtures;
use mmo_actors::store::InMemoryStore;
use mmo_actors::{
    Callback, CallbackStore, CallbackType, RecordOutcome, RejectedCallback, StoreError,
};

/// A successful STK result with this `CheckoutRequestID`, parsed.
pub fn stk(checkout_request_id: &str) -> Callback {
    let payload = MpesaCallbackFixtures::stk_push_success_for(checkout_request_id, "RCPT000001");
    by_slug("mpesa")
        .unwrap()
        .parse(CallbackType::StkPush, payload.to_string().as_bytes())
        .unwrap()
}

/// Panics on a poisoned key (as a bug in a driver or a store might), stores everything else.
#[derive(Default)]
pub struct PoisonedStore {
    pub inner: InMemoryStore,
    pub panics: AtomicUsize,
}

impl CallbackStore for PoisonedStore {
    fn record(
        &self,
        callback: Arc<Callback>,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<RecordOutcome, StoreError>> {
        if callback.provider_transaction_id == "poison" {
            self.panics.fetch_add(1, Ordering::SeqCst);
            panic!("poisoned callback");
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

/// A MongoDB store on a database of its own, on the MongoDB that scripts/test.sh started.
pub async fn mongo_store() -> mmo_actors::store::MongoStore {
    mongo_store_on(&format!(
        "actors_{}",
        mongodb::bson::oid::ObjectId::new().to_hex()
    ))
    .await
}

/// A MongoDB store on `database` (another instance of the service sharing it, or a restart).
pub async fn mongo_store_on(database: &str) -> mmo_actors::store::MongoStore {
    let uri = std::env::var("MMO_TEST_MONGODB_URI")
        .expect("MMO_TEST_MONGODB_URI: run the tests with scripts/test.sh");
    mmo_actors::store::MongoStore::connect(&mmo_actors::store::MongoSettings {
        uri,
        database: database.to_owned(),
        server_selection_timeout: std::time::Duration::from_secs(5),
        connect_timeout: std::time::Duration::from_secs(5),
        operation_timeout: std::time::Duration::from_secs(10),
        unauthenticated_retention: std::time::Duration::from_secs(86_400),
        reconciliation_retention: std::time::Duration::from_secs(90 * 86_400),
        confirm_by_query: Vec::new(),
    })
    .await
    .unwrap()
}

/// Registers an enabled endpoint `id` wanting these event types and providers (empty: all), as the
/// endpoints API stores it: events are written only for changes some endpoint wants.
pub async fn subscribe(
    store: &mmo_actors::store::MongoStore,
    id: &str,
    event_types: &[&str],
    providers: &[&str],
) {
    store
        .database()
        .collection::<mongodb::bson::Document>("endpoints")
        .insert_one(mongodb::bson::doc! {
            "_id": id,
            "url": "http://127.0.0.1:9/",
            "enabled": true,
            "event_types": event_types,
            "providers": providers,
            "secrets": [],
        })
        .await
        .unwrap();
}

/// An MTN collection callback for `reference` with `status`, parsed.
pub fn mtn(reference: &str, status: &str) -> Callback {
    let payload =
        mmo_actors::providers::fixtures::MTNMoMoCallbackFixtures::collection_for(reference, status);
    by_slug("mtn")
        .unwrap()
        .parse(CallbackType::Collection, payload.to_string().as_bytes())
        .unwrap()
}
