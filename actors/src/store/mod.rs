//! Where callbacks are kept: the [`CallbackStore`] trait, its MongoDB implementation (the real one), the
//! journaled store the actors write to in service, and an in-memory implementation for isolating actors
//! in tests.

mod batch;
mod collections;
mod document;
mod entry;
pub mod errors;
pub mod events;
mod indexes;
mod memory;
mod migration;
mod mongo;
pub mod reconciliations;
pub mod sharding;
mod timing;
mod transactions;

pub use document::{
    bson_time, callback_document, json_to_bson, payload_json, payload_of, recorded,
    stored_callback, texts_of,
};
pub use entry::{Entry, EntryRef};
pub use memory::InMemoryStore;
pub use mongo::{MongoSettings, MongoStore};
pub use reconciliations::{Expectation, Reconciliations, WorkItem};
pub use transactions::{transaction_id, RECEIPT_LINKS};

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use mongodb::bson::oid::ObjectId;

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

impl RecordOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "repeat",
            Self::Disagreeing => "conflict",
            Self::Journaled => "journaled",
        }
    }
}

/// A body that was not accepted (unparseable or unauthenticated), kept for audit in `rejected_callbacks`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RejectedCallback {
    /// Unique per rejection, so that keeping it twice (a re-drained journal entry) keeps it once.
    pub id: ObjectId,
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    pub path: String,
    pub reason: String,
    pub request_id: String,
    pub received_at: DateTime<Utc>,
    /// Whether the sender proved who it is: unauthenticated entries expire, authenticated ones never do.
    #[serde(default = "authenticated_by_default")]
    pub authenticated: bool,
    /// The sender's address (through trusted proxies), for audit.
    #[serde(default)]
    pub client: Option<std::net::IpAddr>,
    /// The endpoint it was sent to: stored provider name and callback type.
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub callback_type: Option<String>,
    /// What an unauthenticated sender presented, kept so that a replay can check it again under
    /// today's configuration (a corrected secret, a new source range). Never a secret itself.
    #[serde(default)]
    pub evidence: Option<Evidence>,
    /// Only the beginning of the body was kept (an oversized body, an anonymous sender's): it cannot be
    /// replayed.
    #[serde(default)]
    pub truncated: bool,
    /// The body is a payload the service parsed and journaled (a journal entry that kept failing):
    /// pseudonymized already, so a replay takes it as it is.
    #[serde(default)]
    pub parsed: bool,
}

/// The proofs a refused request presented, as a replay needs them: the signature header as sent (not
/// secret: it is a MAC of the body), and SHA-256 digests (hex) of the bearer and URL tokens, which can be
/// compared with the configured tokens' digests but never give the tokens back.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_token_sha256: Option<String>,
}

fn authenticated_by_default() -> bool {
    true
}

impl RejectedCallback {
    pub fn new(
        raw: Vec<u8>,
        path: String,
        reason: String,
        request_id: String,
        received_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: ObjectId::new(),
            raw,
            path,
            reason,
            request_id,
            received_at,
            authenticated: true,
            client: None,
            provider: None,
            callback_type: None,
            evidence: None,
            truncated: false,
            parsed: false,
        }
    }

    /// The endpoint it was sent to.
    pub fn for_endpoint(mut self, provider: &str, callback_type: &str) -> Self {
        self.provider = Some(provider.to_owned());
        self.callback_type = Some(callback_type.to_owned());
        self
    }

    /// A rejection of a sender that did not prove who it is.
    pub fn unauthenticated(mut self) -> Self {
        self.authenticated = false;
        self
    }

    /// What the sender presented to authenticate.
    pub fn with_evidence(mut self, evidence: Evidence) -> Self {
        self.evidence = Some(evidence);
        self
    }

    /// Only the beginning of the body is kept.
    pub fn truncated(mut self) -> Self {
        self.truncated = true;
        self
    }

    /// The sender's address.
    pub fn from_client(mut self, client: std::net::IpAddr) -> Self {
        self.client = Some(client);
        self
    }
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
    #[error("local journal full: {0}")]
    Full(String),
}

impl StoreError {
    /// Whether retrying later may succeed without anything changing about the entry (MongoDB down, an
    /// election, a timeout) — as opposed to a failure that counts towards quarantine.
    pub fn is_unavailability(&self) -> bool {
        !matches!(self, Self::Rejected(_))
    }
}

/// What applying one journal entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Record(RecordOutcome),
    Counted,
    Quarantined,
}

/// The outcome of one entry of a batch handed to [`CallbackStore::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    Applied(Applied),
    Failed(StoreError),
    /// Not attempted: an earlier entry of the same group failed in this batch, and order within a group
    /// is kept.
    Deferred,
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

    /// Applies journal entries, in order within each group (see [`Entry::group`]); one outcome per
    /// entry. Every entry must be idempotent: a batch may be applied again after a crash.
    ///
    /// The default applies entries one at a time; the MongoDB store writes whole batches per operation.
    fn apply<'a>(&'a self, entries: &'a [Entry]) -> BoxFuture<'a, Vec<EntryOutcome>> {
        async move {
            let mut failed_groups: HashSet<String> = HashSet::new();
            let mut outcomes = Vec::with_capacity(entries.len());
            for entry in entries {
                let group = entry.group();
                if failed_groups.contains(&group) {
                    outcomes.push(EntryOutcome::Deferred);
                    continue;
                }
                let result = match entry {
                    Entry::Record { document } => match recorded(document) {
                        Some((mut callback, delivery)) => {
                            callback.payload = payload_of(document).into_relaxed_extjson();
                            self.record(Arc::new(callback), delivery)
                                .await
                                .map(Applied::Record)
                        }
                        None => Err(StoreError::Rejected(
                            "a recorded callback document cannot be read".into(),
                        )),
                    },
                    Entry::CountDelivery { key, delivery } => self
                        .count_delivery(key.clone(), delivery.clone())
                        .await
                        .map(|()| Applied::Counted),
                    Entry::Quarantine { rejected } => self
                        .quarantine(Arc::new(rejected.clone()))
                        .await
                        .map(|()| Applied::Quarantined),
                };
                outcomes.push(match result {
                    Ok(applied) => EntryOutcome::Applied(applied),
                    Err(error) => {
                        failed_groups.insert(group);
                        EntryOutcome::Failed(error)
                    }
                });
            }
            outcomes
        }
        .boxed()
    }

    /// Looks for stored callbacks that were never folded into their transactions and folds them; returns
    /// how many. Stores without a transactions view have nothing to do.
    fn sweep(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        futures_util::future::ready(Ok(0)).boxed()
    }
}
