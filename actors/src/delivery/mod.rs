//! Delivery: every event the drain writes is sent to the merchant's endpoints, signed as the Standard
//! Webhooks specification says, retried on a schedule until it is received or dead-lettered, in version
//! order per transaction and endpoint.
//!
//! ```text
//! every poll_interval ─Tick─▶ Dispatcher (pool of one) ─lead──▶ leases (one sending instance at a time)
//!   new events:  ─feed (change stream of the writes that carried them)─▶ plan, send once ─▶ insert
//!                 into events with outcomes; save the feed's position past them     (new_events.rs)
//!   retries:     ─due───────────▶ events (pending, due_at ≤ now) ─gate: earlier versions pending?─▶
//!                 ─plan, send─▶ record: events (targets, attempts, due_at / expire_at)
//!   send:  one task per event ──Attempt──▶ Sender pool (delivery.pool_size) ──▶ Transport (HTTP POST)
//! ```
//!
//! Files: this one holds the dispatcher's round and the state the rounds share (lanes, lease, events in
//! flight), which is why it is longer than the others; `new_events.rs` the first attempts from the feed;
//! `attempts.rs` what one event's attempts do (which targets go now, the answers judged and recorded);
//! `sender.rs` the signing sender actors and the transport; `verdict.rs` what an answer means;
//! `store.rs` the endpoints and the lease in MongoDB (events are `crate::store::events`'s); `signature.rs` and `sealing.rs` the secrets.
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
//! touches the callbacks' path: the drain only writes events.

mod attempts;
mod new_events;
pub mod sealing;
pub mod sender;
pub mod signature;
pub mod store;
pub mod verdict;

use std::collections::{HashMap, HashSet};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler, WrapFuture};
use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::store::events::{EventLog, Outcome, PendingEvent, Target};
use attempts::{plan, send, Failing, Plan};
use new_events::{give_back, read_new, send_new, FeedPositions};
pub use sender::{truncate, Attempt, Attempted, Request, Response, Sender, Transport};
pub use store::{DeliveryStore, EndpointRecord};
pub use verdict::{verdict, Verdict, DEFAULT_RETRY_SCHEDULE_SECS};

pub use crate::pool::Tick;
use crate::pool::{tick_every, OneRound, Pool, RestartPolicy};

/// How long an event behind an earlier version (or a lease about to end) waits before it is looked at
/// again.
const RETRY_SOON: Duration = Duration::from_millis(100);
/// How long a round waits for an endpoint's free slot before it leaves that endpoint for the next round.
const ADMISSION_WAIT: Duration = Duration::from_millis(50);
/// How long a new event waits for a free slot at its endpoint before it is left to the retry path.
const FIRST_ADMISSION_WAIT: Duration = Duration::from_millis(500);
/// Groups of transactions whose new events are being sent at once, at most.
const GROUPS_IN_FLIGHT: usize = 4;
/// How long a read of the feed waits for a change when none is there.
const FEED_WAIT: Duration = Duration::from_millis(20);
/// How often the feed's position is saved while no event comes.
const IDLE_SAVE_EVERY: Duration = Duration::from_secs(10);
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
    /// How long a group of new events waits for its first attempts (`delivery.first_attempt_wait_ms`).
    pub first_attempt_wait: Duration,
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
    /// Events one read takes: a group of new events from the feed, or due events (`delivery.batch`).
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
            first_attempt_wait: Duration::from_secs(2),
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
    /// The endpoints and the sending lease.
    store: DeliveryStore,
    /// Events, their feed and what earlier versions left.
    events: EventLog,
    senders: Arc<Pool<Sender>>,
    /// This instance's name in the lease.
    instance: String,
    lanes: Mutex<HashMap<String, Lane>>,
    /// The targets with an attempt under way or an outcome not written yet.
    busy: Mutex<InFlight>,
    /// Events not to look at again before a moment (an earlier version pending).
    later: Mutex<HashMap<String, tokio::time::Instant>>,
    /// Outcomes not yet written; their events stay `busy` until they are.
    outcomes: Mutex<Vec<Outcome>>,
    /// The sending lease, as last renewed.
    lease: Mutex<Option<Lease>>,
    rounds: Arc<OneRound>,
    /// Groups of them being sent.
    groups_in_flight: std::sync::atomic::AtomicUsize,
    /// The versions of each transaction whose first attempt is under way (read from the feed, not yet in
    /// `events`): a later version waits for them.
    unsettled: Mutex<HashMap<String, Vec<i64>>>,
    /// A clean stop has begun: no new round starts.
    stopping: std::sync::atomic::AtomicBool,
    /// The feed of new events, open while this instance sends (see `new_events.rs`).
    feed: tokio::sync::Mutex<Option<mongodb::change_stream::ChangeStream<mongodb::bson::Document>>>,
    /// The groups read from the feed and not yet in `events`: where its position may move.
    feed_position: FeedPositions,
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

