//! What zones hold of their host's capacity.

use zonefleet_proto::pb;

use super::FleetState;
use crate::scheduler::snapshot::Resources;

impl FleetState {
    /// Adds (`sign` 1) or removes (`sign` -1) a zone's resources and count on its
    /// host's reported capacity.
    pub(super) fn hold(&mut self, zone: &pb::Zone, sign: i64) {
        let need = zone
            .spec
            .as_ref()
            .map(Resources::of_spec)
            .unwrap_or_default();
        let cpu = u32::try_from(need.cpu).unwrap_or(u32::MAX);
        if let Some(host) = self.hosts.get_mut(&zone.host_id) {
            let capacity = host.capacity.get_or_insert_with(Default::default);
            if sign > 0 {
                capacity.allocated_memory_mib += need.memory;
                capacity.allocated_cpu_percent = capacity.allocated_cpu_percent.saturating_add(cpu);
                capacity.allocated_disk_gib += need.disk;
                host.zone_count += 1;
            } else {
                capacity.allocated_memory_mib =
                    capacity.allocated_memory_mib.saturating_sub(need.memory);
                capacity.allocated_cpu_percent = capacity.allocated_cpu_percent.saturating_sub(cpu);
                capacity.allocated_disk_gib = capacity.allocated_disk_gib.saturating_sub(need.disk);
                host.zone_count = host.zone_count.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn zones_are_placed_and_capacity_is_held() {
        let mut s = FleetState::default();
        s.apply(&cmd(host("h1", 1024)));
        s.apply(&cmd(host("h2", 2048)));
        // Binpack: the fullest host that fits first.
        let zones = zones_of(s.apply(&cmd(create(&["z1", "z2"], 1024, ""))));
        assert_eq!(zones[0].host_id, "h1");
        assert_eq!(zones[1].host_id, "h2");
        assert_eq!(
            s.hosts["h2"]
                .capacity
                .as_ref()
                .unwrap()
                .allocated_memory_mib,
            1024
        );
        // Full: the next zone is pending with an explanation.
        let zones = zones_of(s.apply(&cmd(create(&["z3"], 1024, ""))));
        assert_eq!(zones[0].host_id, "h2");
        let zones = zones_of(s.apply(&cmd(create(&["z4"], 1024, ""))));
        assert_eq!(zones[0].host_id, "");
        assert_eq!(
            zones[0].message,
            "pending: no host: 2 lack memory (need 1024 MiB)"
        );
        // Deleting gives the memory back.
        s.apply(&cmd(Kind::DeleteZone(pb::DeleteZoneCommand {
            uuid: id("z3"),
        })));
        assert_eq!(
            s.hosts["h2"]
                .capacity
                .as_ref()
                .unwrap()
                .allocated_memory_mib,
            1024
        );
        assert_eq!(s.hosts["h2"].zone_count, 1);
    }
}
