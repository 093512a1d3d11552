//! What every handler shares ([`AppState`]), built once at start-up. A leaf: the routes, the request
//! context and start-up use it; it uses none of them.

use std::time::Duration;

use actix::Addr;
use mmo_actors::providers::AcceptanceRules;
use mmo_actors::Supervisor;

use crate::auth::Authenticator;
use crate::rate_limit::RateLimits;

/// What every handler shares.
/// Tasks a request may leave running after its answer, at most (see [`AppState::background`]).
pub const BACKGROUND_TASKS: usize = 1024;

pub struct AppState {
    pub supervisor: Addr<Supervisor>,
    /// For the query API; callbacks reach the store only through the supervisor and the journal.
    pub store: mmo_actors::store::MongoStore,
    /// MongoDB's reachability as last checked in the background (see `startup`).
    pub mongodb: Reachability,
    pub journal: std::sync::Arc<mmo_actors::journal::Journal>,
    pub authenticator: Authenticator,
    /// Tokens of those who operate the service: metrics and the query API.
    pub admin_tokens: crate::auth::SecretSet,
    /// Tokens of the merchant's own systems (expected payments).
    pub client_tokens: crate::auth::SecretSet,
    pub rate_limits: RateLimits,
    /// Rules for questions answered at once (M-Pesa C2B validation).
    pub acceptance_rules: AcceptanceRules,
    /// When set, personal data is replaced by salted digests before anything is stored.
    pub pseudonymization_salt: Option<Vec<u8>>,
    pub max_body_bytes: usize,
    /// How long a sender may take to send a body once its headers arrived.
    pub body_read_timeout: Duration,
    /// Longest wait for the actor system's answer before giving up with a 503.
    pub pipeline_timeout: Duration,
    /// How long the reconciler works on an expectation before flagging it unresolved.
    pub reconciler_give_up_after: Duration,
    /// How long a rotated-out endpoint secret keeps signing.
    pub secret_overlap: Duration,
    /// Which addresses endpoints may point at (checked at registration; delivery checks again at every
    /// connection).
    pub address_policy: crate::addresses::AddressPolicy,
    /// How endpoints' names are looked up (the system's resolver in service).
    pub names: std::sync::Arc<dyn crate::addresses::Names>,
    /// Seals endpoint secrets at rest, when configured.
    pub secrets_key: Option<mmo_actors::delivery::sealing::SecretsKey>,
    /// Each provider's settlement zone (by stored name): the money report's day when no `tz` is given.
    pub settlement_zones: std::collections::BTreeMap<&'static str, chrono_tz::Tz>,
    /// Work a request leaves running after its answer (storing a C2B validation, keeping an anonymous
    /// refusal), at most [`BACKGROUND_TASKS`] at once: a flood cannot pile up tasks without bound.
    pub background: std::sync::Arc<tokio::sync::Semaphore>,
    /// The operators' web console: its session key and its sign-in limit.
    pub console: crate::console::session::Console,
    /// The merchant developers' portal.
    pub portal: crate::console::session::Portal,
    /// Callbacks acknowledged per minute and provider, not yet added to MongoDB (the console's chart).
    pub callback_minutes: std::sync::Arc<crate::callback_minutes::CallbackMinutes>,
}

/// MongoDB's reachability as last checked: unknown until the first check answers.
#[derive(Debug, Default)]
pub struct Reachability(std::sync::atomic::AtomicU8);

impl Reachability {
    // 0 is unknown: the default, until the first check answers.
    const REACHABLE: u8 = 1;
    const UNREACHABLE: u8 = 2;

    pub fn set(&self, reachable: bool) {
        let state = if reachable {
            Self::REACHABLE
        } else {
            Self::UNREACHABLE
        };
        self.0.store(state, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn as_str(&self) -> &'static str {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            Self::REACHABLE => "reachable",
            Self::UNREACHABLE => "unreachable",
            _ => "unknown",
        }
    }
}
