//! `GET /v1/rejected` (quarantined bodies, admin token), `GET /v1/rejected/{id}` (one of them) and
//! `POST /v1/rejected/{id}/replay` (a quarantined body run through today's parsers).

use actix_web::http::header::{ContentType, HeaderMap, HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use mmo_actors::providers::{Endpoint, Reply};
use mmo_actors::store::bson_time;
use mmo_actors::{Evidence, Provider, RouteCallback, PROVIDERS};
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};

use super::webhooks::apply_decision;
use super::{require_admin, AppState};
use crate::auth::{Presented, SIGNATURE_HEADER};
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

/// One quarantined body, as the list shows it.
pub async fn rejected_one(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let id =
        ObjectId::parse_str(path.as_str()).map_err(|_| ApiError::NoSuch("rejected callback"))?;
    let item = read_api::rejected_one(&state.store, id)
        .await?
        .ok_or(ApiError::NoSuch("rejected callback"))?;
    Ok(HttpResponse::Ok().json(item))
}

/// Runs a quarantined body through today's parsers. On success it is stored as a callback (through the
/// journal, like any other) as received when it first arrived, with `replayed_from`, and the rejected
/// entry is marked replayed; on failure nothing changes and the reason is returned.
///
/// A body whose sender did not authenticate is replayed only if what it presented (its address, its
/// signature header, its tokens' digests) passes today's authentication: once an operator's new source
/// range or a corrected secret is configured, its refused callbacks go through; an administrator's token
/// alone never vouches for what a stranger sent. A body kept only in part cannot be replayed.
pub async fn replay(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&request, &state)?;
    let replayed = replay_rejected(&state, &path).await?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .json(replayed))
}

/// The replay itself (see [`replay`]), for the query API and the console alike.
pub(crate) async fn replay_rejected(state: &AppState, id: &str) -> Result<Replayed, ApiError> {
    let id = ObjectId::parse_str(id).map_err(|_| ApiError::NoSuch("rejected callback"))?;
    let rejected = state
        .store
        .rejected()
        .find_one(doc! {"_id": id})
        .await
        .map_err(|error| ApiError::QueryFailed(error.to_string()))?
        .ok_or(ApiError::NoSuch("rejected callback"))?;
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
    if rejected.get_bool("truncated").unwrap_or(false) {
        return Err(ApiError::Conflict {
            code: "NOT_REPLAYABLE",
            message: "Only the beginning of this body was kept: it cannot be replayed".into(),
        });
    }
    let signed = if rejected.get_bool("authenticated").unwrap_or(true) {
        None
    } else {
        authenticate_again(state, provider, &rejected, &raw)?
    };
    let parsed = match signed {
        Some(part) => provider.parse_signed(endpoint.callback_type, &raw, part),
        None => provider.parse(endpoint.callback_type, &raw),
    };
    let mut callback =
        parsed.map_err(|error| ApiError::ReplayFailed(format!("still not understood: {error}")))?;
    // A body the service parsed and journaled before (a poisoned journal entry) was pseudonymized then:
    // doing it again would turn a digest into a digest of a digest.
    let parsed_before = rejected.get_bool("parsed").unwrap_or(false);
    if let (Some(salt), false) = (&state.pseudonymization_salt, parsed_before) {
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
    // Stored as received when it first arrived: the day's reports count it on its own day.
    let received_at = rejected
        .get_datetime("received_at")
        .map(|at| at.to_chrono())
        .unwrap_or_else(|_| Utc::now());
    let mut message = RouteCallback::new(callback, received_at);
    message.replayed_from = Some(id);
    // One replay at a time, across instances: claimed in MongoDB first (a claim left by a replay that
    // died is taken over after a minute), so a double click or two instances never store it twice.
    let stale = bson_time(Utc::now() - chrono::Duration::minutes(1));
    let claimed = state
        .store
        .rejected()
        .find_one_and_update(
            doc! {"_id": id, "replayed": {"$ne": true}, "$or": [
                {"replaying_since": {"$exists": false}},
                {"replaying_since": {"$lt": stale}},
            ]},
            doc! {"$set": {"replaying_since": bson_time(Utc::now())}},
        )
        .await
        .map_err(|error| ApiError::QueryFailed(error.to_string()))?;
    if claimed.is_none() {
        return Err(ApiError::Conflict {
            code: "ALREADY_REPLAYED",
            message: "This body is being replayed, or was replayed already".into(),
        });
    }
    let sent = state
        .supervisor
        .send(message)
        .timeout(state.pipeline_timeout)
        .await;
    let failed = match sent {
        Ok(Ok(_)) => None,
        Ok(Err(error)) => Some(ApiError::from_pipeline(error, "replay")),
        Err(_) => Some(ApiError::Unavailable(mmo_actors::PipelineError::Timeout)),
    };
    if let Some(failed) = failed {
        // Not stored: the claim goes, so that the replay can be asked again.
        let _ = state
            .store
            .rejected()
            .update_one(doc! {"_id": id}, doc! {"$unset": {"replaying_since": ""}})
            .await;
        return Err(failed);
    }
    state
        .store
        .rejected()
        .update_one(
            doc! {"_id": id},
            doc! {"$unset": {"replaying_since": ""}, "$set": {
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
    Ok(replayed)
}

/// Checks a refused request again, from what its quarantined copy kept, under today's authentication
/// policy; answers the signed part the parser must read (as a live request's verification would).
fn authenticate_again(
    state: &AppState,
    provider: &dyn Provider,
    rejected: &Document,
    raw: &[u8],
) -> Result<Option<mmo_actors::providers::SignedPart>, ApiError> {
    let not_replayable = |message: String| ApiError::Conflict {
        code: "NOT_REPLAYABLE",
        message,
    };
    let evidence: Evidence = rejected
        .get_document("evidence")
        .ok()
        .and_then(|evidence| mongodb::bson::from_document(evidence.clone()).ok())
        .ok_or_else(|| {
            not_replayable(
                "The sender did not authenticate and what it presented was not kept (quarantined by an earlier version): it cannot be checked again".into(),
            )
        })?;
    let client = rejected
        .get_str("client")
        .ok()
        .and_then(|client| client.parse().ok())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let mut headers = HeaderMap::new();
    if let Some(signature) = evidence
        .signature
        .as_deref()
        .and_then(|value| HeaderValue::from_str(value).ok())
    {
        headers.insert(HeaderName::from_static(SIGNATURE_HEADER), signature);
    }
    let presented = Presented {
        headers: &headers,
        client,
        url_token: None,
        body: raw,
        evidence: Some(&evidence),
    };
    state
        .authenticator
        .verify(provider.slug(), &presented)
        .map(|verified| verified.signed)
        .map_err(|refusal| {
            not_replayable(format!(
                "The sender is still not authenticated under today's configuration: {}",
                refusal.reason()
            ))
        })
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
