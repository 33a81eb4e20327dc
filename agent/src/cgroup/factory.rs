//! The manager factory: picks the manager for a host's layout. It stands above
//! the per-version managers (as youki's libcgroups does), so neither the layout
//! detection nor a manager needs to know the other managers.

use zonefleet_proto::host::CgroupVersion;

use super::detect::{DetectError, Layout};
use super::v1::V1Manager;
use super::v2::V2Manager;
use super::{CgroupError, CgroupManager};

/// The manager for `layout` with zones under `parent`: v1 when v1 hierarchies
/// carry the controllers (v1 and hybrid hosts), else v2.
pub fn create_manager(
    layout: &Layout,
    parent: &str,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    match layout.version() {
        Some(CgroupVersion::V1) => {
            // systemd's named hierarchy too: zones are grouped there as well, so
            // an init like systemd can be given its subtree (see `delegate`).
            let hierarchies = layout.v1.iter().chain(&layout.systemd).cloned().collect();
            Ok(Box::new(V1Manager::new(hierarchies, parent)?))
        }
        Some(CgroupVersion::V2) => {
            let root = layout.unified.clone().ok_or(DetectError::NoCgroups)?;
            Ok(Box::new(V2Manager::new(root, parent)?))
        }
        None => Err(DetectError::NoCgroups.into()),
    }
}
