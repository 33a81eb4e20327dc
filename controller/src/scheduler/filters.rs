//! The filters: what a host must have for a zone to go there, checked in one fixed
//! order. A host that fails is counted once, under the first filter it fails:
//!
//! 1. status: `ready` only (not cordoned, draining or down)
//! 2. the zone's current host (a reschedule goes elsewhere)
//! 3. host features the zone needs (e.g. `bridge_vlan_filtering` for a VLAN NIC)
//! 4. label constraints, in the order written (`rack` is the host's rack)
//! 5. memory, 6. CPU (`cpu_cap`), 7. disk (`quota`): what is free of the usable
//!    capacity, `(total - reserved) * ratio`
//! 8. hard spread: the zone's group already holds `max_per_domain` zones in the
//!    host's rack (or on the host)
//! 9. hard `far`: the host holds a zone the rule names
//! 10. symmetric hard `far`: the host holds a zone whose own hard `far` rule names
//!     this zone (so a rule keeps holding when its target is placed or moved later)
//! 11. hard `near`: the host holds none of the zones the rule names

use std::collections::{BTreeMap, HashSet};

use zonefleet_proto::feature::{self, Demand};
use zonefleet_proto::pb;
use zonefleet_proto::spec::{
    AffinityRule, AffinityTarget, Constraint, FailureDomain, Placement, RuleMode,
};

use super::snapshot::{target_keys, FleetView, HostCounts, Resources};

/// Why a host was passed over, in filter order (the derived order is the order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Its status (a `pb::HostStatus` number) is not `ready`.
    Status(i32),
    /// It is the zone's current host.
    CurrentHost,
    /// It lacks this feature.
    Feature(&'static str),
    /// It fails the constraint with this index.
    Constraint(usize),
    /// Not enough free memory.
    Memory,
    /// Not enough free CPU.
    Cpu,
    /// Not enough free disk.
    Disk,
    /// The hard spread's domain is full.
    Spread,
    /// It holds a zone the hard `far` rule with this index names.
    Far(usize),
    /// It holds a zone whose hard `far` rule names this zone.
    FarOfOthers,
    /// It holds no zone the hard `near` rule with this index names.
    Near(usize),
}

/// A resolved affinity rule: its text and the hosts holding its targets.
#[derive(Debug, Clone)]
pub struct AffinityCheck {
    /// The target as written.
    pub target: String,
    /// Near or far.
    pub rule: AffinityRule,
    /// Hard or soft.
    pub hard: bool,
    /// Host slots holding a zone the target names.
    pub hosts: HashSet<u32>,
}

/// A spread rule.
#[derive(Debug, Clone)]
pub struct SpreadCheck {
    /// Rack or host.
    pub by: FailureDomain,
    /// The group.
    pub group: String,
    /// The most zones of the group per domain.
    pub max: Option<u32>,
    /// Hard or soft.
    pub hard: bool,
    /// Zones of the group per domain (rack index or host slot).
    pub counts: HostCounts,
}

impl SpreadCheck {
    /// Zones of the group in the domain of host `slot`.
    pub fn count(&self, view: &FleetView, slot: u32) -> u32 {
        let domain = match self.by {
            FailureDomain::Rack => view.host(slot).rack,
            FailureDomain::Host => slot,
        };
        self.counts.get(&domain).copied().unwrap_or(0)
    }
}

/// One zone's rules, resolved against the view.
#[derive(Debug, Clone)]
pub struct Rules {
    /// What the zone holds.
    pub need: Resources,
    /// Features it needs.
    pub features: Vec<&'static str>,
    /// Label constraints.
    pub constraints: Vec<Constraint>,
    /// Its spread rule.
    pub spread: Option<SpreadCheck>,
    /// Its affinity rules.
    pub affinity: Vec<AffinityCheck>,
    /// Hosts holding a zone whose hard `far` rule names this zone.
    pub far_of_others: HashSet<u32>,
    /// Binpack or spread.
    pub strategy: pb::PlacementStrategy,
    /// The zone's current host (a reschedule).
    pub current: Option<u32>,
}

/// The features a zone of `spec` needs that tell hosts apart: the agent's rule
/// (`zonefleet_proto::feature::Demand`, a NIC on a VLAN network counted through
/// `networks`) without the baseline every zonefleet host has.
pub fn required_features(
    spec: &pb::ZoneSpec,
    networks: &BTreeMap<String, pb::Network>,
) -> Vec<&'static str> {
    let network_has_vlan = |name: &str| {
        networks
            .get(name)
            .or_else(|| networks.values().find(|net| net.name == name))
            .is_some_and(|net| net.vlan_id.is_some())
    };
    Demand::of_pb(spec, network_has_vlan)
        .required()
        .into_iter()
        .filter(|f| !feature::is_baseline(f))
        .collect()
}

