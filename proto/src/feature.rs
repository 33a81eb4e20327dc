//! The kernel features a host reports (their names, in one place) and the rule
//! saying which of them a zone needs: the agent refuses a zone on a host that
//! lacks one, and the scheduler does not place it there.

use crate::pb;
use crate::spec::ZoneSpec;

/// Loading a seccomp filter (CONFIG_SECCOMP_FILTER).
pub const SECCOMP: &str = "seccomp";
/// Unprivileged user namespaces.
pub const USER_NAMESPACES: &str = "user_namespaces";
/// Idmapped mounts on the filesystem of the agent's data dir (a zone with its
/// own user namespace sees the image's layer through one).
pub const IDMAPPED_MOUNTS: &str = "idmapped_mounts";
/// The overlay filesystem (a zone's root).
pub const OVERLAYFS: &str = "overlayfs";
/// ext4 (a zone's writable layer).
pub const EXT4: &str = "ext4";
/// Loop devices (the writable layer's image).
pub const LOOP_DEVICES: &str = "loop_devices";
/// cgroup v1 controller hierarchies.
pub const CGROUP_V1: &str = "cgroup_v1";
/// A cgroup2 mount.
pub const CGROUP_V2: &str = "cgroup_v2";
/// Swap accounting (v1 memsw, v2 `memory.swap.max`).
pub const MEMORY_SWAP_ACCOUNTING: &str = "memory_swap_accounting";
/// v2 `cgroup.kill`.
pub const CGROUP_KILL: &str = "cgroup_kill";
/// `pidfd_open`.
pub const PIDFD: &str = "pidfd";
/// veth pairs.
pub const VETH: &str = "veth";
/// Linux bridges.
pub const BRIDGE: &str = "bridge";
/// VLAN filtering on a bridge.
pub const BRIDGE_VLAN_FILTERING: &str = "bridge_vlan_filtering";
/// 802.1Q VLAN links.
pub const VLAN_8021Q: &str = "vlan_8021q";
/// macvlan links.
pub const MACVLAN: &str = "macvlan";
/// VXLAN links.
pub const VXLAN: &str = "vxlan";
/// nftables (the NICs' anti-spoofing rules).
pub const NFTABLES: &str = "nftables";

/// Every feature an agent reports, in the order it reports them.
pub const ALL: &[&str] = &[
    SECCOMP,
    USER_NAMESPACES,
    IDMAPPED_MOUNTS,
    OVERLAYFS,
    EXT4,
    LOOP_DEVICES,
    CGROUP_V1,
    CGROUP_V2,
    MEMORY_SWAP_ACCOUNTING,
    CGROUP_KILL,
    PIDFD,
    VETH,
    BRIDGE,
    BRIDGE_VLAN_FILTERING,
    VLAN_8021Q,
    MACVLAN,
    VXLAN,
    NFTABLES,
];

/// What every zone needs, whatever its spec.
pub const EVERY_ZONE: &[&str] = &[OVERLAYFS, EXT4, LOOP_DEVICES, SECCOMP, PIDFD];

/// What every zone with at least one NIC needs.
pub const EVERY_NIC: &[&str] = &[VETH, BRIDGE, NFTABLES];

/// Whether `name` is needed by every zone (or every zone with a NIC) rather than
/// asked for by a particular property: the features every zonefleet host is
/// expected to have, as opposed to the ones that tell hosts apart.
pub fn is_baseline(name: &str) -> bool {
    EVERY_ZONE.contains(&name) || EVERY_NIC.contains(&name)
}

/// The properties of a zone's spec that decide which features it needs, read
/// from either form of the spec ([`Demand::of_spec`], [`Demand::of_pb`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Swap limited beyond memory: only swap accounting can hold it (without it
    /// the zone could use unlimited swap).
    pub swap_beyond_memory: bool,
    /// The zone has at least one NIC.
    pub nics: bool,
    /// The first NIC on a VLAN (its own `vlan_id`, or its network's).
    pub vlan_nic: Option<usize>,
    /// The zone has its own user namespace (`user_namespace`, default true).
    pub user_namespace: bool,
}

impl Demand {
    /// The demand of a domain spec; `network_has_vlan` says whether the named
    /// network tags its ports (a host without networks: always false).
    pub fn of_spec(spec: &ZoneSpec, network_has_vlan: impl Fn(&str) -> bool) -> Self {
        Self::from_parts(
            spec.user_namespace.unwrap_or(true),
            spec.max_swap,
            spec.max_physical_memory,
            spec.nics
                .iter()
                .map(|n| (n.vlan_id.is_some(), n.network.as_deref())),
            network_has_vlan,
        )
    }

