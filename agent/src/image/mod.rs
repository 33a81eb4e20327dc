//! The host's image store: content-addressed root filesystem layers.
//!
//! An image is a root filesystem tarball (tar, tar.gz or tar.zst, told apart by
//! magic bytes) with a manifest. Each is unpacked once per host under
//! `<data>/images/<sha256>/rootfs/`, next to its `manifest.json`, and shared
//! read-only by every zone that uses it (as an overlayfs lower layer). The archive
//! is untrusted: `unpack.rs` says what is refused and why, `limits.rs` how much an
//! archive may unpack to.

mod archive;
mod error;
mod limits;
mod manifest;
mod pax;
mod sparse;
mod store;
mod stream;
mod unpack;
mod xattr;

pub use archive::{detect_format, ArchiveFormat};
pub use error::{EntryPos, ImageError, Refusal, Result};
pub use limits::{SizeLimit, UnpackLimits, DEFAULT_FLOOR_MIB, DEFAULT_MAX_ENTRIES, DEFAULT_RATIO};
pub use manifest::{
    default_name, normalize_sha256, validate_name, validate_version, ImportOptions,
};
pub use store::{DiskUsage, ImageStore};
