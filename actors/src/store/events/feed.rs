//! The feed of new events: the change stream of `transactions`, filtered to the writes that carry an
//! event (an insert with [`EVENT`], an update that sets it). MongoDB's oplog already holds every such
//! write, in commit order, so the sending instance reads each version's event from it and writes nothing
//! to the transaction to say it was sent: the only writes of a first attempt are its event's insert into
//! `events` (with its outcome) and, once per group, the feed's **position**.
//!
//! **Position.** A resume token, kept in the sending lease's document (`feed`, with `feed_at`: the time
//! of the last change before it) and written only by the lease's holder, only once every event before it
//! is in `events`. A new holder (another instance, or this one restarted) resumes there: what the previous
//! one sent and inserted is known in `events` and skipped; what it sent without inserting (a crash) is
//! sent again with the same `webhook-id` and body — an attempt whose outcome was unknown.
//!
//! **Start.** A database gets its first position when the store first connects (before this instance
//! writes anything), so that no event is written before the feed's start.
//!
//! **History lost.** Should the sender be stopped for longer than the oplog's window, its position is
//! gone. It then catches up from the documents: every transaction whose [`EVENT`] was written since the
//! position's time and is not in `events` is queued there (the retry path sends it), and the feed
//! starts again from now. A transaction changed twice in that outage keeps only its last event:
//! the earlier ones are counted in `mmo_delivery_feed_history_lost_total` and logged. Size the oplog
//! (`replication.oplogSizeMB`, or `oplogMinRetentionHours`) well beyond the longest outage to expect.

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, Bson, Document};
use mongodb::change_stream::event::ResumeToken;
use mongodb::change_stream::ChangeStream;
use mongodb::{Collection, Database};

use super::EVENT;
use crate::store::document::bson_time;
use crate::store::errors::{all, classify, classify_read, is_duplicate_key};
use crate::store::StoreError;

/// The `_id` of the sending lease's document, in `leases`: the feed's position is kept in it.
pub const SENDING_LEASE: &str = "delivery";

/// MongoDB's answers when a resume token is older than the oplog's first entry. (Other fatal change
/// stream errors, such as a token lost to a rollback, are reported and retried, not caught up from.)
const HISTORY_LOST: [i32; 2] = [
    286, // ChangeStreamHistoryLost
    136, // CappedPositionLost
];

/// Where the feed resumes, and the time of the last change before it.
#[derive(Debug, Clone)]
pub struct Position {
    pub token: ResumeToken,
    pub at: DateTime<Utc>,
}

/// One change read from the feed: its transaction and the event its write carried.
#[derive(Debug, Clone)]
pub struct Change {
    pub transaction: String,
    pub event: Document,
    /// When MongoDB committed it.
    pub at: Option<DateTime<Utc>>,
}

/// The feed's collections. Cheap to clone.
#[derive(Clone)]
pub struct Feed {
    transactions: Collection<Document>,
    leases: Collection<Document>,
}

impl Feed {
    pub fn new(database: &Database) -> Self {
        Self {
            transactions: database.collection("transactions"),
            leases: database.collection("leases"),
        }
    }

    /// Opens the change stream at `from` (`None`: now). `wait` bounds how long a read waits for a change;
    /// `batch` how many changes one read from MongoDB brings (the driver holds them until they are taken:
    /// bounded, a backlog costs no memory).
    pub async fn open(
        &self,
        from: Option<ResumeToken>,
        wait: std::time::Duration,
        batch: u32,
    ) -> Result<ChangeStream<Document>, FeedError> {
        let pipeline = vec![
            doc! {"$match": {"$or": [
                {"operationType": "insert", format!("fullDocument.{EVENT}"): {"$exists": true}},
                {"operationType": "update", format!("updateDescription.updatedFields.{EVENT}"): {"$exists": true}},
            ]}},
            // Only what the sender reads: the rest of the transaction stays in MongoDB.
            doc! {"$project": {
                "documentKey": 1,
                "wallTime": 1,
                format!("fullDocument.{EVENT}"): 1,
                format!("updateDescription.updatedFields.{EVENT}"): 1,
            }},
        ];
        let stream = self
            .transactions
            .watch()
            .pipeline(pipeline)
            .max_await_time(wait)
            .batch_size(batch)
            .resume_after(from)
            .await
            .map_err(FeedError::from)?;
        Ok(stream.with_type::<Document>())
    }

    /// Reads what the feed has now, up to `limit` changes (one round trip to MongoDB at most when none is
    /// buffered), and the position after the last one returned.
    pub async fn next(
        stream: &mut ChangeStream<Document>,
        limit: usize,
    ) -> Result<(Vec<Change>, Option<ResumeToken>), FeedError> {
        let mut changes = Vec::new();
        while changes.len() < limit {
            match stream.next_if_any().await.map_err(FeedError::from)? {
                Some(change) => changes.extend(Change::from_document(&change)),
                None => break,
            }
        }
        Ok((changes, stream.resume_token()))
    }

