//! What the operator clients share: one HTTP client per thread, responses read whole, and cached tokens.

use mmo_actors::delivery::sealing::{load, store, SecretsKey};
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
    /// An answer as an operator would send it (tests of the interpretations).
    #[cfg(test)]
    pub fn from_text(status: u16, body: &str) -> Self {
        Self {
            status,
            json: serde_json::from_str(body).ok(),
            text: body.to_owned(),
        }
    }

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
///
/// With [`TokenCache::shared`], the token is also shared by every instance through MongoDB: Daraja
/// invalidates the previous token each time one is minted, so instances minting their own would keep
/// invalidating each other. One instance at a time may mint (a short claim in the same document); the
/// others wait for its token.
#[derive(Default)]
pub struct TokenCache {
    // Held across the fetch: concurrent questions wait for one token instead of minting several.
    token: Mutex<Option<(String, Instant)>>,
    shared: Option<SharedToken>,
}

/// Where instances share a token: one document of `operator_tokens`. The token is sealed there with
/// `delivery.secrets_key` when one is set (bound to the document's id), and found again for a refusal by
/// its SHA-256 (`token_digest`), so the plain token is never needed in a filter.
pub struct SharedToken {
    collection: mongodb::Collection<mongodb::bson::Document>,
    id: String,
    key: Option<SecretsKey>,
}

/// A token's SHA-256, hex: how a refused token's document is found without storing the token in clear.
fn digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// How long one instance may take to mint a token before another may try.
const MINT_CLAIM: Duration = Duration::from_secs(15);
/// A shared token with less life than this left is not handed out: a question could outlive it.
const SHARED_TOKEN_MIN_LIFE: Duration = Duration::from_secs(5);

impl TokenCache {
    /// A cache whose token is shared with other instances in `collection`, under `id`, sealed with
    /// `key` when there is one.
    pub fn shared(
        collection: mongodb::Collection<mongodb::bson::Document>,
        id: String,
        key: Option<SecretsKey>,
    ) -> Self {
        Self {
            token: Mutex::default(),
            shared: Some(SharedToken {
                collection,
                id,
                key,
            }),
        }
    }

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
        let (value, life) = match &self.shared {
            None => fetch().await?,
            Some(shared) => shared.get(fetch).await?,
        };
        *token = Some((
            value.clone(),
            Instant::now() + life.saturating_sub(margin(life)),
        ));
        Ok(value)
    }

    /// Forgets a token the operator refused (here, and for the other instances if it is the shared one).
    pub async fn reject(&self, refused: &str) {
        *self.token.lock().await = None;
        if let Some(shared) = &self.shared {
            let _ = shared
                .collection
                .update_one(
                    // By digest; by the token itself as versions before 0.4.0 stored it.
                    mongodb::bson::doc! {"_id": &shared.id, "$or": [
                        {"token_digest": digest(refused)},
                        {"token": refused},
                    ]},
                    mongodb::bson::doc! {"$unset": {"token": "", "token_digest": "", "expires_at": ""}},
                )
                .await;
        }
    }
}

/// A token is renewed when a tenth of its life (at least 5 s, at most half) is left, so no question
/// carries a dying token.
fn margin(life: Duration) -> Duration {
    (life / 10).max(Duration::from_secs(5)).min(life / 2)
}

