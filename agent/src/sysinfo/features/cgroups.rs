//! Probes of the cgroup layout: v1 hierarchies, the cgroup2 mount, swap
//! accounting, `cgroup.kill`.

use std::path::{Path, PathBuf};

use zonefleet_proto::feature as names;
use zonefleet_proto::host::Feature;

use super::found;
use crate::cgroup::detect::Layout;

/// `cgroup_v1`: v1 controller hierarchies in `/proc/self/mountinfo`.
pub fn cgroup_v1(m: &Layout) -> Feature {
    if m.v1.is_empty() {
        return found(
            names::CGROUP_V1,
            false,
            "no v1 controller hierarchy in /proc/self/mountinfo",
        );
    }
    let list: Vec<String> = m
        .v1_controllers()
        .into_iter()
        .map(|(c, p)| format!("{c} ({})", p.display()))
        .collect();
    found(
        names::CGROUP_V1,
        true,
        format!(
            "v1 controllers in /proc/self/mountinfo: {}",
            list.join(", ")
        ),
    )
}

/// `cgroup_v2`: a cgroup2 mount, with the controllers its root offers.
pub fn cgroup_v2(m: &Layout) -> Feature {
    let Some(root) = &m.unified else {
        return found(
            names::CGROUP_V2,
            false,
            "no cgroup2 mount in /proc/self/mountinfo",
        );
    };
    match m.v2_controllers() {
        Ok(c) => found(
            names::CGROUP_V2,
            true,
            format!(
                "cgroup2 mounted at {}; {}/cgroup.controllers: {}",
                root.display(),
                root.display(),
                if c.is_empty() {
                    "(none: every controller is bound to a v1 hierarchy)".to_string()
                } else {
                    c.join(" ")
                }
            ),
        ),
        Err(e) => found(
            names::CGROUP_V2,
            false,
            format!(
                "cgroup2 mounted at {} but cgroup.controllers unreadable: {e}",
                root.display()
            ),
        ),
    }
}

/// A cgroup created under the v2 root for a probe, removed on drop.
struct ProbeCgroup(PathBuf);

impl ProbeCgroup {
    fn create(m: &Layout) -> Result<Self, String> {
        let root = m.unified.as_ref().ok_or("no cgroup2 mount")?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = root.join(format!("zonefleet-probe-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create probe cgroup {}: {e}", dir.display()))?;
        Ok(ProbeCgroup(dir))
    }
}

impl Drop for ProbeCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `memory_swap_accounting`: v1 `memory.memsw.limit_in_bytes` exists, or
/// (memory on v2) a child cgroup gets `memory.swap.max`.
pub fn memory_swap_accounting(m: &Layout) -> Feature {
    const NAME: &str = names::MEMORY_SWAP_ACCOUNTING;
    if let Some(mem) = m.v1_hierarchy("memory").map(|h| &h.mount) {
        let f = mem.join("memory.memsw.limit_in_bytes");
        return if f.exists() {
            found(NAME, true, format!("v1: {} exists", f.display()))
        } else {
            found(
                NAME,
                false,
                format!(
                    "v1: {} missing (kernel without CONFIG_MEMCG_SWAP, or booted with swapaccount=0)",
                    f.display()
                ),
            )
        };
    }
    let v2_has_memory = m
        .v2_controllers()
        .map(|c| c.iter().any(|c| c == "memory"))
        .unwrap_or(false);
    if !v2_has_memory {
        return found(NAME, false, "no memory controller on v1 or v2");
    }
    let root = m.unified.as_ref().expect("v2 controllers imply a v2 mount");
    let subtree = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
    if !subtree.split_whitespace().any(|c| c == "memory") {
        return found(
            NAME,
            false,
            format!(
                "v2: memory is not enabled in {}/cgroup.subtree_control, so no child cgroup gets memory.swap.max",
                root.display()
            ),
        );
    }
    match ProbeCgroup::create(m) {
        Err(why) => found(NAME, false, format!("v2: {why}")),
        Ok(cg) => {
            let f = cg.0.join("memory.swap.max");
            if f.exists() {
                found(
                    NAME,
                    true,
                    format!(
                        "v2: a probe cgroup under {} has memory.swap.max",
                        root.display()
                    ),
                )
            } else {
                found(
                    NAME,
                    false,
                    format!("v2: a probe cgroup under {} has no memory.swap.max (kernel without swap accounting)", root.display()),
                )
            }
        }
    }
}

/// `cgroup_kill`: a child cgroup on v2 has `cgroup.kill` (Linux 5.14+).
pub fn cgroup_kill(m: &Layout) -> Feature {
    const NAME: &str = names::CGROUP_KILL;
    match ProbeCgroup::create(m) {
        Err(why) => found(NAME, false, why),
        Ok(cg) => {
            if cg.0.join("cgroup.kill").exists() {
                found(
                    NAME,
                    true,
                    format!(
                        "a probe cgroup under {} has cgroup.kill",
                        cg.0.parent().unwrap_or(Path::new("/")).display()
                    ),
                )
            } else {
                found(
                    NAME,
                    false,
                    "a v2 probe cgroup has no cgroup.kill (kernel older than 5.14)",
                )
            }
        }
    }
}
