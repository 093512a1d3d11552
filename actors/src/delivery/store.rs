//! What delivery keeps in MongoDB besides events: the merchant's `endpoints` (as delivery reads them,
//! and the state it notes on them: failing since, disabled) and the `leases` document that makes one
//! instance at a time the sender. Events — their documents, their feed, every read and write of them —
//! belong to [`crate::store::events`].

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, Bson, Document};
use mongodb::{Collection, Database};

use super::sealing::{load, SecretsKey};
use super::signature::{secret_key, SigningKeys};
use crate::store::errors::{all, classify, is_duplicate_key};
use crate::store::events::feed::SENDING_LEASE;
use crate::store::events::subscribed;
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
            failing_since: document
                .get_datetime("failing_since")
                .ok()
                .map(|at| at.to_chrono()),
        })
    }
}

/// What delivery itself keeps in MongoDB: the merchant's `endpoints` and the sending lease (`leases`).
/// Events and their feed are [`crate::store::events::EventLog`]'s. Cheap to clone.
#[derive(Clone)]
pub struct DeliveryStore {
    endpoints: Collection<Document>,
    leases: Collection<Document>,
}

impl DeliveryStore {
    pub fn new(database: &Database) -> Self {
        Self {
            endpoints: database.collection("endpoints"),
            leases: database.collection("leases"),
        }
    }

    pub fn endpoints(&self) -> &Collection<Document> {
        &self.endpoints
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
