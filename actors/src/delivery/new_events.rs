//! New events: sent once straight from their transactions' outboxes, where each was written by its
//! change's own write, then moved to `events` with what became of them (see [`crate::store::events`]).
//!
//! A group is the transactions one read returns (at most `delivery.batch`). A transaction belongs to one
//! group at a time: it is in [`Shared::outboxes`] from the read that takes it until its events are pulled
//! from its outbox, and every later read skips it. So a read never returns an event that was settled
//! already (it starts after the pull was acknowledged), and a transaction's later events wait for its
//! earlier ones by construction, not by timing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

use chrono::Utc;
use mongodb::bson::Document;

use super::attempts::{plan, send};
use super::outbox::{self, EndpointRecord, Outcome, PendingEvent, Target};
use super::{Shared, FIRST_ADMISSION_WAIT, GROUPS_IN_FLIGHT};

/// Takes on the transactions with the oldest new events (unless [`GROUPS_IN_FLIGHT`] groups are being
/// sent): plans each event as a round does (waiting up to [`FIRST_ADMISSION_WAIT`] for a slot) and
/// starts its attempts; [`settle`] then moves the events to `events` with their outcomes. Returns how
/// many events it took on.
///
/// Version order: a transaction's later version is not attempted while an earlier one of it is being
/// sent (it goes to `events` pending, behind the earlier one), and neither is a version whose
/// transaction has an earlier one pending in `events`.
pub(super) async fn send_new(
    shared: &Arc<Shared>,
    endpoints: &HashMap<String, Arc<EndpointRecord>>,
    lease_ends: tokio::time::Instant,
) -> Result<usize, crate::StoreError> {
    if shared.groups_in_flight.load(Ordering::SeqCst) >= GROUPS_IN_FLIGHT {
        return Ok(0);
    }
    // Taken before the read: a transaction leaves `outboxes` only after its events were pulled, so
    // one that is not skipped here is read as it is since that pull.
    let skip: Vec<String> = shared.outboxes.lock().iter().cloned().collect();
    let found = shared
        .outbox
        .new_events(&skip, shared.settings.batch)
        .await?;
    if found.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    let transactions: Vec<String> = found
        .iter()
        .map(|found| found.transaction.clone())
        .collect();
    let ids: Vec<String> = found
        .iter()
        .flat_map(|found| found.events.iter().map(|(_, event)| event.id.clone()))
        .collect();
    let known = {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        shared.outbox.known(&ids).await?
    };
    let fresh: Vec<(Document, PendingEvent)> = found
        .into_iter()
        .flat_map(|found| found.events)
        .filter(|(_, event)| !known.contains(&event.id))
        .collect();
    let versions: Vec<(&str, i64)> = fresh
        .iter()
        .map(|(_, event)| (event.transaction_id.as_str(), event.version))
        .collect();
    let earlier = shared.outbox.pending_of(&versions).await?;
    shared.outboxes.lock().extend(transactions.iter().cloned());
    shared.groups_in_flight.fetch_add(1, Ordering::SeqCst);

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
    actix::spawn(settle(shared, transactions, ids, planned));
    Ok(taken)
}

/// An attempt under way: its endpoint, and where its outcome will come.
type Sending = (
    String,
    tokio::sync::oneshot::Receiver<Result<Outcome, crate::StoreError>>,
);

type Planned = (Document, PendingEvent, Vec<Target>, Vec<Sending>);

/// Waits for a group's first attempts (up to `delivery.first_attempt_wait_ms`), then inserts its events
/// into `events` with their outcomes and pulls them from their transactions' outboxes (`ids`: every
/// event read, those found in `events` already included) — retrying while MongoDB does not take them,
/// as they must not be sent again. An attempt still in flight leaves its event pending and `busy` (the
/// retry path does not send it meanwhile); its outcome is recorded, once the event is in `events`, as a
/// retry's is.
async fn settle(
    shared: Arc<Shared>,
    outboxes: Vec<String>,
    ids: Vec<String>,
    planned: Vec<Planned>,
) {
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
                    targets = outbox::merge_targets(targets, outcome.targets);
                    attempts.extend(outcome.attempts);
                }
                Ok(Ok(Err(error))) => {
                    tracing::warn!(event = %event.id, %error, "delivery outcome not recorded; the event is sent again");
                }
                Ok(Err(_)) => {}
                Err(_) => late.push((event.id.clone(), endpoint, answered)),
            }
        }
        let state = outbox::state(&targets, now, retention);
        documents.push(outbox::with_state(document, state, attempts));
    }
    {
        let mut busy = shared.busy.lock();
        for (id, endpoint, _) in &late {
            busy.add(id, [endpoint.clone()]);
        }
    }
    let mut backoff = Duration::from_millis(100);
    while let Err(error) = shared.outbox.settle(&documents, &outboxes, &ids).await {
        tracing::warn!(%error, events = documents.len(), "new events not moved from their outboxes to `events` yet; retrying");
        tokio::time::sleep(backoff).await;
        backoff = crate::backoff::doubled(backoff, 1, Duration::from_secs(5));
    }
    {
        let mut taken = shared.outboxes.lock();
        for transaction in &outboxes {
            taken.remove(transaction);
        }
    }
    shared.groups_in_flight.fetch_sub(1, Ordering::SeqCst);
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
