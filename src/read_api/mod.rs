//! The read API: what it lists and reports, from the collections the drain writes (views of stored
//! documents here; filters, cursors and pages in `paging.rs`; the daily report of callbacks and CSV in
//! `daily.rs`; the money report of transactions in `money.rs`).
//!
//! Lists are newest first with keyset pagination (an opaque cursor holding the last item's time and id),
//! and every filter is served by an index created at start-up (see `mmo_actors::store`). Parameters are
//! checked strictly: an unknown or malformed one is a 400 naming it.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use mmo_actors::store::{transaction_id, MongoStore};
use mmo_actors::{CallbackType, Status, PROVIDERS};
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime as BsonDateTime, Document};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

mod daily;
mod money;
mod paging;

use crate::stored::{
    all, day, decimal, invalid, object_id, provider_name, rfc3339, text, unavailable,
};
pub use daily::*;
pub use money::*;
pub use paging::*;

/// A transaction as the `transactions` collection holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionItem {
    /// Stored provider name: `mpesa`, `mtn_mobile_money`, `airtel_money`.
    pub provider: String,
    /// `stk_push`, `b2c`, `c2b`, `collection`, `disbursement`, `remittance`, `payment`.
    pub flow: String,
    pub transaction_key: String,
    pub status: String,
    pub reason: Option<String>,
    /// Exact decimal, as text.
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub msisdn: Option<String>,
    pub receipt: Option<String>,
    pub linked_transactions: Vec<TransactionReference>,
    pub conflict: bool,
    /// All conflicts recorded (the transaction keeps the first ones in full).
    pub conflict_count: i64,
    /// What set the final status: `callback` (the operator's callback) or `status_query` (the
    /// reconciler's question: the callback never came); null while not final.
    pub settled_by: Option<String>,
    /// A callback and a status query agree on the final status.
    pub verified: bool,
    /// The reconciler gave up without a final answer: a person must look.
    pub unresolved: bool,
    /// RFC 3339.
    pub first_callback_at: Option<String>,
    pub last_callback_at: Option<String>,
}

/// Another transaction reporting the same payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionReference {
    pub provider: String,
    pub flow: String,
    pub transaction_key: String,
}

/// A transaction with the history of its callbacks, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionDetail {
    #[serde(flatten)]
    pub transaction: TransactionItem,
    pub callbacks: Vec<CallbackItem>,
    /// The merchant's expectation of this payment, if one was registered.
    pub expectation: Option<crate::reconciler_api::ExpectationItem>,
    /// The reconciler's work on it, if any.
    pub reconciliation: Option<crate::reconciler_api::ReconciliationItem>,
    /// Its stored `_id` and version: where its events are found (not part of the API's answer).
    #[serde(skip)]
    pub stored_id: String,
    #[serde(skip)]
    pub version: i64,
}

/// A callback as the `callbacks` collection holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackItem {
    /// The id of the delivery that stored it (hex ObjectId).
    pub id: String,
    pub provider: String,
    pub callback_type: String,
    pub provider_transaction_id: String,
    pub status: String,
    pub reason: Option<String>,
    pub result_code: Option<String>,
    pub result_description: Option<String>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub msisdn: Option<String>,
    pub receipt: Option<String>,
    pub received_at: Option<String>,
    pub last_received_at: Option<String>,
    pub deliveries: i64,
    /// The quarantined body this callback was recovered from, when replayed.
    pub replayed_from: Option<String>,
    /// The payload as received (relaxed extended JSON: exact decimals as `{"$numberDecimal": …}`).
    #[schema(value_type = Object)]
    pub callback_data: Option<serde_json::Value>,
}

/// A body that was refused and kept for audit.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedItem {
    pub id: String,
    pub provider: Option<String>,
    pub callback_type: Option<String>,
    pub path: String,
    pub reason: String,
    pub request_id: String,
    pub received_at: Option<String>,
    /// Whether the sender proved who it was; unauthenticated bodies expire.
    pub authenticated: bool,
    pub client: Option<String>,
    /// The body as text (a prefix, for refused unauthenticated and oversized requests).
    pub raw: String,
    pub replayed: bool,
}

