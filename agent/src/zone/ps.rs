//! `zone ps`: the host-side view of zone processes. A process's zone is the
//! zone cgroup it is in (every zone process carries its zone's cgroup), the same
//! way SmartOS's `ps -Z` names a process's zone.

use serde::Serialize;

use super::{Result, ZoneHost};

/// One process of a zone, as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneProcess {
    /// Host pid.
    pub pid: u32,
    /// The zone's uuid.
    pub zone: String,
    /// The zone's alias, if any.
    pub alias: Option<String>,
    /// The command line.
    pub command: String,
}

impl ZoneHost {
    /// Every process of every zone, or of zone `name` only, by pid.
    pub fn ps(&self, name: Option<&str>) -> Result<Vec<ZoneProcess>> {
        let only = name.map(|n| self.resolve(n)).transpose()?;
        let mut aliases = std::collections::HashMap::new();
        for status in self.list()? {
            aliases.insert(status.uuid.clone(), status.alias.clone());
        }
        let mut out = Vec::new();
        let proc = std::fs::read_dir("/proc").map_err(|e| super::ZoneError::io("/proc", e))?;
        for entry in proc.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // A process may exit while we look: skip it.
            let Ok(Some(zone)) = self.cgroups.zone_of_pid(pid) else {
                continue;
            };
            if only.as_ref().is_some_and(|u| *u != zone) {
                continue;
            }
            let command = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    b.split(|&c| c == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            out.push(ZoneProcess {
                pid,
                alias: aliases.get(&zone).cloned().flatten(),
                zone,
                command,
            });
        }
        out.sort_by_key(|p| p.pid);
        Ok(out)
    }
}
