//! The one error type of the image store, with the reasons an archive entry is refused.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Where in an archive something went wrong, for messages that name the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryPos {
    /// Before the first entry was read (a bad first header, an empty archive).
    Start,
    /// While reading this entry (its header or its contents).
    In(String),
    /// After this entry was complete, while looking for the next header.
    After(String),
}

impl fmt::Display for EntryPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryPos::Start => write!(f, "before the first entry"),
            EntryPos::In(entry) => write!(f, "in entry {entry:?}"),
            EntryPos::After(entry) => write!(f, "after entry {entry:?}"),
        }
    }
}

/// Why an entry of an untrusted archive was refused. Any refusal aborts the whole
/// import: a half-unpacked image is never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The path is absolute (`/etc/passwd`).
    AbsolutePath,
    /// The path has a `..` component (`../escape`, `a/../../escape`).
    ParentComponent,
    /// The path is empty or only `.` components, for an entry that is not a directory.
    EmptyPath,
    /// The path contains a NUL byte.
    NulByte,
    /// A parent component of the path is a symlink (`link -> /` then `link/etc/x`).
    ThroughSymlink(String),
    /// A parent component of the path is not a directory.
    ParentNotDirectory(String),
    /// The entry would replace a directory with a non-directory.
    ReplacesDirectory,
    /// A character device node: a zone never gets physical devices from its image.
    CharDevice,
    /// A block device node.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A hard link whose target is absolute or climbs out with `..`.
    HardLinkOutside(String),
    /// A hard link whose target is not a regular file extracted earlier from this archive.
    HardLinkUnknownTarget(String),
    /// A symlink with an empty target (or a hard link with no target at all).
    EmptyLinkTarget,
    /// A uid or gid that cannot be given to a file (`-1` or beyond 32 bits).
    BadOwner(u64),
    /// An entry type the store does not unpack (the raw type byte).
    UnsupportedType(u8),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::AbsolutePath => write!(f, "absolute path"),
            Refusal::ParentComponent => write!(f, "path has a `..` component"),
            Refusal::EmptyPath => write!(f, "empty path"),
            Refusal::NulByte => write!(f, "path or link target contains a NUL byte"),
            Refusal::ThroughSymlink(c) => {
                write!(
                    f,
                    "path goes through the symlink {c:?} (symlinks are never followed)"
                )
            }
            Refusal::ParentNotDirectory(c) => write!(f, "parent {c:?} is not a directory"),
            Refusal::ReplacesDirectory => write!(f, "would replace a directory"),
            Refusal::CharDevice => write!(f, "character device nodes are not allowed"),
            Refusal::BlockDevice => write!(f, "block device nodes are not allowed"),
            Refusal::Fifo => write!(f, "FIFOs are not allowed"),
            Refusal::HardLinkOutside(t) => {
                write!(f, "hard link target {t:?} is outside the archive")
            }
            Refusal::HardLinkUnknownTarget(t) => write!(
                f,
                "hard link target {t:?} is not a regular file extracted earlier from the archive"
            ),
            Refusal::EmptyLinkTarget => write!(f, "link has an empty target"),
            Refusal::BadOwner(id) => write!(f, "uid/gid {id} is not a valid owner"),
            Refusal::UnsupportedType(t) => {
                write!(f, "unsupported entry type {:?}", char::from(*t))
            }
        }
    }
}

/// Everything the image store can fail with. Messages name the file, entry or
/// reference involved.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A filesystem operation on the store or the archive file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The archive is not a tar, tar.gz or tar.zst (judged by its magic bytes).
    #[error("{}: not a tar, tar.gz or tar.zst archive: {detail}", archive.display())]
    UnknownFormat {
        /// The archive file.
        archive: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// An entry of the archive was refused by the safety checks.
    #[error("archive entry {entry:?} refused: {reason}")]
    Refused {
        /// The entry's path as written in the archive.
        entry: String,
        /// What was wrong with it.
        reason: Refusal,
    },
    /// The archive (or its compressed stream) ends early.
    #[error("archive is truncated ({at})")]
    Truncated {
        /// Where the end came.
        at: EntryPos,
    },
    /// The archive cannot be read (bad header, bad compressed data, I/O error).
    #[error("archive is corrupt ({at}): {source}")]
    Corrupt {
        /// Where the problem was found.
        at: EntryPos,
        /// The decoder's or the filesystem's error.
        #[source]
        source: io::Error,
    },
    /// The archive holds no entry at all.
    #[error("archive has no entries")]
    Empty,
    /// The archive's sha256 is not the one the caller expected.
    #[error("sha256 mismatch: expected {expected}, archive has {actual}")]
    Sha256Mismatch {
        /// The sha256 the caller asked for.
        expected: String,
        /// The sha256 of the archive's bytes.
        actual: String,
    },
    /// The archive file changed while it was being imported.
    #[error("{}: archive changed while it was imported (sha256 {first} then {second})", archive.display())]
    ArchiveChanged {
        /// The archive file.
        archive: PathBuf,
        /// The sha256 of the first read.
        first: String,
        /// The sha256 of the read that was unpacked.
        second: String,
    },
    /// An image name or version breaks the fleet's naming rule.
    #[error("invalid image {0}")]
    Naming(zonefleet_proto::spec::ValidationError),
    /// A manifest field is invalid.
    #[error("invalid image {field} {value:?}: {reason}")]
    InvalidField {
        /// The field (`name`, `version`, `sha256`, …).
        field: &'static str,
        /// The value given.
        value: String,
        /// The allowed form.
        reason: &'static str,
    },
    /// Another image already has this name and version.
    #[error("image {name}@{version} already exists with sha256 {sha256}")]
    VersionExists {
        /// The image name.
        name: String,
        /// The image version.
        version: String,
        /// The sha256 of the existing image.
        sha256: String,
    },
    /// No image matches the reference.
    #[error("no image matches {0:?}")]
    NotFound(String),
    /// More than one image matches the reference (a short sha256 prefix).
    #[error("{reference:?} is ambiguous: matches {}", matches.join(", "))]
    Ambiguous {
        /// The reference given.
        reference: String,
        /// The sha256 of every match.
        matches: Vec<String>,
    },
    /// The image is used by a zone and cannot be deleted.
    #[error("image {name}@{version} (sha256 {sha256}) is in use by a zone")]
    InUse {
        /// The image name.
        name: String,
        /// The image version.
        version: String,
        /// The image sha256.
        sha256: String,
    },
    /// A stored manifest cannot be read.
    #[error("{}: bad manifest: {source}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

impl ImageError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The image store's result type.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
