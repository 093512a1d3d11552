//! Pseudonymization for operators who must not keep personal data: MSISDNs and customer names are
//! replaced by salted SHA-256 digests, in the normalized fields and in the stored payload alike.
//!
//! The same number always gives the same digest under one salt, so transactions, conflicts and links
//! still line up; without the salt the digest cannot be reversed by trying every phone number.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::callback::Callback;

/// Payload fields that hold a phone number or a name, in every provider's shapes.
const PERSONAL_FIELDS: &[&str] = &[
    "MSISDN",
    "FirstName",
    "MiddleName",
    "LastName",
    "partyId",
    "msisdn",
    "first_name",
    "last_name",
    "name",
];
/// `{Name|Key, Value}` items whose `Value` is personal (M-Pesa STK metadata, B2C result parameters).
const PERSONAL_ITEMS: &[&str] = &["PhoneNumber", "ReceiverPartyPublicName"];

/// The salted digest of a personal value, as lowercase hex.
pub fn digest(salt: &[u8], value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(b":");
    hasher.update(value.as_bytes());
    hex::encode(hasher.finalize())
}

/// Replaces every personal value of `callback` (normalized MSISDN and payload) with its digest.
pub fn pseudonymize(callback: &mut Callback, salt: &[u8]) {
    if let Some(msisdn) = callback.msisdn.as_mut() {
        *msisdn = digest(salt, msisdn);
    }
    scrub(&mut callback.payload, salt);
}

fn scrub(value: &mut Value, salt: &[u8]) {
    match value {
        Value::Object(fields) => {
            let personal_item = ["Name", "Key"].iter().any(|label| {
                fields
                    .get(*label)
                    .and_then(Value::as_str)
                    .is_some_and(|name| PERSONAL_ITEMS.contains(&name))
            });
            for (key, field) in fields.iter_mut() {
                if PERSONAL_FIELDS.contains(&key.as_str()) || (personal_item && key == "Value") {
                    replace_scalar(field, salt);
                } else {
                    scrub(field, salt);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| scrub(item, salt)),
        _ => {}
    }
}

fn replace_scalar(value: &mut Value, salt: &[u8]) {
    let text = match value {
        Value::String(text) if !text.is_empty() => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => return,
    };
    // The B2C receiver is "2547… - NAME": its number alone is what the normalized MSISDN holds, so the
    // number part gets the same digest as everywhere else, and the name is dropped with it.
    let number = text.split(" - ").next().unwrap_or(&text).trim();
    *value = Value::String(digest(salt, number));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::by_slug;
    use crate::providers::fixtures::{MTNMoMoCallbackFixtures, MpesaCallbackFixtures};
    use crate::CallbackType;

    fn parse(slug: &str, kind: CallbackType, payload: Value) -> Callback {
        by_slug(slug)
            .unwrap()
            .parse(kind, payload.to_string().as_bytes())
            .unwrap()
    }

    #[test]
    fn numbers_and_names_are_replaced_everywhere() {
        let salt = b"pepper";
        let number = digest(salt, "254708374149");
        let mut c2b = parse(
            "mpesa",
            CallbackType::C2bConfirmation,
            MpesaCallbackFixtures::c2b_confirmation(),
        );
        pseudonymize(&mut c2b, salt);
        assert_eq!(c2b.msisdn.as_deref(), Some(number.as_str()));
        assert_eq!(c2b.payload["MSISDN"], number.as_str());
        assert_eq!(c2b.payload["FirstName"], digest(salt, "John").as_str());
        assert_eq!(c2b.payload["LastName"], digest(salt, "Doe").as_str());
        assert_eq!(
            c2b.payload["TransID"], "NLJ41HAY6Q",
            "non-personal fields stay"
        );

        let mut stk = parse(
            "mpesa",
            CallbackType::StkPush,
            MpesaCallbackFixtures::stk_push_success(),
        );
        pseudonymize(&mut stk, salt);
        assert_eq!(
            stk.msisdn.as_deref(),
            Some(number.as_str()),
            "same number, same digest across flows"
        );
        assert_eq!(
            stk.payload["Body"]["stkCallback"]["CallbackMetadata"]["Item"][3]["Value"],
            number.as_str()
        );

        let mut b2c = parse(
            "mpesa",
            CallbackType::B2cResult,
            MpesaCallbackFixtures::b2c_result_success(),
        );
        pseudonymize(&mut b2c, salt);
        let receiver = &b2c.payload["Result"]["ResultParameters"]["ResultParameter"][2]["Value"];
        assert_eq!(receiver, number.as_str());
        assert!(!b2c.payload.to_string().contains("John Doe"));

        let mut mtn = parse(
            "mtn",
            CallbackType::Collection,
            MTNMoMoCallbackFixtures::collection_success(),
        );
        pseudonymize(&mut mtn, salt);
        assert!(!mtn.payload.to_string().contains("256774123456"));
        assert_eq!(
            mtn.msisdn.as_deref(),
            Some(digest(salt, "256774123456").as_str())
        );
    }

    #[test]
    fn digests_depend_on_the_salt() {
        assert_ne!(digest(b"a", "254708374149"), digest(b"b", "254708374149"));
        assert_eq!(digest(b"a", "254708374149").len(), 64);
    }
}
