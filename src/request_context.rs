//! Per-request context: the request id (the caller's `X-Request-ID` when usable, else a new one), echoed on
//! every response, and one tracing span and access-log line per request.

use std::future::{ready, Ready};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest};
use tracing::Instrument;

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
        path = %request.path(),
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
