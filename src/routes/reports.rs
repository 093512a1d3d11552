//! Reports (admin token):
//! - `GET /v1/reports/daily?date=YYYY-MM-DD&provider=` (JSON, or the day's transactions as CSV for
//!   `Accept: text/csv`);
//! - `GET /v1/reports/reconciliation?date=YYYY-MM-DD&provider=`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::{require_admin, AppState};
use crate::error::ApiError;
use crate::{read_api, reconciler_api, stored};

/// A report's `date` (required) and `provider` (optional, as its stored name); nothing else.
fn date_and_provider(query: &str) -> Result<(String, Option<&'static str>), ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|error| ApiError::InvalidParameter {
            parameter: "query".into(),
            problem: error.to_string(),
        })?
        .into_inner();
    let (mut date, mut provider) = (None, None);
    for (name, value) in pairs {
        match name.as_str() {
            "date" => date = Some(value),
            "provider" => {
                provider = Some(stored::provider_name(&value).ok_or_else(|| {
                    ApiError::InvalidParameter {
                        parameter: "provider".into(),
                        problem: "must be mpesa, mtn, airtel or their stored names".into(),
                    }
                })?)
            }
            other => {
                return Err(ApiError::InvalidParameter {
                    parameter: other.to_owned(),
                    problem: "is not known here (accepted: date, provider)".into(),
                })
            }
        }
    }
    let date = date.ok_or_else(|| ApiError::InvalidParameter {
        parameter: "date".into(),
        problem: "is required (YYYY-MM-DD)".into(),
    })?;
    Ok((date, provider))
}

pub async fn daily_report(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let (date, provider) = date_and_provider(request.query_string())?;
    let wants_csv = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/csv"));
    if !wants_csv {
        let report = read_api::daily_report(&state.store, &date, provider).await?;
        return Ok(HttpResponse::Ok().json(report));
    }
    // The day's transactions, streamed row by row as MongoDB returns them: never held whole.
    let cursor = read_api::transactions_of_day(&state.store, &date, provider).await?;
    let header_row = futures_util::stream::once(async {
        Ok::<_, actix_web::Error>(web::Bytes::from(read_api::csv_line(
            read_api::CSV_COLUMNS.iter().copied(),
        )))
    });
    let rows = cursor.map(|document| match document {
        Ok(document) => Ok(web::Bytes::from(read_api::csv_row(&document))),
        Err(error) => Err(actix_web::error::ErrorServiceUnavailable(error)),
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"transactions-{date}.csv\""),
        ))
        .streaming(header_row.chain(rows)))
}

pub async fn reconciliation(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let (date, provider) = date_and_provider(request.query_string())?;
    let report = reconciler_api::report(&state.store, &date, provider).await?;
    Ok(HttpResponse::Ok().json(report))
}
