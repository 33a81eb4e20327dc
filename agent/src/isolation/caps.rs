//! Capabilities: the zone's bounding set is exactly `limit_priv`, so root in the
//! zone never holds more, and nothing it executes (a setuid binary, a file
//! capability) can gain more either.

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
