//! The lifecycle of an existing zone: updating its spec, starting, stopping and
//! rebooting it and deleting it (moving it is `moves`).

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;
use zonefleet_proto::spec::{check_immutable, ZoneSpec};

use super::{ok, FleetState, StateError};
use crate::scheduler::snapshot::Resources;

impl FleetState {
    pub(super) fn live_zone_mut(&mut self, uuid: &str) -> Result<&mut pb::Zone, StateError> {
        match self.zones.get_mut(uuid) {
            Some(z) if z.desired_state != pb::ZoneState::Deleted as i32 => Ok(z),
            Some(_) => Err(StateError::FailedPrecondition(format!(
                "zone {uuid} is being deleted"
            ))),
            None => Err(StateError::NotFound(format!("zone {uuid} does not exist"))),
        }
    }

    pub(super) fn update_zone(
        &mut self,
        c: &pb::UpdateZoneCommand,
    ) -> Result<pb::CommandResult, StateError> {
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
        // What can change (`ZonePatch`, docs/zone-spec.md) is checked again here, as
        // a command may not have come through the operator API; then what the fleet
        // must still have room for, capacity and addresses.
        let old_spec = zone.spec.clone().unwrap_or_default();
        let immutable = ZoneSpec::try_from(old_spec.clone())
            .and_then(|old| Ok((old, ZoneSpec::try_from(spec.clone())?)))
            .map_err(|e| StateError::InvalidArgument(e.to_string()))
            .and_then(|(old, new)| {
                check_immutable(&old, &new).map_err(|e| StateError::InvalidArgument(e.to_string()))
            });
        immutable?;
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
        // NICs take effect at the zone's next boot; their addresses are leased now.
        let addresses = self.readdress(&zone, &spec)?;
        self.derived.view.remove_zone(&zone);
        self.hold(&zone, -1);
        let mut zone = zone;
        zone.spec = Some(spec);
        zone.generation += 1;
        if let Some(addresses) = addresses {
            zone.addresses = addresses;
            self.take_leases(&zone);
        }
        self.hold(&zone, 1);
        self.derived.view.add_zone(&zone);
        self.zones.insert(c.uuid.clone(), zone.clone());
        Ok(ok(R::Zone(zone)))
    }

    pub(super) fn set_zone_state(
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

    pub(super) fn delete_zone(&mut self, uuid: &str) -> Result<pb::CommandResult, StateError> {
        let mut zone = self.live_zone_mut(uuid)?.clone();
        self.hold(&zone, -1);
        self.derived.view.remove_zone(&zone);
        self.release_leases(&zone);
        zone.desired_state = pb::ZoneState::Deleted as i32;
        zone.generation += 1;
        if zone.host_id.is_empty() || !zone.leaving_host_id.is_empty() {
            // Never placed, or moving (the host it leaves removes it anyway, the host
            // it was going to never had it): nothing to tear down anywhere.
            self.zones.remove(uuid);
        } else {
            self.zones.insert(uuid.to_owned(), zone.clone());
        }
        Ok(ok(R::Zone(zone)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn stop_start_reboot_move_the_generation() {
        let mut s = FleetState::default();
        s.apply(&cmd(create(&["z1"], 256, "")));
        let set = |state: pb::ZoneState, reboot| {
            cmd(Kind::SetZoneState(pb::SetZoneStateCommand {
                uuid: id("z1"),
                desired_state: state as i32,
                reboot,
            }))
        };
        s.apply(&set(pb::ZoneState::Installed, false));
        assert_eq!(s.zones[&id("z1")].generation, 2);
        let err = error_of(s.apply(&set(pb::ZoneState::Installed, true)));
        assert_eq!(err.code, tonic::Code::FailedPrecondition as i32);
        s.apply(&set(pb::ZoneState::Running, false));
        s.apply(&set(pb::ZoneState::Running, true));
        assert_eq!(s.zones[&id("z1")].generation, 4);
    }
}
