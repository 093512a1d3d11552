//! What an anonymous sender, a slow sender or a forger can and cannot do, over real HTTP.

use std::io::{Read, Write};
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use mmo_actors::providers::fixtures::MpesaCallbackFixtures as Mpesa;
use mmo_webhooks::auth::sign_base64;

use crate::helpers::{spawn_app_with, test_settings, unreachable_mongodb, TOKEN};

#[actix_web::test]
async fn an_anonymous_flood_never_crowds_out_callbacks() {
    // MongoDB is down, so nothing drains: everything accepted stays in the journal.
    let app = spawn_app_with(unreachable_mongodb(&[
        ("MMO__JOURNAL__MAX_BYTES", "1048576"),
        ("MMO__QUARANTINE__UNAUTHENTICATED_MAX_BYTES", "65536"),
        ("MMO__QUARANTINE__UNAUTHENTICATED_CLIENT_SHARE", "0.5"),
        ("MMO__RATE_LIMIT__WEBHOOKS_PER_MINUTE", "100000"),
    ]))
    .await;
    let junk = "x".repeat(8_000);
    for _ in 0..400 {
        let reply = app
            .send(
                Method::POST,
                "/v1/webhooks/mpesa/c2b/confirmation",
                junk.clone().into_bytes(),
                Some("wrong-token-0000000000"),
                Some("application/json"),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "the 401 still goes out"
        );
    }
    // Far more junk was sent than the budget holds; what is kept stays within the client's share.
    let held = app.journal.unauthenticated_bytes();
    assert!(held > 0, "some of it is kept for audit");
    assert!(
        held <= 65_536 / 2,
        "one client holds at most its share: {held}"
    );

    // Callbacks still have their whole budget.
    for i in 0..10 {
        let reply = app
            .post(
                "/v1/webhooks/mpesa/c2b/confirmation",
                &Mpesa::c2b_confirmation_for(&format!("FLOOD-OK-{i}")),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.body["checks"]["journal"], "accepting");
}

#[actix_web::test]
async fn unauthenticated_bodies_expire_and_authenticated_ones_are_kept() {
    let app = spawn_app_with(test_settings(&[])).await;
    let refused = app
        .send(
            Method::POST,
            "/v1/webhooks/mtn/collection",
            br#"{"externalId": "ANON-1"}"#.to_vec(),
            Some("not-a-token-00000000000"),
            Some("application/json"),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let unparseable = app
        .send(
            Method::POST,
            "/v1/webhooks/mtn/collection",
            b"{not json".to_vec(),
            Some(TOKEN),
            Some("application/json"),
        )
        .await;
    assert_eq!(unparseable.status, StatusCode::BAD_REQUEST);

    let kept = app.quarantined_at_least(2).await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    let anonymous = kept
        .iter()
        .find(|d| !d.get_bool("authenticated").unwrap())
        .unwrap();
    let received = anonymous
        .get_datetime("received_at")
        .unwrap()
        .timestamp_millis();
    let expires = anonymous
        .get_datetime("expire_at")
        .unwrap()
        .timestamp_millis();
    assert_eq!(expires - received, 30 * 86_400_000, "30 days by default");
    assert_eq!(anonymous.get_str("client").unwrap(), "127.0.0.1");
    assert_eq!(anonymous.get_str("provider").unwrap(), "mtn_mobile_money");
    let authenticated = kept
        .iter()
        .find(|d| d.get_bool("authenticated").unwrap())
        .unwrap();
    assert!(authenticated.get("expire_at").is_none(), "never expired");
    assert_eq!(authenticated.get_str("raw").unwrap(), "{not json");

    let indexes = app.rejected.list_index_names().await.unwrap();
    assert!(
        indexes.contains(&"unauthenticated_expiry".to_owned()),
        "{indexes:?}"
    );
}

#[actix_web::test]
async fn a_body_that_does_not_arrive_in_time_gets_408_and_its_beginning_is_kept() {
    let app = spawn_app_with(test_settings(&[(
        "MMO__SERVER__BODY_READ_TIMEOUT_SECS",
        "1",
    )]))
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let answer = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        let head = format!(
            "POST /v1/webhooks/mpesa/c2b/confirmation HTTP/1.1\r\nHost: localhost\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(br#"{"TransID": "SLOW1", "#).unwrap();
        // ...and the rest never comes.
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut answer = vec![0_u8; 4096];
        let read = stream.read(&mut answer).unwrap_or(0);
        String::from_utf8_lossy(&answer[..read]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"REQUEST_TIMEOUT""#), "{answer}");
    let kept = app.quarantined().await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].get_str("raw").unwrap(), r#"{"TransID": "SLOW1", "#);
    assert!(kept[0]
        .get_str("reason")
        .unwrap()
        .contains("not received within 1 s"));
}

#[actix_web::test]
async fn cheap_proofs_are_checked_before_any_signature() {
    let app = spawn_app_with(test_settings(&[(
        "MMO__PROVIDERS__MTN__SIGNATURE_SECRETS",
        "mtn-signing-secret-0123",
    )]))
    .await;
    // No valid bearer token and a forged signature: refused for the token, the signature never checked.
    let reply = app
        .request(
            Method::POST,
            "/v1/webhooks/mtn/collection",
            br#"{"externalId": "E-CHEAP", "status": "SUCCESSFUL"}"#.to_vec(),
            &[
                ("Authorization", "Bearer wrong-token-000000000".to_owned()),
                ("X-MTN-Signature", "f".repeat(64)),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["code"], "AUTH_REQUIRED");
}

#[actix_web::test]
async fn an_enforced_hash_over_the_transaction_alone_vouches_for_nothing_beside_it() {
    let key = "airtel-callback-key-0123";
    let app = spawn_app_with(test_settings(&[
        ("MMO__PROVIDERS__AIRTEL__HASH_KEYS", key),
        ("MMO__PROVIDERS__AIRTEL__HASH_MODE", "enforce"),
    ]))
    .await;
    let transaction = r#"{"id":"A-SIGNED","status_code":"TS","airtel_money_id":"MP-SIGNED"}"#;
    let body = format!(
        r#"{{"transaction":{transaction},"data":{{"transaction":{{"id":"A-SIGNED","amount":"999999","currency":"KES","msisdn":"254700000000"}}}},"hash":"{}"}}"#,
        sign_base64(key.as_bytes(), transaction.as_bytes())
    );
    let reply = app
        .send(
            Method::POST,
            "/v1/webhooks/airtel/payment",
            body.into_bytes(),
            Some(TOKEN),
            Some("application/json"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let stored = app.stored_one("A-SIGNED").await;
    assert_eq!(stored.get("amount"), Some(&mongodb::bson::Bson::Null));
    assert_eq!(stored.get("msisdn"), Some(&mongodb::bson::Bson::Null));
    assert_eq!(stored.get_str("status").unwrap(), "successful");
    assert!(
        stored
            .get_document("callback_data")
            .unwrap()
            .contains_key("data"),
        "the payload is kept as received"
    );
}
