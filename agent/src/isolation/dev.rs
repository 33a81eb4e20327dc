//! The zone's `/dev`: a small tmpfs holding only null, zero, full, random,
//! urandom, tty, the console (a pty whose other end zsched holds), a private
//! devpts instance (pts, ptmx) and shm. No physical
//! device is ever present; the device cgroup (v1) or eBPF filter (v2) denies
//! every other device even if a node were made.

use std::os::unix::fs::symlink;
use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use super::mount::{io_error as io, mount_fs};
use super::{IsolationError, Result};

/// The character devices a zone sees: (name, major, minor).
pub const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Mounts and fills `<root>/dev` with the host's privileges (device nodes can
/// only be made outside a user namespace): a tmpfs owned by the zone's root
/// (`owner`, host ids), the nodes, the links, the mount points of `pts` and `shm`,
/// and `console`, the pty slave `console` (host path) bound there. The zone's
/// side mounts its own `pts` and `shm` later ([`mount_in_zone`]).
pub fn populate(root: &Path, owner: (u32, u32), console: Option<&Path>) -> Result<()> {
    let dev = root.join("dev");
    if !dev.is_dir() {
        std::fs::create_dir_all(&dev).map_err(|e| io("create /dev", &dev, e))?;
    }
    let options = format!("mode=755,size=64k,uid={},gid={}", owner.0, owner.1);
    mount_fs(
        "mount /dev",
        "tmpfs",
        &dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(&options),
    )?;
    for &(name, major, minor) in DEVICES {
        let node = dev.join(name);
        mknod(
            &node,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(|e| IsolationError::sys("mknod", &node, e))?;
        // mknod honours the umask; the nodes must be usable by every zone user.
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &node,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| IsolationError::sys("chmod", &node, e))?;
    }
    for dir in ["pts", "shm"] {
        let path = dev.join(dir);
        std::fs::create_dir(&path).map_err(|e| io("create a /dev directory", &path, e))?;
    }
    symlink("pts/ptmx", dev.join("ptmx")).map_err(|e| io("link /dev/ptmx", &dev, e))?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(|e| io("link /dev entry", &dev.join(name), e))?;
    }
    if let Some(slave) = console {
        let node = dev.join("console");
        std::fs::File::create(&node).map_err(|e| io("create /dev/console", &node, e))?;
        super::mount::bind("bind the console pty on /dev/console", slave, &node, false)?;
    }
    Ok(())
}

/// Mounts the zone's own devpts instance at `/dev/pts` and its `/dev/shm`, from
/// the zone's side (inside its user namespace, so both belong to its root).
pub fn mount_in_zone(root: &Path) -> Result<()> {
    let dev = root.join("dev");
    mount_fs(
        "mount /dev/pts",
        "devpts",
        &dev.join("pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mount_fs(
        "mount /dev/shm",
        "tmpfs",
        &dev.join("shm"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    Ok(())
}
