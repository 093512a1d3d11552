//! Where callbacks are kept: the [`CallbackStore`] trait, its MongoDB implementation (the real one) and an
//! in-memory implementation for isolating actors in tests.

mod document;
mod memory;
mod mongo;
mod transactions;

pub use document::{callback_document, json_to_bson};
pub use memory::InMemoryStore;
pub use mongo::{MongoSettings, MongoStore};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::callback::{Callback, CallbackKey};

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
}

/// A body that was not accepted (unparseable or unauthenticated), kept for audit in `rejected_callbacks`.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedCallback {
    pub raw: Vec<u8>,
    pub path: String,
    pub reason: String,
    pub request_id: String,
    pub received_at: DateTime<Utc>,
}

/// Storage failures. Every variant means "not stored": the caller must not acknowledge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("storage rejected the document: {0}")]
    Rejected(String),
}

/// Durable storage for callbacks. Implementations must be safe for concurrent use by many actors and, for
/// MongoDB, by many service instances: idempotency comes from the store, not from memory.
pub trait CallbackStore: Send + Sync + 'static {
    /// Stores a callback once per [`CallbackKey`]; a repeat counts a delivery. Resolves only when durable.
    fn record(
        &self,
        callback: Arc<Callback>,
        received_at: DateTime<Utc>,
    ) -> BoxFuture<'static, Result<RecordOutcome, StoreError>>;

    /// Counts one more delivery of a callback already stored.
    fn count_delivery(
        &self,
        key: CallbackKey,
        received_at: DateTime<Utc>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Keeps a rejected body for audit.
    fn quarantine(
        &self,
        rejected: Arc<RejectedCallback>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;
}
