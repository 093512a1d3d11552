//! Per-request context, as two middlewares:
//! - [`request_context`]: the request id (the caller's `X-Request-ID` when usable, else a new one), echoed
//!   on every response, and one log line per request (route pattern, never the path: a URL token stays
//!   out of the logs; status, latency, and the callback's provider, type, key and outcome);
//! - [`rate_limit`]: resolves the client (bearer identity, else address through trusted proxies), counts
//!   the request, sets `X-RateLimit-*` on every response and answers 429 beyond the limit.

use std::future::{ready, Ready};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, FromRequest, HttpMessage, HttpRequest, ResponseError};
use tracing::Instrument;

use crate::error::ApiError;
use crate::rate_limit::{Bucket, Client};
use crate::state::AppState;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id that ties a request's response, logs and stored documents together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The caller's id if it is short, printable ASCII; otherwise a fresh one. A caller-chosen id is
    /// echoed into headers and logs, so it must not be able to inject anything.
    fn from_request(request: &ServiceRequest) -> Self {
        let given = request
            .headers()
            .get(X_REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|id| {
                !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
            });
        Self(given.map_or_else(
            || format!("req_{}", uuid::Uuid::new_v4().simple()),
            str::to_owned,
        ))
    }
}

impl FromRequest for RequestId {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let id = request.extensions().get::<RequestId>().cloned();
        ready(Ok(id.unwrap_or_else(|| {
            Self(format!("req_{}", uuid::Uuid::new_v4().simple()))
        })))
    }
}

/// The client's address, resolved once per request through the trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// What a webhook handler learned about the callback it handled, for the request's log line.
#[derive(Debug, Clone)]
pub struct CallbackSummary {
    pub provider: &'static str,
    pub callback_type: &'static str,
    pub key: String,
    /// `stored`, `repeat`, `conflict`, `quarantined`, or `None` when not stored.
    pub outcome: Option<&'static str>,
}

/// Middleware: assigns the request id, writes one log line per request (and its metrics), sets
/// `X-Request-ID`. Lines logged while handling the request carry the request id through its span.
pub async fn request_context(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = RequestId::from_request(&request);
    request.extensions_mut().insert(request_id.clone());
    let method = request.method().clone();
    let span = tracing::info_span!("request", request_id = %request_id.0);
    let started = Instant::now();
    let mut response = next.call(request).instrument(span.clone()).await?;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    // The route's pattern, never the path itself: it may carry a URL token. The query string is never
    // logged either.
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    metrics::counter!("mmo_http_requests_total", "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("mmo_http_request_duration_seconds", "route" => route.clone())
        .record(latency.as_secs_f64());
    let summary = response
        .request()
        .extensions()
        .get::<CallbackSummary>()
        .cloned();
    span.in_scope(|| match summary {
        Some(callback) => tracing::info!(
            %method,
            route,
            status,
            latency_us = latency.as_micros() as u64,
            provider = callback.provider,
            callback_type = callback.callback_type,
            key = callback.key,
            outcome = callback.outcome,
            "request"
        ),
        None => tracing::info!(
            %method,
            route,
            status,
            latency_us = latency.as_micros() as u64,
            "request"
        ),
    });
    if let Ok(value) = HeaderValue::from_str(&request_id.0) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    Ok(response)
}

/// Middleware: rate limits per client, with `X-RateLimit-Limit`, `-Remaining` and `-Reset` on every response.
pub async fn rate_limit(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let probe = matches!(request.path(), "/livez" | "/readyz");
    let Some(state) = request
        .app_data::<web::Data<AppState>>()
        .cloned()
        .filter(|_| !probe)
    else {
        // Probes are polled by load balancers and must never be throttled.
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let peer = request
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.ip());
    let address = state.authenticator.client(peer, request.headers());
    request.extensions_mut().insert(ClientAddress(address));

    let client = state
        .authenticator
        .bearer_identity(request.headers())
        .map_or(Client::Address(address), Client::Identity);
    let bucket = if request.path().ends_with("/health") {
        Bucket::Health
    } else if matches!(client, Client::Address(_))
        && state.authenticator.is_provider_source(address)
    {
        Bucket::ProviderSources
    } else {
        Bucket::Webhooks
    };
    let decision = state.rate_limits.check(bucket, &client);

    let mut response = match decision.retry_after {
        Some(retry_after) => {
            metrics::counter!("mmo_rate_limited_total", "scope" => bucket.as_str()).increment(1);
            tracing::warn!(?bucket, client = ?client, retry_after, "rate limit exceeded");
            let refusal = ApiError::TooManyRequests { retry_after }.error_response();
            request.into_response(refusal)
        }
        None => next.call(request).await?.map_into_boxed_body(),
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", u64::from(decision.limit)),
        ("x-ratelimit-remaining", u64::from(decision.remaining)),
        ("x-ratelimit-reset", decision.reset),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
    Ok(response)
}
