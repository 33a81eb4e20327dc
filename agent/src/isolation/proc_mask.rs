//! Sensitive `/proc` paths: some are hidden behind `/dev/null` (kernel memory,
//! keys, timers), others stay readable but become read-only (`/proc/sys`,
//! `sysrq-trigger`, bus and irq settings), so a zone cannot change host-wide
//! kernel settings even with capabilities in its `limit_priv`.

use std::path::Path;

use super::mount::bind;
use super::Result;

/// Files replaced by the zone's `/dev/null`.
pub const MASKED: &[&str] = &[
    "proc/kcore",
    "proc/keys",
    "proc/timer_list",
    "proc/sched_debug",
    "proc/latency_stats",
];

/// Paths made read-only.
pub const READ_ONLY: &[&str] = &[
    "proc/sys",
    "proc/sysrq-trigger",
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/asound",
];

/// The part of `/proc/sys` that stays writable: per network namespace.
pub const PER_NETNS: &str = "proc/sys/net";

/// Applies the masks under `root` (before `pivot_root`). Paths this kernel does
/// not have are skipped: there is nothing to hide.
pub fn apply(root: &Path) -> Result<()> {
    let null = root.join("dev/null");
    for rel in MASKED {
        let target = root.join(rel);
        if target.exists() && !target.is_dir() {
            bind("mask /proc path", &null, &target, true)?;
        }
    }
    for rel in READ_ONLY {
        let target = root.join(rel);
        if target.exists() {
            bind("make /proc path read-only", &target, &target, true)?;
        }
    }
    // Except what belongs to the zone's own network namespace: its sysctls
    // (forwarding, rp_filter…) are the zone's to set and reach nothing else.
    let net = root.join(PER_NETNS);
    if net.exists() {
        bind("make /proc/sys/net writable", &net, &net, false)?;
        let kept = super::mount::current_flags(&net)
            .map_err(|e| super::IsolationError::sys("make /proc/sys/net writable", &net, e))?;
        nix::mount::mount(
            None::<&str>,
            &net,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REMOUNT | kept,
            None::<&str>,
        )
        .map_err(|e| super::IsolationError::sys("make /proc/sys/net writable", &net, e))?;
    }
    Ok(())
}
