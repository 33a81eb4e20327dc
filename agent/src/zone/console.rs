//! `zone console`: where a running zone's console is served (its zsched's relay,
//! [`crate::zsched::console::relay`]). Attaching is the client's
//! ([`crate::zsched::console::attach`]).

use super::record::ZoneRecord;
use super::{Result, ZoneError, ZoneHost};
use crate::zsched::runtime::Runtime;

impl ZoneHost {
    /// The console socket of the running zone `name`. A zone that is not running
    /// has no console to attach to; a running one whose zsched serves none (booted
    /// before consoles were served) says so.
    pub fn console_socket(&self, name: &str) -> Result<std::path::PathBuf> {
        let uuid = self.resolve(name)?;
        let paths = self.paths(&uuid);
        let running = Runtime::load(&paths.dir)?.is_some_and(|rt| rt.init_alive());
        if !running {
            let record = ZoneRecord::load(&paths)?;
            return Err(ZoneError::NotRunning {
                uuid,
                alias: record.spec.alias,
                verb: "attach to its console",
            });
        }
        let socket = paths.console_socket();
        if !socket.exists() {
            return Err(ZoneError::NoConsole { uuid });
        }
        Ok(socket)
    }
}
