//! Image manifests: what an image is, as its publisher describes it; the naming
//! rule of image names and versions; which image a reference resolves to; and which
//! archive format an image is ([`detect_format`]).
//! One rule for the agent's store and the controllers' scheduler (`docs/images.md`).

mod format;
mod version;

pub use format::{detect_format, ArchiveFormat, TAR_BLOCK};
pub use version::compare_versions;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::pb;
use crate::spec::check;
use crate::spec::text::{self, Text};
use crate::spec::Problems;
use crate::spec::{
    ImageRef, Sha256Digest, Signal, SpecError, ValidationErrors, ValueError, MEMORY_MIB,
};

/// The largest image archive accepted: 1 TiB.
pub const MAX_IMAGE_BYTES: u64 = 1 << 40;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// A root filesystem image's manifest. The archive is addressed by its sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    /// The image's identity.
    #[serde(with = "text::one")]
    pub uuid: Uuid,
    /// The image's name, e.g. `base-64`.
    pub name: String,
    /// The image's version, e.g. `24.4.0`.
    pub version: String,
    /// The sha256 of the archive, 64 lowercase hex digits.
    pub sha256: Sha256Digest,
    /// The archive's size in bytes.
    pub size: u64,
    /// The least memory a zone of this image needs, MiB.
    // `min_ram_mib`: the name the agent's image store wrote before it kept manifests.
    #[serde(
        default,
        alias = "min_ram_mib",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_ram: Option<u64>,
    /// Free text for operators.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The signal that asks the image's init to shut down (`SIGRTMIN+3`), for the
    /// zones whose spec names none; absent, it is detected from the image's init.
    #[serde(default, with = "text::opt", skip_serializing_if = "Option::is_none")]
    pub halt_signal: Option<Signal>,
}

impl ImageManifest {
    /// Reads a manifest from JSON, naming the path of a malformed or unknown field.
    pub fn from_json(json: &str) -> Result<Self, SpecError> {
        text::from_json(json)
    }

    /// Writes the manifest as indented JSON.
    pub fn to_json_pretty(&self) -> String {
        text::to_json_pretty(self)
    }

    /// Checks every rule and returns every problem, as [`crate::spec::ZoneSpec::validate`] does.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut p = Problems::default();
        if self.uuid.is_nil() {
            p.push(
                "uuid",
                ValueError::string(&self.uuid.to_text(), "is the nil UUID", "any other UUID"),
            );
        }
        p.check("name", check::image_name(&self.name));
        p.check("version", check::image_version(&self.version));
        p.check("size", check::range(self.size, 1, MAX_IMAGE_BYTES, "bytes"));
        if let Some(min_ram) = self.min_ram {
            p.check(
                "min_ram",
                check::range(min_ram, *MEMORY_MIB.start(), *MEMORY_MIB.end(), "MiB"),
            );
        }
        let chars = self.description.chars().count();
        if chars > MAX_DESCRIPTION_CHARS {
            p.push(
                "description",
                ValueError::string(
                    &self.description,
                    "is too long",
                    format!("at most {MAX_DESCRIPTION_CHARS} characters"),
                ),
            );
        }
        p.finish()
    }
}

/// Checks an image name: 1 to 128 letters, digits, '.', '_' or '-', starting with a
/// letter or digit (`@` and `:` separate the parts of a reference).
pub fn check_name(name: &str) -> Result<(), ValueError> {
    check::image_name(name)
}

/// Checks an image version: 1 to 128 letters, digits, '.', '_', '-', '+' or '~',
/// starting with a letter or digit.
pub fn check_version(version: &str) -> Result<(), ValueError> {
    check::image_version(version)
}

/// Of `manifests`, the one with the highest version ([`compare_versions`]); of
/// versions that compare equal, the last given (a host gives its images oldest
/// import first, so the newest import wins).
pub fn highest<'a>(
    manifests: impl IntoIterator<Item = &'a ImageManifest>,
) -> Option<&'a ImageManifest> {
    highest_by(manifests, |m| &m.version)
}

/// [`highest`] for any list of images, `version` reading each one's version: the
/// one rule wherever images are listed (a host's store, the fleet's manifests).
pub fn highest_by<T>(
    items: impl IntoIterator<Item = T>,
    version: impl Fn(&T) -> &str,
) -> Option<T> {
    items
        .into_iter()
        .max_by(|a, b| compare_versions(version(a), version(b)))
}

