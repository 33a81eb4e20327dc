//! The zone's root filesystem, built inside its own mount namespace: the
//! overlay root (mounted by the caller) gets a fresh `/proc`, a minimal `/dev`,
//! a read-only `/sys`, its own sized `/tmp` and the read-only metadata
//! directory, then `pivot_root` makes it `/` and the host's tree is detached.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::mount::{bind, ensure_dir, mount_fs};
use super::{dev, proc_mask, IsolationError, Result};

/// Where the zone's metadata appears inside it (read-only).
pub const ZONECONTROL_DIR: &str = ".zonecontrol";

/// What the zone's root needs besides the overlay itself.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    /// The mounted overlay that becomes the zone's `/`.
    pub root: PathBuf,
    /// Size of the zone's `/tmp` in MiB.
    pub tmpfs_mib: u64,
    /// Host directory shown read-only at `/.zonecontrol` (holds metadata.json).
    pub zonecontrol: Option<PathBuf>,
}

/// Makes every mount in this (new) namespace private, so nothing the zone setup
/// mounts propagates back to the host, and host mounts made later stay out.
pub fn make_private() -> Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| IsolationError::sys("make mounts private", "/", e))
}

/// Mounts the zone's pseudo filesystems under `plan.root`.
pub fn mount_pseudo_filesystems(plan: &RootfsPlan) -> Result<()> {
    let root = &plan.root;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;

    let proc_dir = root.join("proc");
    ensure_dir(&proc_dir, 0o555)?;
    mount_fs(
        "mount /proc",
        "proc",
        &proc_dir,
        "proc",
        nosuid_nodev_noexec,
        None,
    )?;

    dev::populate(root)?;

    let sys = root.join("sys");
    ensure_dir(&sys, 0o555)?;
    mount_fs(
        "mount /sys",
        "sysfs",
        &sys,
        "sysfs",
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        None,
    )?;

    let tmp = root.join("tmp");
    ensure_dir(&tmp, 0o1777)?;
    let size = format!("size={}m,mode=1777", plan.tmpfs_mib);
    mount_fs(
        "mount /tmp",
        "tmpfs",
        &tmp,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&size),
    )?;

    if let Some(src) = &plan.zonecontrol {
        let target = root.join(ZONECONTROL_DIR);
        ensure_dir(&target, 0o555)?;
        bind("mount /.zonecontrol", src, &target, true)?;
    }

    proc_mask::apply(root)?;
    Ok(())
}

/// Makes `root` the process's `/` and detaches the host's tree. Uses the
/// `pivot_root(".", ".")` idiom, which needs no directory for the old root.
pub fn pivot_into(root: &Path) -> Result<()> {
    nix::unistd::chdir(root).map_err(|e| IsolationError::sys("chdir to zone root", root, e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| IsolationError::sys("pivot_root", root, e))?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| IsolationError::sys("detach the host's root", root, e))?;
    nix::unistd::chdir("/").map_err(|e| IsolationError::sys("chdir /", "/", e))?;
    Ok(())
}
