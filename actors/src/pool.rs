//! A fixed-size pool of actors with key routing, bounded mailboxes and restart on failure.
//!
//! This is the supervisor's restart mechanism. A member is routed by `route % size`, so every repeat of a
//! key reaches the same member. When a member has died — a panic inside a handler ends an actix actor and
//! closes its mailbox, without stopping its arbiter — the pool starts a fresh one in its place, logs and
//! counts the restart, and re-sends the message that was in flight once. A second failure is an error for
//! the caller (answered 503), never a silent success.
//!
//! Restarts are free up to [`RestartPolicy::limit`] within [`RestartPolicy::window`]. Beyond that the pool
//! is *failing*: restarts are spaced by a doubling backoff (up to [`RestartPolicy::max_backoff`]), calls
//! that find their member dead meanwhile fail at once, and readiness reports the pool until the window has
//! passed without new failures — a child that keeps failing is reported, not spun on.
//!
//! Each member admits at most `mailbox_capacity` messages at a time (queued or in progress); beyond that
//! `call` fails at once with [`PoolError::Busy`] instead of queueing without bound.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

// Not poisoned by a panic: whatever panics while a lock is held must not turn every later call and
// readiness check into a panic too. (A member's start, the likeliest to panic, runs outside the locks.)
use parking_lot::Mutex;

// Tokio's clock, so that tests can move time forward instead of sleeping through restart windows.
use tokio::time::Instant;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Context, Handler, MailboxError, Message};
use tokio::sync::Semaphore;

/// Why a pool could not deliver a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("mailbox full")]
    Busy,
    #[error("no answer within the call timeout")]
    Timeout,
    #[error("actor failed twice on the same message, or is restarting after repeated failures")]
    Failed,
}

/// How eagerly failed members are restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed without delay within `window`.
    pub limit: usize,
    pub window: Duration,
    /// Longest wait between restarts once the limit is exceeded.
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            limit: 10,
            window: Duration::from_secs(60),
            max_backoff: Duration::from_secs(30),
        }
    }
}

type Starter<A> = Box<dyn Fn(usize) -> Addr<A> + Send + Sync>;

pub struct Pool<A: Actor<Context = Context<A>>> {
    name: &'static str,
    members: Vec<Member<A>>,
    start: Starter<A>,
    call_timeout: Duration,
    policy: RestartPolicy,
    restarts: AtomicU64,
    history: Mutex<RestartHistory>,
}

struct Member<A: Actor> {
    addr: Mutex<Addr<A>>,
    admissions: Arc<Semaphore>,
    /// A replacement is under way (see [`Pool::replace`]).
    restarting: std::sync::atomic::AtomicBool,
}

/// Clears a member's `restarting` flag when dropped, a panic included.
struct Restarting<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Restarting<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[derive(Default)]
struct RestartHistory {
    /// Restarts within the current window, oldest first.
    recent: VecDeque<Instant>,
    /// While failing, no restart before this instant.
    not_before: Option<Instant>,
}

impl RestartHistory {
    fn prune(&mut self, window: Duration) {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) > window)
        {
            self.recent.pop_front();
        }
    }
}

