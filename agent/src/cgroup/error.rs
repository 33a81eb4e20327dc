//! The error every cgroup operation returns.

use std::path::PathBuf;
use std::time::Duration;

use super::detect::DetectError;
use super::v2::bpf::BpfError;

/// What went wrong in the cgroup layer; every variant names the file or path.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`write`, `read`, `mkdir`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A write failed; `value` is what was written.
    #[error("write {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel stored another value than the one written.
    #[error("{path}: wanted {wanted:?} but the kernel stored {got:?}")]
    ReadBack {
        /// The file.
        path: PathBuf,
        /// The value we wanted to see.
        wanted: String,
        /// What the file holds.
        got: String,
    },
    /// A cgroup file did not hold what its format says.
    #[error("{path}: cannot parse {content:?} as {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Its content (or the offending part).
        content: String,
        /// What was expected.
        what: &'static str,
    },
    /// A limit is out of range.
    #[error("invalid limit {field}={value}: allowed {allowed}")]
    InvalidLimit {
        /// The [`Limits`](super::Limits) field.
        field: &'static str,
        /// Its value.
        value: String,
        /// The allowed range.
        allowed: String,
    },
    /// A zone or parent name cannot be a cgroup directory.
    #[error("invalid cgroup name {name:?}: {why}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why not.
        why: &'static str,
    },
    /// The host's kernel lacks what a limit or operation needs.
    #[error("kernel feature missing: {feature} ({detail})")]
    FeatureMissing {
        /// The feature (a controller, a file, a syscall).
        feature: String,
        /// Where it was looked for.
        detail: String,
    },
    /// The zone's cgroup already exists.
    #[error("zone {zone}: cgroup {path} already exists")]
    AlreadyExists {
        /// The zone.
        zone: String,
        /// The existing directory.
        path: PathBuf,
    },
    /// The zone has no cgroup.
    #[error("zone {zone}: no cgroup at {path}")]
    NotFound {
        /// The zone.
        zone: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A cgroup cannot be removed because processes are still in it.
    #[error("cgroup {path} still holds processes {pids:?}")]
    Busy {
        /// The directory.
        path: PathBuf,
        /// The processes left.
        pids: Vec<u32>,
    },
    /// Waiting for the kernel took too long.
    #[error("{what} at {path} not done after {timeout:?}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// The cgroup.
        path: PathBuf,
        /// How long was waited.
        timeout: Duration,
    },
    /// Sending a signal failed (other than to an already gone process).
    #[error("kill -{signal} {pid}: {source}")]
    Signal {
        /// The process.
        pid: u32,
        /// The signal's name.
        signal: &'static str,
        /// The OS error.
        #[source]
        source: nix::Error,
    },
    /// The host's layout could not be detected.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// Loading or attaching the v2 device filter failed.
    #[error(transparent)]
    Bpf(#[from] BpfError),
}
