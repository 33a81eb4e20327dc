//! What this host is and what its kernel can do, as the agent reports it to
//! the controllers (the host's sysinfo).
//!
//! Every feature is detected for real — by trying it, in a throwaway child
//! process where trying changes process state — never assumed from a kernel
//! version. A zone whose properties need a missing feature is refused
//! rather than run with weaker isolation (see `docs/sysinfo.md`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod cgroup;
mod child;
pub mod features;
pub mod host_id;

pub use cgroup::{CgroupMounts, CgroupVersion};
pub use features::{probe_all, Feature};
pub use host_id::{host_id_path, load_or_create as load_or_create_host_id, HOST_ID_FILE};

/// The host's sysinfo. Field names follow the shared `HostSysinfo` contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysinfo {
    /// The host's stable identity (see [`host_id`]).
    pub host_id: Uuid,
    /// The kernel's host name.
    pub hostname: String,
    /// Online CPUs.
    pub cpus: u32,
    /// Total memory (`MemTotal`), MiB.
    pub memory_mib: u64,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// The cgroup layout.
    pub cgroup_version: CgroupVersion,
    /// Every controller some mounted hierarchy offers (v1 and v2 together,
    /// sorted; a controller is active in one hierarchy only). Which
    /// hierarchy holds which is in the `cgroup_v1` / `cgroup_v2` features.
    pub cgroup_controllers: Vec<String>,
    /// Every probed kernel feature, in a fixed order.
    pub features: Vec<Feature>,
    /// This agent's version.
    pub agent_version: String,
}

impl Sysinfo {
    /// Collects the sysinfo of this host, with the host id kept in
    /// `data_dir`. Takes some tens of milliseconds: the feature probes fork
    /// short-lived children.
    pub fn collect(data_dir: &Path) -> Result<Self, SysinfoError> {
        let host_id = host_id::load_or_create(data_dir)?;
        let hostname = nix::unistd::gethostname()
            .map_err(|e| SysinfoError::Host {
                what: "gethostname",
                reason: e.to_string(),
            })?
            .to_string_lossy()
            .into_owned();
        let cpus = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
            .ok()
            .flatten()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or(SysinfoError::Host {
                what: "sysconf(_SC_NPROCESSORS_ONLN)",
                reason: "no answer".into(),
            })?;
        let memory_mib = memory_mib()?;
        let kernel = nix::sys::utsname::uname()
            .map_err(|e| SysinfoError::Host {
                what: "uname",
                reason: e.to_string(),
            })?
            .release()
            .to_string_lossy()
            .into_owned();
        let mounts = CgroupMounts::read().map_err(|source| SysinfoError::Io {
            op: "read",
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
        let mut cgroup_controllers: Vec<String> = mounts.v1.keys().cloned().collect();
        cgroup_controllers.extend(mounts.v2_controllers().unwrap_or_default());
        cgroup_controllers.sort();
        cgroup_controllers.dedup();
        Ok(Sysinfo {
            host_id,
            hostname,
            cpus,
            memory_mib,
            kernel,
            cgroup_version: mounts.version(),
            cgroup_controllers,
            features: probe_all(&mounts),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }

    /// The feature called `name`, if probed.
    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.name == name)
    }
}

fn memory_mib() -> Result<u64, SysinfoError> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(|source| SysinfoError::Io {
        op: "read",
        path: "/proc/meminfo".into(),
        source,
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .ok_or(SysinfoError::Host {
            what: "/proc/meminfo",
            reason: "no MemTotal line in kB".into(),
        })
}

/// What can go wrong collecting sysinfo.
#[derive(Debug, thiserror::Error)]
pub enum SysinfoError {
    /// A file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The host id file exists but does not hold a host id. It is left as it
    /// is: replacing it would give the host a new identity.
    #[error("corrupt host id file {path}: {reason} (fix or remove it by hand; removing it gives this host a new identity)")]
    CorruptHostId {
        /// The host id file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A basic host fact could not be read.
    #[error("{what}: {reason}")]
    Host {
        /// The source of the fact.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}
