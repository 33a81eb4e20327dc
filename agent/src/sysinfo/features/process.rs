//! Probes of what a process may do: seccomp filters, user namespaces, pidfds.

use std::os::fd::RawFd;

use zonefleet_proto::feature as names;
use zonefleet_proto::host::Feature;

use super::{child_codes, found};
use crate::sysinfo::child::{describe_code, result_code, run_forked, write_i32, CHILD_TIMEOUT};

const SECCOMP_MODE_FILTER: libc::c_ulong = 2;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// `seccomp`: `prctl(PR_GET_SECCOMP)` answers (CONFIG_SECCOMP) and a child
/// can load an allow-all BPF filter (CONFIG_SECCOMP_FILTER).
pub fn seccomp() -> Feature {
    const NAME: &str = names::SECCOMP;
    let status = proc_status_field("Seccomp:");
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if mode < 0 {
        return found(
            NAME,
            false,
            format!(
                "prctl(PR_GET_SECCOMP) failed: {} (kernel without CONFIG_SECCOMP)",
                std::io::Error::last_os_error()
            ),
        );
    }
    let filter = [libc::sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: SECCOMP_RET_ALLOW,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    let prog_ptr = &prog as *const libc::sock_fprog;
    // SAFETY: the child makes only prctl/write syscalls on `prog`/`filter`,
    // which were built before the fork and are still alive in the child.
    let child = unsafe {
        run_forked(CHILD_TIMEOUT, |out| {
            let r = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            write_i32(out, result_code(r as libc::c_long));
            let r = libc::prctl(
                libc::PR_SET_SECCOMP,
                SECCOMP_MODE_FILTER,
                prog_ptr as libc::c_ulong,
                0,
                0,
            );
            write_i32(out, result_code(r as libc::c_long));
            0
        })
    };
    let how = format!(
        "prctl(PR_GET_SECCOMP) = {mode}, /proc/self/status Seccomp: {}",
        status.as_deref().unwrap_or("absent")
    );
    match child_codes(child, 2) {
        Err(why) => found(NAME, false, format!("{how}; filter probe failed: {why}")),
        Ok(c) if c[0] != 0 => found(
            NAME,
            false,
            format!("{how}; PR_SET_NO_NEW_PRIVS failed: {}", describe_code(c[0])),
        ),
        Ok(c) if c[1] != 0 => found(
            NAME,
            false,
            format!(
                "{how}; loading an allow-all BPF filter failed: {} (kernel without CONFIG_SECCOMP_FILTER?)",
                describe_code(c[1])
            ),
        ),
        Ok(_) => found(
            NAME,
            true,
            format!("{how}; a child loaded an allow-all BPF filter (SECCOMP_MODE_FILTER)"),
        ),
    }
}

/// `user_namespaces`: `/proc/sys/user/max_user_namespaces` > 0 and a child
/// can `unshare(CLONE_NEWUSER)`.
pub fn user_namespaces() -> Feature {
    const NAME: &str = names::USER_NAMESPACES;
    let max_path = "/proc/sys/user/max_user_namespaces";
    let max = match std::fs::read_to_string(max_path) {
        Ok(s) => s.trim().to_string(),
        Err(e) => {
            return found(
                NAME,
                false,
                format!("cannot read {max_path}: {e} (kernel without CONFIG_USER_NS?)"),
            )
        }
    };
    if max.parse::<u64>().map_or(true, |n| n == 0) {
        return found(
            NAME,
            false,
            format!("{max_path} is {max}: user namespaces disabled"),
        );
    }
    // SAFETY: the child makes only the unshare and write syscalls.
    let child = unsafe {
        run_forked(CHILD_TIMEOUT, |out| {
            let r = libc::unshare(libc::CLONE_NEWUSER);
            write_i32(out, result_code(r as libc::c_long));
            0
        })
    };
    match child_codes(child, 1) {
        Err(why) => found(
            NAME,
            false,
            format!("{max_path} = {max}; probe failed: {why}"),
        ),
        Ok(c) if c[0] != 0 => found(
            NAME,
            false,
            format!(
                "{max_path} = {max}, but unshare(CLONE_NEWUSER) failed in a child: {}",
                describe_code(c[0])
            ),
        ),
        Ok(_) => found(
            NAME,
            true,
            format!("{max_path} = {max}; a child unshare(CLONE_NEWUSER)d"),
        ),
    }
}

/// `pidfd`: `pidfd_open(2)` on our own pid works.
pub fn pidfd() -> Feature {
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return found(
            names::PIDFD,
            false,
            format!(
                "pidfd_open(getpid()) failed: {} (kernel older than 5.3?)",
                std::io::Error::last_os_error()
            ),
        );
    }
    // SAFETY: `fd` is a descriptor we just opened and own.
    unsafe { libc::close(fd as RawFd) };
    found(
        names::PIDFD,
        true,
        "pidfd_open(getpid()) returned a descriptor",
    )
}

/// A field of `/proc/self/status`.
fn proc_status_field(field: &str) -> Option<String> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
}
