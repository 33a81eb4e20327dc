//! The v1 manager: a zone is one directory `<mount>/<parent>/<zone>` in each of
//! the separate hierarchies (memory, cpu, cpuacct, cpuset, pids, blkio, freezer,
//! devices; co-mounted ones such as `cpu,cpuacct` share a directory).

mod blkio;
mod cpu;
mod cpuset;
mod devices;
mod freezer;
mod memory;
mod pids;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::detect::{V1Hierarchy, NAMED_SYSTEMD};
use super::killer::{self, Freezable};
use super::{check_name, check_parent, fsutil, procfs};
use super::{CgroupError, CgroupManager, CgroupVersion, Limits, Usage};

/// The controllers a zone is put under.
pub const CONTROLLERS: [&str; 8] = [
    "memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "freezer", "devices",
];

/// Drives the v1 hierarchies.
#[derive(Debug, Clone)]
pub struct V1Manager {
    hierarchies: Vec<V1Hierarchy>,
    parent: String,
}

impl V1Manager {
    /// A manager over `hierarchies` (from [`super::detect::detect`]) with zones under
    /// `parent` (e.g. [`super::DEFAULT_PARENT`]) in each. Hierarchies carrying none
    /// of [`CONTROLLERS`] are ignored.
    pub fn new(hierarchies: Vec<V1Hierarchy>, parent: &str) -> Result<Self, CgroupError> {
        check_parent(parent)?;
        let hierarchies = hierarchies
            .into_iter()
            .filter(|h| {
                h.controllers
                    .iter()
                    .any(|c| CONTROLLERS.contains(&c.as_str()) || c == NAMED_SYSTEMD)
            })
            .map(|mut h| {
                // zone_of_pid compares sorted controller lists.
                h.controllers.sort();
                h
            })
            .collect();
        Ok(V1Manager {
            hierarchies,
            parent: parent.to_owned(),
        })
    }

    /// The hierarchies in use.
    pub fn hierarchies(&self) -> &[V1Hierarchy] {
        &self.hierarchies
    }

    /// The parent directory in the hierarchy carrying `controller`.
    fn parent_dir(&self, controller: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.mount.join(&self.parent))
    }

    /// The zone's directory in the hierarchy carrying `controller`, if mounted.
    pub fn zone_dir(&self, zone: &str, controller: &str) -> Option<PathBuf> {
        self.parent_dir(controller).map(|p| p.join(zone))
    }

    /// The zone's directory in every hierarchy.
    fn zone_dirs(&self, zone: &str) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| h.mount.join(&self.parent).join(zone))
            .collect()
    }

    /// The zone's directory for `controller`, or why it cannot be had.
    fn need(&self, zone: &str, controller: &str, why: &str) -> Result<PathBuf, CgroupError> {
        self.zone_dir(zone, controller)
            .ok_or_else(|| CgroupError::FeatureMissing {
                feature: format!("v1 {controller} controller"),
                detail: format!("no mounted hierarchy carries it; needed for {why}"),
            })
    }

    /// Makes each level of the parent, then the zone's directory, in `h`.
    fn make(&self, h: &V1Hierarchy, zone: &str) -> Result<(), CgroupError> {
        let is_cpuset = h.controllers.iter().any(|c| c == "cpuset");
        let mut dir = h.mount.clone();
        for part in self.parent.split('/').chain([zone]) {
            dir.push(part);
            fsutil::mkdir(&dir)?;
            if is_cpuset {
                cpuset::inherit(&dir)?;
            }
        }
        Ok(())
    }

    /// The zone's directory for `controller` when mounted; without it, an error
    /// when the limits need it (`needed`), else `None`.
    fn for_limit(
        &self,
        zone: &str,
        controller: &str,
        needed: bool,
        why: &str,
    ) -> Result<Option<PathBuf>, CgroupError> {
        match self.zone_dir(zone, controller) {
            Some(d) => Ok(Some(d)),
            None if needed => self.need(zone, controller, why).map(Some),
            None => Ok(None),
        }
    }

    fn apply(&self, zone: &str, limits: &Limits) -> Result<(), CgroupError> {
        limits.validate()?;
        let l = limits;
        let mem = l.memory_bytes.is_some() || l.memory_swap_bytes.is_some();
        if let Some(d) = self.for_limit(zone, "memory", mem, "memory limits")? {
            memory::apply(&d, l)?;
        }
        let cpu = l.cpu_cap_percent.is_some() || l.cpu_shares.is_some();
        if let Some(d) = self.for_limit(zone, "cpu", cpu, "cpu_cap/cpu_shares")? {
            cpu::apply(&d, l)?;
        }
        if let Some(d) = self.for_limit(zone, "pids", l.pids_max.is_some(), "pids_max")? {
            pids::apply(&d, l)?;
        }
        if let Some(d) = self.for_limit(zone, "blkio", l.io_weight.is_some(), "io_weight")? {
            blkio::apply(&d, l)?;
        }
        let devs = l.devices.is_some();
        if let Some(d) = self.for_limit(zone, "devices", devs, "the device allow list")? {
            devices::apply(&d, l.devices.as_deref())?;
        }
        Ok(())
    }

    fn existing(&self, zone: &str) -> Result<(), CgroupError> {
        check_name(zone)?;
        if self.exists(zone)? {
            Ok(())
        } else {
            Err(CgroupError::NotFound {
                zone: zone.to_owned(),
                path: self.zone_dirs(zone).into_iter().next().unwrap_or_default(),
            })
        }
    }
}

