//! Capabilities: the zone's bounding set is exactly `limit_priv`, so root in the
//! zone never holds more, and `no_new_privs` keeps setuid binaries from adding any.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

use super::{IsolationError, Result};

/// Parses capability names (`CAP_NET_RAW`) into the set the kernel understands.
pub fn parse_set<S: AsRef<str>>(names: &[S]) -> Result<CapsHashSet> {
    names
        .iter()
        .map(|n| {
            Capability::from_str(n.as_ref())
                .map_err(|_| IsolationError::UnknownCapability(n.as_ref().to_string()))
        })
        .collect()
}

/// Limits the calling thread to `keep`: drops every other capability from the
/// bounding set, then sets effective, permitted and inheritable to `keep` and
/// clears the ambient set. Runs while still fully privileged (dropping from the
/// bounding set needs CAP_SETPCAP), so the bounding set goes first.
pub fn restrict_to(keep: &CapsHashSet) -> Result<()> {
    let err = |what: &str, e: caps::errors::CapsError| IsolationError::Caps(format!("{what}: {e}"));
    let known: HashSet<Capability> = caps::runtime::thread_all_supported();
    for cap in known.iter().filter(|c| !keep.contains(c)) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(|e| err("drop from bounding set", e))?;
    }
    // Effective must stay within permitted at every step: shrink it first.
    let keep_known: CapsHashSet = keep.intersection(&known).copied().collect();
    caps::set(None, CapSet::Effective, &keep_known).map_err(|e| err("effective", e))?;
    caps::set(None, CapSet::Permitted, &keep_known).map_err(|e| err("permitted", e))?;
    caps::set(None, CapSet::Inheritable, &keep_known).map_err(|e| err("inheritable", e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| err("ambient", e))?;
    Ok(())
}

/// Sets `no_new_privs`: execve can never grant privileges again (setuid bits
/// and file capabilities stop working), and seccomp filters may be loaded.
pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integer arguments only and touches
    // no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(IsolationError::sys(
            "set no_new_privs",
            "prctl",
            nix::Error::last(),
        ));
    }
    Ok(())
}
