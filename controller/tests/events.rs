//! `Operator.WatchEvents` through the real listeners of an in-process cluster: the
//! fleet's events in order and the same at every controller, a resume from a revision
//! gives exactly the later ones, a follow stream sees a new event, and a reader older
//! than the oldest kept event is told so first.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::transport::Channel;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{test_raft_config, Cluster};
use zonefleet_harness::fixtures::{self, host, register_host};
use zonefleet_proto::pb;
use zonefleet_proto::pb::operator_client::OperatorClient;

const LIMIT: Duration = Duration::from_secs(120);

/// A cluster whose hosts' leases outlast the test: the hosts here never heartbeat.
async fn quiet_cluster(n: u64) -> Cluster {
    Cluster::start_with_control(n, test_raft_config(), |c| {
        c.lease_ttl = Duration::from_secs(600);
    })
    .await
}

/// Every event after `from` (no follow).
async fn events(client: &mut OperatorClient<Channel>, from: u64) -> Vec<pb::FleetEvent> {
    let mut stream = client
        .watch_events(pb::WatchEventsRequest {
            from_revision: from,
            follow: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(event) = stream.next().await {
        out.push(event.unwrap());
    }
    out
}

/// The next event on a follow stream (within 10 s).
async fn next(stream: &mut tonic::Streaming<pb::FleetEvent>) -> pb::FleetEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream ended")
        .expect("the stream failed")
}

fn kinds(events: &[pb::FleetEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_come_in_order_resume_by_revision_and_follow() {
    bounded(LIMIT, async {
        let cluster = quiet_cluster(3).await;
        let leader = cluster.leader().await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        cluster
            .node(leader)
            .write(register_host(host("h1", 8192, 800, 100)))
            .await
            .unwrap();
        let mut operator = cluster.operator(follower).await;
        let web = fixtures::create_zone(&mut operator, "web").await;
        operator
            .cordon_host(pb::HostRef {
                host_id: "h1".to_owned(),
            })
            .await
            .unwrap();
        // The only host is cordoned: this one waits.
        let db = fixtures::create_zone(&mut operator, "db").await;

        // At every controller (each after a read barrier), the same, in order.
        let mut seen = Vec::new();
        for id in 1..=3 {
            let all = events(&mut cluster.operator(id).await, 0).await;
            assert_eq!(
                kinds(&all),
                ["host.up", "zone.placed", "host.cordoned", "zone.pending"],
                "at controller {id}: {all:?}"
            );
            seen.push(all);
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
        let all = seen.remove(0);
        assert!(
            all.windows(2).all(|w| w[0].revision < w[1].revision),
            "{all:?}"
        );
        assert!(all.iter().all(|e| e.at_unix_ms > 0), "{all:?}");
        assert_eq!(
            (all[1].zone_uuid.as_str(), all[1].host_id.as_str()),
            (web.as_str(), "h1")
        );
        assert_eq!(all[2].message, "operator");
        assert_eq!(all[3].zone_uuid, db);
        assert!(all[3].message.contains("no host"), "{:?}", all[3]);

        // Resumed from a revision (at another controller): exactly the later ones.
        let later = events(&mut cluster.operator(leader).await, all[1].revision).await;
        assert_eq!(later, all[2..]);
        let last = all[3].revision;
        assert!(events(&mut operator, last).await.is_empty());

        // A follow stream stays open and sends what is committed next.
        let mut stream = operator
            .watch_events(pb::WatchEventsRequest {
                from_revision: last,
                follow: true,
            })
            .await
            .unwrap()
            .into_inner();
        let mut leader_client = cluster.operator(leader).await;
        leader_client
            .uncordon_host(pb::HostRef {
                host_id: "h1".to_owned(),
            })
            .await
            .unwrap();
        let ready = next(&mut stream).await;
        assert_eq!(
            (ready.kind.as_str(), ready.host_id.as_str()),
            ("host.ready", "h1")
        );
        assert!(ready.revision > last);
        // The pending zone finds its host now (the leader retries it).
        let placed = next(&mut stream).await;
        assert_eq!(placed.kind, "zone.placed", "{placed:?}");
        assert_eq!(placed.zone_uuid, db);
        assert!(placed.revision > ready.revision);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_older_than_the_oldest_kept_event_is_told_so_first() {
    bounded(LIMIT, async {
        let cluster = quiet_cluster(1).await;
        cluster.leader().await;
        cluster
            .node(1)
            .write(register_host(host("big", 4_000_000, 1_000_000, 1_000_000)))
            .await
            .unwrap();
        let mut operator = cluster.operator(1).await;
        // 11 000 zones placed: more events than are kept.
        for batch in 0..11 {
            let alias = format!("many{batch}");
            let created = operator
                .create_zones(fixtures::create(fixtures::spec(&alias), 1000))
                .await
                .unwrap()
                .into_inner();
            assert!(created.zones.iter().all(|z| z.host_id == "big"));
        }
        let kept = events(&mut operator, 0).await;
        // Asked for every kept event: no notice, the last 10 000.
        assert_eq!(kept.len(), 10_000);
        assert!(kept.iter().all(|e| e.kind == "zone.placed"));
        let oldest = kept[0].revision;
        let behind = events(&mut operator, 1).await;
        assert_eq!(behind[0].kind, "events.truncated");
        assert!(
            behind[0].message.contains(&format!("revision {oldest}")),
            "{:?}",
            behind[0]
        );
        assert_eq!(behind[1..], kept[..]);
    })
    .await;
}
