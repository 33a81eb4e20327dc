//! The zone's seccomp filter: a deny list of host-wide system calls (mount,
//! namespaces, modules, kexec, swap, clocks, keys, bpf, perf…), applied
//! last before `execve` so that it binds init and everything it starts.
//!
//! `reboot` is allowed: in a PID namespace other than the host's the kernel
//! never reboots anything, it ends the namespace's init with SIGHUP (restart)
//! or SIGINT (halt, power off), which is how `reboot` and `poweroff` inside a
//! zone act on that zone alone (zsched reads it from how init ended).
//!
//! A deny list rather than an allow list, as Docker's default profile is in
//! effect: the zone runs a whole OS whose syscall needs are open-ended, while the
//! calls that reach outside a zone are few and known.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::{IsolationError, Result};

/// System calls a zone may never make, whatever its capabilities.
pub const DENIED_SYSCALLS: &[(&str, i64)] = &[
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("setns", libc::SYS_setns),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("syslog", libc::SYS_syslog),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
];

/// The namespace flags whose creation `unshare` and `clone` are refused.
const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWTIME as u64,
];

fn target_arch() -> Result<TargetArch> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| {
        IsolationError::Seccomp(format!("architecture {}: {e:?}", std::env::consts::ARCH))
    })
}

/// One rule per namespace flag: "argument `arg` has this bit set".
fn namespace_rules(arg: u8) -> Result<Vec<SeccompRule>> {
    NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let cond = SeccompCondition::new(
                arg,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .map_err(|e| IsolationError::Seccomp(e.to_string()))?;
            SeccompRule::new(vec![cond]).map_err(|e| IsolationError::Seccomp(e.to_string()))
        })
        .collect()
}

/// Builds the two programs the zone gets: the deny list (EPERM) and a filter
/// that answers `clone3` with ENOSYS. `clone3` passes its flags in memory that
/// seccomp cannot read, so it cannot be filtered by flag; ENOSYS makes libc fall
/// back to `clone`, whose flags are filtered.
pub fn build_programs() -> Result<Vec<BpfProgram>> {
    let arch = target_arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED_SYSCALLS
        .iter()
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    rules.insert(libc::SYS_unshare, namespace_rules(0)?);
    // clone(flags, …) on x86_64 and aarch64: flags are the first argument.
    rules.insert(libc::SYS_clone, namespace_rules(0)?);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| IsolationError::Seccomp(e.to_string()))?;

    let clone3: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, Vec::new())].into();
    let nosys = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| IsolationError::Seccomp(e.to_string()))?;

    [deny, nosys]
        .into_iter()
        .map(|f| BpfProgram::try_from(f).map_err(|e| IsolationError::Seccomp(e.to_string())))
        .collect()
}

/// Loads the programs into the calling thread, without setting
/// `no_new_privs` (seccompiler's loader would: a zone's setuid programs must
/// keep working), so the caller must hold `CAP_SYS_ADMIN` in its user namespace
/// (see [`super::confine`]).
pub fn apply(programs: &[BpfProgram]) -> Result<()> {
    for program in programs {
        let len = u16::try_from(program.len())
            .map_err(|_| IsolationError::Seccomp(format!("{} instructions", program.len())))?;
        let prog = libc::sock_fprog {
            len,
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: seccomp(SET_MODE_FILTER) reads `prog` and the `len`
        // instructions it points to, both alive for the call; seccompiler's
        // sock_filter has the kernel's layout.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(IsolationError::Seccomp(format!(
                "load the filter: {}",
                nix::Error::last()
            )));
        }
    }
    Ok(())
}
