//! `POST|PUT /v1/webhooks/<provider>/<endpoint>`: authenticate, parse, hand to the supervisor, and
//! acknowledge only once the callback is durably stored.
//!
//! A body that cannot be authenticated or understood is quarantined in `rejected_callbacks` first and then
//! answered with the documented 401/400, so nothing an operator sent is ever silently dropped. Every
//! verification runs over the raw bytes received.

use std::time::Duration;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::Utc;
use mmo_actors::providers::{AcceptanceRules, Reply};
use mmo_actors::supervisor::Quarantine;
use mmo_actors::{Callback, Provider, RecordOutcome, RejectedCallback, RouteCallback, Status};

use super::EndpointRoute;
use super::{loggable_path, OUTCOME_HEADER};
use crate::auth::{Presented, Refusal};
use crate::error::ApiError;
use crate::request_context::{CallbackSummary, ClientAddress, RequestId};
use crate::state::AppState;

/// How much of an unauthenticated or oversized body is kept in quarantine.
const QUARANTINED_PREFIX_BYTES: usize = 4096;

pub async fn receive_callback(
    request: HttpRequest,
    payload: web::Payload,
    route: web::Data<EndpointRoute>,
    state: web::Data<AppState>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let received_at = Utc::now();
    let url_token = url_token(&request);
    let client = client_address(&request, &state);
    let rejection = |reason: String, raw: &[u8]| {
        RejectedCallback::new(
            raw.to_vec(),
            loggable_path(request.path()),
            reason,
            request_id.0.clone(),
            received_at,
        )
        .for_endpoint(route.provider.name(), route.endpoint.callback_type.as_str())
        .from_client(client)
    };
    // Whether the sender identified itself (bearer token, URL token, source address): decides which
    // quarantine budget a refused body counts against.
    let identified = |body: &[u8]| {
        let presented = Presented {
            headers: request.headers(),
            client,
            url_token: url_token.as_deref(),
            body,
            evidence: None,
        };
        state
            .authenticator
            .identifies(route.provider.slug(), &presented)
    };

    let body = match read_body(payload, state.max_body_bytes, state.body_read_timeout).await {
        Ok(body) => body,
        Err(BodyError::Unreadable(error)) => {
            tracing::warn!(%error, "request body could not be read");
            return Err(ApiError::InvalidFormat);
        }
        Err(refused @ (BodyError::TooLarge { .. } | BodyError::TooSlow { .. })) => {
            // Kept for audit like any refused callback, but only its beginning: the rest was never read.
            let (reason, error, prefix) = match refused {
                BodyError::TooLarge { prefix } => (
                    format!(
                        "body larger than {} bytes (first {} kept)",
                        state.max_body_bytes,
                        prefix.len()
                    ),
                    ApiError::PayloadTooLarge {
                        limit: state.max_body_bytes,
                    },
                    prefix,
                ),
                BodyError::TooSlow { prefix } => (
                    format!(
                        "body not received within {} s (first {} bytes kept)",
                        state.body_read_timeout.as_secs(),
                        prefix.len()
                    ),
                    ApiError::RequestTimeout,
                    prefix,
                ),
                BodyError::Unreadable(_) => unreachable!("matched above"),
            };
            let rejected = rejection(reason, &prefix).truncated();
            state.keep_refused(rejected, identified(&[])).await;
            return Err(error);
        }
    };

    let presented = Presented {
        headers: request.headers(),
        client,
        url_token: url_token.as_deref(),
        body: &body,
        evidence: None,
    };
    let verified = match state
        .authenticator
        .verify(route.provider.slug(), &presented)
    {
        Ok(verified) => verified,
        Err(refusal) => {
            tracing::warn!(reason = refusal.reason(), %client, "callback refused: not authenticated");
            metrics::counter!("mmo_auth_refusals_total", "provider" => route.provider.name(), "reason" => refusal.kind())
                .increment(1);
            // Kept for audit (an attack or a misconfigured operator shows up here), with what it presented,
            // so that a replay can check it again once the cause is fixed (a corrected secret, a new source
            // range). A sender that passed the cheap proofs (its address, its URL token) but not the
            // signature is kept whole, like any identified sender; an anonymous one only by a bounded
            // prefix, within a budget of its own. The answer is 401 either way.
            let identified = state
                .authenticator
                .identifies(route.provider.slug(), &presented);
            let evidence = presented.evidence();
            let keep = if identified {
                body.len()
            } else {
                body.len().min(QUARANTINED_PREFIX_BYTES)
            };
            let mut reason = format!("unauthorized: {}", refusal.reason());
            if keep < body.len() {
                reason.push_str(&format!(
                    " (body truncated to {keep} of {} bytes)",
                    body.len()
                ));
            }
            let mut rejected = rejection(reason, &body[..keep])
                .with_evidence(evidence)
                .unauthenticated();
            if keep < body.len() {
                rejected = rejected.truncated();
            }
            state.keep_refused(rejected, identified).await;
            return Err(match refusal {
                Refusal::Unauthorized(_) => ApiError::Unauthorized,
                Refusal::InvalidSignature(_) => ApiError::InvalidSignature,
            });
        }
    };

    let callback_type = route.endpoint.callback_type;
    let parsed = match verified.signed {
        Some(part) => route.provider.parse_signed(callback_type, &body, part),
        None => route.provider.parse(callback_type, &body),
    };
    let mut callback = match parsed {
        Ok(callback) => callback,
        Err(parse_error) => {
            tracing::warn!(error = %parse_error, "callback quarantined: cannot be understood");
            metrics::counter!("mmo_callbacks_total", "provider" => route.provider.name(), "callback_type" => callback_type.as_str(), "outcome" => "quarantined")
                .increment(1);
            return match state
                .quarantine(rejection(format!("invalid format: {parse_error}"), &body))
                .await
            {
                Ok(()) => Err(ApiError::InvalidFormat),
                // Not even the raw body could be kept: ask the sender to retry rather than lose it.
                Err(error) => Err(ApiError::from_pipeline(error, &request_id.0)),
            };
        }
    };

    if let Some(salt) = &state.pseudonymization_salt {
        mmo_actors::privacy::pseudonymize(&mut callback, salt);
    }

    request.extensions_mut().insert(CallbackSummary {
        provider: callback.provider,
        callback_type: callback.callback_type.as_str(),
        key: callback.provider_transaction_id.clone(),
        outcome: None,
    });
    let ack = match route.endpoint.reply {
        Reply::AfterStoring(ack) => ack,
        Reply::Decision => {
            return Ok(decide_now(&state, route.provider, callback, received_at).await)
        }
    };
    let answer = state
        .supervisor
        .send(RouteCallback::new(callback, received_at))
        .timeout(state.pipeline_timeout)
        .await;
    match answer {
        Ok(Ok(outcome)) => {
            // Every callback acknowledged counts once in the console's chart, repeats included (an
            // operator sending again is traffic too); quarantined bodies do not.
            state
                .callback_minutes
                .record(route.provider.name(), received_at);
            let outcome = match outcome {
                // Journaled: durable, on its way to MongoDB.
                RecordOutcome::Journaled | RecordOutcome::Stored => "stored",
                other => other.as_str(),
            };
            if let Some(summary) = request.extensions_mut().get_mut::<CallbackSummary>() {
                summary.outcome = Some(outcome);
            }
            // What this instance knew when it acknowledged (`mmo-webhooks send` prints it): `repeat` and
            // `conflict` are certain; `stored` may still prove a repeat of what another instance stored.
            Ok(HttpResponse::Ok()
                .content_type(ContentType::json())
                .insert_header((OUTCOME_HEADER, outcome))
                .body(ack))
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "callback not stored");
            Err(ApiError::from_pipeline(error, &request_id.0))
        }
        Err(error) => {
            tracing::error!(%error, "supervisor did not answer");
            Err(ApiError::Unavailable(mmo_actors::PipelineError::Timeout))
        }
    }
}

