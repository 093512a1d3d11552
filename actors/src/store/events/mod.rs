//! Events: what happened to a transaction, delivered to the merchant's endpoints by
//! [`crate::delivery`]. This module owns everything about them in MongoDB: an event's shape (type, id,
//! payload, routing: here), how delivery reads and records it (`model.rs`), the feed new events are read
//! from (`feed.rs`), and every read and write of the event collections ([`EventLog`], `log.rs`).
//!
//! **The event is part of its change.** The write that changes a transaction — a fold, a conflict, the
//! reconciler's give-up — bumps its `version` and, in the same single-document write, sets the change's
//! event as the transaction's [`EVENT`] ([`put_event`]). No crash or failed write between two writes can
//! lose an event or write one without its change; a refold that changes nothing (a journal entry applied
//! twice, a repeat received by another instance) bumps nothing and writes no event; and one
//! transaction's events are ordered by its document, whose writes the oplog keeps in order.
//!
//! The sending instance reads every such write from the feed (the change stream of `transactions`),
//! sends each event once, then inserts it into `events` with what became of it (delivered, to be
//! retried, failed); nothing more is written to the transaction. See `delivery/new_events.rs`.
//!
//! An event's `_id` is derived from the transaction and the version its change produced ([`event_id`]),
//! so an event read twice from the feed (reopened, or by a new sender) is one event: the sender skips
//! what `events` holds already.
//!
//! **Routing.** An event is written only when an enabled endpoint wants it, with its `targets` (one per
//! such endpoint) already set: the endpoints are read from `endpoints` once per drain batch
//! ([`EventLog::routes`]), so every instance routes by the same, current list. A change no endpoint wants
//! costs MongoDB nothing more than the transaction write; an endpoint receives the changes written after
//! it was created.
//!
//! In `events`, an event is `pending` with a `due_at` until every endpoint it targets has it `delivered`
//! or `failed`; a partial index holds only pending events, so delivered ones cost the dispatcher nothing.
//! Delivered events carry `expire_at` (a TTL index removes them after `delivery.retention_days`); dead
//! letters keep none until they are replayed.
//!
//! Length: an event's shape — its type, id, payload and routing — is one idea; its unit tests are beside
//! it.

pub mod feed;
mod log;
mod model;

pub use log::EventLog;
pub use model::{
    merge_targets, state, with_state, Earlier, NewEvents, Outcome, PendingEvent, StoredAttempt,
    StoredEvent,
};

use chrono::{DateTime, SecondsFormat, Utc};
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::document::{bson_time, texts_of};
use super::indexes::{newest, partial};
use crate::callback::Status;

/// What happened to a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created, or its status changed: `transaction.<status>`.
    Status(Status),
    /// A callback or status query contradicted it for the first time.
    Conflict,
    /// A callback and a status query agree on its final status.
    Verified,
    /// The reconciler gave up without a final answer.
    Unresolved,
}

impl EventType {
    /// Every event type, as endpoints subscribe to them.
    pub const ALL: [&'static str; 10] = [
        "transaction.successful",
        "transaction.failed",
        "transaction.pending",
        "transaction.cancelled",
        "transaction.expired",
        "transaction.ambiguous",
        "transaction.unknown",
        "transaction.conflict",
        "transaction.verified",
        "transaction.unresolved",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status(Status::Successful) => "transaction.successful",
            Self::Status(Status::Failed) => "transaction.failed",
            Self::Status(Status::Pending) => "transaction.pending",
            Self::Status(Status::Cancelled) => "transaction.cancelled",
            Self::Status(Status::Expired) => "transaction.expired",
            Self::Status(Status::Ambiguous) => "transaction.ambiguous",
            Self::Status(Status::Unknown) => "transaction.unknown",
            Self::Conflict => "transaction.conflict",
            Self::Verified => "transaction.verified",
            Self::Unresolved => "transaction.unresolved",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "transaction.conflict" => Some(Self::Conflict),
            "transaction.verified" => Some(Self::Verified),
            "transaction.unresolved" => Some(Self::Unresolved),
            other => other
                .strip_prefix("transaction.")
                .and_then(Status::parse)
                .map(Self::Status),
        }
    }

    /// The event a change from `before` (`None`: the transaction is new) to `after` calls for, if any.
    /// One change makes at most one event; a status change outranks the flags it may bring along.
    pub fn of_change(before: Option<&Document>, after: &Document) -> Option<Self> {
        let status = |document: &Document| document.get_str("status").ok().and_then(Status::parse);
        let flag = |document: &Document, field| document.get_bool(field).unwrap_or(false);
        let after_status = status(after).unwrap_or(Status::Unknown);
        let Some(before) = before else {
            return Some(Self::Status(after_status));
        };
        if status(before) != Some(after_status) {
            Some(Self::Status(after_status))
        } else if !flag(before, "conflict") && flag(after, "conflict") {
            Some(Self::Conflict)
        } else if !flag(before, "verified") && flag(after, "verified") {
            Some(Self::Verified)
        } else if !flag(before, "unresolved") && flag(after, "unresolved") {
            Some(Self::Unresolved)
        } else {
            None
        }
    }
}

