//! The sending side of delivery: the sender actors (a pool sized by `delivery.pool_size`), which sign
//! each attempt and post it through a [`Transport`] — the service's HTTP client, or a fake in tests.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;

use super::signature::{self, SigningKeys};

/// Bytes of an endpoint's answer kept with an attempt.
pub(super) const RESPONSE_KEPT: usize = 1024;

/// One HTTP request to an endpoint.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Arc<str>,
    pub timeout: Duration,
}

/// What an endpoint answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// The wait `Retry-After` asked for, when it said one (either form, see [`super::verdict::retry_after`]).
    pub retry_after: Option<Duration>,
    /// The first bytes of the answer's body.
    pub body: String,
}

/// How events reach endpoints: the service's HTTP client, or a fake in tests.
pub trait Transport: Send + Sync + 'static {
    /// Sends one request. Runs on a sender actor's thread (HTTP clients need not be `Send`). An `Err` is
    /// a request that got no answer (refused address, connection error, time-out).
    fn post(&self, request: Request) -> LocalBoxFuture<'static, Result<Response, String>>;
}

/// Sends one event to one endpoint, signed for that attempt.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Attempted")]
pub struct Attempt {
    pub event_id: String,
    pub url: String,
    pub keys: Arc<SigningKeys>,
    pub payload: Arc<str>,
    pub timeout: Duration,
}

/// What an attempt got.
#[derive(Debug, Clone)]
pub struct Attempted {
    pub at: DateTime<Utc>,
    pub duration: Duration,
    pub outcome: Result<Response, String>,
}

/// A member of the sender pool: signs and posts.
pub struct Sender {
    transport: Arc<dyn Transport>,
}

impl Sender {
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self { transport }
    }
}

impl Actor for Sender {
    type Context = Context<Self>;
}

impl Handler<Attempt> for Sender {
    type Result = ResponseFuture<Attempted>;

    fn handle(&mut self, attempt: Attempt, _: &mut Context<Self>) -> Self::Result {
        let at = Utc::now();
        let timestamp = at.timestamp();
        let signature = signature::header(
            &attempt.keys,
            &attempt.event_id,
            timestamp,
            attempt.payload.as_bytes(),
        );
        let request = Request {
            url: attempt.url,
            headers: vec![
                ("content-type", "application/json".to_owned()),
                ("webhook-id", attempt.event_id),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signature),
                ("user-agent", "mmo-webhooks".to_owned()),
            ],
            body: attempt.payload,
            timeout: attempt.timeout,
        };
        let sending = self.transport.post(request);
        let started = std::time::Instant::now();
        Box::pin(async move {
            let outcome = sending.await;
            Attempted {
                at,
                duration: started.elapsed(),
                outcome,
            }
        })
    }
}

/// At most `limit` bytes of `text`, cut at a character boundary.
pub fn truncate(text: &str, limit: usize) -> String {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_at_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }
}
