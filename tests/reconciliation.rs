//! Reconciliation end to end: the real service binary, the operators' simulator (`mmo-webhooks
//! simulate`, another process) and the real MongoDB. Lost callbacks of all three operators end with their
//! final status; a forged callback is caught by confirmation; expectations are checked field by field; a
//! service killed mid-work and two instances sharing the work never ask the same question twice at once.

mod support;

use std::process::{Child, Command};
use std::time::Duration;

use serde_json::{json, Value};
use support::{free_ports, mongodb_uri, temp_dir, unique, Service, TOKEN};

const ADMIN: &str = "reconciliation-admin-token-0123";
const CLIENT: &str = "reconciliation-client-token-0123";

/// The operators' simulator, as a process of its own.
struct Simulator {
    child: Child,
    url: String,
}

impl Simulator {
    /// Starts on a free port, sending callbacks to `receiver` once it is known (see [`Simulator::url`]).
    async fn start(port: u16, receiver: &str, latency_ms: u64) -> Self {
        let log = temp_dir("simulator").join("simulator.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mmo-webhooks"))
            .args([
                "simulate",
                "--port",
                &port.to_string(),
                "--receiver",
                receiver,
                "--receiver-token",
                TOKEN,
                "--latency-ms",
                &latency_ms.to_string(),
            ])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("simulator starts");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if awc::Client::new()
                .get(format!("{url}/simulator/stats"))
                .send()
                .await
                .is_ok()
            {
                return Self { child, url };
            }
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the simulator did not start: {}", log.display());
    }

    async fn script(&self, payment: Value) {
        let response = awc::Client::new()
            .post(format!("{}/simulator/payments", self.url))
            .send_json(&payment)
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "{payment}");
    }

    async fn record(&self, key: &str) -> Value {
        get_json(&format!("{}/simulator/payments/{key}", self.url), None).await
    }

    async fn stats(&self) -> Value {
        get_json(&format!("{}/simulator/stats", self.url), None).await
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get_json(url: &str, token: Option<&str>) -> Value {
    let mut request = awc::Client::new().get(url);
    if let Some(token) = token {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut response = request.send().await.unwrap();
    let body = response.body().limit(1 << 22).await.unwrap();
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

async fn post_json(url: &str, token: &str, body: &Value) -> (u16, Value) {
    let mut response = awc::Client::new()
        .post(url)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send_json(body)
        .await
        .unwrap();
    let answer = response.body().await.unwrap();
    (
        response.status().as_u16(),
        serde_json::from_slice(&answer).unwrap_or(Value::Null),
    )
}

/// Configuration of a service whose three operators are served by the simulator at `simulator`.
fn settings(
    simulator: &str,
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, String)> {
    let mut settings: Vec<(&'static str, String)> = vec![
        ("MMO__AUTH__ADMIN_TOKENS", ADMIN.into()),
        ("MMO__AUTH__CLIENT_TOKENS", CLIENT.into()),
        ("MMO__RECONCILER__INTERVAL_SECS", "1".into()),
        ("MMO__RECONCILER__QUERY_AFTER_SECS", "1".into()),
        ("MMO__RECONCILER__BACKOFF_INITIAL_SECS", "1".into()),
        ("MMO__RECONCILER__BACKOFF_MAX_SECS", "1".into()),
        ("MMO__RECONCILER__RESULT_WAIT_SECS", "2".into()),
        ("MMO__RECONCILER__LEASE_SECS", "5".into()),
        // A lease must outlast a question (a token, then the status request: two time-outs).
        (
            "MMO__PROVIDERS__MPESA__API__REQUEST_TIMEOUT_SECS",
            "2".into(),
        ),
        ("MMO__PROVIDERS__MTN__API__REQUEST_TIMEOUT_SECS", "2".into()),
        (
            "MMO__PROVIDERS__AIRTEL__API__REQUEST_TIMEOUT_SECS",
            "2".into(),
        ),
        ("MMO__PROVIDERS__MPESA__API__BASE_URL", simulator.into()),
        ("MMO__PROVIDERS__MPESA__API__CONSUMER_KEY", "sim-key".into()),
        (
            "MMO__PROVIDERS__MPESA__API__CONSUMER_SECRET",
            "sim-secret".into(),
        ),
        ("MMO__PROVIDERS__MPESA__API__SHORTCODE", "174379".into()),
        ("MMO__PROVIDERS__MPESA__API__PASSKEY", "sim-passkey".into()),
        (
            "MMO__PROVIDERS__MPESA__API__INITIATOR",
            "sim-initiator".into(),
        ),
        (
            "MMO__PROVIDERS__MPESA__API__SECURITY_CREDENTIAL",
            "sim-credential".into(),
        ),
        ("MMO__PROVIDERS__MTN__API__BASE_URL", simulator.into()),
        ("MMO__PROVIDERS__MTN__API__API_USER", "sim-user".into()),
        ("MMO__PROVIDERS__MTN__API__API_KEY", "sim-api-key".into()),
        (
            "MMO__PROVIDERS__MTN__API__TARGET_ENVIRONMENT",
            "sandbox".into(),
        ),
        (
            "MMO__PROVIDERS__MTN__API__SUBSCRIPTION_KEYS__COLLECTION",
            "sim-subscription".into(),
        ),
        ("MMO__PROVIDERS__AIRTEL__API__BASE_URL", simulator.into()),
        (
            "MMO__PROVIDERS__AIRTEL__API__CLIENT_ID",
            "sim-client".into(),
        ),
        (
            "MMO__PROVIDERS__AIRTEL__API__CLIENT_SECRET",
            "sim-client-secret".into(),
        ),
        ("MMO__PROVIDERS__AIRTEL__API__COUNTRY", "UG".into()),
        ("MMO__PROVIDERS__AIRTEL__API__CURRENCY", "UGX".into()),
    ];
    settings.extend(
        extra
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    settings
}

/// A service on a port chosen in advance (the simulator must know where to send callbacks, and the
/// service where to ask: both are started knowing the other's address).
async fn service(
    port: u16,
    database: &str,
    simulator: &str,
    extra: &[(&'static str, &'static str)],
) -> Service {
    service_on(
        &temp_dir("reconciliation"),
        port,
        database,
        simulator,
        extra,
    )
    .await
}

/// Like [`service`], on a given journal (a restarted instance keeps its journal).
async fn service_on(
    journal: &std::path::Path,
    port: u16,
    database: &str,
    simulator: &str,
    extra: &[(&'static str, &'static str)],
) -> Service {
    let mut settings = settings(simulator, extra);
    let base = format!("http://127.0.0.1:{port}/v1/webhooks/mpesa/transaction-status");
    settings.push((
        "MMO__PROVIDERS__MPESA__API__RESULT_URL",
        format!("{base}/result"),
    ));
    settings.push((
        "MMO__PROVIDERS__MPESA__API__QUEUE_TIMEOUT_URL",
        format!("{base}/timeout"),
    ));
    let port = port.to_string();
    settings.push(("MMO__SERVER__PORT", port));
    let borrowed: Vec<(&str, &str)> = settings
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    Service::start_with(journal, &mongodb_uri(), database, &borrowed).await
}

async fn expect(
    service: &Service,
    provider: &str,
    callback_type: &str,
    key: &str,
    amount: &str,
    currency: &str,
) {
    let (status, body) = post_json(
        &format!("{}/v1/expectations", service.url),
        CLIENT,
        &json!({"provider": provider, "callback_type": callback_type, "key": key, "amount": amount, "currency": currency, "expected_within_secs": 1}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

async fn view(service: &Service, provider: &str, key: &str) -> Value {
    get_json(
        &format!("{}/v1/expectations/{provider}/{key}", service.url),
        Some(CLIENT),
    )
    .await
}

/// Waits (up to `limit`) until every expectation's reconciliation is no longer open.
async fn until_settled(
    service: &Service,
    expected: &[(&str, &str)],
    limit: Duration,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let mut views = Vec::new();
        for (provider, key) in expected {
            views.push(view(service, provider, key).await);
        }
        // Settled: the work item is closed and, once resolved, its answer is folded into the transaction
        // (the answer is journaled first and reaches the transaction through the drain).
        let open = views
            .iter()
            .filter(|view| match view["reconciliation"]["state"].as_str() {
                None | Some("open") => true,
                Some("resolved") => matches!(
                    view["transaction_status"].as_str(),
                    None | Some("pending" | "ambiguous" | "unknown")
                ),
                Some(_) => false,
            })
            .count();
        if open == 0 {
            return views;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} not settled: {views:#?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
}

#[actix_web::test]
async fn lost_callbacks_of_every_operator_end_with_their_final_status() {
    let [service_port, simulator_port] = free_ports();
    let simulator = Simulator::start(
        simulator_port,
        &format!("http://127.0.0.1:{service_port}"),
        20,
    )
    .await;
    let database = unique("reconcile_lost");
    let service = service(service_port, &database, &simulator.url, &[]).await;

    // (provider, flow, callback type, key, script extras, the final status expected, settled by)
    let payments = [
        (
            "mpesa",
            "stk_push",
            "stk_push",
            "ws_CO_lost_500",
            json!({"callback": "never", "pending_queries": 1}),
            "successful",
            "status_query",
        ),
        (
            "mpesa",
            "stk_push",
            "stk_push",
            "ws_CO_lost_4999",
            json!({"callback": "never", "pending_queries": 1, "pending_form": "result_4999", "outcome": "cancelled"}),
            "cancelled",
            "status_query",
        ),
        (
            "mpesa",
            "stk_push",
            "stk_push",
            "ws_CO_throttled",
            json!({"callback": "never", "throttled_queries": 1}),
            "successful",
            "status_query",
        ),
        (
            "mpesa",
            "stk_push",
            "stk_push",
            "ws_CO_on_time",
            json!({"callback": "send"}),
            "successful",
            "callback",
        ),
        (
            "mpesa",
            "b2c",
            "b2c_result",
            "AG_lost_b2c",
            json!({"callback": "never"}),
            "successful",
            "status_query",
        ),
        (
            "mpesa",
            "b2c",
            "b2c_result",
            "AG_lost_b2c_legacy",
            json!({"callback": "never", "legacy_keys": true, "outcome": "failed"}),
            "failed",
            "status_query",
        ),
        (
            "mtn",
            "collection",
            "collection",
            "mtn-lost-1",
            json!({"callback": "never", "not_found_queries": 1, "outcome": "failed", "currency": "UGX"}),
            "failed",
            "status_query",
        ),
        (
            "mtn",
            "collection",
            "collection",
            "mtn-lost-2",
            json!({"callback": "never", "pending_queries": 2, "reason_form": "object", "outcome": "failed", "currency": "UGX"}),
            "failed",
            "status_query",
        ),
        (
            "airtel",
            "payment",
            "payment",
            "airtel-lost-1",
            json!({"callback": "never", "pending_queries": 2}),
            "successful",
            "status_query",
        ),
        (
            "airtel",
            "payment",
            "payment",
            "airtel-twice",
            json!({"callback": "twice"}),
            "successful",
            "callback",
        ),
    ];
    for (provider, flow, callback_type, key, extras, _, _) in &payments {
        let mut script =
            json!({"provider": provider, "flow": flow, "key": key, "amount": "250.00"});
        for (name, value) in extras.as_object().unwrap() {
            script[name] = value.clone();
        }
        simulator.script(script).await;
        let currency = if *provider == "mpesa" { "KES" } else { "UGX" };
        expect(&service, provider, callback_type, key, "250.00", currency).await;
    }
    let expected: Vec<(&str, &str)> = payments.iter().map(|p| (p.0, p.3)).collect();
    let views = until_settled(&service, &expected, Duration::from_secs(60)).await;

    for (view, (_, _, _, key, _, status, by)) in views.iter().zip(&payments) {
        assert_eq!(
            view["reconciliation"]["state"], "resolved",
            "{key}: {view:#}"
        );
        assert_eq!(view["transaction_status"], *status, "{key}: {view:#}");
        assert_eq!(
            view["reconciliation"]["outcome"]["by"], *by,
            "{key}: {view:#}"
        );
    }
    // The transaction shows how it was settled, and the answers beside the callbacks.
    let detail = get_json(
        &format!("{}/v1/transactions/mtn/mtn-lost-2", service.url),
        Some(ADMIN),
    )
    .await;
    assert_eq!(detail["settled_by"], "status_query", "{detail:#}");
    assert_eq!(detail["expectation"]["amount"], "250.00");
    assert_eq!(detail["amount"], "250.00", "the answer's amount");
    let answers: Vec<&str> = detail["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|callback| callback["callback_type"] == "status_query")
        .map(|callback| callback["status"].as_str().unwrap())
        .collect();
    assert_eq!(answers, ["pending", "failed"], "{detail:#}");

    // Tokens are cached: one per operator API (MTN: per product) for all these questions.
    let stats = simulator.stats().await;
    for operator in ["mpesa", "mtn", "airtel"] {
        assert_eq!(stats["tokens_minted"][operator], 1, "{stats:#}");
    }
    // Callbacks that came were not asked about; one question per payment at a time.
    assert_eq!(simulator.record("ws_CO_on_time").await["queries"], 0);
    assert_eq!(simulator.record("airtel-twice").await["queries"], 0);
    assert_eq!(stats["max_concurrent_per_payment"], 1);

    // The report: counts and exact sums per currency.
    let today = chrono::Utc::now().format("%Y-%m-%d");
    let report = get_json(
        &format!("{}/v1/reports/reconciliation?date={today}", service.url),
        Some(ADMIN),
    )
    .await;
    assert_eq!(report["expected"]["count"], 10, "{report:#}");
    assert_eq!(report["recovered_by_query"]["count"], 8, "{report:#}");
    assert_eq!(report["confirmed_by_callback"]["count"], 2, "{report:#}");
    assert_eq!(
        report["recovered_by_query"]["amounts"]["KES"], "1250",
        "{report:#}"
    );
    assert_eq!(
        report["recovered_by_query"]["amounts"]["UGX"], "750",
        "{report:#}"
    );
    assert_eq!(report["unresolved"]["count"], 0);
    let mpesa_only = get_json(
        &format!(
            "{}/v1/reports/reconciliation?date={today}&provider=mpesa",
            service.url
        ),
        Some(ADMIN),
    )
    .await;
    assert_eq!(mpesa_only["expected"]["count"], 6, "{mpesa_only:#}");

    // The metrics say the same.
    let mut response = awc::Client::new()
        .get(format!("{}/metrics", service.url))
        .insert_header(("Authorization", format!("Bearer {ADMIN}")))
        .send()
        .await
        .unwrap();
    let metrics = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    for line in [
        "mmo_reconciler_recovered_total{provider=\"mpesa\"} 5",
        "mmo_reconciler_recovered_total{provider=\"mtn_mobile_money\"} 2",
        "mmo_reconciler_recovered_total{provider=\"airtel_money\"} 1",
        "mmo_reconciler_answers_total{provider=\"mpesa\",outcome=\"throttled\"} 1",
        "mmo_reconciler_answers_total{provider=\"mtn_mobile_money\",outcome=\"not_found\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

#[actix_web::test]
async fn confirmation_by_query_catches_a_forged_callback() {
    let [service_port, simulator_port] = free_ports();
    let simulator = Simulator::start(
        simulator_port,
        &format!("http://127.0.0.1:{service_port}"),
        20,
    )
    .await;
    let database = unique("reconcile_confirm");
    let service = service(
        service_port,
        &database,
        &simulator.url,
        &[("MMO__PROVIDERS__MTN__CONFIRM_BY_QUERY", "true")],
    )
    .await;
    // The callback claims success; the operator says the payment failed.
    simulator
        .script(json!({"provider": "mtn", "flow": "collection", "key": "mtn-forged", "outcome": "failed", "callback_disagrees": true, "currency": "UGX"}))
        .await;
    simulator
        .script(json!({"provider": "mtn", "flow": "collection", "key": "mtn-genuine", "outcome": "successful", "currency": "UGX"}))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (forged, genuine) = loop {
        let forged = get_json(
            &format!("{}/v1/transactions/mtn/mtn-forged", service.url),
            Some(ADMIN),
        )
        .await;
        let genuine = get_json(
            &format!("{}/v1/transactions/mtn/mtn-genuine", service.url),
            Some(ADMIN),
        )
        .await;
        // Resolved, and the answer folded into the transaction (it is journaled first, then drained).
        let done = |detail: &Value| {
            detail["reconciliation"]["state"] == "resolved"
                && detail["callbacks"].as_array().is_some_and(|callbacks| {
                    callbacks
                        .iter()
                        .any(|callback| callback["callback_type"] == "status_query")
                })
        };
        if done(&forged) && done(&genuine) {
            break (forged, genuine);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{forged:#}\n{genuine:#}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        forged["status"], "successful",
        "a query never demotes: {forged:#}"
    );
    assert_eq!(forged["conflict"], true, "{forged:#}");
    assert_eq!(forged["verified"], false);
    assert_eq!(forged["reconciliation"]["outcome"]["by"], "conflict");
    assert_eq!(genuine["verified"], true, "{genuine:#}");
    assert_eq!(genuine["conflict"], false);
    let today = chrono::Utc::now().format("%Y-%m-%d");
    let report = get_json(
        &format!("{}/v1/reports/reconciliation?date={today}", service.url),
        Some(ADMIN),
    )
    .await;
    assert_eq!(report["in_conflict"]["count"], 1, "{report:#}");
    assert_eq!(report["confirmed_by_both"]["count"], 1, "{report:#}");
}

#[actix_web::test]
async fn expectations_are_idempotent_and_checked_field_by_field() {
    let database = unique("reconcile_expectations");
    let journal = temp_dir("expectations");
    let service = Service::start_with(
        &journal,
        &mongodb_uri(),
        &database,
        &[
            ("MMO__AUTH__ADMIN_TOKENS", ADMIN),
            ("MMO__AUTH__CLIENT_TOKENS", CLIENT),
        ],
    )
    .await;
    let url = format!("{}/v1/expectations", service.url);
    let good = json!({"provider": "mpesa", "callback_type": "stk_push", "key": "ws_CO_expected", "amount": "1500.50", "currency": "KES", "msisdn": "254708374149", "expected_within_secs": 300});
    let (created, first) = post_json(&url, CLIENT, &good).await;
    assert_eq!(created, 201, "{first}");
    assert_eq!(first["amount"], "1500.50");
    assert_eq!(first["flow"], "stk_push");
    let (repeated, again) = post_json(&url, CLIENT, &good).await;
    assert_eq!(repeated, 200);
    assert_eq!(
        again["id"], first["id"],
        "a repeat returns the stored expectation"
    );

    // Only client tokens register expectations.
    for token in [TOKEN, ADMIN, "nobody"] {
        let (status, body) = post_json(&url, token, &good).await;
        assert_eq!(status, 401, "{token}: {body}");
        assert_eq!(body["code"], "AUTH_REQUIRED");
    }

    // A valid body with one field changed (null removes it), and the field the answer must name.
    let with = |changes: Value| {
        let mut body = json!({"provider": "mpesa", "callback_type": "stk_push", "key": "k", "amount": "1", "currency": "KES"});
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(name);
            } else {
                body[name] = value.clone();
            }
        }
        body
    };
    let invalid = [
        (with(json!({"provider": null})), "provider"),
        (with(json!({"provider": "orange"})), "provider"),
        (
            with(json!({"callback_type": "collection"})),
            "callback_type",
        ),
        (
            with(json!({"callback_type": "c2b_validation"})),
            "callback_type",
        ),
        (with(json!({"key": ""})), "key"),
        (with(json!({"amount": "-5"})), "amount"),
        (with(json!({"amount": "ten"})), "amount"),
        (with(json!({"amount": 1.5e300})), "amount"),
        (with(json!({"currency": "kes"})), "currency"),
        (with(json!({"msisdn": "+254 7"})), "msisdn"),
        (
            with(json!({"expected_within_secs": 0})),
            "expected_within_secs",
        ),
        (with(json!({"colour": "red"})), "colour"),
    ];
    for (body, field) in invalid {
        let (status, answer) = post_json(&url, CLIENT, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["code"], "INVALID_PARAMETER", "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{field}`")),
            "{body}: {answer}"
        );
    }
    let view = get_json(
        &format!("{}/v1/expectations/mpesa/ws_CO_expected", service.url),
        Some(ADMIN),
    )
    .await;
    assert_eq!(view["reconciliation"]["state"], "open", "{view:#}");
    assert_eq!(view["reconciliation"]["reasons"], json!(["expectation"]));
    assert!(view["transaction_status"].is_null());
}

#[actix_web::test]
async fn a_service_killed_mid_work_resumes_without_asking_twice_at_once() {
    let [service_port, simulator_port] = free_ports();
    let simulator = Simulator::start(
        simulator_port,
        &format!("http://127.0.0.1:{service_port}"),
        300,
    )
    .await;
    let database = unique("reconcile_restart");
    let keys: Vec<String> = (0..12).map(|n| format!("restart-{n}")).collect();
    let journal = temp_dir("restart");
    let first = service_on(&journal, service_port, &database, &simulator.url, &[]).await;
    for key in &keys {
        simulator
            .script(json!({"provider": "mtn", "flow": "collection", "key": key, "callback": "never", "pending_queries": 2, "currency": "UGX"}))
            .await;
        expect(&first, "mtn", "collection", key, "10", "UGX").await;
    }
    // Kill it while questions are in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while simulator.stats().await["queries_total"]
        .as_u64()
        .unwrap_or(0)
        < 4
    {
        assert!(std::time::Instant::now() < deadline, "no questions asked");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    first.signal("KILL");
    drop(first);
    // Restarted on its journal, as an instance comes back: answers journaled before the kill drain now.
    // (On a port of its own: the killed one's may linger in TIME_WAIT; no callback needs it here.)
    let [restart_port] = free_ports();
    let second = service_on(&journal, restart_port, &database, &simulator.url, &[]).await;
    let expected: Vec<(&str, &str)> = keys.iter().map(|key| ("mtn", key.as_str())).collect();
    let views = until_settled(&second, &expected, Duration::from_secs(90)).await;
    for view in &views {
        assert_eq!(view["transaction_status"], "successful", "{view:#}");
    }
    assert_eq!(simulator.stats().await["max_concurrent_per_payment"], 1);
}

#[actix_web::test]
async fn two_instances_share_the_work_and_ask_each_question_once() {
    let [port_a, port_b, simulator_port] = free_ports();
    let simulator =
        Simulator::start(simulator_port, &format!("http://127.0.0.1:{port_a}"), 150).await;
    let database = unique("reconcile_two");
    // The shared operator token is sealed at rest with the instances' key.
    let sealed = [(
        "MMO__DELIVERY__SECRETS_KEY",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )];
    let a = service(port_a, &database, &simulator.url, &sealed).await;
    let b = service(port_b, &database, &simulator.url, &sealed).await;
    let keys: Vec<String> = (0..30).map(|n| format!("ws_CO_shared_{n}")).collect();
    for key in &keys {
        simulator
            .script(json!({"provider": "mpesa", "flow": "stk_push", "key": key, "callback": "never", "pending_queries": 1}))
            .await;
        expect(&a, "mpesa", "stk_push", key, "75", "KES").await;
    }
    let expected: Vec<(&str, &str)> = keys.iter().map(|key| ("mpesa", key.as_str())).collect();
    let views = until_settled(&b, &expected, Duration::from_secs(90)).await;
    for view in &views {
        assert_eq!(view["transaction_status"], "successful", "{view:#}");
    }
    for key in &keys {
        assert_eq!(
            simulator.record(key).await["queries"],
            2,
            "{key}: one pending answer, one final: no question asked twice"
        );
    }
    let stats = simulator.stats().await;
    assert_eq!(stats["max_concurrent_per_payment"], 1);
    // Daraja invalidates a token when the next is minted: the instances share one.
    assert_eq!(stats["tokens_minted"]["mpesa"], 1, "{stats:#}");
    // Both instances did some of the work (each claims what is due when it looks).
    let mut per_instance = Vec::new();
    for instance in [&a, &b] {
        let mut response = awc::Client::new()
            .get(format!("{}/metrics", instance.url))
            .insert_header(("Authorization", format!("Bearer {ADMIN}")))
            .send()
            .await
            .unwrap();
        let metrics = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
        let asked: u64 = metrics
            .lines()
            .find(|line| line.starts_with("mmo_reconciler_queries_total{provider=\"mpesa\"}"))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        per_instance.push(asked);
    }
    assert_eq!(per_instance.iter().sum::<u64>(), 60, "{per_instance:?}");
    assert!(
        per_instance.iter().all(|asked| *asked > 0),
        "{per_instance:?}"
    );
    // Shared through MongoDB, the token is not there in clear: sealed, and found by its digest.
    let stored = mongodb::Client::with_uri_str(mongodb_uri())
        .await
        .unwrap()
        .database(&database)
        .collection::<mongodb::bson::Document>("operator_tokens")
        .find_one(mongodb::bson::doc! {})
        .await
        .unwrap()
        .expect("the shared token's document");
    let token = stored.get_str("token").unwrap();
    assert!(token.starts_with("sealed:v1:"), "{stored}");
    assert_eq!(
        stored.get_str("token_digest").unwrap().len(),
        64,
        "{stored}"
    );
}
