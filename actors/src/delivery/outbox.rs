//! What delivery reads and writes in MongoDB: the transactions' outboxes, where each change's event is
//! written with the change, and `events`, where events move once attempted (see
//! [`crate::store::events`]); the merchant's `endpoints`; and the `leases` document that makes one
//! instance at a time the sender.
//!
//! Length: every read and write delivery makes in MongoDB, in one place, so that the sharding rules and the
//! indexes they rely on can be checked against one file.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::{Collection, Database};

use super::sealing::{load, SecretsKey};
use super::signature::{secret_key, SigningKeys};
use crate::store::errors::{all, classify, classify_read, is_duplicate_key, DUPLICATE_KEY};
use crate::store::events::feed::{Feed, SENDING_LEASE};
pub use crate::store::events::Target;
use crate::store::events::{event_id, subscribed, LEGACY_EVENT_BATCHES, OUTBOX, OUTBOX_SINCE};
pub use crate::store::texts_of;
use crate::store::{bson_time, StoreError};

/// An endpoint as delivery needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRecord {
    pub id: String,
    pub url: String,
    /// Keys that sign now: the current secret and every one rotated out whose own overlap has not ended.
    pub keys: SigningKeys,
    /// Event types it receives; empty: all.
    pub event_types: Vec<String>,
    /// Providers (stored names) whose events it receives; empty: all.
    pub providers: Vec<String>,
    pub enabled: bool,
    pub max_in_flight: usize,
    pub rate_limit_per_sec: Option<u32>,
    /// Since when every attempt failed, if they do.
    pub failing_since: Option<DateTime<Utc>>,
}

impl EndpointRecord {
    /// Whether an event of `event_type` about a transaction of `provider` is for this endpoint.
    pub fn wants(&self, event_type: &str, provider: &str) -> bool {
        subscribed(&self.event_types, &self.providers, event_type, provider)
    }

    /// Reads an `endpoints` document; `None` when it has no usable URL or key.
    pub fn from_document(
        document: &Document,
        now: DateTime<Utc>,
        default_in_flight: usize,
        secrets_key: Option<&SecretsKey>,
    ) -> Option<Self> {
        let id = document.get_str("_id").ok()?;
        let texts = |field| texts_of(document, field);
        let keys = document
            .get_array("secrets")
            .ok()?
            .iter()
            .filter_map(Bson::as_document)
            .filter(|secret| match secret.get_datetime("expires_at") {
                Ok(until) => until.timestamp_millis() > now.timestamp_millis(),
                Err(_) => true,
            })
            .filter_map(|secret| load(secrets_key, id, secret.get_str("secret").ok()?))
            .filter_map(|secret| secret_key(&secret))
            .collect::<Vec<_>>();
        if keys.is_empty() {
            return None;
        }
        let positive = |field| match document.get(field) {
            Some(Bson::Int32(value)) if *value > 0 => Some(*value as u32),
            Some(Bson::Int64(value)) if *value > 0 => u32::try_from(*value).ok(),
            _ => None,
        };
        Some(Self {
            id: id.to_owned(),
            url: document.get_str("url").ok()?.to_owned(),
            keys: SigningKeys(keys),
            event_types: texts("event_types"),
            providers: texts("providers"),
            enabled: document.get_bool("enabled").unwrap_or(true),
            max_in_flight: positive("max_in_flight")
                .map_or(default_in_flight, |value| value as usize),
            rate_limit_per_sec: positive("rate_limit_per_sec"),
            failing_since: time_of(document, "failing_since"),
        })
    }
}

/// What became of one event in a round: the targets it changed and the attempts made.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub event: String,
    /// Only the targets whose state changed: [`Outbox::record`] merges them by endpoint.
    pub targets: Vec<Target>,
    pub attempts: Vec<Document>,
}

/// `targets` with `changed` put in place of the targets of the same endpoints (and added when new).
pub fn merge_targets(mut targets: Vec<Target>, changed: Vec<Target>) -> Vec<Target> {
    for target in changed {
        match targets
            .iter_mut()
            .find(|kept| kept.endpoint == target.endpoint)
        {
            Some(kept) => *kept = target,
            None => targets.push(target),
        }
    }
    targets
}

impl Outcome {
    /// The outcome of `event` whose targets were `before` (`None`: not fanned out yet) and are now
    /// `after`: only the targets that changed are kept.
    pub fn changed(
        event: String,
        before: Option<&[Target]>,
        after: Vec<Target>,
        attempts: Vec<Document>,
    ) -> Self {
        let targets = after
            .into_iter()
            .filter(|target| !before.is_some_and(|before| before.iter().any(|kept| kept == target)))
            .collect();
        Self {
            event,
            targets,
            attempts,
        }
    }
}

