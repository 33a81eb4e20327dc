//! The generated gRPC contract, package `zonefleet.v1`.

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("zonefleet.v1");
}

pub use generated::*;

/// The gRPC metadata key naming the leader (`HOST:PORT`) on an `UNAVAILABLE` answer of
/// a controller that could not pass a heartbeat on to it (see `control.proto`): the
/// agent may call the leader directly.
pub const LEADER_METADATA: &str = "zonefleet-leader";

/// The encoded `FileDescriptorSet` of every zonefleet `.proto`, used to list the
/// RPCs of the contract (for example to check that each has an access rule).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("zonefleet_v1_descriptor");

/// A zone state as operators read it (`running`, `installed`, …), or its number when
/// this version does not know it.
pub fn zone_state_name(state: i32) -> String {
    ZoneState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("ZONE_STATE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| state.to_string())
}

/// A host status as operators read it (`ready`, `down`, …), or its number when this
/// version does not know it.
pub fn host_status_name(status: i32) -> String {
    HostStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("HOST_STATUS_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| status.to_string())
}

/// `FleetSettings.mass_loss_percent` when unset: more than half of the hosts down at
/// once pauses automatic rescheduling.
pub const DEFAULT_MASS_LOSS_PERCENT: u32 = 50;
