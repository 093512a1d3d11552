//! Per-request context, as two middlewares:
//! - [`request_context`]: the request id (the caller's `X-Request-ID` when usable, else a new one), echoed
//!   on every response, and one tracing span and access-log line per request — with any URL token
//!   redacted from the logged path;
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
use crate::routes::{loggable_path, AppState};

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

/// Middleware: assigns the request id, opens the request's span, logs the outcome, sets `X-Request-ID`.
pub async fn request_context(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = RequestId::from_request(&request);
    request.extensions_mut().insert(request_id.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id.0,
        method = %request.method(),
        // Never the raw path: it may carry a URL token. The query string is never logged.
        path = %loggable_path(request.path()),
    );
    let started = Instant::now();
    let mut response = next.call(request).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request finished"
        );
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
