//! Hostile and broken input over the real HTTP stack: each gets a clear 4xx with the documented body, is
//! quarantined, and leaves the service serving.

use actix_web::http::{Method, StatusCode};
use mmo_actors::providers::fixtures::MpesaCallbackFixtures as Mpesa;

use crate::helpers::{spawn_app, TOKEN};

#[actix_web::test]
async fn bad_inputs_get_a_documented_4xx_and_are_quarantined() {
    let app = spawn_app().await;
    let deep = format!("{}1{}", r#"{"a":"#.repeat(60), "}".repeat(60));
    let very_deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let huge_amount = format!(
        r#"{{"TransID": "HUGE1", "TransAmount": {}}}"#,
        "9".repeat(5000)
    );
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "empty body",
            "/v1/webhooks/mpesa/stkpush",
            Vec::new(),
            "not valid JSON",
        ),
        (
            "null",
            "/v1/webhooks/mpesa/stkpush",
            b"null".to_vec(),
            "not a JSON object",
        ),
        (
            "body of nulls",
            "/v1/webhooks/mpesa/stkpush",
            br#"{"Body": null}"#.to_vec(),
            "Body.stkCallback",
        ),
        (
            "nulls everywhere",
            "/v1/webhooks/mtn/collection",
            br#"{"referenceId": null, "externalId": null, "status": null}"#.to_vec(),
            "referenceId",
        ),
        (
            "deep nesting",
            "/v1/webhooks/airtel/payment",
            deep.into_bytes(),
            "nesting",
        ),
        (
            "nesting past the parser's limit",
            "/v1/webhooks/airtel/payment",
            very_deep.into_bytes(),
            "not valid JSON",
        ),
        (
            "huge number",
            "/v1/webhooks/mpesa/c2b/confirmation",
            huge_amount.into_bytes(),
            "TransAmount",
        ),
        (
            "exponent amount",
            "/v1/webhooks/mtn/collection",
            br#"{"externalId": "E1", "status": "SUCCESSFUL", "amount": 1e400}"#.to_vec(),
            "amount",
        ),
        (
            "invalid UTF-8",
            "/v1/webhooks/mpesa/c2b/confirmation",
            vec![b'{', b'"', 0xc3, 0x28, b'"', b':', b'1', b'}'],
            "not valid JSON",
        ),
        (
            "duplicate keys",
            "/v1/webhooks/mpesa/c2b/confirmation",
            br#"{"TransID": "A1", "TransID": "B2", "TransAmount": "10"}"#.to_vec(),
            "duplicate key",
        ),
        (
            "truncated",
            "/v1/webhooks/mtn/collection",
            br#"{"externalId": "E1", "sta"#.to_vec(),
            "not valid JSON",
        ),
        (
            "array",
            "/v1/webhooks/mtn/remittance",
            b"[1,2,3]".to_vec(),
            "not a JSON object",
        ),
        (
            "form data",
            "/v1/webhooks/airtel/notification",
            b"transaction[id]=1".to_vec(),
            "not valid JSON",
        ),
    ];
    for (name, path, body, reason) in &cases {
        let reply = app
            .send(
                Method::POST,
                path,
                body.clone(),
                Some(TOKEN),
                Some("application/json"),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            reply.body
        );
        assert_eq!(reply.body["code"], "INVALID_FORMAT", "{name}");
        assert_eq!(reply.body["error"], "Bad Request", "{name}");
        let quarantined = app.quarantined().await;
        let last = quarantined.last().unwrap();
        assert!(
            last.get_str("reason").unwrap().contains(reason),
            "{name}: {:?}",
            last.get_str("reason")
        );
        assert_eq!(last.get_str("path").unwrap(), *path);
    }
    assert_eq!(app.quarantined().await.len(), cases.len());
    assert!(app.stored("A1").await.is_empty() && app.stored("B2").await.is_empty());

    // Still serving.
    let reply = app
        .post("/v1/webhooks/mpesa/stkpush", &Mpesa::stk_push_timeout())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[actix_web::test]
async fn an_oversized_body_is_refused_and_its_beginning_kept() {
    let app = spawn_app().await;
    let body = vec![b' '; 70 * 1024];
    let reply = app
        .send(
            Method::POST,
            "/v1/webhooks/mpesa/stkpush",
            body,
            Some(TOKEN),
            Some("application/json"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.body["code"], "PAYLOAD_TOO_LARGE");
    let quarantined = app.quarantined().await;
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].get_str("raw").unwrap().len(), 4096);
    assert!(quarantined[0]
        .get_str("reason")
        .unwrap()
        .starts_with("body larger than 65536 bytes"));
}
