//! The `transactions` collection: one document per (provider, flow, transaction key) holding the
//! transaction's current state, folded from its callbacks by the rules in [`crate::transaction`].
//!
//! Folding is batched: the callbacks of many transactions are folded per call, each transaction's in the
//! order given. A transaction's `_id` is its identity ([`transaction_id`]): MongoDB's mandatory unique
//! index is the one that keeps it single, so inserts pay for no second unique index. A transaction seen
//! for the first time is inserted whole (one `insert_many` for all of them); one that exists already is
//! updated optimistically — read, fold, and write back only if its `version` is unchanged (else re-read
//! and retry) — which is race-safe across pool members and service instances. Folding the same callback
//! twice is a no-op (its identity, the `_id` of its document, is already in `callback_ids`).
//!
//! Writes use the client's `w: majority, j: true`: an acknowledged fold survives a failover, and a
//! callback document is written only after its fold was acknowledged (see `batch.rs`), so the view
//! converges after any crash.
//!
//! A transaction the reconciler should ask the operator about (see [`Snapshot::needs_query`]) carries
//! `query_due`, the time since when; a partial index holds only those, so the reconciler finds them
//! without scanning, and settled transactions cost nothing.
//!
//! What could grow without limit is capped: `conflicts` keeps the first [`MAX_CONFLICT_ENTRIES`] entries
//! (with their payloads) and `conflict_count` counts all of them.
//!
//! Length: the fold — how a callback changes its transaction, optimistically and in journal order — is one
//! algorithm, with its links and contradictions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use std::str::FromStr;

use mongodb::bson::{doc, Bson, Decimal128, Document, RawArrayBuf, RawBson, RawDocumentBuf};
use mongodb::error::ErrorKind;
use mongodb::Collection;

use super::document::{bson_time, decimal128};
use super::errors::{by_code, classify, classify_read, classify_single, DUPLICATE_KEY};
use super::events::{event_document, outbox_index, put_event, EventLog, EventType, Routes, EVENT};
use super::indexes::{by_msisdn, newest, partial};
use super::timing::timed;
use super::StoreError;
use crate::callback::{Callback, Delivery, Status};
use crate::transaction::{transition, Conflict, Snapshot, Source};

const MAX_ATTEMPTS: usize = 8;
/// Conflict entries kept per transaction: the first ones, payloads included.
pub const MAX_CONFLICT_ENTRIES: i32 = 50;
/// Transactions updated concurrently when a batch folds into existing ones.
const CONCURRENT_UPDATES: usize = 16;

/// Flows of one provider that report the same payment under different keys, joined by receipt:
/// (provider, flow whose `receipt` is the other's key, flow keyed by that receipt). An M-Pesa STK result's
/// `MpesaReceiptNumber` is the C2B confirmation's `TransID`. Public for the money report, which counts such
/// a pair once.
pub const RECEIPT_LINKS: &[(&str, &str, &str)] = &[("mpesa", "stk_push", "c2b")];

/// The `_id` of a transaction's document: (provider, flow, transaction key). The key comes last, so the
/// text reads back unambiguously whatever it contains: the other parts never contain `|`.
pub fn transaction_id(provider: &str, flow: &str, key: &str) -> String {
    format!("{provider}|{flow}|{key}")
}

/// A stored callback to fold into its transaction.
pub(super) struct Fold<'a> {
    pub callback: &'a Callback,
    /// The `_id` of the callback's document (its identity).
    pub id: String,
    pub received_at: DateTime<Utc>,
}

/// One transaction's share of a batch: its `_id` and its callbacks (indexes into the folds), in order.
struct Group {
    id: String,
    provider: &'static str,
    flow: &'static str,
    members: Vec<usize>,
}

