use actix_web::http::{Method, StatusCode};
use futures_util::future::join_all;
use mmo_actors::providers::fixtures::{
    AirtelMoneyCallbackFixtures as Airtel, MTNMoMoCallbackFixtures as Mtn,
    MpesaCallbackFixtures as Mpesa,
};
use mongodb::bson::{Bson, Document};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TOKEN};

const MPESA_ACK: &str = r#"{"ResultCode":0,"ResultDesc":"Accepted"}"#;
const MTN_ACK: &str = r#"{"status":"accepted","message":"Callback received"}"#;
const AIRTEL_ACK: &str =
    r#"{"status":{"code":"200","message":"Callback received successfully","success":true}}"#;
const AIRTEL_NOTIFICATION_ACK: &str =
    r#"{"status":{"code":"200","message":"Notification received","success":true}}"#;

fn decimal(document: &Document, field: &str) -> Option<String> {
    match document.get(field) {
        Some(Bson::Decimal128(value)) => Some(value.to_string()),
        Some(Bson::Null) | None => None,
        Some(other) => panic!("`{field}` must be a Decimal128, found {other:?}"),
    }
}

struct Case {
    path: &'static str,
    payload: Value,
    ack: &'static str,
    provider: &'static str,
    callback_type: &'static str,
    key: &'static str,
    status: &'static str,
    amount: Option<&'static str>,
}

fn api_document_examples() -> Vec<Case> {
    vec![
        Case {
            path: "/v1/webhooks/mpesa/stkpush",
            payload: Mpesa::stk_push_success(),
            ack: MPESA_ACK,
            provider: "mpesa",
            callback_type: "stk_push",
            key: "ws_CO_191220191020363925",
            status: "successful",
            amount: Some("1000.00"),
        },
        Case {
            path: "/v1/webhooks/mpesa/b2c/result",
            payload: Mpesa::b2c_result_success(),
            ack: MPESA_ACK,
            provider: "mpesa",
            callback_type: "b2c_result",
            key: "AG_20191219_00004e48cf7e3533f581",
            status: "successful",
            amount: Some("5000.00"),
        },
        Case {
            path: "/v1/webhooks/mpesa/c2b/confirmation",
            payload: Mpesa::c2b_confirmation(),
            ack: MPESA_ACK,
            provider: "mpesa",
            callback_type: "c2b_confirmation",
            key: "NLJ41HAY6Q",
            status: "successful",
            amount: Some("1500.00"),
        },
        Case {
            path: "/v1/webhooks/mtn/collection",
            payload: Mtn::collection_success(),
            ack: MTN_ACK,
            provider: "mtn_mobile_money",
            callback_type: "collection",
            key: "d4e90f52-7e4b-4f4a-9c3a-1234567890ab",
            status: "successful",
            amount: Some("1000.00"),
        },
        Case {
            path: "/v1/webhooks/mtn/disbursement",
            payload: Mtn::disbursement_success(),
            ack: MTN_ACK,
            provider: "mtn_mobile_money",
            callback_type: "disbursement",
            key: "transfer-456-xyz",
            status: "successful",
            amount: Some("5000.00"),
        },
        Case {
            path: "/v1/webhooks/mtn/remittance",
            payload: Mtn::remittance_success(),
            ack: MTN_ACK,
            provider: "mtn_mobile_money",
            callback_type: "remittance",
            key: "remit-789-abc",
            status: "successful",
            amount: Some("10000.00"),
        },
        Case {
            path: "/v1/webhooks/airtel/payment",
            payload: Airtel::payment_success(),
            ack: AIRTEL_ACK,
            provider: "airtel_money",
            callback_type: "payment",
            key: "airtel_txn_123456789",
            status: "successful",
            amount: Some("1000.00"),
        },
        Case {
            path: "/v1/webhooks/airtel/disbursement",
            payload: Airtel::disbursement_success(),
            ack: AIRTEL_ACK,
            provider: "airtel_money",
            callback_type: "disbursement",
            key: "airtel_disb_987654321",
            status: "successful",
            amount: Some("5000.00"),
        },
        Case {
            path: "/v1/webhooks/airtel/notification",
            payload: Airtel::notification(),
            ack: AIRTEL_NOTIFICATION_ACK,
            provider: "airtel_money",
            callback_type: "notification",
            key: "notification_123",
            status: "successful",
            amount: None,
        },
    ]
}

