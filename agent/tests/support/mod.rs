//! The one test-support module of the agent's integration tests (each test file
//! says `mod support;`):
//!
//! - [`skip`]: the privileged-test check and every other skip (failing under CI)
//! - unique names ([`next`], [`unique_parent`]) and the busybox image
//!   ([`busybox_archive`])
//! - [`cgroup`]: waiting children, polling, a cleanup [`cgroup::Guard`] and the
//!   stale sweep of what a crashed run left
//! - [`host`]: a [`host::TestHost`] (data dir, cgroup parent, busybox) running
//!   commands in zones through the agent binary
//! - [`net`]: a [`net::NetLab`], a test host with a bridge of its own
//! - [`control`]: an in-test `Control` service for the fleet daemon's tests
//! - [`debian`]: the stock Debian image (debootstrap, cached) of whole-system zones
#![allow(dead_code, unused_imports)] // each test binary uses a different part

pub mod busybox;
pub mod cgroup;
pub mod control;
pub mod debian;
pub mod host;
pub mod net;
pub mod skip;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub use skip::{privileged, require, skip};

/// The agent binary (runs zsched, and `zone exec` in tests).
pub const AGENT: &str = env!("CARGO_BIN_EXE_zonefleet-agent");

/// A number unique in this process.
pub fn next() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// `zonefleet-test-<pid>-<n>`: a cgroup parent unique per process and call (the
/// stale sweeps recognise the prefix and the pid).
pub fn unique_parent() -> String {
    format!("zonefleet-test-{}-{}", std::process::id(), next())
}

/// The entries of `dir` named `<prefix><pid><sep>…` whose test process `pid` is
/// gone: what a crashed run left for the stale sweeps to remove.
pub fn stale_entries(dir: &Path, prefix: &str, sep: char) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.strip_prefix(prefix).is_some_and(|rest| {
                let pid = rest.split(sep).next().unwrap_or("");
                !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists()
            })
        })
        .collect()
}

/// The busybox image archive, built once per test binary.
pub fn busybox_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("zone-busybox-{}.tar.gz", std::process::id()));
        busybox::build(&out);
        out
    })
}
