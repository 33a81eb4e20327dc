//! The read-only view the scheduler decides from, kept up to date incrementally by
//! the state machine (every zone create, update, delete and host change adjusts it
//! in O(1) or O(log hosts)), and rebuilt from scratch only when a snapshot is
//! installed.
//!
//! Hosts live in slots in registration order (a host is never removed); `rank` is
//! the host's position in `host_id` order, which is what ties are broken by, so a
//! replica that rebuilt its view from a snapshot decides exactly like one that
//! applied the log. Nothing here is iterated in hash order when deciding.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use zonefleet_proto::pb;

/// Default RAM kept for the global zone on every host, MiB.
pub const DEFAULT_RESERVED_MEMORY_MIB: u64 = 1024;
/// Default CPU kept for the global zone, percent of one CPU.
pub const DEFAULT_RESERVED_CPU_PERCENT: u32 = 100;
/// Default disk kept for the global zone, GiB.
pub const DEFAULT_RESERVED_DISK_GIB: u64 = 0;
/// Default overprovision ratio, percent.
pub const DEFAULT_RATIO_PERCENT: u32 = 100;

/// Memory (MiB), CPU (percent of one CPU) and disk (GiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// MiB.
    pub memory: u64,
    /// Percent of one CPU.
    pub cpu: u64,
    /// GiB.
    pub disk: u64,
}

impl Resources {
    /// What a zone of `spec` holds: its memory, its `cpu_cap` (an uncapped zone holds
    /// none) and its `quota`.
    pub fn of_spec(spec: &pb::ZoneSpec) -> Self {
        Resources {
            memory: spec.max_physical_memory_mib.unwrap_or(0),
            cpu: u64::from(spec.cpu_cap.unwrap_or(0)),
            disk: u64::from(spec.quota_gib.unwrap_or(0)),
        }
    }

    fn add(&mut self, other: Resources) {
        self.memory += other.memory;
        self.cpu += other.cpu;
        self.disk += other.disk;
    }

    fn sub(&mut self, other: Resources) {
        self.memory = self.memory.saturating_sub(other.memory);
        self.cpu = self.cpu.saturating_sub(other.cpu);
        self.disk = self.disk.saturating_sub(other.disk);
    }
}

/// The settings with their defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Overprovision ratios, percent: memory, CPU, disk.
    pub ratio_percent: Resources,
    /// Kept back for the global zone on every host.
    pub reserved: Resources,
    /// The strategy of zones that name none.
    pub default_strategy: pb::PlacementStrategy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_pb(&pb::FleetSettings::default())
    }
}

impl Settings {
    /// The settings `s` asks for, defaults for what it leaves unset.
    pub fn from_pb(s: &pb::FleetSettings) -> Self {
        let ratio = |r: Option<u32>| u64::from(r.unwrap_or(DEFAULT_RATIO_PERCENT));
        Settings {
            ratio_percent: Resources {
                memory: ratio(s.ram_ratio_percent),
                cpu: ratio(s.cpu_ratio_percent),
                disk: ratio(s.disk_ratio_percent),
            },
            reserved: Resources {
                memory: s.reserved_memory_mib.unwrap_or(DEFAULT_RESERVED_MEMORY_MIB),
                cpu: u64::from(
                    s.reserved_cpu_percent
                        .unwrap_or(DEFAULT_RESERVED_CPU_PERCENT),
                ),
                disk: s.reserved_disk_gib.unwrap_or(DEFAULT_RESERVED_DISK_GIB),
            },
            default_strategy: match pb::PlacementStrategy::try_from(s.default_strategy) {
                Ok(pb::PlacementStrategy::Spread) => pb::PlacementStrategy::Spread,
                _ => pb::PlacementStrategy::Binpack,
            },
        }
    }

