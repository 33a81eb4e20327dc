//! A zone's writable disk: the `quota` property, enforced by the kernel.
//!
//! Each zone's writable layer lives on a filesystem of its own, exactly `quota`
//! GiB large, so a write beyond it fails with `ENOSPC` at `write(2)` time rather
//! than being noticed afterwards:
//!
//! 1. [`image::create`] makes a sparse backing file `<zone dir>/disk.img` and
//!    formats it ext4;
//! 2. [`loopdev::attach`] binds it to a free loop device with the AUTOCLEAR
//!    flag set atomically (`LOOP_CONFIGURE`), so the device frees itself once
//!    the last mount of it is gone — zones mount their disk inside their own
//!    mount namespace, and when a zone dies the kernel drops that mount;
//! 3. [`mount::mount_disk`] mounts it (`nodev`, setuid left working), and
//!    [`mount::prepare_overlay_dirs`] / [`mount::mount_overlay`] put the zone's
//!    root together: the image's rootfs below, `<mnt>/upper` above.
//!
//! [`image::delete`] removes the backing file (detaching a loop device left
//! over by a crash first) and [`loopdev::sweep`] lists loop devices whose
//! backing file lies under the agent's data dir.

use std::path::PathBuf;

pub mod image;
pub mod loopdev;
pub mod mount;

pub use image::{create, delete, image_path};
pub use loopdev::{attach, detach, sweep, AttachedLoop, LoopDevice};
pub use mount::{
    mount_disk, mount_image, mount_overlay, overlay_options, prepare_overlay_dirs, unmount,
    OverlayDirs,
};

/// One GiB, the unit of the `quota` property.
pub const GIB: u64 = 1 << 30;

/// The largest `quota` accepted, in GiB (16 TiB: far beyond any one zone,
/// well inside what ext4 with 4 KiB blocks formats).
pub const MAX_QUOTA_GIB: u64 = 16 * 1024;

/// What can go wrong with a zone's disk. Every variant names the file, device
/// or mount point involved.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// `quota` is outside `1..=MAX_QUOTA_GIB`.
    #[error("invalid quota {quota_gib} GiB: must be between 1 and {max} GiB", max = MAX_QUOTA_GIB)]
    InvalidQuota {
        /// The value given.
        quota_gib: u64,
    },
    /// The backing file already exists; a zone disk is never overwritten.
    #[error("{path} already exists: refusing to overwrite a zone's disk")]
    AlreadyExists {
        /// The existing backing file.
        path: PathBuf,
    },
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("create", "read", …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `mkfs.ext4` could not be run or failed.
    #[error("mkfs.ext4 on {path} failed: {reason}")]
    Mkfs {
        /// The backing file being formatted.
        path: PathBuf,
        /// Exit status and standard error, or why it could not start.
        reason: String,
    },
    /// A loop device ioctl failed.
    #[error("{op} on {device}: {source}")]
    Loop {
        /// The ioctl or step ("LOOP_CONFIGURE", "LOOP_CLR_FD", …).
        op: &'static str,
        /// The loop device or `/dev/loop-control`.
        device: PathBuf,
        /// The kernel's answer.
        #[source]
        source: nix::Error,
    },
    /// Every free loop device was taken by someone else before we could
    /// configure it.
    #[error("no free loop device for {image} after {attempts} attempts")]
    NoFreeLoop {
        /// The backing file.
        image: PathBuf,
        /// How many devices were tried.
        attempts: u32,
    },
    /// A mount or unmount failed.
    #[error("{op} {what} on {target}: {source}")]
    Mount {
        /// "mount" or "umount".
        op: &'static str,
        /// What was mounted (device or "overlay").
        what: String,
        /// The mount point.
        target: PathBuf,
        /// The kernel's answer.
        #[source]
        source: nix::Error,
    },
    /// A path cannot be put into overlayfs mount options without escaping
    /// (`,` separates options, `:` separates lower layers); refused rather
    /// than mis-parsed.
    #[error("{path} cannot be used as an overlay {role}: it contains {ch:?}")]
    OverlayPath {
        /// "lowerdir", "upperdir" or "workdir".
        role: &'static str,
        /// The offending path.
        path: PathBuf,
        /// The offending character.
        ch: char,
    },
    /// Overlay layers must be absolute paths (a relative one would resolve
    /// against whatever directory the mounting process happens to be in).
    #[error("{path} cannot be used as an overlay {role}: not an absolute path")]
    RelativeOverlayPath {
        /// "lowerdir", "upperdir" or "workdir".
        role: &'static str,
        /// The offending path.
        path: PathBuf,
    },
}

impl DiskError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DiskError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
