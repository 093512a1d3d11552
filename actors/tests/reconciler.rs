//! The reconciler alone, with a fake operator: answers recorded through a real supervisor into a real
//! MongoDB, the transaction rules applied to them, throttling and giving up, a panicking question, two
//! reconcilers sharing the work, an operator slower than a lease, a registration whose open failed, a
//! final callback after giving up, and the plan of the feed's query.

mod support;

use std::collections::{HashMap, VecDeque};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::{FutureExt, StreamExt};
use mmo_actors::pool::RestartPolicy;
use mmo_actors::reconciler::{self, Answer, Inquiry, QueryError, ReconcilerSettings, StatusApi};
use mmo_actors::store::sharding::{problems, single_write};
use mmo_actors::store::{Expectation, MongoSettings, MongoStore, Reconciliations};
use mmo_actors::{supervisor, CallbackType, RouteCallback, SupervisorSettings, PROVIDERS};
use mongodb::bson::{doc, Document};
use rust_decimal::Decimal;

const MTN: &str = "mtn_mobile_money";

/// What the fake operator answers, question after question (the last step repeats).
#[derive(Debug, Clone, Copy)]
enum Step {
    Says(&'static str),
    NotFound,
    Throttle,
    Panic,
}

#[derive(Default)]
struct Ledger {
    scripts: HashMap<String, VecDeque<Step>>,
    asked: HashMap<String, u32>,
    active: HashMap<String, u32>,
    most_at_once: u32,
}

/// An operator that answers from a script, counting questions and how many overlap per key.
#[derive(Clone, Default)]
struct FakeOperator {
    ledger: Arc<Mutex<Ledger>>,
    latency: Duration,
    /// When set, each answer waits for a permit: the test decides when the operator answers.
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

impl FakeOperator {
    fn script(&self, key: &str, steps: &[Step]) {
        let mut ledger = self.ledger.lock().unwrap();
        ledger
            .scripts
            .insert(key.to_owned(), steps.iter().copied().collect());
    }

