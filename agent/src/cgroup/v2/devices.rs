//! v2 device access: the eBPF filter of [`super::bpf`] on the zone's directory.

use std::path::Path;

use super::bpf;
use crate::cgroup::{CgroupError, DeviceRule};

/// Applies the rules. `fresh`: the cgroup was just made, so with no rules there
/// is nothing to detach (and nothing to ask the kernel).
pub(super) fn apply(
    dir: &Path,
    rules: Option<&[DeviceRule]>,
    fresh: bool,
) -> Result<(), CgroupError> {
    match rules {
        Some(rules) => bpf::attach(dir, rules)?,
        None if fresh => {}
        None => bpf::detach(dir)?,
    }
    Ok(())
}
