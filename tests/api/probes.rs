//! Liveness and readiness probes: unauthenticated, never rate limited, and honest about MongoDB.

use actix_web::http::StatusCode;

use crate::helpers::{spawn_app_with, test_settings, unreachable_mongodb};

#[actix_web::test]
async fn probes_answer_without_a_token_and_are_never_throttled() {
    let app = spawn_app_with(test_settings(&[
        ("MMO__RATE_LIMIT__WEBHOOKS_PER_MINUTE", "1"),
        ("MMO__RATE_LIMIT__HEALTH_PER_MINUTE", "1"),
    ]))
    .await;
    app.mongodb_checked().await;
    for _ in 0..5 {
        let live = app.get("/livez", None).await;
        assert_eq!(live.status, StatusCode::OK);
        assert_eq!(live.body["status"], "alive");
        let ready = app.get("/readyz", None).await;
        assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
        assert_eq!(ready.body["status"], "ready");
        assert_eq!(ready.body["checks"]["mongodb"], "reachable");
        assert!(ready.headers.get("x-ratelimit-limit").is_none());
    }
}

#[actix_web::test]
async fn readiness_reports_an_unreachable_mongodb_but_holds_while_the_journal_accepts() {
    let app = spawn_app_with(unreachable_mongodb(&[])).await;
    assert_eq!(app.get("/livez", None).await.status, StatusCode::OK);
    app.mongodb_checked().await;
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["checks"]["mongodb"], "unreachable");
    assert_eq!(ready.body["checks"]["journal"], "accepting");
    assert_eq!(ready.body["checks"]["journal_backlog"]["entries"], 0);
}
