//! The zone library: everything an agent does on its host (images, cgroups,
//! isolation, the zone lifecycle). The fleet daemon ([`daemon`]) and the standalone
//! `zonefleet-agent zone …` commands both drive it.

pub mod cgroup;
pub mod clock;
pub mod daemon;
pub mod disk;
pub mod fence;
pub mod files;
pub mod image;
pub mod isolation;
pub mod net;
pub mod proc_stat;
pub mod process;
pub mod sysinfo;
pub mod zone;
pub mod zsched;

/// The one skip helper of every agent test (see `tests/support/skip.rs`).
#[cfg(test)]
#[path = "../tests/support/skip.rs"]
mod test_skip;
