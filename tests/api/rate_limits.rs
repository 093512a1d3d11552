//! Rate limits over real HTTP: headers on every response, 429 with the documented body, separate limits
//! for health endpoints and for operators' allowlisted addresses.

use actix_web::http::{Method, StatusCode};
use mmo_actors::providers::fixtures::MpesaCallbackFixtures as Mpesa;

use crate::helpers::{spawn_app_with, test_settings, TOKEN};

fn header(reply: &crate::helpers::Reply, name: &str) -> u64 {
    reply
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[actix_web::test]
async fn webhook_requests_beyond_the_limit_get_429_with_retry_after() {
    let app = spawn_app_with(test_settings(&[(
        "MMO__RATE_LIMIT__WEBHOOKS_PER_MINUTE",
        "3",
    )]))
    .await;
    let mut remaining = Vec::new();
    for i in 0..3 {
        let reply = app
            .post(
                "/v1/webhooks/mpesa/stkpush",
                &Mpesa::stk_push_failed(&format!("ws_CO_rl_{i}"), 1037, "t"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(header(&reply, "x-ratelimit-limit"), 3);
        assert!(header(&reply, "x-ratelimit-reset") > 1_700_000_000);
        remaining.push(header(&reply, "x-ratelimit-remaining"));
    }
    assert_eq!(remaining, [2, 1, 0]);

    let refused = app
        .post(
            "/v1/webhooks/mpesa/stkpush",
            &Mpesa::stk_push_failed("ws_CO_rl_3", 1037, "t"),
        )
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["error"], "Too Many Requests");
    assert_eq!(refused.body["message"], "Rate limit exceeded");
    assert_eq!(refused.body["code"], "RATE_LIMIT_EXCEEDED");
    let retry_after = refused.body["retry_after"].as_u64().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(header(&refused, "retry-after"), retry_after);
    assert_eq!(header(&refused, "x-ratelimit-remaining"), 0);
    assert!(
        app.stored("ws_CO_rl_3").await.is_empty(),
        "a refused callback is not acknowledged, not stored"
    );

    // Another client (a different, valid token) has its own allowance.
    let other = app
        .send(
            Method::POST,
            "/v1/webhooks/mpesa/stkpush",
            Mpesa::stk_push_timeout().to_string().into_bytes(),
            Some("second-token-for-rotation"),
            None,
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
}

#[actix_web::test]
async fn health_endpoints_have_their_own_limit() {
    let app = spawn_app_with(test_settings(&[
        ("MMO__RATE_LIMIT__HEALTH_PER_MINUTE", "2"),
        ("MMO__RATE_LIMIT__WEBHOOKS_PER_MINUTE", "50"),
    ]))
    .await;
    assert_eq!(
        app.get("/v1/webhooks/mtn/health", Some(TOKEN)).await.status,
        StatusCode::OK
    );
    let second = app.get("/v1/webhooks/airtel/health", Some(TOKEN)).await;
    assert_eq!(header(&second, "x-ratelimit-limit"), 2);
    assert_eq!(
        app.get("/v1/webhooks/mpesa/health", Some(TOKEN))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let webhook = app
        .post("/v1/webhooks/mpesa/stkpush", &Mpesa::stk_push_timeout())
        .await;
    assert_eq!(webhook.status, StatusCode::OK);
    assert_eq!(header(&webhook, "x-ratelimit-limit"), 50);
}

#[actix_web::test]
async fn an_allowlisted_operator_address_gets_its_own_higher_limit() {
    let app = spawn_app_with(test_settings(&[
        ("MMO__RATE_LIMIT__WEBHOOKS_PER_MINUTE", "2"),
        ("MMO__RATE_LIMIT__PROVIDER_SOURCES_PER_MINUTE", "100"),
        ("MMO__PROVIDERS__MPESA__REQUIRE", "source_ip"),
        ("MMO__PROVIDERS__MPESA__ALLOWED_IPS", "127.0.0.1"),
    ]))
    .await;
    for i in 0..5 {
        let body = Mpesa::c2b_confirmation_for(&format!("BURST{i}"))
            .to_string()
            .into_bytes();
        let reply = app
            .send(
                Method::POST,
                "/v1/webhooks/mpesa/c2b/confirmation",
                body,
                None,
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "burst request {i}");
        assert_eq!(header(&reply, "x-ratelimit-limit"), 100);
    }
}
