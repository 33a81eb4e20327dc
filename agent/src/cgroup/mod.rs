//! The cgroup layer of the zone library: one zone = one cgroup
//! `<parent>/<zone-uuid>` (the parent is `zonefleet` on a real host), held to the
//! zone's [`Limits`].
//!
//! Shaped like youki's libcgroups: [`detect`] finds which layout the host has,
//! [`factory::create_manager`] picks the manager for it, [`v1::V1Manager`] drives
//! the separate v1 hierarchies (one file per controller), [`v2::V2Manager`] the
//! unified v2 hierarchy (one file per controller, devices by an eBPF program).
//! Both implement [`CgroupManager`].
//!
//! Every limit that is written is read back: when the kernel stored something else
//! than what was asked, the call fails with [`CgroupError::ReadBack`] naming the file,
//! the wanted and the stored value, because a zone silently held to a different limit
//! than its spec is worse than a zone that refuses to boot.

pub mod detect;
pub mod devices;
mod error;
pub mod factory;
pub(crate) mod fsutil;
mod killer;
pub mod limits;
pub mod procfs;
pub mod v1;
pub mod v2;

use std::time::Duration;

pub use detect::{DetectError, Layout};
pub use devices::{DeviceAccess, DeviceKind, DeviceRule};
pub use error::CgroupError;
pub use factory::create_manager;
pub use limits::Limits;
/// Which cgroup version a manager drives (the version a host reports).
pub use zonefleet_proto::host::CgroupVersion;

/// The parent cgroup under which a real agent puts its zones (`zonefleet/<uuid>`).
pub const DEFAULT_PARENT: &str = "zonefleet";

/// What a zone mounts at `/sys/fs/cgroup` (inside its cgroup namespace, so it
/// sees its own cgroup as the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delegation {
    /// A tmpfs holding systemd's named v1 hierarchy at `systemd/`.
    V1NamedSystemd,
    /// The unified hierarchy.
    V2,
    /// Nothing: the host has no hierarchy to delegate (v1 without
    /// `name=systemd`); an init that needs cgroups will say so.
    None,
}

/// What a zone has used so far, read from its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Memory charged to the zone now, in bytes (v1 `memory.usage_in_bytes`,
    /// v2 `memory.current`).
    pub memory_bytes: u64,
    /// CPU time used by the zone since its cgroup was made, in nanoseconds
    /// (v1 `cpuacct.usage`, v2 `cpu.stat usage_usec` × 1000).
    pub cpu_usage_ns: u64,
    /// How many processes the kernel's OOM killer killed in the zone
    /// (v1 `memory.oom_control oom_kill`, v2 `memory.events oom_kill`).
    pub oom_kills: u64,
}

/// The one interface the zone lifecycle uses, whatever the host's layout.
///
/// A trait rather than an enum over the two managers: the zone lifecycle (and its
/// tests) can hold a `Box<dyn CgroupManager>` from [`create_manager`] or a fake of
/// its own, and the compiler checks that both managers offer the same operations with
/// the same signatures. Dynamic dispatch costs nothing next to the file writes each
/// call makes.
///
/// `zone` is always a single path component (the zone's uuid); anything else is
/// refused with [`CgroupError::InvalidName`].
pub trait CgroupManager: std::fmt::Debug + Send + Sync {
    /// The cgroup version this manager drives.
    fn version(&self) -> CgroupVersion;

    /// Makes the zone's cgroup and applies `limits`. Fails with
    /// [`CgroupError::AlreadyExists`] if it exists. On any failure nothing of the
    /// zone's cgroup is left behind.
    fn create(&self, zone: &str, limits: &Limits) -> Result<(), CgroupError>;

    /// Applies `limits` to a running zone (a `None` limit becomes unlimited) and
    /// reads every value back.
    fn update(&self, zone: &str, limits: &Limits) -> Result<(), CgroupError>;

    /// Whether the zone's cgroup exists (in any hierarchy, for v1).
    fn exists(&self, zone: &str) -> Result<bool, CgroupError>;

