//! Body signatures, checked in constant time against every configured secret so that keys can rotate.
//!
//! - `X-MTN-Signature`: hex or base64 of HMAC-SHA256(secret, body), over the raw bytes received — the API
//!   document's convention for a signing gateway in front of MTN (MTN itself signs nothing).
//! - Airtel's body `hash`: base64(HMAC-SHA256(key, X)). Which bytes X are is not pinned down publicly, so
//!   every form implementers use is tried (see [`AirtelHashForm`]): the `transaction` object's raw bytes
//!   as received, and two re-serializations (the body without `hash`; `{"transaction": …}`), compact, in
//!   the received field order. Two of the forms sign `transaction` alone, and then nothing beside it is
//!   vouched for ([`AirtelHashForm::signed_part`]).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use mmo_actors::providers::SignedPart;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a signature check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// No signature was presented.
    Absent,
    /// A signature was presented but no secret is configured to check it.
    NotConfigured,
    Valid,
    Invalid,
}

/// `X-MTN-Signature` over the raw body, hex or base64.
pub fn check_header_signature(
    signature: Option<&str>,
    body: &[u8],
    secrets: &[Vec<u8>],
) -> SignatureCheck {
    let Some(signature) = signature.map(str::trim) else {
        return SignatureCheck::Absent;
    };
    if secrets.is_empty() {
        return SignatureCheck::NotConfigured;
    }
    let Some(expected) = decode_signature(signature) else {
        return SignatureCheck::Invalid;
    };
    if any_secret_signs(secrets, body, &expected) {
        SignatureCheck::Valid
    } else {
        SignatureCheck::Invalid
    }
}

fn decode_signature(signature: &str) -> Option<Vec<u8>> {
    let signature = signature.strip_prefix("sha256=").unwrap_or(signature);
    if signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&signature[i..i + 2], 16).ok())
            .collect();
    }
    BASE64.decode(signature).ok()
}

/// Checks every secret (no early exit), so timing does not tell which key matched.
fn any_secret_signs(secrets: &[Vec<u8>], message: &[u8], expected: &[u8]) -> bool {
    secrets.iter().fold(false, |found, secret| {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
        mac.update(message);
        mac.verify_slice(expected).is_ok() | found
    })
}

/// The candidate messages an Airtel `hash` may have been computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AirtelHashForm {
    /// (a) the bytes of the `transaction` object exactly as received;
    RawTransaction,
    /// (b) the body re-serialized compactly without `hash`, fields in their received order;
    BodyWithoutHash,
    /// (c) `{"transaction": …}` serialized compactly.
    TransactionEnvelope,
}

