//! Actor tests without HTTP: provider actors over the in-memory store and the real MongoDB store, pool
//! routing, restart of a panicking child, refusal to acknowledge what was not stored, and backpressure.

mod support;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use chrono::Utc;
use futures_util::future::{self, BoxFuture};
use futures_util::FutureExt;
use mmo_actors::callback::{CallbackKey, Delivery};
use mmo_actors::persistence::PersistenceActor;
use mmo_actors::pool::{Pool, PoolError, RestartPolicy};
use mmo_actors::provider_actor::{HandleCallback, ProviderActor};
use mmo_actors::providers::fixtures::MTNMoMoCallbackFixtures;
use mmo_actors::providers::{by_slug, PROVIDERS};
use mmo_actors::store::{InMemoryStore, MongoSettings, MongoStore};
use mmo_actors::supervisor::{GetStats, RouteCallback, Supervisor, SupervisorSettings};
use mmo_actors::{
    Callback, CallbackStore, CallbackType, PipelineError, RecordOutcome, RejectedCallback,
    StoreError,
};
use mongodb::bson::doc;
use support::{stk, PoisonedStore};

fn settings(pool_size: usize, mailbox: usize) -> SupervisorSettings {
    let size = NonZeroUsize::new(pool_size).unwrap();
    SupervisorSettings {
        provider_pool_sizes: PROVIDERS
            .iter()
            .map(|p| (p.slug().to_owned(), size))
            .collect::<HashMap<_, _>>(),
        persistence_pool_size: NonZeroUsize::new(2).unwrap(),
        mailbox_capacity: NonZeroUsize::new(mailbox).unwrap(),
        cache_capacity: NonZeroUsize::new(100).unwrap(),
        cache_ttl: Duration::from_secs(60),
        call_timeout: Duration::from_secs(5),
        arbiters: NonZeroUsize::new(2).unwrap(),
        restart_policy: RestartPolicy::default(),
    }
}

fn persistence_pool(store: Arc<dyn CallbackStore>, mailbox: usize) -> Arc<Pool<PersistenceActor>> {
    persistence_pool_with(store, mailbox, RestartPolicy::default())
}

fn persistence_pool_with(
    store: Arc<dyn CallbackStore>,
    mailbox: usize,
    policy: RestartPolicy,
) -> Arc<Pool<PersistenceActor>> {
    Arc::new(Pool::new(
        "persistence",
        NonZeroUsize::new(1).unwrap(),
        NonZeroUsize::new(mailbox).unwrap(),
        Duration::from_secs(5),
        policy,
        move |_| PersistenceActor::new(Arc::clone(&store)).start(),
    ))
}

fn provider_actor(store: Arc<dyn CallbackStore>) -> actix::Addr<ProviderActor> {
    let persistence = persistence_pool(store, 16);
    ProviderActor::new(
        NonZeroUsize::new(100).unwrap(),
        Duration::from_secs(60),
        persistence,
    )
    .start()
}

fn handle(callback: &Callback) -> HandleCallback {
    HandleCallback {
        callback: Arc::new(callback.clone()),
        delivery: Delivery::new(Utc::now()),
    }
}

/// Counts what reaches the store, to see what the provider actor's cache saves.
#[derive(Default)]
struct CountingStore {
    inner: InMemoryStore,
    records: AtomicUsize,
    deliveries: AtomicUsize,
}

impl CallbackStore for CountingStore {
    fn record(
        &self,
        callback: Arc<Callback>,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<RecordOutcome, StoreError>> {
        self.records.fetch_add(1, Ordering::SeqCst);
        self.inner.record(callback, delivery)
    }
    fn count_delivery(
        &self,
        key: CallbackKey,
        delivery: Delivery,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.deliveries.fetch_add(1, Ordering::SeqCst);
        self.inner.count_delivery(key, delivery)
    }
    fn quarantine(
        &self,
        rejected: Arc<RejectedCallback>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner.quarantine(rejected)
    }
}

/// Fails every write, like MongoDB out of reach.
struct UnreachableStore;

impl CallbackStore for UnreachableStore {
    fn record(
        &self,
        _: Arc<Callback>,
        _delivery: Delivery,
    ) -> BoxFuture<'static, Result<RecordOutcome, StoreError>> {
        future::ready(Err(StoreError::Unavailable("no server".into()))).boxed()
    }
    fn count_delivery(
        &self,
        _: CallbackKey,
        _delivery: Delivery,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        future::ready(Err(StoreError::Unavailable("no server".into()))).boxed()
    }
    fn quarantine(&self, _: Arc<RejectedCallback>) -> BoxFuture<'static, Result<(), StoreError>> {
        future::ready(Err(StoreError::Unavailable("no server".into()))).boxed()
    }
}

