//! Scoring the hosts that pass the filters. Hosts are ordered by, in turn:
//!
//! 1. soft rules broken (fewest first): a soft `far` whose target is on the host, a
//!    soft `near` whose target is not, a soft spread whose domain already holds
//!    `max_per_domain` zones of the group;
//! 2. for a soft spread, zones of the group already in the host's domain (fewest
//!    first: as even as possible);
//! 3. the strategy: `binpack` prefers the least free memory left after placing
//!    (fill hosts), `spread` the most (least used);
//! 4. `host_id` (smallest first), so the same input always gives the same host.
//!
//! The score shown to operators is the host's memory use after placing, in percent
//! (binpack) or 100 minus it (spread), less 100 per soft rule broken and 1 per zone
//! of a soft spread's group already in the domain.

use std::cmp::Ordering;

use zonefleet_proto::pb;
use zonefleet_proto::spec::AffinityRule;

use super::filters::Rules;
use super::snapshot::FleetView;

/// How good a host is for a zone; smaller is better ([`Ord`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Soft rules broken.
    pub broken: u32,
    /// Zones of a soft spread's group in the host's domain.
    pub crowding: u32,
    /// Free usable memory after placing: smaller first (binpack) or larger first
    /// (spread, stored negated).
    pub fit: i64,
    /// The host's rank in `host_id` order.
    pub rank: u32,
    /// The score shown.
    pub shown: i64,
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.broken, self.crowding, self.fit, self.rank).cmp(&(
            other.broken,
            other.crowding,
            other.fit,
            other.rank,
        ))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The key of host `slot` (which passed the filters) for a zone of `rules`.
pub fn key(view: &FleetView, slot: u32, rules: &Rules) -> Key {
    let h = view.host(slot);
    let mut broken = 0;
    let mut crowding = 0;
    for a in rules.affinity.iter().filter(|a| !a.hard) {
        let there = a.hosts.contains(&slot);
        if there == (a.rule == AffinityRule::Far) {
            broken += 1;
        }
    }
    if let Some(s) = rules.spread.as_ref().filter(|s| !s.hard) {
        let n = s.count(view, slot);
        crowding = n;
        if s.max.is_some_and(|max| n >= max) {
            broken += 1;
        }
    }
    let free_after = h.free_memory() - i64::try_from(rules.need.memory).unwrap_or(i64::MAX);
    let usable = i64::try_from(h.usable.memory).unwrap_or(i64::MAX).max(1);
    // Per mille of usable memory in use after placing.
    let used_permille = ((usable - free_after) * 1000 / usable).clamp(0, 1000);
    let (fit, strategy_permille) = match rules.strategy {
        pb::PlacementStrategy::Spread => (-free_after, 1000 - used_permille),
        _ => (free_after, used_permille),
    };
    Key {
        broken,
        crowding,
        fit,
        rank: h.rank,
        shown: strategy_permille - 1000 * i64::from(broken) - 10 * i64::from(crowding),
    }
}

/// A shown score in points (permille / 10).
pub fn shown(key: &Key) -> f64 {
    key.shown as f64 / 10.0
}
