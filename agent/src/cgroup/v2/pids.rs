//! v2 `pids`: `pids.max`.

use std::path::Path;

use super::need;
use crate::cgroup::fsutil;
use crate::cgroup::{CgroupError, Limits};

/// Applies `pids.max` (`max` when unlimited).
pub(super) fn apply(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let max = dir.join("pids.max");
    if let Some(file) = need(&max, limits.pids_max.is_some(), "pids controller")? {
        let v = limits
            .pids_max
            .map_or_else(|| "max".to_owned(), |n| n.to_string());
        fsutil::write_check(&file, &v, &v)?;
    }
    Ok(())
}