/// Never finishes a write until released: a stuck database.
struct StuckStore {
    release: Arc<tokio::sync::Semaphore>,
}

impl CallbackStore for StuckStore {
    fn record(
        &self,
        _: Arc<Callback>,
        _delivery: Delivery,
    ) -> BoxFuture<'static, Result<RecordOutcome, StoreError>> {
        let release = Arc::clone(&self.release);
        async move {
            let _permit = release.acquire().await;
            Ok(RecordOutcome::Stored)
        }
        .boxed()
    }
    fn count_delivery(
        &self,
        _: CallbackKey,
        _delivery: Delivery,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        future::ready(Ok(())).boxed()
    }
    fn quarantine(&self, _: Arc<RejectedCallback>) -> BoxFuture<'static, Result<(), StoreError>> {
        future::ready(Ok(())).boxed()
    }
}

#[actix::test]
async fn provider_actor_stores_once_and_counts_repeats() {
    let store = InMemoryStore::new();
    let actor = provider_actor(Arc::new(store.clone()));
    let callback = stk("ws_CO_once");

    assert_eq!(
        actor.send(handle(&callback)).await.unwrap(),
        Ok(RecordOutcome::Stored)
    );
    assert_eq!(
        actor.send(handle(&callback)).await.unwrap(),
        Ok(RecordOutcome::Duplicate)
    );
    assert_eq!(
        actor.send(handle(&callback)).await.unwrap(),
        Ok(RecordOutcome::Duplicate)
    );

    assert_eq!(store.len(), 1);
    assert_eq!(store.get(&callback.key()).unwrap().deliveries, 3);
}

#[actix::test]
async fn a_cached_repeat_only_counts_a_delivery() {
    let store = Arc::new(CountingStore::default());
    let actor = provider_actor(store.clone());
    let callback = stk("ws_CO_cached");

    actor.send(handle(&callback)).await.unwrap().unwrap();
    actor.send(handle(&callback)).await.unwrap().unwrap();

    assert_eq!(
        store.records.load(Ordering::SeqCst),
        1,
        "the repeat never reached the insert path"
    );
    assert_eq!(store.deliveries.load(Ordering::SeqCst), 1);
}

#[actix::test]
async fn a_failed_write_is_an_error_and_is_not_remembered() {
    let actor = provider_actor(Arc::new(UnreachableStore));
    let callback = stk("ws_CO_unreachable");
    for _ in 0..2 {
        // Same answer twice: the failure did not put the key in the cache (which would say Duplicate).
        let answer = actor.send(handle(&callback)).await.unwrap();
        assert!(
            matches!(answer, Err(PipelineError::StorageUnavailable(_))),
            "{answer:?}"
        );
    }
}

