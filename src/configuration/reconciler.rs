//! `[reconciler]`: when and how often operators are asked where payments stand.

use std::num::NonZeroU32;
use std::time::Duration;

use mmo_actors::reconciler::ReconcilerSettings;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigurationError};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ReconcilerConfig {
    /// Off: no questions are asked (expectations are still recorded).
    pub enabled: bool,
    pub interval_secs: u64,
    pub query_after_secs: u64,
    pub give_up_after_secs: u64,
    pub max_in_flight: usize,
    pub queries_per_minute: NonZeroU32,
    pub lease_secs: u64,
    pub backoff_initial_secs: u64,
    pub backoff_max_secs: u64,
    pub result_wait_secs: u64,
    /// How long expectations, and work items once closed, are kept in MongoDB.
    pub retention_days: u32,
}

impl ReconcilerConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigurationError> {
        let at_least_one = [
            ("interval_secs", self.interval_secs),
            ("lease_secs", self.lease_secs),
            ("backoff_initial_secs", self.backoff_initial_secs),
            ("result_wait_secs", self.result_wait_secs),
            ("give_up_after_secs", self.give_up_after_secs),
            ("max_in_flight", self.max_in_flight as u64),
        ];
        for (name, value) in at_least_one {
            if value == 0 {
                return Err(invalid(&format!("reconciler.{name}"), "must be at least 1"));
            }
        }
        if !(1..=super::storage::MAX_RETENTION_DAYS).contains(&self.retention_days) {
            return Err(invalid(
                "reconciler.retention_days",
                &format!(
                    "must be between 1 and {} (100 years)",
                    super::storage::MAX_RETENTION_DAYS
                ),
            ));
        }
        if self.backoff_max_secs < self.backoff_initial_secs {
            return Err(invalid(
                "reconciler.backoff_max_secs",
                "must be at least reconciler.backoff_initial_secs",
            ));
        }
        Ok(())
    }

    pub(super) fn settings(
        &self,
        confirm_by_query: Vec<&'static str>,
        pseudonymization_salt: Option<Vec<u8>>,
    ) -> ReconcilerSettings {
        ReconcilerSettings {
            interval: Duration::from_secs(self.interval_secs),
            query_after: Duration::from_secs(self.query_after_secs),
            give_up_after: Duration::from_secs(self.give_up_after_secs),
            max_in_flight: self.max_in_flight,
            queries_per_minute: self.queries_per_minute,
            lease: Duration::from_secs(self.lease_secs),
            backoff_initial: Duration::from_secs(self.backoff_initial_secs),
            backoff_max: Duration::from_secs(self.backoff_max_secs),
            result_wait: Duration::from_secs(self.result_wait_secs),
            confirm_by_query,
            pseudonymization_salt,
        }
    }
}
