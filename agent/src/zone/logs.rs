//! `zone logs`: the zone's console log (the rotated file first).

use super::{Result, ZoneError, ZoneHost};

impl ZoneHost {
    /// The retained console output of zone `name`, oldest first.
    pub fn logs(&self, name: &str) -> Result<Vec<u8>> {
        let uuid = self.resolve(name)?;
        let console = self.paths(&uuid).console();
        let mut out = Vec::new();
        for path in [console.with_extension("log.1"), console] {
            match std::fs::read(&path) {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ZoneError::io(&path, e)),
            }
        }
        Ok(out)
    }
}
