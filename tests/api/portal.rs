//! The portal of a merchant's developer, over real HTTP against the real MongoDB: links only for admin
//! tokens, opened only while valid and as issued, and one owner's link never shows another owner's
//! endpoints, events or attempts.

use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::console::Browser;
use crate::delivery::{admin, app_delivering, receiver};
use crate::helpers::{TestApp, TOKEN};

pub(crate) async fn link(app: &TestApp, owner: &str) -> String {
    let reply = admin(
        app,
        Method::POST,
        "/v1/portal/links",
        json!({"owner": owner}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["owner"], owner);
    assert!(reply.body["expires_at"].is_string());
    let url = reply.body["url"].as_str().unwrap();
    let at = url.find("/portal/enter?link=").expect("a portal link");
    url[at..].to_owned()
}

pub(crate) async fn endpoint(app: &TestApp, body: Value) -> String {
    let reply = admin(app, Method::POST, "/v1/endpoints", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// Opens the portal with `link`; answers the session cookie.
pub(crate) async fn enter(browser: &Browser, link: &str) -> String {
    let opened = browser.get(link, None).await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.text);
    assert!(opened.text.contains("url=/portal/"), "{}", opened.text);
    let cookie = opened.header("set-cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/portal"] {
        assert!(
            cookie.split("; ").any(|part| part == flag),
            "{flag} in {cookie}"
        );
    }
    cookie.split(';').next().unwrap().to_owned()
}

#[actix_web::test]
async fn links_are_for_admin_tokens_and_name_an_owner() {
    let app = app_delivering(&[]).await;
    for token in [None, Some(TOKEN), Some("wrong")] {
        let reply = app
            .send(
                Method::POST,
                "/v1/portal/links",
                json!({"owner": "merchant-a"}).to_string().into_bytes(),
                token,
                Some("application/json"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
    for body in [
        json!({}),
        json!({"owner": "two words"}),
        json!({"owner": "a", "extra": 1}),
    ] {
        let reply = admin(&app, Method::POST, "/v1/portal/links", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
    }
}

#[actix_web::test]
async fn a_link_opens_only_while_valid_and_as_issued() {
    let app = app_delivering(&[("MMO__PORTAL__LINK_TTL_SECS", "1")]).await;
    let browser = Browser::of(&app);
    let issued = link(&app, "merchant-a").await;
    // Another owner's name under this link's signature.
    let other = link(&app, "merchant-b").await;
    let (_, signature) = issued.rsplit_once('.').unwrap();
    let (payload, _) = other.rsplit_once('.').unwrap();
    for forged in [
        format!("{payload}.{signature}"),
        "/portal/enter?link=1.bWVyY2hhbnQtYQ.00".to_owned(),
        "/portal/enter".to_owned(),
    ] {
        let refused = browser.get(&forged, None).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{forged}");
        assert!(refused.header("set-cookie").is_empty());
    }
    // Without a session, and with a console session, the portal is closed.
    assert_eq!(
        browser.get("/portal/", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let console = browser.sign_in().await;
    let value = console.split_once('=').unwrap().1;
    let borrowed = browser
        .get("/portal/", Some(&format!("mmo_portal={value}")))
        .await;
    assert_eq!(borrowed.status, StatusCode::UNAUTHORIZED);

    let session = enter(&browser, &issued).await;
    let home = browser.get("/portal/", Some(&session)).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.text);
    assert!(home.text.contains("merchant-a"));
    assert_eq!(
        home.header("content-security-policy"),
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );

    actix_web::rt::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = browser.get(&issued, None).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED, "expired");
}

#[actix_web::test]
async fn one_owners_link_never_shows_another_owners_endpoints_events_or_attempts() {
    let app = app_delivering(&[]).await;
    let (receiver_a, receiver_b) = (receiver(|_| (204, None)), receiver(|_| (503, None)));
    let mine = endpoint(
        &app,
        json!({"url": receiver_a.url, "owner": "merchant-a", "event_types": ["transaction.successful"]}),
    )
    .await;
    let theirs = endpoint(&app, json!({"url": receiver_b.url, "owner": "merchant-b"})).await;
    let key = format!("portal-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    app.mtn_collection(&key, "SUCCESSFUL").await;
    let failed_key = format!(
        "portal-failed-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    app.mtn_collection(&failed_key, "FAILED").await;
    receiver_a
        .until("the successful payment", |got| !got.is_empty())
        .await;
    receiver_b
        .until("both payments", |got| got.len() >= 2)
        .await;
    // Both are listed once their first attempts' outcomes are written (just after the receivers got them).
    let mut events = admin(&app, Method::GET, "/v1/events", Value::Null).await;
    for _ in 0..200 {
        if events.body["items"].as_array().map_or(0, Vec::len) >= 2 {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
        events = admin(&app, Method::GET, "/v1/events", Value::Null).await;
    }
    let event_of = |key: &str| {
        events.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|event| event["transaction_key"] == key)
            .unwrap_or_else(|| panic!("an event for {key}: {}", events.body))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (shared, only_theirs) = (event_of(&key), event_of(&failed_key));

    let browser = Browser::of(&app);
    let session = enter(&browser, &link(&app, "merchant-a").await).await;
    let home = browser.get("/portal/", Some(&session)).await;
    assert!(home.text.contains(&mine), "{}", home.text);
    assert!(
        home.text.contains(&format!("/portal/events/{shared}")),
        "{}",
        home.text
    );
    assert!(!home.text.contains(&theirs), "{}", home.text);
    assert!(!home.text.contains(&only_theirs), "{}", home.text);

    assert_eq!(
        browser
            .get(&format!("/portal/endpoints/{mine}"), Some(&session))
            .await
            .status,
        StatusCode::OK
    );
    for path in [
        format!("/portal/endpoints/{theirs}"),
        format!("/portal/events/{only_theirs}"),
        "/portal/endpoints/ep_none".to_owned(),
    ] {
        let hidden = browser.get(&path, Some(&session)).await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!hidden.text.contains(&theirs));
    }
    // The event both got shows only this owner's endpoint and attempts.
    let event = browser
        .get(&format!("/portal/events/{shared}"), Some(&session))
        .await;
    assert_eq!(event.status, StatusCode::OK, "{}", event.text);
    assert!(event.text.contains(&mine), "{}", event.text);
    assert!(!event.text.contains(&theirs), "{}", event.text);
    assert!(!event.text.contains("<td>503</td>"), "{}", event.text);

    // Forms need the session's CSRF token, and reach only this owner's endpoints.
    let csrf = home.csrf();
    let refused = browser
        .post(
            &format!("/portal/endpoints/{mine}/rotate"),
            Some(&session),
            &[],
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    for action in ["rotate", "secret", "enabled"] {
        let hidden = browser
            .post(
                &format!("/portal/endpoints/{theirs}/{action}"),
                Some(&session),
                &[("csrf", &csrf), ("enabled", "false")],
                &[],
            )
            .await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{action}");
    }
    let still = admin(
        &app,
        Method::GET,
        &format!("/v1/endpoints/{theirs}"),
        Value::Null,
    )
    .await;
    assert_eq!(still.body["enabled"], true);
    let revealed = browser
        .post(
            &format!("/portal/endpoints/{mine}/secret"),
            Some(&session),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(revealed.status, StatusCode::OK);
    assert!(revealed.text.contains("whsec_"), "{}", revealed.text);

    // An endpoint added here belongs to this owner, whatever the form says; errors show at the field.
    let wrong = browser
        .post(
            "/portal/endpoints",
            Some(&session),
            &[("csrf", &csrf), ("url", "ftp://example.com/")],
            &[],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(
        wrong.text.contains(r#"aria-invalid="true""#),
        "{}",
        wrong.text
    );
    assert!(
        wrong.text.contains("ftp://example.com/"),
        "the form keeps what was typed"
    );
    let added = browser
        .post(
            "/portal/endpoints",
            Some(&session),
            &[
                ("csrf", &csrf),
                ("url", &receiver_a.url),
                ("owner", "merchant-b"),
                ("event_types", "transaction.failed"),
            ],
            &[],
        )
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    assert!(added.text.contains("whsec_"), "{}", added.text);
    let listed = admin(&app, Method::GET, "/v1/endpoints", Value::Null).await;
    let new = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["id"] != mine.as_str() && item["id"] != theirs.as_str())
        .expect("the endpoint added in the portal")
        .clone();
    assert_eq!(new["owner"], "merchant-a", "{new}");
    assert_eq!(new["event_types"], json!(["transaction.failed"]));
}
