//! New events: read from the feed (the change stream of the writes that carried them, see
//! [`crate::store::events::feed`]), sent once, then inserted into `events` with what became of them.
//!
//! A group is what one read of the feed returns (at most `delivery.batch` changes). Groups are numbered
//! in feed order; the feed's position moves past a group only once it and every earlier group are in
//! `events`, so a new sender (after a crash, or a lease handed over) resumes before anything not yet
//! recorded. Changes read again after the feed was reopened are skipped while their group is being
//! settled ([`Shared::unsettled`]) or once they are in `events` (the `known` check), so nothing recorded
//! is sent twice. A transaction's later version waits for an earlier one being sent (it goes to `events`
//! pending, behind it), and for one pending in `events`: the feed gives versions in commit order, and
//! the gate does the rest.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

use chrono::Utc;
use mongodb::bson::Document;

use super::attempts::{plan, send};
use super::store::EndpointRecord;
use super::{Shared, FEED_WAIT, FIRST_ADMISSION_WAIT, GROUPS_IN_FLIGHT, IDLE_SAVE_EVERY};
use crate::store::events::feed::{Change, Feed, FeedError, Position};
use crate::store::events::{merge_targets, state, with_state, Outcome, PendingEvent, Target};

/// A group of changes read from the feed, not yet taken on.
pub(super) struct NewGroup {
    changes: Vec<Change>,
    group: u64,
}

/// Reads the next group of new events from the feed, unless [`GROUPS_IN_FLIGHT`] groups are being sent.
/// Read before the round reads the endpoints: an event is signed and routed with what the endpoints were
/// at least when it was read.
pub(super) async fn read_new(shared: &Arc<Shared>) -> Result<Option<NewGroup>, crate::StoreError> {
    if shared.groups_in_flight.load(Ordering::SeqCst) >= GROUPS_IN_FLIGHT {
        return Ok(None);
    }
    Ok(read_feed(shared)
        .await?
        .map(|(changes, group)| NewGroup { changes, group }))
}

/// A group read and not taken on (the round failed): its events are read again from the saved position
/// next round, so none is lost.
pub(super) async fn give_back(shared: &Shared, group: NewGroup) {
    shared.feed.lock().await.take();
    shared.feed_position.forget(group.group);
}

/// Plans each event of `group` as a round does (waiting up to [`FIRST_ADMISSION_WAIT`] for a slot) and
/// starts its attempts; [`settle`] then inserts the events into `events` with their outcomes. Returns
/// how many events it took on.
///
/// Version order: a transaction's later version is not attempted while an earlier one of it is being
/// sent (it goes to `events` pending, behind the earlier one), and neither is a version whose
/// transaction has an earlier one pending in `events`.
pub(super) async fn send_new(
    shared: &Arc<Shared>,
    endpoints: &HashMap<String, Arc<EndpointRecord>>,
    lease_ends: tokio::time::Instant,
    group: NewGroup,
) -> Result<usize, crate::StoreError> {
    let number = group.group;
    match take_on(shared, endpoints, lease_ends, group.changes, number).await {
        Ok(taken) => Ok(taken),
        Err(error) => {
            shared.feed.lock().await.take();
            shared.feed_position.forget(number);
            Err(error)
        }
    }
}