/// One zone seen through the freezer, for the kill loop.
struct Zone<'a> {
    manager: &'a V1Manager,
    zone: &'a str,
    freezer: &'a Path,
}

impl Freezable for Zone<'_> {
    fn freeze(&self, timeout: Duration) -> Result<(), CgroupError> {
        freezer::freeze(self.freezer, timeout)
    }
    fn thaw(&self, timeout: Duration) -> Result<(), CgroupError> {
        freezer::thaw(self.freezer, timeout)
    }
    fn pids(&self) -> Result<Vec<u32>, CgroupError> {
        self.manager.pids(self.zone)
    }
}

impl CgroupManager for V1Manager {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn create(&self, zone: &str, limits: &Limits) -> Result<(), CgroupError> {
        check_name(zone)?;
        limits.validate()?;
        if let Some(dir) = self.zone_dirs(zone).into_iter().find(|d| d.exists()) {
            return Err(CgroupError::AlreadyExists {
                zone: zone.to_owned(),
                path: dir,
            });
        }
        let made = self
            .hierarchies
            .iter()
            .try_for_each(|h| self.make(h, zone))
            .and_then(|()| self.apply(zone, limits));
        if let Err(e) = made {
            // Undo: nothing of a zone that failed to be made stays behind.
            if let Err(undo) = self.delete(zone) {
                tracing::warn!(zone, error = %undo, "cleaning up a failed cgroup create");
            }
            return Err(e);
        }
        Ok(())
    }

    fn update(&self, zone: &str, limits: &Limits) -> Result<(), CgroupError> {
        self.existing(zone)?;
        self.apply(zone, limits)
    }

    fn exists(&self, zone: &str) -> Result<bool, CgroupError> {
        check_name(zone)?;
        Ok(self.zone_dirs(zone).iter().any(|d| d.exists()))
    }

    fn delegate(&self, zone: &str, owner: (u32, u32)) -> Result<super::Delegation, CgroupError> {
        self.existing(zone)?;
        match self.zone_dir(zone, NAMED_SYSTEMD) {
            None => Ok(super::Delegation::None),
            Some(dir) => {
                fsutil::chown_delegated(
                    &dir,
                    &[
                        "cgroup.procs",
                        "tasks",
                        "cgroup.clone_children",
                        "notify_on_release",
                    ],
                    owner,
                )?;
                Ok(super::Delegation::V1NamedSystemd)
            }
        }
    }

