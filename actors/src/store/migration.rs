//! Bringing documents written by earlier versions to today's shape, once, when the store first connects.
//!
//! Versions before 0.2.0 gave callbacks and transactions an ObjectId `_id` (a callback's was its first
//! delivery's id) and kept each one single with a second unique index on its identity. Today the identity
//! *is* the `_id` (see [`crate::callback::CallbackKey::document_id`] and [`super::transaction_id`]): one
//! unique index instead of two on every insert. This rewrites the old documents in place:
//!
//! 1. the old identity indexes are dropped (the rewritten copies would collide with the old documents);
//! 2. each old callback is copied under its identity, its former `_id` kept as `delivery_id`, then the
//!    old documents are deleted;
//! 3. each old transaction is copied under its identity with `callback_ids` turned into the callbacks'
//!    new `_id`s (looked up by `delivery_id` through a temporary index), then the old ones are deleted.
//!
//! Every step is idempotent (`$merge` keeps a copy that exists already), so a migration cut short by a
//! crash finishes at the next start. Instances of an earlier version must be stopped before one of this
//! version starts: they would still write old-shaped documents, without the identity indexes that kept
//! them single.

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

/// The identity indexes of earlier versions, replaced by the `_id`.
const CALLBACK_IDENTITY: &str = "callback_identity";
const TRANSACTION_IDENTITY: &str = "transaction_identity";
const TEMPORARY_INDEX: &str = "migration_delivery_id";
const EXPECTATION_IDENTITY: &str = "expectation_identity";
const RECONCILIATION_IDENTITY: &str = "reconciliation_identity";

/// Rewrites the documents of earlier versions (see the module's documentation); returns how many
/// callbacks and transactions were rewritten.
pub(super) async fn identities_as_ids(
    callbacks: &Collection<Document>,
    transactions: &Collection<Document>,
) -> mongodb::error::Result<(u64, u64)> {
    // Absent indexes (a new database) are no error.
    let _ = callbacks.drop_index(CALLBACK_IDENTITY).await;
    let _ = transactions.drop_index(TRANSACTION_IDENTITY).await;

    // The same texts as `CallbackKey::document_id` and `transaction_id` write (the migration test checks
    // that they agree).
    let callbacks_rewritten = rewrite(
        callbacks,
        vec![doc! {"$set": {
            "delivery_id": "$_id",
            "_id": {"$concat": [
                "$provider", "|", "$callback_type", "|", "$status", "|", "$provider_transaction_id",
            ]},
        }}],
    )
    .await?;

    let mut transactions_rewritten = 0;
    if old_documents(transactions).await? > 0 {
        callbacks
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"delivery_id": 1})
                    .options(
                        IndexOptions::builder()
                            .name(TEMPORARY_INDEX.to_owned())
                            .build(),
                    )
                    .build(),
            )
            .await?;
        transactions_rewritten = rewrite(
            transactions,
            vec![
                doc! {"$lookup": {
                    "from": callbacks.name(),
                    "localField": "callback_ids",
                    "foreignField": "delivery_id",
                    "as": "migrated_callbacks",
                }},
                doc! {"$set": {
                    "callback_ids": "$migrated_callbacks._id",
                    "_id": {"$concat": ["$provider", "|", "$flow", "|", "$transaction_key"]},
                }},
                doc! {"$unset": "migrated_callbacks"},
            ],
        )
        .await?;
        callbacks.drop_index(TEMPORARY_INDEX).await?;
    }
    if callbacks_rewritten + transactions_rewritten > 0 {
        tracing::warn!(
            callbacks = callbacks_rewritten,
            transactions = transactions_rewritten,
            "documents of an earlier version rewritten with their identity as _id"
        );
    }
    Ok((callbacks_rewritten, transactions_rewritten))
}

/// The reconciler's documents of versions before 0.3.0 had ObjectId `_id`s and unique identity indexes
/// that no shard key could prefix; their identity is now the `_id` (see `reconciliations.rs`). The same
/// rewrite as above: the identity indexes are dropped, each old document copied under its identity (an
/// expectation keeps its former `_id` as `expectation_id`, the id the API shows), the old ones deleted.
/// Returns how many expectations and items were rewritten.
pub(super) async fn reconciler_identities_as_ids(
    expectations: &Collection<Document>,
    items: &Collection<Document>,
) -> mongodb::error::Result<(u64, u64)> {
    let _ = expectations.drop_index(EXPECTATION_IDENTITY).await;
    let _ = items.drop_index(RECONCILIATION_IDENTITY).await;
    // The same texts as `expectation_id` and `transaction_id` write.
    let expectations_rewritten = rewrite(
        expectations,
        vec![doc! {"$set": {
            "expectation_id": "$_id",
            "_id": {"$concat": ["$provider", "|", "$callback_type", "|", "$key"]},
        }}],
    )
    .await?;
    let items_rewritten = rewrite(
        items,
        vec![doc! {"$set": {"_id": {"$concat": ["$provider", "|", "$flow", "|", "$key"]}}}],
    )
    .await?;
    if expectations_rewritten + items_rewritten > 0 {
        tracing::warn!(
            expectations = expectations_rewritten,
            items = items_rewritten,
            "reconciler documents of an earlier version rewritten with their identity as _id"
        );
    }
    Ok((expectations_rewritten, items_rewritten))
}

/// How many documents of `collection` still have an ObjectId `_id`.
async fn old_documents(collection: &Collection<Document>) -> mongodb::error::Result<u64> {
    collection
        .count_documents(doc! {"_id": {"$type": "objectId"}})
        .await
}

/// Copies the old documents of `collection` through `stages` into the same collection (keeping copies
/// that exist already), then deletes the old ones; returns how many.
async fn rewrite(
    collection: &Collection<Document>,
    stages: Vec<Document>,
) -> mongodb::error::Result<u64> {
    let old = old_documents(collection).await?;
    if old == 0 {
        return Ok(0);
    }
    let mut pipeline = vec![doc! {"$match": {"_id": {"$type": "objectId"}}}];
    pipeline.extend(stages);
    pipeline.push(doc! {"$merge": {
        "into": collection.name(),
        "on": "_id",
        "whenMatched": "keepExisting",
        "whenNotMatched": "insert",
    }});
    collection.aggregate(pipeline).await?;
    collection
        .delete_many(doc! {"_id": {"$type": "objectId"}})
        .await?;
    Ok(old)
}
