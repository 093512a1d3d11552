//! The BSON shape of stored callbacks.
//!
//! A callback's document is built once, as raw BSON, when the callback is journaled: the journal keeps
//! those bytes and the drain inserts them as they are, without decoding and re-encoding the payload.
//!
//! Length: the callback document's one BSON shape — written, read back in one pass, and the payload writer —
//! kept with the tests and the benchmark that hold them to each other.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use mongodb::bson::{
    Bson, DateTime as BsonDateTime, Decimal128, Document, RawArrayBuf, RawBson, RawBsonRef,
    RawDocument, RawDocumentBuf,
};
use serde_json::Value;

use crate::callback::{intern, Callback, CallbackType, Delivery, Status};

/// How many delivery ids a stored callback remembers (the most recent). A re-applied delivery is only
/// ever one of the entries still in the local journal, far fewer than this, so counting stays exact while
/// the document stays bounded however often an operator resends.
pub const MAX_DELIVERY_IDS: i32 = 1000;

/// The document written for the first delivery of a callback, as raw BSON. Its `_id` is the callback's
/// identity ([`crate::callback::CallbackKey::document_id`]); `delivery_id` is the delivery's id, so that
/// applying the same delivery again recognises its own document. It is written only after the callback
/// was folded into its transaction, hence `processed: true`.
pub fn callback_document(callback: &Callback, delivery: &Delivery) -> RawDocumentBuf {
    let at = bson_time(delivery.received_at);
    let text = |value: Option<&str>| value.map_or(RawBson::Null, RawBson::from);
    let mut document = RawDocumentBuf::new();
    document.append("_id", callback.key().document_id());
    document.append("delivery_id", delivery.id);
    document.append("provider", callback.provider);
    document.append("callback_type", callback.callback_type.as_str());
    document.append(
        "provider_transaction_id",
        callback.provider_transaction_id.as_str(),
    );
    document.append("status", callback.status.as_str());
    document.append("reason", text(callback.reason));
    document.append("result_code", text(callback.result_code.as_deref()));
    document.append(
        "result_description",
        text(callback.result_description.as_deref()),
    );
    document.append(
        "amount",
        callback
            .amount
            .map_or(RawBson::Null, |amount| raw_decimal(&amount.to_string())),
    );
    document.append("currency", text(callback.currency.as_deref()));
    document.append("msisdn", text(callback.msisdn.as_deref()));
    document.append("receipt", text(callback.receipt.as_deref()));
    document.append(
        "transaction_time",
        callback
            .transaction_time
            .map_or(RawBson::Null, |time| RawBson::DateTime(bson_time(time))),
    );
    document.append(
        "transaction_time_raw",
        text(callback.transaction_time_raw.as_deref()),
    );
    document.append("callback_data", json_to_raw(&callback.payload));
    document.append("received_at", at);
    document.append("last_received_at", at);
    document.append("deliveries", 1_i64);
    // Which deliveries were counted: applying one twice (a retry, a re-drained journal entry) counts it once.
    let mut delivery_ids = RawArrayBuf::new();
    delivery_ids.push(delivery.id);
    document.append("delivery_ids", delivery_ids);
    document.append("processed", true);
    if let Some(rejected) = delivery.replayed_from {
        document.append("replayed_from", rejected);
    }
    // Only answers to status queries name their flow apart from their type.
    if let Some(flow) = callback.queried_flow {
        document.append("flow", flow);
    }
    document
}

