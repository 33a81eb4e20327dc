//! Builders of commands and readers of results for the state's unit tests.

pub(super) use zonefleet_proto::pb;
pub(super) use zonefleet_proto::pb::command_result::Result as R;
pub(super) use zonefleet_proto::pb::fleet_command::Kind;

pub(super) use super::FleetState;
pub(super) use crate::testing::{cmd, id};

/// Registers a host with `memory` MiB usable (see [`crate::testing::host`]), no rack
/// and no status of its own.
pub(super) fn host(id: &str, memory: u64) -> Kind {
    Kind::RegisterHost(pb::RegisterHostCommand {
        host: Some(pb::Host {
            status: 0,
            ..crate::testing::host(id, "", memory)
        }),
    })
}

pub(super) fn create(uuids: &[&str], memory: u64, key: &str) -> Kind {
    Kind::CreateZones(pb::CreateZonesCommand {
        // Without a user namespace: the test hosts report no kernel features.
        spec: Some(pb::ZoneSpec {
            image: "base@1".to_owned(),
            max_physical_memory_mib: Some(memory),
            user_namespace: Some(false),
            ..Default::default()
        }),
        uuids: uuids.iter().map(|s| id(s)).collect(),
        idempotency_key: key.to_owned(),
    })
}

pub(super) fn zones_of(result: pb::CommandResult) -> Vec<pb::Zone> {
    match result.result {
        Some(R::Zones(z)) => z.zones,
        other => panic!("not zones: {other:?}"),
    }
}

pub(super) fn error_of(result: pb::CommandResult) -> pb::CommandError {
    match result.result {
        Some(R::Error(e)) => e,
        other => panic!("not an error: {other:?}"),
    }
}

pub(super) fn zone_of(result: pb::CommandResult) -> pb::Zone {
    match result.result {
        Some(R::Zone(z)) => z,
        other => panic!("not a zone: {other:?}"),
    }
}

/// Sets a host's status unconditionally (as an operator's command would).
pub(super) fn set_status(s: &mut FleetState, id: &str, status: pb::HostStatus) {
    s.apply(&cmd(Kind::SetHostStatus(pb::SetHostStatusCommand {
        host_id: id.to_owned(),
        status: status as i32,
        from_status: None,
    })));
}
