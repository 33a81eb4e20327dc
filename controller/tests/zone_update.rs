//! `UpdateZone` through the operator API: the shared patch rule (`ZonePatch`,
//! docs/zone-spec.md), refused with the same message the agent's `zone update` gives
//! (agent/tests/zone_limits.rs checks the same quota patch there).

use std::time::Duration;

use zonefleet_harness::bounded;
use zonefleet_harness::cluster::Cluster;
use zonefleet_harness::fixtures::spec;
use zonefleet_proto::pb;
use zonefleet_proto::spec::ZonePatch;

fn patch(json: &str) -> pb::ZonePatch {
    (&ZonePatch::from_json(json).unwrap()).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_follow_the_shared_patch_rule() {
    bounded(Duration::from_secs(60), async {
        let cluster = Cluster::start(1).await;
        let id = cluster.leader().await;
        let mut client = cluster.operator(id).await;
        // A 1 GiB disk, as the agent's test zones have (agent/tests/zone_limits.rs).
        let created = client
            .create_zones(pb::CreateZonesRequest {
                spec: Some(pb::ZoneSpec {
                    quota_gib: Some(1),
                    ..spec("web")
                }),
                count: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let uuid = created.zones[0].spec.as_ref().unwrap().uuid.clone().unwrap();
        let update = |json: &str| pb::UpdateZoneRequest {
            zone: uuid.clone(),
            patch: Some(patch(json)),
        };

        // Immutable properties: every change named at once, as the agent names them.
        let err = client
            .update_zone(update(r#"{"quota": 5, "image": "other@2"}"#))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "image: \"other@2\" cannot change on an existing zone (the image is the zone's root layer); allowed \"base@1\" (the current value)\n\
             quota: 5 cannot change on an existing zone (the zone's disk is made at install); allowed 1 (the current value)"
        );

        // What may change does; tags merge key by key, null removing one.
        let zone = client
            .update_zone(update(
                r#"{"max_physical_memory": 512, "max_swap": 512, "tags": {"a": "1", "b": "2"}, "image": "base@1"}"#,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(zone.generation, 2);
        let zone = client
            .update_zone(update(r#"{"tags": {"a": null, "c": "3"}}"#))
            .await
            .unwrap()
            .into_inner();
        let spec = zone.spec.unwrap();
        assert_eq!(spec.max_physical_memory_mib, Some(512));
        assert_eq!(
            spec.tags.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            [("b".to_owned(), "2".to_owned()), ("c".to_owned(), "3".to_owned())].into()
        );

        // A value of the wrong type is refused by zfadm and the API alike.
        assert!(ZonePatch::from_json(r#"{"cpu_cap": "x"}"#).is_err());
        let err = client
            .update_zone(pb::UpdateZoneRequest {
                zone: uuid.clone(),
                patch: Some(pb::ZonePatch {
                    json: r#"{"cpu_cap": "x"}"#.into(),
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(err.message(), "cpu_cap: invalid type: string \"x\", expected u32");
    })
    .await;
}