/// Handles of a started delivery, for readiness, a clean stop and tests.
pub struct Delivery {
    pub dispatcher: Arc<Pool<Dispatcher>>,
    pub senders: Arc<Pool<Sender>>,
    shared: Arc<Shared>,
}

impl Delivery {
    /// A clean stop: starts no more attempts, waits (up to `within`) for those under way to finish and
    /// their outcomes to be written, then gives the sending lease back, so that the next instance (or
    /// this one, restarted) sends at once instead of when the lease runs out. Attempts still under way at
    /// the deadline keep the lease until it runs out: nobody else sends their events meanwhile.
    pub async fn stop(&self, within: Duration) {
        use std::sync::atomic::Ordering;
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + within;
        // A round already running may still read events and start attempts: wait for it to end, and
        // hold the rounds so that none starts (it would find `stopping` set anyway).
        let _no_round = loop {
            if let Some(guard) = shared.rounds.begin() {
                break Some(guard);
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(RECORD_EVERY).await;
        };
        let settled = || {
            shared.busy.lock().is_empty()
                && shared.outcomes.lock().is_empty()
                && shared.feed_position.is_empty()
        };
        while !settled() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(RECORD_EVERY).await;
        }
        if !settled() {
            tracing::warn!(
                "attempts still under way at exit; the sending lease runs out by itself"
            );
            return;
        }
        match shared.store.release(&shared.instance).await {
            Ok(()) => tracing::info!("sending lease given back"),
            Err(error) => {
                tracing::warn!(%error, "sending lease not given back; it runs out by itself")
            }
        }
    }
}

