//! Who may speak Raft, what malformed or oversized Raft messages get, and what a
//! controller does with a corrupted log on restart.

use std::collections::BTreeMap;
use std::time::Duration;

use tonic::Code;
use zonefleet_controller::node::{Controller, StartError};
use zonefleet_controller::raft::log_store::StoreError;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::Cluster;
use zonefleet_harness::fixtures::create_zone;
use zonefleet_proto::pb;
use zonefleet_proto::pb::raft_client::RaftClient;

const LIMIT: Duration = Duration::from_secs(60);

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
        // A controller certificate gets through to the handler.
        let mut peer = RaftClient::new(
            cluster
                .channel_as(1, &cluster.other_controller_cert("9"))
                .await,
        );
        let err = peer.vote(pb::VoteRequest::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_garbage_and_oversized_messages_get_errors() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let channel = cluster
            .channel_as(1, &cluster.other_controller_cert("9"))
            .await;
        let mut peer = RaftClient::new(channel.clone()).max_encoding_message_size(64 * 1024 * 1024);
        // An entry without a log id.
        let err = peer
            .append_entries(pb::AppendEntriesRequest {
                vote: Some(pb::Vote::default()),
                entries: vec![pb::Entry::default()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        // A snapshot chunk without meta.
        let err = peer
            .install_snapshot(pb::InstallSnapshotRequest {
                vote: Some(pb::Vote::default()),
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
            vote: Some(pb::Vote::default()),
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
