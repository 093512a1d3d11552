//! Delivery: every event the drain writes to the `events` outbox is sent to the merchant's endpoints,
//! signed as the Standard Webhooks specification says, retried on a schedule until it is received or
//! dead-lettered, in version order per transaction and endpoint.
//!
//! ```text
//! every poll_interval ─Tick─▶ Dispatcher (pool of one) ─lead──▶ leases (one sending instance at a time)
//!                                                       ─due───▶ events (pending, due_at ≤ now)
//!                                                       ─gate──▶ earlier versions still pending?
//!                              one task per event ──Attempt──▶ Sender pool (delivery.pool_size)
//!                                                               ──▶ Transport (HTTP POST, signed)
//!                              ──record──▶ events (targets, attempts, due_at / expire_at)
//! ```
//!
//! One instance sends at a time: it holds a lease in MongoDB and renews it every round; a killed
//! instance's events are picked up by another (or by itself after restart) once its lease has run out,
//! and a request is only started while the lease has at least the request timeout left, so two instances
//! never send one event to one endpoint at the same time. The state of every event lives in MongoDB,
//! never only in memory: what the dispatcher keeps in memory (events in flight, per-endpoint limits and
//! pauses) only spares it work.
//!
//! Isolation: an endpoint has at most `max_in_flight` requests at once and, optionally, a rate limit; an
//! attempt that finds its endpoint at its limit is not made now (no attempt is counted) and the event
//! comes back a moment later, so a slow or dead endpoint never holds another's deliveries. Nothing here
//! touches the callbacks' path: the drain only inserts events.

pub mod outbox;
pub mod sealing;
pub mod signature;

use std::collections::{HashMap, HashSet};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler, Message, ResponseFuture, WrapFuture};
use chrono::{DateTime, Utc};
use futures_util::future::{join_all, LocalBoxFuture};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use mongodb::bson::{doc, oid::ObjectId, Document};
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use outbox::{EndpointRecord, Outbox, Outcome, PendingEvent, Target};

pub use crate::pool::Tick;
use crate::pool::{tick_every, OneRound, Pool, RestartPolicy};
use signature::SigningKeys;

/// The Standard Webhooks specification's example schedule: the wait before each attempt (the first
/// included), so ten values mean ten attempts over about three days.
pub const DEFAULT_RETRY_SCHEDULE_SECS: [u64; 10] =
    [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400];
/// Bytes of an endpoint's answer kept with an attempt.
const RESPONSE_KEPT: usize = 1024;
/// How long an event behind an earlier version (or a lease about to end) waits before it is looked at
/// again.
const RETRY_SOON: Duration = Duration::from_millis(100);
/// How long a round waits for an endpoint's free slot before it leaves that endpoint for the next round.
const ADMISSION_WAIT: Duration = Duration::from_millis(50);
/// How long a new event waits for a free slot at its endpoint before it is left to the retry path.
const FIRST_ADMISSION_WAIT: Duration = Duration::from_millis(500);
/// How long a batch's first attempts are waited for before its events are written to `events` anyway:
/// those still in flight as pending (their outcome is recorded when it comes). Bounds what one slow
/// endpoint holds up.
const FIRST_ATTEMPTS_WAIT: Duration = Duration::from_secs(2);
/// Batches of new events being sent at once, at most.
const BATCHES_IN_FLIGHT: usize = 4;
/// How long an event whose outcome was just written is not looked at again (see the recorder).
const JUST_RECORDED: Duration = Duration::from_millis(500);
/// How often the outcomes of finished attempts are written (in one statement).
const RECORD_EVERY: Duration = Duration::from_millis(25);

/// How delivery works (`[delivery]` in the configuration).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Sender actors.
    pub pool_size: NonZeroUsize,
    /// How often the dispatcher looks for due events.
    pub poll_interval: Duration,
    /// One request's time limit.
    pub timeout: Duration,
    /// The wait before each attempt, the first included.
    pub retry_schedule: Vec<Duration>,
    /// How long the sending instance's lease lasts; renewed every round.
    pub lease: Duration,
    /// How long delivered events are kept.
    pub retention: Duration,
    /// An endpoint that failed every attempt for this long is disabled.
    pub disable_after: Duration,
    /// Requests at once per endpoint, unless the endpoint says otherwise.
    pub max_in_flight: usize,
    /// Due events read per round.
    pub batch: i64,
    /// Opens endpoint secrets sealed at rest (`delivery.secrets_key`).
    pub secrets_key: Option<sealing::SecretsKey>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            pool_size: NonZeroUsize::new(4).expect("non-zero"),
            poll_interval: Duration::from_millis(100),
            timeout: Duration::from_secs(15),
            retry_schedule: DEFAULT_RETRY_SCHEDULE_SECS
                .iter()
                .map(|secs| Duration::from_secs(*secs))
                .collect(),
            lease: Duration::from_secs(30),
            retention: Duration::from_secs(30 * 86_400),
            disable_after: Duration::from_secs(5 * 86_400),
            max_in_flight: 16,
            batch: 256,
            secrets_key: None,
        }
    }
}