    /// The feed's position, as the lease's holder last saved it.
    pub async fn position(&self) -> Result<Option<Position>, StoreError> {
        let lease = self
            .leases
            .find_one(doc! {"_id": SENDING_LEASE})
            .projection(doc! {"feed": 1, "feed_at": 1})
            .await
            .map_err(|error| classify_read(&error))?;
        Ok(lease.and_then(|lease| {
            Some(Position {
                token: mongodb::bson::from_bson(lease.get("feed")?.clone()).ok()?,
                at: lease.get_datetime("feed_at").ok()?.to_chrono(),
            })
        }))
    }

    /// Saves the feed's position, if `instance` holds the sending lease (false otherwise: a former holder
    /// never moves the position of the current one).
    pub async fn save(&self, instance: &str, position: &Position) -> Result<bool, StoreError> {
        let token = mongodb::bson::to_bson(&position.token)
            .map_err(|error| StoreError::Unavailable(format!("resume token: {error}")))?;
        let written = self
            .leases
            .update_one(
                doc! {"_id": SENDING_LEASE, "owner": instance},
                doc! {"$set": {"feed": token, "feed_at": bson_time(position.at)}},
            )
            .await
            .map_err(|error| classify(&error))?;
        Ok(written.matched_count == 1)
    }

    /// Gives a database its first position — now — unless it has one. Called when the store first
    /// connects, before this instance writes anything.
    pub async fn start_here(&self) -> Result<(), StoreError> {
        if self.position().await?.is_some() {
            return Ok(());
        }
        let stream = self
            .open(None, std::time::Duration::from_millis(1), 1)
            .await
            .map_err(FeedError::into_store)?;
        let Some(token) = stream.resume_token() else {
            return Err(StoreError::Unavailable(
                "the change stream gave no position".into(),
            ));
        };
        let token = mongodb::bson::to_bson(&token)
            .map_err(|error| StoreError::Unavailable(format!("resume token: {error}")))?;
        let started = self
            .leases
            .update_one(
                doc! {"_id": SENDING_LEASE, "feed": {"$exists": false}},
                doc! {"$set": {"feed": token, "feed_at": bson_time(Utc::now())}},
            )
            .upsert(true)
            .await;
        match started {
            Ok(_) => Ok(()),
            // The lease's document exists with a position: the upsert's insert collided with it.
            Err(error) if is_duplicate_key(&error) => Ok(()),
            Err(error) => Err(classify(&error)),
        }
    }

    /// The catch-up after the feed's history was lost: the last event of every transaction whose event
    /// was written since `since` (a scan of `transactions`: this happens only after an outage longer than
    /// the oplog's window), at most `limit` after `after` (by `_id`, for the next call).
    pub async fn written_since(
        &self,
        since: DateTime<Utc>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Change>, StoreError> {
        let mut filter = doc! {format!("{EVENT}.created_at"): {"$gte": bson_time(since)}};
        if let Some(after) = after {
            filter.insert("_id", doc! {"$gt": after});
        }
        let found: Vec<Document> = all(self
            .transactions
            .find(filter)
            .sort(doc! {"_id": 1})
            .projection(doc! {EVENT: 1})
            .limit(limit))
        .await?;
        Ok(found
            .into_iter()
            .filter_map(|transaction| {
                Some(Change {
                    transaction: transaction.get_str("_id").ok()?.to_owned(),
                    event: transaction.get_document(EVENT).ok()?.clone(),
                    at: None,
                })
            })
            .collect())
    }
}

impl Change {
    /// The change a feed document describes, if it carries an event.
    fn from_document(change: &Document) -> Option<Self> {
        let transaction = change
            .get_document("documentKey")
            .ok()?
            .get_str("_id")
            .ok()?
            .to_owned();
        let event = change
            .get_document("fullDocument")
            .ok()
            .and_then(|document| document.get_document(EVENT).ok())
            .or_else(|| {
                change
                    .get_document("updateDescription")
                    .ok()?
                    .get_document("updatedFields")
                    .ok()?
                    .get_document(EVENT)
                    .ok()
            })?
            .clone();
        let at = match change.get("wallTime") {
            Some(Bson::DateTime(at)) => Some(at.to_chrono()),
            _ => None,
        };
        Some(Self {
            transaction,
            event,
            at,
        })
    }
}

/// Why the feed could not be read.
#[derive(Debug)]
pub enum FeedError {
    /// Its position is older than the oplog's first entry: catch up from the documents.
    HistoryLost(String),
    Store(StoreError),
}

impl FeedError {
    pub fn into_store(self) -> StoreError {
        match self {
            Self::HistoryLost(message) => StoreError::Unavailable(message),
            Self::Store(error) => error,
        }
    }
}

impl From<mongodb::error::Error> for FeedError {
    fn from(error: mongodb::error::Error) -> Self {
        let code = match error.kind.as_ref() {
            mongodb::error::ErrorKind::Command(command) => Some(command.code),
            _ => None,
        };
        if code.is_some_and(|code| HISTORY_LOST.contains(&code)) {
            Self::HistoryLost(error.to_string())
        } else {
            Self::Store(classify_read(&error))
        }
    }
}

impl std::fmt::Display for FeedError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::HistoryLost(message) => {
                write!(formatter, "the feed's history is lost: {message}")
            }
            Self::Store(error) => write!(formatter, "{error}"),
        }
    }
}
