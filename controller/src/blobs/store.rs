//! The on-disk blob store of one controller:
//!
//! ```text
//! <data_dir>/blobs/sha256/<hex>     a complete, checked archive (never changed)
//! <data_dir>/blobs/tmp/<random>     one being received (removed at start-up)
//! ```
//!
//! A [`BlobWriter`] writes into `tmp/`, counting and hashing; [`BlobWriter::finish`]
//! checks the size, the sha256 and the archive format (the fleet's one rule,
//! `zonefleet_proto::image::detect_format`), fsyncs the file, renames it into
//! `sha256/` and fsyncs the directory. A writer dropped unfinished (a refused, broken
//! or truncated stream) removes its file: nothing half-made is ever visible.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use zonefleet_proto::image::{detect_format, TAR_BLOCK};

/// Errors of the blob store. The messages name what was wrong, for the uploader.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A sha256 that is not 64 lowercase hex digits.
    #[error("sha256 {0:?}: not 64 hex digits")]
    BadDigest(String),
    /// More bytes than announced.
    #[error("the upload is longer than its announced size ({size} bytes)")]
    TooLong {
        /// The announced size.
        size: u64,
    },
    /// The stream ended before the announced size.
    #[error("the upload is truncated: it ended after {got} of {size} bytes")]
    Truncated {
        /// Bytes received.
        got: u64,
        /// The announced size.
        size: u64,
    },
    /// The bytes do not hash to the announced sha256.
    #[error("the upload's sha256 is {got}, not the announced {want}: the archive changed or was damaged on the way")]
    ShaMismatch {
        /// What was announced.
        want: String,
        /// What the bytes hash to.
        got: String,
    },
    /// Not an archive any host can unpack.
    #[error("not an image archive: {0}")]
    Format(String),
    /// The blob is not in the store.
    #[error("no blob sha256:{0} on this controller")]
    Missing(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl BlobError {
    fn io(path: &Path, source: io::Error) -> BlobError {
        BlobError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// The gRPC status this error answers a call with.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            BlobError::Io { .. } => tonic::Status::internal(self.to_string()),
            BlobError::Missing(_) => tonic::Status::unavailable(self.to_string()),
            _ => tonic::Status::invalid_argument(self.to_string()),
        }
    }
}

/// Checks a sha256 written as 64 lowercase hex digits.
pub fn check_digest(sha256: &str) -> Result<(), BlobError> {
    if sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(BlobError::BadDigest(sha256.to_owned()))
    }
}

/// One controller's blob store (cheap to clone).
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    /// Blobs an upload in progress holds (not removed as orphans meanwhile).
    pinned: Arc<Mutex<HashSet<String>>>,
}

impl BlobStore {
    /// Opens (creating) the store under `data_dir`, removing what an interrupted
    /// write left in `tmp/`.
    pub fn open(data_dir: &Path) -> Result<BlobStore, BlobError> {
        let root = data_dir.join("blobs");
        for dir in [root.join("sha256"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(|e| BlobError::io(&dir, e))?;
        }
        let tmp = root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(|e| BlobError::io(&tmp, e))? {
            let entry = entry.map_err(|e| BlobError::io(&tmp, e))?;
            let _ = fs::remove_file(entry.path());
        }
        Ok(BlobStore {
            root,
            pinned: Arc::default(),
        })
    }

    /// Where blob `sha256` is (whether or not it is there).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// The size of blob `sha256`, if the store holds it.
    pub fn size(&self, sha256: &str) -> Option<u64> {
        check_digest(sha256).ok()?;
        fs::metadata(self.path(sha256)).ok().map(|m| m.len())
    }

    /// Every blob held: its sha256 and when it was written.
    pub fn list(&self) -> Result<Vec<(String, SystemTime)>, BlobError> {
        let dir = self.root.join("sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| BlobError::io(&dir, e))? {
            let entry = entry.map_err(|e| BlobError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_digest(&name).is_err() {
                continue;
            }
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((name, modified));
        }
        out.sort();
        Ok(out)
    }

    /// Removes blob `sha256`; whether it was there.
    pub fn remove(&self, sha256: &str) -> Result<bool, BlobError> {
        check_digest(sha256)?;
        let path = self.path(sha256);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BlobError::io(&path, e)),
        }
    }

    /// Keeps blob `sha256` from being removed as an orphan until the guard drops.
    pub fn pin(&self, sha256: &str) -> Pin {
        self.pinned.lock().expect("lock").insert(sha256.to_owned());
        Pin {
            pinned: self.pinned.clone(),
            sha256: sha256.to_owned(),
        }
    }

    /// Whether an upload holds blob `sha256` now.
    pub fn is_pinned(&self, sha256: &str) -> bool {
        self.pinned.lock().expect("lock").contains(sha256)
    }

    /// A writer of blob `sha256`, `size` bytes long.
    pub fn writer(&self, sha256: &str, size: u64) -> Result<BlobWriter, BlobError> {
        check_digest(sha256)?;
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{sha256}.{}", uuid::Uuid::new_v4().simple()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| BlobError::io(&tmp, e))?;
        Ok(BlobWriter {
            tmp,
            dest: self.path(sha256),
            file: Some(file),
            hasher: Sha256::new(),
            head: Vec::with_capacity(TAR_BLOCK),
            written: 0,
            size,
            sha256: sha256.to_owned(),
            done: false,
        })
    }
}

