//! Values that JSON and protobuf carry as strings (UUIDs, addresses, capability
//! names, constraints…), and reading JSON documents with error paths.
//!
//! Every such type parses through [`Text`], so a refused value reads the same in a
//! JSON file, in a protobuf message and in a Rust `FromStr`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::{SpecError, ValueError};

/// A value written as a string on the wire.
pub(crate) trait Text: Sized {
    /// Parses the wire string.
    fn parse_text(s: &str) -> Result<Self, ValueError>;
    /// The canonical wire string.
    fn to_text(&self) -> String;
}

/// Parses a UUID in any form the `uuid` crate reads; written hyphenated lowercase.
impl Text for Uuid {
    fn parse_text(s: &str) -> Result<Self, ValueError> {
        Uuid::parse_str(s)
            .map_err(|_| ValueError::string(s, "is not a UUID", "32 hex digits as 8-4-4-4-12"))
    }
    fn to_text(&self) -> String {
        self.hyphenated().to_string()
    }
}

/// An address with its prefix length; the address may have host bits set.
impl Text for IpNet {
    fn parse_text(s: &str) -> Result<Self, ValueError> {
        s.parse().map_err(|_| {
            ValueError::string(
                s,
                "is not an address/prefix",
                "an IPv4 or IPv6 address with a prefix length, e.g. \"10.0.0.5/24\" or \"fd00::5/64\"",
            )
        })
    }
    fn to_text(&self) -> String {
        self.to_string()
    }
}

impl Text for IpAddr {
    fn parse_text(s: &str) -> Result<Self, ValueError> {
        s.parse().map_err(|_| {
            ValueError::string(
                s,
                "is not an IP address",
                "an IPv4 or IPv6 address, e.g. \"10.0.0.1\" or \"fd00::1\"",
            )
        })
    }
    fn to_text(&self) -> String {
        self.to_string()
    }
}

/// Implements `Text`, `FromStr`, `Display`, `Serialize` and `Deserialize` for a
/// domain type from its `parse(&str) -> Result<Self, ValueError>` and
/// `write(&self, &mut Formatter)` functions.
macro_rules! text_type {
    ($ty:ty) => {
        impl $crate::spec::text::Text for $ty {
            fn parse_text(s: &str) -> Result<Self, $crate::spec::ValueError> {
                <$ty>::parse(s)
            }
            fn to_text(&self) -> String {
                self.to_string()
            }
        }
        impl std::str::FromStr for $ty {
            type Err = $crate::spec::ValueError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$ty>::parse(s)
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.write(f)
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::spec::text::one::serialize(self, s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::spec::text::one::deserialize(d)
            }
        }
    };
}
pub(crate) use text_type;

/// Serde `with` module for a [`Text`] value.
pub(crate) mod one {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use super::Text;

    pub(crate) fn serialize<T: Text, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_text())
    }

    pub(crate) fn deserialize<'de, T: Text, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        T::parse_text(&s).map_err(D::Error::custom)
    }
}

/// Serde `with` module for an optional [`Text`] value.
pub(crate) mod opt {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Text;

    #[allow(clippy::ref_option)] // serde's `with` hands us `&Option<T>`
    pub(crate) fn serialize<T: Text, S: Serializer>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_some(&v.to_text()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, T: Text, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap<T: Text>(#[serde(with = "super::one")] T);
        Ok(Option::<Wrap<T>>::deserialize(d)?.map(|Wrap(v)| v))
    }
}

/// Serde `with` module for a list of [`Text`] values.
pub(crate) mod list {
    use serde::{ser::SerializeSeq, Deserialize, Deserializer, Serializer};

    use super::Text;

    pub(crate) fn serialize<T: Text, S: Serializer>(values: &[T], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(values.len()))?;
        for v in values {
            seq.serialize_element(&v.to_text())?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, T: Text, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap<T: Text>(#[serde(with = "super::one")] T);
        Ok(Vec::<Wrap<T>>::deserialize(d)?
            .into_iter()
            .map(|Wrap(v)| v)
            .collect())
    }
}

/// How a JSON path names the document itself (serde_path_to_error writes `.`).
pub const ROOT_PATH: &str = "<root>";

/// Reads a JSON document, naming the path of the first problem.
pub(crate) fn from_json<T: DeserializeOwned>(json: &str) -> Result<T, SpecError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(parse_error)?;
    de.end()
        .map_err(|e| parse_error_at(ROOT_PATH.to_string(), &e))?;
    Ok(value)
}

/// Writes a document as indented JSON; `None` fields and empty lists are left out.
pub(crate) fn to_json_pretty<T: serde::Serialize>(value: &T) -> String {
    // Serializing these types cannot fail: every map has string keys.
    serde_json::to_string_pretty(value).expect("domain documents serialize to JSON")
}

fn parse_error(e: serde_path_to_error::Error<serde_json::Error>) -> SpecError {
    let path = e.path().to_string();
    // "." is the document itself; "?" a place serde could not name (bad syntax).
    let path = if path == "." || path == "?" {
        ROOT_PATH.to_string()
    } else {
        path
    };
    parse_error_at(path, e.inner())
}

fn parse_error_at(path: String, e: &serde_json::Error) -> SpecError {
    // serde_json appends " at line L column C"; the position is kept apart.
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    SpecError::Parse {
        path,
        message,
        line: e.line(),
        column: e.column(),
    }
}
