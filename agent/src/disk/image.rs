//! The sparse backing file of a zone's disk and its ext4 filesystem.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::loopdev::{self, AttachedLoop};
use super::{DiskError, GIB, MAX_QUOTA_GIB};

/// Options given to `mkfs.ext4` besides the device: quiet, no questions, no
/// blocks reserved for root (the zone's quota is all the zone's), inode
/// tables and journal left for the kernel to zero lazily (the backing file
/// is new and sparse, so they read as zeros anyway) and no discard pass.
pub const MKFS_ARGS: &[&str] = &[
    "-q",
    "-F",
    "-m",
    "0",
    "-E",
    "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
    "-L",
    "zonedisk",
];

/// `<zone_dir>/disk.img`.
pub fn image_path(zone_dir: &Path) -> PathBuf {
    zone_dir.join(crate::zone::paths::DISK_IMAGE_FILE)
}

/// Creates `<zone_dir>/disk.img`: a sparse file of exactly `quota_gib` GiB,
/// formatted ext4 with [`MKFS_ARGS`]. Returns its path.
///
/// Refuses an invalid quota and an existing image (a zone's disk is never
/// overwritten). If formatting fails the half-made file is removed.
pub fn create(zone_dir: &Path, quota_gib: u64) -> Result<PathBuf, DiskError> {
    if quota_gib == 0 || quota_gib > MAX_QUOTA_GIB {
        return Err(DiskError::InvalidQuota { quota_gib });
    }
    let path = image_path(zone_dir);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => DiskError::AlreadyExists { path: path.clone() },
            _ => DiskError::io("create", &path, e),
        })?;
    let made = file
        .set_len(quota_gib * GIB)
        .map_err(|e| DiskError::io("set length of", &path, e))
        .and_then(|()| {
            drop(file);
            mkfs_ext4(&path)
        });
    if let Err(e) = made {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Runs `mkfs.ext4` on `path` (a file or a block device).
fn mkfs_ext4(path: &Path) -> Result<(), DiskError> {
    let program = mkfs_program();
    let out = Command::new(&program)
        .args(MKFS_ARGS)
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| DiskError::Mkfs {
            path: path.to_owned(),
            reason: format!(
                "cannot run {} ({e}); is e2fsprogs installed?",
                program.display()
            ),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DiskError::Mkfs {
            path: path.to_owned(),
            reason: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// `mkfs.ext4` from `PATH`, else from the sbin directories a non-login
/// root shell may lack in its `PATH`.
pub(crate) fn mkfs_program() -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("mkfs.ext4"))
        .find(|p| p.is_file());
    in_path.unwrap_or_else(|| PathBuf::from("mkfs.ext4"))
}

/// Deletes `<zone_dir>/disk.img`. A loop device still bound to it (left by a
/// crash) is detached first (`LOOP_CLR_FD`; if it is still mounted somewhere
/// the kernel frees it at the last unmount instead). Returns the loop
/// devices that were detached. A missing image is not an error.
pub fn delete(zone_dir: &Path) -> Result<Vec<AttachedLoop>, DiskError> {
    let path = image_path(zone_dir);
    let mut detached = Vec::new();
    if path.exists() {
        let canonical = fs::canonicalize(&path).map_err(|e| DiskError::io("resolve", &path, e))?;
        for l in loopdev::attached_loops()? {
            if l.backing_file == canonical {
                loopdev::detach(&l.device)?;
                detached.push(l);
            }
        }
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(detached),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(detached),
        Err(e) => Err(DiskError::io("remove", &path, e)),
    }
}
