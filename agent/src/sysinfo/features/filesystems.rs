//! Probes of the filesystems and devices a zone's disk needs: overlayfs, ext4,
//! loop devices.

use std::path::{Path, PathBuf};

use zonefleet_proto::feature as names;
use zonefleet_proto::host::Feature;

use super::found;

/// `overlayfs`: `overlay` is listed in `/proc/filesystems`.
pub fn overlayfs() -> Feature {
    filesystem_feature(names::OVERLAYFS, "overlay", "fs/overlayfs", None)
}

/// `ext4`: `ext4` is listed in `/proc/filesystems` and `mkfs.ext4` exists
/// (the zone disk needs both).
pub fn ext4() -> Feature {
    let mkfs = crate::disk::image::mkfs_program();
    filesystem_feature(names::EXT4, "ext4", "fs/ext4", Some(mkfs))
}

fn filesystem_feature(name: &str, fs: &str, module_dir: &str, tool: Option<PathBuf>) -> Feature {
    let listed = match std::fs::read_to_string("/proc/filesystems") {
        Ok(text) => text
            .lines()
            .any(|l| l.split_whitespace().last() == Some(fs)),
        Err(e) => return found(name, false, format!("cannot read /proc/filesystems: {e}")),
    };
    if !listed {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = Path::new("/lib/modules")
            .join(&release)
            .join("kernel")
            .join(module_dir);
        let hint = if dir.is_dir() {
            format!(
                "its module is in {} but not loaded: `modprobe` it at boot",
                dir.display()
            )
        } else {
            "and no module for it was found".to_string()
        };
        return found(
            name,
            false,
            format!("{fs} not in /proc/filesystems; {hint}"),
        );
    }
    match tool {
        Some(t) if !t.is_file() => found(
            name,
            false,
            format!("{fs} in /proc/filesystems, but {} not found", t.display()),
        ),
        Some(t) => found(
            name,
            true,
            format!("{fs} in /proc/filesystems; {} present", t.display()),
        ),
        None => found(name, true, format!("{fs} in /proc/filesystems")),
    }
}

/// `loop_devices`: `/dev/loop-control` opens and answers `LOOP_CTL_GET_FREE`.
pub fn loop_devices() -> Feature {
    match crate::disk::loopdev::free_loop_number() {
        Ok(n) => found(
            names::LOOP_DEVICES,
            true,
            format!("/dev/loop-control answered LOOP_CTL_GET_FREE: /dev/loop{n} is free"),
        ),
        Err(e) => found(names::LOOP_DEVICES, false, e.to_string()),
    }
}

/// `idmapped_mounts`: the filesystem holding `dir` (the agent's data dir, where
/// images are unpacked) can be idmapped here: a throwaway user namespace and an
/// idmapped, never attached, copy of `dir` are made. Needs root.
pub fn idmapped_mounts(dir: &Path) -> Feature {
    const NAME: &str = names::IDMAPPED_MOUNTS;
    if !dir.is_dir() {
        return found(NAME, false, format!("{} is not a directory", dir.display()));
    }
    match crate::isolation::tree::probe(dir) {
        Ok(()) => found(
            NAME,
            true,
            format!("an idmapped mount of {} was made", dir.display()),
        ),
        Err(e) => found(
            NAME,
            false,
            format!(
                "{e}: this kernel or the filesystem of {} cannot idmap (Linux 5.12+ with ext4, \
                 xfs or btrfs; tmpfs from 6.3); zones need `user_namespace: false` here",
                dir.display()
            ),
        ),
    }
}
