//! Expectations and the reconciliation report.
//!
//! - `POST /v1/expectations` (a token from `auth.client_tokens`): register a payment that should call back.
//! - `GET /v1/expectations/{provider}/{key}` (client or admin token): what became of it.
//! - `GET /v1/reports/reconciliation?date=YYYY-MM-DD&provider=` (admin token).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::query::date_and_provider;
use super::{presented_token, require_admin, AppState};
use crate::error::ApiError;
use crate::reconciliation;

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
        reconciliation::parse_expectation(&body, state.pseudonymization_salt.as_deref())?;
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
    let item = reconciliation::expectation_item(&registered.document);
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
    let view = reconciliation::expectation_view(&state.store, &provider, &key).await?;
    Ok(HttpResponse::Ok().json(view))
}

pub async fn report(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let (date, provider) = date_and_provider(request.query_string())?;
    let report = reconciliation::report(&state.store, &date, provider).await?;
    Ok(HttpResponse::Ok().json(report))
}