/// A batch of new events as the drain wrote it: each event's document and what the dispatcher reads
/// of it.
#[derive(Debug, Clone)]
pub struct NewEvents {
    /// The transaction's `_id`.
    pub transaction: String,
    /// Its outbox, in version order: each event as written, and as the dispatcher reads it.
    pub events: Vec<(Document, PendingEvent)>,
}

/// A pending event as the dispatcher reads it.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub id: String,
    pub event_type: String,
    pub provider: String,
    pub transaction_id: String,
    pub version: i64,
    pub payload: String,
    pub created_at: DateTime<Utc>,
    /// When the change was acknowledged to the operator (its callback's arrival).
    pub acknowledged_at: DateTime<Utc>,
    /// Set when the event is written (see `store/events.rs`); `None` only for events written by versions
    /// before 0.3.0, whose endpoints the dispatcher decides once.
    pub targets: Option<Vec<Target>>,
}

impl PendingEvent {
    pub(crate) fn from_document(document: &Document) -> Option<Self> {
        let text = |field| document.get_str(field).ok().map(str::to_owned);
        Some(Self {
            id: text("_id")?,
            event_type: text("type")?,
            provider: text("provider").unwrap_or_default(),
            transaction_id: text("transaction_id")?,
            version: document.get_i64("version").ok()?,
            payload: text("payload").unwrap_or_default(),
            created_at: time_of(document, "created_at").unwrap_or_default(),
            acknowledged_at: time_of(document, "acknowledged_at")
                .or_else(|| time_of(document, "created_at"))
                .unwrap_or_default(),
            targets: targets_of(document),
        })
    }
}

fn time_of(document: &Document, field: &str) -> Option<DateTime<Utc>> {
    document.get_datetime(field).ok().map(|at| at.to_chrono())
}

fn targets_of(document: &Document) -> Option<Vec<Target>> {
    document.get_array("targets").ok().map(|targets| {
        targets
            .iter()
            .filter_map(Bson::as_document)
            .filter_map(Target::from_document)
            .collect()
    })
}

/// An earlier version of a transaction still pending somewhere: what the ordering gate checks.
#[derive(Debug, Clone)]
pub struct Earlier {
    pub transaction_id: String,
    pub version: i64,
    /// `None`: not fanned out yet (it may be for any endpoint).
    pub pending_for: Option<Vec<String>>,
}

/// The collections delivery uses. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    events: Collection<Document>,
    transactions: Collection<Document>,
    /// Where 0.4.0 instances write new events; emptied into `events` (see [`Outbox::adopt_legacy`]).
    legacy_batches: Collection<Document>,
    endpoints: Collection<Document>,
    leases: Collection<Document>,
    feed: Feed,
}

impl Outbox {
    pub fn new(database: &Database) -> Self {
        Self {
            events: database.collection("events"),
            transactions: database.collection("transactions"),
            legacy_batches: database.collection(LEGACY_EVENT_BATCHES),
            endpoints: database.collection("endpoints"),
            leases: database.collection("leases"),
            feed: Feed::new(database),
        }
    }

    pub fn events(&self) -> &Collection<Document> {
        &self.events
    }

    pub fn endpoints(&self) -> &Collection<Document> {
        &self.endpoints
    }

    /// The feed of new events (see [`crate::store::events::feed`]).
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Takes or renews the sender's lease for `instance`; false while another instance holds it.
    ///
    /// Its end is set on MongoDB's clock (`$$NOW`) and judged on it: two instances never compare their
    /// own clocks. The holder counts its lease from when it asked, on its own monotonic clock, so it
    /// always believes its lease ends before MongoDB does.
    pub async fn lead(
        &self,
        instance: &str,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        // One atomic write whatever the lease's state (an upsert cannot filter on `$$NOW`): it takes the
        // lease when this instance holds it or it has run out, and leaves it as it is otherwise.
        let never = Bson::DateTime(mongodb::bson::DateTime::MIN);
        let lease = self
            .leases
            .find_one_and_update(
                doc! {"_id": SENDING_LEASE},
                vec![
                    doc! {"$set": {"taken": {"$or": [
                        {"$eq": ["$owner", instance]},
                        {"$lt": [{"$ifNull": ["$until", never]}, "$$NOW"]},
                    ]}}},
                    doc! {"$set": {
                        "owner": {"$cond": ["$taken", instance, "$owner"]},
                        "until": {"$cond": ["$taken", {"$add": ["$$NOW", lease_ms]}, "$until"]},
                    }},
                    doc! {"$unset": "taken"},
                ],
            )
            .upsert(true)
            .return_document(mongodb::options::ReturnDocument::After)
            .await;
        match lease {
            Ok(lease) => Ok(lease.is_some_and(|lease| lease.get_str("owner") == Ok(instance))),
            // Two instances creating the lease at once: the other one did.
            Err(error) if is_duplicate_key(&error) => Ok(false),
            Err(error) => Err(classify(&error)),
        }
    }