    /// What zones may hold on a host of `total`: `(total - reserved) * ratio / 100`.
    pub fn usable(&self, total: Resources) -> Resources {
        let one = |t: u64, r: u64, ratio: u64| {
            u64::try_from(u128::from(t.saturating_sub(r)) * u128::from(ratio) / 100)
                .unwrap_or(u64::MAX)
        };
        Resources {
            memory: one(
                total.memory,
                self.reserved.memory,
                self.ratio_percent.memory,
            ),
            cpu: one(total.cpu, self.reserved.cpu, self.ratio_percent.cpu),
            disk: one(total.disk, self.reserved.disk, self.ratio_percent.disk),
        }
    }
}

/// One host as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct HostEntry {
    /// Its id.
    pub id: Arc<str>,
    /// Its position in `host_id` order (the tie-break).
    pub rank: u32,
    /// Its rack (an index into [`FleetView::rack_name`]).
    pub rack: u32,
    /// `pb::HostStatus` as a number.
    pub status: i32,
    /// Its labels (controller-side inventory).
    pub labels: BTreeMap<String, String>,
    /// The features it reports available.
    pub features: BTreeSet<String>,
    /// What it has.
    pub total: Resources,
    /// What zones may hold on it (reservation and ratios applied).
    pub usable: Resources,
    /// What its zones hold.
    pub used: Resources,
    /// Its live zones.
    pub zones: u32,
}

impl HostEntry {
    /// Usable memory not yet held (negative when the settings shrank under it).
    pub fn free_memory(&self) -> i64 {
        i64::try_from(self.usable.memory).unwrap_or(i64::MAX)
            - i64::try_from(self.used.memory).unwrap_or(i64::MAX)
    }
}

/// Zones of one spread group, per host slot and per rack.
#[derive(Debug, Clone, Default)]
pub struct GroupCounts {
    /// Zones of the group per host slot.
    pub per_host: HashMap<u32, u32>,
    /// Zones of the group per rack.
    pub per_rack: HashMap<u32, u32>,
}

/// Per host slot counts of the zones an affinity target names.
pub type HostCounts = HashMap<u32, u32>;

/// The scheduler's view of the fleet.
#[derive(Debug, Clone, Default)]
pub struct FleetView {
    hosts: Vec<HostEntry>,
    slot_of: HashMap<Arc<str>, u32>,
    racks: Vec<String>,
    rack_of: HashMap<String, u32>,
    settings: Settings,
    /// Ready hosts ordered by (free usable memory, host_id), with their slot.
    ready_by_free: BTreeSet<(i64, Arc<str>, u32)>,
    groups: HashMap<String, GroupCounts>,
    /// Placed live zones by alias, per host slot.
    by_alias: HashMap<String, HostCounts>,
    /// Placed live zones by `tag:key=value`, per host slot.
    by_tag: HashMap<String, HostCounts>,
    /// Hard `far` rules of placed live zones by their target text, per host slot.
    far_rules: HashMap<String, HostCounts>,
    /// Live zones (placed or pending) by alias.
    live_aliases: HashMap<String, u32>,
}

fn bump(map: &mut HostCounts, slot: u32, up: bool) {
    if up {
        *map.entry(slot).or_default() += 1;
    } else if let Some(n) = map.get_mut(&slot) {
        *n -= 1;
        if *n == 0 {
            map.remove(&slot);
        }
    }
}

/// Whether a stored zone counts (not deleted).
pub fn is_live(zone: &pb::Zone) -> bool {
    zone.desired_state != pb::ZoneState::Deleted as i32
}

/// The hard `far` targets of a spec, as written.
pub fn hard_far_targets(spec: &pb::ZoneSpec) -> impl Iterator<Item = &str> {
    spec.placement.iter().flat_map(|p| {
        p.affinity
            .iter()
            .filter(|a| {
                a.rule == pb::AffinityRule::Far as i32 && a.mode != pb::RuleMode::Soft as i32
            })
            .map(|a| a.target.as_str())
    })
}

/// The texts an affinity target naming this zone could have: its uuid, its alias and
/// `tag:key=value` for each tag.
pub fn target_keys(spec: &pb::ZoneSpec) -> Vec<String> {
    let mut keys: Vec<String> = spec.uuid.iter().cloned().collect();
    keys.extend(spec.alias.iter().cloned());
    keys.extend(spec.tags.iter().map(|(k, v)| format!("tag:{k}={v}")));
    keys
}

