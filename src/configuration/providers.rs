//! `[providers.<name>]`: each operator's pool size and the proofs its callbacks must carry.

use std::num::NonZeroUsize;

use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::lists::{list_of_networks, list_of_proofs, list_of_secrets, redacted_list};
use super::{invalid, ConfigurationError};
use crate::auth::{HashMode, Proof, ProviderPolicy};

/// One provider's section.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ProviderSettings {
    /// Provider actors; a callback goes to member hash(idempotency key) % pool_size.
    pub pool_size: NonZeroUsize,
    /// Proofs a callback must ALL carry: `bearer`, `url_token`, `source_ip`, `hmac_header`, `airtel_hash`.
    #[serde(default = "default_proofs", deserialize_with = "list_of_proofs")]
    pub require: Vec<Proof>,
    #[serde(
        default,
        deserialize_with = "list_of_secrets",
        serialize_with = "redacted_list"
    )]
    pub url_tokens: Vec<SecretString>,
    #[serde(default, deserialize_with = "list_of_networks")]
    pub allowed_ips: Vec<IpNet>,
    /// Secrets for `X-MTN-Signature` (HMAC-SHA256 of the raw body); several allow rotation.
    #[serde(
        default,
        deserialize_with = "list_of_secrets",
        serialize_with = "redacted_list"
    )]
    pub signature_secrets: Vec<SecretString>,
    /// Airtel callback keys for the body `hash`.
    #[serde(
        default,
        deserialize_with = "list_of_secrets",
        serialize_with = "redacted_list"
    )]
    pub hash_keys: Vec<SecretString>,
    #[serde(default)]
    pub hash_mode: HashMode,
}

fn default_proofs() -> Vec<Proof> {
    vec![Proof::Bearer]
}

impl ProviderSettings {
    /// Everything `require` names must be configured.
    pub(super) fn validate(
        &self,
        slug: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigurationError> {
        let key = |name: &str| format!("providers.{slug}.{name}");
        if self.require.is_empty() {
            return Err(invalid(
                &key("require"),
                "names no proof: every callback must prove where it comes from",
            ));
        }
        for proof in &self.require {
            let (name, missing) = match proof {
                Proof::Bearer => ("require", false),
                Proof::UrlToken => ("url_tokens", self.url_tokens.is_empty()),
                Proof::SourceIp => ("allowed_ips", self.allowed_ips.is_empty()),
                Proof::HmacHeader => ("signature_secrets", self.signature_secrets.is_empty()),
                Proof::AirtelHash => ("hash_keys", self.hash_keys.is_empty()),
            };
            if missing {
                return Err(invalid(
                    &key(name),
                    &format!("is empty but `{}` requires it", key("require")),
                ));
            }
        }
        if self.require.contains(&Proof::AirtelHash) && self.hash_mode == HashMode::Observe {
            warnings.push(format!(
                "`{}` is observe: Airtel hashes are logged, not enforced",
                key("hash_mode")
            ));
        }
        Ok(())
    }

    pub(super) fn policy(&self) -> ProviderPolicy {
        ProviderPolicy::new(
            self.require.clone(),
            &self.url_tokens,
            self.allowed_ips.clone(),
            &self.signature_secrets,
            &self.hash_keys,
            self.hash_mode,
        )
    }
}
