//! One reading and validation pass names every problem of a spec (or a patch) at
//! once, as `vmadm validate` does, and prints each problem once.

use std::error::Error as _;

use zonefleet_proto::spec::{SpecError, ZonePatch, ZoneSpec};

fn messages(err: &SpecError) -> Vec<String> {
    err.validation()
        .unwrap_or_else(|| panic!("not a list of problems: {err:?}"))
        .messages()
}

#[test]
fn a_bad_capability_and_an_unknown_field_are_both_named() {
    let json = r#"{"image": "base@1", "limit_priv": ["CAP_CHOWN", "CAP_NOPE", 7], "ram": 5}"#;
    let err = ZoneSpec::from_json(json).unwrap_err();
    let got = messages(&err);
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got[0].starts_with("limit_priv[1]: \"CAP_NOPE\" is not a Linux capability"),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with("limit_priv[2]: invalid type: integer `7`"),
        "{got:#?}"
    );
    assert!(
        got[2].starts_with("ram: unknown field `ram`, expected one of `uuid`"),
        "{got:#?}"
    );
}

#[test]
fn unreadable_and_invalid_values_are_named_together_in_field_order() {
    let json = r#"{
        "image": "base@1",
        "alias": "-bad",
        "cpu_cap": "lots",
        "max_lwps": 0,
        "nics": [{"ip": "10.0.0.1/24", "primary": true}, {"ipp": 1}],
        "colour": "blue"
    }"#;
    let err = ZoneSpec::from_json_validated(json).unwrap_err();
    let got = messages(&err);
    let fields: Vec<&str> = got.iter().map(|m| m.split(':').next().unwrap()).collect();
    assert_eq!(
        fields,
        ["alias", "cpu_cap", "max_lwps", "nics[1].ipp", "colour"],
        "{got:#?}"
    );
    // A valid spec reads as from_json does.
    let ok = r#"{"image": "base@1", "alias": "web"}"#;
    assert_eq!(
        ZoneSpec::from_json_validated(ok).unwrap(),
        ZoneSpec::from_json(ok).unwrap()
    );
}

#[test]
fn an_unreadable_image_is_named_and_the_rest_still_validated() {
    let err = ZoneSpec::from_json_validated(r#"{"image": 5, "quota": 0}"#).unwrap_err();
    let got = messages(&err);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].starts_with("image: "), "{got:#?}");
    assert_eq!(got[1], "quota: 0 is out of range; allowed 1..=65536 (GiB)");
    let err = ZoneSpec::from_json_validated(r#"{"quota": 0}"#).unwrap_err();
    assert_eq!(
        messages(&err),
        [
            "<root>: missing field `image`",
            "quota: 0 is out of range; allowed 1..=65536 (GiB)"
        ]
    );
}

#[test]
fn problems_are_printed_once() {
    let err = ZoneSpec::from_json_validated(r#"{"image": "base@1", "cpu_cap": 0}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cpu_cap: 0 is out of range; allowed 1..=819200 (% of one CPU)"
    );
    // A report that walks the error's sources (anyhow's `{:#}`) adds nothing.
    assert!(err.source().is_none());
}

#[test]
fn a_patch_names_every_problem_at_once() {
    let err = ZonePatch::from_json(r#"{"ram": 1, "cpu_cap": "x", "tags": {"a": 1}}"#).unwrap_err();
    let got = messages(&err);
    let fields: Vec<&str> = got.iter().map(|m| m.split(':').next().unwrap()).collect();
    assert_eq!(fields, ["cpu_cap", "tags.a", "ram"], "{got:#?}");
    assert!(ZonePatch::from_json("[]").is_err());
}

#[test]
fn a_bad_halt_signal_is_named_in_json_and_on_the_wire() {
    let err = ZoneSpec::from_json(r#"{"image": "base@1", "halt_signal": "SIGKILL"}"#).unwrap_err();
    let got = messages(&err);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("halt_signal: \"SIGKILL\" cannot be caught"),
        "{got:#?}"
    );
    let err = ZoneSpec::from_json(r#"{"image": "base@1", "halt_signal": 15}"#).unwrap_err();
    assert!(
        messages(&err)[0].starts_with("halt_signal: invalid type: integer `15`"),
        "{err}"
    );
    let wire = zonefleet_proto::pb::ZoneSpec {
        image: "base@1".into(),
        halt_signal: Some("SIGRTMIN+99".into()),
        ..Default::default()
    };
    let err = ZoneSpec::try_from(wire).unwrap_err();
    assert!(
        messages(&err)[0].starts_with("halt_signal: \"SIGRTMIN+99\" is not a real-time signal"),
        "{err}"
    );
    // Read loosely, written canonically.
    let spec = ZoneSpec::from_json(r#"{"image": "base@1", "halt_signal": "rtmin+3"}"#).unwrap();
    assert!(spec
        .to_json_pretty()
        .contains("\"halt_signal\": \"SIGRTMIN+3\""));
}
