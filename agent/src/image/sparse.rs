//! Sparse files stay sparse: file data is written around holes, never as zeros.
//!
//! [`HoleWriter`] writes a file's bytes at their offsets and leaves every
//! filesystem-block-sized run of zeros unwritten (a hole), then sets the file's
//! length; that keeps old GNU sparse entries (which the `tar` crate hands over with
//! their holes as zeros) and zero-filled files small on disk. [`PaxSparse`] reads
//! the pax sparse formats GNU tar and libarchive write (`GNU.sparse.*`, versions
//! 0.0, 0.1 and 1.0), whose data holds only the file's data regions; the crate
//! knows nothing of them and would hand over the condensed data under a
//! `GNUSparseFile.<n>/` name.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use super::error::Refusal;

/// The hole granularity: a common filesystem block.
const HOLE: usize = 4096;
static ZEROS: [u8; HOLE] = [0; HOLE];
const BLOCK: u64 = 512;

/// Writes a file's contents at increasing offsets, leaving zero blocks as holes.
pub(crate) struct HoleWriter<'f> {
    file: &'f File,
    pos: u64,
}

impl<'f> HoleWriter<'f> {
    /// A writer at offset 0 of `file` (new and empty).
    pub fn new(file: &'f File) -> HoleWriter<'f> {
        HoleWriter { file, pos: 0 }
    }

    /// The offset the next byte goes to.
    #[cfg(test)]
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Moves to `offset` (not backwards), leaving a hole.
    pub fn seek(&mut self, offset: u64) {
        debug_assert!(offset >= self.pos);
        self.pos = offset;
    }

    /// Writes `data` at the current offset; runs of whole zero blocks (aligned to
    /// the file's offsets) are skipped rather than written.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let mut rest = data;
        // The run of non-zero data not written yet: (offset, start in `data`).
        let mut run: Option<(u64, usize)> = None;
        let mut at = 0usize;
        while !rest.is_empty() {
            let to_boundary = HOLE - (self.pos % HOLE as u64) as usize;
            let n = to_boundary.min(rest.len());
            let zero = rest[..n] == ZEROS[..n];
            match (zero, run) {
                (true, Some((off, start))) => {
                    self.file.write_all_at(&data[start..at], off)?;
                    run = None;
                }
                (false, None) => run = Some((self.pos, at)),
                _ => {}
            }
            self.pos += n as u64;
            at += n;
            rest = &rest[n..];
        }
        if let Some((off, start)) = run {
            self.file.write_all_at(&data[start..], off)?;
        }
        Ok(())
    }

    /// Ends the file at `len` bytes (a trailing hole is only a length).
    pub fn finish(self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

/// Copies up to `limit` bytes of `from` into `to`; returns how many there were.
pub(crate) fn copy<R: Read>(from: &mut R, to: &mut HoleWriter<'_>, limit: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    while total < limit {
        let want = usize::try_from(limit - total).map_or(buf.len(), |l| l.min(buf.len()));
        let n = match from.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write(&buf[..n]).map_err(Write)?;
        total += n as u64;
    }
    Ok(total)
}

/// A write error inside [`copy`], told apart from the reader's errors.
#[derive(Debug)]
pub(crate) struct Write(pub io::Error);

impl std::fmt::Display for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Write {}

impl From<Write> for io::Error {
    fn from(w: Write) -> io::Error {
        io::Error::new(w.0.kind(), w)
    }
}

/// Whether an error from [`copy`] came from the writing side.
pub(crate) fn is_write(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Write>())
}

/// A file in one of the pax sparse formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PaxSparse {
    /// The file's real name (`GNU.sparse.name`), when given.
    pub name: Option<Vec<u8>>,
    /// The file's real size, holes included.
    pub real_size: u64,
    /// The data regions `(offset, length)`; `None` for version 1.0, whose map
    /// starts the entry's data.
    pub map: Option<Vec<(u64, u64)>>,
}

fn bad(detail: impl Into<String>) -> Refusal {
    Refusal::BadSparse(detail.into())
}

fn number(key: &str, v: &[u8]) -> Result<u64, Refusal> {
    std::str::from_utf8(v)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            bad(format!(
                "GNU.sparse.{key} is not a number: {:?}",
                String::from_utf8_lossy(v)
            ))
        })
}

