//! Reading a JSON object so that every member it cannot read is named at once,
//! rather than only the first (serde stops there).
//!
//! The object is read whole first; only when that fails is each member read alone,
//! in a document completed by the required members, and each element of a list or
//! entry of a map alone, so that one wrong value does not hide the next.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{SpecError, ValidationError};
use super::text::{self, ROOT_PATH};

/// A JSON object, as members by name.
pub(crate) type Object = Map<String, Value>;

/// Parses `json` as an object. Bad syntax (after which nothing more can be read)
/// and a document that is not an object are [`SpecError::Parse`].
pub(crate) fn parse_object(json: &str) -> Result<Object, SpecError> {
    match text::from_json::<Value>(json)? {
        Value::Object(object) => Ok(object),
        other => Err(SpecError::Parse {
            path: ROOT_PATH.to_string(),
            message: format!("{} is not a JSON object", kind(&other)),
            line: 0,
            column: 0,
        }),
    }
}

/// Reads `object` into a `T`, or names every member `T` cannot read and removes
/// those members from `object`. `required` gives each required member a value `T`
/// accepts, to complete the document a member is tried in.
pub(crate) fn read_all<T: DeserializeOwned>(
    object: &mut Object,
    required: &[(&str, Value)],
) -> Result<T, Vec<ValidationError>> {
    let first = match read::<T>(object.clone()) {
        Ok(value) => return Ok(value),
        Err(problem) => problem,
    };
    let mut problems = Vec::new();
    for (name, _) in required {
        if !object.contains_key(*name) {
            problems.push(ValidationError::unreadable(
                ROOT_PATH,
                format!("missing field `{name}`"),
            ));
        }
    }
    let names: Vec<String> = object.keys().cloned().collect();
    for name in names {
        let found = member_problems::<T>(&name, &object[&name], required);
        if !found.is_empty() {
            object.remove(&name);
            problems.extend(found);
        }
    }
    if problems.is_empty() {
        // A problem of the members together (none alone): name it as serde did.
        problems.push(first);
    }
    Err(problems)
}

/// The problems of one member, read alone; a list's elements and a map's entries
/// are each read alone too.
fn member_problems<T: DeserializeOwned>(
    name: &str,
    value: &Value,
    required: &[(&str, Value)],
) -> Vec<ValidationError> {
    let alone = |value: Value| {
        let mut doc: Object = required
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        doc.insert(name.to_string(), value);
        read::<T>(doc).err()
    };
    let Some(problem) = alone(value.clone()) else {
        return Vec::new();
    };
    let parts: Vec<ValidationError> = match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let mut p = alone(Value::Array(vec![item.clone()]))?;
                // Read alone, the element was element 0.
                if let Some(rest) = p.field.strip_prefix(&format!("{name}[0]")) {
                    p.field = format!("{name}[{i}]{rest}");
                }
                Some(p)
            })
            .collect(),
        Value::Object(entries) => entries
            .iter()
            .filter_map(|(k, v)| alone(Value::Object(Map::from_iter([(k.clone(), v.clone())]))))
            .collect(),
        _ => Vec::new(),
    };
    if parts.is_empty() {
        vec![problem]
    } else {
        parts
    }
}

/// Reads a whole document, naming its first problem by path.
fn read<T: DeserializeOwned>(object: Object) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." || path == "?" {
            ROOT_PATH.to_string()
        } else {
            path
        };
        ValidationError::unreadable(path, e.inner().to_string())
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read only to be refused
    struct Doc {
        name: String,
        #[serde(default)]
        sizes: Vec<u32>,
        #[serde(default)]
        count: u32,
    }

    fn problems(json: &str) -> Vec<String> {
        let mut object = parse_object(json).unwrap();
        read_all::<Doc>(&mut object, &[("name", Value::from("x"))])
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn names_every_member_and_element() {
        assert_eq!(
            problems(r#"{"name": "a", "sizes": [1, -1, 2, "x"], "count": true, "extra": 1}"#),
            [
                "count: invalid type: boolean `true`, expected u32",
                "extra: unknown field `extra`, expected one of `name`, `sizes`, `count`",
                "sizes[1]: invalid value: integer `-1`, expected u32",
                "sizes[3]: invalid type: string \"x\", expected u32",
            ]
        );
        assert_eq!(
            problems(r#"{"count": 1}"#),
            ["<root>: missing field `name`"]
        );
    }

    #[test]
    fn refuses_what_is_not_an_object() {
        assert_eq!(
            parse_object("[1]").unwrap_err().to_string(),
            "<root>: an array is not a JSON object"
        );
        assert_eq!(
            parse_object("{").unwrap_err().to_string(),
            "<root>: EOF while parsing an object"
        );
    }
}