/// One HTTP request to an endpoint.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Arc<str>,
    pub timeout: Duration,
}

/// What an endpoint answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// `Retry-After`, in seconds, when it said one.
    pub retry_after: Option<Duration>,
    /// The first bytes of the answer's body.
    pub body: String,
}

/// How events reach endpoints: the service's HTTP client, or a fake in tests.
pub trait Transport: Send + Sync + 'static {
    /// Sends one request. Runs on a sender actor's thread (HTTP clients need not be `Send`). An `Err` is
    /// a request that got no answer (refused address, connection error, time-out).
    fn post(&self, request: Request) -> LocalBoxFuture<'static, Result<Response, String>>;
}

/// Sends one event to one endpoint, signed for that attempt.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Attempted")]
pub struct Attempt {
    pub event_id: String,
    pub url: String,
    pub keys: Arc<SigningKeys>,
    pub payload: Arc<str>,
    pub timeout: Duration,
}

/// What an attempt got.
#[derive(Debug, Clone)]
pub struct Attempted {
    pub at: DateTime<Utc>,
    pub duration: Duration,
    pub outcome: Result<Response, String>,
}

/// A member of the sender pool: signs and posts.
pub struct Sender {
    transport: Arc<dyn Transport>,
}

impl Sender {
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self { transport }
    }
}

impl Actor for Sender {
    type Context = Context<Self>;
}

impl Handler<Attempt> for Sender {
    type Result = ResponseFuture<Attempted>;

    fn handle(&mut self, attempt: Attempt, _: &mut Context<Self>) -> Self::Result {
        let at = Utc::now();
        let timestamp = at.timestamp();
        let signature = signature::header(
            &attempt.keys,
            &attempt.event_id,
            timestamp,
            attempt.payload.as_bytes(),
        );
        let request = Request {
            url: attempt.url,
            headers: vec![
                ("content-type", "application/json".to_owned()),
                ("webhook-id", attempt.event_id),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signature),
                ("user-agent", "mmo-webhooks".to_owned()),
            ],
            body: attempt.payload,
            timeout: attempt.timeout,
        };
        let sending = self.transport.post(request);
        let started = std::time::Instant::now();
        Box::pin(async move {
            let outcome = sending.await;
            Attempted {
                at,
                duration: started.elapsed(),
                outcome,
            }
        })
    }
}

/// What becomes of a target after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again after this long (the schedule's next wait, or longer when the endpoint asked).
    Retry(Duration),
    /// No attempt left: a dead letter.
    Failed,
    /// `410 Gone`: the endpoint is disabled and the event failed for it.
    Gone,
}

/// Judges an attempt, the `attempts`-th (1-based) of `schedule.len()`: only 2xx is success; 3xx is a
/// failure (redirects are not followed); `410` disables; `429`, `502`, `503`, `504` and `Retry-After`
/// slow the endpoint down. The schedule's waits get ±10% of jitter, so retries of many events spread.
pub fn verdict(
    outcome: &Result<Response, String>,
    attempts: usize,
    schedule: &[Duration],
    jitter: f64,
) -> Verdict {
    if let Ok(response) = outcome {
        if (200..300).contains(&response.status) {
            return Verdict::Delivered;
        }
        if response.status == 410 {
            return Verdict::Gone;
        }
    }
    let Some(next) = schedule.get(attempts) else {
        return Verdict::Failed;
    };
    let wait = next.mul_f64(1.0 + jitter.clamp(-0.1, 0.1));
    let asked = outcome
        .as_ref()
        .ok()
        .and_then(|response| response.retry_after);
    Verdict::Retry(asked.map_or(wait, |asked| asked.max(wait)))
}

/// Per endpoint: requests in flight, its rate limit, and a pause it asked for.
struct Lane {
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    limiter: Option<DefaultDirectRateLimiter>,
    paused_until: Option<tokio::time::Instant>,
    /// Since when every attempt failed (cleared by a success).
    failing_since: Option<DateTime<Utc>>,
}

/// What the dispatcher and its event tasks share; outlives a restarted dispatcher.
struct Shared {
    settings: DeliverySettings,
    outbox: Outbox,
    senders: Arc<Pool<Sender>>,
    /// This instance's name in the lease.
    instance: String,
    lanes: Mutex<HashMap<String, Lane>>,
    /// Events with a task in progress.
    busy: Mutex<HashSet<String>>,
    /// Events not to look at again before a moment (an earlier version pending).
    later: Mutex<HashMap<String, tokio::time::Instant>>,
    /// Outcomes not yet written; their events stay `busy` until they are.
    outcomes: Mutex<Vec<Outcome>>,
    /// The sending lease, as last renewed.
    lease: Mutex<Option<Lease>>,
    rounds: Arc<OneRound>,
    /// Batches of new events taken on and not yet moved to `events`.
    batches: Mutex<HashSet<ObjectId>>,
    /// The versions of each transaction in those batches: a later version waits for them.
    unsettled: Mutex<HashMap<String, Vec<i64>>>,
}

