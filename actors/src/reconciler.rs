//! The reconciler: asks operators where payments stand when their callbacks are late, missing,
//! ambiguous, or to be confirmed, and records the answers as callbacks of type `status_query`.
//!
//! ```text
//! every interval ─Tick─▶ Reconciler ─feed──▶ reconciliations (MongoDB: transactions with query_due)
//!                                   ─claim─▶ one work item per transaction (atomic, leased)
//!                                   ─ask───▶ StatusApi (the operator's status API)
//!                                   ─record─▶ Supervisor (RouteCallback: journal → MongoDB → fold)
//! ```
//!
//! Answers take the same road as callbacks: journaled, stored, folded by the transaction rules (a query
//! never demotes a final status; a contradiction is a conflict; agreement verifies). Work is claimed in
//! MongoDB (see [`crate::store::reconciliations`]), never in memory, so restarts and several instances
//! share it without asking twice at once. Queries per provider are bounded (`max_in_flight`,
//! `queries_per_minute`); a throttling answer pauses the provider, doubling up to `max_backoff`.
//!
//! A claim's lease is kept while its question runs: renewed (on the server's clock) just before the
//! operator is asked — a claim already lost is never asked about — and every third of a lease until the
//! answer is recorded, so an operator slower than one lease is still asked once. A renewal that matches
//! nothing means another instance took the item over: the loss is logged and counted, and the answer
//! still recorded (it is a fact about the payment), while the item's own writes, filtered on the claim,
//! are refused. The service also refuses to start with a lease shorter than a question can take (token
//! minting plus the status request, see the configuration), so renewals are a second line, not the only
//! one. An instance never claims an item whose question it still has in flight, even if its lease lapsed.
//!
//! The actor is one member of a [`Pool`]: a panic restarts it like any other actor. Each question runs
//! as a task of its own, so one that hangs or panics holds nothing else back; its claim simply expires.
//!
//! Length: the reconciler actor's one loop (claim, ask, take the answer, give up) and its settings; the
//! MongoDB side is in store/reconciliations.rs.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler, Recipient, WrapFuture};
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::callback::{Callback, CallbackType, Status};
pub use crate::pool::Tick;
use crate::pool::{tick_every, OneRound, Pool, RestartPolicy};
use crate::providers::PROVIDERS;
use crate::store::reconciliations::{Known, Note, Reconciliations, WorkItem};
use crate::supervisor::RouteCallback;
use crate::transaction::Source;

/// What the reconciler asks an operator about.
#[derive(Debug, Clone)]
pub struct Inquiry {
    /// Stored provider name.
    pub provider: &'static str,
    pub flow: &'static str,
    /// The transaction's key in that flow (STK `CheckoutRequestID`, MTN reference id, …).
    pub key: String,
    /// The receipt already known for it, if any (M-Pesa Transaction Status can ask by receipt).
    pub receipt: Option<String>,
}

/// An operator's answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Where the payment stands, as a callback (its payload is the raw response). Its key and flow are set
    /// by the reconciler.
    Status(Box<Callback>),
    /// The operator does not know the reference (yet): asked again until the reconciler gives up.
    NotFound(String),
    /// The answer arrives later, as a callback stored under this correlation id (M-Pesa Transaction
    /// Status result).
    Requested { correlation: String },
}

/// A question that got no answer about the payment.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// The operator asks us to slow down (Daraja spike arrest or quota, HTTP 429).
    #[error("throttled: {0}")]
    Throttled(String),
    /// Anything else: network, server error, refused credentials. Asked again later.
    #[error("{0}")]
    Failed(String),
}

/// An operator's status API: one implementation serves every configured operator.
pub trait StatusApi: Send + Sync + 'static {
    /// Whether this operator and flow can be asked (its API is configured and has a status query for it).
    fn asks(&self, provider: &str, flow: &str) -> bool;
    /// Asks once. Runs on the reconciler's thread (HTTP clients need not be `Send`).
    fn query(&self, inquiry: Inquiry) -> LocalBoxFuture<'static, Result<Answer, QueryError>>;
}

