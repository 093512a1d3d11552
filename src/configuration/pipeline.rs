//! `[actors]`, `[cache]`, `[privacy]` and `[c2b_validation]`: how callbacks are handled once accepted.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use mmo_actors::pool::RestartPolicy;
use mmo_actors::providers::AcceptanceRules;
use mmo_actors::SupervisorSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::lists::{comma_separated, redacted};
use super::{invalid, ConfigurationError};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ActorSettings {
    pub arbiters: NonZeroUsize,
    pub persistence_pool_size: NonZeroUsize,
    pub mailbox_capacity: NonZeroUsize,
    pub call_timeout_ms: u64,
    /// Restarts of a pool's actors allowed without delay within `restart_window_secs`; beyond it the
    /// pool restarts with backoff and the service reports itself not ready.
    pub restart_limit: usize,
    pub restart_window_secs: u64,
}

impl ActorSettings {
    pub(super) fn validate(&self, operation_timeout_ms: u64) -> Result<(), ConfigurationError> {
        if self.call_timeout_ms == 0 {
            return Err(invalid("actors.call_timeout_ms", "must be greater than 0"));
        }
        if self.call_timeout_ms <= operation_timeout_ms {
            return Err(invalid(
                "actors.call_timeout_ms",
                "must exceed mongodb.operation_timeout_ms, or a slow write is reported as an actor timeout",
            ));
        }
        Ok(())
    }

    /// The actor system's settings, with each provider's pool size.
    pub fn supervisor(
        &self,
        cache: &CacheSettings,
        pool_sizes: BTreeMap<String, NonZeroUsize>,
    ) -> SupervisorSettings {
        SupervisorSettings {
            provider_pool_sizes: pool_sizes.into_iter().collect(),
            persistence_pool_size: self.persistence_pool_size,
            mailbox_capacity: self.mailbox_capacity,
            cache_capacity: cache.capacity,
            cache_ttl: Duration::from_secs(cache.ttl_secs),
            call_timeout: Duration::from_millis(self.call_timeout_ms),
            arbiters: self.arbiters,
            restart_policy: RestartPolicy {
                limit: self.restart_limit,
                window: Duration::from_secs(self.restart_window_secs),
                max_backoff: Duration::from_secs(30),
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CacheSettings {
    pub capacity: NonZeroUsize,
    pub ttl_secs: u64,
}

/// Whether personal data (MSISDNs, customer names) is stored as it came or as salted digests.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PrivacySettings {
    pub personal_data: PersonalData,
    /// Salt of the digests when `personal_data = "hash"`. Keep it stable: a new salt gives new digests.
    #[serde(serialize_with = "redacted")]
    pub salt: SecretString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonalData {
    Keep,
    Hash,
}

impl PrivacySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigurationError> {
        if self.personal_data == PersonalData::Hash && self.salt.expose_secret().len() < 16 {
            return Err(invalid(
                "privacy.salt",
                "must be at least 16 characters when privacy.personal_data = \"hash\"",
            ));
        }
        Ok(())
    }

    /// The salt to pseudonymize with, when personal data is hashed.
    pub fn hashing_salt(&self) -> Option<Vec<u8>> {
        (self.personal_data == PersonalData::Hash)
            .then(|| self.salt.expose_secret().as_bytes().to_vec())
    }
}

/// Local rules answering M-Pesa C2B validation requests (`/v1/webhooks/mpesa/c2b/validation`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct C2bValidationSettings {
    /// `BusinessShortCode`s payments may be made to; empty accepts any.
    #[serde(deserialize_with = "comma_separated")]
    pub accepted_shortcodes: Vec<String>,
    pub min_amount: Option<rust_decimal::Decimal>,
    pub max_amount: Option<rust_decimal::Decimal>,
    /// Regular expression the whole `BillRefNumber` must match; empty accepts any.
    pub account_pattern: String,
}

impl C2bValidationSettings {
    fn pattern(&self) -> Result<Option<regex_lite::Regex>, regex_lite::Error> {
        let pattern = self.account_pattern.trim();
        if pattern.is_empty() {
            return Ok(None);
        }
        regex_lite::Regex::new(pattern).map(Some)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigurationError> {
        if let Err(error) = self.pattern() {
            return Err(invalid(
                "c2b_validation.account_pattern",
                &format!("is not a valid pattern: {error}"),
            ));
        }
        if let (Some(min), Some(max)) = (self.min_amount, self.max_amount) {
            if min > max {
                return Err(invalid(
                    "c2b_validation.min_amount",
                    "exceeds c2b_validation.max_amount",
                ));
            }
        }
        Ok(())
    }

    pub fn rules(&self) -> AcceptanceRules {
        AcceptanceRules {
            accepted_accounts: self.accepted_shortcodes.clone(),
            min_amount: self.min_amount,
            max_amount: self.max_amount,
            // Checked by `validate`.
            account_reference: self.pattern().unwrap_or_default(),
        }
    }
}
