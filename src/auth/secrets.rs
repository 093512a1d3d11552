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
    /// The same, of each secret's SHA-256: what a quarantined request's evidence is compared with.
    sha256_digests: Vec<Vec<u8>>,
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
        let sha256_digests = secrets
            .iter()
            .map(|secret| {
                keyed(&key, &sha256(secret.expose_secret()))
                    .finalize()
                    .into_bytes()
                    .to_vec()
            })
            .collect();
        Self {
            key,
            digests,
            sha256_digests,
        }
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

    /// Whether a configured secret has this SHA-256 (hex): a quarantined request's token, checked again
    /// without the token itself. Every digest is checked, in constant time.
    pub fn contains_sha256(&self, presented_hex: &str) -> bool {
        let Ok(presented) = hex::decode(presented_hex) else {
            return false;
        };
        let presented = keyed(&self.key, &presented);
        self.sha256_digests.iter().fold(false, |found, digest| {
            presented.clone().verify_slice(digest).is_ok() | found
        })
    }
}

/// The SHA-256 of a presented token, as kept with a quarantined request (hex).
pub fn sha256_hex(token: &str) -> String {
    hex::encode(sha256(token))
}

fn sha256(token: &str) -> [u8; 32] {
    use sha2::Digest;
    Sha256::digest(token.as_bytes()).into()
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
