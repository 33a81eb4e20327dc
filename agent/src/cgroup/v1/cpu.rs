//! v1 `cpu`: CFS quota/period for the cap, `cpu.shares` for the weight.

use std::path::Path;

use crate::cgroup::fsutil;
use crate::cgroup::limits::{cpu_quota_us, CPU_PERIOD_US};
use crate::cgroup::{CgroupError, Limits};

/// The kernel's default `cpu.shares`, what "no weight" means.
const DEFAULT_SHARES: u64 = 1024;

/// Applies the cap and the shares.
pub(super) fn apply(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let quota = match limits.cpu_cap_percent {
        Some(cap) => {
            // Period first: the quota is checked against it.
            let p = CPU_PERIOD_US.to_string();
            fsutil::write_check(&dir.join("cpu.cfs_period_us"), &p, &p)?;
            cpu_quota_us(cap).to_string()
        }
        None => "-1".to_owned(),
    };
    fsutil::write_check(&dir.join("cpu.cfs_quota_us"), &quota, &quota)?;
    let shares = limits.cpu_shares.unwrap_or(DEFAULT_SHARES).to_string();
    fsutil::write_check(&dir.join("cpu.shares"), &shares, &shares)
}

/// CPU time used, ns, from `cpuacct.usage` (the `cpuacct` hierarchy's directory).
pub(super) fn usage_ns(cpuacct_dir: &Path) -> Result<u64, CgroupError> {
    fsutil::read_u64(&cpuacct_dir.join("cpuacct.usage"))
}
