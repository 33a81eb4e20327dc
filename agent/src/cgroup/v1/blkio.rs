//! v1 `blkio`: the I/O weight, in `blkio.weight` (CFQ, before Linux 5.0) or
//! `blkio.bfq.weight` (BFQ), whichever this kernel has.

use std::path::Path;

use crate::cgroup::fsutil;
use crate::cgroup::{CgroupError, Limits};

/// Both files' default weight, what "no weight" means.
const DEFAULT_WEIGHT: u16 = 100;

/// Applies the weight. Without either file (no proportional I/O scheduler on any
/// device: this machine's 6.18 kernel has neither CFQ nor BFQ) I/O is not weighted at
/// all, which is what every zone at the default weight means: the default needs
/// nothing, any other weight is a missing feature (refused, never ignored).
pub(super) fn apply(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let Some(file) = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
    else {
        return match limits.io_weight {
            None | Some(DEFAULT_WEIGHT) => Ok(()),
            Some(_) => Err(CgroupError::FeatureMissing {
                feature: "v1 blkio weight (CFQ or BFQ I/O scheduler)".into(),
                detail: format!(
                    "neither blkio.weight nor blkio.bfq.weight in {}",
                    dir.display()
                ),
            }),
        };
    };
    let w = limits.io_weight.unwrap_or(DEFAULT_WEIGHT).to_string();
    fsutil::write(&file, &w)?;
    // BFQ may print "default 500" on some kernels, CFQ prints "500".
    let got = fsutil::read(&file)?;
    let got = got.trim();
    let value = got
        .strip_prefix("default ")
        .unwrap_or(got)
        .lines()
        .next()
        .unwrap_or("");
    if value.trim() == w {
        Ok(())
    } else {
        Err(CgroupError::ReadBack {
            path: file,
            wanted: w,
            got: got.to_owned(),
        })
    }
}
