//! `[providers.<name>]`: each operator's pool size, the proofs its callbacks must carry, and
//! (`[providers.<name>.api]`) how to reach its token and status APIs for the reconciler.

use std::num::NonZeroUsize;

use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::lists::{list_of_networks, list_of_proofs, list_of_secrets, redacted, redacted_list};
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
    /// Confirm every callback that claims a final status by asking the operator's status API (a forged or
    /// mistaken callback then shows up as a conflict; a confirmed one is `verified`).
    #[serde(default)]
    pub confirm_by_query: bool,
    /// The operator's token and status APIs; absent or without `base_url`, nothing is asked.
    #[serde(default)]
    pub api: StatusApiSettings,
}

fn default_proofs() -> Vec<Proof> {
    vec![Proof::Bearer]
}

fn no_secret() -> SecretString {
    SecretString::from("")
}

/// `[providers.<name>.api]`. One table for the three operators; each uses its own fields (see
/// `config/default.toml`). Secrets are never printed.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StatusApiSettings {
    /// The operator's API root, e.g. `https://api.safaricom.co.ke`. Empty: not configured.
    #[serde(default)]
    pub base_url: String,
    /// Each HTTP request to the operator gives up after this long.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    // M-Pesa (Daraja)
    #[serde(default)]
    pub consumer_key: String,
    #[serde(default = "no_secret", serialize_with = "redacted")]
    pub consumer_secret: SecretString,
    #[serde(default)]
    pub shortcode: String,
    #[serde(default = "no_secret", serialize_with = "redacted")]
    pub passkey: SecretString,
    #[serde(default)]
    pub initiator: String,
    #[serde(default = "no_secret", serialize_with = "redacted")]
    pub security_credential: SecretString,
    /// Where Daraja posts Transaction Status results: this service's
    /// `/v1/webhooks/mpesa/transaction-status/result` as the operator reaches it (with its URL token).
    #[serde(default = "no_secret", serialize_with = "redacted")]
    pub result_url: SecretString,
    /// The same for queue timeouts: `/v1/webhooks/mpesa/transaction-status/timeout`.
    #[serde(default = "no_secret", serialize_with = "redacted")]
    pub queue_timeout_url: SecretString,
    // MTN MoMo
    #[serde(default)]
    pub api_user: String,
    #[serde(default = "no_secret", serialize_with = "redacted")]
    pub api_key: SecretString,
    #[serde(default)]
    pub target_environment: String,
    #[serde(default)]
    pub subscription_keys: SubscriptionKeys,
    // Airtel Money
    #[serde(default)]
    pub client_id: String,
    #[serde(default = "no_secret", serialize_with = "redacted")]
    pub client_secret: SecretString,
    #[serde(default)]
    pub country: String,
    #[serde(default)]
    pub currency: String,
}

fn default_request_timeout_secs() -> u64 {
    15
}

impl Default for StatusApiSettings {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            request_timeout_secs: default_request_timeout_secs(),
            consumer_key: String::new(),
            consumer_secret: no_secret(),
            shortcode: String::new(),
            passkey: no_secret(),
            initiator: String::new(),
            security_credential: no_secret(),
            result_url: no_secret(),
            queue_timeout_url: no_secret(),
            api_user: String::new(),
            api_key: no_secret(),
            target_environment: String::new(),
            subscription_keys: SubscriptionKeys::default(),
            client_id: String::new(),
            client_secret: no_secret(),
            country: String::new(),
            currency: String::new(),
        }
    }
}

/// MTN: one subscription key per product; a product without one is not asked about.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SubscriptionKeys {
    #[serde(default = "no_secret", serialize_with = "redacted")]
    pub collection: SecretString,
    #[serde(default = "no_secret", serialize_with = "redacted")]
    pub disbursement: SecretString,
    #[serde(default = "no_secret", serialize_with = "redacted")]
    pub remittance: SecretString,
}

impl Default for SubscriptionKeys {
    fn default() -> Self {
        Self {
            collection: no_secret(),
            disbursement: no_secret(),
            remittance: no_secret(),
        }
    }
}

impl StatusApiSettings {
    pub fn is_configured(&self) -> bool {
        !self.base_url.is_empty()
    }

    /// With a `base_url`, the fields this operator's API needs must be set.
    fn validate(&self, slug: &str) -> Result<(), ConfigurationError> {
        use secrecy::ExposeSecret;
        if !self.is_configured() {
            return Ok(());
        }
        let key = |name: &str| format!("providers.{slug}.api.{name}");
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return Err(invalid(
                &key("base_url"),
                "must start with http:// or https://",
            ));
        }
        if self.request_timeout_secs == 0 {
            return Err(invalid(&key("request_timeout_secs"), "must be at least 1"));
        }
        let required: Vec<(&str, bool)> = match slug {
            "mpesa" => vec![
                ("consumer_key", self.consumer_key.is_empty()),
                (
                    "consumer_secret",
                    self.consumer_secret.expose_secret().is_empty(),
                ),
                ("shortcode", self.shortcode.is_empty()),
                ("passkey", self.passkey.expose_secret().is_empty()),
            ],
            "mtn" => vec![
                ("api_user", self.api_user.is_empty()),
                ("api_key", self.api_key.expose_secret().is_empty()),
                ("target_environment", self.target_environment.is_empty()),
            ],
            "airtel" => vec![
                ("client_id", self.client_id.is_empty()),
                (
                    "client_secret",
                    self.client_secret.expose_secret().is_empty(),
                ),
                ("country", self.country.is_empty()),
                ("currency", self.currency.is_empty()),
            ],
            _ => Vec::new(),
        };
        match required.into_iter().find(|(_, missing)| *missing) {
            Some((name, _)) => Err(invalid(
                &key(name),
                &format!("is empty but `{}` is set", key("base_url")),
            )),
            None => Ok(()),
        }
    }

    /// Every secret, for checks that nothing prints them.
    pub fn secrets(&self) -> Vec<&SecretString> {
        vec![
            &self.consumer_secret,
            &self.passkey,
            &self.security_credential,
            &self.result_url,
            &self.queue_timeout_url,
            &self.api_key,
            &self.subscription_keys.collection,
            &self.subscription_keys.disbursement,
            &self.subscription_keys.remittance,
            &self.client_secret,
        ]
    }
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
        self.api.validate(slug)?;
        if self.confirm_by_query && !self.api.is_configured() {
            warnings.push(format!(
                "`{}` is set but `{}` is not: nothing can be confirmed",
                key("confirm_by_query"),
                key("api.base_url")
            ));
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
