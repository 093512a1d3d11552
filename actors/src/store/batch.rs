//! Applying a batch of journal entries to MongoDB in a handful of operations instead of several round
//! trips per entry.
//!
//! 1. **Look up** the stored callbacks the journal's delivery counts apply to (one `find` by `_id`: a
//!    callback's identity is its document's `_id`). Recorded callbacks are not looked up: nearly all are
//!    new (the provider actor's cache turns quick repeats into delivery counts), and the insert finds the
//!    others — a duplicate `_id` — for far less than a lookup of every one.
//! 2. **Fold** the new ones into their transactions (one `insert_many` for new transactions, optimistic
//!    updates for existing ones), in journal order per transaction. Each change's event is written by
//!    the change's own write, in the transaction's outbox (see `events.rs`).
//! 3. **Insert** the new callback documents (one unordered `insert_many`, `w: majority, j: true`). A
//!    callback document exists only once its fold was acknowledged, so it is written `processed: true`,
//!    and a crash between the two steps re-applies the entry: the fold is a no-op the second time (the
//!    transaction lists the callback's identity already, whichever delivery or instance folded it).
//! 4. **Count** repeated deliveries — repeats of stored callbacks and the journal's delivery counts —
//!    aggregated per callback (one `update_many` over their `_id`s).
//! 5. **Quarantine** rejected bodies (one unordered `insert_many`; a duplicate `_id` means kept already).
//!
//! Failures are per entry: an entry that fails blocks only the later entries of its group (its
//! transaction), which are reported [`EntryOutcome::Deferred`]. Every step is idempotent, so a batch can
//! be applied again after a crash or a timeout.
//!
//! Length: applying a batch is one algorithm in five steps over shared state (which entries are open, which
//! failed); the module doc lists the steps.

use std::collections::{HashMap, HashSet};

use mongodb::bson::{
    doc, oid::ObjectId, Document, RawArrayBuf, RawBsonRef, RawDocument, RawDocumentBuf,
};
use mongodb::error::ErrorKind;

use super::collections::Collections;
use super::document::{bson_time, payload_of, recorded, MAX_DELIVERY_IDS};
use super::errors::{by_code, classify, classify_read, DUPLICATE_KEY};
use super::timing::timed;
use super::transactions::{snapshot_of, Fold};
use super::Entry;
use super::{Applied, EntryOutcome, RecordOutcome, RejectedCallback, StoreError};
use crate::callback::{Callback, CallbackKey, Delivery};
use crate::transaction::{transition, Snapshot};

/// What a recorded callback turned out to be.
enum Kind {
    /// Not known to be stored: fold it, then insert it.
    New,
    /// A repeat of a new callback earlier in this batch (its index).
    RepeatInBatch(usize),
}

/// The batch's entries and what has become of them.
struct Batch<'a> {
    entries: &'a [Entry],
    /// For each recorded callback, what its document describes (read once from the raw bytes).
    records: &'a [Option<(Callback, Delivery)>],
    groups: Vec<String>,
    outcomes: Vec<Option<EntryOutcome>>,
    /// The first failed entry of each group: later entries of the group wait.
    failed: HashMap<String, usize>,
}

impl<'a> Batch<'a> {
    fn new(entries: &'a [Entry], records: &'a [Option<(Callback, Delivery)>]) -> Self {
        let groups = entries.iter().map(Entry::group).collect();
        let outcomes = vec![None; entries.len()];
        Self {
            entries,
            records,
            groups,
            outcomes,
            failed: HashMap::new(),
        }
    }

    fn fail(&mut self, index: usize, error: StoreError) {
        self.outcomes[index] = Some(EntryOutcome::Failed(error));
        let first = self
            .failed
            .entry(self.groups[index].clone())
            .or_insert(index);
        *first = (*first).min(index);
    }

    fn succeed(&mut self, index: usize, applied: Applied) {
        self.outcomes[index] = Some(EntryOutcome::Applied(applied));
    }

