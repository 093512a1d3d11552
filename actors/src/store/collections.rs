//! The collections the store writes to, shared by the MongoDB store and its batch writer.

use std::time::Duration;

use mongodb::bson::{Document, RawDocumentBuf};
use mongodb::{Collection, Database};

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
