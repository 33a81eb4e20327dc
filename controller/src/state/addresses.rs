//! The addresses of zones' NICs: assigning them from the network pools and the
//! leases a zone holds.

use zonefleet_proto::pb;

use super::{FleetState, StateError};

impl FleetState {
    /// The lowest free address of each network NIC of each spec, all or none.
    pub(super) fn assign_addresses(
        &mut self,
        specs: &[pb::ZoneSpec],
    ) -> Result<Vec<Vec<String>>, StateError> {
        let mut taken: Vec<(String, String)> = Vec::new();
        let mut out = Vec::with_capacity(specs.len());
        let mut outcome = Ok(());
        'zones: for spec in specs {
            let mut addresses = Vec::new();
            for nic in &spec.nics {
                let Some(network) = nic.network.as_deref().filter(|n| !n.is_empty()) else {
                    continue;
                };
                let Some(net) = self.find_network(network) else {
                    outcome = Err(StateError::NotFound(format!(
                        "network {network:?} does not exist"
                    )));
                    break 'zones;
                };
                match self.derived.pools.lowest_free(net) {
                    Ok(address) => {
                        let uuid = net.uuid.clone();
                        self.derived.pools.take(&uuid, &address);
                        taken.push((uuid, address.clone()));
                        addresses.push(address);
                    }
                    Err(why) => {
                        outcome = Err(StateError::FailedPrecondition(why));
                        break 'zones;
                    }
                }
            }
            out.push(addresses);
        }
        // The pools follow the leases, which the caller records; give back what this
        // took either way.
        for (network, address) in &taken {
            self.derived.pools.release(network, address);
        }
        outcome.map(|()| out)
    }

    /// The (network uuid, address) leases of a zone, in NIC order.
    pub(super) fn zone_leases(&self, zone: &pb::Zone) -> Vec<(String, String)> {
        let nics = zone.spec.as_ref().map(|s| s.nics.as_slice()).unwrap_or(&[]);
        let mut addresses = zone.addresses.iter();
        let mut out = Vec::new();
        for nic in nics {
            if let Some(network) = nic.network.as_deref().filter(|n| !n.is_empty()) {
                if let (Some(net), Some(addr)) = (self.find_network(network), addresses.next()) {
                    out.push((net.uuid.clone(), addr.clone()));
                }
            }
        }
        out
    }

    /// `zone` as its host's agent gets it: each NIC that names a network is spelled out
    /// with the address the network gave it and the network's prefix length
    /// (`10.0.0.10/24`), gateway, MTU and VLAN (where the NIC sets none of its own), so
    /// an agent needs no copy of the networks. `zone.addresses` stays as stored.
    pub fn for_agent(&self, zone: &pb::Zone) -> pb::Zone {
        let mut zone = zone.clone();
        let mut addresses = zone.addresses.iter();
        let Some(spec) = zone.spec.as_mut() else {
            return zone;
        };
        for nic in &mut spec.nics {
            let Some(network) = nic.network.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let (Some(net), Some(address)) = (self.find_network(network), addresses.next()) else {
                // Not assigned (yet): the agent reports the NIC it cannot make.
                continue;
            };
            let prefix = net.subnet.rsplit_once('/').map_or("", |(_, p)| p);
            nic.ip = Some(format!("{address}/{prefix}"));
            nic.gateway = nic.gateway.take().or_else(|| net.gateway.clone());
            nic.mtu = nic.mtu.or(net.mtu);
            nic.vlan_id = nic.vlan_id.or(net.vlan_id);
            nic.network = None;
        }
        zone
    }

    /// Records the leases of `zone` (its addresses, in NIC order).
    pub(super) fn take_leases(&mut self, zone: &pb::Zone) {
        let uuid = super::zone_uuid(zone).to_owned();
        for (network, address) in self.zone_leases(zone) {
            self.derived.pools.take(&network, &address);
            self.leases.insert((network, address), uuid.clone());
        }
    }

    /// Gives back the leases `zone` holds.
    pub(super) fn release_leases(&mut self, zone: &pb::Zone) {
        let uuid = super::zone_uuid(zone);
        for key in self.zone_leases(zone) {
            if self.leases.get(&key).is_some_and(|holder| holder == uuid) {
                self.derived.pools.release(&key.0, &key.1);
                self.leases.remove(&key);
            }
        }
    }

    /// The addresses of `zone` once its NICs are those of `spec`: the ones it has if
    /// its network NICs name the same networks in the same order, else new ones
    /// (its own given back first, so they can be had again). On a refusal nothing
    /// changes; when the addresses change, the caller records the new leases.
    pub(super) fn readdress(
        &mut self,
        zone: &pb::Zone,
        spec: &pb::ZoneSpec,
    ) -> Result<Option<Vec<String>>, StateError> {
        fn networks(spec: Option<&pb::ZoneSpec>) -> Vec<&str> {
            spec.iter()
                .flat_map(|s| &s.nics)
                .filter_map(|n| n.network.as_deref().filter(|n| !n.is_empty()))
                .collect()
        }
        if networks(zone.spec.as_ref()) == networks(Some(spec)) {
            return Ok(None);
        }
        self.release_leases(zone);
        match self.assign_addresses(std::slice::from_ref(spec)) {
            Ok(mut addresses) => Ok(Some(addresses.remove(0))),
            Err(why) => {
                self.take_leases(zone);
                Err(why)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn addresses_come_from_the_network_pool_and_run_out() {
        let mut s = FleetState::default();
        s.apply(&cmd(Kind::PutNetwork(pb::PutNetworkCommand {
            network: Some(pb::Network {
                uuid: id("n1"),
                name: "lan".into(),
                subnet: "10.0.0.0/24".into(),
                provision_start: "10.0.0.10".into(),
                provision_end: "10.0.0.11".into(),
                gateway: Some("10.0.0.1".into()),
                mtu: Some(9000),
                ..Default::default()
            }),
        })));
        let mut c = create(&["z1", "z2"], 256, "");
        if let Kind::CreateZones(c) = &mut c {
            c.spec.as_mut().unwrap().nics = vec![pb::Nic {
                network: Some("lan".into()),
                ..Default::default()
            }];
        }
        let zones = zones_of(s.apply(&cmd(c.clone())));
        assert_eq!(zones[0].addresses, ["10.0.0.10"]);
        assert_eq!(zones[1].addresses, ["10.0.0.11"]);
        // The agent gets the NIC spelled out: address with the subnet's prefix, the
        // network's gateway and MTU; the stored zone keeps naming the network.
        let sent = s.for_agent(&zones[0]);
        let nic = &sent.spec.as_ref().unwrap().nics[0];
        assert_eq!(nic.ip.as_deref(), Some("10.0.0.10/24"));
        assert_eq!(nic.gateway.as_deref(), Some("10.0.0.1"));
        assert_eq!(nic.mtu, Some(9000));
        assert_eq!(nic.network, None);
        assert_eq!(
            zones[0].spec.as_ref().unwrap().nics[0].network.as_deref(),
            Some("lan")
        );
        if let Kind::CreateZones(c) = &mut c {
            c.uuids = vec![id("z3")];
        }
        let err = error_of(s.apply(&cmd(c)));
        assert_eq!(err.code, tonic::Code::FailedPrecondition as i32);
        assert!(!s.zones.contains_key(&id("z3")));
        let err = error_of(s.apply(&cmd(Kind::DeleteNetwork(pb::DeleteNetworkCommand {
            uuid: id("n1"),
        }))));
        assert!(
            err.message.contains("2 addresses in use"),
            "{}",
            err.message
        );
    }
}
