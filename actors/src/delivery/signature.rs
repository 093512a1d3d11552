//! Standard Webhooks signatures: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`, keyed by the
//! secret's bytes (`whsec_` and base64 of 24–64 random bytes). Several secrets (a rotation's overlap) sign
//! side by side, space-separated.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a signing secret's text.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a receiver lets a timestamp stray from its clock, as the spec's reference libraries do.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// An endpoint's signing keys (several during a rotation). Never printed: `Debug` shows only how many.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SigningKeys(pub Vec<Vec<u8>>);

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeys(<{} redacted>)", self.0.len())
    }
}

impl std::ops::Deref for SigningKeys {
    type Target = [Vec<u8>];

    fn deref(&self) -> &[Vec<u8>] {
        &self.0
    }
}

/// The key bytes of a secret's text (`whsec_` optional), or `None` when it is not base64.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD.decode(encoded).ok().filter(|key| !key.is_empty())
}

/// A new secret: `whsec_` and base64 of 32 bytes from `random`.
pub fn new_secret(random: [u8; 32]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(random))
}

/// One signature: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per key, space-separated.
pub fn header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| sign(key, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a delivery does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("timestamp is not a number")]
    BadTimestamp,
    #[error("timestamp is more than five minutes away from now")]
    Stale,
    #[error("no signature matches")]
    NoMatch,
}

/// Verifies a delivery as a receiver does: the timestamp within [`TOLERANCE_SECS`] of `now`, and one of
/// the header's `v1` signatures matching (compared in constant time by the MAC).
pub fn verify(
    key: &[u8],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let at: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now - at).abs() > TOLERANCE_SECS {
        return Err(VerifyError::Stale);
    }
    let matches = signatures.split(' ').any(|signature| {
        let Some(encoded) = signature.strip_prefix("v1,") else {
            return false;
        };
        let Ok(expected) = STANDARD.decode(encoded) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    });
    if matches {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector the delivery issue quotes from the Standard Webhooks specification.
    #[test]
    fn signs_the_specifications_test_vector() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("base64");
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(
            verify(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &format!("v1a,whatever {signature}"),
                body,
                1_614_265_330 + 10,
            ),
            Ok(())
        );
    }

    #[test]
    fn signing_keys_never_print() {
        let keys = SigningKeys(vec![b"super-secret-key".to_vec()]);
        assert_eq!(format!("{keys:?}"), "SigningKeys(<1 redacted>)");
    }

    /// The reference Rust library's own `test_sign` vector.
    #[test]
    fn signs_the_reference_librarys_vector() {
        let key = secret_key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").expect("base64");
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            sign(&key, "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn refuses_tampering_stale_timestamps_and_other_keys() {
        let key = secret_key(&new_secret([7; 32])).expect("base64");
        let other = secret_key(&new_secret([8; 32])).expect("base64");
        let signature = header(std::slice::from_ref(&key), "evt_1", 1_000, b"{}");
        assert_eq!(
            verify(&key, "evt_1", "1000", &signature, b"{}", 1_000),
            Ok(())
        );
        assert_eq!(
            verify(&key, "evt_1", "1000", &signature, b"{ }", 1_000),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&other, "evt_1", "1000", &signature, b"{}", 1_000),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&key, "evt_1", "1000", &signature, b"{}", 1_000 + 301),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(&key, "evt_1", "soon", &signature, b"{}", 1_000),
            Err(VerifyError::BadTimestamp)
        );
        // Two secrets during a rotation: each verifies on its own.
        let both = header(&[key.clone(), other.clone()], "evt_1", 1_000, b"{}");
        assert_eq!(both.split(' ').count(), 2);
        assert_eq!(verify(&key, "evt_1", "1000", &both, b"{}", 1_000), Ok(()));
        assert_eq!(verify(&other, "evt_1", "1000", &both, b"{}", 1_000), Ok(()));
    }
}