/// Starts the sender pool, the dispatcher (a pool of one) and its driver, which ticks it every
/// `poll_interval`. Must run inside an actix `System`.
pub fn start(
    settings: DeliverySettings,
    store: DeliveryStore,
    events: EventLog,
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
        store,
        events,
        senders: Arc::clone(&senders),
        instance: format!(
            "{}-{}",
            std::process::id(),
            mongodb::bson::oid::ObjectId::new()
        ),
        lanes: Mutex::new(HashMap::new()),
        busy: Mutex::new(InFlight::default()),
        later: Mutex::new(HashMap::new()),
        outcomes: Mutex::new(Vec::new()),
        lease: Mutex::new(None),
        rounds: Arc::default(),
        groups_in_flight: std::sync::atomic::AtomicUsize::new(0),
        unsettled: Mutex::new(HashMap::new()),
        stopping: std::sync::atomic::AtomicBool::new(false),
        feed: tokio::sync::Mutex::new(None),
        feed_position: FeedPositions::default(),
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
                    .events
                    .record(&outcomes, Utc::now(), shared.settings.retention)
                    .await;
                match written {
                    Ok(()) => {
                        // Not busy any more: a round that reads due events from now on sees this
                        // write. A round whose read began before it skips these events all the same:
                        // it took its list of busy events before reading (see `round`).
                        let mut busy = shared.busy.lock();
                        for outcome in &outcomes {
                            busy.remove(
                                &outcome.event,
                                outcome
                                    .targets
                                    .iter()
                                    .map(|target| target.endpoint.as_str()),
                            );
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
    let for_dispatcher = Arc::clone(&shared);
    let dispatcher = Arc::new(Pool::new(
        "dispatcher",
        NonZeroUsize::MIN,
        NonZeroUsize::MIN,
        Duration::from_secs(5),
        RestartPolicy::default(),
        move |_| {
            Dispatcher {
                shared: Arc::clone(&for_dispatcher),
            }
            .start()
        },
    ));
    tick_every(Arc::clone(&dispatcher), interval);
    Delivery {
        dispatcher,
        senders,
        shared,
    }
}

/// One round: lead, read endpoints and due events, and start a task for each event that can go now;
/// returns how many events it took on.
async fn round(shared: &Arc<Shared>) -> Result<usize, crate::StoreError> {
    if shared.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(0);
    }
    let settings = &shared.settings;
    let now = Utc::now();
    // The lease is renewed at most every RENEW_EVERY: rounds follow each other quickly under load, and
    // each would otherwise cost MongoDB a durable write.
    let renewed = *shared.lease.lock();
    let lease_ends = match renewed.filter(|lease| lease.renewed_at.elapsed() < RENEW_EVERY) {
        Some(lease) => lease.ends,
        None => {
            let started = tokio::time::Instant::now();
            if !shared.store.lead(&shared.instance, settings.lease).await? {
                *shared.lease.lock() = None;
                shared.feed.lock().await.take();
                return Ok(0);
            }
            let lease = Lease {
                renewed_at: started,
                ends: started + settings.lease,
            };
            *shared.lease.lock() = Some(lease);
            // The backlog, as often as the lease is renewed (a round reads only what it can take).
            let waiting = shared.events.count_due(now, DUE_COUNTED_UP_TO).await?;
            metrics::gauge!("mmo_delivery_events_due").set(waiting as f64);
            // Events instances of 0.4.0 and 0.5.0 wrote during a rolling upgrade, moved where they
            // are sent.
            shared.events.adopt_legacy(16).await?;
            shared
                .events
                .adopt_outboxes(64, now, settings.retention)
                .await?;
            lease.ends
        }
    };
    // New events are read first, the endpoints after: each is routed and signed with the endpoints as
    // they are once it was read.
    let new_group = read_new(shared).await?;
    // Read every round: an event is fanned out to the endpoints that existed when it was read, never
    // to a stale list.
    let loaded = shared.store.load_endpoints().await;
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            if let Some(group) = new_group {
                give_back(shared, group).await;
            }
            return Err(error);
        }
    };
    let signing_at = Utc::now();
    let endpoints: HashMap<String, Arc<EndpointRecord>> = loaded
        .iter()
        .filter_map(|document| {
            EndpointRecord::from_document(
                document,
                signing_at,
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

    // New events first: the group read from the feed, each event sent once.
    let fresh = match new_group {
        Some(group) => send_new(shared, &endpoints, lease_ends, group).await?,
        None => 0,
    };

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
    let in_flight = shared.busy.lock().events();
    let enabled = endpoints.values().any(|endpoint| endpoint.enabled);
    if free == 0 && enabled {
        return Ok(fresh);
    }
    // With no endpoint enabled, events are fanned out (to none) `delivery.batch` at a time.
    let wanted = if !enabled {
        settings.batch
    } else {
        (in_flight + 2 * free).min(settings.batch as usize) as i64
    };
    // The targets busy before the read, skipped even if their outcome is written while it runs: the
    // read may return them as they were before that write, and they would be sent again.
    let busy_before: InFlight = shared.busy.lock().clone();
    let held = shared.held();
    let due = shared.events.due(now, &held, wanted.max(1)).await?;
    let clock = tokio::time::Instant::now();
    let due: Vec<PendingEvent> = {
        let mut later = shared.later.lock();
        later.retain(|_, until| *until > clock);
        due.into_iter()
            .filter(|event| !later.contains_key(&event.id))
            .collect()
    };
    if due.is_empty() {
        return Ok(fresh);
    }
    let versions: Vec<(&str, i64)> = due
        .iter()
        .map(|event| (event.transaction_id.as_str(), event.version))
        .collect();
    // The versions being sent from the feed, copied before `events` is read: one leaves this set only
    // once it is in `events`, so the copy and the read together see every earlier version.
    let unsettled_before = shared.unsettled.lock().clone();
    let earlier = shared.events.pending_of(&versions).await?;
    let mut pending_versions: HashMap<&str, Vec<&crate::store::events::Earlier>> = HashMap::new();
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
        let unsettled = earlier_in(&unsettled_before, &event.transaction_id, event.version)
            || shared.unsettled_before(&event.transaction_id, event.version);
        // Per target: an attempt of this event to another endpoint under way does not hold this one.
        let blocked_for = |endpoint: &str| {
            unsettled
                || busy_before.holds(&event.id, endpoint)
                || shared.busy.lock().holds(&event.id, endpoint)
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
                let outcome = Outcome::changed(
                    event.id.clone(),
                    event.targets.as_deref(),
                    targets,
                    Vec::new(),
                );
                shared.busy.lock().add(
                    &event.id,
                    outcome.targets.iter().map(|target| target.endpoint.clone()),
                );
                shared.outcomes.lock().push(outcome);
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
        taken += 1;
        // One task per endpoint, each recording its own outcome: a slow endpoint's attempt never holds
        // the recording (and the next attempts) of the same event at another endpoint.
        for attempt in attempts {
            let endpoint = attempt.1.id.clone();
            shared.busy.lock().add(&event.id, [endpoint.clone()]);
            let (shared, event, targets) = (Arc::clone(shared), event.clone(), targets.clone());
            actix::spawn(async move {
                let id = event.id.clone();
                match send(&shared, event, targets, vec![attempt]).await {
                    Ok(outcome) => shared.outcomes.lock().push(outcome),
                    Err(error) => {
                        tracing::warn!(event = %id, %error, "delivery outcome not recorded; the event is sent again");
                        shared.busy.lock().remove(&id, [endpoint.as_str()]);
                    }
                }
            });
        }
    }
    Ok(taken + fresh)
}

/// The targets — (event, endpoint) — with an attempt under way or an outcome not written yet. Kept per
/// target, not per event: an endpoint whose attempt takes its whole time-out never holds the same event's
/// attempts to another endpoint.
#[derive(Debug, Clone, Default)]
struct InFlight(HashMap<String, HashSet<String>>);

impl InFlight {
    fn add(&mut self, event: &str, endpoints: impl IntoIterator<Item = String>) {
        self.0
            .entry(event.to_owned())
            .or_default()
            .extend(endpoints);
    }

    fn remove<'a>(&mut self, event: &str, endpoints: impl IntoIterator<Item = &'a str>) {
        if let Some(held) = self.0.get_mut(event) {
            for endpoint in endpoints {
                held.remove(endpoint);
            }
            if held.is_empty() {
                self.0.remove(event);
            }
        }
    }

    fn holds(&self, event: &str, endpoint: &str) -> bool {
        self.0
            .get(event)
            .is_some_and(|held| held.contains(endpoint))
    }

    /// Events with a target in flight.
    fn events(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Shared {
    /// Whether an earlier version of `transaction` than `version` is in a group still being sent.
    fn unsettled_before(&self, transaction: &str, version: i64) -> bool {
        earlier_in(&self.unsettled.lock(), transaction, version)
    }

    /// The endpoints that cannot take a request now: every slot in flight, or paused.
    fn held(&self) -> Vec<String> {
        let now = tokio::time::Instant::now();
        self.lanes
            .lock()
            .iter()
            .filter(|(_, lane)| {
                lane.permits.available_permits() == 0
                    || lane.paused_until.is_some_and(|until| until > now)
            })
            .map(|(id, _)| id.clone())
            .collect()
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
                // Never longer than the schedule's longest wait (as `verdict` caps it): a pause that
                // outlasts the schedule would keep the event from the attempts that dead-letter it.
                let pause = response
                    .retry_after
                    .unwrap_or(Duration::from_secs(5))
                    .min(Duration::from_secs(3600))
                    .min(verdict::longest_wait(&self.settings.retry_schedule));
                lane.paused_until = Some(tokio::time::Instant::now() + pause);
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

/// Whether `versions` (per transaction) holds a version of `transaction` earlier than `version`.
fn earlier_in(versions: &HashMap<String, Vec<i64>>, transaction: &str, version: i64) -> bool {
    versions
        .get(transaction)
        .is_some_and(|versions| versions.iter().any(|earlier| *earlier < version))
}
