//! A token bucket per peer address, for the one RPC callable without a certificate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Addresses remembered at most; past this, the buckets that are full again go.
const MAX_PEERS: usize = 10_000;

/// A token bucket per peer IP: `burst` calls at once, `per_second` more each second.
#[derive(Debug)]
pub struct PeerLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl PeerLimiter {
    /// A limiter allowing `burst` calls at once and `per_second` after.
    pub fn new(burst: u32, per_second: u32) -> Self {
        PeerLimiter {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one call's token for `peer`: whether it may go ahead.
    pub fn allow(&self, peer: IpAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_PEERS && !buckets.contains_key(&peer) {
            let (burst, rate) = (self.burst, self.per_second);
            buckets.retain(|_, (tokens, at)| {
                *tokens + rate * now.saturating_duration_since(*at).as_secs_f64() < burst
            });
        }
        let (tokens, at) = buckets.entry(peer).or_insert((self.burst, now));
        let refill = self.per_second * now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + refill).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_peer() {
        let limiter = PeerLimiter::new(3, 2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t = Instant::now();
        assert!((0..3).all(|_| limiter.allow(a, t)));
        assert!(!limiter.allow(a, t));
        assert!(limiter.allow(b, t), "another peer has its own bucket");
        assert!(limiter.allow(a, t + Duration::from_millis(500)));
        assert!(!limiter.allow(a, t + Duration::from_millis(500)));
    }
}
