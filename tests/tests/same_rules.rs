//! The rules the agent and the controllers share, checked from both sides: the same
//! spec is refused with the same problems by `zonefleet-agent zone validate` and by
//! `zfadm zone validate` (both read and validate through `zonefleet_proto::spec`).
//!
//! The binaries are the workspace's own, next to this test's directory; `cargo test
//! --workspace` builds them first (alone: `cargo build --bins` before).

use std::process::Command;

use zonefleet_tests::binary;

/// What a binary's `zone validate` says of `spec`: its exit code and its report,
/// without the binary's own prefix.
fn validate(binary_name: &str, prefix: &str, spec: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spec.json");
    std::fs::write(&file, spec).unwrap();
    let out = Command::new(binary(binary_name))
        .args(["zone", "validate", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = stderr
        .trim_end()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{binary_name} said {stderr:?}"))
        .to_string();
    (out.status.code().unwrap_or(-1), report)
}

#[test]
fn the_agent_and_zfadm_refuse_a_spec_with_the_same_problems() {
    let specs = [
        // A bad capability and an unknown field: both named, with a rule broken.
        r#"{"image": "base@1", "limit_priv": ["CAP_NOPE"], "ram": 1, "cpu_cap": 0}"#,
        // An image version longer than 64 characters with '~' is fine; a bad alias not.
        &format!(
            r#"{{"image": "base@1~{}", "alias": "-x"}}"#,
            "9".repeat(100)
        ),
        // Bad JSON.
        r#"{"image": "base@1",}"#,
    ];
    for spec in specs {
        let agent = validate("zonefleet-agent", "zonefleet-agent: ", spec);
        let zfadm = validate("zfadm", "zfadm: error: ", spec);
        assert_eq!(agent.0, 1, "{spec}");
        assert_eq!(agent, zfadm, "{spec}");
    }
    let (_, report) = validate(
        "zfadm",
        "zfadm: error: ",
        r#"{"image": "base@1", "limit_priv": ["CAP_NOPE"], "ram": 1, "cpu_cap": 0}"#,
    );
    let fields: Vec<&str> = report
        .lines()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(fields, ["cpu_cap", "limit_priv[0]", "ram"], "{report}");
}

#[test]
fn both_accept_a_valid_spec() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spec.json");
    std::fs::write(&file, r#"{"image": "base@1.0~rc1", "alias": "web"}"#).unwrap();
    for name in ["zonefleet-agent", "zfadm"] {
        let out = Command::new(binary(name))
            .args(["zone", "validate", "-f"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid");
    }
}
