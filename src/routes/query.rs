//! The query API (read-only, for a token from `auth.admin_tokens`), and the replay of a quarantined body.
//!
//! - `GET /v1/transactions`, `GET /v1/transactions/{provider}/{transaction_key}`
//! - `GET /v1/callbacks`, `GET /v1/rejected`
//! - `GET /v1/reports/daily?date=YYYY-MM-DD` (JSON, or the day's transactions as CSV for `Accept: text/csv`)
//! - `POST /v1/rejected/{id}/replay`

use actix_web::http::header::{self, ContentType};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use futures_util::StreamExt;
use mmo_actors::providers::{Answer, Endpoint};
use mmo_actors::{Provider, RouteCallback, PROVIDERS};
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};

use super::webhooks::apply_decision;
use super::{require_admin, AppState};
use crate::error::ApiError;
use crate::query::{
    self, Filters, Replayed, CALLBACK_FILTERS, REJECTED_FILTERS, TRANSACTION_FILTERS,
};
use crate::stored;

fn salt(state: &AppState) -> Option<&[u8]> {
    state.pseudonymization_salt.as_deref()
}

pub async fn transactions(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let filters = Filters::parse(request.query_string(), TRANSACTION_FILTERS)?;
    let page = query::transactions(&state.store, &filters, salt(&state)).await?;
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
    let detail = query::transaction(&state.store, &provider, &key, flow.as_deref()).await?;
    Ok(HttpResponse::Ok().json(detail))
}

pub async fn callbacks(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let filters = Filters::parse(request.query_string(), CALLBACK_FILTERS)?;
    let page = query::callbacks(&state.store, &filters, salt(&state)).await?;
    Ok(HttpResponse::Ok().json(page))
}

pub async fn rejected(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let filters = Filters::parse(request.query_string(), REJECTED_FILTERS)?;
    let page = query::rejected(&state.store, &filters).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// A report's `date` (required) and `provider` (optional, as its stored name); nothing else.
pub(super) fn date_and_provider(query: &str) -> Result<(String, Option<&'static str>), ApiError> {
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
        let report = query::daily_report(&state.store, &date, provider).await?;
        return Ok(HttpResponse::Ok().json(report));
    }
    // The day's transactions, streamed row by row as MongoDB returns them: never held whole.
    let cursor = query::transactions_of_day(&state.store, &date, provider).await?;
    let header_row = futures_util::stream::once(async {
        Ok::<_, actix_web::Error>(web::Bytes::from(query::csv_line(
            query::CSV_COLUMNS.iter().copied(),
        )))
    });
    let rows = cursor.map(|document| match document {
        Ok(document) => Ok(web::Bytes::from(query::csv_row(&document))),
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

/// Runs a quarantined body through today's parsers. On success it is stored as a callback (through the
/// journal, like any other) with `replayed_from`, and the rejected entry is marked replayed; on failure
/// nothing changes and the reason is returned. Bodies of senders that did not authenticate are never
/// replayed: an operator's token cannot vouch for what a stranger sent.
pub async fn replay(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let id =
        ObjectId::parse_str(path.as_str()).map_err(|_| ApiError::NoSuch("rejected callback"))?;
    let rejected = state
        .store
        .rejected()
        .find_one(doc! {"_id": id})
        .await
        .map_err(|error| ApiError::QueryFailed(error.to_string()))?
        .ok_or(ApiError::NoSuch("rejected callback"))?;
    if !rejected.get_bool("authenticated").unwrap_or(true) {
        return Err(ApiError::Conflict {
            code: "NOT_REPLAYABLE",
            message: "The sender did not authenticate: its body is kept for audit, never replayed"
                .into(),
        });
    }
    if rejected.get_bool("replayed").unwrap_or(false) {
        return Err(ApiError::Conflict {
            code: "ALREADY_REPLAYED",
            message: "This body was replayed already".into(),
        });
    }
    let (provider, endpoint) = endpoint_of(&rejected).ok_or_else(|| ApiError::Conflict {
        code: "NOT_REPLAYABLE",
        message: "The endpoint this body was sent to is not known".into(),
    })?;
    let raw = match rejected.get("raw_bytes") {
        Some(Bson::Binary(binary)) => binary.bytes.clone(),
        _ => rejected
            .get_str("raw")
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
    };
    let mut callback = provider
        .parse(endpoint.callback_type, &raw)
        .map_err(|error| ApiError::ReplayFailed(format!("still not understood: {error}")))?;
    if let Some(salt) = &state.pseudonymization_salt {
        mmo_actors::privacy::pseudonymize(&mut callback, salt);
    }
    if endpoint.answer == Answer::Decision {
        apply_decision(provider, &mut callback, &state.acceptance_rules);
    }
    let replayed = Replayed {
        replayed: true,
        provider: callback.provider.to_owned(),
        callback_type: callback.callback_type.as_str().to_owned(),
        provider_transaction_id: callback.provider_transaction_id.clone(),
        status: callback.status.as_str().to_owned(),
    };
    let mut message = RouteCallback::new(callback, Utc::now());
    message.replayed_from = Some(id);
    match state
        .supervisor
        .send(message)
        .timeout(state.pipeline_timeout)
        .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(ApiError::from_pipeline(error, "replay")),
        Err(_) => return Err(ApiError::Unavailable(mmo_actors::PipelineError::Timeout)),
    }
    state
        .store
        .rejected()
        .update_one(
            doc! {"_id": id},
            doc! {"$set": {
                "replayed": true,
                "replayed_at": mongodb::bson::DateTime::now(),
                "replayed_as": {
                    "provider": &replayed.provider,
                    "callback_type": &replayed.callback_type,
                    "provider_transaction_id": &replayed.provider_transaction_id,
                    "status": &replayed.status,
                },
            }},
        )
        .await
        .map_err(|error| ApiError::QueryFailed(error.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .json(replayed))
}

/// The provider and endpoint a rejected body was sent to: recorded with it, or read from its path.
fn endpoint_of(rejected: &Document) -> Option<(&'static dyn Provider, &'static Endpoint)> {
    if let (Ok(name), Ok(kind)) = (
        rejected.get_str("provider"),
        rejected.get_str("callback_type"),
    ) {
        let provider = PROVIDERS
            .iter()
            .copied()
            .find(|provider| provider.name() == name)?;
        let endpoint = provider
            .endpoints()
            .iter()
            .find(|endpoint| endpoint.callback_type.as_str() == kind)?;
        return Some((provider, endpoint));
    }
    let path = rejected.get_str("path").ok()?;
    let rest = path.strip_prefix("/v1/webhooks/")?;
    PROVIDERS.iter().copied().find_map(|provider| {
        let endpoint_path = rest.strip_prefix(provider.slug())?.strip_prefix('/')?;
        provider
            .endpoints()
            .iter()
            .find(|endpoint| {
                endpoint_path == endpoint.path
                    || endpoint_path
                        .strip_prefix(endpoint.path)
                        .is_some_and(|tail| tail.starts_with('/'))
            })
            .map(|endpoint| (provider, endpoint))
    })
}
