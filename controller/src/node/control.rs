//! What a controller needs to serve agents (the `Control` service): the signing CA
//! that signs their certificates, their certificates' lifetime, the lease terms and
//! the rate at which unauthenticated enrollment calls are taken.

use std::sync::Arc;
use std::time::Duration;

use zonefleet_proto::pki::FleetCa;

/// Agents' certificates live this long by default (hours).
pub const DEFAULT_AGENT_CERT_HOURS: u32 = 24;
/// How often agents heartbeat by default.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// How long a lease lasts after a heartbeat by default: a dead host is `down` within
/// this (plus the leader's 100 ms tick).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(2);
/// How long before its lease runs out an agent fences its `reschedule` zones, by
/// default.
pub const DEFAULT_FENCE_MARGIN: Duration = Duration::from_millis(500);
/// How long after a lost host's lease lapsed the leader waits before moving its
/// zones, by default (for clock rates and the fence's own halt; docs/host-loss.md).
pub const DEFAULT_RESCHEDULE_MARGIN: Duration = Duration::from_millis(500);

/// The `Control` service's settings of one controller.
#[derive(Clone)]
pub struct ControlOptions {
    /// The signing CA that signs agents' certificates (`None`: `Enroll` and
    /// `RenewCertificate` answer `FAILED_PRECONDITION`).
    pub signing_ca: Option<Arc<FleetCa>>,
    /// Lifetime of the agent certificates this controller signs, in hours (at most
    /// 168, see `zonefleet_proto::pki::lifetime::AGENT`).
    pub agent_cert_hours: u32,
    /// How often agents are told to heartbeat.
    pub heartbeat_interval: Duration,
    /// How long after its last heartbeat a host's lease lapses (and the leader marks
    /// it down).
    pub lease_ttl: Duration,
    /// How long before the lease runs out (from when it sent the heartbeat that renewed
    /// it) an agent halts its `reschedule` zones.
    pub fence_margin: Duration,
    /// How long after a lost host's lease lapsed (on the leader's clock) its
    /// `reschedule` zones are moved.
    pub reschedule_margin: Duration,
    /// Unauthenticated `Enroll` calls one peer address may make at once.
    pub enroll_burst: u32,
    /// ... and how many more per second after that.
    pub enroll_per_second: u32,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            signing_ca: None,
            agent_cert_hours: DEFAULT_AGENT_CERT_HOURS,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            lease_ttl: DEFAULT_LEASE_TTL,
            fence_margin: DEFAULT_FENCE_MARGIN,
            reschedule_margin: DEFAULT_RESCHEDULE_MARGIN,
            enroll_burst: 20,
            enroll_per_second: 2,
        }
    }
}

impl std::fmt::Debug for ControlOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlOptions")
            .field(
                "signing_ca",
                &self.signing_ca.as_ref().map(|ca| ca.fingerprint()),
            )
            .field("agent_cert_hours", &self.agent_cert_hours)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("lease_ttl", &self.lease_ttl)
            .field("fence_margin", &self.fence_margin)
            .field("reschedule_margin", &self.reschedule_margin)
            .finish_non_exhaustive()
    }
}