#[derive(Clone)]
pub(super) struct Transactions {
    collection: Collection<Document>,
    /// The same collection, for inserting documents built as raw BSON.
    raw: Collection<RawDocumentBuf>,
    /// The endpoints' routes, for the event of a change made outside a fold (a disagreeing repeat).
    events: EventLog,
    /// Providers whose callbacks' final statuses are confirmed by a status query.
    confirm_by_query: std::sync::Arc<[&'static str]>,
}

impl Transactions {
    pub(super) fn new(
        collection: Collection<Document>,
        events: EventLog,
        confirm_by_query: &[&'static str],
    ) -> Self {
        Self {
            raw: collection.clone_with_type(),
            events,
            collection,
            confirm_by_query: confirm_by_query.into(),
        }
    }

    fn confirms(&self, provider: &str) -> bool {
        self.confirm_by_query.contains(&provider)
    }

    pub(super) fn collection(&self) -> &Collection<Document> {
        &self.collection
    }

    pub(super) async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        // Partial indexes: only the receipts a link looks up (an M-Pesa STK result's, not every
        // operator's), only transactions in conflict. Most documents are in neither.
        let receipts = RECEIPT_LINKS.iter().map(|(provider, receipt_flow, _)| {
            partial(
                doc! {"receipt": 1},
                &format!("receipts_{provider}_{receipt_flow}"),
                doc! {"provider": provider, "flow": receipt_flow, "receipt": {"$type": "string"}},
            )
        });
        let conflicted = partial(doc! {"conflict": 1}, "conflicted", doc! {"conflict": true});
        // What the reconciler looks for: only transactions awaiting an operator's answer.
        let query_due = partial(
            doc! {"query_due": 1},
            "query_due",
            doc! {"query_due": {"$type": "date"}},
        );
        self.collection
            .create_indexes(receipts.chain([
                conflicted,
                query_due,
                newest("first_callback_at"),
                by_msisdn("first_callback_at"),
                outbox_index(),
            ]))
            .await?;
        // Their predecessors (earlier versions) are dropped: absent ones are no error.
        for replaced in ["provider_1_flow_1_receipt_1", "by_receipt", "conflict_1"] {
            let _ = self.collection.drop_index(replaced).await;
        }
        Ok(())
    }

