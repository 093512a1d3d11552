//! `[delivery]`: signed events to the merchant's systems — the sender pool, the retry schedule, and
//! endpoints declared in configuration (`[[delivery.endpoints]]`).

use std::num::NonZeroUsize;
use std::time::Duration;

use mmo_actors::delivery::sealing::SecretsKey;
use mmo_actors::delivery::signature::secret_key;
use mmo_actors::delivery::DeliverySettings;
use mmo_actors::store::events::EventType;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::lists::{comma_separated, redacted};
use super::{invalid, ConfigurationError};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DeliveryConfig {
    /// Off: events are still written to the outbox, but nothing is sent.
    pub enabled: bool,
    pub pool_size: NonZeroUsize,
    pub poll_interval_ms: u64,
    pub timeout_secs: u64,
    /// How long a batch of new events waits for its first attempts before they go the retry path.
    pub first_attempt_wait_ms: u64,
    /// The wait before each attempt, the first included (N values: N attempts).
    #[serde(deserialize_with = "seconds_list")]
    pub retry_schedule_secs: Vec<u64>,
    pub lease_secs: u64,
    pub retention_days: u64,
    pub disable_after_secs: u64,
    pub max_in_flight: usize,
    /// How long a rotated-out secret keeps signing beside the new one.
    pub secret_overlap_secs: u64,
    /// Lets endpoints resolve to any address: loopback, private, link-local, metadata (endpoints inside a
    /// private network).
    pub allow_private_networks: bool,
    /// Lets endpoints resolve to this machine's loopback too (local development), nothing else that is
    /// not public.
    pub allow_loopback: bool,
    /// Seals endpoint secrets at rest: base64 of 32 random bytes (`openssl rand -base64 32`). Empty: secrets
    /// are stored as they are.
    #[serde(default = "no_key", serialize_with = "redacted")]
    pub secrets_key: SecretString,
    #[serde(default)]
    pub endpoints: Vec<ConfiguredEndpoint>,
}

/// An endpoint kept in configuration; the API cannot change it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ConfiguredEndpoint {
    pub id: String,
    pub url: String,
    #[serde(serialize_with = "redacted")]
    pub secret: SecretString,
    #[serde(default, deserialize_with = "comma_separated")]
    pub event_types: Vec<String>,
    #[serde(default, deserialize_with = "comma_separated")]
    pub providers: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

fn no_key() -> SecretString {
    SecretString::from(String::new())
}

fn seconds_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Item {
        Number(u64),
        Text(String),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<Item>),
        Text(String),
    }
    let texts: Vec<String> = match ListOrText::deserialize(deserializer)? {
        ListOrText::List(items) => items
            .into_iter()
            .map(|item| match item {
                Item::Number(number) => number.to_string(),
                Item::Text(text) => text,
            })
            .collect(),
        ListOrText::Text(text) => text.split(',').map(str::to_owned).collect(),
    };
    texts
        .iter()
        .map(|text| text.trim())
        .filter(|text| !text.is_empty())
        .map(|text| {
            text.parse::<u64>().map_err(|_| {
                serde::de::Error::custom(format!("`{text}` is not a whole number of seconds"))
            })
        })
        .collect()
}

/// Longest wait the schedule may hold: a week.
const MAX_WAIT_SECS: u64 = 7 * 86_400;

impl DeliveryConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigurationError> {
        for (name, value) in [
            ("poll_interval_ms", self.poll_interval_ms),
            ("timeout_secs", self.timeout_secs),
            ("first_attempt_wait_ms", self.first_attempt_wait_ms),
            ("lease_secs", self.lease_secs),
            ("retention_days", self.retention_days),
            ("max_in_flight", self.max_in_flight as u64),
        ] {
            if value == 0 {
                return Err(invalid(&format!("delivery.{name}"), "must be at least 1"));
            }
        }
        if !self.secrets_key.expose_secret().is_empty()
            && SecretsKey::from_base64(self.secrets_key.expose_secret()).is_none()
        {
            return Err(invalid(
                "delivery.secrets_key",
                "must be base64 of 32 bytes (openssl rand -base64 32)",
            ));
        }
        if self.retention_days > 3650 {
            return Err(invalid("delivery.retention_days", "must be at most 3650"));
        }
        if self.timeout_secs > 300 {
            return Err(invalid("delivery.timeout_secs", "must be at most 300"));
        }
        if self.lease_secs <= self.timeout_secs {
            return Err(invalid(
                "delivery.lease_secs",
                "must be longer than delivery.timeout_secs (a request never outlives the lease)",
            ));
        }
        if self.retry_schedule_secs.is_empty() || self.retry_schedule_secs.len() > 50 {
            return Err(invalid(
                "delivery.retry_schedule_secs",
                "must hold 1 to 50 waits (one per attempt)",
            ));
        }
        if self
            .retry_schedule_secs
            .iter()
            .any(|wait| *wait > MAX_WAIT_SECS)
        {
            return Err(invalid(
                "delivery.retry_schedule_secs",
                "holds a wait over a week",
            ));
        }
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let key = |field: &str| format!("delivery.endpoints[{index}].{field}");
            if endpoint.id.is_empty()
                || endpoint.id.len() > 64
                || !endpoint
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(
                    &key("id"),
                    "must be 1-64 letters, digits, `_` or `-`",
                ));
            }
            if let Err(problem) = crate::delivery::check_url(&endpoint.url) {
                return Err(invalid(&key("url"), &problem));
            }
            if secret_key(endpoint.secret.expose_secret()).is_none() {
                return Err(invalid(&key("secret"), "must be `whsec_` and base64"));
            }
            if let Some(unknown) = endpoint
                .event_types
                .iter()
                .find(|kind| !EventType::ALL.contains(&kind.as_str()))
            {
                return Err(invalid(
                    &key("event_types"),
                    &format!("names `{unknown}`, which is no event type"),
                ));
            }
            if let Some(unknown) = endpoint
                .providers
                .iter()
                .find(|name| crate::stored::provider_name(name).is_none())
            {
                return Err(invalid(
                    &key("providers"),
                    &format!("names `{unknown}`, which is no provider"),
                ));
            }
            if self.endpoints[..index]
                .iter()
                .any(|other| other.id == endpoint.id)
            {
                return Err(invalid(&key("id"), "is declared twice"));
            }
        }
        Ok(())
    }

    /// Which addresses endpoints may reach.
    pub fn address_policy(&self) -> crate::addresses::AddressPolicy {
        crate::addresses::AddressPolicy::new(self.allow_private_networks, self.allow_loopback)
    }

    /// The key that seals endpoint secrets, when one is configured.
    pub fn sealing_key(&self) -> Option<SecretsKey> {
        SecretsKey::from_base64(self.secrets_key.expose_secret())
    }

    pub fn settings(&self) -> DeliverySettings {
        DeliverySettings {
            pool_size: self.pool_size,
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            timeout: Duration::from_secs(self.timeout_secs),
            first_attempt_wait: Duration::from_millis(self.first_attempt_wait_ms),
            retry_schedule: self
                .retry_schedule_secs
                .iter()
                .map(|secs| Duration::from_secs(*secs))
                .collect(),
            lease: Duration::from_secs(self.lease_secs),
            retention: Duration::from_secs(self.retention_days * 86_400),
            disable_after: Duration::from_secs(self.disable_after_secs),
            max_in_flight: self.max_in_flight,
            secrets_key: self.sealing_key(),
            ..DeliverySettings::default()
        }
    }
}