/// The sending lease, as this instance last renewed it.
#[derive(Clone, Copy)]
struct Lease {
    renewed_at: tokio::time::Instant,
    ends: tokio::time::Instant,
}

/// Events due are counted up to this many for `mmo_delivery_events_due`.
const DUE_COUNTED_UP_TO: u64 = 10_000;

/// How often the lease is renewed.
const RENEW_EVERY: Duration = Duration::from_millis(500);

/// The dispatcher actor. Start it with [`start`].
pub struct Dispatcher {
    shared: Arc<Shared>,
}

impl Actor for Dispatcher {
    type Context = Context<Self>;
}

impl Handler<Tick> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        let shared = Arc::clone(&self.shared);
        let Some(running) = shared.rounds.begin() else {
            return;
        };
        ctx.spawn(
            async move {
                let _running = running;
                // Rounds follow each other while they find work: under load, sending never waits
                // for the next tick.
                loop {
                    match round(&shared).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, "delivery round failed; retried next round");
                            break;
                        }
                    }
                }
            }
            .into_actor(self),
        );
    }
}

/// Handles of a started delivery, for readiness and tests.
pub struct Delivery {
    pub dispatcher: Arc<Pool<Dispatcher>>,
    pub senders: Arc<Pool<Sender>>,
}

/// Starts the sender pool, the dispatcher (a pool of one) and its driver, which ticks it every
/// `poll_interval`. Must run inside an actix `System`.
pub fn start(
    settings: DeliverySettings,
    outbox: Outbox,
    transport: Arc<dyn Transport>,
) -> Delivery {
    let call_timeout = settings.timeout + Duration::from_secs(5);
    let senders = Arc::new(Pool::new(
        "delivery",
        settings.pool_size,
        // Each sender runs its requests concurrently; endpoints' own limits bound them.
        NonZeroUsize::new(4096).expect("non-zero"),
        call_timeout,
        RestartPolicy::default(),
        move |_| {
            let transport = Arc::clone(&transport);
            Sender::start_in_arbiter(&actix::Arbiter::current(), move |_| Sender::new(transport))
        },
    ));
    let interval = settings.poll_interval;
    let shared = Arc::new(Shared {
        settings,
        outbox,
        senders: Arc::clone(&senders),
        instance: format!(
            "{}-{}",
            std::process::id(),
            mongodb::bson::oid::ObjectId::new()
        ),
        lanes: Mutex::new(HashMap::new()),
        busy: Mutex::new(HashSet::new()),
        later: Mutex::new(HashMap::new()),
        outcomes: Mutex::new(Vec::new()),
        lease: Mutex::new(None),
        rounds: Arc::default(),
        batches: Mutex::new(HashSet::new()),
        unsettled: Mutex::new(HashMap::new()),
    });
    {
        // The recorder: what finished attempts became, written together every RECORD_EVERY.
        let shared = Arc::clone(&shared);
        actix::spawn(async move {
            let mut ticks = tokio::time::interval(RECORD_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let outcomes = std::mem::take(&mut *shared.outcomes.lock());
                if outcomes.is_empty() {
                    continue;
                }
                let written = shared
                    .outbox
                    .record(&outcomes, Utc::now(), shared.settings.retention)
                    .await;
                match written {
                    Ok(()) => {
                        // Not busy any more, but not looked at again for a moment either: a round whose
                        // read of due events began before this write may still return them as pending,
                        // and would send them again (0.3.0 did, a few thousand times a minute under load).
                        let until = tokio::time::Instant::now() + JUST_RECORDED;
                        let mut busy = shared.busy.lock();
                        let mut later = shared.later.lock();
                        for outcome in &outcomes {
                            busy.remove(&outcome.event);
                            later.insert(outcome.event.clone(), until);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, events = outcomes.len(), "delivery outcomes not written yet; retrying");
                        shared.outcomes.lock().extend(outcomes);
                    }
                }
            }
        });
    }
    let dispatcher = Arc::new(Pool::new(
        "dispatcher",
        NonZeroUsize::MIN,
        NonZeroUsize::MIN,
        Duration::from_secs(5),
        RestartPolicy::default(),
        move |_| {
            Dispatcher {
                shared: Arc::clone(&shared),
            }
            .start()
        },
    ));
    tick_every(Arc::clone(&dispatcher), interval);
    Delivery {
        dispatcher,
        senders,
    }
}

