//! `zone update`: apply a patch to a zone's spec. Resource limits change live on a
//! running zone (written to its cgroup and read back); metadata and tags are
//! rewritten at once; hostname, resolvers, init, `limit_priv` and NICs take effect at
//! the next boot. What can change, and how a patch merges, is the shared rule of
//! [`ZonePatch`] (`docs/zone-spec.md`).

use zonefleet_proto::spec::ZonePatch;

use super::record::ZoneRecord;
use super::status::ZoneStatus;
use super::{create::write_metadata, limits, lock, Result, ZoneError, ZoneHost};
use crate::zsched::runtime::Runtime;

impl ZoneHost {
    /// Applies `patch` to zone `name`.
    pub fn update(&self, name: &str, patch: &ZonePatch) -> Result<ZoneStatus> {
        let uuid = self.resolve(name)?;
        let paths = self.paths(&uuid);
        let _lock = lock::exclusive(&paths.lock())?;
        let mut record = ZoneRecord::load(&paths)?;

        let spec = patch.apply(&record.spec)?.with_defaults();
        if spec.alias != record.spec.alias {
            if let Some(alias) = spec.alias.as_deref() {
                self.check_alias_free(&uuid, alias)?;
            }
        }

        let running = Runtime::load(&paths.dir)?.is_some_and(|rt| rt.init_alive());
        if running {
            self.cgroups.update(&uuid, &limits::from_spec(&spec))?;
        }
        record.spec = spec;
        record.store(&paths)?;
        write_metadata(&paths, &record)?;
        ZoneStatus::observe(record, &paths)
    }

    fn check_alias_free(&self, uuid: &str, alias: &str) -> Result<()> {
        for other in self.zone_uuids()? {
            if other != uuid
                && ZoneRecord::load(&self.paths(&other))?.spec.alias.as_deref() == Some(alias)
            {
                return Err(ZoneError::Conflict {
                    field: "alias",
                    value: alias.to_string(),
                    uuid: other,
                });
            }
        }
        Ok(())
    }
}
