//! Fast failover when the leader's process is gone.
//!
//! openraft 0.9 starts an election only on its tick (every 1.5 × the heartbeat), after
//! the leader lease (`election_timeout_max`) *plus* the follower's own election
//! timeout, and a candidate that once learned of a longer log waits twice the maximum
//! more at its next election. A dead leader is therefore replaced 0.3–0.9 s after it
//! died.
//!
//! A follower here watches the leader's `AppendEntries` itself. Once none has come
//! for [`FailoverTiming::after`] (past every voter's lease, so votes can be granted;
//! later for higher ids, so the survivors campaign one at a time in id order), it
//! tries to connect to the leader's address (through the controller's
//! [`Dialer`], like every peer connection). A refused connection means nothing
//! listens there any more — the leader's process is gone — and the follower campaigns
//! at once. A leader that is slow, partitioned away or on a host that does not answer
//! is left to openraft's own timers: this never makes an election that openraft would
//! not have made a little later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;

use super::dial::{Dialer, SharedDialer};
use super::{NodeId, Raft};

/// How often a follower looks at the time since the leader's last `AppendEntries`.
const POLL: Duration = Duration::from_millis(5);
/// How long a connection attempt to the leader may take before it counts as "no
/// answer" (left to openraft's timers).
const PROBE_TIMEOUT: Duration = Duration::from_millis(50);

/// When a follower probes a silent leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverTiming {
    /// Silence from the leader after which this follower probes it: longer than
    /// every voter's lease, and one step longer per slot (by id) than the previous
    /// controller's.
    pub after: Duration,
}

impl FailoverTiming {
    /// Past every voter's lease (at most `lease_ms` + 1) by a margin for heartbeats
    /// that reached another controller a little later, plus one step per `slot`, so
    /// the survivors campaign one at a time, in id order.
    pub fn for_slot(lease_ms: u64, slot: u64) -> Self {
        const MARGIN_MS: u64 = 10;
        const STEP_MS: u64 = 20;
        FailoverTiming {
            after: Duration::from_millis(lease_ms + 1 + MARGIN_MS + slot * STEP_MS),
        }
    }
}

/// When the leader last reached this controller (an accepted `AppendEntries`).
#[derive(Debug, Clone)]
pub struct LeaderContact {
    start: Instant,
    /// Milliseconds since `start`.
    last_ms: Arc<AtomicU64>,
}

impl Default for LeaderContact {
    fn default() -> Self {
        LeaderContact {
            start: Instant::now(),
            last_ms: Arc::default(),
        }
    }
}

impl LeaderContact {
    /// Records that the leader reached this controller now.
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long since the leader last reached this controller (or since start).
    pub fn silence(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Whether nothing listens at `leader`'s `addr` any more (the connection is refused).
/// Any other outcome — connected, timed out, unreachable — is not proof of a dead
/// leader.
async fn refused(dialer: &dyn Dialer, leader: NodeId, addr: &str) -> bool {
    match tokio::time::timeout(PROBE_TIMEOUT, dialer.dial(leader, addr.to_owned())).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

/// Watches the leader for controller `id` until the Raft node stops, probing it
/// through `dialer`; see the module documentation.
pub async fn watch(
    id: NodeId,
    raft: Raft,
    contact: LeaderContact,
    timing: FailoverTiming,
    dialer: SharedDialer,
) {
    let mut interval = tokio::time::interval(POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The (term, leader) already probed: one probe per leader and silence.
    let mut probed: Option<(u64, NodeId)> = None;
    loop {
        interval.tick().await;
        let (leader, addr, term) = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            if m.running_state.is_err() {
                return;
            }
            let voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == id);
            let Some(leader) = m.current_leader.filter(|l| *l != id) else {
                continue;
            };
            if m.state != ServerState::Follower || !voter {
                continue;
            }
            let Some(node) = m.membership_config.membership().get_node(&leader) else {
                continue;
            };
            (leader, node.addr.clone(), m.current_term)
        };
        if contact.silence() < timing.after {
            probed = None;
            continue;
        }
        if probed == Some((term, leader)) {
            continue;
        }
        probed = Some((term, leader));
        if refused(dialer.as_ref(), leader, &addr).await {
            tracing::info!(
                leader,
                term,
                silence_ms = contact.silence().as_millis() as u64,
                "the leader's address refuses connections: campaigning now"
            );
            if let Err(e) = raft.trigger().elect().await {
                tracing::warn!(error = %e, "could not start an election");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_listening_one_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let tcp = crate::raft::dial::TcpDialer;
        assert!(!refused(&tcp, 1, &addr).await, "a listening port");
        drop(listener);
        assert!(refused(&tcp, 1, &addr).await, "a closed port");
    }

    #[tokio::test]
    async fn silence_counts_from_the_last_contact() {
        let contact = LeaderContact::default();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(contact.silence() >= Duration::from_millis(30));
        contact.touch();
        assert!(contact.silence() < Duration::from_millis(30));
    }
}
