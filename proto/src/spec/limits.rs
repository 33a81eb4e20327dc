//! The allowed range of each numeric zone property, and the conversions from the
//! spec's (vmadm's, cgroup v1's) scales to cgroup v2's.

use std::ops::RangeInclusive;

use super::zone::ZoneSpec;

/// `max_physical_memory` and `max_swap`, MiB: 16 MiB (less cannot boot an init) to
/// 16 TiB (beyond the largest hosts we plan for; raise it with them).
pub const MEMORY_MIB: RangeInclusive<u64> = 16..=16_777_216;
/// The most CPUs a Linux host may have (the kernel's largest `NR_CPUS`).
pub const MAX_CPUS: u32 = 8192;
/// `cpu_cap`, percent of one CPU: up to every CPU of the largest possible host.
pub const CPU_CAP: RangeInclusive<u32> = 1..=100 * MAX_CPUS;
/// `cpu_shares`: the range of cgroup v1 `cpu.shares`.
pub const CPU_SHARES: RangeInclusive<u32> = 2..=262_144;
/// cgroup v2 `cpu.weight`.
pub const CPU_WEIGHT: RangeInclusive<u32> = 1..=10_000;
/// `max_lwps`: 1 to the kernel's `PID_MAX_LIMIT` (4 Mi).
pub const MAX_LWPS: RangeInclusive<u32> = 1..=4_194_304;
/// `io_priority`: the range of cgroup v1 `blkio.weight`.
pub const IO_PRIORITY: RangeInclusive<u32> = 10..=1000;
/// cgroup v2 `io.weight`.
pub const IO_WEIGHT: RangeInclusive<u32> = 1..=10_000;
/// `quota`, GiB: up to 64 TiB.
pub const QUOTA_GIB: RangeInclusive<u32> = 1..=65_536;
/// `tmpfs`, MiB: up to 1 TiB.
pub const TMPFS_MIB: RangeInclusive<u32> = 1..=1_048_576;
/// `customer_metadata` and `tags` together, bytes of keys and values.
pub const METADATA_BYTES: usize = 64 * 1024;

/// Converts v1 `cpu.shares` to v2 `cpu.weight` as runc does, mapping 2..=262144
/// linearly onto 1..=10000 (out-of-range shares are clamped first).
pub fn cpu_shares_to_weight(shares: u32) -> u32 {
    let shares = u64::from(shares.clamp(*CPU_SHARES.start(), *CPU_SHARES.end()));
    // 1 + (shares - 2) * 9999 / 262142, exactly runc's formula.
    (1 + (shares - 2) * 9999 / 262_142) as u32
}

/// Converts v1 `blkio.weight` to v2 `io.weight` as runc does, mapping 10..=1000
/// linearly onto 1..=10000 (out-of-range weights are clamped first).
pub fn io_priority_to_weight(priority: u32) -> u32 {
    let priority = priority.clamp(*IO_PRIORITY.start(), *IO_PRIORITY.end());
    1 + (priority - 10) * 9999 / 990
}

/// The CFS quota (v1 `cpu.cfs_quota_us`, the first number of v2 `cpu.max`) that
/// caps a zone at `cpu_cap` percent of one CPU for a period of `period_us`.
pub fn cpu_cap_to_cfs_quota_us(cpu_cap: u32, period_us: u64) -> u64 {
    u64::from(cpu_cap) * period_us / 100
}

impl ZoneSpec {
    /// The cgroup v2 `cpu.weight` for this spec's `cpu_shares`, if set.
    pub fn cpu_weight(&self) -> Option<u32> {
        self.cpu_shares.map(cpu_shares_to_weight)
    }

    /// The cgroup v2 `io.weight` for this spec's `io_priority`, if set.
    pub fn io_weight(&self) -> Option<u32> {
        self.io_priority.map(io_priority_to_weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_weights_span_the_v2_range() {
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 39);
        assert_eq!(cpu_shares_to_weight(100), 4);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(0), 1);
        assert_eq!(cpu_shares_to_weight(u32::MAX), 10_000);
    }

    #[test]
    fn io_weights_span_the_v2_range() {
        assert_eq!(io_priority_to_weight(10), 1);
        assert_eq!(io_priority_to_weight(100), 910);
        assert_eq!(io_priority_to_weight(1000), 10_000);
        assert_eq!(io_priority_to_weight(0), 1);
        for p in IO_PRIORITY {
            assert!(IO_WEIGHT.contains(&io_priority_to_weight(p)));
        }
    }

    #[test]
    fn cfs_quota() {
        assert_eq!(cpu_cap_to_cfs_quota_us(100, 100_000), 100_000);
        assert_eq!(cpu_cap_to_cfs_quota_us(50, 100_000), 50_000);
        assert_eq!(
            cpu_cap_to_cfs_quota_us(*CPU_CAP.end(), 100_000),
            819_200_000
        );
    }
}
