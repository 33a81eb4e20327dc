//! The resolved network plan of a zone: what zsched builds for each NIC. Made
//! by the boot verb from the spec and stored in the boot plan, so what a zone
//! booted with (names, MACs, addresses) is on disk, and teardown removes
//! exactly that.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zonefleet_proto::spec::{MacAddr, ZoneSpec};

use super::NetError;

/// Default MTU of a NIC.
pub const DEFAULT_MTU: u32 = 1500;

/// The network of one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetPlan {
    /// The zone's uuid (tags its nftables chains).
    pub uuid: String,
    /// The host bridge the NICs are ports of.
    pub bridge: String,
    /// One entry per NIC, in spec order.
    pub nics: Vec<NicPlan>,
}

/// One NIC: a veth pair between the bridge and the zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicPlan {
    /// Position in `nics[]`.
    pub index: usize,
    /// The host end's name (a port of the bridge): `zf<10 hex of uuid>n<index>`.
    pub host_if: String,
    /// The zone end's name inside the zone: `eth<index>`.
    pub zone_if: String,
    /// The zone end's MAC.
    pub mac: MacAddr,
    /// Address and prefix.
    pub ip: IpNet,
    /// Default gateway (only the primary NIC's is installed).
    pub gateway: Option<IpAddr>,
    /// MTU of both ends.
    pub mtu: u32,
    /// Carries the default route.
    pub primary: bool,
    /// The zone may send from other addresses.
    pub allow_ip_spoofing: bool,
    /// The zone may send from other MACs.
    pub allow_mac_spoofing: bool,
}

/// The host end's name of NIC `index` of zone `uuid` (at most 15 bytes).
pub fn host_if_name(uuid: &str, index: usize) -> String {
    let hex: String = uuid.chars().filter(|c| *c != '-').take(10).collect();
    format!("zf{hex}n{index}")
}

/// The MAC zonefleet gives NIC `index` of zone `uuid` when the spec gives none:
/// `02` (locally administered, unicast) then 5 bytes of
/// sha256(`"zonefleet-mac:" uuid ":" index`). Stable across boots and hosts.
pub fn derived_mac(uuid: &str, index: usize) -> MacAddr {
    let digest = Sha256::digest(format!("zonefleet-mac:{uuid}:{index}").as_bytes());
    MacAddr([0x02, digest[0], digest[1], digest[2], digest[3], digest[4]])
}

/// The IPv6 link-local address the kernel derives from `mac` (EUI-64).
pub fn link_local(mac: &MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// Resolves `spec`'s NICs (defaults applied) for a standalone host; `None`
/// when the zone has no NIC. A NIC with only `network` is refused: without
/// controllers nothing assigns its address.
pub fn resolve(spec: &ZoneSpec, uuid: &str, bridge: &str) -> Result<Option<NetPlan>, NetError> {
    if spec.nics.is_empty() {
        return Ok(None);
    }
    let mut nics = Vec::new();
    for (index, nic) in spec.nics.iter().enumerate() {
        let Some(ip) = nic.ip else {
            return Err(NetError::Plan(format!(
                "nics[{index}].network: {:?} needs the controllers to assign an address, and this \
                 host runs standalone; give nics[{index}].ip (address/prefix) instead",
                nic.network.as_deref().unwrap_or("")
            )));
        };
        if let Some(vlan) = nic.vlan_id {
            // Refuse rather than run untagged.
            return Err(NetError::Plan(format!(
                "nics[{index}].vlan_id = {vlan}: VLAN tagging of zone ports is not \
                 implemented by this agent yet"
            )));
        }
        nics.push(NicPlan {
            index,
            host_if: host_if_name(uuid, index),
            zone_if: format!("eth{index}"),
            mac: nic.mac.unwrap_or_else(|| derived_mac(uuid, index)),
            ip,
            gateway: nic.gateway,
            mtu: nic.mtu.unwrap_or(DEFAULT_MTU),
            primary: nic.primary.unwrap_or(index == 0),
            allow_ip_spoofing: nic.allow_ip_spoofing.unwrap_or(false),
            allow_mac_spoofing: nic.allow_mac_spoofing.unwrap_or(false),
        });
    }
    Ok(Some(NetPlan {
        uuid: uuid.to_string(),
        bridge: bridge.to_string(),
        nics,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";

    #[test]
    fn names_fit_ifnamsiz_and_differ() {
        assert_eq!(host_if_name(UUID, 0), "zf1b4e28ba2fn0");
        assert!(host_if_name(UUID, 31).len() <= 15);
    }

    #[test]
    fn derived_macs_are_local_unicast_and_stable() {
        let a = derived_mac(UUID, 0);
        assert!(a.is_local() && !a.is_multicast());
        assert_eq!(a, derived_mac(UUID, 0));
        assert_ne!(a, derived_mac(UUID, 1));
    }

    #[test]
    fn link_local_is_eui64() {
        let mac = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(link_local(&mac).to_string(), "fe80::11:22ff:fe33:4455");
    }

    #[test]
    fn network_only_nic_is_refused_standalone() {
        let spec = ZoneSpec::from_json(&format!(
            r#"{{"uuid":"{UUID}","image":"busybox","nics":[{{"network":"web"}}]}}"#
        ))
        .unwrap()
        .with_defaults();
        let err = resolve(&spec, UUID, "zfbr0").unwrap_err().to_string();
        assert!(
            err.contains("nics[0].network") && err.contains("nics[0].ip"),
            "{err}"
        );
    }

    #[test]
    fn resolves_defaults() {
        let spec = ZoneSpec::from_json(&format!(
            r#"{{"uuid":"{UUID}","image":"busybox","nics":[{{"ip":"10.99.0.5/24","gateway":"10.99.0.1"}}]}}"#
        ))
        .unwrap()
        .with_defaults();
        let plan = resolve(&spec, UUID, "zfbr0").unwrap().unwrap();
        let nic = &plan.nics[0];
        assert_eq!(nic.zone_if, "eth0");
        assert_eq!(nic.mtu, 1500);
        assert!(nic.primary && !nic.allow_ip_spoofing && !nic.allow_mac_spoofing);
        assert_eq!(nic.mac, derived_mac(UUID, 0));
    }
}
