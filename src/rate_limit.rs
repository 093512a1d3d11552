//! Rate limits as the API document states them: per client per minute, on webhook and health endpoints,
//! with `X-RateLimit-*` headers on every response and a 429 with `Retry-After` beyond the limit.
//!
//! A client is its bearer identity when it presents a valid token, else its source address (resolved
//! through trusted proxies only). Operators' allowlisted source addresses get their own, higher limit.
//! The limiter is `governor` (GCRA), keyed per client.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::configuration::RateLimitSettings;

type KeyedLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Webhooks,
    Health,
    ProviderSources,
}

impl Bucket {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Webhooks => "webhooks",
            Self::Health => "health",
            Self::ProviderSources => "provider_sources",
        }
    }
}

/// The answer for one request: what goes into the `X-RateLimit-*` headers, and whether it may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds at which the client's allowance is whole again.
    pub reset: u64,
    /// `Some(seconds)` (whole, rounded up, at least 1) when the request is refused.
    pub retry_after: Option<u64>,
}

struct Limit {
    per_minute: NonZeroU32,
    limiter: KeyedLimiter,
}

impl Limit {
    fn new(per_minute: NonZeroU32) -> Self {
        Self {
            per_minute,
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)).with_middleware(),
        }
    }

    fn check(&self, key: String) -> Decision {
        let limit = self.per_minute.get();
        // One token comes back every minute / limit.
        let replenish = Duration::from_secs(60) / limit;
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        match self.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let reset = now_unix + replenish * (limit - remaining);
                Decision {
                    limit,
                    remaining,
                    reset: reset.as_secs_f64().ceil() as u64,
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                let retry_after = (wait.as_secs_f64().ceil() as u64).max(1);
                let reset = now_unix + replenish * limit;
                Decision {
                    limit,
                    remaining: 0,
                    reset: reset.as_secs_f64().ceil() as u64,
                    retry_after: Some(retry_after),
                }
            }
        }
    }

    fn forget_idle_clients(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

pub struct RateLimits {
    webhooks: Limit,
    health: Limit,
    provider_sources: Limit,
    ipv6_prefix_len: u8,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            webhooks: Limit::new(settings.webhooks_per_minute),
            health: Limit::new(settings.health_per_minute),
            provider_sources: Limit::new(settings.provider_sources_per_minute),
            ipv6_prefix_len: settings.ipv6_prefix_len,
        }
    }

    /// Counts one request of `client` against `bucket`.
    pub fn check(&self, bucket: Bucket, client: &Client) -> Decision {
        let key = match client {
            Client::Identity(index) => format!("token:{index}"),
            Client::Address(IpAddr::V4(address)) => format!("ip:{address}"),
            // One IPv6 network counts as one client: an attacker holding a /64 must not get 2^64 allowances.
            Client::Address(IpAddr::V6(address)) => {
                let network = ipnet::Ipv6Net::new(*address, self.ipv6_prefix_len)
                    .map_or(*address, |network| network.network());
                format!("ip:{network}/{}", self.ipv6_prefix_len)
            }
        };
        match bucket {
            Bucket::Webhooks => self.webhooks.check(key),
            Bucket::Health => self.health.check(key),
            Bucket::ProviderSources => self.provider_sources.check(key),
        }
    }

    /// Drops the state of clients whose allowance is whole again: keeps memory bounded under address churn.
    pub fn forget_idle_clients(&self) {
        self.webhooks.forget_idle_clients();
        self.health.forget_idle_clients();
        self.provider_sources.forget_idle_clients();
    }
}

/// Who a request counts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// The index of the valid bearer token it presented.
    Identity(usize),
    Address(IpAddr),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32) -> RateLimits {
        let n = NonZeroU32::new(per_minute).unwrap();
        RateLimits::new(&RateLimitSettings {
            webhooks_per_minute: n,
            health_per_minute: n,
            provider_sources_per_minute: n,
            ipv6_prefix_len: 64,
        })
    }

    #[test]
    fn counts_down_then_refuses_with_a_retry_after() {
        let limits = limits(3);
        let client = Client::Address("198.51.100.7".parse().unwrap());
        let remaining: Vec<u32> = (0..3)
            .map(|_| limits.check(Bucket::Webhooks, &client).remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limits.check(Bucket::Webhooks, &client);
        assert_eq!(refused.remaining, 0);
        let retry_after = refused.retry_after.expect("refused");
        assert!((1..=20).contains(&retry_after), "{retry_after}");
        assert!(
            refused.reset
                >= SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_network() {
        let limits = limits(1);
        let address = |text: &str| Client::Address(text.parse().unwrap());
        assert!(limits
            .check(Bucket::Webhooks, &address("2001:db8:1:2::1"))
            .retry_after
            .is_none());
        assert!(
            limits
                .check(Bucket::Webhooks, &address("2001:db8:1:2:ffff::9"))
                .retry_after
                .is_some(),
            "another address of the same /64 shares its allowance"
        );
        assert!(
            limits
                .check(Bucket::Webhooks, &address("2001:db8:1:3::1"))
                .retry_after
                .is_none(),
            "another /64 is another client"
        );
    }

    #[test]
    fn clients_and_buckets_are_counted_apart() {
        let limits = limits(1);
        let a = Client::Address("198.51.100.7".parse().unwrap());
        let b = Client::Identity(0);
        assert!(limits.check(Bucket::Webhooks, &a).retry_after.is_none());
        assert!(limits.check(Bucket::Webhooks, &a).retry_after.is_some());
        assert!(limits.check(Bucket::Webhooks, &b).retry_after.is_none());
        assert!(limits.check(Bucket::Health, &a).retry_after.is_none());
        assert!(limits
            .check(Bucket::ProviderSources, &a)
            .retry_after
            .is_none());
    }
}
