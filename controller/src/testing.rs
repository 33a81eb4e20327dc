//! The builders the library's own unit tests share (the state machine's and the
//! scheduler's): commands, hosts, specs and creates at the state machine's level
//! (`state/testing.rs` adds the state's own readers of results).
//! (Integration tests and benchmarks have theirs in the `zonefleet-harness` crate:
//! a dev-dependency on it would link a second copy of this library into unit tests.)

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;
use zonefleet_proto::pb::fleet_command::Kind;

/// `kind` as a command committed at 1 000 ms past the epoch.
pub(crate) fn cmd(kind: Kind) -> pb::FleetCommand {
    pb::FleetCommand {
        at_unix_ms: 1_000,
        kind: Some(kind),
    }
}

/// A host with `memory` MiB usable (the 1 GiB reservation added), 8 CPUs (7
/// usable), 1000 GiB of disk.
pub(crate) fn host(id: &str, rack: &str, memory: u64) -> pb::Host {
    pb::Host {
        host_id: id.to_owned(),
        rack: rack.to_owned(),
        status: pb::HostStatus::Ready as i32,
        capacity: Some(pb::Capacity {
            memory_mib: memory + 1024,
            cpu_percent: 800,
            disk_gib: 1000,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A zone spec of `memory` MiB and a 10 GiB quota.
pub(crate) fn spec(memory: u64) -> pb::ZoneSpec {
    pb::ZoneSpec {
        image: "base@1".to_owned(),
        max_physical_memory_mib: Some(memory),
        quota_gib: Some(10),
        ..Default::default()
    }
}

/// `result`, or a panic naming why the state machine refused.
pub(crate) fn ok(result: pb::CommandResult) -> pb::CommandResult {
    if let Some(R::Error(e)) = &result.result {
        panic!("refused: {}", e.message);
    }
    result
}

/// A create of zones of `spec` with these uuids and no idempotency key.
pub(crate) fn create_kind(spec: &pb::ZoneSpec, uuids: &[String]) -> Kind {
    Kind::CreateZones(pb::CreateZonesCommand {
        spec: Some(spec.clone()),
        uuids: uuids.to_vec(),
        idempotency_key: String::new(),
    })
}
