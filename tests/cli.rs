//! The command line, end to end: the real binary, run as a user would.

use std::process::{Command, Output};

use mmo_actors::journal::{Entry, Journal};
use mongodb::bson::doc;

mod support;

use support::{mongodb_uri, root, temp_dir, unique, Service, TOKEN};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mmo-webhooks"));
    // Nothing from the developer's environment: each test says what it needs.
    for (name, _) in std::env::vars() {
        if name.starts_with("MMO") {
            command.env_remove(name);
        }
    }
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_and_version_describe_the_binary() {
    let help = binary().arg("--help").output().unwrap();
    assert!(help.status.success());
    for subcommand in [
        "serve",
        "send",
        "scenarios",
        "config",
        "journal",
        "probe",
        "simulate",
        "listen",
    ] {
        assert!(stdout(&help).contains(subcommand), "{}", stdout(&help));
    }
    let send_help = binary().args(["send", "--help"]).output().unwrap();
    assert!(stdout(&send_help).contains("--signature-secret"));
    let simulate_help = binary().args(["simulate", "--help"]).output().unwrap();
    assert!(stdout(&simulate_help).contains("--receiver"));
    let version = binary().arg("--version").output().unwrap();
    assert_eq!(
        stdout(&version).trim(),
        format!("mmo-webhooks {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn scenarios_lists_every_fixture_as_provider_and_name() {
    let output = binary().arg("scenarios").output().unwrap();
    assert!(output.status.success());
    let lines: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    let fixtures = mmo_actors::providers::fixtures::all();
    assert_eq!(lines.len(), fixtures.len());
    for scenario in fixtures {
        assert!(lines.contains(&format!("{} {}", scenario.provider, scenario.name)));
    }
    assert!(lines.iter().all(|line| {
        let provider = line.split(' ').next().unwrap();
        ["mpesa", "mtn", "airtel"].contains(&provider)
    }));
}

#[actix_web::test]
async fn send_posts_a_scenario_with_its_proofs_and_probe_sees_readiness() {
    let (uri, database, journal) = (mongodb_uri(), unique("cli_send"), temp_dir("cli"));
    let service = Service::start_with(
        &journal,
        &uri,
        &database,
        &[
            ("MMO__PROVIDERS__MTN__REQUIRE", "bearer,hmac_header"),
            (
                "MMO__PROVIDERS__MTN__SIGNATURE_SECRETS",
                "mtn-signing-secret-0123",
            ),
            ("MMO__PROVIDERS__AIRTEL__REQUIRE", "bearer,airtel_hash"),
            (
                "MMO__PROVIDERS__AIRTEL__HASH_KEYS",
                "airtel-callback-key-0123",
            ),
            ("MMO__PROVIDERS__AIRTEL__HASH_MODE", "enforce"),
            ("MMO__PROVIDERS__MPESA__REQUIRE", "url_token"),
            ("MMO__PROVIDERS__MPESA__URL_TOKENS", "mpesa-url-token-0123"),
        ],
    )
    .await;

    let probe = binary()
        .args(["probe", "--url", &service.url])
        .output()
        .unwrap();
    assert!(probe.status.success(), "{}", stderr(&probe));

    let sent = binary()
        .args(["send", "mtn", "collection_success", "--url", &service.url])
        .args(["--token", TOKEN, "--times", "2"])
        .args(["--signature-secret", "mtn-signing-secret-0123"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}{}", stdout(&sent), stderr(&sent));
    let printed = stdout(&sent);
    let answers: Vec<&str> = printed.lines().collect();
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|answer| answer.starts_with("200 ")));
    assert!(answers[0].contains(r#"{"status":"accepted","message":"Callback received"}"#));

    // Each provider's proofs, computed by the command: a URL token, an Airtel hash.
    let mpesa = binary()
        .args(["send", "mpesa", "stk_push_success", "--url", &service.url])
        .args(["--url-token", "mpesa-url-token-0123"])
        .output()
        .unwrap();
    assert!(stdout(&mpesa).starts_with("200 "), "{}", stdout(&mpesa));
    let airtel = binary()
        .args([
            "send",
            "airtel",
            "payment_documented_success",
            "--url",
            &service.url,
        ])
        .args(["--token", TOKEN, "--hash-key", "airtel-callback-key-0123"])
        .output()
        .unwrap();
    assert!(
        stdout(&airtel).starts_with("200 "),
        "{}{}",
        stdout(&airtel),
        stderr(&airtel)
    );
    let refused = binary()
        .args(["send", "mtn", "collection_expired", "--url", &service.url])
        .args(["--token", TOKEN])
        .output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(1),
        "a refused callback fails the command"
    );
    assert!(
        stdout(&refused).starts_with("401 "),
        "no signature: {}",
        stdout(&refused)
    );

    let callbacks = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&database)
        .collection::<mongodb::bson::Document>("callbacks");
    // The run's fresh key, as `send` printed it (`<status> <key> <outcome> <answer>`).
    let key = answers[0].split(' ').nth(1).unwrap().to_owned();
    assert!(
        answers[0].starts_with(&format!("200 {key} stored ")),
        "{printed}"
    );
    assert!(
        answers[1].starts_with(&format!("200 {key} repeat ")),
        "{printed}"
    );
    let mut stored = None;
    for _ in 0..200 {
        stored = callbacks
            .find_one(doc! {"provider_transaction_id": &key})
            .await
            .unwrap()
            .filter(|document| document.get_i64("deliveries").unwrap_or(0) == 2);
        if stored.is_some() {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(stored.is_some(), "stored once, with two deliveries");
    drop(service);

    let gone = binary()
        .args(["probe", "--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(1));
}

#[test]
fn config_check_prints_the_effective_configuration_without_secrets() {
    let output = binary()
        .env("MMO_CONFIG_DIR", root().join("config"))
        .env("MMO__AUTH__BEARER_TOKENS", "a-secret-bearer-token-123")
        .env(
            "MMO__MONGODB__URI",
            "mongodb://user:hunter2@db.example/?replicaSet=rs0",
        )
        .env("MMO__SERVER__PORT", "9123")
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(printed["server"]["port"], 9123);
    assert_eq!(printed["mongodb"]["uri"], "<redacted>");
    assert_eq!(
        printed["auth"]["bearer_tokens"],
        serde_json::json!(["<redacted>"])
    );
    let everything = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!everything.contains("hunter2") && !everything.contains("a-secret-bearer-token-123"));

    let invalid = binary()
        .env("MMO_CONFIG_DIR", root().join("config"))
        .env("MMO__AUTH__BEARER_TOKENS", "a-secret-bearer-token-123")
        .env("MMO__SERVER__PORT", "eighty")
        .env_remove("MMO_ENV")
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(invalid.status.code(), Some(2));
    assert!(
        stderr(&invalid).contains("server.port"),
        "{}",
        stderr(&invalid)
    );
    // Without MMO_ENV, it says which files it read and how to check the local setup.
    assert!(
        stderr(&invalid).contains("MMO_ENV=local mmo-webhooks config check"),
        "{}",
        stderr(&invalid)
    );

    // Run from elsewhere without MMO_CONFIG_DIR, the binary says how to point it at its configuration.
    let elsewhere = binary()
        .current_dir(std::env::temp_dir())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(elsewhere.status.code(), Some(2));
    assert!(
        stderr(&elsewhere).contains("MMO_CONFIG_DIR"),
        "{}",
        stderr(&elsewhere)
    );
}

#[actix_web::test]
async fn journal_status_reads_a_stopped_services_journal() {
    let dir = temp_dir("journal-status");
    {
        let journal = Journal::open(&dir, 1 << 30).unwrap();
        for key in ["J1", "J2", "J3"] {
            let callback = mmo_actors::providers::by_slug("mpesa")
                .unwrap()
                .parse(
                    mmo_actors::CallbackType::C2bConfirmation,
                    mmo_actors::providers::fixtures::MpesaCallbackFixtures::c2b_confirmation_for(
                        key,
                    )
                    .to_string()
                    .as_bytes(),
                )
                .unwrap();
            journal
                .append(&Entry::record(
                    &callback,
                    &mmo_actors::callback::Delivery::new(chrono::Utc::now()),
                ))
                .await
                .unwrap();
        }
    }
    // The writer thread lets go of the file once the journal is dropped.
    let mut output = None;
    for _ in 0..100 {
        let attempt = binary()
            .args(["journal", "status", "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        if attempt.status.success() {
            output = Some(attempt);
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let output = output.expect("the journal could be read");
    let printed = stdout(&output);
    assert!(printed.contains("entries       3"), "{printed}");
    assert!(printed.contains("oldest entry  20"), "{printed}");

    let missing = binary()
        .args(["journal", "status", "--dir"])
        .arg(dir.join("nothing-here"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

/// `mmo-webhooks listen` verifies what it receives: a delivery signed with its secret is printed `ok`
/// and acknowledged, one signed with another secret is printed `BAD SIGNATURE` and refused, and
/// `--fail-first` answers 500 first.
#[actix_web::test]
async fn listen_verifies_signatures_and_fails_first_when_told() {
    use mmo_actors::delivery::signature::{header, new_secret, secret_key};
    use std::io::{BufRead, BufReader};

    let secret = new_secret([3; 32]);
    let port = support::free_port();
    let mut child = binary()
        .args(["listen", "--port", &port.to_string(), "--secret", &secret])
        .args(["--fail-first", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let client = awc::Client::default();
    let body = r#"{"type":"transaction.successful","timestamp":"2026-12-04T10:00:00.000Z","data":{"provider":"mpesa","flow":"stk_push","transaction_key":"ws_CO_listen","version":3}}"#;
    let post = |key: Vec<u8>| {
        let client = client.clone();
        async move {
            let now = chrono::Utc::now().timestamp();
            for _ in 0..100 {
                let sent = client
                    .post(format!("http://127.0.0.1:{port}/"))
                    .insert_header(("webhook-id", "evt_listen"))
                    .insert_header(("webhook-timestamp", now.to_string()))
                    .insert_header((
                        "webhook-signature",
                        header(
                            std::slice::from_ref(&key),
                            "evt_listen",
                            now,
                            body.as_bytes(),
                        ),
                    ))
                    .send_body(body)
                    .await;
                if let Ok(response) = sent {
                    return response.status().as_u16();
                }
                // Not listening yet.
                actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("listen never answered");
        }
    };
    let key = secret_key(&secret).unwrap();
    assert_eq!(post(key.clone()).await, 500, "--fail-first 1");
    assert_eq!(post(key).await, 204);
    let forged = secret_key(&new_secret([4; 32])).unwrap();
    assert_eq!(post(forged).await, 401);
    let printed: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        printed[0].starts_with("ok ") && printed[0].ends_with("-> 500"),
        "{printed:?}"
    );
    assert!(
        printed[1].starts_with("ok ") && printed[1].ends_with("-> 204"),
        "{printed:?}"
    );
    assert!(
        printed[1].contains("transaction.successful")
            && printed[1].contains("mpesa/stk_push/ws_CO_listen v3 evt_listen"),
        "{printed:?}"
    );
    assert!(printed[2].starts_with("BAD SIGNATURE"), "{printed:?}");
}

/// The nouns against a running service, as a person and as a script would use them: `send` makes a fresh
/// payment each run and says whether it was stored or a repeat; `transactions`, `rejected` list, show and
/// replay as aligned tables, or the API's JSON with `--json`; an API refusal is printed with its code.
#[actix_web::test]
async fn the_nouns_list_show_and_replay_what_the_service_keeps() {
    let admin = "cli-admin-token-0123456789";
    let (uri, database, journal) = (mongodb_uri(), unique("cli_nouns"), temp_dir("cli_nouns"));
    let service = Service::start_with(
        &journal,
        &uri,
        &database,
        &[("MMO__AUTH__ADMIN_TOKENS", admin)],
    )
    .await;
    let run = |args: &[&str]| {
        binary()
            .args(args)
            .args(["--url", &service.url, "--admin-token", admin])
            .output()
            .unwrap()
    };
    let send = |extra: &[&str]| {
        let output = binary()
            .args(["send", "mtn", "collection_success", "--url", &service.url])
            .args(["--token", TOKEN])
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };

    // Two runs, two payments: each run's key is fresh, and each is stored.
    let (first, second) = (send(&[]), send(&[]));
    let key = |line: &str| line.split(' ').nth(1).unwrap().to_owned();
    let (first_key, second_key) = (key(&first), key(&second));
    assert_ne!(first_key, second_key, "{first}{second}");
    assert!(
        first.starts_with(&format!("200 {first_key} stored ")),
        "{first}"
    );
    // A key given again is a repeat, and says so.
    let repeated = send(&["--id", &first_key]);
    assert!(
        repeated.starts_with(&format!("200 {first_key} repeat ")),
        "{repeated}"
    );

    // Listed once drained: an aligned table with a header, both payments in it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let listed = loop {
        let listed = run(&["transactions", "list", "--provider", "mtn"]);
        assert!(listed.status.success(), "{}", stderr(&listed));
        let text = stdout(&listed);
        if text.contains(&first_key) && text.contains(&second_key) {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "not listed: {text}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines[0].starts_with("PROVIDER"), "{listed}");
    let status_column = lines[0].find("STATUS").unwrap();
    for line in &lines[1..3] {
        assert_eq!(
            &line[status_column..status_column + 10],
            "successful",
            "{listed}"
        );
    }

    // One transaction: its fields, then its callbacks.
    let shown = stdout(&run(&["transactions", "show", "mtn", &first_key]));
    assert!(
        shown.contains("status") && shown.contains("successful"),
        "{shown}"
    );
    assert!(shown.contains("callbacks:\nTYPE"), "{shown}");
    // The same as JSON, for scripts: the API's answer.
    let json: serde_json::Value = serde_json::from_str(&stdout(&run(&[
        "transactions",
        "show",
        "mtn",
        &first_key,
        "--json",
    ])))
    .unwrap();
    assert_eq!(json["transaction_key"], first_key.as_str());
    assert_eq!(
        json["callbacks"][0]["deliveries"], 2,
        "the repeat was counted"
    );

    // A body no parser reads: listed, shown, and its replay refused with the API's reason.
    let refused = awc::Client::default()
        .post(format!("{}/v1/webhooks/mtn/collection", service.url))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .send_body("not json")
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let listed = stdout(&run(&["rejected", "list", "--json"]));
    let page: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let shown = stdout(&run(&["rejected", "show", &id]));
    assert!(shown.contains("not json"), "{shown}");
    let replay = run(&["rejected", "replay", &id]);
    assert_eq!(replay.status.code(), Some(1));
    assert!(
        stderr(&replay).contains("422 REPLAY_FAILED"),
        "{}",
        stderr(&replay)
    );
    // A filter the list does not take: the API says which it takes.
    let wrong = run(&["rejected", "list", "--status", "failed"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("status"), "{}", stderr(&wrong));
    drop(service);
}
