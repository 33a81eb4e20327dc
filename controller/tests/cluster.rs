//! In-process controller clusters on loopback: elections, forwarding, failover,
//! partitions, snapshots for a wiped member, and membership changes under writes.

use std::collections::BTreeSet;
use std::time::Duration;

use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{test_raft_config, Cluster};
use zonefleet_harness::fixtures::{create, create_zone, keyed_create, spec};
use zonefleet_proto::pb;

const LIMIT: Duration = Duration::from_secs(60);

async fn zone_aliases(cluster: &Cluster, id: u64) -> BTreeSet<String> {
    let mut client = cluster.operator(id).await;
    client
        .list_zones(pb::ListZonesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .zones
        .into_iter()
        .filter_map(|z| z.spec.and_then(|s| s.alias))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_a_leader_and_writes_through_a_follower_land() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        let mut via_follower = cluster.operator(followers[0]).await;
        let uuid = create_zone(&mut via_follower, "web").await;
        // A linearizable read on the other follower sees it at once.
        let mut other = cluster.operator(followers[1]).await;
        let zone = other
            .get_zone(pb::GetZoneRequest {
                zone: "web".into(),
                consistency: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(zone.spec.unwrap().uuid.unwrap(), uuid);
        assert_eq!(zone.desired_state, pb::ZoneState::Running as i32);
        // No host registered: the zone is pending, and says why.
        assert!(
            zone.message.contains("no host is registered"),
            "{}",
            zone.message
        );
        let status = other
            .cluster_status(pb::ClusterStatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.leader_id, leader.to_string());
        assert_eq!(status.members.len(), 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_with_the_same_key_creates_once() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        cluster.leader().await;
        let mut client = cluster.operator(2).await;
        let request = pb::CreateZonesRequest {
            idempotency_key: "retry-me".into(),
            ..create(spec("db"), 2)
        };
        let first = client
            .create_zones(request.clone())
            .await
            .unwrap()
            .into_inner();
        let mut other = cluster.operator(3).await;
        let second = other.create_zones(request).await.unwrap().into_inner();
        assert_eq!(first, second);
        assert_eq!(first.zones.len(), 2);
        let all = other
            .list_zones(pb::ListZonesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.zones.len(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leader_elects_another_and_writes_continue() {
    bounded(LIMIT, async {
        let mut cluster = Cluster::start(3).await;
        let first = cluster.leader().await;
        let mut client = cluster.operator(first).await;
        create_zone(&mut client, "before").await;
        cluster.kill(first).await;
        let rest: Vec<u64> = cluster.members.keys().copied().collect();
        let second = cluster.leader_among(&rest, Duration::from_secs(10)).await;
        assert_ne!(first, second);
        let follower = *rest.iter().find(|id| **id != second).unwrap();
        let mut client = cluster.operator(follower).await;
        create_zone(&mut client, "after").await;
        let aliases = zone_aliases(&cluster, second).await;
        assert_eq!(aliases, ["after".to_owned(), "before".to_owned()].into());
    })
    .await;
}

/// openraft 0.9 gives a restarted leader its leadership back at once (its stored vote
/// is its own and committed), and the committed id it finds on disk may lag what it
/// acknowledged before it stopped (that id is written lazily). Its first linearizable
/// read must still see every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_reads_every_write_it_acknowledged() {
    use openraft::storage::RaftLogStorage;
    use zonefleet_controller::raft::log_store::{open_db, LogStore, DB_FILE};
    bounded(LIMIT, async {
        let mut cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let early = cluster.node(leader).committed().await;
        let mut client = cluster.operator(leader).await;
        let written: BTreeSet<String> = (0..10).map(|i| format!("z{i}")).collect();
        for alias in &written {
            create_zone(&mut client, alias).await;
        }
        let last = cluster.node(leader).last_log_id().unwrap();
        let mut addrs = Vec::new();
        for id in [1, 2, 3] {
            let member = cluster.kill(id).await;
            addrs.push((id, member.addr));
        }
        // The leader's committed id as a crash right after the first writes would have
        // left it.
        let dir = cluster.data_dir(leader);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let db = loop {
            match open_db(&dir) {
                Ok(db) => break db,
                // Still held by the stopped node's tasks: they wind down shortly.
                Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut log = LogStore::open(db, &dir.join(DB_FILE)).unwrap();
        let vote = log.read_vote().await.unwrap().unwrap();
        assert!(vote.is_committed() && vote.leader_id().voted_for() == Some(leader));
        log.save_committed(early).await.unwrap();
        // The committed id is written with the next transaction.
        log.save_vote(&vote).await.unwrap();
        drop(log);
        // Followers first; then the leader resumes its leadership as it starts.
        addrs.sort_by_key(|(id, _)| *id == leader);
        for (id, addr) in addrs {
            cluster.restart(id, addr).await;
        }
        let node = cluster.node(leader).clone();
        assert_eq!(node.committed().await, early, "the rewound committed id");
        assert!(node.state().await.last_applied.map(|l| l.index) < Some(last.index));
        // The read index it hands out covers everything it held when it stopped.
        let read = node.read_index_as_leader().await.unwrap();
        assert!(
            read.map(|l| l.index) >= Some(last.index),
            "read index {read:?} is behind the last write {last:?}"
        );
        node.read_barrier(false).await.unwrap();
        let present: BTreeSet<String> = node
            .state()
            .await
            .fleet
            .list_zones(None, None)
            .into_iter()
            .filter_map(|z| z.spec.and_then(|s| s.alias))
            .collect();
        assert_eq!(present, written);
    })
    .await;
}

/// Raft timings where openraft's own election timers are slow: after a leader's last
/// heartbeat, no follower campaigns before the lease (3.5 s) plus its election
/// timeout (at least 3 s), 6.5 s in all; the fast failover probes after 3.5 s.
fn slow_elections() -> openraft::Config {
    openraft::Config {
        election_timeout_min: 3000,
        election_timeout_max: 3500,
        ..test_raft_config()
    }
}

/// A leader whose process is gone (its port refuses connections) is replaced just after
/// the lease, well before openraft's own timers would campaign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_process_is_gone_is_replaced_just_after_the_lease() {
    bounded(LIMIT, async {
        let mut cluster = Cluster::start_with(3, slow_elections()).await;
        let first = cluster.leader().await;
        let mut client = cluster.operator(first).await;
        create_zone(&mut client, "before").await;
        cluster.kill(first).await;
        let rest: Vec<u64> = cluster.members.keys().copied().collect();
        // Fast failover: ~3.5 s. openraft's timers alone: 6.5 s at the earliest.
        let second = cluster
            .leader_among(&rest, Duration::from_millis(5500))
            .await;
        assert_ne!(first, second);
        let mut client = cluster.operator(second).await;
        create_zone(&mut client, "after").await;
    })
    .await;
}

/// A leader that is cut off but whose port still answers is left to openraft's own
/// timers: nobody campaigns before lease plus election timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_but_listening_is_not_replaced_before_the_timers() {
    bounded(LIMIT, async {
        let cluster = Cluster::start_with(3, slow_elections()).await;
        let first = cluster.leader().await;
        let term = cluster.node(first).raft().metrics().borrow().current_term;
        let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != first).collect();
        cluster.isolate(first);
        tokio::time::sleep(Duration::from_millis(5000)).await;
        for id in &others {
            let metrics = cluster.node(*id).raft().metrics().borrow().clone();
            assert_eq!(
                (metrics.current_term, metrics.state),
                (term, openraft::ServerState::Follower),
                "controller {id} campaigned while the leader's port still answered"
            );
        }
        cluster.heal();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_partition_cannot_commit() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        let old = cluster.leader().await;
        let majority: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
        // Cut the leader off from both others, both directions.
        cluster.isolate(old);
        let isolated_write = cluster
            .node(old)
            .write(zonefleet_controller::api::operator::command(
                pb::fleet_command::Kind::Noop(pb::NoopCommand {
                    payload: b"minority".to_vec(),
                }),
            ));
        let outcome = tokio::time::timeout(Duration::from_millis(1500), isolated_write).await;
        assert!(
            !matches!(outcome, Ok(Ok(_))),
            "the isolated leader committed a write: {outcome:?}"
        );
        // The majority elects a leader and commits.
        let new = cluster
            .leader_among(&majority, Duration::from_secs(10))
            .await;
        assert_ne!(new, old);
        let mut client = cluster.operator(majority[0]).await;
        create_zone(&mut client, "majority").await;
        // Healed, the old leader follows and catches up.
        cluster.heal();
        let mut client = cluster.operator(old).await;
        let zone = client
            .get_zone(pb::GetZoneRequest {
                zone: "majority".into(),
                consistency: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(zone.spec.unwrap().alias.unwrap(), "majority");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_re_added_catches_up_by_snapshot() {
    bounded(LIMIT, async {
        let mut cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let victim = (1..=3).find(|id| *id != leader).unwrap();
        let mut client = cluster.operator(leader).await;
        // Enough writes for snapshots and a purged log (every 50 entries).
        let created = client
            .create_zones(create(spec("bulk"), 5))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.zones.len(), 5);
        for i in 0..120 {
            client
                .create_network(pb::Network {
                    name: format!("net{i}"),
                    subnet: format!("10.{}.{}.0/24", i / 200, i % 200),
                    provision_start: format!("10.{}.{}.10", i / 200, i % 200),
                    provision_end: format!("10.{}.{}.20", i / 200, i % 200),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let member = cluster.kill(victim).await;
        drop(member);
        client
            .remove_controller(pb::RemoveControllerRequest {
                id: victim.to_string(),
            })
            .await
            .unwrap();
        std::fs::remove_dir_all(cluster.data_dir(victim)).unwrap();
        let addr = cluster.start_joining(victim).await;
        let status = client
            .add_controller(pb::AddControllerRequest {
                id: victim.to_string(),
                address: addr.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        let me = status
            .members
            .iter()
            .find(|m| m.id == victim.to_string())
            .unwrap();
        assert!(me.voter, "{status:?}");
        let target = cluster.node(leader).raft().metrics().borrow().last_applied;
        cluster
            .node(victim)
            .raft()
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(target.map(|l| l.index), "caught up")
            .await
            .unwrap();
        let m = cluster.node(victim).raft().metrics().borrow().clone();
        assert!(
            m.snapshot.is_some(),
            "the re-added member got no snapshot: {m:?}"
        );
        let state = cluster.node(victim).state().await;
        assert_eq!(state.fleet.networks.len(), 120);
        assert_eq!(state.fleet.zones.len(), 5);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_three_to_five_to_three_under_writes() {
    bounded(LIMIT, async {
        let mut cluster = Cluster::start(3).await;
        cluster.leader().await;
        // A writer going through member 3 the whole time.
        let mut writer = cluster.operator(3).await;
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let writes = tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                if stop_rx.try_recv().is_ok() {
                    break;
                }
                let alias = format!("w{i}");
                let request = keyed_create(&alias);
                if writer.create_zones(request).await.is_ok() {
                    acknowledged.push(alias);
                }
            }
            acknowledged
        });
        let mut admin = cluster.operator(3).await;
        for id in [4, 5] {
            let addr = cluster.start_joining(id).await;
            admin
                .add_controller(pb::AddControllerRequest {
                    id: id.to_string(),
                    address: addr.to_string(),
                })
                .await
                .unwrap();
        }
        let status = admin
            .cluster_status(pb::ClusterStatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status.members.iter().filter(|m| m.voter).count(),
            5,
            "{status:?}"
        );
        for id in [1, 2] {
            admin
                .remove_controller(pb::RemoveControllerRequest { id: id.to_string() })
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_tx.send(()).unwrap();
        let acknowledged = writes.await.unwrap();
        assert!(
            acknowledged.len() > 5,
            "too few writes went through: {}",
            acknowledged.len()
        );
        for id in [1, 2] {
            cluster.kill(id).await;
        }
        let leader = cluster
            .leader_among(&[3, 4, 5], Duration::from_secs(10))
            .await;
        let status = cluster.node(leader).cluster_status().await;
        let voters: BTreeSet<String> = status
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.id.clone())
            .collect();
        assert_eq!(voters, ["3", "4", "5"].map(String::from).into());
        for id in [3, 4, 5] {
            let aliases = zone_aliases(&cluster, id).await;
            for alias in &acknowledged {
                assert!(
                    aliases.contains(alias),
                    "member {id} lacks acknowledged {alias}"
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_through_every_member_each_get_their_own_result() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        cluster.leader().await;
        // 3 x 40 concurrent creates: followers forward them in batches, the leader
        // commits them in batches; each caller gets its own zone back.
        let mut tasks = Vec::new();
        for id in 1..=3u64 {
            for i in 0..40 {
                let mut client = cluster.operator(id).await;
                tasks.push(tokio::spawn(async move {
                    let alias = format!("c{id}-{i}");
                    let zone = client
                        .create_zones(create(spec(&alias), 1))
                        .await
                        .unwrap_or_else(|e| panic!("create {alias}: {e}"))
                        .into_inner()
                        .zones
                        .remove(0);
                    assert_eq!(zone.spec.unwrap().alias.unwrap(), alias);
                    alias
                }));
            }
        }
        let mut created = BTreeSet::new();
        for t in tasks {
            created.insert(t.await.unwrap());
        }
        assert_eq!(created.len(), 120);
        assert_eq!(zone_aliases(&cluster, 1).await, created);
    })
    .await;
}

/// Cuts a follower off, commits `entries` no-op entries of `size` bytes through the
/// leader, heals, and waits (20 s at most) until the follower has applied them all.
async fn follower_catches_up_after(cluster: &Cluster, entries: u32, size: usize) {
    let leader = cluster.leader().await;
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    cluster.net.cut(behind, leader);
    for i in 0..entries {
        cluster
            .node(leader)
            .write(zonefleet_controller::api::operator::command(
                pb::fleet_command::Kind::Noop(pb::NoopCommand {
                    payload: vec![(i % 251) as u8; size],
                }),
            ))
            .await
            .unwrap();
    }
    let target = cluster.node(leader).last_log_id().unwrap().index;
    cluster.heal();
    cluster
        .node(behind)
        .raft()
        .wait(Some(Duration::from_secs(20)))
        .applied_index_at_least(Some(target), "caught up")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_by_more_than_a_raft_message_catches_up() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        // 12 entries of 2 MiB: 24 MiB to catch up, more than one Raft message holds.
        follower_catches_up_after(&cluster, 12, 2 * 1024 * 1024).await;
    })
    .await;
}

/// A follower far behind on many medium entries (batched writes) catches up from the
/// log, in `AppendEntries` it can take within openraft's timeout for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_by_many_batched_entries_catches_up() {
    bounded(LIMIT, async {
        // No snapshot: the follower must catch up from the log.
        let cluster = Cluster::start_with(
            3,
            openraft::Config {
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(100_000),
                ..test_raft_config()
            },
        )
        .await;
        // 160 entries of 128 KiB: 20 MiB behind, in entries openraft sends 300 at a time.
        follower_catches_up_after(&cluster, 160, 128 * 1024).await;
    })
    .await;
}