    /// Whether an earlier entry of this entry's group failed.
    fn blocked(&self, index: usize) -> bool {
        self.failed
            .get(&self.groups[index])
            .is_some_and(|first| *first < index)
    }

    /// Whether this entry is still to be decided and may go ahead.
    fn open(&self, index: usize) -> bool {
        self.outcomes[index].is_none() && !self.blocked(index)
    }

    fn record(&self, index: usize) -> (&'a Callback, &'a Delivery) {
        match &self.records[index] {
            Some((callback, delivery)) => (callback, delivery),
            None => unreachable!("entry {index} is a readable record"),
        }
    }

    fn document(&self, index: usize) -> &'a RawDocumentBuf {
        match &self.entries[index] {
            Entry::Record { document } => document,
            _ => unreachable!("entry {index} is a record"),
        }
    }

    fn finish(self) -> Vec<EntryOutcome> {
        self.outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or(EntryOutcome::Deferred))
            .collect()
    }
}

/// Applies `entries`; one outcome per entry.
pub(super) async fn apply(store: &Collections, entries: &[Entry]) -> Vec<EntryOutcome> {
    let decoded: Vec<Option<(Callback, Delivery)>> = entries
        .iter()
        .map(|entry| match entry {
            Entry::Record { document } => recorded(document),
            _ => None,
        })
        .collect();
    let mut batch = Batch::new(entries, &decoded);
    let mut records = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if matches!(entry, Entry::Record { .. }) {
            if decoded[index].is_some() {
                records.push(index);
            } else {
                batch.fail(
                    index,
                    StoreError::Rejected("a callback document that cannot be read".into()),
                );
            }
        }
    }
    let (kinds, stored) = look_up(store, &mut batch, &records).await;
    fold_new(store, &mut batch, &kinds).await;
    let raced = insert_new(store, &mut batch, &kinds).await;
    count_repeats(store, &mut batch, kinds, raced, stored).await;
    quarantine(store, &mut batch).await;
    batch.finish()
}

/// Step 1: which records repeat one earlier in this batch; and which of the callbacks the delivery counts
/// apply to are stored. A count whose callback is neither stored nor recorded earlier in this batch fails here,
/// before anything is written, so that the later entries of its transaction wait for it.
async fn look_up(
    store: &Collections,
    batch: &mut Batch<'_>,
    records: &[usize],
) -> (Vec<(usize, Kind)>, HashSet<CallbackKey>) {
    let counts: Vec<(usize, &CallbackKey)> = (0..batch.entries.len())
        .filter_map(|index| match &batch.entries[index] {
            Entry::CountDelivery { key, .. } if batch.open(index) => Some((index, key)),
            _ => None,
        })
        .collect();
    let keys: Vec<CallbackKey> = records
        .iter()
        .map(|index| batch.record(*index).0.key())
        .collect();
    let counted: Vec<CallbackKey> = counts.iter().map(|(_, key)| (*key).clone()).collect();
    let stored = match find_stored(store, &counted).await {
        Ok(stored) => stored,
        Err(error) => {
            for index in records.iter().chain(counts.iter().map(|(index, _)| index)) {
                batch.fail(*index, error.clone());
            }
            return (Vec::new(), HashSet::new());
        }
    };
    let mut new_in_batch: HashMap<&CallbackKey, usize> = HashMap::new();
    let mut kinds = Vec::with_capacity(records.len());
    for (index, key) in records.iter().zip(&keys) {
        let kind = match new_in_batch.get(key) {
            Some(first) => Kind::RepeatInBatch(*first),
            None => {
                new_in_batch.insert(key, *index);
                Kind::New
            }
        };
        kinds.push((*index, kind));
    }
    for (index, key) in counts {
        if !stored.contains_key(key) && new_in_batch.get(key).is_none_or(|first| *first >= index) {
            batch.fail(
                index,
                StoreError::Rejected(format!(
                    "no stored callback {} {} to count a delivery on",
                    key.callback_type, key.provider_transaction_id
                )),
            );
        }
    }
    (kinds, stored.into_keys().collect())
}