/// The default image name for an archive file, the same for `zonefleet-agent image
/// import` and `zfadm image import`: its file name without the archive extensions
/// (`busybox.tar.gz` → `busybox`).
pub fn default_name(archive: &std::path::Path) -> String {
    let file = archive
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    for ext in [".tar.gz", ".tar.zst", ".tar.zstd", ".tgz", ".tzst", ".tar"] {
        if let Some(stem) = file.strip_suffix(ext) {
            if !stem.is_empty() {
                return stem.to_string();
            }
        }
    }
    match file.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => file,
    }
}

impl ImageRef {
    /// The image of `manifests` this reference names: by uuid or digest the one that
    /// has it; by `name@version` that version; by `name` the highest version of
    /// that name ([`highest`]).
    pub fn resolve<'a>(
        &self,
        manifests: impl IntoIterator<Item = &'a ImageManifest>,
    ) -> Option<&'a ImageManifest> {
        highest(manifests.into_iter().filter(|m| self.matches(m)))
    }

    /// Whether this reference names the image of `manifest` (a name without a
    /// version matches every version; choosing the newest is the caller's).
    pub fn matches(&self, manifest: &ImageManifest) -> bool {
        match self {
            ImageRef::Uuid(uuid) => *uuid == manifest.uuid,
            ImageRef::Sha256(digest) => *digest == manifest.sha256,
            ImageRef::Name { name, version } => {
                *name == manifest.name && version.as_ref().is_none_or(|v| *v == manifest.version)
            }
        }
    }
}

impl From<ImageManifest> for pb::ImageManifest {
    fn from(m: ImageManifest) -> Self {
        pb::ImageManifest {
            uuid: m.uuid.to_text(),
            name: m.name,
            version: m.version,
            sha256: m.sha256.to_string(),
            size_bytes: m.size,
            // 0 is "no minimum" on the wire; a present minimum is at least 16 MiB.
            min_ram_mib: m.min_ram.unwrap_or(0),
            description: m.description,
            halt_signal: m.halt_signal.map(|s| s.to_text()),
        }
    }
}

impl TryFrom<pb::ImageManifest> for ImageManifest {
    type Error = SpecError;

