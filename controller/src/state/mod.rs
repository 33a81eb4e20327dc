//! The fleet state machine: hosts, zones, images, networks with their address leases,
//! join tokens (hashed) and the idempotency records of zone creates.
//!
//! Every change is a typed [`pb::FleetCommand`] (see `raft.proto`) applied by
//! [`FleetState::apply`], a pure function of the state and the command: every
//! controller applying the same log reaches the same state. Whatever is not
//! deterministic (uuids, the clock, token secrets) is decided by the proposer and
//! carried in the command.
//!
//! * [`apply`]: the dispatch of a command to its handler (after [`check`], the
//!   content rules every command obeys, the operator API's too), one module per object:
//!   `create` (zone creates, dry runs, idempotency records), `zones` (the lifecycle
//!   of an existing zone), `hosts`, `networks`, `images`, `tokens`, `settings`,
//!   `revocations` (the certificate revocation list);
//!   `addresses` and `capacity` hold what zones take of the network pools and of
//!   their hosts.
//! * placement: [`crate::scheduler`], run inside apply (see its module doc); the
//!   scheduler's view and the address pools are derived from the state and kept up
//!   to date by every handler.
//! * [`query`]: read helpers (resolving references, filtered listings).
//! * [`assignments`]: what each applied command changed of each host's assigned
//!   zones (the agents' watch streams are fed from it); `reports` applies the observed
//!   states agents report, `tokens` join tokens and enrollment.
//! * [`events`]: the fleet events (`zfadm events`) derived from each applied entry,
//!   kept in a bounded ring that is part of the replicated state.

mod addresses;
pub mod apply;
pub mod assignments;
mod capacity;
pub mod check;
pub mod create;
pub mod events;
mod hosts;
pub mod images;
mod moves;
mod networks;
pub mod query;
pub mod reports;
pub mod revocations;
pub mod settings;
#[cfg(test)]
mod testing;
pub mod tokens;
mod zones;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use zonefleet_proto::pb;

use crate::scheduler::ipam::Pools;
use crate::scheduler::FleetView;

/// How long an idempotency record of a zone create is kept (24 hours).
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// A refused command, the same on every controller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An object with that identity already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The command does not fit the current state (e.g. no address left).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The command is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The command was computed from an older version of the object.
    #[error("{0}")]
    Conflict(String),
    /// The caller's credential (a join token) is refused; the message never says why.
    #[error("{0}")]
    Refused(String),
}

impl StateError {
    /// The gRPC status code this error maps to.
    pub fn code(&self) -> tonic::Code {
        match self {
            StateError::NotFound(_) => tonic::Code::NotFound,
            StateError::AlreadyExists(_) => tonic::Code::AlreadyExists,
            StateError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            StateError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            StateError::Conflict(_) => tonic::Code::Aborted,
            StateError::Refused(_) => tonic::Code::PermissionDenied,
        }
    }

    /// As the result of a command.
    pub fn to_result(&self) -> pb::CommandResult {
        pb::CommandResult {
            result: Some(pb::command_result::Result::Error(pb::CommandError {
                code: self.code() as i32,
                message: self.to_string(),
            })),
        }
    }
}

/// What is derived from the state (never snapshotted): the scheduler's view, the
/// address pools and the idempotency records in expiry order.
#[derive(Debug, Clone, Default)]
pub struct Derived {
    /// The scheduler's view.
    pub view: FleetView,
    /// Addresses in use per network.
    pub pools: Pools,
    /// `(at_unix_ms, key)` of every idempotency record, oldest first: expiring them
    /// looks at the expired ones only, not at every record on every create.
    pub idempotency_by_age: BTreeSet<(i64, String)>,
}

/// The fleet's desired (and last observed) state, as every controller holds it.
#[derive(Debug, Clone, Default)]
pub struct FleetState {
    /// Hosts by `host_id`.
    pub hosts: BTreeMap<String, pb::Host>,
    /// Zones by uuid.
    pub zones: BTreeMap<String, pb::Zone>,
    /// Image manifests by uuid.
    pub images: BTreeMap<String, pb::ImageManifest>,
    /// Networks by uuid.
    pub networks: BTreeMap<String, pb::Network>,
    /// Join tokens by the hex sha256 of the secret.
    pub join_tokens: BTreeMap<String, pb::JoinToken>,
    /// Hosts enrolled but not registered yet, by `host_id` (the inventory their token
    /// gave them, which `RegisterHost` takes).
    pub enrollments: BTreeMap<String, pb::Enrollment>,
    /// Zone creates by idempotency key.
    pub idempotency: BTreeMap<String, pb::IdempotencyRecord>,
    /// Addresses in use: (network uuid, address) → zone uuid.
    pub leases: BTreeMap<(String, String), String>,
    /// The scheduler settings.
    pub settings: pb::FleetSettings,
    /// Revoked serials and identities, oldest first (see [`revocations`]).
    pub revocations: Vec<pb::Revocation>,
    /// Whether automatic rescheduling of lost hosts' zones is paused (see `moves`).
    pub reschedule_pause: pb::ReschedulePause,
    /// The most recent fleet events, oldest first (at most [`events::EVENTS_KEPT`]).
    pub events: VecDeque<pb::FleetEvent>,
    /// The scheduler's view and the address pools, derived from the fields above.
    pub derived: Derived,
}

