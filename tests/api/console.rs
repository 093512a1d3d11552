//! The operators' console at `/ui/`, over real HTTP against the real MongoDB: sign-in and its cookie,
//! the session's CSRF token, the Content-Security-Policy, escaping of what operators sent, and the pages
//! that find a transaction and replay a quarantined body.

use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use mmo_actors::providers::fixtures::MpesaCallbackFixtures as Mpesa;
use mongodb::bson::doc;
use serde_json::json;

use crate::helpers::{spawn_app_with, test_settings, TestApp, TOKEN};
use crate::operating::ADMIN;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

async fn console_app(extra: &[(&str, &str)]) -> TestApp {
    let mut overrides = vec![("MMO__AUTH__ADMIN_TOKENS", ADMIN)];
    overrides.extend_from_slice(extra);
    spawn_app_with(test_settings(&overrides)).await
}

/// A browser that shows every answer as it came (it follows no redirect).
pub(crate) struct Browser {
    pub(crate) client: awc::Client,
    pub(crate) base: String,
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) text: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token the page's forms carry.
    pub(crate) fn csrf(&self) -> String {
        let marker = r#"name="csrf" value=""#;
        let start = self.text.find(marker).expect("a form with a CSRF token") + marker.len();
        let end = self.text[start..].find('"').unwrap() + start;
        self.text[start..end].to_owned()
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|byte| {
                if byte.is_ascii_alphanumeric() {
                    char::from(byte).to_string()
                } else {
                    format!("%{byte:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    pub(crate) fn of(app: &TestApp) -> Self {
        Self {
            client: awc::Client::builder().disable_redirects().finish(),
            base: app.address.clone(),
        }
    }

    async fn answer(
        mut response: awc::ClientResponse<
            impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
                + Unpin,
        >,
    ) -> Answer {
        let bytes = response.body().limit(4 << 20).await.expect("a body");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            text: String::from_utf8(bytes.to_vec()).expect("text"),
        }
    }

    pub(crate) async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.insert_header(("Cookie", cookie));
        }
        Self::answer(request.send().await.expect("the service answers")).await
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        pairs: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .insert_header(("Content-Type", "application/x-www-form-urlencoded"));
        if let Some(cookie) = cookie {
            request = request.insert_header(("Cookie", cookie));
        }
        for header in headers {
            request = request.insert_header(*header);
        }
        Self::answer(
            request
                .send_body(form(pairs))
                .await
                .expect("the service answers"),
        )
        .await
    }

    /// Signs in with the admin token; answers the session cookie (`name=value`).
    pub(crate) async fn sign_in(&self) -> String {
        let answer = self.post("/ui/login", None, &[("token", ADMIN)], &[]).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
        assert_eq!(answer.header("location"), "/ui/");
        let cookie = answer.header("set-cookie");
        cookie.split(';').next().unwrap().to_owned()
    }
}