pub async fn transactions(
    store: &MongoStore,
    filters: &Filters,
    salt: Option<&[u8]>,
) -> Result<Page<TransactionItem>, ApiError> {
    page(
        store.transactions(),
        filters,
        "first_callback_at",
        salt,
        Some(doc! {"conflicts": 0, "callback_ids": 0}),
        transaction_item,
    )
    .await
}

pub async fn callbacks(
    store: &MongoStore,
    filters: &Filters,
    salt: Option<&[u8]>,
) -> Result<Page<CallbackItem>, ApiError> {
    page(
        store.callbacks(),
        filters,
        "received_at",
        salt,
        Some(doc! {"delivery_ids": 0}),
        callback_item,
    )
    .await
}

pub async fn rejected(
    store: &MongoStore,
    filters: &Filters,
) -> Result<Page<RejectedItem>, ApiError> {
    page(
        store.rejected(),
        filters,
        "received_at",
        None,
        Some(doc! {"raw_bytes": 0}),
        rejected_item,
    )
    .await
}

/// One quarantined body, by its id.
pub async fn rejected_one(
    store: &MongoStore,
    id: mongodb::bson::oid::ObjectId,
) -> Result<Option<RejectedItem>, ApiError> {
    let found = store
        .rejected()
        .find_one(doc! {"_id": id})
        .projection(doc! {"raw_bytes": 0})
        .await
        .map_err(|error| ApiError::QueryFailed(error.to_string()))?;
    Ok(found.as_ref().map(rejected_item))
}

/// A transaction of `provider` with `key` (in `flow`, when given), and its callbacks; with their payloads
/// when `payloads` (the console shows them, the query API's answer leaves them out).
pub async fn transaction(
    store: &MongoStore,
    provider: &str,
    key: &str,
    flow: Option<&str>,
    payloads: bool,
) -> Result<TransactionDetail, ApiError> {
    let provider = provider_name(provider).ok_or(ApiError::NoSuch("transaction"))?;
    // A transaction's `_id` is its identity: look each flow up by it.
    // Only the provider's own flows: any other text could spell another transaction's `_id`.
    let ids: Vec<String> = flows_of(provider)
        .into_iter()
        .filter(|known| flow.is_none_or(|flow| flow == *known))
        .map(|flow| transaction_id(provider, flow, key))
        .collect();
    let filter = doc! {"_id": {"$in": ids}};
    let query = store
        .transactions()
        .find(filter)
        .projection(doc! {"conflicts": 0});
    let mut found = all(query).await?;
    let transaction = match found.len() {
        0 => return Err(ApiError::NoSuch("transaction")),
        1 => found.remove(0),
        _ => {
            let flows: Vec<String> = found.iter().filter_map(|t| text(t, "flow")).collect();
            return Err(invalid(
                "flow",
                format!(
                    "is needed: the key names transactions of several flows ({})",
                    flows.join(", ")
                ),
            ));
        }
    };
    let ids = transaction
        .get_array("callback_ids")
        .cloned()
        .unwrap_or_default();
    let query = store
        .callbacks()
        .find(doc! {"_id": {"$in": ids}})
        .sort(doc! {"received_at": 1, "_id": 1})
        .projection(if payloads {
            doc! {"delivery_ids": 0}
        } else {
            doc! {"delivery_ids": 0, "callback_data": 0}
        });
    let callbacks = all(query).await?;
    let item = transaction_item(&transaction);
    let expectation =
        crate::reconciler_api::expectation_of(store, provider, &item.flow, key).await?;
    let reconciliation =
        crate::reconciler_api::reconciliation_of(store, provider, &item.flow, key).await?;
    Ok(TransactionDetail {
        transaction: item,
        callbacks: callbacks.iter().map(callback_item).collect(),
        expectation,
        reconciliation,
        stored_id: text(&transaction, "_id").unwrap_or_default(),
        version: transaction.get_i64("version").unwrap_or(0),
    })
}

