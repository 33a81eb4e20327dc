//! The eBPF device filter of v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program assembled
//! here from the zone's [`DeviceRule`]s, loaded with `bpf(2)` and attached to the
//! zone's cgroup directory. The kernel runs it on every device open and mknod in
//! the cgroup and its descendants: 1 allows, 0 denies (EPERM).
//!
//! The program (same shape as runc's and youki's, written from the kernel's ABI):
//! ```text
//!   r2 = ctx->access_type & 0xffff   device type: 1 block, 2 char
//!   r3 = ctx->access_type >> 16      access: 1 mknod, 2 read, 4 write
//!   r4 = ctx->major; r5 = ctx->minor
//!   per rule: if the type, access ⊆ rule, major and minor match: return 1
//!   return 0
//! ```

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::cgroup::{DeviceKind, DeviceRule};

/// Why the device filter could not be loaded, attached or checked.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The kernel lacks what the filter needs.
    #[error("kernel feature missing: {feature} ({errno})")]
    Unsupported {
        /// The missing feature.
        feature: &'static str,
        /// What the kernel answered.
        errno: Errno,
    },
    /// The kernel refused the program.
    #[error("loading the device filter ({insns} instructions): {errno}; verifier: {log}")]
    Load {
        /// Program length.
        insns: usize,
        /// What the kernel answered.
        errno: Errno,
        /// The verifier's log (may be empty).
        log: String,
    },
    /// The cgroup directory could not be opened.
    #[error("open {path}: {source}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A `bpf(2)` command on the cgroup failed.
    #[error("{op} device filter on {path}: {errno}")]
    Cgroup {
        /// `attach`, `detach` or `query`.
        op: &'static str,
        /// The cgroup directory.
        path: PathBuf,
        /// What the kernel answered.
        errno: Errno,
    },
    /// After attaching, the cgroup does not hold exactly our program.
    #[error("{path}: wanted device filter program {wanted} attached alone, found {got:?}")]
    ReadBack {
        /// The cgroup directory.
        path: PathBuf,
        /// Our program's id.
        wanted: u32,
        /// The attached programs' ids.
        got: Vec<u32>,
    },
}

