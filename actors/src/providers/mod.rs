//! Providers as plug-ins: each operator is one file implementing [`Provider`] plus one line in [`PROVIDERS`].
//!
//! A provider declares its endpoints (path, callback type, HTTP methods, acknowledgement body) and parses raw
//! bytes into a normalized [`Callback`]. Parsers are plain functions: no actor, no HTTP, no I/O.

pub mod airtel;
pub mod json;
pub mod mpesa;
pub mod mtn;

pub use airtel::AirtelMoney;
pub use mpesa::Mpesa;
pub use mtn::MtnMobileMoney;

use crate::callback::{Callback, CallbackType};

/// Every provider the service knows. Adding an operator: one new file and one line here.
pub static PROVIDERS: &[&dyn Provider] = &[&Mpesa, &MtnMobileMoney, &AirtelMoney];

/// Looks a provider up by its URL/config slug (`mpesa`, `mtn`, `airtel`).
pub fn by_slug(slug: &str) -> Option<&'static dyn Provider> {
    PROVIDERS
        .iter()
        .copied()
        .find(|provider| provider.slug() == slug)
}

/// The part of a body a verified signature covers, when it is less than the whole body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedPart {
    /// One top-level field (e.g. Airtel's `transaction`, for the hash forms computed over it alone).
    Field(&'static str),
}

/// HTTP methods a provider may deliver a callback with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
}

/// How an endpoint replies to the operator (not to be confused with the reconciler's `Answer`, an
/// operator's answer to a status query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Stored durably first, then acknowledged with this JSON body.
    AfterStoring(&'static str),
    /// Answered at once from local rules ([`Provider::decide`]), never waiting on anything remote; the
    /// request and the decision are stored without being waited on.
    Decision,
}

/// One callback endpoint: `POST /v1/webhooks/<slug>/<path>`.
#[derive(Debug)]
pub struct Endpoint {
    pub path: &'static str,
    pub callback_type: CallbackType,
    pub methods: &'static [Method],
    pub reply: Reply,
}

/// Local rules for accepting a payment before it happens (M-Pesa C2B validation), from configuration.
#[derive(Debug, Clone, Default)]
pub struct AcceptanceRules {
    /// Accounts (short codes / till numbers) payments may be made to; empty accepts any.
    pub accepted_accounts: Vec<String>,
    pub min_amount: Option<rust_decimal::Decimal>,
    pub max_amount: Option<rust_decimal::Decimal>,
    /// The customer's account reference must match this pattern in full; `None` accepts any.
    pub account_reference: Option<regex_lite::Regex>,
}

/// The answer to a question a provider asks (accept this payment?).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub accepted: bool,
    /// The provider's own code, e.g. `0` or `C2B00012`.
    pub code: &'static str,
    /// Normalized reason of a refusal.
    pub reason: Option<&'static str>,
    /// The JSON body to answer with.
    pub body: String,
}

/// What a provider implements to be served.
pub trait Provider: Send + Sync + 'static {
    /// URL path segment and configuration section: `mpesa`, `mtn`, `airtel`.
    fn slug(&self) -> &'static str;
    /// Name stored in documents and shown by the health endpoint: `mpesa`, `mtn_mobile_money`, …
    fn name(&self) -> &'static str;
    fn endpoints(&self) -> &'static [Endpoint];
    /// Parses a raw body tolerantly; fails only when the payload cannot identify a transaction.
    fn parse(&self, callback_type: CallbackType, body: &[u8]) -> Result<Callback, ParseError>;

    /// Parses a body whose verified signature covers only part of it: normalized fields must come from
    /// that part alone, never from unsigned fields beside it. Providers whose signatures cover whole
    /// bodies keep the default.
    fn parse_signed(
        &self,
        callback_type: CallbackType,
        body: &[u8],
        _signed: SignedPart,
    ) -> Result<Callback, ParseError> {
        self.parse(callback_type, body)
    }

    /// For [`Reply::Decision`] endpoints: the decision on a parsed request. Providers without such
    /// endpoints keep the default, which refuses (no rule can accept what nobody configured).
    fn decide(&self, _callback: &Callback, _rules: &AcceptanceRules) -> Decision {
        Decision {
            accepted: false,
            code: "unsupported",
            reason: Some("not_allowed"),
            body: r#"{"accepted":false}"#.to_owned(),
        }
    }
}

/// Logs an unknown provider code once per process (per code), so a new code is noticed without flooding
/// the logs; the callback itself is stored with status `unknown`.
pub fn note_unknown_code(provider: &'static str, code: &str) {
    metrics::counter!("mmo_unknown_result_codes_total", "provider" => provider).increment(1);
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    const MAX_REMEMBERED: usize = 1024;
    static SEEN: OnceLock<Mutex<HashSet<(&'static str, String)>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if seen.len() < MAX_REMEMBERED && seen.insert((provider, code.to_owned())) {
        tracing::warn!(
            provider,
            code,
            "unknown provider code: stored with status `unknown`"
        );
    }
}

/// Why a body could not be understood. The message is stored with the quarantined body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("JSON nesting deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("missing or empty field `{0}`")]
    MissingField(&'static str),
    #[error("field `{0}` does not hold a usable value")]
    InvalidField(&'static str),
    #[error("field `{field}` holds `{value}`, not an amount as the operators write them (digits with an optional decimal point and no separators, e.g. 1000 or 1000.50)")]
    InvalidAmount { field: &'static str, value: String },
    #[error("duplicate key in a JSON object: {0}")]
    DuplicateKey(String),
    #[error("callback type `{0}` is not served by this provider")]
    UnsupportedType(CallbackType),
}

/// Named payloads per scenario (the API document's `MpesaCallbackFixtures`, …), for tests and developers.
pub mod fixtures {
    pub use super::airtel::fixtures::AirtelMoneyCallbackFixtures;
    pub use super::mpesa::fixtures::MpesaCallbackFixtures;
    pub use super::mtn::fixtures::MTNMoMoCallbackFixtures;

    use crate::callback::{CallbackType, Status};

    /// One named fixture with what it must be understood as: the list every API test walks end to end.
    #[derive(Debug, Clone)]
    pub struct Scenario {
        pub name: &'static str,
        /// Provider slug (`mpesa`, `mtn`, `airtel`).
        pub provider: &'static str,
        pub callback_type: CallbackType,
        pub payload: serde_json::Value,
        pub key: &'static str,
        pub status: Status,
    }

    impl Scenario {
        /// A constructor of `provider`'s scenarios: `(name, callback type, payload, key, status)`.
        pub fn of(
            provider: &'static str,
        ) -> impl Fn(&'static str, CallbackType, serde_json::Value, &'static str, Status) -> Scenario
        {
            move |name, callback_type, payload, key, status| Scenario {
                name,
                provider,
                callback_type,
                payload,
                key,
                status,
            }
        }
    }

    /// Every scenario of every provider.
    pub fn all() -> Vec<Scenario> {
        let mut all = MpesaCallbackFixtures::all();
        all.extend(MTNMoMoCallbackFixtures::all());
        all.extend(AirtelMoneyCallbackFixtures::all());
        all
    }
}
