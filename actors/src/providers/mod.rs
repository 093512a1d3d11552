//! Providers as plug-ins: each operator is one file implementing [`Provider`] plus one line in [`PROVIDERS`].
//!
//! A provider declares its endpoints (path, callback type, HTTP methods, acknowledgement body) and parses raw
//! bytes into a normalized [`Callback`]. Parsers are plain functions: no actor, no HTTP, no I/O.

mod airtel;
pub mod json;
mod mpesa;
mod mtn;

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

/// HTTP methods a provider may deliver a callback with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
}

/// One callback endpoint: `POST /v1/webhooks/<slug>/<path>`.
#[derive(Debug)]
pub struct Endpoint {
    pub path: &'static str,
    pub callback_type: CallbackType,
    pub methods: &'static [Method],
    /// The JSON body the provider expects in the 200 acknowledgement.
    pub acknowledgement: &'static str,
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
}