/// The id of the event of a transaction's change to `version`: `evt_` and 32 hex digits, the same
/// whoever writes it.
pub fn event_id(transaction_id: &str, version: i64) -> String {
    let digest = Sha256::digest(format!("{transaction_id}#{version}").as_bytes());
    format!("evt_{}", hex::encode(&digest[..16]))
}

/// The `events` document of a change of `transaction` (the document as written, at `version`), targeted
/// at the endpoints of `routes` that want it; `None` when none does (no event is written).
pub fn event_document(
    transaction: &Document,
    event_type: EventType,
    version: i64,
    now: DateTime<Utc>,
    routes: &Routes,
) -> Option<Document> {
    let text = |field| transaction.get_str(field).unwrap_or_default();
    let targets = routes.targets(event_type, text("provider"), now);
    if targets.is_empty() {
        return None;
    }
    let transaction_id = text("_id");
    let payload = payload(transaction, event_type, version, now);
    // When the change was acknowledged: its callback's arrival (the reconciler's own changes, now).
    let acknowledged_at = match transaction.get("last_callback_at") {
        Some(Bson::DateTime(at)) if event_type != EventType::Unresolved => *at,
        _ => bson_time(now),
    };
    let owners = routes.owners(&targets);
    let mut event = doc! {
        "_id": event_id(transaction_id, version),
        "type": event_type.as_str(),
        "provider": text("provider"),
        "flow": text("flow"),
        "transaction_key": text("transaction_key"),
        "transaction_id": transaction_id,
        "version": version,
        "created_at": bson_time(now),
        "acknowledged_at": acknowledged_at,
        "payload": payload,
        "status": "pending",
        "due_at": bson_time(now),
        "targets": targets.iter().map(Target::document).collect::<Vec<_>>(),
    };
    // Only for endpoints that belong to a merchant (a portal's `owner`): the portal lists an owner's
    // events on a partial index that costs nothing to events without one.
    if !owners.is_empty() {
        event.insert("owners", owners);
    }
    Some(event)
}

/// The delivery state of one event for one endpoint, as stored in the event's `targets`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub endpoint: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i32,
    pub next_at: DateTime<Utc>,
}

impl Target {
    pub fn pending(endpoint: &str, now: DateTime<Utc>) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            status: "pending".to_owned(),
            attempts: 0,
            next_at: now,
        }
    }

    pub fn document(&self) -> Document {
        doc! {
            "endpoint": &self.endpoint,
            "status": &self.status,
            "attempts": self.attempts,
            "next_at": bson_time(self.next_at),
        }
    }

    pub fn from_document(document: &Document) -> Option<Self> {
        Some(Self {
            endpoint: document.get_str("endpoint").ok()?.to_owned(),
            status: document.get_str("status").ok()?.to_owned(),
            attempts: document.get_i32("attempts").unwrap_or(0),
            next_at: document
                .get_datetime("next_at")
                .ok()
                .map(|at| at.to_chrono())
                .unwrap_or_default(),
        })
    }
}

