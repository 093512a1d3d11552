//! What the reconciler works on, kept in MongoDB so that restarts and several instances share it:
//!
//! - `expectations`: payments a merchant started and expects a callback for (one per provider, callback
//!   type and key).
//! - `reconciliations`: one work item per transaction (provider, flow, key) the reconciler must get an
//!   answer for — an expectation, a transaction left pending, or a callback to confirm. Items are
//!   **claimed** by moving their `due_at` past a lease and writing a fresh `claim` id, in one atomic
//!   `findOneAndUpdate`: whoever holds the claim asks the operator; nobody else can claim the item until
//!   the lease ends, so a restart or a second instance never sends the same query twice at once, and an
//!   instance that dies mid-query only delays the item by its lease. Every later write is filtered on the
//!   claim id, so an instance whose lease ran out cannot overwrite its successor's work.
//!
//! Leases are on **the server's clock**: a claim and a renewal compute the lease's end as `$$NOW` plus the
//! lease inside an update pipeline, and a claim takes only an item whose `due_at` has passed by `$$NOW`.
//! Instances' clocks may disagree by seconds or minutes; were each to write `its now + lease`, an instance
//! running behind would see a live lease as over (and ask again) or one running ahead would hold an item
//! for longer than its lease. With one clock, a lease means the same length to every instance. The
//! holder renews its lease ([`Reconciliations::renew`]) while its question runs, so a question slower
//! than one lease keeps its item; a renewal is filtered on the claim id, so one that matches nothing tells
//! the holder it lost the item.
//!
//! States: `open` (asked again at `due_at`), `resolved` (a terminal status is known, or confirmed), and
//! `unresolved` (no final answer before `give_up_at`: a person must look).
//!
//! Each document's `_id` is its identity ([`expectation_id`], and an item's is its transaction's
//! [`transaction_id`]): MongoDB's own `_id` index keeps them single, and every single-document write is
//! filtered on `_id` — the shard key `docs/mongodb.md` gives both collections.
//!
//! Length: the reconciler's two collections (expectations and work items), their indexes, claims and
//! retention: what the reconciler writes, in one place.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};
use rust_decimal::Decimal;

use super::document::{bson_time, decimal128, recorded};
use super::errors::{classify, classify_read, classify_single, is_duplicate_key};
use super::events::{event_document, put_event, EventLog, EventType, EVENT, OUTBOX};
use super::transactions::{snapshot_of, transaction_id};
use super::StoreError;
use crate::callback::{intern, Callback, CallbackKey, CallbackType, Status};
use crate::transaction::{Snapshot, Source};

/// Why a transaction is reconciled (stored in `reasons`).
pub mod reason {
    /// The merchant registered an expectation and its deadline passed.
    pub const EXPECTATION: &str = "expectation";
    /// The transaction stayed pending or ambiguous.
    pub const PENDING: &str = "pending";
    /// A callback's final status is confirmed by query (`confirm_by_query`).
    pub const CONFIRM: &str = "confirm";
}

/// A payment a merchant started, expecting its operator to call back.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// Stored provider name (`mpesa`, `mtn_mobile_money`, `airtel_money`).
    pub provider: &'static str,
    pub callback_type: CallbackType,
    pub key: String,
    pub amount: Decimal,
    pub currency: String,
    pub msisdn: Option<String>,
    pub expected_within: Duration,
}

/// The stored expectation, and whether this call created it.
#[derive(Debug, Clone)]
pub struct Registered {
    pub created: bool,
    pub document: Document,
}

/// A claimed work item.
#[derive(Debug, Clone)]
pub struct WorkItem {
    /// Its transaction's `_id` ([`transaction_id`]).
    pub id: String,
    /// This claim: later writes are filtered on it.
    pub claim: ObjectId,
    pub provider: &'static str,
    pub flow: &'static str,
    pub key: String,
    pub reasons: Vec<String>,
    /// Questions asked so far.
    pub attempts: u32,
    pub opened_at: DateTime<Utc>,
    pub give_up_at: DateTime<Utc>,
    /// An asynchronous answer being waited for (M-Pesa Transaction Status): its correlation id.
    pub awaiting: Option<String>,
    pub awaiting_since: Option<DateTime<Utc>>,
}

/// A transaction as the reconciler needs it.
#[derive(Debug, Clone)]
pub struct Known {
    pub snapshot: Snapshot,
    pub conflict: bool,
}

