//! How a zone names its image, and the sha256 digest that addresses image content.

use std::fmt;

use uuid::Uuid;

use super::check;
use super::error::ValueError;
use super::text::{text_type, Text};

/// A sha256 digest, written as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Reads 64 lowercase hex digits. Uppercase is refused: a content address has
    /// one spelling, so that comparing strings compares content.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let refuse = || ValueError::string(s, "is not a sha256 digest", "64 lowercase hex digits");
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(refuse());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| refuse())?;
        Ok(Sha256Digest(bytes))
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

text_type!(Sha256Digest);

/// A zone's image: by uuid, by content digest (`sha256:<hex>`) or by
/// `name[@version]` (the newest version when none is given).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// The image's manifest uuid.
    Uuid(Uuid),
    /// The sha256 of the image archive.
    Sha256(Sha256Digest),
    /// A name, and optionally a version.
    Name {
        /// The image name, e.g. `base-64`.
        name: String,
        /// The version, e.g. `24.4.0`; `None` means the newest.
        version: Option<String>,
    },
}

impl ImageRef {
    /// Reads a uuid, `sha256:<hex>` or `name[@version]`. Only the shape is checked
    /// here; the name's and version's characters are checked by validation.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        if let Some(hex) = s.strip_prefix("sha256:") {
            return Sha256Digest::parse(hex).map(ImageRef::Sha256).map_err(|_| {
                ValueError::string(
                    s,
                    "is not an image reference",
                    "\"sha256:\" followed by 64 lowercase hex digits",
                )
            });
        }
        if let Ok(uuid) = Uuid::parse_text(s) {
            return Ok(ImageRef::Uuid(uuid));
        }
        let (name, version) = match s.split_once('@') {
            Some((name, version)) => (name, Some(version.to_string())),
            None => (s, None),
        };
        if name.is_empty()
            || version
                .as_deref()
                .is_some_and(|v| v.is_empty() || v.contains('@'))
        {
            return Err(ValueError::string(
                s,
                "is not an image reference",
                "a uuid, \"sha256:<64 hex>\" or \"name[@version]\"",
            ));
        }
        Ok(ImageRef::Name {
            name: name.to_string(),
            version,
        })
    }

    /// Checks the name's and version's characters (a uuid or digest is always well-formed).
    pub(crate) fn check(&self) -> Vec<ValueError> {
        let mut problems = Vec::new();
        if let ImageRef::Name { name, version } = self {
            problems.extend(check::image_name(name).err());
            if let Some(version) = version {
                problems.extend(check::image_version(version).err());
            }
        }
        problems
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Uuid(uuid) => f.write_str(&uuid.to_text()),
            ImageRef::Sha256(digest) => write!(f, "sha256:{digest}"),
            ImageRef::Name {
                name,
                version: None,
            } => f.write_str(name),
            ImageRef::Name {
                name,
                version: Some(version),
            } => write!(f, "{name}@{version}"),
        }
    }
}

text_type!(ImageRef);

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn digests() {
        let d: Sha256Digest = HEX.parse().unwrap();
        assert_eq!(d.to_string(), HEX);
        assert!(HEX.to_uppercase().parse::<Sha256Digest>().is_err());
        assert_eq!(
            "abc".parse::<Sha256Digest>().unwrap_err().to_string(),
            "\"abc\" is not a sha256 digest; allowed 64 lowercase hex digits"
        );
    }

    #[test]
    fn references_round_trip() {
        for s in [
            "2f1dc5a4-5b8c-4c5e-9a3b-0f4c3b2a1d0e".to_string(),
            format!("sha256:{HEX}"),
            "base-64".to_string(),
            "base-64@24.4.0".to_string(),
        ] {
            let r: ImageRef = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
            assert!(r.check().is_empty());
        }
        assert!(
            matches!("base@1".parse::<ImageRef>().unwrap(), ImageRef::Name { version: Some(v), .. } if v == "1")
        );
    }

    #[test]
    fn refuses_malformed_references() {
        for bad in ["", "@1", "base@", "a@b@c", "sha256:abc"] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad}");
        }
        let odd: ImageRef = "bad name@1 0".parse().unwrap();
        assert_eq!(odd.check().len(), 2);
    }
}
