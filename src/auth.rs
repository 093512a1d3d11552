//! Bearer-token authentication, in constant time.
//!
//! Tokens are not compared directly: each configured token is kept as HMAC-SHA256 under a key drawn at
//! start-up, and a presented token is hashed the same way and checked with `verify_slice` (constant time)
//! against every configured digest. Neither the position of the first differing byte nor the token's
//! length shows in the timing, and the tokens themselves are not kept in memory after start-up.

use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub struct BearerTokens {
    key: [u8; 32],
    digests: Vec<Vec<u8>>,
}

impl BearerTokens {
    pub fn new(tokens: &[SecretString]) -> Self {
        let key: [u8; 32] = rand::random();
        let digests = tokens
            .iter()
            .map(|token| {
                keyed(&key, token.expose_secret().as_bytes())
                    .finalize()
                    .into_bytes()
                    .to_vec()
            })
            .collect();
        Self { key, digests }
    }

    /// Whether the request carries `Authorization: Bearer <one of the tokens>`.
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
        else {
            return false;
        };
        let presented = keyed(&self.key, token.as_bytes());
        // Check every digest, so the time taken does not reveal which token (if any) matched.
        self.digests.iter().fold(false, |found, digest| {
            presented.clone().verify_slice(digest).is_ok() | found
        })
    }
}

fn keyed(key: &[u8; 32], message: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac
}

/// The token of an `Authorization` value, with the scheme matched case-insensitively (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn tokens() -> BearerTokens {
        BearerTokens::new(&[
            SecretString::from("current-token-0123456789"),
            SecretString::from("next-token-9876543210"),
        ])
    }

    #[test]
    fn accepts_every_configured_token() {
        assert!(tokens().authorizes(&headers("Bearer current-token-0123456789")));
        assert!(tokens().authorizes(&headers("Bearer next-token-9876543210")));
        assert!(tokens().authorizes(&headers("bearer  next-token-9876543210 ")));
    }

    #[test]
    fn refuses_wrong_missing_or_malformed_tokens() {
        assert!(!tokens().authorizes(&headers("Bearer current-token-012345678")));
        assert!(!tokens().authorizes(&headers("Bearer current-token-01234567890")));
        assert!(!tokens().authorizes(&headers("Basic current-token-0123456789")));
        assert!(!tokens().authorizes(&headers("Bearer ")));
        assert!(!tokens().authorizes(&headers("current-token-0123456789")));
        assert!(!tokens().authorizes(&HeaderMap::new()));
    }
}