impl PartialEq for FleetState {
    /// Equal replicated state (what is derived is not compared).
    fn eq(&self, other: &Self) -> bool {
        self.hosts == other.hosts
            && self.zones == other.zones
            && self.images == other.images
            && self.networks == other.networks
            && self.join_tokens == other.join_tokens
            && self.enrollments == other.enrollments
            && self.idempotency == other.idempotency
            && self.leases == other.leases
            && self.settings == other.settings
            && self.revocations == other.revocations
            && self.reschedule_pause == other.reschedule_pause
            && self.events == other.events
    }
}

impl FleetState {
    /// The state's parts as a snapshot message (Raft metadata left for the caller).
    pub fn to_snapshot(&self) -> pb::FleetSnapshot {
        pb::FleetSnapshot {
            last_applied: None,
            last_membership: None,
            hosts: self.hosts.values().cloned().collect(),
            zones: self.zones.values().cloned().collect(),
            images: self.images.values().cloned().collect(),
            networks: self.networks.values().cloned().collect(),
            join_tokens: self.join_tokens.values().cloned().collect(),
            idempotency: self.idempotency.values().cloned().collect(),
            leases: self
                .leases
                .iter()
                .map(|((network, address), zone)| pb::AddressLease {
                    network_uuid: network.clone(),
                    address: address.clone(),
                    zone_uuid: zone.clone(),
                })
                .collect(),
            settings: Some(self.settings),
            revocations: self.revocations.clone(),
            enrollments: self.enrollments.values().cloned().collect(),
            reschedule_pause: Some(self.reschedule_pause.clone()),
            events: self.events.iter().cloned().collect(),
        }
    }

    /// Builds what is derived (the scheduler's view, the address pools) again.
    pub fn rebuild_derived(&mut self) {
        self.derived = Derived {
            view: FleetView::build(&self.settings, self.hosts.values(), self.zones.values()),
            pools: Pools::build(&self.leases),
            idempotency_by_age: self
                .idempotency
                .values()
                .map(|r| (r.at_unix_ms, r.key.clone()))
                .collect(),
        };
    }

    /// The state a snapshot holds.
    pub fn from_snapshot(snapshot: &pb::FleetSnapshot) -> Self {
        let mut state = FleetState {
            hosts: snapshot
                .hosts
                .iter()
                .map(|h| (h.host_id.clone(), h.clone()))
                .collect(),
            zones: snapshot
                .zones
                .iter()
                .map(|z| (zone_uuid(z).to_owned(), z.clone()))
                .collect(),
            images: snapshot
                .images
                .iter()
                .map(|i| (i.uuid.clone(), i.clone()))
                .collect(),
            networks: snapshot
                .networks
                .iter()
                .map(|n| (n.uuid.clone(), n.clone()))
                .collect(),
            join_tokens: snapshot
                .join_tokens
                .iter()
                .map(|t| (t.sha256.clone(), t.clone()))
                .collect(),
            idempotency: snapshot
                .idempotency
                .iter()
                .map(|r| (r.key.clone(), r.clone()))
                .collect(),
            leases: snapshot
                .leases
                .iter()
                .map(|l| {
                    (
                        (l.network_uuid.clone(), l.address.clone()),
                        l.zone_uuid.clone(),
                    )
                })
                .collect(),
            settings: snapshot.settings.unwrap_or_default(),
            revocations: snapshot.revocations.clone(),
            enrollments: snapshot
                .enrollments
                .iter()
                .map(|e| (e.host_id.clone(), e.clone()))
                .collect(),
            reschedule_pause: snapshot.reschedule_pause.clone().unwrap_or_default(),
            events: snapshot
                .events
                .iter()
                .skip(snapshot.events.len().saturating_sub(events::EVENTS_KEPT))
                .cloned()
                .collect(),
            derived: Derived::default(),
        };
        state.rebuild_derived();
        state
    }
}

/// A stored zone's uuid (stored specs always carry one).
pub fn zone_uuid(zone: &pb::Zone) -> &str {
    zone.spec
        .as_ref()
        .and_then(|s| s.uuid.as_deref())
        .unwrap_or_default()
}

/// A successful command result carrying `result`.
pub fn ok(result: pb::command_result::Result) -> pb::CommandResult {
    pb::CommandResult {
        result: Some(result),
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;

    #[test]
    fn snapshots_round_trip() {
        let mut s = FleetState::default();
        s.apply(&cmd(host("h1", 1024)));
        s.apply(&cmd(create(&["z1"], 256, "k")));
        assert_eq!(FleetState::from_snapshot(&s.to_snapshot()), s);
    }
}