/// The stored callbacks (without payload and delivery ids) among `keys`, by key: one `find` by `_id`.
async fn find_stored(
    store: &Collections,
    keys: &[CallbackKey],
) -> Result<HashMap<CallbackKey, Document>, StoreError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let by_id: HashMap<String, &CallbackKey> =
        keys.iter().map(|key| (key.document_id(), key)).collect();
    let ids: Vec<&String> = by_id.keys().collect();
    let mut cursor = store
        .callbacks
        .find(doc! {"_id": {"$in": ids}})
        .projection(doc! {"callback_data": 0, "delivery_ids": 0})
        .await
        .map_err(|error| classify_read(&error))?;
    let mut stored = HashMap::new();
    while cursor
        .advance()
        .await
        .map_err(|error| classify_read(&error))?
    {
        let document: Document = cursor
            .deserialize_current()
            .map_err(|error| classify_read(&error))?;
        if let Some(key) = document.get_str("_id").ok().and_then(|id| by_id.get(id)) {
            stored.insert((*key).clone(), document);
        }
    }
    Ok(stored)
}

/// The id of the delivery that stored a callback's document.
fn first_delivery(document: &Document) -> Option<ObjectId> {
    document.get_object_id("delivery_id").ok()
}

/// Step 2: folds the new callbacks into their transactions.
async fn fold_new(store: &Collections, batch: &mut Batch<'_>, kinds: &[(usize, Kind)]) {
    let new: Vec<usize> = kinds
        .iter()
        .filter(|(index, kind)| matches!(kind, Kind::New) && batch.open(*index))
        .map(|(index, _)| *index)
        .collect();
    let folds: Vec<Fold> = new
        .iter()
        .map(|index| {
            let (callback, delivery) = batch.record(*index);
            Fold {
                callback,
                id: callback.key().document_id(),
                received_at: delivery.received_at,
            }
        })
        .collect();
    if folds.is_empty() {
        return;
    }
    let routes = match store.events.routes().await {
        Ok(routes) => routes,
        Err(error) => {
            for index in new {
                batch.fail(index, error.clone());
            }
            return;
        }
    };
    let results = store.transactions.fold(&folds, &routes).await;
    drop(folds);
    for (index, result) in new.into_iter().zip(results) {
        if let Err(error) = result {
            batch.fail(index, error);
        }
    }
}