/// One round: lead, read endpoints and due events, and start a task for each event that can go now;
/// returns how many events it took on.
async fn round(shared: &Arc<Shared>) -> Result<usize, crate::StoreError> {
    let settings = &shared.settings;
    let now = Utc::now();
    // The lease is renewed at most every RENEW_EVERY: rounds follow each other quickly under load, and
    // each would otherwise cost MongoDB a durable write.
    let renewed = *shared.lease.lock();
    let lease_ends = match renewed.filter(|lease| lease.renewed_at.elapsed() < RENEW_EVERY) {
        Some(lease) => lease.ends,
        None => {
            let started = tokio::time::Instant::now();
            if !shared
                .outbox
                .lead(&shared.instance, now, settings.lease)
                .await?
            {
                *shared.lease.lock() = None;
                return Ok(0);
            }
            let lease = Lease {
                renewed_at: started,
                ends: started + settings.lease,
            };
            *shared.lease.lock() = Some(lease);
            // The backlog, as often as the lease is renewed (a round reads only what it can take).
            let waiting = shared.outbox.count_due(now, DUE_COUNTED_UP_TO).await?;
            metrics::gauge!("mmo_delivery_events_due").set(waiting as f64);
            let batches = shared.outbox.count_batches(DUE_COUNTED_UP_TO).await?;
            metrics::gauge!("mmo_delivery_batches_waiting").set(batches as f64);
            lease.ends
        }
    };
    // Read every round: an event is fanned out to the endpoints that existed when it was read, never
    // to a stale list.
    let endpoints: HashMap<String, Arc<EndpointRecord>> = shared
        .outbox
        .load_endpoints()
        .await?
        .iter()
        .filter_map(|document| {
            EndpointRecord::from_document(
                document,
                now,
                settings.max_in_flight,
                settings.secrets_key.as_ref(),
            )
        })
        .map(|endpoint| (endpoint.id.clone(), Arc::new(endpoint)))
        .collect();
    shared.sync_lanes(&endpoints);
    metrics::gauge!("mmo_delivery_endpoints_disabled").set(
        endpoints
            .values()
            .filter(|endpoint| !endpoint.enabled)
            .count() as f64,
    );

    // New events first: the oldest batch the drain wrote, each event sent once straight from it.
    let fresh = send_new(shared, &endpoints, lease_ends).await?;

    // Then the retry path. Read only what can be taken on now: the events in flight (they come first,
    // being due longest) and twice the free slots. With every endpoint at its limit, the round waits for
    // the next tick instead of reading the same events again.
    let free: usize = {
        let lanes = shared.lanes.lock();
        endpoints
            .values()
            .filter(|endpoint| endpoint.enabled)
            .filter_map(|endpoint| lanes.get(&endpoint.id))
            .map(|lane| lane.permits.available_permits())
            .sum()
    };
    let in_flight = shared.busy.lock().len();
    let enabled = endpoints.values().any(|endpoint| endpoint.enabled);
    if free == 0 && enabled {
        return Ok(fresh);
    }
    // With no endpoint enabled, events are fanned out (to none) a batch at a time.
    let wanted = if !enabled {
        settings.batch
    } else {
        (in_flight + 2 * free).min(settings.batch as usize) as i64
    };
    let due = shared.outbox.due(now, wanted.max(1)).await?;
    let clock = tokio::time::Instant::now();
    let due: Vec<PendingEvent> = {
        let busy = shared.busy.lock();
        let mut later = shared.later.lock();
        later.retain(|_, until| *until > clock);
        due.into_iter()
            .filter(|event| !busy.contains(&event.id) && !later.contains_key(&event.id))
            .collect()
    };
    if due.is_empty() {
        return Ok(fresh);
    }
    let versions: Vec<(&str, i64)> = due
        .iter()
        .map(|event| (event.transaction_id.as_str(), event.version))
        .collect();
    let earlier = shared.outbox.pending_of(&versions).await?;
    let mut pending_versions: HashMap<&str, Vec<&outbox::Earlier>> = HashMap::new();
    for item in &earlier {
        pending_versions
            .entry(item.transaction_id.as_str())
            .or_default()
            .push(item);
    }
    // Transactions with an event starting in this round: a later version waits for the next round.
    let mut started: HashSet<String> = HashSet::new();
    // Endpoints with no free slot in this round: left for the next one without waiting again.
    let mut saturated: HashSet<String> = HashSet::new();
    let mut taken = 0;
    for event in due {
        if started.contains(&event.transaction_id) {
            continue;
        }
        let unsettled = shared.unsettled_before(&event.transaction_id, event.version);
        let blocked_for = |endpoint: &str| {
            unsettled
                || pending_versions
                    .get(event.transaction_id.as_str())
                    .into_iter()
                    .flatten()
                    .any(|earlier| {
                        earlier.version < event.version
                            && earlier
                                .pending_for
                                .as_ref()
                                .is_none_or(|pending| pending.iter().any(|id| id == endpoint))
                    })
        };
        let fanned_out = event.targets.is_some();
        let targets = event.targets.clone().unwrap_or_else(|| {
            let mut ids: Vec<&String> = endpoints
                .values()
                .filter(|endpoint| {
                    endpoint.enabled && endpoint.wants(&event.event_type, &event.provider)
                })
                .map(|endpoint| &endpoint.id)
                .collect();
            ids.sort();
            ids.into_iter().map(|id| Target::pending(id, now)).collect()
        });
        let Plan {
            targets,
            attempts,
            waiting,
            put_off,
        } = plan(
            shared,
            &endpoints,
            targets,
            now,
            lease_ends,
            &blocked_for,
            &mut saturated,
            ADMISSION_WAIT,
        )
        .await;
        if attempts.is_empty() {
            if !fanned_out || put_off || targets.iter().all(|target| target.status != "pending") {
                // Fanned out for the first time (or to no endpoint at all): record it.
                shared.busy.lock().insert(event.id.clone());
                shared.outcomes.lock().push(Outcome {
                    event: event.id.clone(),
                    targets,
                    attempts: Vec::new(),
                });
                taken += 1;
            }
            if waiting {
                shared
                    .later
                    .lock()
                    .insert(event.id.clone(), tokio::time::Instant::now() + RETRY_SOON);
            }
            continue;
        }
        started.insert(event.transaction_id.clone());
        shared.busy.lock().insert(event.id.clone());
        taken += 1;
        let shared = Arc::clone(shared);
        actix::spawn(async move {
            let id = event.id.clone();
            match send(&shared, event, targets, attempts).await {
                Ok(outcome) => shared.outcomes.lock().push(outcome),
                Err(error) => {
                    tracing::warn!(event = %id, %error, "delivery outcome not recorded; the event is sent again");
                    shared.busy.lock().remove(&id);
                }
            }
        });
    }
    Ok(taken + fresh)
}

