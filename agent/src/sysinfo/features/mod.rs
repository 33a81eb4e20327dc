//! Kernel feature probes. Each one tries the real thing where it can — in a
//! forked child when trying changes process state (a seccomp filter, a new
//! user or network namespace) — and says in `detail` how it decided.
//!
//! Network probes run in a child that `unshare(CLONE_NEWNET)`s into a
//! namespace of its own and creates links there over rtnetlink (messages
//! built with `netlink-packet-route` before the fork; the child only makes
//! raw `socket`/`send`/`recv` calls, which are safe after `fork` in a
//! multi-threaded agent). The namespace and every link in it die with the
//! child. Children are killed after `CHILD_TIMEOUT` (5 s).
//!
//! One module per probe group ([`process`], [`filesystems`], [`cgroups`],
//! [`network`]); the network probes' netlink messages are built in
//! [`messages`].

use zonefleet_proto::feature as names;
use zonefleet_proto::host::Feature;

use super::child::ChildResult;
use crate::cgroup::detect::Layout;

pub mod cgroups;
pub mod filesystems;
mod messages;
pub mod network;
pub mod process;

pub use cgroups::{cgroup_kill, cgroup_v1, cgroup_v2, memory_swap_accounting};
pub use filesystems::{ext4, idmapped_mounts, loop_devices, overlayfs};
pub use network::network;
pub use process::{pidfd, seccomp, user_namespaces};

/// A probe's answer.
fn found(name: &str, available: bool, detail: impl Into<String>) -> Feature {
    Feature {
        name: name.to_string(),
        available,
        detail: detail.into(),
    }
}

/// Probes every feature of [`names::ALL`] (cgroup ones against `mounts`,
/// idmapped mounts on the data dir `data_dir`).
pub fn probe_all(mounts: &Layout, data_dir: &std::path::Path) -> Vec<Feature> {
    let mut out = vec![
        seccomp(),
        user_namespaces(),
        idmapped_mounts(data_dir),
        overlayfs(),
        ext4(),
        loop_devices(),
        cgroup_v1(mounts),
        cgroup_v2(mounts),
        memory_swap_accounting(mounts),
        cgroup_kill(mounts),
        pidfd(),
    ];
    out.extend(network());
    debug_assert!(out
        .iter()
        .map(|f| f.name.as_str())
        .eq(names::ALL.iter().copied()));
    out
}

/// The codes a probe child wrote, `expected` of them (missing ones are
/// `i32::MIN`), or why it failed.
fn child_codes(
    child: Result<ChildResult, nix::errno::Errno>,
    expected: usize,
) -> Result<Vec<i32>, String> {
    let child = child.map_err(|e| format!("cannot fork a probe child: {e}"))?;
    if let Some(why) = child.failure() {
        return Err(why);
    }
    let codes = child.codes();
    if codes.is_empty() {
        return Err(format!(
            "probe child reported {} of {expected} results",
            codes.len()
        ));
    }
    let mut codes = codes;
    codes.resize(expected, i32::MIN);
    Ok(codes)
}