/// Step 3: inserts the new callbacks whose fold succeeded. A duplicate `_id` is either this very delivery,
/// applied before (a re-drained entry: stored), or a repeat of a callback stored earlier or by another
/// writer (a concurrent instance): those are returned with what the stored document says. Their fold was a no-op or
/// stands: it was made under the same identity, which the transaction lists once.
async fn insert_new(
    store: &Collections,
    batch: &mut Batch<'_>,
    kinds: &[(usize, Kind)],
) -> Vec<(usize, Snapshot)> {
    let new: Vec<usize> = kinds
        .iter()
        .filter(|(index, kind)| matches!(kind, Kind::New) && batch.open(*index))
        .map(|(index, _)| *index)
        .collect();
    if new.is_empty() {
        return Vec::new();
    }
    // Delivery counts of these callbacks later in this batch (an operator's quick resend, answered from
    // the provider actor's cache) are folded into the inserted document instead of updating it after.
    let mut merged: HashMap<usize, Vec<usize>> = HashMap::new();
    {
        let firsts: HashMap<CallbackKey, usize> = new
            .iter()
            .map(|index| (batch.record(*index).0.key(), *index))
            .collect();
        for index in 0..batch.entries.len() {
            if let Entry::CountDelivery { key, .. } = &batch.entries[index] {
                if let Some(first) = firsts.get(key).filter(|first| **first < index) {
                    if batch.open(index) {
                        merged.entry(*first).or_default().push(index);
                    }
                }
            }
        }
    }
    let owned: Vec<Option<RawDocumentBuf>> = new
        .iter()
        .map(|index| {
            let deliveries: Vec<&Delivery> = merged
                .get(index)
                .into_iter()
                .flatten()
                .filter_map(|count| match &batch.entries[*count] {
                    Entry::CountDelivery { delivery, .. } => Some(delivery),
                    _ => None,
                })
                .collect();
            let (callback, delivery) = batch.record(*index);
            rewritten(batch.document(*index), callback, delivery, &deliveries)
        })
        .collect();
    let documents: Vec<&RawDocumentBuf> = new
        .iter()
        .zip(&owned)
        .map(|(index, owned)| owned.as_ref().unwrap_or_else(|| batch.document(*index)))
        .collect();
    let mut duplicates = Vec::new();
    let inserted = timed(
        "callbacks",
        store.raw_callbacks.insert_many(documents).ordered(false),
    )
    .await;
    if let Err(error) = inserted {
        match error.kind.as_ref() {
            ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
                for write_error in failure.write_errors.iter().flatten() {
                    let index = new[write_error.index];
                    if write_error.code == DUPLICATE_KEY {
                        duplicates.push(index);
                    } else {
                        batch.fail(index, by_code(write_error.code, &write_error.message));
                    }
                }
            }
            _ => {
                let failure = classify(&error);
                for index in &new {
                    batch.fail(*index, failure.clone());
                }
            }
        }
    }
    for index in &new {
        if batch.outcomes[*index].is_none() && !duplicates.contains(index) {
            batch.succeed(*index, Applied::Record(RecordOutcome::Stored));
            for count in merged.get(index).into_iter().flatten() {
                batch.succeed(*count, Applied::Counted);
            }
        }
    }
    if duplicates.is_empty() {
        return Vec::new();
    }

    // Either this very document (written by an attempt whose answer was lost) or another writer's.
    let keys: Vec<CallbackKey> = duplicates
        .iter()
        .map(|index| batch.record(*index).0.key())
        .collect();
    let stored = match find_stored(store, &keys).await {
        Ok(stored) => stored,
        Err(error) => {
            for index in duplicates {
                batch.fail(index, error.clone());
            }
            return Vec::new();
        }
    };
    let mut raced = Vec::new();
    for (index, key) in duplicates.into_iter().zip(keys) {
        let (_, delivery) = batch.record(index);
        match stored.get(&key) {
            Some(document) if first_delivery(document) == Some(delivery.id) => {
                batch.succeed(index, Applied::Record(RecordOutcome::Stored));
            }
            Some(document) => raced.push((index, snapshot_of(document))),
            None => batch.fail(
                index,
                StoreError::Unavailable("a duplicate vanished before it was read".into()),
            ),
        }
    }
    raced
}

/// The document to insert for a callback's first delivery when the journaled one will not do as it is:
/// with more deliveries counted in it (`deliveries`, `delivery_ids` and `last_received_at` rewritten), or
/// journaled by a version before 0.2.0, which used the delivery id as `_id` (the identity becomes the
/// `_id`, the delivery id `delivery_id`). Every other field as it was; `None` when the journaled bytes
/// will do.
fn rewritten(
    document: &RawDocument,
    callback: &Callback,
    delivery: &Delivery,
    more: &[&Delivery],
) -> Option<RawDocumentBuf> {
    let journaled_before_identity_ids = document
        .get("_id")
        .ok()
        .flatten()
        .is_some_and(|id| id.as_object_id().is_some());
    if more.is_empty() && !journaled_before_identity_ids {
        return None;
    }
    let mut rewritten = RawDocumentBuf::new();
    if journaled_before_identity_ids {
        rewritten.append("_id", callback.key().document_id());
        rewritten.append("delivery_id", delivery.id);
    }
    for element in document.iter().flatten() {
        match element {
            ("_id", RawBsonRef::ObjectId(_)) => {}
            ("deliveries", _) => rewritten.append("deliveries", 1 + more.len() as i64),
            ("delivery_ids", RawBsonRef::Array(ids)) => {
                let mut all = RawArrayBuf::new();
                for id in ids.into_iter().flatten().filter_map(|id| id.as_object_id()) {
                    all.push(id);
                }
                for delivery in more {
                    all.push(delivery.id);
                }
                rewritten.append("delivery_ids", all);
            }
            ("last_received_at", RawBsonRef::DateTime(first)) => {
                let latest = more
                    .iter()
                    .map(|delivery| bson_time(delivery.received_at))
                    .fold(first, std::cmp::max);
                rewritten.append("last_received_at", latest);
            }
            (key, value) => rewritten.append_ref(key, value),
        }
    }
    Some(rewritten)
}

