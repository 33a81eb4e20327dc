//! Refuse rather than weaken: the kernel features a zone needs, probed on this
//! host before anything of the zone is made. Only the features a zone needs
//! are probed (the network probes create links in a throwaway namespace and
//! cost tens of milliseconds), and each answer is cached per [`ZoneHost`].

use std::collections::HashMap;
use std::sync::Mutex;

use zonefleet_proto::feature::{self as names, Demand};
use zonefleet_proto::spec::ZoneSpec;

use super::{Result, ZoneError, ZoneHost};
use crate::cgroup::detect::Layout;
use crate::sysinfo::{features as probe, Feature};

/// What `spec` asks of this host. A standalone host has no networks, so only a
/// NIC's own `vlan_id` asks for VLAN filtering (a NIC naming a network is
/// refused by the network plan).
fn demand(spec: &ZoneSpec) -> Demand {
    Demand::of_spec(spec, |_| false)
}

/// Cached feature probes of one host.
#[derive(Debug, Default)]
pub struct FeatureCache {
    known: Mutex<HashMap<String, Feature>>,
}

impl FeatureCache {
    /// The feature `name`, probed on first use (idmapped mounts on `data_dir`).
    pub fn get(&self, name: &str, data_dir: &std::path::Path) -> Feature {
        let mut known = self.known.lock().expect("feature cache lock");
        if let Some(f) = known.get(name) {
            return f.clone();
        }
        let probed = run_probe(name, data_dir);
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
fn run_probe(name: &str, data_dir: &std::path::Path) -> Vec<Feature> {
    let mounts = || Layout::read().unwrap_or_default();
    match name {
        names::SECCOMP => vec![probe::seccomp()],
        names::USER_NAMESPACES => vec![probe::user_namespaces()],
        names::IDMAPPED_MOUNTS => vec![probe::idmapped_mounts(data_dir)],
        names::OVERLAYFS => vec![probe::overlayfs()],
        names::EXT4 => vec![probe::ext4()],
        names::LOOP_DEVICES => vec![probe::loop_devices()],
        names::PIDFD => vec![probe::pidfd()],
        names::CGROUP_V1 => vec![probe::cgroup_v1(&mounts())],
        names::CGROUP_V2 => vec![probe::cgroup_v2(&mounts())],
        names::MEMORY_SWAP_ACCOUNTING => vec![probe::memory_swap_accounting(&mounts())],
        names::CGROUP_KILL => vec![probe::cgroup_kill(&mounts())],
        _ => probe::network(),
    }
}

impl ZoneHost {
    /// Checks `spec`'s needs; the error names the first missing feature and why.
    pub fn check_features(&self, spec: &ZoneSpec) -> Result<()> {
        let demand = demand(spec);
        for need in demand.required() {
            let f = self.features.get(need, &self.data_dir);
            if !f.available {
                let detail = match demand.vlan_nic {
                    // Name the property that asked for it.
                    Some(i) if need == names::BRIDGE_VLAN_FILTERING => format!(
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
                feature: names::NFTABLES.into(),
                detail: "the nft command is not installed (Debian package nftables); zone NICs \
                         need it for their anti-spoofing rules"
                    .into(),
            });
        }
        Ok(())
    }
}