#[actix_web::test]
async fn without_a_session_every_page_sends_to_the_sign_in_form() {
    let app = console_app(&[]).await;
    let browser = Browser::of(&app);
    let root = browser.get("/", None).await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.header("location"), "/ui/");
    for page in [
        "/ui/",
        "/ui/overview",
        "/ui/transactions",
        "/ui/transactions/mpesa/ws_CO_1",
        "/ui/quarantine",
        "/ui/events",
        "/ui/endpoints",
        "/ui/reports",
        "/ui/reports/daily.csv",
    ] {
        let answer = browser.get(page, None).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(answer.header("location"), "/ui/login", "{page}");
        assert_eq!(answer.header("content-security-policy"), CSP, "{page}");
        // A forged or foreign cookie is no session either.
        let forged = browser
            .get(page, Some("mmo_console=9999999999.00.deadbeef"))
            .await;
        assert_eq!(forged.status, StatusCode::SEE_OTHER, "{page}");
    }
    // htmx is told where to go instead of swapping the sign-in form into a fragment.
    let polled = browser
        .client
        .get(format!("{}/ui/overview", browser.base))
        .insert_header(("HX-Request", "true"))
        .send()
        .await
        .unwrap();
    assert_eq!(polled.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(polled.headers().get("hx-redirect").unwrap(), "/ui/login");
    // Nothing changes without a session, whatever the form says.
    let replay = browser
        .post(
            "/ui/quarantine/0123456789abcdef01234567/replay",
            None,
            &[("csrf", "x")],
            &[],
        )
        .await;
    assert_eq!(replay.status, StatusCode::SEE_OTHER);
    assert_eq!(replay.header("location"), "/ui/login");

    let login = browser.get("/ui/login", None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.text.contains(r#"name="token""#), "{}", login.text);
    assert_eq!(login.header("content-security-policy"), CSP);
    assert_eq!(login.header("x-frame-options"), "DENY");
    assert!(!login.text.contains("<script>"), "no inline script");
    assert!(!login.text.contains("style="), "no inline style");
}

#[actix_web::test]
async fn sign_in_takes_an_admin_token_and_sets_a_strict_cookie() {
    let app = console_app(&[]).await;
    let browser = Browser::of(&app);
    for wrong in ["", "not-a-token", TOKEN] {
        let refused = browser
            .post("/ui/login", None, &[("token", wrong)], &[])
            .await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert!(refused.header("set-cookie").is_empty(), "{wrong}");
        assert!(
            refused.text.contains("not an admin token"),
            "{}",
            refused.text
        );
    }
    let answer = browser
        .post("/ui/login", None, &[("token", ADMIN)], &[])
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let cookie = answer.header("set-cookie");
    assert!(cookie.starts_with("mmo_console="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(
            cookie.split("; ").any(|part| part == flag),
            "{flag} in {cookie}"
        );
    }
    assert!(!cookie.contains("Secure"), "not configured: {cookie}");

    let session = cookie.split(';').next().unwrap();
    let overview = browser.get("/ui/", Some(session)).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.text);
    assert!(overview.text.contains("Overview"));
    assert!(overview.text.contains(r#"hx-get="/ui/overview""#));
    assert_eq!(overview.header("content-security-policy"), CSP);
    assert_eq!(overview.header("cache-control"), "no-store");
    let fragment = browser.get("/ui/overview", Some(session)).await;
    assert_eq!(fragment.status, StatusCode::OK);
    assert!(
        fragment.text.starts_with(r#"<div id="overview""#),
        "{}",
        fragment.text
    );

    // Stateless: another instance with the same admin tokens takes the session.
    let other = console_app(&[]).await;
    let elsewhere = Browser::of(&other)
        .get("/ui/transactions", Some(session))
        .await;
    assert_eq!(elsewhere.status, StatusCode::OK);

    // The assets are compiled in and cached long.
    let htmx = browser.get("/ui/assets/htmx.min.js", None).await;
    assert_eq!(htmx.status, StatusCode::OK);
    assert!(htmx.header("cache-control").contains("immutable"));
    assert!(htmx.text.contains("htmx"));
}

#[actix_web::test]
async fn the_cookie_is_secure_when_configured_and_sign_in_attempts_are_limited() {
    let app = console_app(&[
        ("MMO__CONSOLE__SECURE_COOKIE", "true"),
        ("MMO__CONSOLE__LOGIN_ATTEMPTS_PER_MINUTE", "3"),
    ])
    .await;
    let browser = Browser::of(&app);
    let answer = browser
        .post("/ui/login", None, &[("token", ADMIN)], &[])
        .await;
    assert!(
        answer
            .header("set-cookie")
            .split("; ")
            .any(|part| part == "Secure"),
        "{}",
        answer.header("set-cookie")
    );
    for _ in 0..2 {
        let wrong = browser
            .post("/ui/login", None, &[("token", "guess")], &[])
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    }
    // The fourth attempt within the minute is refused, even with the right token.
    let limited = browser
        .post("/ui/login", None, &[("token", ADMIN)], &[])
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.header("set-cookie").is_empty());
    assert_eq!(limited.header("retry-after"), "60");
}

#[actix_web::test]
async fn a_form_without_its_sessions_csrf_token_changes_nothing() {
    let app = console_app(&[]).await;
    let browser = Browser::of(&app);
    let session = browser.sign_in().await;
    let other_session = browser.sign_in().await;
    let page = browser.get("/ui/", Some(&session)).await;
    let csrf = page.csrf();
    let others = browser.get("/ui/", Some(&other_session)).await.csrf();
    assert_ne!(csrf, others);
    for pairs in [vec![], vec![("csrf", "")], vec![("csrf", others.as_str())]] {
        let refused = browser
            .post("/ui/logout", Some(&session), &pairs, &[])
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{pairs:?}");
        assert_eq!(refused.header("content-security-policy"), CSP);
        let refused = browser
            .post("/ui/events/evt_0/replay", Some(&session), &pairs, &[])
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{pairs:?}");
    }
    let out = browser
        .post("/ui/logout", Some(&session), &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.header("location"), "/ui/login");
    assert!(out.header("set-cookie").contains("Max-Age=0"));
}

#[actix_web::test]
async fn a_transaction_is_listed_and_its_page_shows_its_callback_escaped() {
    let app = console_app(&[]).await;
    let key = format!("SCR{}", &uuid::Uuid::new_v4().simple().to_string()[..7]).to_uppercase();
    let mut callback = Mpesa::c2b_confirmation_for(&key);
    callback["FirstName"] = json!("<script>alert('owned')</script>");
    let reply = app
        .post("/v1/webhooks/mpesa/c2b/confirmation", &callback)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    app.transaction(&key).await;

    let browser = Browser::of(&app);
    let session = browser.sign_in().await;
    let list = browser.get("/ui/transactions", Some(&session)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let link = format!("/ui/transactions/mpesa/{key}?flow=c2b");
    assert!(list.text.contains(&link), "{}", list.text);
    // The filters and the search find it; another flow does not.
    let filtered = browser
        .get(
            "/ui/transactions?provider=mpesa&flow=c2b&status=&since=&msisdn=254708374149",
            Some(&session),
        )
        .await;
    assert!(filtered.text.contains(&link), "{}", filtered.text);
    let other_flow = browser
        .get("/ui/transactions?flow=stk_push", Some(&session))
        .await;
    assert!(!other_flow.text.contains(&link));
    let found = browser
        .get(&format!("/ui/transactions?q={key}"), Some(&session))
        .await;
    assert!(found.text.contains(&link), "{}", found.text);
    let bad = browser
        .get("/ui/transactions?status=paid", Some(&session))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("status"), "{}", bad.text);

    let page = browser.get(&link, Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains(&key));
    assert!(page.text.contains("c2b_confirmation"), "{}", page.text);
    // The operator's text is shown as text: escaped, never markup.
    assert!(
        page.text
            .contains("&lt;script&gt;alert('owned')&lt;/script&gt;"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("<script>alert"), "{}", page.text);
}

#[actix_web::test]
async fn a_quarantined_body_is_replayed_from_its_page() {
    let app = console_app(&[]).await;
    let key = format!("QRT{}", &uuid::Uuid::new_v4().simple().to_string()[..7]).to_uppercase();
    let mut unreadable = Mpesa::c2b_confirmation_for(&key);
    unreadable["TransAmount"] = json!("ten shillings");
    let refused = app
        .post("/v1/webhooks/mpesa/c2b/confirmation", &unreadable)
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let kept = app.quarantined_at_least(1).await;
    let id = kept[0].get_object_id("_id").unwrap().to_hex();

    let browser = Browser::of(&app);
    let session = browser.sign_in().await;
    let list = browser.get("/ui/quarantine", Some(&session)).await;
    assert!(
        list.text.contains(&format!("/ui/quarantine/{id}")),
        "{}",
        list.text
    );
    let page = browser
        .get(&format!("/ui/quarantine/{id}"), Some(&session))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("ten shillings"), "{}", page.text);
    let csrf = page.csrf();
    let action = format!("/ui/quarantine/{id}/replay");
    assert!(page.text.contains(&format!(r#"hx-post="{action}""#)));

    // Still not understood: the answer says why, and nothing is stored.
    let still = browser
        .post(
            &action,
            Some(&session),
            &[("csrf", &csrf)],
            &[("HX-Request", "true")],
        )
        .await;
    assert_eq!(still.status, StatusCode::OK);
    assert!(
        still.text.contains("Not replayed: Still not understood"),
        "{}",
        still.text
    );

    // Corrected (as a fixed parser would read it): replayed, stored, and the page says so.
    let mut corrected = unreadable.clone();
    corrected["TransAmount"] = json!("10.00");
    let id_bson = kept[0].get_object_id("_id").unwrap();
    app.rejected
        .update_one(
            doc! {"_id": id_bson},
            doc! {"$set": {"raw": corrected.to_string()}},
        )
        .await
        .unwrap();
    let replayed = browser
        .post(
            &action,
            Some(&session),
            &[("csrf", &csrf)],
            &[("HX-Request", "true")],
        )
        .await;
    assert_eq!(replayed.status, StatusCode::OK);
    assert!(
        replayed.text.contains("Stored: mpesa c2b_confirmation"),
        "{}",
        replayed.text
    );
    assert!(replayed.text.contains(&key));
    app.stored_one(&key).await;
    // Without htmx, the whole page comes back with the answer; a second replay is refused.
    let again = browser
        .post(&action, Some(&session), &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.text.contains("Not replayed"), "{}", again.text);
    assert!(again.text.contains("Quarantined body"));
}

#[actix_web::test]
async fn events_show_their_attempts_are_sent_again_and_endpoints_are_turned_off_from_the_console() {
    use crate::delivery::{admin, app_delivering, receiver, register};
    let app = app_delivering(&[]).await;
    let failing = receiver(|_| (500, None));
    let (endpoint, _) = register(&app, &failing.url).await;
    let key = format!(
        "console-event-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    app.mtn_collection(&key, "SUCCESSFUL").await;
    failing
        .until("a first attempt", |got| !got.is_empty())
        .await;
    // The event is listed once its first attempt's outcome is written (just after the receiver got it).
    let mut listed = None;
    for _ in 0..200 {
        let reply = admin(
            &app,
            actix_web::http::Method::GET,
            "/v1/events",
            serde_json::Value::Null,
        )
        .await;
        if let Some(id) = reply.body["items"][0]["id"].as_str() {
            listed = Some(id.to_owned());
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let event = listed.expect("the event is listed");

    let browser = Browser::of(&app);
    let session = browser.sign_in().await;
    let events = browser
        .get("/ui/events?status=&type=", Some(&session))
        .await;
    assert_eq!(events.status, StatusCode::OK, "{}", events.text);
    assert!(
        events.text.contains(&format!("/ui/events/{event}")),
        "{}",
        events.text
    );

    // Its page shows every attempt: the endpoint, the HTTP status and the answer's beginning.
    let mut page = browser
        .get(&format!("/ui/events/{event}"), Some(&session))
        .await;
    for _ in 0..100 {
        if page.text.contains("answered by the test receiver") {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
        page = browser
            .get(&format!("/ui/events/{event}"), Some(&session))
            .await;
    }
    assert!(page.text.contains(&endpoint), "{}", page.text);
    assert!(page.text.contains("<td>500</td>"), "{}", page.text);
    assert!(
        page.text.contains("answered by the test receiver"),
        "{}",
        page.text
    );
    // So does the transaction's page.
    let transaction = browser
        .get(
            &format!("/ui/transactions/mtn_mobile_money/{key}?flow=collection"),
            Some(&session),
        )
        .await;
    assert!(
        transaction.text.contains(&format!("/ui/events/{event}")),
        "{}",
        transaction.text
    );

    let before = failing.until("attempts so far", |_| true).await.len();
    let csrf = page.csrf();
    let again = browser
        .post(
            &format!("/ui/events/{event}/replay"),
            Some(&session),
            &[("csrf", &csrf)],
            &[("HX-Request", "true")],
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert!(again.text.contains("Sent again"), "{}", again.text);
    failing
        .until("another attempt", |got| got.len() > before)
        .await;

    // Turned off from the list, as PATCH /v1/endpoints/{id} would.
    let list = browser.get("/ui/endpoints", Some(&session)).await;
    assert!(
        list.text.contains(&endpoint) && list.text.contains("Disable"),
        "{}",
        list.text
    );
    let off = browser
        .post(
            &format!("/ui/endpoints/{endpoint}/enabled"),
            Some(&session),
            &[("csrf", &csrf), ("enabled", "false")],
            &[],
        )
        .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER, "{}", off.text);
    assert_eq!(off.header("location"), "/ui/endpoints");
    let stored = admin(
        &app,
        actix_web::http::Method::GET,
        &format!("/v1/endpoints/{endpoint}"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(stored.body["enabled"], false, "{}", stored.body);
    let list = browser.get("/ui/endpoints", Some(&session)).await;
    assert!(list.text.contains("Enable"), "{}", list.text);
}

/// The endpoints the query API lists (to see what the console's forms stored, or did not).
async fn stored_endpoints(app: &TestApp) -> Vec<serde_json::Value> {
    let reply = crate::delivery::admin(
        app,
        actix_web::http::Method::GET,
        "/v1/endpoints?limit=500",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["items"].as_array().cloned().unwrap_or_default()
}

/// The text of a page's problem shown at `field` (`<span … data-field="field" …>problem</span>`).
fn problem_at(text: &str, field: &str) -> Option<String> {
    let marker = format!(r#"data-field="{field}""#);
    let start = text.find(&marker)?;
    let open = text[start..].find('>')? + start + 1;
    let close = text[open..].find("</span>")? + open;
    Some(text[open..close].to_owned())
}

#[actix_web::test]
async fn endpoints_are_registered_changed_and_rotated_from_the_console_with_problems_at_their_field(
) {
    use crate::delivery::{app_delivering, receiver};
    let app = app_delivering(&[]).await;
    let target = receiver(|_| (200, None));
    let browser = Browser::of(&app);
    let session = browser.sign_in().await;
    let list = browser.get("/ui/endpoints", Some(&session)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let csrf = list.csrf();
    let before = stored_endpoints(&app).await.len();

    // An invalid URL: the problem next to the URL field, what was typed kept (escaped), nothing stored.
    let refused = browser
        .post(
            "/ui/endpoints",
            Some(&session),
            &[
                ("csrf", &csrf),
                ("url", "not a url"),
                ("description", "<b>orders</b>"),
                ("event_types", "transaction.successful"),
            ],
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    let problem = problem_at(&refused.text, "url").expect("a problem at the URL field");
    assert!(!problem.is_empty(), "{}", refused.text);
    assert!(problem_at(&refused.text, "description").is_none());
    assert!(
        refused.text.contains(r#"value="not a url""#),
        "{}",
        refused.text
    );
    assert!(
        refused.text.contains("&lt;b&gt;orders&lt;/b&gt;") && !refused.text.contains("<b>orders"),
        "{}",
        refused.text
    );
    assert_eq!(stored_endpoints(&app).await.len(), before);
    // An unknown event type: its problem at the events field.
    let refused = browser
        .post(
            "/ui/endpoints",
            Some(&session),
            &[
                ("csrf", &csrf),
                ("url", &target.url),
                ("event_types", "no.such.type"),
            ],
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert!(
        problem_at(&refused.text, "event_types").is_some_and(|text| text.contains("no.such.type")),
        "{}",
        refused.text
    );
    assert_eq!(stored_endpoints(&app).await.len(), before);

    // A valid one: registered, its secret shown once, listed.
    let created = browser
        .post(
            "/ui/endpoints",
            Some(&session),
            &[
                ("csrf", &csrf),
                ("url", &target.url),
                ("description", "orders"),
                ("owner", "merchant-7"),
            ],
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    assert!(created.text.contains("registered"), "{}", created.text);
    let stored = stored_endpoints(&app).await;
    assert_eq!(stored.len(), before + 1);
    let endpoint = stored
        .iter()
        .find(|item| item["url"] == target.url.as_str())
        .expect("the endpoint is stored");
    let id = endpoint["id"].as_str().unwrap().to_owned();
    assert_eq!(endpoint["description"], "orders");
    assert_eq!(endpoint["owner"], "merchant-7");
    let first_secret = {
        let marker = r#"<pre class="secret">"#;
        let start = created.text.find(marker).expect("the secret shown") + marker.len();
        let end = created.text[start..].find("</pre>").unwrap() + start;
        created.text[start..end].to_owned()
    };
    assert!(first_secret.starts_with("whsec_"), "{first_secret}");
    let list = browser.get("/ui/endpoints", Some(&session)).await;
    assert!(
        list.text.contains(&format!("/ui/endpoints/{id}")) && list.text.contains(&target.url),
        "{}",
        list.text
    );
    assert!(
        !list.text.contains(&first_secret),
        "the secret is shown once"
    );

    // Its page: a form filled with what is stored; a change is checked as PATCH checks it.
    let page = browser
        .get(&format!("/ui/endpoints/{id}"), Some(&session))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains(r#"value="orders""#), "{}", page.text);
    assert!(!page.text.contains(&first_secret));
    let refused = browser
        .post(
            &format!("/ui/endpoints/{id}"),
            Some(&session),
            &[("csrf", &csrf), ("url", "ftp://example.com/")],
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert!(
        problem_at(&refused.text, "url").is_some(),
        "{}",
        refused.text
    );
    let unchanged = crate::delivery::admin(
        &app,
        actix_web::http::Method::GET,
        &format!("/v1/endpoints/{id}"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(unchanged.body["url"], target.url.as_str());
    let changed_url = format!("{}/v2", target.url.trim_end_matches('/'));
    let saved = browser
        .post(
            &format!("/ui/endpoints/{id}"),
            Some(&session),
            &[
                ("csrf", &csrf),
                ("url", &changed_url),
                ("description", "orders, v2"),
                ("event_types", "transaction.successful"),
                ("providers", "mtn_mobile_money"),
            ],
            &[],
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert!(saved.text.contains("Saved."), "{}", saved.text);
    let changed = crate::delivery::admin(
        &app,
        actix_web::http::Method::GET,
        &format!("/v1/endpoints/{id}"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(
        changed.body["url"],
        changed_url.as_str(),
        "{}",
        changed.body
    );
    assert_eq!(changed.body["description"], "orders, v2");
    assert_eq!(
        changed.body["event_types"],
        json!(["transaction.successful"])
    );
    assert_eq!(changed.body["providers"], json!(["mtn_mobile_money"]));

    // Rotation: the new secret shown once, the old one listed as still signing.
    let rotated = browser
        .post(
            &format!("/ui/endpoints/{id}/rotate"),
            Some(&session),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let secrets = crate::delivery::admin(
        &app,
        actix_web::http::Method::GET,
        &format!("/v1/endpoints/{id}/secret"),
        serde_json::Value::Null,
    )
    .await;
    let new_secret = secrets.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, first_secret);
    assert!(rotated.text.contains(&new_secret), "{}", rotated.text);
    assert!(rotated.text.contains("rotating"), "{}", rotated.text);
    assert!(rotated.text.contains(&first_secret), "{}", rotated.text);
    let page = browser
        .get(&format!("/ui/endpoints/{id}"), Some(&session))
        .await;
    assert!(!page.text.contains(&new_secret), "shown only on request");
    // Revealed on request.
    let revealed = browser
        .post(
            &format!("/ui/endpoints/{id}/secret"),
            Some(&session),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(revealed.status, StatusCode::OK, "{}", revealed.text);
    assert!(revealed.text.contains(&new_secret), "{}", revealed.text);

    // Without the session's CSRF token, every endpoint form is refused and changes nothing.
    for path in [
        "/ui/endpoints".to_owned(),
        format!("/ui/endpoints/{id}"),
        format!("/ui/endpoints/{id}/rotate"),
        format!("/ui/endpoints/{id}/secret"),
        format!("/ui/endpoints/{id}/recover"),
        format!("/ui/endpoints/{id}/replay-failed"),
    ] {
        for pairs in [
            vec![
                ("url", "https://evil.example.com/"),
                ("since", "2000-01-01"),
            ],
            vec![
                ("csrf", "forged"),
                ("url", "https://evil.example.com/"),
                ("since", "2000-01-01"),
            ],
        ] {
            let refused = browser.post(&path, Some(&session), &pairs, &[]).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path} {pairs:?}");
        }
    }
    assert_eq!(stored_endpoints(&app).await.len(), before + 1);
    let after = crate::delivery::admin(
        &app,
        actix_web::http::Method::GET,
        &format!("/v1/endpoints/{id}/secret"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(after.body["secret"], new_secret.as_str());
    assert_eq!(
        crate::delivery::admin(
            &app,
            actix_web::http::Method::GET,
            &format!("/v1/endpoints/{id}"),
            serde_json::Value::Null,
        )
        .await
        .body["url"],
        changed_url.as_str()
    );
}

#[actix_web::test]
async fn an_endpoints_failed_events_are_sent_again_and_recovered_since_a_date_from_the_console() {
    use crate::delivery::{app_delivering, receiver, register, wait_for_status};
    let app = app_delivering(&[("MMO__DELIVERY__RETRY_SCHEDULE_SECS", "0,1")]).await;
    let failing = receiver(|_| (500, None));
    let (endpoint, _) = register(&app, &failing.url).await;
    let key = format!(
        "console-failed-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    app.mtn_collection(&key, "SUCCESSFUL").await;
    let received = failing.until("two attempts", |got| got.len() >= 2).await;
    let event = received[0].id.clone();
    wait_for_status(&app, &event, "failed").await;

    let browser = Browser::of(&app);
    let session = browser.sign_in().await;
    // The list shows the endpoint failing.
    let list = browser.get("/ui/endpoints", Some(&session)).await;
    assert!(list.text.contains("failing since"), "{}", list.text);
    let page = browser
        .get(&format!("/ui/endpoints/{endpoint}"), Some(&session))
        .await;
    assert!(page.text.contains("failing since"), "{}", page.text);
    let csrf = page.csrf();

    // Every failed event, sent again.
    let before = failing.until("attempts so far", |_| true).await.len();
    let again = browser
        .post(
            &format!("/ui/endpoints/{endpoint}/replay-failed"),
            Some(&session),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert!(
        again.text.contains("Sent again: 1 failed event(s)."),
        "{}",
        again.text
    );
    failing
        .until("an attempt after the replay", |got| got.len() > before)
        .await;
    wait_for_status(&app, &event, "failed").await;

    // Since a date: a wrong date is answered at the form; one after the event finds none; one before it
    // sends it again.
    let wrong = browser
        .post(
            &format!("/ui/endpoints/{endpoint}/recover"),
            Some(&session),
            &[("csrf", &csrf), ("since", "yesterday")],
            &[],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.text);
    assert!(
        wrong
            .text
            .contains("Invalid parameter `since`: must be an RFC 3339 time or a date"),
        "{}",
        wrong.text
    );
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .to_string();
    let none = browser
        .post(
            &format!("/ui/endpoints/{endpoint}/recover"),
            Some(&session),
            &[("csrf", &csrf), ("since", &tomorrow)],
            &[],
        )
        .await;
    assert_eq!(none.status, StatusCode::OK, "{}", none.text);
    assert!(
        none.text
            .contains("Sent again: 0 failed event(s) created since"),
        "{}",
        none.text
    );
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .date_naive()
        .to_string();
    let before = failing.until("attempts so far", |_| true).await.len();
    let recovered = browser
        .post(
            &format!("/ui/endpoints/{endpoint}/recover"),
            Some(&session),
            &[("csrf", &csrf), ("since", &yesterday)],
            &[("HX-Request", "true")],
        )
        .await;
    assert_eq!(recovered.status, StatusCode::OK, "{}", recovered.text);
    assert!(
        recovered
            .text
            .contains("Sent again: 1 failed event(s) created since"),
        "{}",
        recovered.text
    );
    failing
        .until("an attempt after the recovery", |got| got.len() > before)
        .await;
}

/// The `data-total` the chart `chart` (`chart-hour`, `chart-day`) of `page` shows for `provider`.
pub(crate) fn chart_total(page: &str, chart: &str, provider: &str) -> Option<u64> {
    let start = page.find(&format!(r#"id="{chart}""#))?;
    let svg = &page[start..start + page[start..].find("</svg>")?];
    let marker = format!(r#"data-provider="{provider}" data-total=""#);
    let at = svg.find(&marker)? + marker.len();
    svg[at..at + svg[at..].find('"')?].parse().ok()
}

#[actix_web::test]
async fn the_overview_charts_callbacks_per_minute_added_up_across_instances_through_mongodb() {
    use crate::helpers::spawn_app_with;
    // Two instances on one database, as behind a load balancer.
    let settings = test_settings(&[("MMO__AUTH__ADMIN_TOKENS", ADMIN)]);
    let first = spawn_app_with(settings.clone()).await;
    let second = spawn_app_with(settings).await;
    for _ in 0..3 {
        let key =
            format!("CHART{}", &uuid::Uuid::new_v4().simple().to_string()[..8]).to_uppercase();
        let reply = first
            .post(
                "/v1/webhooks/mpesa/c2b/confirmation",
                &Mpesa::c2b_confirmation_for(&key),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    for _ in 0..2 {
        first
            .mtn_collection(
                &format!("chart-{}", uuid::Uuid::new_v4().simple()),
                "SUCCESSFUL",
            )
            .await;
    }
    let key = format!("CHART{}", &uuid::Uuid::new_v4().simple().to_string()[..8]).to_uppercase();
    let reply = second
        .post(
            "/v1/webhooks/mpesa/c2b/confirmation",
            &Mpesa::c2b_confirmation_for(&key),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // A repeat counts too (it was received and acknowledged).
    let reply = second
        .post(
            "/v1/webhooks/mpesa/c2b/confirmation",
            &Mpesa::c2b_confirmation_for(&key),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // A body that cannot be understood is quarantined, not counted.
    let reply = second
        .post(
            "/v1/webhooks/mpesa/c2b/confirmation",
            &json!({"not": "a callback"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);

    // The second instance's overview shows its own counts at once, and the first's once that one has
    // added them to MongoDB (every 10 seconds): 3 + 2 M-Pesa, 2 MTN, no Airtel.
    let browser = Browser::of(&second);
    let session = browser.sign_in().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let page = loop {
        let page = browser.get("/ui/", Some(&session)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        if chart_total(&page.text, "chart-hour", "mpesa") == Some(5)
            && chart_total(&page.text, "chart-hour", "mtn_mobile_money") == Some(2)
        {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the chart never showed the first instance's callbacks: {}",
            page.text
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let text = &page.text;
    assert_eq!(chart_total(text, "chart-hour", "airtel_money"), Some(0));
    assert_eq!(chart_total(text, "chart-day", "mpesa"), Some(5));
    assert_eq!(chart_total(text, "chart-day", "mtn_mobile_money"), Some(2));
    for shown in [
        "M-Pesa: 5 callbacks",
        "MTN MoMo: 2 callbacks",
        "Airtel Money: 0 callbacks",
        "<polyline",
    ] {
        assert!(text.contains(shown), "{shown} in {text}");
    }
    // Drawn without inline style or script (the Content-Security-Policy allows neither).
    assert!(!text.contains("style="), "{text}");
    assert!(!text.contains("<script>"), "{text}");
    assert_eq!(page.header("content-security-policy"), CSP);
    // The htmx refresh carries the chart too.
    let fragment = browser.get("/ui/overview", Some(&session)).await;
    assert!(
        chart_total(&fragment.text, "chart-hour", "mpesa").is_some(),
        "{}",
        fragment.text
    );

    // What MongoDB holds: one small document per minute and provider, with a TTL index; once both
    // instances flushed, the sums are the callbacks acknowledged.
    let minutes = crate::delivery::collection(&second, "callback_minutes");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let mut sums = std::collections::BTreeMap::new();
        let mut cursor = minutes.find(doc! {}).await.unwrap();
        while cursor.advance().await.unwrap() {
            let document = cursor.deserialize_current().unwrap();
            let id = document.get_str("_id").unwrap().to_owned();
            let provider = document.get_str("provider").unwrap().to_owned();
            assert!(id.ends_with(&format!("Z/{provider}")), "{id}");
            assert!(document.get_datetime("minute").is_ok(), "{document}");
            *sums.entry(provider).or_insert(0) += document.get_i64("count").unwrap();
        }
        if sums.get("mpesa") == Some(&5) && sums.get("mtn_mobile_money") == Some(&2) {
            assert_eq!(sums.len(), 2, "{sums:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not flushed: {sums:?}"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let indexes = minutes.list_index_names().await.unwrap();
    assert!(indexes.iter().any(|name| name == "expire"), "{indexes:?}");
}
