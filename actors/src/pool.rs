//! A fixed-size pool of actors with key routing, bounded mailboxes and restart on failure.
//!
//! This is the supervisor's restart mechanism. A member is routed by `route % size`, so every repeat of a
//! key reaches the same member. When a member has died — a panic inside a handler ends an actix actor and
//! closes its mailbox, without stopping its arbiter — the pool starts a fresh one in its place, logs and
//! counts the restart, and re-sends the message that was in flight once. A second failure is an error for
//! the caller (answered 503), never a silent success.
//!
//! Each member admits at most `mailbox_capacity` messages at a time (queued or in progress); beyond that
//! `call` fails at once with [`PoolError::Busy`] instead of queueing without bound.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    #[error("actor failed twice on the same message")]
    Failed,
}

type Starter<A> = Box<dyn Fn(usize) -> Addr<A> + Send + Sync>;

pub struct Pool<A: Actor<Context = Context<A>>> {
    name: &'static str,
    members: Vec<Member<A>>,
    start: Starter<A>,
    call_timeout: Duration,
    restarts: AtomicU64,
}

struct Member<A: Actor> {
    addr: Mutex<Addr<A>>,
    admissions: Arc<Semaphore>,
}

impl<A: Actor<Context = Context<A>>> Pool<A> {
    /// Starts `size` members with `start(index)`, which picks the member's arbiter and sets its mailbox.
    pub fn new(
        name: &'static str,
        size: NonZeroUsize,
        mailbox_capacity: NonZeroUsize,
        call_timeout: Duration,
        start: impl Fn(usize) -> Addr<A> + Send + Sync + 'static,
    ) -> Self {
        let members = (0..size.get())
            .map(|index| Member {
                addr: Mutex::new(start(index)),
                admissions: Arc::new(Semaphore::new(mailbox_capacity.get())),
            })
            .collect();
        Self {
            name,
            members,
            start: Box::new(start),
            call_timeout,
            restarts: AtomicU64::new(0),
        }
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// How many members were replaced since the pool started.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The member index that `route` reaches.
    pub fn member_for(&self, route: u64) -> usize {
        // The modulo is below the pool size, which is a usize.
        (route % self.members.len() as u64) as usize
    }

    /// The current address of member `index` (for tests and diagnostics).
    pub fn addr(&self, index: usize) -> Addr<A> {
        self.members[index].addr.lock().expect("pool lock").clone()
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
        let _admission = member
            .admissions
            .try_acquire()
            .map_err(|_| PoolError::Busy)?;
        for _attempt in 0..2 {
            let addr = self.live_addr(index);
            match tokio::time::timeout(self.call_timeout, addr.send(message.clone())).await {
                Ok(Ok(answer)) => return Ok(answer),
                // The member died with the message in flight: replace it and try once more.
                Ok(Err(MailboxError::Closed)) => self.replace(index, &addr),
                Ok(Err(MailboxError::Timeout)) | Err(_) => return Err(PoolError::Timeout),
            }
        }
        Err(PoolError::Failed)
    }

    fn live_addr(&self, index: usize) -> Addr<A> {
        let addr = self.addr(index);
        if addr.connected() {
            return addr;
        }
        self.replace(index, &addr);
        self.addr(index)
    }

    /// Starts a fresh member in place of `dead`, unless a concurrent caller already did.
    fn replace(&self, index: usize, dead: &Addr<A>) {
        let mut current = self.members[index].addr.lock().expect("pool lock");
        if *current == *dead {
            *current = (self.start)(index);
            let restarts = self.restarts.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                pool = self.name,
                member = index,
                restarts,
                "actor failed; started a fresh one"
            );
        }
    }
}
