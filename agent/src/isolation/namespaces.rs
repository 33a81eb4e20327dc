//! The namespaces a zone gets. PID comes from zsched's `unshare(CLONE_NEWPID)`
//! before it forks init (a process cannot change its own PID namespace). init
//! unshares mount, UTS, IPC and network first and mounts the zone's disk and
//! root while it is still outside the zone's cgroup (whose device rules deny
//! the loop device); it unshares the cgroup namespace only after zsched has
//! moved it into the zone's cgroup, so that namespace is rooted there.

use nix::sched::{unshare, CloneFlags};

use super::{IsolationError, Result};

/// Namespaces unshared by the zone's init before it joins the zone's cgroup.
pub fn zone_flags() -> CloneFlags {
    CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
}

/// Unshares the zone's mount, UTS, IPC and network namespaces.
pub fn enter_new() -> Result<()> {
    unshare(zone_flags()).map_err(|e| IsolationError::sys("unshare namespaces", "self", e))
}

/// Unshares the cgroup namespace (after joining the zone's cgroup).
pub fn enter_cgroup_namespace() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| IsolationError::sys("unshare cgroup namespace", "self", e))
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
