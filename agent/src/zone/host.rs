//! [`ZoneHost`]: the zone library's handle on one host — its data dir, image
//! store, cgroup manager and the agent binary that runs zsched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::paths::{ZonePaths, ZONES_DIR};
use super::{Result, ZoneError};
use crate::cgroup::CgroupManager;
use crate::image::ImageStore;

/// How a [`ZoneHost`] is set up.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The agent's data dir (the host's zone pool).
    pub data_dir: PathBuf,
    /// The cgroup parent of zone cgroups. `None`: the one this data dir was
    /// first opened with (kept in `<data>/cgroup-parent`), else `zonefleet`.
    /// Tests give their own, so their zones never mix with a real host's.
    pub cgroup_parent: Option<String>,
    /// The `zonefleet-agent` binary that runs `zsched` (default: this process's).
    pub agent_exe: Option<PathBuf>,
    /// How long `halt` waits after SIGTERM before killing every process.
    pub halt_grace: Duration,
    /// Cap of one console log file.
    pub console_cap_bytes: u64,
    /// The host bridge zone NICs are ports of (and its uplink).
    pub bridge: crate::net::BridgeOptions,
    /// The host's lease file ([`crate::fence`]) that fences `on_host_lost:
    /// reschedule` zones; `None` (zones made by hand, fencing off): none is fenced.
    pub fence: Option<PathBuf>,
    /// Where zones' id ranges start ([`super::idmap::FIRST_BASE`] unless
    /// another pool of zones shares this host, as concurrent tests do).
    pub first_id: u32,
    /// Limits of image imports into the host's store (the agent's `[images]`).
    pub image_limits: crate::image::UnpackLimits,
}

impl HostOptions {
    /// Defaults for `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> HostOptions {
        HostOptions {
            data_dir: data_dir.into(),
            cgroup_parent: None,
            agent_exe: None,
            halt_grace: Duration::from_secs(10),
            console_cap_bytes: crate::zsched::console::DEFAULT_CAP_BYTES,
            bridge: crate::net::BridgeOptions::default(),
            fence: None,
            first_id: super::idmap::FIRST_BASE,
            image_limits: crate::image::UnpackLimits::default(),
        }
    }
}

/// One host's zones.
#[derive(Debug)]
pub struct ZoneHost {
    /// The agent's data dir.
    pub data_dir: PathBuf,
    /// The cgroup parent of zone cgroups.
    pub cgroup_parent: String,
    /// The binary that runs zsched.
    pub agent_exe: PathBuf,
    /// The host's image store.
    pub images: ImageStore,
    /// The host's cgroup manager (v1 or v2).
    pub cgroups: Box<dyn CgroupManager>,
    /// Grace period of `halt`.
    pub halt_grace: Duration,
    /// Cap of one console log file.
    pub console_cap_bytes: u64,
    /// Kernel features probed so far.
    pub features: super::features::FeatureCache,
    /// The host bridge of zone NICs.
    pub bridge: crate::net::BridgeOptions,
    /// The lease file that fences `reschedule` zones (see [`HostOptions::fence`]).
    pub fence: Option<PathBuf>,
    /// Where zones' id ranges start (see [`HostOptions::first_id`]).
    pub first_id: u32,
}

impl ZoneHost {
    /// Opens the host's zone library: creates the data dir layout if missing,
    /// detects the cgroup layout, opens the image store.
    pub fn open(options: HostOptions) -> Result<ZoneHost> {
        let zones = options.data_dir.join(ZONES_DIR);
        // Every zone's record (its spec) is in there: owner only. A booted zone is not
        // bothered, it sees its own root only.
        let loosened =
            zonefleet_proto::modes::private_dir(&zones).map_err(|e| ZoneError::io(&zones, e))?;
        if let Some(mode) = loosened {
            tracing::warn!(
                path = %zones.display(),
                was = format_args!("{mode:04o}"),
                "tightened the zones directory: group and others had access"
            );
        }
        let images = ImageStore::open(&options.data_dir)?.with_limits(options.image_limits);
        let cgroup_parent = cgroup_parent(&options.data_dir, options.cgroup_parent)?;
        let layout = crate::cgroup::detect::detect().map_err(crate::cgroup::CgroupError::from)?;
        let cgroups = crate::cgroup::create_manager(&layout, &cgroup_parent)?;
        let agent_exe = match options.agent_exe {
            Some(exe) => exe,
            None => std::env::current_exe().map_err(|e| ZoneError::io("/proc/self/exe", e))?,
        };
        Ok(ZoneHost {
            data_dir: options.data_dir,
            cgroup_parent,
            agent_exe,
            images,
            cgroups,
            halt_grace: options.halt_grace,
            console_cap_bytes: options.console_cap_bytes,
            features: Default::default(),
            bridge: options.bridge,
            fence: options.fence,
            first_id: options.first_id,
        })
    }

    /// The paths of zone `uuid`.
    pub fn paths(&self, uuid: &str) -> ZonePaths {
        ZonePaths::new(&self.data_dir, uuid)
    }

    /// The host-wide lock file of the zone table.
    pub fn table_lock_path(&self) -> PathBuf {
        self.data_dir.join(ZONES_DIR).join(".lock")
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// File in the data dir that names the data dir's cgroup parent.
pub const CGROUP_PARENT_FILE: &str = "cgroup-parent";

/// The cgroup parent of the data dir: fixed the first time the data dir is
/// opened, so every later process (CLI, daemon, zsched) finds the same cgroups.
fn cgroup_parent(data_dir: &Path, wanted: Option<String>) -> Result<String> {
    let path = data_dir.join(CGROUP_PARENT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(stored) => {
            let stored = stored.trim().to_string();
            match wanted {
                Some(w) if w != stored => Err(ZoneError::io(
                    &path,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("this data dir uses cgroup parent {stored:?}, not {w:?}"),
                    ),
                )),
                _ => Ok(stored),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = wanted.unwrap_or_else(|| crate::cgroup::DEFAULT_PARENT.to_string());
            crate::files::write_atomic(&path, format!("{parent}\n").as_bytes())?;
            Ok(parent)
        }
        Err(e) => Err(ZoneError::io(&path, e)),
    }
}
