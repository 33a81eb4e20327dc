//! Safe unpacking of one untrusted tar stream into a fresh directory.
//!
//! Every path is resolved from the rootfs directory's file descriptor one component
//! at a time with `O_NOFOLLOW | O_DIRECTORY`, and every file is created with
//! `*at` calls relative to its parent's descriptor, so the kernel itself guarantees
//! that no symlink (planted earlier in the archive or otherwise) is ever followed and
//! nothing is written outside the rootfs. On top of that, paths that are absolute or
//! have `..` components, device nodes, FIFOs and hard links to anything but a regular
//! file already unpacked from this archive are refused outright.
//!
//! What a distribution ships is kept: owners, modes with setuid/setgid/sticky
//! (`chmod` after `chown`, which clears them), extended attributes and file
//! capabilities (after `chown`, which clears `security.capability`; see
//! `xattr.rs`), hard links, sparse files (holes are never written: `sparse.rs`),
//! and directory metadata applied once their contents are written.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::Timespec;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timestamps, CWD};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use tar::EntryType;

use super::error::Refusal;
use super::limits::Budget;
use super::pax::Extensions;
use super::sparse::{self, HoleWriter, PaxSparse, SparseFail};
use super::xattr::{self, SetFailed, Xattr};

/// Why one entry failed, before the caller names it.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The entry breaks a safety rule.
    Refuse(Refusal),
    /// Reading the entry from the archive failed.
    Read(io::Error),
    /// The archive ended inside the entry's contents.
    Short,
    /// Writing into the rootfs failed.
    Write(io::Error),
    /// Setting an extended attribute failed.
    Xattr(SetFailed),
    /// The entry would pass the unpacked-size limit: (unpacked so far, it adds).
    TooLarge(u64, u64),
}

impl From<SetFailed> for Fail {
    fn from(e: SetFailed) -> Self {
        Fail::Xattr(e)
    }
}

impl From<SparseFail> for Fail {
    fn from(e: SparseFail) -> Self {
        match e {
            SparseFail::Refuse(r) => Fail::Refuse(r),
            SparseFail::Io(e) => copy_err(e),
            SparseFail::Short => Fail::Short,
        }
    }
}

/// An error of [`sparse::copy`]: the file's write, or the archive's read.
fn copy_err(e: io::Error) -> Fail {
    if sparse::is_write(&e) {
        Fail::Write(e)
    } else {
        Fail::Read(e)
    }
}

impl From<Refusal> for Fail {
    fn from(r: Refusal) -> Self {
        Fail::Refuse(r)
    }
}

fn write_err(e: impl Into<io::Error>) -> Fail {
    Fail::Write(e.into())
}

/// Ownership, permissions and time of an entry, as the archive gives them.
#[derive(Debug, Clone, Copy)]
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
}

impl Meta {
    fn of(header: &tar::Header) -> Result<Meta, Fail> {
        let owner = |id: u64| {
            // -1 means "unchanged" to chown(2); anything wider is not an id at all.
            u32::try_from(id)
                .ok()
                .filter(|id| *id != u32::MAX)
                .ok_or(Fail::Refuse(Refusal::BadOwner(id)))
        };
        Ok(Meta {
            uid: owner(header.uid().map_err(Fail::Read)?)?,
            gid: owner(header.gid().map_err(Fail::Read)?)?,
            // Keep setuid, setgid and sticky: they are part of real images.
            mode: header.mode().map_err(Fail::Read)? & 0o7777,
            mtime: i64::try_from(header.mtime().map_err(Fail::Read)?).unwrap_or(i64::MAX),
        })
    }

    fn timestamps(&self) -> Timestamps {
        let t = Timespec {
            tv_sec: self.mtime,
            tv_nsec: 0,
        };
        Timestamps {
            last_access: t,
            last_modification: t,
        }
    }
}

/// A path inside the archive, checked and split into components.
struct EntryPath {
    /// Components, none empty, `.` or `..`.
    parts: Vec<Vec<u8>>,
}

