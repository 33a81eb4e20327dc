//! Applying one command to the fleet state. Each handler checks everything first and
//! changes the state only when the whole command succeeds: a refused command leaves
//! nothing half-done behind.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;
use zonefleet_proto::pb::fleet_command::Kind;

use super::placement::{MostFreeMemory, Placer};
use super::{ok, zone_memory_mib, FleetState, StateError, IDEMPOTENCY_TTL_MS};

/// Message of a zone created without a host.
pub const PENDING_PREFIX: &str = "pending: ";

impl FleetState {
    /// Applies `command` with the interim placer ([`MostFreeMemory`]).
    pub fn apply(&mut self, command: &pb::FleetCommand) -> pb::CommandResult {
        self.apply_with(command, &MostFreeMemory)
    }

    /// Applies `command`, placing new zones with `placer`.
    pub fn apply_with(
        &mut self,
        command: &pb::FleetCommand,
        placer: &dyn Placer,
    ) -> pb::CommandResult {
        let at = command.at_unix_ms;
        let outcome = match &command.kind {
            Some(Kind::CreateZones(c)) => self.create_zones(c, at, placer),
            Some(Kind::UpdateZone(c)) => self.update_zone(c),
            Some(Kind::SetZoneState(c)) => self.set_zone_state(c),
            Some(Kind::DeleteZone(c)) => self.delete_zone(&c.uuid),
            Some(Kind::RegisterHost(c)) => self.register_host(c),
            Some(Kind::SetHostStatus(c)) => self.set_host_status(c),
            Some(Kind::PutNetwork(c)) => self.put_network(c),
            Some(Kind::DeleteNetwork(c)) => self.delete_network(&c.uuid),
            Some(Kind::PutImage(c)) => self.put_image(c),
            Some(Kind::CreateJoinToken(c)) => self.create_join_token(c, at),
            Some(Kind::Noop(_)) => Ok(ok(R::Done(true))),
            Some(Kind::Batch(batch)) => Ok(ok(R::Batch(pb::BatchResult {
                results: batch
                    .commands
                    .iter()
                    .map(|c| match c.kind {
                        Some(Kind::Batch(_)) => {
                            StateError::InvalidArgument("a batch inside a batch".to_owned())
                                .to_result()
                        }
                        _ => self.apply_with(c, placer),
                    })
                    .collect(),
            }))),
            // A command kind from a newer controller version: refuse it the same way
            // everywhere rather than diverge.
            None => Err(StateError::InvalidArgument(
                "unknown or empty command".to_owned(),
            )),
        };
        outcome.unwrap_or_else(|e| e.to_result())
    }

