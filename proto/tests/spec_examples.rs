//! The example payloads in `docs/examples/` read, validate and write back unchanged.

use std::path::PathBuf;

use prost::Message;
use zonefleet_proto::pb;
use zonefleet_proto::spec::{AffinityTarget, Capability, ImageRef, OnHostLost, ZoneSpec};

fn example(name: &str) -> (String, ZoneSpec) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/examples")
        .join(name);
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = ZoneSpec::from_json(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
    spec.validate().unwrap_or_else(|e| panic!("{name}:\n{e}"));
    (json, spec)
}

#[test]
fn every_example_is_valid_and_canonical() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for name in names {
        let (json, spec) = example(&name);
        // Written canonically, so they are also what `to_json_pretty` writes.
        assert_eq!(spec.to_json_pretty(), json.trim_end(), "{name}");
        let wire = pb::ZoneSpec::from(spec.clone()).encode_to_vec();
        let back = ZoneSpec::try_from(pb::ZoneSpec::decode(wire.as_slice()).unwrap()).unwrap();
        assert_eq!(back, spec, "{name}");
        spec.with_defaults().validate().unwrap();
    }
}

#[test]
fn web_example_reads_as_meant() {
    let (_, web) = example("web.json");
    assert_eq!(
        web.image,
        ImageRef::Name {
            name: "base-64".into(),
            version: Some("24.4.0".into())
        }
    );
    assert_eq!(web.on_host_lost, Some(OnHostLost::Reschedule));
    assert_eq!(
        web.limit_priv.as_ref().unwrap().last(),
        Some(&Capability::NetBindService)
    );
    let placement = web.placement.as_ref().unwrap();
    assert_eq!(placement.constraints[0].values, ["general", "compute"]);
    assert_eq!(
        placement.affinity[0].target,
        AffinityTarget::Tag {
            key: "role".into(),
            value: "batch".into()
        }
    );
    assert!(web.customer_metadata["user-script"].starts_with("#!/bin/sh\n"));
}

#[test]
fn db_example_reads_as_meant() {
    let (_, db) = example("db.json");
    assert!(matches!(db.image, ImageRef::Sha256(_)));
    assert_eq!(db.nics[1].ip.unwrap().to_string(), "fd00:20::40/64");
    assert_eq!(
        db.placement.as_ref().unwrap().affinity[0].target,
        AffinityTarget::Alias("db-replica".into())
    );
    let defaults = db.clone().with_defaults();
    assert_eq!(defaults.limit_priv.unwrap().len(), 14);
    assert_eq!(defaults.uuid, db.uuid);
}

#[test]
fn the_payload_in_the_docs_is_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/zone-spec.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc.find("```json\n").expect("a json block") + "```json\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let spec = ZoneSpec::from_json(&doc[start..end]).unwrap();
    spec.validate().unwrap();
}