/// Step 4: counts the deliveries of repeats and of the journal's delivery counts, once per delivery id,
/// and flags repeats whose body disagrees with the stored callback. `raced` are the new callbacks whose
/// insert met another writer's document (what it says); `stored`, the callbacks known to be stored.
async fn count_repeats(
    store: &Collections,
    batch: &mut Batch<'_>,
    kinds: Vec<(usize, Kind)>,
    raced: Vec<(usize, Snapshot)>,
    mut stored: HashSet<CallbackKey>,
) {
    // Repeats with what they repeat: the first in this batch if it was stored, or what another writer
    // stored (a concurrent instance) when the first met its document.
    let mut repeats: Vec<(usize, Snapshot)> = Vec::new();
    for (index, kind) in kinds {
        let Kind::RepeatInBatch(first) = kind else {
            continue;
        };
        if matches!(
            batch.outcomes[first],
            Some(EntryOutcome::Applied(Applied::Record(
                RecordOutcome::Stored
            )))
        ) {
            repeats.push((index, Snapshot::from_callback(batch.record(first).0)));
        } else if let Some((_, snapshot)) = raced.iter().find(|(raced, _)| *raced == first) {
            repeats.push((index, snapshot.clone()));
        }
        // Otherwise the first failed or waits behind a failure of their transaction: this waits with it
        // (deferred), and goes once the first is stored.
    }
    repeats.extend(raced);
    repeats.retain(|(index, _)| batch.open(*index));

    // Deliveries to count, per stored callback, in batch order.
    let mut counts: Vec<(CallbackKey, Vec<usize>)> = Vec::new();
    let mut slots: HashMap<CallbackKey, usize> = HashMap::new();
    let mut add = |key: CallbackKey, index: usize| {
        let slot = *slots.entry(key.clone()).or_insert_with(|| {
            counts.push((key, Vec::new()));
            counts.len() - 1
        });
        counts[slot].1.push(index);
    };
    for (index, _) in &repeats {
        add(batch.record(*index).0.key(), *index);
    }
    for index in 0..batch.entries.len() {
        if let Entry::CountDelivery { key, .. } = &batch.entries[index] {
            if batch.open(index) {
                add(key.clone(), index);
            }
        }
    }
    if counts.is_empty() {
        return;
    }

    stored.extend(
        repeats
            .iter()
            .map(|(index, _)| batch.record(*index).0.key()),
    );
    match count_deliveries(store, batch, &counts, &stored).await {
        Ok(missing) => {
            for slot in missing {
                for index in &counts[slot].1 {
                    let key = &counts[slot].0;
                    batch.fail(
                        *index,
                        StoreError::Rejected(format!(
                            "no stored callback {} {} to count a delivery on",
                            key.callback_type, key.provider_transaction_id
                        )),
                    );
                }
            }
        }
        Err(error) => {
            for (_, indexes) in &counts {
                for index in indexes {
                    batch.fail(*index, error.clone());
                }
            }
            return;
        }
    }
    for (_, indexes) in &counts {
        for index in indexes {
            if batch.outcomes[*index].is_none()
                && matches!(batch.entries[*index], Entry::CountDelivery { .. })
            {
                batch.succeed(*index, Applied::Counted);
            }
        }
    }

    for (index, snapshot) in repeats {
        if batch.outcomes[index].is_some() {
            continue;
        }
        let (callback, delivery) = batch.record(index);
        // Same key and status: only the body (amount, MSISDN) can disagree.
        let disagreements = transition(&snapshot, callback).conflicts;
        if disagreements.is_empty() {
            batch.succeed(index, Applied::Record(RecordOutcome::Duplicate));
            continue;
        }
        let payload = payload_of(batch.document(index));
        let kept = store
            .transactions
            .record_disagreement(callback, payload, &disagreements, delivery)
            .await;
        match kept {
            Ok(()) => batch.succeed(index, Applied::Record(RecordOutcome::Disagreeing)),
            Err(error) => batch.fail(index, error),
        }
    }
}