/// Transactions whose operator's receipt is `receipt` (at most `limit`), newest first.
pub async fn by_receipt(
    store: &MongoStore,
    receipt: &str,
    limit: i64,
) -> Result<Vec<TransactionItem>, ApiError> {
    let query = store
        .transactions()
        .find(doc! {"receipt": {"$eq": receipt, "$type": "string"}})
        .sort(newest_first("first_callback_at"))
        .limit(limit)
        .projection(doc! {"conflicts": 0, "callback_ids": 0});
    Ok(all(query).await?.iter().map(transaction_item).collect())
}

fn transaction_item(document: &Document) -> TransactionItem {
    let reference = |link: &Bson| {
        let link = link.as_document()?;
        Some(TransactionReference {
            provider: text(link, "provider")?,
            flow: text(link, "flow")?,
            transaction_key: text(link, "transaction_key")?,
        })
    };
    TransactionItem {
        provider: text(document, "provider").unwrap_or_default(),
        flow: text(document, "flow").unwrap_or_default(),
        transaction_key: text(document, "transaction_key").unwrap_or_default(),
        status: text(document, "status").unwrap_or_default(),
        reason: text(document, "reason"),
        amount: decimal(document, "amount"),
        currency: text(document, "currency"),
        msisdn: text(document, "msisdn"),
        receipt: text(document, "receipt"),
        linked_transactions: document
            .get_array("linked_transactions")
            .map(|links| links.iter().filter_map(reference).collect())
            .unwrap_or_default(),
        conflict: document.get_bool("conflict").unwrap_or(false),
        conflict_count: document.get_i64("conflict_count").unwrap_or(0),
        settled_by: text(document, "settled_by"),
        verified: document.get_bool("verified").unwrap_or(false),
        unresolved: document.get_bool("unresolved").unwrap_or(false),
        first_callback_at: rfc3339(document, "first_callback_at"),
        last_callback_at: rfc3339(document, "last_callback_at"),
    }
}

/// The flows a provider's transactions can have.
fn flows_of(provider: &str) -> Vec<&'static str> {
    let mut flows: Vec<&'static str> = PROVIDERS
        .iter()
        .filter(|candidate| candidate.name() == provider)
        .flat_map(|candidate| candidate.endpoints())
        .filter_map(|endpoint| endpoint.callback_type.flow())
        .collect();
    flows.sort_unstable();
    flows.dedup();
    flows
}

fn callback_item(document: &Document) -> CallbackItem {
    CallbackItem {
        // The first delivery's id: the callback's `_id` is its identity, shown field by field.
        id: object_id(document, "delivery_id").unwrap_or_default(),
        provider: text(document, "provider").unwrap_or_default(),
        callback_type: text(document, "callback_type").unwrap_or_default(),
        provider_transaction_id: text(document, "provider_transaction_id").unwrap_or_default(),
        status: text(document, "status").unwrap_or_default(),
        reason: text(document, "reason"),
        result_code: text(document, "result_code"),
        result_description: text(document, "result_description"),
        amount: decimal(document, "amount"),
        currency: text(document, "currency"),
        msisdn: text(document, "msisdn"),
        receipt: text(document, "receipt"),
        received_at: rfc3339(document, "received_at"),
        last_received_at: rfc3339(document, "last_received_at"),
        deliveries: document.get_i64("deliveries").unwrap_or(1),
        replayed_from: object_id(document, "replayed_from"),
        callback_data: document
            .get("callback_data")
            .map(|payload| payload.clone().into_relaxed_extjson()),
    }
}

fn rejected_item(document: &Document) -> RejectedItem {
    RejectedItem {
        id: object_id(document, "_id").unwrap_or_default(),
        provider: text(document, "provider"),
        callback_type: text(document, "callback_type"),
        path: text(document, "path").unwrap_or_default(),
        reason: text(document, "reason").unwrap_or_default(),
        request_id: text(document, "request_id").unwrap_or_default(),
        received_at: rfc3339(document, "received_at"),
        authenticated: document.get_bool("authenticated").unwrap_or(true),
        client: text(document, "client"),
        raw: text(document, "raw").unwrap_or_default(),
        replayed: document.get_bool("replayed").unwrap_or(false),
    }
}

/// What a successful replay stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    pub replayed: bool,
    pub provider: String,
    pub callback_type: String,
    pub provider_transaction_id: String,
    pub status: String,
}
