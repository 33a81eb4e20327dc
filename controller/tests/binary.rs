//! `zonefleet-controller` answers `--help` and `--version`, and refuses a missing
//! configuration file or a key others may read with a message naming it.

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

#[test]
fn a_key_readable_by_others_is_refused_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    zonefleet_harness::loopback::write_cluster(dir.path(), "test", 1, "").unwrap();
    let key = dir.path().join("c1.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = Command::new(CONTROLLER)
        .arg("--config")
        .arg(dir.path().join("c1.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
    assert!(stderr.contains("0640"), "{stderr}");
    assert!(!dir.path().join("data1").exists(), "started anyway");
}
