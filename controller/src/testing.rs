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

/// The uuid a test calls `name` (itself when it is one already): names read better in
/// tests, while the state machine takes only UUIDs for zones, networks and images.
pub(crate) fn id(name: &str) -> String {
    if uuid::Uuid::parse_str(name).is_ok() {
        return name.to_owned();
    }
    // FNV-1a: stable across runs and platforms.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("00000000-0000-4000-8000-{:012x}", hash & 0xffff_ffff_ffff)
}

/// A host's sysinfo as an agent reports it, with these kernel features available.
pub(crate) fn sysinfo(host_id: &str, features: &[&str]) -> pb::HostSysinfo {
    pb::HostSysinfo {
        host_id: id(host_id),
        hostname: "host".to_owned(),
        cpus: 8,
        memory_mib: 16384,
        cgroup_version: pb::CgroupVersion::V1 as i32,
        features: features
            .iter()
            .map(|name| pb::Feature {
                name: (*name).to_owned(),
                available: true,
                detail: String::new(),
            })
            .collect(),
        ..Default::default()
    }
}

/// A zone spec of `memory` MiB and a 10 GiB quota, without a user namespace
/// (test hosts report no kernel features; a zone asking for one is placed only
/// on hosts that report user namespaces and idmapped mounts).
pub(crate) fn spec(memory: u64) -> pb::ZoneSpec {
    pb::ZoneSpec {
        image: "base@1".to_owned(),
        max_physical_memory_mib: Some(memory),
        quota_gib: Some(10),
        user_namespace: Some(false),
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
        uuids: uuids.iter().map(|u| id(u)).collect(),
        idempotency_key: String::new(),
    })
}
