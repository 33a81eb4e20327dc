//! Networks: adding and deleting them.

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;

use super::{ok, FleetState, StateError};

impl FleetState {
    pub(super) fn put_network(
        &mut self,
        c: &pb::PutNetworkCommand,
    ) -> Result<pb::CommandResult, StateError> {
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

    pub(super) fn delete_network(&mut self, uuid: &str) -> Result<pb::CommandResult, StateError> {
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
}