/// How the reconciler works (`[reconciler]` in the configuration).
#[derive(Debug, Clone)]
pub struct ReconcilerSettings {
    /// How often it looks for work.
    pub interval: Duration,
    /// How long a transaction may stay pending (or a callback unconfirmed) before it is asked about.
    pub query_after: Duration,
    /// After this long without a final answer, a transaction is `unresolved`.
    pub give_up_after: Duration,
    /// Questions in progress at once, per provider.
    pub max_in_flight: usize,
    /// Questions started per minute, per provider.
    pub queries_per_minute: NonZeroU32,
    /// How long a claimed item is reserved for the instance that claimed it; renewed every third of it
    /// while its question runs.
    pub lease: Duration,
    /// Wait before asking again about a pending transaction: doubling from `backoff_initial` up to
    /// `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How long an asynchronous answer (M-Pesa Transaction Status) is waited for before asking again.
    pub result_wait: Duration,
    /// Providers (stored names) whose callbacks' final statuses are confirmed by query.
    pub confirm_by_query: Vec<&'static str>,
    /// When set, personal data in answers is replaced by salted digests, as in callbacks.
    pub pseudonymization_salt: Option<Vec<u8>>,
}

impl Default for ReconcilerSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            query_after: Duration::from_secs(180),
            give_up_after: Duration::from_secs(86_400),
            max_in_flight: 4,
            queries_per_minute: NonZeroU32::new(60).expect("non-zero"),
            lease: Duration::from_secs(60),
            backoff_initial: Duration::from_secs(30),
            backoff_max: Duration::from_secs(1800),
            result_wait: Duration::from_secs(120),
            confirm_by_query: Vec::new(),
            pseudonymization_salt: None,
        }
    }
}

/// Transactions fed into work items per round.
const FEED_LIMIT: i64 = 1000;
/// Longest pause of a throttled provider.
const MAX_THROTTLE_PAUSE: Duration = Duration::from_secs(300);

/// Per provider: questions in flight, the rate limit, and a pause after throttling.
struct Lane {
    /// The `_id`s of the items whose questions are in flight: never claimed again until they end.
    asking: Mutex<HashSet<String>>,
    limiter: DefaultDirectRateLimiter,
    paused: Mutex<Pause>,
}

#[derive(Default)]
struct Pause {
    until: Option<tokio::time::Instant>,
    length: Duration,
}

/// What the actor and its question tasks share; outlives a restarted actor.
struct Shared {
    settings: ReconcilerSettings,
    store: Reconciliations,
    api: Arc<dyn StatusApi>,
    recorder: Recipient<RouteCallback>,
    lanes: HashMap<&'static str, Lane>,
    rounds: Arc<OneRound>,
    /// The reconciler's indexes exist, and documents of earlier versions have their identity as `_id`.
    indexes_ready: AtomicBool,
}

/// The reconciler actor. Start it with [`start`].
pub struct Reconciler {
    shared: Arc<Shared>,
}

impl Actor for Reconciler {
    type Context = Context<Self>;
}

impl Handler<Tick> for Reconciler {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        let shared = Arc::clone(&self.shared);
        let Some(running) = shared.rounds.begin() else {
            return;
        };
        ctx.spawn(
            async move {
                let _running = running;
                round(&shared).await;
            }
            .into_actor(self),
        );
    }
}

/// Starts the reconciler (a pool of one, restarted on failure) and its driver, which ticks it every
/// `interval`. Must run inside an actix `System`.
pub fn start(
    settings: ReconcilerSettings,
    store: Reconciliations,
    api: Arc<dyn StatusApi>,
    recorder: Recipient<RouteCallback>,
) -> Arc<Pool<Reconciler>> {
    let lanes = PROVIDERS
        .iter()
        .map(|provider| {
            let lane = Lane {
                asking: Mutex::default(),
                limiter: RateLimiter::direct(Quota::per_minute(settings.queries_per_minute)),
                paused: Mutex::new(Pause::default()),
            };
            (provider.name(), lane)
        })
        .collect();
    let interval = settings.interval;
    let shared = Arc::new(Shared {
        settings,
        store,
        api,
        recorder,
        lanes,
        rounds: Arc::default(),
        indexes_ready: AtomicBool::new(false),
    });
    let pool = Arc::new(Pool::new(
        "reconciler",
        std::num::NonZeroUsize::MIN,
        std::num::NonZeroUsize::MIN,
        Duration::from_secs(5),
        RestartPolicy::default(),
        move |_| {
            Reconciler {
                shared: Arc::clone(&shared),
            }
            .start()
        },
    ));
    tick_every(Arc::clone(&pool), interval);
    pool
}

