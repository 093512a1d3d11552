//! The collections the store writes to, shared by the MongoDB store and its batch writer.

use std::time::Duration;

use mongodb::bson::{Document, RawDocumentBuf};
use mongodb::{Collection, Database};

use super::transactions::Transactions;

pub(super) struct Collections {
    pub database: Database,
    pub callbacks: Collection<Document>,
    /// The same collection, for inserting documents journaled as raw BSON.
    pub raw_callbacks: Collection<RawDocumentBuf>,
    pub rejected: Collection<Document>,
    pub transactions: Transactions,
    /// How long rejected bodies of unauthenticated senders are kept.
    pub unauthenticated_retention: Duration,
}

impl Collections {
    pub fn new(database: Database, unauthenticated_retention: Duration) -> Self {
        let callbacks: Collection<Document> = database.collection("callbacks");
        Self {
            raw_callbacks: callbacks.clone_with_type(),
            callbacks,
            rejected: database.collection("rejected_callbacks"),
            transactions: Transactions::new(database.collection("transactions")),
            database,
            unauthenticated_retention,
        }
    }
}
