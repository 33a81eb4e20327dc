//! The one error type of the image store, with the reasons an archive entry is refused.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::limits::SizeLimit;

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
    /// An extended attribute name that is empty, has no namespace, holds a NUL
    /// byte or is longer than the kernel takes.
    BadXattrName(String),
    /// An extended attribute that is never imported (see `xattr.rs`), and why.
    XattrNotImported {
        /// The attribute.
        name: String,
        /// Why it is not imported.
        why: &'static str,
    },
    /// An extended attribute value larger than the kernel takes (64 KiB).
    XattrTooLarge {
        /// The attribute.
        name: String,
        /// The value's size.
        size: usize,
    },
    /// A pax or GNU extension header that cannot be read.
    BadExtendedHeader(String),
    /// The `tar` parser read this field of the entry otherwise than its pax
    /// records say: a header built to be read two ways.
    AmbiguousHeader(&'static str),
    /// A sparse file whose map is malformed.
    BadSparse(String),
    /// A sparse format the store does not read.
    UnsupportedSparse(String),
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
            Refusal::BadXattrName(n) => write!(
                f,
                "extended attribute name {n:?} is not a valid name (namespace.name, at most 255 bytes, no NUL)"
            ),
            Refusal::XattrNotImported { name, why } => {
                write!(f, "extended attribute {name:?} is not imported: {why}")
            }
            Refusal::XattrTooLarge { name, size } => write!(
                f,
                "extended attribute {name:?} has a {size}-byte value (at most 65536)"
            ),
            Refusal::BadExtendedHeader(d) => write!(f, "bad extension header: {d}"),
            Refusal::AmbiguousHeader(field) => write!(
                f,
                "its {field} reads differently by the pax records and by the tar parser (a header built to be read two ways)"
            ),
            Refusal::BadSparse(d) => write!(f, "bad sparse file map: {d}"),
            Refusal::UnsupportedSparse(d) => write!(
                f,
                "{d} is not supported (GNU tar's old format and pax 0.0, 0.1 and 1.0 are)"
            ),
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
    /// An extended attribute could not be set on the unpacked file (most often:
    /// the store's file system does not support that namespace).
    #[error(
        "archive entry {entry:?}: cannot set extended attribute {attribute:?}: {source}{}",
        unsupported_hint(source)
    )]
    Xattr {
        /// The entry's path in the archive.
        entry: String,
        /// The attribute.
        attribute: String,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// The archive unpacks to more than the unpacked-size limit.
    #[error("archive exceeds the unpacked-size limit of {limit}: {unpacked} bytes unpacked before entry {entry:?}, which adds {adds} bytes")]
    UnpackedTooLarge {
        /// The limit and how it was reached.
        limit: SizeLimit,
        /// Bytes unpacked (counted) before the entry.
        unpacked: u64,
        /// What the entry would add (a file's size, holes included).
        adds: u64,
        /// The entry that would pass the limit.
        entry: String,
    },
    /// The decompressed tar stream is larger than the unpacked-size limit.
    #[error(
        "archive exceeds the unpacked-size limit of {limit}: more than that decompressed ({at})"
    )]
    DecompressedTooLarge {
        /// The limit and how it was reached.
        limit: SizeLimit,
        /// Where the stream passed it.
        at: EntryPos,
    },
    /// The archive has more entries than the entry limit.
    #[error("archive has more than {limit} entries, the entry limit (refused at entry {entry:?})")]
    TooManyEntries {
        /// The entry limit.
        limit: u64,
        /// The first entry past it.
        entry: String,
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

/// The hint an `EOPNOTSUPP` from setting an attribute deserves.
fn unsupported_hint(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()) {
        " (the image store's file system does not support this attribute)"
    } else {
        ""
    }
}

/// The image store's result type.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
