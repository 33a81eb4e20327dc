//! Reading an untrusted image archive: hashing, decompression, and the drive of the
//! safe unpacker over every entry. Format detection by magic bytes is the fleet's one
//! rule, `zonefleet_proto::image::detect_format` (the controllers check uploads with it).

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::error::{EntryPos, ImageError, Refusal, Result};
use super::limits::{Budget, UnpackLimits};
use super::pax::Extensions;
use super::stream::{StreamState, TarStream};
use super::unpack::{entry_name, Fail, Unpacker};
use zonefleet_proto::image::TAR_BLOCK;
pub use zonefleet_proto::image::{detect_format, ArchiveFormat};

/// A reader that hashes and counts every byte read through it, and notes when its
/// inner reader reported end of file.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    eof: Rc<Cell<bool>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof.set(true);
        }
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Returns the lowercase hex sha256 and the size of a file.
pub(crate) fn hash_file(path: &Path) -> Result<(String, u64)> {
    let file = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let mut reader = HashingReader {
        inner: file,
        hasher: Sha256::new(),
        bytes: 0,
        eof: Rc::default(),
    };
    io::copy(&mut reader, &mut io::sink()).map_err(|e| ImageError::io(path, e))?;
    Ok((hex::encode(reader.hasher.finalize()), reader.bytes))
}

/// What unpacking an archive found.
#[derive(Debug, Clone)]
pub(crate) struct Unpacked {
    /// sha256 of the bytes that were unpacked.
    pub sha256: String,
    /// Size of the archive in bytes.
    pub size: u64,
    /// The archive's format.
    #[allow(dead_code)] // kept for logs and future manifests
    pub format: ArchiveFormat,
    /// Number of entries unpacked.
    pub entries: u64,
}

