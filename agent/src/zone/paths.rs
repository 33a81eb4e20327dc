//! Where a zone's files live under the agent's data dir. Everything of a zone is
//! inside `zones/<uuid>/`, so deleting a zone is removing one directory.

use std::path::{Path, PathBuf};

/// Directory of zones under the data dir.
pub const ZONES_DIR: &str = "zones";

/// The paths of one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZonePaths {
    /// `<data>/zones/<uuid>`.
    pub dir: PathBuf,
}

impl ZonePaths {
    /// The paths of zone `uuid` under `data_dir`.
    pub fn new(data_dir: &Path, uuid: &str) -> ZonePaths {
        ZonePaths {
            dir: data_dir.join(ZONES_DIR).join(uuid),
        }
    }
    /// The zone record (`zone.json`).
    pub fn record(&self) -> PathBuf {
        self.dir.join("zone.json")
    }
    /// The per-zone lock file.
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    /// Mount point of the zone's disk (used inside the zone's mount namespace only).
    pub fn disk_mount(&self) -> PathBuf {
        self.dir.join("disk")
    }
    /// Mount point of the zone's overlay root (inside its mount namespace only).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    /// Host directory shown read-only in the zone at `/.zonecontrol`.
    pub fn zonecontrol(&self) -> PathBuf {
        self.dir.join("zonecontrol")
    }
    /// The metadata file served to the zone.
    pub fn metadata(&self) -> PathBuf {
        self.zonecontrol().join("metadata.json")
    }
    /// The console log.
    pub fn console(&self) -> PathBuf {
        self.dir.join(crate::zsched::console::CONSOLE_FILE)
    }
}