fn real_shapes() -> Vec<Case> {
    vec![
        Case {
            path: "/v1/webhooks/mpesa/stkpush",
            payload: Mpesa::stk_push_cancelled(),
            ack: MPESA_ACK,
            provider: "mpesa",
            callback_type: "stk_push",
            key: "ws_CO_cancelled_1",
            status: "cancelled",
            amount: None,
        },
        Case {
            path: "/v1/webhooks/mpesa/stkpush",
            payload: Mpesa::stk_push_success_string_values(),
            ack: MPESA_ACK,
            provider: "mpesa",
            callback_type: "stk_push",
            key: "ws_CO_strings_1",
            status: "successful",
            amount: Some("1.00"),
        },
        Case {
            path: "/v1/webhooks/mpesa/b2c/result",
            payload: Mpesa::b2c_result_failed_single_parameter(),
            ack: MPESA_ACK,
            provider: "mpesa",
            callback_type: "b2c_result",
            key: "AG_20191219_000041b09c22e1b1ef54",
            status: "failed",
            amount: None,
        },
        Case {
            path: "/v1/webhooks/mpesa/c2b/confirmation",
            payload: Mpesa::c2b_confirmation_hashed_msisdn(),
            ack: MPESA_ACK,
            provider: "mpesa",
            callback_type: "c2b_confirmation",
            key: "RKTQDM7W6S",
            status: "successful",
            amount: Some("10"),
        },
        Case {
            path: "/v1/webhooks/mtn/collection",
            payload: Mtn::collection_failed_without_reference_id(),
            ack: MTN_ACK,
            provider: "mtn_mobile_money",
            callback_type: "collection",
            key: "ext-947321",
            status: "failed",
            amount: Some("500"),
        },
        Case {
            path: "/v1/webhooks/mtn/disbursement",
            payload: Mtn::disbursement_failed_reason_object(),
            ack: MTN_ACK,
            provider: "mtn_mobile_money",
            callback_type: "disbursement",
            key: "ext_disb_002",
            status: "failed",
            amount: Some("5000"),
        },
        Case {
            path: "/v1/webhooks/airtel/payment",
            payload: Airtel::payment_documented_shape("AIRTEL-REAL-1", "TF"),
            ack: AIRTEL_ACK,
            provider: "airtel_money",
            callback_type: "payment",
            key: "AIRTEL-REAL-1",
            status: "failed",
            amount: None,
        },
    ]
}

async fn assert_stored_and_acknowledged(cases: Vec<Case>) {
    let app = spawn_app().await;
    for case in cases {
        let reply = app.post(case.path, &case.payload).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{} {}: {}",
            case.path,
            case.key,
            reply.body
        );
        assert_eq!(
            reply.body,
            serde_json::from_str::<Value>(case.ack).unwrap(),
            "{}",
            case.path
        );

        let stored = app.stored_one(case.key).await;
        assert_eq!(stored.get_str("provider").unwrap(), case.provider);
        assert_eq!(stored.get_str("callback_type").unwrap(), case.callback_type);
        assert_eq!(
            stored.get_str("status").unwrap(),
            case.status,
            "{}",
            case.key
        );
        assert_eq!(
            decimal(&stored, "amount").as_deref(),
            case.amount,
            "{}",
            case.key
        );
        assert_eq!(stored.get_i64("deliveries").unwrap(), 1);
        assert!(
            stored.get_bool("processed").unwrap(),
            "folded into its transaction"
        );
        assert!(stored.get_datetime("received_at").is_ok());
        assert!(stored.get_datetime("last_received_at").is_ok());
        // The payload is kept as a document, not as a string.
        let data = stored
            .get_document("callback_data")
            .expect("callback_data is a document");
        assert_eq!(data.keys().count(), case.payload.as_object().unwrap().len());
    }
}

#[actix_web::test]
async fn every_endpoint_stores_the_api_document_example_and_acknowledges_it() {
    assert_stored_and_acknowledged(api_document_examples()).await;
}

#[actix_web::test]
async fn real_payload_shapes_are_stored_and_acknowledged() {
    assert_stored_and_acknowledged(real_shapes()).await;
}

