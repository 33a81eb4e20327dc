//! The fleet state machine: hosts, zones, images, networks with their address leases,
//! join tokens (hashed) and the idempotency records of zone creates.
//!
//! Every change is a typed [`pb::FleetCommand`] (see `raft.proto`) applied by
//! [`FleetState::apply`], a pure function of the state and the command: every
//! controller applying the same log reaches the same state. Whatever is not
//! deterministic (uuids, the clock, token secrets) is decided by the proposer and
//! carried in the command.
//!
//! * [`apply`]: the command handlers.
//! * [`placement`]: where a new zone goes (the seam for the scheduler).
//! * [`patch`]: merging a partial zone spec into a stored one.
//! * [`query`]: read helpers (resolving references, filtered listings).

pub mod apply;
pub mod patch;
pub mod placement;
pub mod query;

use std::collections::BTreeMap;

use zonefleet_proto::pb;

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

/// The fleet's desired (and last observed) state, as every controller holds it.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// Zone creates by idempotency key.
    pub idempotency: BTreeMap<String, pb::IdempotencyRecord>,
    /// Addresses in use: (network uuid, address) → zone uuid.
    pub leases: BTreeMap<(String, String), String>,
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
        }
    }

    /// The state a snapshot holds.
    pub fn from_snapshot(snapshot: &pb::FleetSnapshot) -> Self {
        FleetState {
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
        }
    }
}

/// A stored zone's uuid (stored specs always carry one).
pub fn zone_uuid(zone: &pb::Zone) -> &str {
    zone.spec
        .as_ref()
        .and_then(|s| s.uuid.as_deref())
        .unwrap_or_default()
}

/// A stored zone's memory in MiB (stored specs always carry it).
pub fn zone_memory_mib(spec: &pb::ZoneSpec) -> u64 {
    spec.max_physical_memory_mib.unwrap_or(0)
}

/// A successful command result carrying `result`.
pub fn ok(result: pb::command_result::Result) -> pb::CommandResult {
    pb::CommandResult {
        result: Some(result),
    }
}
