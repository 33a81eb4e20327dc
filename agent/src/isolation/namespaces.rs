//! The namespaces a zone gets. PID comes from zsched's `unshare(CLONE_NEWPID)`
//! before it forks init (a process cannot change its own PID namespace); the
//! rest are unshared by init itself once it has joined the zone's cgroup, so
//! that its cgroup namespace is rooted at the zone's cgroup.

use nix::sched::{unshare, CloneFlags};

use super::{IsolationError, Result};

/// Namespaces unshared by the zone's init after joining its cgroup.
pub fn zone_flags() -> CloneFlags {
    CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWCGROUP
}

/// Unshares the zone's namespaces (all but PID) in the calling process.
pub fn enter_new() -> Result<()> {
    unshare(zone_flags()).map_err(|e| IsolationError::sys("unshare namespaces", "self", e))
}

/// Unshares a new PID namespace: the next child of the caller is its PID 1.
pub fn new_pid_namespace() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWPID)
        .map_err(|e| IsolationError::sys("unshare PID namespace", "self", e))
}

/// Sets the zone's hostname (in its own UTS namespace).
pub fn set_hostname(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).map_err(|e| IsolationError::sys("sethostname", name, e))
}
