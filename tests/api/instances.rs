//! Delivery's promises with two instances on one database, as a deployment behind a load balancer runs
//! them: an operator's resends reach both, and a transaction's callbacks land on either. Nothing here
//! waits for a drain between the racing steps; the receivers always answer 2xx, so every event must
//! reach them exactly once, in version order per transaction.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::TryStreamExt;
use mongodb::bson::doc;

use crate::delivery::{app_delivering, register, slow_receiver, wait_for_status, Received};
use crate::helpers::TestApp;

/// A receiver that always acknowledges, a little slowly (a merchant's system under load): an event
/// stays in flight long enough for a second instance's copy of it, if one were written, to be sent too.
fn acknowledging() -> crate::delivery::Receiver {
    slow_receiver(|_| Duration::from_millis(200), |_| (200, None))
}

/// Two instances sharing one database (both deliver: they compete for the sending lease).
async fn two_instances() -> (TestApp, TestApp) {
    let database = format!("api_{}", uuid::Uuid::new_v4().simple());
    let first = app_delivering(&[("MMO__MONGODB__DATABASE", &database)]).await;
    let second = app_delivering(&[("MMO__MONGODB__DATABASE", &database)]).await;
    (first, second)
}

/// Each delivery's (transaction key, version), in the order the receiver got them.
fn versions(received: &[Received]) -> Vec<(String, i64)> {
    received
        .iter()
        .map(|delivery| {
            let body = delivery.json();
            (
                body["data"]["transaction_key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                body["data"]["version"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits until every transaction's latest event is in `events` and none is pending there: nothing more
/// will be sent.
async fn settled(app: &TestApp) {
    let database = app
        .transactions
        .client()
        .database(app.transactions.namespace().db.as_str());
    for _ in 0..600 {
        let unsent = crate::delivery::unsent(&database).await;
        let pending = database
            .collection::<mongodb::bson::Document>("events")
            .count_documents(doc! {"status": "pending"})
            .await
            .unwrap();
        if unsent == 0 && pending == 0 {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("events still waiting after 30 s");
}

/// Waits until `transactions` successful events reached `receiver` and nothing waits to be sent any
/// more; returns every delivery the receiver got.
async fn all_delivered(
    app: &TestApp,
    receiver: &crate::delivery::Receiver,
    transactions: usize,
) -> Vec<Received> {
    receiver
        .until("a successful event of every transaction", |got| {
            got.iter()
                .filter(|delivery| delivery.json()["type"] == "transaction.successful")
                .count()
                >= transactions
        })
        .await;
    settled(app).await;
    receiver.until("all", |_| true).await
}

/// The same callbacks posted to both instances at once (an operator resending through the load
/// balancer): each change makes one event, and the receiver gets each once.
#[actix_web::test]
async fn callbacks_posted_to_two_instances_at_once_are_delivered_once_each() {
    let (first, second) = two_instances().await;
    let receiver = acknowledging();
    register(&first, &receiver.url).await;
    const TRANSACTIONS: usize = 40;
    for status in ["PENDING", "SUCCESSFUL"] {
        let posts = (0..TRANSACTIONS).flat_map(|n| {
            let key = format!("both-{n}");
            [
                first.mtn_collection_owned(key.clone(), status),
                second.mtn_collection_owned(key, status),
            ]
        });
        join_all(posts).await;
    }
    let received = all_delivered(&first, &receiver, TRANSACTIONS).await;
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for delivery in &received {
        *per_id.entry(delivery.id.as_str()).or_default() += 1;
    }
    let repeated: Vec<_> = per_id.iter().filter(|(_, count)| **count > 1).collect();
    assert!(
        repeated.is_empty(),
        "delivered more than once: {repeated:?}"
    );
    // One event per version the transactions went through: nothing more, nothing less.
    let stored: i64 = first
        .transactions
        .find(doc! {"transaction_key": {"$regex": "^both-"}})
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|transaction| transaction.get_i64("version").unwrap())
        .sum();
    assert_eq!(received.len() as i64, stored, "one delivery per version");
    let id = received[0].id.clone();
    wait_for_status(&second, &id, "delivered").await;
}

/// A transaction's first callback to one instance and its final one to the other, at once: whatever
/// order the instances store them in, the receiver gets the versions in order, each once.
#[actix_web::test]
async fn a_transactions_callbacks_on_two_instances_reach_the_receiver_in_version_order() {
    let (first, second) = two_instances().await;
    let receiver = acknowledging();
    register(&second, &receiver.url).await;
    const TRANSACTIONS: usize = 20;
    let posts = (0..TRANSACTIONS).flat_map(|n| {
        let key = format!("split-{n}");
        [
            first.mtn_collection_owned(key.clone(), "PENDING"),
            second.mtn_collection_owned(key, "SUCCESSFUL"),
        ]
    });
    join_all(posts).await;
    let received = all_delivered(&first, &receiver, TRANSACTIONS).await;
    let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
    for (key, version) in versions(&received) {
        seen.entry(key).or_default().push(version);
    }
    assert_eq!(seen.len(), TRANSACTIONS);
    for (key, versions) in &seen {
        assert!(
            versions.windows(2).all(|pair| pair[0] < pair[1]),
            "{key}: versions arrived as {versions:?}"
        );
    }
}
