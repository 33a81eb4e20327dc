//! Killing every process of a cgroup without `cgroup.kill`: freeze, SIGKILL every
//! pid, thaw, repeat until empty. Freezing first closes the race with a process
//! that forks between our reading `cgroup.procs` and our signal reaching it.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::fsutil::POLL;
use super::CgroupError;

/// How one cgroup version freezes, thaws and lists a zone for [`kill_loop`].
pub(crate) trait Freezable {
    /// Freezes and waits (at most `timeout`) until frozen.
    fn freeze(&self, timeout: Duration) -> Result<(), CgroupError>;
    /// Thaws and waits (at most `timeout`) until thawed.
    fn thaw(&self, timeout: Duration) -> Result<(), CgroupError>;
    /// The zone's processes.
    fn pids(&self) -> Result<Vec<u32>, CgroupError>;
}

/// Sends SIGKILL; a process already gone is not an error.
pub(crate) fn sigkill(pid: u32) -> Result<(), CgroupError> {
    let raw = i32::try_from(pid).map_err(|_| CgroupError::Signal {
        pid,
        signal: "KILL",
        source: Errno::ESRCH,
    })?;
    match kill(Pid::from_raw(raw), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(CgroupError::Signal {
            pid,
            signal: "KILL",
            source,
        }),
    }
}

/// Freeze, kill, thaw until no process is left or `timeout` passes. The zone is
/// always thawed before returning, so a timed-out kill leaves no frozen zone.
pub(crate) fn kill_loop(
    zone: &dyn Freezable,
    path: &Path,
    timeout: Duration,
) -> Result<(), CgroupError> {
    // Another process (the zone's zsched) may remove the cgroup while we kill:
    // the kernel only lets an empty cgroup be removed, so a cgroup that vanished
    // mid-way has no process left, which is what was asked.
    match kill_rounds(zone, path, timeout) {
        Err(_) if !path.exists() => Ok(()),
        result => result,
    }
}

fn kill_rounds(zone: &dyn Freezable, path: &Path, timeout: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + timeout;
    loop {
        if zone.pids()?.is_empty() {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CgroupError::Timeout {
                what: "killing every process",
                path: path.to_owned(),
                timeout,
            });
        }
        let frozen = zone.freeze(left);
        let signalled = zone
            .pids()
            .and_then(|pids| pids.into_iter().try_for_each(sigkill));
        // Thaw even when freezing timed out: killed tasks only die once thawed.
        let thawed = zone.thaw(left.max(Duration::from_millis(100)));
        signalled?;
        thawed?;
        match frozen {
            // A freeze that did not finish in time is retried in the next round.
            Ok(()) | Err(CgroupError::Timeout { .. }) => {}
            Err(e) => return Err(e),
        }
        std::thread::sleep(POLL);
    }
}
