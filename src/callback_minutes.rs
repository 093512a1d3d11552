//! Callbacks per minute and provider, for the console's chart: counted in memory when a callback is
//! acknowledged, and added to MongoDB (`callback_minutes`) every [`FLUSH_EVERY`] by one `$inc` upsert per
//! (minute, provider) counted since the last flush — never a write per callback, never a scan of
//! `callbacks`. Every instance adds its own counts to the same documents, so the totals are the
//! service's. A count not flushed yet is lost if the process dies (a chart can afford it); a graceful stop
//! flushes. A leaf: it uses nothing of the crate.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};

/// The collection of the per-minute counts.
pub const COLLECTION: &str = "callback_minutes";

/// How often an instance adds what it counted to MongoDB.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);

/// How long a minute's count is kept (a TTL index on `minute`): the chart shows a day.
pub const KEPT: Duration = Duration::from_secs(2 * 24 * 3600);

/// A minute since the Unix epoch.
pub type Minute = i64;

/// The minute `at` falls in.
pub fn minute_of(at: DateTime<Utc>) -> Minute {
    at.timestamp().div_euclid(60)
}

/// A minute's start as RFC 3339 down to the minute (`2026-12-08T02:31Z`): fixed width, so that ids sort
/// as time does and a range of minutes is a range of `_id`s.
pub fn minute_text(minute: Minute) -> String {
    Utc.timestamp_opt(minute.saturating_mul(60), 0)
        .single()
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%MZ")
        .to_string()
}

/// The `_id` of a (minute, provider) count: `2026-12-08T02:31Z/mpesa`.
pub fn document_id(minute: Minute, provider: &str) -> String {
    format!("{}/{provider}", minute_text(minute))
}

/// What this instance counted and has not flushed yet.
#[derive(Debug, Default)]
pub struct CallbackMinutes {
    counts: Mutex<BTreeMap<(Minute, &'static str), u64>>,
}

impl CallbackMinutes {
    /// Counts one callback of `provider` acknowledged at `at`.
    pub fn record(&self, provider: &'static str, at: DateTime<Utc>) {
        self.add(minute_of(at), provider, 1);
    }

    fn add(&self, minute: Minute, provider: &'static str, count: u64) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry((minute, provider)).or_insert(0) += count;
    }