/// The callback (without its payload) and first delivery a callback document describes: what folding and
/// counting need, read from the raw bytes in one pass without decoding the payload. Documents journaled by
/// versions before 0.2.0 carry the delivery id as `_id`: read as well.
pub fn recorded(document: &RawDocument) -> Option<(Callback, Delivery)> {
    let mut callback = Callback {
        provider: "",
        callback_type: CallbackType::StkPush,
        provider_transaction_id: String::new(),
        status: Status::Unknown,
        reason: None,
        result_code: None,
        result_description: None,
        amount: None,
        currency: None,
        msisdn: None,
        receipt: None,
        transaction_time: None,
        transaction_time_raw: None,
        payload: Value::Null,
        queried_flow: None,
    };
    let (mut provider, mut kind, mut status, mut id, mut received_at) =
        (None, None, None, None, None);
    let mut replayed_from = None;
    let time = |at: BsonDateTime| Some(at.to_chrono());
    for element in document.iter() {
        let (key, value) = element.ok()?;
        let text = || match value {
            RawBsonRef::String(text) => Some(text.to_owned()),
            _ => None,
        };
        match key {
            "delivery_id" => id = value.as_object_id(),
            "_id" => id = id.or(value.as_object_id()),
            "provider" => provider = value.as_str().and_then(intern),
            "callback_type" => kind = value.as_str().and_then(CallbackType::parse),
            "provider_transaction_id" => callback.provider_transaction_id = text()?,
            "status" => status = value.as_str().and_then(Status::parse),
            "reason" => callback.reason = value.as_str().and_then(intern),
            "result_code" => callback.result_code = text(),
            "result_description" => callback.result_description = text(),
            "amount" => {
                callback.amount = match value {
                    RawBsonRef::Decimal128(amount) => amount.to_string().parse().ok(),
                    _ => None,
                }
            }
            "currency" => callback.currency = text(),
            "msisdn" => callback.msisdn = text(),
            "receipt" => callback.receipt = text(),
            "transaction_time" => callback.transaction_time = value.as_datetime().and_then(time),
            "transaction_time_raw" => callback.transaction_time_raw = text(),
            "received_at" => received_at = value.as_datetime().and_then(time),
            "replayed_from" => replayed_from = value.as_object_id(),
            "flow" => callback.queried_flow = value.as_str().and_then(intern),
            _ => {}
        }
    }
    callback.provider = provider?;
    callback.callback_type = kind?;
    callback.status = status?;
    let delivery = Delivery {
        id: id?,
        received_at: received_at?,
        replayed_from,
    };
    Some((callback, delivery))
}

/// A stored callback's payload (`callback_data`), as BSON.
pub fn payload_of(document: &RawDocument) -> Bson {
    document
        .get("callback_data")
        .ok()
        .flatten()
        .and_then(|payload| Bson::try_from(payload).ok())
        .unwrap_or(Bson::Null)
}

/// A stored callback's payload as JSON text, numbers as numbers again (the exact decimal text a
/// Decimal128 holds, not extended JSON's `{"$numberDecimal": …}`): what today's parsers read the same way
/// as the body it was parsed from. Used where the body's bytes are no longer at hand (a journal entry
/// quarantined after failing again and again).
pub fn payload_json(document: &RawDocument) -> Vec<u8> {
    serde_json::to_vec(&bson_to_json(payload_of(document))).unwrap_or_default()
}

fn bson_to_json(value: Bson) -> Value {
    let number = |text: String| {
        serde_json::from_str::<serde_json::Number>(&text).map_or(Value::String(text), Value::Number)
    };
    match value {
        Bson::Document(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key, bson_to_json(value)))
                .collect(),
        ),
        Bson::Array(items) => Value::Array(items.into_iter().map(bson_to_json).collect()),
        Bson::Decimal128(decimal) => number(decimal.to_string()),
        Bson::Int32(integer) => Value::from(integer),
        Bson::Int64(integer) => Value::from(integer),
        Bson::Double(float) => number(float.to_string()),
        Bson::String(text) => Value::String(text),
        Bson::Boolean(flag) => Value::Bool(flag),
        Bson::Null => Value::Null,
        other => other.into_relaxed_extjson(),
    }
}