    fn add_pid(&self, zone: &str, pid: u32) -> Result<(), CgroupError> {
        self.existing(zone)?;
        self.zone_dirs(zone)
            .iter()
            .try_for_each(|d| fsutil::write(&d.join("cgroup.procs"), &pid.to_string()))
    }

    fn pids(&self, zone: &str) -> Result<Vec<u32>, CgroupError> {
        check_name(zone)?;
        // The union over every hierarchy: a process moved in one hierarchy only is
        // still the zone's business.
        let mut pids = Vec::new();
        for dir in self.zone_dirs(zone) {
            fsutil::procs_recursive(&dir, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn zone_of_pid(&self, pid: u32) -> Result<Option<String>, CgroupError> {
        let lines = procfs::read_proc_cgroup(pid)?;
        for h in &self.hierarchies {
            let line = lines.iter().find(|l| {
                let mut c = l.controllers.clone();
                c.sort();
                c == h.controllers
            });
            if let Some(zone) =
                line.and_then(|l| procfs::zone_in_path(&l.path, &h.root, &self.parent))
            {
                return Ok(Some(zone));
            }
        }
        Ok(None)
    }

    fn freeze(&self, zone: &str, timeout: Duration) -> Result<(), CgroupError> {
        self.existing(zone)?;
        freezer::freeze(&self.need(zone, "freezer", "freezing")?, timeout)
    }

    fn thaw(&self, zone: &str, timeout: Duration) -> Result<(), CgroupError> {
        self.existing(zone)?;
        freezer::thaw(&self.need(zone, "freezer", "thawing")?, timeout)
    }

    fn kill_all(&self, zone: &str, timeout: Duration) -> Result<(), CgroupError> {
        check_name(zone)?;
        let freezer = self.need(zone, "freezer", "killing every process")?;
        if !freezer.exists() {
            // Half-made zone without a freezer directory: kill what is elsewhere.
            let pids = self.pids(zone)?;
            pids.into_iter().try_for_each(killer::sigkill)?;
            return fsutil::wait_until("killing every process", &freezer, timeout, || {
                Ok(self.pids(zone)?.is_empty())
            });
        }
        let z = Zone {
            manager: self,
            zone,
            freezer: &freezer,
        };
        killer::kill_loop(&z, &freezer, timeout)
    }

    fn usage(&self, zone: &str) -> Result<Usage, CgroupError> {
        self.existing(zone)?;
        let mem = self.need(zone, "memory", "memory usage")?;
        let acct = self.need(zone, "cpuacct", "cpu usage")?;
        Ok(Usage {
            memory_bytes: memory::usage(&mem)?,
            cpu_usage_ns: cpu::usage_ns(&acct)?,
            oom_kills: memory::oom_kills(&mem)?,
        })
    }

    fn delete(&self, zone: &str) -> Result<(), CgroupError> {
        check_name(zone)?;
        // Try every hierarchy even when one fails, then report the first failure.
        let mut first = None;
        for dir in self.zone_dirs(zone) {
            if let Err(e) = fsutil::rmdir_recursive(&dir) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn zones(&self) -> Result<Vec<String>, CgroupError> {
        let mut zones = Vec::new();
        for h in &self.hierarchies {
            for d in fsutil::subdirs(&h.mount.join(&self.parent))? {
                if let Some(name) = d.file_name().and_then(|n| n.to_str()) {
                    zones.push(name.to_owned());
                }
            }
        }
        zones.sort();
        zones.dedup();
        Ok(zones)
    }

    fn delete_parent(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for h in &self.hierarchies {
            // Innermost level first; stop at a level that still holds others.
            let parts: Vec<&str> = self.parent.split('/').collect();
            for n in (1..=parts.len()).rev() {
                let dir = h.mount.join(parts[..n].join("/"));
                match std::fs::remove_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        first.get_or_insert(fsutil::io_err("rmdir", &dir, e));
                        break;
                    }
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}