    /// Folds stored callbacks into their transactions; one result per fold. A failure is per transaction:
    /// the other transactions of the batch are folded all the same. Each change's event, routed by
    /// `routes`, is written by the change's own write (see `events.rs`).
    pub(super) async fn fold(
        &self,
        folds: &[Fold<'_>],
        routes: &Routes,
    ) -> Vec<Result<(), StoreError>> {
        let mut groups: Vec<Group> = Vec::new();
        let mut by_identity: HashMap<(&str, &str, &str), usize> = HashMap::new();
        for (index, fold) in folds.iter().enumerate() {
            let callback = fold.callback;
            let Some(flow) = callback.flow() else {
                continue;
            };
            let identity = (
                callback.provider,
                flow,
                callback.provider_transaction_id.as_str(),
            );
            let slot = *by_identity.entry(identity).or_insert_with(|| {
                groups.push(Group {
                    id: transaction_id(callback.provider, flow, &callback.provider_transaction_id),
                    provider: callback.provider,
                    flow,
                    members: Vec::new(),
                });
                groups.len() - 1
            });
            groups[slot].members.push(index);
        }

        // Most callbacks start a transaction: insert every group as new, and fold the ones that exist.
        let now = Utc::now();
        let fresh: Vec<(RawDocumentBuf, Option<String>)> = groups
            .iter()
            .map(|group| {
                let (mut document, receipt) =
                    fresh_transaction(group, folds, self.confirms(group.provider));
                with_first_event(&mut document, routes, now);
                (document, receipt)
            })
            .collect();
        let mut outcomes: Vec<Result<Option<String>, StoreError>> = fresh
            .iter()
            .map(|(_, receipt)| Ok(receipt.clone()))
            .collect();
        let mut existing = Vec::new();
        if !fresh.is_empty() {
            let documents = fresh.iter().map(|(document, _)| document);
            let inserted = timed(
                "transactions",
                self.raw.insert_many(documents).ordered(false),
            )
            .await;
            if let Err(error) = inserted {
                match error.kind.as_ref() {
                    ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
                        for write_error in failure.write_errors.iter().flatten() {
                            if write_error.code == DUPLICATE_KEY {
                                existing.push(write_error.index);
                            } else {
                                outcomes[write_error.index] =
                                    Err(by_code(write_error.code, &write_error.message));
                            }
                        }
                    }
                    _ => {
                        let failure = classify(&error);
                        outcomes
                            .iter_mut()
                            .for_each(|outcome| *outcome = Err(failure.clone()));
                    }
                }
            }
        }
        // The existing transactions are read in one `find`; only a transaction changed meanwhile is
        // read again, by itself. Without it (the read failed), each is read by itself.
        let mut current: HashMap<String, Document> = HashMap::new();
        if !existing.is_empty() {
            let ids: Vec<&str> = existing
                .iter()
                .map(|slot| groups[*slot].id.as_str())
                .collect();
            let found = self
                .find_all(doc! {"_id": {"$in": ids}}, doc! {"conflicts": 0})
                .await;
            if let Ok(found) = found {
                current.extend(found.into_iter().filter_map(|document| {
                    Some((document.get_str("_id").ok()?.to_owned(), document))
                }));
            }
        }
        let updated: Vec<(usize, Result<Option<String>, StoreError>)> = stream::iter(existing)
            .map(|slot| {
                let group = &groups[slot];
                let read = current.remove(&group.id);
                async move { (slot, self.fold_existing(group, folds, read, routes).await) }
            })
            .buffer_unordered(CONCURRENT_UPDATES)
            .collect()
            .await;
        for (slot, outcome) in updated {
            outcomes[slot] = outcome;
        }

        let linked = self.link(&groups, folds, &outcomes).await;
        let mut results: Vec<Result<(), StoreError>> = vec![Ok(()); folds.len()];
        for ((group, outcome), link) in groups.iter().zip(outcomes).zip(linked) {
            let result = outcome.and(link).map(|_| ());
            for member in &group.members {
                results[*member] = result.clone();
            }
        }
        results
    }

