//! Runs the real `zfadm` binary against an in-process cluster: `token create` makes a
//! token a host then enrolls with (once), `token list` shows it (table and JSON, never
//! the token), `token revoke` removes one so it can no longer be used, and bad input
//! is refused with a clear error, changing nothing.

mod support;
use support::text;

use std::time::Duration;

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use tonic::Code;
use uuid::Uuid;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::Cluster;
use zonefleet_proto::pb;
use zonefleet_proto::pb::control_client::ControlClient;
use zonefleet_proto::tls::{client_config, connect_channel, ExpectedPeer};

/// Enrolls a new host with `token` at `addr`: the gRPC status code.
async fn enroll(cluster: &Cluster, addr: &str, token: &str) -> Code {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let config = client_config(&cluster.trust, ExpectedPeer::AnyController, None).unwrap();
    let channel = connect_channel(addr, config).await.unwrap();
    match ControlClient::new(channel)
        .enroll(pb::EnrollRequest {
            token: token.to_owned(),
            csr_pem: csr,
            host_id: Uuid::new_v4().to_string(),
        })
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_revoke_tokens_through_the_cli() {
    bounded(Duration::from_secs(60), async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let admin = support::Admin::new(&cluster);
        let addr = admin.addr.clone();
        let run = |args: &[&str]| admin.zfadm(args);

        // Bad input: a usage error naming the value, nothing sent.
        for (args, names) in [
            (&["token", "create", "--ttl", "0s"][..], "out of range"),
            (&["token", "create", "--ttl", "2w"][..], "unit"),
            (
                &["token", "create", "--label", "ssd"][..],
                "\"ssd\" is not key=value",
            ),
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
        // Refused by the controllers: a bad rack, an id that is no id.
        let out = run(&["token", "create", "--rack", "no such rack"]).await;
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains("rack"), "{}", text(&out.stderr));
        let out = run(&["token", "revoke", "zz"]).await;
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("invalid_argument"),
            "{}",
            text(&out.stderr)
        );
        let out = run(&["token", "list", "-o", "json"]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "[]");

        let out = run(&[
            "token", "create", "--ttl", "1h", "--rack", "r1", "--label", "ssd=true", "-o", "json",
        ])
        .await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let token = created["token"].as_str().unwrap().to_owned();
        assert!(token.starts_with("zft_"), "{created}");
        assert_eq!(created["ca_fingerprint"], cluster.ca.fingerprint());
        let out = run(&["token", "create", "--rack", "r2"]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let printed = text(&out.stdout);
        let other = printed.lines().next().unwrap().to_owned();
        assert!(other.starts_with("zft_"), "{other}");
        assert!(
            printed.contains(&format!(
                "zonefleet.controllers={addr} zonefleet.token={other} zonefleet.ca={}",
                cluster.ca.fingerprint()
            )),
            "{printed}"
        );

        // The token works, once.
        assert_eq!(enroll(&cluster, &addr, &token).await, Code::Ok);
        assert_eq!(
            enroll(&cluster, &addr, &token).await,
            Code::PermissionDenied
        );

        let out = run(&["token", "list"]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let table = text(&out.stdout);
        assert!(table.starts_with("ID"), "{table}");
        assert!(
            table.contains("ssd=true") && table.contains("used by"),
            "{table}"
        );
        assert!(
            !table.contains(&token) && !table.contains(&other),
            "{table}"
        );
        let out = run(&["token", "list", "-o", "json"]).await;
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(!text(&out.stdout).contains(&token));
        let unused = listed.iter().find(|t| t["used"] == false).unwrap();
        assert_eq!(unused["rack"], "r2");
        let id = unused["id"].as_str().unwrap().to_owned();

        let out = run(&["token", "revoke", &id]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&id), "{}", text(&out.stdout));
        assert_eq!(
            enroll(&cluster, &addr, &other).await,
            Code::PermissionDenied
        );
        let out = run(&["token", "revoke", &id]).await;
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("not_found"),
            "{}",
            text(&out.stderr)
        );
        let out = run(&["token", "list", "-o", "json"]).await;
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
    })
    .await;
}
