//! The host's lease as its agent holds it, in `<data>/lease.json`: the fence deadline
//! (on `CLOCK_BOOTTIME`, which every process of the host shares and which keeps
//! counting through a suspend) and the assignment revision the lease was granted at.
//!
//! The agent writes it after every answered heartbeat; each `reschedule` zone's zsched
//! reads it and kills the zone when the deadline passes (the fence), whether or not
//! the agent still runs; the converge engine boots a `reschedule` zone only while the
//! lease is live and it has applied the revision the lease names. The deadline is
//! counted from when the agent *sent* the renewing heartbeat, never from when the
//! answer came: the leader renewed the lease no earlier than that, so the agent's
//! lease always ends before the leader's (docs/host-loss.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::files::{write_replace, FileError};

/// The lease file in a data dir.
pub const LEASE_FILE: &str = "lease.json";

/// The lease file of `data_dir`.
pub fn lease_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LEASE_FILE)
}

/// `CLOCK_BOOTTIME` now.
pub fn boottime_now() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(t) => Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32),
        // Cannot happen on Linux ≥ 2.6.39. A clock far ahead makes every lease
        // look over: fenced, the safe side.
        Err(_) => Duration::MAX,
    }
}

/// The lease as written to the lease file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The host boot the deadline belongs to (`CLOCK_BOOTTIME` restarts at a reboot).
    pub boot_id: String,
    /// When the agent fences its `reschedule` zones, in milliseconds of
    /// `CLOCK_BOOTTIME`.
    pub fence_at_boottime_ms: u64,
    /// The assignment revision the engine must have applied before it boots a
    /// `reschedule` zone: the host's revision when a lapsed lease was granted again.
    pub assignments_revision: u64,
}

impl LeaseRecord {
    /// A lease granted by an answer to a heartbeat sent at `sent` (`CLOCK_BOOTTIME`),
    /// fenced `margin` before its `ttl` ends.
    pub fn granted(sent: Duration, ttl: Duration, margin: Duration, revision: u64) -> LeaseRecord {
        LeaseRecord {
            boot_id: crate::proc_stat::current_boot_id().unwrap_or_default(),
            fence_at_boottime_ms: sent.saturating_add(ttl.saturating_sub(margin)).as_millis()
                as u64,
            assignments_revision: revision,
        }
    }

    /// The lease in `path`; `None` when there is none or it cannot be read (no lease:
    /// fenced).
    pub fn load(path: &Path) -> Option<LeaseRecord> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes the lease to `path` (replaced atomically: a reader sees the old or the
    /// new one).
    pub fn store(&self, path: &Path) -> Result<(), FileError> {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        write_replace(path, &bytes)
    }

    /// How long until the fence (zero: fenced now), on this host boot.
    pub fn remaining(&self) -> Duration {
        if crate::proc_stat::current_boot_id().as_deref() != Some(self.boot_id.as_str()) {
            return Duration::ZERO;
        }
        Duration::from_millis(self.fence_at_boottime_ms).saturating_sub(boottime_now())
    }

    /// Whether the lease still holds.
    pub fn live(&self) -> bool {
        !self.remaining().is_zero()
    }
}

/// How long until the lease in `path` fences (zero: now, or no lease).
pub fn remaining(path: &Path) -> Duration {
    LeaseRecord::load(path).map_or(Duration::ZERO, |l| l.remaining())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_counts_from_the_send_and_ends_a_margin_early() {
        let dir = tempfile::tempdir().unwrap();
        let path = lease_path(dir.path());
        assert!(remaining(&path).is_zero(), "no file: fenced");
        let now = boottime_now();
        let lease =
            LeaseRecord::granted(now, Duration::from_secs(2), Duration::from_millis(500), 7);
        lease.store(&path).unwrap();
        let left = remaining(&path);
        assert!(
            left <= Duration::from_millis(1500) && left > Duration::from_millis(1000),
            "{left:?}"
        );
        assert_eq!(LeaseRecord::load(&path).unwrap().assignments_revision, 7);
        // Sent long ago: already over.
        let old = LeaseRecord::granted(
            now.saturating_sub(Duration::from_secs(3)),
            Duration::from_secs(2),
            Duration::from_millis(500),
            7,
        );
        assert!(!old.live());
        // Another boot's lease never holds.
        let other = LeaseRecord {
            boot_id: "another boot".into(),
            ..lease
        };
        assert!(!other.live());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(remaining(&path).is_zero());
    }
}
