//! The zone's root filesystem, built inside its own mount namespace: the
//! overlay root (mounted by the caller) gets a fresh `/proc`, a minimal `/dev`,
//! a read-only `/sys` with the zone's cgroup subtree, its own sized `/tmp`,
//! `/run` and `/run/lock`, and the read-only metadata directory, then
//! `pivot_root` makes it `/` and the host's tree is detached.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::mount::{bind, ensure_dir, io_error, mount_fs};
use super::{dev, proc_mask, IsolationError, Result};
use crate::cgroup::Delegation;

/// Where the zone's metadata appears inside it (read-only).
pub const ZONECONTROL_DIR: &str = ".zonecontrol";

/// What the zone's root needs besides the overlay itself.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    /// The mounted overlay that becomes the zone's `/`.
    pub root: PathBuf,
    /// Size of the zone's `/tmp` in MiB.
    pub tmpfs_mib: u64,
    /// What to mount at `/sys/fs/cgroup`.
    pub cgroup: Delegation,
}

/// Size of the zone's `/run` (a tmpfs, as on any systemd host), MiB.
pub const RUN_MIB: u64 = 64;
/// Size of `/run/lock`, MiB.
pub const RUN_LOCK_MIB: u64 = 5;

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

/// Mounts the zone's pseudo filesystems under `plan.root`, from the zone's side:
/// in its user namespace (when it has one) and its own PID, network and cgroup
/// namespaces, so `/proc`, `/sys` and `/sys/fs/cgroup` show the zone's own and
/// every tmpfs belongs to the zone's root. `/dev` was filled before
/// ([`dev::populate`]).
pub fn mount_pseudo_filesystems(plan: &RootfsPlan) -> Result<()> {
    let root = &plan.root;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    // The root as a mount of this namespace's own: in a user namespace the
    // mounts inherited from the host's side are locked, and pivot_root refuses
    // a locked new root.
    bind("bind the zone's root on itself", root, root, false)?;

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

    dev::mount_in_zone(root)?;

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
    cgroup_fs(&sys.join("fs/cgroup"), plan.cgroup)?;

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

    // /run and /run/lock: the zone's own tmpfs, as a booted system expects
    // (systemd keeps its state there; nothing of the image's /run survives a boot).
    let run = root.join("run");
    ensure_dir(&run, 0o755)?;
    mount_fs(
        "mount /run",
        "tmpfs",
        &run,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("size={RUN_MIB}m,mode=755")),
    )?;
    let lock = run.join("lock");
    ensure_dir(&lock, 0o1777)?;
    mount_fs(
        "mount /run/lock",
        "tmpfs",
        &lock,
        "tmpfs",
        nosuid_nodev_noexec,
        Some(&format!("size={RUN_LOCK_MIB}m,mode=1777")),
    )?;

    proc_mask::apply(root)?;
    Ok(())
}

/// Shows the host directory `src` (holding metadata.json) read-only at
/// `/.zonecontrol`; from the host's side, before the zone's user namespace, so
/// the zone can never make it writable.
pub fn bind_zonecontrol(root: &Path, src: &Path) -> Result<()> {
    let target = root.join(ZONECONTROL_DIR);
    ensure_dir(&target, 0o555)?;
    bind("mount /.zonecontrol", src, &target, true)
}

/// `/sys/fs/cgroup` as the zone sees it (its cgroup namespace makes the zone's
/// cgroup the root): v2 the unified hierarchy; v1 a read-only tmpfs holding
/// systemd's named hierarchy, the one a zone may manage.
fn cgroup_fs(dir: &Path, delegation: Delegation) -> Result<()> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match delegation {
        Delegation::None => Ok(()),
        Delegation::V2 => mount_fs(
            "mount /sys/fs/cgroup",
            "cgroup2",
            dir,
            "cgroup2",
            flags,
            None,
        ),
        Delegation::V1NamedSystemd => {
            mount_fs(
                "mount /sys/fs/cgroup",
                "tmpfs",
                dir,
                "tmpfs",
                flags,
                Some("mode=755,size=64k"),
            )?;
            let named = dir.join("systemd");
            std::fs::create_dir(&named).map_err(|e| io_error("create", &named, e))?;
            mount_fs(
                "mount /sys/fs/cgroup/systemd",
                "cgroup",
                &named,
                "cgroup",
                flags,
                Some("none,name=systemd"),
            )?;
            mount(
                None::<&str>,
                dir,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
                Some("mode=755,size=64k"),
            )
            .map_err(|e| IsolationError::sys("make /sys/fs/cgroup read-only", dir, e))
        }
    }
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
