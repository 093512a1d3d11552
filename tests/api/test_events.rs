//! "Send a test event" (`POST /v1/endpoints/{id}/test`, the console's and the portal's buttons), over
//! real HTTP to real receivers: the event reaches only the endpoint asked for, signed with its secret,
//! and its attempt is recorded where the answer links to.

use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::console::Browser;
use crate::delivery::{admin, app_delivering, receiver, register, verifies, wait_for_status};
use crate::helpers::{TestApp, TOKEN};
use crate::portal::{endpoint, enter, link};

/// Every `endpoint.test` event stored, read through the query API.
async fn test_events(app: &TestApp) -> Vec<Value> {
    let listed = admin(app, Method::GET, "/v1/events?limit=200", Value::Null).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "endpoint.test")
        .cloned()
        .collect()
}

/// Reloads `path` until it shows `wanted` (20 s at most).
async fn page_showing(browser: &Browser, path: &str, cookie: &str, wanted: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page = browser.get(path, Some(cookie)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        if page.text.contains(wanted) {
            return page.text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} never showed {wanted}: {}",
            page.text
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_test_event_reaches_only_its_endpoint_signed_and_its_attempt_is_recorded() {
    let app = app_delivering(&[]).await;
    let asked = receiver(|_| (200, None));
    let other = receiver(|_| (200, None));
    let (id, secret) = register(&app, &asked.url).await;
    let (other_id, _) = register(&app, &other.url).await;

    let reply = admin(
        &app,
        Method::POST,
        &format!("/v1/endpoints/{id}/test"),
        Value::Null,
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let event = reply.body["id"]
        .as_str()
        .expect("the event's id")
        .to_owned();
    assert!(event.starts_with("evt_"), "{event}");
    assert_eq!(reply.body["type"], "endpoint.test");
    assert_eq!(reply.body["endpoint"], id.as_str());
    assert_eq!(reply.body["event_url"], format!("/v1/events/{event}"));
    assert_eq!(reply.body["console_url"], format!("/ui/events/{event}"));

    // Delivered by the normal sender: signed with the endpoint's secret, under the event's id.
    let received = asked.until("the test event", |got| !got.is_empty()).await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].id, event);
    assert!(verifies(&secret, &received[0]), "{:?}", received[0]);
    let body = received[0].json();
    assert_eq!(body["type"], "endpoint.test");
    assert_eq!(body["data"]["test"], true);
    assert_eq!(body["data"]["endpoint"], id.as_str());
    assert!(body["data"]["message"].as_str().unwrap().contains("test"));

    // Its attempt is recorded, and it went to that endpoint only: the other, subscribed to every event,
    // is no target of it (and, the event being delivered, never will be).
    let shown = wait_for_status(&app, &event, "delivered").await;
    let targets = shown["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{shown}");
    assert_eq!(targets[0]["endpoint"], id.as_str());
    let attempts = shown["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{shown}");
    assert_eq!(attempts[0]["endpoint"], id.as_str());
    assert_eq!(attempts[0]["status_code"], 200);
    assert!(other.until("nothing", |_| true).await.is_empty());
    assert!(targets
        .iter()
        .all(|target| target["endpoint"] != other_id.as_str()));

    // Admin tokens only; an unknown endpoint is 404; a disabled one is refused and nothing is queued.
    for token in [None, Some(TOKEN)] {
        let refused = app
            .send(
                Method::POST,
                &format!("/v1/endpoints/{id}/test"),
                Vec::new(),
                token,
                None,
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
    let unknown = admin(
        &app,
        Method::POST,
        "/v1/endpoints/ep_nothing/test",
        Value::Null,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    let disabled = admin(
        &app,
        Method::PATCH,
        &format!("/v1/endpoints/{other_id}"),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    let refused = admin(
        &app,
        Method::POST,
        &format!("/v1/endpoints/{other_id}/test"),
        Value::Null,
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(
        refused.body["code"], "ENDPOINT_DISABLED",
        "{}",
        refused.body
    );
    assert_eq!(test_events(&app).await.len(), 1);
}

#[actix_web::test]
async fn the_console_sends_a_test_event_and_links_to_its_attempt() {
    let app = app_delivering(&[]).await;
    let asked = receiver(|_| (200, None));
    let (id, _) = register(&app, &asked.url).await;
    let browser = Browser::of(&app);
    let session = browser.sign_in().await;
    let page = browser
        .get(&format!("/ui/endpoints/{id}"), Some(&session))
        .await;
    assert!(page.text.contains("Send a test event"), "{}", page.text);
    let action = format!("/ui/endpoints/{id}/test");
    assert!(
        page.text.contains(&format!(r#"action="{action}""#)),
        "{}",
        page.text
    );

    // Without the session's CSRF token: refused, nothing queued.
    let forged = browser
        .post(&action, Some(&session), &[("csrf", "forged")], &[])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    assert!(test_events(&app).await.is_empty());

    let sent = browser
        .post(&action, Some(&session), &[("csrf", &page.csrf())], &[])
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    let events = test_events(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = events[0]["id"].as_str().unwrap();
    let link = format!("/ui/events/{event}");
    assert!(
        sent.text.contains(&format!(r#"href="{link}""#)),
        "{}",
        sent.text
    );
    asked.until("the test event", |got| !got.is_empty()).await;
    let shown = page_showing(&browser, &link, &session, "<td>200</td>").await;
    assert!(shown.contains("endpoint.test"), "{shown}");
    assert!(shown.contains(&id), "{shown}");
    assert!(shown.contains("none (a test event)"), "{shown}");
}

#[actix_web::test]
async fn the_portal_sends_a_test_event_to_its_owners_endpoint_only() {
    let app = app_delivering(&[]).await;
    let ours = receiver(|_| (200, None));
    let theirs = receiver(|_| (200, None));
    let mine = endpoint(&app, json!({"url": ours.url, "owner": "merchant-a"})).await;
    let foreign = endpoint(&app, json!({"url": theirs.url, "owner": "merchant-b"})).await;
    let browser = Browser::of(&app);
    let session = enter(&browser, &link(&app, "merchant-a").await).await;

    let page = browser
        .get(&format!("/portal/endpoints/{mine}"), Some(&session))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("Send a test event"), "{}", page.text);
    let csrf = page.csrf();

    // Another owner's endpoint: as if it did not exist, and nothing is queued for it.
    let refused = browser
        .post(
            &format!("/portal/endpoints/{foreign}/test"),
            Some(&session),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.text);
    assert!(test_events(&app).await.is_empty());

    let sent = browser
        .post(
            &format!("/portal/endpoints/{mine}/test"),
            Some(&session),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    let events = test_events(&app).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = events[0]["id"].as_str().unwrap();
    let link = format!("/portal/events/{event}");
    assert!(
        sent.text.contains(&format!(r#"href="{link}""#)),
        "{}",
        sent.text
    );
    ours.until("the test event", |got| !got.is_empty()).await;
    let shown = page_showing(&browser, &link, &session, "<td>200</td>").await;
    assert!(shown.contains("endpoint.test"), "{shown}");
    // Listed among the owner's recent events.
    let home = browser.get("/portal/", Some(&session)).await;
    assert!(home.text.contains(&link), "{}", home.text);
    assert!(theirs.until("nothing", |_| true).await.is_empty());
}

#[actix_web::test]
async fn endpoints_show_their_failure_rate_and_last_success_from_recent_attempts() {
    let app = app_delivering(&[]).await;
    // The first attempt fails, the retry succeeds.
    let flaky = receiver(|index| if index == 0 { (500, None) } else { (200, None) });
    let quiet = receiver(|_| (200, None));
    let flaky_id = endpoint(&app, json!({"url": flaky.url, "owner": "merchant-h"})).await;
    let quiet_id = endpoint(&app, json!({"url": quiet.url, "owner": "merchant-h"})).await;
    let reply = admin(
        &app,
        Method::POST,
        &format!("/v1/endpoints/{flaky_id}/test"),
        Value::Null,
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let event = reply.body["id"].as_str().unwrap().to_owned();
    let shown = wait_for_status(&app, &event, "delivered").await;
    let attempts = shown["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{shown}");
    let succeeded_at = attempts
        .iter()
        .find(|attempt| attempt["status_code"] == 200)
        .and_then(|attempt| attempt["at"].as_str())
        .unwrap()
        .to_owned();

    let browser = Browser::of(&app);
    let session = browser.sign_in().await;
    let list = browser.get("/ui/endpoints", Some(&session)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let row = |text: &str, id: &str| -> String {
        let start = text
            .find(&format!("/ui/endpoints/{id}"))
            .expect("the endpoint's row");
        text[start..start + text[start..].find("</tr>").unwrap()].to_owned()
    };
    let flaky_row = row(&list.text, &flaky_id);
    assert!(
        flaky_row.contains(r#"data-failure-rate="50""#),
        "{flaky_row}"
    );
    assert!(flaky_row.contains("1 of 2 attempts failed"), "{flaky_row}");
    assert!(flaky_row.contains(&succeeded_at), "{flaky_row}");
    let quiet_row = row(&list.text, &quiet_id);
    assert!(quiet_row.contains("no attempt"), "{quiet_row}");
    let page = browser
        .get(&format!("/ui/endpoints/{flaky_id}"), Some(&session))
        .await;
    assert!(
        page.text.contains(r#"data-failure-rate="50""#),
        "{}",
        page.text
    );
    assert!(page.text.contains(&succeeded_at), "{}", page.text);

    // The portal shows the same, from its owner's recent events.
    let portal = Browser::of(&app);
    let cookie = enter(&portal, &link(&app, "merchant-h").await).await;
    let home = portal.get("/portal/", Some(&cookie)).await;
    let start = home
        .text
        .find(&format!("/portal/endpoints/{flaky_id}"))
        .unwrap();
    let portal_row = &home.text[start..start + home.text[start..].find("</tr>").unwrap()];
    assert!(
        portal_row.contains(r#"data-failure-rate="50""#),
        "{portal_row}"
    );
    assert!(portal_row.contains(&succeeded_at), "{portal_row}");
}
