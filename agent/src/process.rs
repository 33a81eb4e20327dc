//! Small process primitives shared by zsched and `zone exec`: pidfds and
//! reaping a child into a shell-style exit status.

use std::os::fd::{FromRawFd, OwnedFd};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Shell-style status: the exit code, or 128 + signal number when killed.
    pub status: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
}

/// Opens a pidfd for `pid`: a handle that keeps naming that process even if
/// its pid is reused, and that polls readable when it exits.
pub fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor that
    // we take ownership of below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits for `child` to end and reaps it, retrying on EINTR and ignoring
/// stop/continue events. `None` if it cannot be waited for (not our child).
pub fn reap(child: Pid) -> Option<Exit> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => {
                return Some(Exit {
                    status: code,
                    signal: None,
                })
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Some(Exit {
                    status: 128 + sig as i32,
                    signal: Some(sig as i32),
                })
            }
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => return None,
        }
    }
}
