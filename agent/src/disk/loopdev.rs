//! Loop devices: attach a disk image with AUTOCLEAR, detach, and find the
//! ones bound to files under a data dir.
//!
//! Raw ioctls through `nix` rather than the `loopdev-3` crate: that crate has
//! no `LOOP_CONFIGURE` (so its AUTOCLEAR is set by a second ioctl after
//! `LOOP_SET_FD`, leaving a window where a crash leaks a device that never
//! frees itself) and it generates its bindings with bindgen at build time,
//! which needs libclang on every build host.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::DiskError;

const LOOP_CONTROL: &str = "/dev/loop-control";
/// How many free devices to try when others race us for them.
const MAX_ATTEMPTS: u32 = 16;

/// Kernel ABI of `<linux/loop.h>`.
mod sys {
    /// `LO_FLAGS_AUTOCLEAR`: detach when the last opener closes the device.
    pub const LO_FLAGS_AUTOCLEAR: u32 = 4;

    /// `struct loop_info64`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct LoopInfo64 {
        pub lo_device: u64,
        pub lo_inode: u64,
        pub lo_rdevice: u64,
        pub lo_offset: u64,
        pub lo_sizelimit: u64,
        pub lo_number: u32,
        pub lo_encrypt_type: u32,
        pub lo_encrypt_key_size: u32,
        pub lo_flags: u32,
        pub lo_file_name: [u8; 64],
        pub lo_crypt_name: [u8; 64],
        pub lo_encrypt_key: [u8; 32],
        pub lo_init: [u64; 2],
    }

    /// `struct loop_config` (Linux 5.8+).
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct LoopConfig {
        pub fd: u32,
        pub block_size: u32,
        pub info: LoopInfo64,
        pub reserved: [u64; 8],
    }

    const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
    const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

    impl LoopConfig {
        pub fn zeroed() -> Self {
            LoopConfig {
                fd: 0,
                block_size: 0,
                info: LoopInfo64 {
                    lo_device: 0,
                    lo_inode: 0,
                    lo_rdevice: 0,
                    lo_offset: 0,
                    lo_sizelimit: 0,
                    lo_number: 0,
                    lo_encrypt_type: 0,
                    lo_encrypt_key_size: 0,
                    lo_flags: 0,
                    lo_file_name: [0; 64],
                    lo_crypt_name: [0; 64],
                    lo_encrypt_key: [0; 32],
                    lo_init: [0; 2],
                },
                reserved: [0; 8],
            }
        }
    }

    nix::ioctl_none_bad!(
        /// `LOOP_CTL_GET_FREE` on `/dev/loop-control`: number of a free device.
        loop_ctl_get_free,
        0x4C82
    );
    nix::ioctl_write_ptr_bad!(
        /// `LOOP_CONFIGURE`: bind a file and set its status in one step.
        loop_configure,
        0x4C0A,
        LoopConfig
    );
    nix::ioctl_write_int_bad!(
        /// `LOOP_SET_FD` (kernels before 5.8).
        loop_set_fd,
        0x4C00
    );
    nix::ioctl_write_ptr_bad!(
        /// `LOOP_SET_STATUS64` (kernels before 5.8).
        loop_set_status64,
        0x4C04,
        LoopInfo64
    );
    nix::ioctl_none_bad!(
        /// `LOOP_CLR_FD`: unbind (or mark AUTOCLEAR when still in use).
        loop_clr_fd,
        0x4C01
    );
}

/// A loop device this process attached. Holding it keeps the device open;
/// the device has AUTOCLEAR set, so once this handle is dropped the kernel
/// detaches it as soon as nothing else (a mount) holds it — drop it right
/// after mounting. Dropping it without mounting frees the device at once.
#[derive(Debug)]
pub struct LoopDevice {
    number: u32,
    path: PathBuf,
    _device: File,
}

