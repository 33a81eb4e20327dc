//! Explaining a refusal: every host is counted once, under the first filter it
//! failed (filter order: [`super::filters`]); the reasons are listed most common
//! first (ties in filter order), e.g.
//! `no host: 37 lack memory (need 1024 MiB), 12 already hold 2 zones of group web in
//! their rack, 3 are cordoned`.

use std::collections::BTreeMap;

use zonefleet_proto::pb;
use zonefleet_proto::spec::FailureDomain;

use super::filters::{Reason, Rules};

/// Hosts passed over, counted per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub BTreeMap<Reason, u32>);

impl Counts {
    /// Counts one host under `reason`.
    pub fn add(&mut self, reason: Reason) {
        *self.0.entry(reason).or_default() += 1;
    }

    /// Hosts counted.
    pub fn total(&self) -> u32 {
        self.0.values().sum()
    }

    /// The refusal message (`no host: …`).
    pub fn message(&self, rules: &Rules) -> String {
        if self.0.is_empty() {
            return "no host: no host is registered".to_owned();
        }
        let mut entries: Vec<(&Reason, &u32)> = self.0.iter().collect();
        // Most common first; the map's order (filter order) breaks ties.
        entries.sort_by(|a, b| b.1.cmp(a.1));
        let parts: Vec<String> = entries
            .into_iter()
            .map(|(reason, n)| format!("{n} {}", phrase(reason, *n == 1, rules)))
            .collect();
        format!("no host: {}", parts.join(", "))
    }
}

fn status_name(status: i32) -> &'static str {
    match pb::HostStatus::try_from(status) {
        Ok(pb::HostStatus::Cordoned) => "cordoned",
        Ok(pb::HostStatus::Draining) => "draining",
        Ok(pb::HostStatus::Down) => "down",
        _ => "not ready",
    }
}

/// What a host failing `reason` is, in the singular (`one`) or plural.
pub fn phrase(reason: &Reason, one: bool, rules: &Rules) -> String {
    let (is, has, lacks, holds, fails, does) = if one {
        ("is", "holds", "lacks", "holds", "fails", "does")
    } else {
        ("are", "hold", "lack", "hold", "fail", "do")
    };
    match reason {
        Reason::Status(s) => format!("{is} {}", status_name(*s)),
        Reason::CurrentHost => format!("{is} the zone's current host"),
        Reason::Feature(f) => format!("{lacks} feature {f}"),
        Reason::Constraint(i) => format!(
            "{fails} constraint {}",
            rules
                .constraints
                .get(*i)
                .map(|c| c.to_string())
                .unwrap_or_default()
        ),
        Reason::Memory => format!("{lacks} memory (need {} MiB)", rules.need.memory),
        Reason::Cpu => format!("{lacks} CPU (need {}% of a CPU)", rules.need.cpu),
        Reason::Disk => format!("{lacks} disk (need {} GiB)", rules.need.disk),
        Reason::Spread => {
            let s = rules.spread.as_ref();
            let max = s.and_then(|s| s.max).unwrap_or(0);
            let group = s.map(|s| s.group.as_str()).unwrap_or_default();
            let zones = if max == 1 { "zone" } else { "zones" };
            match s.map(|s| s.by) {
                Some(FailureDomain::Host) => {
                    format!("already {has} {max} {zones} of group {group}")
                }
                _ => format!(
                    "already {has} {max} {zones} of group {group} in {} rack",
                    if one { "its" } else { "their" }
                ),
            }
        }
        Reason::Far(i) => format!(
            "{holds} {} (far)",
            rules
                .affinity
                .get(*i)
                .map(|a| a.target.as_str())
                .unwrap_or_default()
        ),
        Reason::FarOfOthers => format!("{holds} a zone that must be far from this one"),
        Reason::Near(i) => format!(
            "{does} not hold {} (near)",
            rules
                .affinity
                .get(*i)
                .map(|a| a.target.as_str())
                .unwrap_or_default()
        ),
    }
}
