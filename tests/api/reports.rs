//! The reports over real HTTP and MongoDB, on data received at fixed times (journaled with the time of a
//! test's choosing, so nothing depends on today's date): the daily report counts callbacks; the money
//! report counts transactions by the status they had when the day ended, linked ones once, in the day's
//! time zone, with exact sums.

use actix_web::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use mmo_actors::providers::by_slug;
use mmo_actors::providers::fixtures::{
    MTNMoMoCallbackFixtures as Mtn, MpesaCallbackFixtures as Mpesa,
};
use mmo_actors::{Callback, CallbackType};
use mongodb::bson::doc;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, test_settings, Reply, TestApp};

const ADMIN: &str = "admin-token-0123456789abcdef";

async fn operated() -> TestApp {
    spawn_app_with(test_settings(&[("MMO__AUTH__ADMIN_TOKENS", ADMIN)])).await
}

async fn admin_get(app: &TestApp, path: &str) -> Reply {
    let reply = app.get(path, Some(ADMIN)).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    reply
}

async fn admin_csv(app: &TestApp, path: &str) -> String {
    app.get_text_with(path, ADMIN, "text/csv").await
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn parsed(provider: &str, callback_type: CallbackType, payload: &Value) -> Callback {
    by_slug(provider)
        .unwrap()
        .parse(callback_type, payload.to_string().as_bytes())
        .unwrap()
}

/// An MTN collection callback of `amount` (exact text), in UGX or, with `currency: None`, in none.
fn mtn(key: &str, status: &str, amount: &str, currency: Option<&str>) -> Callback {
    let mut payload = Mtn::collection_for(key, status);
    payload["amount"] = json!(amount);
    match currency {
        Some(currency) => payload["currency"] = json!(currency),
        None => {
            payload.as_object_mut().unwrap().remove("currency");
        }
    }
    parsed("mtn", CallbackType::Collection, &payload)
}

/// The reconciler's record of MTN's answer to a status query about collection `key`.
fn mtn_answer(key: &str, status: &str, amount: &str) -> Callback {
    let mut answer = mtn(key, status, amount, Some("UGX"));
    answer.callback_type = CallbackType::StatusQuery;
    answer.queried_flow = Some("collection");
    answer
}

/// A successful STK result of `amount` (exact JSON number text) with M-Pesa receipt `receipt`.
fn stk(key: &str, receipt: &str, amount: &str) -> Callback {
    let mut payload = Mpesa::stk_push_success_for(key, receipt);
    payload["Body"]["stkCallback"]["CallbackMetadata"]["Item"][0]["Value"] =
        serde_json::from_str(amount).unwrap();
    parsed("mpesa", CallbackType::StkPush, &payload)
}

fn c2b(trans_id: &str) -> Callback {
    parsed(
        "mpesa",
        CallbackType::C2bConfirmation,
        &Mpesa::c2b_confirmation_for(trans_id),
    )
}

fn line(flow: &str, currency: &str, status: &str, count: i64, amount: &str) -> Value {
    json!({"flow": flow, "currency": currency, "status": status, "count": count, "amount": amount})
}

/// A report's lines, each with its provider left out (the tests ask for one provider at a time).
fn lines_of(report: &Value, provider: &str) -> Vec<Value> {
    report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            assert_eq!(line["provider"], provider, "{report}");
            let mut line = line.clone();
            line.as_object_mut().unwrap().remove("provider");
            line
        })
        .collect()
}

