//! zonefleet's controller benchmark, run in one go by `bench/run`:
//!
//! 1. a 3-member zonefleet cluster (release `zonefleet-controller` binaries, mTLS,
//!    fsync'd redb) on loopback: closed-loop one-zone creates at each client count;
//! 2. the leader-kill run: SIGKILL the leader repeatedly under a steady write load and
//!    measure how long writes stop;
//! 3. a 3-member etcd cluster on loopback: puts of values of the same size as the
//!    zonefleet command, at the same client counts.
//!
//! `zonefleet-hostsim` (its own binary) measures the leader with 1,000 and 10,000
//! simulated hosts heartbeating ([`hostsim`]).
//!
//! Every child process is killed when the run ends, fails or is interrupted.

pub mod hostsim;
pub mod load;
pub mod procs;
pub mod stats;
pub mod zf;

#[cfg(feature = "etcd")]
pub mod etcd;
