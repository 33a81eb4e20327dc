//! What an applied command changed of each host's assignments (the zones placed on
//! it, with their spec, generation, desired state and addresses): the changes the
//! agents' watch streams carry. Derived by comparing the zones a command names before
//! and after it is applied, so no handler has to report what it did.

use zonefleet_proto::pb;
use zonefleet_proto::pb::fleet_command::Kind;

use super::FleetState;

/// One change to one host's assigned zones.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The zone is (now, or in a new version) assigned to the host.
    Upsert(Box<pb::Zone>),
    /// The zone (by uuid) is no longer assigned to the host.
    Removed(String),
}

/// A [`Change`] for one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostChange {
    /// The host whose assignments changed.
    pub host_id: String,
    /// What changed.
    pub change: Change,
}

/// The uuids of the zones `command` may change (the commands of a batch included).
pub(super) fn touched(command: &pb::FleetCommand, out: &mut Vec<String>) {
    match &command.kind {
        Some(Kind::CreateZones(c)) => out.extend(c.uuids.iter().cloned()),
        Some(Kind::UpdateZone(c)) => out.push(c.uuid.clone()),
        Some(Kind::SetZoneState(c)) => out.push(c.uuid.clone()),
        Some(Kind::DeleteZone(c)) => out.push(c.uuid.clone()),
        Some(Kind::RescheduleZone(c)) => out.push(c.uuid.clone()),
        Some(Kind::ReleaseZone(c)) => out.push(c.uuid.clone()),
        Some(Kind::ReportZoneStates(c)) => out.extend(c.zones.iter().map(|z| z.uuid.clone())),
        Some(Kind::Batch(b)) => b.commands.iter().for_each(|c| touched(c, out)),
        _ => {}
    }
}

/// What an agent acts on: an observed state the agent itself reported is no change
/// to its assignments.
fn assignment_of(zone: &pb::Zone) -> (&str, &Option<pb::ZoneSpec>, u64, i32, &[String]) {
    (
        super::moves::assigned_host(zone),
        &zone.spec,
        zone.generation,
        zone.desired_state,
        &zone.addresses,
    )
}

impl FleetState {
    /// Applies `command` (see [`FleetState::apply`]) and returns, besides its result,
    /// what it changed of each host's assignments, in the order of the zones named.
    pub fn apply_tracked(
        &mut self,
        command: &pb::FleetCommand,
    ) -> (pb::CommandResult, Vec<HostChange>) {
        let mut uuids = Vec::new();
        touched(command, &mut uuids);
        uuids.sort();
        uuids.dedup();
        let before: Vec<Option<pb::Zone>> =
            uuids.iter().map(|u| self.zones.get(u).cloned()).collect();
        let result = self.apply(command);
        let mut changes = Vec::new();
        for (uuid, before) in uuids.iter().zip(before) {
            let after = self.zones.get(uuid);
            let old_host = before
                .as_ref()
                .map(super::moves::assigned_host)
                .unwrap_or("");
            let new_host = after.map(super::moves::assigned_host).unwrap_or("");
            if !old_host.is_empty() && old_host != new_host {
                changes.push(HostChange {
                    host_id: old_host.to_owned(),
                    change: Change::Removed(uuid.clone()),
                });
            }
            if let Some(after) = after.filter(|_| !new_host.is_empty()) {
                let same = before
                    .as_ref()
                    .is_some_and(|b| assignment_of(b) == assignment_of(after));
                if !same {
                    changes.push(HostChange {
                        host_id: new_host.to_owned(),
                        change: Change::Upsert(Box::new(self.for_agent(after))),
                    });
                }
            }
        }
        (result, changes)
    }

    /// Every zone assigned to `host_id`, as its agent gets it ([`FleetState::for_agent`]).
    pub fn zones_of_host(&self, host_id: &str) -> Vec<pb::Zone> {
        self.zones
            .values()
            .filter(|z| super::moves::assigned_host(z) == host_id)
            .map(|z| self.for_agent(z))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::Change;

    #[test]
    fn creates_updates_moves_and_reports_as_host_changes() {
        let mut fleet = FleetState::default();
        fleet.apply(&cmd(host("h1", 4096)));
        let (_, changes) = fleet.apply_tracked(&cmd(create(&["z1"], 256, "")));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].host_id, "h1");
        assert!(matches!(changes[0].change, Change::Upsert(ref z) if z.generation == 1));
        // A report of the zone's observed state is no change to the assignment.
        let report = Kind::ReportZoneStates(pb::ReportZoneStatesCommand {
            host_id: "h1".to_owned(),
            zones: vec![pb::ObservedZone {
                uuid: id("z1"),
                generation: 1,
                state: pb::ZoneState::Running as i32,
                ..Default::default()
            }],
        });
        assert!(fleet.apply_tracked(&cmd(report)).1.is_empty());
        // A refused command changes nothing.
        assert!(fleet
            .apply_tracked(&cmd(create(&["z1"], 256, "")))
            .1
            .is_empty());
        fleet.apply(&cmd(host("h2", 4096)));
        let (_, changes) =
            fleet.apply_tracked(&cmd(Kind::RescheduleZone(pb::RescheduleZoneCommand {
                host_lost: false,
                uuid: id("z1"),
            })));
        // h1 removes it first; h2 gets it once h1 has (see `moves`).
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].host_id, "h1");
        assert_eq!(changes[0].change, Change::Removed(id("z1")));
        let (_, changes) = fleet.apply_tracked(&cmd(Kind::ReleaseZone(pb::ReleaseZoneCommand {
            uuid: id("z1"),
            host_id: "h1".to_owned(),
        })));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].host_id, "h2");
    }
}
