//! Where callbacks are kept: the [`CallbackStore`] trait, its MongoDB implementation (the real one) and an
//! in-memory implementation for isolating actors in tests.

mod document;
mod journaled;
mod memory;
mod mongo;
mod transactions;

pub use document::{callback_document, json_to_bson};
pub use journaled::JournaledStore;
pub use memory::InMemoryStore;
pub use mongo::{MongoSettings, MongoStore};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::callback::{Callback, CallbackKey, Delivery};

/// What happened to a callback handed to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// First delivery: a new document was written.
    Stored,
    /// A repeat of a stored callback: its delivery was counted, nothing else changed.
    Duplicate,
    /// A repeat (same key and status) whose body disagrees with the stored callback: its delivery was
    /// counted and its payload kept in the transaction's conflict list.
    Disagreeing,
    /// Written to the local journal (fsync'd); the journal's drain delivers it to MongoDB.
    Journaled,
}

/// A body that was not accepted (unparseable or unauthenticated), kept for audit in `rejected_callbacks`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RejectedCallback {
    /// Unique per rejection, so that keeping it twice (a re-drained journal entry) keeps it once.
    pub id: String,
    pub raw: Vec<u8>,
    pub path: String,
    pub reason: String,
    pub request_id: String,
    pub received_at: DateTime<Utc>,
}

/// Storage failures. Every variant means "not stored": the caller must not acknowledge.
impl RejectedCallback {
    pub fn new(
        raw: Vec<u8>,
        path: String,
        reason: String,
        request_id: String,
        received_at: DateTime<Utc>,
    ) -> Self {
        let id = mongodb::bson::oid::ObjectId::new().to_hex();
        Self {
            id,
            raw,
            path,
            reason,
            request_id,
            received_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("storage rejected the document: {0}")]
    Rejected(String),
    #[error("local journal full: {0}")]
    Full(String),
}

/// Durable storage for callbacks. Implementations must be safe for concurrent use by many actors and, for
/// MongoDB, by many service instances: idempotency comes from the store, not from memory.
pub trait CallbackStore: Send + Sync + 'static {
    /// Stores a callback once per [`CallbackKey`]; a repeat counts a delivery (once per delivery id, so a
    /// retried or re-drained delivery is harmless). Resolves only when durable.
    fn record(
        &self,
        callback: Arc<Callback>,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<RecordOutcome, StoreError>>;

    /// Counts one more delivery of a callback already stored (once per delivery id).
    fn count_delivery(
        &self,
        key: CallbackKey,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Keeps a rejected body for audit.
    fn quarantine(
        &self,
        rejected: Arc<RejectedCallback>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;
}