/// Whether an endpoint subscribed to `event_types` and `providers` (empty: all) wants an event of
/// `event_type` about a transaction of `provider`.
pub fn subscribed(
    event_types: &[String],
    providers: &[String],
    event_type: &str,
    provider: &str,
) -> bool {
    (event_types.is_empty() || event_types.iter().any(|wanted| wanted == event_type))
        && (providers.is_empty() || providers.iter().any(|wanted| wanted == provider))
}

/// Which enabled endpoint wants which events, as `endpoints` said when it was read.
#[derive(Debug, Clone, Default)]
pub struct Routes(Vec<Route>);

#[derive(Debug, Clone)]
struct Route {
    endpoint: String,
    /// Empty: every type.
    event_types: Vec<String>,
    /// Empty: every provider.
    providers: Vec<String>,
    /// The merchant the endpoint belongs to (`owner`), if any.
    owner: Option<String>,
}

impl Routes {
    /// Routes to endpoints with these ids, each wanting these event types and providers (empty: all).
    pub fn new(routes: impl IntoIterator<Item = (String, Vec<String>, Vec<String>)>) -> Self {
        let mut routes: Vec<Route> = routes
            .into_iter()
            .map(|(endpoint, event_types, providers)| Route {
                endpoint,
                event_types,
                providers,
                owner: None,
            })
            .collect();
        // Targets in a stable order, whichever order MongoDB returned the endpoints in.
        routes.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        Self(routes)
    }

    /// Whether no endpoint wants anything: no event is written at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A pending target for each endpoint that wants an event of `event_type` about `provider`.
    /// These routes with the endpoints' owners (endpoint id, owner).
    pub fn owned(mut self, owners: impl IntoIterator<Item = (String, String)>) -> Self {
        for (endpoint, owner) in owners {
            if let Some(route) = self.0.iter_mut().find(|route| route.endpoint == endpoint) {
                route.owner = Some(owner);
            }
        }
        self
    }

    /// The distinct owners of these targets' endpoints, sorted.
    pub fn owners(&self, targets: &[Target]) -> Vec<String> {
        let mut owners: Vec<String> = self
            .0
            .iter()
            .filter(|route| {
                targets
                    .iter()
                    .any(|target| target.endpoint == route.endpoint)
            })
            .filter_map(|route| route.owner.clone())
            .collect();
        owners.sort();
        owners.dedup();
        owners
    }

    pub fn targets(
        &self,
        event_type: EventType,
        provider: &str,
        now: DateTime<Utc>,
    ) -> Vec<Target> {
        let kind = event_type.as_str();
        self.0
            .iter()
            .filter(|route| subscribed(&route.event_types, &route.providers, kind, provider))
            .map(|route| Target::pending(&route.endpoint, now))
            .collect()
    }
}

/// The event of a transaction's latest change that made one, written by that change's own write (each
/// overwrites the previous one). The sender reads every version's from the change stream of
/// `transactions` — the oplog keeps each write — so delivering an event writes nothing to its
/// transaction; the document keeps the last one for the catch-up after an outage longer than the oplog's
/// window (see `delivery/feed.rs`).
pub const EVENT: &str = "event";

/// Where 0.5.0 kept a transaction's events until their first attempts: an array pulled once they were
/// sent, with `outbox_since` (which a partial index holds) while it is not empty. Written by this version
/// only behind events a 0.5.0 instance left there (a rolling upgrade); the sender moves them to `events`.
pub const OUTBOX: &str = "outbox";

/// When the oldest event in a 0.5.0 outbox was written; absent once it is empty.
pub const OUTBOX_SINCE: &str = "outbox_since";

/// Where 0.4.0 wrote new events (one document per drain batch); read only to move what an older
/// version left there into `events` (see [`EventLog::adopt_legacy`]).
pub const LEGACY_EVENT_BATCHES: &str = "event_batches";

