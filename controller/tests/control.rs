//! The agents' `Control` service through the real listeners of an in-process cluster,
//! enrollment and who may call what: a one-time join token works once, on any
//! controller, before its expiry (a forged, expired or revoked one never), bad input
//! consumes nothing, the token's rack and labels become the host's inventory, renewal
//! keeps the identity, enrollment is rate-limited and needs a signing CA, and an agent
//! acts only for its own host. Leases: `control_leases.rs`; the watch and reports:
//! `control_watch.rs`.

mod support;

use std::time::Duration;

use tonic::{Code, Status};
use uuid::Uuid;
use zonefleet_controller::state::tokens::TOKEN_REFUSED;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{test_raft_config, Cluster, CLUSTER};
use zonefleet_proto::pb;
use zonefleet_proto::pb::control_client::ControlClient;
use zonefleet_proto::pki::{identity_from_cert_der, KeyPem};
use zonefleet_proto::tls::{client_config, connect_channel, CertKey, ExpectedPeer};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_enrolls_once_anywhere_and_gives_the_host_its_inventory() {
    log();
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let secret = token(&cluster, 3600).await;
        let host = Uuid::new_v4();

        // A bad CSR is refused before the token is consumed.
        let err = anonymous(&cluster, follower)
            .await
            .enroll(pb::EnrollRequest {
                token: secret.clone(),
                csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n".to_owned(),
                host_id: host.to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains("csr_pem"), "{err}");
        let err = enroll(&cluster, follower, &secret, Uuid::nil())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");

        // Enrolled through a follower: the certificate is the host's, presented with
        // the signing CA and the root, and the root and the controllers come with it.
        let (cert, response) = enroll(&cluster, follower, &secret, host).await.unwrap();
        let identity = identity_from_cert_der(&cert.chain[0]).unwrap();
        assert_eq!(
            identity.to_string(),
            format!("zonefleet://{CLUSTER}/agent/{host}")
        );
        assert_eq!(cert.chain.len(), 3);
        assert_eq!(response.ca_pem, cluster.ca.root_cert_pem());
        assert_eq!(response.controllers.len(), 3);

        // The same token again, at any controller, for any host: refused, and the
        // refusal does not say why.
        for id in 1..=3 {
            let err = enroll(&cluster, id, &secret, Uuid::new_v4())
                .await
                .map(|_| ())
                .unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{err}");
            assert_eq!(err.message(), TOKEN_REFUSED);
        }
        // Forged.
        let forged = format!("zft_{}", "0".repeat(64));
        let err = enroll(&cluster, 1, &forged, Uuid::new_v4())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(err.message(), TOKEN_REFUSED);
        // Expired (1 s of life, judged at the proposal's time). (Made after the token
        // revoked below: making a token forgets the expired ones.)
        let revoked = token(&cluster, 3600).await;
        let short = token(&cluster, 1).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let err = enroll(&cluster, 1, &short, Uuid::new_v4())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(err.message(), TOKEN_REFUSED);
        // Revoked.
        let mut operator = cluster.operator(follower).await;
        let listed = operator
            .list_join_tokens(pb::ListJoinTokensRequest::default())
            .await
            .unwrap()
            .into_inner()
            .tokens;
        assert_eq!(listed.len(), 3, "{listed:?}");
        let text = format!("{listed:?}");
        for s in [&secret, &short, &revoked] {
            assert!(!text.contains(s.as_str()), "the list shows a token: {text}");
        }
        let used: Vec<_> = listed.iter().filter(|t| t.used).collect();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].used_by_host, host.to_string());
        assert_eq!(listed.iter().filter(|t| t.expired).count(), 1);
        let unused_id = listed
            .iter()
            .find(|t| !t.used && !t.expired)
            .unwrap()
            .id
            .clone();
        operator
            .revoke_join_token(pb::RevokeJoinTokenRequest {
                id: unused_id[..10].to_owned(),
            })
            .await
            .unwrap();
        let err = enroll(&cluster, 1, &revoked, Uuid::new_v4())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let err = operator
            .revoke_join_token(pb::RevokeJoinTokenRequest {
                id: "zz".to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);

        // Every refusal was logged with the digest's prefix, no log line (audit lines
        // included) ever holds a token.
        let lines = logged();
        let digest = |t: &str| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(t.as_bytes()))
        };
        for refused in [&secret, &forged, &short, &revoked] {
            let prefix = &digest(refused)[..16];
            assert!(
                lines.contains(&format!("token=\"{prefix}\""))
                    || lines.contains(&format!("token={prefix}")),
                "no refusal logged for {prefix}:\n{lines}"
            );
        }
        assert!(lines.contains("join token refused"), "{lines}");
        for t in [&secret, &forged, &short, &revoked] {
            assert!(!lines.contains(t.as_str()), "a token in the log:\n{lines}");
        }

        // Registering: the token's rack and labels, never the host's word.
        let mut agent = control_as(&cluster, follower, &cert).await;
        let terms = register(&mut agent, host).await;
        assert_eq!(
            (terms.heartbeat_interval_ms, terms.lease_ttl_ms),
            (500, 2000)
        );
        let registered = get_host(&cluster, host).await;
        assert_eq!(registered.rack, "r7");
        assert_eq!(registered.labels["ssd"], "true");
        assert_eq!(registered.status, pb::HostStatus::Ready as i32);

        // Renewal: a new certificate of the same identity, for a new key.
        let (key, csr) = key_and_csr();
        let renewed = agent
            .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr })
            .await
            .unwrap()
            .into_inner();
        let renewed =
            CertKey::from_pem(&renewed.certificate_pem, &KeyPem::new(key.serialize_pem())).unwrap();
        assert_eq!(identity_from_cert_der(&renewed.chain[0]).unwrap(), identity);
        assert_ne!(renewed.chain[0], cert.chain[0]);
        // It works at once, on another controller.
        control_as(&cluster, leader, &renewed)
            .await
            .heartbeat(pb::HeartbeatRequest {
                host_id: host.to_string(),
                capacity: None,
                known_revocations: 0,
                applied_revision: 0,
            })
            .await
            .unwrap();
        // A host the controllers never enrolled nor registered cannot renew.
        let stranger = agent_cert(&cluster, Uuid::new_v4());
        let (_, csr) = key_and_csr();
        let err = control_as(&cluster, 1, &stranger)
            .await
            .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        // Nor can an operator.
        let (_, csr) = key_and_csr();
        let err = control_as(&cluster, 1, &cluster.operator_cert())
            .await
            .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_is_rate_limited_and_needs_a_signing_ca() {
    bounded(LIMIT, async {
        let cluster = Cluster::start_with_control(1, test_raft_config(), |c| {
            c.signing_ca = None;
            c.enroll_burst = 3;
            c.enroll_per_second = 0;
        })
        .await;
        cluster.leader().await;
        let secret = token(&cluster, 3600).await;
        for _ in 0..3 {
            let err = enroll(&cluster, 1, &secret, Uuid::new_v4())
                .await
                .map(|_| ())
                .unwrap_err();
            assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
            assert!(err.message().contains("[signing_ca]"), "{err}");
        }
        let err = enroll(&cluster, 1, &secret, Uuid::new_v4())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        // Nothing was consumed.
        let listed = cluster
            .operator(1)
            .await
            .list_join_tokens(pb::ListJoinTokensRequest::default())
            .await
            .unwrap()
            .into_inner()
            .tokens;
        assert!(!listed[0].used);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_acts_only_for_its_own_host() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut agent_a = control_as(&cluster, 1, &agent_cert(&cluster, a)).await;
        let mut agent_b = control_as(&cluster, 1, &agent_cert(&cluster, b)).await;
        register(&mut agent_a, a).await;
        register(&mut agent_b, b).await;
        let b_id = b.to_string();
        let denied = |r: Result<(), Status>| {
            let e = r.unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{e}");
        };
        denied(
            agent_a
                .heartbeat(pb::HeartbeatRequest {
                    host_id: b_id.clone(),
                    capacity: None,
                    known_revocations: 0,
                    applied_revision: 0,
                })
                .await
                .map(|_| ()),
        );
        denied(
            agent_a
                .watch_assignments(pb::WatchAssignmentsRequest {
                    host_id: b_id.clone(),
                    from_revision: 0,
                })
                .await
                .map(|_| ()),
        );
        denied(
            agent_a
                .report_zone_state(pb::ReportZoneStateRequest {
                    host_id: b_id.clone(),
                    zones: vec![],
                })
                .await
                .map(|_| ()),
        );
        denied(
            agent_a
                .register(pb::RegisterRequest {
                    sysinfo: Some(sysinfo(b)),
                    capacity: Some(capacity(1)),
                })
                .await
                .map(|_| ()),
        );
        // No operator RPC for an agent.
        let channel = cluster.channel_as(1, &agent_cert(&cluster, a)).await;
        denied(
            zonefleet_proto::pb::operator_client::OperatorClient::new(channel)
                .list_hosts(pb::ListHostsRequest::default())
                .await
                .map(|_| ()),
        );
        // An operator cannot report zone state, nor heartbeat.
        let mut operator = control_as(&cluster, 1, &cluster.operator_cert()).await;
        denied(
            operator
                .report_zone_state(pb::ReportZoneStateRequest {
                    host_id: b_id.clone(),
                    zones: vec![],
                })
                .await
                .map(|_| ()),
        );
        denied(
            operator
                .heartbeat(pb::HeartbeatRequest {
                    host_id: b_id.clone(),
                    capacity: None,
                    known_revocations: 0,
                    applied_revision: 0,
                })
                .await
                .map(|_| ()),
        );
        // Without a certificate: only Enroll.
        let e = anonymous(&cluster, 1)
            .await
            .register(pb::RegisterRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e}");
        // The host's own id, written differently, is refused as such.
        let e = agent_b
            .heartbeat(pb::HeartbeatRequest {
                host_id: b_id.to_uppercase(),
                capacity: None,
                known_revocations: 0,
                applied_revision: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_cannot_renew() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let secret = token(&cluster, 3600).await;
        let host = Uuid::new_v4();
        let (cert, _) = enroll(&cluster, 1, &secret, host).await.unwrap();
        let mut agent = control_as(&cluster, 1, &cert).await;
        let (_, csr) = key_and_csr();
        agent
            .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr })
            .await
            .unwrap();
        cluster
            .operator(1)
            .await
            .revoke_certificate(pb::RevokeCertificateRequest {
                identity: format!("zonefleet://{CLUSTER}/agent/{host}"),
                reason: "stolen".to_owned(),
                ..Default::default()
            })
            .await
            .unwrap();
        // The open connection is closed, a new one refused at the handshake.
        let (_, csr) = key_and_csr();
        assert!(agent
            .renew_certificate(pb::RenewCertificateRequest {
                csr_pem: csr.clone()
            })
            .await
            .is_err());
        let config =
            client_config(&cluster.trust, ExpectedPeer::AnyController, Some(&cert)).unwrap();
        let refused = match connect_channel(&cluster.members[&1].addr.to_string(), config).await {
            Err(_) => true,
            Ok(channel) => ControlClient::new(channel)
                .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr })
                .await
                .is_err(),
        };
        assert!(refused, "a revoked agent renewed its certificate");
    })
    .await;
}
