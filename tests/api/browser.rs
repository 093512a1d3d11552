//! The console and the portal in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, `fantoccini`), against the real service and MongoDB. A person's walk: sign in, see the
//! overview's chart, find a transaction, replay a quarantined body, register an endpoint and see a test
//! event's attempt, open a portal link and fail to reach another owner's endpoint.
//!
//! `scripts/test.sh` installs Debian's `chromium` and `chromium-driver` when `chromedriver` is missing.
//! Without `chromedriver` the test says so and is skipped — unless `CI` is set, where it fails.
//! With `MMO_SCREENSHOTS=1` it saves its screenshots to `docs/images/` (the README shows them).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use mmo_actors::providers::fixtures::MpesaCallbackFixtures as Mpesa;
use mongodb::bson::doc;
use serde_json::json;

use crate::delivery::{app_delivering, receiver, verifies};
use crate::operating::ADMIN;
use crate::portal::{endpoint, link};

/// How long a page may take to show what is waited for.
const PATIENCE: Duration = Duration::from_secs(30);

/// A chromedriver this test started, in a process group of its own: dropped (the test ends or fails),
/// the whole group — chromedriver and the Chromium it started — is killed.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (process_group(0)). `--` and `-s` are needed: procps-ng
        // 4.0's kill reads `kill -KILL -<pgid>` as `kill -KILL -1` (every process it may signal).
        let group = self.child.id();
        if group > 1 {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{group}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|directory| directory.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// Starts chromedriver on a free port, or answers `None` (the test is skipped) when it is not installed
/// and `CI` is not set.
fn chromedriver() -> Option<Chromedriver> {
    let Some(program) = on_path("chromedriver") else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "chromedriver is not installed and CI is set: the browser test must run \
                 (scripts/test.sh installs chromium and chromium-driver with apt-get)"
            );
        }
        eprintln!(
            "SKIPPED browser test: chromedriver is not installed (apt-get install chromium \
             chromium-driver, or run scripts/test.sh); with CI set this fails instead"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::env::temp_dir().join(format!("chromedriver-{port}.log"));
    use std::os::unix::process::CommandExt;
    let child = Command::new(program)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromedriver starts");
    Some(Chromedriver { child, port })
}

/// A headless Chromium session through `driver`, once chromedriver answers.
async fn browser(driver: &Chromedriver) -> Client {
    let profile = std::env::temp_dir().join(format!("chromium-{}", uuid::Uuid::new_v4().simple()));
    let mut options = json!({"args": [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1280,900", "--hide-scrollbars", "--no-first-run",
        format!("--user-data-dir={}", profile.display()),
    ]});
    if std::path::Path::new("/usr/bin/chromium").is_file() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let url = format!("http://127.0.0.1:{}", driver.port);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match ClientBuilder::new(connector.clone())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return client,
            Err(error) => {
                assert!(Instant::now() < deadline, "no browser session: {error}");
                actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The page's visible text once it contains `wanted` (reloading it while waiting when `reload`).
async fn shown(client: &Client, wanted: &str, reload: bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = match client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(wanted) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the page ({:?}) never showed {wanted:?}: {text}",
            client.current_url().await.map(|url| url.to_string())
        );
        if reload {
            client.refresh().await.expect("reloads");
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("{css}: {error}"))
        .click()
        .await
        .unwrap_or_else(|error| panic!("click {css}: {error}"));
}

async fn type_into(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("{css}: {error}"))
        .send_keys(text)
        .await
        .unwrap_or_else(|error| panic!("type into {css}: {error}"));
}

