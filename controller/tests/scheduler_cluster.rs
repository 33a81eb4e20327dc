//! Placement through a 3-member cluster: concurrent creates through different
//! controllers never commit a host past its capacity nor a group past its hard
//! spread; inventory, dry runs and reschedules through the operator API.

use std::collections::BTreeMap;
use std::time::Duration;

use zonefleet_harness::bounded;
use zonefleet_harness::cluster::Cluster;
use zonefleet_harness::fixtures::{create, host, register_host, spread};
use zonefleet_proto::pb;

const LIMIT: Duration = Duration::from_secs(90);

/// 4 racks × 2 hosts, 4096 MiB usable each (1 GiB kept for the global zone).
async fn register_hosts(cluster: &Cluster) {
    let node = cluster.node(1);
    for r in 0..4 {
        for h in 0..2 {
            node.write(register_host(host(&format!("h{r}{h}"), 5120, 1600, 1000)))
                .await
                .unwrap();
        }
    }
    // The rack comes from the operators' inventory.
    let mut client = cluster.operator(2).await;
    for r in 0..4 {
        for h in 0..2 {
            let host = client
                .set_host_inventory(pb::SetHostInventoryRequest {
                    host_id: format!("h{r}{h}"),
                    rack: Some(format!("r{r}")),
                    labels: [("class".to_owned(), "general".to_owned())].into(),
                    remove_labels: Vec::new(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(host.rack, format!("r{r}"));
        }
    }
}

fn zone_spec(group: Option<&str>) -> pb::ZoneSpec {
    pb::ZoneSpec {
        image: "base@1".to_owned(),
        max_physical_memory_mib: Some(1024),
        // The test hosts report no kernel features (a default zone's own user
        // namespace would need two).
        user_namespace: Some(false),
        placement: Some(pb::Placement {
            constraints: vec!["class=general".into()],
            spread: group.map(|g| spread("rack", g, 3, pb::RuleMode::Hard)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_through_every_controller_never_overcommit_nor_break_spread() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        cluster.leader().await;
        register_hosts(&cluster).await;
        let mut tasks = Vec::new();
        for i in 0..60u64 {
            let mut client = cluster.operator(1 + i % 3).await;
            let spec = zone_spec((i % 2 == 0).then_some("web"));
            tasks.push(tokio::spawn(async move {
                client
                    .create_zones(create(spec, 1 + (i % 3) as u32))
                    .await
                    .unwrap()
                    .into_inner()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut client = cluster.operator(3).await;
        let zones = client
            .list_zones(pb::ListZonesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .zones;
        assert_eq!(zones.len(), 120);
        let hosts: BTreeMap<String, pb::Host> = client
            .list_hosts(pb::ListHostsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .hosts
            .into_iter()
            .map(|h| (h.host_id.clone(), h))
            .collect();
        let mut memory: BTreeMap<&str, u64> = BTreeMap::new();
        let mut web_per_rack: BTreeMap<&str, u32> = BTreeMap::new();
        let mut placed = 0;
        for z in &zones {
            if z.host_id.is_empty() {
                assert!(z.message.starts_with("pending: "), "{}", z.message);
                continue;
            }
            placed += 1;
            *memory.entry(&z.host_id).or_default() += 1024;
            let spec = z.spec.as_ref().unwrap();
            if spec.placement.as_ref().unwrap().spread.is_some() {
                *web_per_rack.entry(&hosts[&z.host_id].rack).or_default() += 1;
            }
        }
        for (host, used) in &memory {
            assert!(*used <= 4096, "{host} holds {used} MiB");
            assert_eq!(
                hosts[*host].capacity.unwrap().allocated_memory_mib,
                *used,
                "{host}"
            );
        }
        for (rack, n) in &web_per_rack {
            assert!(*n <= 3, "rack {rack} holds {n} zones of web");
        }
        // The fleet has room for 32 zones (batches are all or nothing, so some room
        // may be left).
        assert!((1..=32).contains(&placed), "{placed} placed");
        // Every controller agrees.
        for id in [1, 2] {
            let mut other = cluster.operator(id).await;
            let theirs = other
                .list_zones(pb::ListZonesRequest::default())
                .await
                .unwrap()
                .into_inner()
                .zones;
            assert_eq!(theirs, zones);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_explains_and_changes_nothing_and_a_reschedule_moves_a_zone() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        cluster.leader().await;
        register_hosts(&cluster).await;
        let mut client = cluster.operator(2).await;
        let dry = client
            .create_zones(pb::CreateZonesRequest {
                dry_run: true,
                ..create(zone_spec(Some("web")), 12)
            })
            .await
            .unwrap()
            .into_inner();
        assert!(dry.zones.iter().all(|z| !z.host_id.is_empty()));
        assert_eq!(dry.top_scores.len(), 5);
        assert!(
            dry.explanation.starts_with("zone 1 of 12: h00 (rack r0)"),
            "{}",
            dry.explanation
        );
        let refused = client
            .create_zones(pb::CreateZonesRequest {
                dry_run: true,
                ..create(zone_spec(Some("web")), 13)
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            refused.explanation,
            "zone 13 of 13: no host: 8 already hold 3 zones of group web in their rack"
        );
        let none = client
            .list_zones(pb::ListZonesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .zones;
        assert!(none.is_empty());
        // A zone moves off a cordoned host.
        let created = client
            .create_zones(create(zone_spec(None), 1))
            .await
            .unwrap()
            .into_inner();
        let first = created.zones[0].host_id.clone();
        let uuid = created.zones[0]
            .spec
            .as_ref()
            .unwrap()
            .uuid
            .clone()
            .unwrap();
        client
            .cordon_host(pb::HostRef {
                host_id: first.clone(),
            })
            .await
            .unwrap();
        let moved = client
            .reschedule_zone(pb::ZoneRef { zone: uuid })
            .await
            .unwrap()
            .into_inner();
        assert_ne!(moved.host_id, first);
        assert_eq!(moved.generation, 2);
    })
    .await;
}