impl AirtelHashForm {
    /// What the form signs, when it is less than the whole body.
    pub fn signed_part(self) -> Option<SignedPart> {
        match self {
            Self::RawTransaction | Self::TransactionEnvelope => {
                Some(SignedPart::Field("transaction"))
            }
            Self::BodyWithoutHash => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RawTransaction => "raw_transaction",
            Self::BodyWithoutHash => "body_without_hash",
            Self::TransactionEnvelope => "transaction_envelope",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AirtelHashCheck {
    Absent,
    NotConfigured,
    Matched(AirtelHashForm),
    NoMatch,
}

/// Verifies Airtel's body `hash` against every candidate form and every key.
pub fn check_airtel_hash(body: &[u8], keys: &[Vec<u8>]) -> AirtelHashCheck {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        transaction: Option<&'a RawValue>,
        hash: Option<String>,
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        return AirtelHashCheck::Absent;
    };
    let Some(hash) = envelope.hash else {
        return AirtelHashCheck::Absent;
    };
    if keys.is_empty() {
        return AirtelHashCheck::NotConfigured;
    }
    let Ok(expected) = BASE64.decode(hash.trim()) else {
        return AirtelHashCheck::NoMatch;
    };
    let mut candidates: Vec<(AirtelHashForm, Vec<u8>)> = Vec::with_capacity(3);
    if let Some(transaction) = envelope.transaction {
        candidates.push((
            AirtelHashForm::RawTransaction,
            transaction.get().as_bytes().to_vec(),
        ));
        if let Ok(value) = serde_json::from_str::<Value>(transaction.get()) {
            let envelope = serde_json::json!({ "transaction": value });
            candidates.push((
                AirtelHashForm::TransactionEnvelope,
                envelope.to_string().into_bytes(),
            ));
        }
    }
    if let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) {
        fields.shift_remove("hash");
        candidates.push((
            AirtelHashForm::BodyWithoutHash,
            Value::Object(fields).to_string().into_bytes(),
        ));
    }
    // Every candidate is checked before deciding, so timing does not tell which form matched.
    candidates
        .iter()
        .fold(None, |matched, (form, message)| {
            let signs = any_secret_signs(keys, message, &expected);
            matched.or(signs.then_some(*form))
        })
        .map_or(AirtelHashCheck::NoMatch, AirtelHashCheck::Matched)
}

/// HMAC-SHA256 of `message` under `key`, base64: what a signer computes (tests and fixtures).
pub fn sign_base64(key: &[u8], message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    BASE64.encode(mac.finalize().into_bytes())
}

/// HMAC-SHA256 of `message` under `key`, lowercase hex.
pub fn sign_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"referenceId":"r-1","status":"SUCCESSFUL"}"#;

    fn secrets() -> Vec<Vec<u8>> {
        vec![b"old-secret".to_vec(), b"new-secret".to_vec()]
    }

    #[test]
    fn header_signatures_in_hex_or_base64_from_any_secret_are_valid() {
        for signature in [
            sign_hex(b"new-secret", BODY),
            sign_base64(b"old-secret", BODY),
            format!("sha256={}", sign_hex(b"old-secret", BODY)),
        ] {
            assert_eq!(
                check_header_signature(Some(&signature), BODY, &secrets()),
                SignatureCheck::Valid,
                "{signature}"
            );
        }
    }

    #[test]
    fn header_signatures_over_other_bytes_or_keys_are_invalid() {
        let reserialized = br#"{"referenceId": "r-1", "status": "SUCCESSFUL"}"#;
        assert_eq!(
            check_header_signature(
                Some(&sign_hex(b"new-secret", reserialized)),
                BODY,
                &secrets()
            ),
            SignatureCheck::Invalid
        );
        assert_eq!(
            check_header_signature(Some(&sign_hex(b"other", BODY)), BODY, &secrets()),
            SignatureCheck::Invalid
        );
        assert_eq!(
            check_header_signature(Some("not a signature!"), BODY, &secrets()),
            SignatureCheck::Invalid
        );
        assert_eq!(
            check_header_signature(None, BODY, &secrets()),
            SignatureCheck::Absent
        );
        assert_eq!(
            check_header_signature(Some("abc"), BODY, &[]),
            SignatureCheck::NotConfigured
        );
    }

    fn airtel_body(hash: &str) -> String {
        format!(
            r#"{{"transaction": {{"id": "A1", "message": "ok", "status_code": "TS", "airtel_money_id": "MP1"}}, "hash": "{hash}"}}"#
        )
    }

    #[test]
    fn every_airtel_form_is_recognized() {
        let raw_transaction =
            r#"{"id": "A1", "message": "ok", "status_code": "TS", "airtel_money_id": "MP1"}"#;
        let compact_transaction =
            r#"{"id":"A1","message":"ok","status_code":"TS","airtel_money_id":"MP1"}"#;
        let cases = [
            (raw_transaction.to_owned(), AirtelHashForm::RawTransaction),
            (
                format!(r#"{{"transaction":{compact_transaction}}}"#),
                AirtelHashForm::TransactionEnvelope,
            ),
        ];
        for (message, form) in cases {
            let body = airtel_body(&sign_base64(b"new-secret", message.as_bytes()));
            assert_eq!(
                check_airtel_hash(body.as_bytes(), &secrets()),
                AirtelHashCheck::Matched(form)
            );
        }
        // (b) differs from (c) when the body has other fields besides `transaction` and `hash`.
        let without_hash = format!(r#"{{"transaction":{compact_transaction},"data":{{"x":1}}}}"#);
        let body = format!(
            r#"{{"transaction": {raw_transaction}, "data": {{"x": 1}}, "hash": "{}"}}"#,
            sign_base64(b"old-secret", without_hash.as_bytes())
        );
        assert_eq!(
            check_airtel_hash(body.as_bytes(), &secrets()),
            AirtelHashCheck::Matched(AirtelHashForm::BodyWithoutHash)
        );
    }

    #[test]
    fn a_wrong_or_missing_airtel_hash_is_reported() {
        let wrong = airtel_body(&sign_base64(b"other-key", b"anything"));
        assert_eq!(
            check_airtel_hash(wrong.as_bytes(), &secrets()),
            AirtelHashCheck::NoMatch
        );
        assert_eq!(
            check_airtel_hash(airtel_body("%%%").as_bytes(), &secrets()),
            AirtelHashCheck::NoMatch
        );
        assert_eq!(
            check_airtel_hash(br#"{"transaction": {"id": "A1"}}"#, &secrets()),
            AirtelHashCheck::Absent
        );
        assert_eq!(
            check_airtel_hash(wrong.as_bytes(), &[]),
            AirtelHashCheck::NotConfigured
        );
        assert_eq!(
            check_airtel_hash(b"not json", &secrets()),
            AirtelHashCheck::Absent
        );
    }
}