/// Decides a question (M-Pesa C2B validation) from local rules, and records the decision on the callback:
/// `pending` when accepted (the payment may follow), `failed` with the reason otherwise.
pub(crate) fn apply_decision(
    provider: &dyn Provider,
    callback: &mut Callback,
    rules: &AcceptanceRules,
) -> mmo_actors::providers::Decision {
    let decision = provider.decide(callback, rules);
    callback.status = if decision.accepted {
        Status::Pending
    } else {
        Status::Failed
    };
    callback.reason = decision.reason;
    callback.result_code = Some(decision.code.to_owned());
    decision
}

/// Answers a question (M-Pesa C2B validation) from local rules at once, and stores the request with its
/// decision without waiting: the operator gives only seconds, and a validation moves no money — the
/// payment, if it happens, arrives as a confirmation that is stored before it is acknowledged. When
/// [`crate::state::BACKGROUND_TASKS`] stores are under way already, this one is waited for instead.
async fn decide_now(
    state: &web::Data<AppState>,
    provider: &'static dyn Provider,
    mut callback: Callback,
    received_at: chrono::DateTime<Utc>,
) -> HttpResponse {
    let decision = apply_decision(provider, &mut callback, &state.acceptance_rules);
    state.callback_minutes.record(provider.name(), received_at);
    let supervisor = state.supervisor.clone();
    let timeout = state.pipeline_timeout;
    let store = async move {
        let key = callback.provider_transaction_id.clone();
        match supervisor
            .send(RouteCallback::new(callback, received_at))
            .timeout(timeout)
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::error!(key, %error, "validation request and decision not stored")
            }
            Err(error) => {
                tracing::error!(key, %error, "validation request and decision not stored")
            }
        }
    };
    match std::sync::Arc::clone(&state.background).try_acquire_owned() {
        Ok(permit) => {
            actix_web::rt::spawn(async move {
                store.await;
                drop(permit);
            });
        }
        Err(_) => store.await,
    }
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(decision.body)
}

