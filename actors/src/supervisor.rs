//! The supervisor: the single entry point of the actor system.
//!
//! Messages: [`RouteCallback`] (to the provider pool of the callback's operator, member by key hash),
//! [`Quarantine`] (straight to the persistence pool) and [`GetStats`]. It owns every pool; the pools start a
//! fresh actor in place of one that failed (see [`crate::pool`]). Actors run on a small set of arbiters (threads),
//! spread round-robin, so that one busy actor never holds the others back.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, Addr, Arbiter, ArbiterHandle, Context, Handler, Message, MessageResult, ResponseFuture,
};
use chrono::{DateTime, Utc};

use crate::callback::{Callback, Delivery};
use crate::persistence::{PersistenceActor, QuarantineCallback};
use crate::pipeline_error::PipelineError;
use crate::pool::{Pool, RestartPolicy};
use crate::provider_actor::{HandleCallback, ProviderActor};
use crate::providers::PROVIDERS;
use crate::store::{CallbackStore, RecordOutcome, RejectedCallback};

/// Sizes and limits of the actor system, from the service's configuration.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    /// Pool size per provider slug (`mpesa`, `mtn`, `airtel`); every registered provider needs one.
    pub provider_pool_sizes: HashMap<String, NonZeroUsize>,
    pub persistence_pool_size: NonZeroUsize,
    pub mailbox_capacity: NonZeroUsize,
    pub cache_capacity: NonZeroUsize,
    pub cache_ttl: Duration,
    /// Longest wait for one actor's answer; above the store's own operation timeout.
    pub call_timeout: Duration,
    /// Threads the actors run on.
    pub arbiters: NonZeroUsize,
    pub restart_policy: RestartPolicy,
}

pub struct Supervisor {
    providers: HashMap<&'static str, Arc<Pool<ProviderActor>>>,
    persistence: Arc<Pool<PersistenceActor>>,
    /// Own mailbox bound: as many messages as all provider pools together can admit.
    mailbox_capacity: usize,
}

impl Supervisor {
    /// Starts the arbiters, the persistence pool and one provider pool per registered provider.
    ///
    /// Must run inside an actix `System`. Panics if a registered provider has no pool size: configuration
    /// validation guarantees one.
    pub fn new(settings: &SupervisorSettings, store: Arc<dyn CallbackStore>) -> Self {
        Self::on(settings, store, start_arbiters(settings.arbiters))
    }

    /// Like [`Supervisor::new`], with actors on the given arbiters.
    fn on(
        settings: &SupervisorSettings,
        store: Arc<dyn CallbackStore>,
        arbiters: Arc<Vec<ArbiterHandle>>,
    ) -> Self {
        let mailbox = settings.mailbox_capacity;

        let persistence = {
            let arbiters = Arc::clone(&arbiters);
            Arc::new(Pool::new(
                "persistence",
                settings.persistence_pool_size,
                mailbox,
                settings.call_timeout,
                settings.restart_policy,
                move |index| {
                    let store = Arc::clone(&store);
                    PersistenceActor::start_in_arbiter(
                        &arbiters[index % arbiters.len()],
                        move |ctx| {
                            ctx.set_mailbox_capacity(mailbox.get());
                            PersistenceActor::new(store)
                        },
                    )
                },
            ))
        };

        let providers = PROVIDERS
            .iter()
            .map(|provider| {
                let size = settings.provider_pool_sizes[provider.slug()];
                let arbiters = Arc::clone(&arbiters);
                let persistence_pool = Arc::clone(&persistence);
                let (capacity, ttl) = (settings.cache_capacity, settings.cache_ttl);
                let pool = Pool::new(
                    provider.name(),
                    size,
                    mailbox,
                    settings.call_timeout,
                    settings.restart_policy,
                    move |index| {
                        let persistence_pool = Arc::clone(&persistence_pool);
                        // Offset by one so provider actors do not all share the first persistence thread.
                        ProviderActor::start_in_arbiter(
                            &arbiters[(index + 1) % arbiters.len()],
                            move |ctx| {
                                ctx.set_mailbox_capacity(mailbox.get());
                                ProviderActor::new(capacity, ttl, persistence_pool)
                            },
                        )
                    },
                );
                (provider.name(), Arc::new(pool))
            })
            .collect();

        let provider_members: usize = settings
            .provider_pool_sizes
            .values()
            .map(|size| size.get())
            .sum();
        let mailbox_capacity = provider_members * mailbox.get();
        Self {
            providers,
            persistence,
            mailbox_capacity,
        }
    }

    /// The provider pool for a stored provider name (`mtn_mobile_money`), for tests and diagnostics.
    pub fn provider_pool(&self, name: &str) -> Option<Arc<Pool<ProviderActor>>> {
        self.providers.get(name).cloned()
    }