impl PaxSparse {
    /// The sparse file the `GNU.sparse.*` records (in archive order) describe, if any.
    pub(crate) fn from_records(
        records: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Option<PaxSparse>, Refusal> {
        if records.is_empty() {
            return Ok(None);
        }
        let last = |key: &[u8]| {
            records
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_slice())
        };
        let name = last(b"name").map(<[u8]>::to_vec);
        let version = (last(b"major"), last(b"minor"));
        let (real_size, map) = match version {
            (Some(major), Some(minor)) => {
                if (major, minor) != (&b"1"[..], &b"0"[..]) {
                    return Err(Refusal::UnsupportedSparse(format!(
                        "pax sparse format {}.{}",
                        String::from_utf8_lossy(major),
                        String::from_utf8_lossy(minor)
                    )));
                }
                let size = last(b"realsize").ok_or_else(|| bad("no GNU.sparse.realsize"))?;
                (number("realsize", size)?, None)
            }
            (None, None) => {
                let size = last(b"size").ok_or_else(|| bad("no GNU.sparse.size"))?;
                let size = number("size", size)?;
                let map = if let Some(map) = last(b"map") {
                    // 0.1: one `offset,length,offset,length…` record.
                    let numbers = std::str::from_utf8(map)
                        .map_err(|_| bad("GNU.sparse.map is not text"))?
                        .split(',')
                        .map(|n| number("map", n.as_bytes()))
                        .collect::<Result<Vec<u64>, _>>()?;
                    if numbers.len() % 2 != 0 {
                        return Err(bad("GNU.sparse.map has an odd count of numbers"));
                    }
                    numbers.chunks(2).map(|c| (c[0], c[1])).collect()
                } else {
                    // 0.0: `offset` and `numbytes` records, one pair per region.
                    let mut map = Vec::new();
                    let mut offset = None;
                    for (k, v) in records {
                        match (k.as_slice(), offset) {
                            (b"offset", None) => offset = Some(number("offset", v)?),
                            (b"numbytes", Some(off)) => {
                                map.push((off, number("numbytes", v)?));
                                offset = None;
                            }
                            (b"offset" | b"numbytes", _) => {
                                return Err(bad("GNU.sparse.offset and numbytes do not pair"))
                            }
                            _ => {}
                        }
                    }
                    if offset.is_some() || map.is_empty() {
                        return Err(bad("GNU.sparse.size without a map"));
                    }
                    map
                };
                check_map(&map, size)?;
                (size, Some(map))
            }
            _ => {
                return Err(bad(
                    "GNU.sparse.major without minor, or minor without major",
                ))
            }
        };
        Ok(Some(PaxSparse {
            name,
            real_size,
            map,
        }))
    }