    /// Folds a group's callbacks into its existing transaction, optimistically; returns its receipt.
    /// `read` is the transaction as read with the others of the batch, if it was.
    ///
    /// A callback folded already means this entry is applied again (or a repeat missed the provider
    /// actor's cache): it changes nothing and writes nothing — its change, and that change's event,
    /// were written together the first time.
    async fn fold_existing(
        &self,
        group: &Group,
        folds: &[Fold<'_>],
        mut read: Option<Document>,
        routes: &Routes,
    ) -> Result<Option<String>, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let current = match read.take() {
                Some(current) => current,
                None => self
                    .collection
                    .find_one(doc! {"_id": &group.id})
                    .projection(doc! {"conflicts": 0, EVENT: 0})
                    .await
                    .map_err(|error| classify_read(&error))?
                    .ok_or_else(|| {
                        StoreError::Unavailable("a transaction vanished while being updated".into())
                    })?,
            };
            let applied = current.get_array("callback_ids").ok();
            let pending: Vec<&Fold> = group
                .members
                .iter()
                .map(|member| &folds[*member])
                .filter(|fold| {
                    !applied.is_some_and(|ids| {
                        ids.iter().any(|id| id.as_str() == Some(fold.id.as_str()))
                    })
                })
                .collect();
            let mut snapshot = snapshot_of(&current);
            if pending.is_empty() {
                return Ok(snapshot.receipt);
            }
            let version = current.get_i64("version").unwrap_or(0);
            let mut entries = Vec::new();
            for fold in &pending {
                let step = transition(&snapshot, fold.callback);
                warn_conflicts(fold.callback, &step.conflicts);
                entries.extend(conflict_entries(&step.conflicts, fold));
                snapshot = step.next;
            }
            let first = pending.iter().map(|fold| fold.received_at).min();
            let last = pending.iter().map(|fold| fold.received_at).max();
            let now = Utc::now();
            let mut set = snapshot_fields(&snapshot);
            set.insert("version", version + 1);
            set.insert("updated_at", bson_time(now));
            if !entries.is_empty() {
                set.insert("conflict", true);
            }
            // `unresolved` (the reconciler gave up, see reconciliations.rs) says nothing settled the
            // payment: untrue once this fold settles it. Cleared in this versioned write, so a give-up
            // that lands first is cleared on the retry; one that comes later finds the payment settled
            // and flags nothing (see `give_up`).
            if current.get_bool("unresolved").unwrap_or(false)
                && !snapshot.needs_query(self.confirms(group.provider))
            {
                set.insert("unresolved", false);
            }
            // The transaction as this write leaves it, for its event.
            let mut after = current.clone();
            after.extend(set.clone());
            after.insert(
                "conflict_count",
                current.get_i64("conflict_count").unwrap_or(0) + entries.len() as i64,
            );
            if let Some(first) = first.map(bson_time) {
                match current.get_datetime("first_callback_at") {
                    Ok(earlier) if *earlier <= first => {}
                    _ => {
                        after.insert("first_callback_at", first);
                    }
                }
            }
            if let Some(last) = last.map(bson_time) {
                match current.get_datetime("last_callback_at") {
                    Ok(later) if *later >= last => {}
                    _ => {
                        after.insert("last_callback_at", last);
                    }
                }
            }
            let event = EventType::of_change(Some(&current), &after)
                .and_then(|kind| event_document(&after, kind, version + 1, now, routes));
            let ids: Vec<&str> = pending.iter().map(|fold| fold.id.as_str()).collect();
            let mut earliest = doc! {"first_callback_at": first.map(bson_time)};
            let mut update = doc! {
                "$set": set,
                "$max": {"last_callback_at": last.map(bson_time)},
                "$inc": {"conflict_count": entries.len() as i64},
                "$push": {
                    "callback_ids": {"$each": ids},
                    "conflicts": {"$each": entries, "$slice": MAX_CONFLICT_ENTRIES},
                },
            };
            if snapshot.needs_query(self.confirms(group.provider)) {
                earliest.insert("query_due", last.map(bson_time));
            } else {
                update.insert("$unset", doc! {"query_due": ""});
            }
            update.insert("$min", earliest);
            if let Some(event) = event {
                put_event(&mut update, event, &current, now);
            }
            let filter = doc! {"_id": &group.id, "version": version};
            let result = timed("transactions", self.collection.update_one(filter, update))
                .await
                .map_err(|error| classify(&error))?;
            if result.matched_count == 1 {
                return Ok(snapshot.receipt);
            }
        }
        Err(StoreError::Unavailable(format!(
            "transaction {} stayed contended for {MAX_ATTEMPTS} attempts",
            group.id
        )))
    }

