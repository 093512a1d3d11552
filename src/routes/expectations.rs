//! Expectations: payments the merchant tells the reconciler to watch for.
//!
//! - `POST /v1/expectations` (a token from `auth.client_tokens`): register a payment that should call back.
//! - `GET /v1/expectations/{provider}/{key}` (client or admin token): what became of it.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::{presented_token, require_admin, AppState};
use crate::error::ApiError;
use crate::reconciler_api;

/// Admits a request carrying a token from `auth.client_tokens`.
fn require_client(request: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    match presented_token(request) {
        Some(token) if state.client_tokens.contains(token) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

pub async fn expect(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_client(&request, &state)?;
    let expectation =
        reconciler_api::parse_expectation(&body, state.pseudonymization_salt.as_deref())?;
    // Documents of earlier versions get their identity as `_id` first: only then is a repeat a repeat.
    state
        .store
        .ensure_indexes()
        .await
        .map_err(|error| ApiError::QueryFailed(error.to_string()))?;
    let registered = state
        .store
        .reconciliations()
        .expect(&expectation, Utc::now(), state.reconciler_give_up_after)
        .await
        .map_err(|error| ApiError::QueryFailed(error.to_string()))?;
    let item = reconciler_api::expectation_item(&registered.document);
    Ok(if registered.created {
        metrics::counter!("mmo_expectations_total", "provider" => expectation.provider)
            .increment(1);
        HttpResponse::Created().json(item)
    } else {
        HttpResponse::Ok().json(item)
    })
}

pub async fn expectation(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if require_client(&request, &state).is_err() {
        require_admin(&request, &state)?;
    }
    let (provider, key) = path.into_inner();
    let view = reconciler_api::expectation_view(&state.store, &provider, &key).await?;
    Ok(HttpResponse::Ok().json(view))
}
