//! What a controller needs to serve agents (the `Control` service): the signing CA
//! that signs their certificates, their certificates' lifetime, the lease terms and
//! the rate at which unauthenticated enrollment calls are taken.

use std::sync::Arc;
use std::time::Duration;

use zonefleet_proto::pki::FleetCa;

/// Agents' certificates live this long by default (hours).
pub const DEFAULT_AGENT_CERT_HOURS: u32 = 24;
/// How often agents heartbeat by default.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a lease lasts after a heartbeat by default.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

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
            .finish_non_exhaustive()
    }
}
