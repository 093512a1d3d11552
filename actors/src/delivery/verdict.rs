//! What an endpoint's answer means for an event: delivered, retried after a wait (the schedule's, or
//! longer when the endpoint asked), a dead letter, or gone.

use std::time::Duration;

use super::sender::Response;

/// The Standard Webhooks specification's example schedule: the wait before each attempt (the first
/// included), so ten values mean ten attempts over about three days.
pub const DEFAULT_RETRY_SCHEDULE_SECS: [u64; 10] =
    [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400];
/// What becomes of a target after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again after this long (the schedule's next wait, or longer when the endpoint asked).
    Retry(Duration),
    /// No attempt left: a dead letter.
    Failed,
    /// `410 Gone`: the endpoint is disabled and the event failed for it.
    Gone,
}

/// Judges an attempt, the `attempts`-th (1-based) of `schedule.len()`: only 2xx is success; 3xx is a
/// failure (redirects are not followed); `410` disables; `429`, `502`, `503`, `504` and `Retry-After`
/// slow the endpoint down. The schedule's waits get ±10% of jitter, so retries of many events spread.
pub fn verdict(
    outcome: &Result<Response, String>,
    attempts: usize,
    schedule: &[Duration],
    jitter: f64,
) -> Verdict {
    if let Ok(response) = outcome {
        if (200..300).contains(&response.status) {
            return Verdict::Delivered;
        }
        if response.status == 410 {
            return Verdict::Gone;
        }
    }
    let Some(next) = schedule.get(attempts) else {
        return Verdict::Failed;
    };
    let wait = next.mul_f64(1.0 + jitter.clamp(-0.1, 0.1));
    let asked = outcome
        .as_ref()
        .ok()
        .and_then(|response| response.retry_after);
    Verdict::Retry(asked.map_or(wait, |asked| asked.max(wait)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<u64>) -> Result<Response, String> {
        Ok(Response {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: String::new(),
        })
    }

    #[test]
    fn only_2xx_delivers_and_410_is_gone() {
        let schedule = [Duration::ZERO, Duration::from_secs(5)];
        assert_eq!(
            verdict(&answer(204, None), 1, &schedule, 0.0),
            Verdict::Delivered
        );
        assert_eq!(
            verdict(&answer(410, None), 1, &schedule, 0.0),
            Verdict::Gone
        );
        for refused in [301, 302, 400, 404, 500] {
            assert_eq!(
                verdict(&answer(refused, None), 1, &schedule, 0.0),
                Verdict::Retry(Duration::from_secs(5)),
                "{refused}"
            );
        }
        assert_eq!(
            verdict(&Err("refused".into()), 1, &schedule, 0.0),
            Verdict::Retry(Duration::from_secs(5))
        );
        // The last attempt failed: a dead letter.
        assert_eq!(
            verdict(&answer(500, None), 2, &schedule, 0.0),
            Verdict::Failed
        );
    }

    #[test]
    fn retry_after_lengthens_the_wait_and_jitter_stays_within_ten_percent() {
        let schedule = [Duration::ZERO, Duration::from_secs(100)];
        assert_eq!(
            verdict(&answer(429, Some(300)), 1, &schedule, 0.0),
            Verdict::Retry(Duration::from_secs(300))
        );
        assert_eq!(
            verdict(&answer(503, Some(1)), 1, &schedule, 0.0),
            Verdict::Retry(Duration::from_secs(100))
        );
        assert_eq!(
            verdict(&answer(500, None), 1, &schedule, 0.5),
            Verdict::Retry(Duration::from_secs(110))
        );
    }
}
