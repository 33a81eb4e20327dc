//! What an import asks for, and the checks of what it gives. The store records each
//! image as the fleet's one manifest type, [`zonefleet_proto::image::ImageManifest`]
//! (`manifest.json`).

use uuid::Uuid;
use zonefleet_proto::image;

use super::error::{ImageError, Result};
use super::limits::UnpackLimits;

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
    /// How much the archive may unpack to; `None`: the store's
    /// ([`super::ImageStore::with_limits`], by default [`UnpackLimits::default`]).
    pub limits: Option<UnpackLimits>,
    /// The signal that asks the image's init to shut down (the manifest's
    /// `halt_signal`); absent, zone halts detect it from the image.
    pub halt_signal: Option<zonefleet_proto::spec::Signal>,
}

/// Checks an image name by the fleet's one naming rule
/// ([`zonefleet_proto::image::check_name`]).
pub fn validate_name(name: &str) -> Result<()> {
    image::check_name(name).map_err(|e| ImageError::Naming(e.at("name")))
}

/// Checks an image version by the fleet's one naming rule
/// ([`zonefleet_proto::image::check_version`]).
pub fn validate_version(version: &str) -> Result<()> {
    image::check_version(version).map_err(|e| ImageError::Naming(e.at("version")))
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

pub use zonefleet_proto::image::default_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_follow_the_fleet_rule() {
        assert!(validate_name("busybox").is_ok());
        assert!(validate_version("1.2.3-rc.1+build~x").is_ok());
        assert_eq!(
            validate_name("a@b").unwrap_err().to_string(),
            "invalid image name: \"a@b\" is not an image name; allowed 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        );
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
}
