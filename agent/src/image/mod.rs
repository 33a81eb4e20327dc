//! The host's image store: content-addressed root filesystem layers.
//!
//! An image is a root filesystem tarball (tar, tar.gz or tar.zst, told apart by
//! magic bytes) with a manifest. Each is unpacked once per host under
//! `<data>/images/<sha256>/rootfs/`, next to its `manifest.json`, and shared
//! read-only by every zone that uses it (as an overlayfs lower layer). The archive
//! is untrusted: `unpack.rs` says what is refused and why.

mod archive;
mod error;
mod manifest;
mod store;
mod unpack;

pub use archive::{detect_format, ArchiveFormat};
pub use error::{EntryPos, ImageError, Refusal, Result};
pub use manifest::{
    default_name, normalize_sha256, validate_name, validate_version, ImportOptions,
};
pub use store::{DiskUsage, ImageStore};
