//! What a zone is doing now: its lifecycle record combined with zsched's
//! runtime record, plus name resolution (uuid, unique uuid prefix, or alias).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::paths::{ZonePaths, ZONES_DIR};
use super::record::{LifecycleState, ZoneRecord};
use super::{Result, ZoneError, ZoneHost};
use crate::zsched::runtime::{ExitRecord, Runtime};

/// A zone's state as SmartOS names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneState {
    /// Spec recorded, not installed.
    Configured,
    /// Installed, not running.
    Installed,
    /// Namespaces set up, init not yet running.
    Ready,
    /// init runs.
    Running,
    /// Halting: init was asked to stop.
    ShuttingDown,
    /// Install failed.
    Failed,
    /// Deleted.
    Deleted,
}

impl fmt::Display for ZoneState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ZoneState::Configured => "configured",
            ZoneState::Installed => "installed",
            ZoneState::Ready => "ready",
            ZoneState::Running => "running",
            ZoneState::ShuttingDown => "shutting_down",
            ZoneState::Failed => "failed",
            ZoneState::Deleted => "deleted",
        };
        f.write_str(s)
    }
}

/// One zone as `zone get` / `zone list` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneStatus {
    /// The zone's uuid.
    pub uuid: String,
    /// Its alias, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Its state now.
    pub state: ZoneState,
    /// init's pid as the host sees it, while running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_pid: Option<i32>,
    /// zsched's pid, while running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zsched_pid: Option<i32>,
    /// How init last ended, if it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitRecord>,
    /// The last error seen, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The full record (spec with defaults, image).
    pub record: ZoneRecord,
}

impl ZoneStatus {
    /// Combines a record and the runtime record of the zone in `paths`.
    pub fn observe(record: ZoneRecord, paths: &ZonePaths) -> Result<ZoneStatus> {
        let runtime = Runtime::load(&paths.dir)?;
        let halting = paths.halting().exists();
        let (state, init_pid, zsched_pid, last_exit) = match record.state {
            LifecycleState::Configured => (ZoneState::Configured, None, None, None),
            LifecycleState::Failed => (ZoneState::Failed, None, None, None),
            LifecycleState::Installed => match runtime {
                Some(rt) if rt.init_alive() => (
                    if halting {
                        ZoneState::ShuttingDown
                    } else {
                        ZoneState::Running
                    },
                    Some(rt.init_pid),
                    Some(rt.zsched_pid),
                    None,
                ),
                // init has ended and zsched is still at work: reaping it, draining
                // its console, recording how it ended (a few milliseconds).
                Some(rt) if rt.exit.is_none() && rt.zsched_alive() => {
                    (ZoneState::ShuttingDown, None, Some(rt.zsched_pid), None)
                }
                Some(rt) => (ZoneState::Installed, None, None, rt.exit),
                None => (ZoneState::Installed, None, None, None),
            },
        };
        Ok(ZoneStatus {
            uuid: record.uuid(),
            alias: record.spec.alias.clone(),
            state,
            init_pid,
            zsched_pid,
            last_exit,
            message: record.message.clone(),
            record,
        })
    }
}

impl ZoneHost {
    /// Every zone on this host, by creation time.
    pub fn list(&self) -> Result<Vec<ZoneStatus>> {
        let mut out = Vec::new();
        for uuid in self.zone_uuids()? {
            let paths = self.paths(&uuid);
            // A zone being deleted right now may vanish between listing and reading.
            match ZoneRecord::load(&paths) {
                Ok(record) => out.push(ZoneStatus::observe(record, &paths)?),
                Err(ZoneError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|s| (s.record.created_at_unix_ms, s.uuid.clone()));
        Ok(out)
    }

    /// One zone, named by uuid, unique uuid prefix or alias.
    pub fn get(&self, name: &str) -> Result<ZoneStatus> {
        let uuid = self.resolve(name)?;
        let paths = self.paths(&uuid);
        ZoneStatus::observe(ZoneRecord::load(&paths)?, &paths)
    }

    /// The uuids of the zones with a record on this host.
    pub fn zone_uuids(&self) -> Result<Vec<String>> {
        let dir = self.data_dir.join(ZONES_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ZoneError::io(&dir, e)),
        };
        let mut uuids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ZoneError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if uuid::Uuid::parse_str(&name).is_ok() && ZoneRecord::exists(&entry.path()) {
                uuids.push(name);
            }
        }
        uuids.sort();
        Ok(uuids)
    }

    /// Resolves a zone name: an exact uuid, an exact alias, or a unique uuid prefix.
    pub fn resolve(&self, name: &str) -> Result<String> {
        let uuids = self.zone_uuids()?;
        if uuids.iter().any(|u| u == name) {
            return Ok(name.to_string());
        }
        let mut by_alias = Vec::new();
        for uuid in &uuids {
            if let Ok(record) = ZoneRecord::load(&self.paths(uuid)) {
                if record.spec.alias.as_deref() == Some(name) {
                    by_alias.push(uuid.clone());
                }
            }
        }
        let matches = if by_alias.is_empty() && !name.is_empty() {
            uuids
                .into_iter()
                .filter(|u| u.starts_with(name))
                .collect::<Vec<_>>()
        } else {
            by_alias
        };
        match matches.len() {
            0 => Err(ZoneError::NotFound(name.to_string())),
            1 => Ok(matches.into_iter().next().expect("one match")),
            _ => Err(ZoneError::Ambiguous {
                name: name.to_string(),
                matches: matches.join(", "),
            }),
        }
    }
}
