//! Detached mount trees (open_tree, mount_setattr, move_mount): how the zone's
//! root is moved to where the zone's side can reach it, and idmapped mounts,
//! through which the image's read-only layer is shown to a zone with its
//! files' owners shifted into the zone's id range, without copying or
//! chowning a byte of the shared image (Linux 5.12+, per filesystem: ext4,
//! xfs, btrfs, tmpfs from 6.3…). [`probe`] tells whether a directory's
//! filesystem can be idmapped on this kernel; sysinfo reports it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{IsolationError, Result};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cpath(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| IsolationError::sys("idmapped mount", path, nix::Error::EINVAL))
}

/// A detached copy of the mount tree at `source` (its submounts included).
pub fn clone_tree(source: &Path) -> Result<OwnedFd> {
    let src = cpath(source)?;
    // SAFETY: open_tree with a valid NUL-terminated path; it returns a new
    // descriptor or -1, and touches no memory of ours besides the path.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
        )
    };
    if fd < 0 {
        return Err(IsolationError::sys(
            "clone a mount tree (open_tree)",
            source,
            nix::Error::last(),
        ));
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A detached copy of the tree at `source` whose owners appear through the id
/// map of the user namespace `userns` (host id `base + n` for file owner `n`).
pub fn idmapped_tree(source: &Path, userns: &OwnedFd) -> Result<OwnedFd> {
    let tree = clone_tree(source)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: mount_setattr on our detached tree with a properly sized,
    // initialised mount_attr that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(IsolationError::sys(
            "idmap the image's tree (mount_setattr)",
            source,
            nix::Error::last(),
        ));
    }
    Ok(tree)
}

/// Attaches a detached tree (from [`clone_tree`] or [`idmapped_tree`]) at `target`.
pub fn attach(tree: &OwnedFd, target: &Path) -> Result<()> {
    let dst = cpath(target)?;
    let empty = c"";
    // SAFETY: move_mount from our tree descriptor to a valid NUL-terminated
    // path; no memory of ours is written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(IsolationError::sys(
            "attach a mount tree (move_mount)",
            target,
            nix::Error::last(),
        ));
    }
    Ok(())
}

/// Whether the filesystem holding `dir` can be idmapped here: makes a
/// throwaway user namespace and an idmapped (never attached) copy of `dir`.
/// `Err` says why not, in the kernel's words.
pub fn probe(dir: &Path) -> Result<()> {
    let range = super::userns::IdRange {
        host_base: 0x7fff_0000,
        count: 1,
    };
    let ns = super::userns::create(&range)?;
    idmapped_tree(dir, &ns).map(drop)
}
