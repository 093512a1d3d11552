//! Doubling waits, capped: how the service spaces out what it tries again — the drain behind an
//! unavailable MongoDB and a failing journal entry, a restarting actor, the reconciler's questions,
//! delivery's writes to MongoDB. One rule, written once.

use std::time::Duration;

/// `first` doubled `times` times, at most `max`; never overflows.
pub fn doubled(first: Duration, times: u32, max: Duration) -> Duration {
    first.saturating_mul(1_u32 << times.min(31)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_never_overflows() {
        let (first, max) = (Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(doubled(first, 0, max), first);
        assert_eq!(doubled(first, 1, max), Duration::from_millis(200));
        assert_eq!(doubled(first, 5, max), Duration::from_millis(3200));
        assert_eq!(doubled(first, 6, max), max);
        assert_eq!(doubled(first, u32::MAX, max), max);
        assert_eq!(doubled(Duration::MAX, 3, Duration::MAX), Duration::MAX);
    }
}