/// The normalized callback a stored document describes (its payload left out): what folding a stored
/// callback into its transaction needs. `None` when the document is not a callback this version knows.
pub fn stored_callback(document: &Document) -> Option<Callback> {
    let raw = RawDocumentBuf::from_document(document).ok()?;
    recorded(&raw).map(|(callback, _)| callback)
}

/// A BSON date (millisecond precision, as MongoDB stores dates): the one conversion the service uses.
pub fn bson_time(at: DateTime<Utc>) -> BsonDateTime {
    mongodb::bson::DateTime::from_chrono(at)
}

/// The raw payload as BSON. Integers stay integers; other numbers become Decimal128 from their exact JSON
/// text (a float would lose cents), or their text when out of Decimal128's range. NUL, which BSON keys
/// cannot hold, is replaced.
///
/// Written straight into one buffer (nested documents get their length filled in afterwards) rather than
/// built with the `bson` crate's `RawDocumentBuf::append`, which copies each nested document into its
/// parent: this runs for every callback accepted, and measured 205 ns per payload against 1,161 ns for
/// the same bytes built with `RawDocumentBuf` (the providers' fixtures, release build, 2026-12-04; the
/// benchmark is `writer_benchmark` below:
/// `cargo test --release -p mmo-actors --lib writer_benchmark -- --ignored --nocapture`).
pub fn json_to_raw(value: &Value) -> RawBson {
    match value {
        Value::Object(fields) => {
            let mut bytes = Vec::with_capacity(256);
            write_fields(
                &mut bytes,
                fields.iter().map(|(key, value)| (key.as_str(), value)),
            );
            RawBson::Document(
                RawDocumentBuf::from_bytes(bytes).expect("a document written whole is valid"),
            )
        }
        Value::Array(items) => {
            let mut array = RawArrayBuf::new();
            for item in items {
                array.push(json_to_raw(item));
            }
            RawBson::Array(array)
        }
        Value::Null => RawBson::Null,
        Value::Bool(flag) => RawBson::Boolean(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(int) => RawBson::Int64(int),
            None => raw_decimal(&number.to_string()),
        },
        Value::String(text) => RawBson::String(text.clone()),
    }
}

/// BSON element types written by [`write_value`].
mod element {
    pub const STRING: u8 = 0x02;
    pub const DOCUMENT: u8 = 0x03;
    pub const ARRAY: u8 = 0x04;
    pub const BOOLEAN: u8 = 0x08;
    pub const NULL: u8 = 0x0A;
    pub const INT64: u8 = 0x12;
    pub const DECIMAL128: u8 = 0x13;
}

/// Writes a whole BSON document of `fields`: its length, its elements, the closing NUL.
fn write_fields<'a>(bytes: &mut Vec<u8>, fields: impl Iterator<Item = (&'a str, &'a Value)>) {
    let start = bytes.len();
    bytes.extend_from_slice(&[0; 4]);
    for (key, value) in fields {
        write_value(bytes, key, value);
    }
    close_document(bytes, start);
}

/// Writes a BSON array: a document keyed "0", "1", ….
fn write_items(bytes: &mut Vec<u8>, items: &[Value]) {
    let start = bytes.len();
    bytes.extend_from_slice(&[0; 4]);
    let mut key = String::new();
    for (index, item) in items.iter().enumerate() {
        key.clear();
        std::fmt::Write::write_fmt(&mut key, format_args!("{index}")).expect("writing to a String");
        write_value(bytes, &key, item);
    }
    close_document(bytes, start);
}

fn close_document(bytes: &mut Vec<u8>, start: usize) {
    bytes.push(0);
    let length = i32::try_from(bytes.len() - start).unwrap_or(i32::MAX);
    bytes[start..start + 4].copy_from_slice(&length.to_le_bytes());
}

