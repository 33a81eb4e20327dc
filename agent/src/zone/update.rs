//! `zone update`: apply a JSON patch to a zone's spec. Resource limits change
//! live on a running zone (written to its cgroup and read back); metadata and
//! tags are rewritten at once; hostname, resolvers, init and `limit_priv` take
//! effect at the next boot. Properties that define the zone's disk or identity
//! cannot change.

use zonefleet_proto::spec::{SpecError, ZoneSpec};

use super::record::ZoneRecord;
use super::status::ZoneStatus;
use super::{create::write_metadata, limits, lock, Result, ZoneError, ZoneHost};
use crate::zsched::runtime::Runtime;

/// Properties that cannot change on an existing zone, and what to do instead.
const IMMUTABLE: &[(&str, &str)] = &[
    ("uuid", "a zone's uuid is its identity"),
    ("brand", "create a new zone of the other brand"),
    ("image", "create a new zone from the other image"),
    (
        "quota",
        "the zone's disk is made at install; create a larger zone",
    ),
];

impl ZoneHost {
    /// Applies `patch` (a JSON object of spec properties; `null` resets one to
    /// its default) to zone `name`.
    pub fn update(&self, name: &str, patch: &str) -> Result<ZoneStatus> {
        let patch: serde_json::Value =
            serde_json::from_str(patch).map_err(|e| SpecError::Parse {
                path: ".".into(),
                message: e.to_string(),
                line: e.line(),
                column: e.column(),
            })?;
        let serde_json::Value::Object(patch) = patch else {
            return Err(SpecError::Parse {
                path: ".".into(),
                message: "a patch is a JSON object of zone properties".into(),
                line: 0,
                column: 0,
            }
            .into());
        };
        let uuid = self.resolve(name)?;
        let paths = self.paths(&uuid);
        let _lock = lock::exclusive(&paths.lock())?;
        let mut record = ZoneRecord::load(&paths)?;

        let current = serde_json::to_value(&record.spec).expect("spec serializes");
        let serde_json::Value::Object(mut merged) = current else {
            unreachable!("a spec serializes to an object")
        };
        for (key, value) in patch {
            if let Some((field, why)) = IMMUTABLE.iter().find(|(f, _)| *f == key) {
                if merged.get(&key) != Some(&value) {
                    return Err(ZoneError::Immutable { field, why });
                }
            }
            if value.is_null() {
                merged.remove(&key);
            } else {
                merged.insert(key, value);
            }
        }
        let text = serde_json::Value::Object(merged).to_string();
        let spec = ZoneSpec::from_json(&text)?;
        spec.validate().map_err(SpecError::Invalid)?;
        let spec = spec.with_defaults();
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
