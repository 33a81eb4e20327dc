//! Observed zone states, as the agents report them.

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;

use super::{ok, FleetState, StateError};

/// Whether applying `observed` would change `zone`'s record: what a report commits.
pub fn is_transition(zone: &pb::Zone, observed: &pb::ObservedZone) -> bool {
    zone.observed_state != observed.state
        || zone.observed_generation != observed.generation
        || zone.message != observed.message
        || zone.init_exit_status != observed.init_exit_status
        || (observed.state == pb::ZoneState::Deleted as i32
            && zone.desired_state == pb::ZoneState::Deleted as i32)
}

/// Whether `zone` is assigned to `host_id` (what a host may report on).
pub fn assigned_to(zone: &pb::Zone, host_id: &str) -> bool {
    !host_id.is_empty() && super::moves::assigned_host(zone) == host_id
}

/// Whether `observed` says that `host_id`, which `zone` is moving off, no longer has
/// it: what lets the zone land on its new host.
pub fn releases(zone: &pb::Zone, host_id: &str, observed: &pb::ObservedZone) -> bool {
    !host_id.is_empty()
        && zone.leaving_host_id == host_id
        && observed.state == pb::ZoneState::Deleted as i32
}

impl FleetState {
    /// Records what the host's agent observed. A zone not assigned to the host, or
    /// reported at a generation it never had, is skipped (the controller that took the
    /// report logged it); a deleted zone the agent reports gone is forgotten.
    pub(super) fn report_zone_states(
        &mut self,
        c: &pb::ReportZoneStatesCommand,
    ) -> Result<pb::CommandResult, StateError> {
        for observed in &c.zones {
            let Some(zone) = self.zones.get_mut(&observed.uuid) else {
                continue;
            };
            if releases(zone, &c.host_id, observed) {
                zone.leaving_host_id.clear();
                continue;
            }
            if !assigned_to(zone, &c.host_id) || observed.generation > zone.generation {
                continue;
            }
            if observed.state == pb::ZoneState::Deleted as i32
                && zone.desired_state == pb::ZoneState::Deleted as i32
            {
                // Its capacity and addresses were given back when it was deleted.
                self.zones.remove(&observed.uuid);
                continue;
            }
            zone.observed_state = observed.state;
            zone.observed_generation = observed.generation;
            zone.message = observed.message.clone();
            zone.init_exit_status = observed.init_exit_status;
        }
        Ok(ok(R::Done(true)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    fn report(host: &str, uuid: &str, state: pb::ZoneState) -> Kind {
        Kind::ReportZoneStates(pb::ReportZoneStatesCommand {
            host_id: host.to_owned(),
            zones: vec![pb::ObservedZone {
                uuid: id(uuid),
                generation: 1,
                state: state as i32,
                message: String::new(),
                init_exit_status: None,
            }],
        })
    }

    #[test]
    fn only_the_zones_host_reports_and_a_deleted_zone_goes_once_gone() {
        let mut fleet = FleetState::default();
        fleet.apply(&cmd(host("h1", 4096)));
        fleet.apply(&cmd(host("h2", 4096)));
        let zone = zones_of(fleet.apply(&cmd(create(&["z1"], 256, "")))).remove(0);
        let (on, other) = if zone.host_id == "h1" {
            ("h1", "h2")
        } else {
            ("h2", "h1")
        };
        fleet.apply(&cmd(report(other, "z1", pb::ZoneState::Failed)));
        assert_eq!(fleet.zones[&id("z1")].observed_state, 0);
        fleet.apply(&cmd(report(on, "z1", pb::ZoneState::Running)));
        assert_eq!(
            fleet.zones[&id("z1")].observed_state,
            pb::ZoneState::Running as i32
        );
        fleet.apply(&cmd(Kind::DeleteZone(pb::DeleteZoneCommand {
            uuid: id("z1"),
        })));
        assert!(fleet.zones.contains_key(&id("z1")));
        fleet.apply(&cmd(report(on, "z1", pb::ZoneState::Deleted)));
        assert!(!fleet.zones.contains_key(&id("z1")));
    }
}
