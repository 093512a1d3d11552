//! The provider actor's in-memory idempotency cache: which callbacks this process has already stored.
//!
//! Bounded by capacity (least recently used entries leave first) and by age. It is only a fast path: the
//! store's unique index decides across pool members and instances, so a miss or an eviction is harmless.
//!
//! Why `lru` and an age check rather than `moka`: each provider actor owns its cache and uses it from one
//! thread, so a concurrent cache (moka's locks, its background housekeeping, a dozen more crates to build)
//! buys nothing here; the age check is the three lines of `contains`, tested on tokio's paused clock.

use std::num::NonZeroUsize;
use std::time::Duration;

use lru::LruCache;
// Tokio's clock (the real one at run time), so that tests move time forward instead of sleeping.
use tokio::time::Instant;

use crate::callback::CallbackKey;

pub struct IdempotencyCache {
    /// When each key was stored, and the fingerprint of the body stored under it.
    entries: LruCache<CallbackKey, (Instant, u64)>,
    ttl: Duration,
}

impl IdempotencyCache {
    pub fn new(capacity: NonZeroUsize, ttl: Duration) -> Self {
        Self {
            entries: LruCache::new(capacity),
            ttl,
        }
    }

    /// Whether `key` was stored within the TTL with the same body `fingerprint`. Expired entries are
    /// dropped on the way; a different fingerprint is not a plain repeat and must reach the store.
    pub fn contains(&mut self, key: &CallbackKey, fingerprint: u64) -> bool {
        match self.entries.get(key) {
            Some((stored_at, stored)) if stored_at.elapsed() < self.ttl => *stored == fingerprint,
            Some(_) => {
                self.entries.pop(key);
                false
            }
            None => false,
        }
    }

    /// Marks `key` as stored. Call only after the store confirmed the write.
    pub fn insert(&mut self, key: CallbackKey, fingerprint: u64) {
        self.entries.put(key, (Instant::now(), fingerprint));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::{CallbackType, Status};

    fn key(id: &str) -> CallbackKey {
        CallbackKey {
            provider: "mpesa",
            callback_type: CallbackType::StkPush,
            provider_transaction_id: id.to_owned(),
            status: Status::Successful,
        }
    }

    #[test]
    fn remembers_keys_up_to_its_capacity() {
        let mut cache =
            IdempotencyCache::new(NonZeroUsize::new(2).unwrap(), Duration::from_secs(60));
        cache.insert(key("a"), 1);
        cache.insert(key("b"), 1);
        assert!(cache.contains(&key("a"), 1));
        cache.insert(key("c"), 1);
        assert!(
            !cache.contains(&key("b"), 1),
            "least recently used entry is evicted"
        );
        assert!(cache.contains(&key("a"), 1));
        assert!(cache.contains(&key("c"), 1));
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn forgets_keys_older_than_the_ttl() {
        let mut cache =
            IdempotencyCache::new(NonZeroUsize::new(8).unwrap(), Duration::from_secs(60));
        cache.insert(key("a"), 1);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(cache.contains(&key("a"), 1), "still within the TTL");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!cache.contains(&key("a"), 1), "a TTL old");
        assert!(cache.is_empty(), "an expired entry is dropped when met");
    }

    #[test]
    fn a_new_status_is_a_different_key() {
        let mut cache =
            IdempotencyCache::new(NonZeroUsize::new(8).unwrap(), Duration::from_secs(60));
        cache.insert(key("a"), 1);
        let mut pending = key("a");
        pending.status = Status::Pending;
        assert!(!cache.contains(&pending, 1));
    }

    #[test]
    fn a_different_body_under_the_same_key_is_not_a_plain_repeat() {
        let mut cache =
            IdempotencyCache::new(NonZeroUsize::new(8).unwrap(), Duration::from_secs(60));
        cache.insert(key("a"), 1);
        assert!(!cache.contains(&key("a"), 2));
    }
}
