//! `GET /v1/transactions` (the read API's listing, admin token) and
//! `GET /v1/transactions/{provider}/{transaction_key}` (one transaction with its callbacks).

use actix_web::{web, HttpRequest, HttpResponse};

use super::{require_admin, salt, AppState};
use crate::error::ApiError;
use crate::read_api::{self, Filters, TRANSACTION_FILTERS};

pub async fn transactions(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let filters = Filters::parse(request.query_string(), TRANSACTION_FILTERS)?;
    let page = read_api::transactions(&state.store, &filters, salt(&state)).await?;
    Ok(HttpResponse::Ok().json(page))
}

pub async fn transaction(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let (provider, key) = path.into_inner();
    let flow = web::Query::<Vec<(String, String)>>::from_query(request.query_string())
        .map_err(|error| ApiError::InvalidParameter {
            parameter: "query".into(),
            problem: error.to_string(),
        })?
        .into_inner()
        .into_iter()
        .find_map(|(name, value)| (name == "flow").then_some(value));
    let detail =
        read_api::transaction(&state.store, &provider, &key, flow.as_deref(), false).await?;
    Ok(HttpResponse::Ok().json(detail))
}
