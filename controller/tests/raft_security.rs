//! Who may speak Raft (members only, each for itself), what malformed or oversized
//! Raft messages get, who may read the store, and what a controller does with a
//! corrupted log on restart.

#[path = "../../proto/tests/support/idle_h2.rs"]
mod idle_h2;

use std::collections::BTreeMap;
use std::time::Duration;

use idle_h2::idle_connection;
use tokio::task::JoinHandle;
use tonic::Code;
use zonefleet_controller::node::{Controller, StartError};
use zonefleet_controller::raft::log_store::StoreError;
use zonefleet_controller::raft::NodeId;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::*;
use zonefleet_harness::fixtures::*;
use zonefleet_proto::pb;
use zonefleet_proto::pb::raft_client::RaftClient;
use zonefleet_proto::tls::{client_config, CertKey, ExpectedPeer};

const LIMIT: Duration = Duration::from_secs(60);
/// The term of every forged message: far above any term a test cluster reaches.
const FORGED_TERM: u64 = 50;
/// The name of the network every forged `PutNetwork` carries.
const FORGED_NETWORK: &str = "forged";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_controller_certificate_can_call_the_raft_service() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        for who in [cluster.operator_cert(), cluster.agent_cert()] {
            let mut client = RaftClient::new(cluster.channel_as(1, &who).await);
            let err = client.vote(pb::VoteRequest::default()).await.unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
            let err = client
                .forward_write(pb::ForwardWriteRequest::default())
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        }
        // A member's certificate gets through to the handler.
        let mut peer = RaftClient::new(
            cluster
                .channel_as(1, &cluster.other_controller_cert("1"))
                .await,
        );
        let err = peer.vote(pb::VoteRequest::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    })
    .await;
}

/// A vote of [`FORGED_TERM`] naming `node_id`.
fn forged_vote(node_id: NodeId) -> pb::Vote {
    pb::Vote {
        term: FORGED_TERM,
        node_id,
        committed: true,
    }
}

fn forged_log_id(node_id: NodeId) -> pb::LogId {
    pb::LogId {
        term: FORGED_TERM,
        leader_id: node_id,
        index: 1_000_000,
    }
}

/// A `PutNetwork` of a network `zfadm network create` refuses.
fn forged_network_write() -> pb::ForwardWriteRequest {
    pb::ForwardWriteRequest {
        command: Some(pb::FleetCommand {
            at_unix_ms: 1,
            kind: Some(pb::fleet_command::Kind::PutNetwork(pb::PutNetworkCommand {
                network: Some(pb::Network {
                    uuid: uuid::Uuid::new_v4().to_string(),
                    name: FORGED_NETWORK.to_owned(),
                    subnet: "not-a-subnet".to_owned(),
                    provision_start: "999.1.1.1".to_owned(),
                    provision_end: "999.1.1.9".to_owned(),
                    ..Default::default()
                }),
            })),
        }),
        membership_change: None,
    }
}

fn assert_denied<R: std::fmt::Debug>(result: Result<R, tonic::Status>, rpc: &str, why: &str) {
    let err = result.expect_err(rpc);
    assert_eq!(err.code(), Code::PermissionDenied, "{rpc}: {err:?}");
    assert!(err.message().contains(rpc), "{rpc}: {err:?}");
    assert!(err.message().contains(why), "{rpc}: {err:?}");
}