impl LoopDevice {
    /// The device number N of `/dev/loopN`.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// `/dev/loopN`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Attaches `image` (read-write) to a free loop device with AUTOCLEAR set,
/// atomically with `LOOP_CONFIGURE` (falling back to `LOOP_SET_FD` +
/// `LOOP_SET_STATUS64` on kernels older than 5.8). A device taken by another
/// process between `LOOP_CTL_GET_FREE` and the configure is skipped.
pub fn attach(image: &Path) -> Result<LoopDevice, DiskError> {
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(image)
        .map_err(|e| DiskError::io("open", image, e))?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(LOOP_CONTROL)
        .map_err(|e| DiskError::io("open", LOOP_CONTROL, e))?;

    let mut config = sys::LoopConfig::zeroed();
    config.fd = backing.as_raw_fd() as u32;
    config.info.lo_flags = sys::LO_FLAGS_AUTOCLEAR;
    let name = image.as_os_str().as_bytes();
    let n = name.len().min(config.info.lo_file_name.len() - 1);
    config.info.lo_file_name[..n].copy_from_slice(&name[..n]);

    for _ in 0..MAX_ATTEMPTS {
        // SAFETY: `control` is an open fd of /dev/loop-control; this ioctl
        // takes no argument and only returns a device number.
        let number = unsafe { sys::loop_ctl_get_free(control.as_raw_fd()) }.map_err(|source| {
            DiskError::Loop {
                op: "LOOP_CTL_GET_FREE",
                device: LOOP_CONTROL.into(),
                source,
            }
        })? as u32;
        let path = PathBuf::from(format!("/dev/loop{number}"));
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| DiskError::io("open", &path, e))?;
        // SAFETY: `device` is an open loop device fd and `config` is a fully
        // initialised `struct loop_config` that outlives the call; the
        // kernel only reads it.
        let configured = unsafe { sys::loop_configure(device.as_raw_fd(), &config) };
        let result = match configured {
            Err(Errno::EINVAL) | Err(Errno::ENOTTY) => legacy_attach(&device, &config),
            other => other.map(drop),
        };
        match result {
            Ok(()) => {
                return Ok(LoopDevice {
                    number,
                    path,
                    _device: device,
                })
            }
            // Someone else bound it first: ask for another free one.
            Err(Errno::EBUSY) => continue,
            Err(source) => {
                return Err(DiskError::Loop {
                    op: "LOOP_CONFIGURE",
                    device: path,
                    source,
                })
            }
        }
    }
    Err(DiskError::NoFreeLoop {
        image: image.to_owned(),
        attempts: MAX_ATTEMPTS,
    })
}

/// Two-step attach for kernels without `LOOP_CONFIGURE`.
fn legacy_attach(device: &File, config: &sys::LoopConfig) -> Result<(), Errno> {
    // SAFETY: `device` is an open loop device fd, `config.fd` an open file
    // fd owned by our caller for the duration of the call.
    unsafe { sys::loop_set_fd(device.as_raw_fd(), config.fd as libc::c_int) }?;
    // SAFETY: `config.info` is a fully initialised `struct loop_info64`
    // that outlives the call; the kernel only reads it.
    if let Err(e) = unsafe { sys::loop_set_status64(device.as_raw_fd(), &config.info) } {
        // SAFETY: same open device fd; undo the half-made attachment.
        let _ = unsafe { sys::loop_clr_fd(device.as_raw_fd()) };
        return Err(e);
    }
    Ok(())
}

/// Detaches the loop device at `device` (`/dev/loopN`) with `LOOP_CLR_FD`.
/// A device that is not attached is not an error. A device still in use (a
/// mount in any namespace) is marked AUTOCLEAR by the kernel instead and
/// frees itself at the last unmount.
pub fn detach(device: &Path) -> Result<(), DiskError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(device)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DiskError::io("open", device, e)),
    };
    // SAFETY: `file` is an open fd of a loop device; no argument.
    match unsafe { sys::loop_clr_fd(file.as_raw_fd()) } {
        Ok(_) | Err(Errno::ENXIO) => Ok(()),
        Err(source) => Err(DiskError::Loop {
            op: "LOOP_CLR_FD",
            device: device.to_owned(),
            source,
        }),
    }
}

