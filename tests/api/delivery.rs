//! Delivery to the merchant's systems over real HTTP and MongoDB: endpoints registered through the API,
//! events signed as the Standard Webhooks specification says, retried, kept in version order, and a
//! receiver's `410 Gone` honoured. The receivers are real HTTP servers started by the tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use mmo_actors::delivery::signature::{secret_key, verify};
use serde_json::{json, Value};

use mmo_webhooks::startup::Application;

use crate::helpers::{journal_dir, spawn_app_resolving, spawn_app_with, test_settings, TestApp};

const ADMIN: &str = "admin-token-0123456789abcdef";

/// One request a receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON payload")
    }
}

/// A receiver on loopback that records every request and answers `answer(n)` to the n-th (0-based).
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

type Answer = Arc<dyn Fn(usize) -> (u16, Option<u64>) + Send + Sync>;

pub(crate) fn receiver(
    answer: impl Fn(usize) -> (u16, Option<u64>) + Send + Sync + 'static,
) -> Receiver {
    slow_receiver(|_| Duration::ZERO, answer)
}

/// A receiver that takes `delay(n)` before answering the n-th request (a slow merchant's system).
pub(crate) fn slow_receiver(
    delay: impl Fn(usize) -> Duration + Send + Sync + 'static,
    answer: impl Fn(usize) -> (u16, Option<u64>) + Send + Sync + 'static,
) -> Receiver {
    let delay: Arc<dyn Fn(usize) -> Duration + Send + Sync> = Arc::new(delay);
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let answer: Answer = Arc::new(answer);
    let (recorded, answering) = (Arc::clone(&got), Arc::clone(&answer));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let (recorded, answering, delay) = (
            Arc::clone(&recorded),
            Arc::clone(&answering),
            Arc::clone(&delay),
        );
        App::new().default_service(web::to(move |request: HttpRequest, body: web::Bytes| {
            let (recorded, answering, delay) = (
                Arc::clone(&recorded),
                Arc::clone(&answering),
                Arc::clone(&delay),
            );
            async move {
                let header = |name| {
                    request
                        .headers()
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let index = {
                    let mut got = recorded.lock().unwrap();
                    got.push(Received {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        body: body.to_vec(),
                    });
                    got.len() - 1
                };
                let delay = delay(index);
                if !delay.is_zero() {
                    actix_web::rt::time::sleep(delay).await;
                }
                let (status, retry_after) = answering(index);
                let mut response =
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
                if let Some(seconds) = retry_after {
                    response.insert_header(("Retry-After", seconds.to_string()));
                }
                response.body("answered by the test receiver")
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .expect("listens")
    .run();
    actix_web::rt::spawn(server);
    Receiver {
        url: format!("http://127.0.0.1:{port}/hooks"),
        got,
    }
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `enough` holds of what was received (30 s at most).
    pub(crate) async fn until(
        &self,
        what: &str,
        enough: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        for _ in 0..600 {
            let received = self.received();
            if enough(&received) {
                return received;
            }
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: the receiver got {:#?}", self.received());
    }
}

pub(crate) async fn app_delivering(extra: &[(&str, &str)]) -> TestApp {
    let mut overrides = vec![
        ("MMO__AUTH__ADMIN_TOKENS", ADMIN),
        // The test receivers listen on loopback, as a developer's does (config/local.toml).
        ("MMO__DELIVERY__ALLOW_LOOPBACK", "true"),
        ("MMO__DELIVERY__RETRY_SCHEDULE_SECS", "0,1,1,1,1"),
        ("MMO__DELIVERY__POLL_INTERVAL_MS", "50"),
    ];
    overrides.extend_from_slice(extra);
    spawn_app_with(test_settings(&overrides)).await
}

pub(crate) async fn admin(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Value,
) -> crate::helpers::Reply {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    app.send(method, path, body, Some(ADMIN), Some("application/json"))
        .await
}

/// Registers `url` for every event; returns the endpoint's id and secret.
pub(crate) async fn register(app: &TestApp, url: &str) -> (String, String) {
    let reply = admin(app, Method::POST, "/v1/endpoints", json!({"url": url})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let secret = reply.body["secret"].as_str().expect("a secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let key = secret_key(&secret).expect("base64 after whsec_");
    assert!((24..=64).contains(&key.len()), "{} bytes", key.len());
    assert_eq!(reply.body["enabled"], true);
    (reply.body["id"].as_str().unwrap().to_owned(), secret)
}

/// Whether `delivery` is signed with `secret`, by the service's own verifier — and the `standardwebhooks`
/// crate, the specification's reference library, must say the same: an independent implementation of
/// what a merchant's receiver checks.
pub(crate) fn verifies(secret: &str, delivery: &Received) -> bool {
    let key = secret_key(secret).unwrap();
    let now = chrono::Utc::now().timestamp();
    let ours = verify(
        &key,
        &delivery.id,
        &delivery.timestamp,
        &delivery.signature,
        &delivery.body,
        now,
    )
    .is_ok();
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("webhook-id", &delivery.id),
        ("webhook-timestamp", &delivery.timestamp),
        ("webhook-signature", &delivery.signature),
    ] {
        headers.insert(name, value.parse().expect("a header value"));
    }
    let theirs = standardwebhooks::Webhook::new(secret)
        .expect("a whsec_ secret")
        .verify(&delivery.body, &headers)
        .is_ok();
    assert_eq!(
        ours, theirs,
        "the service's verifier and standardwebhooks disagree on {delivery:?}"
    );
    ours
}

#[actix_web::test]
async fn a_payment_is_delivered_signed_with_the_transaction_as_the_api_shows_it() {
    let app = app_delivering(&[]).await;
    let receiver = receiver(|_| (204, None));
    let (_, secret) = register(&app, &receiver.url).await;

    app.mtn_collection("delivered-1", "SUCCESSFUL").await;
    let received = receiver.until("one delivery", |got| !got.is_empty()).await;
    let delivery = &received[0];
    assert!(delivery.id.starts_with("evt_"), "{}", delivery.id);
    assert!(
        verifies(&secret, delivery),
        "the signature verifies: {delivery:?}"
    );
    let event = delivery.json();
    assert_eq!(event["type"], "transaction.successful");
    assert!(event["timestamp"].as_str().is_some());

    // `data` is the transaction as the query API shows it, without its callbacks, plus its version.
    let shown = admin(
        &app,
        Method::GET,
        "/v1/transactions/mtn/delivered-1",
        Value::Null,
    )
    .await
    .body;
    let mut expected = shown.as_object().unwrap().clone();
    for extra in ["callbacks", "expectation", "reconciliation"] {
        expected.remove(extra);
    }
    expected.insert("version".into(), json!(1));
    assert_eq!(event["data"], Value::Object(expected));

    // The event is listed as delivered, with the attempt.
    let shown = admin(
        &app,
        Method::GET,
        &format!("/v1/events/{}", delivery.id),
        Value::Null,
    )
    .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    let shown = wait_for_status(&app, &delivery.id, "delivered").await;
    assert_eq!(shown["attempts"][0]["status_code"], 204);
    assert_eq!(shown["payload"], event);
    let listed = admin(
        &app,
        Method::GET,
        "/v1/events?type=transaction.successful&provider=mtn&status=delivered",
        Value::Null,
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["items"][0]["id"], delivery.id.as_str());

    // A repeat that changes nothing makes no event.
    app.mtn_collection("delivered-1", "SUCCESSFUL").await;
    app.drained().await;
    let events = collection(&app, "events")
        .count_documents(mongodb::bson::doc! {"transaction_key": "delivered-1"})
        .await
        .unwrap();
    assert_eq!(events, 1);
}

/// A new event is read from the feed (the change stream of the write that carried it), sent, and
/// inserted into `events` once with its outcome — never inserted pending and rewritten — and sending it
/// writes nothing to its transaction. The feed read again from an older position (a new sender resuming
/// where a crashed one last saved) sends only what `events` lacks. And what 0.4.0 (`event_batches`) and
/// 0.5.0 (a transaction's `outbox`) instances write during a rolling upgrade is sent all the same.
#[actix_web::test]
async fn a_new_event_is_written_once_with_its_outcome_and_a_feed_read_again_sends_only_what_is_new()
{
    use mongodb::bson::{doc, oid::ObjectId, Document};
    // However slow the machine, the first attempt is waited for (longer than a request's time-out, which
    // bounds it): the event is written once, with its outcome.
    let app = app_delivering(&[("MMO__DELIVERY__FIRST_ATTEMPT_WAIT_MS", "60000")]).await;
    let receiver = receiver(|_| (204, None));
    register(&app, &receiver.url).await;
    let transactions = collection(&app, "transactions");
    let leases = collection(&app, "leases");
    // The feed's position from before any event (the sender saves one as it starts).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let start = loop {
        let lease = leases.find_one(doc! {"_id": "delivery"}).await.unwrap();
        if let Some(position) = lease.and_then(|lease| lease.get("feed").cloned()) {
            break position;
        }
        assert!(std::time::Instant::now() < deadline, "no position saved");
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    };

    app.mtn_collection("batched-1", "SUCCESSFUL").await;
    let received = receiver.until("one delivery", |got| !got.is_empty()).await;
    let id = received[0].id.clone();
    let stored = wait_for_status(&app, &id, "delivered").await;
    assert_eq!(stored["targets"][0]["attempts"], 1);
    assert_eq!(stored["attempts"].as_array().map(Vec::len), Some(1));
    caught_up(&app).await;
    let event: Document = collection(&app, "events")
        .find_one(doc! {"_id": &id})
        .await
        .unwrap()
        .unwrap();
    let transaction = event.get_str("transaction_id").unwrap().to_owned();
    // Written to `events` by one insert, never rewritten; its transaction written once, by the insert
    // that carried the event (the replica set's oplog says so).
    let database = app.transactions.namespace().db;
    let oplog = app
        .transactions
        .client()
        .database("local")
        .collection::<Document>("oplog.rs");
    let writes = |collection: &'static str, op: &'static str, id: String| {
        let (oplog, namespace) = (oplog.clone(), format!("{database}.{collection}"));
        async move {
            oplog
                .count_documents(
                    doc! {"ns": namespace, "op": op, "$or": [{"o._id": &id}, {"o2._id": &id}]},
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(writes("events", "i", id.clone()).await, 1, "inserted once");
    assert_eq!(writes("events", "u", id.clone()).await, 0, "never updated");
    assert_eq!(
        writes("transactions", "u", transaction.clone()).await,
        0,
        "sending an event writes nothing to its transaction"
    );

    // A change carrying a new event, written while the sending lease is held elsewhere; the position
    // set back to before the first event (a sender that recorded its events, then died before saving
    // its position). The next holder reads both events again: only the new one is sent.
    let mut fresh = event.clone();
    for field in ["attempts", "expire_at", "status", "due_at"] {
        fresh.remove(field);
    }
    let endpoint = stored["targets"][0]["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = mongodb::bson::DateTime::now();
    fresh.insert(
        "targets",
        vec![doc! {"endpoint": &endpoint, "status": "pending", "attempts": 0, "next_at": now}],
    );
    let mut outboxed = fresh.clone();
    let mut legacy = fresh.clone();
    // Ids as the service derives them (the ordering gate looks earlier versions up by them).
    let [by_hand, by_0_5_0, by_0_4_0] =
        [2, 3, 4].map(|version| mmo_actors::store::events::event_id(&transaction, version));
    fresh.insert("_id", &by_hand);
    fresh.insert("version", 2_i64);
    let elsewhere = mongodb::bson::DateTime::from_millis(now.timestamp_millis() + 1_000);
    leases
        .update_one(
            doc! {"_id": "delivery"},
            doc! {"$set": {"owner": "another-instance", "until": elsewhere, "feed": start}},
        )
        .await
        .unwrap();
    transactions
        .update_one(doc! {"_id": &transaction}, doc! {"$set": {"event": &fresh}})
        .await
        .unwrap();
    let received = receiver
        .until("the new event", |got| {
            got.iter().any(|delivery| delivery.id == by_hand)
        })
        .await;
    wait_for_status(&app, &by_hand, "delivered").await;
    assert_eq!(
        received.iter().filter(|delivery| delivery.id == id).count(),
        1,
        "an event in `events` already is not sent again"
    );

    // A rolling upgrade: an instance of 0.5.0 left an event in the transaction's outbox, and one of
    // 0.4.0 wrote a batch of new events to `event_batches`.
    outboxed.insert("_id", &by_0_5_0);
    outboxed.insert("version", 3_i64);
    transactions
        .update_one(
            doc! {"_id": &transaction},
            doc! {"$push": {"outbox": &outboxed}, "$set": {"outbox_since": now}},
        )
        .await
        .unwrap();
    legacy.insert("_id", &by_0_4_0);
    legacy.insert("version", 4_i64);
    // 0.4.0 wrote its events pending, due at once.
    legacy.insert("status", "pending");
    legacy.insert("due_at", now);
    collection(&app, "event_batches")
        .insert_one(doc! {"_id": ObjectId::new(), "events": [legacy]})
        .await
        .unwrap();
    let received = receiver
        .until("the events 0.5.0 and 0.4.0 wrote", |got| {
            [&by_0_5_0, &by_0_4_0]
                .iter()
                .all(|wanted| got.iter().any(|delivery| delivery.id == **wanted))
        })
        .await;
    let order: Vec<&String> = received
        .iter()
        .map(|delivery| &delivery.id)
        .filter(|id| **id == by_0_5_0 || **id == by_0_4_0)
        .collect();
    assert_eq!(order, [&by_0_5_0, &by_0_4_0], "each once, in version order");
    let outbox_left = transactions
        .count_documents(doc! {"_id": &transaction, "$or": [{"outbox": {"$exists": true}}, {"outbox_since": {"$exists": true}}]})
        .await
        .unwrap();
    assert_eq!(outbox_left, 0, "the 0.5.0 outbox is emptied");
    assert_eq!(
        received.iter().filter(|delivery| delivery.id == id).count(),
        1
    );
}

pub(crate) use crate::support::unsent;

/// Waits until every transaction's latest event is in `events` (20 s at most).
async fn caught_up(app: &TestApp) {
    let database = app
        .transactions
        .client()
        .database(app.transactions.namespace().db.as_str());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = unsent(&database).await;
        if left == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} event(s) never recorded"
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(crate) fn collection(
    app: &TestApp,
    name: &str,
) -> mongodb::Collection<mongodb::bson::Document> {
    app.transactions
        .client()
        .database(app.transactions.namespace().db.as_str())
        .collection(name)
}

pub(crate) async fn wait_for_status(app: &TestApp, id: &str, status: &str) -> Value {
    for _ in 0..400 {
        let shown = admin(app, Method::GET, &format!("/v1/events/{id}"), Value::Null).await;
        if shown.body["status"] == status {
            return shown.body;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("event {id} never became {status}");
}

#[actix_web::test]
async fn a_failing_receiver_gets_retries_of_one_id_and_never_a_later_version_first() {
    let app = app_delivering(&[]).await;
    // The first three requests fail: all of them are version 1's.
    let receiver = receiver(|index| if index < 3 { (500, None) } else { (200, None) });
    let (_, secret) = register(&app, &receiver.url).await;

    app.mtn_collection("ordered-1", "PENDING").await;
    app.drained().await;
    app.mtn_collection("ordered-1", "SUCCESSFUL").await;
    let received = receiver
        .until("both versions delivered", |got| {
            got.iter()
                .any(|delivery| delivery.json()["data"]["version"] == 2)
        })
        .await;
    let versions: Vec<i64> = received
        .iter()
        .map(|delivery| delivery.json()["data"]["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 1, 1, 1, 2], "{received:#?}");
    let first_id = &received[0].id;
    assert!(received[..4]
        .iter()
        .all(|delivery| &delivery.id == first_id));
    assert_ne!(&received[4].id, first_id);
    assert!(received.iter().all(|delivery| verifies(&secret, delivery)));
    assert_eq!(received[0].json()["type"], "transaction.pending");
    assert_eq!(received[4].json()["type"], "transaction.successful");
    let shown = wait_for_status(&app, first_id, "delivered").await;
    assert_eq!(shown["targets"][0]["attempts"], 4);
}

/// A receiver that holds every request open until `release` has a permit for it, then answers 204;
/// counts the requests it got and the ids.
struct Holding {
    url: String,
    release: Arc<tokio::sync::Semaphore>,
    ids: Arc<Mutex<Vec<String>>>,
}

fn holding_receiver() -> Holding {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let (releasing, recording) = (Arc::clone(&release), Arc::clone(&ids));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let (releasing, recording) = (Arc::clone(&releasing), Arc::clone(&recording));
        App::new().default_service(web::to(move |request: HttpRequest| {
            let (releasing, recording) = (Arc::clone(&releasing), Arc::clone(&recording));
            async move {
                let id = request
                    .headers()
                    .get("webhook-id")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                recording.lock().unwrap().push(id);
                releasing.acquire().await.unwrap().forget();
                HttpResponse::NoContent().finish()
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .expect("listens")
    .run();
    actix_web::rt::spawn(server);
    Holding {
        url: format!("http://127.0.0.1:{port}/held"),
        release,
        ids,
    }
}

/// An endpoint that does not answer never holds another one's deliveries: with every slot of the silent
/// one taken by requests it holds open (for far longer than the wait below, its requests time out only
/// after 60 s), the other endpoint gets every event; once the silent one answers, it gets them all too.
#[actix_web::test]
async fn an_endpoint_that_does_not_answer_never_holds_another_ones_deliveries() {
    let app = app_delivering(&[
        ("MMO__DELIVERY__MAX_IN_FLIGHT", "2"),
        ("MMO__DELIVERY__TIMEOUT_SECS", "60"),
        ("MMO__DELIVERY__LEASE_SECS", "120"),
    ])
    .await;
    let silent = holding_receiver();
    let fast = receiver(|_| (204, None));
    register(&app, &silent.url).await;
    register(&app, &fast.url).await;

    let keys: Vec<String> = (0..8).map(|i| format!("isolated-{i}")).collect();
    for key in &keys {
        app.mtn_collection(key, "SUCCESSFUL").await;
    }
    let distinct = |ids: &mut Vec<String>| {
        ids.sort();
        ids.dedup();
        ids.len()
    };
    // Within 30 s (`until`), while the silent endpoint's first requests are still open.
    fast.until("every event at the endpoint that answers", |got| {
        distinct(&mut got.iter().map(|delivery| delivery.id.clone()).collect()) == keys.len()
    })
    .await;
    let held = silent.ids.lock().unwrap().len();
    assert!(
        (1..=2).contains(&held),
        "the silent endpoint holds its two slots and got no more: {held}"
    );

    silent.release.add_permits(1_000);
    for _ in 0..600 {
        if distinct(&mut silent.ids.lock().unwrap().clone()) == keys.len() {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the endpoint that answered late did not get every event: {:?}",
        silent.ids.lock().unwrap()
    );
}

#[actix_web::test]
async fn an_event_that_fails_every_attempt_is_a_dead_letter_until_replayed() {
    let app = app_delivering(&[("MMO__DELIVERY__RETRY_SCHEDULE_SECS", "0,1")]).await;
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&healthy);
    let receiver = receiver(move |_| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            (200, None)
        } else {
            (503, None)
        }
    });
    let (endpoint, _) = register(&app, &receiver.url).await;
    app.mtn_collection("dead-1", "FAILED").await;
    let received = receiver.until("two attempts", |got| got.len() >= 2).await;
    let id = received[0].id.clone();
    let shown = wait_for_status(&app, &id, "failed").await;
    assert_eq!(shown["targets"][0]["status"], "failed");
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 2);
    let path = format!("/v1/endpoints/{endpoint}");
    let failing = admin(&app, Method::GET, &path, Value::Null).await.body;
    assert!(failing["failing_since"].is_string(), "{failing}");

    // The receiver is back: recovering the endpoint sends what failed for it.
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let recovered = admin(
        &app,
        Method::POST,
        &format!("/v1/endpoints/{endpoint}/recover?since=2000-01-01"),
        Value::Null,
    )
    .await;
    assert_eq!(recovered.status, StatusCode::ACCEPTED, "{}", recovered.body);
    assert_eq!(recovered.body["requeued"], 1);
    wait_for_status(&app, &id, "delivered").await;
    assert!(receiver.received().iter().all(|delivery| delivery.id == id));
    let recovered = admin(&app, Method::GET, &path, Value::Null).await.body;
    assert!(recovered["failing_since"].is_null(), "{recovered}");
}

/// An endpoint that answers `429` with a `Retry-After` of a century, forever, gets the schedule's attempts
/// (its wait capped at the schedule's longest) and the event ends as a dead letter, not parked.
#[actix_web::test]
async fn an_endpoint_asking_to_wait_a_century_gets_the_schedule_and_a_dead_letter() {
    let app = app_delivering(&[("MMO__DELIVERY__RETRY_SCHEDULE_SECS", "0,1,1")]).await;
    let receiver = receiver(|_| (429, Some(4_000_000_000)));
    register(&app, &receiver.url).await;
    app.mtn_collection("slow-down-1", "SUCCESSFUL").await;
    let received = receiver.until("three attempts", |got| got.len() >= 3).await;
    let shown = wait_for_status(&app, &received[0].id, "failed").await;
    assert_eq!(shown["targets"][0]["status"], "failed");
    assert_eq!(shown["targets"][0]["attempts"], 3);
    let attempts = shown["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|attempt| attempt["status_code"] == 429));
    assert!(receiver
        .received()
        .iter()
        .all(|got| got.id == received[0].id));
}

#[actix_web::test]
async fn gone_disables_the_endpoint() {
    let app = app_delivering(&[]).await;
    let receiver = receiver(|_| (410, None));
    let (endpoint, _) = register(&app, &receiver.url).await;
    app.mtn_collection("gone-1", "SUCCESSFUL").await;
    let received = receiver.until("one attempt", |got| !got.is_empty()).await;
    wait_for_status(&app, &received[0].id, "failed").await;
    let shown = admin(
        &app,
        Method::GET,
        &format!("/v1/endpoints/{endpoint}"),
        Value::Null,
    )
    .await;
    assert_eq!(shown.body["enabled"], false, "{}", shown.body);
    assert_eq!(shown.body["disabled_reason"], "answered 410 Gone");
}

#[actix_web::test]
async fn an_endpoint_failing_for_too_long_is_disabled() {
    let app = app_delivering(&[("MMO__DELIVERY__DISABLE_AFTER_SECS", "1")]).await;
    let receiver = receiver(|_| (500, None));
    let (endpoint, _) = register(&app, &receiver.url).await;
    app.mtn_collection("too-long-1", "SUCCESSFUL").await;
    // The second attempt comes about a second after the first: failing for `disable_after` (1 s) by
    // then, or by the third.
    receiver.until("two attempts", |got| got.len() >= 2).await;
    let path = format!("/v1/endpoints/{endpoint}");
    for _ in 0..200 {
        let shown = admin(&app, Method::GET, &path, Value::Null).await.body;
        if shown["enabled"] == false {
            assert_eq!(shown["disabled_reason"], "failing for too long");
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the endpoint was never disabled");
}

#[actix_web::test]
async fn a_rotated_secret_signs_beside_the_new_one_during_the_overlap() {
    // With a key, secrets are sealed at rest.
    let app = app_delivering(&[(
        "MMO__DELIVERY__SECRETS_KEY",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    )])
    .await;
    let receiver = receiver(|_| (200, None));
    let (endpoint, old) = register(&app, &receiver.url).await;
    let rotated = admin(
        &app,
        Method::POST,
        &format!("/v1/endpoints/{endpoint}/secret/rotate"),
        Value::Null,
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated.body["previous"][0]["secret"], old.as_str());
    let stored = collection(&app, "endpoints")
        .find_one(mongodb::bson::doc! {"_id": &endpoint})
        .await
        .unwrap()
        .unwrap();
    let stored = stored.get_array("secrets").unwrap();
    assert_eq!(stored.len(), 2);
    for secret in stored {
        let text = secret.as_document().unwrap().get_str("secret").unwrap();
        assert!(text.starts_with("sealed:v1:"), "{text}");
        assert!(!text.contains(&new[6..]) && !text.contains(&old[6..]));
    }

    app.mtn_collection("rotated-1", "SUCCESSFUL").await;
    let received = receiver.until("one delivery", |got| !got.is_empty()).await;
    assert_eq!(received[0].signature.split(' ').count(), 2);
    assert!(verifies(&new, &received[0]));
    assert!(verifies(&old, &received[0]));
}

/// Rotated twice within the overlap: the oldest secret keeps signing until its own overlap ends (a second
/// rotation does not cut it short), beside the middle one and the new one; once its overlap ends, it no
/// longer signs. Rotations that would make more than ten secrets sign at once are refused.
#[actix_web::test]
async fn each_rotated_secret_signs_until_its_own_overlap_ends_however_many_rotations_follow() {
    use mongodb::bson::doc;
    let app = app_delivering(&[(
        "MMO__DELIVERY__SECRETS_KEY",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    )])
    .await;
    let receiver = receiver(|_| (200, None));
    let (endpoint, oldest) = register(&app, &receiver.url).await;
    let rotation = format!("/v1/endpoints/{endpoint}/secret/rotate");
    let rotate = || admin(&app, Method::POST, &rotation, Value::Null);
    let first = rotate().await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let middle = first.body["secret"].as_str().unwrap().to_owned();
    let second = rotate().await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let newest = second.body["secret"].as_str().unwrap().to_owned();
    let previous = second.body["previous"].as_array().unwrap();
    assert_eq!(previous.len(), 2, "{}", second.body);
    assert_eq!(previous[0]["secret"], middle.as_str());
    assert_eq!(previous[1]["secret"], oldest.as_str());
    // The oldest keeps the end its own rotation gave it, earlier than the middle one's.
    assert_eq!(
        previous[1]["expires_at"],
        first.body["previous"][0]["expires_at"]
    );
    assert!(
        previous[1]["expires_at"].as_str() < previous[0]["expires_at"].as_str(),
        "{}",
        second.body
    );

    app.mtn_collection("rotated-twice-1", "SUCCESSFUL").await;
    let received = receiver.until("one delivery", |got| !got.is_empty()).await;
    assert_eq!(received[0].signature.split(' ').count(), 3, "{received:?}");
    for secret in [&newest, &middle, &oldest] {
        assert!(verifies(secret, &received[0]), "{received:?}");
    }

    // The oldest one's overlap ends (set in the database rather than waited for).
    let ended =
        mongodb::bson::DateTime::from_chrono(chrono::Utc::now() - chrono::Duration::seconds(1));
    let written = collection(&app, "endpoints")
        .update_one(
            doc! {"_id": &endpoint},
            doc! {"$set": {"secrets.2.expires_at": ended}},
        )
        .await
        .unwrap();
    assert_eq!(written.modified_count, 1);
    app.mtn_collection("rotated-twice-2", "SUCCESSFUL").await;
    let received = receiver.until("two deliveries", |got| got.len() >= 2).await;
    let later = &received[1];
    assert_eq!(later.signature.split(' ').count(), 2, "{later:?}");
    assert!(verifies(&newest, later) && verifies(&middle, later));
    assert!(!verifies(&oldest, later), "{later:?}");
    let shown = admin(
        &app,
        Method::GET,
        &format!("/v1/endpoints/{endpoint}/secret"),
        Value::Null,
    )
    .await;
    assert_eq!(shown.body["previous"].as_array().map(Vec::len), Some(1));

    // Two secrets sign now; eight more rotations make ten, and the next is refused.
    for rotation in 0..8 {
        let reply = rotate().await;
        assert_eq!(reply.status, StatusCode::OK, "{rotation}: {}", reply.body);
    }
    let refused = rotate().await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.body["code"], "TOO_MANY_SECRETS");
    let stored = collection(&app, "endpoints")
        .find_one(doc! {"_id": &endpoint})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_array("secrets").unwrap().len(), 10);
}

/// An instance whose `delivery.secrets_key` cannot open the secrets stored sealed (another key, or none)
/// refuses to start, naming the setting and the endpoint, instead of failing their events without an
/// attempt; with the key they were sealed with, it starts.
#[actix_web::test]
async fn an_instance_whose_key_does_not_open_the_stored_secrets_refuses_to_start() {
    const KEY_A: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const KEY_B: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let first = test_settings(&[]);
    let database = first.mongodb.database.clone();
    let settings = |key: &str| {
        test_settings(&[
            ("MMO__MONGODB__DATABASE", database.as_str()),
            ("MMO__AUTH__ADMIN_TOKENS", ADMIN),
            ("MMO__DELIVERY__ALLOW_PRIVATE_NETWORKS", "true"),
            ("MMO__DELIVERY__SECRETS_KEY", key),
        ])
    };
    let app = spawn_app_with(settings(KEY_A)).await;
    let receiver = receiver(|_| (204, None));
    let (endpoint, _) = register(&app, &receiver.url).await;

    for (key, why) in [(KEY_B, "does not open"), ("", "is empty")] {
        let mut refused = settings(key);
        refused.journal.dir = journal_dir();
        let error = match Application::build(refused).await {
            Ok(_) => panic!("an instance with key {key:?} started"),
            Err(error) => error.to_string(),
        };
        assert!(error.starts_with("delivery.secrets_key"), "{error}");
        assert!(error.contains(why) && error.contains(&endpoint), "{error}");
    }
    // With the key they were sealed with, another instance starts and delivers, signed.
    let again = spawn_app_with(settings(KEY_A)).await;
    again.mtn_collection("same-key-1", "SUCCESSFUL").await;
    receiver.until("one delivery", |got| !got.is_empty()).await;
}

#[actix_web::test]
async fn bad_endpoints_are_refused_naming_the_field() {
    // Private networks refused, as in production.
    let app = spawn_app_with(test_settings(&[("MMO__AUTH__ADMIN_TOKENS", ADMIN)])).await;
    for (body, field) in [
        (json!({"url": "ftp://example.com/"}), "url"),
        (json!({"url": "/relative"}), "url"),
        (json!({"url": "http://127.0.0.1:9000/"}), "url"),
        (json!({"url": "http://169.254.169.254/latest"}), "url"),
        // Issue 27's findings: NAT64 and 6to4 of the metadata address, benchmarking.
        (json!({"url": "http://[64:ff9b::a9fe:a9fe]/"}), "url"),
        (json!({"url": "http://[2002:a9fe:a9fe::1]/"}), "url"),
        (json!({"url": "http://198.18.0.1/"}), "url"),
        (json!({"url": "http://localhost:9000/"}), "url"),
        (
            json!({"url": "https://8.8.8.8/hooks", "event_types": ["payment.done"]}),
            "event_types",
        ),
        (
            json!({"url": "https://8.8.8.8/hooks", "providers": ["vodafone"]}),
            "providers",
        ),
        (
            json!({"url": "https://8.8.8.8/hooks", "colour": "red"}),
            "colour",
        ),
        (json!({"event_types": []}), "url"),
    ] {
        let reply = admin(&app, Method::POST, "/v1/endpoints", body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.body
        );
        assert_eq!(reply.body["code"], "INVALID_PARAMETER");
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{field}`")),
            "{body}: {}",
            reply.body
        );
    }
    // Without an admin token, nothing.
    let reply = app
        .send(Method::GET, "/v1/endpoints", Vec::new(), None, None)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

/// `delivery.allow_loopback` (config/local.toml) lets endpoints reach this machine and nothing else that
/// is not public: private ranges, link-local, metadata addresses and the IPv6 forms that carry them are
/// still refused.
#[actix_web::test]
async fn loopback_allowed_still_refuses_private_link_local_and_metadata_addresses() {
    let app = spawn_app_with(test_settings(&[
        ("MMO__AUTH__ADMIN_TOKENS", ADMIN),
        ("MMO__DELIVERY__ALLOW_LOOPBACK", "true"),
    ]))
    .await;
    for url in [
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.100.100.200/latest/meta-data",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/latest/meta-data",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://198.18.0.1/",
    ] {
        let reply = admin(&app, Method::POST, "/v1/endpoints", json!({"url": url})).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{url}: {}",
            reply.body
        );
        let message = reply.body["message"].as_str().unwrap();
        assert!(
            message.contains("endpoints must be public or loopback"),
            "{url}: {message}"
        );
    }
    for url in [
        "http://127.0.0.1:9100/",
        "http://[::1]:9100/",
        "http://localhost:9100/",
    ] {
        let reply = admin(&app, Method::POST, "/v1/endpoints", json!({"url": url})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{url}: {}", reply.body);
    }
}

/// Issue 27: the promise "checked again at every connection". The endpoint is registered while its name
/// resolves to a public address; when the event is sent the name resolves to loopback (where a receiver
/// listens) and then to the metadata address. Each attempt fails naming the address, and nothing reaches
/// the receiver. The test's resolver answers both the registration and the delivery client.
#[actix_web::test]
async fn a_name_re_pointed_inside_after_registration_is_refused_at_every_connection() {
    let names = Arc::new(mmo_webhooks::addresses::NamesTable::default());
    let app = spawn_app_resolving(
        test_settings(&[
            ("MMO__AUTH__ADMIN_TOKENS", ADMIN),
            ("MMO__DELIVERY__RETRY_SCHEDULE_SECS", "0,1,1,1,1"),
            ("MMO__DELIVERY__POLL_INTERVAL_MS", "50"),
        ]),
        names.clone(),
    )
    .await;
    let receiver = receiver(|_| (204, None));
    let port = receiver.url.rsplit(':').next().unwrap();
    let url = format!("http://merchant.example:{port}");

    // Registration: a public address, accepted; a loopback one would have been refused.
    names.set("merchant.example", &["127.0.0.1".parse().unwrap()]);
    let reply = admin(&app, Method::POST, "/v1/endpoints", json!({"url": url})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    names.set("merchant.example", &["93.184.215.14".parse().unwrap()]);
    let (endpoint, _) = register(&app, &url).await;

    // Delivery: the name now points at the receiver on loopback.
    names.set("merchant.example", &["127.0.0.1".parse().unwrap()]);
    app.mtn_collection("rebound-1", "SUCCESSFUL").await;
    let failed = |error: &'static str| {
        move |shown: &Value| {
            shown["attempts"].as_array().is_some_and(|attempts| {
                attempts.iter().any(|attempt| {
                    attempt["error"]
                        .as_str()
                        .is_some_and(|text| text.contains(error))
                })
            })
        }
    };
    let id = event_of(&app, &endpoint).await;
    let delivered = |shown: &Value| shown["status"] == "delivered";
    let shown = wait_for_event(&app, &id, |shown| {
        delivered(shown)
            || failed("merchant.example resolves to 127.0.0.1, which is loopback")(shown)
    })
    .await;
    assert_ne!(shown["status"], "delivered", "{shown:#}");

    // Then at the metadata address: refused too, at the next attempt.
    names.set("merchant.example", &["169.254.169.254".parse().unwrap()]);
    wait_for_event(
        &app,
        &id,
        failed("resolves to 169.254.169.254, which is link-local"),
    )
    .await;
    assert!(
        receiver.received().is_empty(),
        "nothing reaches the receiver: {:#?}",
        receiver.received()
    );
}

/// The id of the one event listed for `endpoint` (waits until there is one, 20 s at most).
async fn event_of(app: &TestApp, endpoint: &str) -> String {
    for _ in 0..400 {
        let listed = admin(app, Method::GET, "/v1/events", Value::Null).await;
        if let Some(event) = listed.body["items"]
            .as_array()
            .and_then(|items| items.first())
        {
            return event["id"].as_str().unwrap().to_owned();
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no event listed for endpoint {endpoint}");
}

/// Waits until event `id`, as the API shows it, satisfies `enough` (20 s at most).
async fn wait_for_event(app: &TestApp, id: &str, enough: impl Fn(&Value) -> bool) -> Value {
    let mut shown = Value::Null;
    for _ in 0..400 {
        shown = admin(app, Method::GET, &format!("/v1/events/{id}"), Value::Null)
            .await
            .body;
        if enough(&shown) {
            return shown;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("event {id} never got there: {shown:#}");
}

/// Isolation on the retry path: an endpoint with a backlog of retries that it answers slowly, one at
/// a time, never keeps another endpoint's retry from being made (before, the oldest-due read returned
/// only the slow endpoint's events, and the other's retry waited for the whole backlog).
#[actix_web::test]
async fn a_slow_endpoints_backlog_never_holds_another_endpoints_retry() {
    let app = app_delivering(&[]).await;
    const BACKLOG: usize = 12;
    // Every first attempt fails at once; every retry takes half a second.
    let slow = slow_receiver(
        |index| {
            if index < BACKLOG {
                Duration::ZERO
            } else {
                Duration::from_millis(500)
            }
        },
        |index| {
            if index < BACKLOG {
                (500, None)
            } else {
                (200, None)
            }
        },
    );
    let reply = admin(
        &app,
        Method::POST,
        "/v1/endpoints",
        json!({"url": slow.url, "event_types": ["transaction.pending"], "max_in_flight": 1}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    // The other endpoint fails its first request, then takes everything.
    let other = receiver(|index| if index == 0 { (500, None) } else { (200, None) });
    let reply = admin(
        &app,
        Method::POST,
        "/v1/endpoints",
        json!({"url": other.url, "event_types": ["transaction.successful"], "max_in_flight": 1}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);

    for n in 0..BACKLOG {
        app.mtn_collection(&format!("backlog-{n}"), "PENDING").await;
    }
    slow.until("every first attempt", |got| got.len() >= BACKLOG)
        .await;
    app.mtn_collection("elsewhere-1", "SUCCESSFUL").await;
    other
        .until("the other endpoint's retry", |got| got.len() >= 2)
        .await;
    // Half a second per retry, one at a time: the backlog takes six seconds; the other's retry is due
    // a second after its first attempt.
    let retried = slow.received().len() - BACKLOG;
    assert!(
        retried <= BACKLOG / 2,
        "the retry waited for the slow endpoint's backlog ({retried} of {BACKLOG} retried first)"
    );
    slow.until("every retry", |got| got.len() >= 2 * BACKLOG)
        .await;
}

/// Isolation within one event: an endpoint whose every attempt takes the whole time-out never holds
/// the same event's retry at another endpoint (before, an event's attempts were recorded together, so
/// the other endpoint's retry waited for the slow one's time-out).
#[actix_web::test]
async fn an_endpoint_that_times_out_never_holds_the_same_events_retry_elsewhere() {
    use mongodb::bson::{doc, Document};
    let app = app_delivering(&[("MMO__DELIVERY__TIMEOUT_SECS", "4")]).await;
    let dead = slow_receiver(|_| Duration::from_secs(30), |_| (200, None));
    let (dead_id, _) = register(&app, &dead.url).await;
    let other = receiver(|index| if index == 0 { (500, None) } else { (200, None) });
    register(&app, &other.url).await;

    app.mtn_collection("one-event-1", "SUCCESSFUL").await;
    let got = other
        .until("the other endpoint's retry", |got| got.len() >= 2)
        .await;
    assert_eq!(got[0].id, got[1].id, "a retry of the same event");
    // The slow endpoint's first attempt is still under way: nothing of it is recorded yet.
    let event: Document = collection(&app, "events")
        .find_one(doc! {"_id": &got[0].id})
        .await
        .unwrap()
        .expect("the event is in `events`");
    let recorded_at_dead = event
        .get_array("attempts")
        .map(|attempts| {
            attempts
                .iter()
                .filter_map(|attempt| attempt.as_document())
                .filter(|attempt| attempt.get_str("endpoint") == Ok(dead_id.as_str()))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(
        recorded_at_dead, 0,
        "the retry waited for the slow endpoint's attempt to end: {event}"
    );
    assert_eq!(dead.received().len(), 1);
}