impl EntryPath {
    /// Checks a path as written in the archive. Absolute paths and `..` are refused
    /// rather than stripped: an image that has them was not made for us.
    fn parse(raw: &[u8]) -> Result<EntryPath, Refusal> {
        if raw.contains(&0) {
            return Err(Refusal::NulByte);
        }
        if raw.starts_with(b"/") {
            return Err(Refusal::AbsolutePath);
        }
        let mut parts = Vec::new();
        for part in raw.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => return Err(Refusal::ParentComponent),
                _ => parts.push(part.to_vec()),
            }
        }
        Ok(EntryPath { parts })
    }

    fn key(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.join(&b'/')
    }

    fn display(parts: &[Vec<u8>]) -> String {
        String::from_utf8_lossy(&Self::key(parts)).into_owned()
    }

    /// The parent components and the final name; `None` for the rootfs itself.
    fn split(&self) -> Option<(&[Vec<u8>], &OsStr)> {
        let (name, parent) = self.parts.split_last()?;
        Some((parent, OsStr::from_bytes(name)))
    }
}

/// Unpacks entries one by one into a rootfs directory.
pub(crate) struct Unpacker {
    root: OwnedFd,
    /// Regular files unpacked so far (by path key): the only valid hard link targets.
    files: HashSet<Vec<u8>>,
    /// Directories seen in the archive with their metadata and attributes, applied
    /// at the end (children change a directory's mtime; a read-only mode must come
    /// last).
    dirs: HashMap<Vec<u8>, (Meta, Vec<Xattr>)>,
    /// The last parent directory opened, since archives list siblings together.
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// Only root can give files away; an unprivileged run (a developer's) keeps its own.
    chown: bool,
    /// What may still be unpacked.
    budget: Budget,
}

/// The path an entry is unpacked at: a pax sparse file's real name, else its path.
pub(crate) fn entry_name<R: Read>(entry: &tar::Entry<'_, R>, ext: &Extensions) -> Vec<u8> {
    match PaxSparse::from_records(&ext.sparse) {
        Ok(Some(PaxSparse { name: Some(n), .. })) => n,
        _ => entry.path_bytes().into_owned(),
    }
}

/// The nodes a distribution's root filesystem carries in `/dev` (debootstrap
/// makes them): `dev/<name>` with its usual number — the devices every zone's own
/// `/dev` has ([`crate::isolation::dev::DEVICES`]), the console and ptmx. They are
/// skipped, not refused: a zone's `/dev` is a tmpfs of its own holding these same
/// devices, so the image's would never be seen (and its disk is mounted
/// `nodev`). Any other device node is refused.
const TERMINAL_NODES: &[(&str, u64, u64)] = &[("console", 5, 1), ("ptmx", 5, 2)];

fn is_standard_dev_node<R: Read>(entry: &tar::Entry<'_, R>) -> bool {
    let header = entry.header();
    let (Ok(Some(major)), Ok(Some(minor))) = (header.device_major(), header.device_minor()) else {
        return false;
    };
    let path = entry.path_bytes();
    let path = path.strip_prefix(b"./").unwrap_or(&path);
    crate::isolation::dev::DEVICES
        .iter()
        .chain(TERMINAL_NODES)
        .any(|&(name, ma, mi)| {
            path.strip_prefix(b"dev/") == Some(name.as_bytes())
                && (u64::from(major), u64::from(minor)) == (ma, mi)
        })
}

impl Unpacker {
    /// Starts unpacking into `rootfs`, an existing directory.
    pub(crate) fn new(rootfs: &Path, budget: Budget) -> io::Result<Unpacker> {
        let root = rfs::openat(
            CWD,
            rootfs,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Unpacker {
            root,
            files: HashSet::new(),
            dirs: HashMap::new(),
            cache: None,
            chown: rustix::process::geteuid().is_root(),
            budget,
        })
    }

