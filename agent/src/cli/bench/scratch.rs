//! [`Scratch`]: a benchmark's own zone host (data dir, cgroup parent, bridge) in
//! a directory of its own, all removed when dropped.

use std::path::PathBuf;

use zonefleet_agent::zone::host::{HostOptions, ZoneHost};

/// Removes the benchmark's zones, cgroup parent, bridge and directory when dropped.
pub(super) struct Scratch {
    /// The benchmark's zone host (data dir `<dir>/data`).
    pub host: ZoneHost,
    /// The benchmark's directory (`$TMPDIR/zonefleet-bench-<pid>`), for
    /// whatever else it makes.
    pub dir: PathBuf,
}

impl Scratch {
    /// A fresh zone host under `$TMPDIR/zonefleet-bench-<pid>`, its zones under
    /// the cgroup parent `zonefleet-bench-<pid>`, its NICs on a bridge of its
    /// own (never the host's zfbr0).
    pub fn open() -> anyhow::Result<Scratch> {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("zonefleet-bench-{pid}"));
        let mut options = HostOptions::new(dir.join("data"));
        options.cgroup_parent = Some(format!("zonefleet-bench-{pid}"));
        options.bridge.name = format!("zfbench{}", pid % 100_000);
        // Made before the host opens, so the guard owns it even if opening fails.
        std::fs::create_dir_all(&dir)?;
        match ZoneHost::open(options) {
            Ok(host) => Ok(Scratch { host, dir }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e.into())
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(zones) = self.host.list() {
            for z in zones {
                let _ = self.host.delete(&z.uuid);
            }
        }
        let _ = self.host.cgroups.delete_parent();
        // Made by the first boot with a NIC; absent otherwise (then this fails, harmlessly).
        let _ = zonefleet_agent::net::remove_bridge(&self.host.bridge.name);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