/// Adds each group's delivery ids to its stored callback unless counted already, in one `update_many`
/// over the callbacks' `_id`s (one statement: far cheaper for MongoDB than a statement per callback).
/// Callbacks not `known` to be stored are looked up first. Returns the slots whose callback is not
/// stored.
async fn count_deliveries(
    store: &Collections,
    batch: &Batch<'_>,
    counts: &[(CallbackKey, Vec<usize>)],
    known: &HashSet<CallbackKey>,
) -> Result<Vec<usize>, StoreError> {
    let unknown: Vec<CallbackKey> = counts
        .iter()
        .filter(|(key, _)| !known.contains(key))
        .map(|(key, _)| key.clone())
        .collect();
    let found = find_stored(store, &unknown).await?;
    let mut missing = Vec::new();
    let mut targets: Vec<String> = Vec::with_capacity(counts.len());
    let mut additions: Vec<Document> = Vec::with_capacity(counts.len());
    for (slot, (key, indexes)) in counts.iter().enumerate() {
        if !known.contains(key) && !found.contains_key(key) {
            missing.push(slot);
            continue;
        }
        let deliveries: Vec<&Delivery> = indexes
            .iter()
            .map(|index| match &batch.entries[*index] {
                Entry::Record { .. } => batch.record(*index).1,
                Entry::CountDelivery { delivery, .. } => delivery,
                Entry::Quarantine { .. } => unreachable!("quarantines count nothing"),
            })
            .collect();
        let ids: Vec<ObjectId> = deliveries.iter().map(|delivery| delivery.id).collect();
        let latest = deliveries
            .iter()
            .map(|delivery| delivery.received_at)
            .max()
            .map(bson_time);
        targets.push(key.document_id());
        additions.push(doc! {"ids": ids, "at": latest});
    }
    if targets.is_empty() {
        return Ok(missing);
    }
    timed(
        "callbacks",
        store.callbacks.update_many(
            doc! {"_id": {"$in": &targets}},
            count_pipeline(&targets, additions),
        ),
    )
    .await
    .map_err(|error| classify(&error))?;
    Ok(missing)
}

/// The update that counts, on each target callback, the delivery ids it has not counted yet (its entry of
/// `additions`, found by the position of its `_id` in `targets`), and keeps the most recent ones.
fn count_pipeline(targets: &[String], additions: Vec<Document>) -> Vec<Document> {
    vec![
        doc! {"$set": {"_count": {"$arrayElemAt": [
            {"$literal": additions},
            {"$indexOfArray": [{"$literal": targets}, "$_id"]},
        ]}}},
        doc! {"$set": {"_new": {"$setDifference": ["$_count.ids", {"$ifNull": ["$delivery_ids", []]}]}}},
        doc! {"$set": {
            "deliveries": {"$add": [{"$ifNull": ["$deliveries", 0_i64]}, {"$size": "$_new"}]},
            "last_received_at": {"$cond": [
                {"$gt": [{"$size": "$_new"}, 0]},
                {"$max": ["$last_received_at", "$_count.at"]},
                "$last_received_at",
            ]},
            "delivery_ids": {"$slice": [
                {"$concatArrays": [{"$ifNull": ["$delivery_ids", []]}, "$_new"]},
                -MAX_DELIVERY_IDS,
            ]},
        }},
        doc! {"$unset": ["_count", "_new"]},
    ]
}