impl<A: Actor<Context = Context<A>>> Pool<A> {
    /// Starts `size` members with `start(index)`, which picks the member's arbiter and sets its mailbox.
    pub fn new(
        name: &'static str,
        size: NonZeroUsize,
        mailbox_capacity: NonZeroUsize,
        call_timeout: Duration,
        policy: RestartPolicy,
        start: impl Fn(usize) -> Addr<A> + Send + Sync + 'static,
    ) -> Self {
        let members = (0..size.get())
            .map(|index| Member {
                addr: Mutex::new(start(index)),
                admissions: Arc::new(Semaphore::new(mailbox_capacity.get())),
                restarting: std::sync::atomic::AtomicBool::new(false),
            })
            .collect();
        Self {
            name,
            members,
            start: Box::new(start),
            call_timeout,
            policy,
            restarts: AtomicU64::new(0),
            history: Mutex::new(RestartHistory::default()),
        }
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// How many members were replaced since the pool started.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Whether members failed more often than the policy allows within its window.
    pub fn is_failing(&self) -> bool {
        let mut history = self.history.lock();
        history.prune(self.policy.window);
        history.recent.len() > self.policy.limit
    }

    /// The member index that `route` reaches.
    pub fn member_for(&self, route: u64) -> usize {
        // The modulo is below the pool size, which is a usize.
        (route % self.members.len() as u64) as usize
    }

    /// The current address of member `index` (for tests and diagnostics).
    pub fn addr(&self, index: usize) -> Addr<A> {
        self.members[index].addr.lock().clone()
    }

    /// Sends `message` to the member for `route` and waits for its answer, restarting a dead member and
    /// retrying once.
    pub async fn call<M>(&self, route: u64, message: M) -> Result<M::Result, PoolError>
    where
        A: Handler<M>,
        Context<A>: ToEnvelope<A, M>,
        M: Message + Clone + Send + 'static,
        M::Result: Send,
    {
        let index = self.member_for(route);
        let member = &self.members[index];
        let Ok(_admission) = member.admissions.try_acquire() else {
            metrics::counter!("mmo_mailbox_rejections_total", "pool" => self.name).increment(1);
            return Err(PoolError::Busy);
        };
        for _attempt in 0..2 {
            let addr = self.live_addr(index).ok_or(PoolError::Failed)?;
            match tokio::time::timeout(self.call_timeout, addr.send(message.clone())).await {
                Ok(Ok(answer)) => return Ok(answer),
                // The member died with the message in flight: replace it and try once more.
                Ok(Err(MailboxError::Closed)) => self.replace(index, &addr),
                Ok(Err(MailboxError::Timeout)) | Err(_) => return Err(PoolError::Timeout),
            }
        }
        Err(PoolError::Failed)
    }

    /// A live member `index`, restarting a dead one unless the backoff forbids it yet.
    fn live_addr(&self, index: usize) -> Option<Addr<A>> {
        let addr = self.addr(index);
        if addr.connected() {
            return Some(addr);
        }
        self.replace(index, &addr);
        Some(self.addr(index)).filter(Addr::connected)
    }

    /// Starts a fresh member in place of `dead`, unless a concurrent caller already did or the pool is
    /// backing off after too many failures.
    fn replace(&self, index: usize, dead: &Addr<A>) {
        let member = &self.members[index];
        // One replacer at a time per member; the guard lets go even if the start below panics.
        if member
            .restarting
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let _restarting = Restarting(&member.restarting);
        // Decided under the locks, started outside them: a start that panics or blocks holds no lock.
        let excess = {
            if *member.addr.lock() != *dead {
                return;
            }
            let mut history = self.history.lock();
            let now = Instant::now();
            if history
                .not_before
                .is_some_and(|not_before| now < not_before)
            {
                return;
            }
            history.prune(self.policy.window);
            history.recent.push_back(now);
            let excess = history.recent.len().saturating_sub(self.policy.limit);
            history.not_before = (excess > 0).then(|| {
                let times = u32::try_from(excess).unwrap_or(u32::MAX);
                now + crate::backoff::doubled(
                    Duration::from_millis(100),
                    times,
                    self.policy.max_backoff,
                )
            });
            excess
        };
        let fresh = (self.start)(index);
        *member.addr.lock() = fresh;
        let restarts = self.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("mmo_actor_restarts_total", "pool" => self.name).increment(1);
        if excess > 0 {
            tracing::error!(
                pool = self.name,
                member = index,
                restarts,
                "actor keeps failing; restarting with backoff"
            );
        } else {
            tracing::warn!(
                pool = self.name,
                member = index,
                restarts,
                "actor failed; started a fresh one"
            );
        }
    }
}

/// "Look for work now": what a periodic actor (the reconciler, the delivery dispatcher) is sent by its
/// driver ([`tick_every`]).
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct Tick;

/// Sends [`Tick`] to the single member of `pool` every `every`, for as long as the system runs; a tick
/// the actor did not take (dead and restarting, or busy) is logged and the next one comes all the same.
pub fn tick_every<A>(pool: Arc<Pool<A>>, every: Duration)
where
    A: Actor<Context = Context<A>> + Handler<Tick>,
    Context<A>: ToEnvelope<A, Tick>,
{
    actix::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = pool.call(0, Tick).await {
                tracing::warn!(%error, pool = pool.name, "periodic actor did not take its tick");
            }
        }
    });
}

/// At most one round of a periodic actor at a time. It lives in the state the actor's incarnations share,
/// so a restarted actor does not start a second round beside one its predecessor left running.
#[derive(Debug, Default)]
pub struct OneRound(std::sync::atomic::AtomicBool);

impl OneRound {
    /// Starts a round unless one is running; the round lasts as long as the guard.
    pub fn begin(self: &Arc<Self>) -> Option<RoundGuard> {
        (!self.0.swap(true, Ordering::AcqRel)).then(|| RoundGuard(Arc::clone(self)))
    }
}

/// Ends its round however the round ends (finished, or dropped with a failed actor).
pub struct RoundGuard(Arc<OneRound>);

impl Drop for RoundGuard {
    fn drop(&mut self) {
        self.0 .0.store(false, Ordering::Release);
    }
}