    /// Unpacks one entry, with what its extension headers say, or says why not.
    pub(crate) fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        ext: &Extensions,
    ) -> Result<(), Fail> {
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Char if is_standard_dev_node(entry) => return Ok(()),
            EntryType::Char => return Err(Refusal::CharDevice.into()),
            EntryType::Block => return Err(Refusal::BlockDevice.into()),
            EntryType::Fifo => return Err(Refusal::Fifo.into()),
            // A pax global header only carries defaults for other entries.
            EntryType::XGlobalHeader => return Ok(()),
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link => {}
            other => return Err(Refusal::UnsupportedType(other.as_byte()).into()),
        }
        let link = entry.link_name_bytes().map(|t| t.into_owned());
        ext.check_agrees(
            &entry.path_bytes(),
            link.as_deref(),
            kind,
            entry.header(),
            entry.size(),
        )?;
        let pax_sparse = PaxSparse::from_records(&ext.sparse)?;
        if pax_sparse.is_some() && !matches!(kind, EntryType::Regular | EntryType::Continuous) {
            return Err(
                Refusal::BadSparse("sparse records on an entry that is not a file".into()).into(),
            );
        }
        let raw_path = match &pax_sparse {
            Some(PaxSparse { name: Some(n), .. }) => n.clone(),
            _ => entry.path_bytes().into_owned(),
        };
        let path = EntryPath::parse(&raw_path)?;
        let meta = Meta::of(entry.header())?;
        let xattrs = xattr::checked(&ext.xattrs)?;
        let contents = match kind {
            EntryType::Symlink => link.as_ref().map_or(0, |l| l.len() as u64),
            EntryType::Directory | EntryType::Link => 0,
            _ => pax_sparse.as_ref().map_or(entry.size(), |s| s.real_size),
        };
        self.budget
            .take(contents.saturating_add(xattr::bytes(&xattrs)))
            .map_err(|(unpacked, adds)| Fail::TooLarge(unpacked, adds))?;
        let Some((parent, name)) = path.split() else {
            if kind == EntryType::Directory {
                // `./`: the metadata of the rootfs itself.
                self.dirs.insert(Vec::new(), (meta, xattrs));
                return Ok(());
            }
            return Err(Refusal::EmptyPath.into());
        };
        let key = EntryPath::key(&path.parts);
        // A name that was a regular file stops being one whatever happens next.
        self.files.remove(&key);
        match kind {
            EntryType::Directory => {
                self.directory(parent, name)?;
                self.dirs.insert(key, (meta, xattrs));
            }
            EntryType::Symlink => {
                self.symlink(parent, name, &link.unwrap_or_default(), meta, &xattrs)?;
            }
            EntryType::Link => {
                self.hard_link(parent, name, &key, &link.unwrap_or_default(), &xattrs)?;
                self.files.insert(key);
            }
            _ => {
                self.regular(parent, name, entry, pax_sparse.as_ref(), meta, &xattrs)?;
                self.files.insert(key);
            }
        }
        Ok(())
    }

    /// Applies the directories' metadata, deepest first. A failure names the
    /// directory.
    pub(crate) fn finish(mut self) -> Result<(), (String, Fail)> {
        self.cache = None;
        let mut dirs: Vec<_> = self.dirs.drain().collect();
        dirs.sort_by_key(|(key, _)| {
            std::cmp::Reverse(
                key.iter().filter(|b| **b == b'/').count() + usize::from(!key.is_empty()),
            )
        });
        for (key, (meta, xattrs)) in dirs {
            let parts: Vec<Vec<u8>> = if key.is_empty() {
                Vec::new()
            } else {
                key.split(|b| *b == b'/').map(<[u8]>::to_vec).collect()
            };
            let named = |f: Fail| {
                let shown = if key.is_empty() {
                    "./".to_owned()
                } else {
                    EntryPath::display(&parts)
                };
                (shown, f)
            };
            let fd = walk(&self.root, &parts, false).map_err(named)?;
            self.set_owner(&fd, meta)
                .map_err(|e| named(Fail::Write(e)))?;
            // After chown (which clears security.capability), before chmod.
            xattr::set_fd(&fd, &xattrs).map_err(|e| named(e.into()))?;
            rfs::fchmod(&fd, Mode::from_raw_mode(meta.mode)).map_err(|e| named(write_err(e)))?;
            rfs::futimens(&fd, &meta.timestamps()).map_err(|e| named(write_err(e)))?;
        }
        Ok(())
    }

    /// The directory holding an entry, created as needed (mode 0755, like tar does
    /// for parents an archive does not list).
    fn parent(&mut self, parent: &[Vec<u8>]) -> Result<&OwnedFd, Fail> {
        let key = EntryPath::key(parent);
        let hit = matches!(&self.cache, Some((k, _)) if *k == key);
        if !hit {
            let fd = walk(&self.root, parent, true)?;
            self.cache = Some((key, fd));
        }
        Ok(&self.cache.as_ref().expect("just filled").1)
    }

    fn directory(&mut self, parent: &[Vec<u8>], name: &OsStr) -> Result<(), Fail> {
        let dir = self.parent(parent)?;
        loop {
            match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
                Ok(()) => return Ok(()),
                Err(Errno::EXIST) => {
                    let st =
                        rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(write_err)?;
                    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                        return Ok(());
                    }
                    // A later entry replaces an earlier non-directory, as tar does.
                    rfs::unlinkat(dir, name, AtFlags::empty()).map_err(write_err)?;
                }
                Err(e) => return Err(write_err(e)),
            }
        }
    }

    fn regular<R: Read>(
        &mut self,
        parent: &[Vec<u8>],
        name: &OsStr,
        entry: &mut tar::Entry<'_, R>,
        pax_sparse: Option<&PaxSparse>,
        meta: Meta,
        xattrs: &[Xattr],
    ) -> Result<(), Fail> {
        let chown = self.chown;
        let dir = self.parent(parent)?;
        let fd = create(dir, name, |dir, name| {
            rfs::openat(
                dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        })?;
        let file = File::from(fd);
        let stored = entry.size();
        let mut out = HoleWriter::new(&file);
        let len = match pax_sparse {
            Some(sparse) => {
                if !sparse.write(entry, stored, &mut out)? {
                    return Err(Fail::Short);
                }
                sparse.real_size
            }
            None => {
                // Old GNU sparse entries come with their holes as zeros: the
                // writer leaves them unwritten.
                if sparse::copy(entry, &mut out, stored).map_err(copy_err)? != stored {
                    return Err(Fail::Short);
                }
                stored
            }
        };
        out.finish(len).map_err(Fail::Write)?;
        // Order matters: writing and truncating clear setuid/setgid and file
        // capabilities, chown clears them too; so data, chown, attributes, chmod.
        if chown {
            rfs::fchown(
                &file,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(write_err)?;
        }
        xattr::set_fd(&file, xattrs)?;
        rfs::fchmod(&file, Mode::from_raw_mode(meta.mode)).map_err(write_err)?;
        rfs::futimens(&file, &meta.timestamps()).map_err(write_err)?;
        Ok(())
    }

    fn symlink(
        &mut self,
        parent: &[Vec<u8>],
        name: &OsStr,
        target: &[u8],
        meta: Meta,
        xattrs: &[Xattr],
    ) -> Result<(), Fail> {
        // The target is stored as is, even absolute or with `..`: it is only ever
        // resolved inside the zone's root, never while unpacking.
        if target.is_empty() {
            return Err(Refusal::EmptyLinkTarget.into());
        }
        if target.contains(&0) {
            return Err(Refusal::NulByte.into());
        }
        let chown = self.chown;
        let dir = self.parent(parent)?;
        let target = OsStr::from_bytes(target);
        create(dir, name, |dir, name| rfs::symlinkat(target, dir, name))?;
        if chown {
            rfs::chownat(
                dir,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(write_err)?;
        }
        xattr::set_symlink(dir, name, xattrs)?;
        rfs::utimensat(dir, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(write_err)?;
        Ok(())
    }

    fn hard_link(
        &mut self,
        parent: &[Vec<u8>],
        name: &OsStr,
        key: &[u8],
        target: &[u8],
        xattrs: &[Xattr],
    ) -> Result<(), Fail> {
        let shown = String::from_utf8_lossy(target).into_owned();
        if target.is_empty() {
            return Err(Refusal::EmptyLinkTarget.into());
        }
        let target_path = EntryPath::parse(target).map_err(|r| match r {
            Refusal::AbsolutePath | Refusal::ParentComponent => {
                Refusal::HardLinkOutside(shown.clone())
            }
            other => other,
        })?;
        let target_key = EntryPath::key(&target_path.parts);
        if !self.files.contains(&target_key) {
            return Err(Refusal::HardLinkUnknownTarget(shown).into());
        }
        if target_key == key {
            // `a` linked to itself: nothing to do (and unlinking first would lose it).
            self.files.insert(target_key);
            let (parent, name) = target_path.split().ok_or(Refusal::EmptyPath)?;
            let dir = self.parent(parent)?;
            return set_on_file(dir, name, xattrs);
        }
        let (target_parent, target_name) = target_path.split().ok_or(Refusal::EmptyPath)?;
        let target_dir = walk(&self.root, target_parent, false)?;
        let dir = self.parent(parent)?;
        // No AT_SYMLINK_FOLLOW: the link is made to the named inode itself.
        create(dir, name, |dir, name| {
            rfs::linkat(&target_dir, target_name, dir, name, AtFlags::empty())
        })?;
        // Attributes on a link entry (libarchive repeats them) are the shared inode's.
        set_on_file(dir, name, xattrs)
    }

    fn set_owner(&self, fd: &OwnedFd, meta: Meta) -> io::Result<()> {
        if self.chown {
            rfs::fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )?;
        }
        Ok(())
    }
}

/// Sets `xattrs` on the regular file `name` in `dir` (one of this archive's, opened
/// without following anything).
fn set_on_file(dir: &OwnedFd, name: &OsStr, xattrs: &[Xattr]) -> Result<(), Fail> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(write_err)?;
    Ok(xattr::set_fd(&fd, xattrs)?)
}

/// Creates a non-directory with `make`; if the name exists and is not a directory,
/// removes it first (a later entry wins, as with tar). Replacing a directory is
/// refused: that would orphan what was unpacked under it.
fn create<T>(
    dir: &OwnedFd,
    name: &OsStr,
    mut make: impl FnMut(&OwnedFd, &OsStr) -> rustix::io::Result<T>,
) -> Result<T, Fail> {
    match make(dir, name) {
        Ok(v) => Ok(v),
        Err(Errno::EXIST) => {
            let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(write_err)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Err(Refusal::ReplacesDirectory.into());
            }
            rfs::unlinkat(dir, name, AtFlags::empty()).map_err(write_err)?;
            make(dir, name).map_err(write_err)
        }
        Err(e) => Err(write_err(e)),
    }
}

