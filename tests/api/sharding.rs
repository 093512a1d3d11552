//! The data model shards as `docs/mongodb.md` says: with MongoDB's profiler recording every operation,
//! the service does its work over real HTTP — endpoints registered, changed and rotated, callbacks stored,
//! repeated and contradicted, events delivered and replayed, expectations registered, a rejected body
//! put through replay — and then every unique index starts with its collection's shard key and every
//! single-document write it sent named the shard key (`mmo_actors::store::sharding`).

use actix_web::http::{Method, StatusCode};
use mmo_actors::store::sharding::{problems, single_write};
use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

const CLIENT: &str = "client-token-0123456789abcdef";

use crate::delivery::{admin, app_delivering, collection, receiver, register, wait_for_status};

#[actix_web::test]
async fn every_unique_index_and_single_document_write_names_the_shard_key() {
    let app = app_delivering(&[("MMO__AUTH__CLIENT_TOKENS", CLIENT)]).await;
    let database = app
        .transactions
        .client()
        .database(app.transactions.namespace().db.as_str());
    database.run_command(doc! {"profile": 2}).await.unwrap();

    let receiver = receiver(|_| (204, None));
    let (endpoint, _) = register(&app, &receiver.url).await;
    let patched = admin(
        &app,
        Method::PATCH,
        &format!("/v1/endpoints/{endpoint}"),
        json!({"description": "orders"}),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let rotated = admin(
        &app,
        Method::POST,
        &format!("/v1/endpoints/{endpoint}/secret/rotate"),
        Value::Null,
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);

    app.mtn_collection("sharded-1", "PENDING").await;
    // Stored first, so that the final status is folded into an existing transaction (an update).
    app.drained().await;
    app.mtn_collection("sharded-1", "SUCCESSFUL").await;
    app.mtn_collection("sharded-1", "SUCCESSFUL").await;
    // The same callback with another amount: a contradiction, flagged by a versioned `update` (its event in the same write).
    let mut altered: Value = serde_json::from_str(
        &mmo_actors::providers::fixtures::MTNMoMoCallbackFixtures::collection_for(
            "sharded-1",
            "SUCCESSFUL",
        )
        .to_string(),
    )
    .unwrap();
    altered["amount"] = json!("999999");
    let reply = app.post("/v1/webhooks/mtn/collection", &altered).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    app.drained().await;
    // However the drain batched them: the payment's status, then its contradiction.
    let delivered = receiver
        .until("the conflict event", |got| {
            got.iter()
                .any(|event| event.json()["type"] == "transaction.conflict")
        })
        .await;
    let replayed = admin(
        &app,
        Method::POST,
        &format!("/v1/events/{}/replay", delivered[0].id),
        Value::Null,
    )
    .await;
    assert_eq!(replayed.status, StatusCode::ACCEPTED, "{}", replayed.body);
    wait_for_status(&app, &delivered[0].id, "delivered").await;

    let expectation = json!({"provider": "mtn", "callback_type": "collection", "key": "sharded-2",
                             "amount": "100", "currency": "UGX", "expected_within_secs": 60});
    let expected = app
        .send(
            Method::POST,
            "/v1/expectations",
            expectation.to_string().into_bytes(),
            Some(CLIENT),
            Some("application/json"),
        )
        .await;
    assert_eq!(expected.status, StatusCode::CREATED, "{}", expected.body);

    let rejected = app
        .post("/v1/webhooks/mtn/collection", &json!({"odd": true}))
        .await;
    assert!(rejected.status.is_client_error(), "{}", rejected.body);
    app.drained().await;
    let kept = app
        .rejected
        .find_one(doc! {})
        .await
        .unwrap()
        .expect("the rejected body");
    let id = kept.get_object_id("_id").unwrap().to_hex();
    let reply = admin(
        &app,
        Method::POST,
        &format!("/v1/rejected/{id}/replay"),
        Value::Null,
    )
    .await;
    // Still not understood: refused with its reason, and left as it was.
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["code"], "REPLAY_FAILED");

    let deleted = admin(
        &app,
        Method::DELETE,
        &format!("/v1/endpoints/{endpoint}"),
        Value::Null,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    app.drained().await;
    // The sending lease is renewed every half second: on a fast run the steps above can all fit between
    // two renewals, so wait for one to be profiled (bounded) rather than count on the run's length. A
    // renewal is a `findAndModify` (a command); the feed's position is saved in the same document by an
    // update, which does not count.
    let leases = format!("{}.leases", database.name());
    for _ in 0..200 {
        let renewed = collection(&app, "system.profile")
            .count_documents(doc! {"ns": &leases, "op": "command"})
            .await
            .unwrap();
        if renewed > 0 {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    database.run_command(doc! {"profile": 0}).await.unwrap();

    // The profile holds the writes this test is about: it would catch one that broke the rule.
    let profile: Vec<Document> = futures_util::TryStreamExt::try_collect(
        collection(&app, "system.profile")
            .find(doc! {})
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let written: std::collections::HashSet<(String, String)> = profile
        .iter()
        .filter_map(|entry| {
            let (collection, _) = single_write(entry)?;
            Some((collection.to_owned(), entry.get_str("op").ok()?.to_owned()))
        })
        .collect();
    for expected in [
        ("transactions", "update"),
        ("endpoints", "update"),
        ("endpoints", "remove"),
        ("events", "update"),
        ("reconciliations", "update"),
        ("leases", "command"),
    ] {
        assert!(
            written.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "no single-document {} on {} was profiled: {written:?}",
            expected.1,
            expected.0
        );
    }
    assert_eq!(problems(&database).await.unwrap(), Vec::<String>::new());
}
