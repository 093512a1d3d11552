//! Events delivered to the merchant's endpoints, for admin tokens: listing, one event with every attempt,
//! and replay.
//!
//! - `GET /v1/events?type=&provider=&since=&until=&status=&limit=&cursor=`
//! - `GET /v1/events/{id}`
//! - `POST /v1/events/{id}/replay[?endpoint=]`

use actix_web::{web, HttpRequest, HttpResponse};
use mmo_actors::store::events::{rfc3339, EventType, StoredEvent, Target};
use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

use super::{require_admin, AppState};
use crate::error::ApiError;
use crate::read_api::{self, Filters};
use crate::stored::{self, invalid};

/// What `GET /v1/events` accepts.
pub(crate) const EVENT_FILTERS: &[&str] = &[
    "type", "provider", "since", "until", "status", "limit", "cursor",
];

fn targets(event: &StoredEvent) -> Vec<Value> {
    event
        .targets
        .iter()
        .map(|target| {
            json!({
                "endpoint": target.endpoint,
                "status": target.status,
                "attempts": target.attempts,
                "next_attempt_at": (target.status == "pending").then(|| rfc3339(target.next_at)),
            })
        })
        .collect()
}

/// An event as listed.
fn item(document: &Document) -> Value {
    view(&StoredEvent::from_document(document))
}

fn view(event: &StoredEvent) -> Value {
    json!({
        "id": event.id,
        "type": event.event_type,
        "provider": event.provider,
        "flow": event.flow,
        "transaction_key": event.transaction_key,
        "version": event.version,
        "status": event.status,
        "created_at": event.created_at.map(rfc3339),
        "targets": targets(event),
    })
}

pub async fn list(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let pairs = read_api::query_pairs(request.query_string())?;
    Ok(HttpResponse::Ok().json(list_events(&state, pairs).await?))
}

/// A page of events matching `pairs` (the query API's parameters), for the query API and the console.
pub(crate) async fn list_events(
    state: &AppState,
    pairs: Vec<(String, String)>,
) -> Result<read_api::Page<Value>, ApiError> {
    // `type` and `status` mean other things here than in the transaction filters: taken out first.
    let mut extra = Document::new();
    let mut rest = Vec::new();
    for (name, value) in pairs {
        match name.as_str() {
            "type" => {
                EventType::parse(&value).ok_or_else(|| {
                    invalid(
                        "type",
                        format!("must be one of {}", EventType::ALL.join(", ")),
                    )
                })?;
                extra.insert("type", value);
            }
            "status" => {
                if !["pending", "delivered", "failed"].contains(&value.as_str()) {
                    return Err(invalid("status", "must be pending, delivered or failed"));
                }
                extra.insert("status", value);
            }
            _ => rest.push((name, value)),
        }
    }
    let filters = Filters::from_pairs(rest, EVENT_FILTERS)?;
    let mut filter = filters.filter("created_at", None);
    filter.extend(extra);
    read_api::page_with(
        state.store.events(),
        filter,
        &filters,
        "created_at",
        Some(doc! {"payload": 0, "attempts": 0}),
        item,
    )
    .await
}

async fn find(state: &AppState, id: &str) -> Result<Document, ApiError> {
    state
        .store
        .event_log()
        .find(id)
        .await
        .map_err(stored::store_failed)?
        .ok_or(ApiError::NoSuch("event"))
}

pub async fn get(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    Ok(HttpResponse::Ok().json(event_detail(&state, &path).await?))
}

/// One event with its payload and every attempt, for the query API and the console.
pub(crate) async fn event_detail(state: &AppState, id: &str) -> Result<Value, ApiError> {
    Ok(detail(&find(state, id).await?))
}

/// The events of one transaction (`provider|flow|key`, as stored), oldest first, each with its attempts.
pub(crate) async fn events_of_transaction(
    state: &AppState,
    transaction_id: &str,
    version: i64,
) -> Result<Vec<Value>, ApiError> {
    let found = state
        .store
        .event_log()
        .of_transaction(transaction_id, version)
        .await
        .map_err(stored::store_failed)?;
    Ok(found.iter().map(detail).collect())
}

fn detail(document: &Document) -> Value {
    let event = StoredEvent::from_document(document);
    let mut shown = view(&event);
    shown["payload"] = event
        .payload
        .as_deref()
        .and_then(|payload| serde_json::from_str(payload).ok())
        .unwrap_or(Value::Null);
    shown["attempts"] = event
        .attempts
        .iter()
        .map(|attempt| {
            json!({
                "endpoint": attempt.endpoint,
                "attempt": attempt.attempt,
                "at": attempt.at.map(rfc3339),
                "status_code": attempt.status_code,
                "duration_ms": attempt.duration_ms,
                "response": attempt.response,
                "error": attempt.error,
            })
        })
        .collect();
    shown
}

pub async fn replay(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let pairs = read_api::query_pairs(request.query_string())?;
    let mut endpoint = None;
    for (name, value) in pairs {
        match name.as_str() {
            "endpoint" => endpoint = Some(value),
            other => return Err(invalid(other, "is not known here (accepted: endpoint)")),
        }
    }
    Ok(HttpResponse::Accepted().json(replay_event(&state, &path, endpoint).await?))
}

