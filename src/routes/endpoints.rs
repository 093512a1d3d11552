//! The merchant's endpoints, for admin tokens: where events are delivered.
//!
//! - `POST /v1/endpoints`, `GET /v1/endpoints`, `GET/PATCH/DELETE /v1/endpoints/{id}`
//! - `GET /v1/endpoints/{id}/secret`, `POST /v1/endpoints/{id}/secret/rotate`
//! - `POST /v1/endpoints/{id}/recover?since=…`: every event that failed for it since then, sent again
//! - `POST /v1/endpoints/{id}/test`: a test event (`endpoint.test`) for that endpoint only
//!
//! Endpoints declared in configuration are listed too, and cannot be changed here.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use mmo_actors::delivery::sealing::{self, SecretsKey};
use mmo_actors::delivery::signature::new_secret;
use mmo_actors::store::bson_time;
use mmo_actors::store::events::EventType;
use mongodb::bson::{doc, Bson, Document};
use rand::RngCore;
use serde_json::{Map, Value};

use super::{require_admin, AppState};
use crate::delivery::{check_url, public_view};
use crate::error::ApiError;
use crate::read_api::{self, Filters};
use crate::stored::{self, invalid};

/// Fields a request body may carry, by route.
const CREATE_FIELDS: &[&str] = &[
    "url",
    "owner",
    "event_types",
    "providers",
    "description",
    "max_in_flight",
    "rate_limit_per_sec",
];
const PATCH_FIELDS: &[&str] = &[
    "url",
    "owner",
    "event_types",
    "providers",
    "description",
    "max_in_flight",
    "rate_limit_per_sec",
    "enabled",
];

fn endpoints(state: &AppState) -> mongodb::Collection<Document> {
    state.store.database().collection("endpoints")
}

/// The body as a JSON object with only `allowed` fields.
fn object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| invalid("body", format!("is not JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(invalid("body", "must be a JSON object"));
    };
    if let Some(unknown) = object.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(invalid(
            unknown,
            format!("is not known here (accepted: {})", allowed.join(", ")),
        ));
    }
    Ok(object)
}

fn texts(object: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(field, "must be a list of texts"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid(field, "must be a list of texts")),
    }
}

fn positive(object: &Map<String, Value>, field: &str, max: u64) -> Result<Option<i64>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|value| (1..=max).contains(value))
            .map(|value| Some(value as i64))
            .ok_or_else(|| invalid(field, format!("must be a whole number from 1 to {max}"))),
    }
}

/// Checks a URL: its shape, and that its host is an address the policy allows now (it is checked again
/// at every connection, where it matters: this early refusal only spares the merchant a silent failure).
async fn checked_url(url: &str, state: &AppState) -> Result<String, ApiError> {
    check_url(url).map_err(|problem| invalid("url", problem))?;
    state
        .address_policy
        .check_host(url, state.names.as_ref())
        .await
        .map_err(|problem| invalid("url", problem))?;
    Ok(url.to_owned())
}