/// What a round can do with one event now.
struct Plan {
    /// Its targets as they stand: a deleted endpoint's failed, a disabled one's put off a minute.
    targets: Vec<Target>,
    /// The attempts it may start now, each with its endpoint's slot.
    attempts: Vec<(usize, Arc<EndpointRecord>, OwnedSemaphorePermit)>,
    /// A due target waits: an earlier version is pending for its endpoint, or the lease ends too soon.
    waiting: bool,
    /// A target was put off (its endpoint disabled).
    put_off: bool,
}

/// Decides, for each of an event's due targets, whether it can be attempted now: its endpoint exists
/// and is enabled, no earlier version is pending for it (`blocked_for`), the lease outlasts a request,
/// and a slot frees within `admission_wait` (an endpoint without one joins `saturated`, which later
/// events of the round skip at once).
#[allow(clippy::too_many_arguments)]
async fn plan(
    shared: &Shared,
    endpoints: &HashMap<String, Arc<EndpointRecord>>,
    mut targets: Vec<Target>,
    now: DateTime<Utc>,
    lease_ends: tokio::time::Instant,
    blocked_for: &dyn Fn(&str) -> bool,
    saturated: &mut HashSet<String>,
    admission_wait: Duration,
) -> Plan {
    let mut attempts = Vec::new();
    let (mut waiting, mut put_off) = (false, false);
    for (index, target) in targets.iter_mut().enumerate() {
        if target.status != "pending" || target.next_at > now {
            continue;
        }
        let Some(endpoint) = endpoints.get(&target.endpoint) else {
            // Deleted: nothing to send it to.
            target.status = "failed".to_owned();
            continue;
        };
        if !endpoint.enabled {
            // Kept pending: it goes once the endpoint is enabled again, or fails by replay.
            target.next_at = now + chrono::Duration::seconds(60);
            put_off = true;
            continue;
        }
        if blocked_for(&endpoint.id) {
            waiting = true;
            continue;
        }
        if tokio::time::Instant::now() + shared.settings.timeout >= lease_ends {
            waiting = true;
            continue;
        }
        if saturated.contains(&endpoint.id) {
            continue;
        }
        match shared.admit(&endpoint.id, admission_wait).await {
            Some(permit) => attempts.push((index, Arc::clone(endpoint), permit)),
            None => {
                saturated.insert(endpoint.id.clone());
            }
        }
    }
    Plan {
        targets,
        attempts,
        waiting,
        put_off,
    }
}