/// What the reconciler learnt about an item, for its `last_answer`.
#[derive(Debug, Clone)]
pub struct Note {
    /// `final`, `pending`, `not_found`, `requested`, `throttled`, `error`, `callback`.
    pub outcome: &'static str,
    pub status: Option<&'static str>,
    pub detail: Option<String>,
}

impl Note {
    fn document(&self, at: DateTime<Utc>) -> Document {
        doc! {
            "at": bson_time(at),
            "outcome": self.outcome,
            "status": self.status,
            "detail": self.detail.as_deref(),
        }
    }
}

/// The `expectations` and `reconciliations` collections.
#[derive(Clone)]
pub struct Reconciliations {
    expectations: Collection<Document>,
    items: Collection<Document>,
    transactions: Collection<Document>,
    callbacks: Collection<Document>,
    events: EventLog,
    /// How long an expectation, and a work item once closed, are kept (`expire_at`, a TTL index).
    retention: Duration,
}

/// The `_id` of an expectation: (provider, callback type, key), the key last (as in [`transaction_id`]).
pub fn expectation_id(provider: &str, callback_type: &str, key: &str) -> String {
    format!("{provider}|{callback_type}|{key}")
}

/// How many of the items due first a claim tries: another instance may take some of them meanwhile.
const CLAIM_CANDIDATES: i64 = 8;

impl Reconciliations {
    pub(super) fn new(database: &Database, events: EventLog, retention: Duration) -> Self {
        Self {
            expectations: database.collection("expectations"),
            items: database.collection("reconciliations"),
            transactions: database.collection("transactions"),
            callbacks: database.collection("callbacks"),
            events,
            retention,
        }
    }

    /// When a document written or closed at `now` expires; `None` (kept) past chrono's calendar.
    fn expiry(&self, now: DateTime<Utc>) -> Bson {
        chrono::Duration::from_std(self.retention)
            .ok()
            .and_then(|retention| now.checked_add_signed(retention))
            .map_or(Bson::Null, |at| Bson::DateTime(bson_time(at)))
    }

    /// The `expectations` collection (for the query API).
    pub fn expectations(&self) -> &Collection<Document> {
        &self.expectations
    }

    /// The `reconciliations` collection (for the query API and the report).
    pub fn items(&self) -> &Collection<Document> {
        &self.items
    }

