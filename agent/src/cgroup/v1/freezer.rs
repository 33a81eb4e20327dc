//! v1 `freezer`: `freezer.state` FROZEN / THAWED, waiting out FREEZING.

use std::path::Path;
use std::time::Duration;

use crate::cgroup::fsutil;
use crate::cgroup::CgroupError;

/// Writes `state` and waits until `freezer.state` reads it.
fn set(dir: &Path, state: &str, timeout: Duration) -> Result<(), CgroupError> {
    let file = dir.join("freezer.state");
    fsutil::write(&file, state)?;
    let what = if state == "FROZEN" {
        "freezing"
    } else {
        "thawing"
    };
    fsutil::wait_until(what, dir, timeout, || {
        Ok(fsutil::read(&file)?.trim() == state)
    })
}

/// Freezes and waits.
pub(super) fn freeze(dir: &Path, timeout: Duration) -> Result<(), CgroupError> {
    set(dir, "FROZEN", timeout)
}

/// Thaws and waits.
pub(super) fn thaw(dir: &Path, timeout: Duration) -> Result<(), CgroupError> {
    set(dir, "THAWED", timeout)
}
