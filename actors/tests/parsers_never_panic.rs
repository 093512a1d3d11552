//! Property tests: no input — arbitrary bytes, arbitrary JSON, or real payloads with values swapped for
//! arbitrary JSON — makes any provider's parser panic, and every answer is one the service can act on: a
//! refused body comes with a reason (the documented error's text), and an accepted one is a callback of
//! that provider and endpoint with an identity, which survives the journal's BSON document — written by
//! `callback_document`, read back by `recorded` — unchanged. Signed parsing (Airtel's hash over the
//! `transaction` field alone) is held to the same.

use mmo_actors::callback::Delivery;
use mmo_actors::providers::fixtures::{
    AirtelMoneyCallbackFixtures, MTNMoMoCallbackFixtures, MpesaCallbackFixtures,
};
use mmo_actors::providers::{ParseError, SignedPart};
use mmo_actors::store::{callback_document, recorded};
use mmo_actors::{Callback, Provider, PROVIDERS};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// What a parser's answer must be, whatever the body.
fn acted_on(
    provider: &dyn Provider,
    endpoint: &mmo_actors::Endpoint,
    answer: Result<Callback, ParseError>,
) -> Result<(), String> {
    match answer {
        Err(refused) => {
            if refused.to_string().is_empty() {
                return Err(format!("{}: a refusal without a reason", provider.name()));
            }
        }
        Ok(callback) => {
            if callback.provider != provider.name()
                || callback.callback_type != endpoint.callback_type
                || callback.provider_transaction_id.is_empty()
            {
                return Err(format!("{}: accepted as {callback:?}", provider.name()));
            }
            // The journal's document reads back as the same callback and delivery.
            let delivery = Delivery::new(chrono::Utc::now());
            let document = callback_document(&callback, &delivery);
            let (read, read_delivery) = recorded(&document)
                .ok_or_else(|| format!("{}: its document does not read back", provider.name()))?;
            let mut expected = callback.clone();
            expected.payload = Value::Null;
            if read != expected || read_delivery.id != delivery.id {
                return Err(format!(
                    "{}: {expected:?} read back as {read:?}",
                    provider.name()
                ));
            }
        }
    }
    Ok(())
}

/// Every endpoint of every provider parses `body` (signed over `transaction` too) and answers usably.
fn every_endpoint(body: &[u8]) -> Result<(), String> {
    for provider in PROVIDERS {
        for endpoint in provider.endpoints() {
            acted_on(
                *provider,
                endpoint,
                provider.parse(endpoint.callback_type, body),
            )?;
            let signed = SignedPart::Field("transaction");
            acted_on(
                *provider,
                endpoint,
                provider.parse_signed(endpoint.callback_type, body, signed),
            )?;
        }
    }
    Ok(())
}

/// Whether every endpoint refuses `body`.
fn refused_everywhere(body: &[u8]) -> bool {
    PROVIDERS.iter().all(|provider| {
        provider
            .endpoints()
            .iter()
            .all(|endpoint| provider.parse(endpoint.callback_type, body).is_err())
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9_ .,-]{0,24}".prop_map(Value::String),
        prop_oneof![
            Just("0"),
            Just("1032"),
            Just("TS"),
            Just("SUCCESSFUL"),
            Just("1e400"),
            Just("-0.0")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    let names = prop_oneof![
        Just("Body"),
        Just("stkCallback"),
        Just("CheckoutRequestID"),
        Just("ResultCode"),
        Just("CallbackMetadata"),
        Just("Item"),
        Just("Name"),
        Just("Value"),
        Just("Result"),
        Just("ConversationID"),
        Just("ResultParameters"),
        Just("ResultParameter"),
        Just("Key"),
        Just("TransID"),
        Just("TransAmount"),
        Just("referenceId"),
        Just("externalId"),
        Just("status"),
        Just("reason"),
        Just("amount"),
        Just("payer"),
        Just("partyId"),
        Just("transaction"),
        Just("data"),
        Just("id"),
        Just("status_code"),
        Just("message"),
        Just("x"),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..8).prop_map(|fields| Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<Map<_, _>>()
            )),
        ]
    })
}

/// Replaces the value at every path of a real payload, one at a time, with `replacement`.
fn mutations(payload: &Value, replacement: &Value) -> Vec<Value> {
    fn paths(value: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Value::Object(fields) = value {
            for (key, child) in fields {
                let mut path = prefix.clone();
                path.push(key.clone());
                out.push(path.clone());
                paths(child, path, out);
            }
        }
    }
    let mut all = Vec::new();
    paths(payload, Vec::new(), &mut all);
    all.into_iter()
        .map(|path| {
            let mut mutated = payload.clone();
            let mut target = &mut mutated;
            for key in &path {
                target = target.get_mut(key).expect("path exists");
            }
            *target = replacement.clone();
            mutated
        })
        .collect()
}

fn real_payloads() -> Vec<Value> {
    vec![
        MpesaCallbackFixtures::stk_push_success(),
        MpesaCallbackFixtures::b2c_result_success(),
        MpesaCallbackFixtures::c2b_confirmation(),
        MTNMoMoCallbackFixtures::collection_success(),
        MTNMoMoCallbackFixtures::disbursement_failed_reason_object(),
        AirtelMoneyCallbackFixtures::payment_success(),
        AirtelMoneyCallbackFixtures::payment_documented_shape("A1", "TS"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        prop_assert_eq!(every_endpoint(&body), Ok(()));
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        prop_assert_eq!(every_endpoint(value.to_string().as_bytes()), Ok(()));
    }

    #[test]
    fn real_payloads_with_any_field_replaced_never_panic(replacement in json_value()) {
        for payload in real_payloads() {
            for mutated in mutations(&payload, &replacement) {
                prop_assert_eq!(every_endpoint(mutated.to_string().as_bytes()), Ok(()));
            }
        }
    }
}

#[test]
fn real_payloads_are_accepted_and_read_back() {
    for payload in real_payloads() {
        let body = payload.to_string();
        assert_eq!(every_endpoint(body.as_bytes()), Ok(()));
        assert!(!refused_everywhere(body.as_bytes()), "{body}");
    }
}

#[test]
fn pathological_bodies_are_refused_not_panicked_on() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge_number = format!(
        r#"{{"TransID": "X1", "TransAmount": {}}}"#,
        "9".repeat(10_000)
    );
    let nulls = r#"{"Body": null, "Result": null, "TransID": null, "transaction": null, "referenceId": null}"#;
    for body in [
        deep.as_str(),
        huge_number.as_str(),
        nulls,
        "",
        "null",
        "\u{0}",
        r#"{"a":1,"a":2}"#,
    ] {
        assert_eq!(every_endpoint(body.as_bytes()), Ok(()), "{body:.80}");
        assert!(
            refused_everywhere(body.as_bytes()),
            "accepted somewhere: {body:.80}"
        );
    }
}
