//! `[mongodb]`, `[journal]` and `[quarantine]`: where callbacks are kept, and for how long what was
//! refused is kept.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use mmo_actors::journal::JournalOptions;
use mmo_actors::store::MongoSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::lists::redacted;
use super::{invalid, ConfigurationError};

/// The most delivery ids a stored callback remembers; a drain batch must not be larger, so that an entry
/// applied again after a crash always finds its delivery id.
const MAX_DRAIN_BATCH: usize = 1000;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MongoDbSettings {
    /// May carry credentials, hence secret.
    #[serde(serialize_with = "redacted")]
    pub uri: SecretString,
    pub database: String,
    pub server_selection_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Upper bound on one MongoDB operation (a drain batch, a query).
    pub operation_timeout_ms: u64,
    /// How often reachability is checked for `/readyz` and metrics (probes read the last answer).
    pub ping_interval_ms: u64,
}

impl MongoDbSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigurationError> {
        for (key, value) in [
            ("mongodb.operation_timeout_ms", self.operation_timeout_ms),
            (
                "mongodb.server_selection_timeout_ms",
                self.server_selection_timeout_ms,
            ),
            ("mongodb.connect_timeout_ms", self.connect_timeout_ms),
            ("mongodb.ping_interval_ms", self.ping_interval_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.database.trim().is_empty() {
            return Err(invalid("mongodb.database", "is empty"));
        }
        Ok(())
    }
}

/// The local durable journal callbacks are written to before they are acknowledged.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct JournalSettings {
    pub dir: PathBuf,
    /// Largest backlog of callbacks kept; beyond it callbacks are answered 503 instead of acknowledged.
    pub max_bytes: u64,
    /// Sync policy: how long appends are gathered into one commit (one fsync); 0 = as soon as possible.
    pub commit_window_ms: u64,
    /// Entries the drain writes to MongoDB per batch.
    pub drain_batch: NonZeroUsize,
    /// Batches the drain writes at once (of different transactions).
    pub drain_pipeline: NonZeroUsize,
    /// Attempts before an entry that keeps failing (not for unavailability) is quarantined.
    pub max_attempts: u32,
    /// On shutdown, how long to keep draining to MongoDB before exiting (the rest waits for the next start).
    pub shutdown_drain_secs: u64,
    /// The journal's page cache: its memory, whatever the backlog.
    pub cache_bytes: usize,
}

impl JournalSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigurationError> {
        if self.max_attempts == 0 {
            return Err(invalid("journal.max_attempts", "must be at least 1"));
        }
        if self.max_bytes < 1024 * 1024 {
            return Err(invalid("journal.max_bytes", "must be at least 1 MiB"));
        }
        if self.drain_batch.get() > MAX_DRAIN_BATCH {
            return Err(invalid(
                "journal.drain_batch",
                &format!(
                    "must be at most {MAX_DRAIN_BATCH} (the delivery ids a callback remembers)"
                ),
            ));
        }
        Ok(())
    }

    pub fn options(&self, quarantine: &QuarantineSettings) -> JournalOptions {
        JournalOptions {
            dir: self.dir.clone(),
            max_bytes: self.max_bytes,
            commit_window: Duration::from_millis(self.commit_window_ms),
            cache_bytes: self.cache_bytes,
            unauthenticated_max_bytes: quarantine.unauthenticated_max_bytes,
            unauthenticated_client_share: quarantine.unauthenticated_client_share,
        }
    }
}

/// What is kept of refused bodies.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct QuarantineSettings {
    /// Bodies of unauthenticated requests waiting in the journal, at most (a budget apart from
    /// `journal.max_bytes`: an anonymous flood never crowds out callbacks). Past it the 401 still goes out;
    /// the body is counted and sampled in the logs, not kept.
    pub unauthenticated_max_bytes: u64,
    /// The share of that budget one client may hold (0 to 1).
    pub unauthenticated_client_share: f64,
    /// Days the bodies of unauthenticated requests are kept in `rejected_callbacks`; those of
    /// authenticated senders are never expired.
    pub unauthenticated_retention_days: u32,
}

/// The longest any retention setting may be, in days.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

impl QuarantineSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigurationError> {
        if !(self.unauthenticated_client_share > 0.0 && self.unauthenticated_client_share <= 1.0) {
            return Err(invalid(
                "quarantine.unauthenticated_client_share",
                "must be greater than 0 and at most 1",
            ));
        }
        // Bounded so that `received_at + retention` stays a date MongoDB and chrono can hold.
        if !(1..=MAX_RETENTION_DAYS).contains(&self.unauthenticated_retention_days) {
            return Err(invalid(
                "quarantine.unauthenticated_retention_days",
                &format!("must be between 1 and {MAX_RETENTION_DAYS} (100 years)"),
            ));
        }
        Ok(())
    }
}

/// The store's settings, from `[mongodb]` and `[quarantine]`.
pub fn mongo(
    mongodb: &MongoDbSettings,
    quarantine: &QuarantineSettings,
    reconciliation_retention_days: u32,
    confirm_by_query: Vec<&'static str>,
) -> MongoSettings {
    MongoSettings {
        uri: mongodb.uri.expose_secret().to_owned(),
        database: mongodb.database.clone(),
        server_selection_timeout: Duration::from_millis(mongodb.server_selection_timeout_ms),
        connect_timeout: Duration::from_millis(mongodb.connect_timeout_ms),
        operation_timeout: Duration::from_millis(mongodb.operation_timeout_ms),
        unauthenticated_retention: Duration::from_secs(
            u64::from(quarantine.unauthenticated_retention_days) * 86_400,
        ),
        reconciliation_retention: Duration::from_secs(
            u64::from(reconciliation_retention_days) * 86_400,
        ),
        confirm_by_query,
    }
}