/// Writes one element: its type, its key (a C string: NUL replaced), its value.
fn write_value(bytes: &mut Vec<u8>, key: &str, value: &Value) {
    let decimal = match value {
        Value::Number(number) if number.as_i64().is_none() => {
            Decimal128::from_str(&number.to_string()).ok()
        }
        _ => None,
    };
    let kind = match value {
        Value::Null => element::NULL,
        Value::Bool(_) => element::BOOLEAN,
        Value::Number(number) if number.as_i64().is_some() => element::INT64,
        Value::Number(_) if decimal.is_some() => element::DECIMAL128,
        Value::Number(_) | Value::String(_) => element::STRING,
        Value::Array(_) => element::ARRAY,
        Value::Object(_) => element::DOCUMENT,
    };
    bytes.push(kind);
    if key.contains('\0') {
        bytes.extend_from_slice(key.replace('\0', "\u{FFFD}").as_bytes());
    } else {
        bytes.extend_from_slice(key.as_bytes());
    }
    bytes.push(0);
    match value {
        Value::Null => {}
        Value::Bool(flag) => bytes.push(u8::from(*flag)),
        Value::Number(number) => match (number.as_i64(), decimal) {
            (Some(int), _) => bytes.extend_from_slice(&int.to_le_bytes()),
            (None, Some(decimal)) => bytes.extend_from_slice(&decimal.bytes()),
            // Out of Decimal128's range: kept as its text.
            (None, None) => write_string(bytes, &number.to_string()),
        },
        Value::String(text) => write_string(bytes, text),
        Value::Array(items) => write_items(bytes, items),
        Value::Object(fields) => write_fields(
            bytes,
            fields.iter().map(|(key, value)| (key.as_str(), value)),
        ),
    }
}

fn write_string(bytes: &mut Vec<u8>, text: &str) {
    let length = i32::try_from(text.len() + 1).unwrap_or(i32::MAX);
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
}

/// The payload as a (decoded) BSON value.
pub fn json_to_bson(value: &Value) -> Bson {
    Bson::try_from(json_to_raw(value)).unwrap_or(Bson::Null)
}

fn raw_decimal(text: &str) -> RawBson {
    Decimal128::from_str(text)
        .map_or_else(|_| RawBson::String(text.to_owned()), RawBson::Decimal128)
}

pub(super) fn decimal128(text: &str) -> Bson {
    Decimal128::from_str(text).map_or_else(|_| Bson::String(text.to_owned()), Bson::Decimal128)
}

