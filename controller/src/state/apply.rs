//! Applying one command to the fleet state. Each handler checks everything first and
//! changes the state only when the whole command succeeds: a refused command leaves
//! nothing half-done behind.

use std::collections::BTreeSet;

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;
use zonefleet_proto::pb::fleet_command::Kind;

use super::{ok, FleetState, StateError, IDEMPOTENCY_TTL_MS};
use crate::scheduler::snapshot::Resources;
use crate::scheduler::{self, Context};

/// Message of a zone created without a host.
pub const PENDING_PREFIX: &str = "pending: ";

/// Largest overprovision ratio accepted, percent.
pub const MAX_RATIO_PERCENT: u32 = 10_000;

impl FleetState {
    /// Applies `command`: a pure function of the state and the command.
    pub fn apply(&mut self, command: &pb::FleetCommand) -> pb::CommandResult {
        let at = command.at_unix_ms;
        let outcome = match &command.kind {
            Some(Kind::CreateZones(c)) => self.create_zones(c, at),
            Some(Kind::UpdateZone(c)) => self.update_zone(c),
            Some(Kind::SetZoneState(c)) => self.set_zone_state(c),
            Some(Kind::DeleteZone(c)) => self.delete_zone(&c.uuid),
            Some(Kind::RegisterHost(c)) => self.register_host(c),
            Some(Kind::SetHostStatus(c)) => self.set_host_status(c),
            Some(Kind::PutNetwork(c)) => self.put_network(c),
            Some(Kind::DeleteNetwork(c)) => self.delete_network(&c.uuid),
            Some(Kind::PutImage(c)) => self.put_image(c),
            Some(Kind::CreateJoinToken(c)) => self.create_join_token(c, at),
            Some(Kind::SetFleetSettings(c)) => self.set_fleet_settings(c),
            Some(Kind::SetHostInventory(c)) => self.set_host_inventory(c),
            Some(Kind::RescheduleZone(c)) => self.reschedule_zone(&c.uuid),
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
                        _ => self.apply(c),
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

    fn context(&self) -> Context<'_> {
        Context {
            zones: &self.zones,
            networks: &self.networks,
            images: &self.images,
        }
    }

    /// The specs of the zones a create makes: one per uuid; a batch's aliases get
    /// `-0`, `-1`… suffixes. Refuses a uuid or an alias already in use.
    fn batch_specs(&self, c: &pb::CreateZonesCommand) -> Result<Vec<pb::ZoneSpec>, StateError> {
        let spec = c
            .spec
            .as_ref()
            .ok_or_else(|| StateError::InvalidArgument("spec is missing".to_owned()))?;
        if c.uuids.is_empty() {
            return Err(StateError::InvalidArgument("no zone uuid".to_owned()));
        }
        let mut seen = BTreeSet::new();
        let mut specs = Vec::with_capacity(c.uuids.len());
        for (i, uuid) in c.uuids.iter().enumerate() {
            if self.zones.contains_key(uuid) || !seen.insert(uuid) {
                return Err(StateError::AlreadyExists(format!(
                    "zone {uuid} already exists"
                )));
            }
            let mut zone_spec = spec.clone();
            zone_spec.uuid = Some(uuid.clone());
            if c.uuids.len() > 1 {
                if let Some(alias) = &spec.alias {
                    zone_spec.alias = Some(format!("{alias}-{i}"));
                }
            }
            if let Some(alias) = &zone_spec.alias {
                if self.derived.view.alias_in_use(alias) {
                    return Err(StateError::AlreadyExists(format!(
                        "a zone with alias {alias:?} already exists"
                    )));
                }
            }
            specs.push(zone_spec);
        }
        Ok(specs)
    }

    /// Where a create would put its zones and why, changing nothing (a dry run). A
    /// refusal is the explanation of a response whose zones have no host.
    pub fn dry_run_create(
        &self,
        c: &pb::CreateZonesCommand,
    ) -> Result<pb::CreateZonesResponse, StateError> {
        const TOP: usize = 5;
        let specs = self.batch_specs(c)?;
        let mut view = self.derived.view.clone();
        let (hosts, top_scores, explanation) =
            match scheduler::place_batch(&mut view, &self.context(), &specs, TOP) {
                Ok(batch) => (batch.hosts, batch.top_scores, batch.explanation),
                Err(why) => (vec![String::new(); specs.len()], Vec::new(), why),
            };
        Ok(pb::CreateZonesResponse {
            zones: specs
                .into_iter()
                .zip(hosts)
                .map(|(spec, host_id)| pb::Zone {
                    spec: Some(spec),
                    host_id,
                    desired_state: pb::ZoneState::Running as i32,
                    ..Default::default()
                })
                .collect(),
            top_scores,
            explanation,
        })
    }

    fn create_zones(
        &mut self,
        c: &pb::CreateZonesCommand,
        at: i64,
    ) -> Result<pb::CommandResult, StateError> {
        if !c.idempotency_key.is_empty() {
            if let Some(record) = self.idempotency.get(&c.idempotency_key) {
                return Ok(ok(R::Zones(record.response.clone().unwrap_or_default())));
            }
        }
        let specs = self.batch_specs(c)?;
        // Addresses first (an exhausted network refuses the whole command), then the
        // hosts; nothing is changed until both are decided.
        let addresses = self.assign_addresses(&specs)?;
        let placed = {
            let ctx = Context {
                zones: &self.zones,
                networks: &self.networks,
                images: &self.images,
            };
            scheduler::place_batch(&mut self.derived.view, &ctx, &specs, 0)
        };
        let (hosts, explanation) = match placed {
            Ok(batch) => (batch.hosts, String::new()),
            Err(why) => (vec![String::new(); specs.len()], why),
        };
        let mut zones = Vec::with_capacity(specs.len());
        for ((spec, host_id), addresses) in specs.into_iter().zip(hosts).zip(addresses) {
            let message = if host_id.is_empty() {
                format!("{PENDING_PREFIX}{explanation}")
            } else {
                String::new()
            };
            let zone = pb::Zone {
                spec: Some(spec),
                generation: 1,
                host_id,
                desired_state: pb::ZoneState::Running as i32,
                observed_state: pb::ZoneState::Unspecified as i32,
                addresses,
                message,
                init_exit_status: None,
            };
            self.store_new_zone(&zone);
            zones.push(zone);
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
            self.derived
                .idempotency_by_age
                .insert((at, c.idempotency_key.clone()));
            // Records at or before the cutoff expire (the oldest first).
            let cutoff = at.saturating_sub(IDEMPOTENCY_TTL_MS);
            while let Some((when, key)) = self.derived.idempotency_by_age.first().cloned() {
                if when > cutoff {
                    break;
                }
                self.derived.idempotency_by_age.pop_first();
                self.idempotency.remove(&key);
            }
        }
        Ok(ok(R::Zones(response)))
    }

    /// The lowest free address of each network NIC of each spec, all or none.
    fn assign_addresses(&mut self, specs: &[pb::ZoneSpec]) -> Result<Vec<Vec<String>>, StateError> {
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
    fn zone_leases(&self, zone: &pb::Zone) -> Vec<(String, String)> {
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

    /// Stores a new zone: its host's capacity, the scheduler's view, its leases.
    fn store_new_zone(&mut self, zone: &pb::Zone) {
        let uuid = super::zone_uuid(zone).to_owned();
        self.hold(zone, 1);
        self.derived.view.add_zone(zone);
        for (network, address) in self.zone_leases(zone) {
            self.derived.pools.take(&network, &address);
            self.leases.insert((network, address), uuid.clone());
        }
        self.zones.insert(uuid, zone.clone());
    }

    /// Adds (`sign` 1) or removes (`sign` -1) a zone's resources and count on its
    /// host's reported capacity.
    fn hold(&mut self, zone: &pb::Zone, sign: i64) {
        let need = zone
            .spec
            .as_ref()
            .map(Resources::of_spec)
            .unwrap_or_default();
        let cpu = u32::try_from(need.cpu).unwrap_or(u32::MAX);
        if let Some(host) = self.hosts.get_mut(&zone.host_id) {
            let capacity = host.capacity.get_or_insert_with(Default::default);
            if sign > 0 {
                capacity.allocated_memory_mib += need.memory;
                capacity.allocated_cpu_percent = capacity.allocated_cpu_percent.saturating_add(cpu);
                capacity.allocated_disk_gib += need.disk;
                host.zone_count += 1;
            } else {
                capacity.allocated_memory_mib =
                    capacity.allocated_memory_mib.saturating_sub(need.memory);
                capacity.allocated_cpu_percent = capacity.allocated_cpu_percent.saturating_sub(cpu);
                capacity.allocated_disk_gib = capacity.allocated_disk_gib.saturating_sub(need.disk);
                host.zone_count = host.zone_count.saturating_sub(1);
            }
        }
    }

    fn reschedule_zone(&mut self, uuid: &str) -> Result<pb::CommandResult, StateError> {
        let zone = self.live_zone_mut(uuid)?.clone();
        let spec = zone.spec.clone().unwrap_or_default();
        let current = self.derived.view.slot(&zone.host_id);
        // Decide as if the zone were not there (its own group count, its own far
        // rules), never on its current host.
        self.derived.view.remove_zone(&zone);
        let decided = {
            let ctx = Context {
                zones: &self.zones,
                networks: &self.networks,
                images: &self.images,
            };
            scheduler::decide(&self.derived.view, &ctx, &spec, current, 0)
        };
        let choice = match decided {
            Ok(choice) => choice,
            Err(why) => {
                self.derived.view.add_zone(&zone);
                return Err(StateError::FailedPrecondition(why));
            }
        };
        self.hold(&zone, -1);
        let mut moved = zone;
        moved.host_id = self.derived.view.host(choice.slot).id.to_string();
        moved.generation += 1;
        moved.message.clear();
        moved.observed_state = pb::ZoneState::Unspecified as i32;
        self.hold(&moved, 1);
        self.derived.view.add_zone(&moved);
        self.zones.insert(uuid.to_owned(), moved.clone());
        Ok(ok(R::Zone(moved)))
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
        let (old_need, new_need) = (Resources::of_spec(&old_spec), Resources::of_spec(&spec));
        if let Some(slot) = self.derived.view.slot(&zone.host_id) {
            let h = self.derived.view.host(slot);
            let checks = [
                (
                    "memory",
                    "MiB",
                    old_need.memory,
                    new_need.memory,
                    h.used.memory,
                    h.usable.memory,
                ),
                (
                    "CPU",
                    "% of a CPU",
                    old_need.cpu,
                    new_need.cpu,
                    h.used.cpu,
                    h.usable.cpu,
                ),
                (
                    "disk",
                    "GiB",
                    old_need.disk,
                    new_need.disk,
                    h.used.disk,
                    h.usable.disk,
                ),
            ];
            for (what, unit, old, new, used, usable) in checks {
                let free = usable.saturating_sub(used.saturating_sub(old));
                if new > old && new > free {
                    return Err(StateError::FailedPrecondition(format!(
                        "host {} has only {free} {unit} of {what} free for this zone, it needs {new}",
                        zone.host_id
                    )));
                }
            }
        }
        self.derived.view.remove_zone(&zone);
        self.hold(&zone, -1);
        let mut zone = zone;
        zone.spec = Some(spec);
        zone.generation += 1;
        self.hold(&zone, 1);
        self.derived.view.add_zone(&zone);
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
        self.derived.view.remove_zone(&zone);
        for key in self.zone_leases(&zone) {
            if self.leases.get(&key).is_some_and(|holder| holder == uuid) {
                self.derived.pools.release(&key.0, &key.1);
                self.leases.remove(&key);
            }
        }
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
        let known = self.hosts.get(&host.host_id);
        if host.status == pb::HostStatus::Unspecified as i32 {
            host.status = known.map_or(pb::HostStatus::Ready as i32, |k| k.status);
        }
        // Rack and labels are controller-side inventory: set by operators or the join
        // token when the host is first known, never replaced by what it reports later.
        if let Some(known) = known {
            host.rack = known.rack.clone();
            host.labels = known.labels.clone();
        }
        // What zones hold is the controllers' to count, not the reporter's.
        let held = known.and_then(|k| k.capacity).unwrap_or_default();
        let capacity = host.capacity.get_or_insert_with(Default::default);
        capacity.allocated_memory_mib = held.allocated_memory_mib;
        capacity.allocated_cpu_percent = held.allocated_cpu_percent;
        capacity.allocated_disk_gib = held.allocated_disk_gib;
        host.zone_count = known.map_or(0, |k| k.zone_count);
        self.derived.view.upsert_host(&host);
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
        let host = host.clone();
        self.derived.view.upsert_host(&host);
        Ok(ok(R::Host(host)))
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

    fn set_host_inventory(
        &mut self,
        c: &pb::SetHostInventoryCommand,
    ) -> Result<pb::CommandResult, StateError> {
        let inventory = c
            .inventory
            .as_ref()
            .ok_or_else(|| StateError::InvalidArgument("inventory is missing".to_owned()))?;
        let host = self.hosts.get_mut(&inventory.host_id).ok_or_else(|| {
            StateError::NotFound(format!("host {} does not exist", inventory.host_id))
        })?;
        if let Some(rack) = &inventory.rack {
            host.rack = rack.clone();
        }
        for key in &inventory.remove_labels {
            host.labels.remove(key);
        }
        for (k, v) in &inventory.labels {
            host.labels.insert(k.clone(), v.clone());
        }
        let host = host.clone();
        self.derived.view.upsert_host(&host);
        Ok(ok(R::Host(host)))
    }

    fn set_fleet_settings(
        &mut self,
        c: &pb::SetFleetSettingsCommand,
    ) -> Result<pb::CommandResult, StateError> {
        let settings = c.settings.unwrap_or_default();
        for (name, ratio) in [
            ("cpu_ratio_percent", settings.cpu_ratio_percent),
            ("ram_ratio_percent", settings.ram_ratio_percent),
            ("disk_ratio_percent", settings.disk_ratio_percent),
        ] {
            if let Some(r) = ratio.filter(|r| !(1..=MAX_RATIO_PERCENT).contains(r)) {
                return Err(StateError::InvalidArgument(format!(
                    "{name}: {r} is out of range; allowed 1..={MAX_RATIO_PERCENT} (percent)"
                )));
            }
        }
        if pb::PlacementStrategy::try_from(settings.default_strategy).is_err() {
            return Err(StateError::InvalidArgument(format!(
                "default_strategy: {} is not a strategy",
                settings.default_strategy
            )));
        }
        self.settings = settings;
        self.derived.view.set_settings(&settings);
        Ok(ok(R::Done(true)))
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
                // `memory` usable once the global zone's default 1 GiB is kept back.
                capacity: Some(pb::Capacity {
                    memory_mib: memory + 1024,
                    cpu_percent: 800,
                    disk_gib: 1000,
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
    fn idempotency_records_expire_after_a_day_and_not_before() {
        let at = |ms: i64, kind: Kind| pb::FleetCommand {
            at_unix_ms: ms,
            kind: Some(kind),
        };
        let mut s = FleetState::default();
        let first = zones_of(s.apply(&at(1_000, create(&["z1"], 256, "k1"))));
        s.apply(&at(2_000, create(&["z2"], 256, "k2")));
        // A retry within the day returns the first result, creating nothing.
        let again = zones_of(s.apply(&at(1_000 + IDEMPOTENCY_TTL_MS, create(&["z9"], 256, "k1"))));
        assert_eq!(again, first);
        assert!(!s.zones.contains_key("z9"));
        // The next create a day after k1 (but not after k2) expires k1 only.
        s.apply(&at(1_001 + IDEMPOTENCY_TTL_MS, create(&["z3"], 256, "k3")));
        assert_eq!(
            s.idempotency.keys().collect::<Vec<_>>(),
            ["k2", "k3"],
            "k1 expired, k2 kept"
        );
        // Replicas that start from a snapshot expire the same records.
        let mut restored = FleetState::from_snapshot(&s.to_snapshot());
        let command = at(2_001 + IDEMPOTENCY_TTL_MS, create(&["z4"], 256, "k4"));
        s.apply(&command);
        restored.apply(&command);
        assert_eq!(s.idempotency.keys().collect::<Vec<_>>(), ["k3", "k4"]);
        assert!(restored == s);
        // An expired key creates again.
        let anew = zones_of(s.apply(&at(3_000 + IDEMPOTENCY_TTL_MS, create(&["z5"], 256, "k1"))));
        assert_eq!(anew[0].spec.as_ref().unwrap().uuid.as_deref(), Some("z5"));
    }

    #[test]
    fn zones_are_placed_and_capacity_is_held() {
        let mut s = FleetState::default();
        s.apply(&cmd(host("h1", 1024)));
        s.apply(&cmd(host("h2", 2048)));
        // Binpack: the fullest host that fits first.
        let zones = zones_of(s.apply(&cmd(create(&["z1", "z2"], 1024, ""))));
        assert_eq!(zones[0].host_id, "h1");
        assert_eq!(zones[1].host_id, "h2");
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
        assert_eq!(
            zones[0].message,
            "pending: no host: 2 lack memory (need 1024 MiB)"
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
