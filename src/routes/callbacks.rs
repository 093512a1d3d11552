//! `GET /v1/callbacks`: stored callbacks, newest first (the read API, admin token).

use actix_web::{web, HttpRequest, HttpResponse};

use super::{require_admin, salt, AppState};
use crate::error::ApiError;
use crate::read_api::{self, Filters, CALLBACK_FILTERS};

pub async fn callbacks(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let filters = Filters::parse(request.query_string(), CALLBACK_FILTERS)?;
    let page = read_api::callbacks(&state.store, &filters, salt(&state)).await?;
    Ok(HttpResponse::Ok().json(page))
}