    /// What was counted and not flushed yet (also what a reader adds to MongoDB's counts).
    pub fn unflushed(&self) -> BTreeMap<(Minute, &'static str), u64> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn take(&self) -> BTreeMap<(Minute, &'static str), u64> {
        std::mem::take(
            &mut *self
                .counts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Adds what was counted to MongoDB: one `$inc` upsert per (minute, provider). What could not be
    /// written is counted again for the next flush.
    pub async fn flush(&self, database: &Database) -> Result<(), mongodb::error::Error> {
        let collection = collection(database);
        let mut taken = self.take().into_iter();
        while let Some(((minute, provider), count)) = taken.next() {
            let written = collection
                .update_one(
                    doc! {"_id": document_id(minute, provider)},
                    doc! {
                        "$inc": {"count": count as i64},
                        "$setOnInsert": {
                            "provider": provider,
                            "minute": mongodb::bson::DateTime::from_millis(minute.saturating_mul(60_000)),
                        },
                    },
                )
                .upsert(true)
                .await;
            if let Err(error) = written {
                self.add(minute, provider, count);
                for ((minute, provider), count) in taken {
                    self.add(minute, provider, count);
                }
                return Err(error);
            }
        }
        Ok(())
    }
}

fn collection(database: &Database) -> Collection<Document> {
    database.collection(COLLECTION)
}

/// The TTL index that forgets counts after [`KEPT`].
pub async fn ensure_index(database: &Database) -> Result<(), mongodb::error::Error> {
    collection(database)
        .create_index(
            IndexModel::builder()
                .keys(doc! {"minute": 1})
                .options(
                    IndexOptions::builder()
                        .name("expire".to_owned())
                        .expire_after(KEPT)
                        .build(),
                )
                .build(),
        )
        .await
        .map(|_| ())
}

/// Counts per provider and minute from `from` to `to` (both included), read by `_id` range (one small
/// document per minute and provider that had callbacks), with this instance's unflushed counts added.
pub async fn read(
    database: &Database,
    unflushed: &CallbackMinutes,
    from: Minute,
    to: Minute,
) -> Result<BTreeMap<String, BTreeMap<Minute, u64>>, mongodb::error::Error> {
    let mut cursor = collection(database)
        .find(doc! {"_id": {"$gte": minute_text(from), "$lt": minute_text(to + 1)}})
        .projection(doc! {"count": 1})
        .await?;
    let mut counts: BTreeMap<String, BTreeMap<Minute, u64>> = BTreeMap::new();
    while cursor.advance().await? {
        let document = cursor.deserialize_current()?;
        let Some((minute, provider)) = document
            .get_str("_id")
            .ok()
            .and_then(|id| id.split_once('/'))
            .and_then(|(minute, provider)| Some((parse_minute(minute)?, provider.to_owned())))
        else {
            continue;
        };
        let count = match document.get("count") {
            Some(mongodb::bson::Bson::Int64(count)) => u64::try_from(*count).unwrap_or(0),
            Some(mongodb::bson::Bson::Int32(count)) => u64::try_from(*count).unwrap_or(0),
            _ => 0,
        };
        *counts
            .entry(provider)
            .or_default()
            .entry(minute)
            .or_insert(0) += count;
    }
    for ((minute, provider), count) in unflushed.unflushed() {
        if (from..=to).contains(&minute) {
            *counts
                .entry(provider.to_owned())
                .or_default()
                .entry(minute)
                .or_insert(0) += count;
        }
    }
    Ok(counts)
}

fn parse_minute(text: &str) -> Option<Minute> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%MZ")
        .ok()
        .map(|at| minute_of(at.and_utc()))
}

/// Flushes every [`FLUSH_EVERY`], for as long as the process runs.
pub async fn flush_forever(minutes: std::sync::Arc<CallbackMinutes>, database: Database) {
    if let Err(error) = ensure_index(&database).await {
        tracing::warn!(%error, "the callback_minutes TTL index was not created; counts are kept longer");
    }
    let mut ticks = tokio::time::interval(FLUSH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = minutes.flush(&database).await {
            tracing::warn!(%error, "callbacks per minute not added to MongoDB; retried at the next flush");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_as_time_and_read_back() {
        let at = Utc.with_ymd_and_hms(2026, 12, 8, 2, 31, 59).unwrap();
        let minute = minute_of(at);
        assert_eq!(document_id(minute, "mpesa"), "2026-12-08T02:31Z/mpesa");
        assert_eq!(parse_minute("2026-12-08T02:31Z"), Some(minute));
        assert!(minute_text(minute) < minute_text(minute + 1));
        assert!(document_id(minute, "zzz") < minute_text(minute + 1));
        assert_eq!(parse_minute("not a minute"), None);
    }

    #[test]
    fn counts_add_up_until_taken() {
        let minutes = CallbackMinutes::default();
        let at = Utc.with_ymd_and_hms(2026, 12, 8, 2, 31, 0).unwrap();
        minutes.record("mpesa", at);
        minutes.record("mpesa", at + chrono::Duration::seconds(59));
        minutes.record("mpesa", at + chrono::Duration::seconds(60));
        minutes.record("airtel_money", at);
        let taken = minutes.take();
        assert_eq!(taken[&(minute_of(at), "mpesa")], 2);
        assert_eq!(taken[&(minute_of(at) + 1, "mpesa")], 1);
        assert_eq!(taken[&(minute_of(at), "airtel_money")], 1);
        assert!(minutes.unflushed().is_empty());
    }
}