/// A document's array of texts (other items skipped; missing: empty).
pub fn texts_of(document: &Document, field: &str) -> Vec<String> {
    document
        .get_array(field)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::by_slug;
    use crate::providers::fixtures::all;

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

    /// What the writer produces is what the bson crate itself encodes for the same values.
    #[test]
    fn the_payload_writer_agrees_with_the_bson_crate() {
        fn reference(value: &Value) -> Bson {
            match value {
                Value::Null => Bson::Null,
                Value::Bool(flag) => Bson::Boolean(*flag),
                Value::Number(number) => match number.as_i64() {
                    Some(int) => Bson::Int64(int),
                    None => decimal128(&number.to_string()),
                },
                Value::String(text) => Bson::String(text.clone()),
                Value::Array(items) => Bson::Array(items.iter().map(reference).collect()),
                Value::Object(fields) => Bson::Document(
                    fields
                        .iter()
                        .map(|(key, value)| (key.replace('\0', "\u{FFFD}"), reference(value)))
                        .collect(),
                ),
            }
        }
        let mut payloads: Vec<Value> = all().into_iter().map(|scenario| scenario.payload).collect();
        payloads.push(
            serde_json::from_str(
                r#"{"a\u0000b": [1, -2, 3.50, 1e400, "x\u0000y", null, true, {"n": []}, [[{}]]], "é": 0.1}"#,
            )
            .unwrap(),
        );
        for payload in payloads {
            let Bson::Document(expected) = reference(&payload) else {
                panic!("payloads are objects")
            };
            let RawBson::Document(written) = json_to_raw(&payload) else {
                panic!("an object is written as a document")
            };
            assert_eq!(
                written.as_bytes(),
                RawDocumentBuf::from_document(&expected).unwrap().as_bytes(),
                "{payload}"
            );
        }
    }

    #[test]
    fn keys_with_nul_are_made_storable() {
        let value: Value = serde_json::from_str(r#"{"a\u0000b": 1}"#).unwrap();
        let Bson::Document(document) = json_to_bson(&value) else {
            panic!("not a document")
        };
        assert!(document.contains_key("a\u{FFFD}b"));
    }

    #[test]
    fn every_fixture_reads_back_from_its_document() {
        for scenario in all() {
            let provider = by_slug(scenario.provider).unwrap();
            let mut callback = provider
                .parse(
                    scenario.callback_type,
                    scenario.payload.to_string().as_bytes(),
                )
                .unwrap();
            let delivery = Delivery::new(Utc::now());
            let document = callback_document(&callback, &delivery);
            let (read, read_delivery) = recorded(&document).expect(scenario.name);
            assert_eq!(read_delivery.id, delivery.id);
            assert_eq!(
                read_delivery.received_at.timestamp_millis(),
                delivery.received_at.timestamp_millis()
            );
            assert_eq!(
                payload_of(&document),
                json_to_bson(&callback.payload),
                "{}",
                scenario.name
            );
            callback.payload = Value::Null;
            // Stored times have millisecond precision.
            callback.transaction_time = callback
                .transaction_time
                .and_then(|at| DateTime::from_timestamp_millis(at.timestamp_millis()));
            assert_eq!(read, callback, "{}", scenario.name);
        }
    }
}

/// The payload writer against the `bson` crate's own builder: the same bytes (asserted), and their
/// times printed. A benchmark, run by hand; it asserts nothing about speed.
#[cfg(test)]
mod writer_benchmark {
    use super::*;

    fn via_raw_document(value: &Value) -> RawBson {
        match value {
            Value::Object(fields) => {
                let mut document = RawDocumentBuf::new();
                for (key, value) in fields {
                    document.append(key.replace('\0', "\u{FFFD}"), via_raw_document(value));
                }
                RawBson::Document(document)
            }
            Value::Array(items) => {
                let mut array = RawArrayBuf::new();
                for item in items {
                    array.push(via_raw_document(item));
                }
                RawBson::Array(array)
            }
            Value::Null => RawBson::Null,
            Value::Bool(flag) => RawBson::Boolean(*flag),
            Value::Number(number) => match number.as_i64() {
                Some(int) => RawBson::Int64(int),
                None => raw_decimal(&number.to_string()),
            },
            Value::String(text) => RawBson::String(text.clone()),
        }
    }

    #[test]
    #[ignore = "a benchmark: run it by hand with --release"]
    fn hand_writer_against_raw_document_buf() {
        let payloads: Vec<Value> = crate::providers::fixtures::all()
            .into_iter()
            .map(|scenario| scenario.payload)
            .collect();
        for payload in &payloads {
            assert_eq!(json_to_raw(payload), via_raw_document(payload));
        }
        let rounds = 20_000;
        for _ in 0..2 {
            let started = std::time::Instant::now();
            let mut bytes = 0;
            for _ in 0..rounds {
                for payload in &payloads {
                    if let RawBson::Document(d) = json_to_raw(payload) {
                        bytes += d.as_bytes().len();
                    }
                }
            }
            let hand = started.elapsed();
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                for payload in &payloads {
                    if let RawBson::Document(d) = via_raw_document(payload) {
                        bytes += d.as_bytes().len();
                    }
                }
            }
            let raw = started.elapsed();
            let n = (rounds * payloads.len()) as f64;
            eprintln!(
                "hand {:.0} ns/payload, RawDocumentBuf {:.0} ns/payload ({bytes})",
                hand.as_nanos() as f64 / n,
                raw.as_nanos() as f64 / n
            );
        }
    }
}
