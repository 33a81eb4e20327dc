//! `boot.json`: everything zsched needs to boot a zone, written by the boot
//! verb. zsched reads only this file, so what a zone booted with is on disk for
//! anyone to inspect, and zsched never needs the spec or the image store.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::runtime::RuntimeError;
use crate::files::write_replace;

use crate::zone::paths::PLAN_FILE;

/// How to boot one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootPlan {
    /// The zone's uuid (names its cgroup).
    pub uuid: String,
    /// The zone's directory on the host.
    pub zone_dir: PathBuf,
    /// The zone's disk image (its writable layer, sized to `quota`).
    pub disk_image: PathBuf,
    /// Where the disk is mounted, inside the zone's mount namespace only.
    pub disk_mount: PathBuf,
    /// The image's read-only root filesystem (overlay lower layer).
    pub lower: PathBuf,
    /// Where the overlay is mounted before it becomes the zone's `/`.
    pub root: PathBuf,
    /// The zone's hostname.
    pub hostname: String,
    /// Size of the zone's `/tmp` in MiB.
    pub tmpfs_mib: u64,
    /// Host directory shown read-only at `/.zonecontrol`.
    pub zonecontrol: PathBuf,
    /// init's argv.
    pub init: Vec<String>,
    /// init's environment.
    pub env: Vec<(String, String)>,
    /// The zone's capability bounding set.
    pub limit_priv: Vec<String>,
    /// Cap of one console log file, in bytes.
    pub console_cap_bytes: u64,
    /// The cgroup parent of the zone's cgroup.
    pub cgroup_parent: String,
    /// Files written inside the zone after `pivot_root` (hostname, hosts,
    /// resolv.conf): written from inside, so a symlink the zone planted can
    /// only point within the zone.
    pub files: Vec<ZoneFile>,
    /// The zone's NICs, resolved (absent: the zone has only `lo`). zsched
    /// builds them between init's `staged` and `go`, and removes them at exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<crate::net::NetPlan>,
    /// The host's lease file ([`crate::fence`]): zsched kills the zone when the lease
    /// in it runs out. Set for `on_host_lost: reschedule` zones booted by the fleet
    /// agent with fencing on; absent, nothing fences the zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<std::path::PathBuf>,
    /// The zone's host id range: zsched makes the zone's user namespace over it
    /// and shows the image's layer idmapped into it. Absent: no user namespace
    /// (the zone's root is the host's, bounded by `limit_priv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<crate::isolation::userns::IdRange>,
    /// What the zone mounts at `/sys/fs/cgroup` (the subtree the boot verb
    /// delegated to the zone's root).
    #[serde(default = "no_delegation")]
    pub cgroup: crate::cgroup::Delegation,
    /// The image's own `/etc/machine-id`, if it ships one: the zone gets a
    /// machine id of its own instead while its copy is still this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_machine_id: Option<String>,
}

fn no_delegation() -> crate::cgroup::Delegation {
    crate::cgroup::Delegation::None
}

/// A file the boot writes inside the zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneFile {
    /// Absolute path inside the zone.
    pub path: String,
    /// Its contents.
    pub contents: String,
}

impl BootPlan {
    /// Reads a plan.
    pub fn load(path: &Path) -> Result<BootPlan, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the plan into its zone directory (not fsync'd: it is written anew
    /// at every boot).
    pub fn store(&self) -> Result<PathBuf, RuntimeError> {
        let path = self.zone_dir.join(PLAN_FILE);
        let bytes = serde_json::to_vec_pretty(self).expect("boot plan serializes");
        write_replace(&path, &bytes)?;
        Ok(path)
    }
}