/// One round: feed new work, then claim what each provider may take on now.
async fn round(shared: &Arc<Shared>) {
    let settings = &shared.settings;
    if !shared.indexes_ready.load(Ordering::Acquire) {
        if let Err(error) = shared.store.ensure_indexes().await {
            tracing::warn!(%error, "reconciler waits for its indexes");
            return;
        }
        shared.indexes_ready.store(true, Ordering::Release);
    }
    let now = Utc::now();
    match shared
        .store
        .feed(
            now - settings.query_after,
            now,
            settings.give_up_after,
            FEED_LIMIT,
        )
        .await
    {
        Ok(0) => {}
        Ok(fed) => tracing::info!(fed, "transactions awaiting an operator's answer"),
        Err(error) => tracing::warn!(%error, "reconciler could not look for pending transactions"),
    }
    for provider in PROVIDERS.iter().map(|provider| provider.name()) {
        let lane = &shared.lanes[provider];
        loop {
            let busy: Vec<String> = lane.asking.lock().iter().cloned().collect();
            if lane.is_paused() || busy.len() >= settings.max_in_flight {
                break;
            }
            if lane.limiter.check().is_err() {
                break;
            }
            match shared.store.claim(provider, settings.lease, &busy).await {
                Ok(Some(item)) => {
                    lane.asking.lock().insert(item.id.clone());
                    let shared = Arc::clone(shared);
                    actix::spawn(async move {
                        let _in_flight =
                            InFlight(Arc::clone(&shared), item.provider, item.id.clone());
                        work(&shared, item).await;
                    });
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, provider, "reconciler could not claim work");
                    break;
                }
            }
        }
    }
}

/// Counts a question (provider, item `_id`) in flight until dropped (also when its task panics).
struct InFlight(Arc<Shared>, &'static str, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lanes[self.1].asking.lock().remove(&self.2);
    }
}

/// How often a held lease is renewed: three renewals per lease, so two may fail or run late before it
/// lapses.
fn renewal_period(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(10))
}

/// Runs `question` while renewing `item`'s lease; returns its output. A lost claim is logged and
/// counted, and `question` still runs to its end: it is under way, and its answer is worth recording.
async fn renewing<T>(shared: &Shared, item: &WorkItem, question: impl Future<Output = T>) -> T {
    tokio::select! {
        output = question => output,
        never = heartbeat(shared, item) => match never {},
    }
}

/// Renews `item`'s lease every [`renewal_period`], until dropped or the claim is lost.
async fn heartbeat(shared: &Shared, item: &WorkItem) -> Infallible {
    let lease = shared.settings.lease;
    loop {
        tokio::time::sleep(renewal_period(lease)).await;
        match shared.store.renew(item, lease).await {
            Ok(true) => {}
            Ok(false) => {
                claim_lost(item, "while asking");
                return std::future::pending().await;
            }
            // Tried again next period: the lease has two more periods to run.
            Err(error) => {
                tracing::warn!(provider = item.provider, key = %item.key, %error, "lease not renewed");
            }
        }
    }
}

fn claim_lost(item: &WorkItem, when: &'static str) {
    metrics::counter!("mmo_reconciler_claims_lost_total", "provider" => item.provider).increment(1);
    tracing::warn!(
        provider = item.provider,
        key = %item.key,
        when,
        "reconciliation claim lost: another instance took the item over"
    );
}

impl Lane {
    fn is_paused(&self) -> bool {
        let pause = self.paused.lock();
        pause
            .until
            .is_some_and(|until| tokio::time::Instant::now() < until)
    }

    /// Pauses the provider after a throttling answer: doubling, up to [`MAX_THROTTLE_PAUSE`]; returns
    /// the pause.
    fn throttled(&self, first: Duration) -> Duration {
        let mut pause = self.paused.lock();
        pause.length = (pause.length * 2).clamp(first, MAX_THROTTLE_PAUSE);
        pause.until = Some(tokio::time::Instant::now() + pause.length);
        pause.length
    }

    fn answered(&self) {
        let mut pause = self.paused.lock();
        pause.length = Duration::ZERO;
    }
}

/// Works one claimed item to its next step; failures to write leave the claim to expire.
async fn work(shared: &Arc<Shared>, item: WorkItem) {
    if let Err(error) = step(shared, &item).await {
        tracing::warn!(
            provider = item.provider,
            key = %item.key,
            %error,
            "reconciliation step failed; retried when its lease ends"
        );
    }
}

