//! A change to an existing zone's spec, and which of its properties can change: the
//! one patch `zonefleet-agent zone update`, the controllers' `UpdateZone` and
//! `zfadm zone update` apply. See `docs/zone-spec.md` ("Changing a zone").

use serde_json::Value;

use super::error::{show_str, SpecError, ValidationError, ValidationErrors};
use super::read::{self, Object};
use super::zone::{in_field_order, ZoneSpec};
use crate::pb;

/// The properties that cannot change on an existing zone, each with why.
pub const IMMUTABLE: &[(&str, &str)] = &[
    ("uuid", "it is the zone's identity"),
    ("brand", "the zone is installed for its brand"),
    ("image", "the image is the zone's root layer"),
    ("quota", "the zone's disk is made at install"),
    (
        "user_namespace",
        "the zone's files are owned by its id range since install",
    ),
];

/// The properties a patch merges key by key instead of replacing.
const MERGED: &[&str] = &["customer_metadata", "tags"];

/// A change to a zone's spec, as a JSON object of spec properties:
/// - a property given replaces the zone's (a list, such as `nics`, whole);
/// - `null` resets a property to its default;
/// - `customer_metadata` and `tags` are merged key by key, a `null` value removing
///   the key;
/// - the [`IMMUTABLE`] properties may only be given their current value.
///
/// On the wire it travels as this JSON text (`pb::ZonePatch`): "set", "reset" and
/// "leave alone" per property have no protobuf shape without a flag for each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZonePatch(Object);

impl ZonePatch {
    /// Reads a patch: a JSON object of spec properties. Every unknown property and
    /// every value of the wrong type is named at once, as for a spec.
    pub fn from_json(json: &str) -> Result<Self, SpecError> {
        let patch = read::parse_object(json)?;
        // The values given, read as a spec (a reset or a removed key has nothing
        // to read), name their problems as a spec's would.
        let mut given: Object = patch
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), without_nulls(k, v)))
            .collect();
        if !given.contains_key("image") {
            given.insert("image".into(), Value::from("image"));
        }
        match read::read_all::<ZoneSpec>(&mut given, &[]) {
            Ok(_) => Ok(ZonePatch(patch)),
            Err(problems) => Err(in_field_order(problems)),
        }
    }

    /// The patch as compact JSON text.
    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }

    /// The properties the patch names.
    pub fn properties(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// `current` with the patch applied, validated. Every problem at once, in field
    /// order: a change to an [`IMMUTABLE`] property, values that cannot be read, and
    /// the rules the patched spec breaks. Defaults are not filled in.
    pub fn apply(&self, current: &ZoneSpec) -> Result<ZoneSpec, SpecError> {
        let Value::Object(mut merged) =
            serde_json::to_value(current).expect("a spec serializes to JSON")
        else {
            unreachable!("a spec serializes to a JSON object")
        };
        let mut problems = Vec::new();
        for (name, value) in &self.0 {
            if let Some((_, why)) = IMMUTABLE.iter().find(|(f, _)| f == name) {
                let now = merged.get(name).unwrap_or(&Value::Null);
                if now != value {
                    problems.push(ValidationError {
                        field: name.clone(),
                        value: show(value),
                        problem: format!("cannot change on an existing zone ({why})"),
                        allowed: format!("{} (the current value)", show(now)),
                    });
                }
                continue;
            }
            match value {
                Value::Null => {
                    merged.remove(name);
                }
                Value::Object(changes) if MERGED.contains(&name.as_str()) => {
                    let entry = merged
                        .entry(name.clone())
                        .or_insert_with(|| Value::Object(Object::new()));
                    if let Value::Object(map) = entry {
                        for (key, v) in changes {
                            if v.is_null() {
                                map.remove(key);
                            } else {
                                map.insert(key.clone(), v.clone());
                            }
                        }
                    }
                }
                _ => {
                    merged.insert(name.clone(), value.clone());
                }
            }
        }
        ZoneSpec::from_object_validated(merged, problems)
    }
}

/// A merged map's value with its removals (`null` values) left out.
fn without_nulls(name: &str, value: &Value) -> Value {
    match value {
        Value::Object(map) if MERGED.contains(&name) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => value.clone(),
    }
}

/// A JSON value as an error shows it: strings quoted and cut as [`show_str`] does.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => show_str(s),
        other => other.to_string(),
    }
}

impl From<&ZonePatch> for pb::ZonePatch {
    fn from(patch: &ZonePatch) -> Self {
        pb::ZonePatch {
            json: patch.to_json(),
        }
    }
}

impl TryFrom<&pb::ZonePatch> for ZonePatch {
    type Error = SpecError;

    fn try_from(patch: &pb::ZonePatch) -> Result<Self, SpecError> {
        ZonePatch::from_json(&patch.json)
    }
}

/// Checks that `new` gives every [`IMMUTABLE`] property the value it has in
/// `current`: the rule a zone update obeys wherever it is checked (at the operator
/// API through [`ZonePatch::apply`], and again where the controllers apply it).
pub fn check_immutable(current: &ZoneSpec, new: &ZoneSpec) -> Result<(), ValidationErrors> {
    let as_json = |spec: &ZoneSpec| match serde_json::to_value(spec) {
        Ok(Value::Object(map)) => map,
        _ => Object::new(),
    };
    let (before, after) = (as_json(current), as_json(new));
    let problems: Vec<ValidationError> = IMMUTABLE
        .iter()
        .filter_map(|(name, why)| {
            let now = before.get(*name).unwrap_or(&Value::Null);
            let asked = after.get(*name).unwrap_or(&Value::Null);
            (now != asked).then(|| ValidationError {
                field: (*name).to_owned(),
                value: show(asked),
                problem: format!("cannot change on an existing zone ({why})"),
                allowed: format!("{} (the current value)", show(now)),
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> ZoneSpec {
        ZoneSpec::from_json(
            r#"{"image": "base@1", "quota": 10, "tags": {"a": "1", "b": "2"}, "cpu_cap": 100}"#,
        )
        .unwrap()
    }

    #[test]
    fn replaces_resets_and_merges() {
        let patch = ZonePatch::from_json(
            r#"{"cpu_cap": null, "max_physical_memory": 512, "tags": {"a": null, "c": "3"}, "image": "base@1"}"#,
        )
        .unwrap();
        let out = patch.apply(&current()).unwrap();
        assert_eq!(out.cpu_cap, None);
        assert_eq!(out.max_physical_memory, Some(512));
        assert_eq!(
            out.tags,
            [("b".into(), "2".into()), ("c".into(), "3".into())].into()
        );
        assert_eq!(
            ZonePatch::try_from(&pb::ZonePatch::from(&patch)).unwrap(),
            patch
        );
    }

    #[test]
    fn names_every_problem_at_once() {
        let err = ZonePatch::from_json(r#"{"ram": 1, "cpu_cap": "x"}"#).unwrap_err();
        assert_eq!(err.validation().map(|e| e.errors().len()), Some(2), "{err}");
        let patch =
            ZonePatch::from_json(r#"{"quota": 20, "image": "other@2", "cpu_cap": 0}"#).unwrap();
        assert_eq!(
            patch.apply(&current()).unwrap_err().to_string(),
            [
                "image: \"other@2\" cannot change on an existing zone (the image is the zone's root layer); allowed \"base@1\" (the current value)",
                "cpu_cap: 0 is out of range; allowed 1..=819200 (% of one CPU)",
                "quota: 20 cannot change on an existing zone (the zone's disk is made at install); allowed 10 (the current value)",
            ]
            .join("\n")
        );
    }
}
