//! The MongoDB store: one document per distinct callback in `callbacks`, each folded into its transaction
//! in `transactions` (see `transactions.rs`), rejected bodies in `rejected_callbacks`.
//!
//! Idempotency across pool members and service instances comes from the unique index on
//! (`provider`, `callback_type`, `provider_transaction_id`, `status`): the first delivery inserts, a repeat
//! hits duplicate-key error 11000 and only counts a delivery. Writes use `w: majority, j: true`, so a
//! resolved `record` means durable on a majority of the replica set.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use mongodb::bson::{doc, oid::ObjectId, spec::BinarySubtype, Binary, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, ReturnDocument, WriteConcern};
use mongodb::{Client, Collection, IndexModel};
use tokio::sync::OnceCell;

use super::document::{bson_time, callback_document, key_filter};
use super::transactions::{body_disagreements, Transactions};
use super::{CallbackStore, RecordOutcome, RejectedCallback, StoreError};
use crate::callback::{Callback, CallbackKey, Delivery};

const DUPLICATE_KEY: i32 = 11000;
const UNIQUE_INDEX: &str = "callback_identity";

/// Connection settings, from the service's configuration.
#[derive(Debug, Clone)]
pub struct MongoSettings {
    pub uri: String,
    pub database: String,
    /// How long to wait for a usable server before failing an operation.
    pub server_selection_timeout: Duration,
    pub connect_timeout: Duration,
    /// Upper bound on one whole store operation, so that a caller gets an answer in seconds.
    pub operation_timeout: Duration,
}

/// MongoDB-backed [`CallbackStore`]. Cheap to clone.
#[derive(Clone)]
pub struct MongoStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    callbacks: Collection<Document>,
    rejected: Collection<Document>,
    transactions: Transactions,
    /// `callbacks` for bookkeeping on derived state (the `processed` flag): primary-acknowledged only.
    derived_callbacks: Collection<Document>,
    operation_timeout: Duration,
    /// Set once the unique index is known to exist: no insert happens before, or duplicates could slip in.
    indexes: OnceCell<()>,
}

impl MongoStore {
    /// Builds a client without contacting the server: the service starts even while MongoDB is down;
    /// callbacks wait in the journal until it is back.
    pub async fn connect(settings: &MongoSettings) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(&settings.uri)
            .await
            .map_err(|error| StoreError::Unavailable(format!("invalid MongoDB URI: {error}")))?;
        options.app_name = Some("mmo-webhooks".to_owned());
        options.server_selection_timeout = Some(settings.server_selection_timeout);
        options.connect_timeout = Some(settings.connect_timeout);
        options.write_concern = Some(
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .w_timeout(settings.operation_timeout)
                .build(),
        );
        let client = Client::with_options(options)
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        let database = client.database(&settings.database);
        Ok(Self {
            inner: Arc::new(Inner {
                client: client.clone(),
                callbacks: database.collection("callbacks"),
                rejected: database.collection("rejected_callbacks"),
                transactions: Transactions::new(
                    database.collection_with_options("transactions", derived_writes()),
                ),
                derived_callbacks: database.collection_with_options("callbacks", derived_writes()),
                operation_timeout: settings.operation_timeout,
                indexes: OnceCell::new(),
            }),
        })
    }

    /// Creates the indexes (idempotent). Called at start-up and, until it succeeds, before every write.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.inner.ensure_indexes().await
    }

    /// Whether a server answers, within the operation timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let admin = self.inner.client.database("admin");
        bounded(self.inner.operation_timeout, async move {
            admin
                .run_command(doc! {"ping": 1})
                .await
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
    }

    /// The `callbacks` collection, for operators' tools and tests.
    pub fn callbacks(&self) -> &Collection<Document> {
        &self.inner.callbacks
    }

    /// The `transactions` collection.
    pub fn transactions(&self) -> &Collection<Document> {
        self.inner.transactions.collection()
    }

    /// The `rejected_callbacks` collection.
    pub fn rejected(&self) -> &Collection<Document> {
        &self.inner.rejected
    }
}

