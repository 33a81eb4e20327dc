//! Moving zones between hosts, without ever running one on two:
//!
//! * a zone on a **live** host (an operator's reschedule, a drain) is placed on its new
//!   host at once (the capacity is held there) but assigned to no host until the old
//!   one has removed it (`Zone.leaving_host_id`): the old host's agent sees the zone
//!   removed, deletes it and says so (its report, or its heartbeat's applied revision,
//!   commits `ReleaseZone`), and only then does the new host's agent see it;
//! * a zone of a **lost** host (`RescheduleZone.host_lost`, the leader's, once that
//!   host's lease has surely expired and its agent fenced the zone) is assigned to its
//!   new host at once, and refused unless the host is still down: a host that came
//!   back in the meantime keeps its zones. When no host fits, the zone stays where it
//!   is, pending with the scheduler's explanation, and is tried again.
//!
//! The rescheduling pause (`ReschedulePause`) is here too: the leader pauses automatic
//! moves on a mass loss, an operator resumes them.

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;

use super::{ok, FleetState, StateError};
use crate::scheduler::{self, Context};

/// The host a zone is assigned to now, the one whose agent runs it: none (empty) while
/// the zone moves off another host.
pub fn assigned_host(zone: &pb::Zone) -> &str {
    if zone.leaving_host_id.is_empty() {
        &zone.host_id
    } else {
        ""
    }
}

impl FleetState {
    pub(super) fn reschedule_zone(
        &mut self,
        c: &pb::RescheduleZoneCommand,
    ) -> Result<pb::CommandResult, StateError> {
        let uuid = c.uuid.as_str();
        let zone = self.live_zone_mut(uuid)?.clone();
        if !zone.leaving_host_id.is_empty() {
            return Err(StateError::FailedPrecondition(format!(
                "zone {uuid} is already moving off host {}",
                zone.leaving_host_id
            )));
        }
        let host_status = self.hosts.get(&zone.host_id).map(|h| h.status);
        if c.host_lost && host_status != Some(pb::HostStatus::Down as i32) {
            return Err(StateError::FailedPrecondition(format!(
                "host {} of zone {uuid} is no longer down",
                zone.host_id
            )));
        }
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
            scheduler::Parsed::of(&spec).and_then(|parsed| {
                scheduler::decide(&self.derived.view, &ctx, &spec, &parsed, current, 0)
            })
        };
        let choice = match decided {
            Ok(choice) => choice,
            Err(why) => {
                self.derived.view.add_zone(&zone);
                if c.host_lost {
                    // It waits where it is (fenced there) and is tried again.
                    let waiting = self.live_zone_mut(uuid)?;
                    waiting.pending_reason = why;
                    return Ok(ok(R::Zone(waiting.clone())));
                }
                return Err(StateError::FailedPrecondition(why));
            }
        };
        self.hold(&zone, -1);
        let mut moved = zone;
        let old_host = std::mem::replace(
            &mut moved.host_id,
            self.derived.view.host(choice.slot).id.to_string(),
        );
        // A lost host's agent fenced the zone; a live one must remove it first. A host
        // the fleet no longer knows runs nothing.
        if !c.host_lost && self.hosts.contains_key(&old_host) {
            moved.leaving_host_id = old_host;
        }
        moved.generation += 1;
        moved.message.clear();
        moved.pending_reason.clear();
        moved.observed_state = pb::ZoneState::Unspecified as i32;
        moved.observed_generation = 0;
        self.hold(&moved, 1);
        self.derived.view.add_zone(&moved);
        self.zones.insert(uuid.to_owned(), moved.clone());
        Ok(ok(R::Zone(moved)))
    }

    pub(super) fn release_zone(
        &mut self,
        c: &pb::ReleaseZoneCommand,
    ) -> Result<pb::CommandResult, StateError> {
        let Some(zone) = self.zones.get_mut(&c.uuid) else {
            return Ok(ok(R::Done(true)));
        };
        if zone.leaving_host_id == c.host_id {
            zone.leaving_host_id.clear();
        }
        Ok(ok(R::Zone(zone.clone())))
    }

    pub(super) fn set_reschedule_pause(
        &mut self,
        c: &pb::SetReschedulePauseCommand,
        at: i64,
    ) -> Result<pb::CommandResult, StateError> {
        let pause = c
            .pause
            .clone()
            .ok_or_else(|| StateError::InvalidArgument("pause is missing".to_owned()))?;
        self.reschedule_pause = pb::ReschedulePause {
            since_unix_ms: at,
            ..pause
        };
        Ok(ok(R::Done(true)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::assigned_host;

    fn reschedule(uuid: &str, host_lost: bool) -> Kind {
        Kind::RescheduleZone(pb::RescheduleZoneCommand {
            uuid: id(uuid),
            host_lost,
        })
    }

    #[test]
    fn a_zone_moving_off_a_live_host_is_assigned_nowhere_until_released() {
        let mut s = FleetState::default();
        s.apply(&cmd(host("h1", 4096)));
        s.apply(&cmd(host("h2", 4096)));
        let zone = zones_of(s.apply(&cmd(create(&["z1"], 256, "")))).remove(0);
        let old = zone.host_id.clone();
        let (result, changes) = s.apply_tracked(&cmd(reschedule("z1", false)));
        let moved = zone_of(result);
        assert_ne!(moved.host_id, old);
        assert_eq!(moved.leaving_host_id, old);
        assert_eq!(assigned_host(&moved), "");
        // The old host is told to remove it; the new one is told nothing yet.
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].host_id, old);
        // Refused while it moves.
        assert!(error_of(s.apply(&cmd(reschedule("z1", false))))
            .message
            .contains("already moving"));
        // A release by another host changes nothing; by the old one, it lands.
        let other = moved.host_id.clone();
        let release = |h: &str| {
            cmd(Kind::ReleaseZone(pb::ReleaseZoneCommand {
                uuid: id("z1"),
                host_id: h.to_owned(),
            }))
        };
        let (_, changes) = s.apply_tracked(&release(&other));
        assert!(changes.is_empty());
        let (_, changes) = s.apply_tracked(&release(&old));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].host_id, other);
        assert_eq!(assigned_host(&s.zones[&id("z1")]), other);
    }

    #[test]
    fn a_lost_hosts_zone_moves_only_while_the_host_is_down_and_waits_when_nothing_fits() {
        let mut s = FleetState::default();
        s.apply(&cmd(host("h1", 4096)));
        let zone = zones_of(s.apply(&cmd(create(&["z1"], 256, "")))).remove(0);
        assert_eq!(zone.host_id, "h1");
        // Not down: refused.
        assert!(error_of(s.apply(&cmd(reschedule("z1", true))))
            .message
            .contains("no longer down"));
        set_status(&mut s, "h1", pb::HostStatus::Down);
        // Down, nowhere to go: pending, still on h1.
        let waiting = zone_of(s.apply(&cmd(reschedule("z1", true))));
        assert_eq!(waiting.host_id, "h1");
        assert!(waiting.pending_reason.contains("no host"), "{waiting:?}");
        s.apply(&cmd(host("h2", 4096)));
        let (result, changes) = s.apply_tracked(&cmd(reschedule("z1", true)));
        let moved = zone_of(result);
        assert_eq!(moved.host_id, "h2");
        assert!(moved.leaving_host_id.is_empty() && moved.pending_reason.is_empty());
        // h1 is told it lost the zone, h2 that it has it: at once.
        let mut hosts: Vec<&str> = changes.iter().map(|c| c.host_id.as_str()).collect();
        hosts.sort();
        assert_eq!(hosts, ["h1", "h2"]);
    }
}