    fn create_zones(
        &mut self,
        c: &pb::CreateZonesCommand,
        at: i64,
        placer: &dyn Placer,
    ) -> Result<pb::CommandResult, StateError> {
        if !c.idempotency_key.is_empty() {
            if let Some(record) = self.idempotency.get(&c.idempotency_key) {
                return Ok(ok(R::Zones(record.response.clone().unwrap_or_default())));
            }
        }
        let spec = c
            .spec
            .as_ref()
            .ok_or_else(|| StateError::InvalidArgument("spec is missing".to_owned()))?;
        if c.uuids.is_empty() {
            return Err(StateError::InvalidArgument("no zone uuid".to_owned()));
        }
        let mut seen = BTreeSet::new();
        for uuid in &c.uuids {
            if self.zones.contains_key(uuid) || !seen.insert(uuid) {
                return Err(StateError::AlreadyExists(format!(
                    "zone {uuid} already exists"
                )));
            }
        }
        if let Some(alias) = &spec.alias {
            if c.uuids.len() == 1 && self.live_zone_with_alias(alias).is_some() {
                return Err(StateError::AlreadyExists(format!(
                    "a zone with alias {alias:?} already exists"
                )));
            }
        }
        // Decide everything first, then change the state.
        let mut pending: BTreeMap<String, u64> = BTreeMap::new();
        let mut taken: BTreeSet<(String, String)> = BTreeSet::new();
        let mut zones = Vec::with_capacity(c.uuids.len());
        let mut explanation = String::new();
        for (i, uuid) in c.uuids.iter().enumerate() {
            let mut zone_spec = spec.clone();
            zone_spec.uuid = Some(uuid.clone());
            if c.uuids.len() > 1 {
                if let Some(alias) = &spec.alias {
                    zone_spec.alias = Some(format!("{alias}-{i}"));
                }
            }
            let mut addresses = Vec::new();
            for nic in &zone_spec.nics {
                let Some(network) = nic.network.as_deref().filter(|n| !n.is_empty()) else {
                    continue;
                };
                let net = self.find_network(network).ok_or_else(|| {
                    StateError::NotFound(format!("network {network:?} does not exist"))
                })?;
                let address = self.free_address(net, &taken)?;
                taken.insert((net.uuid.clone(), address.clone()));
                addresses.push(address);
            }
            let (host_id, message) = match placer.place(&self.hosts, &zone_spec, &pending) {
                Ok(host) => {
                    *pending.entry(host.clone()).or_default() += zone_memory_mib(&zone_spec);
                    (host, String::new())
                }
                Err(why) => {
                    explanation = why.clone();
                    (String::new(), format!("{PENDING_PREFIX}{why}"))
                }
            };
            zones.push(pb::Zone {
                spec: Some(zone_spec),
                generation: 1,
                host_id,
                desired_state: pb::ZoneState::Running as i32,
                observed_state: pb::ZoneState::Unspecified as i32,
                addresses,
                message,
                init_exit_status: None,
            });
        }
        for zone in &zones {
            let uuid = super::zone_uuid(zone).to_owned();
            self.hold(zone, 1);
            let nets = zone
                .spec
                .as_ref()
                .map(|s| s.nics.clone())
                .unwrap_or_default();
            let mut addresses = zone.addresses.iter();
            for nic in nets {
                if let Some(network) = nic.network.as_deref().filter(|n| !n.is_empty()) {
                    if let (Some(net), Some(addr)) = (self.find_network(network), addresses.next())
                    {
                        let key = (net.uuid.clone(), addr.clone());
                        self.leases.insert(key, uuid.clone());
                    }
                }
            }
            self.zones.insert(uuid, zone.clone());
        }
        let response = pb::CreateZonesResponse {
            zones,
            top_scores: Vec::new(),
            explanation,
        };
        if !c.idempotency_key.is_empty() {
            self.idempotency.insert(
                c.idempotency_key.clone(),
                pb::IdempotencyRecord {
                    key: c.idempotency_key.clone(),
                    response: Some(response.clone()),
                    at_unix_ms: at,
                },
            );
            self.idempotency
                .retain(|_, r| r.at_unix_ms > at.saturating_sub(IDEMPOTENCY_TTL_MS));
        }
        Ok(ok(R::Zones(response)))
    }

    fn live_zone_with_alias(&self, alias: &str) -> Option<&pb::Zone> {
        self.zones.values().find(|z| {
            z.desired_state != pb::ZoneState::Deleted as i32
                && z.spec.as_ref().and_then(|s| s.alias.as_deref()) == Some(alias)
        })
    }

    /// Adds (`sign` 1) or removes (`sign` -1) a zone's memory and count on its host.
    fn hold(&mut self, zone: &pb::Zone, sign: i64) {
        let memory = zone.spec.as_ref().map(zone_memory_mib).unwrap_or(0);
        if let Some(host) = self.hosts.get_mut(&zone.host_id) {
            let capacity = host.capacity.get_or_insert_with(Default::default);
            if sign > 0 {
                capacity.allocated_memory_mib += memory;
                host.zone_count += 1;
            } else {
                capacity.allocated_memory_mib =
                    capacity.allocated_memory_mib.saturating_sub(memory);
                host.zone_count = host.zone_count.saturating_sub(1);
            }
        }
    }

