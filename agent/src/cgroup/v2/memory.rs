//! v2 `memory`: `memory.max`, `memory.swap.max`, `memory.current`, `memory.events`.

use std::path::Path;

use super::need;
use crate::cgroup::fsutil;
use crate::cgroup::limits::page_rounded;
use crate::cgroup::{CgroupError, Limits};

/// Writes bytes (`None`: `max`) and checks the page-rounded read-back.
fn set(path: &Path, value: Option<u64>) -> Result<(), CgroupError> {
    match value {
        Some(b) => fsutil::write_check(path, &b.to_string(), &page_rounded(b).to_string()),
        None => fsutil::write_check(path, "max", "max"),
    }
}

/// Applies `memory.max` and `memory.swap.max` (swap alone = memory+swap − memory).
pub(super) fn apply(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let max = dir.join("memory.max");
    if let Some(file) = need(&max, limits.memory_bytes.is_some(), "memory controller")? {
        set(&file, limits.memory_bytes)?;
    }
    let swap_limit = limits
        .memory_swap_bytes
        .zip(limits.memory_bytes)
        .map(|(sw, m)| sw - m);
    let swap = dir.join("memory.swap.max");
    if let Some(file) = need(
        &swap,
        swap_limit.is_some(),
        "swap accounting (memory.swap.max)",
    )? {
        set(&file, swap_limit)?;
    }
    Ok(())
}

/// Memory charged now, bytes.
pub(super) fn usage(dir: &Path) -> Result<u64, CgroupError> {
    let file = dir.join("memory.current");
    need(&file, true, "memory controller")?;
    fsutil::read_u64(&file)
}

/// OOM kills so far.
pub(super) fn oom_kills(dir: &Path) -> Result<u64, CgroupError> {
    let file = dir.join("memory.events");
    need(&file, true, "memory controller")?;
    fsutil::read_key(&file, "oom_kill")
}
