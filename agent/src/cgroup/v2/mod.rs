//! The v2 manager: a zone is one directory `<root>/<parent>/<zone>` of the unified
//! hierarchy. Controllers are enabled level by level through
//! `cgroup.subtree_control`; devices are filtered by an eBPF program.

pub mod bpf;
#[cfg(test)]
mod bpf_tests;
mod cpu;
mod devices;
mod freezer;
mod io;
mod memory;
mod pids;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::killer::{self, Freezable};
use super::{check_name, check_parent, fsutil, procfs};
use super::{CgroupError, CgroupManager, CgroupVersion, Limits, Usage};

/// The controllers enabled for zones when the host offers them.
pub const CONTROLLERS: [&str; 4] = ["cpu", "io", "memory", "pids"];

/// Drives the unified hierarchy.
#[derive(Debug, Clone)]
pub struct V2Manager {
    root: PathBuf,
    parent: String,
}

/// `Some(file)` when it exists; when it does not, an error naming the feature if
/// the limits need it, else `None` (nothing to write).
pub(super) fn need(
    file: &Path,
    needed: bool,
    feature: &str,
) -> Result<Option<PathBuf>, CgroupError> {
    if file.exists() {
        Ok(Some(file.to_owned()))
    } else if needed {
        Err(CgroupError::FeatureMissing {
            feature: format!("cgroup v2 {feature}"),
            detail: format!("{} does not exist", file.display()),
        })
    } else {
        Ok(None)
    }
}

impl V2Manager {
    /// A manager with zones under `<root>/<parent>`. `root` is a cgroup2 mount
    /// point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host) — or,
    /// in tests, a folder laid out like one.
    pub fn new(root: impl Into<PathBuf>, parent: &str) -> Result<Self, CgroupError> {
        check_parent(parent)?;
        Ok(V2Manager {
            root: root.into(),
            parent: parent.to_owned(),
        })
    }

    /// The zone's directory.
    pub fn zone_dir(&self, zone: &str) -> PathBuf {
        self.root.join(&self.parent).join(zone)
    }

    /// Enables in `dir`'s `cgroup.subtree_control` every controller of
    /// [`CONTROLLERS`] that `dir`'s `cgroup.controllers` offers, and checks.
    fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
        let offered = fsutil::read(&dir.join("cgroup.controllers"))?;
        let control = dir.join("cgroup.subtree_control");
        let current = fsutil::read(&control)?;
        let enabled = |text: &str, c: &str| {
            text.split_whitespace()
                .any(|t| t.trim_start_matches('+') == c)
        };
        let missing: Vec<&str> = CONTROLLERS
            .into_iter()
            .filter(|c| offered.split_whitespace().any(|o| o == *c) && !enabled(&current, c))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let value = missing
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        fsutil::write(&control, &value)?;
        let got = fsutil::read(&control)?;
        match missing.iter().find(|c| !enabled(&got, c)) {
            None => Ok(()),
            Some(_) => Err(CgroupError::ReadBack {
                path: control,
                wanted: value,
                got: got.trim().to_owned(),
            }),
        }
    }

    /// Makes each level of the parent with controllers enabled down to the zone.
    fn make_parent(&self) -> Result<(), CgroupError> {
        let mut dir = self.root.clone();
        Self::enable_controllers(&dir)?;
        for part in self.parent.split('/') {
            dir.push(part);
            fsutil::mkdir(&dir)?;
            Self::enable_controllers(&dir)?;
        }
        Ok(())
    }

    fn apply(&self, zone: &str, limits: &Limits, fresh: bool) -> Result<(), CgroupError> {
        limits.validate()?;
        let dir = self.zone_dir(zone);
        memory::apply(&dir, limits)?;
        cpu::apply(&dir, limits)?;
        pids::apply(&dir, limits)?;
        io::apply(&dir, limits)?;
        devices::apply(&dir, limits.devices.as_deref(), fresh)
    }

    fn existing(&self, zone: &str) -> Result<PathBuf, CgroupError> {
        check_name(zone)?;
        let dir = self.zone_dir(zone);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(CgroupError::NotFound {
                zone: zone.to_owned(),
                path: dir,
            })
        }
    }
}

