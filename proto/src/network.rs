//! Zone networks whose addresses the controllers hand out.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::pb;
use crate::spec::check;
use crate::spec::convert::list;
use crate::spec::text::{self, Text};
use crate::spec::{Problems, SpecError, ValidationErrors, ValueError};

/// A network: a subnet, its gateway, and the range the controllers assign zone
/// addresses from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The network's identity.
    #[serde(with = "text::one")]
    pub uuid: Uuid,
    /// The network's name (a DNS label); NICs name it or its uuid.
    pub name: String,
    /// The subnet in CIDR form, host bits clear, e.g. `10.0.0.0/24`.
    #[serde(with = "text::one")]
    pub subnet: IpNet,
    /// The default gateway, inside the subnet and outside the provision range.
    #[serde(default, with = "text::opt", skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The first address handed to zones.
    #[serde(with = "text::one")]
    pub provision_start: IpAddr,
    /// The last address handed to zones.
    #[serde(with = "text::one")]
    pub provision_end: IpAddr,
    /// DNS resolvers for zones on this network, at most 3.
    #[serde(default, with = "text::list", skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<IpAddr>,
    /// 802.1Q VLAN ID, 1..=4094; untagged when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u32>,
    /// Bytes, 576..=9216; 1500 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl Network {
    /// Reads a network from JSON, naming the path of a malformed or unknown field.
    pub fn from_json(json: &str) -> Result<Self, SpecError> {
        text::from_json(json)
    }

    /// Writes the network as indented JSON.
    pub fn to_json_pretty(&self) -> String {
        text::to_json_pretty(self)
    }

    /// Whether `addr` is one the controllers may hand out on this network.
    pub fn in_provision_range(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.provision_start.is_ipv4()
            && self.provision_start <= addr
            && addr <= self.provision_end
    }

    /// Checks every rule and returns every problem, as [`crate::spec::ZoneSpec::validate`] does.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut p = Problems::default();
        if self.uuid.is_nil() {
            p.push(
                "uuid",
                ValueError::string(&self.uuid.to_text(), "is the nil UUID", "any other UUID"),
            );
        }
        p.check("name", check::dns_label(&self.name));
        let net = self.subnet.trunc();
        if net != self.subnet {
            p.push(
                "subnet",
                ValueError::string(
                    &self.subnet.to_string(),
                    "has host bits set",
                    format!("a network address such as {net}"),
                ),
            );
        }
        p.check(
            "provision_start",
            check::in_subnet(self.provision_start, &net),
        );
        p.check("provision_end", check::in_subnet(self.provision_end, &net));
        let same_family = self.provision_start.is_ipv4() == self.provision_end.is_ipv4();
        if same_family && self.provision_end < self.provision_start {
            p.push(
                "provision_end",
                ValueError::string(
                    &self.provision_end.to_string(),
                    format!("is before provision_start ({})", self.provision_start),
                    format!(
                        "an address from {} to the end of {net}",
                        self.provision_start
                    ),
                ),
            );
        }
        if let Some(gateway) = self.gateway {
            let outcome = check::in_subnet(gateway, &net).and_then(|()| {
                if self.in_provision_range(gateway) {
                    // The pool would hand the gateway's address to a zone.
                    Err(ValueError::string(
                        &gateway.to_string(),
                        "is inside the provision range",
                        format!(
                            "an address of {net} outside {}..={}",
                            self.provision_start, self.provision_end
                        ),
                    ))
                } else {
                    Ok(())
                }
            });
            p.check("gateway", outcome);
        }
        p.check("resolvers", check::resolver_count(self.resolvers.len()));
        if let Some(vlan_id) = self.vlan_id {
            p.check("vlan_id", check::vlan_id(vlan_id));
        }
        if let Some(mtu) = self.mtu {
            p.check("mtu", check::mtu(mtu));
        }
        p.finish()
    }
}

impl From<Network> for pb::Network {
    fn from(n: Network) -> Self {
        pb::Network {
            uuid: n.uuid.to_text(),
            name: n.name,
            subnet: n.subnet.to_text(),
            gateway: n.gateway.map(|g| g.to_text()),
            provision_start: n.provision_start.to_text(),
            provision_end: n.provision_end.to_text(),
            resolvers: n.resolvers.iter().map(Text::to_text).collect(),
            vlan_id: n.vlan_id,
            mtu: n.mtu,
        }
    }
}

impl TryFrom<pb::Network> for Network {
    type Error = SpecError;

