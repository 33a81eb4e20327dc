//! Mounting a zone's disk and the overlay of its root on top.

use std::fs::{self, DirBuilder};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{loopdev, DiskError};

/// Mount flags of a zone's disk: no device nodes (a zone sees no physical
/// devices). `nosuid` is deliberately absent: it would break setuid binaries
/// inside the zone's own upper layer.
pub const DISK_MOUNT_FLAGS: MsFlags = MsFlags::MS_NODEV;

/// Mounts the ext4 filesystem on `device` at `target` with
/// [`DISK_MOUNT_FLAGS`].
pub fn mount_disk(device: &Path, target: &Path) -> Result<(), DiskError> {
    mount(
        Some(device),
        target,
        Some("ext4"),
        DISK_MOUNT_FLAGS,
        None::<&str>,
    )
    .map_err(|source| DiskError::Mount {
        op: "mount",
        what: device.display().to_string(),
        target: target.to_owned(),
        source,
    })
}

/// Attaches `image` to a loop device (AUTOCLEAR) and mounts it at `target`,
/// in the calling thread's mount namespace. Returns the loop device number.
/// The device is held by the mount alone afterwards: it disappears by itself
/// when the mount is gone (unmounted, or its mount namespace died). If the
/// mount fails the device is freed at once.
pub fn mount_image(image: &Path, target: &Path) -> Result<u32, DiskError> {
    let device = loopdev::attach(image)?;
    mount_disk(device.path(), target)?;
    Ok(device.number())
}

/// The overlay directories on a mounted zone disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayDirs {
    /// `<mnt>/upper`: the zone's writable layer; its mode becomes that of
    /// the zone's `/` (0755, root-owned).
    pub upper: PathBuf,
    /// `<mnt>/work`: overlayfs's private work dir (0700).
    pub work: PathBuf,
}

/// Mode of `<mnt>/upper`.
pub const UPPER_MODE: u32 = 0o755;
/// Mode of `<mnt>/work`.
pub const WORK_MODE: u32 = 0o700;

/// Creates (or, if present, re-moded) `<disk_mnt>/upper` and
/// `<disk_mnt>/work` with [`UPPER_MODE`] and [`WORK_MODE`] regardless of
/// the umask.
pub fn prepare_overlay_dirs(disk_mnt: &Path) -> Result<OverlayDirs, DiskError> {
    let dirs = OverlayDirs {
        upper: disk_mnt.join("upper"),
        work: disk_mnt.join("work"),
    };
    for (dir, mode) in [(&dirs.upper, UPPER_MODE), (&dirs.work, WORK_MODE)] {
        match DirBuilder::new().mode(mode).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(DiskError::io("create", dir, e)),
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(|e| DiskError::io("chmod", dir, e))?;
    }
    Ok(dirs)
}

/// The overlayfs mount data `lowerdir=<lower>,upperdir=<upper>,workdir=<work>`.
/// Paths must be absolute and free of `,`, `:` and `\` (which overlayfs would
/// parse as separators or escapes): such a path is refused, not escaped.
pub fn overlay_options(lower: &Path, dirs: &OverlayDirs) -> Result<String, DiskError> {
    let mut parts = Vec::with_capacity(3);
    for (role, path) in [
        ("lowerdir", lower),
        ("upperdir", dirs.upper.as_path()),
        ("workdir", dirs.work.as_path()),
    ] {
        if !path.is_absolute() {
            return Err(DiskError::RelativeOverlayPath {
                role,
                path: path.to_owned(),
            });
        }
        let Some(text) = path.to_str() else {
            return Err(DiskError::OverlayPath {
                role,
                path: path.to_owned(),
                ch: char::REPLACEMENT_CHARACTER,
            });
        };
        if let Some(ch) = text.chars().find(|c| matches!(c, ',' | ':' | '\\')) {
            return Err(DiskError::OverlayPath {
                role,
                path: path.to_owned(),
                ch,
            });
        }
        parts.push(format!("{role}={text}"));
    }
    Ok(parts.join(","))
}

/// Mounts the overlay of `lower` (the image's rootfs) and `dirs` at
/// `target` (the zone's root), `nodev` like the disk below it.
pub fn mount_overlay(lower: &Path, dirs: &OverlayDirs, target: &Path) -> Result<(), DiskError> {
    let options = overlay_options(lower, dirs)?;
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|source| DiskError::Mount {
        op: "mount",
        what: format!("overlay ({options})"),
        target: target.to_owned(),
        source,
    })
}

/// Unmounts `target` (not lazily: a busy mount is an error).
pub fn unmount(target: &Path) -> Result<(), DiskError> {
    umount2(target, MntFlags::empty()).map_err(|source| DiskError::Mount {
        op: "umount",
        what: target.display().to_string(),
        target: target.to_owned(),
        source,
    })
}