#[actix::test]
async fn provider_actor_stores_in_real_mongodb() {
    let uri = std::env::var("MMO_TEST_MONGODB_URI")
        .expect("MMO_TEST_MONGODB_URI: run the tests with scripts/test.sh");
    let database = format!("actors_{}", uuid_like());
    let store = MongoStore::connect(&MongoSettings {
        uri,
        database,
        server_selection_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(10),
        unauthenticated_retention: Duration::from_secs(86_400),
        reconciliation_retention: std::time::Duration::from_secs(90 * 86_400),
        confirm_by_query: Vec::new(),
    })
    .await
    .unwrap();
    let actor = provider_actor(Arc::new(store.clone()));
    let pending = MTNMoMoCallbackFixtures::collection_for("mtn-actor-1", "PENDING");
    let successful = MTNMoMoCallbackFixtures::collection_for("mtn-actor-1", "SUCCESSFUL");
    let mtn = by_slug("mtn").unwrap();
    let pending = mtn
        .parse(CallbackType::Collection, pending.to_string().as_bytes())
        .unwrap();
    let successful = mtn
        .parse(CallbackType::Collection, successful.to_string().as_bytes())
        .unwrap();

    assert_eq!(
        actor.send(handle(&pending)).await.unwrap(),
        Ok(RecordOutcome::Stored)
    );
    assert_eq!(
        actor.send(handle(&successful)).await.unwrap(),
        Ok(RecordOutcome::Stored)
    );
    assert_eq!(
        actor.send(handle(&successful)).await.unwrap(),
        Ok(RecordOutcome::Duplicate)
    );

    let filter = doc! {"provider": "mtn_mobile_money", "provider_transaction_id": "mtn-actor-1"};
    assert_eq!(
        store
            .callbacks()
            .count_documents(filter.clone())
            .await
            .unwrap(),
        2
    );
    let stored = store
        .callbacks()
        .find_one(doc! {"provider_transaction_id": "mtn-actor-1", "status": "successful"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_i64("deliveries").unwrap(), 2);
    assert_eq!(stored.get_str("callback_type").unwrap(), "collection");
    store.callbacks().drop().await.unwrap();
}

#[actix::test]
async fn the_pool_routes_every_repeat_of_a_key_to_the_same_member() {
    let store = Arc::new(CountingStore::default());
    let supervisor = Supervisor::new(&settings(4, 16), store.clone());
    let pool = supervisor.provider_pool("mpesa").unwrap();
    let addr = supervisor.start();

    let keys: Vec<String> = (0..40).map(|i| format!("ws_CO_route_{i}")).collect();
    let members: std::collections::HashSet<usize> = keys
        .iter()
        .map(|key| pool.member_for(stk(key).key().route()))
        .collect();
    assert!(members.len() > 1, "keys spread over several members");

    for key in &keys {
        for _ in 0..3 {
            let answer = addr
                .send(RouteCallback::new(stk(key), Utc::now()))
                .await
                .unwrap();
            assert!(answer.is_ok());
        }
    }
    // Each key was inserted once; both repeats were answered from the same member's cache.
    assert_eq!(store.records.load(Ordering::SeqCst), keys.len());
    assert_eq!(store.deliveries.load(Ordering::SeqCst), keys.len() * 2);
}

#[actix::test]
async fn the_supervisor_restarts_a_panicking_child_and_keeps_serving() {
    let store = Arc::new(PoisonedStore::default());
    let supervisor = Supervisor::new(&settings(2, 16), store.clone());
    let addr = supervisor.start();

    let poisoned = addr
        .send(RouteCallback::new(stk("poison"), Utc::now()))
        .await
        .unwrap();
    assert_eq!(
        poisoned,
        Err(PipelineError::ActorFailed),
        "never acknowledged"
    );
    assert_eq!(
        store.panics.load(Ordering::SeqCst),
        2,
        "the in-flight callback was retried once"
    );

    let stats = addr.send(GetStats).await.unwrap();
    let persistence = stats
        .pools
        .iter()
        .find(|pool| pool.name == "persistence")
        .unwrap();
    assert!(persistence.restarts >= 1, "{stats:?}");

    for key in ["after-1", "after-2", "after-3"] {
        let answer = addr
            .send(RouteCallback::new(stk(key), Utc::now()))
            .await
            .unwrap();
        assert_eq!(answer, Ok(RecordOutcome::Stored));
    }
    assert_eq!(store.inner.len(), 3);
}

#[actix::test]
async fn a_child_that_keeps_failing_is_reported_and_restarted_with_backoff() {
    let store = Arc::new(PoisonedStore::default());
    // Time is moved forward by hand: nothing here depends on how fast the machine is.
    tokio::time::pause();
    let policy = RestartPolicy {
        limit: 2,
        window: Duration::from_secs(60),
        max_backoff: Duration::from_secs(1),
    };
    let pool = persistence_pool_with(store.clone(), 16, policy);
    let persist = |key: &str| mmo_actors::persistence::PersistCallback {
        callback: Arc::new(stk(key)),
        delivery: Delivery::new(Utc::now()),
    };

    assert_eq!(
        pool.call(0, persist("poison")).await.unwrap_err(),
        PoolError::Failed
    );
    assert!(!pool.is_failing(), "two restarts are within the limit");
    assert_eq!(
        pool.call(0, persist("poison")).await.unwrap_err(),
        PoolError::Failed
    );
    assert!(
        pool.is_failing(),
        "a third restart in the window exceeds it"
    );
    let panics = store.panics.load(Ordering::SeqCst);
    // While backing off, the dead member is not restarted: the call fails at once, nothing runs.
    assert_eq!(
        pool.call(0, persist("healthy-1")).await.unwrap_err(),
        PoolError::Failed
    );
    assert_eq!(store.panics.load(Ordering::SeqCst), panics);
    assert!(store.inner.is_empty());

    // After the backoff and the window, the pool recovers.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(
        pool.call(0, persist("healthy-2")).await.unwrap(),
        Ok(RecordOutcome::Stored)
    );
    assert!(!pool.is_failing());
}

