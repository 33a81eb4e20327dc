//! v1 `devices`: deny everything, then allow exactly the zone's rules.

use std::collections::BTreeSet;
use std::path::Path;

use crate::cgroup::fsutil;
use crate::cgroup::{CgroupError, DeviceRule};

/// Applies the device rules (`None`: allow every device) and checks
/// `devices.list` holds exactly them.
pub(super) fn apply(dir: &Path, rules: Option<&[DeviceRule]>) -> Result<(), CgroupError> {
    let list = dir.join("devices.list");
    let want: BTreeSet<String> = match rules {
        Some(rules) => rules.iter().map(ToString::to_string).collect(),
        None => ["a *:* rwm".to_owned()].into(),
    };
    if current(&list)? == want {
        // Rewriting would deny every device for an instant in a running zone.
        return Ok(());
    }
    match rules {
        Some(rules) => {
            fsutil::write(&dir.join("devices.deny"), "a")?;
            for r in rules {
                fsutil::write(&dir.join("devices.allow"), &r.to_string())?;
            }
        }
        None => fsutil::write(&dir.join("devices.allow"), "a")?,
    }
    let got = current(&list)?;
    if got == want {
        Ok(())
    } else {
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        Err(CgroupError::ReadBack {
            path: list,
            wanted: join(&want),
            got: join(&got),
        })
    }
}

fn current(list: &Path) -> Result<BTreeSet<String>, CgroupError> {
    Ok(fsutil::read(list)?
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}
