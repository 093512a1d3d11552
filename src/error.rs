//! The HTTP error type: every failure maps to a status and the documented JSON body.

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use mmo_actors::PipelineError;
use serde_json::json;

/// Seconds a sender is asked to wait after a 503.
const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid authentication")]
    Unauthorized,
    /// An admin route while `auth.admin_tokens` is empty: no token could ever pass.
    #[error("no admin token is configured")]
    NoAdminToken,
    #[error("invalid signature")]
    InvalidSignature,
    #[error("rate limit exceeded")]
    TooManyRequests { retry_after: u64 },
    #[error("callback could not be understood")]
    InvalidFormat,
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("body not received in time")]
    RequestTimeout,
    #[error("callback not stored: {0}")]
    Unavailable(PipelineError),
    #[error("unexpected failure: {message}")]
    Internal { request_id: String, message: String },
    #[error("no such endpoint")]
    NotFound,
    #[error("no such {0}")]
    NoSuch(&'static str),
    #[error("invalid parameter `{parameter}`: {problem}")]
    InvalidParameter { parameter: String, problem: String },
    #[error("query failed: {0}")]
    QueryFailed(String),
    /// The request is sound but the resource's state forbids it (a replay of a replayed body).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A replayed body still cannot be understood.
    #[error("{0}")]
    ReplayFailed(String),
}

impl ApiError {
    /// Maps a pipeline failure: anything transient asks the sender to retry; nothing is acknowledged.
    pub fn from_pipeline(error: PipelineError, request_id: &str) -> Self {
        match error {
            PipelineError::StorageRejected(_) | PipelineError::UnknownProvider(_) => {
                Self::Internal {
                    request_id: request_id.to_owned(),
                    message: error.to_string(),
                }
            }
            transient => Self::Unavailable(transient),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::NoAdminToken | Self::InvalidSignature => {
                StatusCode::UNAUTHORIZED
            }
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::InvalidFormat => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound | Self::NoSuch(_) => StatusCode::NOT_FOUND,
            Self::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            Self::QueryFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::ReplayFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            Self::Unauthorized => json!({
                "error": "Unauthorized",
                "message": "Invalid or missing authentication token",
                "code": "AUTH_REQUIRED",
            }),
            Self::NoAdminToken => json!({
                "error": "Unauthorized",
                "message": "No admin token is configured: set auth.admin_tokens (MMO__AUTH__ADMIN_TOKENS)",
                "code": "AUTH_REQUIRED",
            }),
            Self::InvalidSignature => json!({
                "error": "Unauthorized",
                "message": "Invalid signature",
                "code": "INVALID_SIGNATURE",
            }),
            Self::TooManyRequests { retry_after } => json!({
                "error": "Too Many Requests",
                "message": "Rate limit exceeded",
                "code": "RATE_LIMIT_EXCEEDED",
                "retry_after": retry_after,
            }),
            Self::InvalidFormat => json!({
                "error": "Bad Request",
                "message": "Invalid callback data format",
                "code": "INVALID_FORMAT",
            }),
            Self::PayloadTooLarge { limit } => json!({
                "error": "Payload Too Large",
                "message": format!("Request body exceeds {limit} bytes"),
                "code": "PAYLOAD_TOO_LARGE",
            }),
            Self::RequestTimeout => json!({
                "error": "Request Timeout",
                "message": "Request body not received in time",
                "code": "REQUEST_TIMEOUT",
            }),
            Self::Unavailable(cause) => json!({
                "error": "Service Unavailable",
                "message": match cause {
                    PipelineError::Busy => "Service is at capacity; retry later",
                    _ => "Callback could not be stored; retry later",
                },
                "code": match cause {
                    PipelineError::Busy => "OVERLOADED",
                    _ => "STORAGE_UNAVAILABLE",
                },
                "retry_after": RETRY_AFTER_SECS,
            }),
            Self::Internal { request_id, .. } => json!({
                "error": "Internal Server Error",
                "message": "An unexpected error occurred",
                "code": "INTERNAL_ERROR",
                "request_id": request_id,
            }),
            Self::NotFound => json!({
                "error": "Not Found",
                "message": "No such endpoint",
                "code": "NOT_FOUND",
            }),
            Self::NoSuch(what) => json!({
                "error": "Not Found",
                "message": format!("No such {what}"),
                "code": "NOT_FOUND",
            }),
            Self::InvalidParameter { parameter, problem } => json!({
                "error": "Bad Request",
                "message": format!("Invalid parameter `{parameter}`: {problem}"),
                "code": "INVALID_PARAMETER",
            }),
            Self::QueryFailed(_) => json!({
                "error": "Service Unavailable",
                "message": "MongoDB could not answer; retry later",
                "code": "STORAGE_UNAVAILABLE",
                "retry_after": RETRY_AFTER_SECS,
            }),
            Self::Conflict { code, message } => json!({
                "error": "Conflict",
                "message": message,
                "code": code,
            }),
            Self::ReplayFailed(reason) => json!({
                "error": "Unprocessable Entity",
                "message": reason,
                "code": "REPLAY_FAILED",
            }),
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unavailable(_) | Self::QueryFailed(_) => {
                response.insert_header((RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS)));
            }
            Self::TooManyRequests { retry_after } => {
                response.insert_header((RETRY_AFTER, HeaderValue::from(*retry_after)));
            }
            _ => {}
        }
        response.json(body)
    }
}
