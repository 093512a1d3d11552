//! What an endpoint's answer means for an event: delivered, retried after a wait (the schedule's, or
//! longer when the endpoint asked), a dead letter, or gone.
//!
//! An endpoint's `Retry-After` lengthens a wait but never beyond the schedule's longest one, and the
//! attempt it answered counts like any other: an endpoint that answers `429` forever gets the schedule's
//! attempts and the event becomes a dead letter, instead of waiting for as long as the header says (a
//! century, for `Retry-After: 4000000000`) and holding the transaction's later versions behind it.

use std::time::{Duration, SystemTime};

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

/// What a `Retry-After` header asks (RFC 9110 §10.2.3): delta-seconds, or an HTTP-date, read at `now` (a
/// date already past asks no wait). `None` when it is neither; delta-seconds too large for a `u64` ask
/// for the longest wait there is (callers cap it, see [`longest_wait`]).
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The longest wait an endpoint can ask for: the schedule's longest.
pub fn longest_wait(schedule: &[Duration]) -> Duration {
    schedule.iter().max().copied().unwrap_or_default()
}

/// Judges an attempt, the `attempts`-th (1-based) of `schedule.len()`: only 2xx is success; 3xx is a
/// failure (redirects are not followed); `410` disables; `429`, `502`, `503`, `504` and `Retry-After`
/// slow the endpoint down (`Retry-After` capped at the schedule's longest wait). The schedule's waits get
/// ±10% of jitter, so retries of many events spread.
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
        .and_then(|response| response.retry_after)
        .map(|asked| asked.min(longest_wait(schedule)));
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
        let schedule = [0, 100, 600].map(Duration::from_secs);
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

    /// `Retry-After` in both of its forms, read at a fixed `now`, then judged on a schedule whose longest
    /// wait is an hour.
    #[test]
    fn retry_after_is_read_in_both_forms_and_capped_at_the_longest_wait() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let secs = |secs| Some(Duration::from_secs(secs));
        let schedule = [0, 10, 3600].map(Duration::from_secs);
        for (header, read) in [
            ("120", secs(120)),
            (" 7 ", secs(7)),
            ("0", secs(0)),
            // An HTTP-date a minute ahead, in each of the three forms RFC 9110 asks a reader to accept.
            ("Sun, 06 Nov 1994 08:50:37 GMT", secs(60)),
            ("Sunday, 06-Nov-94 08:50:37 GMT", secs(60)),
            ("Sun Nov  6 08:50:37 1994", secs(60)),
            // A date past asks no wait: the schedule's next step.
            ("Sun, 06 Nov 1994 08:00:00 GMT", secs(0)),
            // Huge: read, then capped at the schedule's longest wait below (never parked for a century).
            ("4000000000", secs(4_000_000_000)),
            ("99999999999999999999999", Some(Duration::MAX)),
            (
                "Fri, 31 Dec 9999 23:59:59 GMT",
                secs(253_402_300_799 - 784_111_777),
            ),
            // Garbage: ignored.
            ("soon", None),
            ("-5", None),
            ("+5", None),
            ("1.5", None),
            ("", None),
        ] {
            let parsed = retry_after(header, now);
            assert_eq!(parsed, read, "{header:?}");
            let answered = Ok(Response {
                status: 429,
                retry_after: parsed,
                body: String::new(),
            });
            // After the first attempt: the schedule's 10 s, or longer when asked, at most an hour.
            let expected = parsed.map_or(Duration::from_secs(10), |asked| {
                asked.clamp(Duration::from_secs(10), Duration::from_secs(3600))
            });
            assert_eq!(
                verdict(&answered, 1, &schedule, 0.0),
                Verdict::Retry(expected),
                "{header:?}"
            );
            // The last attempt counts like any other, whatever the endpoint asked: a dead letter.
            assert_eq!(
                verdict(&answered, 3, &schedule, 0.0),
                Verdict::Failed,
                "{header:?}"
            );
        }
    }
}
