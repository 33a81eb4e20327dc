//! Refuse rather than weaken: the kernel features a zone needs, checked against
//! what this host's sysinfo detected, before anything of the zone is made.

use zonefleet_proto::spec::ZoneSpec;

use super::{Result, ZoneError};
use crate::sysinfo::Feature;

/// The features every zone of brand `os` needs.
pub const ALWAYS: &[&str] = &["overlayfs", "ext4", "loop_devices", "seccomp", "pidfd"];

/// The features `spec` needs on this host.
pub fn required(spec: &ZoneSpec) -> Vec<&'static str> {
    let mut needs = ALWAYS.to_vec();
    if let (Some(swap), Some(mem)) = (spec.max_swap, spec.max_physical_memory) {
        // Swap beyond memory can only be limited with swap accounting; without
        // it the zone could use unlimited swap.
        if swap > mem {
            needs.push("memory_swap_accounting");
        }
    }
    if spec.nics.iter().any(|n| n.vlan_id.is_some()) {
        needs.push("bridge_vlan_filtering");
    }
    needs
}

/// Checks `spec`'s needs against `features`; the error names the first missing
/// feature and why it is missing.
pub fn check(spec: &ZoneSpec, features: &[Feature]) -> Result<()> {
    for need in required(spec) {
        match features.iter().find(|f| f.name == need) {
            Some(f) if f.available => {}
            Some(f) => {
                return Err(ZoneError::MissingFeature {
                    feature: need.to_string(),
                    detail: f.detail.clone(),
                })
            }
            None => {
                return Err(ZoneError::MissingFeature {
                    feature: need.to_string(),
                    detail: "not detected on this host".to_string(),
                })
            }
        }
    }
    Ok(())
}