async fn step(shared: &Arc<Shared>, item: &WorkItem) -> Result<(), crate::store::StoreError> {
    let settings = &shared.settings;
    let store = &shared.store;
    let provider = item.provider;
    let now = Utc::now();
    let known = store.transaction(item).await?;
    let confirms = settings.confirm_by_query.contains(&provider);

    if let Some(settled) = known.as_ref().and_then(|known| settled(known, confirms)) {
        let note = Note {
            outcome: "callback",
            status: Some(settled.0),
            detail: None,
        };
        if store.resolve(item, settled, &note, false, now).await? {
            metrics::counter!("mmo_reconciler_resolved_total", "provider" => provider, "by" => settled.1)
                .increment(1);
        }
        return Ok(());
    }

    if !shared.api.asks(provider, item.flow) {
        let note = Note {
            outcome: "no_status_api",
            status: None,
            detail: Some(format!(
                "no status API is configured for {provider} {}",
                item.flow
            )),
        };
        return again(shared, item, &note, true, now).await;
    }

    let answer = match &item.awaiting {
        Some(correlation) => match store.status_result(provider, correlation).await? {
            Some(result) => Ok(Answer::Status(Box::new(result))),
            None if item
                .awaiting_since
                .is_some_and(|since| now < since + settings.result_wait) =>
            {
                // Not yet: look again a little later, without counting it as a question.
                let note = Note {
                    outcome: "requested",
                    status: None,
                    detail: Some(correlation.clone()),
                };
                let next = now + settings.result_wait / 4;
                store.reschedule(item, next, &note, false, now).await?;
                return Ok(());
            }
            None => {
                // The asynchronous answer never came: ask again.
                let note = Note {
                    outcome: "no_result",
                    status: None,
                    detail: Some(correlation.clone()),
                };
                store.stop_awaiting(item, now, &note, now).await?;
                return Ok(());
            }
        },
        None => {
            // Renewed first: the operator is asked only by the claim's holder, with a whole lease ahead.
            if !store.renew(item, settings.lease).await? {
                claim_lost(item, "before asking");
                return Ok(());
            }
            metrics::counter!("mmo_reconciler_queries_total", "provider" => provider).increment(1);
            let question = shared.api.query(Inquiry {
                provider,
                flow: item.flow,
                key: item.key.clone(),
                receipt: known
                    .as_ref()
                    .and_then(|known| known.snapshot.receipt.clone()),
            });
            renewing(shared, item, question).await
        }
    };
    let lane = &shared.lanes[provider];
    match answer {
        Ok(Answer::Status(answer)) => {
            lane.answered();
            let status = answer.status;
            let recorded = renewing(shared, item, record(shared, item, *answer)).await;
            if !recorded {
                let note = Note {
                    outcome: "error",
                    status: Some(status.as_str()),
                    detail: Some("the answer could not be stored yet".into()),
                };
                let next = now + settings.backoff_initial;
                store.reschedule(item, next, &note, false, now).await?;
                return Ok(());
            }
            if status.is_terminal() {
                count_answer(provider, "final");
                let had_final = known
                    .as_ref()
                    .is_some_and(|known| known.snapshot.status.is_terminal());
                let by = match known.as_ref().map(|known| known.snapshot.status) {
                    Some(current) if current.is_terminal() && current == status => "both",
                    Some(current) if current.is_terminal() => "conflict",
                    _ => Source::StatusQuery.as_str(),
                };
                let note = Note {
                    outcome: "final",
                    status: Some(status.as_str()),
                    detail: None,
                };
                let asked = item.awaiting.is_none();
                if store
                    .resolve(item, (status.as_str(), by), &note, asked, now)
                    .await?
                {
                    if !had_final {
                        metrics::counter!("mmo_reconciler_recovered_total", "provider" => provider)
                            .increment(1);
                        tracing::info!(provider, key = %item.key, status = status.as_str(), "final status recovered by query");
                    }
                    metrics::counter!("mmo_reconciler_resolved_total", "provider" => provider, "by" => by)
                        .increment(1);
                }
            } else {
                count_answer(provider, "pending");
                let note = Note {
                    outcome: "pending",
                    status: Some(status.as_str()),
                    detail: None,
                };
                again(shared, item, &note, true, now).await?;
            }
        }
        Ok(Answer::NotFound(detail)) => {
            lane.answered();
            count_answer(provider, "not_found");
            let note = Note {
                outcome: "not_found",
                status: None,
                detail: Some(detail),
            };
            again(shared, item, &note, true, now).await?;
        }
        Ok(Answer::Requested { correlation }) => {
            lane.answered();
            count_answer(provider, "requested");
            store
                .await_answer(item, &correlation, now + settings.result_wait / 4, now)
                .await?;
        }
        Err(QueryError::Throttled(detail)) => {
            count_answer(provider, "throttled");
            let pause = lane.throttled(settings.interval.max(Duration::from_secs(1)));
            tracing::warn!(provider, pause_secs = pause.as_secs(), %detail, "operator throttles status queries; pausing");
            let note = Note {
                outcome: "throttled",
                status: None,
                detail: Some(detail),
            };
            store
                .reschedule(item, now + pause, &note, false, now)
                .await?;
        }
        Err(QueryError::Failed(detail)) => {
            count_answer(provider, "error");
            tracing::warn!(provider, key = %item.key, %detail, "status query failed");
            let note = Note {
                outcome: "error",
                status: None,
                detail: Some(detail),
            };
            again(shared, item, &note, true, now).await?;
        }
    }
    Ok(())
}

