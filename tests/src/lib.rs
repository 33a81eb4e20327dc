//! The harness for zonefleet's multi-host and chaos suites (never shipped): it runs the
//! real binaries, each host in its own network namespace behind a bridge "switch", and
//! removes everything it made, even when a test fails.
//!
//! * [`fleet`]: the PKI, controllers on their hosts and `zfadm` on an operator host;
//! * [`names`]: unique names per run, and the sweep of what earlier runs left behind;
//! * [`netns`]: the switch and the hosts (a network namespace each, one veth to the
//!   switch, an address in the run's subnet), links that tests cut and heal — the
//!   `zonefleet-devfleet` crate's, which `zfadm dev up` builds its fleet with too;
//! * [`ops`]: what the host-loss suites do to a fleet and read of it;
//! * [`sampler`]: the double-run check (what each host really runs, sampled);
//! * [`process`]: a binary run inside a host's network namespace, with its log kept,
//!   stopped with bounded waits;
//! * [`binary`]: where the workspace's binaries are.

pub mod fleet;
pub mod names;
pub mod ops;
pub mod process;
pub mod sampler;

pub use zonefleet_devfleet::net as netns;

#[path = "../../agent/tests/support/skip.rs"]
mod skip;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use skip::{privileged, require, skip};

/// `target/<profile>/`, where the workspace's binaries are (the running test is in
/// its `deps/`).
fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .to_owned()
}

/// A binary of the workspace, built in the same target directory as the running test
/// (`cargo test --workspace` builds the binaries first; alone: `cargo build --bins`).
pub fn binary(name: &str) -> PathBuf {
    let path = binary_dir().join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --bins` first",
        path.display()
    );
    path
}

/// The busybox zone image archive (as the demo boots), built once per test process next
/// to the binaries.
pub fn busybox_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let out = binary_dir().join(format!("zone-busybox-{}.tar.gz", std::process::id()));
        zonefleet_devfleet::image::build_busybox(&out).expect("the busybox image");
        out
    })
}
