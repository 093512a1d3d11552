//! How a callback proves it is real, per provider, from configuration.
//!
//! Each provider has a list of required proofs (`providers.<name>.require`), all of which must pass:
//! `bearer` (an `Authorization: Bearer` token), `url_token` (a secret in the callback URL, as a last path
//! segment or a `token` query parameter), `source_ip` (an allowlisted address, `X-Forwarded-For` believed
//! only from trusted proxies), `hmac_header` (`X-MTN-Signature` over the raw body) and `airtel_hash`
//! (Airtel's body `hash`). Independently of the policy, a presented signature is always verified when a
//! secret to verify it exists: a forged signature is refused even on an endpoint that does not require one.

mod client_address;
mod secrets;
mod signatures;

pub use client_address::client_address;
pub use secrets::{bearer_token, sha256_hex, SecretSet};
pub use signatures::{
    check_airtel_hash, check_header_signature, sign_base64, sign_hex, AirtelHashCheck,
    AirtelHashForm, SignatureCheck,
};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use ipnet::IpNet;
use mmo_actors::providers::SignedPart;
use mmo_actors::Evidence;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub const SIGNATURE_HEADER: &str = "x-mtn-signature";

/// A proof a provider's callbacks can be required to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    Bearer,
    UrlToken,
    SourceIp,
    HmacHeader,
    AirtelHash,
}

/// What to do with an Airtel `hash` that matches no candidate form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HashMode {
    /// Accept, and log and count which form matched (or that none did): for learning Airtel's form.
    #[default]
    Observe,
    /// Refuse callbacks whose hash is missing (when required) or matches no form.
    Enforce,
}

/// One provider's policy, built from its configuration.
pub struct ProviderPolicy {
    pub require: Vec<Proof>,
    pub url_tokens: SecretSet,
    pub allowed_ips: Vec<IpNet>,
    pub signature_secrets: Vec<Vec<u8>>,
    pub hash_keys: Vec<Vec<u8>>,
    pub hash_mode: HashMode,
}

impl ProviderPolicy {
    pub fn new(
        require: Vec<Proof>,
        url_tokens: &[SecretString],
        allowed_ips: Vec<IpNet>,
        signature_secrets: &[SecretString],
        hash_keys: &[SecretString],
        hash_mode: HashMode,
    ) -> Self {
        let bytes = |secrets: &[SecretString]| {
            secrets
                .iter()
                .map(|s| s.expose_secret().as_bytes().to_vec())
                .collect()
        };
        Self {
            require,
            url_tokens: SecretSet::new(url_tokens),
            allowed_ips,
            signature_secrets: bytes(signature_secrets),
            hash_keys: bytes(hash_keys),
            hash_mode,
        }
    }
}

/// What a request presents, gathered by the HTTP handler — or what a quarantined copy of a refused
/// request kept of it (`evidence`), when a replay checks it again under today's configuration.
pub struct Presented<'a> {
    pub headers: &'a HeaderMap,
    pub client: IpAddr,
    pub url_token: Option<&'a str>,
    pub body: &'a [u8],
    /// Tokens known only by their SHA-256 (a replay); `None` for a live request.
    pub evidence: Option<&'a Evidence>,
}

impl Presented<'_> {
    /// What to keep of this request, should it be refused: the signature header, and the tokens'
    /// digests.
    pub fn evidence(&self) -> Evidence {
        let header = |name| {
            self.headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        Evidence {
            signature: header(SIGNATURE_HEADER),
            bearer_sha256: header(AUTHORIZATION.as_str())
                .as_deref()
                .and_then(bearer_token)
                .map(sha256_hex),
            url_token_sha256: self.url_token.map(sha256_hex),
        }
    }
}

/// What a successful verification found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verified {
    /// Set when an enforced signature covers only part of the body: normalized fields must come from
    /// that part alone.
    pub signed: Option<SignedPart>,
}

/// Why a callback was refused. The reason is stored with the quarantined body; it never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A required proof is missing or wrong: 401 `AUTH_REQUIRED`.
    Unauthorized(String),
    /// A presented signature does not verify: 401 `INVALID_SIGNATURE`.
    InvalidSignature(String),
}

impl Refusal {
    /// A short label, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::InvalidSignature(_) => "invalid_signature",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Self::Unauthorized(reason) | Self::InvalidSignature(reason) => reason,
        }
    }
}

/// Counts of Airtel hash outcomes, logged with each observation so operators can decide when to enforce.
#[derive(Default)]
struct HashObservations {
    by_form: [AtomicU64; 3],
    no_match: AtomicU64,
    absent: AtomicU64,
}

pub struct Authenticator {
    bearer: SecretSet,
    trusted_proxies: Vec<IpNet>,
    policies: HashMap<String, ProviderPolicy>,
    airtel_observations: HashObservations,
}

impl Authenticator {
    pub fn new(
        bearer_tokens: &[SecretString],
        trusted_proxies: Vec<IpNet>,
        policies: HashMap<String, ProviderPolicy>,
    ) -> Self {
        Self {
            bearer: SecretSet::new(bearer_tokens),
            trusted_proxies,
            policies,
            airtel_observations: HashObservations::default(),
        }
    }