fn slots(counts: Option<&HostCounts>) -> HashSet<u32> {
    counts
        .map(|c| c.keys().copied().collect())
        .unwrap_or_default()
}

impl Rules {
    /// Resolves the rules of a zone of `spec` (placement already parsed into
    /// `placement`) against `view`. `zones` resolves uuid targets.
    pub fn resolve(
        view: &FleetView,
        spec: &pb::ZoneSpec,
        placement: &Placement,
        features: Vec<&'static str>,
        zones: &BTreeMap<String, pb::Zone>,
        current: Option<u32>,
    ) -> Self {
        let spread = placement.spread.as_ref().map(|s| {
            let group = view.group(&s.group);
            SpreadCheck {
                by: s.by,
                group: s.group.clone(),
                max: s.max_per_domain,
                hard: s.mode.unwrap_or(RuleMode::Hard) == RuleMode::Hard,
                counts: group
                    .map(|g| match s.by {
                        FailureDomain::Rack => g.per_rack.clone(),
                        FailureDomain::Host => g.per_host.clone(),
                    })
                    .unwrap_or_default(),
            }
        });
        let affinity = placement
            .affinity
            .iter()
            .map(|a| {
                let hosts = match &a.target {
                    AffinityTarget::Uuid(uuid) => zones
                        .get(&uuid.to_string())
                        .filter(|z| super::snapshot::is_live(z))
                        .and_then(|z| view.slot(&z.host_id))
                        .into_iter()
                        .collect(),
                    AffinityTarget::Alias(alias) => slots(view.alias_hosts(alias)),
                    AffinityTarget::Tag { key, value } => slots(view.tag_hosts(key, value)),
                };
                AffinityCheck {
                    target: a.target.to_string(),
                    rule: a.rule,
                    hard: a.mode.unwrap_or(RuleMode::Hard) == RuleMode::Hard,
                    hosts,
                }
            })
            .collect();
        let mut far_of_others = HashSet::new();
        for key in target_keys(spec) {
            far_of_others.extend(slots(view.far_rules_naming(&key)));
        }
        let strategy = match placement.strategy {
            Some(zonefleet_proto::spec::PlacementStrategy::Binpack) => {
                pb::PlacementStrategy::Binpack
            }
            Some(zonefleet_proto::spec::PlacementStrategy::Spread) => pb::PlacementStrategy::Spread,
            None => view.settings().default_strategy,
        };
        Rules {
            need: Resources::of_spec(spec),
            features,
            constraints: placement.constraints.clone(),
            spread,
            affinity,
            far_of_others,
            strategy,
            current,
        }
    }

    /// Whether only hard rules apply (no soft rule, no hard `near`): then the first
    /// host in strategy order that passes the filters is the best one.
    pub fn hard_only(&self) -> bool {
        self.spread.as_ref().is_none_or(|s| s.hard)
            && self
                .affinity
                .iter()
                .all(|a| a.hard && a.rule == AffinityRule::Far)
    }

    /// The first filter host `slot` fails, if any.
    pub fn check(&self, view: &FleetView, slot: u32) -> Result<(), Reason> {
        let h = view.host(slot);
        if h.status != pb::HostStatus::Ready as i32 {
            return Err(Reason::Status(h.status));
        }
        if self.current == Some(slot) {
            return Err(Reason::CurrentHost);
        }
        for f in &self.features {
            if !h.features.contains(*f) {
                return Err(Reason::Feature(f));
            }
        }
        for (i, c) in self.constraints.iter().enumerate() {
            let label = if c.key == "rack" {
                Some(view.rack_name(h.rack))
            } else {
                h.labels.get(&c.key).map(String::as_str)
            };
            if !c.matches(label) {
                return Err(Reason::Constraint(i));
            }
        }
        if h.used.memory.saturating_add(self.need.memory) > h.usable.memory {
            return Err(Reason::Memory);
        }
        if h.used.cpu.saturating_add(self.need.cpu) > h.usable.cpu {
            return Err(Reason::Cpu);
        }
        if h.used.disk.saturating_add(self.need.disk) > h.usable.disk {
            return Err(Reason::Disk);
        }
        if let Some(s) = self.spread.as_ref().filter(|s| s.hard) {
            if let Some(max) = s.max {
                if s.count(view, slot) >= max {
                    return Err(Reason::Spread);
                }
            }
        }
        for (i, a) in self.affinity.iter().enumerate() {
            if a.hard && a.rule == AffinityRule::Far && a.hosts.contains(&slot) {
                return Err(Reason::Far(i));
            }
        }
        if self.far_of_others.contains(&slot) {
            return Err(Reason::FarOfOthers);
        }
        for (i, a) in self.affinity.iter().enumerate() {
            if a.hard && a.rule == AffinityRule::Near && !a.hosts.contains(&slot) {
                return Err(Reason::Near(i));
            }
        }
        Ok(())
    }
}
