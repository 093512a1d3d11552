//! The BSON shape of stored callbacks.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use mongodb::bson::{doc, Bson, DateTime as BsonDateTime, Decimal128, Document};
use serde_json::Value;

use crate::callback::{Callback, CallbackKey, Delivery};

/// The filter that identifies one stored callback: the fields of the unique index.
pub fn key_filter(key: &CallbackKey) -> Document {
    doc! {
        "provider": key.provider,
        "callback_type": key.callback_type.as_str(),
        "provider_transaction_id": &key.provider_transaction_id,
        "status": key.status.as_str(),
    }
}

/// The document written for the first delivery of a callback.
pub fn callback_document(callback: &Callback, delivery: &Delivery) -> Document {
    let at = bson_time(delivery.received_at);
    let mut document = key_filter(&callback.key());
    document.insert("reason", callback.reason);
    document.insert("result_code", callback.result_code.as_deref());
    document.insert("result_description", callback.result_description.as_deref());
    document.insert(
        "amount",
        callback
            .amount
            .map_or(Bson::Null, |amount| decimal128(&amount.to_string())),
    );
    document.insert("currency", callback.currency.as_deref());
    document.insert("msisdn", callback.msisdn.as_deref());
    document.insert("receipt", callback.receipt.as_deref());
    document.insert("transaction_time", callback.transaction_time.map(bson_time));
    document.insert(
        "transaction_time_raw",
        callback.transaction_time_raw.as_deref(),
    );
    document.insert("callback_data", json_to_bson(&callback.payload));
    document.insert("received_at", at);
    document.insert("last_received_at", at);
    document.insert("deliveries", 1_i64);
    // Which deliveries were counted: applying one twice (a retry, a re-drained journal entry) counts it once.
    document.insert("delivery_ids", vec![delivery.id.as_str()]);
    document.insert("processed", false);
    document
}

/// A BSON date (millisecond precision, as MongoDB stores dates).
pub fn bson_time(at: DateTime<Utc>) -> BsonDateTime {
    BsonDateTime::from_millis(at.timestamp_millis())
}

/// The raw payload as BSON. Integers stay integers; other numbers become Decimal128 from their exact JSON
/// text (a float would lose cents), or their text when out of Decimal128's range. NUL, which BSON keys
/// cannot hold, is replaced.
pub fn json_to_bson(value: &Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(flag) => Bson::Boolean(*flag),
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                Bson::Int64(int)
            } else {
                decimal128(&number.to_string())
            }
        }
        Value::String(text) => Bson::String(text.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(json_to_bson).collect()),
        Value::Object(fields) => Bson::Document(
            fields
                .iter()
                .map(|(key, value)| (key.replace('\0', "\u{FFFD}"), json_to_bson(value)))
                .collect(),
        ),
    }
}

pub(super) fn decimal128(text: &str) -> Bson {
    Decimal128::from_str(text).map_or_else(|_| Bson::String(text.to_owned()), Bson::Decimal128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_exact_value() {
        let value: Value =
            serde_json::from_str(r#"{"int": 254708374149, "amount": 1000.10, "huge": 1e400}"#)
                .unwrap();
        let Bson::Document(document) = json_to_bson(&value) else {
            panic!("not a document")
        };
        assert_eq!(document.get("int"), Some(&Bson::Int64(254708374149)));
        assert_eq!(
            document.get("amount").map(ToString::to_string).as_deref(),
            Some("1000.10")
        );
        assert!(document.get("huge").is_some());
    }

    #[test]
    fn keys_with_nul_are_made_storable() {
        let value: Value = serde_json::from_str(r#"{"a\u0000b": 1}"#).unwrap();
        let Bson::Document(document) = json_to_bson(&value) else {
            panic!("not a document")
        };
        assert!(document.contains_key("a\u{FFFD}b"));
    }
}
