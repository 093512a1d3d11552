//! Per-provider authentication policies over real HTTP: URL tokens, source addresses (and trusted
//! proxies), X-MTN-Signature, Airtel's hash, and all-of combinations from comma-separated env values.

use actix_web::http::{Method, StatusCode};
use mmo_actors::providers::fixtures::{
    AirtelMoneyCallbackFixtures as Airtel, MTNMoMoCallbackFixtures as Mtn,
    MpesaCallbackFixtures as Mpesa,
};
use mmo_webhooks::auth::{sign_base64, sign_hex};
use serde_json::json;

use crate::helpers::{spawn_app_with, test_settings, Reply, TestApp, TOKEN};

const URL_TOKEN: &str = "url-secret-7f3a9c0b5e";

fn json_header() -> (&'static str, String) {
    ("Content-Type", "application/json".to_owned())
}

async fn post_raw(app: &TestApp, path: &str, body: &str, headers: &[(&str, String)]) -> Reply {
    app.request(Method::POST, path, body.as_bytes().to_vec(), headers)
        .await
}

#[actix_web::test]
async fn a_url_token_in_the_path_or_the_query_authenticates_without_a_header() {
    let app = spawn_app_with(test_settings(&[
        ("MMO__PROVIDERS__MPESA__REQUIRE", "url_token"),
        (
            "MMO__PROVIDERS__MPESA__URL_TOKENS",
            &format!("old-url-token-1,{URL_TOKEN}"),
        ),
    ]))
    .await;
    let body = |id: &str| Mpesa::stk_push_failed(id, 1032, "Request cancelled by user").to_string();

    let in_path = post_raw(
        &app,
        &format!("/v1/webhooks/mpesa/stkpush/{URL_TOKEN}"),
        &body("ws_CO_path"),
        &[json_header()],
    )
    .await;
    assert_eq!(in_path.status, StatusCode::OK, "{}", in_path.body);
    let in_query = post_raw(
        &app,
        &format!("/v1/webhooks/mpesa/b2c/result?token={URL_TOKEN}"),
        &json!({"Result": {"ResultCode": 0, "ConversationID": "AG_query"}}).to_string(),
        &[],
    )
    .await;
    assert_eq!(in_query.status, StatusCode::OK, "{}", in_query.body);
    app.stored_one("ws_CO_path").await;
    app.stored_one("AG_query").await;

    // A bearer token alone no longer suffices, and a wrong URL token is refused — and quarantined without it.
    let bearer_only = app
        .post("/v1/webhooks/mpesa/stkpush", &Mpesa::stk_push_cancelled())
        .await;
    assert_eq!(bearer_only.status, StatusCode::UNAUTHORIZED);
    let wrong = post_raw(
        &app,
        "/v1/webhooks/mpesa/stkpush/not-the-token",
        &body("ws_CO_wrong"),
        &[],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["code"], "AUTH_REQUIRED");
    assert!(app.stored("ws_CO_wrong").await.is_empty());
    let quarantined = app.quarantined_at_least(2).await;
    assert_eq!(quarantined.len(), 2);
    for document in &quarantined {
        let recorded = format!("{document:?}");
        assert!(
            !recorded.contains("not-the-token") && !recorded.contains(URL_TOKEN),
            "{recorded}"
        );
        assert!(document
            .get_str("reason")
            .unwrap()
            .starts_with("unauthorized"));
    }
    assert!(quarantined
        .iter()
        .any(|d| d.get_str("path").unwrap() == "/v1/webhooks/mpesa/stkpush/<redacted>"));
}

