//! The scheduler through the state machine: filters, scores, spread, affinity,
//! reschedules, ratios, dry runs, addresses; and property tests over random fleets.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use zonefleet_proto::pb;
use zonefleet_proto::pb::command_result::Result as R;
use zonefleet_proto::pb::fleet_command::Kind;

use crate::state::FleetState;
use crate::testing::{cmd, create_kind, host, id, ok, spec, sysinfo};

fn register(s: &mut FleetState, h: pb::Host) {
    ok(s.apply(&cmd(Kind::RegisterHost(pb::RegisterHostCommand {
        host: Some(h),
    }))));
}

fn spread(group: &str, by: &str, max: Option<u32>, soft: bool) -> pb::Placement {
    pb::Placement {
        spread: Some(pb::Spread {
            by: by.to_owned(),
            group: group.to_owned(),
            max_per_domain: max,
            mode: if soft {
                pb::RuleMode::Soft
            } else {
                pb::RuleMode::Hard
            } as i32,
        }),
        ..Default::default()
    }
}

fn affinity(rule: pb::AffinityRule, target: &str, soft: bool) -> pb::Affinity {
    pb::Affinity {
        rule: rule as i32,
        target: target.to_owned(),
        mode: if soft {
            pb::RuleMode::Soft
        } else {
            pb::RuleMode::Hard
        } as i32,
    }
}

/// Creates `n` zones of `spec` named `prefix-i`; returns the response.
fn create(
    s: &mut FleetState,
    spec: &pb::ZoneSpec,
    prefix: &str,
    n: usize,
) -> pb::CreateZonesResponse {
    let uuids: Vec<String> = (0..n).map(|i| id(&format!("{prefix}-{i}"))).collect();
    match ok(s.apply(&cmd(create_kind(spec, &uuids)))).result {
        Some(R::Zones(z)) => z,
        other => panic!("not zones: {other:?}"),
    }
}

fn hosts_of(r: &pb::CreateZonesResponse) -> Vec<String> {
    r.zones.iter().map(|z| z.host_id.clone()).collect()
}

fn rack_of(s: &FleetState, host: &str) -> String {
    s.hosts[host].rack.clone()
}

fn set_status(s: &mut FleetState, id: &str, status: pb::HostStatus) {
    ok(s.apply(&cmd(Kind::SetHostStatus(pb::SetHostStatusCommand {
        host_id: id.to_owned(),
        status: status as i32,
        from_status: None,
    }))));
}

#[test]
fn binpack_fills_and_spread_empties_with_host_id_tie_breaks() {
    let mut s = FleetState::default();
    for (id, mem) in [("c", 4096), ("a", 4096), ("b", 2048)] {
        register(&mut s, host(id, "r1", mem));
    }
    // Binpack: the fullest that fits (b), then b again, then a (tie with c: a).
    let r = create(&mut s, &spec(1024), "bp", 3);
    assert_eq!(hosts_of(&r), ["b", "b", "a"]);
    // Spread: the emptiest: c (4096 free), then a and c tie at 3072 → a.
    let mut sp = spec(1024);
    sp.placement = Some(pb::Placement {
        strategy: pb::PlacementStrategy::Spread as i32,
        ..Default::default()
    });
    let r = create(&mut s, &sp, "sp", 2);
    assert_eq!(hosts_of(&r), ["c", "a"]);
}

#[test]
fn the_fleet_default_strategy_applies_when_the_zone_names_none() {
    let mut s = FleetState::default();
    register(&mut s, host("a", "r1", 4096));
    register(&mut s, host("b", "r1", 2048));
    ok(
        s.apply(&cmd(Kind::SetFleetSettings(pb::SetFleetSettingsCommand {
            settings: Some(pb::FleetSettings {
                default_strategy: pb::PlacementStrategy::Spread as i32,
                ..Default::default()
            }),
        }))),
    );
    assert_eq!(hosts_of(&create(&mut s, &spec(512), "z", 1)), ["a"]);
}