/// One eBPF instruction, as `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Jump offset or memory offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
pub(crate) const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
pub(crate) const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
pub(crate) const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
pub(crate) const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
pub(crate) const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
pub(crate) const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
pub(crate) const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// struct bpf_cgroup_dev_ctx encodings (linux/bpf.h).
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// Assembles the program allowing exactly `rules` and denying everything else.
pub fn device_program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0), // r2 = access_type
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0), // r3 = access_type >> 16
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0), // r4 = major
        insn(LDX_W, 5, 1, 8, 0), // r5 = minor
    ];
    for r in rules {
        // Each check jumps past the end of this rule's block on mismatch.
        let mut block: Vec<Insn> = Vec::new();
        match r.kind {
            DeviceKind::Char => block.push(insn(JNE_K, 2, 0, 0, DEV_CHAR)),
            DeviceKind::Block => block.push(insn(JNE_K, 2, 0, 0, DEV_BLOCK)),
            DeviceKind::All => {}
        }
        let allowed = [
            (r.access.mknod, ACC_MKNOD),
            (r.access.read, ACC_READ),
            (r.access.write, ACC_WRITE),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |a, (_, bit)| a | bit);
        if allowed != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Asked access must be a subset: (r3 & ~allowed) == 0.
            block.push(insn(MOV64_X, 1, 3, 0, 0));
            block.push(insn(AND32_K, 1, 0, 0, !allowed));
            block.push(insn(JNE_K, 1, 0, 0, 0));
        }
        if let Some(major) = r.major {
            block.push(insn(JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = r.minor {
            block.push(insn(JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(insn(MOV64_K, 0, 0, 0, 1));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

// bpf(2) commands and types (linux/bpf.h).
const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_ATTACH: u32 = 8;
const BPF_PROG_DETACH: u32 = 9;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
const BPF_PROG_QUERY: u32 = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// The prefix of `union bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The prefix of `union bpf_attr` for `BPF_PROG_ATTACH` / `BPF_PROG_DETACH`.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The prefix of `union bpf_attr` for `BPF_PROG_QUERY`.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// The prefix of `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Calls `bpf(cmd, attr, sizeof attr)`.
fn sys_bpf<T>(cmd: u32, attr: &mut T) -> Result<i64, Errno> {
    // SAFETY: `attr` is a live, fully initialized `#[repr(C)]` prefix of
    // `union bpf_attr` for `cmd` without padding holes, and we pass its exact size;
    // the kernel reads at most that many bytes and writes (QUERY) only inside it.
    // Pointers inside `attr` point to buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// Loads `prog`; on refusal retries with the verifier's log to say why.
pub fn load(prog: &[Insn]) -> Result<OwnedFd, BpfError> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..13].copy_from_slice(b"zonefleet_dev");
    let attr = |log: &mut [u8]| LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name: name,
        ..LoadAttr::default()
    };
    let errno = match sys_bpf(BPF_PROG_LOAD, &mut attr(&mut [])) {
        // SAFETY: a successful BPF_PROG_LOAD returns a new fd that nothing else owns.
        Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(Errno::ENOSYS) => {
            return Err(BpfError::Unsupported {
                feature: "bpf(2) syscall (CONFIG_BPF_SYSCALL)",
                errno: Errno::ENOSYS,
            })
        }
        Err(e) => e,
    };
    let mut log = vec![0u8; 64 * 1024];
    let _ = sys_bpf(BPF_PROG_LOAD, &mut attr(&mut log));
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let log = String::from_utf8_lossy(&log[..end]).trim().to_owned();
    if errno == Errno::EINVAL && log.is_empty() {
        // An unknown program type is refused before the verifier runs.
        return Err(BpfError::Unsupported {
            feature: "BPF_PROG_TYPE_CGROUP_DEVICE (Linux 4.15+)",
            errno,
        });
    }
    Err(BpfError::Load {
        insns: prog.len(),
        errno,
        log,
    })
}

/// Opens a cgroup directory for the attach commands.
fn open_dir(path: &Path) -> Result<File, BpfError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
        .map_err(|source| BpfError::Open {
            path: path.to_owned(),
            source,
        })
}

/// The id of a loaded program.
fn prog_id(prog: &OwnedFd) -> Result<u32, Errno> {
    // The first two fields of struct bpf_prog_info: type, id.
    let mut info = [0u32; 2];
    let mut attr = InfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info[1])
}

/// The ids of the device programs attached to the cgroup at `path` itself.
pub fn attached(path: &Path) -> Result<Vec<u32>, BpfError> {
    let dir = open_dir(path)?;
    let err = |errno| BpfError::Cgroup {
        op: "query",
        path: path.to_owned(),
        errno,
    };
    let mut ids = [0u32; 64];
    let mut attr = QueryAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..QueryAttr::default()
    };
    sys_bpf(BPF_PROG_QUERY, &mut attr).map_err(err)?;
    Ok(ids[..(attr.prog_cnt as usize).min(ids.len())].to_vec())
}

/// Loads the filter for `rules` and attaches it to the cgroup at `path`,
/// replacing a filter attached earlier, then checks it is the one attached.
///
/// Attached without `BPF_F_ALLOW_OVERRIDE`/`MULTI`: a sub-cgroup the zone makes
/// cannot attach a looser filter of its own, and attaching again replaces ours
/// atomically (a live update never leaves the zone unfiltered).
pub fn attach(path: &Path, rules: &[DeviceRule]) -> Result<(), BpfError> {
    let prog = load(&device_program(rules))?;
    let dir = open_dir(path)?;
    let mut attr = AttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..AttachAttr::default()
    };
    sys_bpf(BPF_PROG_ATTACH, &mut attr).map_err(|errno| BpfError::Cgroup {
        op: "attach",
        path: path.to_owned(),
        errno,
    })?;
    // The cgroup holds a reference now; our fd may close when `prog` drops.
    let wanted = prog_id(&prog).map_err(|errno| BpfError::Cgroup {
        op: "get info of",
        path: path.to_owned(),
        errno,
    })?;
    let got = attached(path)?;
    if got == [wanted] {
        Ok(())
    } else {
        Err(BpfError::ReadBack {
            path: path.to_owned(),
            wanted,
            got,
        })
    }
}

/// Detaches the device filter from the cgroup at `path`, if one is attached.
pub fn detach(path: &Path) -> Result<(), BpfError> {
    if attached(path)?.is_empty() {
        return Ok(());
    }
    let dir = open_dir(path)?;
    // Without BPF_F_ALLOW_MULTI the kernel detaches the single program when
    // given no program fd (-1 here).
    let mut attr = AttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: u32::MAX,
        attach_type: BPF_CGROUP_DEVICE,
        ..AttachAttr::default()
    };
    sys_bpf(BPF_PROG_DETACH, &mut attr).map_err(|errno| BpfError::Cgroup {
        op: "detach",
        path: path.to_owned(),
        errno,
    })?;
    Ok(())
}
