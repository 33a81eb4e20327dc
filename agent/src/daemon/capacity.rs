//! What this agent offers zones: the host's size less a host-specific reserve (none
//! unless configured), or the explicit share the configuration gives (several agents on
//! one machine each offer their own), plus what the assigned zones already hold.
//!
//! The global zone's usual reserve is kept once, by the controllers, from what every
//! host reports (`FleetSettings.reserved_*`, 1024 MiB and one CPU by default: see
//! docs/scheduler.md); keeping it here too would take it twice.

use std::path::Path;

use zonefleet_proto::host::{Capacity, HostSysinfo};

use super::config::CapacitySettings;

/// Memory this host keeps back beyond the fleet's reserve unless configured, MiB.
pub const DEFAULT_RESERVED_MEMORY_MIB: u64 = 0;
/// CPU this host keeps back beyond the fleet's reserve unless configured, percent.
pub const DEFAULT_RESERVED_CPU_PERCENT: u32 = 0;

/// The capacity to report: `settings` over the host's size (`sysinfo`, and the file
/// system of `data_dir` for disk), with `allocated` = (memory MiB, CPU percent, disk
/// GiB) held by the assigned zones.
pub fn capacity(
    sysinfo: &HostSysinfo,
    settings: &CapacitySettings,
    data_dir: &Path,
    allocated: (u64, u32, u64),
) -> Capacity {
    let memory_mib = settings.memory_mib.unwrap_or_else(|| {
        sysinfo.memory_mib.saturating_sub(
            settings
                .reserved_memory_mib
                .unwrap_or(DEFAULT_RESERVED_MEMORY_MIB),
        )
    });
    let cpu_percent = settings.cpu_percent.unwrap_or_else(|| {
        sysinfo.cpus.saturating_mul(100).saturating_sub(
            settings
                .reserved_cpu_percent
                .unwrap_or(DEFAULT_RESERVED_CPU_PERCENT),
        )
    });
    let disk_gib = settings.disk_gib.unwrap_or_else(|| {
        disk_size_gib(data_dir).saturating_sub(settings.reserved_disk_gib.unwrap_or(0))
    });
    Capacity {
        memory_mib,
        cpu_percent,
        disk_gib,
        allocated_memory_mib: allocated.0,
        allocated_cpu_percent: allocated.1,
        allocated_disk_gib: allocated.2,
    }
}

/// The size of the file system holding `dir`, GiB (0 when it cannot be read).
fn disk_size_gib(dir: &Path) -> u64 {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => s.blocks().saturating_mul(s.fragment_size()) >> 30,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot size the data dir's file system: disk capacity 0");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonefleet_proto::host::CgroupVersion;

    fn sysinfo() -> HostSysinfo {
        HostSysinfo {
            host_id: uuid::Uuid::new_v4(),
            hostname: "h1".into(),
            cpus: 4,
            memory_mib: 8192,
            kernel: "6.1".into(),
            cgroup_version: CgroupVersion::V1,
            cgroup_controllers: vec![],
            features: vec![],
            agent_version: "0".into(),
            agent_address: None,
        }
    }

    #[test]
    fn the_host_is_offered_whole_unless_a_reserve_or_a_share_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let c = capacity(
            &sysinfo(),
            &CapacitySettings::default(),
            dir.path(),
            (512, 50, 1),
        );
        assert_eq!((c.memory_mib, c.cpu_percent), (8192, 400));
        assert!(c.disk_gib > 0, "the temp dir's file system has a size");
        assert_eq!(
            (
                c.allocated_memory_mib,
                c.allocated_cpu_percent,
                c.allocated_disk_gib
            ),
            (512, 50, 1)
        );
        let share = CapacitySettings {
            memory_mib: Some(2048),
            cpu_percent: Some(150),
            disk_gib: Some(10),
            reserved_memory_mib: Some(4000),
            ..Default::default()
        };
        let c = capacity(&sysinfo(), &share, dir.path(), (0, 0, 0));
        assert_eq!((c.memory_mib, c.cpu_percent, c.disk_gib), (2048, 150, 10));
        let reserve = CapacitySettings {
            reserved_memory_mib: Some(9000),
            reserved_cpu_percent: Some(0),
            ..Default::default()
        };
        let c = capacity(&sysinfo(), &reserve, dir.path(), (0, 0, 0));
        assert_eq!((c.memory_mib, c.cpu_percent), (0, 400));
    }
}
