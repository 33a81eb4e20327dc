//! v2 core files: `cgroup.freeze`, `cgroup.kill` and their state in `cgroup.events`.

use std::path::Path;
use std::time::Duration;

use crate::cgroup::fsutil;
use crate::cgroup::CgroupError;

/// Whether `cgroup.events` says `key` is 1.
pub(super) fn event(dir: &Path, key: &str) -> Result<bool, CgroupError> {
    Ok(fsutil::read_key(&dir.join("cgroup.events"), key)? == 1)
}

/// Sets `cgroup.freeze` and waits until `cgroup.events` shows it.
pub(super) fn set(dir: &Path, frozen: bool, timeout: Duration) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.freeze");
    if !file.exists() {
        return Err(CgroupError::FeatureMissing {
            feature: "cgroup v2 freezer (cgroup.freeze, Linux 5.2+)".into(),
            detail: format!("{} does not exist", file.display()),
        });
    }
    let v = if frozen { "1" } else { "0" };
    fsutil::write(&file, v)?;
    let what = if frozen { "freezing" } else { "thawing" };
    fsutil::wait_until(what, dir, timeout, || Ok(event(dir, "frozen")? == frozen))
}

/// Writes `cgroup.kill` (Linux 5.14+: the kernel kills every process of the
/// subtree, new forks included) and waits until the cgroup is empty. `Ok(false)`
/// when the kernel has no `cgroup.kill`.
pub(super) fn kill(dir: &Path, timeout: Duration) -> Result<bool, CgroupError> {
    let file = dir.join("cgroup.kill");
    if !file.exists() {
        return Ok(false);
    }
    fsutil::write(&file, "1")?;
    fsutil::wait_until("killing every process", dir, timeout, || {
        Ok(!event(dir, "populated")?)
    })?;
    Ok(true)
}