/// Saves the page as `docs/images/<name>.png` when `MMO_SCREENSHOTS=1`.
async fn screenshot(client: &Client, name: &str) {
    if std::env::var("MMO_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let png = client.screenshot().await.expect("a screenshot");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs/images")
        .join(format!("{name}.png"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, png).expect("the screenshot is written");
}

#[actix_web::test]
async fn a_person_walks_the_console_and_the_portal_in_headless_chromium() {
    let Some(driver) = chromedriver() else {
        return;
    };
    let app = app_delivering(&[]).await;
    let base = app.address.clone();

    // What there is to see: payments of two providers, and a body quarantined because it could not be
    // understood.
    let key = format!("WEB{}", &uuid::Uuid::new_v4().simple().to_string()[..7]).to_uppercase();
    for n in 0..3 {
        let key = if n == 0 {
            key.clone()
        } else {
            format!("{key}{n}")
        };
        let reply = app
            .post(
                "/v1/webhooks/mpesa/c2b/confirmation",
                &Mpesa::c2b_confirmation_for(&key),
            )
            .await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
    }
    for n in 0..2 {
        app.mtn_collection(&format!("web-{key}-{n}"), "SUCCESSFUL")
            .await;
    }
    let quarantined_key = format!("{key}Q");
    let mut unreadable = Mpesa::c2b_confirmation_for(&quarantined_key);
    unreadable["TransAmount"] = json!("ten shillings");
    let refused = app
        .post("/v1/webhooks/mpesa/c2b/confirmation", &unreadable)
        .await;
    assert_eq!(refused.status.as_u16(), 400, "{}", refused.body);
    let kept = app.quarantined_at_least(1).await;
    let quarantined = kept[0].get_object_id("_id").unwrap();
    // As a corrected parser would read it: the amount the operator meant.
    let mut corrected = unreadable.clone();
    corrected["TransAmount"] = json!("10.00");
    app.rejected
        .update_one(
            doc! {"_id": quarantined},
            doc! {"$set": {"raw": corrected.to_string()}},
        )
        .await
        .unwrap();

    let client = browser(&driver).await;

    // Sign in: the console sends an unsigned visitor to its form.
    client.goto(&format!("{base}/ui/")).await.unwrap();
    shown(&client, "Admin token", false).await;
    type_into(&client, "input[name=token]", ADMIN).await;
    click(&client, "form.login button[type=submit]").await;
    // The overview, and its chart of the last hour with each provider's callbacks.
    let overview = shown(&client, "Callbacks per provider", false).await;
    for legend in ["M-Pesa (3)", "MTN MoMo (2)", "Airtel Money (0)"] {
        assert!(overview.contains(legend), "{legend} in {overview}");
    }
    let mpesa = client
        .find(Locator::Css(r#"svg#chart-hour g[data-provider="mpesa"]"#))
        .await
        .expect("the hour's chart draws M-Pesa");
    assert_eq!(
        mpesa.attr("data-total").await.unwrap().as_deref(),
        Some("3")
    );
    assert!(client
        .find(Locator::Css("svg#chart-day polyline"))
        .await
        .is_ok());
    screenshot(&client, "overview").await;

    // Find a transaction by its key, and open it.
    client
        .goto(&format!("{base}/ui/transactions"))
        .await
        .unwrap();
    type_into(&client, "input[name=q]", &key).await;
    click(&client, "form[role=search] button[type=submit]").await;
    shown(&client, "1 transaction(s) with key or receipt", false).await;
    click(
        &client,
        &format!(r#"a[href^="/ui/transactions/mpesa/{key}?"]"#),
    )
    .await;
    let transaction = shown(&client, &key, false).await;
    assert!(transaction.contains("c2b"), "{transaction}");
    assert!(transaction.contains("254708374149"), "{transaction}");
    screenshot(&client, "transaction").await;

    // Replay the quarantined body from its page: the answer shows in place (htmx).
    client.goto(&format!("{base}/ui/quarantine")).await.unwrap();
    click(
        &client,
        &format!(r#"a[href="/ui/quarantine/{}"]"#, quarantined.to_hex()),
    )
    .await;
    shown(&client, "Replay through today's parsers", false).await;
    click(&client, "form[hx-post] button[type=submit]").await;
    let replayed = shown(&client, "Stored: mpesa c2b_confirmation", false).await;
    assert!(replayed.contains(&quarantined_key), "{replayed}");
    screenshot(&client, "quarantine-replay").await;

    // Register an endpoint, send it a test event, and see the event's attempt.
    let receiving = receiver(|_| (200, None));
    client.goto(&format!("{base}/ui/endpoints")).await.unwrap();
    type_into(
        &client,
        "form[action='/ui/endpoints'] input[name=url]",
        &receiving.url,
    )
    .await;
    type_into(
        &client,
        "form[action='/ui/endpoints'] input[name=description]",
        "the browser test's receiver",
    )
    .await;
    click(&client, "form[action='/ui/endpoints'] button[type=submit]").await;
    shown(&client, "registered", false).await;
    let secret = client
        .find(Locator::Css(".answer pre.secret"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    click(&client, ".answer a[href^='/ui/endpoints/']").await;
    shown(&client, "Send a test event", false).await;
    click(&client, "form[action$='/test'] button[type=submit]").await;
    shown(&client, "queued for this endpoint", false).await;
    click(&client, "#test-event a").await;
    shown(&client, "endpoint.test", false).await;
    let attempt = shown(&client, "answered by the test receiver", true).await;
    let statuses: Vec<String> = {
        let mut texts = Vec::new();
        for cell in client.find_all(Locator::Css("table td")).await.unwrap() {
            texts.push(cell.text().await.unwrap());
        }
        texts
    };
    assert!(
        statuses.iter().any(|text| text == "200"),
        "HTTP 200 in {attempt}"
    );
    let got = receiving
        .until("the test event", |got| !got.is_empty())
        .await;
    assert_eq!(got[0].json()["type"], "endpoint.test");
    assert!(
        verifies(&secret, &got[0]),
        "signed with the secret the page showed"
    );
    screenshot(&client, "test-event").await;

    // The portal: a link opens the owner's endpoints, never another owner's.
    let ours = endpoint(
        &app,
        json!({"url": receiving.url, "owner": "merchant-web", "description": "orders"}),
    )
    .await;
    let theirs = endpoint(
        &app,
        json!({"url": receiving.url, "owner": "merchant-other"}),
    )
    .await;
    let opened = link(&app, "merchant-web").await;
    client.goto(&format!("{base}{opened}")).await.unwrap();
    let home = shown(&client, "Your webhooks", false).await;
    assert!(home.contains(&ours), "{home}");
    assert!(!home.contains(&theirs), "{home}");
    assert_eq!(client.current_url().await.unwrap().path(), "/portal/");
    // The developer sends their endpoint a test event and sees its attempt.
    click(&client, &format!(r#"a[href="/portal/endpoints/{ours}"]"#)).await;
    click(&client, "form[action$='/test'] button[type=submit]").await;
    shown(&client, "queued for this endpoint", false).await;
    click(&client, "#test-event a").await;
    shown(&client, "answered by the test receiver", true).await;
    client.goto(&format!("{base}/portal/")).await.unwrap();
    let listed = shown(&client, "endpoint.test", false).await;
    assert!(!listed.contains(&theirs), "{listed}");
    screenshot(&client, "portal").await;
    client
        .goto(&format!("{base}/portal/endpoints/{theirs}"))
        .await
        .unwrap();
    let refused = shown(&client, "No such endpoint", false).await;
    assert!(!refused.contains(&receiving.url), "{refused}");

    client.close().await.expect("the browser closes");
    drop(driver);
}
