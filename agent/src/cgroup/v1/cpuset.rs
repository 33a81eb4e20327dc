//! v1 `cpuset`: a new cpuset cgroup starts with no CPU and no memory node and takes
//! no task until given some, so each level copies its parent's.

use std::path::Path;

use crate::cgroup::fsutil;
use crate::cgroup::CgroupError;

/// Gives `dir` its parent's `cpuset.cpus` and `cpuset.mems` when it has none.
pub(super) fn inherit(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        if fsutil::read(&own)?.trim().is_empty() {
            let from = fsutil::read(&parent.join(file))?;
            let from = from.trim();
            fsutil::write_check(&own, from, from)?;
        }
    }
    Ok(())
}