/// Sends `target` each Raft message that names a node, as `who` naming `claimed`, with
/// forged content; each must be refused saying `why`.
async fn assert_raft_refused(
    cluster: &Cluster,
    target: NodeId,
    who: &CertKey,
    claimed: NodeId,
    why: &str,
) {
    let mut peer = RaftClient::new(cluster.channel_as(target, who).await);
    let vote = peer
        .vote(pb::VoteRequest {
            vote: Some(forged_vote(claimed)),
            last_log_id: Some(forged_log_id(claimed)),
        })
        .await;
    assert_denied(vote, "Vote", why);
    let append = peer
        .append_entries(pb::AppendEntriesRequest {
            vote: Some(forged_vote(claimed)),
            prev_log_id: None,
            entries: vec![],
            leader_commit: Some(forged_log_id(claimed)),
        })
        .await;
    assert_denied(append, "AppendEntries", why);
    let snapshot = peer
        .install_snapshot(pb::InstallSnapshotRequest {
            vote: Some(forged_vote(claimed)),
            meta: Some(pb::SnapshotMeta {
                last_log_id: Some(forged_log_id(claimed)),
                ..Default::default()
            }),
            offset: 0,
            data: vec![],
            done: true,
        })
        .await;
    assert_denied(snapshot, "InstallSnapshot", why);
}

/// Asks `target` to serve `who` (a forged `PutNetwork`, a membership change removing
/// `victim`, a read index); each must be refused saying `why`.
async fn assert_service_refused(
    cluster: &Cluster,
    target: NodeId,
    who: &CertKey,
    victim: NodeId,
    why: &str,
) {
    let mut peer = RaftClient::new(cluster.channel_as(target, who).await);
    assert_denied(
        peer.forward_write(forged_network_write()).await,
        "ForwardWrite",
        why,
    );
    let remove = pb::ForwardWriteRequest {
        command: None,
        membership_change: Some(pb::MembershipChange {
            change: Some(pb::membership_change::Change::Remove(
                pb::RemoveControllerRequest {
                    id: victim.to_string(),
                },
            )),
        }),
    };
    assert_denied(peer.forward_write(remove).await, "ForwardWrite", why);
    assert_denied(
        peer.read_index(pb::ReadIndexRequest {}).await,
        "ReadIndex",
        why,
    );
}

/// The terms of `ids`, which no forged message may have raised to [`FORGED_TERM`].
/// (A real election under load may bump one by one or two, so the bound is the forged
/// term, not the value before.)
fn assert_no_forged_term(cluster: &Cluster, ids: &[NodeId]) {
    for id in ids {
        let metrics = cluster.node(*id).raft().metrics().borrow().clone();
        assert!(
            metrics.current_term < FORGED_TERM,
            "controller {id} took the forged term: {metrics:?}"
        );
    }
}

/// Nothing a refused caller sent reached the state: no forged network, the same
/// members.
async fn assert_state_untouched(cluster: &Cluster, via: NodeId, members: usize) {
    let mut client = cluster.operator(via).await;
    let networks = client
        .list_networks(pb::ListNetworksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .networks;
    assert!(
        networks.iter().all(|n| n.name != FORGED_NETWORK),
        "{networks:?}"
    );
    let status = client
        .cluster_status(pb::ClusterStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.members.len(), members, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_and_impostors_are_refused_on_every_raft_rpc() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let term = cluster.node(leader).raft().metrics().borrow().current_term;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        // Issued by the fleet CA, never added.
        let outsider = cluster.other_controller_cert("9");
        for target in 1..=3 {
            assert_raft_refused(&cluster, target, &outsider, 9, "not a member").await;
            assert_service_refused(&cluster, target, &outsider, follower, "not a member").await;
        }
        // A member speaking for another: the leader, the third member, an outsider.
        let member = cluster.other_controller_cert(&follower.to_string());
        let third = (1..=3).find(|id| *id != leader && *id != follower).unwrap();
        for target in 1..=3 {
            for claimed in [leader, third, 9] {
                let why = format!("controller {follower} may not speak for controller {claimed}");
                assert_raft_refused(&cluster, target, &member, claimed, &why).await;
            }
        }
        assert_no_forged_term(&cluster, &[1, 2, 3]);
        assert_eq!(cluster.leader().await, leader, "the leader changed");
        let after = cluster.node(leader).raft().metrics().borrow().current_term;
        assert_eq!(after, term, "the leader's term changed");
        assert_state_untouched(&cluster, follower, 3).await;
    })
    .await;
}

