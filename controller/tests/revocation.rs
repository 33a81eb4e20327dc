//! Certificate revocation through the real operator API of an in-process cluster: a
//! revoked operator, controller or agent certificate loses access at once (a new
//! connection is refused at the handshake, an open one fails its next call), a serial
//! revokes that certificate only and an identity all of its certificates, only admins
//! revoke, bad input changes nothing, and the list survives a restart.

use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Status};
use zonefleet_controller::raft::NodeId;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{cert_key, Cluster, CLUSTER};
use zonefleet_proto::pb;
use zonefleet_proto::pb::operator_client::OperatorClient;
use zonefleet_proto::pb::raft_client::RaftClient;
use zonefleet_proto::pki::{serial_from_cert_der, OperatorRole, Validity};
use zonefleet_proto::tls::{
    client_config, connect_channel, normalize_serial, CertKey, ExpectedPeer,
};

const LIMIT: Duration = Duration::from_secs(60);
/// How long a follower may take to apply a committed revocation.
const FOLLOWER_APPLY: Duration = Duration::from_secs(5);

/// The serial of `cert`, as the list shows it.
fn serial(cert: &CertKey) -> String {
    normalize_serial(&serial_from_cert_der(&cert.chain[0]).unwrap()).unwrap()
}

fn operator(cluster: &Cluster, name: &str, role: OperatorRole) -> CertKey {
    cert_key(
        &cluster
            .ca
            .issue_operator_with_role(name, role, Validity::days(1).unwrap())
            .unwrap(),
    )
}

/// A channel to member `id` as `who`; a refused handshake is `UNAVAILABLE`.
async fn channel(cluster: &Cluster, id: NodeId, who: &CertKey) -> Result<Channel, Status> {
    let config = client_config(&cluster.trust, ExpectedPeer::AnyController, Some(who)).unwrap();
    connect_channel(&cluster.members[&id].addr.to_string(), config)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))
}

/// One operator read over `channel` (stale: answered by that member itself).
async fn operator_read(channel: Channel) -> Result<(), Status> {
    OperatorClient::new(channel)
        .list_revocations(pb::ListRevocationsRequest {
            consistency: pb::ReadConsistency::Stale as i32,
        })
        .await
        .map(|_| ())
}

/// One operator read as `who` on a new connection to member `id`.
async fn operator_read_as(cluster: &Cluster, id: NodeId, who: &CertKey) -> Result<(), Status> {
    operator_read(channel(cluster, id, who).await?).await
}

/// Whether `result` is a refusal of the connection itself (the handshake or a closed
/// connection), not an answer of the role layer or a handler.
fn connection_refused(result: &Result<(), Status>) -> bool {
    matches!(result, Err(s) if matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled))
}