/// The fields an endpoint body sets, checked.
async fn fields(object: &Map<String, Value>, state: &AppState) -> Result<Document, ApiError> {
    let mut set = Document::new();
    match object.get("url") {
        Some(Value::String(url)) => {
            set.insert("url", checked_url(url, state).await?);
        }
        Some(_) => return Err(invalid("url", "must be an absolute http(s) URL")),
        None => {}
    }
    if let Some(types) = texts(object, "event_types")? {
        if let Some(unknown) = types.iter().find(|kind| EventType::parse(kind).is_none()) {
            return Err(invalid(
                "event_types",
                format!(
                    "`{unknown}` is no event type (known: {})",
                    EventType::ALL.join(", ")
                ),
            ));
        }
        set.insert("event_types", types);
    }
    if let Some(providers) = texts(object, "providers")? {
        let names = providers
            .iter()
            .map(|name| {
                stored::provider_name(name).ok_or_else(|| {
                    invalid(
                        "providers",
                        format!("`{name}` is no provider (mpesa, mtn, airtel)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        set.insert("providers", names);
    }
    match object.get("owner") {
        Some(Value::String(owner)) if valid_owner(owner) => {
            set.insert("owner", owner.as_str());
        }
        Some(Value::Null) | None => {}
        Some(_) => {
            return Err(invalid(
                "owner",
                "must be 1 to 100 letters, digits, `.`, `_`, `-` or `:` (a merchant's id)",
            ))
        }
    }
    match object.get("description") {
        Some(Value::String(text)) if text.len() <= 500 => {
            set.insert("description", text.as_str());
        }
        Some(Value::Null) | None => {}
        Some(_) => {
            return Err(invalid(
                "description",
                "must be a text of at most 500 bytes",
            ))
        }
    }
    if let Some(limit) = positive(object, "max_in_flight", 256)? {
        set.insert("max_in_flight", limit);
    }
    if let Some(rate) = positive(object, "rate_limit_per_sec", 10_000)? {
        set.insert("rate_limit_per_sec", rate);
    }
    match object.get("enabled") {
        Some(Value::Bool(enabled)) => {
            set.insert("enabled", *enabled);
        }
        Some(_) => return Err(invalid("enabled", "must be true or false")),
        None => {}
    }
    Ok(set)
}

/// A merchant's id as an endpoint's `owner` (what a portal link names).
pub(crate) fn valid_owner(owner: &str) -> bool {
    (1..=100).contains(&owner.len())
        && owner
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b':'))
}

fn random_secret() -> String {
    let mut bytes = [0_u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    new_secret(bytes)
}

fn random_id() -> String {
    let mut bytes = [0_u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("ep_{}", hex::encode(bytes))
}

pub async fn create(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let object = object(&body, CREATE_FIELDS)?;
    Ok(HttpResponse::Created().json(create_endpoint(&state, &object).await?))
}

/// Registers an endpoint (what `POST /v1/endpoints` accepts); answers it with its secret, shown once.
/// For the query API and the portal.
pub(crate) async fn create_endpoint(
    state: &AppState,
    object: &Map<String, Value>,
) -> Result<Value, ApiError> {
    if !object.contains_key("url") {
        return Err(invalid("url", "is required"));
    }
    let mut document = fields(object, state).await?;
    let secret = random_secret();
    let id = random_id();
    let stored = sealing::store(state.secrets_key.as_ref(), &id, &secret);
    document.insert("_id", &id);
    document.insert(
        "secrets",
        vec![doc! {"secret": stored, "created_at": mongodb::bson::DateTime::now()}],
    );
    document.insert("enabled", true);
    document.insert("source", "api");
    document.insert("created_at", mongodb::bson::DateTime::now());
    for list in ["event_types", "providers"] {
        if !document.contains_key(list) {
            document.insert(list, Vec::<String>::new());
        }
    }
    endpoints(state)
        .insert_one(&document)
        .await
        .map_err(stored::unavailable)?;
    let mut view = public_view(&document);
    view["secret"] = Value::String(secret);
    Ok(view)
}

/// The endpoints whose `owner` is `owner`, oldest first (a merchant has a handful).
pub(crate) async fn endpoints_of_owner(
    state: &AppState,
    owner: &str,
) -> Result<Vec<Document>, ApiError> {
    stored::all(
        endpoints(state)
            .find(doc! {"owner": owner})
            .sort(doc! {"created_at": 1, "_id": 1}),
    )
    .await
}

pub async fn list(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let filters = Filters::parse(request.query_string(), &["limit", "cursor"])?;
    Ok(HttpResponse::Ok().json(list_endpoints(&state, &filters).await?))
}

/// A page of endpoints, for the query API and the console.
pub(crate) async fn list_endpoints(
    state: &AppState,
    filters: &Filters,
) -> Result<read_api::Page<Value>, ApiError> {
    let filter = filters.filter("created_at", None);
    read_api::page_with(
        &endpoints(state),
        filter,
        filters,
        "created_at",
        None,
        public_view,
    )
    .await
}

/// One endpoint's document.
pub(crate) async fn find(state: &AppState, id: &str) -> Result<Document, ApiError> {
    endpoints(state)
        .find_one(doc! {"_id": id})
        .await
        .map_err(stored::unavailable)?
        .ok_or(ApiError::NoSuch("endpoint"))
}

fn changeable(document: &Document) -> Result<(), ApiError> {
    if document.get_str("source") == Ok("config") {
        return Err(ApiError::Conflict {
            code: "CONFIGURED_ENDPOINT",
            message: "This endpoint is declared in configuration; change it there".into(),
        });
    }
    Ok(())
}

pub async fn get(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    Ok(HttpResponse::Ok().json(public_view(&find(&state, &path).await?)))
}

pub async fn update(
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let object = object(&body, PATCH_FIELDS)?;
    Ok(HttpResponse::Ok().json(update_endpoint(&state, &path, &object).await?))
}

/// Changes an endpoint (what `PATCH /v1/endpoints/{id}` accepts), for the query API and the console.
pub(crate) async fn update_endpoint(
    state: &AppState,
    id: &str,
    object: &Map<String, Value>,
) -> Result<Value, ApiError> {
    changeable(&find(state, id).await?)?;
    let mut set = fields(object, state).await?;
    let mut update = doc! {};
    if set.get_bool("enabled") == Ok(true) {
        // Enabled again by a person: the reason it was turned off no longer stands.
        update.insert("$unset", doc! {"disabled_reason": "", "disabled_at": ""});
    }
    set.insert("updated_at", mongodb::bson::DateTime::now());
    update.insert("$set", set);
    endpoints(state)
        .update_one(doc! {"_id": id}, update)
        .await
        .map_err(stored::unavailable)?;
    Ok(public_view(&find(state, id).await?))
}

pub async fn delete(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    changeable(&find(&state, &path).await?)?;
    endpoints(&state)
        .delete_one(doc! {"_id": path.as_str()})
        .await
        .map_err(stored::unavailable)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The secrets that sign now, newest first, opened (see `sealing`).
fn signing(document: &Document, key: Option<&SecretsKey>) -> Vec<(String, Option<String>)> {
    let now = Utc::now().timestamp_millis();
    let id = document.get_str("_id").unwrap_or_default();
    document
        .get_array("secrets")
        .map(|secrets| {
            secrets
                .iter()
                .filter_map(Bson::as_document)
                .filter(|secret| {
                    secret
                        .get_datetime("expires_at")
                        .map_or(true, |until| until.timestamp_millis() > now)
                })
                .filter_map(|secret| {
                    Some((
                        sealing::load(key, id, secret.get_str("secret").ok()?)?,
                        stored::rfc3339(secret, "expires_at"),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn secret_view(document: &Document, key: Option<&SecretsKey>) -> Value {
    let secrets = signing(document, key);
    let previous: Vec<Value> = secrets
        .iter()
        .skip(1)
        .map(|(secret, until)| serde_json::json!({"secret": secret, "expires_at": until}))
        .collect();
    serde_json::json!({
        "secret": secrets.first().map(|(secret, _)| secret.as_str()),
        "previous": previous,
    })
}

pub async fn secret(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    Ok(HttpResponse::Ok().json(secret_of(&state, &path).await?))
}

/// An endpoint's current secret and those still signing (for the query API and the portal).
pub(crate) async fn secret_of(state: &AppState, id: &str) -> Result<Value, ApiError> {
    Ok(secret_view(
        &find(state, id).await?,
        state.secrets_key.as_ref(),
    ))
}

/// At most this many secrets sign at once (the current one and those rotated out, each in its own
/// overlap): each adds a signature to every delivery, so a script rotating in a loop is refused instead
/// of growing every request's headers.
const MAX_SIGNING_SECRETS: usize = 10;
/// Rotations of one endpoint at the same moment: each is tried again on the secrets the other wrote.
const ROTATION_TRIES: usize = 5;

/// A new current secret; the one it replaces keeps signing for `delivery.secret_overlap_secs`, and every
/// secret rotated out before keeps signing until its own overlap ends, however many rotations follow.
pub async fn rotate(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    Ok(HttpResponse::Ok().json(rotate_secret(&state, &path).await?))
}

/// The rotation itself (see [`rotate`]), for the query API and the portal.
pub(crate) async fn rotate_secret(state: &AppState, path: &str) -> Result<Value, ApiError> {
    let overlap =
        chrono::Duration::from_std(state.secret_overlap).unwrap_or(chrono::Duration::days(1));
    let key = state.secrets_key.as_ref();
    for _ in 0..ROTATION_TRIES {
        let document = find(state, path).await?;
        changeable(&document)?;
        let now = Utc::now();
        let read = document.get("secrets").cloned().unwrap_or(Bson::Null);
        let fresh = sealing::store(key, path, &random_secret());
        let mut secrets = vec![doc! {"secret": fresh, "created_at": bson_time(now)}];
        // Newest first, as stored: the current one (no end yet) gets its overlap; those rotated out
        // before keep theirs; those whose overlap has ended are dropped. Sealed ones are kept as they are
        // (bound to this endpoint); one stored before a key was configured is sealed now.
        for secret in read.as_array().into_iter().flatten() {
            let Some(secret) = secret.as_document() else {
                continue;
            };
            let mut kept = secret.clone();
            if let (Some(key), Ok(text)) = (key, secret.get_str("secret")) {
                if !sealing::is_sealed(text) {
                    kept.insert("secret", key.seal(path, text));
                }
            }
            match secret.get_datetime("expires_at") {
                Err(_) => {
                    kept.insert("expires_at", bson_time(now + overlap));
                }
                Ok(until) if until.to_chrono() > now => {}
                Ok(_) => continue,
            }
            secrets.push(kept);
        }
        if secrets.len() > MAX_SIGNING_SECRETS {
            return Err(ApiError::Conflict {
                code: "TOO_MANY_SECRETS",
                message: format!(
                    "{} secrets sign this endpoint's events already (the current one and those rotated out \
                     within delivery.secret_overlap_secs); rotate again once the oldest one's overlap ends",
                    secrets.len() - 1
                ),
            });
        }
        // Written only over the secrets read: a rotation at the same moment is not lost, it is read
        // again and rotated after.
        let written = endpoints(state)
            .update_one(
                doc! {"_id": path, "secrets": read},
                doc! {"$set": {"secrets": secrets}},
            )
            .await
            .map_err(stored::unavailable)?;
        if written.matched_count == 1 {
            return Ok(secret_view(&find(state, path).await?, key));
        }
    }
    Err(ApiError::Conflict {
        code: "ROTATED_CONCURRENTLY",
        message: "This endpoint's secret is being rotated by other requests; try again".into(),
    })
}

pub async fn recover(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    find(&state, &path).await?;
    let filters = Filters::parse(request.query_string(), &["since"])?;
    let since: DateTime<Utc> = filters
        .since
        .ok_or_else(|| invalid("since", "is required"))?;
    let requeued = recover_failed(&state, &path, Some(since)).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({"requeued": requeued})))
}

/// Sends again every event that failed for endpoint `id` (created since `since`, or every one kept):
/// what `POST /v1/endpoints/{id}/recover` does, for the query API and the console. Answers how many
/// events were queued again.
pub(crate) async fn recover_failed(
    state: &AppState,
    id: &str,
    since: Option<DateTime<Utc>>,
) -> Result<u64, ApiError> {
    find(state, id).await?;
    state
        .store
        .event_log()
        .requeue_failed(id, since)
        .await
        .map_err(stored::store_failed)
}

/// The type of the events `POST /v1/endpoints/{id}/test` queues: never routed to an endpoint by
/// subscription, only to the endpoint it was asked for.
pub(crate) const TEST_EVENT_TYPE: &str = "endpoint.test";

pub async fn test(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let id = send_test_event(&state, &path).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "id": id,
        "type": TEST_EVENT_TYPE,
        "endpoint": path.as_str(),
        "status": "pending",
        "event_url": format!("/v1/events/{id}"),
        "console_url": format!("/ui/events/{id}"),
    })))
}

/// Queues a test event for endpoint `id` only: an `events` document due now with that one target, which
/// the dispatcher's retry path sends like any other (signed, its attempts recorded, retried on the
/// schedule). Its payload says it is a test and names the endpoint; no transaction is behind it (its
/// `transaction_id` is its own, so no ordering waits on it). Answers the event's id. A disabled endpoint
/// is refused (409): the event would wait until it is enabled.
pub(crate) async fn send_test_event(state: &AppState, id: &str) -> Result<String, ApiError> {
    let endpoint = find(state, id).await?;
    if endpoint.get_bool("enabled") == Ok(false) {
        return Err(ApiError::Conflict {
            code: "ENDPOINT_DISABLED",
            message: "This endpoint is disabled; enable it before sending it a test event".into(),
        });
    }
    let now = Utc::now();
    let event_id = format!("evt_{}", uuid::Uuid::new_v4().simple());
    let at = mmo_actors::store::events::rfc3339(now);
    let payload = serde_json::json!({
        "type": TEST_EVENT_TYPE,
        "timestamp": at,
        "data": {
            "test": true,
            "message": "A test event sent on request from mmo-webhooks: no payment is behind it.",
            "endpoint": id,
            "sent_at": at,
        },
    })
    .to_string();
    state
        .store
        .event_log()
        .queue_alone(
            &event_id,
            TEST_EVENT_TYPE,
            payload,
            id,
            endpoint.get_str("owner").ok(),
            now,
        )
        .await
        .map_err(stored::store_failed)?;
    tracing::info!(endpoint = id, event = event_id, "test event queued");
    Ok(event_id)
}
