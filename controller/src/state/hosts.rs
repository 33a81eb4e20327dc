//! Hosts: registering them, their status and their operator-set inventory.

use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;

use super::{ok, FleetState, StateError};

impl FleetState {
    pub(super) fn register_host(
        &mut self,
        c: &pb::RegisterHostCommand,
    ) -> Result<pb::CommandResult, StateError> {
        let mut host = c
            .host
            .clone()
            .ok_or_else(|| StateError::InvalidArgument("host is missing".to_owned()))?;
        if host.host_id.is_empty() {
            return Err(StateError::InvalidArgument("host_id is empty".to_owned()));
        }
        let known = self.hosts.get(&host.host_id);
        if host.status == pb::HostStatus::Unspecified as i32 {
            host.status = known.map_or(pb::HostStatus::Ready as i32, |k| k.status);
        }
        // Rack and labels are controller-side inventory: set by operators or the join
        // token when the host is first known, never replaced by what it reports later.
        if let Some(known) = known {
            host.rack = known.rack.clone();
            host.labels = known.labels.clone();
        } else if let Some(enrolled) = self.enrollments.remove(&host.host_id) {
            // Enrolled with a join token: the token's inventory, not what was sent.
            host.rack = enrolled.rack;
            host.labels = enrolled.labels;
        }
        // What zones hold is the controllers' to count, not the reporter's.
        let held = known.and_then(|k| k.capacity).unwrap_or_default();
        let capacity = host.capacity.get_or_insert_with(Default::default);
        capacity.allocated_memory_mib = held.allocated_memory_mib;
        capacity.allocated_cpu_percent = held.allocated_cpu_percent;
        capacity.allocated_disk_gib = held.allocated_disk_gib;
        host.zone_count = known.map_or(0, |k| k.zone_count);
        self.derived.view.upsert_host(&host);
        self.hosts.insert(host.host_id.clone(), host.clone());
        Ok(ok(R::Host(host)))
    }

    pub(super) fn set_host_status(
        &mut self,
        c: &pb::SetHostStatusCommand,
        at: i64,
    ) -> Result<pb::CommandResult, StateError> {
        let host = self
            .hosts
            .get_mut(&c.host_id)
            .ok_or_else(|| StateError::NotFound(format!("host {} does not exist", c.host_id)))?;
        if pb::HostStatus::try_from(c.status).is_err() || c.status == 0 {
            return Err(StateError::InvalidArgument(format!(
                "status: {} is not a host status",
                c.status
            )));
        }
        // A conditional transition whose condition no longer holds (an operator
        // cordoned the host meanwhile) changes nothing.
        if c.from_status.is_some_and(|from| from != host.status) {
            return Ok(ok(R::Host(host.clone())));
        }
        if host.status != c.status {
            host.status_since_unix_ms = at;
        }
        // The leader's liveness transitions are conditional; an operator's is not.
        host.status_reason = match (c.from_status, pb::HostStatus::try_from(c.status)) {
            (Some(_), Ok(pb::HostStatus::Down)) => "lease lapsed".to_owned(),
            (Some(_), _) => "heartbeats resumed".to_owned(),
            (None, _) => "operator".to_owned(),
        };
        if c.status != pb::HostStatus::Down as i32 && c.from_status.is_none() {
            host.admin_status = c.status;
        }
        host.status = c.status;
        let host = host.clone();
        self.derived.view.upsert_host(&host);
        Ok(ok(R::Host(host)))
    }

    pub(super) fn set_host_inventory(
        &mut self,
        c: &pb::SetHostInventoryCommand,
    ) -> Result<pb::CommandResult, StateError> {
        let inventory = c
            .inventory
            .as_ref()
            .ok_or_else(|| StateError::InvalidArgument("inventory is missing".to_owned()))?;
        let host = self.hosts.get_mut(&inventory.host_id).ok_or_else(|| {
            StateError::NotFound(format!("host {} does not exist", inventory.host_id))
        })?;
        if let Some(rack) = &inventory.rack {
            host.rack = rack.clone();
        }
        for key in &inventory.remove_labels {
            host.labels.remove(key);
        }
        for (k, v) in &inventory.labels {
            host.labels.insert(k.clone(), v.clone());
        }
        let host = host.clone();
        self.derived.view.upsert_host(&host);
        Ok(ok(R::Host(host)))
    }
}