    /// A repeat of a stored callback (same key and status) whose body disagrees with it: the transaction is
    /// flagged, and the disagreeing payload kept inside the conflict entry so that nothing is lost.
    pub(super) async fn record_disagreement(
        &self,
        callback: &Callback,
        payload: Bson,
        conflicts: &[Conflict],
        delivery: &Delivery,
    ) -> Result<(), StoreError> {
        let Some(flow) = callback.flow() else {
            return Ok(());
        };
        warn_conflicts(callback, conflicts);
        let id = transaction_id(callback.provider, flow, &callback.provider_transaction_id);
        let fold = Fold {
            callback,
            id: callback.key().document_id(),
            received_at: delivery.received_at,
        };
        let mut entries = conflict_entries(conflicts, &fold);
        for entry in &mut entries {
            entry.insert("delivery_id", delivery.id);
            entry.insert("callback_data", payload.clone());
        }
        let added = entries.len() as i64;
        // Optimistic, as a fold is: the first conflict's `transaction.conflict` event is built from the
        // document as this write leaves it and pushed by the same write (see `events.rs`).
        for _ in 0..MAX_ATTEMPTS {
            let Some(current) = self
                .collection
                .find_one(doc! {"_id": &id})
                .projection(doc! {"callback_ids": 0, "conflicts.callback_data": 0, EVENT: 0})
                .await
                .map_err(|error| classify_read(&error))?
            else {
                return Ok(());
            };
            let listed = current.get_array("conflicts").is_ok_and(|listed| {
                listed
                    .iter()
                    .filter_map(Bson::as_document)
                    .any(|entry| entry.get_object_id("delivery_id").ok() == Some(delivery.id))
            });
            // The same delivery applied twice is listed once.
            if listed {
                return Ok(());
            }
            let version = current.get_i64("version").unwrap_or(0);
            let now = Utc::now();
            let mut update = doc! {
                "$set": {"conflict": true, "updated_at": bson_time(now), "version": version + 1},
                "$inc": {"conflict_count": added},
                "$push": {"conflicts": {"$each": entries.clone(), "$slice": MAX_CONFLICT_ENTRIES}},
            };
            if !current.get_bool("conflict").unwrap_or(false) {
                let mut after = current.clone();
                after.insert("conflict", true);
                after.insert("version", version + 1);
                after.insert(
                    "conflict_count",
                    current.get_i64("conflict_count").unwrap_or(0) + added,
                );
                let routes = self.events.routes().await?;
                if let Some(event) =
                    event_document(&after, EventType::Conflict, version + 1, now, &routes)
                {
                    put_event(&mut update, event, &current, now);
                }
            }
            let written = self
                .collection
                .update_one(doc! {"_id": &id, "version": version}, update)
                .await
                .map_err(|error| classify_single(&error))?;
            if written.matched_count == 1 {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "transaction {id} stayed contended for {MAX_ATTEMPTS} attempts"
        )))
    }

    /// Joins transactions of other flows that report the same payment, both ways, for the groups folded
    /// successfully; one result per group.
    async fn link(
        &self,
        groups: &[Group],
        folds: &[Fold<'_>],
        outcomes: &[Result<Option<String>, StoreError>],
    ) -> Vec<Result<(), StoreError>> {
        let mut results = vec![Ok(()); groups.len()];
        for (provider, receipt_flow, keyed_flow) in RECEIPT_LINKS {
            // (group, filter of the other side, value looked up)
            let mut by_receipt = Vec::new();
            let mut by_key = Vec::new();
            for (slot, (group, outcome)) in groups.iter().zip(outcomes).enumerate() {
                let Ok(receipt) = outcome else { continue };
                let callback = folds[group.members[0]].callback;
                if callback.provider != *provider {
                    continue;
                }
                if group.flow == *receipt_flow {
                    if let Some(receipt) = receipt {
                        by_receipt.push((slot, receipt.clone()));
                    }
                } else if group.flow == *keyed_flow {
                    by_key.push((slot, callback.provider_transaction_id.clone()));
                }
            }
            // An STK result's receipt is a C2B confirmation's key; a C2B key is an STK result's receipt.
            let lookups = [
                (by_receipt, *keyed_flow, "transaction_key"),
                (by_key, *receipt_flow, "receipt"),
            ];
            for (wanted, other_flow, field) in lookups {
                if wanted.is_empty() {
                    continue;
                }
                let values = wanted.iter().map(|(_, value)| value.as_str());
                let filter = if field == "transaction_key" {
                    let ids: Vec<String> = values
                        .map(|key| transaction_id(provider, other_flow, key))
                        .collect();
                    doc! {"_id": {"$in": ids}}
                } else {
                    // `$type` lets the planner use the partial receipt index (it cannot infer it
                    // from `$in`).
                    let values: Vec<&str> = values.collect();
                    doc! {
                        "provider": provider,
                        "flow": other_flow,
                        field: {"$in": values, "$type": "string"},
                    }
                };
                let projection =
                    doc! {"provider": 1, "flow": 1, "transaction_key": 1, "receipt": 1};
                let found = match self.find_all(filter, projection).await {
                    Ok(found) => found,
                    Err(error) => {
                        for (slot, _) in &wanted {
                            results[*slot] = Err(error.clone());
                        }
                        continue;
                    }
                };
                for other in found {
                    let Ok(value) = other.get_str(field) else {
                        continue;
                    };
                    for (slot, _) in wanted.iter().filter(|(_, wanted)| wanted == value) {
                        let this = reference(
                            groups[*slot].provider,
                            groups[*slot].flow,
                            &folds[groups[*slot].members[0]]
                                .callback
                                .provider_transaction_id,
                        );
                        if let Err(error) = self.join(&groups[*slot].id, this, &other).await {
                            results[*slot] = Err(error);
                        }
                    }
                }
            }
        }
        results
    }

    /// Lists each of two transactions in the other's `linked_transactions`: this one (its `_id` and its
    /// reference) and `other` (its stored document).
    async fn join(
        &self,
        this_id: &str,
        this: Document,
        other: &Document,
    ) -> Result<(), StoreError> {
        let text = |field| other.get_str(field).unwrap_or_default();
        let other_ref = reference(text("provider"), text("flow"), text("transaction_key"));
        self.collection
            .update_one(
                doc! {"_id": this_id, "linked_transactions": {"$ne": &other_ref}},
                doc! {"$addToSet": {"linked_transactions": &other_ref}, "$inc": {"version": 1_i64}},
            )
            .await
            .map_err(|error| classify(&error))?;
        self.collection
            .update_one(
                doc! {"_id": other.get("_id").cloned().unwrap_or(Bson::Null), "linked_transactions": {"$ne": &this}},
                doc! {"$addToSet": {"linked_transactions": &this}, "$inc": {"version": 1_i64}},
            )
            .await
            .map_err(|error| classify(&error))?;
        tracing::info!(
            key = ?this.get("transaction_key"),
            other = ?other.get("transaction_key"),
            "linked transactions reporting the same payment"
        );
        Ok(())
    }

    async fn find_all(
        &self,
        filter: Document,
        projection: Document,
    ) -> Result<Vec<Document>, StoreError> {
        let mut cursor = self
            .collection
            .find(filter)
            .projection(projection)
            .await
            .map_err(|error| classify_read(&error))?;
        let mut found = Vec::new();
        while cursor
            .advance()
            .await
            .map_err(|error| classify_read(&error))?
        {
            found.push(
                cursor
                    .deserialize_current()
                    .map_err(|error| classify_read(&error))?,
            );
        }
        Ok(found)
    }
}

