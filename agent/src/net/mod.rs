//! Zone networking: an exclusive IP stack per zone. Each zone has its own
//! network namespace (made by zsched's init side); each NIC of its spec is a
//! veth pair whose host end is a port of the host bridge and whose zone end is
//! `eth<i>` inside the zone, with its address, MTU, MAC and the default route.
//! Anti-spoofing rules (nftables, [`nft`]) let the zone send only from its own
//! addresses and MACs unless the spec allows spoofing.
//!
//! - [`plan`]: the per-zone plan resolved from the spec (names, MACs…).
//! - [`netlink`]: a blocking rtnetlink client.
//! - [`nft`]: zonefleet's nftables tables and the per-zone rules.
//! - [`bridge`]: the host bridge (created if missing).
//! - [`attach`] / [`detach`]: what zsched does between its child's `staged`
//!   and `go`, and when the zone ends.
//!
//! See `docs/networking.md`.

pub mod bridge;
pub mod netlink;
pub mod nft;
pub mod plan;

use std::os::fd::AsFd;

pub use bridge::{ensure_bridge, remove_bridge, BridgeOptions, DEFAULT_BRIDGE};
pub use plan::{NetPlan, NicPlan};

use netlink::{Netlink, VethSpec};

/// Why a zone's network could not be set up or removed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The spec cannot be networked on this host.
    #[error("{0}")]
    Plan(String),
    /// A netlink request failed.
    #[error("{what}: {source}")]
    Netlink {
        /// The operation.
        what: String,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// An nft transaction failed.
    #[error("nftables: {0}")]
    Nft(String),
}

/// Builds zone `plan`'s network around the zone whose init is `pid` (its
/// network namespace exists; it runs nothing of the zone yet): rules first, so
/// nothing the zone sends is ever unfiltered, then per NIC a veth pair whose
/// zone end is created inside the zone's namespace, the host end made a port
/// of the bridge, then inside the zone `lo` up, addresses, and the default
/// route. On failure, whatever was made is removed before returning.
pub fn attach(plan: &NetPlan, pid: i32) -> Result<(), NetError> {
    let result = attach_inner(plan, pid);
    if result.is_err() {
        let _ = detach(plan);
    }
    result
}

fn attach_inner(plan: &NetPlan, pid: i32) -> Result<(), NetError> {
    nft::add_zone(plan)?;
    let netns_path = format!("/proc/{pid}/ns/net");
    let netns = std::fs::File::open(&netns_path).map_err(|e| NetError::Netlink {
        what: format!("open {netns_path}"),
        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    let mut host = Netlink::open()?;
    let bridge = host
        .link_index(&plan.bridge)?
        .ok_or_else(|| NetError::Plan(format!("host bridge {} does not exist", plan.bridge)))?;
    for nic in &plan.nics {
        // A host end left by a zsched killed mid-setup.
        host.delete_link_named(&nic.host_if)?;
        host.create_veth(&VethSpec {
            host: &nic.host_if,
            peer: &nic.zone_if,
            peer_mac: nic.mac.0,
            mtu: nic.mtu,
            peer_netns: Some(netns.as_fd()),
        })?;
        let index = host.link_index(&nic.host_if)?.ok_or_else(|| {
            NetError::Plan(format!("veth {} vanished after creation", nic.host_if))
        })?;
        host.set_up(index, Some(bridge))?;
    }
    let mut zone = Netlink::open_in(netns.as_fd())?;
    set_loopback_up(&mut zone)?;
    for nic in &plan.nics {
        let index = zone
            .link_index(&nic.zone_if)?
            .ok_or_else(|| NetError::Plan(format!("{} is missing inside the zone", nic.zone_if)))?;
        zone.add_address(index, nic.ip)?;
        zone.set_up(index, None)?;
    }
    for nic in plan.nics.iter().filter(|n| n.primary) {
        if let Some(gateway) = nic.gateway {
            let index = zone
                .link_index(&nic.zone_if)?
                .ok_or_else(|| NetError::Plan(format!("{} vanished", nic.zone_if)))?;
            zone.add_default_route(index, gateway)?;
        }
    }
    Ok(())
}

/// Brings `lo` up in the network namespace of process `pid`: every zone has a
/// working `127.0.0.1`, NICs or not ([`attach`] does it for a zone with NICs).
pub fn loopback_up(pid: i32) -> Result<(), NetError> {
    let netns_path = format!("/proc/{pid}/ns/net");
    let netns = std::fs::File::open(&netns_path).map_err(|e| NetError::Netlink {
        what: format!("open {netns_path}"),
        source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    set_loopback_up(&mut Netlink::open_in(netns.as_fd())?)
}

fn set_loopback_up(zone: &mut Netlink) -> Result<(), NetError> {
    let lo = zone
        .link_index("lo")?
        .ok_or_else(|| NetError::Plan("the zone's network namespace has no lo".into()))?;
    zone.set_up(lo, None)
}

/// Removes zone `plan`'s host links and rules. Idempotent: what is already
/// gone is skipped. (The zone ends die with the zone's namespace and take the
/// host ends with them; deleting the host ends here makes that immediate.)
pub fn detach(plan: &NetPlan) -> Result<(), NetError> {
    let mut first_error = None;
    match Netlink::open() {
        Ok(mut host) => {
            for nic in &plan.nics {
                if let Err(e) = host.delete_link_named(&nic.host_if) {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(e) => {
            first_error.get_or_insert(e);
        }
    }
    if let Err(e) = nft::remove_zone(plan) {
        first_error.get_or_insert(e);
    }
    match first_error {
        None => Ok(()),
        Some(e) => Err(e),
    }
}
