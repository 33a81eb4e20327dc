//! Test support for zonefleet's controllers (never shipped): what the controller's
//! integration tests, its benchmarks and `bench/` build on, in the spirit of
//! raft-rs's harness crate.
//!
//! * [`net`]: a network whose links tests cut and heal, one way or both, plugged into
//!   each controller's dialer seam (`zonefleet_controller::raft::dial`);
//! * [`cluster`]: an in-process controller cluster on loopback over that network;
//! * [`loopback`]: the files of a cluster of controller processes on loopback;
//! * [`fixtures`]: the hosts, specs and create requests tests build.

pub mod cluster;
pub mod fixtures;
pub mod loopback;
pub mod net;

use std::future::Future;
use std::time::Duration;

/// Runs a test body under a deadline.
pub async fn bounded<F: Future<Output = ()>>(limit: Duration, body: F) {
    tokio::time::timeout(limit, body)
        .await
        .expect("test timed out");
}