/// The document of a transaction that does not exist yet, folded from its group's callbacks; and its
/// receipt.
fn fresh_transaction(
    group: &Group,
    folds: &[Fold<'_>],
    confirm_by_query: bool,
) -> (RawDocumentBuf, Option<String>) {
    let first = &folds[group.members[0]];
    let mut snapshot = Snapshot::from_callback(first.callback);
    let mut entries = Vec::new();
    for member in &group.members[1..] {
        let fold = &folds[*member];
        let step = transition(&snapshot, fold.callback);
        warn_conflicts(fold.callback, &step.conflicts);
        entries.extend(conflict_entries(&step.conflicts, fold));
        snapshot = step.next;
    }
    let members = || group.members.iter().map(|member| &folds[*member]);
    let first_at = members().map(|fold| fold.received_at).min();
    let last_at = members().map(|fold| fold.received_at).max();
    let ids: Vec<&str> = members().map(|fold| fold.id.as_str()).collect();
    let conflict_count = entries.len() as i64;
    entries.truncate(MAX_CONFLICT_ENTRIES as usize);
    // Written as raw BSON straight away: one is built for nearly every callback.
    let text = |value: Option<&str>| value.map_or(RawBson::Null, RawBson::from);
    let callback = first.callback;
    let mut document = RawDocumentBuf::new();
    document.append("_id", group.id.as_str());
    document.append("provider", callback.provider);
    document.append("flow", group.flow);
    document.append("transaction_key", callback.provider_transaction_id.as_str());
    document.append("status", snapshot.status.as_str());
    document.append("reason", text(snapshot.reason.as_deref()));
    document.append(
        "amount",
        snapshot
            .amount
            .and_then(|amount| Decimal128::from_str(&amount.to_string()).ok())
            .map_or(RawBson::Null, RawBson::Decimal128),
    );
    document.append("currency", text(snapshot.currency.as_deref()));
    document.append("msisdn", text(snapshot.msisdn.as_deref()));
    document.append("receipt", text(snapshot.receipt.as_deref()));
    document.append("settled_by", text(snapshot.settled_by.map(Source::as_str)));
    document.append("verified", snapshot.verified);
    let time = |at: Option<DateTime<Utc>>| at.map_or(RawBson::Null, |at| bson_time(at).into());
    document.append("first_callback_at", time(first_at));
    document.append("last_callback_at", time(last_at));
    if snapshot.needs_query(confirm_by_query) {
        document.append("query_due", time(last_at));
    }
    let mut callback_ids = RawArrayBuf::new();
    for id in ids {
        callback_ids.push(id);
    }
    document.append("callback_ids", callback_ids);
    document.append("conflict", conflict_count > 0);
    let mut conflicts = RawArrayBuf::new();
    for entry in &entries {
        if let Ok(entry) = RawDocumentBuf::from_document(entry) {
            conflicts.push(entry);
        }
    }
    document.append("conflicts", conflicts);
    document.append("conflict_count", conflict_count);
    document.append("linked_transactions", RawArrayBuf::new());
    document.append("version", 1_i64);
    document.append("updated_at", bson_time(Utc::now()));
    (document, snapshot.receipt)
}

/// Gives a new transaction its first event — its first status — when an endpoint wants it:
/// the insert that creates the transaction writes its event (see `events.rs`).
fn with_first_event(document: &mut RawDocumentBuf, routes: &Routes, now: DateTime<Utc>) {
    if routes.is_empty() {
        return;
    }
    let Ok(transaction) = document.to_document() else {
        return;
    };
    let event = EventType::of_change(None, &transaction)
        .and_then(|kind| event_document(&transaction, kind, 1, now, routes))
        .and_then(|event| RawDocumentBuf::from_document(&event).ok());
    if let Some(event) = event {
        document.append(EVENT, event);
    }
}

/// How a transaction names another in `linked_transactions`.
fn reference(provider: &str, flow: &str, key: &str) -> Document {
    doc! {"provider": provider, "flow": flow, "transaction_key": key}
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

fn conflict_entries(conflicts: &[Conflict], fold: &Fold<'_>) -> Vec<Document> {
    conflicts
        .iter()
        .map(|conflict| {
            doc! {
                "field": conflict.field,
                "current": &conflict.current,
                "incoming": &conflict.incoming,
                "callback_type": fold.callback.callback_type.as_str(),
                "callback_id": &fold.id,
                "at": bson_time(fold.received_at),
            }
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
        "settled_by": snapshot.settled_by.map(Source::as_str),
        "verified": snapshot.verified,
    }
}

/// What a stored transaction (or callback: the fields are named alike) says.
pub(super) fn snapshot_of(document: &Document) -> Snapshot {
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
        settled_by: document.get_str("settled_by").ok().and_then(Source::parse),
        verified: document.get_bool("verified").unwrap_or(false),
    }
}