#[actix_web::test]
async fn source_addresses_are_checked_and_forwarded_ones_believed_only_from_trusted_proxies() {
    let body = Mtn::collection_for("ip-ref-1", "SUCCESSFUL").to_string();
    let forwarded = [
        ("X-Forwarded-For", "196.201.214.200".to_owned()),
        json_header(),
    ];

    // Loopback (the test client) is not in the list: refused, whatever it forwards.
    let strict = spawn_app_with(test_settings(&[
        ("MMO__PROVIDERS__MTN__REQUIRE", "source_ip"),
        (
            "MMO__PROVIDERS__MTN__ALLOWED_IPS",
            "196.201.214.200,196.201.213.0/24",
        ),
    ]))
    .await;
    let refused = post_raw(&strict, "/v1/webhooks/mtn/collection", &body, &forwarded).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(strict.quarantined_at_least(1).await[0]
        .get_str("reason")
        .unwrap()
        .contains("127.0.0.1"));

    // Behind a trusted proxy (loopback), the forwarded operator address is believed.
    let proxied = spawn_app_with(test_settings(&[
        ("MMO__PROVIDERS__MTN__REQUIRE", "source_ip"),
        (
            "MMO__PROVIDERS__MTN__ALLOWED_IPS",
            "196.201.214.200,196.201.213.0/24",
        ),
        ("MMO__SERVER__TRUSTED_PROXIES", "127.0.0.1/32"),
    ]))
    .await;
    let accepted = post_raw(&proxied, "/v1/webhooks/mtn/collection", &body, &forwarded).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    let outsider = post_raw(
        &proxied,
        "/v1/webhooks/mtn/collection",
        &body,
        &[("X-Forwarded-For", "203.0.113.5".to_owned())],
    )
    .await;
    assert_eq!(outsider.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn all_required_proofs_must_pass() {
    let app = spawn_app_with(test_settings(&[
        ("MMO__PROVIDERS__MPESA__REQUIRE", "url_token,source_ip"),
        ("MMO__PROVIDERS__MPESA__URL_TOKENS", URL_TOKEN),
        ("MMO__PROVIDERS__MPESA__ALLOWED_IPS", "127.0.0.1"),
    ]))
    .await;
    let body = Mpesa::c2b_confirmation_for("ALLOF1").to_string();
    let both = post_raw(
        &app,
        &format!("/v1/webhooks/mpesa/c2b/confirmation/{URL_TOKEN}"),
        &body,
        &[],
    )
    .await;
    assert_eq!(both.status, StatusCode::OK);
    let no_token = post_raw(&app, "/v1/webhooks/mpesa/c2b/confirmation", &body, &[]).await;
    assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);

    let elsewhere = spawn_app_with(test_settings(&[
        ("MMO__PROVIDERS__MPESA__REQUIRE", "url_token,source_ip"),
        ("MMO__PROVIDERS__MPESA__URL_TOKENS", URL_TOKEN),
        ("MMO__PROVIDERS__MPESA__ALLOWED_IPS", "196.201.214.200"),
    ]))
    .await;
    let wrong_source = post_raw(
        &elsewhere,
        &format!("/v1/webhooks/mpesa/c2b/confirmation/{URL_TOKEN}"),
        &body,
        &[],
    )
    .await;
    assert_eq!(wrong_source.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn mtn_signatures_are_verified_over_the_raw_bytes() {
    let app = spawn_app_with(test_settings(&[
        ("MMO__PROVIDERS__MTN__REQUIRE", "hmac_header"),
        (
            "MMO__PROVIDERS__MTN__SIGNATURE_SECRETS",
            "retiring-secret,current-secret",
        ),
    ]))
    .await;
    // Deliberately not compact: a re-serialized body would not verify.
    let body = r#"{ "referenceId": "sig-ref-1", "externalId": "e1", "status": "SUCCESSFUL", "amount": "1000.00", "currency": "UGX" }"#;
    let signed_hex = [
        (
            "X-MTN-Signature",
            sign_hex(b"current-secret", body.as_bytes()),
        ),
        json_header(),
    ];
    assert_eq!(
        post_raw(&app, "/v1/webhooks/mtn/collection", body, &signed_hex)
            .await
            .status,
        StatusCode::OK
    );
    let signed_base64 = [(
        "X-MTN-Signature",
        sign_base64(b"retiring-secret", body.as_bytes()),
    )];
    assert_eq!(
        post_raw(&app, "/v1/webhooks/mtn/collection", body, &signed_base64)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.stored_one("sig-ref-1")
            .await
            .get_i64("deliveries")
            .unwrap(),
        2
    );

    let forged = [(
        "X-MTN-Signature",
        sign_hex(b"guessed-secret", body.as_bytes()),
    )];
    let reply = post_raw(&app, "/v1/webhooks/mtn/collection", body, &forged).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.body,
        json!({"error": "Unauthorized", "message": "Invalid signature", "code": "INVALID_SIGNATURE"})
    );
    let missing = post_raw(&app, "/v1/webhooks/mtn/collection", body, &[]).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.body["code"], "AUTH_REQUIRED");
}

#[actix_web::test]
async fn a_presented_signature_is_verified_even_where_not_required() {
    let app = spawn_app_with(test_settings(&[(
        "MMO__PROVIDERS__MTN__SIGNATURE_SECRETS",
        "current-secret",
    )]))
    .await;
    let body = Mtn::collection_for("sig-ref-2", "SUCCESSFUL").to_string();
    let forged = [
        ("Authorization", format!("Bearer {TOKEN}")),
        ("X-MTN-Signature", sign_hex(b"wrong", body.as_bytes())),
    ];
    let reply = post_raw(&app, "/v1/webhooks/mtn/collection", &body, &forged).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["code"], "INVALID_SIGNATURE");
    let unsigned = post_raw(
        &app,
        "/v1/webhooks/mtn/collection",
        &body,
        &[("Authorization", format!("Bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(
        unsigned.status,
        StatusCode::OK,
        "bearer is the policy; no signature is required"
    );
}

fn airtel_body(id: &str, hash: &str) -> String {
    format!(
        r#"{{"transaction": {{"id": "{id}", "message": "Paid", "status_code": "TS", "airtel_money_id": "MP{id}"}}, "hash": "{hash}"}}"#
    )
}

fn airtel_signed(id: &str, key: &[u8]) -> String {
    let transaction = format!(
        r#"{{"id": "{id}", "message": "Paid", "status_code": "TS", "airtel_money_id": "MP{id}"}}"#
    );
    airtel_body(id, &sign_base64(key, transaction.as_bytes()))
}

#[actix_web::test]
async fn airtel_hashes_are_enforced_when_the_mode_says_so() {
    let app = spawn_app_with(test_settings(&[
        ("MMO__PROVIDERS__AIRTEL__REQUIRE", "airtel_hash"),
        ("MMO__PROVIDERS__AIRTEL__HASH_KEYS", "airtel-key-1"),
        ("MMO__PROVIDERS__AIRTEL__HASH_MODE", "enforce"),
    ]))
    .await;
    let good = post_raw(
        &app,
        "/v1/webhooks/airtel/payment",
        &airtel_signed("AH1", b"airtel-key-1"),
        &[],
    )
    .await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    let bad = post_raw(
        &app,
        "/v1/webhooks/airtel/payment",
        &airtel_signed("AH2", b"someone-else"),
        &[],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.body["code"], "INVALID_SIGNATURE");
    let missing = post_raw(
        &app,
        "/v1/webhooks/airtel/payment",
        &Airtel::payment_for("AH3", "TS").to_string(),
        &[],
    )
    .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    app.stored_one("AH1").await;
    assert!(app.stored("AH2").await.is_empty() && app.stored("AH3").await.is_empty());
}

#[actix_web::test]
async fn airtel_hashes_are_only_observed_in_observe_mode() {
    let app = spawn_app_with(test_settings(&[
        ("MMO__PROVIDERS__AIRTEL__REQUIRE", "airtel_hash"),
        ("MMO__PROVIDERS__AIRTEL__HASH_KEYS", "airtel-key-1"),
        ("MMO__PROVIDERS__AIRTEL__HASH_MODE", "observe"),
    ]))
    .await;
    let bad = post_raw(
        &app,
        "/v1/webhooks/airtel/payment",
        &airtel_signed("AO1", b"someone-else"),
        &[],
    )
    .await;
    assert_eq!(bad.status, StatusCode::OK);
    app.stored_one("AO1").await;
}