/// Takes on the oldest batch of new events (unless [`BATCHES_IN_FLIGHT`] are being sent): plans each
/// event as a round does (waiting up to [`FIRST_ADMISSION_WAIT`] for a slot) and starts its attempts;
/// [`settle`] then moves the events to `events` with their outcomes. Returns how many events it took on.
///
/// Version order: a batch's later version of a transaction is not attempted from the batch (it goes to
/// `events` pending, behind the earlier one), and neither is a version whose transaction has an earlier
/// one pending in `events` or in a batch still being sent ([`Shared::unsettled_before`]).
async fn send_new(
    shared: &Arc<Shared>,
    endpoints: &HashMap<String, Arc<EndpointRecord>>,
    lease_ends: tokio::time::Instant,
) -> Result<usize, crate::StoreError> {
    let skip: Vec<ObjectId> = shared.batches.lock().iter().copied().collect();
    if skip.len() >= BATCHES_IN_FLIGHT {
        return Ok(0);
    }
    let Some(batch) = shared.outbox.oldest_batch(&skip).await? else {
        return Ok(0);
    };
    let now = Utc::now();
    let ids: Vec<&str> = batch
        .events
        .iter()
        .map(|(_, event)| event.id.as_str())
        .collect();
    let known = shared.outbox.known(&ids).await?;
    let fresh: Vec<(Document, PendingEvent)> = batch
        .events
        .into_iter()
        .filter(|(_, event)| !known.contains(&event.id))
        .collect();
    let versions: Vec<(&str, i64)> = fresh
        .iter()
        .map(|(_, event)| (event.transaction_id.as_str(), event.version))
        .collect();
    let earlier = shared.outbox.pending_of(&versions).await?;
    shared.batches.lock().insert(batch.id);

    let mut started: HashSet<String> = HashSet::new();
    let mut saturated: HashSet<String> = HashSet::new();
    let mut planned = Vec::with_capacity(fresh.len());
    for (document, event) in fresh {
        let behind = started.contains(&event.transaction_id)
            || shared.unsettled_before(&event.transaction_id, event.version);
        let blocked_for = |endpoint: &str| {
            behind
                || earlier.iter().any(|earlier| {
                    earlier.transaction_id == event.transaction_id
                        && earlier.version < event.version
                        && earlier
                            .pending_for
                            .as_ref()
                            .is_none_or(|pending| pending.iter().any(|id| id == endpoint))
                })
        };
        let plan = plan(
            shared,
            endpoints,
            event.targets.clone().unwrap_or_default(),
            now,
            lease_ends,
            &blocked_for,
            &mut saturated,
            FIRST_ADMISSION_WAIT,
        )
        .await;
        // Every version in the batch counts: a later one in this batch waits for the earlier.
        started.insert(event.transaction_id.clone());
        let sending = (!plan.attempts.is_empty()).then(|| {
            let (answer, answered) = tokio::sync::oneshot::channel();
            let (shared, event, targets) =
                (Arc::clone(shared), event.clone(), plan.targets.clone());
            actix::spawn(async move {
                let _ = answer.send(send(&shared, event, targets, plan.attempts).await);
            });
            answered
        });
        planned.push((document, event, plan.targets, sending));
    }
    {
        let mut unsettled = shared.unsettled.lock();
        for (_, event, _, _) in &planned {
            unsettled
                .entry(event.transaction_id.clone())
                .or_default()
                .push(event.version);
        }
    }
    let taken = planned.len().max(1);
    let shared = Arc::clone(shared);
    actix::spawn(settle(shared, batch.id, planned));
    Ok(taken)
}

type Planned = (
    Document,
    PendingEvent,
    Vec<Target>,
    Option<tokio::sync::oneshot::Receiver<Result<Outcome, crate::StoreError>>>,
);