#[actix_web::test]
async fn stored_fields_keep_what_the_provider_sent() {
    let app = spawn_app().await;
    app.post("/v1/webhooks/mpesa/stkpush", &Mpesa::stk_push_success())
        .await;
    let stored = app.stored_one("ws_CO_191220191020363925").await;
    assert_eq!(stored.get_str("result_code").unwrap(), "0");
    assert_eq!(
        stored.get_str("result_description").unwrap(),
        "The service request is processed successfully."
    );
    assert_eq!(stored.get_str("receipt").unwrap(), "NLJ7RT61SV");
    assert_eq!(stored.get_str("msisdn").unwrap(), "254708374149");
    assert_eq!(stored.get_str("currency").unwrap(), "KES");
    let stk = stored
        .get_document("callback_data")
        .unwrap()
        .get_document("Body")
        .unwrap()
        .get_document("stkCallback")
        .unwrap();
    assert_eq!(stk.get_i64("ResultCode").unwrap(), 0);
    assert_eq!(
        stk.get_str("CheckoutRequestID").unwrap(),
        "ws_CO_191220191020363925"
    );
}

#[actix_web::test]
async fn a_duplicate_callback_is_stored_once_and_counts_its_deliveries() {
    let app = spawn_app().await;
    for _ in 0..3 {
        let reply = app
            .post(
                "/v1/webhooks/mpesa/c2b/confirmation",
                &Mpesa::c2b_confirmation_for("DUPLICATE1"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.body,
            json!({"ResultCode": 0, "ResultDesc": "Accepted"})
        );
    }
    let stored = app.stored_one("DUPLICATE1").await;
    assert_eq!(stored.get_i64("deliveries").unwrap(), 3);
    assert!(
        stored.get_datetime("last_received_at").unwrap()
            >= stored.get_datetime("received_at").unwrap()
    );
}

/// The same, with the repeats spread over two instances on one MongoDB: neither instance's cache has
/// seen what the other stored, so only MongoDB (the `_id`, the counted delivery ids) keeps it to one
/// document — as it must behind a load balancer.
#[actix_web::test]
async fn repeats_spread_over_two_instances_are_stored_once_and_all_counted() {
    let database = format!("api_{}", uuid::Uuid::new_v4().simple());
    let shared = [("MMO__MONGODB__DATABASE", database.as_str())];
    let first = crate::helpers::spawn_app_with(crate::helpers::test_settings(&shared)).await;
    let second = crate::helpers::spawn_app_with(crate::helpers::test_settings(&shared)).await;
    let payload = Mtn::collection_for("two-instances-1", "SUCCESSFUL");
    let replies = join_all((0..20).map(|index| {
        let app = if index % 2 == 0 { &first } else { &second };
        app.post("/v1/webhooks/mtn/collection", &payload)
    }))
    .await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    first.drained().await;
    let stored = second.stored_one("two-instances-1").await;
    assert_eq!(stored.get_i64("deliveries").unwrap(), 20);
    assert_eq!(second.transactions_for("two-instances-1").await.len(), 1);
}

#[actix_web::test]
async fn fifty_concurrent_identical_callbacks_are_stored_once() {
    let app = spawn_app().await;
    let payload = Mtn::collection_for("concurrent-ref-1", "SUCCESSFUL");
    let replies =
        join_all((0..50).map(|_| app.post("/v1/webhooks/mtn/collection", &payload))).await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let stored = app.stored_one("concurrent-ref-1").await;
    assert_eq!(stored.get_i64("deliveries").unwrap(), 50);
}

#[actix_web::test]
async fn a_new_status_for_the_same_key_is_a_new_document() {
    let app = spawn_app().await;
    for status in ["PENDING", "SUCCESSFUL"] {
        let reply = app
            .post(
                "/v1/webhooks/mtn/collection",
                &Mtn::collection_for("status-change-1", status),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let stored = app.stored("status-change-1").await;
    let statuses: Vec<&str> = stored
        .iter()
        .map(|document| document.get_str("status").unwrap())
        .collect();
    assert_eq!(statuses.len(), 2);
    assert!(
        statuses.contains(&"pending") && statuses.contains(&"successful"),
        "{statuses:?}"
    );
}

#[actix_web::test]
async fn mtn_may_deliver_with_put() {
    let app = spawn_app().await;
    let body = Mtn::collection_for("put-ref-1", "SUCCESSFUL")
        .to_string()
        .into_bytes();
    let reply = app
        .send(
            Method::PUT,
            "/v1/webhooks/mtn/collection",
            body,
            Some(TOKEN),
            Some("application/json"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        json!({"status": "accepted", "message": "Callback received"})
    );
    app.stored_one("put-ref-1").await;
}

#[actix_web::test]
async fn content_type_variants_and_a_rotated_token_are_accepted() {
    let app = spawn_app().await;
    let cases = [
        ("ws_CO_ct_1", Some("application/json;charset=UTF-8"), TOKEN),
        ("ws_CO_ct_2", Some("text/plain"), TOKEN),
        ("ws_CO_ct_3", None, "second-token-for-rotation"),
    ];
    for (key, content_type, token) in cases {
        let body = Mpesa::stk_push_failed(key, 1037, "DS timeout")
            .to_string()
            .into_bytes();
        let reply = app
            .send(
                Method::POST,
                "/v1/webhooks/mpesa/stkpush",
                body,
                Some(token),
                content_type,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{key}: {}", reply.body);
        assert_eq!(
            app.stored_one(key).await.get_str("status").unwrap(),
            "failed"
        );
    }
}

#[actix_web::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let generated = app
        .post("/v1/webhooks/mpesa/stkpush", &Mpesa::stk_push_timeout())
        .await;
    let id = generated
        .headers
        .get("x-request-id")
        .expect("generated X-Request-ID")
        .to_str()
        .unwrap();
    assert!(id.starts_with("req_"), "{id}");

    let mut request = awc::Client::default()
        .post(format!("{}/v1/webhooks/mpesa/stkpush", app.address))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .insert_header(("X-Request-ID", "caller-chosen-id-42"));
    request = request.content_type("application/json");
    let response = request
        .send_body(Mpesa::stk_push_timeout().to_string())
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("x-request-id").unwrap(),
        "caller-chosen-id-42"
    );
}

/// Waits for a document written without being waited on (validation decisions).
async fn eventually_stored(app: &crate::helpers::TestApp, key: &str) -> Document {
    for _ in 0..100 {
        if let Some(document) = app.stored(key).await.pop() {
            return document;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{key} was never stored");
}

#[actix_web::test]
async fn every_fixture_is_acknowledged_and_stored_with_its_status() {
    use mmo_actors::providers::{by_slug, fixtures, Reply};
    let app = spawn_app().await;
    for scenario in fixtures::all() {
        let provider = by_slug(scenario.provider).unwrap();
        let endpoint = provider
            .endpoints()
            .iter()
            .find(|e| e.callback_type == scenario.callback_type)
            .unwrap();
        let path = format!("/v1/webhooks/{}/{}", scenario.provider, endpoint.path);
        let reply = app.post(&path, &scenario.payload).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}: {}",
            scenario.name,
            reply.body
        );
        let stored = match endpoint.reply {
            Reply::AfterStoring(ack) => {
                assert_eq!(
                    reply.body,
                    serde_json::from_str::<Value>(ack).unwrap(),
                    "{}",
                    scenario.name
                );
                app.stored_one(scenario.key).await
            }
            Reply::Decision => {
                assert_eq!(
                    reply.body,
                    json!({"ResultCode": "0", "ResultDesc": "Accepted"}),
                    "{}",
                    scenario.name
                );
                eventually_stored(&app, scenario.key).await
            }
        };
        assert_eq!(
            stored.get_str("status").unwrap(),
            scenario.status.as_str(),
            "{}",
            scenario.name
        );
        assert_eq!(
            stored.get_str("callback_type").unwrap(),
            scenario.callback_type.as_str(),
            "{}",
            scenario.name
        );
        if endpoint.reply != Reply::Decision {
            let transactions = app.transactions_for(scenario.key).await;
            match scenario.callback_type.flow() {
                Some(flow) => {
                    assert_eq!(transactions.len(), 1, "{}", scenario.name);
                    assert_eq!(
                        transactions[0].get_str("flow").unwrap(),
                        flow,
                        "{}",
                        scenario.name
                    );
                    assert_eq!(
                        transactions[0].get_str("status").unwrap(),
                        scenario.status.as_str(),
                        "{}",
                        scenario.name
                    );
                }
                None => assert!(transactions.is_empty(), "{}", scenario.name),
            }
        }
    }
}

#[actix_web::test]
async fn a_b2c_queue_timeout_is_stored_as_still_pending() {
    let app = spawn_app().await;
    let reply = app
        .post(
            "/v1/webhooks/mpesa/b2c/timeout",
            &Mpesa::b2c_queue_timeout(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let stored = app.stored_one("AG_20191219_00005797af5d7d75f652").await;
    assert_eq!(stored.get_str("callback_type").unwrap(), "b2c_timeout");
    assert_eq!(stored.get_str("status").unwrap(), "pending");
    assert_eq!(stored.get_str("reason").unwrap(), "queue_timeout");
}

#[actix_web::test]
async fn c2b_validation_is_answered_from_local_rules_and_the_decision_is_kept() {
    let app = crate::helpers::spawn_app_with(crate::helpers::test_settings(&[
        ("MMO__C2B_VALIDATION__ACCEPTED_SHORTCODES", "600000,600001"),
        ("MMO__C2B_VALIDATION__MIN_AMOUNT", "10"),
        ("MMO__C2B_VALIDATION__ACCOUNT_PATTERN", "account[0-9]+"),
    ]))
    .await;
    let cases = [
        ("VAL-OK", "600001", "25.00", "account7", "0"),
        ("VAL-SHORTCODE", "999999", "25.00", "account7", "C2B00015"),
        ("VAL-AMOUNT", "600000", "5.00", "account7", "C2B00013"),
        ("VAL-ACCOUNT", "600000", "25.00", "other", "C2B00012"),
    ];
    for (key, shortcode, amount, reference, code) in cases {
        let mut payload = Mpesa::c2b_validation();
        payload["TransID"] = json!(key);
        payload["BusinessShortCode"] = json!(shortcode);
        payload["TransAmount"] = json!(amount);
        payload["BillRefNumber"] = json!(reference);
        let reply = app
            .post("/v1/webhooks/mpesa/c2b/validation", &payload)
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        let desc = if code == "0" { "Accepted" } else { "Rejected" };
        assert_eq!(
            reply.body,
            json!({"ResultCode": code, "ResultDesc": desc}),
            "{key}"
        );
        let stored = eventually_stored(&app, key).await;
        assert_eq!(stored.get_str("result_code").unwrap(), code);
        assert_eq!(
            stored.get_str("status").unwrap(),
            if code == "0" { "pending" } else { "failed" }
        );
        assert_eq!(stored.get_str("callback_type").unwrap(), "c2b_validation");
    }
}

#[actix_web::test]
async fn transaction_times_are_stored_in_utc_beside_the_raw_value() {
    let app = spawn_app().await;
    app.post(
        "/v1/webhooks/mpesa/c2b/confirmation",
        &Mpesa::c2b_confirmation_for("TIME1"),
    )
    .await;
    let stored = app.stored_one("TIME1").await;
    assert_eq!(
        stored.get_str("transaction_time_raw").unwrap(),
        "20191219104905"
    );
    let millis = stored
        .get_datetime("transaction_time")
        .unwrap()
        .timestamp_millis();
    let time = chrono::DateTime::from_timestamp_millis(millis).unwrap();
    assert_eq!(time.to_rfc3339(), "2019-12-19T07:49:05+00:00");
}

#[actix_web::test]
async fn personal_data_can_be_stored_as_salted_digests() {
    use mmo_actors::privacy::digest;
    let salt = "a-long-enough-salt-for-tests";
    let app = crate::helpers::spawn_app_with(crate::helpers::test_settings(&[
        ("MMO__PRIVACY__PERSONAL_DATA", "hash"),
        ("MMO__PRIVACY__SALT", salt),
    ]))
    .await;
    app.post(
        "/v1/webhooks/mpesa/c2b/confirmation",
        &Mpesa::c2b_confirmation_for("PRIV1"),
    )
    .await;
    let stored = app.stored_one("PRIV1").await;
    let number = digest(salt.as_bytes(), "254708374149");
    assert_eq!(stored.get_str("msisdn").unwrap(), number);
    let data = stored.get_document("callback_data").unwrap();
    assert_eq!(data.get_str("MSISDN").unwrap(), number);
    assert_eq!(
        data.get_str("FirstName").unwrap(),
        digest(salt.as_bytes(), "John")
    );
    assert!(
        !format!("{stored:?}").contains("254708374149") && !format!("{stored:?}").contains("Doe")
    );
    assert_eq!(
        app.transaction("PRIV1").await.get_str("msisdn").unwrap(),
        number
    );
}
