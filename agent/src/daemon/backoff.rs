//! The pauses between attempts of the daemon's retry loops (enroll, register, watch,
//! renew, fetch): doubling from a first step up to a cap, each pause drawn between half
//! and all of the current step. The jitter matters at fleet scale: thousands of agents
//! that lost their controllers at the same moment (a leader failover, a switch reboot)
//! would otherwise come back in lockstep, every retry a thundering herd.

use std::time::Duration;

/// One retry loop's pauses.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    step: Duration,
    max: Duration,
}

impl Backoff {
    /// Pauses from about `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            step: first,
            max: max.max(first),
        }
    }

    /// The pause before the next attempt (between half and all of the current step),
    /// doubling the step for the one after.
    pub fn next_pause(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        step.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// Waits [`Self::next_pause`].
    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.next_pause()).await;
    }

    /// Back to the first step (after an attempt that worked).
    pub fn reset(&mut self) {
        self.step = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_each_jittered_within_its_step() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        for step in [100, 200, 400, 800, 1000, 1000, 1000] {
            let pause = b.next_pause();
            assert!(
                pause >= ms(step) / 2 && pause <= ms(step),
                "{pause:?} outside {step} ms / 2..={step} ms"
            );
        }
        b.reset();
        assert!(b.next_pause() <= ms(100));
    }

    #[test]
    fn pauses_are_spread_not_in_lockstep() {
        let pauses: std::collections::HashSet<Duration> = (0..50)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).next_pause())
            .collect();
        assert!(
            pauses.len() > 40,
            "50 agents drew {} distinct pauses",
            pauses.len()
        );
    }
}
