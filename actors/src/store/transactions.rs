//! The `transactions` collection: one document per (provider, flow, transaction key) holding the
//! transaction's current state, folded from its callbacks by the rules in [`crate::transaction`].
//!
//! Updates are optimistic and race-safe across pool members and service instances: a transaction is read,
//! the next state computed, and written back only if its `version` is unchanged (else re-read and retried);
//! the first write for a key is an insert guarded by a unique index. Applying the same callback twice is a
//! no-op (its id is already in `callback_ids`).
//!
//! This view is derived from `callbacks`, which are written `w: majority, j: true` before anything else:
//! its writes are acknowledged by the primary alone (`w: 1`), which keeps them off the journal's commit
//! wait. Should a failover roll one back, the callback stays `processed: false`, and its next delivery
//! folds it in again.

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use super::document::{bson_time, decimal128, json_to_bson};
use super::mongo::{is_duplicate_key, unavailable};
use super::StoreError;
use crate::callback::{Callback, Delivery, Status};
use crate::transaction::{transition, Conflict, Snapshot};

const MAX_ATTEMPTS: usize = 8;

/// Flows of one provider that report the same payment under different keys, joined by receipt:
/// (provider, flow whose `receipt` is the other's key, flow keyed by that receipt). An M-Pesa STK result's
/// `MpesaReceiptNumber` is the C2B confirmation's `TransID`.
const RECEIPT_LINKS: &[(&str, &str, &str)] = &[("mpesa", "stk_push", "c2b")];

#[derive(Clone)]
pub(super) struct Transactions {
    collection: Collection<Document>,
}

impl Transactions {
    pub(super) fn new(collection: Collection<Document>) -> Self {
        Self { collection }
    }

    pub(super) fn collection(&self) -> &Collection<Document> {
        &self.collection
    }

    pub(super) async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let identity = IndexModel::builder()
            .keys(doc! {"provider": 1, "flow": 1, "transaction_key": 1})
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name("transaction_identity".to_owned())
                    .build(),
            )
            .build();
        let by_receipt = IndexModel::builder()
            .keys(doc! {"provider": 1, "flow": 1, "receipt": 1})
            .build();
        let conflicts = IndexModel::builder()
            .keys(doc! {"conflict": 1})
            .options(IndexOptions::builder().sparse(true).build())
            .build();
        self.collection
            .create_indexes([identity, by_receipt, conflicts])
            .await
            .map(|_| ())
    }

    /// Folds a stored callback (`callback_id`) into its transaction.
    pub(super) async fn apply(
        &self,
        callback: &Callback,
        callback_id: ObjectId,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(flow) = callback.callback_type.flow() else {
            return Ok(());
        };
        let key = doc! {"provider": callback.provider, "flow": flow, "transaction_key": &callback.provider_transaction_id};
        // Most callbacks start a transaction: try the insert first, fold into the existing one if taken.
        let first = Snapshot::from_callback(callback);
        let mut document = key.clone();
        document.extend(snapshot_fields(&first));
        document.extend(doc! {
            "first_callback_at": bson_time(received_at),
            "last_callback_at": bson_time(received_at),
            "callback_ids": [callback_id],
            "conflict": false,
            "conflicts": [],
            "linked_transactions": [],
            "version": 1_i64,
            "updated_at": bson_time(Utc::now()),
        });
        match self.collection.insert_one(document).await {
            Ok(_) => {
                return self
                    .link(&key, flow, callback, first.receipt.as_deref())
                    .await
            }
            Err(error) if is_duplicate_key(&error) => {}
            Err(error) => return Err(unavailable(error)),
        }
        for _ in 0..MAX_ATTEMPTS {
            let current = self
                .collection
                .find_one(key.clone())
                .await
                .map_err(unavailable)?
                .ok_or_else(|| {
                    StoreError::Unavailable("a transaction vanished while being updated".into())
                })?;
            let already_applied = current
                .get_array("callback_ids")
                .is_ok_and(|ids| ids.contains(&Bson::ObjectId(callback_id)));
            if already_applied {
                return Ok(());
            }
            let version = current.get_i64("version").unwrap_or(0);
            let step = transition(&snapshot_of(&current), callback);
            let mut set = snapshot_fields(&step.next);
            set.insert("version", version + 1);
            set.insert("updated_at", bson_time(Utc::now()));
            if !step.conflicts.is_empty() {
                set.insert("conflict", true);
                warn_conflicts(callback, &step.conflicts);
            }
            let update = doc! {
                "$set": set,
                "$min": {"first_callback_at": bson_time(received_at)},
                "$max": {"last_callback_at": bson_time(received_at)},
                "$push": {
                    "callback_ids": callback_id,
                    "conflicts": {"$each": conflict_entries(&step.conflicts, callback, callback_id, received_at, false)},
                },
            };
            let filter =
                doc! {"_id": current.get("_id").cloned().unwrap_or(Bson::Null), "version": version};
            let result = self
                .collection
                .update_one(filter, update)
                .await
                .map_err(unavailable)?;
            if result.matched_count == 1 {
                return self
                    .link(&key, flow, callback, step.next.receipt.as_deref())
                    .await;
            }
        }
        Err(StoreError::Unavailable(format!(
            "transaction {} stayed contended for {MAX_ATTEMPTS} attempts",
            callback.provider_transaction_id
        )))
    }

    /// A repeat of a stored callback (same key and status) whose body disagrees with it: the transaction is
    /// flagged, and the disagreeing payload kept inside the conflict entry so that nothing is lost.
    pub(super) async fn record_disagreement(
        &self,
        callback: &Callback,
        stored_id: ObjectId,
        conflicts: &[Conflict],
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        let received_at = delivery.received_at;
        let Some(flow) = callback.callback_type.flow() else {
            return Ok(());
        };
        warn_conflicts(callback, conflicts);
        // Filtered on the delivery id, so the same delivery applied twice is listed once.
        let key = doc! {
            "provider": callback.provider,
            "flow": flow,
            "transaction_key": &callback.provider_transaction_id,
            "conflicts.delivery_id": {"$ne": &delivery.id},
        };
        let mut entries = conflict_entries(conflicts, callback, stored_id, received_at, true);
        for entry in &mut entries {
            entry.insert("delivery_id", &delivery.id);
        }
        let update = doc! {
            "$set": {"conflict": true, "updated_at": bson_time(Utc::now())},
            "$inc": {"version": 1_i64},
            "$push": {"conflicts": {"$each": entries}},
        };
        self.collection
            .update_one(key, update)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Joins this transaction with the one of another flow that reports the same payment, both ways.
    async fn link(
        &self,
        key: &Document,
        flow: &str,
        callback: &Callback,
        receipt: Option<&str>,
    ) -> Result<(), StoreError> {
        for (provider, receipt_flow, keyed_flow) in RECEIPT_LINKS {
            if callback.provider != *provider {
                continue;
            }
            let other = if flow == *receipt_flow {
                let Some(receipt) = receipt else { continue };
                doc! {"provider": provider, "flow": keyed_flow, "transaction_key": receipt}
            } else if flow == *keyed_flow {
                doc! {"provider": provider, "flow": receipt_flow, "receipt": &callback.provider_transaction_id}
            } else {
                continue;
            };
            let Some(other) = self.collection.find_one(other).await.map_err(unavailable)? else {
                continue;
            };
            let reference = |document: &Document| {
                doc! {
                    "provider": document.get("provider").cloned().unwrap_or(Bson::Null),
                    "flow": document.get("flow").cloned().unwrap_or(Bson::Null),
                    "transaction_key": document.get("transaction_key").cloned().unwrap_or(Bson::Null),
                }
            };
            let this_ref = reference(key);
            let other_ref = reference(&other);
            self.collection
                .update_one(
                    key.clone(),
                    doc! {"$addToSet": {"linked_transactions": other_ref}},
                )
                .await
                .map_err(unavailable)?;
            self.collection
                .update_one(
                    doc! {"_id": other.get("_id").cloned().unwrap_or(Bson::Null)},
                    doc! {"$addToSet": {"linked_transactions": this_ref}},
                )
                .await
                .map_err(unavailable)?;
            tracing::info!(
                key = %callback.provider_transaction_id,
                other = ?other.get("transaction_key"),
                "linked transactions reporting the same payment"
            );
        }
        Ok(())
    }
}

