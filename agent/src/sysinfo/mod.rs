//! What this host is and what its kernel can do, as the agent reports it to
//! the controllers (the host's sysinfo).
//!
//! Every feature is detected for real — by trying it, in a throwaway child
//! process where trying changes process state — never assumed from a kernel
//! version. A zone whose properties need a missing feature is refused
//! rather than run with weaker isolation (see `docs/sysinfo.md`).

use std::path::{Path, PathBuf};

use crate::cgroup::detect::{DetectError, Layout};

mod child;
pub mod features;
pub mod host_id;

pub use features::probe_all;
pub use host_id::{host_id_path, load_or_create as load_or_create_host_id, HOST_ID_FILE};
pub use zonefleet_proto::host::{CgroupVersion, Feature, HostSysinfo};

/// The name `cli/output.rs` renders the sysinfo under: the shared
/// [`HostSysinfo`] itself, not a copy.
pub type Sysinfo = HostSysinfo;

/// Collects the sysinfo of this host, with the host id kept in `data_dir`.
/// Takes some tens of milliseconds: the feature probes fork short-lived
/// children. A hybrid host reports `v1` (the version its zones are managed
/// with; the `cgroup_v2` feature names its cgroup2 mount); a host without any
/// cgroup mount is an error, since it can run no zone.
pub fn collect(data_dir: &Path) -> Result<HostSysinfo, SysinfoError> {
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
    let layout = Layout::read()?;
    let cgroup_version = layout.version().ok_or(DetectError::NoCgroups)?;
    let mut cgroup_controllers: Vec<String> = layout
        .v1_controllers()
        .into_iter()
        .map(|(c, _)| c.to_string())
        .collect();
    cgroup_controllers.extend(layout.v2_controllers().unwrap_or_default());
    cgroup_controllers.sort();
    cgroup_controllers.dedup();
    Ok(HostSysinfo {
        host_id,
        hostname,
        cpus,
        memory_mib,
        kernel,
        cgroup_version,
        cgroup_controllers,
        features: probe_all(&layout, data_dir),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        agent_address: None,
    })
}

/// The feature called `name` in `info`, if probed.
pub fn feature<'a>(info: &'a HostSysinfo, name: &str) -> Option<&'a Feature> {
    info.features.iter().find(|f| f.name == name)
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
    /// The cgroup layout could not be read, or there is no cgroup mount.
    #[error("cgroups: {0}")]
    Cgroups(#[from] DetectError),
    /// A basic host fact could not be read.
    #[error("{what}: {reason}")]
    Host {
        /// The source of the fact.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}