    pub fn persistence_pool(&self) -> Arc<Pool<PersistenceActor>> {
        Arc::clone(&self.persistence)
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Handling a message only spawns its future, so this mailbox drains at once; beyond the bound,
        // senders wait (and the HTTP layer answers 503 when its wait runs out).
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

/// Route a parsed callback to its provider pool; resolves once it is durably stored (or known to be).
#[derive(Debug, Message)]
#[rtype(result = "Result<RecordOutcome, PipelineError>")]
pub struct RouteCallback {
    pub callback: Callback,
    pub received_at: DateTime<Utc>,
    /// The quarantined body this callback was recovered from, when an operator replayed one.
    pub replayed_from: Option<mongodb::bson::oid::ObjectId>,
}

impl RouteCallback {
    /// A callback as it arrived.
    pub fn new(callback: Callback, received_at: DateTime<Utc>) -> Self {
        Self {
            callback,
            received_at,
            replayed_from: None,
        }
    }
}

/// Keep a rejected body for audit.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Quarantine {
    pub rejected: RejectedCallback,
}

/// Report pool sizes and restart counts.
#[derive(Debug, Message)]
#[rtype(result = "SupervisorStats")]
pub struct GetStats;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    pub name: &'static str,
    pub size: usize,
    pub restarts: u64,
    /// More failures within the restart window than the policy allows.
    pub failing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorStats {
    pub pools: Vec<PoolStats>,
}

impl Handler<RouteCallback> for Supervisor {
    type Result = ResponseFuture<Result<RecordOutcome, PipelineError>>;

    fn handle(&mut self, message: RouteCallback, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(pool) = self.providers.get(message.callback.provider).cloned() else {
            let provider = message.callback.provider.to_owned();
            return Box::pin(async move { Err(PipelineError::UnknownProvider(provider)) });
        };
        let route = message.callback.key().route();
        let mut delivery = Delivery::new(message.received_at);
        delivery.replayed_from = message.replayed_from;
        let handle = HandleCallback {
            callback: Arc::new(message.callback),
            delivery,
        };
        Box::pin(async move { pool.call(route, handle).await? })
    }
}

impl Handler<Quarantine> for Supervisor {
    type Result = ResponseFuture<Result<(), PipelineError>>;

    fn handle(&mut self, message: Quarantine, _ctx: &mut Context<Self>) -> Self::Result {
        let pool = Arc::clone(&self.persistence);
        let route = message.rejected.received_at.timestamp_subsec_nanos().into();
        let quarantine = QuarantineCallback {
            rejected: Arc::new(message.rejected),
        };
        Box::pin(async move { Ok(pool.call(route, quarantine).await??) })
    }
}

impl Handler<GetStats> for Supervisor {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _message: GetStats, _ctx: &mut Context<Self>) -> Self::Result {
        let stats = |name, pool: &dyn PoolHealth| PoolStats {
            name,
            size: pool.size(),
            restarts: pool.restarts(),
            failing: pool.is_failing(),
        };
        let mut pools: Vec<PoolStats> = self
            .providers
            .iter()
            .map(|(name, pool)| stats(name, pool.as_ref()))
            .collect();
        pools.sort_by_key(|pool| pool.name);
        pools.push(stats("persistence", self.persistence.as_ref()));
        MessageResult(SupervisorStats { pools })
    }
}

/// What the supervisor reports of any pool, whatever its actor type.
trait PoolHealth {
    fn size(&self) -> usize;
    fn restarts(&self) -> u64;
    fn is_failing(&self) -> bool;
}

impl<A: Actor<Context = Context<A>>> PoolHealth for Pool<A> {
    fn size(&self) -> usize {
        Pool::size(self)
    }
    fn restarts(&self) -> u64 {
        Pool::restarts(self)
    }
    fn is_failing(&self) -> bool {
        Pool::is_failing(self)
    }
}

fn start_arbiters(count: NonZeroUsize) -> Arc<Vec<ArbiterHandle>> {
    Arc::new((0..count.get()).map(|_| Arbiter::new().handle()).collect())
}

/// Starts the supervisor on the first of the actors' arbiters and returns its address. Routing a callback
/// then moves it from the HTTP worker to that thread once; supervisor, provider and persistence actors
/// sharing a thread pass messages without waking another thread.
pub fn start(settings: &SupervisorSettings, store: Arc<dyn CallbackStore>) -> Addr<Supervisor> {
    let arbiters = start_arbiters(settings.arbiters);
    let home = arbiters[0].clone();
    let settings = settings.clone();
    Supervisor::start_in_arbiter(&home, move |_| Supervisor::on(&settings, store, arbiters))
}
