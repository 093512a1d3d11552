//! `POST /v1/portal/links` (admin token): a short-lived signed link that opens the portal of one owner's
//! endpoints (`/portal/`, see `docs/console.md`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::endpoints::valid_owner;
use super::{require_admin, AppState};
use crate::error::ApiError;
use crate::stored::invalid;

pub async fn create(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    if !state.portal.enabled {
        return Err(ApiError::NotFound);
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|error| invalid("body", format!("is not JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(invalid("body", "must be a JSON object"));
    };
    if let Some(unknown) = object.keys().find(|key| *key != "owner") {
        return Err(invalid(unknown, "is not known here (accepted: owner)"));
    }
    let owner = match object.get("owner") {
        Some(Value::String(owner)) if valid_owner(owner) => owner,
        _ => return Err(invalid(
            "owner",
            "is required: 1 to 100 letters, digits, `.`, `_`, `-` or `:` (the endpoints' owner)",
        )),
    };
    let expires = chrono::Utc::now() + state.portal.link_ttl;
    let link = state
        .console
        .portal_link(owner, expires.timestamp().max(0) as u64);
    let connection = request.connection_info();
    let url = format!(
        "{}://{}/portal/enter?link={link}",
        connection.scheme(),
        connection.host()
    );
    tracing::info!(owner, "portal link issued");
    Ok(HttpResponse::Created().json(json!({
        "url": url,
        "owner": owner,
        "expires_at": mmo_actors::store::events::rfc3339(expires),
    })))
}
