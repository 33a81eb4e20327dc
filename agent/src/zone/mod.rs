//! The zone lifecycle on one host, one file per verb: `create` (configure +
//! install), `boot`, `halt`, `reboot`, `update`, `delete`, plus reading
//! (`status`), running commands inside (`exec`), the host-side process view
//! (`ps`), the console log (`logs`) and the console itself (`console`). The standalone `zonefleet-agent zone …`
//! commands and the fleet daemon both drive these.
//!
//! Concurrency: every verb that changes a zone holds that zone's lock file, and
//! `create`/`delete` also hold the host's zone-table lock, so two commands on
//! one host never interleave their changes to the same zone.

pub mod autoboot;
pub mod boot;
pub mod console;
pub mod create;
pub mod delete;
pub mod exec;
pub mod features;
pub mod halt;
pub mod halt_signal;
pub mod host;
pub mod idmap;
pub mod limits;
pub mod lock;
pub mod logs;
pub mod net;
pub mod paths;
pub mod ps;
pub mod record;
pub mod status;
pub mod update;

pub use host::ZoneHost;
pub use record::{LifecycleState, ZoneRecord};
pub use status::{ZoneState, ZoneStatus};

use std::path::PathBuf;

/// What can go wrong with a zone verb. Each variant names the zone, field, file
/// or kernel feature involved, because this is what the operator reads.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The spec (or patch) is invalid or could not be parsed.
    // Transparent: the problems are the whole message (printed once, not again as
    // the source).
    #[error(transparent)]
    Spec(#[from] zonefleet_proto::spec::SpecError),
    /// No zone matches the name.
    #[error("no zone matches {0:?}")]
    NotFound(String),
    /// More than one zone matches a uuid prefix or alias.
    #[error("{name:?} is ambiguous: it matches {matches}")]
    Ambiguous {
        /// The name given.
        name: String,
        /// The zones it matches.
        matches: String,
    },
    /// A zone with this uuid or alias already exists on the host.
    #[error("{field}: {value:?} is already used by zone {uuid}")]
    Conflict {
        /// "uuid" or "alias".
        field: &'static str,
        /// The value.
        value: String,
        /// The zone that holds it.
        uuid: String,
    },
    /// The verb does not apply in the zone's current state.
    #[error("zone {uuid} is {state}: cannot {verb}")]
    WrongState {
        /// The zone.
        uuid: String,
        /// Its state.
        state: String,
        /// The verb refused.
        verb: &'static str,
    },
    /// The verb needs the zone running, and it is not.
    #[error("zone {uuid}{} is not running: cannot {verb}", alias.as_deref().map(|a| format!(" ({a})")).unwrap_or_default())]
    NotRunning {
        /// The zone.
        uuid: String,
        /// Its alias, if it has one.
        alias: Option<String>,
        /// The verb refused.
        verb: &'static str,
    },
    /// The zone runs, but its zsched serves no console.
    #[error("zone {uuid} is running but serves no console (its zsched predates the console relay): reboot the zone to get one")]
    NoConsole {
        /// The zone.
        uuid: String,
    },
    /// The zone's console failed.
    #[error(transparent)]
    Console(#[from] crate::zsched::console::ConsoleError),
    /// The zone needs a kernel feature this host lacks: refused rather than run weaker.
    #[error("zone needs {feature}, which this host lacks: {detail}")]
    MissingFeature {
        /// The feature's name (as in sysinfo).
        feature: String,
        /// Why it is missing.
        detail: String,
    },
    /// The image store failed (image missing, import error…).
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The zone's disk failed.
    #[error(transparent)]
    Disk(#[from] crate::disk::DiskError),
    /// The zone's cgroup failed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// zsched failed to boot or supervise the zone.
    #[error(transparent)]
    Zsched(#[from] crate::zsched::ZschedError),
    /// A zone file failed.
    #[error(transparent)]
    Runtime(#[from] crate::zsched::runtime::RuntimeError),
    /// A zone file could not be written.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// The zone's network could not be planned, built or removed.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    /// One of the zone's addresses is already used by another zone here.
    #[error("nics[{nic}].ip: {ip} is already used by zone {uuid} on this host")]
    AddressInUse {
        /// The NIC of the refused zone.
        nic: usize,
        /// The address.
        ip: String,
        /// The zone that holds it.
        uuid: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A process operation failed.
    #[error("{what}: {source}")]
    Sys {
        /// The operation.
        what: String,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// The zone did not stop in time.
    #[error("zone {uuid} did not stop within {secs} s")]
    Timeout {
        /// The zone.
        uuid: String,
        /// The time allowed.
        secs: u64,
    },
}

impl ZoneError {
    /// Shorthand for [`ZoneError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ZoneError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result of a zone verb.
pub type Result<T> = std::result::Result<T, ZoneError>;
