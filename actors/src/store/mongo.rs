//! The MongoDB store: one document per distinct callback in `callbacks`, each folded into its transaction
//! in `transactions` (see `transactions.rs`), rejected bodies in `rejected_callbacks`.
//!
//! Idempotency across pool members and service instances comes from the `_id`, which is the callback's
//! identity (`provider`, `callback_type`, `status`, `provider_transaction_id`): a repeat meets the stored
//! document as a duplicate `_id` and only counts a delivery. Writes use `w: majority, j: true`, so an
//! applied entry is durable on a majority of the replica set. Journal entries are applied in batches (see
//! `batch.rs`); the single-entry methods of [`CallbackStore`] are batches of one.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use mongodb::bson::{doc, Document};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use tokio::sync::OnceCell;

use super::collections::Collections;
use super::document::stored_callback;
use super::errors::{classify, classify_read};
use super::indexes::{by_msisdn, newest, partial};
use super::migration;
use super::transactions::Fold;
use super::Entry;
use super::{Applied, CallbackStore, EntryOutcome, RecordOutcome, RejectedCallback, StoreError};
use crate::callback::{Callback, CallbackKey, Delivery};

/// Connection settings, from the service's configuration.
#[derive(Clone)]
pub struct MongoSettings {
    /// May carry credentials: never printed (see the `Debug` implementation).
    pub uri: String,
    pub database: String,
    /// How long to wait for a usable server before failing an operation.
    pub server_selection_timeout: Duration,
    pub connect_timeout: Duration,
    /// Upper bound on one whole store operation (one batch of the drain), so that a caller gets an answer
    /// in seconds.
    pub operation_timeout: Duration,
    /// How long rejected bodies of unauthenticated senders are kept (a TTL index expires them); bodies of
    /// authenticated senders are kept for good.
    pub unauthenticated_retention: Duration,
    /// How long expectations and closed work items of the reconciler are kept (a TTL index expires them).
    pub reconciliation_retention: Duration,
    /// Providers (stored names) whose callbacks' final statuses the reconciler confirms by a status query.
    pub confirm_by_query: Vec<&'static str>,
}

impl std::fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoSettings")
            .field("uri", &"<redacted>")
            .field("database", &self.database)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("unauthenticated_retention", &self.unauthenticated_retention)
            .field("confirm_by_query", &self.confirm_by_query)
            .finish()
    }
}

/// MongoDB-backed [`CallbackStore`]. Cheap to clone.
#[derive(Clone)]
pub struct MongoStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    collections: Collections,
    operation_timeout: Duration,
    /// Set once the indexes exist and documents of earlier versions are migrated: no insert happens
    /// before, or an old document and its new copy could both stand.
    indexes: OnceCell<()>,
}

