//! The namespaces a zone gets. zsched's stager (with the host's privileges)
//! unshares a private mount namespace to build the zone's root in, joins the
//! zone's user namespace (when it has one), then unshares mount, UTS, IPC,
//! network, cgroup and PID namespaces at once: each is then owned by the zone's
//! user namespace, so root in the zone may set its own hostname, configure its
//! own network and end its own PID namespace, and nothing else. The cgroup
//! namespace is unshared after zsched moved the stager into the zone's cgroup,
//! so it is rooted there. The stager's next child, init, is PID 1.

use nix::sched::{unshare, CloneFlags};

use super::{IsolationError, Result};

/// The namespaces unshared for the zone after its user namespace is joined.
pub fn zone_flags() -> CloneFlags {
    CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWCGROUP
        | CloneFlags::CLONE_NEWPID
}

/// Unshares the private mount namespace the zone's root is built in.
pub fn private_mounts() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| IsolationError::sys("unshare the mount namespace", "self", e))
}

/// Unshares the zone's namespaces ([`zone_flags`]).
pub fn enter_zone() -> Result<()> {
    unshare(zone_flags())
        .map_err(|e| IsolationError::sys("unshare the zone's namespaces", "self", e))
}

/// Sets the zone's hostname (in its own UTS namespace).
pub fn set_hostname(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).map_err(|e| IsolationError::sys("sethostname", name, e))
}
