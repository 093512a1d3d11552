//! `[reconciler]`: when and how often operators are asked where payments stand.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use mmo_actors::reconciler::ReconcilerSettings;
use mmo_actors::PROVIDERS;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigurationError, ProviderSettings};

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

    /// A claim's lease must outlast the longest question to every operator whose status API is
    /// configured: minting a token and then the status request, each bounded by that operator's
    /// `request_timeout_secs`. Renewals keep a slower question's lease alive, but they are writes that
    /// can fail; with a lease no question can outrun, a failed renewal never lets a second instance ask
    /// the same payment while the first question is still open.
    pub(super) fn validate_lease(
        &self,
        providers: &BTreeMap<String, ProviderSettings>,
    ) -> Result<(), ConfigurationError> {
        if !self.enabled {
            return Ok(());
        }
        for (slug, provider) in providers {
            let api = &provider.api;
            let known = PROVIDERS.iter().any(|known| known.slug() == slug);
            if !known || !api.is_configured() {
                continue;
            }
            let timeout = api.request_timeout_secs;
            let longest = question_secs(timeout);
            if self.lease_secs <= longest {
                return Err(invalid(
                    "reconciler.lease_secs",
                    &format!(
                        "is {lease} s, but a question to {slug} can take {longest} s \
                         (`providers.{slug}.api.request_timeout_secs` = {timeout} s to mint a token, \
                         and as long again for the status request): raise `reconciler.lease_secs` \
                         above {longest} or lower `providers.{slug}.api.request_timeout_secs`",
                        lease = self.lease_secs,
                    ),
                ));
            }
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

/// The longest one question can take with requests bounded by `request_timeout_secs`: the token
/// request, then the status request.
fn question_secs(request_timeout_secs: u64) -> u64 {
    request_timeout_secs.saturating_mul(2)
}
