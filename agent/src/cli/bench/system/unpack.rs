//! The peers' root filesystems: the same archive the zones' image is imported
//! from, unpacked once per peer with owners, modes, xattrs and file capabilities
//! as they are in the archive (ids 0–65535, mapped by each peer's idmapped mount).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

/// Unpacks `archive` (any compression GNU tar reads) into `dir`, made here.
pub(super) fn unpack(archive: &Path, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let out = Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .output()
        .context("run tar")?;
    if !out.status.success() {
        bail!(
            "tar -x {} into {}: {}: {}",
            archive.display(),
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    check_init(dir, archive)
}

/// An error unless the root filesystem `root` (unpacked from `archive`) has an
/// `/sbin/init` to boot.
pub(super) fn check_init(root: &Path, archive: &Path) -> anyhow::Result<()> {
    // The link itself: its target is absolute, meaningful inside the root only.
    if root.join("usr/sbin/init").symlink_metadata().is_err()
        && root.join("sbin/init").symlink_metadata().is_err()
    {
        bail!(
            "{} has no /sbin/init: a whole-system benchmark needs an image with systemd \
             (deploy/images/build-debian.sh)",
            archive.display()
        );
    }
    Ok(())
}