impl MongoStore {
    /// Builds a client without contacting the server: the service starts even while MongoDB is down;
    /// callbacks wait in the journal until it is back.
    pub async fn connect(settings: &MongoSettings) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(&settings.uri)
            .await
            .map_err(|error| StoreError::Unavailable(format!("invalid MongoDB URI: {error}")))?;
        // The URI may name the instance (`appName=`); otherwise every instance is `mmo-webhooks`.
        options
            .app_name
            .get_or_insert_with(|| "mmo-webhooks".to_owned());
        // No retryable writes unless the URI asks for them (`retryWrites=true`). Every write the service
        // makes is idempotent on its own — the drain re-applies a batch whose answer was lost, and ids,
        // versions and delivery ids make the second application a no-op — so the driver's one automatic
        // retry adds nothing, while it costs every write a session record in MongoDB's `config.transactions`
        // and ~150 bytes of session fields in each of its oplog entries (measured: ~13% of the oplog).
        if options.retry_writes.is_none() {
            options.retry_writes = Some(false);
        }
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
                collections: Collections::new(
                    database,
                    settings.unauthenticated_retention,
                    settings.reconciliation_retention,
                    &settings.confirm_by_query,
                ),
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
                .map_err(|error| classify(&error))
        })
        .await
    }

    /// The database, for operators' tools and tests.
    pub fn database(&self) -> &Database {
        &self.inner.collections.database
    }

    /// The `callbacks` collection.
    pub fn callbacks(&self) -> &Collection<Document> {
        &self.inner.collections.callbacks
    }

    /// The `transactions` collection.
    pub fn transactions(&self) -> &Collection<Document> {
        self.inner.collections.transactions.collection()
    }

    /// Expectations and the reconciler's work items.
    pub fn reconciliations(&self) -> &super::Reconciliations {
        &self.inner.collections.reconciliations
    }

    /// The `events` collection, for the query API's paged listing.
    pub fn events(&self) -> &Collection<Document> {
        self.inner.collections.events.collection()
    }

    /// The event collections' one handle (see [`super::events::EventLog`]).
    pub fn event_log(&self) -> &super::events::EventLog {
        &self.inner.collections.events
    }

    /// The `rejected_callbacks` collection.
    pub fn rejected(&self) -> &Collection<Document> {
        &self.inner.collections.rejected
    }

    /// Folds callbacks left `processed: false` into their transactions and marks them processed; returns
    /// how many. Callback documents are written only after their fold, so none is normally left; this
    /// heals documents written otherwise (by an earlier version, or by hand) so that the view converges.
    pub async fn fold_unprocessed(&self, limit: i64) -> Result<usize, StoreError> {
        let inner = Arc::clone(&self.inner);
        bounded(self.inner.operation_timeout, async move {
            inner.fold_unprocessed(limit).await
        })
        .await
    }

    async fn apply_one(&self, entry: Entry) -> Result<Applied, StoreError> {
        match self.apply(std::slice::from_ref(&entry)).await.pop() {
            Some(EntryOutcome::Applied(applied)) => Ok(applied),
            Some(EntryOutcome::Failed(error)) => Err(error),
            Some(EntryOutcome::Deferred) | None => {
                Err(StoreError::Unavailable("the entry was not applied".into()))
            }
        }
    }
}

impl Inner {
    /// Creates the indexes once (see [`Inner::create_indexes`]). The work runs in a task of its own: a
    /// caller that gives up (a batch past its timeout) does not cut short a migration of a large
    /// database, which then finishes on its own; a caller meanwhile starts the same idempotent work again,
    /// quickly done once the first has finished.
    async fn ensure_indexes(self: &Arc<Self>) -> Result<(), StoreError> {
        self.indexes
            .get_or_try_init(|| {
                let inner = Arc::clone(self);
                async move {
                    tokio::spawn(async move { inner.create_indexes().await })
                        .await
                        .unwrap_or_else(|error| {
                            Err(StoreError::Unavailable(format!(
                                "creating the indexes stopped: {error}"
                            )))
                        })
                }
            })
            .await
            .copied()
    }

    /// Every index the service relies on, one behind every filter of the query API (listing newest first
    /// by time, or by MSISDN); the identities that make it correct are the `_id`s. Documents and indexes
    /// of earlier versions are migrated first (see `migration.rs`).
    async fn create_indexes(&self) -> Result<(), StoreError> {
        let collections = &self.collections;
        migration::identities_as_ids(
            &collections.callbacks,
            collections.transactions.collection(),
        )
        .await
        .map_err(|error| classify(&error))?;
        // Tiny: only documents still to fold are in it.
        let unprocessed = partial(
            doc! {"processed": 1},
            "unprocessed",
            doc! {"processed": false},
        );
        collections
            .callbacks
            .create_indexes([newest("received_at"), by_msisdn("received_at"), unprocessed])
            .await
            .map_err(|error| classify(&error))?;
        // Rejected bodies of unauthenticated senders carry `expire_at`; nothing else expires.
        let expiry = IndexModel::builder()
            .keys(doc! {"expire_at": 1})
            .options(
                IndexOptions::builder()
                    .name("unauthenticated_expiry".to_owned())
                    .expire_after(Duration::ZERO)
                    .build(),
            )
            .build();
        collections
            .rejected
            .create_indexes([newest("received_at"), expiry])
            .await
            .map_err(|error| classify(&error))?;
        for collection in [&collections.callbacks, &collections.rejected] {
            let _ = collection.drop_index("received_at_1").await;
        }
        collections
            .transactions
            .ensure_indexes()
            .await
            .map_err(|error| classify(&error))?;
        collections.reconciliations.ensure_indexes().await?;
        collections
            .events
            .collection()
            .create_indexes(super::events::indexes())
            .await
            .map_err(|error| classify(&error))?;
        // Before this instance writes its first event: the feed of new events starts no later.
        super::events::feed::Feed::new(&collections.database)
            .start_here()
            .await?;
        Ok(())
    }

