//! Reports (admin token):
//! - `GET /v1/reports/daily?date=YYYY-MM-DD&provider=`: a UTC day's callbacks (JSON, or the day's
//!   transactions as CSV for `Accept: text/csv`);
//! - `GET /v1/reports/money?date=YYYY-MM-DD&tz=<IANA zone>&provider=`: a settlement day's transactions by
//!   end-of-day status, exact sums (JSON, or CSV for `Accept: text/csv`);
//! - `GET /v1/reports/reconciliation?date=YYYY-MM-DD&provider=`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::{require_admin, AppState};
use crate::error::ApiError;
use crate::{read_api, reconciler_api, stored};

/// A report's parameters: `date` (required), `provider` (optional, as its stored name) and `tz` (when
/// `accepted` names it); nothing else.
struct ReportParameters {
    date: String,
    provider: Option<&'static str>,
    tz: Option<String>,
}

fn report_parameters(query: &str, accepted: &[&str]) -> Result<ReportParameters, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|error| stored::invalid("query", error.to_string()))?
        .into_inner();
    let (mut date, mut provider, mut tz) = (None, None, None);
    for (name, value) in pairs {
        if !accepted.contains(&name.as_str()) {
            return Err(stored::invalid(
                &name,
                format!("is not known here (accepted: {})", accepted.join(", ")),
            ));
        }
        match name.as_str() {
            "date" => date = Some(value),
            "tz" => tz = Some(value),
            // `provider`, the one other name a report accepts.
            _ => {
                provider = Some(stored::provider_name(&value).ok_or_else(|| {
                    stored::invalid(
                        "provider",
                        "must be mpesa, mtn, airtel or their stored names",
                    )
                })?)
            }
        }
    }
    let date = date.ok_or_else(|| stored::invalid("date", "is required (YYYY-MM-DD)"))?;
    Ok(ReportParameters { date, provider, tz })
}

/// A report's `date` (required) and `provider` (optional, as its stored name); nothing else.
fn date_and_provider(query: &str) -> Result<(String, Option<&'static str>), ApiError> {
    let parameters = report_parameters(query, &["date", "provider"])?;
    Ok((parameters.date, parameters.provider))
}

/// Whether the client asked for CSV.
fn wants_csv(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/csv"))
}

pub async fn daily_report(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let (date, provider) = date_and_provider(request.query_string())?;
    if !wants_csv(&request) {
        let report = read_api::daily_report(&state.store, &date, provider).await?;
        return Ok(HttpResponse::Ok().json(report));
    }
    daily_csv(&state, &date, provider).await
}

/// The day's transactions as CSV (the daily report's CSV), for the query API and the console.
pub(crate) async fn daily_csv(
    state: &AppState,
    date: &str,
    provider: Option<&'static str>,
) -> Result<HttpResponse, ApiError> {
    // The day's transactions, streamed row by row as MongoDB returns them: never held whole.
    let cursor = read_api::transactions_of_day(&state.store, date, provider).await?;
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

/// The money report. Its day is cut in `tz` when given; else, for one provider, in that provider's
/// settlement zone (`reports.settlement_zones`). Without either the request is refused: a report over
/// several operators needs one zone to say where its day begins, and guessing one would move money
/// between days without a word.
pub async fn money_report(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let parameters = report_parameters(request.query_string(), &["date", "tz", "provider"])?;
    let zone = match (&parameters.tz, parameters.provider) {
        (Some(tz), _) => tz.parse::<chrono_tz::Tz>().map_err(|_| {
            stored::invalid(
                "tz",
                "must be an IANA time zone name (e.g. Africa/Nairobi, Africa/Kampala, UTC)",
            )
        })?,
        (None, Some(provider)) => state
            .settlement_zones
            .get(provider)
            .copied()
            .unwrap_or(chrono_tz::Tz::UTC),
        (None, None) => {
            return Err(stored::invalid(
                "tz",
                "is required unless `provider` is given (then its settlement zone is used): \
                 a report over several operators needs one zone to cut its day in",
            ))
        }
    };
    let report =
        read_api::money_report(&state.store, &parameters.date, zone, parameters.provider).await?;
    if !wants_csv(&request) {
        return Ok(HttpResponse::Ok().json(report));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"money-{}.csv\"", report.date),
        ))
        .body(read_api::money_csv(&report)))
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
