//! Writing a file so that a reader sees the old or the new contents, never a
//! mix: a temporary file beside it, (fsync,) rename.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What failed.
    #[source]
    pub source: std::io::Error,
}

/// Writes `bytes` to `path` atomically and durably: a temporary file beside it,
/// fsync, rename. For records that must survive a host crash (a zone's record).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_file(path, bytes, true)
}

/// Writes `bytes` to `path` atomically but not durably (no fsync): a reader sees
/// the old or the new contents, never a mix, unless the host itself crashes.
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_file(path, bytes, false)
}

fn write_file(path: &Path, bytes: &[u8], durable: bool) -> Result<(), FileError> {
    let io = |source| FileError {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    if durable {
        file.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)
}
