//! A zone's network interfaces: each becomes a veth pair into the zone's own
//! network namespace.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::check;
use super::error::{Problems, ValueError};
use super::mac::MacAddr;
use super::text::Text;

/// The most NICs a zone may have.
pub const MAX_NICS: usize = 32;

/// One NIC of a zone: a fixed `ip` (with `gateway`), or a `network` whose pool the
/// controllers assign an address from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// Address with prefix length, e.g. `10.0.0.5/24` or `fd00::5/64`.
    #[serde(
        default,
        with = "super::text::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ip: Option<IpNet>,
    /// Name or uuid of a controller-managed network that assigns the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Default gateway, inside `ip`'s subnet (a network brings its own).
    #[serde(
        default,
        with = "super::text::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<IpAddr>,
    /// The zone side's MAC; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Bytes, 576..=9216; the network's or 1500 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// 802.1Q VLAN ID, 1..=4094; untagged when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u32>,
    /// Let the zone send from addresses other than its own (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_ip_spoofing: Option<bool>,
    /// Let the zone send from MACs other than its own (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_mac_spoofing: Option<bool>,
    /// The NIC that carries the default route; at most one per zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

/// A network reference: a uuid or a network name (a DNS label).
pub(crate) fn check_network_ref(s: &str) -> Result<(), ValueError> {
    if Uuid::parse_text(s).is_ok() || check::dns_label(s).is_ok() {
        Ok(())
    } else {
        Err(ValueError::string(
            s,
            "is not a network reference",
            "a network uuid or a network name (a DNS label)",
        ))
    }
}

impl Nic {
    /// Records this NIC's own problems under `at` (`nics[1]`).
    fn check(&self, at: &str, problems: &mut Problems) {
        match (&self.ip, &self.network) {
            (Some(_), Some(network)) => problems.push(
                format!("{at}.network"),
                ValueError::string(
                    network,
                    "is set together with ip",
                    "exactly one of ip and network",
                ),
            ),
            (None, None) => problems.push(
                format!("{at}.ip"),
                ValueError::new(
                    "null",
                    "is missing",
                    "exactly one of ip (address/prefix) and network",
                ),
            ),
            (None, Some(network)) => {
                problems.check(format_args!("{at}.network"), check_network_ref(network))
            }
            (Some(_), None) => {}
        }
        if let Some(gateway) = self.gateway {
            let outcome = match &self.ip {
                Some(ip) => check::in_subnet(gateway, ip),
                None => Err(ValueError::string(
                    &gateway.to_string(),
                    "is set without ip",
                    "a gateway only with ip (a network brings its own)",
                )),
            };
            problems.check(format_args!("{at}.gateway"), outcome);
        }
        if let Some(mac) = &self.mac {
            problems.check(format_args!("{at}.mac"), mac.check_unicast());
        }
        if let Some(mtu) = self.mtu {
            problems.check(format_args!("{at}.mtu"), check::mtu(mtu));
        }
        if let Some(vlan_id) = self.vlan_id {
            problems.check(format_args!("{at}.vlan_id"), check::vlan_id(vlan_id));
        }
    }
}