#[actix::test]
async fn a_restart_that_panics_leaves_the_pool_usable() {
    let store: Arc<dyn CallbackStore> = Arc::new(PoisonedStore::default());
    let starts = Arc::new(AtomicUsize::new(0));
    let pool = {
        let starts = Arc::clone(&starts);
        let store = Arc::clone(&store);
        Arc::new(Pool::new(
            "persistence",
            NonZeroUsize::new(1).unwrap(),
            NonZeroUsize::new(16).unwrap(),
            Duration::from_secs(5),
            RestartPolicy::default(),
            move |_| {
                // The first restart panics (a bad arbiter, a failed allocation), the next ones work.
                if starts.fetch_add(1, Ordering::SeqCst) == 1 {
                    panic!("starting a member failed");
                }
                PersistenceActor::new(Arc::clone(&store)).start()
            },
        ))
    };
    let persist = |key: &str| mmo_actors::persistence::PersistCallback {
        callback: Arc::new(stk(key)),
        delivery: Delivery::new(Utc::now()),
    };
    // The poisoned callback kills the member; starting its replacement panics.
    let failed = {
        let pool = Arc::clone(&pool);
        let message = persist("poison");
        actix::spawn(async move { pool.call(0, message).await }).await
    };
    assert!(failed.is_err(), "the restart's panic reaches the caller");
    assert_eq!(starts.load(Ordering::SeqCst), 2);

    // Nothing is left locked or poisoned: readiness and later calls work, and the member is restarted.
    assert!(!pool.is_failing());
    assert_eq!(
        pool.call(0, persist("healthy")).await.unwrap(),
        Ok(RecordOutcome::Stored)
    );
    assert_eq!(starts.load(Ordering::SeqCst), 3);
}

#[actix::test]
async fn a_full_mailbox_is_refused_at_once() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let pool = persistence_pool(
        Arc::new(StuckStore {
            release: Arc::clone(&release),
        }),
        1,
    );
    let message = mmo_actors::persistence::PersistCallback {
        callback: Arc::new(stk("busy")),
        delivery: Delivery::new(Utc::now()),
    };

    let first = {
        let pool = Arc::clone(&pool);
        let message = message.clone();
        actix::spawn(async move { pool.call(0, message).await })
    };
    tokio::task::yield_now().await;
    assert_eq!(pool.call(0, message).await.unwrap_err(), PoolError::Busy);

    release.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap(), Ok(RecordOutcome::Stored));
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