/// Adds `event` (built by [`event_document`] for the change `update` makes) to `update`, so that the
/// change and its event are one write. `current` is the transaction as read for this change: while it
/// still holds events a 0.5.0 instance left in its `outbox`, the event joins them there, behind them, so
/// that they are sent in version order; otherwise it is the document's [`EVENT`].
pub fn put_event(update: &mut Document, event: Document, current: &Document, now: DateTime<Utc>) {
    if current.contains_key(OUTBOX_SINCE) {
        let mut push = update.get_document("$push").cloned().unwrap_or_default();
        push.insert(OUTBOX, event);
        update.insert("$push", push);
        let mut earliest = update.get_document("$min").cloned().unwrap_or_default();
        earliest.insert(OUTBOX_SINCE, bson_time(now));
        update.insert("$min", earliest);
    } else {
        let mut set = update.get_document("$set").cloned().unwrap_or_default();
        set.insert(EVENT, event);
        update.insert("$set", set);
    }
}

/// The partial index through which the sender finds transactions with new events, oldest first (`_id`
/// in it, so that skipping the transactions being sent is read from the index alone).
pub(super) fn outbox_index() -> IndexModel {
    partial(
        doc! {OUTBOX_SINCE: 1, "_id": 1},
        "outbox",
        doc! {OUTBOX_SINCE: {"$type": "date"}},
    )
}

