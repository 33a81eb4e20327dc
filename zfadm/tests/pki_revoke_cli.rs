//! Runs the real `zfadm` binary against an in-process cluster: `pki revoke` records a
//! revocation `pki list` then shows (table and JSON), and bad input is refused with a
//! clear error before anything is sent, changing nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{Cluster, CLUSTER};
use zonefleet_proto::pki::Validity;

/// Runs zfadm with `args` as the cluster's admin, off the runtime's workers.
async fn zfadm(dir: &Path, addr: String, args: &[&str]) -> Output {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_zfadm"))
            .args(&args)
            .env("ZONEFLEET_CONTROLLERS", addr)
            .env("ZONEFLEET_CA", dir.join("ca.crt"))
            .env("ZONEFLEET_CERT", dir.join("admin.crt"))
            .env("ZONEFLEET_KEY", dir.join("admin.key"))
            .env("ZONEFLEET_CONFIG", dir.join("zfadm.toml"))
            .output()
            .expect("run zfadm")
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_list_through_the_cli() {
    bounded(Duration::from_secs(60), async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let dir = tempfile::tempdir().unwrap();
        let admin = cluster
            .ca
            .issue_operator("admin", Validity::days(1).unwrap())
            .unwrap();
        // An empty config file, so no one's ~/.config is read.
        std::fs::write(dir.path().join("zfadm.toml"), "").unwrap();
        std::fs::write(dir.path().join("ca.crt"), cluster.ca.root_cert_pem()).unwrap();
        std::fs::write(dir.path().join("admin.crt"), &admin.cert_pem).unwrap();
        let key = dir.path().join("admin.key");
        std::fs::write(&key, admin.key_pem.as_ref().unwrap().expose_pem()).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let addr = cluster.members[&1].addr.to_string();
        let run = |args: &'static [&'static str]| zfadm(dir.path(), addr.clone(), args);

        // Bad input: a usage error naming the value, nothing sent.
        for (args, names) in [
            (&["pki", "revoke", "--serial", "zz"][..], "serial \"zz\""),
            (
                &["pki", "revoke", "--identity", "https://test/operator/alice"][..],
                "does not start with zonefleet://",
            ),
            (&["pki", "revoke"][..], "--identity"),
        ] {
            let out = run(args).await;
            assert_eq!(
                out.status.code(),
                Some(2),
                "{args:?}: {}",
                text(&out.stderr)
            );
            assert!(
                text(&out.stderr).contains(names),
                "{names}: {}",
                text(&out.stderr)
            );
        }
        // Of another cluster: refused by the controllers.
        let out = run(&[
            "pki",
            "revoke",
            "--identity",
            "zonefleet://other/operator/x",
        ])
        .await;
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("not of cluster"),
            "{}",
            text(&out.stderr)
        );
        let out = run(&["pki", "list", "-o", "json"]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "[]");

        let out = run(&[
            "pki",
            "revoke",
            "--identity",
            "zonefleet://test/operator/alice",
            "--reason",
            "laptop stolen",
        ])
        .await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("zonefleet://test/operator/alice"));

        let out = run(&["pki", "list"]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let table = text(&out.stdout);
        assert!(table.starts_with("KIND"), "{table}");
        assert!(table.contains("laptop stolen"), "{table}");
        let out = run(&["pki", "list", "-o", "json"]).await;
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(listed[0]["identity"], "zonefleet://test/operator/alice");
        assert_eq!(
            listed[0]["revoked_by"],
            format!("zonefleet://{CLUSTER}/operator/admin")
        );
        assert_eq!(listed[0]["reason"], "laptop stolen");
    })
    .await;
}
