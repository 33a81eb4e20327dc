//! Image blobs: the archives behind the fleet's image manifests, kept on every
//! controller's disk beside (not in) the Raft log, content-addressed by sha256.
//!
//! * [`store`]: the on-disk store (`<data_dir>/blobs/sha256/<hex>`); a blob is written
//!   to a temporary file, checked (size, sha256, archive format), fsynced and renamed,
//!   so a partial or refused upload is never visible and leaves nothing behind;
//! * [`upload`]: an operator's `ImportImage` stream, checked into the store;
//! * [`peers`]: copying a blob to the other controllers (`Raft.PutBlob`) and
//!   fetching one from them (`Raft.GetBlob`), and serving both;
//! * [`sync`]: the background loop that fetches the blobs of committed manifests a
//!   controller lacks (a new or restarted controller catches up) and removes the
//!   blobs of deleted images.
//!
//! See docs/images.md ("Through the controllers").

pub mod peers;
pub mod store;
pub mod sync;
pub mod upload;

use std::time::Duration;

pub use store::{BlobError, BlobStore, BlobWriter};

/// The largest image a controller takes by default: 8 GiB.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 8 << 30;

/// The bytes of one message of a blob stream (to agents, between controllers).
pub const CHUNK_BYTES: usize = 1 << 20;

/// A controller's image settings (`[images]` in controller.toml).
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// The largest archive an upload may be, in bytes.
    pub max_bytes: u64,
    /// How often the sync loop looks for missing and orphaned blobs.
    pub sync_interval: Duration,
    /// How old a blob that no manifest names must be before the sync loop removes it
    /// (an upload's blob reaches the peers before its manifest commits).
    pub orphan_grace: Duration,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            max_bytes: DEFAULT_MAX_IMAGE_BYTES,
            sync_interval: Duration::from_secs(2),
            orphan_grace: Duration::from_secs(600),
        }
    }
}
