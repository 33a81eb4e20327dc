//! A zone spec's resource properties as cgroup limits.

use zonefleet_proto::spec::ZoneSpec;

use crate::cgroup::Limits;

const MIB: u64 = 1 << 20;

/// The cgroup limits of a spec (defaults already applied), with the zone
/// device allow list.
pub fn from_spec(spec: &ZoneSpec) -> Limits {
    Limits {
        memory_bytes: spec.max_physical_memory.map(|m| m * MIB),
        memory_swap_bytes: spec.max_swap.map(|m| m * MIB),
        cpu_cap_percent: spec.cpu_cap,
        cpu_shares: spec.cpu_shares.map(u64::from),
        pids_max: spec.max_lwps.map(u64::from),
        io_weight: spec.io_priority.map(|w| w as u16),
        ..Limits::zone_defaults()
    }
}
