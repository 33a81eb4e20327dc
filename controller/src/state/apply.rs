//! Applying one command to the fleet state: [`FleetState::apply`] hands each command
//! to the handler of its object (`zones`, `create`, `hosts`, `networks`, `images`,
//! `tokens`, `settings`). Each handler checks everything first and changes the state
//! only when the whole command succeeds: a refused command leaves nothing half-done
//! behind. Before any handler, [`check::command`] applies the content rules the
//! operator API applies, so a command that bypassed the API is refused the same way.

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;
use zonefleet_proto::pb::fleet_command::Kind;

use super::{check, ok, FleetState, StateError};

impl FleetState {
    /// Applies `command`: a pure function of the state and the command.
    pub fn apply(&mut self, command: &pb::FleetCommand) -> pb::CommandResult {
        let at = command.at_unix_ms;
        // Every command's content is checked here, on every replica, whatever path
        // it reached the log by (see `check`).
        if let Some(Err(refused)) = command.kind.as_ref().map(check::command) {
            return refused.to_result();
        }
        let outcome = match &command.kind {
            Some(Kind::CreateZones(c)) => self.create_zones(c, at),
            Some(Kind::UpdateZone(c)) => self.update_zone(c),
            Some(Kind::SetZoneState(c)) => self.set_zone_state(c),
            Some(Kind::DeleteZone(c)) => self.delete_zone(&c.uuid),
            Some(Kind::RegisterHost(c)) => self.register_host(c),
            Some(Kind::SetHostStatus(c)) => self.set_host_status(c, at),
            Some(Kind::PutNetwork(c)) => self.put_network(c),
            Some(Kind::DeleteNetwork(c)) => self.delete_network(&c.uuid),
            Some(Kind::PutImage(c)) => self.put_image(c),
            Some(Kind::DeleteImage(c)) => self.delete_image(c),
            Some(Kind::CreateJoinToken(c)) => self.create_join_token(c, at),
            Some(Kind::SetFleetSettings(c)) => self.set_fleet_settings(c),
            Some(Kind::SetHostInventory(c)) => self.set_host_inventory(c),
            Some(Kind::RescheduleZone(c)) => self.reschedule_zone(c),
            Some(Kind::ReleaseZone(c)) => self.release_zone(c),
            Some(Kind::SetReschedulePause(c)) => self.set_reschedule_pause(c, at),
            Some(Kind::RevokeCertificate(c)) => self.revoke_certificate(c, at),
            Some(Kind::EnrollHost(c)) => self.enroll_host(c, at),
            Some(Kind::ReportZoneStates(c)) => self.report_zone_states(c),
            Some(Kind::RevokeJoinToken(c)) => self.revoke_join_token(c),
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

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