#[actix_web::test]
async fn the_daily_report_counts_callbacks_with_exact_sums_and_exports_csv() {
    let app = operated().await;
    // 2026-02-14, UTC: two successful payments in one bucket, one payment's pending callback beside its
    // successful one, a callback of the day before, and two C2B confirmations.
    let received = [
        (
            mtn("D-1", "PENDING", "1000.50", Some("UGX")),
            "2026-02-14T08:00:00Z",
        ),
        (
            mtn("D-1", "SUCCESSFUL", "1000.50", Some("UGX")),
            "2026-02-14T08:05:00Z",
        ),
        (
            mtn("D-2", "SUCCESSFUL", "2000.25", Some("UGX")),
            "2026-02-14T09:00:00Z",
        ),
        (
            mtn("D-0", "SUCCESSFUL", "5.00", Some("UGX")),
            "2026-02-13T23:59:59Z",
        ),
        (c2b("D-C2B-1"), "2026-02-14T10:00:00Z"),
        (c2b("D-C2B-2"), "2026-02-14T11:00:00Z"),
    ];
    for (callback, time) in &received {
        app.received_at(callback, at(time)).await;
    }
    app.drained().await;

    let report = admin_get(&app, "/v1/reports/daily?date=2026-02-14").await;
    let lines = report.body["lines"].as_array().unwrap();
    let mtn_line = lines
        .iter()
        .find(|line| line["provider"] == "mtn_mobile_money")
        .unwrap();
    // Callbacks, not payments: D-1 counts once pending and once successful.
    assert_eq!(mtn_line["counts"], json!({"pending": 1, "successful": 2}));
    assert_eq!(
        mtn_line["amounts"],
        json!({"UGX": {"pending": "1000.50", "successful": "3000.75"}})
    );
    let c2b_line = lines
        .iter()
        .find(|line| line["callback_type"] == "c2b_confirmation")
        .unwrap();
    assert_eq!(c2b_line["counts"], json!({"successful": 2}));
    assert_eq!(c2b_line["amounts"]["KES"]["successful"], "3000.00");

    let text = admin_csv(&app, "/v1/reports/daily?date=2026-02-14&provider=mpesa").await;
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "provider,flow,transaction_key,status,reason,amount,currency,msisdn,receipt,conflict,first_callback_at,last_callback_at");
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[1].starts_with("mpesa,c2b,D-C2B-1,successful,"),
        "{text}"
    );
    assert!(
        rows[2].starts_with("mpesa,c2b,D-C2B-2,successful,"),
        "{text}"
    );
}