/// Waits until `probe` reports the connection refused, for at most `within`.
async fn refused_within<F, Fut>(within: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Status>>,
{
    let deadline = Instant::now() + within;
    loop {
        let result = probe().await;
        if connection_refused(&result) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still served: {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn revoke(
    admin: &mut OperatorClient<Channel>,
    serial: &str,
    identity: &str,
) -> Result<pb::Revocation, Status> {
    admin
        .revoke_certificate(pb::RevokeCertificateRequest {
            serial: serial.to_owned(),
            identity: identity.to_owned(),
            reason: "key leaked".to_owned(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn list(client: &mut OperatorClient<Channel>) -> Vec<pb::Revocation> {
    client
        .list_revocations(pb::ListRevocationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .revocations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_operator_certificate_loses_access_at_once() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let mut admin = cluster.operator(leader).await;
        let alice = operator(&cluster, "alice", OperatorRole::Admin);
        let reissued = operator(&cluster, "alice", OperatorRole::Admin);
        // Open connections, each of which made a successful call.
        let mut open = Vec::new();
        for id in 1..=3 {
            let ch = channel(&cluster, id, &alice).await.unwrap();
            operator_read(ch.clone())
                .await
                .expect("served before the revoke");
            open.push((id, ch));
        }

        let revoked = revoke(&mut admin, &serial(&alice), "").await.unwrap();
        assert_eq!(revoked.serial, serial(&alice));
        assert_eq!(
            revoked.revoked_by,
            format!("zonefleet://{CLUSTER}/operator/admin")
        );
        assert!(revoked.revoked_at_unix_ms > 0);

        // The leader applied it before answering: refused there at once.
        let on_leader = operator_read(open[(leader - 1) as usize].1.clone()).await;
        assert!(
            connection_refused(&on_leader),
            "open connection: {on_leader:?}"
        );
        let new = operator_read_as(&cluster, leader, &alice).await;
        assert!(connection_refused(&new), "new connection: {new:?}");
        // The followers, as soon as they apply it.
        for (id, ch) in open {
            refused_within(FOLLOWER_APPLY, &format!("open connection to {id}"), || {
                operator_read(ch.clone())
            })
            .await;
            refused_within(FOLLOWER_APPLY, &format!("new connection to {id}"), || {
                operator_read_as(&cluster, id, &alice)
            })
            .await;
            // A certificate re-issued for the same identity still works.
            operator_read_as(&cluster, id, &reissued)
                .await
                .expect("the re-issued certificate is served");
        }

        // Revoking the identity refuses every certificate of it, whatever its role.
        let reissued_ch = channel(&cluster, leader, &reissued).await.unwrap();
        operator_read(reissued_ch.clone()).await.unwrap();
        let identity = format!("zonefleet://{CLUSTER}/operator/alice");
        revoke(&mut admin, "", &identity).await.unwrap();
        let open_result = operator_read(reissued_ch).await;
        assert!(connection_refused(&open_result), "{open_result:?}");
        for who in [
            reissued,
            operator(&cluster, "alice", OperatorRole::Admin),
            operator(&cluster, "alice", OperatorRole::Viewer),
        ] {
            let result = operator_read_as(&cluster, leader, &who).await;
            assert!(connection_refused(&result), "{result:?}");
        }
        // Others are unaffected.
        operator_read_as(
            &cluster,
            leader,
            &operator(&cluster, "bob", OperatorRole::Admin),
        )
        .await
        .unwrap();

        let listed = list(&mut admin).await;
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert_eq!(listed[0].serial, serial(&alice));
        assert_eq!(listed[1].identity, identity);
        assert_eq!(listed[1].reason, "key leaked");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_controller_loses_raft_access() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let revoked = (1..=3).find(|id| *id != leader).unwrap();
        let kept = (1..=3).find(|id| *id != leader && *id != revoked).unwrap();
        let revoked_cert = cluster.other_controller_cert(&revoked.to_string());
        let open = channel(&cluster, leader, &revoked_cert).await.unwrap();
        RaftClient::new(open.clone())
            .read_index(pb::ReadIndexRequest {})
            .await
            .expect("a member's read index before the revoke");

        let mut admin = cluster.operator(leader).await;
        let identity = format!("zonefleet://{CLUSTER}/controller/{revoked}");
        revoke(&mut admin, "", &identity).await.unwrap();

        let read_index = |ch: Channel| async move {
            RaftClient::new(ch)
                .read_index(pb::ReadIndexRequest {})
                .await
                .map(|_| ())
        };
        let result = read_index(open).await;
        assert!(connection_refused(&result), "open connection: {result:?}");
        let new = match channel(&cluster, leader, &revoked_cert).await {
            Ok(ch) => read_index(ch).await,
            Err(e) => Err(e),
        };
        assert!(connection_refused(&new), "new connection: {new:?}");

        // Nothing committed after the revocation reaches it; the other member gets it.
        let settings = pb::FleetSettings {
            cpu_ratio_percent: Some(150),
            ..Default::default()
        };
        admin.set_fleet_settings(settings).await.unwrap();
        let committed = cluster
            .node(leader)
            .raft()
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let applied = |id: NodeId| {
                cluster
                    .node(id)
                    .raft()
                    .metrics()
                    .borrow()
                    .last_applied
                    .map_or(0, |l| l.index)
            };
            assert!(
                applied(revoked) < committed,
                "the revoked controller applied entry {committed}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let kept_state = cluster.node(kept).state().await;
        assert_eq!(kept_state.fleet.settings.cpu_ratio_percent, Some(150));
        // And it is not leader, nor can it become one.
        assert_eq!(cluster.leader_among(&[leader, kept], LIMIT).await, leader);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_identity_is_refused_at_the_handshake() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let agent = cluster.agent_cert();
        // Today's controller serves agents nothing but the handshake: the role layer
        // answers.
        let open = channel(&cluster, 1, &agent).await.unwrap();
        let before = operator_read(open.clone()).await;
        assert_eq!(before.unwrap_err().code(), Code::PermissionDenied);

        let identity = agent.identity().unwrap().to_string();
        let mut admin = cluster.operator(1).await;
        revoke(&mut admin, "", &identity).await.unwrap();
        let after = operator_read(open).await;
        assert!(connection_refused(&after), "open connection: {after:?}");
        let new = operator_read_as(&cluster, 1, &agent).await;
        assert!(connection_refused(&new), "new connection: {new:?}");
        // Another agent's certificate still gets through the handshake.
        let other = operator_read_as(&cluster, 1, &cluster.agent_cert()).await;
        assert_eq!(other.unwrap_err().code(), Code::PermissionDenied);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_revokes_and_bad_input_changes_nothing() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let viewer = operator(&cluster, "vera", OperatorRole::Viewer);
        let mut as_viewer = OperatorClient::new(channel(&cluster, 1, &viewer).await.unwrap());
        let target = cluster.operator_cert();
        let err = revoke(&mut as_viewer, &serial(&target), "")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(
            list(&mut as_viewer).await.is_empty(),
            "a viewer reads the list"
        );

        let mut admin = cluster.operator(1).await;
        for (serial, identity, names) in [
            ("zz", "", "serial \"zz\""),
            ("", "https://test/operator/alice", "zonefleet://"),
            ("", "zonefleet://test/printer/alice", "unknown kind"),
            ("", "zonefleet://other/operator/alice", "not of cluster"),
            ("", "", "exactly one"),
            ("7f", "zonefleet://test/operator/alice", "exactly one"),
        ] {
            let err = revoke(&mut admin, serial, identity).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
            assert!(err.message().contains(names), "{names}: {}", err.message());
        }
        assert!(list(&mut admin).await.is_empty());
        operator_read_as(&cluster, 1, &target).await.unwrap();

        // Revoking the same serial twice: the second says so and adds nothing.
        revoke(&mut admin, &serial(&target), "").await.unwrap();
        let err = revoke(&mut admin, &serial(&target).to_uppercase(), "")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
        assert_eq!(list(&mut admin).await.len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_survives_a_restart() {
    bounded(LIMIT, async {
        let mut cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let mut admin = cluster.operator(leader).await;
        let alice = operator(&cluster, "alice", OperatorRole::Admin);
        revoke(&mut admin, &serial(&alice), "").await.unwrap();
        // Enough entries after it for a snapshot (every 50 entries) to hold it.
        for _ in 0..60 {
            admin
                .set_fleet_settings(pb::FleetSettings::default())
                .await
                .unwrap();
        }
        let restarted = (1..=3).find(|id| *id != leader).unwrap();
        let addr = cluster.members[&restarted].addr;
        drop(cluster.kill(restarted).await);
        cluster.restart(restarted, addr).await;
        refused_within(FOLLOWER_APPLY, "after restart", || {
            operator_read_as(&cluster, restarted, &alice)
        })
        .await;
        let deadline = Instant::now() + FOLLOWER_APPLY;
        loop {
            let state = cluster.node(restarted).state().await;
            if state.fleet.revocations.len() == 1 {
                assert_eq!(state.fleet.revocations[0].serial, serial(&alice));
                break;
            }
            assert!(Instant::now() < deadline, "{:?}", state.fleet.revocations);
            drop(state);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_bring_agents_the_revocations_they_lack() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let host = uuid::Uuid::new_v4();
        let agent = cert_key(
            &cluster
                .ca
                .issue_agent(host, &[], Validity::days(1).unwrap())
                .unwrap(),
        );
        let mut control = zonefleet_proto::pb::control_client::ControlClient::new(
            channel(&cluster, 1, &agent).await.unwrap(),
        );
        control
            .register(pb::RegisterRequest {
                sysinfo: Some(pb::HostSysinfo {
                    host_id: host.to_string(),
                    hostname: "h".into(),
                    cpus: 1,
                    memory_mib: 1024,
                    cgroup_version: pb::CgroupVersion::V1 as i32,
                    ..Default::default()
                }),
                capacity: Some(pb::Capacity::default()),
            })
            .await
            .unwrap();
        let beat = |known| pb::HeartbeatRequest {
            host_id: host.to_string(),
            capacity: None,
            known_revocations: known,
            applied_revision: 0,
        };
        let nothing = control.heartbeat(beat(0)).await.unwrap().into_inner();
        assert!(nothing.revocations.is_empty());
        let mut admin = cluster.operator(1).await;
        let alice = operator(&cluster, "alice", OperatorRole::Admin);
        revoke(&mut admin, "", &alice.identity().unwrap().to_string())
            .await
            .unwrap();
        revoke(
            &mut admin,
            &serial(&operator(&cluster, "bob", OperatorRole::Viewer)),
            "",
        )
        .await
        .unwrap();
        // All of them to an agent that holds none, the rest to one that holds one, none
        // to one that holds both (or more than this controller has).
        let all = control.heartbeat(beat(0)).await.unwrap().into_inner();
        assert_eq!(all.revocations, list(&mut admin).await);
        let rest = control.heartbeat(beat(1)).await.unwrap().into_inner();
        assert_eq!(rest.revocations, all.revocations[1..]);
        for known in [2, 9] {
            let none = control.heartbeat(beat(known)).await.unwrap().into_inner();
            assert!(none.revocations.is_empty(), "{known}");
        }
    })
    .await;
}
