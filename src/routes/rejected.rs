//! `GET /v1/rejected` (quarantined bodies, admin token) and `POST /v1/rejected/{id}/replay` (a quarantined
//! body run through today's parsers).

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use mmo_actors::providers::{Endpoint, Reply};
use mmo_actors::{Provider, RouteCallback, PROVIDERS};
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};

use super::webhooks::apply_decision;
use super::{require_admin, AppState};
use crate::error::ApiError;
use crate::read_api::{self, Filters, Replayed, REJECTED_FILTERS};

pub async fn rejected(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let filters = Filters::parse(request.query_string(), REJECTED_FILTERS)?;
    let page = read_api::rejected(&state.store, &filters).await?;
    Ok(HttpResponse::Ok().json(page))
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
    if endpoint.reply == Reply::Decision {
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