/// Waits for a batch's first attempts (up to [`FIRST_ATTEMPTS_WAIT`]), then inserts its events into
/// `events` with their outcomes and deletes the batch — retrying while MongoDB does not take them, as
/// the batch must not be sent again. An attempt still in flight leaves its event pending and `busy`
/// (the retry path does not send it meanwhile); its outcome is recorded, once the event is in
/// `events`, as a retry's is.
async fn settle(shared: Arc<Shared>, batch: ObjectId, planned: Vec<Planned>) {
    let deadline = tokio::time::Instant::now() + FIRST_ATTEMPTS_WAIT;
    let now = Utc::now();
    let retention = shared.settings.retention;
    let mut documents = Vec::with_capacity(planned.len());
    let mut late = Vec::new();
    let mut transactions = Vec::with_capacity(planned.len());
    for (document, event, targets, sending) in planned {
        transactions.push((event.transaction_id.clone(), event.version));
        let (targets, attempts) = match sending {
            None => (targets, Vec::new()),
            Some(mut answered) => match tokio::time::timeout_at(deadline, &mut answered).await {
                Ok(Ok(Ok(outcome))) => (outcome.targets, outcome.attempts),
                Ok(Ok(Err(error))) => {
                    tracing::warn!(event = %event.id, %error, "delivery outcome not recorded; the event is sent again");
                    (targets, Vec::new())
                }
                Ok(Err(_)) => (targets, Vec::new()),
                Err(_) => {
                    late.push((event.id.clone(), answered));
                    (targets, Vec::new())
                }
            },
        };
        let state = outbox::state(&targets, now, retention);
        documents.push(outbox::with_state(document, state, attempts));
    }
    {
        let mut busy = shared.busy.lock();
        for (id, _) in &late {
            busy.insert(id.clone());
        }
    }
    let mut backoff = Duration::from_millis(100);
    while let Err(error) = shared.outbox.settle_batch(batch, &documents).await {
        tracing::warn!(%error, events = documents.len(), "new events not moved to the outbox yet; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    shared.batches.lock().remove(&batch);
    {
        let mut unsettled = shared.unsettled.lock();
        for (transaction, version) in transactions {
            if let Some(versions) = unsettled.get_mut(&transaction) {
                if let Some(at) = versions.iter().position(|kept| *kept == version) {
                    versions.swap_remove(at);
                }
                if versions.is_empty() {
                    unsettled.remove(&transaction);
                }
            }
        }
    }
    // The late attempts' outcomes, recorded like a retry's now that their events are in `events`.
    for (id, answered) in late {
        let shared = Arc::clone(&shared);
        actix::spawn(async move {
            match answered.await {
                Ok(Ok(outcome)) => shared.outcomes.lock().push(outcome),
                _ => {
                    shared.busy.lock().remove(&id);
                }
            }
        });
    }
}

impl Shared {
    /// Whether an earlier version of `transaction` than `version` is in a batch still being sent.
    fn unsettled_before(&self, transaction: &str, version: i64) -> bool {
        self.unsettled
            .lock()
            .get(transaction)
            .is_some_and(|versions| versions.iter().any(|earlier| *earlier < version))
    }

    /// Keeps one lane per endpoint, sized as the endpoint says.
    fn sync_lanes(&self, endpoints: &HashMap<String, Arc<EndpointRecord>>) {
        let mut lanes = self.lanes.lock();
        lanes.retain(|id, _| endpoints.contains_key(id));
        for endpoint in endpoints.values() {
            let stale = lanes
                .get(&endpoint.id)
                .is_some_and(|lane| lane.max_in_flight != endpoint.max_in_flight);
            if stale || !lanes.contains_key(&endpoint.id) {
                let limiter = endpoint
                    .rate_limit_per_sec
                    .and_then(NonZeroU32::new)
                    .map(|rate| RateLimiter::direct(Quota::per_second(rate)));
                let failing_since = lanes
                    .get(&endpoint.id)
                    .and_then(|lane| lane.failing_since)
                    .or(endpoint.failing_since);
                lanes.insert(
                    endpoint.id.clone(),
                    Lane {
                        permits: Arc::new(Semaphore::new(endpoint.max_in_flight)),
                        max_in_flight: endpoint.max_in_flight,
                        limiter,
                        paused_until: None,
                        failing_since,
                    },
                );
            }
        }
    }

    /// A permit to send to `endpoint`, waiting at most `wait` for a free slot; `None` when it stays at
    /// its limit, is over its rate or paused.
    async fn admit(&self, endpoint: &str, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let permits = {
            let lanes = self.lanes.lock();
            let lane = lanes.get(endpoint)?;
            if lane
                .paused_until
                .is_some_and(|until| until > tokio::time::Instant::now())
            {
                return None;
            }
            Arc::clone(&lane.permits)
        };
        let permit = tokio::time::timeout(wait, permits.acquire_owned())
            .await
            .ok()?
            .ok()?;
        let lanes = self.lanes.lock();
        if let Some(limiter) = lanes.get(endpoint).and_then(|lane| lane.limiter.as_ref()) {
            limiter.check().ok()?;
        }
        Some(permit)
    }

    /// Notes an endpoint's answer: a pause it asked for, and since when it has been failing. Returns
    /// true when it has failed for longer than `disable_after`.
    fn note(&self, endpoint: &str, attempted: &Attempted, delivered: bool) -> Failing {
        let mut lanes = self.lanes.lock();
        let Some(lane) = lanes.get_mut(endpoint) else {
            return Failing::Unchanged;
        };
        if delivered {
            return match lane.failing_since.take() {
                Some(_) => Failing::Recovered,
                None => Failing::Unchanged,
            };
        }
        if let Ok(response) = &attempted.outcome {
            if matches!(response.status, 429 | 502 | 503 | 504) || response.retry_after.is_some() {
                let pause = response.retry_after.unwrap_or(Duration::from_secs(5));
                lane.paused_until =
                    Some(tokio::time::Instant::now() + pause.min(Duration::from_secs(3600)));
            }
        }
        let Some(since) = lane.failing_since else {
            lane.failing_since = Some(attempted.at);
            return Failing::Since(attempted.at);
        };
        if (attempted.at - since)
            .to_std()
            .is_ok_and(|failing| failing >= self.settings.disable_after)
        {
            Failing::TooLong
        } else {
            Failing::Unchanged
        }
    }
}

/// What an attempt changed about its endpoint's run of failures (kept in the endpoint's document, so
/// that a restart or another instance counts from the same start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failing {
    Unchanged,
    /// The first failure after a success.
    Since(DateTime<Utc>),
    /// A success after failures.
    Recovered,
    /// Every attempt failed for `disable_after`.
    TooLong,
}

/// Sends one event to the targets admitted, concurrently, and returns what became of each (for the
/// caller to record).
async fn send(
    shared: &Arc<Shared>,
    event: PendingEvent,
    mut targets: Vec<Target>,
    admitted: Vec<(usize, Arc<EndpointRecord>, OwnedSemaphorePermit)>,
) -> Result<Outcome, crate::StoreError> {
    let settings = &shared.settings;
    let payload: Arc<str> = Arc::from(event.payload.as_str());
    let route = admitted.len() as u64 + event.version as u64;
    let calls = admitted.into_iter().map(|(index, endpoint, permit)| {
        let attempt = Attempt {
            event_id: event.id.clone(),
            url: endpoint.url.clone(),
            keys: Arc::new(endpoint.keys.clone()),
            payload: Arc::clone(&payload),
            timeout: settings.timeout,
        };
        let senders = Arc::clone(&shared.senders);
        async move {
            let answer = senders
                .call(route.wrapping_add(index as u64), attempt)
                .await;
            drop(permit);
            let attempted = answer.unwrap_or_else(|error| Attempted {
                at: Utc::now(),
                duration: Duration::ZERO,
                outcome: Err(format!("sender: {error}")),
            });
            (index, endpoint, attempted)
        }
    });
    let results = join_all(calls).await;
    let now = Utc::now();
    let mut attempts: Vec<Document> = Vec::with_capacity(results.len());
    for (index, endpoint, attempted) in results {
        let target = &mut targets[index];
        target.attempts += 1;
        let jitter = rand::thread_rng().gen_range(-0.1..=0.1);
        let judged = verdict(
            &attempted.outcome,
            target.attempts as usize,
            &settings.retry_schedule,
            jitter,
        );
        let delivered = judged == Verdict::Delivered;
        let failing = shared.note(&endpoint.id, &attempted, delivered);
        match failing {
            Failing::Since(at) => shared.outbox.failing(&endpoint.id, Some(at)).await?,
            Failing::Recovered => shared.outbox.failing(&endpoint.id, None).await?,
            Failing::Unchanged | Failing::TooLong => {}
        }
        let too_long = failing == Failing::TooLong;
        let outcome = match judged {
            Verdict::Delivered => {
                target.status = "delivered".to_owned();
                let waited = (now - event.acknowledged_at).to_std().unwrap_or_default();
                metrics::histogram!("mmo_delivery_latency_seconds").record(waited.as_secs_f64());
                "delivered"
            }
            Verdict::Retry(wait) => {
                target.next_at =
                    now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::days(1));
                "retry"
            }
            Verdict::Failed => {
                target.status = "failed".to_owned();
                metrics::counter!("mmo_delivery_dead_letters_total").increment(1);
                "failed"
            }
            Verdict::Gone => {
                target.status = "failed".to_owned();
                "gone"
            }
        };
        if judged == Verdict::Gone || too_long {
            let reason = if too_long {
                "failing for too long"
            } else {
                "answered 410 Gone"
            };
            tracing::warn!(endpoint = %endpoint.id, reason, "endpoint disabled");
            shared.outbox.disable(&endpoint.id, reason, now).await?;
        }
        metrics::counter!("mmo_delivery_attempts_total", "endpoint" => endpoint.id.clone(), "outcome" => outcome)
            .increment(1);
        let (status, response, error) = match &attempted.outcome {
            Ok(response) => (
                Some(i32::from(response.status)),
                Some(response.body.as_str()),
                None,
            ),
            Err(error) => (None, None, Some(error.as_str())),
        };
        tracing::info!(
            event = %event.id,
            event_type = %event.event_type,
            endpoint = %endpoint.id,
            attempt = target.attempts,
            status = ?status,
            duration_ms = attempted.duration.as_millis() as u64,
            outcome,
            error = error.unwrap_or(""),
            "delivery attempt"
        );
        attempts.push(doc! {
            "endpoint": &endpoint.id,
            "attempt": target.attempts,
            "at": mongodb::bson::DateTime::from_millis(attempted.at.timestamp_millis()),
            "status_code": status,
            "duration_ms": attempted.duration.as_millis() as i64,
            "response": response.map(|body| truncate(body, RESPONSE_KEPT)),
            "error": error.map(|error| truncate(error, RESPONSE_KEPT)),
        });
    }
    Ok(Outcome {
        event: event.id,
        targets,
        attempts,
    })
}

