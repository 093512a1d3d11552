//! Prometheus metrics: the `metrics` facade records (here and in `mmo-actors`), one recorder per process
//! collects, and `GET /metrics` renders the text exposition format for an admin token.
//!
//! Every metric is described here (its HELP line) and listed in docs/operating.md (Metrics). Durations
//! are histograms in seconds; the journal's group commit size is a histogram of appends per commit.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for every `*_seconds` histogram: from a fraction of a millisecond (an fsync on a fast disk) to
/// ten seconds (a MongoDB operation timing out).
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Appends per journal commit.
const GROUP_SIZES: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The process's recorder, installed once (tests start several applications in one process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full("mmo_journal_group_commit_size".to_owned()),
                    GROUP_SIZES,
                )
            })
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then that one keeps recording.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric the service records: name, kind, unit, meaning (its HELP line; docs/operating.md lists them).
pub const METRICS: &[(&str, Kind, &str)] = &[
    (
        "mmo_callbacks_total",
        Kind::Counter,
        "Callbacks by provider, callback type and outcome: stored, repeat, conflict (as MongoDB now holds them), quarantined (refused as unreadable).",
    ),
    (
        "mmo_http_requests_total",
        Kind::Counter,
        "HTTP requests by route pattern and status.",
    ),
    (
        "mmo_http_request_duration_seconds",
        Kind::Histogram,
        "Time to answer an HTTP request, by route pattern.",
    ),
    (
        "mmo_auth_refusals_total",
        Kind::Counter,
        "Callbacks refused for authentication, by provider and reason (unauthorized, invalid_signature).",
    ),
    (
        "mmo_rate_limited_total",
        Kind::Counter,
        "Requests refused with 429, by limit (webhooks, health, provider_sources).",
    ),
    (
        "mmo_unauthenticated_unkept_total",
        Kind::Counter,
        "Bodies of unauthenticated requests not kept because their quarantine budget was spent (or 1,024 were being kept at that moment).",
    ),
    (
        "mmo_journal_backlog_entries",
        Kind::Gauge,
        "Entries in the local journal not yet applied to MongoDB.",
    ),
    (
        "mmo_journal_backlog_bytes",
        Kind::Gauge,
        "Bytes of entries in the local journal not yet applied to MongoDB.",
    ),
    (
        "mmo_journal_oldest_entry_age_seconds",
        Kind::Gauge,
        "Age of the oldest entry still in the journal (0 when empty).",
    ),
    (
        "mmo_journal_healthy",
        Kind::Gauge,
        "1 when the journal's writer is alive and its last commit succeeded.",
    ),
    (
        "mmo_journal_fsync_duration_seconds",
        Kind::Histogram,
        "Time of one durable journal commit (its fsync).",
    ),
    (
        "mmo_journal_group_commit_size",
        Kind::Histogram,
        "Appends sharing one durable journal commit.",
    ),
    (
        "mmo_drain_applied_total",
        Kind::Counter,
        "Journal entries applied to MongoDB.",
    ),
    (
        "mmo_drain_batch_duration_seconds",
        Kind::Histogram,
        "Time to apply one batch of journal entries to MongoDB.",
    ),
    (
        "mmo_drain_poisoned_total",
        Kind::Counter,
        "Journal entries quarantined after failing journal.max_attempts times.",
    ),
    (
        "mmo_mongodb_write_duration_seconds",
        Kind::Histogram,
        "Time of one MongoDB write operation, by collection.",
    ),
    (
        "mmo_mongodb_reachable",
        Kind::Gauge,
        "1 when the last background check reached MongoDB.",
    ),
    (
        "mmo_actor_restarts_total",
        Kind::Counter,
        "Actors started afresh after a failure, by pool.",
    ),
    (
        "mmo_mailbox_rejections_total",
        Kind::Counter,
        "Messages refused because an actor's mailbox was full (answered 503), by pool.",
    ),
    (
        "mmo_unknown_result_codes_total",
        Kind::Counter,
        "Callbacks carrying a result code no table knows (stored as unknown), by provider.",
    ),
    (
        "mmo_airtel_hash_checks_total",
        Kind::Counter,
        "Airtel hash checks by the form that matched (raw_transaction, body_without_hash, transaction_envelope), none or absent.",
    ),
    (
        "mmo_expectations_total",
        Kind::Counter,
        "Expectations registered (POST /v1/expectations, first time only), by provider.",
    ),
    (
        "mmo_reconciler_queries_total",
        Kind::Counter,
        "Status queries sent to operators by the reconciler, by provider.",
    ),
    (
        "mmo_reconciler_answers_total",
        Kind::Counter,
        "Operators' answers to status queries by provider and outcome: final, pending, not_found, requested (answered later), throttled, error.",
    ),
    (
        "mmo_reconciler_recovered_total",
        Kind::Counter,
        "Transactions whose final status was recovered by a status query (no final callback had come), by provider.",
    ),
    (
        "mmo_reconciler_resolved_total",
        Kind::Counter,
        "Reconciliations closed with a final status, by provider and by whom: callback, status_query, both, conflict.",
    ),
    (
        "mmo_reconciler_unresolved_total",
        Kind::Counter,
        "Transactions the reconciler gave up on without a final status (flagged unresolved), by provider.",
    ),
    (
        "mmo_reconciler_claims_lost_total",
        Kind::Counter,
        "Reconciliation claims lost while being worked on (the lease lapsed and another instance took the item over), by provider.",
    ),
    (
        "mmo_delivery_attempts_total",
        Kind::Counter,
        "Event deliveries attempted, by endpoint and outcome: delivered, retry, failed (dead letter), gone (410: endpoint disabled).",
    ),
    (
        "mmo_delivery_latency_seconds",
        Kind::Histogram,
        "Time from a change's acknowledgement (its callback's arrival) to the first successful delivery of its event to an endpoint.",
    ),
    (
        "mmo_delivery_events_due",
        Kind::Gauge,
        "Events due for delivery and not sent yet, counted up to 10,000 by the sending instance every 500 ms: a number that stays high means a backlog.",
    ),
    (
        "mmo_delivery_feed_lag_seconds",
        Kind::Gauge,
        "How far the sending instance's feed of new events is behind: the time since the last change whose event it has recorded (0 while idle), set each time its position is saved. A number that grows means delivery is behind the drain.",
    ),
    (
        "mmo_delivery_feed_caught_up_total",
        Kind::Counter,
        "Events queued from the transactions' documents because the feed's position had left the oplog (the sender was stopped longer than the oplog's window); earlier versions written during that outage were not sent. Should stay 0: size the oplog.",
    ),
    (
        "mmo_delivery_dead_letters_total",
        Kind::Counter,
        "Events that failed every attempt for an endpoint (dead letters, kept until replayed).",
    ),
    (
        "mmo_delivery_endpoints_disabled",
        Kind::Gauge,
        "Endpoints disabled (410 Gone, failing for delivery.disable_after_secs, or by hand).",
    ),
];

fn describe() {
    for (name, kind, help) in METRICS {
        match kind {
            Kind::Counter => describe_counter!(*name, *help),
            Kind::Gauge => describe_gauge!(*name, *help),
            Kind::Histogram if name.ends_with("_seconds") => {
                describe_histogram!(*name, Unit::Seconds, *help)
            }
            Kind::Histogram => describe_histogram!(*name, *help),
        }
    }
}
