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
    check_systemd(dir, archive)
}

/// An error unless the root filesystem `root` (unpacked from `archive`) holds
/// systemd and systemctl (what the benchmark boots and asks).
pub(super) fn check_systemd(root: &Path, archive: &Path) -> anyhow::Result<()> {
    // `lib` and `bin` are links into `usr` on a merged-/usr root: look in both.
    let has = |paths: &[&str]| paths.iter().any(|p| root.join(p).is_file());
    if !has(&["usr/lib/systemd/systemd", "lib/systemd/systemd"])
        || !has(&["usr/bin/systemctl", "bin/systemctl"])
    {
        bail!(
            "{} holds no systemd: a whole-system benchmark needs an image with systemd \
             as its init (deploy/images/build-debian.sh)",
            archive.display()
        );
    }
    Ok(())
}
