//! Refuse rather than weaken: the kernel features a zone needs, probed on this
//! host before anything of the zone is made. Only the features a zone needs
//! are probed (the network probes create links in a throwaway namespace and
//! cost tens of milliseconds), and each answer is cached per [`ZoneHost`].

use std::collections::HashMap;
use std::sync::Mutex;

use zonefleet_proto::spec::ZoneSpec;

use super::{Result, ZoneError, ZoneHost};
use crate::sysinfo::{features as probe, CgroupMounts, Feature};

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
    if !spec.nics.is_empty() {
        needs.extend(["veth", "bridge", "nftables"]);
    }
    if spec.nics.iter().any(|n| n.vlan_id.is_some()) {
        needs.push("bridge_vlan_filtering");
    }
    needs
}

/// Cached feature probes of one host.
#[derive(Debug, Default)]
pub struct FeatureCache {
    known: Mutex<HashMap<String, Feature>>,
}

impl FeatureCache {
    /// The feature `name`, probed on first use.
    pub fn get(&self, name: &str) -> Feature {
        let mut known = self.known.lock().expect("feature cache lock");
        if let Some(f) = known.get(name) {
            return f.clone();
        }
        let probed = run_probe(name);
        for f in probed {
            known.insert(f.name.clone(), f);
        }
        known.get(name).cloned().unwrap_or_else(|| Feature {
            name: name.to_string(),
            available: false,
            detail: "no probe for this feature".to_string(),
        })
    }
}

/// Runs the probe that answers `name` (the network probe answers all
/// network features at once).
fn run_probe(name: &str) -> Vec<Feature> {
    let mounts = || CgroupMounts::read().unwrap_or_default();
    match name {
        "seccomp" => vec![probe::seccomp()],
        "user_namespaces" => vec![probe::user_namespaces()],
        "overlayfs" => vec![probe::overlayfs()],
        "ext4" => vec![probe::ext4()],
        "loop_devices" => vec![probe::loop_devices()],
        "pidfd" => vec![probe::pidfd()],
        "cgroup_v1" => vec![probe::cgroup_v1(&mounts())],
        "cgroup_v2" => vec![probe::cgroup_v2(&mounts())],
        "memory_swap_accounting" => vec![probe::memory_swap_accounting(&mounts())],
        "cgroup_kill" => vec![probe::cgroup_kill(&mounts())],
        _ => probe::network(),
    }
}

impl ZoneHost {
    /// Checks `spec`'s needs; the error names the first missing feature and why.
    pub fn check_features(&self, spec: &ZoneSpec) -> Result<()> {
        for need in required(spec) {
            let f = self.features.get(need);
            if !f.available {
                let detail = match vlan_nic(spec) {
                    // Name the property that asked for it.
                    Some(i) if need == "bridge_vlan_filtering" => format!(
                        "nics[{i}].vlan_id = {} needs VLAN filtering on the host bridge: {}",
                        spec.nics[i].vlan_id.unwrap_or_default(),
                        f.detail
                    ),
                    _ => f.detail,
                };
                return Err(ZoneError::MissingFeature {
                    feature: need.to_string(),
                    detail,
                });
            }
        }
        if !spec.nics.is_empty() && crate::net::nft::binary().is_none() {
            return Err(ZoneError::MissingFeature {
                feature: "nftables".into(),
                detail: "the nft command is not installed (Debian package nftables); zone NICs \
                         need it for their anti-spoofing rules"
                    .into(),
            });
        }
        Ok(())
    }
}

/// The first NIC of `spec` with a `vlan_id`.
fn vlan_nic(spec: &ZoneSpec) -> Option<usize> {
    spec.nics.iter().position(|n| n.vlan_id.is_some())
}
