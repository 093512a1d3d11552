//! `GET /v1/webhooks/<provider>/health`: the documented per-provider health answer.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use super::{AppState, HealthRoute};
use crate::error::ApiError;

pub async fn health(
    request: HttpRequest,
    route: web::Data<HealthRoute>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state
        .authenticator
        .bearer_identity(request.headers())
        .is_none()
    {
        return Err(ApiError::Unauthorized);
    }
    Ok(HttpResponse::Ok().json(json!({
        "status": "healthy",
        "provider": route.provider.name(),
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    })))
}
