//! What the operator clients share: one HTTP client per thread, responses read whole, and cached tokens.

use std::time::Duration;

use mmo_actors::reconciler::QueryError;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Largest response body read from an operator.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

thread_local! {
    // awc clients are not `Send`: one per thread, reused so that connections (and TLS sessions) are kept.
    static CLIENT: awc::Client = awc::Client::builder()
        .disable_timeout()
        .finish();
}

/// The per-thread HTTP client.
pub fn client() -> awc::Client {
    CLIENT.with(Clone::clone)
}

/// An operator's answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// The body as JSON, when it is JSON.
    pub json: Option<Value>,
    pub text: String,
}

impl Reply {
    /// The raw response, as kept in a `status_query` callback's payload.
    pub fn payload(&self) -> Value {
        serde_json::json!({
            "http_status": self.status,
            "response": self.json.clone().unwrap_or_else(|| Value::String(self.text.clone())),
        })
    }

    /// A field of the JSON body as text (strings as they are, numbers in their exact text).
    pub fn text_of(&self, pointer: &str) -> Option<String> {
        mmo_actors::providers::json::text(self.json.as_ref()?.pointer(pointer))
    }
}

/// Sends a request and reads the whole answer within `timeout`.
pub async fn send(
    request: awc::ClientRequest,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Reply, QueryError> {
    let request = request.timeout(timeout);
    let sent = match body {
        Some(body) => request.send_json(body).await,
        None => request.send().await,
    };
    let mut response = sent.map_err(|error| QueryError::Failed(format!("no answer: {error}")))?;
    let bytes = response
        .body()
        .limit(MAX_RESPONSE_BYTES)
        .await
        .map_err(|error| QueryError::Failed(format!("unreadable answer: {error}")))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(Reply {
        status: response.status().as_u16(),
        json: serde_json::from_slice(&bytes).ok(),
        text,
    })
}

/// A bearer token shared by every question to one API, fetched once and refreshed before it expires.
#[derive(Default)]
pub struct TokenCache {
    // Held across the fetch: concurrent questions wait for one token instead of minting several (Daraja
    // invalidates the previous token at each mint).
    token: Mutex<Option<(String, Instant)>>,
}

impl TokenCache {
    /// The cached token, or a fresh one from `fetch` (which returns the token and its life).
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<String, QueryError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Duration), QueryError>>,
    {
        let mut token = self.token.lock().await;
        if let Some((value, renew_at)) = token.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(value.clone());
            }
        }
        let (value, life) = fetch().await?;
        // Renewed when a tenth of its life (at least 5 s) is left, so no question carries a dying token.
        let margin = (life / 10).max(Duration::from_secs(5)).min(life / 2);
        *token = Some((value.clone(), Instant::now() + life - margin));
        Ok(value)
    }

    /// Forgets a token the operator refused.
    pub async fn forget(&self) {
        *self.token.lock().await = None;
    }
}

/// Reads a token answer: `access_token` and `expires_in` as a number or a string (Daraja and Airtel send
/// `"3599"` / `"180"`, MTN `3600`).
pub fn token_of(reply: &Reply, operator: &str) -> Result<(String, Duration), QueryError> {
    if reply.status != 200 {
        return Err(QueryError::Failed(format!(
            "{operator} refused the token request: HTTP {} {}",
            reply.status,
            error_summary(reply)
        )));
    }
    let token = reply
        .text_of("/access_token")
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            QueryError::Failed(format!("{operator} token answer without access_token"))
        })?;
    let life = reply
        .text_of("/expires_in")
        .and_then(|text| text.trim().parse::<u64>().ok())
        .filter(|secs| *secs > 0)
        .unwrap_or(60);
    Ok((token, Duration::from_secs(life)))
}

/// A short description of an error answer for logs and notes (never the request's secrets).
pub fn error_summary(reply: &Reply) -> String {
    let mut summary: String = reply.text.chars().take(300).collect();
    if reply.text.len() > summary.len() {
        summary.push('…');
    }
    summary
}

/// HTTP Basic credentials.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
