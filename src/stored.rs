//! Stored documents as the API answers with them: fields as the API shows them (times in RFC 3339, ids in
//! hex, amounts as exact decimal text), whole cursors, the errors for a bad parameter and for MongoDB,
//! provider names and days. A leaf: the read API, the reconciliation API and the routes use it; it uses
//! none of them.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use futures_util::TryStreamExt;
use mmo_actors::PROVIDERS;
use mongodb::bson::{Bson, Document};

use crate::error::ApiError;

pub fn invalid(parameter: &str, problem: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter {
        parameter: parameter.to_owned(),
        problem: problem.into(),
    }
}

/// A provider by its URL slug (`mtn`) or stored name (`mtn_mobile_money`); the stored name.
pub fn provider_name(text: &str) -> Option<&'static str> {
    PROVIDERS
        .iter()
        .find(|provider| provider.slug() == text || provider.name() == text)
        .map(|provider| provider.name())
}

pub fn rfc3339(document: &Document, field: &str) -> Option<String> {
    document
        .get_datetime(field)
        .ok()
        .map(|at| at.to_chrono())
        .map(|at| at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Every document a `find` or an `aggregate` yields.
pub async fn all(
    query: impl std::future::IntoFuture<Output = mongodb::error::Result<mongodb::Cursor<Document>>>,
) -> Result<Vec<Document>, ApiError> {
    query
        .await
        .map_err(unavailable)?
        .try_collect()
        .await
        .map_err(unavailable)
}

/// An ObjectId field as the hex the API shows.
pub fn object_id(document: &Document, field: &str) -> Option<String> {
    document.get_object_id(field).ok().map(|id| id.to_hex())
}

pub fn text(document: &Document, field: &str) -> Option<String> {
    document.get_str(field).ok().map(str::to_owned)
}

pub fn decimal(document: &Document, field: &str) -> Option<String> {
    match document.get(field) {
        Some(Bson::Decimal128(amount)) => Some(amount.to_string()),
        _ => None,
    }
}

pub fn unavailable(error: mongodb::error::Error) -> ApiError {
    ApiError::QueryFailed(error.to_string())
}

/// A store's error (already classified) as the query API answers it.
pub fn store_failed(error: mmo_actors::StoreError) -> ApiError {
    ApiError::QueryFailed(error.to_string())
}

/// The UTC day `date` names: `[start, end)`.
pub fn day(date: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let start = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
        .ok_or_else(|| invalid("date", "must be a date (YYYY-MM-DD)"))?;
    Ok((start, start + chrono::Duration::days(1)))
}
