//! The one handle on the event collections: `events` (every event once attempted, with its delivery
//! state and attempts), the transactions' events as the feed carries them ([`super::feed`]), and what
//! earlier versions left (0.4.0's `event_batches`, 0.5.0's outboxes). Routing reads `endpoints`.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::{Collection, Database};

use super::feed::Feed;
use super::model::{
    merge_targets, state, targets_of, with_state, Earlier, NewEvents, Outcome, PendingEvent,
};
use super::{
    event_id, texts_of, Routes, Target, EVENT, LEGACY_EVENT_BATCHES, OUTBOX, OUTBOX_SINCE,
};
use crate::store::document::bson_time;
use crate::store::errors::{all, classify, classify_read, DUPLICATE_KEY};
use crate::store::StoreError;

/// The event collections. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    events: Collection<Document>,
    transactions: Collection<Document>,
    /// Where 0.4.0 instances write new events; emptied into `events` (see [`EventLog::adopt_legacy`]).
    legacy_batches: Collection<Document>,
    endpoints: Collection<Document>,
    feed: Feed,
}

impl EventLog {
    pub fn new(database: &Database) -> Self {
        Self {
            events: database.collection("events"),
            transactions: database.collection("transactions"),
            legacy_batches: database.collection(LEGACY_EVENT_BATCHES),
            endpoints: database.collection("endpoints"),
            feed: Feed::new(database),
        }
    }

    pub fn collection(&self) -> &Collection<Document> {
        &self.events
    }

    /// The feed of new events (see [`super::feed`]).
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// The enabled endpoints' subscriptions, read now. One small read per batch: every instance routes
    /// by the current list, and an endpoint created or disabled on one instance counts on all at once.
    pub async fn routes(&self) -> Result<Routes, StoreError> {
        let found: Vec<Document> = all(self
            .endpoints
            .find(doc! {"enabled": {"$ne": false}})
            .projection(doc! {"event_types": 1, "providers": 1, "owner": 1}))
        .await?;
        let owners = found.iter().filter_map(|document| {
            Some((
                document.get_str("_id").ok()?.to_owned(),
                document.get_str("owner").ok()?.to_owned(),
            ))
        });
        Ok(Routes::new(found.iter().filter_map(|document| {
            Some((
                document.get_str("_id").ok()?.to_owned(),
                texts_of(document, "event_types"),
                texts_of(document, "providers"),
            ))
        }))
        .owned(owners))
    }

    /// What [`EventLog::due`] looks for. `$type` lets the planner use the partial index of pending events
    /// (it cannot infer it from `$lte`; without it, every round scanned the whole collection).
    pub fn due_filter(now: DateTime<Utc>) -> Document {
        doc! {"due_at": {"$lte": bson_time(now), "$type": "date"}}
    }

    /// How many events are due by `now`, counted up to `cap` (on the index of pending events; the cap
    /// bounds the work when a backlog is large).
    pub async fn count_due(&self, now: DateTime<Utc>, cap: u64) -> Result<u64, StoreError> {
        self.events
            .count_documents(Self::due_filter(now))
            .limit(cap)
            .await
            .map_err(|error| classify_read(&error))
    }

    /// Pending events due by `now`, soonest first, leaving out those whose only due targets are for
    /// `held` endpoints (at their limit of requests in flight, or paused by a `Retry-After`): however
    /// many events such an endpoint has waiting, they never fill the read and keep another endpoint's
    /// due events from being seen.
    pub async fn due(
        &self,
        now: DateTime<Utc>,
        held: &[String],
        limit: i64,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        let mut filter = Self::due_filter(now);
        if !held.is_empty() {
            filter.insert(
                "targets",
                doc! {"$elemMatch": {
                    "status": "pending",
                    "next_at": {"$lte": bson_time(now)},
                    "endpoint": {"$nin": held},
                }},
            );
        }
        let found: Vec<Document> = all(self
            .events
            .find(filter)
            .sort(doc! {"due_at": 1})
            .projection(doc! {"attempts": 0})
            .limit(limit))
        .await?;
        Ok(found
            .iter()
            .filter_map(PendingEvent::from_document)
            .collect())
    }

