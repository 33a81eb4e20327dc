//! v2 `io`: the weight in `io.bfq.weight` (BFQ scheduler; 1..=1000, so the v1
//! value as is) or else `io.weight` (blk-iocost; 1..=10000, converted).

use std::path::Path;

use crate::cgroup::fsutil;
use crate::cgroup::limits::io_weight_v2;
use crate::cgroup::{CgroupError, Limits};

/// The default weight of both files (on their own scales), what "no weight" means.
const DEFAULT_WEIGHT: u64 = 100;

/// Applies the weight; `io.bfq.weight` wins when both files exist because BFQ is
/// the scheduler that honours it on the disks that have it.
pub(super) fn apply(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let bfq = dir.join("io.bfq.weight");
    let cost = dir.join("io.weight");
    let (file, value) = if bfq.exists() {
        (bfq, limits.io_weight.map_or(DEFAULT_WEIGHT, u64::from))
    } else if cost.exists() {
        (cost, limits.io_weight.map_or(DEFAULT_WEIGHT, io_weight_v2))
    } else if limits.io_weight.is_some() {
        return Err(CgroupError::FeatureMissing {
            feature: "cgroup v2 io weight (io controller with BFQ or blk-iocost)".into(),
            detail: format!("neither io.bfq.weight nor io.weight in {}", dir.display()),
        });
    } else {
        return Ok(());
    };
    let v = value.to_string();
    // Both files take a bare number as the default weight and print it back as
    // "default N" followed by per-device lines.
    fsutil::write(&file, &v)?;
    let got = fsutil::read(&file)?;
    let first = got.lines().next().unwrap_or("").trim();
    if first.strip_prefix("default ").unwrap_or(first) == v {
        Ok(())
    } else {
        Err(CgroupError::ReadBack {
            path: file,
            wanted: format!("default {v}"),
            got: got.trim().to_owned(),
        })
    }
}