    /// The indexes behind the reconciler's reads and the query API; identities are the `_id`s (no
    /// unique index of their own, which no shard key would prefix). Documents of versions before 0.3.0
    /// are rewritten first: until then their identity indexes would refuse an item opened by `_id`.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        super::migration::reconciler_identities_as_ids(&self.expectations, &self.items)
            .await
            .map_err(|error| classify(&error))?;
        let plain = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        // Expectations, and work items once closed, expire `retention` after (`expire_at`); open items
        // carry none. Documents of versions before 0.3.0 carry none either: they are kept.
        let expiry = || {
            IndexModel::builder()
                .keys(doc! {"expire_at": 1})
                .options(
                    IndexOptions::builder()
                        .name("expire".to_owned())
                        .expire_after(Duration::ZERO)
                        .partial_filter_expression(doc! {"expire_at": {"$type": "date"}})
                        .build(),
                )
                .build()
        };
        self.expectations
            .create_indexes([plain(doc! {"provider": 1, "key": 1}, "by_key"), expiry()])
            .await
            .map_err(|error| classify(&error))?;
        // Only open items are ever claimed: the work index holds nothing else.
        let work = IndexModel::builder()
            .keys(doc! {"provider": 1, "due_at": 1})
            .options(
                IndexOptions::builder()
                    .name("open_by_due".to_owned())
                    .partial_filter_expression(doc! {"state": "open"})
                    .build(),
            )
            .build();
        self.items
            .create_indexes([work, plain(doc! {"opened_at": 1}, "by_opened_at"), expiry()])
            .await
            .map_err(|error| classify(&error))?;
        Ok(())
    }

    /// Registers an expectation (idempotent on provider, callback type and key) and opens the work item
    /// that checks it once `expected_within` has passed (also when the expectation existed already).
    pub async fn expect(
        &self,
        expectation: &Expectation,
        now: DateTime<Utc>,
        give_up_after: Duration,
    ) -> Result<Registered, StoreError> {
        let flow = expectation.callback_type.flow().ok_or_else(|| {
            StoreError::Rejected(format!(
                "callback type {} reports no transaction",
                expectation.callback_type
            ))
        })?;
        let due = now + expectation.expected_within;
        let id = expectation_id(
            expectation.provider,
            expectation.callback_type.as_str(),
            &expectation.key,
        );
        let document = doc! {
            "_id": &id,
            // The id the API shows (an ObjectId, as before identities became `_id`s).
            "expectation_id": ObjectId::new(),
            "provider": expectation.provider,
            "callback_type": expectation.callback_type.as_str(),
            "flow": flow,
            "key": &expectation.key,
            "amount": decimal128(&expectation.amount.to_string()),
            "currency": &expectation.currency,
            "msisdn": expectation.msisdn.as_deref(),
            "expected_within_secs": expectation.expected_within.as_secs() as i64,
            "created_at": bson_time(now),
            "due_at": bson_time(due),
            "expire_at": self.expiry(now),
        };
        let created = match self.expectations.insert_one(&document).await {
            Ok(_) => true,
            Err(error) if is_duplicate_key(&error) => false,
            Err(error) => return Err(classify(&error)),
        };
        let document = if created {
            document
        } else {
            self.expectations
                .find_one(doc! {"_id": &id})
                .await
                .map_err(|error| classify(&error))?
                .ok_or_else(|| StoreError::Unavailable("an expectation vanished".into()))?
        };
        // Opened on every registration, not only the first: the open is an idempotent upsert, and a
        // registration whose open failed after its insert is retried by the merchant — only this open
        // can ever make its work item. Due when the stored expectation says, whichever call opens it.
        let due = document
            .get_datetime("due_at")
            .map_or(due, |stored| stored.to_chrono());
        self.open(
            (expectation.provider, flow, &expectation.key),
            reason::EXPECTATION,
            due,
            now,
            give_up_after,
        )
        .await?;
        Ok(Registered { created, document })
    }

    /// Opens a work item for a transaction, due at `due` (or adds a reason to the item it has).
    async fn open(
        &self,
        (provider, flow, key): (&str, &str, &str),
        why: &str,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
        give_up_after: Duration,
    ) -> Result<(), StoreError> {
        let give_up_at = due.max(now) + give_up_after;
        let update = doc! {
            "$setOnInsert": {
                "provider": provider,
                "flow": flow,
                "key": key,
                "state": "open",
                "due_at": bson_time(due),
                "attempts": 0_i32,
                "opened_at": bson_time(now),
                "give_up_at": bson_time(give_up_at),
                "claim": Bson::Null,
            },
            "$addToSet": {"reasons": why},
        };
        // Two instances opening the same item at once: one inserts, the other's upsert fails on the `_id`
        // and succeeds when retried as an update.
        for _ in 0..2 {
            match self
                .items
                .update_one(
                    doc! {"_id": transaction_id(provider, flow, key)},
                    update.clone(),
                )
                .upsert(true)
                .await
            {
                Ok(_) => return Ok(()),
                Err(error) if is_duplicate_key(&error) => continue,
                Err(error) => return Err(classify(&error)),
            }
        }
        Err(StoreError::Unavailable(
            "reconciliation item contended".into(),
        ))
    }

    /// The transactions [`Reconciliations::feed`] reads: `query_due` at or before `before`. It names the
    /// `$type` of the `query_due` index's partial filter: without it MongoDB cannot prove the query stays
    /// inside the index (`$lte` alone does not imply a date) and scans every transaction instead, every
    /// round of every instance. One function, so the test that explains the query reads this filter.
    pub fn feed_filter(before: DateTime<Utc>) -> Document {
        doc! {"query_due": {"$type": "date", "$lte": bson_time(before)}}
    }

    /// Opens items for transactions whose `query_due` is at or before `before` (they have waited
    /// `query_after` since), up to `limit`; returns how many. Their `query_due` is cleared once the item
    /// exists, so each is fed once.
    pub async fn feed(
        &self,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        give_up_after: Duration,
        limit: i64,
    ) -> Result<usize, StoreError> {
        let mut cursor = self
            .transactions
            .find(Self::feed_filter(before))
            .projection(
                doc! {"provider": 1, "flow": 1, "transaction_key": 1, "status": 1, "query_due": 1},
            )
            .limit(limit)
            .await
            .map_err(|error| classify(&error))?;
        let mut fed = 0;
        while cursor.advance().await.map_err(|error| classify(&error))? {
            let document: Document = cursor
                .deserialize_current()
                .map_err(|error| classify(&error))?;
            let text = |field| document.get_str(field).unwrap_or_default().to_owned();
            let (provider, flow, key) = (text("provider"), text("flow"), text("transaction_key"));
            let terminal = crate::callback::Status::parse(&text("status"))
                .is_some_and(|status| status.is_terminal());
            let why = if terminal {
                reason::CONFIRM
            } else {
                reason::PENDING
            };
            self.open((&provider, &flow, &key), why, now, now, give_up_after)
                .await?;
            // Cleared only if unchanged: a fold that set it again meanwhile is fed next time.
            self.transactions
                .update_one(
                    doc! {"_id": document.get("_id").cloned().unwrap_or(Bson::Null), "query_due": document.get("query_due").cloned().unwrap_or(Bson::Null)},
                    doc! {"$unset": {"query_due": ""}, "$inc": {"version": 1_i64}},
                )
                .await
                .map_err(|error| classify(&error))?;
            fed += 1;
        }
        Ok(fed)
    }

    /// Claims the open item of `provider` due longest ago, for `lease`, leaving out `busy` (the `_id`s
    /// of items whose questions this instance still has in flight: even if their leases lapsed, asking
    /// again would put two of its own questions about one payment in flight). The items due first are
    /// read from the index of open items, then claimed one by one by `_id` (a write every shard can
    /// target); one another instance claimed meanwhile is skipped.
    ///
    /// Both steps go by the server's clock: candidates are those due by the server's time, and the claim
    /// itself checks `due_at` against `$$NOW` and writes the lease's end as `$$NOW + lease`.
    pub async fn claim(
        &self,
        provider: &str,
        lease: Duration,
        busy: &[String],
    ) -> Result<Option<WorkItem>, StoreError> {
        let now = self.server_time().await?;
        let due = doc! {
            "provider": provider,
            "state": "open",
            "due_at": {"$lte": now},
            "_id": {"$nin": busy},
        };
        let candidates: Vec<Document> = self
            .items
            .find(due)
            .sort(doc! {"due_at": 1})
            .projection(doc! {"_id": 1})
            .limit(CLAIM_CANDIDATES)
            .await
            .map_err(|error| classify(&error))?
            .try_collect()
            .await
            .map_err(|error| classify(&error))?;
        for candidate in candidates {
            let Some(id) = candidate.get("_id") else {
                continue;
            };
            let claim = ObjectId::new();
            let found = self
                .items
                .find_one_and_update(
                    doc! {
                        "_id": id,
                        "state": "open",
                        "$expr": {"$lte": ["$due_at", "$$NOW"]},
                    },
                    vec![doc! {"$set": {
                        "due_at": lease_end(lease),
                        "claim": claim,
                        "claimed_at": "$$NOW",
                    }}],
                )
                .return_document(ReturnDocument::After)
                .await
                .map_err(|error| classify(&error))?;
            if let Some(item) = found.and_then(|document| work_item(&document, claim)) {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }

    /// Extends `item`'s lease to `lease` from now, on the server's clock; false when the claim was lost
    /// (the lease ran out and another instance claimed the item, or the item was closed).
    pub async fn renew(&self, item: &WorkItem, lease: Duration) -> Result<bool, StoreError> {
        let result = self
            .items
            .update_one(
                doc! {"_id": &item.id, "claim": item.claim, "state": "open"},
                vec![doc! {"$set": {"due_at": lease_end(lease)}}],
            )
            .await
            .map_err(|error| classify(&error))?;
        Ok(result.matched_count == 1)
    }

    /// The server's clock (`hello`'s `localTime`), which claims are measured by.
    async fn server_time(&self) -> Result<mongodb::bson::DateTime, StoreError> {
        let hello = self
            .items
            .client()
            .database("admin")
            .run_command(doc! {"hello": 1})
            .await
            .map_err(|error| classify(&error))?;
        hello
            .get_datetime("localTime")
            .copied()
            .map_err(|_| StoreError::Unavailable("the server did not tell its time".into()))
    }

    /// The transaction an item is about, if it exists.
    pub async fn transaction(&self, item: &WorkItem) -> Result<Option<Known>, StoreError> {
        let found = self
            .transactions
            .find_one(doc! {"_id": transaction_id(item.provider, item.flow, &item.key)})
            .projection(doc! {"callback_ids": 0, "conflicts": 0})
            .await
            .map_err(|error| classify(&error))?;
        Ok(found.map(|document| Known {
            snapshot: snapshot_of(&document),
            conflict: document.get_bool("conflict").unwrap_or(false),
        }))
    }

    /// The asynchronous answer stored under `correlation` (an M-Pesa Transaction Status result), if it
    /// came.
    pub async fn status_result(
        &self,
        provider: &str,
        correlation: &str,
    ) -> Result<Option<Callback>, StoreError> {
        // Its status is not known: every status's `_id`.
        let ids = CallbackKey::document_ids_in_any_status(
            provider,
            CallbackType::TransactionStatusResult,
            correlation,
        );
        let found = self
            .callbacks
            .find_one(doc! {"_id": {"$in": ids}})
            .sort(doc! {"received_at": -1})
            .await
            .map_err(|error| classify(&error))?;
        let Some(document) = found else {
            return Ok(None);
        };
        let raw = mongodb::bson::RawDocumentBuf::from_document(&document)
            .map_err(|error| StoreError::Rejected(error.to_string()))?;
        let Some((mut callback, _)) = recorded(&raw) else {
            return Ok(None);
        };
        callback.payload = document
            .get("callback_data")
            .cloned()
            .map(Bson::into_relaxed_extjson)
            .unwrap_or_default();
        Ok(Some(callback))
    }

    /// Asks again at `next` (a pending or unusable answer). `counted` says whether the question counts
    /// as an attempt (a throttled one does not).
    pub async fn reschedule(
        &self,
        item: &WorkItem,
        next: DateTime<Utc>,
        note: &Note,
        counted: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.finish(
            item,
            doc! {
                "$set": {"due_at": bson_time(next), "claim": Bson::Null, "last_answer": note.document(now)},
                "$inc": {"attempts": i32::from(counted)},
            },
        )
        .await
    }

    /// Waits for an asynchronous answer with id `correlation`, looking again at `next`.
    pub async fn await_answer(
        &self,
        item: &WorkItem,
        correlation: &str,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let note = Note {
            outcome: "requested",
            status: None,
            detail: Some(correlation.to_owned()),
        };
        self.finish(
            item,
            doc! {
                "$set": {
                    "due_at": bson_time(next),
                    "claim": Bson::Null,
                    "awaiting": {"correlation": correlation, "since": bson_time(now)},
                    "last_answer": note.document(now),
                },
                "$inc": {"attempts": 1_i32},
            },
        )
        .await
    }

    /// Stops waiting for an asynchronous answer (it came, or it never will) and asks again at `next`.
    pub async fn stop_awaiting(
        &self,
        item: &WorkItem,
        next: DateTime<Utc>,
        note: &Note,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.finish(
            item,
            doc! {
                "$set": {"due_at": bson_time(next), "claim": Bson::Null, "last_answer": note.document(now)},
                "$unset": {"awaiting": ""},
            },
        )
        .await
    }

    /// A terminal status is known (`by`: `callback`, `status_query`, `both` or `conflict`); `asked`
    /// when a question brought it.
    pub async fn resolve(
        &self,
        item: &WorkItem,
        (status, by): (&'static str, &'static str),
        note: &Note,
        asked: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.finish(
            item,
            doc! {
                "$set": {
                    "state": "resolved",
                    "claim": Bson::Null,
                    "resolved_at": bson_time(now),
                    "expire_at": self.expiry(now),
                    "outcome": {"status": status, "by": by},
                    "last_answer": note.document(now),
                },
                "$inc": {"attempts": i32::from(asked)},
                "$unset": {"awaiting": ""},
            },
        )
        .await
    }

    /// No final answer before `give_up_at`: the item is `unresolved`, and so is its transaction — unless
    /// a callback settled it meanwhile (`confirm_by_query`: whether its provider's final statuses need
    /// confirming). A fold that settles a flagged transaction clears the flag (see transactions.rs).
    pub async fn give_up(
        &self,
        item: &WorkItem,
        note: &Note,
        confirm_by_query: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // The transaction first, then the item: a crash between the two leaves the item claimed, and
        // whoever gives up on it again finds the transaction flagged already (flagging is idempotent).
        if !self.still_claimed(item).await? {
            return Ok(false);
        }
        self.flag_unresolved(item, confirm_by_query, now).await?;
        self.finish(
            item,
            doc! {
                "$set": {
                    "state": "unresolved",
                    "claim": Bson::Null,
                    "resolved_at": bson_time(now),
                    "expire_at": self.expiry(now),
                    "last_answer": note.document(now),
                },
                "$unset": {"awaiting": ""},
            },
        )
        .await
    }

    /// Whether `item` is still claimed by `item.claim`.
    async fn still_claimed(&self, item: &WorkItem) -> Result<bool, StoreError> {
        let found = self
            .items
            .find_one(doc! {"_id": &item.id, "claim": item.claim})
            .projection(doc! {"_id": 1})
            .await
            .map_err(|error| classify_read(&error))?;
        Ok(found.is_some())
    }

    /// Flags the item's transaction `unresolved` once, unless a callback settled it meanwhile: a new
    /// version whose `transaction.unresolved` event is pushed to its outbox by the same write (see
    /// `events.rs`), optimistically on the version as a fold is.
    async fn flag_unresolved(
        &self,
        item: &WorkItem,
        confirm_by_query: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let id = transaction_id(item.provider, item.flow, &item.key);
        for _ in 0..8 {
            let mut filter = doc! {
                "_id": &id,
                "unresolved": {"$ne": true},
                "$or": still_unsettled(confirm_by_query),
            };
            let Some(current) = self
                .transactions
                .find_one(filter.clone())
                .projection(doc! {"callback_ids": 0, "conflicts": 0, OUTBOX: 0, EVENT: 0})
                .await
                .map_err(|error| classify_read(&error))?
            else {
                return Ok(());
            };
            let version = current.get_i64("version").unwrap_or(0);
            let mut update = doc! {"$set": {
                "unresolved": true,
                "updated_at": bson_time(now),
                "version": version + 1,
            }};
            let mut after = current.clone();
            after.insert("unresolved", true);
            after.insert("version", version + 1);
            let routes = self.events.routes().await?;
            if let Some(event) =
                event_document(&after, EventType::Unresolved, version + 1, now, &routes)
            {
                put_event(&mut update, event, &current, now);
            }
            filter.insert("version", version);
            let written = self
                .transactions
                .update_one(filter, update)
                .await
                .map_err(|error| classify_single(&error))?;
            if written.matched_count == 1 {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "transaction {id} stayed contended while flagged unresolved"
        )))
    }

    /// Applies an update to an item still claimed by `item.claim`; false when the claim was lost (its
    /// lease ran out and another instance took over).
    async fn finish(&self, item: &WorkItem, update: Document) -> Result<bool, StoreError> {
        let result = self
            .items
            .update_one(doc! {"_id": &item.id, "claim": item.claim}, update)
            .await
            .map_err(|error| classify(&error))?;
        Ok(result.matched_count == 1)
    }
}

