//! The collections the store writes to, shared by the MongoDB store and its batch writer, and what they
//! share: timing writes, the indexes behind the query API.

use std::time::Duration;

use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};

use super::events::EventLog;
use super::reconciliations::Reconciliations;
use super::transactions::Transactions;

pub(super) struct Collections {
    pub database: Database,
    pub callbacks: Collection<Document>,
    /// The same collection, for inserting documents journaled as raw BSON.
    pub raw_callbacks: Collection<RawDocumentBuf>,
    pub rejected: Collection<Document>,
    pub transactions: Transactions,
    /// The outbox of transaction changes (see `events.rs`).
    pub events: EventLog,
    pub reconciliations: Reconciliations,
    /// How long rejected bodies of unauthenticated senders are kept.
    pub unauthenticated_retention: Duration,
}

impl Collections {
    pub fn new(
        database: Database,
        unauthenticated_retention: Duration,
        reconciliation_retention: Duration,
        confirm_by_query: &[&'static str],
    ) -> Self {
        let callbacks: Collection<Document> = database.collection("callbacks");
        let events = EventLog::new(&database);
        Self {
            raw_callbacks: callbacks.clone_with_type(),
            callbacks,
            rejected: database.collection("rejected_callbacks"),
            transactions: Transactions::new(
                database.collection("transactions"),
                events.clone(),
                confirm_by_query,
            ),
            reconciliations: Reconciliations::new(
                &database,
                events.clone(),
                reconciliation_retention,
            ),
            events,
            database,
            unauthenticated_retention,
        }
    }
}

/// Runs a write, recording how long MongoDB took in `mmo_mongodb_write_duration_seconds{collection}`.
pub(super) async fn timed<T>(
    collection: &'static str,
    write: impl std::future::IntoFuture<Output = T>,
) -> T {
    let started = std::time::Instant::now();
    let result = write.await;
    metrics::histogram!("mmo_mongodb_write_duration_seconds", "collection" => collection)
        .record(started.elapsed().as_secs_f64());
    result
}

/// Listing newest first, by `field` then `_id` (keyset pagination), scanned backwards.
pub(super) fn newest(field: &str) -> IndexModel {
    IndexModel::builder()
        .keys(doc! {field: 1, "_id": 1})
        .options(IndexOptions::builder().name("newest".to_owned()).build())
        .build()
}

/// Finding by MSISDN, newest first; only documents that have one.
pub(super) fn by_msisdn(field: &str) -> IndexModel {
    partial(
        doc! {"msisdn": 1, field: 1, "_id": 1},
        "by_msisdn",
        doc! {"msisdn": {"$type": "string"}},
    )
}

/// An index named `name` holding only the documents that match `filter`: an index entry costs every
/// insert and a share of MongoDB's cache, so documents no query looks for stay out.
pub(super) fn partial(keys: Document, name: &str, filter: Document) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .name(name.to_owned())
                .partial_filter_expression(filter)
                .build(),
        )
        .build()
}