#[actix::test]
async fn applying_the_same_delivery_twice_counts_it_once() {
    let uri = std::env::var("MMO_TEST_MONGODB_URI")
        .expect("MMO_TEST_MONGODB_URI: run the tests with scripts/test.sh");
    let store = MongoStore::connect(&MongoSettings {
        uri,
        database: format!("actors_{}", uuid_like()),
        server_selection_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(10),
        unauthenticated_retention: Duration::from_secs(86_400),
        reconciliation_retention: std::time::Duration::from_secs(90 * 86_400),
        confirm_by_query: Vec::new(),
    })
    .await
    .unwrap();
    let callback = Arc::new(stk("ws_CO_redrain"));
    let first = Delivery::new(Utc::now());
    let second = Delivery::new(Utc::now());
    assert_eq!(
        store.record(callback.clone(), first.clone()).await,
        Ok(RecordOutcome::Stored)
    );
    // The same delivery again finds its own document: stored (by that delivery), counted once.
    assert_eq!(
        store.record(callback.clone(), first.clone()).await,
        Ok(RecordOutcome::Stored)
    );
    assert_eq!(
        store.record(callback.clone(), second.clone()).await,
        Ok(RecordOutcome::Duplicate)
    );
    store.count_delivery(callback.key(), second).await.unwrap();
    let stored = store
        .callbacks()
        .find_one(doc! {"provider_transaction_id": "ws_CO_redrain"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.get_i64("deliveries").unwrap(),
        2,
        "two deliveries, each applied twice"
    );

    let rejected = Arc::new(RejectedCallback::new(
        b"x".to_vec(),
        "/p".into(),
        "r".into(),
        "req".into(),
        Utc::now(),
    ));
    store.quarantine(rejected.clone()).await.unwrap();
    store.quarantine(rejected).await.unwrap();
    assert_eq!(store.rejected().count_documents(doc! {}).await.unwrap(), 1);
    store.callbacks().drop().await.unwrap();
}

/// The store production uses: the journal, drained to the real MongoDB.
#[actix::test]
async fn through_the_journal_the_supervisor_acknowledges_and_mongodb_receives_once() {
    use mmo_actors::drain::{Drain, DrainSettings};
    use mmo_actors::journal::Journal;
    use mmo_actors::journaled_store::JournaledStore;

    let dir = std::env::temp_dir().join(format!("mmo-actors-journal-{}", uuid_like()));
    let journal = Journal::open(&dir, 1 << 30).unwrap();
    let mongodb = support::mongo_store().await;
    Drain::new(
        Arc::clone(&journal),
        Arc::new(mongodb.clone()),
        DrainSettings::default(),
    )
    .start();
    let journaled: Arc<dyn CallbackStore> = Arc::new(JournaledStore::new(Arc::clone(&journal)));
    let addr = Supervisor::new(&settings(2, 16), journaled).start();

    let route = |callback: Callback| RouteCallback::new(callback, Utc::now());
    let pending = support::mtn("journal-actor-1", "PENDING");
    let successful = support::mtn("journal-actor-1", "SUCCESSFUL");
    assert_eq!(
        addr.send(route(pending.clone())).await.unwrap(),
        Ok(RecordOutcome::Journaled),
        "acknowledged once journaled"
    );
    assert_eq!(
        addr.send(route(pending)).await.unwrap(),
        Ok(RecordOutcome::Duplicate),
        "a repeat is answered from the provider actor's cache"
    );
    assert_eq!(
        addr.send(route(successful)).await.unwrap(),
        Ok(RecordOutcome::Journaled)
    );

    for _ in 0..400 {
        if journal.backlog().entries == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(journal.backlog().entries, 0, "the journal drained");
    let stored: Vec<mongodb::bson::Document> = {
        let mut cursor = mongodb
            .callbacks()
            .find(doc! {"provider_transaction_id": "journal-actor-1"})
            .sort(doc! {"received_at": 1})
            .await
            .unwrap();
        let mut stored = Vec::new();
        while cursor.advance().await.unwrap() {
            stored.push(cursor.deserialize_current().unwrap());
        }
        stored
    };
    let statuses: Vec<&str> = stored
        .iter()
        .map(|document| document.get_str("status").unwrap())
        .collect();
    assert_eq!(statuses.len(), 2, "{stored:?}");
    assert!(statuses.contains(&"pending") && statuses.contains(&"successful"));
    let pending = stored
        .iter()
        .find(|document| document.get_str("status").unwrap() == "pending")
        .unwrap();
    assert_eq!(pending.get_i64("deliveries").unwrap(), 2);
    let transaction = mongodb
        .transactions()
        .find_one(doc! {"transaction_key": "journal-actor-1"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(transaction.get_str("status").unwrap(), "successful");
    mongodb.database().drop().await.unwrap();
}