/// Sends an event again, to its endpoints or to `endpoint` (for the query API and the console).
pub(crate) async fn replay_event(
    state: &AppState,
    id: &str,
    endpoint: Option<String>,
) -> Result<Value, ApiError> {
    let event = StoredEvent::from_document(&find(state, id).await?);
    let now = chrono::Utc::now();
    let mut targets: Vec<Target> = event
        .targets
        .iter()
        .map(|target| Target::pending(&target.endpoint, now))
        .collect();
    match &endpoint {
        Some(id) => {
            let exists = state
                .store
                .database()
                .collection::<Document>("endpoints")
                .find_one(doc! {"_id": id})
                .await
                .map_err(stored::unavailable)?
                .is_some();
            if !exists {
                return Err(invalid("endpoint", "names no endpoint"));
            }
            // Only that endpoint's state changes; the others' stay as they were.
            targets = event
                .targets
                .iter()
                .filter(|target| target.endpoint != *id)
                .cloned()
                .collect();
            targets.push(Target::pending(id, now));
        }
        None => {
            if targets.is_empty() {
                return Err(ApiError::Conflict {
                    code: "NO_TARGETS",
                    message: "This event went to no endpoint; name one with ?endpoint=".into(),
                });
            }
        }
    }
    state
        .store
        .event_log()
        .requeue(id, &targets)
        .await
        .map_err(stored::store_failed)?;
    Ok(json!({"id": id, "status": "pending"}))
}

/// How many events wait to be sent (due now or later), counted on the dispatcher's own partial index.
pub(crate) async fn waiting(state: &AppState) -> Result<u64, ApiError> {
    state
        .store
        .event_log()
        .count_pending()
        .await
        .map_err(stored::store_failed)
}

/// The newest events (at most `limit`) sent or to be sent to an endpoint of `owner`, each with its
/// attempts.
pub(crate) async fn events_of_owner(
    state: &AppState,
    owner: &str,
    limit: i64,
) -> Result<Vec<Value>, ApiError> {
    let found = state
        .store
        .event_log()
        .of_owner(owner, limit)
        .await
        .map_err(stored::store_failed)?;
    Ok(found.iter().map(detail).collect())
}

/// How many of the newest events the console's delivery health of endpoints is read from.
pub(crate) const HEALTH_WINDOW: i64 = 500;

/// What the attempts recorded on some events say of one endpoint.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Health {
    pub(crate) attempts: u64,
    /// Attempts not answered with a 2xx (an error, a timeout, any other status).
    pub(crate) failed: u64,
    /// The latest attempt answered with a 2xx (RFC 3339).
    pub(crate) last_success: Option<String>,
}

/// Each endpoint's health from the attempts of `events` (as [`event_detail`] shows them).
pub(crate) fn health_of<'a>(
    events: impl IntoIterator<Item = &'a Value>,
) -> std::collections::BTreeMap<String, Health> {
    let mut health: std::collections::BTreeMap<String, Health> = Default::default();
    for attempt in events
        .into_iter()
        .filter_map(|event| event["attempts"].as_array())
        .flatten()
    {
        let Some(endpoint) = attempt["endpoint"].as_str() else {
            continue;
        };
        let entry = health.entry(endpoint.to_owned()).or_default();
        entry.attempts += 1;
        let succeeded = attempt["status_code"]
            .as_i64()
            .is_some_and(|code| (200..300).contains(&code));
        if !succeeded {
            entry.failed += 1;
        } else if let Some(at) = attempt["at"].as_str() {
            if entry.last_success.as_deref().is_none_or(|last| last < at) {
                entry.last_success = Some(at.to_owned());
            }
        }
    }
    health
}

/// Every endpoint's health from the attempts on the newest [`HEALTH_WINDOW`] events: one bounded read on
/// the `newest` index, nothing written per delivery to keep it.
pub(crate) async fn delivery_health(
    state: &AppState,
) -> Result<std::collections::BTreeMap<String, Health>, ApiError> {
    let found = state
        .store
        .event_log()
        .newest_attempts(HEALTH_WINDOW)
        .await
        .map_err(stored::store_failed)?;
    let events: Vec<Value> = found.iter().map(detail).collect();
    Ok(health_of(&events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_counts_failed_attempts_and_keeps_the_latest_success() {
        let events = [
            json!({"attempts": [
                {"endpoint": "ep_a", "status_code": 500, "at": "2026-12-08T01:00:00.000Z"},
                {"endpoint": "ep_a", "status_code": 204, "at": "2026-12-08T01:00:05.000Z"},
                {"endpoint": "ep_b", "status_code": null, "at": "2026-12-08T01:00:06.000Z"},
            ]}),
            json!({"attempts": [
                {"endpoint": "ep_a", "status_code": 200, "at": "2026-12-08T00:59:00.000Z"},
                {"endpoint": "ep_b", "status_code": 302, "at": "2026-12-08T01:01:00.000Z"},
            ]}),
            json!({"attempts": []}),
        ];
        let health = health_of(&events);
        assert_eq!(
            health["ep_a"],
            Health {
                attempts: 3,
                failed: 1,
                last_success: Some("2026-12-08T01:00:05.000Z".into())
            }
        );
        assert_eq!(
            health["ep_b"],
            Health {
                attempts: 2,
                failed: 2,
                last_success: None
            }
        );
    }
}