/// Step 5: keeps rejected bodies.
async fn quarantine(store: &Collections, batch: &mut Batch<'_>) {
    let rejected: Vec<usize> = (0..batch.entries.len())
        .filter(|index| {
            matches!(batch.entries[*index], Entry::Quarantine { .. }) && batch.open(*index)
        })
        .collect();
    if rejected.is_empty() {
        return;
    }
    let documents: Vec<Document> = rejected
        .iter()
        .map(|index| match &batch.entries[*index] {
            Entry::Quarantine { rejected } => {
                rejected_document(rejected, store.unauthenticated_retention)
            }
            _ => unreachable!("entry {index} is a quarantine"),
        })
        .collect();
    let kept = timed(
        "rejected_callbacks",
        store.rejected.insert_many(&documents).ordered(false),
    )
    .await;
    if let Err(error) = kept {
        match error.kind.as_ref() {
            ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
                for write_error in failure.write_errors.iter().flatten() {
                    // A duplicate `_id` is this very rejection, kept already.
                    if write_error.code != DUPLICATE_KEY {
                        batch.fail(
                            rejected[write_error.index],
                            by_code(write_error.code, &write_error.message),
                        );
                    }
                }
            }
            _ => {
                let failure = classify(&error);
                for index in &rejected {
                    batch.fail(*index, failure.clone());
                }
            }
        }
    }
    for index in rejected {
        if batch.outcomes[index].is_none() {
            batch.succeed(index, Applied::Quarantined);
        }
    }
}

/// The `rejected_callbacks` document of a rejection. Unauthenticated ones carry `expire_at`, which the
/// TTL index honours.
pub(super) fn rejected_document(
    rejected: &RejectedCallback,
    unauthenticated_retention: std::time::Duration,
) -> Document {
    let mut document = doc! {
        "_id": rejected.id,
        "raw": String::from_utf8_lossy(&rejected.raw).into_owned(),
        "path": &rejected.path,
        "reason": &rejected.reason,
        "request_id": &rejected.request_id,
        "received_at": bson_time(rejected.received_at),
        "authenticated": rejected.authenticated,
        "client": rejected.client.map(|client| client.to_string()),
        "provider": rejected.provider.as_deref(),
        "callback_type": rejected.callback_type.as_deref(),
    };
    if std::str::from_utf8(&rejected.raw).is_err() {
        // Not UTF-8: keep the exact bytes beside the readable approximation.
        document.insert(
            "raw_bytes",
            mongodb::bson::Binary {
                subtype: mongodb::bson::spec::BinarySubtype::Generic,
                bytes: rejected.raw.clone(),
            },
        );
    }
    if let Some(evidence) = &rejected.evidence {
        if let Ok(evidence) = mongodb::bson::to_document(evidence) {
            document.insert("evidence", evidence);
        }
    }
    if rejected.truncated {
        document.insert("truncated", true);
    }
    if rejected.parsed {
        document.insert("parsed", true);
    }
    if !rejected.authenticated {
        // Checked: a retention past chrono's calendar keeps the body (no expiry) rather than panic.
        let expire_at = chrono::Duration::from_std(unauthenticated_retention)
            .ok()
            .and_then(|retention| rejected.received_at.checked_add_signed(retention));
        if let Some(expire_at) = expire_at {
            document.insert("expire_at", bson_time(expire_at));
        }
    }
    document
}
