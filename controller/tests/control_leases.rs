//! Host leases through the real listeners of an in-process cluster: a follower
//! forwards heartbeats to the leader (or names it when cut off), a lapsed lease commits
//! DOWN, a heartbeat READY again and a new capacity, a cordoned host goes down and
//! returns cordoned, and a new leader gives every host a full TTL before judging it.

mod support;

use std::time::{Duration, Instant};

use tonic::Code;
use uuid::Uuid;
use zonefleet_controller::node::leases::LEADER_METADATA;
use zonefleet_controller::raft::NodeId;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{test_raft_config, Cluster};
use zonefleet_proto::pb;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_lapse_into_down_and_heartbeats_through_a_follower_restore_ready() {
    bounded(LIMIT, async {
        let cluster = Cluster::start_with_control(3, test_raft_config(), |c| {
            c.heartbeat_interval = Duration::from_millis(200);
            c.lease_ttl = Duration::from_millis(1000);
        })
        .await;
        let leader = cluster.leader().await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let host = Uuid::new_v4();
        let cert = agent_cert(&cluster, host);
        let mut agent = control_as(&cluster, follower, &cert).await;
        // Not registered yet: a heartbeat is refused.
        let e = agent
            .heartbeat(pb::HeartbeatRequest {
                host_id: host.to_string(),
                capacity: None,
                known_revocations: 0,
                applied_revision: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
        let terms = register(&mut agent, host).await;
        assert_eq!(
            (terms.heartbeat_interval_ms, terms.lease_ttl_ms),
            (200, 1000)
        );
        let beat = |capacity: Option<pb::Capacity>| pb::HeartbeatRequest {
            host_id: host.to_string(),
            capacity,
            known_revocations: 0,
            applied_revision: 0,
        };
        // Heartbeating through a follower (forwarded to the leader) keeps it ready.
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(2500) {
            let lease = agent.heartbeat(beat(None)).await.unwrap().into_inner();
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            assert!(lease.lease_expires_unix_ms > now_ms);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            get_host(&cluster, host).await.status,
            pb::HostStatus::Ready as i32
        );
        // The lease as hosts are read, from the leader and (asked of the leader) from a
        // follower: a recent heartbeat, the lease one TTL after it.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        for via in [leader, follower] {
            let read = cluster
                .operator(via)
                .await
                .get_host(pb::HostRef {
                    host_id: host.to_string(),
                })
                .await
                .unwrap()
                .into_inner();
            let last = read.last_heartbeat_unix_ms.expect("a last heartbeat");
            assert!(
                (now_ms - 1000..=now_ms).contains(&last),
                "{last} vs {now_ms}"
            );
            assert_eq!(read.lease_expires_unix_ms, Some(last + 1000));
            let listed = cluster
                .operator(via)
                .await
                .list_hosts(pb::ListHostsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .hosts;
            assert!(listed[0].last_heartbeat_unix_ms.is_some(), "{listed:?}");
        }
        // Silence: the lease lapses and the leader commits DOWN.
        await_status(&cluster, host, pb::HostStatus::Down, Duration::from_secs(5)).await;
        // A heartbeat (with a new capacity) brings it back and commits the capacity.
        agent.heartbeat(beat(Some(capacity(4096)))).await.unwrap();
        await_status(
            &cluster,
            host,
            pb::HostStatus::Ready,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            get_host(&cluster, host).await.capacity.unwrap().memory_mib,
            4096
        );
        // A cordoned host whose lease lapses is down too (its zones must move), and
        // returns cordoned.
        cluster
            .operator(1)
            .await
            .cordon_host(pb::HostRef {
                host_id: host.to_string(),
            })
            .await
            .unwrap();
        await_status(&cluster, host, pb::HostStatus::Down, Duration::from_secs(5)).await;
        let down = get_host(&cluster, host).await;
        assert_eq!(down.status_reason, "lease lapsed");
        assert!(down.status_since_unix_ms > 0);
        assert_eq!(down.admin_status, pb::HostStatus::Cordoned as i32);
        agent.heartbeat(beat(None)).await.unwrap();
        await_status(
            &cluster,
            host,
            pb::HostStatus::Cordoned,
            Duration::from_secs(5),
        )
        .await;

        // A follower cut off from the leader names it.
        let leader_addr = cluster.members[&leader].addr.to_string();
        cluster.net.cut(follower, leader);
        let e = agent.heartbeat(beat(None)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e}");
        assert_eq!(
            e.metadata()
                .get(LEADER_METADATA)
                .and_then(|v| v.to_str().ok()),
            Some(leader_addr.as_str()),
            "{e:?}"
        );
        cluster.heal();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_gives_every_host_a_full_ttl_before_judging() {
    bounded(LIMIT, async {
        let ttl = Duration::from_millis(2000);
        let mut cluster = Cluster::start_with_control(3, test_raft_config(), |c| {
            c.heartbeat_interval = Duration::from_millis(200);
            c.lease_ttl = ttl;
        })
        .await;
        let leader = cluster.leader().await;
        let host = Uuid::new_v4();
        let survivor = (1..=3).find(|id| *id != leader).unwrap();
        let mut agent = control_as(&cluster, survivor, &agent_cert(&cluster, host)).await;
        register(&mut agent, host).await;
        // The last heartbeat reaches the old leader only; then it dies.
        agent
            .heartbeat(pb::HeartbeatRequest {
                host_id: host.to_string(),
                capacity: None,
                known_revocations: 0,
                applied_revision: 0,
            })
            .await
            .unwrap();
        let killed = Instant::now();
        drop(cluster.kill(leader).await);
        let others: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
        let new_leader = cluster.leader_among(&others, Duration::from_secs(10)).await;
        let elected = Instant::now();
        assert_ne!(new_leader, leader);
        // The new leader has no lease of this host, yet does not judge it before a
        // full TTL from its election (reads through the survivors).
        let get = |id: NodeId| {
            let cluster = &cluster;
            async move {
                cluster
                    .operator(id)
                    .await
                    .get_host(pb::HostRef {
                        host_id: host.to_string(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .status
            }
        };
        while elected.elapsed() < ttl * 8 / 10 {
            assert_eq!(
                get(new_leader).await,
                pb::HostStatus::Ready as i32,
                "judged {:?} after the election ({:?} after the last heartbeat)",
                elected.elapsed(),
                killed.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Then it does.
        let deadline = Instant::now() + Duration::from_secs(5);
        while get(new_leader).await != pb::HostStatus::Down as i32 {
            assert!(Instant::now() < deadline, "never marked down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}
