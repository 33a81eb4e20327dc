//! v1 `memory`: `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes`, usage and
//! the OOM-kill count.

use std::path::Path;

use crate::cgroup::fsutil;
use crate::cgroup::limits::{page_rounded, page_size};
use crate::cgroup::{CgroupError, Limits};

const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

/// What v1 reports for "no limit": the page counter's maximum, in bytes.
fn unlimited() -> u64 {
    i64::MAX as u64 / page_size() * page_size()
}

/// Writes `value` (bytes, `None` = unlimited) and checks the page-rounded read-back.
fn set(path: &Path, value: Option<u64>) -> Result<(), CgroupError> {
    match value {
        Some(b) => fsutil::write_check(path, &b.to_string(), &page_rounded(b).to_string()),
        None => fsutil::write_check(path, "-1", &unlimited().to_string()),
    }
}

/// Applies the memory and memory+swap limits.
pub(super) fn apply(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let (limit, memsw) = (dir.join(LIMIT), dir.join(MEMSW));
    if !memsw.exists() {
        if limits.memory_swap_bytes.is_some() {
            return Err(CgroupError::FeatureMissing {
                feature: "v1 swap accounting (memory.memsw.*, boot with swapaccount=1)".into(),
                detail: format!("{} does not exist", memsw.display()),
            });
        }
        return set(&limit, limits.memory_bytes);
    }
    // The kernel keeps limit <= memsw at every instant, so the order of the two
    // writes depends on whether the new limit fits under the current memsw.
    let current_memsw = fsutil::read_u64(&memsw)?;
    let want = limits.memory_bytes.map_or(u64::MAX, page_rounded);
    if want > current_memsw {
        set(&memsw, limits.memory_swap_bytes)?;
        set(&limit, limits.memory_bytes)
    } else {
        set(&limit, limits.memory_bytes)?;
        set(&memsw, limits.memory_swap_bytes)
    }
}

/// Memory charged now, bytes.
pub(super) fn usage(dir: &Path) -> Result<u64, CgroupError> {
    fsutil::read_u64(&dir.join("memory.usage_in_bytes"))
}

/// OOM kills so far (`oom_kill` of `memory.oom_control`, Linux 4.13+).
pub(super) fn oom_kills(dir: &Path) -> Result<u64, CgroupError> {
    fsutil::read_key(&dir.join("memory.oom_control"), "oom_kill")
}
