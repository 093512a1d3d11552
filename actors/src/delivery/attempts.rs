//! One event's attempts: which of its targets can be attempted now ([`plan`]), and sending it to them
//! and judging the answers ([`send`]). Both delivery paths use them: new events from their group read from the feed, and
//! retries from `events`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use mongodb::bson::{doc, Document};
use rand::Rng;
use tokio::sync::OwnedSemaphorePermit;

use super::sender::{truncate, Attempted, RESPONSE_KEPT};
use super::store::EndpointRecord;
use super::verdict::{verdict, Verdict};
use super::{Attempt, Shared};
use crate::store::events::{Outcome, PendingEvent, Target};

/// What a round can do with one event now.
pub(super) struct Plan {
    /// Its targets as they stand: a deleted endpoint's failed, a disabled one's put off a minute.
    pub(super) targets: Vec<Target>,
    /// The attempts it may start now, each with its endpoint's slot.
    pub(super) attempts: Vec<(usize, Arc<EndpointRecord>, OwnedSemaphorePermit)>,
    /// A due target waits: an earlier version is pending for its endpoint, or the lease ends too soon.
    pub(super) waiting: bool,
    /// A target was put off (its endpoint disabled).
    pub(super) put_off: bool,
}

/// Decides, for each of an event's due targets, whether it can be attempted now: its endpoint exists
/// and is enabled, no earlier version is pending for it (`blocked_for`), the lease outlasts a request,
/// and a slot frees within `admission_wait` (an endpoint without one joins `saturated`, which later
/// events of the round skip at once).
#[allow(clippy::too_many_arguments)]
pub(super) async fn plan(
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

/// What an attempt changed about its endpoint's run of failures (kept in the endpoint's document, so
/// that a restart or another instance counts from the same start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failing {
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
pub(super) async fn send(
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
        // A note on the endpoint, not the event's outcome: a failure to write it is logged and never
        // turns a delivered event into one sent again.
        let noted = match failing {
            Failing::Since(at) => shared.store.failing(&endpoint.id, Some(at)).await,
            Failing::Recovered => shared.store.failing(&endpoint.id, None).await,
            Failing::Unchanged | Failing::TooLong => Ok(()),
        };
        if let Err(error) = noted {
            tracing::warn!(endpoint = %endpoint.id, %error, "the endpoint's failing state not written");
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
            shared.store.disable(&endpoint.id, reason, now).await?;
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
            "at": mongodb::bson::DateTime::from_chrono(attempted.at),
            "status_code": status,
            "duration_ms": attempted.duration.as_millis() as i64,
            "response": response.map(|body| truncate(body, RESPONSE_KEPT)),
            "error": error.map(|error| truncate(error, RESPONSE_KEPT)),
        });
    }
    Ok(Outcome::changed(
        event.id,
        event.targets.as_deref(),
        targets,
        attempts,
    ))
}
