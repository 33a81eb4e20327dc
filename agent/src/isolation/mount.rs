//! The mount helpers every root-filesystem step shares (the root itself, `/dev`,
//! the `/proc` mask): in a module of their own so the steps depend on it and not
//! on each other.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::{IsolationError, Result};

/// Creates `path` as a directory (and its parents) if missing. Mount points in
/// the image may be absent; they are then created in the zone's upper layer.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    if !path.is_dir() {
        fs::create_dir_all(path).map_err(|e| io_error("create mount point", path, e))?;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    }
    Ok(())
}

/// Mounts a filesystem, naming `step` and `target` in the error.
pub fn mount_fs(
    step: &'static str,
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    mount(Some(source), target, Some(fstype), flags, data)
        .map_err(|e| IsolationError::sys(step, target, e))
}

/// Bind-mounts `source` on `target`, read-only when asked (a bind mount takes
/// the read-only flag only on a remount).
pub fn bind(step: &'static str, source: &Path, target: &Path, read_only: bool) -> Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| IsolationError::sys(step, target, e))?;
    if read_only {
        // Keep the flags the mount already has: in a user namespace those of
        // a mount inherited from the host's side are locked, and a remount that
        // drops one is refused.
        let kept = current_flags(target).map_err(|e| IsolationError::sys(step, target, e))?;
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | kept,
            None::<&str>,
        )
        .map_err(|e| IsolationError::sys(step, target, e))?;
    }
    Ok(())
}

/// The per-mount flags of the mount at `path` (nosuid, nodev, noexec, atime).
pub fn current_flags(path: &Path) -> nix::Result<MsFlags> {
    use nix::sys::statvfs::FsFlags;
    let have = nix::sys::statvfs::statvfs(path)?.flags();
    let mut flags = MsFlags::empty();
    for (st, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if have.contains(st) {
            flags |= ms;
        }
    }
    Ok(flags)
}

/// A failed file operation of `step` on `path`, as the kernel's errno.
pub fn io_error(step: &'static str, path: &Path, e: std::io::Error) -> IsolationError {
    IsolationError::sys(
        step,
        path,
        nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    )
}