enum BodyError {
    Unreadable(String),
    /// Over the limit: reading stopped; the first bytes are kept for the quarantine.
    TooLarge {
        prefix: Vec<u8>,
    },
    /// Not received in time: the first bytes that did arrive are kept for the quarantine.
    TooSlow {
        prefix: Vec<u8>,
    },
}

/// Reads the body up to `limit` bytes within `deadline`. Beyond either, stops reading and returns the
/// beginning of what arrived.
async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    within: Duration,
) -> Result<web::Bytes, BodyError> {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + within;
    let mut body = web::BytesMut::new();
    loop {
        let chunk = match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(chunk)) => chunk.map_err(|error| BodyError::Unreadable(error.to_string()))?,
            Ok(None) => return Ok(body.freeze()),
            Err(_) => {
                body.truncate(QUARANTINED_PREFIX_BYTES);
                return Err(BodyError::TooSlow {
                    prefix: body.to_vec(),
                });
            }
        };
        if body.len() + chunk.len() > limit {
            body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]);
            body.truncate(QUARANTINED_PREFIX_BYTES);
            return Err(BodyError::TooLarge {
                prefix: body.to_vec(),
            });
        }
        body.extend_from_slice(&chunk);
    }
}

/// The URL token of a request: its last path segment after the endpoint, else its `token` query parameter.
fn url_token(request: &HttpRequest) -> Option<String> {
    let in_path = request.match_info().get("url_token").map(str::to_owned);
    in_path.or_else(|| {
        web::Query::<TokenQuery>::from_query(request.query_string())
            .ok()
            .and_then(|query| query.into_inner().token)
    })
}

/// The client address the rate-limit middleware resolved (through trusted proxies only).
fn client_address(request: &HttpRequest, state: &AppState) -> std::net::IpAddr {
    if let Some(ClientAddress(address)) = request.extensions().get::<ClientAddress>().copied() {
        return address;
    }
    let peer = request
        .peer_addr()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |peer| peer.ip());
    state.authenticator.client(peer, request.headers())
}

/// Whether to log now: at most one sampled line per second, whatever the rate of events.
fn log_sample() -> bool {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Utc::now().timestamp();
    LAST.fetch_max(now, Ordering::Relaxed) < now
}

/// The `token` query parameter, for operators that cannot add a path segment.
#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

impl AppState {
    /// Keeps a refused body within the right budget. The body of a sender that did not identify itself
    /// is written without the answer waiting for it, within the quarantine's own budget: past it, the
    /// request is counted and sampled in the logs but its body is not kept — never at the expense of
    /// callbacks.
    async fn keep_refused(&self, rejected: RejectedCallback, identified: bool) {
        if identified {
            if let Err(error) = self.quarantine(rejected).await {
                tracing::error!(%error, "refused request could not be quarantined");
            }
            return;
        }
        let supervisor = self.supervisor.clone();
        let timeout = self.pipeline_timeout;
        let Ok(permit) = std::sync::Arc::clone(&self.background).try_acquire_owned() else {
            // As many kept in the background as allowed already: not kept, as past the budget.
            metrics::counter!("mmo_unauthenticated_unkept_total").increment(1);
            return;
        };
        actix_web::rt::spawn(async move {
            let _permit = permit;
            let client = rejected.client;
            let kept = supervisor
                .send(Quarantine {
                    rejected: rejected.unauthenticated(),
                })
                .timeout(timeout)
                .await;
            if !matches!(kept, Ok(Ok(()))) {
                metrics::counter!("mmo_unauthenticated_unkept_total").increment(1);
                if log_sample() {
                    tracing::warn!(
                        ?client,
                        "unauthenticated request not kept: its quarantine budget is spent (sampled: one line per second)"
                    );
                }
            }
        });
    }

    async fn quarantine(
        &self,
        rejected: RejectedCallback,
    ) -> Result<(), mmo_actors::PipelineError> {
        match self
            .supervisor
            .send(Quarantine { rejected })
            .timeout(self.pipeline_timeout)
            .await
        {
            Ok(result) => result,
            Err(_) => Err(mmo_actors::PipelineError::Timeout),
        }
    }
}
