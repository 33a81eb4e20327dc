//! The extension headers of one entry, read from the archive's own bytes.
//!
//! The `tar` crate frames entries well but reads a pax header's records by
//! splitting it on newlines, so a value holding a `\n` byte (a binary
//! `security.capability`, a link target) breaks its records apart — and the tail
//! of such a value can even be read as a record of its own. So the store reads the
//! extension headers itself: [`super::stream`] records the bytes between two
//! entries, [`Extensions::read`] walks them (the `L`/`K`/`x` headers the crate
//! consumed, then the entry's own header) and parses each pax record by its length
//! prefix, as POSIX says. [`Extensions::check_agrees`] then refuses an entry whose
//! path, link, size or owner the crate read otherwise: a header built to be read
//! two ways is not an image.

use std::borrow::Cow;

use super::error::Refusal;

const BLOCK: usize = 512;
/// Where a header's type byte is.
const TYPE_AT: usize = 156;

/// What the extension headers of an entry say, plus its own header as written.
#[derive(Debug, Default)]
pub(crate) struct Extensions {
    /// The entry's header block as written (before the pax records were applied).
    pub header: Option<Vec<u8>>,
    /// A GNU long name (`L`), without its trailing NUL.
    pub long_name: Option<Vec<u8>>,
    /// A GNU long link name (`K`), without its trailing NUL.
    pub long_link: Option<Vec<u8>>,
    /// Pax `path`.
    pub path: Option<Vec<u8>>,
    /// Pax `linkpath`.
    pub linkpath: Option<Vec<u8>>,
    /// Pax `size`.
    pub size: Option<u64>,
    /// Pax `uid`.
    pub uid: Option<u64>,
    /// Pax `gid`.
    pub gid: Option<u64>,
    /// `SCHILY.xattr.<name>` records in archive order: (name, value).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// `GNU.sparse.*` records in archive order (key without the prefix, value):
    /// [`super::sparse`] makes sense of them.
    pub sparse: Vec<(Vec<u8>, Vec<u8>)>,
}

fn bad(detail: impl Into<String>) -> Refusal {
    Refusal::BadExtendedHeader(detail.into())
}

/// The data size a header block declares (octal or GNU base-256).
fn declared_size(block: &[u8]) -> Result<u64, Refusal> {
    tar::Header::from_byte_slice(block)
        .entry_size()
        .map_err(|e| bad(format!("bad size field: {e}")))
}

fn strip_nul(mut v: Vec<u8>) -> Vec<u8> {
    if v.last() == Some(&0) {
        v.pop();
    }
    v
}

impl Extensions {
    /// Reads the extension headers in `region`, the archive bytes from the end of
    /// the previous entry (rounded up to a block) through the entry's own header,
    /// which starts at `header_at` bytes into the region.
    pub(crate) fn read(region: &[u8], header_at: usize) -> Result<Extensions, Refusal> {
        let mut ext = Extensions::default();
        if region.len() < header_at + BLOCK {
            return Err(bad("the entry's header was not seen whole"));
        }
        let mut at = 0;
        while at < header_at {
            let block = &region[at..at + BLOCK];
            let size = declared_size(block)?;
            let data_at = at + BLOCK;
            let size = usize::try_from(size)
                .ok()
                .filter(|s| data_at.checked_add(*s).is_some_and(|end| end <= header_at))
                .ok_or_else(|| bad("an extension header runs past its entry"))?;
            let data = region[data_at..data_at + size].to_vec();
            match block[TYPE_AT] {
                b'x' => ext.pax(&data)?,
                b'L' => ext.long_name = Some(strip_nul(data)),
                b'K' => ext.long_link = Some(strip_nul(data)),
                other => {
                    return Err(bad(format!(
                        "unexpected header type {:?} before the entry",
                        char::from(other)
                    )))
                }
            }
            at = data_at + size.div_ceil(BLOCK) * BLOCK;
        }
        if at != header_at {
            return Err(bad("extension headers do not end where the entry starts"));
        }
        ext.header = Some(region[header_at..header_at + BLOCK].to_vec());
        Ok(ext)
    }