/// Held while an upload owns a blob (see [`BlobStore::pin`]).
#[derive(Debug)]
pub struct Pin {
    pinned: Arc<Mutex<HashSet<String>>>,
    sha256: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.pinned.lock().expect("lock").remove(&self.sha256);
    }
}

/// A blob being written (see the module doc).
#[derive(Debug)]
pub struct BlobWriter {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    head: Vec<u8>,
    written: u64,
    size: u64,
    sha256: String,
    done: bool,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `data`: refused when it would pass the announced size, or when the
    /// first block already shows a format no host unpacks.
    pub fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        if self.written + data.len() as u64 > self.size {
            return Err(BlobError::TooLong { size: self.size });
        }
        if self.head.len() < TAR_BLOCK {
            let take = (TAR_BLOCK - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            if self.head.len() == TAR_BLOCK {
                detect_format(&self.head).map_err(BlobError::Format)?;
            }
        }
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(data)
            .map_err(|e| BlobError::io(&self.tmp, e))?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Checks size, sha256 and format, then makes the blob visible (fsync, rename,
    /// fsync of the directory). Blocking: call from a blocking thread.
    pub fn finish(mut self) -> Result<PathBuf, BlobError> {
        if self.written < self.size {
            return Err(BlobError::Truncated {
                got: self.written,
                size: self.size,
            });
        }
        let got = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if got != self.sha256 {
            return Err(BlobError::ShaMismatch {
                want: self.sha256.clone(),
                got,
            });
        }
        detect_format(&self.head).map_err(BlobError::Format)?;
        let file = self.file.take().expect("open until finished");
        file.sync_all().map_err(|e| BlobError::io(&self.tmp, e))?;
        drop(file);
        fs::rename(&self.tmp, &self.dest).map_err(|e| BlobError::io(&self.dest, e))?;
        self.done = true;
        let dir = self.dest.parent().expect("a blob has a directory");
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| BlobError::io(dir, e))?;
        Ok(self.dest.clone())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.done {
            self.file.take();
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        // A gzip header is enough for the format check.
        let mut out = vec![0x1f, 0x8b, 8, 0];
        out.extend_from_slice(bytes);
        out
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["sha256", "tmp"] {
            for e in fs::read_dir(dir.join("blobs").join(sub)).unwrap() {
                out.push(format!(
                    "{sub}/{}",
                    e.unwrap().file_name().to_string_lossy()
                ));
            }
        }
        out
    }

    #[test]
    fn a_checked_blob_becomes_visible_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data = gz(&[7u8; 3000]);
        let digest = sha(&data);
        let mut w = store.writer(&digest, data.len() as u64).unwrap();
        for chunk in data.chunks(1000) {
            w.write(chunk).unwrap();
            assert_eq!(store.size(&digest), None, "visible before it is complete");
        }
        w.finish().unwrap();
        assert_eq!(store.size(&digest), Some(data.len() as u64));
        assert_eq!(fs::read(store.path(&digest)).unwrap(), data);
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(store.remove(&digest).unwrap());
        assert!(!store.remove(&digest).unwrap());
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn refused_writes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data = gz(&[1u8; 2000]);
        let digest = sha(&data);
        let size = data.len() as u64;

        // Longer than announced.
        let mut w = store.writer(&digest, size - 1).unwrap();
        let e = w.write(&data).unwrap_err();
        assert!(
            e.to_string().contains("longer than its announced size"),
            "{e}"
        );
        drop(w);
        // Truncated.
        let mut w = store.writer(&digest, size).unwrap();
        w.write(&data[..500]).unwrap();
        let e = w.finish().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("the upload is truncated: it ended after 500 of {size} bytes")
        );
        // Another sha256.
        let mut w = store.writer(&"0".repeat(64), size).unwrap();
        w.write(&data).unwrap();
        let e = w.finish().unwrap_err();
        assert!(
            e.to_string().contains(&format!("sha256 is {digest}")),
            "{e}"
        );
        // Not an archive (xz), found at the first block.
        let xz = [b"\xfd7zXZ\0".as_slice(), &[0u8; 600]].concat();
        let mut w = store.writer(&sha(&xz), xz.len() as u64).unwrap();
        let e = w.write(&xz).unwrap_err();
        assert!(
            e.to_string().contains("xz compression is not supported"),
            "{e}"
        );
        drop(w);
        // Shorter than a block: found at finish.
        let junk = b"hello".to_vec();
        let mut w = store.writer(&sha(&junk), 5).unwrap();
        w.write(&junk).unwrap();
        assert!(matches!(w.finish(), Err(BlobError::Format(_))));
        // A bad digest is refused before anything is made.
        assert!(matches!(
            store.writer("ABC", 1),
            Err(BlobError::BadDigest(_))
        ));
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
    }

    #[test]
    fn opening_removes_what_a_crash_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let w = store.writer(&"a".repeat(64), 10).unwrap();
        std::mem::forget(w);
        assert_eq!(leftovers(dir.path()).len(), 1);
        BlobStore::open(dir.path()).unwrap();
        assert!(leftovers(dir.path()).is_empty());
    }
}
