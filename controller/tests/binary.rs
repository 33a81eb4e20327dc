//! `zonefleet-controller` answers `--help` and `--version`, and refuses a missing
//! configuration file with a message naming it.

use std::process::Command;

const CONTROLLER: &str = env!("CARGO_BIN_EXE_zonefleet-controller");

#[test]
fn help_version_and_a_missing_config() {
    let help = Command::new(CONTROLLER).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config"));
    let version = Command::new(CONTROLLER).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("zonefleet-controller {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(CONTROLLER)
        .args(["--config", "/nonexistent/controller.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/controller.toml"));
}