/// The exact bytes delivered: `{"type", "timestamp", "data"}`, where `data` is the transaction as
/// `GET /v1/transactions/{provider}/{key}` shows it (without its callbacks) and its `version`.
pub fn payload(
    transaction: &Document,
    event_type: EventType,
    version: i64,
    now: DateTime<Utc>,
) -> String {
    let text = |field| transaction.get_str(field).ok();
    let time = |field| match transaction.get(field) {
        Some(Bson::DateTime(at)) => Some(rfc3339(at.to_chrono())),
        _ => None,
    };
    let amount = match transaction.get("amount") {
        Some(Bson::Decimal128(amount)) => Some(amount.to_string()),
        _ => None,
    };
    let links: Vec<Value> = transaction
        .get_array("linked_transactions")
        .map(|links| {
            links
                .iter()
                .filter_map(Bson::as_document)
                .map(|link| {
                    json!({
                        "provider": link.get_str("provider").unwrap_or_default(),
                        "flow": link.get_str("flow").unwrap_or_default(),
                        "transaction_key": link.get_str("transaction_key").unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let flag = |field| transaction.get_bool(field).unwrap_or(false);
    let body = json!({
        "type": event_type.as_str(),
        "timestamp": rfc3339(now),
        "data": {
            "provider": text("provider").unwrap_or_default(),
            "flow": text("flow").unwrap_or_default(),
            "transaction_key": text("transaction_key").unwrap_or_default(),
            "status": text("status").unwrap_or_default(),
            "reason": text("reason"),
            "amount": amount,
            "currency": text("currency"),
            "msisdn": text("msisdn"),
            "receipt": text("receipt"),
            "linked_transactions": links,
            "conflict": flag("conflict"),
            "conflict_count": transaction.get_i64("conflict_count").unwrap_or(0),
            "settled_by": text("settled_by"),
            "verified": flag("verified"),
            "unresolved": flag("unresolved"),
            "first_callback_at": time("first_callback_at"),
            "last_callback_at": time("last_callback_at"),
            "version": version,
        },
    });
    body.to_string()
}

/// RFC 3339 in UTC with milliseconds, as the query API writes times.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The indexes of `events`.
pub(super) fn indexes() -> Vec<IndexModel> {
    let pending = doc! {"due_at": {"$type": "date"}};
    vec![
        // What the dispatcher looks for: pending events, soonest due first. (The ordering gate looks
        // earlier versions up by `_id`, which is derived from the transaction and the version.)
        partial(doc! {"due_at": 1}, "due", pending),
        // Listing, newest first.
        newest("created_at"),
        // An owner's events, newest first (a merchant's portal shows only its endpoints' events). Partial:
        // an event for no owned endpoint costs this index nothing.
        partial(
            doc! {"owners": 1, "created_at": -1, "_id": -1},
            "by_owner",
            doc! {"owners": {"$exists": true}},
        ),
        // Delivered events expire; dead letters carry no `expire_at` until replayed and delivered.
        IndexModel::builder()
            .keys(doc! {"expire_at": 1})
            .options(
                IndexOptions::builder()
                    .name("expire".to_owned())
                    .expire_after(std::time::Duration::ZERO)
                    // Only the documents that expire: a pending event costs this index nothing.
                    .partial_filter_expression(doc! {"expire_at": {"$type": "date"}})
                    .build(),
            )
            .build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transaction(status: &str, conflict: bool, verified: bool) -> Document {
        doc! {"_id": "mpesa|stk_push|ws_1", "provider": "mpesa", "flow": "stk_push",
        "transaction_key": "ws_1", "status": status, "conflict": conflict, "verified": verified}
    }

    #[test]
    fn one_change_makes_at_most_one_event() {
        let pending = transaction("pending", false, false);
        let successful = transaction("successful", false, false);
        assert_eq!(
            EventType::of_change(None, &pending),
            Some(EventType::Status(Status::Pending))
        );
        assert_eq!(
            EventType::of_change(Some(&pending), &successful),
            Some(EventType::Status(Status::Successful))
        );
        assert_eq!(EventType::of_change(Some(&successful), &successful), None);
        assert_eq!(
            EventType::of_change(Some(&successful), &transaction("successful", true, false)),
            Some(EventType::Conflict)
        );
        assert_eq!(
            EventType::of_change(Some(&successful), &transaction("successful", false, true)),
            Some(EventType::Verified)
        );
        let conflicted = transaction("successful", true, false);
        assert_eq!(EventType::of_change(Some(&conflicted), &conflicted), None);
        let mut unresolved = pending.clone();
        unresolved.insert("unresolved", true);
        assert_eq!(
            EventType::of_change(Some(&pending), &unresolved),
            Some(EventType::Unresolved)
        );
    }

    #[test]
    fn an_event_is_the_documents_unless_a_0_5_0_outbox_still_holds_events() {
        let now = Utc::now();
        let event = doc! {"_id": "evt_2", "version": 2_i64};
        let mut update = doc! {"$set": {"version": 2_i64}};
        put_event(&mut update, event.clone(), &doc! {"_id": "t"}, now);
        let set = update.get_document("$set").unwrap();
        assert_eq!(set.get_document(EVENT).unwrap(), &event);
        assert_eq!(set.get_i64("version").unwrap(), 2);
        assert!(!update.contains_key("$push") && !update.contains_key("$min"));

        // Behind an event 0.5.0 left: in the outbox, so that the sender moves both in version order.
        let mut update = doc! {"$set": {"version": 2_i64}};
        let current = doc! {"_id": "t", OUTBOX: [{"_id": "evt_1"}], OUTBOX_SINCE: bson_time(now)};
        put_event(&mut update, event.clone(), &current, now);
        assert!(!update.get_document("$set").unwrap().contains_key(EVENT));
        assert_eq!(
            update
                .get_document("$push")
                .unwrap()
                .get_document(OUTBOX)
                .unwrap(),
            &event
        );
        assert!(update
            .get_document("$min")
            .unwrap()
            .contains_key(OUTBOX_SINCE));
    }

    #[test]
    fn event_ids_are_stable_and_distinct_per_version() {
        let first = event_id("mpesa|stk_push|ws_1", 1);
        assert_eq!(first, event_id("mpesa|stk_push|ws_1", 1));
        assert_ne!(first, event_id("mpesa|stk_push|ws_1", 2));
        assert_ne!(first, event_id("mpesa|stk_push|ws_2", 1));
        assert!(first.starts_with("evt_") && first.len() == 36);
    }

    #[test]
    fn every_event_type_is_listed() {
        let mut named: Vec<&str> = Status::ALL
            .iter()
            .map(|status| EventType::Status(*status).as_str())
            .collect();
        named.extend(
            [
                EventType::Conflict,
                EventType::Verified,
                EventType::Unresolved,
            ]
            .map(EventType::as_str),
        );
        assert_eq!(named, EventType::ALL);
        for name in EventType::ALL {
            assert_eq!(EventType::parse(name).map(EventType::as_str), Some(name));
        }
        assert_eq!(EventType::parse("transaction.settled"), None);
    }
}