#[test]
fn every_refusal_reason_is_counted_in_the_message() {
    let mut s = FleetState::default();
    register(&mut s, host("cordoned", "r1", 8192));
    set_status(&mut s, "cordoned", pb::HostStatus::Cordoned);
    register(&mut s, host("draining", "r1", 8192));
    set_status(&mut s, "draining", pb::HostStatus::Draining);
    register(&mut s, host("down", "r1", 8192));
    set_status(&mut s, "down", pb::HostStatus::Down);
    // No VLAN feature.
    register(&mut s, host("novlan", "r1", 8192));
    let with_vlan = |id: &str, rack: &str, mem: u64| {
        let mut h = host(id, rack, mem);
        h.sysinfo = Some(sysinfo(id, &["bridge_vlan_filtering"]));
        h
    };
    let mut labelled = with_vlan("hdd", "r1", 8192);
    labelled.labels = [("disk".to_owned(), "hdd".to_owned())].into();
    register(&mut s, labelled);
    for i in 0..2 {
        let mut small = with_vlan(&format!("small{i}"), "r1", 512);
        small.labels = [("disk".to_owned(), "ssd".to_owned())].into();
        register(&mut s, small);
    }
    let mut nocpu = with_vlan("nocpu", "r1", 8192);
    nocpu.capacity.as_mut().unwrap().cpu_percent = 150;
    nocpu.labels = [("disk".to_owned(), "ssd".to_owned())].into();
    register(&mut s, nocpu);
    let mut nodisk = with_vlan("nodisk", "r1", 8192);
    nodisk.capacity.as_mut().unwrap().disk_gib = 5;
    nodisk.labels = [("disk".to_owned(), "ssd".to_owned())].into();
    register(&mut s, nodisk);
    // r2: holds a zone of group web already (max 1 per rack).
    for id in ["r2a", "r2b"] {
        let mut h = with_vlan(id, "r2", 8192);
        h.labels = [("disk".to_owned(), "ssd".to_owned())].into();
        register(&mut s, h);
    }
    let mut web = spec(1024);
    web.placement = Some(spread("web", "rack", Some(1), false));
    web.nics = vec![pb::Nic {
        vlan_id: Some(10),
        ip: Some("192.0.2.10/24".into()),
        ..Default::default()
    }];
    web.placement.as_mut().unwrap().constraints = vec!["disk=ssd".into()];
    web.cpu_cap = Some(100);
    let first = create(&mut s, &web, "web", 1);
    assert_eq!(hosts_of(&first), ["r2a"]);
    // A zone on r2b that must stay far from db, and db itself must go elsewhere.
    let mut far = spec(256);
    far.alias = Some("guard".into());
    far.placement = Some(pb::Placement {
        constraints: vec!["rack=r2".into()],
        affinity: vec![affinity(pb::AffinityRule::Far, "db", false)],
        ..Default::default()
    });
    let guard = create(&mut s, &far, "guard", 1);
    let guard_host = guard.zones[0].host_id.clone();
    assert_eq!(guard_host, "r2a", "binpack: the fuller host of rack r2");
    let r = create(&mut s, &web, "web2", 1);
    assert_eq!(hosts_of(&r), [""]);
    assert_eq!(
        r.explanation,
        "no host: 2 lack memory (need 1024 MiB), 2 already hold 1 zone of group web in their rack, \
         1 is down, 1 is draining, 1 is cordoned, 1 lacks feature bridge_vlan_filtering, \
         1 fails constraint disk=ssd, 1 lacks CPU (need 100% of a CPU), \
         1 lacks disk (need 10 GiB)"
    );
    assert!(r.zones[0].message.starts_with("pending: no host: "));
    // Far, near and the symmetric far rule.
    let mut db = spec(256);
    db.alias = Some("db".into());
    db.placement = Some(pb::Placement {
        constraints: vec!["rack=r2".into()],
        affinity: vec![affinity(pb::AffinityRule::Far, "tag:role=web", false)],
        ..Default::default()
    });
    let mut tagged = spec(256);
    tagged.tags = [("role".to_owned(), "web".to_owned())].into();
    tagged.placement = Some(pb::Placement {
        constraints: vec!["rack=r2".into()],
        affinity: vec![affinity(pb::AffinityRule::Far, "guard", false)],
        ..Default::default()
    });
    assert_eq!(hosts_of(&create(&mut s, &tagged, "tagged", 1)), ["r2b"]);
    let r = create(&mut s, &db, "db", 1);
    assert_eq!(
        r.explanation,
        "no host: 6 fail constraint rack=r2, 1 is down, 1 is draining, 1 is cordoned, \
         1 holds tag:role=web (far), 1 holds a zone that must be far from this one"
    );
    let mut near = spec(256);
    near.placement = Some(pb::Placement {
        affinity: vec![affinity(pb::AffinityRule::Near, "nothing-here", false)],
        ..Default::default()
    });
    let r = create(&mut s, &near, "near", 1);
    assert!(
        r.explanation.contains(" do not hold nothing-here (near)"),
        "{}",
        r.explanation
    );
}