impl SharedToken {
    async fn get<F, Fut>(&self, fetch: F) -> Result<(String, Duration), QueryError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Duration), QueryError>>,
    {
        use mongodb::bson::doc;
        let failed = |error: mongodb::error::Error| {
            QueryError::Failed(format!("shared token unavailable: {error}"))
        };
        for _ in 0..100 {
            let now = chrono::Utc::now();
            let stored = self
                .collection
                .find_one(doc! {"_id": &self.id})
                .await
                .map_err(failed)?;
            if let Some(stored) = &stored {
                let expires_at = stored
                    .get_datetime("expires_at")
                    .ok()
                    .map(|at| at.to_chrono());
                // A token sealed with a key this instance lacks (or another key) does not open: it is
                // minted again, as if none were stored.
                let token = stored
                    .get_str("token")
                    .ok()
                    .and_then(|token| load(self.key.as_ref(), &self.id, token));
                if let (Some(token), Some(expires_at)) = (token, expires_at) {
                    let left = (expires_at - now).to_std().unwrap_or_default();
                    if left > SHARED_TOKEN_MIN_LIFE {
                        return Ok((token, left));
                    }
                }
            }
            // Nobody holds a usable token: claim the right to mint one.
            let until = mongodb::bson::DateTime::from_chrono(now + MINT_CLAIM);
            let bson_now = mongodb::bson::DateTime::from_chrono(now);
            let usable_until = mongodb::bson::DateTime::from_chrono(now + SHARED_TOKEN_MIN_LIFE);
            let claim = self
                .collection
                .update_one(
                    // Nobody is minting, and there is still no usable token: another instance may have
                    // stored one since we looked.
                    doc! {"_id": &self.id, "$and": [
                        {"$or": [
                            {"minting_until": {"$exists": false}},
                            {"minting_until": {"$lte": bson_now}},
                        ]},
                        {"$or": [
                            {"token": {"$exists": false}},
                            {"expires_at": {"$lte": usable_until}},
                        ]},
                    ]},
                    doc! {"$set": {"minting_until": until}},
                )
                .upsert(true)
                .await;
            match claim {
                Ok(_) => {
                    let minted = fetch().await;
                    let (value, life) = match minted {
                        Ok(minted) => minted,
                        Err(error) => {
                            let _ = self
                                .collection
                                .update_one(
                                    doc! {"_id": &self.id},
                                    doc! {"$unset": {"minting_until": ""}},
                                )
                                .await;
                            return Err(error);
                        }
                    };
                    let expires_at =
                        mongodb::bson::DateTime::from_chrono(chrono::Utc::now() + life);
                    self.collection
                        .update_one(
                            doc! {"_id": &self.id},
                            doc! {
                                "$set": {
                                    "token": store(self.key.as_ref(), &self.id, &value),
                                    "token_digest": digest(&value),
                                    "expires_at": expires_at,
                                },
                                "$unset": {"minting_until": ""},
                            },
                        )
                        .await
                        .map_err(failed)?;
                    return Ok((value, life));
                }
                // Another instance is minting, or has just stored a token (its document made our upsert
                // collide): read again.
                Err(error) if is_duplicate_key(&error) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(failed(error)),
            }
        }
        Err(QueryError::Failed(
            "another instance is still minting the token".into(),
        ))
    }
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    mmo_actors::store::errors::is_duplicate_key(error)
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
        .unwrap_or(60)
        .min(MAX_TOKEN_LIFE_SECS);
    Ok((token, Duration::from_secs(life)))
}

/// The longest an operator's token is trusted, whatever its `expires_in` says. Real tokens live an hour
/// (Daraja, MTN) or minutes (Airtel); a day bounds a mistaken or hostile answer, which would otherwise
/// overflow the clock arithmetic of the token's expiry (a panic) or keep a refused token for ever.
const MAX_TOKEN_LIFE_SECS: u64 = 86_400;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_lives_what_the_operator_says_within_a_day() {
        let life = |expires_in: &str| {
            let body = format!(r#"{{"access_token": "t", "expires_in": {expires_in}}}"#);
            token_of(&Reply::from_text(200, &body), "Test").unwrap().1
        };
        assert_eq!(life("\"3599\""), Duration::from_secs(3599));
        assert_eq!(life("180"), Duration::from_secs(180));
        assert_eq!(life("0"), Duration::from_secs(60), "no life: a minute");
        // Absurd or hostile lifetimes are cut to a day: expiry arithmetic never overflows.
        for huge in ["18446744073709551615", "\"99999999999999\""] {
            let life = life(huge);
            assert_eq!(life, Duration::from_secs(MAX_TOKEN_LIFE_SECS));
            let _ = Instant::now() + life;
            let _ = chrono::Utc::now() + life;
        }
    }
}
