//! The assignment watch and state reports through the real listeners of an in-process
//! cluster: a snapshot, then changes with increasing revisions, resumed at another
//! controller, a snapshot again when the revision is too old (a batch, or a member
//! restarted from a snapshot), a wait for a revision not applied yet; reports commit
//! only transitions.

mod support;

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use uuid::Uuid;
use zonefleet_controller::raft::NodeId;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{test_raft_config, Cluster};
use zonefleet_harness::fixtures;
use zonefleet_proto::pb;
use zonefleet_proto::pb::assignment_event::Event;

use support::*;

/// A cluster whose hosts' leases outlast the test: the hosts here never heartbeat, and
/// a host marked down would get no more zones.
async fn quiet_cluster(n: u64) -> Cluster {
    Cluster::start_with_control(n, test_raft_config(), |c| {
        c.lease_ttl = Duration::from_secs(600);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_streams_a_snapshot_then_changes_and_resumes() {
    bounded(LIMIT, async {
        let cluster = quiet_cluster(3).await;
        let leader = cluster.leader().await;
        let followers: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
        let host = Uuid::new_v4();
        let cert = agent_cert(&cluster, host);
        let mut agent = control_as(&cluster, followers[0], &cert).await;
        register(&mut agent, host).await;
        let mut operator = cluster.operator(leader).await;
        let z1 = fixtures::create_zone(&mut operator, "z1").await;

        let watch = |from_revision| pb::WatchAssignmentsRequest {
            host_id: host.to_string(),
            from_revision,
        };
        let mut stream = agent
            .watch_assignments(watch(0))
            .await
            .unwrap()
            .into_inner();
        let first = next(&mut stream).await;
        let Some(Event::Snapshot(snapshot)) = first.event else {
            panic!("not a snapshot first: {first:?}");
        };
        let mut revision = first.revision;
        assert!(revision > 0);
        // A follower answers from what it has applied: the create may follow.
        if snapshot.zones.is_empty() {
            let e = next(&mut stream).await;
            assert!(e.revision > revision, "{e:?} after {revision}");
            revision = e.revision;
            assert!(
                matches!(e.event, Some(Event::Upsert(ref z)) if uuid_of(z) == z1),
                "{e:?}"
            );
        } else {
            assert_eq!(snapshot.zones.len(), 1);
            assert_eq!(uuid_of(&snapshot.zones[0]), z1);
        }

        let z2 = fixtures::create_zone(&mut operator, "z2").await;
        let e = next(&mut stream).await;
        assert!(e.revision > revision, "{e:?} after {revision}");
        revision = e.revision;
        match e.event {
            Some(Event::Upsert(zone)) => assert_eq!(uuid_of(&zone), z2),
            other => panic!("{other:?}"),
        }
        operator
            .stop_zone(pb::ZoneRef { zone: z1.clone() })
            .await
            .unwrap();
        let e = next(&mut stream).await;
        assert!(e.revision > revision);
        revision = e.revision;
        match e.event {
            Some(Event::Upsert(zone)) => {
                assert_eq!(uuid_of(&zone), z1);
                assert_eq!(zone.desired_state, pb::ZoneState::Installed as i32);
                assert_eq!(zone.generation, 2);
            }
            other => panic!("{other:?}"),
        }
        drop(stream);

        // While the agent is away: a zone created, one deleted.
        let z3 = fixtures::create_zone(&mut operator, "z3").await;
        operator
            .delete_zone(pb::ZoneRef { zone: z2.clone() })
            .await
            .unwrap();
        // Resumed at another controller: what it missed, in order, no snapshot.
        let mut other = control_as(&cluster, followers[1], &cert).await;
        let mut stream = other
            .watch_assignments(watch(revision))
            .await
            .unwrap()
            .into_inner();
        let e = next(&mut stream).await;
        assert!(e.revision > revision);
        revision = e.revision;
        assert!(
            matches!(e.event, Some(Event::Upsert(ref z)) if uuid_of(z) == z3),
            "{e:?}"
        );
        let e = next(&mut stream).await;
        assert!(e.revision > revision);
        revision = e.revision;
        match e.event {
            Some(Event::Upsert(zone)) => {
                assert_eq!(uuid_of(&zone), z2);
                assert_eq!(zone.desired_state, pb::ZoneState::Deleted as i32);
            }
            other => panic!("{other:?}"),
        }
        // The agent reports it gone: the controllers forget it.
        other
            .report_zone_state(pb::ReportZoneStateRequest {
                host_id: host.to_string(),
                zones: vec![pb::ObservedZone {
                    uuid: z2.clone(),
                    generation: 2,
                    state: pb::ZoneState::Deleted as i32,
                    ..Default::default()
                }],
            })
            .await
            .unwrap();
        let e = next(&mut stream).await;
        assert!(e.revision > revision);
        let before_batch = e.revision;
        assert_eq!(e.event, Some(Event::Removed(z2.clone())));

        // Two zones in one entry: a stream behind it gets a snapshot (one revision,
        // one event), and so does a resume from before it.
        operator
            .create_zones(fixtures::create(fixtures::spec("pair"), 2))
            .await
            .unwrap();
        let e = next(&mut stream).await;
        assert!(e.revision > before_batch);
        let Some(Event::Snapshot(s)) = e.event else {
            panic!("not a snapshot: {e:?}")
        };
        assert_eq!(s.zones.len(), 4, "z1, z3 and the pair");
        let mut resumed = control_as(&cluster, leader, &cert)
            .await
            .watch_assignments(watch(before_batch))
            .await
            .unwrap()
            .into_inner();
        let again = next(&mut resumed).await;
        assert!(again.revision >= e.revision);
        assert!(matches!(again.event, Some(Event::Snapshot(ref s)) if s.zones.len() == 4));

        // A controller that has not applied the revision asked for waits for it.
        let ahead = again.revision + 5;
        let mut waiting = agent
            .watch_assignments(watch(ahead))
            .await
            .unwrap()
            .into_inner();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), waiting.next())
                .await
                .is_err(),
            "answered before applying revision {ahead}"
        );
        for i in 0..6 {
            fixtures::create_zone(&mut operator, &format!("later{i}")).await;
        }
        let e = next(&mut waiting).await;
        assert!(e.revision > ahead, "{e:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_commit_only_transitions() {
    bounded(LIMIT, async {
        let cluster = quiet_cluster(1).await;
        cluster.leader().await;
        let host = Uuid::new_v4();
        let mut agent = control_as(&cluster, 1, &agent_cert(&cluster, host)).await;
        register(&mut agent, host).await;
        let mut operator = cluster.operator(1).await;
        let zone = fixtures::create_zone(&mut operator, "web").await;
        let observed = |state: pb::ZoneState, message: &str| pb::ObservedZone {
            uuid: zone.clone(),
            generation: 1,
            state: state as i32,
            message: message.to_owned(),
            init_exit_status: None,
        };
        let report = |zones: Vec<pb::ObservedZone>| pb::ReportZoneStateRequest {
            host_id: host.to_string(),
            zones,
        };
        let node = cluster.node(1);
        agent
            .report_zone_state(report(vec![observed(pb::ZoneState::Running, "")]))
            .await
            .unwrap();
        let got = operator
            .get_zone(pb::GetZoneRequest {
                zone: zone.clone(),
                consistency: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.observed_state, pb::ZoneState::Running as i32);
        // The same again, and a zone this host does not have: no log entry.
        let before = node.last_log_id();
        let stranger = Uuid::new_v4().to_string();
        agent
            .report_zone_state(report(vec![
                observed(pb::ZoneState::Running, ""),
                pb::ObservedZone {
                    uuid: stranger,
                    ..observed(pb::ZoneState::Failed, "")
                },
            ]))
            .await
            .unwrap();
        assert_eq!(
            node.last_log_id(),
            before,
            "a report without a transition was committed"
        );
        // A new generation is a transition, and so is a new message.
        operator
            .stop_zone(pb::ZoneRef { zone: zone.clone() })
            .await
            .unwrap();
        let before = node.last_log_id();
        agent
            .report_zone_state(report(vec![pb::ObservedZone {
                generation: 2,
                ..observed(pb::ZoneState::Running, "")
            }]))
            .await
            .unwrap();
        assert!(node.last_log_id() > before);
        let before = node.last_log_id();
        agent
            .report_zone_state(report(vec![pb::ObservedZone {
                generation: 2,
                ..observed(pb::ZoneState::Running, "oom once")
            }]))
            .await
            .unwrap();
        assert!(node.last_log_id() > before);
        let got = operator
            .get_zone(pb::GetZoneRequest {
                zone: zone.clone(),
                consistency: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.message, "oom once");
        assert_eq!((got.observed_generation, got.generation), (2, 2));
        // Bad content: a clear error, nothing committed.
        let before = node.last_log_id();
        let e = agent
            .report_zone_state(report(vec![pb::ObservedZone {
                state: 42,
                ..observed(pb::ZoneState::Running, "")
            }]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(e.message().contains("not a zone state"), "{e}");
        assert_eq!(node.last_log_id(), before);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restarted_from_a_snapshot_answers_an_old_revision_with_a_snapshot() {
    bounded(LIMIT, async {
        let mut cluster = quiet_cluster(3).await;
        let leader = cluster.leader().await;
        let host = Uuid::new_v4();
        let cert = agent_cert(&cluster, host);
        register(&mut control_as(&cluster, leader, &cert).await, host).await;
        let mut operator = cluster.operator(leader).await;
        let first = fixtures::create_zone(&mut operator, "first").await;
        let mut stream = control_as(&cluster, leader, &cert)
            .await
            .watch_assignments(pb::WatchAssignmentsRequest {
                host_id: host.to_string(),
                from_revision: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let old = next(&mut stream).await.revision;
        drop(stream);
        // Past a snapshot (every 50 entries in tests) on every member.
        let target = (1..=3).find(|id| *id != leader).unwrap();
        // (30 × 2 changes: fewer than a member's change log keeps per host.)
        for i in 0..30 {
            operator
                .stop_zone(pb::ZoneRef {
                    zone: first.clone(),
                })
                .await
                .unwrap();
            operator
                .start_zone(pb::ZoneRef {
                    zone: first.clone(),
                })
                .await
                .unwrap_or_else(|e| panic!("start {i}: {e}"));
        }
        let addr = cluster.members[&target].addr;
        drop(cluster.kill(target).await);
        cluster.restart(target, addr).await;
        // The restarted member replays only what followed its snapshot: the revision
        // the agent had is too old there, so it gets a snapshot first.
        let mut stream = control_as(&cluster, target, &cert)
            .await
            .watch_assignments(pb::WatchAssignmentsRequest {
                host_id: host.to_string(),
                from_revision: old,
            })
            .await
            .unwrap()
            .into_inner();
        let e = next(&mut stream).await;
        assert!(e.revision > old);
        let mut generation = match e.event {
            Some(Event::Snapshot(s)) => {
                assert_eq!(s.zones.len(), 1);
                s.zones[0].generation
            }
            other => panic!("not a snapshot: {other:?}"),
        };
        // Served from what it has applied: it may still be catching up.
        let mut revision = e.revision;
        while generation < 61 {
            let e = next(&mut stream).await;
            assert!(e.revision > revision);
            revision = e.revision;
            match e.event {
                Some(Event::Upsert(z)) => {
                    assert_eq!(z.generation, generation + 1);
                    generation = z.generation;
                }
                other => panic!("{other:?}"),
            }
        }
        // The leader, which applied every change live, replays them instead.
        let mut stream = control_as(&cluster, leader, &cert)
            .await
            .watch_assignments(pb::WatchAssignmentsRequest {
                host_id: host.to_string(),
                from_revision: old,
            })
            .await
            .unwrap()
            .into_inner();
        let e = next(&mut stream).await;
        assert!(
            matches!(e.event, Some(Event::Upsert(ref z)) if z.generation == 2),
            "{e:?}"
        );
    })
    .await;
}