impl Inner {
    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.indexes
            .get_or_try_init(|| async {
                let identity = IndexModel::builder()
                    .keys(doc! {"provider": 1, "callback_type": 1, "provider_transaction_id": 1, "status": 1})
                    .options(IndexOptions::builder().unique(true).name(UNIQUE_INDEX.to_owned()).build())
                    .build();
                let by_time = IndexModel::builder().keys(doc! {"received_at": 1}).build();
                self.callbacks
                    .create_indexes([identity, by_time])
                    .await
                    .map_err(unavailable)?;
                self.rejected
                    .create_index(IndexModel::builder().keys(doc! {"received_at": 1}).build())
                    .await
                    .map_err(unavailable)?;
                self.transactions.ensure_indexes().await.map_err(unavailable)?;
                Ok(())
            })
            .await
            .copied()
    }

    /// Inserts the callback (first delivery) or counts a delivery (repeat), then folds it into its
    /// transaction and marks it `processed`. A repeat whose body disagrees with the stored callback flags
    /// its transaction instead. Every step is idempotent per delivery id, so a retried or re-drained
    /// delivery is counted once and heals a half-done one.
    async fn record(
        &self,
        callback: &Callback,
        delivery: &Delivery,
    ) -> Result<RecordOutcome, StoreError> {
        self.ensure_indexes().await?;
        let id = ObjectId::new();
        let mut document = callback_document(callback, delivery);
        document.insert("_id", id);
        match self.callbacks.insert_one(document).await {
            Ok(_) => {
                self.process(callback, id, delivery.received_at).await?;
                Ok(RecordOutcome::Stored)
            }
            Err(error) if is_duplicate_key(&error) => {
                let stored = match self.count(&callback.key(), delivery).await? {
                    Some(stored) => stored,
                    // Counted before (the same delivery applied again): read it as it is.
                    None => self
                        .callbacks
                        .find_one(key_filter(&callback.key()))
                        .await
                        .map_err(classify)?
                        .ok_or_else(|| {
                            StoreError::Unavailable(
                                "a duplicate vanished before it was counted".into(),
                            )
                        })?,
                };
                let stored_id = stored
                    .get_object_id("_id")
                    .map_err(|error| StoreError::Rejected(error.to_string()))?;
                let disagreements = body_disagreements(&stored, callback);
                if !disagreements.is_empty() {
                    self.transactions
                        .record_disagreement(callback, stored_id, &disagreements, delivery)
                        .await?;
                    return Ok(RecordOutcome::Disagreeing);
                }
                if !stored.get_bool("processed").unwrap_or(false) {
                    self.process(callback, stored_id, delivery.received_at)
                        .await?;
                }
                Ok(RecordOutcome::Duplicate)
            }
            Err(error) => Err(classify(error)),
        }
    }

    async fn process(
        &self,
        callback: &Callback,
        id: ObjectId,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.transactions.apply(callback, id, received_at).await?;
        self.derived_callbacks
            .update_one(doc! {"_id": id}, doc! {"$set": {"processed": true}})
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Counts `delivery` on the stored callback with `key` unless it was counted already; returns the
    /// updated document, or `None` when there was nothing new to count.
    async fn count(
        &self,
        key: &CallbackKey,
        delivery: &Delivery,
    ) -> Result<Option<Document>, StoreError> {
        let mut filter = key_filter(key);
        filter.insert("delivery_ids", doc! {"$ne": &delivery.id});
        let update = doc! {
            "$inc": {"deliveries": 1_i64},
            "$max": {"last_received_at": bson_time(delivery.received_at)},
            "$push": {"delivery_ids": &delivery.id},
        };
        self.callbacks
            .find_one_and_update(filter, update)
            .return_document(ReturnDocument::After)
            .await
            .map_err(classify)
    }

    async fn count_delivery(
        &self,
        key: &CallbackKey,
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        if self.count(key, delivery).await?.is_some() {
            return Ok(());
        }
        let exists = self
            .callbacks
            .count_documents(key_filter(key))
            .await
            .map_err(classify)?
            > 0;
        if exists {
            return Ok(());
        }
        Err(StoreError::Rejected(format!(
            "no stored callback {} {} to count a delivery on",
            key.callback_type, key.provider_transaction_id
        )))
    }

    async fn quarantine(&self, rejected: &RejectedCallback) -> Result<(), StoreError> {
        let id = ObjectId::parse_str(&rejected.id).unwrap_or_else(|_| ObjectId::new());
        let mut document = doc! {
            "_id": id,
            "raw": String::from_utf8_lossy(&rejected.raw).into_owned(),
            "path": &rejected.path,
            "reason": &rejected.reason,
            "request_id": &rejected.request_id,
            "received_at": bson_time(rejected.received_at),
        };
        if std::str::from_utf8(&rejected.raw).is_err() {
            // Not UTF-8: keep the exact bytes beside the readable approximation.
            document.insert(
                "raw_bytes",
                Binary {
                    subtype: BinarySubtype::Generic,
                    bytes: rejected.raw.clone(),
                },
            );
        }
        match self.rejected.insert_one(document).await {
            // Kept already (the same rejection applied again).
            Err(error) if is_duplicate_key(&error) => Ok(()),
            other => other.map(|_| ()).map_err(classify),
        }
    }
}

impl CallbackStore for MongoStore {
    fn record(
        &self,
        callback: Arc<Callback>,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<RecordOutcome, StoreError>> {
        let inner = Arc::clone(&self.inner);
        bounded(self.inner.operation_timeout, async move {
            inner.record(&callback, &delivery).await
        })
        .boxed()
    }

    fn count_delivery(
        &self,
        key: CallbackKey,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let inner = Arc::clone(&self.inner);
        bounded(self.inner.operation_timeout, async move {
            inner.count_delivery(&key, &delivery).await
        })
        .boxed()
    }

    fn quarantine(
        &self,
        rejected: Arc<RejectedCallback>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let inner = Arc::clone(&self.inner);
        bounded(self.inner.operation_timeout, async move {
            inner.quarantine(&rejected).await
        })
        .boxed()
    }
}

/// Write options for state derived from the durable callbacks (see `transactions`): acknowledged by the
/// primary, not waiting for the journal or a majority.
fn derived_writes() -> mongodb::options::CollectionOptions {
    mongodb::options::CollectionOptions::builder()
        .write_concern(
            WriteConcern::builder()
                .w(Acknowledgment::Nodes(1))
                .journal(false)
                .build(),
        )
        .build()
}

/// Bounds a store operation: the driver's own defaults can wait 30 s, far beyond a provider's patience.
async fn bounded<T>(
    limit: Duration,
    operation: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, operation)
        .await
        .unwrap_or(Err(StoreError::Timeout(limit)))
}

pub(super) fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    matches!(
        error.kind.as_ref(),
        ErrorKind::Write(WriteFailure::WriteError(write_error)) if write_error.code == DUPLICATE_KEY
    )
}

/// A write error about the document itself is a rejection; anything else is the server being unreachable.
fn classify(error: mongodb::error::Error) -> StoreError {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write_error)) => StoreError::Rejected(format!(
            "code {}: {}",
            write_error.code, write_error.message
        )),
        ErrorKind::BsonSerialization(_) | ErrorKind::InvalidArgument { .. } => {
            StoreError::Rejected(error.to_string())
        }
        _ => unavailable(error),
    }
}

pub(super) fn unavailable(error: mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}