fn count_answer(provider: &'static str, outcome: &'static str) {
    metrics::counter!("mmo_reconciler_answers_total", "provider" => provider, "outcome" => outcome)
        .increment(1);
}

/// A transaction that needs no question: its final status and who settled it (`callback`,
/// `status_query` or `both`).
fn settled(known: &Known, confirm_by_query: bool) -> Option<(&'static str, &'static str)> {
    let snapshot = &known.snapshot;
    if snapshot.needs_query(confirm_by_query) {
        return None;
    }
    let by = if snapshot.verified {
        "both"
    } else {
        snapshot.settled_by.unwrap_or(Source::Callback).as_str()
    };
    Some((snapshot.status.as_str(), by))
}

/// Asks again after a backoff, or gives up when that would pass `give_up_at`.
async fn again(
    shared: &Arc<Shared>,
    item: &WorkItem,
    note: &Note,
    counted: bool,
    now: DateTime<Utc>,
) -> Result<(), crate::store::StoreError> {
    let settings = &shared.settings;
    let next = now + backoff(settings, item.attempts);
    if next > item.give_up_at {
        let confirms = settings.confirm_by_query.contains(&item.provider);
        if shared.store.give_up(item, note, confirms, now).await? {
            metrics::counter!("mmo_reconciler_unresolved_total", "provider" => item.provider)
                .increment(1);
            tracing::warn!(
                provider = item.provider,
                key = %item.key,
                attempts = item.attempts,
                last = note.outcome,
                "no final status before giving up: transaction flagged unresolved"
            );
        }
        return Ok(());
    }
    shared
        .store
        .reschedule(item, next, note, counted, now)
        .await
        .map(|_| ())
}

/// `backoff_initial` doubled per attempt, up to `backoff_max`, with up to 10 % jitter so that items
/// opened together do not stay in lockstep.
fn backoff(settings: &ReconcilerSettings, attempts: u32) -> chrono::Duration {
    let base = crate::backoff::doubled(settings.backoff_initial, attempts, settings.backoff_max);
    let jitter_per_mille = u64::from(Utc::now().timestamp_subsec_nanos() % 100);
    let jittered = base + base.mul_f64(jitter_per_mille as f64 / 1000.0);
    chrono::Duration::from_std(jittered).unwrap_or(chrono::Duration::MAX)
}

/// Records an answer as a `status_query` callback of the item's transaction, through the supervisor
/// (journaled before this returns true).
async fn record(shared: &Arc<Shared>, item: &WorkItem, mut answer: Callback) -> bool {
    answer.provider = item.provider;
    answer.callback_type = CallbackType::StatusQuery;
    answer.provider_transaction_id = item.key.clone();
    answer.queried_flow = Some(item.flow);
    if let Some(salt) = &shared.settings.pseudonymization_salt {
        crate::privacy::pseudonymize(&mut answer, salt);
    }
    if answer.status == Status::Unknown {
        tracing::warn!(provider = item.provider, key = %item.key, "status query answered with an unknown status");
    }
    match shared
        .recorder
        .send(RouteCallback::new(answer, Utc::now()))
        .await
    {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(provider = item.provider, key = %item.key, %error, "status answer not stored");
            false
        }
        Err(error) => {
            tracing::warn!(provider = item.provider, key = %item.key, %error, "status answer not stored");
            false
        }
    }
}