    fn try_from(m: pb::Network) -> Result<Self, SpecError> {
        let mut p = Problems::default();
        let uuid = p.take("uuid", Uuid::parse_text(&m.uuid));
        let subnet = p.take("subnet", IpNet::parse_text(&m.subnet));
        let gateway = m
            .gateway
            .and_then(|g| p.take("gateway", IpAddr::parse_text(&g)));
        let start = p.take("provision_start", IpAddr::parse_text(&m.provision_start));
        let end = p.take("provision_end", IpAddr::parse_text(&m.provision_end));
        let resolvers = list::<IpAddr>(&mut p, "resolvers", m.resolvers);
        p.finish()?;
        let (Some(uuid), Some(subnet), Some(provision_start), Some(provision_end)) =
            (uuid, subnet, start, end)
        else {
            unreachable!("no problem means every field parsed");
        };
        Ok(Network {
            uuid,
            name: m.name,
            subnet,
            gateway,
            provision_start,
            provision_end,
            resolvers,
            vlan_id: m.vlan_id,
            mtu: m.mtu,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
  "uuid": "8a4f1c2e-6b7d-4e9f-a0b1-c2d3e4f5a6b7",
  "name": "backend",
  "subnet": "10.20.0.0/24",
  "gateway": "10.20.0.1",
  "provision_start": "10.20.0.10",
  "provision_end": "10.20.0.250",
  "resolvers": [
    "10.20.0.2",
    "10.20.0.3"
  ],
  "vlan_id": 20,
  "mtu": 9000
}"#;

    fn network() -> Network {
        Network::from_json(JSON).unwrap()
    }

    fn problems(n: &Network) -> Vec<String> {
        n.validate().err().map(|e| e.messages()).unwrap_or_default()
    }

    #[test]
    fn reads_validates_and_writes_back() {
        let n = network();
        assert_eq!(problems(&n), Vec::<String>::new());
        assert_eq!(n.to_json_pretty(), JSON);
        assert_eq!(Network::try_from(pb::Network::from(n.clone())).unwrap(), n);
        assert!(n.in_provision_range("10.20.0.10".parse().unwrap()));
        assert!(!n.in_provision_range("10.20.0.251".parse().unwrap()));
    }

    #[test]
    fn reports_every_problem() {
        let mut n = network();
        n.uuid = Uuid::nil();
        n.name = "back_end".into();
        n.subnet = "10.20.0.5/24".parse().unwrap();
        n.gateway = Some("10.20.0.20".parse().unwrap());
        n.provision_start = "10.20.1.10".parse().unwrap();
        n.provision_end = "10.20.0.9".parse().unwrap();
        n.resolvers = vec!["10.0.0.1".parse().unwrap(); 4];
        n.vlan_id = Some(5000);
        n.mtu = Some(100);
        assert_eq!(
            problems(&n),
            [
                "uuid: \"00000000-0000-0000-0000-000000000000\" is the nil UUID; allowed any other UUID",
                "name: \"back_end\" is not a DNS label; allowed 1 to 63 letters, digits and '-', not starting or ending with '-'",
                "subnet: \"10.20.0.5/24\" has host bits set; allowed a network address such as 10.20.0.0/24",
                "provision_start: \"10.20.1.10\" is outside the subnet; allowed an address inside 10.20.0.0/24",
                "provision_end: \"10.20.0.9\" is before provision_start (10.20.1.10); allowed an address from 10.20.1.10 to the end of 10.20.0.0/24",
                "resolvers: 4 resolvers is too many; allowed at most 3 (resolv.conf's MAXNS)",
                "vlan_id: 5000 is out of range; allowed 1..=4094 (802.1Q VLAN ID)",
                "mtu: 100 is out of range; allowed 576..=9216 (bytes)",
            ]
        );
    }

    #[test]
    fn gateway_outside_the_pool_and_inside_the_subnet() {
        let mut n = network();
        n.gateway = Some("10.20.0.100".parse().unwrap());
        assert_eq!(
            problems(&n),
            ["gateway: \"10.20.0.100\" is inside the provision range; allowed an address of 10.20.0.0/24 outside 10.20.0.10..=10.20.0.250"]
        );
        n.gateway = Some("fd00::1".parse().unwrap());
        assert_eq!(
            problems(&n),
            ["gateway: \"fd00::1\" is not in the same address family; allowed an IPv4 address inside 10.20.0.0/24"]
        );
    }

    #[test]
    fn ipv6_networks() {
        let n = Network::from_json(
            r#"{"uuid":"8a4f1c2e-6b7d-4e9f-a0b1-c2d3e4f5a6b7","name":"v6","subnet":"fd00:20::/64",
                "gateway":"fd00:20::1","provision_start":"fd00:20::100","provision_end":"fd00:20::ffff"}"#,
        )
        .unwrap();
        assert_eq!(problems(&n), Vec::<String>::new());
    }

    #[test]
    fn read_errors_name_fields() {
        let err = Network::from_json(&JSON.replace("10.20.0.0/24", "10.20.0.0/33")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "subnet: \"10.20.0.0/33\" is not an address/prefix; allowed an IPv4 or IPv6 address with a prefix length, e.g. \"10.0.0.5/24\" or \"fd00::5/64\""
        );
        let bad = pb::Network {
            uuid: "8a4f1c2e-6b7d-4e9f-a0b1-c2d3e4f5a6b7".into(),
            subnet: "x".into(),
            resolvers: vec!["1.1.1.1".into(), "y".into()],
            ..pb::Network::default()
        };
        assert_eq!(
            Network::try_from(bad)
                .unwrap_err()
                .validation()
                .unwrap()
                .errors()
                .iter()
                .map(|e| e.field.as_str())
                .collect::<Vec<_>>(),
            ["subnet", "provision_start", "provision_end", "resolvers[1]"]
        );
    }
}
