//! `[auth]`: who may send callbacks, read the service's data, or register payments.

use std::collections::BTreeMap;

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::lists::{list_of_secrets, redacted_list};
use super::providers::ProviderSettings;
use super::{invalid, ConfigurationError};
use crate::auth::Authenticator;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AuthSettings {
    /// Accepted `Authorization: Bearer` tokens on callbacks (for providers that require `bearer`) and
    /// health endpoints; several at once allow rotation.
    #[serde(deserialize_with = "list_of_secrets", serialize_with = "redacted_list")]
    pub bearer_tokens: Vec<SecretString>,
    /// Tokens of the people and systems that operate the service: `/metrics` and the query API. Kept apart
    /// from the operators' tokens, so that an operator's token never reads payments.
    #[serde(
        default,
        deserialize_with = "list_of_secrets",
        serialize_with = "redacted_list"
    )]
    pub admin_tokens: Vec<SecretString>,
    /// Tokens of the merchant's own systems, which register expected payments (`/v1/expectations`).
    #[serde(
        default,
        deserialize_with = "list_of_secrets",
        serialize_with = "redacted_list"
    )]
    pub client_tokens: Vec<SecretString>,
}

impl AuthSettings {
    pub(super) fn validate(&self, warnings: &mut Vec<String>) -> Result<(), ConfigurationError> {
        if self.bearer_tokens.is_empty() {
            return Err(invalid(
                "auth.bearer_tokens",
                "is empty: every endpoint requires a bearer token (e.g. MMO__AUTH__BEARER_TOKENS)",
            ));
        }
        for (key, tokens) in [
            ("auth.bearer_tokens", &self.bearer_tokens),
            ("auth.admin_tokens", &self.admin_tokens),
            ("auth.client_tokens", &self.client_tokens),
        ] {
            if tokens.iter().any(|token| token.expose_secret().len() < 16) {
                warnings.push(format!("`{key}` has a token shorter than 16 characters"));
            }
        }
        let shared = self
            .admin_tokens
            .iter()
            .chain(&self.client_tokens)
            .any(|token| {
                self.bearer_tokens
                    .iter()
                    .any(|bearer| bearer.expose_secret() == token.expose_secret())
            });
        if shared {
            return Err(invalid(
                "auth.admin_tokens",
                "shares a token with auth.bearer_tokens: an operator's token must not read payments",
            ));
        }
        Ok(())
    }
}

/// The per-provider authentication policies, and the trusted proxies that resolve client addresses.
pub fn authenticator(
    auth: &AuthSettings,
    providers: &BTreeMap<String, ProviderSettings>,
    trusted_proxies: &[IpNet],
) -> Authenticator {
    let policies = providers
        .iter()
        .map(|(slug, provider)| (slug.clone(), provider.policy()))
        .collect();
    Authenticator::new(&auth.bearer_tokens, trusted_proxies.to_vec(), policies)
}
