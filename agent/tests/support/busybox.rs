//! Builds the busybox zone image archive with `deploy/images/build-busybox.sh`.
//!
//! Shared by the agent's tests (`tests/support/`) and the multi-host harness (included
//! by path from `tests/src/lib.rs`), so both boot the image the demo boots.

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
