//! Operating the service over real HTTP and MongoDB: metrics, the query API, replay (the reports are in
//! `reports.rs`).

use actix_web::http::{Method, StatusCode};
use mmo_actors::providers::fixtures::{
    MTNMoMoCallbackFixtures as Mtn, MpesaCallbackFixtures as Mpesa,
};
use mmo_webhooks::read_api::{newest_first, Filters};
use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, test_settings, TestApp, TOKEN};

pub(crate) const ADMIN: &str = "admin-token-0123456789abcdef";

async fn operated() -> TestApp {
    spawn_app_with(test_settings(&[("MMO__AUTH__ADMIN_TOKENS", ADMIN)])).await
}

async fn admin_get(app: &TestApp, path: &str) -> crate::helpers::Reply {
    app.get(path, Some(ADMIN)).await
}

pub(crate) async fn admin_replay(app: &TestApp, id: &str) -> crate::helpers::Reply {
    app.request(
        Method::POST,
        &format!("/v1/rejected/{id}/replay"),
        Vec::new(),
        &[("Authorization", format!("Bearer {ADMIN}"))],
    )
    .await
}

#[actix_web::test]
async fn metrics_are_exposed_to_admin_tokens_only() {
    let app = operated().await;
    app.post(
        "/v1/webhooks/mpesa/c2b/confirmation",
        &Mpesa::c2b_confirmation_for("METRICS-1"),
    )
    .await;
    app.drained().await;
    assert_eq!(
        app.get("/metrics", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/metrics", Some(TOKEN)).await.status,
        StatusCode::UNAUTHORIZED,
        "an operator's token does not read metrics"
    );
    let reply = app
        .request(
            Method::GET,
            "/metrics",
            Vec::new(),
            &[("Authorization", format!("Bearer {ADMIN}"))],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = app.get_text("/metrics", ADMIN).await;
    for metric in [
        "mmo_http_requests_total{",
        "mmo_http_request_duration_seconds_bucket{",
        "mmo_callbacks_total{",
        "mmo_journal_backlog_entries",
        "mmo_journal_oldest_entry_age_seconds",
        "mmo_journal_fsync_duration_seconds_bucket",
        "mmo_journal_group_commit_size_bucket",
        "mmo_drain_applied_total",
        "mmo_mongodb_write_duration_seconds_bucket{collection=\"callbacks\"",
    ] {
        assert!(text.contains(metric), "{metric} missing from:\n{text}");
    }
    assert!(text.contains("# HELP mmo_callbacks_total"));
    assert!(text.contains(
        r#"mmo_callbacks_total{provider="mpesa",callback_type="c2b_confirmation",outcome="stored"}"#
    ));
}

async fn seed(app: &TestApp) {
    let callbacks = [
        (
            "/v1/webhooks/mtn/collection",
            Mtn::collection_for("Q-MTN-1", "PENDING"),
        ),
        (
            "/v1/webhooks/mtn/collection",
            Mtn::collection_for("Q-MTN-1", "SUCCESSFUL"),
        ),
        (
            "/v1/webhooks/mtn/collection",
            Mtn::collection_for("Q-MTN-2", "FAILED"),
        ),
        (
            "/v1/webhooks/mpesa/c2b/confirmation",
            Mpesa::c2b_confirmation_for("Q-C2B-1"),
        ),
        (
            "/v1/webhooks/mpesa/c2b/confirmation",
            Mpesa::c2b_confirmation_for("Q-C2B-2"),
        ),
    ];
    for (path, body) in callbacks {
        assert_eq!(app.post(path, &body).await.status, StatusCode::OK);
    }
    app.drained().await;
}

#[actix_web::test]
async fn transactions_are_listed_newest_first_filtered_and_paged() {
    let app = operated().await;
    seed(&app).await;
    assert_eq!(
        app.get("/v1/transactions", Some(TOKEN)).await.status,
        StatusCode::UNAUTHORIZED
    );

    let all = admin_get(&app, "/v1/transactions").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let keys: Vec<&str> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["transaction_key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["Q-C2B-2", "Q-C2B-1", "Q-MTN-2", "Q-MTN-1"],
        "newest first"
    );
    assert_eq!(all.body["next_cursor"], Value::Null);

    let mtn = admin_get(&app, "/v1/transactions?provider=mtn&status=successful").await;
    let items = mtn.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["provider"], "mtn_mobile_money");
    assert_eq!(item["flow"], "collection");
    assert_eq!(item["transaction_key"], "Q-MTN-1");
    assert_eq!(item["amount"], "1000.00", "an exact decimal, as text");
    assert_eq!(item["currency"], "UGX");
    assert_eq!(item["conflict"], false);
    assert!(item["first_callback_at"].as_str().unwrap().ends_with('Z'));

    // Pages of two, following the cursor, give every item once, in order.
    let mut seen = Vec::new();
    let mut path = "/v1/transactions?limit=2".to_owned();
    loop {
        let page = admin_get(&app, &path).await;
        for item in page.body["items"].as_array().unwrap() {
            seen.push(item["transaction_key"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/transactions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, keys);

    let msisdn = Mtn::collection_for("x", "PENDING")["payer"]["partyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_msisdn = admin_get(&app, &format!("/v1/transactions?msisdn={msisdn}")).await;
    assert_eq!(by_msisdn.body["items"].as_array().unwrap().len(), 2);
}

#[actix_web::test]
async fn invalid_parameters_are_named() {
    let app = operated().await;
    for (path, parameter) in [
        ("/v1/transactions?limit=501", "limit"),
        ("/v1/transactions?limit=abc", "limit"),
        ("/v1/transactions?status=paid", "status"),
        ("/v1/transactions?provider=paypal", "provider"),
        ("/v1/transactions?since=yesterday", "since"),
        ("/v1/transactions?cursor=%%%", "cursor"),
        ("/v1/transactions?colour=blue", "colour"),
        ("/v1/callbacks?conflict=true", "conflict"),
        ("/v1/reports/daily", "date"),
        ("/v1/reports/daily?date=28-11-2026", "date"),
    ] {
        let reply = admin_get(&app, path).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(reply.body["code"], "INVALID_PARAMETER", "{path}");
        assert_eq!(reply.body["error"], "Bad Request");
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{parameter}`")),
            "{path}: {}",
            reply.body
        );
    }
}

#[actix_web::test]
async fn a_transaction_shows_its_callbacks_oldest_first() {
    let app = operated().await;
    seed(&app).await;
    let detail = admin_get(&app, "/v1/transactions/mtn/Q-MTN-1").await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert_eq!(detail.body["status"], "successful");
    let statuses: Vec<&str> = detail.body["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|callback| callback["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["pending", "successful"]);
    assert_eq!(detail.body["callbacks"][0]["deliveries"], 1);
    assert_eq!(detail.body["callbacks"][1]["result_code"], "SUCCESSFUL");
    // A callback's id is the id of the delivery that stored it.
    let id = detail.body["callbacks"][0]["id"].as_str().unwrap();
    assert!(mongodb::bson::oid::ObjectId::parse_str(id).is_ok(), "{id}");

    // Narrowed to a flow: its own, or none of the provider's others.
    let in_flow = admin_get(&app, "/v1/transactions/mtn/Q-MTN-1?flow=collection").await;
    assert_eq!(in_flow.status, StatusCode::OK, "{}", in_flow.body);
    assert_eq!(in_flow.body["flow"], "collection");
    for other in ["disbursement", "stk_push"] {
        let path = format!("/v1/transactions/mtn/Q-MTN-1?flow={other}");
        assert_eq!(
            admin_get(&app, &path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // A key may contain `|`; a flow that is no flow cannot borrow part of it to name that transaction.
    let piped = Mtn::collection_for("Q|PIPED", "SUCCESSFUL");
    assert_eq!(
        app.post("/v1/webhooks/mtn/collection", &piped).await.status,
        StatusCode::OK
    );
    app.drained().await;
    let path = "/v1/transactions/mtn/Q%7CPIPED";
    assert_eq!(admin_get(&app, path).await.status, StatusCode::OK, "{path}");
    let path = "/v1/transactions/mtn/PIPED?flow=collection%7CQ";
    assert_eq!(
        admin_get(&app, path).await.status,
        StatusCode::NOT_FOUND,
        "{path}"
    );

    let unknown = admin_get(&app, "/v1/transactions/mtn/NOPE").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.body,
        json!({"error": "Not Found", "message": "No such transaction", "code": "NOT_FOUND"})
    );
}

#[actix_web::test]
async fn callbacks_and_rejected_bodies_are_listed() {
    let app = operated().await;
    seed(&app).await;
    let bad = app
        .send(
            Method::POST,
            "/v1/webhooks/mtn/collection",
            b"{broken".to_vec(),
            Some(TOKEN),
            Some("application/json"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    app.drained().await;

    let callbacks = admin_get(&app, "/v1/callbacks?provider=mtn&callback_type=collection").await;
    let items = callbacks.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["provider_transaction_id"], "Q-MTN-2");
    assert!(items[0]["callback_data"].is_object());

    let rejected = admin_get(&app, "/v1/rejected?provider=mtn").await;
    let items = rejected.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["raw"], "{broken");
    assert_eq!(items[0]["callback_type"], "collection");
    assert_eq!(items[0]["authenticated"], true);
}

#[actix_web::test]
async fn a_quarantined_body_can_be_replayed_once_it_is_understood() {
    let app = operated().await;
    // A C2B confirmation whose amount no parser can read: quarantined.
    let mut payload = Mpesa::c2b_confirmation_for("REPLAY-1");
    payload["TransAmount"] = json!("ten shillings");
    let refused = app
        .post("/v1/webhooks/mpesa/c2b/confirmation", &payload)
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let kept = app.quarantined_at_least(1).await;
    let id = kept[0].get_object_id("_id").unwrap().to_hex();

    // Today's parser still cannot read it: nothing changes, the reason is returned.
    let failed = admin_replay(&app, &id).await;
    assert_eq!(failed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(failed.body["code"], "REPLAY_FAILED");
    assert!(failed.body["message"]
        .as_str()
        .unwrap()
        .contains("TransAmount"));
    assert!(app.stored("REPLAY-1").await.is_empty());

    // After a fix (here: the body corrected in quarantine, as an operator would after a parser fix).
    let mut fixed = payload.clone();
    fixed["TransAmount"] = json!("10.00");
    app.rejected
        .update_one(
            doc! {"_id": kept[0].get_object_id("_id").unwrap()},
            doc! {"$set": {"raw": fixed.to_string()}},
        )
        .await
        .unwrap();
    let replayed = admin_replay(&app, &id).await;
    assert_eq!(replayed.status, StatusCode::OK, "{}", replayed.body);
    assert_eq!(replayed.body["provider_transaction_id"], "REPLAY-1");
    let stored = app.stored_one("REPLAY-1").await;
    assert_eq!(stored.get_object_id("replayed_from").unwrap().to_hex(), id);
    let marked: Document = app
        .rejected
        .find_one(doc! {"_id": kept[0].get_object_id("_id").unwrap()})
        .await
        .unwrap()
        .unwrap();
    assert!(marked.get_bool("replayed").unwrap());
    let again = admin_replay(&app, &id).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["code"], "ALREADY_REPLAYED");
}

/// MongoDB's query planner, asked how it would run the main queries: never by scanning a collection.
#[actix_web::test]
async fn every_main_query_is_served_by_an_index() {
    let app = operated().await;
    seed(&app).await;
    let database = app
        .callbacks
        .client()
        .database(app.callbacks.namespace().db.as_str());
    // (collection, time field, filters, the index the plan must use).
    let queries: Vec<(&str, &str, &str, &str)> = vec![
        ("transactions", "first_callback_at", "", "newest"),
        (
            "transactions",
            "first_callback_at",
            "provider=mtn&status=successful",
            "newest",
        ),
        (
            "transactions",
            "first_callback_at",
            "msisdn=256774123456",
            "by_msisdn",
        ),
        (
            "transactions",
            "first_callback_at",
            "since=2026-01-01&until=2030-01-01",
            "newest",
        ),
        (
            "callbacks",
            "received_at",
            "provider=mtn&callback_type=collection",
            "newest",
        ),
        (
            "transactions",
            "first_callback_at",
            "conflict=true",
            "conflicted",
        ),
        (
            "callbacks",
            "received_at",
            "msisdn=256774123456",
            "by_msisdn",
        ),
        (
            "rejected_callbacks",
            "received_at",
            "provider=mtn",
            "newest",
        ),
    ];
    let allowed = [
        "provider",
        "status",
        "callback_type",
        "since",
        "until",
        "msisdn",
        "conflict",
        "limit",
        "cursor",
    ];
    for (collection, time_field, query, index) in queries {
        let filters = Filters::parse(query, &allowed).unwrap();
        let winning = winning_plan(
            &database,
            doc! {
                "find": collection,
                "filter": filters.filter(time_field, None),
                "sort": newest_first(time_field),
                "limit": 51,
            },
        )
        .await;
        assert!(
            winning.contains(&format!("\"indexName\": \"{index}\""))
                && !winning.contains("COLLSCAN"),
            "{collection}?{query} is not served by {index}: {winning}"
        );
    }
    // The drain's link lookups, by receipt, use the partial receipt index.
    let winning = winning_plan(
        &database,
        doc! {
            "find": "transactions",
            "filter": {"provider": "mpesa", "flow": "stk_push", "receipt": {"$in": ["Q-C2B-1"], "$type": "string"}},
        },
    )
    .await;
    assert!(
        winning.contains("\"indexName\": \"receipts_mpesa_stk_push\"")
            && !winning.contains("COLLSCAN"),
        "{winning}"
    );
}

/// The plan MongoDB's planner picks for `find`, as text.
async fn winning_plan(database: &mongodb::Database, find: Document) -> String {
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

#[actix_web::test]
async fn with_no_admin_token_configured_the_refusal_says_so() {
    let app = crate::helpers::spawn_app().await;
    for path in ["/v1/transactions", "/metrics"] {
        let reply = app.get(path, Some(TOKEN)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(reply.body["code"], "AUTH_REQUIRED", "{path}");
        assert!(
            reply.body["message"]
                .as_str()
                .is_some_and(|message| message.contains("auth.admin_tokens")),
            "{path}: {}",
            reply.body
        );
    }
    // With admin tokens configured, a wrong token gets the documented body.
    let app = operated().await;
    let reply = app.get("/v1/transactions", Some(TOKEN)).await;
    assert_eq!(
        reply.body["message"],
        "Invalid or missing authentication token"
    );
}
