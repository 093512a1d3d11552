//! Secret comparison in constant time.
//!
//! Configured secrets (bearer tokens, URL tokens) are not compared directly: each is kept as
//! HMAC-SHA256 under a key drawn at start-up, and a presented value is hashed the same way and checked with
//! `verify_slice` (constant time) against every configured digest. Neither the position of the first
//! differing byte nor the secret's length shows in the timing, and the secrets themselves are not kept.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub struct SecretSet {
    key: [u8; 32],
    digests: Vec<Vec<u8>>,
}

impl SecretSet {
    pub fn new(secrets: &[SecretString]) -> Self {
        let key: [u8; 32] = rand::random();
        let digests = secrets
            .iter()
            .map(|secret| {
                keyed(&key, secret.expose_secret().as_bytes())
                    .finalize()
                    .into_bytes()
                    .to_vec()
            })
            .collect();
        Self { key, digests }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The index of the configured secret equal to `presented`, if any. Every digest is checked, so the
    /// time taken does not reveal which one matched.
    pub fn position(&self, presented: &str) -> Option<usize> {
        let presented = keyed(&self.key, presented.as_bytes());
        self.digests
            .iter()
            .enumerate()
            .fold(None, |found, (index, digest)| {
                let matches = presented.clone().verify_slice(digest).is_ok();
                if matches {
                    Some(index)
                } else {
                    found
                }
            })
    }

    pub fn contains(&self, presented: &str) -> bool {
        self.position(presented).is_some()
    }
}

fn keyed(key: &[u8; 32], message: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac
}

/// The token of an `Authorization` value, with the scheme matched case-insensitively (RFC 7235).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> SecretSet {
        SecretSet::new(&[
            SecretString::from("current-token-0123456789"),
            SecretString::from("next-token-9876543210"),
        ])
    }

    #[test]
    fn finds_every_configured_secret() {
        assert_eq!(tokens().position("current-token-0123456789"), Some(0));
        assert_eq!(tokens().position("next-token-9876543210"), Some(1));
    }

    #[test]
    fn refuses_near_misses() {
        for wrong in [
            "current-token-012345678",
            "current-token-01234567890",
            "",
            "next-token",
        ] {
            assert!(!tokens().contains(wrong), "{wrong}");
        }
        assert!(!SecretSet::new(&[]).contains("anything"));
    }

    #[test]
    fn reads_bearer_values() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