    /// Hands the zone's root `owner` (host uid, gid) a subtree it may manage,
    /// for an init such as systemd that groups its services in cgroups: under v1
    /// the zone's cgroup in systemd's named hierarchy (no controller: grouping
    /// only), under v2 the zone's own cgroup (its limits stay the host's: only
    /// `cgroup.procs`, `cgroup.threads` and `cgroup.subtree_control` are handed
    /// over, so the zone can divide its limits, never raise them). Says what the
    /// zone mounts at `/sys/fs/cgroup`. Call after [`create`](Self::create).
    fn delegate(&self, zone: &str, owner: (u32, u32)) -> Result<Delegation, CgroupError>;

    /// Moves process `pid` (all its threads) into the zone.
    fn add_pid(&self, zone: &str, pid: u32) -> Result<(), CgroupError>;

    /// Every process in the zone, its sub-cgroups included, sorted, no duplicates.
    fn pids(&self, zone: &str) -> Result<Vec<u32>, CgroupError>;

    /// Which zone of this manager's parent process `pid` is in, from
    /// `/proc/<pid>/cgroup`; `None` when it is in none (e.g. the global zone).
    fn zone_of_pid(&self, pid: u32) -> Result<Option<String>, CgroupError>;

    /// Freezes every process of the zone and waits until they are frozen.
    fn freeze(&self, zone: &str, timeout: Duration) -> Result<(), CgroupError>;

    /// Thaws the zone and waits until it runs again.
    fn thaw(&self, zone: &str, timeout: Duration) -> Result<(), CgroupError>;

    /// Kills every process of the zone and waits until none is left, at most
    /// `timeout`.
    fn kill_all(&self, zone: &str, timeout: Duration) -> Result<(), CgroupError>;

    /// What the zone has used so far.
    fn usage(&self, zone: &str) -> Result<Usage, CgroupError>;

    /// Removes the zone's cgroup (sub-cgroups first) from every hierarchy.
    /// Idempotent: a missing or half-made cgroup is fine. Fails with
    /// [`CgroupError::Busy`] while processes are still inside.
    fn delete(&self, zone: &str) -> Result<(), CgroupError>;

    /// The zones that have a cgroup under this manager's parent, sorted.
    fn zones(&self) -> Result<Vec<String>, CgroupError>;

    /// Kills and deletes the cgroup of every zone under the parent for which
    /// `is_live` says false (left over by a crash or a deleted zone); returns their
    /// names. A process in a zone the agent does not know must not keep running.
    fn sweep(
        &self,
        is_live: &dyn Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<Vec<String>, CgroupError> {
        let stale: Vec<String> = self.zones()?.into_iter().filter(|z| !is_live(z)).collect();
        for zone in &stale {
            self.kill_all(zone, timeout)?;
            self.delete(zone)?;
        }
        Ok(stale)
    }

    /// Removes the (empty) parent cgroup itself from every hierarchy; idempotent.
    fn delete_parent(&self) -> Result<(), CgroupError>;
}

/// Checks that `zone` can be used as a single cgroup directory name.
pub(crate) fn check_name(zone: &str) -> Result<(), CgroupError> {
    let why = if zone.is_empty() {
        Some("empty")
    } else if zone == "." || zone == ".." {
        Some("is . or ..")
    } else if zone.contains('/') || zone.contains('\0') {
        Some("contains / or NUL")
    } else if zone.len() > 200 {
        Some("longer than 200 bytes")
    } else {
        None
    };
    match why {
        Some(why) => Err(CgroupError::InvalidName {
            name: zone.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// Checks a parent path: relative components separated by `/`, each a valid name.
pub(crate) fn check_parent(parent: &str) -> Result<(), CgroupError> {
    parent.split('/').try_for_each(check_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("0b4c5a5e-1c7e-4d6b-a1f8-7f2b1c9d0e11").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_parent("zonefleet").is_ok());
        assert!(check_parent("a/b").is_ok());
        assert!(check_parent("/a").is_err());
        assert!(check_parent("a/../b").is_err());
    }
}
