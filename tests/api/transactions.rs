//! The `transactions` view over real HTTP and MongoDB: state rules, conflicts, cross-flow links, and
//! race-safety across pool members and across two service instances.

use actix_web::http::StatusCode;
use futures_util::future::join_all;
use mmo_actors::providers::fixtures::{
    MTNMoMoCallbackFixtures as Mtn, MpesaCallbackFixtures as Mpesa,
};
use mongodb::bson::{Bson, Document};
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, test_settings};

fn ids(transaction: &Document) -> usize {
    transaction.get_array("callback_ids").unwrap().len()
}

fn conflict_fields(transaction: &Document) -> Vec<String> {
    transaction
        .get_array("conflicts")
        .unwrap()
        .iter()
        .map(|entry| {
            entry
                .as_document()
                .unwrap()
                .get_str("field")
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[actix_web::test]
async fn a_transaction_follows_its_callbacks_to_a_final_status() {
    let app = spawn_app().await;
    app.mtn_collection("tx-final", "PENDING").await;
    assert_eq!(
        app.transaction("tx-final").await.get_str("status").unwrap(),
        "pending"
    );
    app.mtn_collection("tx-final", "SUCCESSFUL").await;

    let transaction = app.transaction("tx-final").await;
    assert_eq!(transaction.get_str("status").unwrap(), "successful");
    assert_eq!(transaction.get_str("provider").unwrap(), "mtn_mobile_money");
    assert_eq!(transaction.get_str("flow").unwrap(), "collection");
    assert_eq!(transaction.get_str("receipt").unwrap(), "12345678");
    assert_eq!(transaction.get_str("msisdn").unwrap(), "256774123456");
    assert!(matches!(
        transaction.get("amount"),
        Some(Bson::Decimal128(_))
    ));
    assert_eq!(ids(&transaction), 2);
    assert!(!transaction.get_bool("conflict").unwrap());
    assert!(
        transaction.get_datetime("last_callback_at").unwrap()
            >= transaction.get_datetime("first_callback_at").unwrap()
    );
    // Every stored callback was folded in.
    assert!(app
        .stored("tx-final")
        .await
        .iter()
        .all(|callback| callback.get_bool("processed").unwrap()));
}

#[actix_web::test]
async fn a_terminal_status_never_goes_back_to_pending() {
    let app = spawn_app().await;
    app.mtn_collection("tx-late", "SUCCESSFUL").await;
    app.mtn_collection("tx-late", "PENDING").await;
    let transaction = app.transaction("tx-late").await;
    assert_eq!(transaction.get_str("status").unwrap(), "successful");
    assert_eq!(
        ids(&transaction),
        2,
        "the late callback is recorded, not applied"
    );
    assert!(!transaction.get_bool("conflict").unwrap());
}

#[actix_web::test]
async fn a_second_different_final_status_is_kept_as_a_conflict() {
    let app = spawn_app().await;
    app.mtn_collection("tx-conflict", "SUCCESSFUL").await;
    let mut failed = Mtn::collection_for("tx-conflict", "FAILED");
    failed["reason"] = json!("INTERNAL_PROCESSING_ERROR");
    assert_eq!(
        app.post("/v1/webhooks/mtn/collection", &failed)
            .await
            .status,
        StatusCode::OK
    );

    let transaction = app.transaction("tx-conflict").await;
    assert_eq!(
        transaction.get_str("status").unwrap(),
        "successful",
        "not silently overwritten"
    );
    assert!(transaction.get_bool("conflict").unwrap());
    assert_eq!(conflict_fields(&transaction), ["status"]);
    let entry = transaction.get_array("conflicts").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(entry.get_str("current").unwrap(), "successful");
    assert_eq!(entry.get_str("incoming").unwrap(), "failed");
}

#[actix_web::test]
async fn the_same_key_and_status_with_a_different_body_is_flagged_and_kept() {
    let app = spawn_app().await;
    app.mtn_collection("tx-body", "SUCCESSFUL").await;
    let mut altered = Mtn::collection_for("tx-body", "SUCCESSFUL");
    altered["amount"] = json!("9000.00");
    for _ in 0..2 {
        assert_eq!(
            app.post("/v1/webhooks/mtn/collection", &altered)
                .await
                .status,
            StatusCode::OK
        );
    }

    let callback = app.stored_one("tx-body").await;
    assert_eq!(callback.get_i64("deliveries").unwrap(), 3);
    let transaction = app.transaction("tx-body").await;
    assert!(transaction.get_bool("conflict").unwrap());
    // A disagreeing body is listed once; its repeats are counted as deliveries.
    assert_eq!(conflict_fields(&transaction), ["amount"]);
    let entry = transaction.get_array("conflicts").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(entry.get_str("current").unwrap(), "1000.00");
    assert_eq!(entry.get_str("incoming").unwrap(), "9000.00");
    let kept = entry
        .get_document("callback_data")
        .expect("the disagreeing payload is kept");
    assert_eq!(kept.get_str("amount").unwrap(), "9000.00");
}

#[actix_web::test]
async fn an_stk_result_and_a_c2b_confirmation_of_one_payment_are_linked_either_way() {
    let app = spawn_app().await;
    for (checkout, receipt, first_stk) in [
        ("ws_CO_link_1", "RLINK00001", true),
        ("ws_CO_link_2", "RLINK00002", false),
    ] {
        let stk = Mpesa::stk_push_success_for(checkout, receipt);
        let c2b = Mpesa::c2b_confirmation_for(receipt);
        let (first, second) = if first_stk {
            (
                ("/v1/webhooks/mpesa/stkpush", stk),
                ("/v1/webhooks/mpesa/c2b/confirmation", c2b),
            )
        } else {
            (
                ("/v1/webhooks/mpesa/c2b/confirmation", c2b),
                ("/v1/webhooks/mpesa/stkpush", stk),
            )
        };
        assert_eq!(app.post(first.0, &first.1).await.status, StatusCode::OK);
        assert_eq!(app.post(second.0, &second.1).await.status, StatusCode::OK);

        let stk_transaction = app.transaction(checkout).await;
        let c2b_transaction = app.transaction(receipt).await;
        let links = |transaction: &Document| {
            transaction
                .get_array("linked_transactions")
                .unwrap()
                .clone()
        };
        let stk_links = links(&stk_transaction);
        let c2b_links = links(&c2b_transaction);
        assert_eq!(stk_links.len(), 1, "{stk_links:?}");
        assert_eq!(c2b_links.len(), 1, "{c2b_links:?}");
        assert_eq!(
            stk_links[0]
                .as_document()
                .unwrap()
                .get_str("transaction_key")
                .unwrap(),
            receipt
        );
        assert_eq!(
            stk_links[0].as_document().unwrap().get_str("flow").unwrap(),
            "c2b"
        );
        assert_eq!(
            c2b_links[0]
                .as_document()
                .unwrap()
                .get_str("transaction_key")
                .unwrap(),
            checkout
        );
    }
}

#[actix_web::test]
async fn concurrent_callbacks_across_two_instances_fold_into_one_transaction() {
    let settings = test_settings(&[]);
    let first = spawn_app_with(settings.clone()).await;
    let second = spawn_app_with(settings).await;
    let pending = Mtn::collection_for("tx-race", "PENDING");
    let successful = Mtn::collection_for("tx-race", "SUCCESSFUL");
    let mut requests = Vec::new();
    for round in 0..10 {
        let app = if round % 2 == 0 { &first } else { &second };
        requests.push(app.post("/v1/webhooks/mtn/collection", &pending));
        requests.push(app.post("/v1/webhooks/mtn/collection", &successful));
    }
    for reply in join_all(requests).await {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    // Each instance drains its own journal: wait for both before reading MongoDB.
    second.drained().await;
    let transaction = first.transaction("tx-race").await;
    assert_eq!(transaction.get_str("status").unwrap(), "successful");
    assert_eq!(
        ids(&transaction),
        2,
        "two distinct callbacks (pending, successful), each folded in once"
    );
    assert!(!transaction.get_bool("conflict").unwrap());
    let deliveries: i64 = first
        .stored("tx-race")
        .await
        .iter()
        .map(|c| c.get_i64("deliveries").unwrap())
        .sum();
    assert_eq!(deliveries, 20);
}

#[actix_web::test]
async fn validations_and_notifications_shape_no_transaction() {
    let app = spawn_app().await;
    app.post(
        "/v1/webhooks/airtel/notification",
        &json!({"transaction": {"id": "N-1", "status": "TS"}}),
    )
    .await;
    assert!(app.stored("N-1").await.len() == 1);
    assert!(app.transactions_for("N-1").await.is_empty());
}
