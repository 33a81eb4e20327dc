//! `zonefleet-controller` answers `--help` and `--version`, refuses a missing
//! configuration file or a key (its own, or the signing CA's) others may read with a
//! message naming it, and signs an enrolling host's certificate with the signing CA
//! its configuration names.

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

#[test]
fn a_signing_ca_key_readable_by_others_is_refused_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    zonefleet_harness::loopback::write_cluster(dir.path(), "test", 1, "").unwrap();
    let key = dir.path().join("signing-ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(CONTROLLER)
        .arg("--config")
        .arg(dir.path().join("c1.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("signing_ca.key"), "{stderr}");
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
    assert!(!dir.path().join("data1").exists(), "started anyway");
}

/// Kills the controller when dropped, even when the test panics.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A host enrolls through the real binary, which signs with the signing CA its
/// configuration names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_enrolls_through_the_binary() {
    use std::time::{Duration, Instant};
    use zonefleet_proto::pb;
    use zonefleet_proto::pb::control_client::ControlClient;
    use zonefleet_proto::pb::operator_client::OperatorClient;
    use zonefleet_proto::tls::{client_config, connect_channel, ExpectedPeer};

    let dir = tempfile::tempdir().unwrap();
    let files = zonefleet_harness::loopback::write_cluster(dir.path(), "test", 1, "").unwrap();
    let log = std::fs::File::create(dir.path().join("c1.log")).unwrap();
    let _controller = Running(
        Command::new(CONTROLLER)
            .arg("--config")
            .arg(dir.path().join("c1.toml"))
            .current_dir(dir.path())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let addr = files.addrs[0].clone();
    let operator_config = client_config(
        &files.trust,
        ExpectedPeer::AnyController,
        Some(&files.operator),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let token = loop {
        let attempt = async {
            let channel = connect_channel(&addr, operator_config.clone()).await.ok()?;
            OperatorClient::new(channel)
                .create_join_token(pb::CreateJoinTokenRequest {
                    rack: "r1".to_owned(),
                    ..Default::default()
                })
                .await
                .ok()
        };
        if let Some(created) = attempt.await {
            break created.into_inner().token;
        }
        assert!(
            Instant::now() < deadline,
            "no token: {}",
            std::fs::read_to_string(dir.path().join("c1.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let host = uuid::Uuid::new_v4();
    let anonymous = client_config(&files.trust, ExpectedPeer::AnyController, None).unwrap();
    let channel = connect_channel(&addr, anonymous).await.unwrap();
    let enrolled = ControlClient::new(channel)
        .enroll(pb::EnrollRequest {
            token,
            csr_pem: csr,
            host_id: host.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let cert = zonefleet_proto::tls::CertKey::from_pem(
        &enrolled.certificate_pem,
        &zonefleet_proto::pki::KeyPem::new(key.serialize_pem()),
    )
    .unwrap();
    assert_eq!(
        cert.identity().unwrap().to_string(),
        format!("zonefleet://test/agent/{host}")
    );
    assert_eq!(enrolled.controllers, vec![addr]);
}
