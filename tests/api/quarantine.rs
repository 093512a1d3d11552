//! What is retried and what is quarantined, against a real MongoDB that fails on purpose (its
//! `failCommand` fail point: the test MongoDB runs with test commands enabled), and replay of what was
//! quarantined through each path once its cause is fixed.
//!
//! Each app names its MongoDB client (`appName` in the URI) and its fail point names that client: the
//! other tests sharing the server never see the errors.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use mmo_actors::providers::fixtures::{
    MTNMoMoCallbackFixtures as Mtn, MpesaCallbackFixtures as Mpesa,
};
use mongodb::bson::{doc, Document};
use serde_json::json;

use crate::helpers::{mongodb_uri, spawn_app_with, test_settings};
use crate::operating::{admin_replay, ADMIN};

/// Settings of an app whose MongoDB client is called `app_name`, on `database`.
fn named(
    app_name: &str,
    database: &str,
    extra: &[(&str, &str)],
) -> mmo_webhooks::configuration::Settings {
    let uri = format!("{}&appName={app_name}", mongodb_uri());
    let mut overrides = vec![
        ("MMO__MONGODB__URI", uri.as_str()),
        ("MMO__MONGODB__DATABASE", database),
        ("MMO__AUTH__ADMIN_TOKENS", ADMIN),
    ];
    overrides.extend_from_slice(extra);
    test_settings(&overrides)
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The test's own client: the app's is the one the fail point makes fail.
async fn control() -> mongodb::Client {
    mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap()
}

/// Turns MongoDB's `failCommand` fail point on for `commands` of the client `app_name` (answering
/// `code`), or off with `None`.
async fn fail_commands(app_name: &str, commands: &[&str], code: Option<i32>) {
    let admin = control().await.database("admin");
    let command = match code {
        Some(code) => doc! {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": {"failCommands": commands, "errorCode": code, "appName": app_name},
        },
        None => doc! {"configureFailPoint": "failCommand", "mode": "off"},
    };
    admin
        .run_command(command)
        .await
        .expect("the test MongoDB has test commands enabled (scripts/mongodb.sh)");
}

/// Waits (bounded: a hang fails the test) until `count` documents of `collection` match `filter`.
async fn until_count(collection: &mongodb::Collection<Document>, filter: Document, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let found = collection.count_documents(filter.clone()).await.unwrap();
        if found >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{found} of {count} documents matching {filter} within two minutes"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Thirty seconds of the errors a healthy deployment meets — Interrupted (11601), StaleConfig (13388,
/// routine on a sharded cluster during migrations), ReadConcernMajorityNotAvailableYet (134),
/// ShutdownInProgress (91), NotWritablePrimary (10107) — on the drain's reads and updates, and on its
/// inserts too every other window: payments acknowledged meanwhile are neither quarantined nor lost;
/// each reaches its transaction once MongoDB answers again.
///
/// Quarantine's own insert works in the windows that fail only reads and updates: a version that counted
/// these errors toward quarantine (0.4.0) quarantined every payment of this test.
#[actix_web::test]
async fn thirty_seconds_of_passing_mongodb_errors_quarantine_nothing() {
    let app_name = unique("faults-");
    let database = unique("api_faults_");
    let app = spawn_app_with(named(&app_name, &database, &[])).await;
    // Watched through the test's own client: the app's fails on purpose.
    let watched = control().await.database(&database);
    let (rejected, callbacks, transactions) = (
        watched.collection::<Document>("rejected_callbacks"),
        watched.collection::<Document>("callbacks"),
        watched.collection::<Document>("transactions"),
    );
    // Payments pending before the faults: their final callbacks, during the faults, must read and update
    // their transactions.
    let prefix = unique("fault-");
    let keys: Vec<String> = (0..40).map(|n| format!("{prefix}-{n:03}")).collect();
    for key in &keys {
        app.mtn_collection(key, "PENDING").await;
    }
    let ours = doc! {"transaction_key": {"$regex": format!("^{prefix}")}};
    until_count(&transactions, ours.clone(), keys.len() as u64).await;

    let reads_and_updates = [
        "find",
        "getMore",
        "aggregate",
        "count",
        "update",
        "findAndModify",
        "delete",
    ];
    let mut everything = reads_and_updates.to_vec();
    everything.push("insert");
    let mut finals = keys.iter();
    for (window, code) in [11601, 13388, 134, 91, 10107].into_iter().enumerate() {
        let commands: &[&str] = if window % 2 == 0 {
            &reads_and_updates
        } else {
            &everything
        };
        fail_commands(&app_name, commands, Some(code)).await;
        // Six seconds of this error, with payments settling all along (spread over the window, not
        // waiting for anything to happen).
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            if let Some(key) = finals.next() {
                app.mtn_collection(key, "SUCCESSFUL").await;
            }
            actix_web::rt::time::sleep(Duration::from_millis(700)).await;
        }
        assert_eq!(
            rejected.count_documents(doc! {}).await.unwrap(),
            0,
            "nothing quarantined while MongoDB answered {code}"
        );
    }
    fail_commands(&app_name, &[], None).await;
    let settled: Vec<&String> = keys.iter().take(keys.len() - finals.len()).collect();
    assert!(
        settled.len() >= 30,
        "payments settled all through the faults: {}",
        settled.len()
    );

    let mut successful = ours.clone();
    successful.insert("status", "successful");
    until_count(&transactions, successful, settled.len() as u64).await;
    let stored = doc! {"provider_transaction_id": {"$regex": format!("^{prefix}")}};
    until_count(&callbacks, stored, (keys.len() + settled.len()) as u64).await;
    assert_eq!(
        rejected.count_documents(doc! {}).await.unwrap(),
        0,
        "nothing quarantined after"
    );
}

/// A body is quarantined through each path — refused authentication, a body no parser reads, a journal
/// entry MongoDB refuses again and again — and each is replayed once its cause is fixed, stored as
/// received when it first arrived.
#[actix_web::test]
async fn every_quarantined_body_is_replayed_once_its_cause_is_fixed() {
    let database = unique("api_replay_");
    let app_name = unique("replay-");
    // MTN callbacks must come from the operator's range; the test client (loopback) is not in it yet.
    let strict = [
        ("MMO__PROVIDERS__MTN__REQUIRE", "source_ip"),
        ("MMO__PROVIDERS__MTN__ALLOWED_IPS", "196.201.214.200"),
    ];
    // A validator an operator added to `transactions` refuses one transaction's document (the cause of
    // path 3 below, removed later).
    let poisoned_key = unique("ws_CO_POISON_");
    let database_handle = control().await.database(&database);
    database_handle
        .create_collection("transactions")
        .validator(doc! {"transaction_key": {"$ne": &poisoned_key}})
        .await
        .unwrap();
    let app = spawn_app_with(named(&app_name, &database, &strict)).await;

    // 1. Authentication: the operator's new address is not configured yet.
    let refused_body = Mtn::collection_for(&unique("auth-"), "SUCCESSFUL");
    let refused = app.post("/v1/webhooks/mtn/collection", &refused_body).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    // 2. Parse: an amount written with a decimal comma is not guessed at.
    let mut unreadable = Mpesa::c2b_confirmation_for(&unique("PARSE"));
    unreadable["TransAmount"] = json!("1.000,50");
    let refused_parse = app
        .post("/v1/webhooks/mpesa/c2b/confirmation", &unreadable)
        .await;
    assert_eq!(refused_parse.status, StatusCode::BAD_REQUEST);
    // 3. A journal entry MongoDB refuses as a bad document, every time (the validator): quarantined
    // after its attempts.
    let poisoned_body = Mpesa::stk_push_success_for(&poisoned_key, "RPOISON001");
    let before = mongodb::bson::DateTime::now();
    let accepted = app.post("/v1/webhooks/mpesa/stkpush", &poisoned_body).await;
    let acknowledged = mongodb::bson::DateTime::now();
    assert_eq!(accepted.status, StatusCode::OK, "journaled, acknowledged");
    until_count(&app.rejected, doc! {"reason": {"$regex": "^poisoned"}}, 1).await;
    database_handle
        .run_command(doc! {"collMod": "transactions", "validator": {}})
        .await
        .unwrap();

    let kept = app.quarantined_at_least(3).await;
    assert_eq!(kept.len(), 3, "{kept:?}");
    let by_reason = |start: &str| -> Document {
        kept.iter()
            .find(|document| document.get_str("reason").unwrap().starts_with(start))
            .unwrap_or_else(|| panic!("a body quarantined for {start}: {kept:?}"))
            .clone()
    };
    let (auth, parse, poisoned) = (
        by_reason("unauthorized"),
        by_reason("invalid format"),
        by_reason("poisoned"),
    );
    // Each keeps what a replay needs.
    for (document, provider, callback_type) in [
        (&auth, "mtn_mobile_money", "collection"),
        (&parse, "mpesa", "c2b_confirmation"),
        (&poisoned, "mpesa", "stk_push"),
    ] {
        assert_eq!(document.get_str("provider").unwrap(), provider);
        assert_eq!(document.get_str("callback_type").unwrap(), callback_type);
        assert!(document
            .get_str("path")
            .unwrap()
            .starts_with("/v1/webhooks/"));
    }
    assert_eq!(auth.get_str("raw").unwrap(), refused_body.to_string());
    assert_eq!(parse.get_str("raw").unwrap(), unreadable.to_string());
    let poisoned_raw: serde_json::Value =
        serde_json::from_str(poisoned.get_str("raw").unwrap()).unwrap();
    assert_eq!(
        poisoned_raw, poisoned_body,
        "the body as today's parsers read it"
    );
    // Kept with the time it arrived, not the time it was quarantined (attempts later).
    let arrived = poisoned.get_datetime("received_at").unwrap();
    assert!(
        before <= *arrived && *arrived <= acknowledged,
        "{arrived} not within {before}..{acknowledged}"
    );
    assert!(poisoned.get_bool("parsed").unwrap(), "replayed as it is");

    // Causes not fixed yet: nothing is replayed, and each says why.
    let id = |document: &Document| document.get_object_id("_id").unwrap().to_hex();
    let not_yet = admin_replay(&app, &id(&auth)).await;
    assert_eq!(not_yet.status, StatusCode::CONFLICT, "{}", not_yet.body);
    assert_eq!(not_yet.body["code"], "NOT_REPLAYABLE");
    assert!(not_yet.body["message"]
        .as_str()
        .unwrap()
        .contains("not allowed"));
    let not_yet = admin_replay(&app, &id(&parse)).await;
    assert_eq!(not_yet.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(not_yet.body["message"]
        .as_str()
        .unwrap()
        .contains("1.000,50"));

    // The causes fixed: the operator's address configured (another instance, same database); the
    // parse fixed (here the body corrected in quarantine, as an operator would after a parser fix);
    // MongoDB takes the document again.
    let fixed = spawn_app_with(named(
        &unique("fixed-"),
        &database,
        &[
            ("MMO__PROVIDERS__MTN__REQUIRE", "source_ip"),
            (
                "MMO__PROVIDERS__MTN__ALLOWED_IPS",
                "196.201.214.200,127.0.0.1",
            ),
        ],
    ))
    .await;
    let mut corrected = unreadable.clone();
    corrected["TransAmount"] = json!("1000.50");
    app.rejected
        .update_one(
            doc! {"_id": parse.get_object_id("_id").unwrap()},
            doc! {"$set": {"raw": corrected.to_string()}},
        )
        .await
        .unwrap();
    for document in [&auth, &parse, &poisoned] {
        let replayed = admin_replay(&fixed, &id(document)).await;
        assert_eq!(replayed.status, StatusCode::OK, "{}", replayed.body);
        let key = replayed.body["provider_transaction_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let stored = fixed.stored_one(&key).await;
        assert_eq!(
            stored.get_datetime("received_at").unwrap(),
            document.get_datetime("received_at").unwrap(),
            "stored as received when it first arrived"
        );
        assert_eq!(
            stored.get_object_id("replayed_from").unwrap().to_hex(),
            id(document)
        );
        let transaction = fixed.transaction(&key).await;
        assert_eq!(transaction.get_str("status").unwrap(), "successful");
    }
}

/// Money is compared exactly: a repeat of a stored callback (same key and status) whose currency or
/// receipt differs is a contradiction, kept and flagged, not a duplicate.
#[actix_web::test]
async fn a_repeat_in_another_currency_is_a_contradiction_not_a_duplicate() {
    let app = spawn_app_with(test_settings(&[])).await;
    let key = unique("ccy-");
    app.mtn_collection(&key, "SUCCESSFUL").await;
    let mut other_currency = Mtn::collection_for(&key, "SUCCESSFUL");
    other_currency["currency"] = json!("KES");
    let reply = app
        .post("/v1/webhooks/mtn/collection", &other_currency)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(60);
    let transaction = loop {
        let transaction = app.transaction(&key).await;
        if transaction.get_bool("conflict").unwrap_or(false) {
            break transaction;
        }
        assert!(Instant::now() < deadline, "no conflict: {transaction}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(transaction.get_str("currency").unwrap(), "UGX");
    let conflicts = transaction.get_array("conflicts").unwrap();
    let fields: Vec<&str> = conflicts
        .iter()
        .filter_map(|entry| entry.as_document()?.get_str("field").ok())
        .collect();
    assert!(fields.contains(&"currency"), "{conflicts:?}");
}

/// Two replays of one body at once (a double click, two instances): one stores it, the other is told it
/// is being replayed; the callback is stored once, with one delivery.
#[actix_web::test]
async fn two_replays_of_one_body_at_once_store_it_once() {
    let app = spawn_app_with(named(&unique("double-"), &unique("api_double_"), &[])).await;
    let key = unique("DOUBLE");
    let mut unreadable = Mpesa::c2b_confirmation_for(&key);
    unreadable["TransAmount"] = json!("ten shillings");
    let refused = app
        .post("/v1/webhooks/mpesa/c2b/confirmation", &unreadable)
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let kept = app.quarantined_at_least(1).await;
    let id = kept[0].get_object_id("_id").unwrap();
    let mut corrected = unreadable.clone();
    corrected["TransAmount"] = json!("10.00");
    app.rejected
        .update_one(
            doc! {"_id": id},
            doc! {"$set": {"raw": corrected.to_string()}},
        )
        .await
        .unwrap();

    let hex = id.to_hex();
    let (first, second) = futures_util::join!(admin_replay(&app, &hex), admin_replay(&app, &hex));
    let mut statuses = [first.status.as_u16(), second.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", first.body, second.body);
    let stored = app.stored_one(&key).await;
    assert_eq!(stored.get_i64("deliveries").unwrap(), 1, "stored once");
}

/// Delivery through passing MongoDB errors. While every `update` of the app's client fails (6,
/// HostUnreachable: a write error the driver retries once, and that does not make it forget the
/// primary as a step-down's would — the tests of a failover do that), events are sent and inserted into `events`, but no
/// outcome can be written and the feed's position cannot move. Then reads of the feed fail (`getMore`,
/// an error the driver does not resume from): the sender reopens the feed at its saved position — from
/// before every event — and reads them all again. Nothing is sent twice, and once the errors stop the
/// position moves past every event.
#[actix_web::test]
async fn delivery_through_passing_mongodb_errors_sends_each_event_once() {
    use crate::delivery::{receiver, register, unsent};
    let (app_name, database) = (unique("deliveryfaults"), unique("api_"));
    let app = spawn_app_with(named(
        &app_name,
        &database,
        &[
            ("MMO__DELIVERY__ALLOW_LOOPBACK", "true"),
            ("MMO__DELIVERY__POLL_INTERVAL_MS", "50"),
        ],
    ))
    .await;
    let receiver = receiver(|_| (204, None));
    register(&app, &receiver.url).await;
    let handle = control().await.database(&database);
    let leases = handle.collection::<Document>("leases");
    let position = || async {
        leases
            .find_one(doc! {"_id": "delivery"})
            .await
            .unwrap()
            .and_then(|lease| lease.get("feed").cloned())
    };
    const EVENTS: usize = 20;
    // The sender saves a position as it starts (every 10 s while idle: the fail point stops that).
    let deadline = Instant::now() + Duration::from_secs(20);
    while position().await.is_none() {
        assert!(Instant::now() < deadline, "no position saved");
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
    fail_commands(&app_name, &["update"], Some(6)).await;
    let before = position().await.expect("a position before the first write");
    for n in 0..EVENTS {
        app.mtn_collection(&format!("pull-fails-{n}"), "SUCCESSFUL")
            .await;
    }
    // Every event is sent (their transactions are new: inserts, which do not fail) and inserted into
    // `events`; the position stays where it was.
    receiver
        .until("every first attempt", |got| got.len() >= EVENTS)
        .await;
    let events = handle.collection::<Document>("events");
    until_count(&events, doc! {}, EVENTS as u64).await;
    assert_eq!(
        position().await,
        Some(before.clone()),
        "the fail point kept the position from moving"
    );

    // The next two reads of the feed fail (an error the driver does not resume from): the sender reopens
    // the feed at its saved position each time. MongoDB says when both failures happened.
    let admin = control().await.database("admin");
    let configured = admin
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": {"times": 2},
            "data": {"failCommands": ["getMore"], "errorCode": 2, "appName": &app_name},
        })
        .await
        .unwrap();
    let entered = match configured.get("count") {
        Some(mongodb::bson::Bson::Int64(count)) => *count,
        Some(mongodb::bson::Bson::Int32(count)) => i64::from(*count),
        other => panic!("configureFailPoint answered no count: {other:?}"),
    };
    admin
        .run_command(doc! {
            "waitForFailPoint": "failCommand",
            "timesEntered": entered + 2,
            "maxTimeMS": 60_000,
        })
        .await
        .expect("the feed was read twice within a minute");

    let deadline = Instant::now() + Duration::from_secs(60);
    while position().await == Some(before.clone()) || unsent(&handle).await > 0 {
        assert!(Instant::now() < deadline, "the position never moved");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receiver.until("all", |_| true).await;
    let ids: std::collections::HashSet<&str> =
        got.iter().map(|delivery| delivery.id.as_str()).collect();
    assert_eq!(ids.len(), EVENTS, "one id per event");
    assert_eq!(got.len(), EVENTS, "each event sent once");
}
