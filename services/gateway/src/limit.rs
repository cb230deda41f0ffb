//! The rate limit per API client: a token bucket per key (an API key's name or a person's
//! subject, within their council), `burst` requests at once, refilled at `per_minute`. Held in
//! each gateway process: with N replicas behind a load balancer a client gets up to N times it.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets beyond this many are swept of the full ones (clients idle long enough to be refilled).
const SWEEP_ABOVE: usize = 10_000;

impl RateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `client`'s bucket at `now`: `Ok` when it may go ahead, or how
    /// long until it may.
    pub fn take(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > SWEEP_ABOVE {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let b = buckets.entry(client.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_each_client_on_its_own() {
        let l = RateLimiter::new(60, 3); // one a second after three at once
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take("a", t0), Ok(()));
        }
        let wait = l.take("a", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another client is not held back by the first.
        assert_eq!(l.take("b", t0), Ok(()));
        // Half a second refills half a token: still refused, sooner.
        let later = l.take("a", t0 + Duration::from_millis(500)).unwrap_err();
        assert!(later < wait, "{later:?}");
        assert_eq!(l.take("a", t0 + Duration::from_millis(1000)), Ok(()));
        assert!(l.take("a", t0 + Duration::from_millis(1000)).is_err());
        // A long pause refills to the burst, no more.
        let t1 = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(l.take("a", t1), Ok(()));
        }
        assert!(l.take("a", t1).is_err());
    }
}