    /// The demand of a wire-form spec (the scheduler's), as [`Demand::of_spec`].
    pub fn of_pb(spec: &pb::ZoneSpec, network_has_vlan: impl Fn(&str) -> bool) -> Self {
        Self::from_parts(
            spec.user_namespace.unwrap_or(true),
            spec.max_swap_mib,
            spec.max_physical_memory_mib,
            spec.nics
                .iter()
                .map(|n| (n.vlan_id.is_some(), n.network.as_deref())),
            network_has_vlan,
        )
    }

    fn from_parts<'a>(
        user_namespace: bool,
        swap: Option<u64>,
        memory: Option<u64>,
        nics: impl Iterator<Item = (bool, Option<&'a str>)>,
        network_has_vlan: impl Fn(&str) -> bool,
    ) -> Self {
        let mut demand = Demand {
            swap_beyond_memory: matches!((swap, memory), (Some(s), Some(m)) if s > m),
            user_namespace,
            ..Demand::default()
        };
        for (i, (own_vlan, network)) in nics.enumerate() {
            demand.nics = true;
            if demand.vlan_nic.is_none() && (own_vlan || network.is_some_and(&network_has_vlan)) {
                demand.vlan_nic = Some(i);
            }
        }
        demand
    }

    /// The features a zone of this demand needs, in the order the agent checks
    /// them: [`EVERY_ZONE`], user namespaces and idmapped mounts, swap
    /// accounting, [`EVERY_NIC`], VLAN filtering.
    pub fn required(&self) -> Vec<&'static str> {
        let mut needs = EVERY_ZONE.to_vec();
        if self.user_namespace {
            needs.extend([USER_NAMESPACES, IDMAPPED_MOUNTS]);
        }
        if self.swap_beyond_memory {
            needs.push(MEMORY_SWAP_ACCOUNTING);
        }
        if self.nics {
            needs.extend(EVERY_NIC);
        }
        if self.vlan_nic.is_some() {
            needs.push(BRIDGE_VLAN_FILTERING);
        }
        needs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ZoneSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_plain_zone_needs_the_baseline_only() {
        let s = spec(r#"{"image":"base@1","user_namespace":false}"#);
        let d = Demand::of_spec(&s, |_| true);
        assert_eq!(d, Demand::default());
        assert_eq!(d.required(), EVERY_ZONE);
        assert!(d.required().iter().all(|f| is_baseline(f)));
    }

    #[test]
    fn a_zone_has_its_own_user_namespace_unless_it_says_not() {
        let s = spec(r#"{"image":"base@1"}"#);
        let d = Demand::of_spec(&s, |_| true);
        assert!(d.user_namespace);
        assert_eq!(Demand::of_pb(&pb::ZoneSpec::from(s), |_| true), d);
        let mut want = EVERY_ZONE.to_vec();
        want.extend([USER_NAMESPACES, IDMAPPED_MOUNTS]);
        assert_eq!(d.required(), want);
    }

    #[test]
    fn swap_nics_and_vlans_add_their_features() {
        let s = spec(
            r#"{"image":"base@1","max_physical_memory":256,"max_swap":512,"user_namespace":false,
                "nics":[{"ip":"10.0.0.5/24"},{"ip":"10.0.1.5/24","vlan_id":7}]}"#,
        );
        let d = Demand::of_spec(&s, |_| false);
        assert_eq!(
            d,
            Demand {
                swap_beyond_memory: true,
                nics: true,
                vlan_nic: Some(1),
                user_namespace: false,
            }
        );
        assert_eq!(
            d.required(),
            [
                OVERLAYFS,
                EXT4,
                LOOP_DEVICES,
                SECCOMP,
                PIDFD,
                MEMORY_SWAP_ACCOUNTING,
                VETH,
                BRIDGE,
                NFTABLES,
                BRIDGE_VLAN_FILTERING,
            ]
        );
        // Swap equal to memory is not swap beyond it.
        let even = spec(r#"{"image":"base@1","max_physical_memory":256,"max_swap":256}"#);
        assert!(!Demand::of_spec(&even, |_| false).swap_beyond_memory);
    }

    #[test]
    fn a_nic_on_a_vlan_network_counts_and_both_forms_agree() {
        let s = spec(r#"{"image":"base@1","nics":[{"network":"plain"},{"network":"tagged"}]}"#);
        let tagged = |n: &str| n == "tagged";
        let d = Demand::of_spec(&s, tagged);
        assert_eq!(d.vlan_nic, Some(1));
        assert_eq!(Demand::of_pb(&pb::ZoneSpec::from(s.clone()), tagged), d);
        // Without networks (a standalone agent) only a NIC's own vlan_id counts.
        assert_eq!(Demand::of_spec(&s, |_| false).vlan_nic, None);
    }
}
