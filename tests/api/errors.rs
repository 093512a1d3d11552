use actix_web::http::{Method, StatusCode};
use mmo_actors::providers::fixtures::MpesaCallbackFixtures as Mpesa;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, test_settings, unreachable_mongodb, TOKEN};

fn unauthorized() -> serde_json::Value {
    json!({"error": "Unauthorized", "message": "Invalid or missing authentication token", "code": "AUTH_REQUIRED"})
}

fn invalid_format() -> serde_json::Value {
    json!({"error": "Bad Request", "message": "Invalid callback data format", "code": "INVALID_FORMAT"})
}

#[actix_web::test]
async fn a_missing_or_wrong_token_is_refused_stored_nowhere_but_quarantine() {
    let app = spawn_app().await;
    let body = Mpesa::stk_push_success_for("ws_CO_unauth", "R1")
        .to_string()
        .into_bytes();
    for token in [None, Some("wrong-token"), Some("")] {
        let reply = app
            .send(
                Method::POST,
                "/v1/webhooks/mpesa/stkpush",
                body.clone(),
                token,
                Some("application/json"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(reply.body, unauthorized());
    }
    assert!(
        app.stored("ws_CO_unauth").await.is_empty(),
        "an unauthenticated callback is never stored as genuine"
    );
    let quarantined = app.quarantined_at_least(3).await;
    assert_eq!(quarantined.len(), 3);
    assert!(quarantined.iter().all(|document| document
        .get_str("reason")
        .unwrap()
        .starts_with("unauthorized")));
    assert!(quarantined
        .iter()
        .all(|document| !document.get_str("raw").unwrap().contains("Bearer")));
}

#[actix_web::test]
async fn only_a_bounded_prefix_of_an_unauthenticated_body_is_kept() {
    let app = spawn_app().await;
    let mut payload = Mpesa::c2b_confirmation_for("UNAUTH-BIG");
    payload["BillRefNumber"] = json!("y".repeat(20_000));
    let body = payload.to_string().into_bytes();
    let reply = app
        .send(
            Method::POST,
            "/v1/webhooks/mpesa/c2b/confirmation",
            body.clone(),
            Some("wrong"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let quarantined = app.quarantined_at_least(1).await;
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].get_str("raw").unwrap().len(), 4096);
    assert!(quarantined[0]
        .get_str("reason")
        .unwrap()
        .ends_with(&format!("(body truncated to 4096 of {} bytes)", body.len())));
}

#[actix_web::test]
async fn a_body_that_is_not_json_is_quarantined_and_answered_400() {
    let app = spawn_app().await;
    let reply = app
        .send(
            Method::POST,
            "/v1/webhooks/mtn/collection",
            b"referenceId=abc&status=SUCCESSFUL".to_vec(),
            Some(TOKEN),
            Some("application/x-www-form-urlencoded"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body, invalid_format());
    let request_id = reply
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();

    let quarantined = app.quarantined().await;
    assert_eq!(quarantined.len(), 1);
    let rejected = &quarantined[0];
    assert_eq!(
        rejected.get_str("raw").unwrap(),
        "referenceId=abc&status=SUCCESSFUL"
    );
    assert_eq!(
        rejected.get_str("path").unwrap(),
        "/v1/webhooks/mtn/collection"
    );
    assert!(rejected
        .get_str("reason")
        .unwrap()
        .contains("not valid JSON"));
    assert_eq!(rejected.get_str("request_id").unwrap(), request_id);
    assert!(rejected.get_datetime("received_at").is_ok());
}

#[actix_web::test]
async fn json_the_parser_cannot_use_is_quarantined_and_answered_400() {
    let app = spawn_app().await;
    let cases: [(&str, &[u8]); 6] = [
        ("/v1/webhooks/mpesa/stkpush", br#"{"Body": {}}"#),
        (
            "/v1/webhooks/mpesa/b2c/result",
            br#"{"Result": {"ResultCode": 0}}"#,
        ),
        (
            "/v1/webhooks/mpesa/c2b/confirmation",
            br#"{"TransAmount": "10"}"#,
        ),
        (
            "/v1/webhooks/airtel/payment",
            br#"{"transaction": {"status": "TS"}}"#,
        ),
        ("/v1/webhooks/mtn/remittance", b"[]"),
        ("/v1/webhooks/mtn/collection", b""),
    ];
    for (path, body) in cases {
        let reply = app
            .send(
                Method::POST,
                path,
                body.to_vec(),
                Some(TOKEN),
                Some("application/json"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(reply.body, invalid_format());
    }
    let quarantined = app.quarantined().await;
    assert_eq!(quarantined.len(), cases.len());
    assert_eq!(
        app.callbacks
            .count_documents(mongodb::bson::doc! {})
            .await
            .unwrap(),
        0
    );
}

#[actix_web::test]
async fn invalid_utf8_is_quarantined_with_its_exact_bytes() {
    let app = spawn_app().await;
    let body = vec![b'{', 0xff, 0xfe, b'}'];
    let reply = app
        .send(
            Method::POST,
            "/v1/webhooks/airtel/notification",
            body.clone(),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let quarantined = app.quarantined().await;
    let raw = quarantined[0].get_binary_generic("raw_bytes").unwrap();
    assert_eq!(raw, &body);
}

#[actix_web::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let app = spawn_app_with(test_settings(&[("MMO__SERVER__MAX_BODY_BYTES", "1024")])).await;
    let mut payload = Mpesa::c2b_confirmation_for("BIG1");
    payload["BillRefNumber"] = json!("x".repeat(2048));
    let reply = app
        .post("/v1/webhooks/mpesa/c2b/confirmation", &payload)
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.body["code"], "PAYLOAD_TOO_LARGE");
    assert!(app.stored("BIG1").await.is_empty());
}

#[actix_web::test]
async fn an_unknown_path_is_a_json_404() {
    let app = spawn_app().await;
    let reply = app.post("/v1/webhooks/vodacom/stkpush", &json!({})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["code"], "NOT_FOUND");
}

#[actix_web::test]
async fn while_mongodb_is_unreachable_callbacks_are_acknowledged_from_the_journal() {
    let app = spawn_app_with(unreachable_mongodb(&[])).await;
    let reply = app
        .post("/v1/webhooks/mpesa/stkpush", &Mpesa::stk_push_success())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({"ResultCode": 0, "ResultDesc": "Accepted"})
    );
    // Durable locally, waiting for MongoDB.
    assert_eq!(app.journal.backlog().entries, 1);
    assert_eq!(app.journal.stored_entries().unwrap(), 1);
}

#[actix_web::test]
async fn a_full_journal_answers_503_instead_of_acknowledging() {
    let app = spawn_app_with(unreachable_mongodb(&[(
        "MMO__JOURNAL__MAX_BYTES",
        "1048576",
    )]))
    .await;
    let mut statuses = Vec::new();
    for i in 0..40 {
        let mut payload = Mpesa::c2b_confirmation_for(&format!("FULL{i}"));
        payload["BillRefNumber"] = json!("x".repeat(50_000));
        let reply = app
            .post("/v1/webhooks/mpesa/c2b/confirmation", &payload)
            .await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(reply.body["code"], "STORAGE_UNAVAILABLE");
            assert_eq!(reply.headers.get("retry-after").unwrap(), "5");
        }
        statuses.push(reply.status);
    }
    let acknowledged = statuses
        .iter()
        .filter(|status| **status == StatusCode::OK)
        .count();
    assert!(
        acknowledged >= 10,
        "the journal took what fits: {acknowledged}"
    );
    assert!(
        statuses[acknowledged..]
            .iter()
            .all(|status| *status == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert_eq!(
        app.journal.backlog().entries as usize,
        acknowledged,
        "every acknowledged callback is kept"
    );
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["checks"]["journal"], "full");
}

#[actix_web::test]
async fn a_failed_fsync_is_answered_503_and_readiness_reports_the_journal_failing() {
    use mmo_actors::journal::testing::{SyncProbe, SyncProbeBackend};
    use mmo_actors::journal::Journal;
    use std::sync::Arc;

    let mut settings = test_settings(&[]);
    settings.journal.dir = crate::helpers::journal_dir();
    let probe = Arc::new(SyncProbe::default());
    let backend = SyncProbeBackend::open(&settings.journal.dir, Arc::clone(&probe)).unwrap();
    let journal = Journal::open_on(settings.journal_options(), Some(Box::new(backend))).unwrap();
    let app = crate::helpers::spawn_app_on(settings, journal).await;

    let fine = app
        .post(
            "/v1/webhooks/mpesa/c2b/confirmation",
            &Mpesa::c2b_confirmation_for("SYNC-OK"),
        )
        .await;
    assert_eq!(fine.status, StatusCode::OK);
    assert!(
        probe.finished() >= 1,
        "the acknowledgement followed an fsync"
    );

    probe.fail(true);
    let requests = (0..6).map(|i| {
        let payload = Mpesa::c2b_confirmation_for(&format!("SYNC-FAIL-{i}"));
        let app = &app;
        async move {
            app.post("/v1/webhooks/mpesa/c2b/confirmation", &payload)
                .await
        }
    });
    for reply in futures_util::future::join_all(requests).await {
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.body["code"], "STORAGE_UNAVAILABLE");
    }
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["checks"]["journal"], "failing");
}

/// Callbacks wait in the journal while MongoDB is away; writes that go straight to MongoDB (an
/// expectation, a replay, an endpoint) say so: 503 STORAGE_UNAVAILABLE with `Retry-After`, within the
/// server-selection timeout, never a hang or a 500.
#[actix_web::test]
async fn while_mongodb_is_unreachable_direct_writes_answer_503_with_retry_after() {
    const CLIENT: &str = "client-token-0123456789abcdef";
    const ADMIN: &str = "admin-token-0123456789abcdef";
    let app = spawn_app_with(unreachable_mongodb(&[
        ("MMO__AUTH__CLIENT_TOKENS", CLIENT),
        ("MMO__AUTH__ADMIN_TOKENS", ADMIN),
    ]))
    .await;
    let expectation = json!({"provider": "mtn", "callback_type": "collection", "key": "away-1",
                             "amount": "100", "currency": "UGX", "expected_within_secs": 60});
    let writes = [
        ("/v1/expectations", CLIENT, expectation),
        (
            "/v1/endpoints",
            ADMIN,
            json!({"url": "https://orders.example.com/events"}),
        ),
        (
            "/v1/rejected/6750a0000000000000000000/replay",
            ADMIN,
            Value::Null,
        ),
    ];
    for (path, token, body) in writes {
        let started = std::time::Instant::now();
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let reply = app
            .send(
                Method::POST,
                path,
                body,
                Some(token),
                Some("application/json"),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            reply.body
        );
        assert_eq!(reply.body["code"], "STORAGE_UNAVAILABLE", "{path}");
        assert_eq!(reply.headers.get("retry-after").unwrap(), "5", "{path}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{path} took {:?}",
            started.elapsed()
        );
    }
}