/// Opens the directory at `parts` under `root`, one component at a time, never
/// following a symlink; creates missing components when `create`.
fn walk(root: &OwnedFd, parts: &[Vec<u8>], create: bool) -> Result<OwnedFd, Fail> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut cur = rfs::openat(root, ".", flags, Mode::empty()).map_err(write_err)?;
    for (i, part) in parts.iter().enumerate() {
        let name = OsStr::from_bytes(part);
        let next = match rfs::openat(&cur, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                match rfs::mkdirat(&cur, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(write_err(e)),
                }
                let fd = rfs::openat(&cur, name, flags, Mode::empty()).map_err(write_err)?;
                // Exactly 0755 whatever the agent's umask: zones must traverse it.
                rfs::fchmod(&fd, Mode::from_raw_mode(0o755)).map_err(write_err)?;
                fd
            }
            Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                let shown = EntryPath::display(&parts[..=i]);
                let st =
                    rfs::statat(&cur, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|_| write_err(e))?;
                return Err(
                    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                        Refusal::ThroughSymlink(shown).into()
                    } else {
                        Refusal::ParentNotDirectory(shown).into()
                    },
                );
            }
            Err(e) => return Err(write_err(e)),
        };
        cur = next;
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &str) -> Result<Vec<String>, Refusal> {
        EntryPath::parse(p.as_bytes()).map(|p| {
            p.parts
                .iter()
                .map(|c| String::from_utf8(c.clone()).unwrap())
                .collect()
        })
    }

    #[test]
    fn paths() {
        assert_eq!(parse("./bin//sh").unwrap(), ["bin", "sh"]);
        assert_eq!(parse("bin/./x/").unwrap(), ["bin", "x"]);
        assert!(parse("./").unwrap().is_empty());
        assert_eq!(parse("/etc/passwd").unwrap_err(), Refusal::AbsolutePath);
        assert_eq!(parse("../x").unwrap_err(), Refusal::ParentComponent);
        assert_eq!(parse("a/../../x").unwrap_err(), Refusal::ParentComponent);
        assert_eq!(parse("a/..").unwrap_err(), Refusal::ParentComponent);
        assert_eq!(parse("a\0b").unwrap_err(), Refusal::NulByte);
        // `..` inside a name is only a name.
        assert_eq!(parse("a/..b/c..").unwrap(), ["a", "..b", "c.."]);
    }
}
