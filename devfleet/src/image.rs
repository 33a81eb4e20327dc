//! The busybox zone image every local fleet boots, built by
//! `deploy/images/build-busybox.sh` (embedded here, so a `zfadm` binary away from the
//! source tree builds the same bytes).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The image builder script, as in `deploy/images/`.
const SCRIPT: &str = include_str!("../../deploy/images/build-busybox.sh");

/// Writes the busybox image archive to `out` (the script installs `busybox-static` with
/// apt-get when it is missing and we are root). `Err` carries what the script said.
pub fn build_busybox(out: &Path) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-s")
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running sh for build-busybox.sh: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(SCRIPT.as_bytes())
        .map_err(|e| format!("feeding build-busybox.sh to sh: {e}"))?;
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for build-busybox.sh: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "build-busybox.sh {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