    fn try_from(m: pb::ImageManifest) -> Result<Self, SpecError> {
        let mut p = Problems::default();
        let uuid = p.take("uuid", Uuid::parse_text(&m.uuid));
        let sha256 = p.take("sha256", Sha256Digest::parse(&m.sha256));
        let halt_signal = m
            .halt_signal
            .and_then(|s| p.take("halt_signal", Signal::parse(&s)));
        p.finish()?;
        Ok(ImageManifest {
            uuid: uuid.expect("no problem means a uuid"),
            name: m.name,
            version: m.version,
            sha256: sha256.expect("no problem means a digest"),
            size: m.size_bytes,
            min_ram: (m.min_ram_mib != 0).then_some(m.min_ram_mib),
            description: m.description,
            halt_signal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn default_names() {
        assert_eq!(default_name(Path::new("/x/busybox.tar.gz")), "busybox");
        assert_eq!(default_name(Path::new("web-1.2.tar.zst")), "web-1.2");
        assert_eq!(default_name(Path::new("a.tgz")), "a");
        assert_eq!(default_name(Path::new("a.tar")), "a");
        assert_eq!(default_name(Path::new("a.img")), "a");
        assert_eq!(default_name(Path::new("rootfs")), "rootfs");
    }

    const JSON: &str = r#"{
  "uuid": "5e1a7f9c-3b2d-4c8e-9f10-2a3b4c5d6e7f",
  "name": "base-64",
  "version": "24.4.0",
  "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
  "size": 157286400,
  "min_ram": 128,
  "description": "Minimal base image",
  "halt_signal": "SIGRTMIN+3"
}"#;

    fn manifest() -> ImageManifest {
        ImageManifest::from_json(JSON).unwrap()
    }

    #[test]
    fn reads_validates_and_writes_back() {
        let m = manifest();
        m.validate().unwrap();
        assert_eq!(m.to_json_pretty(), JSON);
        let back = ImageManifest::try_from(pb::ImageManifest::from(m.clone())).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn reports_every_problem() {
        let mut m = manifest();
        m.uuid = Uuid::nil();
        m.name = "base 64".into();
        m.version = "-1".into();
        m.size = 0;
        m.min_ram = Some(8);
        m.description = "x".repeat(1025);
        assert_eq!(
            m.validate().unwrap_err().messages(),
            [
                "uuid: \"00000000-0000-0000-0000-000000000000\" is the nil UUID; allowed any other UUID",
                "name: \"base 64\" is not an image name; allowed 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit",
                "version: \"-1\" is not an image version; allowed 1 to 128 letters, digits, '.', '_', '-', '+' or '~', starting with a letter or digit",
                "size: 0 is out of range; allowed 1..=1099511627776 (bytes)",
                "min_ram: 8 is out of range; allowed 16..=16777216 (MiB)",
                "description: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"... (1025 chars) is too long; allowed at most 1024 characters",
            ]
        );
    }

    #[test]
    fn refuses_uppercase_digest_when_read() {
        let upper = JSON.replace("9f86d081", "9F86D081");
        assert_eq!(
            ImageManifest::from_json(&upper).unwrap_err().to_string(),
            "sha256: \"9F86D081884c7d659a2feaa0c55ad015a3bf4f1b\"... (64 chars) is not a sha256 digest; allowed 64 lowercase hex digits"
        );
    }

    #[test]
    fn pb_errors_name_fields() {
        let bad = pb::ImageManifest {
            uuid: "x".into(),
            sha256: "y".into(),
            halt_signal: Some("9".into()),
            ..pb::ImageManifest::default()
        };
        assert_eq!(
            ImageManifest::try_from(bad)
                .unwrap_err()
                .to_string()
                .lines()
                .map(|l| l.split(';').next().unwrap_or(l))
                .collect::<Vec<_>>(),
            [
                "uuid: \"x\" is not a UUID",
                "sha256: \"y\" is not a sha256 digest",
                "halt_signal: \"9\" is a signal number (numbers differ between architectures)",
            ]
        );
        let err = ImageManifest::try_from(pb::ImageManifest {
            halt_signal: Some("SIGKILL".into()),
            ..pb::ImageManifest::from(manifest())
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("halt_signal: \"SIGKILL\" cannot be caught"),
            "{err}"
        );
        // A manifest of an older agent (no halt_signal) still reads.
        let old = JSON.replace(",\n  \"halt_signal\": \"SIGRTMIN+3\"", "");
        assert_eq!(ImageManifest::from_json(&old).unwrap().halt_signal, None);
    }

    #[test]
    fn references_match_manifests() {
        let m = manifest();
        for s in [
            "5e1a7f9c-3b2d-4c8e-9f10-2a3b4c5d6e7f",
            "base-64",
            "base-64@24.4.0",
        ] {
            assert!(s.parse::<ImageRef>().unwrap().matches(&m), "{s}");
        }
        assert!(format!("sha256:{}", m.sha256)
            .parse::<ImageRef>()
            .unwrap()
            .matches(&m));
        assert!(!"base-64@24.4.1".parse::<ImageRef>().unwrap().matches(&m));
        assert!(!"other".parse::<ImageRef>().unwrap().matches(&m));
    }

    #[test]
    fn a_name_resolves_to_its_highest_version() {
        let with = |uuid: &str, version: &str| ImageManifest {
            uuid: uuid.parse().unwrap(),
            version: version.into(),
            ..manifest()
        };
        let images = [
            with("00000000-0000-0000-0000-000000000003", "1.10"),
            with("00000000-0000-0000-0000-000000000001", "1.9"),
            with("00000000-0000-0000-0000-000000000002", "1.10.0"),
        ];
        let pick = |r: &str| {
            r.parse::<ImageRef>()
                .unwrap()
                .resolve(&images)
                .map(|m| m.uuid.to_string())
        };
        // 1.10 and 1.10.0 compare equal: the last given wins.
        assert_eq!(
            pick("base-64").unwrap(),
            "00000000-0000-0000-0000-000000000002"
        );
        assert_eq!(
            pick("base-64@1.9").unwrap(),
            "00000000-0000-0000-0000-000000000001"
        );
        assert_eq!(pick("base-64@2"), None);
    }
}