    /// Gives the lease back (a clean stop): another instance, or this one restarted, sends at once
    /// instead of waiting for it to run out. Only `instance`'s own lease is touched.
    pub async fn release(&self, instance: &str) -> Result<(), StoreError> {
        self.leases
            .update_one(
                doc! {"_id": SENDING_LEASE, "owner": instance},
                doc! {"$set": {"owner": Bson::Null, "until": Bson::DateTime(mongodb::bson::DateTime::MIN)}},
            )
            .await
            .map(|_| ())
            .map_err(|error| classify(&error))
    }

    /// Every endpoint, enabled or not, as stored.
    pub async fn load_endpoints(&self) -> Result<Vec<Document>, StoreError> {
        all(self.endpoints.find(doc! {})).await
    }

    /// What [`Outbox::due`] looks for. `$type` lets the planner use the partial index of pending events
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

    /// What [`Outbox::new_events`] looks for: transactions whose outbox holds events.
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
            .projection(doc! {OUTBOX: 1})
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
                Some(NewEvents {
                    transaction: id,
                    events,
                })
            })
            .collect())
    }

    /// How many transactions have new events waiting, counted up to `cap`.
    pub async fn count_waiting(&self, cap: u64) -> Result<u64, StoreError> {
        self.transactions
            .count_documents(Self::outbox_filter())
            .hint(mongodb::options::Hint::Name("outbox".into()))
            .limit(cap)
            .await
            .map_err(|error| classify_read(&error))
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
    /// At most `limit` transactions per call; returns how many events were moved.
    pub async fn adopt_outboxes(
        &self,
        limit: i64,
        now: DateTime<Utc>,
        retention: std::time::Duration,
    ) -> Result<usize, StoreError> {
        let found = self.new_events(&[], limit).await?;
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

    /// Which of these events `events` holds already (a batch written twice, or one whose sender died
    /// after inserting its events and before deleting it).
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

    /// Notes since when an endpoint has been failing (`None`: it succeeded again).
    pub async fn failing(
        &self,
        endpoint: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let update = match since {
            Some(since) => doc! {"$set": {"failing_since": bson_time(since)}},
            None => doc! {"$unset": {"failing_since": ""}},
        };
        self.endpoints
            .update_one(doc! {"_id": endpoint}, update)
            .await
            .map_err(|error| classify(&error))?;
        Ok(())
    }

    /// Turns an endpoint off (it answered `410 Gone`, or failed for too long).
    pub async fn disable(
        &self,
        endpoint: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.endpoints
            .update_one(
                doc! {"_id": endpoint},
                doc! {"$set": {"enabled": false, "disabled_reason": reason, "disabled_at": bson_time(now)}},
            )
            .await
            .map_err(|error| classify(&error))?;
        Ok(())
    }
}

/// An event's delivery state from its targets: `targets`, `status`, and `due_at` while some endpoint
/// still has it pending, or `expire_at` (after `retention`) once every one has it delivered; a failed
/// event (a dead letter) keeps neither. Absent fields are null (`record` removes them; an insert omits
/// them, see [`with_state`]).
pub fn state(targets: &[Target], now: DateTime<Utc>, retention: std::time::Duration) -> Document {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(30));
    let due = targets
        .iter()
        .filter(|target| target.status == "pending")
        .map(|target| target.next_at)
        .min();
    let status = if due.is_some() {
        "pending"
    } else if targets.iter().any(|target| target.status == "failed") {
        "failed"
    } else {
        "delivered"
    };
    doc! {
        "targets": targets.iter().map(Target::document).collect::<Vec<_>>(),
        "status": status,
        "due_at": due.map(bson_time),
        "expire_at": (status == "delivered").then(|| bson_time(now + retention)),
    }
}

/// A new event's document as it goes into `events`: as the drain wrote it, with its delivery state
/// ([`state`]) and the attempts made.
pub fn with_state(mut event: Document, state: Document, attempts: Vec<Document>) -> Document {
    for (field, value) in state {
        match value {
            Bson::Null => {
                event.remove(&field);
            }
            value => {
                event.insert(field, value);
            }
        }
    }
    if attempts.is_empty() {
        event.remove("attempts");
    } else {
        event.insert("attempts", attempts);
    }
    event
}
