//! `zone create`: configure (record the spec) and install (make the zone's
//! disk and metadata), then boot when `autoboot` is set. Either the zone ends
//! up installed, or nothing of it is left behind.

use std::os::unix::fs::DirBuilderExt;

use zonefleet_proto::spec::{SpecError, ZoneSpec};

use super::paths::ZonePaths;
use super::record::{LifecycleState, ZoneRecord};
use super::status::ZoneStatus;
use super::{lock, Result, ZoneError, ZoneHost};
use crate::clock::now_unix_ms;
use crate::files::write_atomic;

impl ZoneHost {
    /// Creates a zone from `spec`. Returns its status (installed, or running
    /// when `autoboot` is set and the boot succeeded).
    pub fn create(&self, spec: ZoneSpec) -> Result<ZoneStatus> {
        spec.validate().map_err(SpecError::Invalid)?;
        let spec = spec.with_defaults();
        let image = self.images.get(&spec.image.to_string())?;
        let memory = spec.max_physical_memory.unwrap_or(0);
        let min_ram = image.min_ram.unwrap_or(0);
        if min_ram > memory {
            return Err(ZoneError::MissingFeature {
                feature: format!("{min_ram} MiB of memory"),
                detail: format!(
                    "image {}@{} needs at least {} MiB but max_physical_memory is {memory} MiB",
                    image.name, image.version, min_ram
                ),
            });
        }
        self.check_features(&spec)?;

        let _table = lock::exclusive(&self.table_lock_path())?;
        let uuid = spec.uuid.expect("with_defaults sets the uuid").to_string();
        self.check_unique(&uuid, spec.alias.as_deref())?;
        self.net_plan(&uuid, &spec)?;
        self.check_addresses(&uuid, &spec)?;

        let id_range = match spec.user_namespace {
            Some(true) => Some(self.free_id_range()?),
            _ => None,
        };
        let paths = self.paths(&uuid);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&paths.dir)
            .map_err(|e| ZoneError::io(&paths.dir, e))?;
        let mut record = ZoneRecord {
            spec,
            image_sha256: image.sha256.to_string(),
            state: LifecycleState::Configured,
            desired_running: false,
            created_at_unix_ms: now_unix_ms(),
            id_range,
            message: None,
        };
        if let Err(e) = record.store(&paths).and_then(|()| install(&paths, &record)) {
            // Nothing half-made: the zone never existed.
            let _ = crate::disk::delete(&paths.dir);
            let _ = std::fs::remove_dir_all(&paths.dir);
            return Err(e);
        }
        record.state = LifecycleState::Installed;
        record.store(&paths)?;
        drop(_table);

        if record.spec.autoboot == Some(true) {
            return self.boot(&uuid);
        }
        ZoneStatus::observe(record, &paths)
    }

    /// A host id range no zone of this host holds (caller holds the table lock).
    fn free_id_range(&self) -> Result<crate::isolation::userns::IdRange> {
        let mut taken = Vec::new();
        for other in self.zone_uuids()? {
            if let Some(range) = ZoneRecord::load(&self.paths(&other))?.id_range {
                taken.push(range);
            }
        }
        super::idmap::allocate(self.first_id, &taken).ok_or_else(|| ZoneError::MissingFeature {
            feature: "a free id range for the zone's user namespace".into(),
            detail: format!(
                "all {} ranges of {} host ids are held by this host's zones",
                super::idmap::SLOTS,
                super::idmap::RANGE_SIZE
            ),
        })
    }

    fn check_unique(&self, uuid: &str, alias: Option<&str>) -> Result<()> {
        for other in self.zone_uuids()? {
            if other == uuid {
                return Err(ZoneError::Conflict {
                    field: "uuid",
                    value: uuid.to_string(),
                    uuid: other,
                });
            }
            if let Some(alias) = alias {
                let record = ZoneRecord::load(&self.paths(&other))?;
                if record.spec.alias.as_deref() == Some(alias) {
                    return Err(ZoneError::Conflict {
                        field: "alias",
                        value: alias.to_string(),
                        uuid: other,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Makes the zone's disk (sized to `quota`), its mount points and metadata.
fn install(paths: &ZonePaths, record: &ZoneRecord) -> Result<()> {
    let quota = u64::from(record.spec.quota.expect("defaults set quota"));
    crate::disk::create(&paths.dir, quota)?;
    for dir in [paths.disk_mount(), paths.root(), paths.zonecontrol()] {
        std::fs::create_dir(&dir).map_err(|e| ZoneError::io(&dir, e))?;
    }
    write_metadata(paths, record)
}

/// Writes `/.zonecontrol/metadata.json` (host side; the zone sees it read-only).
pub fn write_metadata(paths: &ZonePaths, record: &ZoneRecord) -> Result<()> {
    let spec = &record.spec;
    let doc = serde_json::json!({
        "uuid": record.uuid(),
        "alias": spec.alias,
        "hostname": spec.hostname,
        "customer_metadata": spec.customer_metadata,
        "tags": spec.tags,
    });
    let bytes = serde_json::to_vec_pretty(&doc).expect("metadata serializes");
    write_atomic(&paths.metadata(), &bytes)?;
    Ok(())
}
