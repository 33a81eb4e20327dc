//! Where a zone's files live under the agent's data dir, and the one place that
//! names them. Everything of a zone is inside `zones/<uuid>/`, so deleting a zone
//! is removing one directory.

use std::path::{Path, PathBuf};

/// Directory of zones under the data dir.
pub const ZONES_DIR: &str = "zones";
/// The zone record.
pub const RECORD_FILE: &str = "zone.json";
/// The per-zone lock file.
pub const LOCK_FILE: &str = "lock";
/// Mount point of the zone's disk.
pub const DISK_DIR: &str = "disk";
/// The zone's disk image (its writable layer, a sparse ext4 file).
pub const DISK_IMAGE_FILE: &str = "disk.img";
/// Mount point of the zone's overlay root.
pub const ROOT_DIR: &str = "root";
/// Host directory shown read-only in the zone at `/.zonecontrol`.
pub const ZONECONTROL_DIR: &str = "zonecontrol";
/// The metadata file in [`ZONECONTROL_DIR`].
pub const METADATA_FILE: &str = "metadata.json";
/// The console log zsched writes.
pub const CONSOLE_FILE: &str = "console.log";
/// The socket of the zone's console relay (`zone console`), while zsched serves it.
pub const CONSOLE_SOCKET: &str = "console.sock";
/// zsched's own log.
pub const ZSCHED_LOG: &str = "zsched.log";
/// What zsched booted the zone with.
pub const PLAN_FILE: &str = "boot.json";
/// The running zone's supervisor, init and exit (zsched's record).
pub const RUNTIME_FILE: &str = "runtime.json";
/// Present while a halt is in progress, so status says `halting`.
pub const HALTING_MARK: &str = "halting";

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
    /// The zone record ([`RECORD_FILE`]).
    pub fn record(&self) -> PathBuf {
        self.dir.join(RECORD_FILE)
    }
    /// The per-zone lock file.
    pub fn lock(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }
    /// Mount point of the zone's disk (used inside the zone's mount namespace only).
    pub fn disk_mount(&self) -> PathBuf {
        self.dir.join(DISK_DIR)
    }
    /// Mount point of the zone's overlay root (inside its mount namespace only).
    pub fn root(&self) -> PathBuf {
        self.dir.join(ROOT_DIR)
    }
    /// Host directory shown read-only in the zone at `/.zonecontrol`.
    pub fn zonecontrol(&self) -> PathBuf {
        self.dir.join(ZONECONTROL_DIR)
    }
    /// The metadata file served to the zone.
    pub fn metadata(&self) -> PathBuf {
        self.zonecontrol().join(METADATA_FILE)
    }
    /// The console log.
    pub fn console(&self) -> PathBuf {
        self.dir.join(CONSOLE_FILE)
    }
    /// The socket of the zone's console relay.
    pub fn console_socket(&self) -> PathBuf {
        self.dir.join(CONSOLE_SOCKET)
    }
    /// The mark of a halt in progress.
    pub fn halting(&self) -> PathBuf {
        self.dir.join(HALTING_MARK)
    }
    /// The plan zsched booted the zone with.
    pub fn plan(&self) -> PathBuf {
        self.dir.join(PLAN_FILE)
    }
}
