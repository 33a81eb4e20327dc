//! `runtime.json`: what zsched records about a booted zone (its own pid, init's
//! pid and start time, the host boot it belongs to, and init's exit), so that a
//! new agent process — or the agent after a host reboot — can tell whether the
//! zone still runs without asking zsched.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::{write_replace, FileError};
use crate::proc_stat::{current_boot_id, is_zombie, process_start_ticks};
use crate::zone::paths::RUNTIME_FILE;

/// How a zone's init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Shell-style status: the exit code, or 128 + signal number when killed.
    pub status: i32,
    /// The signal that killed init, if one did.
    pub signal: Option<i32>,
    /// When zsched saw it (milliseconds since the Unix epoch).
    pub at_unix_ms: u64,
    /// zsched killed init because the host's lease ran out (the fence).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fenced: bool,
}

/// The runtime record of one boot of a zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// The zone's zsched (host pid).
    pub zsched_pid: i32,
    /// The zone's init as the host sees it.
    pub init_pid: i32,
    /// init's start time in clock ticks since host boot (`/proc/<pid>/stat`
    /// field 22): with `boot_id` it tells a live init from a reused pid.
    pub init_start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id` when the zone booted.
    pub boot_id: String,
    /// When init started (milliseconds since the Unix epoch).
    pub booted_at_unix_ms: u64,
    /// Set by zsched when init has exited.
    pub exit: Option<ExitRecord>,
}

/// Errors reading or writing the runtime record.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not a runtime record.
    #[error("{path}: not a zone runtime record: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
}

impl Runtime {
    /// Reads the record of the zone in `zone_dir`; `None` if it was never booted
    /// (or its record was cleared).
    pub fn load(zone_dir: &Path) -> Result<Option<Runtime>, RuntimeError> {
        let path = zone_dir.join(RUNTIME_FILE);
        match fs::read(&path) {
            // What a host crash can leave of an unsynced record: nothing runs.
            Ok(bytes) if bytes.is_empty() => Ok(None),
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| RuntimeError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RuntimeError::Io { path, source }),
        }
    }

    /// Replaces the record atomically (temporary file, rename), so a reader never
    /// sees half a record even if zsched dies mid-write. Not fsync'd: the record
    /// only means something within one host boot (`boot_id`), so after a host
    /// crash a lost or empty record is the truth anyway ("not running"), and the
    /// boot path saves the fsyncs.
    pub fn store(&self, zone_dir: &Path) -> Result<(), RuntimeError> {
        let bytes = serde_json::to_vec_pretty(self).expect("runtime record serializes");
        Ok(write_replace(&zone_dir.join(RUNTIME_FILE), &bytes)?)
    }

    /// Whether this boot's zsched still runs: same host boot, and the pid names a
    /// live process whose command line is a zsched's.
    pub fn zsched_alive(&self) -> bool {
        current_boot_id().as_deref() == Some(self.boot_id.as_str())
            && !is_zombie(self.zsched_pid)
            && fs::read(format!("/proc/{}/cmdline", self.zsched_pid))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == b"zsched"))
    }

    /// Whether init is alive right now: same host boot, and the pid still names
    /// the process that started at `init_start_ticks`.
    pub fn init_alive(&self) -> bool {
        self.exit.is_none()
            && current_boot_id().as_deref() == Some(self.boot_id.as_str())
            && process_start_ticks(self.init_pid) == Some(self.init_start_ticks)
            && !is_zombie(self.init_pid)
    }
}

impl From<FileError> for RuntimeError {
    fn from(e: FileError) -> Self {
        RuntimeError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_unix_ms;

    #[test]
    fn record_round_trips_and_detects_a_dead_init() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Runtime::load(dir.path()).unwrap(), None);
        let me = std::process::id() as i32;
        let rt = Runtime {
            zsched_pid: me,
            init_pid: me,
            init_start_ticks: process_start_ticks(me).unwrap(),
            boot_id: current_boot_id().unwrap(),
            booted_at_unix_ms: now_unix_ms(),
            exit: None,
        };
        rt.store(dir.path()).unwrap();
        let back = Runtime::load(dir.path()).unwrap().unwrap();
        assert_eq!(back, rt);
        assert!(back.init_alive());
        let reused = Runtime {
            init_start_ticks: rt.init_start_ticks + 1,
            ..rt.clone()
        };
        assert!(!reused.init_alive(), "a reused pid is not the zone's init");
        let rebooted = Runtime {
            boot_id: "another-boot".into(),
            ..rt
        };
        assert!(
            !rebooted.init_alive(),
            "a record from another boot is stale"
        );
    }

    #[test]
    fn corrupt_record_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(RUNTIME_FILE), b"{not json").unwrap();
        let err = Runtime::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(RUNTIME_FILE), "{err}");
    }
}