/// Unpacks the archive at `archive` into the existing empty directory `rootfs`,
/// hashing the very bytes it unpacks, within `limits`. Every entry goes through the
/// [`Unpacker`]'s checks; the first refusal or read error stops the unpack (the
/// caller throws the directory away).
pub(crate) fn unpack(archive: &Path, rootfs: &Path, limits: &UnpackLimits) -> Result<Unpacked> {
    let file = File::open(archive).map_err(|e| ImageError::io(archive, e))?;
    let head = read_head(&file).map_err(|e| ImageError::io(archive, e))?;
    let format = detect_format(&head).map_err(|detail| ImageError::UnknownFormat {
        archive: archive.to_path_buf(),
        detail,
    })?;
    let archive_bytes = file
        .metadata()
        .map_err(|e| ImageError::io(archive, e))?
        .len();
    let budget = Budget::new(limits, archive_bytes);
    let limit = budget.limit;

    // Whether the file, and the tar stream, reached their end of file: an error
    // after either is a truncation, and a tar stream that ends before its end
    // blocks is truncated even though the tar parser stops quietly. The tar
    // stream also counts its bytes against the limit.
    let raw_eof = Rc::new(Cell::new(false));
    let stream = StreamState::new(limit.bytes);
    let mut raw = BufReader::with_capacity(
        256 * 1024,
        HashingReader {
            inner: file,
            hasher: Sha256::new(),
            bytes: 0,
            eof: raw_eof.clone(),
        },
    );
    let classify = |e: io::Error, at: EntryPos| -> ImageError {
        if stream.over.get() {
            ImageError::DecompressedTooLarge { limit, at }
        } else if e.kind() == io::ErrorKind::UnexpectedEof || raw_eof.get() || stream.eof.get() {
            ImageError::Truncated { at }
        } else {
            ImageError::Corrupt { at, source: e }
        }
    };

    let entries = {
        let decoded: Box<dyn Read + '_> = match format {
            ArchiveFormat::Tar => Box::new(&mut raw),
            ArchiveFormat::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(&mut raw)),
            ArchiveFormat::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(&mut raw)
                    .map_err(|e| classify(e, EntryPos::Start))?,
            ),
        };
        let mut tar = tar::Archive::new(TarStream {
            inner: decoded,
            state: stream.clone(),
        });
        let mut unpacker = Unpacker::new(rootfs, budget).map_err(|e| ImageError::io(rootfs, e))?;
        let mut last: Option<String> = None;
        let after = |last: &Option<String>| match last {
            Some(name) => EntryPos::After(name.clone()),
            None => EntryPos::Start,
        };
        let refused =
            |name: &str, fail: Fail, classify: &dyn Fn(io::Error, EntryPos) -> ImageError| {
                match fail {
                    Fail::Refuse(reason) => ImageError::Refused {
                        entry: name.to_owned(),
                        reason,
                    },
                    Fail::Read(e) => classify(e, EntryPos::In(name.to_owned())),
                    Fail::Short => ImageError::Truncated {
                        at: EntryPos::In(name.to_owned()),
                    },
                    Fail::Write(e) => ImageError::io(rootfs.join(name), e),
                    Fail::Xattr(x) => ImageError::Xattr {
                        entry: name.to_owned(),
                        attribute: x.name,
                        source: x.error,
                    },
                    Fail::TooLarge(unpacked, adds) => ImageError::UnpackedTooLarge {
                        limit,
                        unpacked,
                        adds,
                        entry: name.to_owned(),
                    },
                }
            };
        let mut count = 0u64;
        for entry in tar.entries().map_err(|e| classify(e, EntryPos::Start))? {
            let mut entry = entry.map_err(|e| classify(e, after(&last)))?;
            // The bytes since the previous entry's data: its padding, the extension
            // headers the parser consumed, this entry's header.
            let (start, region) = stream.take_recording();
            let skip =
                usize::try_from(start.next_multiple_of(TAR_BLOCK as u64) - start).unwrap_or(0);
            let header_at = entry
                .raw_header_position()
                .checked_sub(start)
                .and_then(|at| usize::try_from(at).ok())
                .and_then(|at| at.checked_sub(skip));
            let ext = match (region.get(skip..), header_at) {
                (Some(region), Some(header_at)) => Extensions::read(region, header_at),
                _ => Err(Refusal::BadExtendedHeader(
                    "extension headers do not line up with the entry".into(),
                )),
            };
            let (name, ext) = match ext {
                Ok(ext) => (
                    String::from_utf8_lossy(&entry_name(&entry, &ext)).into_owned(),
                    ext,
                ),
                Err(reason) => {
                    return Err(ImageError::Refused {
                        entry: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                        reason,
                    })
                }
            };
            count += 1;
            if count > limits.max_entries {
                return Err(ImageError::TooManyEntries {
                    limit: limits.max_entries,
                    entry: name,
                });
            }
            unpacker
                .entry(&mut entry, &ext)
                .map_err(|fail| refused(&name, fail, &classify))?;
            // Whatever the entry's data held beyond what was unpacked (a symlink's,
            // a directory's) is read here, so the recording starts where the next
            // extension headers do.
            io::copy(&mut entry, &mut io::sink())
                .map_err(|e| classify(e, EntryPos::In(name.clone())))?;
            stream.start_recording();
            last = Some(name);
        }
        if stream.eof.get() {
            // The tar stream ended without its two zero blocks.
            return Err(ImageError::Truncated { at: after(&last) });
        }
        if count == 0 {
            return Err(ImageError::Empty);
        }
        unpacker
            .finish()
            .map_err(|(name, fail)| refused(&name, fail, &classify))?;
        // Read the compressed stream to its end: that checks the gzip CRC and
        // length, or the zstd frame, over the bytes after the tar's end blocks too
        // (and counts them against the limit).
        let mut rest = tar.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| classify(e, after(&last)))?;
        count
    };
    io::copy(&mut raw, &mut io::sink()).map_err(|e| ImageError::io(archive, e))?;
    let hashing = raw.into_inner();
    Ok(Unpacked {
        sha256: hex::encode(hashing.hasher.finalize()),
        size: hashing.bytes,
        format,
        entries,
    })
}

/// Reads up to one tar block from the start of the file without moving its offset.
fn read_head(file: &File) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; TAR_BLOCK];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    head.truncate(filled);
    Ok(head)
}