#[test]
fn an_empty_fleet_says_so() {
    let mut s = FleetState::default();
    let r = create(&mut s, &spec(256), "z", 1);
    assert_eq!(r.explanation, "no host: no host is registered");
}

#[test]
fn image_minimum_ram_refuses_a_smaller_zone() {
    let mut s = FleetState::default();
    register(&mut s, host("a", "r1", 8192));
    ok(s.apply(&cmd(Kind::PutImage(pb::PutImageCommand {
        image: Some(pb::ImageManifest {
            sha256: "a".repeat(64),
            size_bytes: 1,
            uuid: id("i1"),
            name: "base".into(),
            version: "1".into(),
            min_ram_mib: 512,
            ..Default::default()
        }),
    }))));
    let r = create(&mut s, &spec(256), "z", 1);
    assert_eq!(
        r.explanation,
        "no host: image base@1 needs at least 512 MiB of memory, the zone has 256 MiB"
    );
    assert_eq!(hosts_of(&create(&mut s, &spec(512), "y", 1)), ["a"]);
}

#[test]
fn an_image_name_resolves_to_its_highest_version_as_on_a_host() {
    let mut s = FleetState::default();
    register(&mut s, host("a", "r1", 8192));
    // Uuid order (i1 < i2 < i3) is not version order: 1.10 is the highest.
    for (uuid, version, min_ram_mib, sha) in [
        ("i1", "1.9", 16, "a"),
        ("i2", "1.10", 1024, "b"),
        ("i3", "1.2", 16, "c"),
    ] {
        ok(s.apply(&cmd(Kind::PutImage(pb::PutImageCommand {
            image: Some(pb::ImageManifest {
                sha256: sha.repeat(64),
                size_bytes: 1,
                uuid: id(uuid),
                name: "app".into(),
                version: version.into(),
                min_ram_mib,
                ..Default::default()
            }),
        }))));
    }
    let mut app = spec(512);
    app.image = "app".into();
    assert_eq!(
        create(&mut s, &app, "z", 1).explanation,
        "no host: image app needs at least 1024 MiB of memory, the zone has 512 MiB"
    );
    app.image = "app@1.9".into();
    assert_eq!(hosts_of(&create(&mut s, &app, "y", 1)), ["a"]);
}

