//! `[server]`, `[rate_limit]` and `[log]`: how the service listens, how much each client may send, and
//! how it logs.

use std::num::{NonZeroU32, NonZeroUsize};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::lists::list_of_networks;
use super::{invalid, ConfigurationError};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    pub max_body_bytes: NonZeroUsize,
    /// A client must send its request headers within this time (slow clients are cut off).
    pub client_request_timeout_ms: u64,
    /// A client must send the whole body within this time once its headers arrived: 408, and the
    /// beginning of the body is quarantined.
    pub body_read_timeout_secs: u64,
    pub keep_alive_secs: u64,
    pub shutdown_timeout_secs: u64,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed; nobody else's is.
    #[serde(deserialize_with = "list_of_networks")]
    pub trusted_proxies: Vec<IpNet>,
}

impl ServerSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigurationError> {
        if self.body_read_timeout_secs == 0 {
            return Err(invalid(
                "server.body_read_timeout_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RateLimitSettings {
    /// Per client (bearer identity, else source address) on webhook endpoints.
    pub webhooks_per_minute: NonZeroU32,
    pub health_per_minute: NonZeroU32,
    /// Per source address for operators' allowlisted addresses (`providers.<name>.allowed_ips`), so that
    /// an operator's burst is never refused while an anonymous flood is.
    pub provider_sources_per_minute: NonZeroU32,
    /// IPv6 clients are counted per network of this prefix length: one /64 is one household or server,
    /// not 2^64 clients.
    pub ipv6_prefix_len: u8,
}

impl RateLimitSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigurationError> {
        if !(1..=128).contains(&self.ipv6_prefix_len) {
            return Err(invalid(
                "rate_limit.ipv6_prefix_len",
                "must be between 1 and 128",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `mmo_webhooks=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}