/// A member may forward writes, but what it forwards is checked where it is applied:
/// an invalid network that never went through the operator API is a no-op with an
/// error result, the same on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_bypasses_the_operator_api_is_refused_at_apply_on_every_replica() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let member = cluster.other_controller_cert(&follower.to_string());
        let mut peer = RaftClient::new(cluster.channel_as(leader, &member).await);
        let result = peer
            .forward_write(forged_network_write())
            .await
            .expect("a member may forward a write")
            .into_inner()
            .result;
        let Some(pb::command_result::Result::Error(refused)) = result.and_then(|r| r.result) else {
            panic!("the forged network was not refused");
        };
        assert_eq!(refused.code, Code::InvalidArgument as i32, "{refused:?}");
        assert!(refused.message.contains("subnet"), "{refused:?}");
        // The entry was committed; every replica applies it (and refuses it).
        let committed = cluster
            .node(leader)
            .committed()
            .await
            .expect("a committed entry");
        for id in 1..=3 {
            loop {
                let state = cluster.node(id).state().await;
                if state
                    .last_applied
                    .is_some_and(|applied| applied >= committed)
                {
                    assert!(
                        state
                            .fleet
                            .networks
                            .values()
                            .all(|n| n.name != FORGED_NETWORK),
                        "controller {id} holds the forged network"
                    );
                    break;
                }
                drop(state);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert_state_untouched(&cluster, follower, 3).await;
    })
    .await;
}

