//! Reading the fleet state: resolving what operators type into objects.

use zonefleet_proto::pb;

use super::{zone_uuid, FleetState, StateError};

impl FleetState {
    /// The zone named by a uuid, a unique uuid prefix (at least 4 characters) or an
    /// alias of a live zone.
    pub fn resolve_zone(&self, reference: &str) -> Result<&pb::Zone, StateError> {
        if reference.is_empty() {
            return Err(StateError::InvalidArgument(
                "zone: empty reference".to_owned(),
            ));
        }
        if let Some(zone) = self.zones.get(reference) {
            return Ok(zone);
        }
        let by_alias: Vec<&pb::Zone> = self
            .zones
            .values()
            .filter(|z| {
                z.desired_state != pb::ZoneState::Deleted as i32
                    && z.spec.as_ref().and_then(|s| s.alias.as_deref()) == Some(reference)
            })
            .collect();
        if by_alias.len() == 1 {
            return Ok(by_alias[0]);
        }
        if reference.len() >= 4 {
            let mut matches = self
                .zones
                .range(reference.to_owned()..)
                .take_while(|(k, _)| k.starts_with(reference));
            if let Some((_, zone)) = matches.next() {
                if matches.next().is_none() {
                    return Ok(zone);
                }
                return Err(StateError::InvalidArgument(format!(
                    "zone {reference:?} is ambiguous: more than one zone uuid starts with it"
                )));
            }
        }
        Err(StateError::NotFound(format!(
            "zone {reference:?} does not exist"
        )))
    }

    /// The network named by uuid or name.
    pub fn find_network(&self, reference: &str) -> Option<&pb::Network> {
        self.networks
            .get(reference)
            .or_else(|| self.networks.values().find(|n| n.name == reference))
    }

    /// Zones on `host_id` (all when `None`) in state `state` (any when `None`),
    /// matching the desired or the observed state.
    pub fn list_zones(&self, host_id: Option<&str>, state: Option<i32>) -> Vec<pb::Zone> {
        self.zones
            .values()
            .filter(|z| host_id.is_none_or(|h| z.host_id == h))
            .filter(|z| state.is_none_or(|s| z.desired_state == s || z.observed_state == s))
            .cloned()
            .collect()
    }

    /// The uuid of every zone (for checks in tests and tools).
    pub fn zone_uuids(&self) -> Vec<String> {
        self.zones
            .values()
            .map(|z| zone_uuid(z).to_owned())
            .collect()
    }
}