impl FleetView {
    /// Builds the view of a whole state.
    pub fn build<'a>(
        settings: &pb::FleetSettings,
        hosts: impl IntoIterator<Item = &'a pb::Host>,
        zones: impl IntoIterator<Item = &'a pb::Zone>,
    ) -> Self {
        let mut view = FleetView {
            settings: Settings::from_pb(settings),
            ..Default::default()
        };
        for host in hosts {
            view.upsert_host(host);
        }
        for zone in zones {
            view.add_zone(zone);
        }
        view
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every host, by slot.
    pub fn hosts(&self) -> &[HostEntry] {
        &self.hosts
    }

    /// The slot of `host_id`.
    pub fn slot(&self, host_id: &str) -> Option<u32> {
        self.slot_of.get(host_id).copied()
    }

    /// The host in `slot`.
    pub fn host(&self, slot: u32) -> &HostEntry {
        &self.hosts[slot as usize]
    }

    /// A rack's name.
    pub fn rack_name(&self, rack: u32) -> &str {
        &self.racks[rack as usize]
    }

    /// The ready hosts by (free usable memory, host_id), with their slot.
    pub fn ready_by_free(&self) -> &BTreeSet<(i64, Arc<str>, u32)> {
        &self.ready_by_free
    }

    /// The counts of spread group `group`.
    pub fn group(&self, group: &str) -> Option<&GroupCounts> {
        self.groups.get(group)
    }

    /// Placed zones with this alias, per host slot.
    pub fn alias_hosts(&self, alias: &str) -> Option<&HostCounts> {
        self.by_alias.get(alias)
    }

    /// Placed zones with this tag, per host slot.
    pub fn tag_hosts(&self, key: &str, value: &str) -> Option<&HostCounts> {
        self.by_tag.get(&format!("tag:{key}={value}"))
    }

    /// Placed zones with a hard `far` rule naming `target`, per host slot.
    pub fn far_rules_naming(&self, target: &str) -> Option<&HostCounts> {
        self.far_rules.get(target)
    }

    /// Whether a live zone has this alias.
    pub fn alias_in_use(&self, alias: &str) -> bool {
        self.live_aliases.contains_key(alias)
    }

    fn rack_index(&mut self, rack: &str) -> u32 {
        if let Some(i) = self.rack_of.get(rack) {
            return *i;
        }
        let i = u32::try_from(self.racks.len()).expect("fewer than 2^32 racks");
        self.racks.push(rack.to_owned());
        self.rack_of.insert(rack.to_owned(), i);
        i
    }

    fn unindex(&mut self, slot: u32) {
        let h = &self.hosts[slot as usize];
        if h.status == pb::HostStatus::Ready as i32 {
            self.ready_by_free
                .remove(&(h.free_memory(), h.id.clone(), slot));
        }
    }

    fn index(&mut self, slot: u32) {
        let h = &self.hosts[slot as usize];
        if h.status == pb::HostStatus::Ready as i32 {
            self.ready_by_free
                .insert((h.free_memory(), h.id.clone(), slot));
        }
    }

    /// Adds a host or refreshes one (status, inventory, capacity, features). Moving a
    /// host to another rack moves its zones' spread counts with it.
    pub fn upsert_host(&mut self, host: &pb::Host) {
        let rack = self.rack_index(&host.rack);
        let capacity = host.capacity.unwrap_or_default();
        let total = Resources {
            memory: capacity.memory_mib,
            cpu: u64::from(capacity.cpu_percent),
            disk: capacity.disk_gib,
        };
        let features: BTreeSet<String> = host
            .sysinfo
            .iter()
            .flat_map(|s| s.features.iter())
            .filter(|f| f.available)
            .map(|f| f.name.clone())
            .collect();
        let usable = self.settings.usable(total);
        match self.slot(&host.host_id) {
            Some(slot) => {
                self.unindex(slot);
                let old_rack = self.hosts[slot as usize].rack;
                if old_rack != rack {
                    for counts in self.groups.values_mut() {
                        if let Some(n) = counts.per_host.get(&slot).copied() {
                            let r = counts.per_rack.entry(old_rack).or_default();
                            *r -= n;
                            if *r == 0 {
                                counts.per_rack.remove(&old_rack);
                            }
                            *counts.per_rack.entry(rack).or_default() += n;
                        }
                    }
                }
                let h = &mut self.hosts[slot as usize];
                h.rack = rack;
                h.status = host.status;
                h.labels = host.labels.clone().into_iter().collect();
                h.features = features;
                h.total = total;
                h.usable = usable;
                self.index(slot);
            }
            None => {
                let id: Arc<str> = Arc::from(host.host_id.as_str());
                let slot = u32::try_from(self.hosts.len()).expect("fewer than 2^32 hosts");
                let mut rank = 0;
                for h in &mut self.hosts {
                    if *h.id > *id {
                        h.rank += 1;
                    } else {
                        rank += 1;
                    }
                }
                self.hosts.push(HostEntry {
                    id: id.clone(),
                    rank,
                    rack,
                    status: host.status,
                    labels: host.labels.clone().into_iter().collect(),
                    features,
                    total,
                    usable,
                    used: Resources::default(),
                    zones: 0,
                });
                self.slot_of.insert(id, slot);
                self.index(slot);
            }
        }
    }

    /// Replaces the settings: every host's usable capacity is computed again.
    pub fn set_settings(&mut self, settings: &pb::FleetSettings) {
        self.settings = Settings::from_pb(settings);
        self.ready_by_free.clear();
        for slot in 0..self.hosts.len() {
            let h = &mut self.hosts[slot];
            h.usable = self.settings.usable(h.total);
            self.index(u32::try_from(slot).expect("slot"));
        }
    }

    /// Counts a stored zone (a deleted one counts nowhere).
    pub fn add_zone(&mut self, zone: &pb::Zone) {
        self.count_zone(zone, true);
    }

    /// Stops counting a stored zone (as it was when added).
    pub fn remove_zone(&mut self, zone: &pb::Zone) {
        self.count_zone(zone, false);
    }

    fn count_zone(&mut self, zone: &pb::Zone, up: bool) {
        if let (true, Some(spec)) = (is_live(zone), zone.spec.as_ref()) {
            self.count(spec, &zone.host_id, up);
        }
    }

    /// Counts (`up`) or stops counting a live zone of `spec` on `host_id` (empty:
    /// pending).
    pub fn count(&mut self, spec: &pb::ZoneSpec, host_id: &str, up: bool) {
        if let Some(alias) = &spec.alias {
            if up {
                *self.live_aliases.entry(alias.clone()).or_default() += 1;
            } else if let Some(n) = self.live_aliases.get_mut(alias) {
                *n -= 1;
                if *n == 0 {
                    self.live_aliases.remove(alias);
                }
            }
        }
        let Some(slot) = self.slot(host_id) else {
            return;
        };
        self.unindex(slot);
        let h = &mut self.hosts[slot as usize];
        let rack = h.rack;
        if up {
            h.used.add(Resources::of_spec(spec));
            h.zones += 1;
        } else {
            h.used.sub(Resources::of_spec(spec));
            h.zones = h.zones.saturating_sub(1);
        }
        self.index(slot);
        if let Some(spread) = spec.placement.as_ref().and_then(|p| p.spread.as_ref()) {
            let counts = self.groups.entry(spread.group.clone()).or_default();
            bump(&mut counts.per_host, slot, up);
            bump(&mut counts.per_rack, rack, up);
        }
        if let Some(alias) = &spec.alias {
            bump(self.by_alias.entry(alias.clone()).or_default(), slot, up);
        }
        for (k, v) in &spec.tags {
            bump(
                self.by_tag.entry(format!("tag:{k}={v}")).or_default(),
                slot,
                up,
            );
        }
        for target in hard_far_targets(spec) {
            bump(
                self.far_rules.entry(target.to_owned()).or_default(),
                slot,
                up,
            );
        }
    }
}
