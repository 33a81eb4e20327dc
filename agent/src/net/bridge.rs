//! The host bridge every zone NIC is a port of: created by the agent if
//! missing, with a fixed MAC, optionally enslaving an uplink interface, and
//! the host-protection rules of [`super::nft::add_host_script`].

use sha2::{Digest, Sha256};

use super::netlink::Netlink;
use super::{nft, NetError};

/// The bridge's default name.
pub const DEFAULT_BRIDGE: &str = "zfbr0";

/// The host bridge of a [`crate::zone::ZoneHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOptions {
    /// The bridge's name (default [`DEFAULT_BRIDGE`]).
    pub name: String,
    /// An interface made a port of the bridge (the zones' way out), if any.
    pub uplink: Option<String>,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        BridgeOptions {
            name: DEFAULT_BRIDGE.to_string(),
            uplink: None,
        }
    }
}

/// Checks a bridge or uplink name (what the kernel takes as an ifname).
pub fn check_name(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(NetError::Plan(format!(
            "bridge/uplink name {name:?} is not an interface name: 1 to 15 of [A-Za-z0-9._-]"
        )))
    }
}

/// The bridge's fixed MAC: `02` and 5 bytes of sha256 of its name, so it does
/// not change as ports come and go (which would stale the zones' ARP caches).
pub fn bridge_mac(name: &str) -> [u8; 6] {
    let d = Sha256::digest(format!("zonefleet-bridge:{name}").as_bytes());
    [0x02, d[0], d[1], d[2], d[3], d[4]]
}

/// Creates the bridge if missing (with its host-protection rules, which every
/// zone boot asserts again), sets it up, and makes the uplink a port.
/// Idempotent; netlink only when the bridge exists.
pub fn ensure_bridge(options: &BridgeOptions) -> Result<(), NetError> {
    check_name(&options.name)?;
    let mut nl = Netlink::open()?;
    let index = match nl.link_index(&options.name)? {
        Some(index) => {
            let kind = nl.link_kind(index)?;
            if kind.as_deref() != Some("bridge") {
                return Err(NetError::Plan(format!(
                    "{} exists but is a {} link, not a bridge",
                    options.name,
                    kind.as_deref().unwrap_or("unknown")
                )));
            }
            index
        }
        None => {
            match nl.create_bridge(&options.name, bridge_mac(&options.name)) {
                // Another agent command made it meanwhile.
                Err(NetError::Netlink {
                    source: nix::Error::EEXIST,
                    ..
                })
                | Ok(()) => {}
                Err(e) => return Err(e),
            }
            nft::run(&nft::add_host_script(&options.name))?;
            nl.link_index(&options.name)?.ok_or_else(|| {
                NetError::Plan(format!("bridge {} vanished after creation", options.name))
            })?
        }
    };
    nl.set_up(index, None)?;
    quiet_arp(&options.name)?;
    if let Some(uplink) = &options.uplink {
        check_name(uplink)?;
        let up = nl
            .link_index(uplink)?
            .ok_or_else(|| NetError::Plan(format!("uplink {uplink} does not exist")))?;
        nl.set_up(up, Some(index))?;
    }
    Ok(())
}

/// Makes the bridge answer ARP only for addresses on itself (it has none): without
/// this the kernel answers for the host's own addresses on every interface, so a
/// machine on the uplink's segment that asks for the host's address may be told the
/// bridge's MAC and send there what the host rules drop (the host's `Agent` listener
/// would then be unreachable from that segment).
fn quiet_arp(bridge: &str) -> Result<(), NetError> {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/arp_ignore");
    std::fs::write(&path, "1").map_err(|e| NetError::Plan(format!("{path}: {e}")))
}

/// Removes the bridge and its host rules (tests; an operator's cleanup).
pub fn remove_bridge(name: &str) -> Result<(), NetError> {
    check_name(name)?;
    let mut nl = Netlink::open()?;
    nl.delete_link_named(name)?;
    nft::run(&nft::remove_host_script(name))
}
