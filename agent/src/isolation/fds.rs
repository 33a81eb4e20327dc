//! File descriptors: nothing of the agent or zsched may leak into a zone.

use super::{IsolationError, Result};

/// Marks every descriptor from 3 up close-on-exec, so `execve` of the zone's
/// init drops them all, whatever zsched or a library had open. Descriptors the
/// setup still needs until `execve` (the error pipe) keep working until then.
pub fn cloexec_from(first: u32) -> Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags;
    // it closes nothing, so no Rust object's descriptor is invalidated.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        return Err(IsolationError::sys(
            "mark descriptors close-on-exec",
            format!("fd {first}.."),
            nix::Error::last(),
        ));
    }
    Ok(())
}
