//! How much an archive may unpack to: the defence against decompression bombs (a few
//! KiB of zstd that expand to GiBs, a tar that declares a huge sparse file, millions of
//! empty files). See docs/images.md, "Limits".

use std::fmt;

/// The default unpacked bytes allowed per byte of archive (see [`UnpackLimits::ratio`]).
pub const DEFAULT_RATIO: u64 = 20;
/// The default floor of the byte limit, in MiB (see [`UnpackLimits::floor_bytes`]).
pub const DEFAULT_FLOOR_MIB: u64 = 256;
/// The default entry limit (see [`UnpackLimits::max_entries`]).
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;

const MIB: u64 = 1 << 20;

/// The limits of one import. The byte limit scales with the archive: an honest
/// root filesystem compresses 2–5× with gzip or zstd, so 20× leaves room for
/// sparse and zero-filled files, while a bomb (a ratio in the thousands) is refused
/// long before it fills the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Unpacked bytes allowed per byte of the archive file as given (compressed). `0`
    /// with a `floor_bytes` makes the limit a fixed cap.
    pub ratio: u64,
    /// The byte limit is never below this, so a small archive is not refused for an
    /// honest large sparse or zero-filled file.
    pub floor_bytes: u64,
    /// Entries (files, directories, links, each hard link) an archive may hold: an
    /// archive of millions of empty files is a bomb of inodes rather than bytes.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            ratio: DEFAULT_RATIO,
            floor_bytes: DEFAULT_FLOOR_MIB * MIB,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

impl UnpackLimits {
    /// The byte limit for an archive of `archive_bytes`.
    pub fn for_archive(&self, archive_bytes: u64) -> SizeLimit {
        SizeLimit {
            bytes: self
                .ratio
                .saturating_mul(archive_bytes)
                .max(self.floor_bytes),
            ratio: self.ratio,
            floor_bytes: self.floor_bytes,
            archive_bytes,
        }
    }
}

/// The byte limit of one import, with how it was reached (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimit {
    /// The limit, in bytes.
    pub bytes: u64,
    /// The ratio it came from.
    pub ratio: u64,
    /// The floor it came from.
    pub floor_bytes: u64,
    /// The archive's size.
    pub archive_bytes: u64,
}

impl fmt::Display for SizeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes ({}: {} × the archive's {} bytes, at least {})",
            self.bytes,
            Bytes(self.bytes),
            self.ratio,
            self.archive_bytes,
            Bytes(self.floor_bytes)
        )
    }
}

/// A byte count shown for people: `100 bytes` below 1 KiB, else `256.0 MiB`.
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return write!(f, "{} bytes", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

/// What an import has unpacked so far, against its limits.
#[derive(Debug)]
pub(crate) struct Budget {
    /// The byte limit.
    pub limit: SizeLimit,
    /// Bytes counted so far: files' apparent sizes (holes included), symlink
    /// targets, extended attribute names and values.
    pub unpacked: u64,
}

impl Budget {
    /// A budget for an archive of `archive_bytes`.
    pub fn new(limits: &UnpackLimits, archive_bytes: u64) -> Budget {
        Budget {
            limit: limits.for_archive(archive_bytes),
            unpacked: 0,
        }
    }

    /// Counts `adds` more bytes, or says by how much the limit would be passed
    /// (nothing is counted then).
    pub fn take(&mut self, adds: u64) -> Result<(), (u64, u64)> {
        match self.unpacked.checked_add(adds) {
            Some(total) if total <= self.limit.bytes => {
                self.unpacked = total;
                Ok(())
            }
            _ => Err((self.unpacked, adds)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_scales_with_the_archive_above_a_floor() {
        let l = UnpackLimits::default();
        assert_eq!(l.for_archive(4096).bytes, 256 * MIB, "the floor");
        assert_eq!(l.for_archive(100 * MIB).bytes, 2000 * MIB, "20×");
        assert_eq!(l.for_archive(u64::MAX).bytes, u64::MAX, "saturates");
        let fixed = UnpackLimits {
            ratio: 0,
            floor_bytes: MIB,
            max_entries: 1,
        };
        assert_eq!(fixed.for_archive(100 * MIB).bytes, MIB, "a fixed cap");
        assert_eq!(
            l.for_archive(4096).to_string(),
            "268435456 bytes (256.0 MiB: 20 × the archive's 4096 bytes, at least 256.0 MiB)"
        );
    }

    #[test]
    fn a_budget_refuses_what_passes_the_limit() {
        let mut b = Budget::new(
            &UnpackLimits {
                ratio: 0,
                floor_bytes: 10,
                max_entries: 1,
            },
            1,
        );
        assert!(b.take(6).is_ok());
        assert_eq!(b.take(5), Err((6, 5)));
        assert!(b.take(4).is_ok());
        assert_eq!(b.take(u64::MAX), Err((10, u64::MAX)));
    }
}
