//! The `zonefleet-agent` command line as an operator meets it: help and version,
//! `zone validate` (every problem named, nothing made), JSON listings on an empty
//! host. Needs no root.

use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_zonefleet-agent");

fn agent(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(AGENT)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run zonefleet-agent")
}

#[test]
fn help_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let help = agent(dir.path(), &["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for cmd in ["image", "zone", "sysinfo", "bench"] {
        assert!(text.contains(cmd), "--help lists {cmd}: {text}");
    }
    let version = agent(dir.path(), &["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("zonefleet-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn zone_validate_names_every_problem_and_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"alias": "ok", "image": "busybox", "max_physical_memory": 64}"#,
    )
    .unwrap();
    let out = agent(
        dir.path(),
        &["zone", "validate", "-f", good.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid");

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"alias": "../etc", "image": "busybox", "cpu_cap": 0, "max_lwps": 0}"#,
    )
    .unwrap();
    let out = agent(
        dir.path(),
        &["zone", "validate", "-f", bad.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for field in ["alias: \"../etc\"", "cpu_cap: 0", "max_lwps: 0"] {
        assert!(err.contains(field), "names {field}: {err}");
    }
    let unknown = dir.path().join("unknown.json");
    std::fs::write(&unknown, r#"{"image": "busybox", "ram": 64}"#).unwrap();
    let out = agent(
        dir.path(),
        &["zone", "validate", "-f", unknown.to_str().unwrap()],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `ram`"));
    // validate reads the spec only: no zone, no data dir layout.
    assert!(!dir.path().join("zones").exists());
}

#[test]
fn listings_of_an_empty_host_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(dir.path(), &["image", "list", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let images: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(images, serde_json::json!([]));
}
