//! The provider actor: one pool per operator, each member with its own in-memory idempotency cache.
//!
//! Message: [`HandleCallback`]. A callback whose key this member stored recently, with the same body
//! fingerprint, is a known duplicate: only its delivery is counted. Anything else is handed to the
//! persistence pool, and the key enters the cache only after the store (in service: the journal) confirmed
//! the write — so a failed write is never remembered as seen. The cache is the only state; losing it on
//! restart costs a store round trip, nothing more.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorFutureExt, Context, Handler, Message, ResponseActFuture, WrapFuture};

use crate::cache::IdempotencyCache;
use crate::callback::{Callback, Delivery};
use crate::persistence::{CountDelivery, PersistCallback, PersistenceActor};
use crate::pipeline_error::PipelineError;
use crate::pool::Pool;
use crate::store::RecordOutcome;

pub struct ProviderActor {
    cache: IdempotencyCache,
    persistence: Arc<Pool<PersistenceActor>>,
}

impl ProviderActor {
    pub fn new(
        cache_capacity: NonZeroUsize,
        cache_ttl: Duration,
        persistence: Arc<Pool<PersistenceActor>>,
    ) -> Self {
        Self {
            cache: IdempotencyCache::new(cache_capacity, cache_ttl),
            persistence,
        }
    }
}

impl Actor for ProviderActor {
    type Context = Context<Self>;
}

/// Make sure a parsed callback is durably stored (or known to be), and say whether it was new.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<RecordOutcome, PipelineError>")]
pub struct HandleCallback {
    pub callback: Arc<Callback>,
    pub delivery: Delivery,
}

impl Handler<HandleCallback> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<RecordOutcome, PipelineError>>;

    fn handle(&mut self, message: HandleCallback, _ctx: &mut Context<Self>) -> Self::Result {
        let key = message.callback.key();
        let fingerprint = message.callback.fingerprint();
        let route = key.route();
        let persistence = Arc::clone(&self.persistence);

        if self.cache.contains(&key, fingerprint) {
            // The callback itself is already durable; the delivery count is bookkeeping, so failing to
            // write it must not refuse the acknowledgement.
            let count = CountDelivery {
                key,
                delivery: message.delivery,
            };
            return Box::pin(
                async move {
                    let counted = persistence.call(route, count.clone()).await;
                    if let Err(error) = counted
                        .map_err(PipelineError::from)
                        .and_then(|r| r.map_err(PipelineError::from))
                    {
                        tracing::warn!(
                            key = %count.key.provider_transaction_id,
                            %error,
                            "duplicate acknowledged but its delivery was not counted"
                        );
                    }
                    Ok(RecordOutcome::Duplicate)
                }
                .into_actor(self),
            );
        }

        let persist = PersistCallback {
            callback: message.callback,
            delivery: message.delivery,
        };
        Box::pin(
            async move { persistence.call(route, persist).await }
                .into_actor(self)
                .map(move |answer, actor, _ctx| {
                    let outcome = answer??;
                    // Only a body known to match the stored one may answer later repeats from memory.
                    if outcome != RecordOutcome::Disagreeing {
                        actor.cache.insert(key, fingerprint);
                    }
                    Ok(outcome)
                }),
        )
    }
}
