//! `zone.json`: the agent's durable record of a zone — its spec (defaults
//! applied), the image it was installed from, and where it is in its lifecycle.
//! Whether it runs right now is not stored here but read from zsched's
//! `runtime.json` (see [`super::status`]).

use std::path::Path;

use serde::{Deserialize, Serialize};
use zonefleet_proto::spec::ZoneSpec;

use super::paths::ZonePaths;
use super::{Result, ZoneError};
use crate::files::write_atomic;

/// The durable lifecycle state of a zone (running is observed, not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleState {
    /// The spec is recorded; the zone's disk is not made yet.
    Configured,
    /// The zone's disk exists: it can boot.
    Installed,
    /// Installing failed; the record says why.
    Failed,
}

/// The record of one zone on this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneRecord {
    /// The spec, with defaults applied (uuid always set).
    pub spec: ZoneSpec,
    /// sha256 of the image the zone was installed from.
    pub image_sha256: String,
    /// Lifecycle state.
    pub state: LifecycleState,
    /// Whether the zone should be running: set by boot, cleared by halt. With
    /// `autoboot`, the agent boots such zones again after a host reboot.
    #[serde(default)]
    pub desired_running: bool,
    /// When the zone was created (ms since the Unix epoch).
    pub created_at_unix_ms: u64,
    /// The host ids of the zone's user namespace, given at create when the spec
    /// asks for one (see [`super::idmap`]); absent, the zone has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_range: Option<crate::isolation::userns::IdRange>,
    /// The last error seen while installing or booting, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ZoneRecord {
    /// The zone's uuid as a string.
    pub fn uuid(&self) -> String {
        self.spec
            .uuid
            .map(|u| u.to_string())
            .expect("a stored spec always has its uuid")
    }

    /// Reads the record in `paths`. The record must name the zone of its
    /// directory; defaults are applied to whatever an older or hand-edited record
    /// lacks, so the verbs can rely on a complete spec.
    pub fn load(paths: &ZonePaths) -> Result<ZoneRecord> {
        let path = paths.record();
        let bad = |why: String| {
            ZoneError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, why),
            )
        };
        let bytes = std::fs::read(&path).map_err(|e| ZoneError::io(&path, e))?;
        let mut record: ZoneRecord =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let dir = paths
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let uuid = record.spec.uuid.map(|u| u.to_string());
        if uuid.is_none() || uuid != dir {
            return Err(bad(format!(
                "the record names zone {:?}, its directory {:?}",
                uuid.unwrap_or_default(),
                dir.unwrap_or_default()
            )));
        }
        record.spec = record.spec.with_defaults();
        Ok(record)
    }

    /// Writes the record atomically.
    pub fn store(&self, paths: &ZonePaths) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).expect("zone record serializes");
        write_atomic(&paths.record(), &bytes)?;
        Ok(())
    }

    /// Whether `dir` holds a zone record.
    pub fn exists(dir: &Path) -> bool {
        dir.join(super::paths::RECORD_FILE).is_file()
    }
}
