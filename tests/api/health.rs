use actix_web::http::StatusCode;
use chrono::DateTime;

use crate::helpers::{spawn_app, TOKEN};

#[actix_web::test]
async fn health_endpoints_report_each_provider() {
    let app = spawn_app().await;
    for (slug, name) in [
        ("mpesa", "mpesa"),
        ("mtn", "mtn_mobile_money"),
        ("airtel", "airtel_money"),
    ] {
        let reply = app
            .get(&format!("/v1/webhooks/{slug}/health"), Some(TOKEN))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["status"], "healthy");
        assert_eq!(reply.body["provider"], name);
        let timestamp = reply.body["timestamp"].as_str().unwrap();
        assert!(timestamp.ends_with('Z'), "{timestamp}");
        DateTime::parse_from_rfc3339(timestamp).expect("RFC 3339 timestamp");
        assert_eq!(reply.body.as_object().unwrap().len(), 3);
    }
}

#[actix_web::test]
async fn health_endpoints_require_the_token() {
    let app = spawn_app().await;
    let reply = app.get("/v1/webhooks/mpesa/health", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["code"], "AUTH_REQUIRED");
}