    /// The client address of a request (see [`client_address`]).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_address(peer, headers, &self.trusted_proxies)
    }

    /// Which configured bearer token the request carries, if any: the client's identity for rate limits.
    pub fn bearer_identity(&self, headers: &HeaderMap) -> Option<usize> {
        let token = headers
            .get(AUTHORIZATION)?
            .to_str()
            .ok()
            .and_then(bearer_token)?;
        self.bearer.position(token)
    }

    /// Whether `address` is allowlisted for any provider (a known operator source).
    pub fn is_provider_source(&self, address: IpAddr) -> bool {
        self.policies
            .values()
            .any(|policy| policy.allowed_ips.iter().any(|net| net.contains(&address)))
    }

    /// Checks a callback against its provider's policy. The cheap proofs (bearer token, URL token, source
    /// address) are checked first, so that an anonymous sender costs a few comparisons — never an HMAC
    /// or a JSON parse.
    pub fn verify(&self, provider: &str, presented: &Presented<'_>) -> Result<Verified, Refusal> {
        let policy = self.cheap_proofs(provider, presented)?;

        // A presented signature is always verified when a secret exists, required or not.
        let header = presented
            .headers
            .get(SIGNATURE_HEADER)
            .and_then(|value| value.to_str().ok());
        let signature = check_header_signature(header, presented.body, &policy.signature_secrets);
        if signature == SignatureCheck::Invalid {
            return Err(Refusal::InvalidSignature(
                "X-MTN-Signature does not match the body".into(),
            ));
        }
        if policy.require.contains(&Proof::HmacHeader) && signature != SignatureCheck::Valid {
            return Err(Refusal::Unauthorized("missing X-MTN-Signature".to_owned()));
        }
        let hash = self.observe_airtel_hash(provider, policy, presented.body);
        let enforced = policy.hash_mode == HashMode::Enforce;
        if enforced && hash == AirtelHashCheck::NoMatch {
            return Err(Refusal::InvalidSignature(
                "Airtel hash matches no known form".into(),
            ));
        }
        let hash_passes = matches!(hash, AirtelHashCheck::Matched(_)) || !enforced;
        if policy.require.contains(&Proof::AirtelHash) && !hash_passes {
            return Err(Refusal::Unauthorized("missing Airtel hash".to_owned()));
        }
        Ok(Verified {
            signed: match hash {
                AirtelHashCheck::Matched(form) if enforced => form.signed_part(),
                _ => None,
            },
        })
    }

    /// Whether the sender identified itself: its provider requires at least one of the cheap proofs
    /// (bearer token, URL token, source address) and it passed them all. A policy that requires only a
    /// signature identifies nobody before the signature is checked: a forger passes no cheap proof.
    pub fn identifies(&self, provider: &str, presented: &Presented<'_>) -> bool {
        let cheap =
            |proof: &Proof| matches!(proof, Proof::Bearer | Proof::UrlToken | Proof::SourceIp);
        self.policies
            .get(provider)
            .is_some_and(|policy| policy.require.iter().any(cheap))
            && self.cheap_proofs(provider, presented).is_ok()
    }

    /// The proofs that cost a few comparisons: bearer token, URL token, source address. Whether a request
    /// passes them tells whether its sender identified itself, before its body is read or parsed.
    pub fn cheap_proofs(
        &self,
        provider: &str,
        presented: &Presented<'_>,
    ) -> Result<&ProviderPolicy, Refusal> {
        let Some(policy) = self.policies.get(provider) else {
            return Err(Refusal::Unauthorized(format!(
                "no authentication policy for provider {provider}"
            )));
        };
        for proof in &policy.require {
            let passed = match proof {
                Proof::Bearer => match presented.evidence {
                    Some(evidence) => evidence
                        .bearer_sha256
                        .as_deref()
                        .is_some_and(|digest| self.bearer.contains_sha256(digest)),
                    None => self.bearer_identity(presented.headers).is_some(),
                },
                Proof::UrlToken => match presented.evidence {
                    Some(evidence) => evidence
                        .url_token_sha256
                        .as_deref()
                        .is_some_and(|digest| policy.url_tokens.contains_sha256(digest)),
                    None => presented
                        .url_token
                        .is_some_and(|token| policy.url_tokens.contains(token)),
                },
                Proof::SourceIp => policy
                    .allowed_ips
                    .iter()
                    .any(|net| net.contains(&presented.client)),
                Proof::HmacHeader | Proof::AirtelHash => continue,
            };
            if !passed {
                return Err(Refusal::Unauthorized(match proof {
                    Proof::Bearer => "missing or invalid bearer token".to_owned(),
                    Proof::UrlToken => "missing or invalid URL token".to_owned(),
                    _ => format!("source address {} is not allowed", presented.client),
                }));
            }
        }
        Ok(policy)
    }

    fn observe_airtel_hash(
        &self,
        provider: &str,
        policy: &ProviderPolicy,
        body: &[u8],
    ) -> AirtelHashCheck {
        if policy.hash_keys.is_empty() {
            return AirtelHashCheck::NotConfigured;
        }
        let check = check_airtel_hash(body, &policy.hash_keys);
        let counts = &self.airtel_observations;
        let counter = match check {
            AirtelHashCheck::Matched(form) => &counts.by_form[form as usize],
            AirtelHashCheck::NoMatch => &counts.no_match,
            AirtelHashCheck::Absent => &counts.absent,
            AirtelHashCheck::NotConfigured => return check,
        };
        let count = counter.fetch_add(1, Ordering::Relaxed) + 1;
        let form = match check {
            AirtelHashCheck::Matched(form) => form.as_str(),
            AirtelHashCheck::NoMatch => "none",
            _ => "absent",
        };
        metrics::counter!("mmo_airtel_hash_checks_total", "form" => form).increment(1);
        tracing::debug!(provider, form, count, mode = ?policy.hash_mode, "Airtel hash checked");
        check
    }
}