    async fn fold_unprocessed(self: &Arc<Self>, limit: i64) -> Result<usize, StoreError> {
        self.ensure_indexes().await?;
        let mut cursor = self
            .collections
            .callbacks
            .find(doc! {"processed": false})
            .projection(doc! {"callback_data": 0, "delivery_ids": 0})
            .limit(limit)
            .await
            .map_err(|error| classify_read(&error))?;
        let mut documents = Vec::new();
        while cursor
            .advance()
            .await
            .map_err(|error| classify_read(&error))?
        {
            documents.push(
                cursor
                    .deserialize_current()
                    .map_err(|error| classify_read(&error))?,
            );
        }
        let stored: Vec<(String, Callback, chrono::DateTime<chrono::Utc>)> = documents
            .iter()
            .filter_map(|document| {
                let id = document.get_str("_id").ok()?.to_owned();
                let at = document.get_datetime("received_at").ok()?;
                let at = at.to_chrono();
                Some((id, stored_callback(document)?, at))
            })
            .collect();
        let folds: Vec<Fold> = stored
            .iter()
            .map(|(id, callback, at)| Fold {
                callback,
                id: id.clone(),
                received_at: *at,
            })
            .collect();
        let routes = self.collections.events.routes().await?;
        let results = self.collections.transactions.fold(&folds, &routes).await;
        let folded: Vec<&str> = folds
            .iter()
            .zip(&results)
            .filter(|(_, result)| result.is_ok())
            .map(|(fold, _)| fold.id.as_str())
            .collect();
        if !folded.is_empty() {
            self.collections
                .callbacks
                .update_many(
                    doc! {"_id": {"$in": &folded}},
                    doc! {"$set": {"processed": true}},
                )
                .await
                .map_err(|error| classify(&error))?;
            tracing::warn!(
                folded = folded.len(),
                "callbacks left unprocessed were folded into their transactions"
            );
        }
        Ok(folded.len())
    }
}

impl CallbackStore for MongoStore {
    fn record(
        &self,
        callback: Arc<Callback>,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<RecordOutcome, StoreError>> {
        let store = self.clone();
        async move {
            let entry = Entry::record(&callback, &delivery);
            match store.apply_one(entry).await? {
                Applied::Record(outcome) => Ok(outcome),
                other => Err(StoreError::Rejected(format!(
                    "unexpected outcome {other:?}"
                ))),
            }
        }
        .boxed()
    }

    fn count_delivery(
        &self,
        key: CallbackKey,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let store = self.clone();
        async move {
            store
                .apply_one(Entry::CountDelivery { key, delivery })
                .await
                .map(|_| ())
        }
        .boxed()
    }

    fn quarantine(
        &self,
        rejected: Arc<RejectedCallback>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let store = self.clone();
        async move {
            store
                .apply_one(Entry::Quarantine {
                    rejected: RejectedCallback::clone(&rejected),
                })
                .await
                .map(|_| ())
        }
        .boxed()
    }

    fn apply<'a>(&'a self, entries: &'a [Entry]) -> BoxFuture<'a, Vec<EntryOutcome>> {
        let count = entries.len();
        let limit = self.inner.operation_timeout;
        async move {
            let applying = async {
                if let Err(error) = self.inner.ensure_indexes().await {
                    // Not about any entry (indexes, the migration of earlier versions' documents): the
                    // entries wait, uncounted, however the server refused it.
                    let unavailable =
                        StoreError::Unavailable(format!("indexes not ready: {error}"));
                    return vec![EntryOutcome::Failed(unavailable); entries.len()];
                }
                super::batch::apply(&self.inner.collections, entries).await
            };
            match tokio::time::timeout(limit, applying).await {
                Ok(outcomes) => outcomes,
                // Whatever was written meanwhile is applied again, harmlessly.
                Err(_) => vec![EntryOutcome::Failed(StoreError::Timeout(limit)); count],
            }
        }
        .boxed()
    }

    fn sweep(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        self.fold_unprocessed(1000).boxed()
    }
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
