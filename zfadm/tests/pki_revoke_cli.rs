//! Runs the real `zfadm` binary against an in-process cluster: `pki revoke` records a
//! revocation `pki list` then shows (table and JSON), and bad input is refused with a
//! clear error before anything is sent, changing nothing.

mod support;
use support::text;

use std::time::Duration;

use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{Cluster, CLUSTER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_list_through_the_cli() {
    bounded(Duration::from_secs(60), async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let admin = support::Admin::new(&cluster);
        let run = |args: &[&str]| admin.zfadm(args);

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