/// Plans and starts the first attempts of the events a group read from the feed (see [`send_new`]).
async fn take_on(
    shared: &Arc<Shared>,
    endpoints: &HashMap<String, Arc<EndpointRecord>>,
    lease_ends: tokio::time::Instant,
    changes: Vec<Change>,
    group: u64,
) -> Result<usize, crate::StoreError> {
    let now = Utc::now();
    // Read again after the feed was reopened, while its group is being settled: skipped. Checked
    // before `events` is: an event leaves `unsettled` only once it is in `events`.
    let read: Vec<(Document, PendingEvent)> = {
        let unsettled = shared.unsettled.lock();
        changes
            .into_iter()
            .filter_map(|change| {
                let event = PendingEvent::from_document(&change.event)?;
                Some((change.event, event))
            })
            .filter(|(_, event)| {
                !unsettled
                    .get(&event.transaction_id)
                    .is_some_and(|versions| versions.contains(&event.version))
            })
            .collect()
    };
    let known = {
        let ids: Vec<&str> = read.iter().map(|(_, event)| event.id.as_str()).collect();
        shared.events.known(&ids).await?
    };
    let fresh: Vec<(Document, PendingEvent)> = read
        .into_iter()
        .filter(|(_, event)| !known.contains(&event.id))
        .collect();
    let versions: Vec<(&str, i64)> = fresh
        .iter()
        .map(|(_, event)| (event.transaction_id.as_str(), event.version))
        .collect();
    // Copied before `events` is read (see `round`): with the read, it sees every earlier version.
    let unsettled_before = shared.unsettled.lock().clone();
    let earlier = shared.events.pending_of(&versions).await?;
    shared.groups_in_flight.fetch_add(1, Ordering::SeqCst);

    let mut started: HashSet<String> = HashSet::new();
    let mut saturated: HashSet<String> = HashSet::new();
    let mut planned = Vec::with_capacity(fresh.len());
    for (document, event) in fresh {
        let behind = started.contains(&event.transaction_id)
            || super::earlier_in(&unsettled_before, &event.transaction_id, event.version)
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
        // Every version in the group counts: a later one in this group waits for the earlier.
        started.insert(event.transaction_id.clone());
        // One task per endpoint, each with its own outcome (see `round`).
        let sending: Vec<Sending> = plan
            .attempts
            .into_iter()
            .map(|attempt| {
                let endpoint = attempt.1.id.clone();
                let (answer, answered) = tokio::sync::oneshot::channel();
                let (shared, event, targets) =
                    (Arc::clone(shared), event.clone(), plan.targets.clone());
                actix::spawn(async move {
                    let _ = answer.send(send(&shared, event, targets, vec![attempt]).await);
                });
                (endpoint, answered)
            })
            .collect();
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
    actix::spawn(settle(shared, planned, group));
    Ok(taken)
}

/// An attempt under way: its endpoint, and where its outcome will come.
type Sending = (
    String,
    tokio::sync::oneshot::Receiver<Result<Outcome, crate::StoreError>>,
);

type Planned = (Document, PendingEvent, Vec<Target>, Vec<Sending>);

/// Waits for a group's first attempts (up to `delivery.first_attempt_wait_ms`), then inserts its events
/// into `events` with their outcomes — retrying while MongoDB does not take them, as they must not be
/// sent again — and moves the feed's position past it once every earlier group is in as well. An
/// attempt still in flight leaves its event pending and `busy` (the retry path does not send it
/// meanwhile); its outcome is recorded, once the event is in `events`, as a retry's is.
async fn settle(shared: Arc<Shared>, planned: Vec<Planned>, group: u64) {
    let deadline = tokio::time::Instant::now() + shared.settings.first_attempt_wait;
    let now = Utc::now();
    let retention = shared.settings.retention;
    let mut documents = Vec::with_capacity(planned.len());
    let mut late = Vec::new();
    let mut transactions = Vec::with_capacity(planned.len());
    for (document, event, mut targets, sending) in planned {
        transactions.push((event.transaction_id.clone(), event.version));
        let mut attempts = Vec::new();
        for (endpoint, mut answered) in sending {
            match tokio::time::timeout_at(deadline, &mut answered).await {
                Ok(Ok(Ok(outcome))) => {
                    targets = merge_targets(targets, outcome.targets);
                    attempts.extend(outcome.attempts);
                }
                Ok(Ok(Err(error))) => {
                    tracing::warn!(event = %event.id, %error, "delivery outcome not recorded; the event is sent again");
                }
                Ok(Err(_)) => {}
                Err(_) => late.push((event.id.clone(), endpoint, answered)),
            }
        }
        let state = state(&targets, now, retention);
        documents.push(with_state(document, state, attempts));
    }
    {
        let mut busy = shared.busy.lock();
        for (id, endpoint, _) in &late {
            busy.add(id, [endpoint.clone()]);
        }
    }
    let mut backoff = Duration::from_millis(100);
    shared.feed_position.turn_to_insert(group).await;
    while let Err(error) = shared.events.insert_events(&documents).await {
        tracing::warn!(%error, events = documents.len(), "new events not inserted into `events` yet; retrying");
        tokio::time::sleep(backoff).await;
        backoff = crate::backoff::doubled(backoff, 1, Duration::from_secs(5));
    }
    shared.feed_position.done_inserting(group);
    shared.groups_in_flight.fetch_sub(1, Ordering::SeqCst);
    if let Some(position) = shared.feed_position.settled(group) {
        save_position(&shared, &position).await;
    }
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
    for (id, endpoint, answered) in late {
        let shared = Arc::clone(&shared);
        actix::spawn(async move {
            match answered.await {
                Ok(Ok(outcome)) => shared.outcomes.lock().push(outcome),
                _ => {
                    shared.busy.lock().remove(&id, [endpoint.as_str()]);
                }
            }
        });
    }
}

/// Reads up to `delivery.batch` changes from the feed — opened at its saved position when it is not
/// open — and numbers them as a group, with the position after it. `None`: nothing new. While nothing
/// comes, the idle position is saved now and then, so that a quiet feed's position never ages out of the
/// oplog.
async fn read_feed(shared: &Arc<Shared>) -> Result<Option<(Vec<Change>, u64)>, crate::StoreError> {
    let mut stream = shared.feed.lock().await;
    if stream.is_none() {
        let feed = shared.events.feed();
        // A database no instance has written to yet has no position: it gets one (unless another
        // instance gives it one first), and the feed opens at whichever was saved.
        let position = match feed.position().await? {
            Some(position) => position,
            None => {
                feed.start_here().await?;
                feed.position().await?.ok_or_else(|| {
                    crate::StoreError::Unavailable("the feed's position was not saved".into())
                })?
            }
        };
        match feed
            .open(Some(position.token.clone()), FEED_WAIT, feed_batch(shared))
            .await
        {
            Ok(opened) => *stream = Some(opened),
            Err(FeedError::HistoryLost(message)) => {
                *stream = Some(catch_up(shared, position.at, &message).await?);
            }
            Err(FeedError::Store(error)) => return Err(error),
        }
    }
    let opened = stream.as_mut().expect("opened above");
    let limit = usize::try_from(shared.settings.batch).unwrap_or(256);
    let (changes, token) = match Feed::next(opened, limit).await {
        Ok(read) => read,
        Err(error) => {
            // Reopened at the saved position next round (a feed that fell out of the oplog catches up).
            stream.take();
            return Err(error.into_store());
        }
    };
    let Some(token) = token else {
        return Ok(None);
    };
    let at = changes.iter().filter_map(|change| change.at).max();
    let position = Position {
        token,
        at: at.unwrap_or_else(Utc::now),
    };
    if changes.is_empty() {
        if let Some(position) = shared.feed_position.idle(position) {
            drop(stream);
            save_position(shared, &position).await;
        }
        return Ok(None);
    }
    Ok(Some((changes, shared.feed_position.read(position))))
}

/// How many changes one read of the feed brings from MongoDB: a group's worth.
fn feed_batch(shared: &Shared) -> u32 {
    u32::try_from(shared.settings.batch).unwrap_or(256).max(1)
}

/// Saves the feed's position (the lease's holder only); a failure is left to the next save.
async fn save_position(shared: &Shared, position: &Position) {
    match shared.events.feed().save(&shared.instance, position).await {
        Ok(true) => {
            let lag = (Utc::now() - position.at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::gauge!("mmo_delivery_feed_lag_seconds").set(lag);
        }
        Ok(false) => {
            tracing::info!("the sending lease moved on; its new holder keeps the feed's position")
        }
        Err(error) => {
            tracing::warn!(%error, "the feed's position not saved; the next save moves it")
        }
    }
}

/// The feed's history was lost (its position is older than the oplog): opens it from now, then queues in
/// `events` the last event of every transaction changed since `since` that is not there yet, for the
/// retry path to send. Returns the opened feed.
async fn catch_up(
    shared: &Arc<Shared>,
    since: chrono::DateTime<Utc>,
    why: &str,
) -> Result<mongodb::change_stream::ChangeStream<Document>, crate::StoreError> {
    tracing::error!(
        %since, why,
        "the feed of new events lost its place in the oplog (the sender was stopped longer than the oplog's window); \
         queueing the last event of every transaction changed since, earlier versions written meanwhile are not sent"
    );
    let feed = shared.events.feed();
    let opened = feed
        .open(None, FEED_WAIT, feed_batch(shared))
        .await
        .map_err(FeedError::into_store)?;
    // An hour before the position's time: a change whose writer's clock lags, or whose write was held
    // up (retries, a failover), is caught up too. Far below the retention of delivered events, so none
    // that expired from `events` is sent again.
    let since = since - chrono::Duration::hours(1);
    let mut after: Option<String> = None;
    let mut queued = 0_u64;
    loop {
        let changes = feed
            .written_since(since, after.as_deref(), shared.settings.batch)
            .await?;
        let Some(last) = changes.last() else {
            break;
        };
        after = Some(last.transaction.clone());
        let events: Vec<(Document, PendingEvent)> = changes
            .into_iter()
            .filter_map(|change| {
                let event = PendingEvent::from_document(&change.event)?;
                Some((change.event, event))
            })
            .collect();
        // Being sent from the feed already (groups still settling): their own group inserts them.
        let unsettled = shared.unsettled.lock().clone();
        let known = {
            let ids: Vec<&str> = events.iter().map(|(_, event)| event.id.as_str()).collect();
            shared.events.known(&ids).await?
        };
        let now = Utc::now();
        let documents: Vec<Document> = events
            .into_iter()
            .filter(|(_, event)| !known.contains(&event.id))
            .filter(|(_, event)| {
                !unsettled
                    .get(&event.transaction_id)
                    .is_some_and(|versions| versions.contains(&event.version))
            })
            .map(|(document, event)| {
                let targets = event.targets.unwrap_or_default();
                let state = state(&targets, now, shared.settings.retention);
                with_state(document, state, Vec::new())
            })
            .collect();
        queued += documents.len() as u64;
        shared.events.insert_events(&documents).await?;
    }
    metrics::counter!("mmo_delivery_feed_caught_up_total").increment(queued);
    tracing::warn!(
        queued,
        "the feed caught up from the transactions; it reads from now on"
    );
    Ok(opened)
}

/// The groups read from the feed and not yet settled, in feed order, each with the position after it:
/// the saved position moves past a group only when it and every group before it are in `events`.
#[derive(Default)]
pub(super) struct FeedPositions {
    inner: parking_lot::Mutex<Positions>,
    /// Wakes the groups waiting for their turn to be inserted into `events`.
    turns: tokio::sync::Notify,
}

#[derive(Default)]
struct Positions {
    next_group: u64,
    /// (group, the position after it, whether its events are in `events`).
    groups: std::collections::VecDeque<(u64, Position, bool)>,
    /// When an idle position was last handed out to be saved.
    idle_saved: Option<tokio::time::Instant>,
    /// The first group not yet inserted into `events` (nor forgotten): groups are inserted in feed
    /// order, so that a version in `events` means every earlier version from the feed is there too —
    /// whatever a new sender finds after a crash.
    next_insert: u64,
    /// Groups inserted or forgotten after `next_insert`.
    done: std::collections::BTreeSet<u64>,
}

impl FeedPositions {
    /// A group was read, up to `position`: its number.
    fn read(&self, position: Position) -> u64 {
        let mut inner = self.inner.lock();
        let group = inner.next_group;
        inner.next_group += 1;
        inner.groups.push_back((group, position, false));
        group
    }

    /// `group` is in `events`: the position to save, if the front of the queue moved.
    fn settled(&self, group: u64) -> Option<Position> {
        let mut inner = self.inner.lock();
        if let Some(entry) = inner.groups.iter_mut().find(|entry| entry.0 == group) {
            entry.2 = true;
        }
        let mut passed = None;
        while inner.groups.front().is_some_and(|entry| entry.2) {
            passed = inner.groups.pop_front().map(|entry| entry.1);
        }
        passed
    }

    /// The feed read nothing up to `position`: the position to save, when no group is unsettled and
    /// the last idle save is [`IDLE_SAVE_EVERY`] old.
    fn idle(&self, position: Position) -> Option<Position> {
        let mut inner = self.inner.lock();
        let due = inner
            .idle_saved
            .is_none_or(|saved| saved.elapsed() >= IDLE_SAVE_EVERY);
        if !inner.groups.is_empty() || !due {
            return None;
        }
        inner.idle_saved = Some(tokio::time::Instant::now());
        Some(position)
    }

    /// `group` will not be settled (its events are read again from the saved position).
    fn forget(&self, group: u64) {
        self.inner.lock().groups.retain(|entry| entry.0 != group);
        self.done_inserting(group);
    }

    /// Waits until every group before `group` is in `events` (or forgotten).
    async fn turn_to_insert(&self, group: u64) {
        loop {
            // Registered before the check: a wake-up in between is not missed.
            let woken = self.turns.notified();
            if self.inner.lock().next_insert >= group {
                return;
            }
            woken.await;
        }
    }

    /// `group` is in `events` (or will never be): the next group's turn.
    fn done_inserting(&self, group: u64) {
        {
            let mut inner = self.inner.lock();
            inner.done.insert(group);
            loop {
                let next = inner.next_insert;
                if !inner.done.remove(&next) {
                    break;
                }
                inner.next_insert += 1;
            }
        }
        self.turns.notify_waiters();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.inner.lock().groups.is_empty()
    }
}