#[actix_web::test]
async fn the_money_report_counts_transactions_by_their_status_at_the_end_of_the_day() {
    let app = operated().await;
    let received = [
        // PENDING then SUCCESSFUL: one successful transaction, summed with another in its bucket.
        (
            mtn("M-1", "PENDING", "1000.50", Some("UGX")),
            "2026-03-10T08:00:00Z",
        ),
        (
            mtn("M-1", "SUCCESSFUL", "1000.50", Some("UGX")),
            "2026-03-10T08:05:00Z",
        ),
        (
            mtn("M-2", "SUCCESSFUL", "2000.25", Some("UGX")),
            "2026-03-10T09:00:00Z",
        ),
        // Its final callback comes after the day's end: pending that day.
        (
            mtn("M-3", "PENDING", "1000.00", Some("UGX")),
            "2026-03-10T23:00:00Z",
        ),
        (
            mtn("M-3", "SUCCESSFUL", "1000.00", Some("UGX")),
            "2026-03-11T01:00:00Z",
        ),
        // No currency: an `unknown` line, not a silent drop.
        (
            mtn("M-4", "SUCCESSFUL", "700.10", None),
            "2026-03-10T12:00:00Z",
        ),
        // First seen the day before: that day's transaction, even though it succeeded on this one.
        (
            mtn("M-5", "PENDING", "1000.00", Some("UGX")),
            "2026-03-09T23:30:00Z",
        ),
        (
            mtn("M-5", "SUCCESSFUL", "1000.00", Some("UGX")),
            "2026-03-10T00:30:00Z",
        ),
        // Settled by the reconciler's status query within the day; the operator's late callback agrees
        // the next day (so the day's status is folded again, the answer included).
        (
            mtn("M-6", "PENDING", "1000.00", Some("UGX")),
            "2026-03-10T10:00:00Z",
        ),
        (
            mtn_answer("M-6", "FAILED", "1000.00"),
            "2026-03-10T12:00:00Z",
        ),
        (
            mtn("M-6", "FAILED", "1000.00", Some("UGX")),
            "2026-03-11T02:00:00Z",
        ),
    ];
    for (callback, time) in &received {
        app.received_at(callback, at(time)).await;
    }
    app.drained().await;
    assert_eq!(
        app.transaction("M-3").await.get_str("status").unwrap(),
        "successful",
        "the report below derives M-3's status that day; it is successful now"
    );

    // MTN's settlement zone is UTC unless configured.
    let report = admin_get(&app, "/v1/reports/money?date=2026-03-10&provider=mtn").await;
    assert_eq!(report.body["date"], "2026-03-10");
    assert_eq!(report.body["tz"], "UTC");
    assert_eq!(report.body["from"], "2026-03-10T00:00:00Z");
    assert_eq!(report.body["until"], "2026-03-11T00:00:00Z");
    assert_eq!(
        lines_of(&report.body, "mtn_mobile_money"),
        [
            line("collection", "UGX", "failed", 1, "1000.00"),
            line("collection", "UGX", "pending", 1, "1000.00"),
            line("collection", "UGX", "successful", 2, "3000.75"),
            line("collection", "unknown", "successful", 1, "700.10"),
        ]
    );
    let day_before = admin_get(&app, "/v1/reports/money?date=2026-03-09&provider=mtn").await;
    assert_eq!(
        lines_of(&day_before.body, "mtn_mobile_money"),
        [line("collection", "UGX", "pending", 1, "1000.00")]
    );
    let day_after = admin_get(
        &app,
        "/v1/reports/money?date=2026-03-11&tz=UTC&provider=mtn",
    )
    .await;
    assert_eq!(
        day_after.body["lines"],
        json!([]),
        "nothing was first seen then"
    );

    // The same lines as CSV, each with its day and zone.
    let text = admin_csv(&app, "/v1/reports/money?date=2026-03-10&provider=mtn").await;
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "date,tz,provider,flow,currency,status,count,amount",
            "2026-03-10,UTC,mtn_mobile_money,collection,UGX,failed,1,1000.00",
            "2026-03-10,UTC,mtn_mobile_money,collection,UGX,pending,1,1000.00",
            "2026-03-10,UTC,mtn_mobile_money,collection,UGX,successful,2,3000.75",
            "2026-03-10,UTC,mtn_mobile_money,collection,unknown,successful,1,700.10",
        ]
    );
}