    fn free_address(
        &self,
        net: &pb::Network,
        taken: &BTreeSet<(String, String)>,
    ) -> Result<String, StateError> {
        let bad = || {
            StateError::FailedPrecondition(format!(
                "network {} has a malformed provision range",
                net.name
            ))
        };
        let start: IpAddr = net.provision_start.parse().map_err(|_| bad())?;
        let end: IpAddr = net.provision_end.parse().map_err(|_| bad())?;
        let (start, end, v4) = match (start, end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => {
                (u128::from(u32::from(s)), u128::from(u32::from(e)), true)
            }
            (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e), false),
            _ => return Err(bad()),
        };
        let mut n = start;
        while n <= end {
            let addr = if v4 {
                IpAddr::V4(std::net::Ipv4Addr::from(n as u32)).to_string()
            } else {
                IpAddr::V6(std::net::Ipv6Addr::from(n)).to_string()
            };
            let key = (net.uuid.clone(), addr);
            if !self.leases.contains_key(&key) && !taken.contains(&key) {
                return Ok(key.1);
            }
            n += 1;
        }
        Err(StateError::FailedPrecondition(format!(
            "network {} has no free address left in {}..{}",
            net.name, net.provision_start, net.provision_end
        )))
    }

    fn live_zone_mut(&mut self, uuid: &str) -> Result<&mut pb::Zone, StateError> {
        match self.zones.get_mut(uuid) {
            Some(z) if z.desired_state != pb::ZoneState::Deleted as i32 => Ok(z),
            Some(_) => Err(StateError::FailedPrecondition(format!(
                "zone {uuid} is being deleted"
            ))),
            None => Err(StateError::NotFound(format!("zone {uuid} does not exist"))),
        }
    }

    fn update_zone(&mut self, c: &pb::UpdateZoneCommand) -> Result<pb::CommandResult, StateError> {
        let spec = c
            .spec
            .clone()
            .ok_or_else(|| StateError::InvalidArgument("spec is missing".to_owned()))?;
        let zone = self.live_zone_mut(&c.uuid)?.clone();
        if zone.generation != c.expected_generation {
            return Err(StateError::Conflict(format!(
                "zone {} changed (generation {} is now {}); read it again and retry",
                c.uuid, c.expected_generation, zone.generation
            )));
        }
        let old_spec = zone.spec.clone().unwrap_or_default();
        if spec.nics != old_spec.nics {
            return Err(StateError::InvalidArgument(
                "nics: cannot be changed on an existing zone yet".to_owned(),
            ));
        }
        let old_memory = zone_memory_mib(&old_spec);
        let new_memory = zone_memory_mib(&spec);
        if new_memory > old_memory {
            if let Some(host) = self.hosts.get(&zone.host_id) {
                let free = super::placement::free_memory_mib(host, &BTreeMap::new());
                if new_memory - old_memory > free {
                    return Err(StateError::FailedPrecondition(format!(
                        "host {} has only {free} MiB free, the zone needs {} MiB more",
                        zone.host_id,
                        new_memory - old_memory
                    )));
                }
            }
        }
        self.hold(&zone, -1);
        let mut zone = zone;
        zone.spec = Some(spec);
        zone.generation += 1;
        self.hold(&zone, 1);
        self.zones.insert(c.uuid.clone(), zone.clone());
        Ok(ok(R::Zone(zone)))
    }

    fn set_zone_state(
        &mut self,
        c: &pb::SetZoneStateCommand,
    ) -> Result<pb::CommandResult, StateError> {
        let desired = pb::ZoneState::try_from(c.desired_state)
            .ok()
            .filter(|s| matches!(s, pb::ZoneState::Running | pb::ZoneState::Installed))
            .ok_or_else(|| {
                StateError::InvalidArgument(format!(
                    "desired_state: {} is not running or installed",
                    c.desired_state
                ))
            })?;
        let zone = self.live_zone_mut(&c.uuid)?;
        if c.reboot && zone.desired_state != pb::ZoneState::Running as i32 {
            return Err(StateError::FailedPrecondition(format!(
                "zone {} is stopped; start it instead of rebooting",
                c.uuid
            )));
        }
        if zone.desired_state != desired as i32 || c.reboot {
            zone.desired_state = desired as i32;
            zone.generation += 1;
        }
        Ok(ok(R::Zone(zone.clone())))
    }

    fn delete_zone(&mut self, uuid: &str) -> Result<pb::CommandResult, StateError> {
        let mut zone = self.live_zone_mut(uuid)?.clone();
        self.hold(&zone, -1);
        self.leases.retain(|_, holder| holder != uuid);
        zone.desired_state = pb::ZoneState::Deleted as i32;
        zone.generation += 1;
        if zone.host_id.is_empty() {
            // Never placed: nothing to tear down anywhere.
            self.zones.remove(uuid);
        } else {
            self.zones.insert(uuid.to_owned(), zone.clone());
        }
        Ok(ok(R::Zone(zone)))
    }

    fn register_host(
        &mut self,
        c: &pb::RegisterHostCommand,
    ) -> Result<pb::CommandResult, StateError> {
        let mut host = c
            .host
            .clone()
            .ok_or_else(|| StateError::InvalidArgument("host is missing".to_owned()))?;
        if host.host_id.is_empty() {
            return Err(StateError::InvalidArgument("host_id is empty".to_owned()));
        }
        if host.status == pb::HostStatus::Unspecified as i32 {
            host.status = pb::HostStatus::Ready as i32;
        }
        let capacity = host.capacity.get_or_insert_with(Default::default);
        // What zones hold is the controllers' to count, not the reporter's.
        let held: Vec<&pb::Zone> = self
            .zones
            .values()
            .filter(|z| {
                z.host_id == host.host_id && z.desired_state != pb::ZoneState::Deleted as i32
            })
            .collect();
        capacity.allocated_memory_mib = held
            .iter()
            .map(|z| z.spec.as_ref().map(zone_memory_mib).unwrap_or(0))
            .sum();
        host.zone_count = u32::try_from(held.len()).unwrap_or(u32::MAX);
        self.hosts.insert(host.host_id.clone(), host.clone());
        Ok(ok(R::Host(host)))
    }

    fn set_host_status(
        &mut self,
        c: &pb::SetHostStatusCommand,
    ) -> Result<pb::CommandResult, StateError> {
        let host = self
            .hosts
            .get_mut(&c.host_id)
            .ok_or_else(|| StateError::NotFound(format!("host {} does not exist", c.host_id)))?;
        if pb::HostStatus::try_from(c.status).is_err() || c.status == 0 {
            return Err(StateError::InvalidArgument(format!(
                "status: {} is not a host status",
                c.status
            )));
        }
        host.status = c.status;
        Ok(ok(R::Host(host.clone())))
    }

    fn put_network(&mut self, c: &pb::PutNetworkCommand) -> Result<pb::CommandResult, StateError> {
        let network = c
            .network
            .clone()
            .ok_or_else(|| StateError::InvalidArgument("network is missing".to_owned()))?;
        if self.networks.contains_key(&network.uuid) {
            return Err(StateError::AlreadyExists(format!(
                "network {} already exists",
                network.uuid
            )));
        }
        if self.networks.values().any(|n| n.name == network.name) {
            return Err(StateError::AlreadyExists(format!(
                "a network named {:?} already exists",
                network.name
            )));
        }
        self.networks.insert(network.uuid.clone(), network.clone());
        Ok(ok(R::Network(network)))
    }

    fn delete_network(&mut self, uuid: &str) -> Result<pb::CommandResult, StateError> {
        let in_use = self.leases.keys().filter(|(n, _)| n == uuid).count();
        if in_use > 0 {
            return Err(StateError::FailedPrecondition(format!(
                "network {uuid} has {in_use} addresses in use by zones"
            )));
        }
        let network = self
            .networks
            .remove(uuid)
            .ok_or_else(|| StateError::NotFound(format!("network {uuid} does not exist")))?;
        Ok(ok(R::Network(network)))
    }

    fn put_image(&mut self, c: &pb::PutImageCommand) -> Result<pb::CommandResult, StateError> {
        let image = c
            .image
            .clone()
            .ok_or_else(|| StateError::InvalidArgument("image is missing".to_owned()))?;
        self.images.insert(image.uuid.clone(), image.clone());
        Ok(ok(R::Image(image)))
    }

    fn create_join_token(
        &mut self,
        c: &pb::CreateJoinTokenCommand,
        at: i64,
    ) -> Result<pb::CommandResult, StateError> {
        let token = c
            .token
            .clone()
            .ok_or_else(|| StateError::InvalidArgument("token is missing".to_owned()))?;
        if token.sha256.len() != 64 {
            return Err(StateError::InvalidArgument(
                "token: sha256 must be 64 hex digits".to_owned(),
            ));
        }
        let now_s = at / 1000;
        self.join_tokens.retain(|_, t| t.expires_unix > now_s);
        self.join_tokens.insert(token.sha256.clone(), token);
        Ok(ok(R::Done(true)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(kind: Kind) -> pb::FleetCommand {
        pb::FleetCommand {
            at_unix_ms: 1_000,
            kind: Some(kind),
        }
    }

    fn host(id: &str, memory: u64) -> Kind {
        Kind::RegisterHost(pb::RegisterHostCommand {
            host: Some(pb::Host {
                host_id: id.to_owned(),
                capacity: Some(pb::Capacity {
                    memory_mib: memory,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
    }

    fn create(uuids: &[&str], memory: u64, key: &str) -> Kind {
        Kind::CreateZones(pb::CreateZonesCommand {
            spec: Some(pb::ZoneSpec {
                image: "base@1".to_owned(),
                max_physical_memory_mib: Some(memory),
                ..Default::default()
            }),
            uuids: uuids.iter().map(|s| s.to_string()).collect(),
            idempotency_key: key.to_owned(),
        })
    }

    fn zones_of(result: pb::CommandResult) -> Vec<pb::Zone> {
        match result.result {
            Some(R::Zones(z)) => z.zones,
            other => panic!("not zones: {other:?}"),
        }
    }

    fn error_of(result: pb::CommandResult) -> pb::CommandError {
        match result.result {
            Some(R::Error(e)) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn zones_are_placed_and_capacity_is_held() {
        let mut s = FleetState::default();
        s.apply(&cmd(host("h1", 1024)));
        s.apply(&cmd(host("h2", 2048)));
        let zones = zones_of(s.apply(&cmd(create(&["z1", "z2"], 1024, ""))));
        assert_eq!(zones[0].host_id, "h2");
        assert_eq!(zones[1].host_id, "h1");
        assert_eq!(
            s.hosts["h2"]
                .capacity
                .as_ref()
                .unwrap()
                .allocated_memory_mib,
            1024
        );
        // Full: the next zone is pending with an explanation.
        let zones = zones_of(s.apply(&cmd(create(&["z3"], 1024, ""))));
        assert_eq!(zones[0].host_id, "h2");
        let zones = zones_of(s.apply(&cmd(create(&["z4"], 1024, ""))));
        assert_eq!(zones[0].host_id, "");
        assert!(
            zones[0].message.starts_with(PENDING_PREFIX),
            "{}",
            zones[0].message
        );
        // Deleting gives the memory back.
        s.apply(&cmd(Kind::DeleteZone(pb::DeleteZoneCommand {
            uuid: "z3".into(),
        })));
        assert_eq!(
            s.hosts["h2"]
                .capacity
                .as_ref()
                .unwrap()
                .allocated_memory_mib,
            1024
        );
        assert_eq!(s.hosts["h2"].zone_count, 1);
    }

    #[test]
    fn a_retried_create_returns_the_first_result() {
        let mut s = FleetState::default();
        let first = s.apply(&cmd(create(&["z1"], 256, "k1")));
        let again = s.apply(&cmd(create(&["z-other"], 256, "k1")));
        assert_eq!(first, again);
        assert_eq!(s.zones.len(), 1);
        // Without a key, the same uuid twice is refused and changes nothing.
        let err = error_of(s.apply(&cmd(create(&["z1"], 256, ""))));
        assert_eq!(err.code, tonic::Code::AlreadyExists as i32);
        assert_eq!(s.zones.len(), 1);
    }

    #[test]
    fn addresses_come_from_the_network_pool_and_run_out() {
        let mut s = FleetState::default();
        s.apply(&cmd(Kind::PutNetwork(pb::PutNetworkCommand {
            network: Some(pb::Network {
                uuid: "n1".into(),
                name: "lan".into(),
                subnet: "10.0.0.0/24".into(),
                provision_start: "10.0.0.10".into(),
                provision_end: "10.0.0.11".into(),
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
        if let Kind::CreateZones(c) = &mut c {
            c.uuids = vec!["z3".into()];
        }
        let err = error_of(s.apply(&cmd(c)));
        assert_eq!(err.code, tonic::Code::FailedPrecondition as i32);
        assert!(!s.zones.contains_key("z3"));
        let err = error_of(s.apply(&cmd(Kind::DeleteNetwork(pb::DeleteNetworkCommand {
            uuid: "n1".into(),
        }))));
        assert!(
            err.message.contains("2 addresses in use"),
            "{}",
            err.message
        );
    }

    #[test]
    fn stop_start_reboot_move_the_generation() {
        let mut s = FleetState::default();
        s.apply(&cmd(create(&["z1"], 256, "")));
        let set = |state: pb::ZoneState, reboot| {
            cmd(Kind::SetZoneState(pb::SetZoneStateCommand {
                uuid: "z1".into(),
                desired_state: state as i32,
                reboot,
            }))
        };
        s.apply(&set(pb::ZoneState::Installed, false));
        assert_eq!(s.zones["z1"].generation, 2);
        let err = error_of(s.apply(&set(pb::ZoneState::Installed, true)));
        assert_eq!(err.code, tonic::Code::FailedPrecondition as i32);
        s.apply(&set(pb::ZoneState::Running, false));
        s.apply(&set(pb::ZoneState::Running, true));
        assert_eq!(s.zones["z1"].generation, 4);
    }

    #[test]
    fn snapshots_round_trip() {
        let mut s = FleetState::default();
        s.apply(&cmd(host("h1", 1024)));
        s.apply(&cmd(create(&["z1"], 256, "k")));
        assert_eq!(FleetState::from_snapshot(&s.to_snapshot()), s);
    }

    #[test]
    fn a_batch_applies_each_command_on_its_own_in_order() {
        let mut fleet = FleetState::default();
        let a = "00000000-0000-4000-8000-00000000000a";
        let batch = Kind::Batch(pb::BatchCommand {
            commands: vec![
                cmd(create(&[a], 64, "")),
                // Refused (the uuid exists by now); the others still apply.
                cmd(create(&[a], 64, "")),
                cmd(Kind::Batch(pb::BatchCommand::default())),
                cmd(create(&["00000000-0000-4000-8000-00000000000b"], 64, "")),
            ],
        });
        let results = match fleet.apply(&cmd(batch)).result {
            Some(R::Batch(b)) => b.results,
            other => panic!("not a batch result: {other:?}"),
        };
        assert_eq!(results.len(), 4);
        let mut results = results.into_iter();
        assert_eq!(zones_of(results.next().unwrap()).len(), 1);
        assert_eq!(
            error_of(results.next().unwrap()).code,
            tonic::Code::AlreadyExists as i32
        );
        assert_eq!(
            error_of(results.next().unwrap()).code,
            tonic::Code::InvalidArgument as i32
        );
        assert_eq!(zones_of(results.next().unwrap()).len(), 1);
        assert_eq!(fleet.zones.len(), 2);
    }
}
