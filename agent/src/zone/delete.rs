//! `zone delete`: halt if running, then remove everything of the zone — its
//! cgroup, its disk (and any loop device still bound to it), its directory.

use super::{lock, Result, ZoneError, ZoneHost};

impl ZoneHost {
    /// Deletes the zone `name`; returns its uuid.
    pub fn delete(&self, name: &str) -> Result<String> {
        let _table = lock::exclusive(&self.table_lock_path())?;
        let uuid = self.resolve(name)?;
        let paths = self.paths(&uuid);
        {
            let _lock = lock::exclusive(&paths.lock())?;
            self.stop_locked(&uuid, &paths.dir)?;
            crate::disk::delete(&paths.dir)?;
        }
        std::fs::remove_dir_all(&paths.dir).map_err(|e| ZoneError::io(&paths.dir, e))?;
        Ok(uuid)
    }
}
