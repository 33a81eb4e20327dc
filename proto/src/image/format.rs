//! Which archive format an image is, told from its first bytes: the one rule for the
//! agent's image store (before it unpacks) and the controllers (when an image is
//! uploaded, so an archive no host could unpack is refused at the edge).

/// The container formats an image archive may have: a tar, maybe compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An uncompressed tar (ustar, GNU, pax or v7).
    Tar,
    /// A gzip-compressed tar (one or more gzip members).
    Gzip,
    /// A zstd-compressed tar.
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";
/// The bytes [`detect_format`] needs to tell a plain tar: one tar block.
pub const TAR_BLOCK: usize = 512;

/// Tells the format of an archive from its first bytes (up to 512). The file name
/// is never consulted: images arrive under any name. `Err` says what was seen.
pub fn detect_format(head: &[u8]) -> Result<ArchiveFormat, String> {
    if head.starts_with(GZIP_MAGIC) {
        return Ok(ArchiveFormat::Gzip);
    }
    if head.starts_with(ZSTD_MAGIC) {
        return Ok(ArchiveFormat::Zstd);
    }
    if head.starts_with(XZ_MAGIC) {
        return Err("xz compression is not supported (use gzip or zstd)".into());
    }
    if head.starts_with(BZIP2_MAGIC) {
        return Err("bzip2 compression is not supported (use gzip or zstd)".into());
    }
    if head.is_empty() {
        return Err("the file is empty".into());
    }
    if head.len() < TAR_BLOCK {
        return Err(format!(
            "{} bytes, shorter than one tar header and no known compression magic",
            head.len()
        ));
    }
    let block = &head[..TAR_BLOCK];
    // ustar (POSIX `ustar\0`) and GNU (`ustar  \0`) both start with `ustar` at 257.
    if &block[257..262] == b"ustar" || tar_checksum_ok(block) {
        Ok(ArchiveFormat::Tar)
    } else {
        Err("no tar header and no known compression magic".into())
    }
}

/// Whether a 512-byte block is a tar header with a valid checksum (old v7 archives
/// carry no magic, so the checksum is the only sign).
fn tar_checksum_ok(block: &[u8]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .skip_while(|b| **b == b' ')
        .map(|b| char::from(*b))
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block[..148]
        .iter()
        .chain(&block[156..])
        .map(|b| u32::from(*b))
        .sum::<u32>()
        + 8 * u32::from(b' ');
    sum == stored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_block(magic: bool) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.set_path("a").unwrap();
        header.set_size(0);
        header.set_cksum();
        let mut block = header.as_bytes().to_vec();
        if !magic {
            // A v7 header: no magic, the checksum alone identifies it.
            block[257..265].fill(0);
            let mut h = tar::Header::from_byte_slice(&block).clone();
            h.set_cksum();
            block = h.as_bytes().to_vec();
        }
        block
    }

    #[test]
    fn detects_by_magic() {
        assert_eq!(detect_format(&[0x1f, 0x8b, 8, 0]), Ok(ArchiveFormat::Gzip));
        assert_eq!(
            detect_format(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Ok(ArchiveFormat::Zstd)
        );
        assert_eq!(detect_format(&tar_block(true)), Ok(ArchiveFormat::Tar));
        assert_eq!(detect_format(&tar_block(false)), Ok(ArchiveFormat::Tar));
    }

    #[test]
    fn refuses_others() {
        assert!(detect_format(b"").unwrap_err().contains("empty"));
        assert!(detect_format(b"\xfd7zXZ\0rest").unwrap_err().contains("xz"));
        assert!(detect_format(b"BZh91AY").unwrap_err().contains("bzip2"));
        assert!(detect_format(&[0x55; 600]).is_err());
        assert!(detect_format(&[0; 512]).is_err());
        let mut bad = tar_block(false);
        bad[0] ^= 1;
        assert!(detect_format(&bad).is_err());
    }
}
