//! The steps that turn a freshly forked process into a zone's init: each module
//! is one step (namespaces, root filesystem, `/dev`, `/proc` masking,
//! capabilities, seccomp, file descriptors), run in that order by zsched.
//!
//! Everything here runs in the single-threaded child that becomes the zone's
//! PID 1, between `fork` and `execve`.

pub mod caps;
pub mod dev;
pub mod fds;
pub mod mount;
pub mod namespaces;
pub mod proc_mask;
pub mod rootfs;
pub mod seccomp;
pub mod tree;
pub mod userns;

use std::path::PathBuf;

/// Why a zone's isolation could not be set up. Every variant names the step and
/// the path or value involved, because the message is what the operator sees in
/// `zone boot`'s error.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// A system call of a setup step failed.
    #[error("{step}: {path}: {source}")]
    Sys {
        /// The setup step, e.g. "mount /proc".
        step: &'static str,
        /// The path (or value) it acted on.
        path: PathBuf,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// A capability name that the kernel or the `caps` crate does not know.
    #[error("limit_priv: unknown capability {0:?}")]
    UnknownCapability(String),
    /// Changing the capability sets failed.
    #[error("capabilities: {0}")]
    Caps(String),
    /// The seccomp filter could not be built or loaded.
    #[error("seccomp: {0}")]
    Seccomp(String),
}

impl IsolationError {
    /// Shorthand for [`IsolationError::Sys`].
    pub fn sys(step: &'static str, path: impl Into<PathBuf>, source: nix::Error) -> Self {
        IsolationError::Sys {
            step,
            path: path.into(),
            source,
        }
    }
}

/// Result of an isolation step.
pub type Result<T> = std::result::Result<T, IsolationError>;

/// The last step before `execve` of anything in a zone (its init or a `zone
/// exec`): the seccomp filter, then the capability sets cut to `keep`. In that
/// order because loading a filter without `no_new_privs` needs `CAP_SYS_ADMIN`
/// (in the caller's user namespace), which `keep` rarely holds. `no_new_privs`
/// is not set: setuid programs (`su`, `passwd`, `ping`'s file capability) work
/// as in any system, and what they can gain is bounded by the bounding set,
/// which is `keep`.
pub fn confine(keep: &::caps::CapsHashSet, seccomp: &[seccompiler::BpfProgram]) -> Result<()> {
    seccomp::apply(seccomp)?;
    caps::restrict_to(keep)
}
