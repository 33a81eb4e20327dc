//! Zone addresses from a network's provision range: the lowest free address is
//! handed out (deterministic on every replica), an address held by a live zone is
//! never handed out again, and a deleted zone's addresses become free.
//!
//! The leases themselves are replicated state (`FleetState::leases`); [`Pools`] is
//! the per-network index of the addresses in use that makes finding the lowest free
//! one cheap.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use zonefleet_proto::pb;

/// An address as a number (an IPv4 address as its 32 bits).
pub fn to_number(addr: &str) -> Option<u128> {
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some(u128::from(u32::from(a))),
        IpAddr::V6(a) => Some(u128::from(a)),
    }
}

fn to_text(n: u128, v4: bool) -> String {
    if v4 {
        IpAddr::from(std::net::Ipv4Addr::from(
            u32::try_from(n).expect("an IPv4 address"),
        ))
        .to_string()
    } else {
        IpAddr::from(std::net::Ipv6Addr::from(n)).to_string()
    }
}

/// Addresses in use, per network uuid.
#[derive(Debug, Clone, Default)]
pub struct Pools {
    used: HashMap<String, BTreeSet<u128>>,
}

impl Pools {
    /// The index of `leases` ((network uuid, address) → zone uuid).
    pub fn build(leases: &BTreeMap<(String, String), String>) -> Self {
        let mut pools = Pools::default();
        for (network, address) in leases.keys() {
            pools.take(network, address);
        }
        pools
    }

    /// Marks `address` of `network` in use.
    pub fn take(&mut self, network: &str, address: &str) {
        if let Some(n) = to_number(address) {
            self.used.entry(network.to_owned()).or_default().insert(n);
        }
    }

    /// Marks `address` of `network` free.
    pub fn release(&mut self, network: &str, address: &str) {
        if let (Some(n), Some(set)) = (to_number(address), self.used.get_mut(network)) {
            set.remove(&n);
        }
    }

    /// Addresses of `network` in use.
    pub fn in_use(&self, network: &str) -> usize {
        self.used.get(network).map_or(0, BTreeSet::len)
    }

    /// The lowest free address of `net`'s provision range, or why there is none.
    pub fn lowest_free(&self, net: &pb::Network) -> Result<String, String> {
        let bad = || format!("network {} has a malformed provision range", net.name);
        let start: IpAddr = net.provision_start.parse().map_err(|_| bad())?;
        let end: IpAddr = net.provision_end.parse().map_err(|_| bad())?;
        if start.is_ipv4() != end.is_ipv4() {
            return Err(bad());
        }
        let v4 = start.is_ipv4();
        let (start, end) = (
            to_number(&net.provision_start).ok_or_else(bad)?,
            to_number(&net.provision_end).ok_or_else(bad)?,
        );
        let mut candidate = start;
        if let Some(used) = self.used.get(&net.uuid) {
            for n in used.range(start..=end) {
                if *n != candidate {
                    break;
                }
                candidate += 1;
            }
        }
        if candidate <= end && end >= start {
            Ok(to_text(candidate, v4))
        } else {
            Err(format!(
                "network {} has no free address left in {}..{}",
                net.name, net.provision_start, net.provision_end
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(start: &str, end: &str) -> pb::Network {
        pb::Network {
            uuid: "n".into(),
            name: "lan".into(),
            provision_start: start.into(),
            provision_end: end.into(),
            ..Default::default()
        }
    }

    #[test]
    fn lowest_free_fills_holes_and_runs_out() {
        let n = net("10.0.0.10", "10.0.0.12");
        let mut p = Pools::default();
        assert_eq!(p.lowest_free(&n).unwrap(), "10.0.0.10");
        p.take("n", "10.0.0.10");
        p.take("n", "10.0.0.11");
        assert_eq!(p.lowest_free(&n).unwrap(), "10.0.0.12");
        p.take("n", "10.0.0.12");
        assert_eq!(
            p.lowest_free(&n).unwrap_err(),
            "network lan has no free address left in 10.0.0.10..10.0.0.12"
        );
        p.release("n", "10.0.0.11");
        assert_eq!(p.lowest_free(&n).unwrap(), "10.0.0.11");
        let v6 = net("fd00::1", "fd00::2");
        assert_eq!(p.lowest_free(&v6).unwrap(), "fd00::1");
    }
}