/// Body fields of a repeat that disagree with the stored callback it repeats: the transaction rules
/// applied to the stored callback's fields (same key, same status, so only amount and MSISDN can differ).
pub(super) fn body_disagreements(stored: &Document, incoming: &Callback) -> Vec<Conflict> {
    transition(&snapshot_of(stored), incoming).conflicts
}

fn warn_conflicts(callback: &Callback, conflicts: &[Conflict]) {
    for conflict in conflicts {
        tracing::warn!(
            provider = callback.provider,
            key = %callback.provider_transaction_id,
            field = conflict.field,
            current = %conflict.current,
            incoming = %conflict.incoming,
            "callback disagrees with its transaction; kept as a conflict"
        );
    }
}

fn conflict_entries(
    conflicts: &[Conflict],
    callback: &Callback,
    callback_id: ObjectId,
    at: DateTime<Utc>,
    keep_payload: bool,
) -> Vec<Document> {
    conflicts
        .iter()
        .map(|conflict| {
            let mut entry = doc! {
                "field": conflict.field,
                "current": &conflict.current,
                "incoming": &conflict.incoming,
                "callback_type": callback.callback_type.as_str(),
                "callback_id": callback_id,
                "at": bson_time(at),
            };
            if keep_payload {
                entry.insert("callback_data", json_to_bson(&callback.payload));
            }
            entry
        })
        .collect()
}

fn snapshot_fields(snapshot: &Snapshot) -> Document {
    doc! {
        "status": snapshot.status.as_str(),
        "reason": snapshot.reason.as_deref(),
        "amount": snapshot.amount.map_or(Bson::Null, |amount| decimal128(&amount.to_string())),
        "currency": snapshot.currency.as_deref(),
        "msisdn": snapshot.msisdn.as_deref(),
        "receipt": snapshot.receipt.as_deref(),
    }
}

fn snapshot_of(document: &Document) -> Snapshot {
    let text = |field| document.get_str(field).ok().map(str::to_owned);
    Snapshot {
        status: document
            .get_str("status")
            .ok()
            .and_then(Status::parse)
            .unwrap_or(Status::Unknown),
        reason: text("reason"),
        amount: match document.get("amount") {
            Some(Bson::Decimal128(amount)) => amount.to_string().parse().ok(),
            _ => None,
        },
        currency: text("currency"),
        msisdn: text("msisdn"),
        receipt: text("receipt"),
    }
}
