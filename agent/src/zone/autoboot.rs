//! Autoboot: after a host reboot (or when the agent starts), boot every zone
//! with `autoboot` that was running and is not.

use super::record::ZoneRecord;
use super::{Result, ZoneHost, ZoneState};

impl ZoneHost {
    /// Boots each installed zone with `autoboot` whose record says it should
    /// run but whose init is not running. Returns each attempt's result.
    pub fn autoboot(&self) -> Result<Vec<(String, Result<()>)>> {
        let mut results = Vec::new();
        for status in self.list()? {
            let record: &ZoneRecord = &status.record;
            if status.state == ZoneState::Installed
                && record.spec.autoboot == Some(true)
                && record.desired_running
            {
                let result = self.boot(&status.uuid).map(|_| ());
                results.push((status.uuid.clone(), result));
            }
        }
        Ok(results)
    }
}
