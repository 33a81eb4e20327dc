//! Builds the busybox zone image archive with `deploy/images/build-busybox.sh`.
//!
//! The agent's tests boot the image the demo and the multi-host suites boot (those
//! build it with `zonefleet_devfleet::image`, which embeds the same script).

use std::path::Path;
use std::process::{Command, Stdio};

/// Writes the busybox image archive to `out` (the script installs `busybox-static`
/// with apt-get when it is missing); panics when the script fails.
pub fn build(out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images/build-busybox.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .expect("run build-busybox.sh");
    assert!(status.success(), "build-busybox.sh failed: {status}");
}