    /// What [`EventLog::new_events`] looks for: transactions whose outbox holds events.
    pub fn outbox_filter() -> Document {
        doc! {OUTBOX_SINCE: {"$type": "date"}}
    }

    /// The transactions (at most `limit`, not in `skip`: being sent already) whose outbox holds events,
    /// oldest first, each with its events in version order.
    pub async fn new_events(
        &self,
        skip: &[String],
        limit: i64,
    ) -> Result<Vec<NewEvents>, StoreError> {
        let mut filter = Self::outbox_filter();
        if !skip.is_empty() {
            filter.insert("_id", doc! {"$nin": skip});
        }
        let found: Vec<Document> = all(self
            .transactions
            .find(filter)
            .sort(doc! {OUTBOX_SINCE: 1, "_id": 1})
            .projection(doc! {OUTBOX: 1, format!("{EVENT}._id"): 1})
            .hint(mongodb::options::Hint::Name("outbox".into()))
            .limit(limit))
        .await?;
        Ok(found
            .into_iter()
            .filter_map(|transaction| {
                let id = transaction.get_str("_id").ok()?.to_owned();
                let mut events: Vec<(Document, PendingEvent)> = transaction
                    .get_array(OUTBOX)
                    .map(|events| {
                        events
                            .iter()
                            .filter_map(Bson::as_document)
                            .filter_map(|event| {
                                Some((event.clone(), PendingEvent::from_document(event)?))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                events.sort_by_key(|(_, event)| event.version);
                let latest = transaction
                    .get_document(EVENT)
                    .ok()
                    .and_then(|event| event.get_str("_id").ok())
                    .map(str::to_owned);
                Some(NewEvents {
                    transaction: id,
                    events,
                    latest,
                })
            })
            .collect())
    }

    /// Moves the events 0.4.0 instances wrote to `event_batches` (one document per drain batch; during a
    /// rolling upgrade they still do) into `events` as they are — pending, with their targets — where
    /// the retry path sends them, in version order as it sends every event; then deletes each batch.
    /// At most `limit` batches per call; returns how many were moved.
    pub async fn adopt_legacy(&self, limit: usize) -> Result<usize, StoreError> {
        let mut moved = 0;
        while moved < limit {
            let Some(batch) = self
                .legacy_batches
                .find_one(doc! {})
                .await
                .map_err(|error| classify_read(&error))?
            else {
                break;
            };
            let events: Vec<Document> = batch
                .get_array("events")
                .map(|events| {
                    events
                        .iter()
                        .filter_map(Bson::as_document)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let transactions: [String; 0] = [];
            self.settle(&events, &transactions, &[]).await?;
            self.legacy_batches
                .delete_one(doc! {"_id": batch.get("_id").cloned().unwrap_or(Bson::Null)})
                .await
                .map_err(|error| classify(&error))?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Moves the events 0.5.0 instances left in transactions' outboxes (during a rolling upgrade they
    /// still write there, and this version writes behind them there) into `events` as they are —
    /// pending, with their targets — where the retry path sends them in version order; then pulls them.
    /// An outbox written after an event of this version waits until that event is in `events`.
    /// At most `limit` transactions per call; returns how many events were moved.
    pub async fn adopt_outboxes(
        &self,
        limit: i64,
        now: DateTime<Utc>,
        retention: std::time::Duration,
    ) -> Result<usize, StoreError> {
        let found = self.new_events(&[], limit).await?;
        // A transaction whose latest event a 0.6.0 instance wrote (sent from the feed) keeps its outbox,
        // written after it by a 0.5.0 instance, until that event is in `events`: versions stay in order.
        let latest: Vec<&str> = found
            .iter()
            .filter_map(|found| found.latest.as_deref())
            .collect();
        let recorded = self.known(&latest).await?;
        let found: Vec<NewEvents> = found
            .into_iter()
            .filter(|found| found.latest.as_ref().is_none_or(|id| recorded.contains(id)))
            .collect();
        if found.is_empty() {
            return Ok(0);
        }
        let transactions: Vec<String> = found
            .iter()
            .map(|found| found.transaction.clone())
            .collect();
        let mut ids = Vec::new();
        let mut documents = Vec::new();
        for (document, event) in found.into_iter().flat_map(|found| found.events) {
            ids.push(event.id.clone());
            let targets = event.targets.unwrap_or_default();
            documents.push(with_state(
                document,
                state(&targets, now, retention),
                Vec::new(),
            ));
        }
        self.settle(&documents, &transactions, &ids).await?;
        Ok(documents.len())
    }

    /// Which of these events `events` holds already: read again from the feed (reopened, or by a new
    /// sender resuming where the last one saved its position), or moved from an earlier version's batch.
    pub async fn known(&self, ids: &[&str]) -> Result<HashSet<String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let found: Vec<Document> = all(self
            .events
            .find(doc! {"_id": {"$in": ids}})
            .projection(doc! {"_id": 1}))
        .await?;
        Ok(found
            .iter()
            .filter_map(|event| event.get_str("_id").ok().map(str::to_owned))
            .collect())
    }

    /// Inserts events into `events` in one unordered `insert_many`; one that is there already (inserted
    /// by an earlier sender) is the same event, and no error.
    pub async fn insert_events(&self, events: &[Document]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.events.insert_many(events).ordered(false).await {
            let duplicates_only = match error.kind.as_ref() {
                ErrorKind::InsertMany(failure) => {
                    failure.write_concern_error.is_none()
                        && failure
                            .write_errors
                            .iter()
                            .flatten()
                            .all(|write_error| write_error.code == DUPLICATE_KEY)
                }
                _ => false,
            };
            if !duplicates_only {
                return Err(classify(&error));
            }
        }
        Ok(())
    }

    /// Moves new events from their transactions' outboxes into `events`: one unordered `insert_many`
    /// (an event there already is the same event), each with its delivery state, then one `update_many`
    /// that pulls them from `transactions` and keeps `outbox_since` true (absent once an outbox is
    /// empty). Pulled by id, in one pipeline per document: an event pushed meanwhile stays.
    pub async fn settle(
        &self,
        events: &[Document],
        transactions: &[String],
        ids: &[String],
    ) -> Result<(), StoreError> {
        self.insert_events(events).await?;
        if transactions.is_empty() {
            return Ok(());
        }
        let outbox = format!("${OUTBOX}");
        let empty = doc! {"$eq": [{"$size": outbox.as_str()}, 0]};
        self.transactions
            .update_many(
                doc! {"_id": {"$in": transactions}},
                vec![
                    doc! {"$set": {OUTBOX: {"$filter": {
                        "input": {"$ifNull": [outbox.as_str(), []]},
                        "cond": {"$not": [{"$in": ["$$this._id", ids]}]},
                    }}}},
                    doc! {"$set": {
                        OUTBOX_SINCE: {"$cond": [empty.clone(), "$$REMOVE", {"$min": format!("{outbox}.created_at")}]},
                        OUTBOX: {"$cond": [empty, "$$REMOVE", outbox.as_str()]},
                    }},
                ],
            )
            .await
            .map_err(|error| classify(&error))?;
        Ok(())
    }

    /// The pending events of these transactions (whether due or not), for the ordering gate.
    ///
    /// An event's id is derived from its transaction and version, so the earlier versions of each event
    /// are looked up by `_id` (no index of their own); a first version (nearly every event) has none.
    pub async fn pending_of(&self, events: &[(&str, i64)]) -> Result<Vec<Earlier>, StoreError> {
        let ids: Vec<String> = events
            .iter()
            .flat_map(|(transaction, version)| {
                (1..*version).map(move |earlier| event_id(transaction, earlier))
            })
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<Document> = all(self
            .events
            .find(doc! {"_id": {"$in": ids}, "due_at": {"$type": "date"}})
            .projection(doc! {"transaction_id": 1, "version": 1, "targets": 1}))
        .await?;
        Ok(found
            .iter()
            .filter_map(|document| {
                Some(Earlier {
                    transaction_id: document.get_str("transaction_id").ok()?.to_owned(),
                    version: document.get_i64("version").ok()?,
                    pending_for: targets_of(document).map(|targets| {
                        targets
                            .into_iter()
                            .filter(|target| target.status == "pending")
                            .map(|target| target.endpoint)
                            .collect()
                    }),
                })
            })
            .collect())
    }

    /// Writes what became of events, in one `update_many` for all of them: the targets each round
    /// changed (merged by endpoint into the stored ones, so that a replay or another path's outcome for
    /// another endpoint made meanwhile stands), the attempts made (the last 100 kept), and the event's
    /// state computed from the merged targets: pending (`due_at`), delivered (expiring after
    /// `retention`) or failed (kept until replayed). One statement instead of one per event: the same
    /// trick as the drain's delivery counts, for the same reason (MongoDB's CPU per write).
    pub async fn record(
        &self,
        outcomes: &[Outcome],
        now: DateTime<Utc>,
        retention: std::time::Duration,
    ) -> Result<(), StoreError> {
        // One record per event: outcomes of one event from several attempts are merged first (the
        // pipeline picks one record per document).
        let mut merged: Vec<Outcome> = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match merged.iter_mut().find(|kept| kept.event == outcome.event) {
                Some(kept) => {
                    kept.targets =
                        merge_targets(std::mem::take(&mut kept.targets), outcome.targets.clone());
                    kept.attempts.extend(outcome.attempts.iter().cloned());
                }
                None => merged.push(outcome.clone()),
            }
        }
        if merged.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = merged
            .iter()
            .map(|outcome| outcome.event.as_str())
            .collect();
        let records: Vec<Document> = merged
            .iter()
            .map(|outcome| {
                doc! {
                    "targets": outcome.targets.iter().map(Target::document).collect::<Vec<_>>(),
                    "attempts": outcome.attempts.clone(),
                }
            })
            .collect();
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(30));
        let stored = doc! {"$ifNull": ["$targets", []]};
        let pending =
            doc! {"$filter": {"input": "$targets", "cond": {"$eq": ["$$this.status", "pending"]}}};
        let pipeline = vec![
            doc! {"$set": {"_r": {"$arrayElemAt": [
                {"$literal": records},
                {"$indexOfArray": [{"$literal": &ids}, "$_id"]},
            ]}}},
            doc! {"$set": {"targets": {"$concatArrays": [
                {"$map": {"input": stored.clone(), "as": "t", "in": {"$let": {
                    "vars": {"c": {"$first": {"$filter": {
                        "input": "$_r.targets",
                        "cond": {"$eq": ["$$this.endpoint", "$$t.endpoint"]},
                    }}}},
                    "in": {"$ifNull": ["$$c", "$$t"]},
                }}}},
                {"$filter": {
                    "input": "$_r.targets",
                    "as": "c",
                    "cond": {"$not": [{"$in": ["$$c.endpoint", {"$map": {"input": stored, "in": "$$this.endpoint"}}]}]},
                }},
            ]}}},
            doc! {"$set": {
                "_due": {"$min": {"$map": {"input": pending, "in": "$$this.next_at"}}},
                "_failed": {"$in": ["failed", "$targets.status"]},
            }},
            doc! {"$set": {
                "status": {"$cond": [{"$ne": [{"$ifNull": ["$_due", null]}, null]}, "pending", {"$cond": ["$_failed", "failed", "delivered"]}]},
                "due_at": {"$ifNull": ["$_due", "$$REMOVE"]},
                "expire_at": {"$cond": [
                    {"$or": [{"$ne": [{"$ifNull": ["$_due", null]}, null]}, "$_failed"]},
                    "$$REMOVE",
                    bson_time(now + retention),
                ]},
                "attempts": {"$slice": [
                    {"$concatArrays": [{"$ifNull": ["$attempts", []]}, "$_r.attempts"]},
                    -100,
                ]},
            }},
            doc! {"$unset": ["_r", "_due", "_failed"]},
        ];
        self.events
            .update_many(doc! {"_id": {"$in": &ids}}, pipeline)
            .await
            .map_err(|error| classify(&error))?;
        Ok(())
    }

    /// One event, as stored.
    pub async fn find(&self, id: &str) -> Result<Option<Document>, StoreError> {
        self.events
            .find_one(doc! {"_id": id})
            .await
            .map_err(|error| classify_read(&error))
    }

    /// The events of one transaction up to `version`, oldest first. An event's `_id` follows from its
    /// transaction and version: looked up by `_id`, never scanned for.
    pub async fn of_transaction(
        &self,
        transaction_id: &str,
        version: i64,
    ) -> Result<Vec<Document>, StoreError> {
        let ids: Vec<String> = (1..=version.clamp(0, 1000))
            .map(|version| event_id(transaction_id, version))
            .collect();
        all(self
            .events
            .find(doc! {"_id": {"$in": ids}})
            .sort(doc! {"version": 1}))
        .await
    }

    /// The newest events (at most `limit`) sent or to be sent to an endpoint of `owner` (on the partial
    /// `by_owner` index: an event carries the owners of its endpoints from when it was written).
    pub async fn of_owner(&self, owner: &str, limit: i64) -> Result<Vec<Document>, StoreError> {
        all(self
            .events
            .find(doc! {"owners": owner})
            .sort(doc! {"created_at": -1, "_id": -1})
            .limit(limit))
        .await
    }

    /// How many events wait to be sent (due now or later), on the dispatcher's own partial index.
    pub async fn count_pending(&self) -> Result<u64, StoreError> {
        self.events
            .count_documents(doc! {"due_at": {"$type": "date"}})
            .await
            .map_err(|error| classify_read(&error))
    }

    /// Queues event `id` again for `targets` (each pending, from no attempt, due now): a replay.
    pub async fn requeue(&self, id: &str, targets: &[Target]) -> Result<(), StoreError> {
        let now = bson_time(Utc::now());
        let targets: Vec<Document> = targets.iter().map(Target::document).collect();
        self.events
            .update_one(
                doc! {"_id": id},
                doc! {
                    "$set": {"targets": targets, "status": "pending", "due_at": now},
                    "$unset": {"expire_at": ""},
                },
            )
            .await
            .map_err(|error| classify(&error))?;
        Ok(())
    }

    /// Queues again, for `endpoint`, every event that failed there (created since `since`, or every one
    /// kept), from no attempt; answers how many.
    pub async fn requeue_failed(
        &self,
        endpoint: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError> {
        let now = bson_time(Utc::now());
        let mut filter =
            doc! {"targets": {"$elemMatch": {"endpoint": endpoint, "status": "failed"}}};
        if let Some(since) = since {
            filter.insert("created_at", doc! {"$gte": bson_time(since)});
        }
        let result = self
            .events
            .update_many(
                filter,
                doc! {
                    "$set": {
                        "targets.$[target].status": "pending",
                        "targets.$[target].attempts": 0,
                        "targets.$[target].next_at": now,
                        "status": "pending",
                        "due_at": now,
                    },
                    "$unset": {"expire_at": ""},
                },
            )
            .array_filters(vec![
                doc! {"target.endpoint": endpoint, "target.status": "failed"},
            ])
            .await
            .map_err(|error| classify(&error))?;
        Ok(result.modified_count)
    }

    /// Queues event `id` of `event_type` with `payload` for `endpoint` only, due now, about no
    /// transaction (its `transaction_id` is its own, so no ordering waits on it); `owner`: the
    /// endpoint's.
    pub async fn queue_alone(
        &self,
        id: &str,
        event_type: &str,
        payload: String,
        endpoint: &str,
        owner: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut event = doc! {
            "_id": id,
            "type": event_type,
            "transaction_id": format!("{event_type}:{id}"),
            "version": 1_i64,
            "created_at": bson_time(now),
            "acknowledged_at": bson_time(now),
            "payload": payload,
            "status": "pending",
            "due_at": bson_time(now),
            "targets": [Target::pending(endpoint, now).document()],
        };
        // As every event to an owned endpoint: the portal lists its owner's events by `owners`.
        if let Some(owner) = owner {
            event.insert("owners", vec![owner.to_owned()]);
        }
        self.events
            .insert_one(event)
            .await
            .map_err(|error| classify(&error))?;
        Ok(())
    }

    /// The attempts (endpoint, status, time) of the newest `limit` events: one bounded read on the
    /// `newest` index, from which the console tells each endpoint's recent health.
    pub async fn newest_attempts(&self, limit: i64) -> Result<Vec<Document>, StoreError> {
        all(self
            .events
            .find(doc! {})
            .sort(doc! {"created_at": -1, "_id": -1})
            .projection(doc! {"attempts.endpoint": 1, "attempts.status_code": 1, "attempts.at": 1})
            .limit(limit))
        .await
    }
}