    fn asked(&self, key: &str) -> u32 {
        self.ledger
            .lock()
            .unwrap()
            .asked
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    fn most_at_once(&self) -> u32 {
        self.ledger.lock().unwrap().most_at_once
    }

    /// Questions about `key` in flight now.
    fn asking(&self, key: &str) -> u32 {
        self.ledger
            .lock()
            .unwrap()
            .active
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl StatusApi for FakeOperator {
    fn asks(&self, _provider: &str, _flow: &str) -> bool {
        true
    }

    fn query(&self, inquiry: Inquiry) -> LocalBoxFuture<'static, Result<Answer, QueryError>> {
        let this = self.clone();
        async move {
            let step = {
                let mut ledger = this.ledger.lock().unwrap();
                *ledger.asked.entry(inquiry.key.clone()).or_default() += 1;
                let active = ledger.active.entry(inquiry.key.clone()).or_default();
                *active += 1;
                let now = *active;
                ledger.most_at_once = ledger.most_at_once.max(now);
                let script = ledger.scripts.get_mut(&inquiry.key).expect("scripted key");
                if script.len() > 1 {
                    script.pop_front().unwrap()
                } else {
                    script[0]
                }
            };
            tokio::time::sleep(this.latency).await;
            if let Some(gate) = &this.gate {
                gate.acquire().await.unwrap().forget();
            }
            *this
                .ledger
                .lock()
                .unwrap()
                .active
                .get_mut(&inquiry.key)
                .unwrap() -= 1;
            match step {
                Step::Says(status) => {
                    Ok(Answer::Status(Box::new(support::mtn(&inquiry.key, status))))
                }
                Step::NotFound => Ok(Answer::NotFound("RESOURCE_NOT_FOUND".into())),
                Step::Throttle => Err(QueryError::Throttled("429".into())),
                Step::Panic => panic!("a bug while asking"),
            }
        }
        .boxed_local()
    }
}

fn settings(confirm: bool) -> ReconcilerSettings {
    ReconcilerSettings {
        interval: Duration::from_millis(50),
        query_after: Duration::ZERO,
        give_up_after: Duration::from_secs(30),
        max_in_flight: 8,
        queries_per_minute: NonZeroU32::new(10_000).unwrap(),
        lease: Duration::from_millis(500),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(200),
        result_wait: Duration::from_secs(1),
        confirm_by_query: if confirm { vec![MTN] } else { Vec::new() },
        pseudonymization_salt: None,
    }
}

async fn store(confirm: bool) -> MongoStore {
    store_named(confirm, None).await
}

/// A store whose client names itself `app_name` to the server (its `appName`), so that a fail point
/// configured for that name fails only this test's commands.
async fn store_named(confirm: bool, app_name: Option<&str>) -> MongoStore {
    let mut uri = std::env::var("MMO_TEST_MONGODB_URI")
        .expect("MMO_TEST_MONGODB_URI: run the tests with scripts/test.sh");
    if let Some(name) = app_name {
        uri.push(if uri.contains('?') { '&' } else { '?' });
        uri.push_str(&format!("appName={name}"));
    }
    let store = MongoStore::connect(&MongoSettings {
        uri,
        database: format!(
            "reconciler_{}",
            mongodb::bson::oid::ObjectId::new().to_hex()
        ),
        server_selection_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(10),
        unauthenticated_retention: Duration::from_secs(86_400),
        reconciliation_retention: std::time::Duration::from_secs(90 * 86_400),
        confirm_by_query: if confirm { vec![MTN] } else { Vec::new() },
    })
    .await
    .unwrap();
    store.ensure_indexes().await.unwrap();
    store
}

/// A supervisor writing straight to MongoDB: where the reconciler records answers.
fn recorder(store: &MongoStore) -> actix::Recipient<RouteCallback> {
    let settings = SupervisorSettings {
        provider_pool_sizes: PROVIDERS
            .iter()
            .map(|provider| (provider.slug().to_owned(), NonZeroUsize::new(2).unwrap()))
            .collect(),
        persistence_pool_size: NonZeroUsize::new(2).unwrap(),
        mailbox_capacity: NonZeroUsize::new(64).unwrap(),
        cache_capacity: NonZeroUsize::new(100).unwrap(),
        cache_ttl: Duration::from_secs(60),
        call_timeout: Duration::from_secs(10),
        arbiters: NonZeroUsize::new(1).unwrap(),
        restart_policy: RestartPolicy::default(),
    };
    supervisor::start(&settings, Arc::new(store.clone())).recipient()
}

async fn expect(store: &MongoStore, key: &str) {
    expect_within(store, key, Duration::from_secs(30)).await;
}

/// An MTN collection of 100 UGX expected now.
fn expectation(key: &str) -> Expectation {
    Expectation {
        provider: MTN,
        callback_type: CallbackType::Collection,
        key: key.to_owned(),
        amount: Decimal::new(100, 0),
        currency: "UGX".into(),
        msisdn: None,
        expected_within: Duration::ZERO,
    }
}

/// Expects `key` now, giving up `give_up_after` later.
async fn expect_within(store: &MongoStore, key: &str, give_up_after: Duration) {
    let expectation = expectation(key);
    let registered = store
        .reconciliations()
        .expect(&expectation, chrono::Utc::now(), give_up_after)
        .await
        .unwrap();
    assert!(registered.created);
}

async fn item(store: &MongoStore, key: &str) -> Option<Document> {
    store
        .reconciliations()
        .items()
        .find_one(doc! {"key": key})
        .await
        .unwrap()
}

async fn transaction(store: &MongoStore, key: &str) -> Option<Document> {
    store
        .transactions()
        .find_one(doc! {"transaction_key": key})
        .await
        .unwrap()
}

/// Waits (up to 20 s) until the items of `keys` reached `state`.
async fn until_state(store: &MongoStore, keys: &[&str], state: &str) {
    for _ in 0..400 {
        let mut done = true;
        for key in keys {
            let current = item(store, key).await;
            done &= current.is_some_and(|item| item.get_str("state").ok() == Some(state));
        }
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for key in keys {
        eprintln!("{key}: {:?}", item(store, key).await);
    }
    panic!("items did not become {state}");
}

#[actix::test]
async fn a_missing_callback_is_recovered_and_the_answers_are_kept() {
    let store = store(false).await;
    let operator = FakeOperator::default();
    operator.script(
        "lost-1",
        &[
            Step::NotFound,
            Step::Says("PENDING"),
            Step::Says("SUCCESSFUL"),
        ],
    );
    expect(&store, "lost-1").await;
    reconciler::start(
        settings(false),
        store.reconciliations().clone(),
        Arc::new(operator.clone()),
        recorder(&store),
    );
    until_state(&store, &["lost-1"], "resolved").await;

    assert_eq!(operator.asked("lost-1"), 3);
    let item = item(&store, "lost-1").await.unwrap();
    assert_eq!(
        item.get_document("outcome").unwrap().get_str("by").unwrap(),
        "status_query"
    );
    assert_eq!(
        item.get_i32("attempts").unwrap(),
        3,
        "every question counts"
    );
    let transaction = transaction(&store, "lost-1").await.unwrap();
    assert_eq!(transaction.get_str("status").unwrap(), "successful");
    assert_eq!(transaction.get_str("settled_by").unwrap(), "status_query");
    assert_eq!(transaction.get_str("flow").unwrap(), "collection");
    assert!(!transaction.get_bool("verified").unwrap());
    // Both answers are stored like callbacks, raw payload included.
    let answers: Vec<String> = store
        .callbacks()
        .find(doc! {"provider_transaction_id": "lost-1", "callback_type": "status_query"})
        .await
        .unwrap()
        .map(|document| document.unwrap().get_str("status").unwrap().to_owned())
        .collect()
        .await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers.contains(&"pending".to_owned()) && answers.contains(&"successful".to_owned()));
}

#[actix::test]
async fn a_query_confirms_or_contradicts_a_callback_and_never_demotes_it() {
    let store = store(true).await;
    let recorder = recorder(&store);
    for key in ["told-true", "told-false"] {
        recorder
            .send(RouteCallback::new(
                support::mtn(key, "SUCCESSFUL"),
                chrono::Utc::now(),
            ))
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        transaction(&store, "told-true")
            .await
            .unwrap()
            .get("query_due")
            .is_some(),
        "a callback to confirm waits for the reconciler"
    );
    let operator = FakeOperator::default();
    operator.script("told-true", &[Step::Says("SUCCESSFUL")]);
    operator.script("told-false", &[Step::Says("FAILED")]);
    reconciler::start(
        settings(true),
        store.reconciliations().clone(),
        Arc::new(operator.clone()),
        recorder,
    );
    until_state(&store, &["told-true", "told-false"], "resolved").await;

    let confirmed = transaction(&store, "told-true").await.unwrap();
    assert!(confirmed.get_bool("verified").unwrap());
    assert!(!confirmed.get_bool("conflict").unwrap());
    assert!(confirmed.get("query_due").is_none(), "nothing left to ask");
    let forged = transaction(&store, "told-false").await.unwrap();
    assert_eq!(
        forged.get_str("status").unwrap(),
        "successful",
        "never demoted"
    );
    assert!(
        forged.get_bool("conflict").unwrap(),
        "the contradiction is flagged"
    );
    assert!(!forged.get_bool("verified").unwrap());
    assert_eq!(
        item(&store, "told-false")
            .await
            .unwrap()
            .get_document("outcome")
            .unwrap()
            .get_str("by")
            .unwrap(),
        "conflict"
    );
}

#[actix::test]
async fn throttling_slows_down_and_no_final_answer_ends_unresolved() {
    let store = store(false).await;
    // Every operation is profiled: the reconciler's writes are checked against the shard keys below.
    store
        .database()
        .run_command(doc! {"profile": 2})
        .await
        .unwrap();
    let operator = FakeOperator::default();
    support::subscribe(&store, "ep_all", &[], &[]).await;
    operator.script("never-final", &[Step::Throttle, Step::Says("PENDING")]);
    expect_within(&store, "never-final", Duration::from_millis(1500)).await;
    reconciler::start(
        settings(false),
        store.reconciliations().clone(),
        Arc::new(operator.clone()),
        recorder(&store),
    );
    until_state(&store, &["never-final"], "unresolved").await;

    let asked = operator.asked("never-final");
    // Backoff 100 ms doubling to 200 ms over 1.5 s, after a throttling pause of at least 1 s: a handful
    // of questions, not one per tick.
    assert!((2..=8).contains(&asked), "asked {asked} times");
    // The item is closed first (its claim checked), then its transaction flagged: wait for the flag.
    let mut flagged = None;
    for _ in 0..200 {
        let current = transaction(&store, "never-final").await.unwrap();
        if current.get_bool("unresolved").unwrap_or(false) {
            flagged = Some(current);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let transaction = flagged.expect("the transaction was flagged unresolved");
    assert_eq!(transaction.get_str("status").unwrap(), "pending");
    // Its flagging is an event of its own, written by the flagging write as the transaction's `event`.
    let event = transaction.get_document("event").unwrap();
    assert_eq!(event.get_str("type").unwrap(), "transaction.unresolved");
    assert_eq!(
        event.get_i64("version").unwrap(),
        transaction.get_i64("version").unwrap()
    );

    // Closed, the item is kept for the retention (90 days here), as its expectation is; then a TTL index
    // deletes them.
    let closed = item(&store, "never-final").await.unwrap();
    let kept = |document: &Document, since: &str| {
        let at = |field| document.get_datetime(field).unwrap().timestamp_millis();
        at("expire_at") - at(since)
    };
    assert_eq!(kept(&closed, "resolved_at"), 90 * 86_400_000);
    let expectation = store
        .reconciliations()
        .expectations()
        .find_one(doc! {"key": "never-final"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept(&expectation, "created_at"), 90 * 86_400_000);
    for collection in ["expectations", "reconciliations"] {
        let names = store
            .database()
            .collection::<Document>(collection)
            .list_index_names()
            .await
            .unwrap();
        assert!(
            names.contains(&"expire".to_owned()),
            "{collection}: {names:?}"
        );
    }

    // Claims, rescheduling, giving up and flagging each wrote one document, naming its shard key.
    store
        .database()
        .run_command(doc! {"profile": 0})
        .await
        .unwrap();
    let profiled: Vec<Document> = futures_util::TryStreamExt::try_collect(
        store
            .database()
            .collection::<Document>("system.profile")
            .find(doc! {})
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let writes: Vec<(&str, &str)> = profiled
        .iter()
        .filter_map(|entry| Some((single_write(entry)?.0, entry.get_str("op").ok()?)))
        .collect();
    for expected in [
        ("reconciliations", "command"),
        ("reconciliations", "update"),
        ("transactions", "update"),
    ] {
        assert!(writes.contains(&expected), "{expected:?} not in {writes:?}");
    }
    assert_eq!(
        problems(store.database()).await.unwrap(),
        Vec::<String>::new()
    );
}

#[actix::test]
async fn a_question_that_panics_only_delays_its_item() {
    let store = store(false).await;
    let operator = FakeOperator::default();
    operator.script("crashes-once", &[Step::Panic, Step::Says("FAILED")]);
    operator.script("fine", &[Step::Says("SUCCESSFUL")]);
    expect(&store, "crashes-once").await;
    expect(&store, "fine").await;
    reconciler::start(
        settings(false),
        store.reconciliations().clone(),
        Arc::new(operator.clone()),
        recorder(&store),
    );
    until_state(&store, &["crashes-once", "fine"], "resolved").await;
    assert_eq!(
        operator.asked("crashes-once"),
        2,
        "asked again once its lease ended"
    );
    assert_eq!(
        transaction(&store, "crashes-once")
            .await
            .unwrap()
            .get_str("status")
            .unwrap(),
        "failed"
    );
}

#[actix::test]
async fn two_reconcilers_share_the_work_and_never_ask_twice_at_once() {
    let store = store(false).await;
    let operator = FakeOperator {
        latency: Duration::from_millis(150),
        ..FakeOperator::default()
    };
    let keys: Vec<String> = (0..24).map(|n| format!("shared-{n}")).collect();
    for key in &keys {
        operator.script(key, &[Step::Says("PENDING"), Step::Says("SUCCESSFUL")]);
        expect(&store, key).await;
    }
    for _ in 0..2 {
        reconciler::start(
            settings(false),
            store.reconciliations().clone(),
            Arc::new(operator.clone()),
            recorder(&store),
        );
    }
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    until_state(&store, &names, "resolved").await;
    assert_eq!(
        operator.most_at_once(),
        1,
        "one question per payment at a time"
    );
    for key in &keys {
        assert_eq!(operator.asked(key), 2, "{key}: asked exactly as scripted");
    }
}

/// Waits (up to 20 s) until the transaction of `key` satisfies `condition`; returns it.
async fn until_transaction(
    store: &MongoStore,
    key: &str,
    condition: impl Fn(&Document) -> bool,
) -> Document {
    for _ in 0..400 {
        if let Some(current) = transaction(store, key).await {
            if condition(&current) {
                return current;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{key}: {:?}", transaction(store, key).await);
}

/// An operator slower than a whole lease is asked once: the holder renews its lease (on the server's
/// clock) while the question runs, so neither a second reconciler nor a bare claimer can take the item
/// meanwhile — as they would once an unrenewed lease ran out.
#[actix::test]
async fn an_operator_slower_than_the_lease_is_asked_once() {
    let store = store(false).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let operator = FakeOperator {
        gate: Some(Arc::clone(&gate)),
        ..FakeOperator::default()
    };
    operator.script("slow-1", &[Step::Says("SUCCESSFUL")]);
    expect(&store, "slow-1").await;
    let settings = ReconcilerSettings {
        lease: Duration::from_millis(1500),
        ..settings(false)
    };
    for _ in 0..2 {
        reconciler::start(
            settings.clone(),
            store.reconciliations().clone(),
            Arc::new(operator.clone()),
            recorder(&store),
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while operator.asking("slow-1") == 0 {
        assert!(std::time::Instant::now() < deadline, "never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The question hangs for more than two leases, until the lease has been renewed three times; all the
    // while, claims (the other reconciler's, and this bare one's) find nothing to take.
    let asked_at = std::time::Instant::now();
    let due = |item: &Document| item.get_datetime("due_at").unwrap().timestamp_millis();
    let mut lease_end = due(&item(&store, "slow-1").await.unwrap());
    let mut renewals = 0;
    while renewals < 3 || asked_at.elapsed() < settings.lease * 2 {
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(20),
            "renewed {renewals} times"
        );
        let stolen = store
            .reconciliations()
            .claim(MTN, settings.lease, &[])
            .await
            .unwrap();
        assert!(
            stolen.is_none(),
            "claimed while its question ran: {stolen:?}"
        );
        let current = item(&store, "slow-1").await.unwrap();
        assert_eq!(current.get_str("state").unwrap(), "open");
        if due(&current) > lease_end {
            renewals += 1;
            lease_end = due(&current);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gate.add_permits(1);
    until_state(&store, &["slow-1"], "resolved").await;
    assert_eq!(operator.asked("slow-1"), 1, "asked exactly once");
    assert_eq!(operator.most_at_once(), 1);
    assert_eq!(
        transaction(&store, "slow-1")
            .await
            .unwrap()
            .get_str("status")
            .unwrap(),
        "successful"
    );
}

/// An expectation is inserted, then its work item opened. When the open fails (here MongoDB's
/// `failCommand` fail point fails the open's `update`, for this test's client only), the merchant's
/// retried registration answers `created: false` — and opens the item all the same.
#[actix::test]
async fn a_registration_retried_after_its_open_failed_opens_the_item() {
    let app_name = format!(
        "reconciler-open-{}",
        mongodb::bson::oid::ObjectId::new().to_hex()
    );
    let store = store_named(false, Some(&app_name)).await;
    let admin = store.database().client().database("admin");
    admin
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": {"times": 1},
            "data": {"failCommands": ["update"], "errorCode": 11601, "appName": &app_name},
        })
        .await
        .expect("the test MongoDB runs with enableTestCommands");
    let wanted = expectation("open-fails");
    let first = store
        .reconciliations()
        .expect(&wanted, chrono::Utc::now(), Duration::from_secs(30))
        .await;
    assert!(first.is_err(), "the open was to fail: {first:?}");
    let stored = store
        .reconciliations()
        .expectations()
        .find_one(doc! {"key": "open-fails"})
        .await
        .unwrap()
        .expect("the expectation was inserted before its open failed");
    assert!(item(&store, "open-fails").await.is_none(), "no item yet");

    let retried = store
        .reconciliations()
        .expect(&wanted, chrono::Utc::now(), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!retried.created, "the expectation existed");
    let opened = item(&store, "open-fails")
        .await
        .expect("the retried registration opened the item");
    assert_eq!(opened.get_str("state").unwrap(), "open");
    assert_eq!(
        opened.get_array("reasons").unwrap(),
        &vec![mongodb::bson::Bson::from("expectation")]
    );
    assert_eq!(
        opened.get_datetime("due_at").unwrap(),
        stored.get_datetime("due_at").unwrap(),
        "due when the expectation says"
    );
    // A third registration changes nothing.
    store
        .reconciliations()
        .expect(&wanted, chrono::Utc::now(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(item(&store, "open-fails").await.unwrap(), opened);
}

/// A transaction the reconciler gave up on is flagged `unresolved`; a final callback that comes later
/// settles it, and the flag goes: nothing is unresolved about a payment whose final status is known.
#[actix::test]
async fn a_final_callback_after_giving_up_clears_unresolved() {
    let store = store(false).await;
    let recorder = recorder(&store);
    let operator = FakeOperator::default();
    operator.script("late-final", &[Step::Says("PENDING")]);
    expect_within(&store, "late-final", Duration::from_millis(300)).await;
    reconciler::start(
        settings(false),
        store.reconciliations().clone(),
        Arc::new(operator.clone()),
        recorder.clone(),
    );
    until_state(&store, &["late-final"], "unresolved").await;
    let flagged = until_transaction(&store, "late-final", |transaction| {
        transaction.get_bool("unresolved").unwrap_or(false)
    })
    .await;
    assert_eq!(flagged.get_str("status").unwrap(), "pending");

    recorder
        .send(RouteCallback::new(
            support::mtn("late-final", "SUCCESSFUL"),
            chrono::Utc::now(),
        ))
        .await
        .unwrap()
        .unwrap();
    let settled = until_transaction(&store, "late-final", |transaction| {
        transaction.get_str("status") == Ok("successful")
    })
    .await;
    assert!(
        !settled.get_bool("unresolved").unwrap(),
        "a settled payment is not unresolved: {settled:?}"
    );
    assert!(settled.get_i64("version").unwrap() > flagged.get_i64("version").unwrap());
}

/// The feed's look for transactions awaiting an answer — every round of every instance — is served by
/// the partial index `query_due`, named: the exact filter the code uses is explained.
#[actix::test]
async fn the_feed_reads_the_query_due_index() {
    let store = store(false).await;
    let filter = Reconciliations::feed_filter(chrono::Utc::now());
    let explained = store
        .database()
        .run_command(doc! {
            "explain": {"find": "transactions", "filter": filter, "limit": 1000_i64},
            "verbosity": "queryPlanner",
        })
        .await
        .unwrap();
    let winning = explained
        .get_document("queryPlanner")
        .and_then(|planner| planner.get_document("winningPlan"))
        .unwrap();
    let mut scanned = Vec::new();
    index_scans(winning, &mut scanned);
    assert_eq!(scanned, ["query_due"], "{winning}");
    assert!(!winning.to_string().contains("COLLSCAN"), "{winning}");
}

/// The `indexName` of every `IXSCAN` stage in a plan (classic or slot-based: stages nest under
/// `inputStage`, `inputStages` or `queryPlan`).
fn index_scans(plan: &Document, names: &mut Vec<String>) {
    if plan.get_str("stage") == Ok("IXSCAN") {
        names.push(plan.get_str("indexName").unwrap_or("?").to_owned());
    }
    for (_, value) in plan {
        match value {
            mongodb::bson::Bson::Document(inner) => index_scans(inner, names),
            mongodb::bson::Bson::Array(inner) => {
                for element in inner {
                    if let Some(inner) = element.as_document() {
                        index_scans(inner, names);
                    }
                }
            }
            _ => {}
        }
    }
}