/// Why an item is reconciled, as stored (`reasons`).
pub fn reasons(document: &Document) -> Vec<String> {
    document
        .get_array("reasons")
        .map(|reasons| {
            reasons
                .iter()
                .filter_map(|reason| reason.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Transactions that still need an operator's answer, as `$or` clauses: the stored form of
/// [`Snapshot::needs_query`] (not final yet, or a callback's final status awaiting confirmation).
fn still_unsettled(confirm_by_query: bool) -> Vec<Document> {
    let final_statuses: Vec<&str> = Status::ALL
        .iter()
        .filter(|status| status.is_terminal())
        .map(|status| status.as_str())
        .collect();
    let mut clauses = vec![doc! {"status": {"$nin": final_statuses}}];
    if confirm_by_query {
        clauses.push(doc! {"verified": {"$ne": true}, "settled_by": Source::Callback.as_str()});
    }
    clauses
}

/// The end of a lease starting now on the server's clock: for an update pipeline.
fn lease_end(lease: Duration) -> Document {
    let millis = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    doc! {"$add": ["$$NOW", millis]}
}

fn work_item(document: &Document, claim: ObjectId) -> Option<WorkItem> {
    let time = |field| document.get_datetime(field).ok().map(|at| at.to_chrono());
    let awaiting = document.get_document("awaiting").ok();
    Some(WorkItem {
        id: document.get_str("_id").ok()?.to_owned(),
        claim,
        provider: intern(document.get_str("provider").ok()?)?,
        flow: intern(document.get_str("flow").ok()?)?,
        key: document.get_str("key").ok()?.to_owned(),
        reasons: reasons(document),
        attempts: document
            .get_i32("attempts")
            .ok()
            .and_then(|attempts| u32::try_from(attempts).ok())
            .unwrap_or(0),
        opened_at: time("opened_at")?,
        give_up_at: time("give_up_at")?,
        awaiting: awaiting
            .and_then(|awaiting| awaiting.get_str("correlation").ok().map(str::to_owned)),
        awaiting_since: awaiting
            .and_then(|awaiting| awaiting.get_datetime("since").ok())
            .map(|at| at.to_chrono()),
    })
}
