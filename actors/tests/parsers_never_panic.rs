//! Property tests: no input — arbitrary bytes, arbitrary JSON, or real payloads with values swapped for
//! arbitrary JSON — makes any provider's parser panic. A parser either understands a body or says why not.

use mmo_actors::providers::fixtures::{
    AirtelMoneyCallbackFixtures, MTNMoMoCallbackFixtures, MpesaCallbackFixtures,
};
use mmo_actors::PROVIDERS;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn every_endpoint(body: &[u8]) {
    for provider in PROVIDERS {
        for endpoint in provider.endpoints() {
            let _ = provider.parse(endpoint.callback_type, body);
        }
    }
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
        every_endpoint(&body);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        every_endpoint(value.to_string().as_bytes());
    }

    #[test]
    fn real_payloads_with_any_field_replaced_never_panic(replacement in json_value()) {
        for payload in real_payloads() {
            for mutated in mutations(&payload, &replacement) {
                every_endpoint(mutated.to_string().as_bytes());
            }
        }
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
        every_endpoint(body.as_bytes());
    }
}
