//! Where a new zone goes: the seam for the scheduler.
//!
//! The real scheduler (filters, scorers, spread and affinity; a later issue) is a
//! [`Placer`]. Until then [`MostFreeMemory`] places a zone on the ready host with the
//! most free memory that fits it (ties broken by `host_id`), or explains why none
//! does. A placer must be a pure function of its arguments: every controller runs it
//! while applying the same log entry and must reach the same answer.

use std::collections::BTreeMap;

use zonefleet_proto::pb;

use super::zone_memory_mib;

/// Decides the host of a new zone.
pub trait Placer: Send + Sync {
    /// The `host_id` for a zone of `spec`, or an explanation of why none fits.
    /// `pending` holds memory (MiB) already promised to zones placed earlier in the
    /// same command, by host.
    fn place(
        &self,
        hosts: &BTreeMap<String, pb::Host>,
        spec: &pb::ZoneSpec,
        pending: &BTreeMap<String, u64>,
    ) -> Result<String, String>;
}

/// The interim placer: the ready host with the most free memory that fits.
#[derive(Debug, Clone, Copy, Default)]
pub struct MostFreeMemory;

/// Free memory of a host in MiB, less what `pending` promises.
pub fn free_memory_mib(host: &pb::Host, pending: &BTreeMap<String, u64>) -> u64 {
    let capacity = host.capacity.unwrap_or_default();
    capacity
        .memory_mib
        .saturating_sub(capacity.allocated_memory_mib)
        .saturating_sub(pending.get(&host.host_id).copied().unwrap_or(0))
}

impl Placer for MostFreeMemory {
    fn place(
        &self,
        hosts: &BTreeMap<String, pb::Host>,
        spec: &pb::ZoneSpec,
        pending: &BTreeMap<String, u64>,
    ) -> Result<String, String> {
        let need = zone_memory_mib(spec);
        let mut not_ready = 0;
        let mut too_small = 0;
        let mut best: Option<(u64, &str)> = None;
        for host in hosts.values() {
            if host.status != pb::HostStatus::Ready as i32 {
                not_ready += 1;
                continue;
            }
            let free = free_memory_mib(host, pending);
            if free < need {
                too_small += 1;
                continue;
            }
            // Iteration is in host_id order, so `>` keeps the smallest id on ties.
            if best.is_none_or(|(f, _)| free > f) {
                best = Some((free, &host.host_id));
            }
        }
        match best {
            Some((_, host)) => Ok(host.to_owned()),
            None if hosts.is_empty() => Err("no host is registered".to_owned()),
            None => Err(format!(
                "no ready host has {need} MiB of memory free ({} hosts: {not_ready} not ready, \
                 {too_small} lacked memory)",
                hosts.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, memory: u64, allocated: u64, status: pb::HostStatus) -> pb::Host {
        pb::Host {
            host_id: id.to_owned(),
            status: status as i32,
            capacity: Some(pb::Capacity {
                memory_mib: memory,
                allocated_memory_mib: allocated,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn spec(memory: u64) -> pb::ZoneSpec {
        pb::ZoneSpec {
            max_physical_memory_mib: Some(memory),
            ..Default::default()
        }
    }

    #[test]
    fn picks_the_ready_host_with_most_free_memory() {
        let hosts: BTreeMap<_, _> = [
            host("a", 4096, 0, pb::HostStatus::Cordoned),
            host("b", 2048, 1024, pb::HostStatus::Ready),
            host("c", 2048, 0, pb::HostStatus::Ready),
            host("d", 2048, 0, pb::HostStatus::Ready),
        ]
        .into_iter()
        .map(|h| (h.host_id.clone(), h))
        .collect();
        let none = BTreeMap::new();
        assert_eq!(
            MostFreeMemory.place(&hosts, &spec(512), &none).unwrap(),
            "c"
        );
        let pending = [("c".to_owned(), 1024)].into();
        assert_eq!(
            MostFreeMemory.place(&hosts, &spec(512), &pending).unwrap(),
            "d"
        );
        let err = MostFreeMemory
            .place(&hosts, &spec(4000), &none)
            .unwrap_err();
        assert_eq!(
            err,
            "no ready host has 4000 MiB of memory free (4 hosts: 1 not ready, 3 lacked memory)"
        );
        assert_eq!(
            MostFreeMemory
                .place(&BTreeMap::new(), &spec(1), &none)
                .unwrap_err(),
            "no host is registered"
        );
    }
}