/// An idle HTTP/2 connection to `target` as `who`; the task ends when the server
/// closes it.
async fn open_connection(cluster: &Cluster, target: NodeId, who: &CertKey) -> JoinHandle<()> {
    let config = client_config(&cluster.trust, ExpectedPeer::AnyController, Some(who)).unwrap();
    idle_connection(cluster.members[&target].addr, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_controller_is_refused_and_its_connections_closed() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let removed = (1..=3).find(|id| *id != leader).unwrap();
        let kept = (1..=3).find(|id| *id != leader && *id != removed).unwrap();
        let removed_cert = cluster.other_controller_cert(&removed.to_string());
        // While a member it is served.
        RaftClient::new(cluster.channel_as(leader, &removed_cert).await)
            .read_index(pb::ReadIndexRequest {})
            .await
            .expect("a member's read index");
        let doomed: Vec<JoinHandle<()>> = [
            open_connection(&cluster, leader, &removed_cert).await,
            open_connection(&cluster, kept, &removed_cert).await,
        ]
        .into();
        let kept_cert = cluster.other_controller_cert(&kept.to_string());
        let survivor = open_connection(&cluster, leader, &kept_cert).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(doomed.iter().all(|c| !c.is_finished()), "closed too early");

        cluster
            .operator(kept)
            .await
            .remove_controller(pb::RemoveControllerRequest {
                id: removed.to_string(),
            })
            .await
            .unwrap();
        for connection in doomed {
            tokio::time::timeout(Duration::from_secs(5), connection)
                .await
                .expect("a removed controller's connection stayed open")
                .unwrap();
        }
        assert!(!survivor.is_finished(), "a member's connection was closed");
        for target in [leader, kept] {
            assert_raft_refused(&cluster, target, &removed_cert, removed, "not a member").await;
            assert_service_refused(&cluster, target, &removed_cert, kept, "not a member").await;
        }
        // (The removed controller itself may campaign in vain, raising its own term.)
        assert_no_forged_term(&cluster, &[leader, kept]);
        assert_state_untouched(&cluster, kept, 2).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_garbage_and_oversized_messages_get_errors() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        // As the member itself, so that only the content is wrong.
        let channel = cluster
            .channel_as(1, &cluster.other_controller_cert("1"))
            .await;
        let mut peer = RaftClient::new(channel.clone()).max_encoding_message_size(64 * 1024 * 1024);
        let own_vote = pb::Vote {
            node_id: 1,
            ..Default::default()
        };
        // An entry without a log id.
        let err = peer
            .append_entries(pb::AppendEntriesRequest {
                vote: Some(own_vote),
                entries: vec![pb::Entry::default()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        // A snapshot chunk without meta.
        let err = peer
            .install_snapshot(pb::InstallSnapshotRequest {
                vote: Some(own_vote),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        // Bytes that are not a VoteRequest (field 1 with the wrong wire type).
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let garbage = pb::NoopCommand {
            payload: vec![0xff; 64],
        };
        // `NoopCommand.payload` is field 1, length-delimited: as a `Vote` it is garbage.
        let codec: tonic_prost::ProstCodec<pb::NoopCommand, pb::VoteResponse> = Default::default();
        let result = grpc
            .unary(
                tonic::Request::new(garbage),
                "/zonefleet.v1.Raft/Vote".parse().unwrap(),
                codec,
            )
            .await;
        assert!(result.is_err(), "garbage was accepted: {result:?}");
        // More than the 16 MiB limit.
        let big = pb::InstallSnapshotRequest {
            vote: Some(own_vote),
            data: vec![0; 17 * 1024 * 1024],
            ..Default::default()
        };
        let err = peer.install_snapshot(big).await.unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
        // The controller still serves.
        let mut client = cluster.operator(1).await;
        create_zone(&mut client, "still-alive").await;
    })
    .await;
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_private_and_an_older_looser_one_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    bounded(LIMIT, async {
        let mut cluster = Cluster::start(1).await;
        cluster.leader().await;
        let dir = cluster.data_dir(1);
        let files = ["raft.redb", "snapshot.redb"].map(|f| dir.join(f));
        assert_eq!(mode(&dir), 0o700);
        for file in &files {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        let addr = cluster.members[&1].addr;
        drop(cluster.kill(1).await);
        // As an older controller left them.
        let loosen = |path: &std::path::Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        loosen(&dir, 0o755);
        for file in &files {
            loosen(file, 0o644);
        }
        cluster.restart(1, addr).await;
        assert_eq!(mode(&dir), 0o700);
        for file in &files {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        let mut client = cluster.operator(1).await;
        create_zone(&mut client, "after-tightening").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_log_tail_is_reported_on_restart() {
    bounded(LIMIT, async {
        let mut cluster = Cluster::start(1).await;
        cluster.leader().await;
        let mut client = cluster.operator(1).await;
        for i in 0..5 {
            create_zone(&mut client, &format!("z{i}")).await;
        }
        drop(client);
        cluster.kill(1).await;
        // Flip one byte of the last stored entry, as a torn or rotten write would.
        let path = cluster.data_dir(1).join("raft.redb");
        {
            const LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("raft_log");
            use redb::{ReadableDatabase, ReadableTable};
            // The stopped controller's tasks let go of the file shortly after.
            let mut tries = 0;
            let db = loop {
                match redb::Database::open(&path) {
                    Ok(db) => break db,
                    Err(redb::DatabaseError::DatabaseAlreadyOpen) if tries < 100 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("open {}: {e}", path.display()),
                }
            };
            let (index, mut value) = {
                let txn = db.begin_read().unwrap();
                let table = txn.open_table(LOG).unwrap();
                let (k, v) = table.last().unwrap().unwrap();
                (k.value(), v.value().to_vec())
            };
            let last = value.len() - 1;
            value[last] ^= 0x55;
            let txn = db.begin_write().unwrap();
            txn.open_table(LOG)
                .unwrap()
                .insert(index, value.as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Controller::start(cluster.options(1, BTreeMap::new()))
            .await
            .unwrap_err();
        match &err {
            StartError::Store(StoreError::Corrupt { what, .. }) => {
                assert!(what.contains("checksum mismatch"), "{what}");
            }
            other => panic!("not reported as corruption: {other}"),
        }
    })
    .await;
}