#[actix_web::test]
async fn the_money_report_counts_linked_payments_once_in_the_settlement_zone() {
    let app = operated().await;
    // Nairobi's 2026-03-10 runs from 2026-03-09T21:00Z to 2026-03-10T21:00Z.
    let received = [
        // An STK payment and its C2B confirmation (keyed by the STK result's receipt): one payment.
        (stk("S-1", "R-1", "1000.00"), "2026-03-10T10:00:00Z"),
        (c2b("R-1"), "2026-03-10T10:00:05Z"),
        // The same, across Nairobi's midnight: the confirmation comes on the next local day.
        (stk("S-2", "R-2", "250.50"), "2026-03-10T20:59:00Z"),
        (c2b("R-2"), "2026-03-10T21:01:00Z"),
        // 22:30 UTC on the 10th is 01:30 on the 11th in Nairobi.
        (c2b("U-1"), "2026-03-10T22:30:00Z"),
    ];
    for (callback, time) in &received {
        app.received_at(callback, at(time)).await;
    }
    app.drained().await;
    for key in ["R-1", "R-2"] {
        let confirmation = app.transaction(key).await;
        let links = confirmation.get_array("linked_transactions").unwrap();
        assert_eq!(links.len(), 1, "{key} is linked to its STK payment");
    }

    // M-Pesa's settlement zone is Nairobi's.
    let report = admin_get(&app, "/v1/reports/money?date=2026-03-10&provider=mpesa").await;
    assert_eq!(report.body["tz"], "Africa/Nairobi");
    assert_eq!(report.body["from"], "2026-03-09T21:00:00Z");
    assert_eq!(report.body["until"], "2026-03-10T21:00:00Z");
    assert_eq!(
        lines_of(&report.body, "mpesa"),
        [line("stk_push", "KES", "successful", 2, "1250.50")],
        "each confirmation counted under its STK payment, not beside it"
    );
    let next_day = admin_get(&app, "/v1/reports/money?date=2026-03-11&provider=mpesa").await;
    assert_eq!(
        lines_of(&next_day.body, "mpesa"),
        [line("c2b", "KES", "successful", 1, "1500.00")],
        "U-1 only: R-2 was counted with S-2 the day before"
    );
    // In UTC the same instants make another day: U-1 is the 10th's.
    let in_utc = admin_get(
        &app,
        "/v1/reports/money?date=2026-03-10&tz=UTC&provider=mpesa",
    )
    .await;
    assert_eq!(in_utc.body["tz"], "UTC");
    assert_eq!(
        lines_of(&in_utc.body, "mpesa"),
        [
            line("c2b", "KES", "successful", 1, "1500.00"),
            line("stk_push", "KES", "successful", 2, "1250.50"),
        ]
    );
    // A zone named for all providers at once.
    let everyone = admin_get(&app, "/v1/reports/money?date=2026-03-11&tz=Africa/Nairobi").await;
    assert_eq!(everyone.body["tz"], "Africa/Nairobi");
    assert_eq!(everyone.body["lines"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn the_money_report_names_what_it_cannot_answer() {
    let app = operated().await;
    for (path, parameter) in [
        ("/v1/reports/money?date=2026-03-10", "tz"),
        ("/v1/reports/money?date=2026-03-10&tz=Mars/Olympus", "tz"),
        ("/v1/reports/money?tz=UTC", "date"),
        ("/v1/reports/money?date=10-03-2026&tz=UTC", "date"),
        (
            "/v1/reports/money?date=2026-03-10&provider=paypal",
            "provider",
        ),
        (
            "/v1/reports/money?date=2026-03-10&tz=UTC&colour=blue",
            "colour",
        ),
    ] {
        let reply = app.get(path, Some(ADMIN)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(reply.body["code"], "INVALID_PARAMETER", "{path}");
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{parameter}`")),
            "{path}: {}",
            reply.body
        );
    }
    let refused = app
        .request(
            Method::GET,
            "/v1/reports/money?date=2026-03-10&tz=UTC",
            Vec::new(),
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

/// MongoDB's planner, asked how it runs the money report's two queries: by index, never by a scan.
#[actix_web::test]
async fn the_money_report_queries_are_served_by_indexes() {
    let app = operated().await;
    app.received_at(
        &mtn("X-1", "PENDING", "1.00", Some("UGX")),
        at("2026-03-10T08:00:00Z"),
    )
    .await;
    app.drained().await;
    let database = app
        .callbacks
        .client()
        .database(app.callbacks.namespace().db.as_str());
    let (from, until) =
        mmo_webhooks::read_api::settlement_day("2026-03-10", chrono_tz::Tz::UTC).unwrap();
    for provider in [None, Some("mtn_mobile_money")] {
        let plan = winning_plan(
            &database,
            doc! {
                "find": "transactions",
                "filter": mmo_webhooks::read_api::first_seen_within(from, until, provider),
                "sort": {"first_callback_at": 1, "_id": 1},
            },
        )
        .await;
        assert!(
            plan.contains("\"newest\"") && !plan.contains("COLLSCAN"),
            "{provider:?}: {plan}"
        );
    }
    let ids = vec!["mtn_mobile_money|collection|pending|X-1".into()];
    let plan = winning_plan(
        &database,
        doc! {
            "find": "callbacks",
            "filter": mmo_webhooks::read_api::received_before(ids, until),
            "hint": mmo_webhooks::read_api::by_id(),
        },
    )
    .await;
    assert!(
        plan.contains("\"_id_\"") && !plan.contains("COLLSCAN"),
        "{plan}"
    );
}

async fn winning_plan(database: &mongodb::Database, find: mongodb::bson::Document) -> String {
    let plan = database
        .run_command(doc! {"explain": find, "verbosity": "queryPlanner"})
        .await
        .unwrap();
    plan.get_document("queryPlanner")
        .unwrap()
        .get_document("winningPlan")
        .unwrap()
        .to_string()
}