/// At most `limit` bytes of `text`, cut at a character boundary.
pub fn truncate(text: &str, limit: usize) -> String {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<u64>) -> Result<Response, String> {
        Ok(Response {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: String::new(),
        })
    }

    #[test]
    fn only_2xx_delivers_and_410_is_gone() {
        let schedule = [Duration::ZERO, Duration::from_secs(5)];
        assert_eq!(
            verdict(&answer(204, None), 1, &schedule, 0.0),
            Verdict::Delivered
        );
        assert_eq!(
            verdict(&answer(410, None), 1, &schedule, 0.0),
            Verdict::Gone
        );
        for refused in [301, 302, 400, 404, 500] {
            assert_eq!(
                verdict(&answer(refused, None), 1, &schedule, 0.0),
                Verdict::Retry(Duration::from_secs(5)),
                "{refused}"
            );
        }
        assert_eq!(
            verdict(&Err("refused".into()), 1, &schedule, 0.0),
            Verdict::Retry(Duration::from_secs(5))
        );
        // The last attempt failed: a dead letter.
        assert_eq!(
            verdict(&answer(500, None), 2, &schedule, 0.0),
            Verdict::Failed
        );
    }

    #[test]
    fn retry_after_lengthens_the_wait_and_jitter_stays_within_ten_percent() {
        let schedule = [Duration::ZERO, Duration::from_secs(100)];
        assert_eq!(
            verdict(&answer(429, Some(300)), 1, &schedule, 0.0),
            Verdict::Retry(Duration::from_secs(300))
        );
        assert_eq!(
            verdict(&answer(503, Some(1)), 1, &schedule, 0.0),
            Verdict::Retry(Duration::from_secs(100))
        );
        assert_eq!(
            verdict(&answer(500, None), 1, &schedule, 0.5),
            Verdict::Retry(Duration::from_secs(110))
        );
    }

    #[test]
    fn truncates_at_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }
}
