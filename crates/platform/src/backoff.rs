//! One backoff for the whole platform: exponential, capped, with full jitter, so replicas that
//! failed together (a database restart, a broker away) do not all come back in the same instant.
use std::time::Duration;

/// Delays that double from `base` up to `max`, each drawn uniformly from [`base`/2, the delay]
/// ("equal jitter": never shorter than half the step, so a retry loop cannot spin).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `base`, never exceeds `max` (at least `base`).
    pub fn new(base: Duration, max: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        Self {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The un-jittered delay of retry number `attempt` (0 is the first).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.max)
    }

    /// The jittered delay of retry number `attempt`: within [ceiling / 2, ceiling].
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_micros() as u64;
        half + Duration::from_micros(fastrand::u64(0..=spread))
    }

    /// The next delay of this sequence.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Retries done so far in this sequence.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_within_their_band_and_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_secs(2));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(2));
        for attempt in 0..12 {
            for _ in 0..200 {
                let d = b.delay(attempt);
                let c = b.ceiling(attempt);
                assert!(d >= c / 2 && d <= c, "{d:?} outside [{:?}, {c:?}]", c / 2);
            }
        }
    }

    #[test]
    fn jitter_spreads_replicas_apart() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let draws: std::collections::HashSet<Duration> = (0..50).map(|_| b.delay(6)).collect();
        assert!(
            draws.len() > 10,
            "50 draws gave {} distinct delays",
            draws.len()
        );
    }

    #[test]
    fn a_sequence_steps_up_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(40));
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(10));
        b.next_delay();
        b.next_delay();
        assert_eq!(b.attempts(), 3);
        assert!(b.next_delay() >= Duration::from_millis(20));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(10));
    }
}