/// A loop device bound to a file, as `/sys/block/loopN/loop/` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedLoop {
    /// The device number N.
    pub number: u32,
    /// `/dev/loopN`.
    pub device: PathBuf,
    /// The backing file as the kernel names it (without " (deleted)").
    pub backing_file: PathBuf,
    /// The backing file has been unlinked since it was attached.
    pub backing_file_deleted: bool,
    /// AUTOCLEAR is set: the device frees itself at its last close.
    pub autoclear: bool,
}

/// The backing file of `/dev/loopN`, or `None` if it is not attached (or
/// does not exist).
pub fn backing_file(number: u32) -> Result<Option<PathBuf>, DiskError> {
    Ok(read_attached(number)?.map(|l| l.backing_file))
}

fn read_attached(number: u32) -> Result<Option<AttachedLoop>, DiskError> {
    let dir = PathBuf::from(format!("/sys/block/loop{number}/loop"));
    let name = match fs::read(dir.join("backing_file")) {
        Ok(raw) => raw,
        // Not attached (NotFound), or detaching right now — another zone's loop
        // device clearing itself answers ENODEV/ENXIO while it goes.
        Err(e)
            if e.kind() == ErrorKind::NotFound
                || matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::ENXIO)) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(DiskError::io("read", dir.join("backing_file"), e)),
    };
    let mut name: &[u8] = name.strip_suffix(b"\n").unwrap_or(&name);
    let deleted = match name.strip_suffix(b" (deleted)") {
        Some(rest) => {
            name = rest;
            true
        }
        None => false,
    };
    let autoclear = fs::read(dir.join("autoclear"))
        .map(|v| v.starts_with(b"1"))
        .unwrap_or(false);
    Ok(Some(AttachedLoop {
        number,
        device: PathBuf::from(format!("/dev/loop{number}")),
        backing_file: PathBuf::from(std::ffi::OsStr::from_bytes(name)),
        backing_file_deleted: deleted,
        autoclear,
    }))
}

/// Every attached loop device on this host, by device number.
pub fn attached_loops() -> Result<Vec<AttachedLoop>, DiskError> {
    let entries = fs::read_dir("/sys/block").map_err(|e| DiskError::io("list", "/sys/block", e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DiskError::io("list", "/sys/block", e))?;
        let Some(number) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("loop"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(l) = read_attached(number)? {
            found.push(l);
        }
    }
    found.sort_by_key(|l| l.number);
    Ok(found)
}

/// Loop devices whose backing file lies under `data_dir` (the agent's zone
/// pool): after a crash, the ones no running zone accounts for are stale and
/// can be reported and [`detach`]ed. Whether a device is still mounted in
/// some zone's mount namespace cannot be seen from here; the caller, which
/// knows its running zones, decides.
pub fn sweep(data_dir: &Path) -> Result<Vec<AttachedLoop>, DiskError> {
    let root = fs::canonicalize(data_dir).map_err(|e| DiskError::io("resolve", data_dir, e))?;
    Ok(attached_loops()?
        .into_iter()
        .filter(|l| l.backing_file.starts_with(&root))
        .collect())
}

/// Asks `/dev/loop-control` for a free loop device number (the kernel may
/// create a device node to answer). Used by the host's feature probe.
pub(crate) fn free_loop_number() -> Result<u32, DiskError> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(LOOP_CONTROL)
        .map_err(|e| DiskError::io("open", LOOP_CONTROL, e))?;
    // SAFETY: `control` is an open fd of /dev/loop-control; this ioctl
    // takes no argument and only returns a device number.
    let n = unsafe { sys::loop_ctl_get_free(control.as_raw_fd()) }.map_err(|source| {
        DiskError::Loop {
            op: "LOOP_CTL_GET_FREE",
            device: LOOP_CONTROL.into(),
            source,
        }
    })?;
    Ok(n as u32)
}
