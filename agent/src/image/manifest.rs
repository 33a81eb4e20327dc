//! What the store records about an image (`manifest.json`) and what an import asks for.
//!
//! `ImageRecord` carries the same fields as the fleet-wide manifest type in
//! `zonefleet-proto`, so converting between the two is a field-by-field copy.

use std::path::Path;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{ImageError, Result};

/// An image as stored on this host: the manifest kept in `<sha256>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image's identity (given at import or generated).
    pub uuid: Uuid,
    /// The image name (`busybox`).
    pub name: String,
    /// The image version (`1.36.1`; `0` when none was given).
    pub version: String,
    /// Lowercase hex sha256 of the archive's bytes, as imported.
    pub sha256: String,
    /// Size of the archive in bytes.
    pub size: u64,
    /// Minimum RAM a zone of this image needs, in MiB (0: no minimum).
    #[serde(default)]
    pub min_ram_mib: u64,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// What an import asks for. Everything is optional.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The image name; defaults to the archive file's name without its
    /// `.tar`/`.tar.gz`/`.tgz`/`.tar.zst`/`.tzst` extension.
    pub name: Option<String>,
    /// The image version; defaults to `0`.
    pub version: Option<String>,
    /// When given, the archive's sha256 must be this one (hex, any case), or the
    /// import is refused before anything is unpacked.
    pub expected_sha256: Option<String>,
    /// Minimum RAM in MiB.
    pub min_ram_mib: u64,
    /// Free text.
    pub description: String,
    /// The image uuid, when the fleet already assigned one; generated otherwise.
    pub uuid: Option<Uuid>,
}

/// Longest name or version accepted.
const MAX_LEN: usize = 128;

/// Checks an image name: 1 to 128 of `[A-Za-z0-9._-]`, starting with a letter or digit.
/// `@` and `:` are excluded because references use them as separators.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ImageError::InvalidField {
            field: "name",
            value: name.to_string(),
            reason: "1 to 128 of [A-Za-z0-9._-], starting with a letter or digit",
        })
    }
}

/// Checks an image version: 1 to 128 of `[A-Za-z0-9._+~-]`, starting with a letter or digit.
pub fn validate_version(version: &str) -> Result<()> {
    let ok = !version.is_empty()
        && version.len() <= MAX_LEN
        && version.as_bytes()[0].is_ascii_alphanumeric()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(ImageError::InvalidField {
            field: "version",
            value: version.to_string(),
            reason: "1 to 128 of [A-Za-z0-9._+~-], starting with a letter or digit",
        })
    }
}

/// Normalises a sha256 given by a caller to 64 lowercase hex digits.
pub fn normalize_sha256(sha: &str) -> Result<String> {
    let hex = sha
        .strip_prefix("sha256:")
        .unwrap_or(sha)
        .to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(ImageError::InvalidField {
            field: "sha256",
            value: sha.to_string(),
            reason: "64 hex digits, optionally prefixed by `sha256:`",
        })
    }
}

/// The default image name for an archive file: its file name without the archive
/// extensions (`busybox.tar.gz` → `busybox`).
pub fn default_name(archive: &Path) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names() {
        assert_eq!(default_name(Path::new("/x/busybox.tar.gz")), "busybox");
        assert_eq!(default_name(Path::new("web-1.2.tar.zst")), "web-1.2");
        assert_eq!(default_name(Path::new("a.tgz")), "a");
        assert_eq!(default_name(Path::new("a.tar")), "a");
        assert_eq!(default_name(Path::new("a.img")), "a");
        assert_eq!(default_name(Path::new("rootfs")), "rootfs");
    }

    #[test]
    fn names_and_versions() {
        assert!(validate_name("busybox").is_ok());
        assert!(validate_name("base-64.lts_2").is_ok());
        for bad in ["", "-x", "a@b", "a:b", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_version("1.2.3-rc.1+build~x").is_ok());
        for bad in ["", ".1", "1@2", "1/2"] {
            assert!(validate_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sha256_normalised() {
        let hex = "AB".repeat(32);
        assert_eq!(normalize_sha256(&hex).unwrap(), "ab".repeat(32));
        assert_eq!(
            normalize_sha256(&format!("sha256:{hex}")).unwrap(),
            "ab".repeat(32)
        );
        assert!(normalize_sha256("abc").is_err());
        assert!(normalize_sha256(&"g".repeat(64)).is_err());
    }

    #[test]
    fn record_json_roundtrip() {
        let r = ImageRecord {
            uuid: Uuid::nil(),
            name: "busybox".into(),
            version: "1".into(),
            sha256: "0".repeat(64),
            size: 3,
            min_ram_mib: 64,
            description: "d".into(),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ImageRecord>(&json).unwrap(), r);
    }
}
