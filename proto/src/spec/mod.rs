//! The zone spec and the values it is made of: the domain types that cross the
//! wire, read from and written to JSON (vmadm-like payloads), validated, and
//! converted to and from their protobuf messages.
//!
//! Two layers of checking, one error format (see [`ValidationError`]):
//! - reading ([`ZoneSpec::from_json`], `TryFrom<pb::ZoneSpec>`) refuses what cannot
//!   be represented: unknown fields, wrong types, malformed addresses, MACs,
//!   capability names, constraints, image references;
//! - [`ZoneSpec::validate`] checks ranges, names and consistency between fields,
//!   and reports every problem at once.
//!
//! The shared pieces (errors, checks, string-typed values) also serve
//! [`crate::image`], [`crate::network`] and [`crate::host`].

mod capability;
pub(crate) mod check;
mod constraint;
pub(crate) mod convert;
mod defaults;
mod error;
mod image_ref;
mod limits;
mod mac;
mod nic;
mod patch;
mod placement;
mod read;
mod signal;
pub(crate) mod text;
mod validate;
mod zone;

pub use capability::Capability;
pub use constraint::{Constraint, ConstraintOp};
pub use defaults::{
    DEFAULT_CPU_SHARES, DEFAULT_INIT, DEFAULT_IO_PRIORITY, DEFAULT_LIMIT_PRIV, DEFAULT_MAX_LWPS,
    DEFAULT_MAX_PHYSICAL_MEMORY, DEFAULT_MIN_SWAP, DEFAULT_QUOTA,
};
pub(crate) use error::Problems;
pub use error::{show_str, SpecError, ValidationError, ValidationErrors, ValueError};
pub use image_ref::{ImageRef, Sha256Digest};
pub use limits::{
    cpu_cap_to_cfs_quota_us, cpu_shares_to_weight, io_priority_to_weight, CPU_CAP, CPU_SHARES,
    CPU_WEIGHT, IO_PRIORITY, IO_WEIGHT, MAX_CPUS, MAX_LWPS, MEMORY_MIB, METADATA_BYTES, QUOTA_GIB,
    TMPFS_MIB,
};
pub use mac::MacAddr;
pub use nic::{Nic, MAX_NICS};
pub use patch::{check_immutable, ZonePatch, IMMUTABLE};
pub use placement::{
    Affinity, AffinityRule, AffinityTarget, FailureDomain, Placement, PlacementStrategy, RuleMode,
    Spread,
};
pub use signal::{Signal, StdSignal, MAX_RT_OFFSET};
pub use text::ROOT_PATH;
pub use zone::{Brand, OnHostLost, ZoneSpec, FIELDS};
