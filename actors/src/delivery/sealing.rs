//! Endpoint signing secrets at rest: with `delivery.secrets_key` set, each stored secret is sealed with
//! ChaCha20-Poly1305 (RustCrypto), bound to its endpoint's id as associated data, so a sealed secret copied
//! to another endpoint's document does not open. Without a key, secrets are stored as they are.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

/// What marks a sealed secret in MongoDB.
const SEALED: &str = "sealed:v1:";

/// The key that seals secrets: 32 bytes.
#[derive(Clone)]
pub struct SecretsKey(ChaCha20Poly1305);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(<redacted>)")
    }
}

impl SecretsKey {
    /// From base64 of 32 bytes (`openssl rand -base64 32`).
    pub fn from_base64(text: &str) -> Option<Self> {
        let bytes = STANDARD.decode(text.trim()).ok()?;
        (bytes.len() == 32).then(|| Self(ChaCha20Poly1305::new(Key::from_slice(&bytes))))
    }

    /// Seals `secret` for `endpoint`.
    pub fn seal(&self, endpoint: &str, secret: &str) -> String {
        let mut nonce = [0_u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: endpoint.as_bytes(),
                },
            )
            .expect("ChaCha20-Poly1305 seals any length this service stores");
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{SEALED}{}", STANDARD.encode(bytes))
    }

    fn open(&self, endpoint: &str, sealed: &str) -> Option<String> {
        let bytes = STANDARD.decode(sealed).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(12);
        let opened = self
            .0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: endpoint.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(opened).ok()
    }
}

/// Seals `secret` when a key is configured; otherwise stores it as it is.
pub fn store(key: Option<&SecretsKey>, endpoint: &str, secret: &str) -> String {
    match key {
        Some(key) => key.seal(endpoint, secret),
        None => secret.to_owned(),
    }
}

/// Whether a stored secret is sealed (stored secrets written before a key was configured are not).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED)
}

/// The secret as stored, opened: `None` when it is sealed and the key is missing or wrong.
pub fn load(key: Option<&SecretsKey>, endpoint: &str, stored: &str) -> Option<String> {
    match stored.strip_prefix(SEALED) {
        Some(sealed) => key?.open(endpoint, sealed),
        None => Some(stored.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_endpoint() {
        let key = SecretsKey::from_base64(&STANDARD.encode([7_u8; 32])).unwrap();
        let other = SecretsKey::from_base64(&STANDARD.encode([8_u8; 32])).unwrap();
        let stored = store(Some(&key), "ep_1", "whsec_abc");
        assert!(is_sealed(&stored) && !stored.contains("whsec_abc"));
        assert!(!is_sealed("whsec_abc"));
        assert_ne!(
            stored,
            store(Some(&key), "ep_1", "whsec_abc"),
            "a fresh nonce each time"
        );
        assert_eq!(
            load(Some(&key), "ep_1", &stored).as_deref(),
            Some("whsec_abc")
        );
        assert_eq!(load(Some(&key), "ep_2", &stored), None);
        assert_eq!(load(Some(&other), "ep_1", &stored), None);
        assert_eq!(load(None, "ep_1", &stored), None);
        // Stored before a key was configured: read as it is.
        assert_eq!(
            load(Some(&key), "ep_1", "whsec_abc").as_deref(),
            Some("whsec_abc")
        );
        assert!(SecretsKey::from_base64("c2hvcnQ=").is_none());
        assert_eq!(format!("{key:?}"), "SecretsKey(<redacted>)");
    }
}
