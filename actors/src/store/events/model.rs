//! The event as delivery reads and records it: a new event read from the feed or `events`
//! ([`PendingEvent`]), what an attempt changed ([`Outcome`]), and its delivery state ([`state`]).

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, Bson, Document};

use super::Target;
use crate::store::bson_time;

/// What became of one event in a round: the targets it changed and the attempts made.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub event: String,
    /// Only the targets whose state changed: [`super::EventLog::record`] merges them by endpoint.
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

/// The events a 0.5.0 outbox holds (moved to `events` during a rolling upgrade): each event's document and what the dispatcher reads
/// of it.
#[derive(Debug, Clone)]
pub struct NewEvents {
    /// The transaction's `_id`.
    pub transaction: String,
    /// Its outbox, in version order: each event as written, and as the dispatcher reads it.
    pub events: Vec<(Document, PendingEvent)>,
    /// The id of the event a 0.6.0 instance last wrote to it (`event`), if any: the feed sends it, and
    /// the outbox's later versions wait for it.
    pub latest: Option<String>,
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
    /// Reads an event document; `None` when it lacks what delivery needs.
    pub fn from_document(document: &Document) -> Option<Self> {
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

pub(super) fn targets_of(document: &Document) -> Option<Vec<Target>> {
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

/// An event as stored in `events`, as the query API, the console and the portal show it: one reading of
/// the document's fields, here beside the writes that make them.
#[derive(Debug, Clone, Default)]
pub struct StoredEvent {
    pub id: String,
    pub event_type: String,
    pub provider: Option<String>,
    pub flow: Option<String>,
    pub transaction_key: Option<String>,
    pub version: i64,
    /// pending, delivered or failed.
    pub status: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// The exact bytes delivered (absent from a listing, which leaves them out).
    pub payload: Option<String>,
    pub targets: Vec<Target>,
    pub attempts: Vec<StoredAttempt>,
}

/// One attempt, as recorded.
#[derive(Debug, Clone, Default)]
pub struct StoredAttempt {
    pub endpoint: Option<String>,
    pub attempt: i32,
    pub at: Option<DateTime<Utc>>,
    pub status_code: Option<i32>,
    pub duration_ms: i64,
    pub response: Option<String>,
    pub error: Option<String>,
}

impl StoredEvent {
    pub fn from_document(document: &Document) -> Self {
        let text =
            |document: &Document, field: &str| document.get_str(field).ok().map(str::to_owned);
        let documents = |field: &str| -> Vec<Document> {
            document
                .get_array(field)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Bson::as_document)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            id: text(document, "_id").unwrap_or_default(),
            event_type: text(document, "type").unwrap_or_default(),
            provider: text(document, "provider"),
            flow: text(document, "flow"),
            transaction_key: text(document, "transaction_key"),
            version: document.get_i64("version").unwrap_or(0),
            status: text(document, "status"),
            created_at: time_of(document, "created_at"),
            payload: text(document, "payload"),
            targets: documents("targets")
                .iter()
                .filter_map(Target::from_document)
                .collect(),
            attempts: documents("attempts")
                .iter()
                .map(|attempt| StoredAttempt {
                    endpoint: text(attempt, "endpoint"),
                    attempt: attempt.get_i32("attempt").unwrap_or(0),
                    at: time_of(attempt, "at"),
                    status_code: attempt.get_i32("status_code").ok(),
                    duration_ms: attempt.get_i64("duration_ms").unwrap_or(0),
                    response: text(attempt, "response"),
                    error: text(attempt, "error"),
                })
                .collect(),
        }
    }
}