/// Records the problems of a zone's NICs: each NIC's own, then those between NICs
/// (duplicate addresses, several primaries) naming both NICs.
pub(crate) fn check_nics(nics: &[Nic], problems: &mut Problems) {
    if nics.len() > MAX_NICS {
        problems.push(
            "nics",
            ValueError::new(
                format!("{} NICs", nics.len()),
                "is too many",
                format!("at most {MAX_NICS}"),
            ),
        );
    }
    let mut primary: Option<usize> = None;
    for (i, nic) in nics.iter().enumerate() {
        let at = format!("nics[{i}]");
        nic.check(&at, problems);
        if let Some(ip) = nic.ip {
            // Two NICs with one address, whatever their prefixes, would answer ARP twice.
            if let Some(first) = nics[..i]
                .iter()
                .position(|n| n.ip.is_some_and(|o| o.addr() == ip.addr()))
            {
                problems.push(
                    format!("{at}.ip"),
                    ValueError::string(
                        &ip.to_string(),
                        format!("duplicates the address of nics[{first}].ip"),
                        "a different address on each NIC",
                    ),
                );
            }
        }
        if nic.primary == Some(true) {
            match primary {
                Some(first) => problems.push(
                    format!("{at}.primary"),
                    ValueError::new(
                        "true",
                        format!("is already set on nics[{first}]"),
                        "at most one primary NIC",
                    ),
                ),
                None => primary = Some(i),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nics(json: &str) -> Vec<Nic> {
        serde_json::from_str(json).unwrap()
    }

    fn problems(nics: &[Nic]) -> Vec<String> {
        let mut problems = Problems::default();
        check_nics(nics, &mut problems);
        problems
            .finish()
            .err()
            .map(|e| e.messages())
            .unwrap_or_default()
    }

    #[test]
    fn good_nics_pass() {
        let good = nics(
            r#"[{"ip":"10.0.0.5/24","gateway":"10.0.0.1","mac":"02:00:0a:00:00:05","mtu":9000,"vlan_id":12,"primary":true},
                {"ip":"fd00::5/64","gateway":"fd00::1"},
                {"network":"backend"},
                {"network":"2f1dc5a4-5b8c-4c5e-9a3b-0f4c3b2a1d0e","primary":false}]"#,
        );
        assert_eq!(problems(&good), Vec::<String>::new());
    }

    #[test]
    fn ip_and_network_exactly_one() {
        assert_eq!(
            problems(&nics(r#"[{"ip":"10.0.0.5/24","network":"a"},{"mtu":1500},{"network":"no_pe"}]"#)),
            [
                "nics[0].network: \"a\" is set together with ip; allowed exactly one of ip and network",
                "nics[1].ip: null is missing; allowed exactly one of ip (address/prefix) and network",
                "nics[2].network: \"no_pe\" is not a network reference; allowed a network uuid or a network name (a DNS label)",
            ]
        );
    }

    #[test]
    fn gateways() {
        assert_eq!(
            problems(&nics(
                r#"[{"ip":"10.0.0.5/24","gateway":"10.0.1.1"},{"ip":"10.0.1.5/24","gateway":"fd00::1"},{"network":"a","gateway":"10.0.0.1"}]"#
            )),
            [
                "nics[0].gateway: \"10.0.1.1\" is outside the subnet; allowed an address inside 10.0.0.0/24",
                "nics[1].gateway: \"fd00::1\" is not in the same address family; allowed an IPv4 address inside 10.0.1.0/24",
                "nics[2].gateway: \"10.0.0.1\" is set without ip; allowed a gateway only with ip (a network brings its own)",
            ]
        );
    }

    #[test]
    fn link_settings() {
        assert_eq!(
            problems(&nics(r#"[{"network":"a","mac":"01:00:5e:00:00:01","mtu":100,"vlan_id":4095},{"network":"a","mac":"00:00:00:00:00:00","vlan_id":0,"mtu":9217}]"#)),
            [
                "nics[0].mac: \"01:00:5e:00:00:01\" is not a unicast address; allowed a non-zero MAC whose first octet is even",
                "nics[0].mtu: 100 is out of range; allowed 576..=9216 (bytes)",
                "nics[0].vlan_id: 4095 is out of range; allowed 1..=4094 (802.1Q VLAN ID)",
                "nics[1].mac: \"00:00:00:00:00:00\" is not a unicast address; allowed a non-zero MAC whose first octet is even",
                "nics[1].mtu: 9217 is out of range; allowed 576..=9216 (bytes)",
                "nics[1].vlan_id: 0 is out of range; allowed 1..=4094 (802.1Q VLAN ID)",
            ]
        );
    }

    #[test]
    fn duplicates_and_primaries_name_both_nics() {
        assert_eq!(
            problems(&nics(
                r#"[{"ip":"10.0.0.5/24","primary":true},{"ip":"10.0.1.5/24","primary":true},{"ip":"10.0.0.5/16"}]"#
            )),
            [
                "nics[1].primary: true is already set on nics[0]; allowed at most one primary NIC",
                "nics[2].ip: \"10.0.0.5/16\" duplicates the address of nics[0].ip; allowed a different address on each NIC",
            ]
        );
    }

    #[test]
    fn at_most_32() {
        let many: Vec<Nic> = (0..33)
            .map(|_| Nic {
                network: Some("a".into()),
                ..Nic::default()
            })
            .collect();
        assert_eq!(
            problems(&many),
            ["nics: 33 NICs is too many; allowed at most 32"]
        );
        assert!(problems(&many[..32]).is_empty());
    }

    #[test]
    fn bad_ip_is_refused_when_read() {
        let err = serde_json::from_str::<Nic>(r#"{"ip":"10.0.0.300/24"}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("\"10.0.0.300/24\" is not an address/prefix"),
            "{err}"
        );
        assert!(serde_json::from_str::<Nic>(r#"{"ip":"10.0.0.3"}"#).is_err());
    }
}