/// One zone for the freeze/kill/thaw loop, used when the kernel has no
/// `cgroup.kill` (before Linux 5.14).
struct Zone<'a>(&'a Path);

impl Freezable for Zone<'_> {
    fn freeze(&self, timeout: Duration) -> Result<(), CgroupError> {
        freezer::set(self.0, true, timeout)
    }
    fn thaw(&self, timeout: Duration) -> Result<(), CgroupError> {
        freezer::set(self.0, false, timeout)
    }
    fn pids(&self) -> Result<Vec<u32>, CgroupError> {
        let mut pids = Vec::new();
        fsutil::procs_recursive(self.0, &mut pids)?;
        Ok(pids)
    }
}

impl CgroupManager for V2Manager {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn create(&self, zone: &str, limits: &Limits) -> Result<(), CgroupError> {
        check_name(zone)?;
        limits.validate()?;
        let dir = self.zone_dir(zone);
        if dir.exists() {
            return Err(CgroupError::AlreadyExists {
                zone: zone.to_owned(),
                path: dir,
            });
        }
        self.make_parent()?;
        fsutil::mkdir(&dir)?;
        if let Err(e) = self.apply(zone, limits, true) {
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
        self.apply(zone, limits, false)
    }

    fn exists(&self, zone: &str) -> Result<bool, CgroupError> {
        check_name(zone)?;
        Ok(self.zone_dir(zone).is_dir())
    }

    fn delegate(&self, zone: &str, owner: (u32, u32)) -> Result<super::Delegation, CgroupError> {
        let dir = self.existing(zone)?;
        fsutil::chown_delegated(
            &dir,
            &["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"],
            owner,
        )?;
        Ok(super::Delegation::V2)
    }

    fn add_pid(&self, zone: &str, pid: u32) -> Result<(), CgroupError> {
        let dir = self.existing(zone)?;
        fsutil::write(&dir.join("cgroup.procs"), &pid.to_string())
    }

    fn pids(&self, zone: &str) -> Result<Vec<u32>, CgroupError> {
        check_name(zone)?;
        let mut pids = Vec::new();
        fsutil::procs_recursive(&self.zone_dir(zone), &mut pids)?;
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn zone_of_pid(&self, pid: u32) -> Result<Option<String>, CgroupError> {
        Ok(procfs::read_proc_cgroup(pid)?
            .iter()
            .find(|l| l.hierarchy_id == 0)
            .and_then(|l| procfs::zone_in_path(&l.path, "/", &self.parent)))
    }

    fn freeze(&self, zone: &str, timeout: Duration) -> Result<(), CgroupError> {
        freezer::set(&self.existing(zone)?, true, timeout)
    }

    fn thaw(&self, zone: &str, timeout: Duration) -> Result<(), CgroupError> {
        freezer::set(&self.existing(zone)?, false, timeout)
    }

    fn kill_all(&self, zone: &str, timeout: Duration) -> Result<(), CgroupError> {
        check_name(zone)?;
        let dir = self.zone_dir(zone);
        match freezer::kill(&dir, timeout) {
            _ if !dir.exists() => return Ok(()),
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(e),
        }
        killer::kill_loop(&Zone(&dir), &dir, timeout)
    }

    fn usage(&self, zone: &str) -> Result<Usage, CgroupError> {
        let dir = self.existing(zone)?;
        Ok(Usage {
            memory_bytes: memory::usage(&dir)?,
            cpu_usage_ns: cpu::usage_ns(&dir)?,
            oom_kills: memory::oom_kills(&dir)?,
        })
    }

    fn delete(&self, zone: &str) -> Result<(), CgroupError> {
        check_name(zone)?;
        fsutil::rmdir_recursive(&self.zone_dir(zone))
    }

    fn zones(&self) -> Result<Vec<String>, CgroupError> {
        let dirs = fsutil::subdirs(&self.root.join(&self.parent))?;
        Ok(dirs
            .iter()
            .filter_map(|d| d.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn delete_parent(&self) -> Result<(), CgroupError> {
        let parts: Vec<&str> = self.parent.split('/').collect();
        for n in (1..=parts.len()).rev() {
            let dir = self.root.join(parts[..n].join("/"));
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(fsutil::io_err("rmdir", &dir, e)),
            }
        }
        Ok(())
    }
}