    /// Applies the records of one pax `x` header.
    fn pax(&mut self, data: &[u8]) -> Result<(), Refusal> {
        for (key, value) in records(data)? {
            let number = |v: &[u8]| -> Result<u64, Refusal> {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "pax {} is not a number: {:?}",
                            String::from_utf8_lossy(key),
                            String::from_utf8_lossy(v)
                        ))
                    })
            };
            match key {
                b"path" => self.path = Some(value.to_vec()),
                b"linkpath" => self.linkpath = Some(value.to_vec()),
                b"size" => self.size = Some(number(value)?),
                b"uid" => self.uid = Some(number(value)?),
                b"gid" => self.gid = Some(number(value)?),
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        self.xattrs.push((name.to_vec(), value.to_vec()));
                    } else if let Some(k) = key.strip_prefix(b"GNU.sparse.") {
                        self.sparse.push((k.to_vec(), value.to_vec()));
                    }
                    // Others (times, uname, charset, LIBARCHIVE.xattr.* copies of the
                    // SCHILY ones, SCHILY.acl.*) are not used.
                }
            }
        }
        Ok(())
    }

    /// Refuses an entry that the `tar` crate read differently from its bytes.
    pub(crate) fn check_agrees(
        &self,
        path: &[u8],
        link: Option<&[u8]>,
        kind: tar::EntryType,
        header: &tar::Header,
        size: u64,
    ) -> Result<(), Refusal> {
        let Some(raw) = &self.header else {
            return Err(bad("the entry's header was not seen"));
        };
        let own = tar::Header::from_byte_slice(raw);
        let own_path = own.path_bytes();
        let want_path: &[u8] = self
            .long_name
            .as_deref()
            .or(self.path.as_deref())
            .unwrap_or(&own_path);
        if want_path != path {
            return Err(Refusal::AmbiguousHeader("path"));
        }
        let own_link = own.link_name_bytes();
        let want_link: Option<Cow<'_, [u8]>> = self
            .long_link
            .as_deref()
            .or(self.linkpath.as_deref())
            .map(Cow::Borrowed)
            .or(own_link);
        if want_link.as_deref() != link {
            return Err(Refusal::AmbiguousHeader("link name"));
        }
        let id = |pax: Option<u64>, own: std::io::Result<u64>| match pax {
            Some(v) => Ok(v),
            None => own.map_err(|e| bad(format!("bad owner field: {e}"))),
        };
        if id(self.uid, own.uid())? != id(None, header.uid())? {
            return Err(Refusal::AmbiguousHeader("uid"));
        }
        if id(self.gid, own.gid())? != id(None, header.gid())? {
            return Err(Refusal::AmbiguousHeader("gid"));
        }
        // An old GNU sparse entry's size is its real size, checked by the crate
        // against its map.
        if kind != tar::EntryType::GNUSparse && self.size.map_or(declared_size(raw)?, |s| s) != size
        {
            return Err(Refusal::AmbiguousHeader("size"));
        }
        Ok(())
    }
}

/// One pax record: (key, value).
type Record<'a> = (&'a [u8], &'a [u8]);

/// The records of a pax header: `<length> <key>=<value>\n`, each length counting
/// the whole record, its own digits included, so values may hold any byte.
fn records(mut data: &[u8]) -> Result<Vec<Record<'_>>, Refusal> {
    let mut out = Vec::new();
    // Some writers pad the header with NULs.
    while !data.is_empty() && data.iter().any(|b| *b != 0) {
        let space = data
            .iter()
            .take(21)
            .position(|b| *b == b' ')
            .ok_or_else(|| bad("a pax record does not start with its length"))?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("a pax record's length is not a number"))?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad(
                "a pax record's length does not match its bytes (or it lacks its newline)",
            ));
        }
        let body = &data[space + 1..len - 1];
        let eq = body
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| bad("a pax record has no `=`"))?;
        out.push((&body[..eq], &body[eq + 1..]));
        data = &data[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: &[u8]) -> Vec<u8> {
        let body = [key.as_bytes(), b"=", value, b"\n"].concat();
        let mut len = body.len() + 2;
        while len.to_string().len() + 1 + body.len() != len {
            len += 1;
        }
        [format!("{len} ").into_bytes(), body].concat()
    }

    #[test]
    fn records_are_read_by_their_length() {
        // A capability value holding a newline byte, and a value that looks like a
        // record of its own once split on newlines.
        let cap =
            b"\x01\x00\x00\x02\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        let data = [
            record("SCHILY.xattr.security.capability", cap),
            record("SCHILY.xattr.user.note", b"x\n22 linkpath=/etc/evil\n"),
            record("path", b"a\nb"),
        ]
        .concat();
        let mut ext = Extensions::default();
        ext.pax(&data).unwrap();
        assert_eq!(
            ext.xattrs[0],
            (b"security.capability".to_vec(), cap.to_vec())
        );
        assert_eq!(ext.xattrs[1].1, b"x\n22 linkpath=/etc/evil\n");
        assert_eq!(ext.linkpath, None, "a value is never a record");
        assert_eq!(ext.path.as_deref(), Some(&b"a\nb"[..]));
    }

    #[test]
    fn malformed_records_are_refused() {
        for data in [
            &b"5 a=b\n"[..], // length one short
            b"x a=b\n",      // not a number
            b"7 a=bc",       // no newline
            b"6 ab\n\n",     // no `=`
            b"99999 a=b\n",  // longer than the header
        ] {
            assert!(
                matches!(records(data), Err(Refusal::BadExtendedHeader(_))),
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        assert!(records(b"6 a=b\n\0\0\0").is_ok(), "NUL padding");
    }
}
