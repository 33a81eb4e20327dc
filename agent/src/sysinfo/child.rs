//! Throwaway child processes for probes that change the state of the
//! process running them (entering namespaces, loading a seccomp filter).

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, read, ForkResult};

/// How long any one probe child may take before it is killed.
pub(crate) const CHILD_TIMEOUT: Duration = Duration::from_secs(5);

/// How a probe child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal (not by us).
    Signaled(i32),
    /// Still running at the deadline: killed and reaped.
    TimedOut,
}

/// What a probe child wrote to its pipe, and how it ended.
#[derive(Debug)]
pub(crate) struct ChildResult {
    pub outcome: Outcome,
    pub output: Vec<u8>,
}

impl ChildResult {
    /// The output read as native-endian `i32`s (what [`write_i32`] writes).
    pub fn codes(&self) -> Vec<i32> {
        self.output
            .chunks_exact(4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Why the child did not exit normally with status 0, if it did not.
    pub fn failure(&self) -> Option<String> {
        match self.outcome {
            Outcome::Exited(0) => None,
            Outcome::Exited(n) => Some(format!("probe child exited with status {n}")),
            Outcome::Signaled(s) => Some(format!("probe child killed by signal {s}")),
            Outcome::TimedOut => Some(format!(
                "probe child did not finish within {} s and was killed",
                CHILD_TIMEOUT.as_secs()
            )),
        }
    }
}

/// Forks a child that runs `f(pipe)` then `_exit`s with its result; returns
/// what it wrote to `pipe` and how it ended. The child is killed after
/// `timeout`, and always reaped.
///
/// # Safety
///
/// The caller may be multi-threaded, so `f` runs in a child where only
/// async-signal-safe calls are sound: raw system calls on memory prepared
/// before the fork. `f` must not allocate, lock, print, panic or touch
/// stdio; and it must not return into Rust code that unwinds.
pub(crate) unsafe fn run_forked(
    timeout: Duration,
    f: impl FnOnce(RawFd) -> i32,
) -> Result<ChildResult, Errno> {
    let (reader, writer) = pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: the child only runs `f`, which our caller guarantees is
    // async-signal-safe, then `_exit`s without running destructors or
    // atexit handlers.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let code = f(writer.as_raw_fd());
            // SAFETY: `_exit` is async-signal-safe and never returns.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(writer);
            fcntl(reader.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            let deadline = Instant::now() + timeout;
            let mut output = Vec::new();
            let mut buf = [0u8; 512];
            let drain = |output: &mut Vec<u8>, buf: &mut [u8]| loop {
                match read(reader.as_fd(), buf) {
                    Ok(0) => break,
                    Ok(n) => output.extend_from_slice(&buf[..n]),
                    Err(Errno::EINTR) => continue,
                    Err(_) => break,
                }
            };
            let outcome = loop {
                drain(&mut output, &mut buf);
                match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => break Outcome::Exited(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => break Outcome::Signaled(sig as i32),
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e),
                }
                if Instant::now() >= deadline {
                    let _ = kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    break Outcome::TimedOut;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            drain(&mut output, &mut buf);
            Ok(ChildResult { outcome, output })
        }
    }
}

/// Writes `value` to `fd` (async-signal-safe).
pub(crate) fn write_i32(fd: RawFd, value: i32) {
    let bytes = value.to_ne_bytes();
    // SAFETY: `bytes` is a live 4-byte buffer; write(2) only reads it.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

/// `0` if a raw syscall returned success, else `-errno` (async-signal-safe).
pub(crate) fn result_code(ret: libc::c_long) -> i32 {
    if ret < 0 {
        -Errno::last_raw()
    } else {
        0
    }
}

/// A readable text for a code written by [`result_code`].
pub(crate) fn describe_code(code: i32) -> String {
    if code == 0 {
        "ok".to_string()
    } else if code == i32::MIN {
        "no answer from the kernel".to_string()
    } else {
        Errno::from_raw(-code).to_string()
    }
}