    /// Writes the entry's data (`stored` bytes from `data`) into `to` at the
    /// regions' offsets. `Ok(false)`: the data ended early.
    pub(crate) fn write<R: Read>(
        &self,
        data: &mut R,
        stored: u64,
        to: &mut HoleWriter<'_>,
    ) -> Result<bool, SparseFail> {
        let mut consumed = 0u64;
        let map = match &self.map {
            Some(map) => map.clone(),
            None => {
                let (map, map_bytes) = read_map(data, stored)?;
                check_map(&map, self.real_size)?;
                consumed = map_bytes;
                map
            }
        };
        let total: u64 = map
            .iter()
            .try_fold(0u64, |t, (_, len)| t.checked_add(*len))
            .ok_or_else(|| bad("the regions' lengths overflow"))?;
        if consumed.checked_add(total) != Some(stored) {
            return Err(bad(format!(
                "the map's regions hold {total} bytes, the entry {} bytes of data",
                stored - consumed
            ))
            .into());
        }
        for (offset, len) in map {
            to.seek(offset);
            let n = copy(data, to, len).map_err(SparseFail::Io)?;
            if n != len {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Why writing a pax sparse file failed.
#[derive(Debug)]
pub(crate) enum SparseFail {
    /// The map is wrong.
    Refuse(Refusal),
    /// Reading the data or writing the file failed (see [`is_write`]).
    Io(io::Error),
    /// The data ended inside the map.
    Short,
}

impl From<Refusal> for SparseFail {
    fn from(r: Refusal) -> Self {
        SparseFail::Refuse(r)
    }
}

/// Regions in order, not overlapping, inside the file.
fn check_map(map: &[(u64, u64)], real_size: u64) -> Result<(), Refusal> {
    let mut end = 0u64;
    for (offset, len) in map {
        if *offset < end {
            return Err(bad("regions out of order or overlapping"));
        }
        end = offset
            .checked_add(*len)
            .filter(|e| *e <= real_size)
            .ok_or_else(|| bad(format!("a region ends past the file's size {real_size}")))?;
    }
    Ok(())
}

/// Reads a version 1.0 map from the start of the data: decimal numbers, one a line
/// (the count, then offset and length per region), padded with NULs to a block.
/// Returns the map and the bytes it took.
fn read_map<R: Read>(data: &mut R, stored: u64) -> Result<(Vec<(u64, u64)>, u64), SparseFail> {
    let mut consumed = 0u64;
    let mut next_number = |consumed: &mut u64| -> Result<u64, SparseFail> {
        let mut digits = Vec::new();
        loop {
            let mut b = [0u8];
            match data.read(&mut b) {
                Ok(0) => return Err(SparseFail::Short),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SparseFail::Io(e)),
            }
            *consumed += 1;
            if *consumed > stored {
                return Err(bad("the map runs past the entry's data").into());
            }
            match b[0] {
                b'\n' => break,
                d if d.is_ascii_digit() && digits.len() < 20 => digits.push(d),
                _ => return Err(bad("the map is not decimal numbers, one a line").into()),
            }
        }
        Ok(number("map", &digits)?)
    };
    let count = next_number(&mut consumed)?;
    // Each region takes at least four bytes of map ("0\n0\n").
    if count > stored / 4 {
        return Err(bad(format!("the map claims {count} regions")).into());
    }
    let mut map = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let offset = next_number(&mut consumed)?;
        let len = next_number(&mut consumed)?;
        map.push((offset, len));
    }
    let padded = consumed.div_ceil(BLOCK) * BLOCK;
    if padded > stored {
        return Err(bad("the map's padding runs past the entry's data").into());
    }
    let pad = padded - consumed;
    let n = io::copy(&mut data.take(pad), &mut io::sink()).map_err(SparseFail::Io)?;
    if n != pad {
        return Err(SparseFail::Short);
    }
    Ok((map, padded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn records(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn versions_are_recognised() {
        let v1 = PaxSparse::from_records(&records(&[
            ("major", "1"),
            ("minor", "0"),
            ("name", "./sp"),
            ("realsize", "100"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (v1.real_size, v1.map, v1.name),
            (100, None, Some(b"./sp".to_vec()))
        );
        let v01 = PaxSparse::from_records(&records(&[("size", "100"), ("map", "0,10,50,5")]))
            .unwrap()
            .unwrap();
        assert_eq!(v01.map, Some(vec![(0, 10), (50, 5)]));
        let v00 = PaxSparse::from_records(&records(&[
            ("size", "100"),
            ("numblocks", "2"),
            ("offset", "0"),
            ("numbytes", "10"),
            ("offset", "50"),
            ("numbytes", "5"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(v00.map, Some(vec![(0, 10), (50, 5)]));
        assert!(PaxSparse::from_records(&[]).unwrap().is_none());
        assert!(matches!(
            PaxSparse::from_records(&records(&[("major", "2"), ("minor", "0")])),
            Err(Refusal::UnsupportedSparse(_))
        ));
        for bad in [
            &[("size", "100"), ("map", "0,10,5,5")][..], // overlapping
            &[("size", "10"), ("map", "0,11")],          // past the end
            &[("size", "10"), ("map", "0")],             // odd
            &[("size", "10")],                           // no map
            &[("major", "1")],
        ] {
            assert!(
                matches!(
                    PaxSparse::from_records(&records(bad)),
                    Err(Refusal::BadSparse(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn zero_blocks_become_holes() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create_new(dir.path().join("f")).unwrap();
        let mut w = HoleWriter::new(&file);
        let mut data = vec![0u8; 1 << 20];
        data[5000] = 1; // one data block in a MiB of zeros
        w.write(&data[..3000]).unwrap();
        w.write(&data[3000..]).unwrap();
        w.seek(4 << 20);
        w.write(b"end").unwrap();
        let end = w.pos();
        w.finish(end).unwrap();
        let read = std::fs::read(dir.path().join("f")).unwrap();
        assert_eq!(read.len() as u64, (4 << 20) + 3);
        assert_eq!(read[5000], 1);
        assert_eq!(&read[(4 << 20)..], b"end");
        assert_eq!(read.iter().filter(|b| **b != 0).count(), 4);
        let blocks = std::fs::metadata(dir.path().join("f")).unwrap().blocks();
        assert!(blocks * 512 <= 64 * 1024, "{blocks} blocks allocated");
    }

    #[test]
    fn a_v1_map_is_read_from_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create_new(dir.path().join("f")).unwrap();
        let mut data = b"2\n10\n3\n100\n2\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"abcde");
        let sparse = PaxSparse {
            name: None,
            real_size: 200,
            map: None,
        };
        let mut w = HoleWriter::new(&file);
        assert!(sparse
            .write(&mut &data[..], data.len() as u64, &mut w)
            .unwrap());
        w.finish(200).unwrap();
        let read = std::fs::read(dir.path().join("f")).unwrap();
        assert_eq!(read.len(), 200);
        assert_eq!(&read[10..13], b"abc");
        assert_eq!(&read[100..102], b"de");
        // The map says 5 bytes; the entry holds 6.
        let mut longer = data.clone();
        longer.push(b'f');
        let file2 = File::create_new(dir.path().join("g")).unwrap();
        assert!(matches!(
            sparse.write(
                &mut &longer[..],
                longer.len() as u64,
                &mut HoleWriter::new(&file2)
            ),
            Err(SparseFail::Refuse(Refusal::BadSparse(_)))
        ));
    }
}