#[test]
fn a_batch_keeps_its_hard_rack_spread_and_is_all_or_nothing() {
    let mut s = FleetState::default();
    for r in 0..3 {
        for h in 0..2 {
            register(&mut s, host(&format!("h{r}{h}"), &format!("r{r}"), 8192));
        }
    }
    let mut web = spec(512);
    web.alias = Some("web".into());
    web.placement = Some(spread("web", "rack", Some(2), false));
    let r = create(&mut s, &web, "w", 6);
    let mut per_rack: BTreeMap<String, u32> = BTreeMap::new();
    for h in hosts_of(&r) {
        *per_rack.entry(rack_of(&s, &h)).or_default() += 1;
    }
    assert_eq!(per_rack.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
    assert_eq!(
        r.zones[5].spec.as_ref().unwrap().alias.as_deref(),
        Some("web-5")
    );
    // One more: nothing placed, the refusal names the zone.
    let mut more = web.clone();
    more.alias = Some("more".into());
    let r = create(&mut s, &more, "m", 2);
    assert_eq!(hosts_of(&r), ["", ""]);
    assert_eq!(
        r.explanation,
        "zone 1 of 2: no host: 6 already hold 2 zones of group web in their rack"
    );
    let used: u64 = s
        .hosts
        .values()
        .map(|h| h.capacity.unwrap().allocated_memory_mib)
        .sum();
    assert_eq!(used, 6 * 512);
}

#[test]
fn a_soft_spread_is_as_even_as_possible_and_a_host_spread_counts_hosts() {
    let mut s = FleetState::default();
    for r in 0..3 {
        for h in 0..3 {
            register(&mut s, host(&format!("h{r}{h}"), &format!("r{r}"), 8192));
        }
    }
    let mut web = spec(512);
    web.placement = Some(spread("web", "rack", None, true));
    let r = create(&mut s, &web, "w", 7);
    let mut per_rack: BTreeMap<String, u32> = BTreeMap::new();
    for h in hosts_of(&r) {
        *per_rack.entry(rack_of(&s, &h)).or_default() += 1;
    }
    let counts: BTreeSet<u32> = per_rack.values().copied().collect();
    assert_eq!(counts, [2, 3].into(), "{per_rack:?}");
    let mut api = spec(512);
    api.placement = Some(spread("api", "host", Some(1), false));
    let r = create(&mut s, &api, "a", 9);
    let hosts: BTreeSet<String> = hosts_of(&r).into_iter().collect();
    assert_eq!(hosts.len(), 9);
}

#[test]
fn soft_affinity_is_honoured_when_possible_and_broken_when_not() {
    let mut s = FleetState::default();
    register(&mut s, host("a", "r1", 1024));
    register(&mut s, host("b", "r1", 8192));
    let mut db = spec(512);
    db.alias = Some("db".into());
    assert_eq!(hosts_of(&create(&mut s, &db, "db", 1)), ["a"]);
    let mut app = spec(256);
    app.placement = Some(pb::Placement {
        affinity: vec![affinity(pb::AffinityRule::Near, "db", true)],
        ..Default::default()
    });
    // Near db (a) while it fits, then b.
    assert_eq!(hosts_of(&create(&mut s, &app, "app", 3)), ["a", "a", "b"]);
    let mut away = spec(256);
    away.placement = Some(pb::Placement {
        affinity: vec![affinity(pb::AffinityRule::Far, "db", true)],
        ..Default::default()
    });
    assert_eq!(hosts_of(&create(&mut s, &away, "away", 1)), ["b"]);
}

#[test]
fn rescheduling_keeps_hard_spread_and_far_rules() {
    let mut s = FleetState::default();
    for r in 0..3 {
        register(&mut s, host(&format!("h{r}"), &format!("r{r}"), 8192));
    }
    register(&mut s, host("h0b", "r0", 8192));
    let mut web = spec(512);
    web.placement = Some(spread("web", "rack", Some(1), false));
    let r = create(&mut s, &web, "w", 2);
    // Binpack over equal hosts: h0 (rank) then another rack.
    assert_eq!(hosts_of(&r), ["h0", "h1"]);
    let mut db = spec(512);
    db.alias = Some("db".into());
    db.placement = Some(pb::Placement {
        affinity: vec![affinity(pb::AffinityRule::Far, "tag:role=cache", false)],
        ..Default::default()
    });
    assert_eq!(hosts_of(&create(&mut s, &db, "db", 1)), ["h0"]);
    let mut cache = spec(512);
    cache.tags = [("role".to_owned(), "cache".to_owned())].into();
    // h0 holds db, whose far rule names role=cache: the cache goes elsewhere.
    assert_eq!(hosts_of(&create(&mut s, &cache, "cache", 1)), ["h1"]);
    // h1 goes down: w-1 may not move to r0 (w-0 is there) nor stay; h2 it is.
    set_status(&mut s, "h1", pb::HostStatus::Down);
    // Each move lands: its old host removes the zone (`ReleaseZone`).
    let moved = |s: &mut FleetState, uuid: &str| match s
        .apply(&cmd(Kind::RescheduleZone(pb::RescheduleZoneCommand {
            host_lost: false,
            uuid: id(uuid),
        })))
        .result
    {
        Some(R::Zone(z)) => {
            s.apply(&cmd(Kind::ReleaseZone(pb::ReleaseZoneCommand {
                uuid: id(uuid),
                host_id: z.leaving_host_id.clone(),
            })));
            Ok(z.host_id)
        }
        Some(R::Error(e)) => Err(e.message),
        other => panic!("{other:?}"),
    };
    assert_eq!(moved(&mut s, "w-1").unwrap(), "h2");
    // The cache may not go next to db (h0) nor h1: h0b or h2; binpack: h2 (fuller).
    assert_eq!(moved(&mut s, "cache-0").unwrap(), "h2");
    // Cordon h2 and h0b: the cache has nowhere to go and stays where it is.
    set_status(&mut s, "h0b", pb::HostStatus::Cordoned);
    assert_eq!(
        moved(&mut s, "cache-0").unwrap_err(),
        "no host: 1 is down, 1 is cordoned, 1 is the zone's current host, \
         1 holds a zone that must be far from this one"
    );
    assert_eq!(s.zones[&id("cache-0")].host_id, "h2");
    // Rescheduling the zone of a spread group does not count itself.
    set_status(&mut s, "h0b", pb::HostStatus::Ready);
    set_status(&mut s, "h0", pb::HostStatus::Draining);
    assert_eq!(moved(&mut s, "w-0").unwrap(), "h0b");
}

#[test]
fn ratios_and_the_reservation_bound_capacity() {
    let mut s = FleetState::default();
    let mut h = host("a", "r1", 0);
    h.capacity = Some(pb::Capacity {
        memory_mib: 3072,
        cpu_percent: 300,
        disk_gib: 100,
        ..Default::default()
    });
    register(&mut s, h);
    let mut z = spec(1024);
    z.cpu_cap = Some(100);
    // Reserved: 1024 MiB and one CPU: 2048 MiB and 2 CPUs usable.
    assert_eq!(hosts_of(&create(&mut s, &z, "a", 2)), ["a", "a"]);
    assert_eq!(hosts_of(&create(&mut s, &z, "b", 1)), [""]);
    ok(
        s.apply(&cmd(Kind::SetFleetSettings(pb::SetFleetSettingsCommand {
            settings: Some(pb::FleetSettings {
                ram_ratio_percent: Some(200),
                cpu_ratio_percent: Some(150),
                reserved_memory_mib: Some(0),
                ..Default::default()
            }),
        }))),
    );
    // 6144 MiB, 3 CPUs: one more fits (CPU bound).
    assert_eq!(hosts_of(&create(&mut s, &z, "c", 1)), ["a"]);
    let r = create(&mut s, &z, "d", 1);
    assert_eq!(r.explanation, "no host: 1 lacks CPU (need 100% of a CPU)");
    let bad = s.apply(&cmd(Kind::SetFleetSettings(pb::SetFleetSettingsCommand {
        settings: Some(pb::FleetSettings {
            ram_ratio_percent: Some(0),
            ..Default::default()
        }),
    })));
    assert!(matches!(bad.result, Some(R::Error(_))));
}

#[test]
fn inventory_is_the_operators_not_the_reporters() {
    let mut s = FleetState::default();
    register(&mut s, host("a", "r1", 4096));
    ok(
        s.apply(&cmd(Kind::SetHostInventory(pb::SetHostInventoryCommand {
            inventory: Some(pb::SetHostInventoryRequest {
                host_id: "a".into(),
                rack: Some("r9".into()),
                labels: [("ssd".to_owned(), "true".to_owned())].into(),
                remove_labels: Vec::new(),
            }),
        }))),
    );
    let mut z = spec(512);
    z.placement = Some(spread("g", "rack", Some(5), false));
    create(&mut s, &z, "z", 1);
    // The host reports again, claiming another rack: the inventory stays.
    let mut again = host("a", "elsewhere", 8192);
    again.labels = [("ssd".to_owned(), "false".to_owned())].into();
    register(&mut s, again);
    assert_eq!(s.hosts["a"].rack, "r9");
    assert_eq!(s.hosts["a"].labels["ssd"], "true");
    assert_eq!(s.hosts["a"].capacity.unwrap().allocated_memory_mib, 512);
    assert_eq!(s.hosts["a"].zone_count, 1);
    // Moving the host to another rack moves its group counts.
    ok(
        s.apply(&cmd(Kind::SetHostInventory(pb::SetHostInventoryCommand {
            inventory: Some(pb::SetHostInventoryRequest {
                host_id: "a".into(),
                rack: Some("r2".into()),
                ..Default::default()
            }),
        }))),
    );
    let mut fresh = s.clone();
    fresh.rebuild_derived();
    let mut c = spec(256);
    c.placement = Some(spread("g", "rack", Some(1), false));
    c.placement.as_mut().unwrap().constraints = vec!["rack=r2".into(), "ssd=true".into()];
    let a = create(&mut s, &c, "c", 1);
    let b = create(&mut fresh, &c, "c", 1);
    assert_eq!(
        a.explanation,
        "no host: 1 already holds 1 zone of group g in its rack"
    );
    assert_eq!(a, b);
}

#[test]
fn a_dry_run_shows_top_scores_and_changes_nothing() {
    let mut s = FleetState::default();
    for (id, mem) in [("a", 4096), ("b", 2048), ("c", 8192)] {
        register(&mut s, host(id, "r1", mem));
    }
    let before = s.clone();
    let r = s
        .dry_run_create(&pb::CreateZonesCommand {
            spec: Some(spec(1024)),
            uuids: vec!["x".into(), "y".into()],
            idempotency_key: String::new(),
        })
        .unwrap();
    assert_eq!(hosts_of(&r), ["b", "b"]);
    let top: Vec<(String, f64)> = r
        .top_scores
        .iter()
        .map(|t| (t.host_id.clone(), t.score))
        .collect();
    assert_eq!(
        top,
        [("b".into(), 50.0), ("a".into(), 25.0), ("c".into(), 12.5)]
    );
    assert!(
        r.explanation.starts_with(
            "zone 1 of 2: b (rack r1) scores 50.0 (next: a 25.0, c 12.5); zone 2 of 2: b"
        ),
        "{}",
        r.explanation
    );
    assert_eq!(s, before);
    let refused = s
        .dry_run_create(&pb::CreateZonesCommand {
            spec: Some(spec(100_000)),
            uuids: vec!["x".into()],
            idempotency_key: String::new(),
        })
        .unwrap();
    assert_eq!(
        refused.explanation,
        "no host: 3 lack memory (need 100000 MiB)"
    );
}

fn network(s: &mut FleetState, start: &str, end: &str) {
    ok(s.apply(&cmd(Kind::PutNetwork(pb::PutNetworkCommand {
        network: Some(pb::Network {
            uuid: id("n1"),
            name: "lan".into(),
            subnet: "10.0.0.0/16".into(),
            provision_start: start.into(),
            provision_end: end.into(),
            ..Default::default()
        }),
    }))));
}

fn nic_spec() -> pb::ZoneSpec {
    let mut z = spec(16);
    z.quota_gib = Some(0);
    z.nics = vec![pb::Nic {
        network: Some("lan".into()),
        ..Default::default()
    }];
    z
}

#[derive(Debug, Clone)]
enum Op {
    Create(usize),
    Delete(usize),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Addresses are unique among live zones, the lowest free one is handed out,
    /// and the pools always match the leases.
    #[test]
    fn addresses_are_never_given_twice(ops in prop::collection::vec(
        prop_oneof![(1usize..4).prop_map(Op::Create), (0usize..64).prop_map(Op::Delete)],
        1..150,
    )) {
        let mut s = FleetState::default();
        network(&mut s, "10.0.0.10", "10.0.0.60");
        let mut next = 0;
        for op in ops {
            match op {
                Op::Create(n) => {
                    let uuids: Vec<String> = (0..n).map(|i| format!("z{}", next + i)).collect();
                    next += n;
                    let _ = s.apply(&cmd(create_kind(&nic_spec(), &uuids)));
                }
                Op::Delete(i) => {
                    let live: Vec<String> = s.zones.iter()
                        .filter(|(_, z)| super::snapshot::is_live(z))
                        .map(|(u, _)| u.clone()).collect();
                    if !live.is_empty() {
                        let uuid = live[i % live.len()].clone();
                        ok(s.apply(&cmd(Kind::DeleteZone(pb::DeleteZoneCommand { uuid }))));
                    }
                }
            }
            let mut seen = BTreeSet::new();
            for z in s.zones.values().filter(|z| super::snapshot::is_live(z)) {
                prop_assert_eq!(z.addresses.len(), 1);
                prop_assert!(seen.insert(z.addresses[0].clone()), "{} twice", z.addresses[0]);
            }
            prop_assert_eq!(seen.len(), s.leases.len());
            prop_assert_eq!(s.derived.pools.in_use(&id("n1")), s.leases.len());
        }
    }

    /// Over random fleets and random creates, deletes, status changes and
    /// reschedules: no host holds more than its usable capacity, no rack more than
    /// `max_per_domain` zones of a hard group, no zone sits with a zone it must be
    /// far from; and a replica that rebuilt its view from a snapshot decides the same.
    #[test]
    fn hard_rules_and_capacity_always_hold(
        hosts in prop::collection::vec((0u32..5, 1u64..6, 1u32..5), 3..14),
        ops in prop::collection::vec((0u8..6, 0usize..1000, 1usize..4), 1..40),
    ) {
        let mut s = FleetState::default();
        for (i, (rack, gib, cpus)) in hosts.iter().enumerate() {
            let mut h = host(&format!("h{i:02}"), &format!("r{rack}"), gib * 1024);
            h.capacity.as_mut().unwrap().cpu_percent = 100 + cpus * 100;
            h.capacity.as_mut().unwrap().disk_gib = 40;
            register(&mut s, h);
        }
        if ops.len() % 2 == 0 {
            ok(s.apply(&cmd(Kind::SetFleetSettings(pb::SetFleetSettingsCommand {
                settings: Some(pb::FleetSettings { ram_ratio_percent: Some(150), ..Default::default() }),
            }))));
        }
        for (n, (kind, pick, count)) in ops.into_iter().enumerate() {
            let uuids: Vec<String> = (0..count).map(|i| format!("z{n}-{i}")).collect();
            let live: Vec<String> = s.zones.iter()
                .filter(|(_, z)| super::snapshot::is_live(z))
                .map(|(u, _)| u.clone()).collect();
            let command = match kind {
                0 => {
                    let mut z = spec(512 * (1 + pick as u64 % 3));
                    z.cpu_cap = Some(50 * (pick as u32 % 3));
                    z.placement = Some(spread("web", "rack", Some(2), false));
                    Some(create_kind(&z, &uuids))
                }
                1 => {
                    let mut z = spec(256);
                    z.tags = [("role".to_owned(), format!("r{}", pick % 2))].into();
                    z.placement = Some(pb::Placement {
                        affinity: vec![affinity(pb::AffinityRule::Far, &format!("tag:role=r{}", (pick + 1) % 2), false)],
                        strategy: (pick % 3) as i32,
                        ..Default::default()
                    });
                    Some(create_kind(&z, &uuids))
                }
                2 => {
                    let mut z = spec(1024);
                    z.placement = Some(spread("soft", "rack", Some(1), true));
                    Some(create_kind(&z, &uuids))
                }
                3 if !live.is_empty() => Some(Kind::DeleteZone(pb::DeleteZoneCommand {
                    uuid: live[pick % live.len()].clone(),
                })),
                4 if !live.is_empty() => Some(Kind::RescheduleZone(pb::RescheduleZoneCommand {
                host_lost: false,
                    uuid: live[pick % live.len()].clone(),
                })),
                5 => {
                    let id = format!("h{:02}", pick % hosts.len());
                    let status = [pb::HostStatus::Ready, pb::HostStatus::Down, pb::HostStatus::Cordoned][pick % 3];
                    Some(Kind::SetHostStatus(pb::SetHostStatusCommand { host_id: id, status: status as i32, from_status: None }))
                }
                _ => None,
            };
            let Some(command) = command else { continue };
            let mut replica = FleetState::from_snapshot(&s.to_snapshot());
            let a = s.apply(&cmd(command.clone()));
            let b = replica.apply(&cmd(command));
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(&s, &replica);
            check_invariants(&s)?;
        }
    }
}

fn check_invariants(s: &FleetState) -> Result<(), TestCaseError> {
    let settings = s.derived.view.settings();
    let live: Vec<&pb::Zone> = s
        .zones
        .values()
        .filter(|z| super::snapshot::is_live(z) && !z.host_id.is_empty())
        .collect();
    let mut used: BTreeMap<&str, super::snapshot::Resources> = BTreeMap::new();
    let mut web: BTreeMap<String, u32> = BTreeMap::new();
    for z in &live {
        let need = super::snapshot::Resources::of_spec(z.spec.as_ref().unwrap());
        let u = used.entry(z.host_id.as_str()).or_default();
        u.memory += need.memory;
        u.cpu += need.cpu;
        u.disk += need.disk;
        let spec = z.spec.as_ref().unwrap();
        if spec
            .placement
            .as_ref()
            .and_then(|p| p.spread.as_ref())
            .is_some_and(|g| g.group == "web")
        {
            *web.entry(s.hosts[&z.host_id].rack.clone()).or_default() += 1;
        }
    }
    for (host, u) in &used {
        let h = &s.hosts[*host];
        let c = h.capacity.unwrap();
        let usable = settings.usable(super::snapshot::Resources {
            memory: c.memory_mib,
            cpu: u64::from(c.cpu_percent),
            disk: c.disk_gib,
        });
        prop_assert!(
            u.memory <= usable.memory,
            "{host}: memory {} > {}",
            u.memory,
            usable.memory
        );
        prop_assert!(
            u.cpu <= usable.cpu,
            "{host}: cpu {} > {}",
            u.cpu,
            usable.cpu
        );
        prop_assert!(u.disk <= usable.disk, "{host}: disk");
        prop_assert_eq!(c.allocated_memory_mib, u.memory);
    }
    for (rack, n) in &web {
        prop_assert!(*n <= 2, "rack {rack} holds {n} zones of web");
    }
    for z in &live {
        let spec = z.spec.as_ref().unwrap();
        for target in super::snapshot::hard_far_targets(spec) {
            let (_, value) = target.trim_start_matches("tag:").split_once('=').unwrap();
            for other in &live {
                if other.host_id == z.host_id {
                    prop_assert!(
                        other
                            .spec
                            .as_ref()
                            .unwrap()
                            .tags
                            .get("role")
                            .map(String::as_str)
                            != Some(value),
                        "{} sits with a zone it must be far from",
                        z.host_id
                    );
                }
            }
        }
    }
    Ok(())
}
