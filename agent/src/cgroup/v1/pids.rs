//! v1 `pids`: `pids.max`.

use std::path::Path;

use crate::cgroup::fsutil;
use crate::cgroup::{CgroupError, Limits};

/// Applies `pids.max` (`max` when unlimited).
pub(super) fn apply(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let v = limits
        .pids_max
        .map_or_else(|| "max".to_owned(), |n| n.to_string());
    fsutil::write_check(&dir.join("pids.max"), &v, &v)
}
