//! v2 `cpu`: `cpu.max` (`"<quota> <period>"` or `"max <period>"`), `cpu.weight`,
//! and `cpu.stat` (always present, even without the controller).

use std::path::Path;

use super::need;
use crate::cgroup::fsutil;
use crate::cgroup::limits::{cpu_quota_us, shares_to_weight, CPU_PERIOD_US};
use crate::cgroup::{CgroupError, Limits};

/// The kernel's default `cpu.weight`, what "no weight" means.
const DEFAULT_WEIGHT: u64 = 100;

/// Applies the cap and the weight.
pub(super) fn apply(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let max = dir.join("cpu.max");
    if let Some(file) = need(&max, limits.cpu_cap_percent.is_some(), "cpu controller")? {
        let v = match limits.cpu_cap_percent {
            Some(cap) => format!("{} {CPU_PERIOD_US}", cpu_quota_us(cap)),
            None => format!("max {CPU_PERIOD_US}"),
        };
        fsutil::write_check(&file, &v, &v)?;
    }
    let weight = dir.join("cpu.weight");
    if let Some(file) = need(&weight, limits.cpu_shares.is_some(), "cpu controller")? {
        let v = limits
            .cpu_shares
            .map_or(DEFAULT_WEIGHT, shares_to_weight)
            .to_string();
        fsutil::write_check(&file, &v, &v)?;
    }
    Ok(())
}

/// CPU time used, ns (`usage_usec` × 1000).
pub(super) fn usage_ns(dir: &Path) -> Result<u64, CgroupError> {
    Ok(fsutil::read_key(&dir.join("cpu.stat"), "usage_usec")? * 1000)
}
