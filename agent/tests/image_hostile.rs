//! Hostile archives: each is refused with an error that names the entry (or the
//! problem) and leaves nothing behind, in the store or outside it.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

mod support;

use zonefleet_agent::image::{
    EntryPos, ImageError, ImageStore, ImportOptions, Refusal, UnpackLimits,
};

/// One entry of a hand-made archive. Names and link targets are written into the
/// header bytes directly: the `tar` crate's setters refuse `..` and absolute paths.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str),
    Block(&'a str),
    Fifo(&'a str),
}

fn raw_header(kind: tar::EntryType, name: &str, link: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    }
    h.set_cksum();
    h
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        use tar::EntryType as T;
        let (h, data): (tar::Header, &[u8]) = match *e {
            E::Dir(n) => (raw_header(T::Directory, n, "", 0), b""),
            E::File(n, d) => (raw_header(T::Regular, n, "", d.len() as u64), d),
            E::Sym(n, t) => (raw_header(T::Symlink, n, t, 0), b""),
            E::Hard(n, t) => (raw_header(T::Link, n, t, 0), b""),
            E::Char(n) => (raw_header(T::Char, n, "", 0), b""),
            E::Block(n) => (raw_header(T::Block, n, "", 0), b""),
            E::Fifo(n) => (raw_header(T::Fifo, n, "", 0), b""),
        };
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A file whose real name comes from an extension header (pax `path` record when
/// `pax`, else a GNU long name) while its ustar name looks harmless.
fn extended_name_tar(real_name: &str, pax: bool) -> Vec<u8> {
    let (kind, data) = if pax {
        let body = format!(" path={real_name}\n");
        // A pax record starts with its own length in decimal, digits included.
        let mut len = body.len() + 1;
        while len.to_string().len() + body.len() != len {
            len += 1;
        }
        (tar::EntryType::XHeader, format!("{len}{body}").into_bytes())
    } else {
        (
            tar::EntryType::GNULongName,
            format!("{real_name}\0").into_bytes(),
        )
    };
    let mut b = tar::Builder::new(Vec::new());
    let mut ext = raw_header(kind, "././@LongLink", "", data.len() as u64);
    ext.set_cksum();
    b.append(&ext, &data[..]).unwrap();
    b.append(
        &raw_header(tar::EntryType::Regular, "benign", "", 1),
        &b"x"[..],
    )
    .unwrap();
    b.into_inner().unwrap()
}

/// A file `name` with `data` preceded by a pax header of `records`.
fn pax_file(records: &[(&str, &[u8])], name: &str, data: &[u8]) -> Vec<u8> {
    pax_entry(
        records,
        raw_header(tar::EntryType::Regular, name, "", data.len() as u64),
        data,
    )
}

fn pax_entry(records: &[(&str, &[u8])], header: tar::Header, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions(records.iter().copied()).unwrap();
    b.append(&header, data).unwrap();
    b.into_inner().unwrap()
}

/// An old GNU sparse entry declaring `real_size` bytes, one 512-byte data block at
/// its end: a few hundred bytes of archive.
fn gnu_sparse(name: &str, real_size: u64) -> Vec<u8> {
    let mut h = raw_header(tar::EntryType::GNUSparse, name, "", 512);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.sparse[0].set_offset(real_size - 512);
    gnu.sparse[0].set_length(512);
    gnu.set_real_size(real_size);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &[1u8; 512][..]).unwrap();
    b.into_inner().unwrap()
}

/// A zstd archive whose tar holds one file `name` of `size` zero bytes, made of
/// one frame repeated (multi-frame streams are valid): a few KiB for GiBs.
fn zstd_zeros(name: &str, size: u64) -> Vec<u8> {
    const MIB: u64 = 1 << 20;
    assert_eq!(size % MIB, 0);
    let mut head = tar::Builder::new(Vec::new());
    let h = raw_header(tar::EntryType::Regular, name, "", size);
    head.get_mut().extend_from_slice(h.as_bytes());
    let mut out = zstd::encode_all(&head.into_inner().unwrap()[..], 19).unwrap();
    let frame = zstd::encode_all(&vec![0u8; MIB as usize][..], 19).unwrap();
    for _ in 0..size / MIB {
        out.extend_from_slice(&frame);
    }
    out.extend_from_slice(&zstd::encode_all(&[0u8; 1024][..], 19).unwrap());
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A valid archive with one file large enough to cut in the middle of.
fn valid_tar() -> Vec<u8> {
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    tar_of(&[
        E::Dir("etc/"),
        E::File("etc/hosts", b"127.0.0.1 localhost\n"),
        E::File("big", &data),
    ])
}

/// Every path under `dir`, relative.
fn tree(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(dir).unwrap().display().to_string());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

type Check = fn(&ImageError) -> bool;

struct Case {
    label: &'static str,
    archive: Vec<u8>,
    /// Text the error message must contain (the entry's name, mostly).
    names: &'static str,
    check: Check,
    expected_sha256: Option<String>,
    /// Limits of this import (default: the store's).
    limits: Option<UnpackLimits>,
    /// Absolute paths that an escape would have created.
    escapes: Vec<PathBuf>,
}

fn refused(reason: fn(&Refusal) -> bool) -> impl Fn(&ImageError) -> bool {
    move |e| matches!(e, ImageError::Refused { reason: r, .. } if reason(r))
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    // Targets outside everything (absolute, through `/`), unique per run.
    let abs_target = format!("/tmp/zf-abs-{tag}");
    let via_root = format!("tmp/zf-via-root-{tag}");
    let valid = valid_tar();
    let valid_gz = gzip(&valid);

    macro_rules! case {
        ($label:expr, $archive:expr, $names:expr, $check:expr) => {
            case!($label, $archive, $names, $check, vec![])
        };
        ($label:expr, $archive:expr, $names:expr, $check:expr, $escapes:expr) => {
            Case {
                label: $label,
                archive: $archive,
                names: $names,
                check: $check,
                expected_sha256: None,
                limits: None,
                escapes: $escapes,
            }
        };
    }

    let mut cases = vec![
        case!(
            "dotdot",
            tar_of(&[E::File("../escape", b"x")]),
            "../escape",
            |e| refused(|r| *r == Refusal::ParentComponent)(e)
        ),
        case!(
            "absolute",
            tar_of(&[E::File(
                Box::leak(abs_target.clone().into_boxed_str()),
                b"x"
            )]),
            "/tmp/zf-abs-",
            |e| refused(|r| *r == Refusal::AbsolutePath)(e),
            vec![PathBuf::from(&abs_target)]
        ),
        case!(
            "inner dotdot",
            tar_of(&[E::Dir("a/"), E::File("a/../../escape", b"x")]),
            "a/../../escape",
            |e| refused(|r| *r == Refusal::ParentComponent)(e)
        ),
        case!(
            "write through symlink to /",
            tar_of(&[
                E::Sym("link", "/"),
                E::File(Box::leak(format!("link/{via_root}").into_boxed_str()), b"x")
            ]),
            "link/tmp/zf-via-root-",
            |e| refused(|r| matches!(r, Refusal::ThroughSymlink(l) if l == "link"))(e),
            vec![PathBuf::from("/").join(&via_root)]
        ),
        case!(
            "write through symlink to /etc",
            tar_of(&[E::Sym("link", "/"), E::File("link/etc/passwd-owned", b"x")]),
            "link/etc/passwd-owned",
            |e| refused(|r| matches!(r, Refusal::ThroughSymlink(_)))(e),
            vec![PathBuf::from("/etc/passwd-owned")]
        ),
        case!(
            "write through symlink to ..",
            tar_of(&[E::Sym("link", ".."), E::File("link/escape", b"x")]),
            "link/escape",
            |e| refused(|r| matches!(r, Refusal::ThroughSymlink(_)))(e)
        ),
        case!(
            "write through symlink to ../../../..",
            tar_of(&[E::Sym("up", "../../../.."), E::File("up/escape-up", b"x")]),
            "up/escape-up",
            |e| refused(|r| matches!(r, Refusal::ThroughSymlink(_)))(e)
        ),
        case!(
            "mkdir through nested symlink",
            tar_of(&[
                E::Dir("a/"),
                E::Sym("a/b", "/tmp"),
                E::Dir(Box::leak(format!("a/b/zf-dir-{tag}/").into_boxed_str()))
            ]),
            "a/b/zf-dir-",
            |e| refused(|r| matches!(r, Refusal::ThroughSymlink(l) if l == "a/b"))(e),
            vec![PathBuf::from(format!("/tmp/zf-dir-{tag}"))]
        ),
        case!(
            "pax path with ..",
            extended_name_tar("../pax-escape", true),
            "../pax-escape",
            |e| refused(|r| *r == Refusal::ParentComponent)(e)
        ),
        case!(
            "GNU long name, absolute",
            extended_name_tar(
                Box::leak(format!("/tmp/zf-gnu-{tag}").into_boxed_str()),
                false
            ),
            "/tmp/zf-gnu-",
            |e| refused(|r| *r == Refusal::AbsolutePath)(e),
            vec![PathBuf::from(format!("/tmp/zf-gnu-{tag}"))]
        ),
        case!(
            "symlink replaced by file, then hard link",
            tar_of(&[
                E::File("a", b"x"),
                E::Sym("a", "/etc/passwd"),
                E::Hard("b", "a")
            ]),
            "\"b\"",
            |e| refused(|r| matches!(r, Refusal::HardLinkUnknownTarget(_)))(e)
        ),
        case!(
            "char device",
            tar_of(&[E::Char("dev/mem")]),
            "dev/mem",
            |e| refused(|r| *r == Refusal::CharDevice)(e)
        ),
        case!(
            "block device",
            tar_of(&[E::Block("dev/sda")]),
            "dev/sda",
            |e| refused(|r| *r == Refusal::BlockDevice)(e)
        ),
        case!("fifo", tar_of(&[E::Fifo("run/pipe")]), "run/pipe", |e| {
            refused(|r| *r == Refusal::Fifo)(e)
        }),
        case!(
            "hard link to /etc/passwd",
            tar_of(&[E::Hard("passwd", "/etc/passwd")]),
            "passwd",
            |e| refused(|r| matches!(r, Refusal::HardLinkOutside(t) if t == "/etc/passwd"))(e)
        ),
        case!(
            "hard link to ../x",
            tar_of(&[E::Hard("x", "../x")]),
            "../x",
            |e| refused(|r| matches!(r, Refusal::HardLinkOutside(_)))(e)
        ),
        case!(
            "hard link to a later entry",
            tar_of(&[E::Hard("a", "b"), E::File("b", b"x")]),
            "\"a\"",
            |e| refused(|r| matches!(r, Refusal::HardLinkUnknownTarget(_)))(e)
        ),
        case!(
            "hard link through a symlink",
            tar_of(&[E::Sym("etc", "/etc"), E::Hard("p", "etc/passwd")]),
            "etc/passwd",
            |e| refused(|r| matches!(r, Refusal::HardLinkUnknownTarget(_)))(e)
        ),
        case!(
            "hard link to a directory",
            tar_of(&[E::Dir("d/"), E::Hard("l", "d")]),
            "\"l\"",
            |e| refused(|r| matches!(r, Refusal::HardLinkUnknownTarget(_)))(e)
        ),
        case!(
            "symlink replacing a directory",
            tar_of(&[E::Dir("d/"), E::File("d/f", b"x"), E::Sym("d", "/")]),
            "\"d\"",
            |e| refused(|r| *r == Refusal::ReplacesDirectory)(e)
        ),
        case!(
            "file under a file",
            tar_of(&[E::File("f", b"x"), E::File("f/g", b"y")]),
            "f/g",
            |e| refused(|r| matches!(r, Refusal::ParentNotDirectory(_)))(e)
        ),
        case!(
            "truncated gzip",
            valid_gz[..valid_gz.len() / 2].to_vec(),
            "truncated",
            |e| matches!(e, ImageError::Truncated { .. })
        ),
        case!(
            "truncated tar (mid-file)",
            valid[..valid.len() / 2].to_vec(),
            "in entry \"big\"",
            |e| matches!(e, ImageError::Truncated { at: EntryPos::In(n) } if n == "big")
        ),
        case!(
            "truncated tar (no end blocks)",
            valid[..1536].to_vec(),
            "after entry \"etc/hosts\"",
            |e| matches!(e, ImageError::Truncated { at: EntryPos::After(n) } if n == "etc/hosts")
        ),
        case!(
            "truncated zstd",
            {
                let z = zstd::encode_all(&valid[..], 3).unwrap();
                z[..z.len() - 20].to_vec()
            },
            "truncated",
            |e| matches!(e, ImageError::Truncated { .. })
        ),
        case!(
            "garbage",
            (0..4096u32).map(|i| (i * 7 + 3) as u8).collect(),
            "not a tar",
            |e| matches!(e, ImageError::UnknownFormat { .. })
        ),
        case!(
            "gzip of garbage",
            gzip(&[0x42; 4096]),
            "corrupt",
            |e| matches!(e, ImageError::Corrupt { .. })
        ),
        case!("empty file", Vec::new(), "empty", |e| matches!(
            e,
            ImageError::UnknownFormat { .. }
        )),
        case!("no entries", vec![0; 1024], "not a tar", |e| matches!(
            e,
            ImageError::UnknownFormat { .. }
        )),
        case!(
            "zstd bomb: KiBs that expand to 4 GiB",
            zstd_zeros("bomb", 4 << 30),
            "before entry \"bomb\", which adds 4294967296 bytes",
            |e| matches!(e, ImageError::UnpackedTooLarge { unpacked: 0, adds, limit, entry }
                if *adds == 4 << 30 && limit.bytes == 256 << 20 && entry == "bomb")
        ),
        case!(
            "old GNU sparse file declaring 1 TiB",
            gnu_sparse("lastlog", 1 << 40),
            "limit of 268435456 bytes",
            |e| matches!(e, ImageError::UnpackedTooLarge { adds, .. } if *adds == 1 << 40)
        ),
        case!(
            "pax sparse file declaring 1 TiB",
            pax_file(
                &[
                    ("GNU.sparse.major", b"1"),
                    ("GNU.sparse.minor", b"0"),
                    ("GNU.sparse.name", b"var/huge"),
                    ("GNU.sparse.realsize", b"1099511627776"),
                ],
                "GNUSparseFile.0/huge",
                b"0\n",
            ),
            "entry \"var/huge\", which adds 1099511627776 bytes",
            |e| matches!(e, ImageError::UnpackedTooLarge { .. })
        ),
        case!(
            "security.selinux",
            pax_file(
                &[(
                    "SCHILY.xattr.security.selinux",
                    b"system_u:object_r:bin_t:s0"
                )],
                "bin/ls",
                b"x"
            ),
            "\"bin/ls\" refused: extended attribute \"security.selinux\" is not imported",
            |e| refused(
                |r| matches!(r, Refusal::XattrNotImported { name, .. } if name == "security.selinux")
            )(e)
        ),
        case!(
            "trusted.overlay.redirect",
            pax_file(
                &[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")],
                "d",
                b"x"
            ),
            "\"trusted.overlay.redirect\" is not imported: overlayfs",
            |e| refused(|r| matches!(r, Refusal::XattrNotImported { .. }))(e)
        ),
        case!(
            "system.nfs4_acl",
            pax_file(
                &[("SCHILY.xattr.system.nfs4_acl", b"\x02\0\0\0")],
                "f",
                b"x"
            ),
            "\"system.nfs4_acl\" is not imported",
            |e| refused(|r| matches!(r, Refusal::XattrNotImported { .. }))(e)
        ),
        case!(
            "xattr name with a NUL",
            pax_file(&[("SCHILY.xattr.user.a\0b", b"v")], "f", b"x"),
            "is not a valid name",
            |e| refused(|r| matches!(r, Refusal::BadXattrName(n) if n == "user.a\0b"))(e)
        ),
        case!(
            "xattr without a namespace",
            pax_file(&[("SCHILY.xattr.capability", b"v")], "f", b"x"),
            "\"capability\" is not a valid name",
            |e| refused(|r| matches!(r, Refusal::BadXattrName(_)))(e)
        ),
        case!(
            "a pax value that reads as a linkpath record",
            pax_entry(
                &[("SCHILY.xattr.user.note", b"x\n22 linkpath=/etc/evil\n")],
                raw_header(tar::EntryType::Symlink, "harmless", "target", 0),
                b"",
            ),
            "its link name reads differently",
            |e| refused(|r| *r == Refusal::AmbiguousHeader("link name"))(e)
        ),
        case!(
            "a pax header that does not frame",
            pax_file(&[("path", b"a")], "f", b"x")
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 512 { b'7' } else { b })
                .collect(),
            "bad extension header",
            |e| refused(|r| matches!(r, Refusal::BadExtendedHeader(_)))(e)
        ),
        case!(
            "pax sparse map past the file",
            pax_file(
                &[
                    ("GNU.sparse.major", b"1"),
                    ("GNU.sparse.minor", b"0"),
                    ("GNU.sparse.name", b"s"),
                    ("GNU.sparse.realsize", b"10"),
                ],
                "GNUSparseFile.0/s",
                &{
                    let mut d = b"1\n8\n5\n".to_vec();
                    d.resize(512, 0);
                    d.extend_from_slice(b"abcde");
                    d
                },
            ),
            "bad sparse file map: a region ends past the file's size 10",
            |e| refused(|r| matches!(r, Refusal::BadSparse(_)))(e)
        ),
        case!(
            "pax sparse 2.0",
            pax_file(
                &[("GNU.sparse.major", b"2"), ("GNU.sparse.minor", b"0")],
                "s",
                b""
            ),
            "pax sparse format 2.0 is not supported",
            |e| refused(|r| matches!(r, Refusal::UnsupportedSparse(_)))(e)
        ),
        case!(
            "gzip of no entries",
            gzip(&[0; 10240]),
            "no entries",
            |e| matches!(e, ImageError::Empty)
        ),
    ];
    cases.push(Case {
        label: "sha256 mismatch",
        archive: valid.clone(),
        names: "sha256 mismatch",
        check: |e| matches!(e, ImageError::Sha256Mismatch { .. }),
        expected_sha256: Some("0".repeat(64)),
        limits: None,
        escapes: vec![],
    });
    // Limits a test can reach in little time: 1 MiB, 100 entries.
    let small = UnpackLimits {
        ratio: 20,
        floor_bytes: 1 << 20,
        max_entries: 100,
    };
    let zeros = vec![0u8; 400 << 10];
    cases.extend([
        Case {
            label: "many files of zeros (gzip)",
            archive: gzip(&tar_of(&[
                E::File("f0", &zeros),
                E::File("f1", &zeros),
                E::File("f2", &zeros),
            ])),
            names: "819200 bytes unpacked before entry \"f2\", which adds 409600 bytes",
            check: |e| matches!(e, ImageError::UnpackedTooLarge { unpacked: 819200, adds: 409600, entry, .. } if entry == "f2"),
            expected_sha256: None,
            limits: Some(small),
            escapes: vec![],
        },
        Case {
            label: "a huge GNU long name (memory)",
            archive: zstd::encode_all(
                &{
                    let mut b = tar::Builder::new(Vec::new());
                    let long = vec![b'a'; 4 << 20];
                    let h = raw_header(tar::EntryType::GNULongName, "././@LongLink", "", long.len() as u64);
                    b.append(&h, &long[..]).unwrap();
                    b.append(&raw_header(tar::EntryType::Regular, "x", "", 0), &b""[..]).unwrap();
                    b.into_inner().unwrap()
                }[..],
                3,
            )
            .unwrap(),
            names: "more than that decompressed",
            check: |e| matches!(e, ImageError::DecompressedTooLarge { limit, .. } if limit.bytes == 1 << 20),
            expected_sha256: None,
            limits: Some(small),
            escapes: vec![],
        },
        Case {
            label: "too many entries",
            archive: {
                let names: Vec<String> = (0..101).map(|i| format!("d/f{i}")).collect();
                let entries: Vec<E> = names.iter().map(|n| E::File(n, b"")).collect();
                gzip(&tar_of(&entries))
            },
            names: "more than 100 entries",
            check: |e| matches!(e, ImageError::TooManyEntries { limit: 100, entry } if entry == "d/f100"),
            expected_sha256: None,
            limits: Some(small),
            escapes: vec![],
        },
    ]);

    for case in cases {
        let td = tempfile::tempdir().unwrap();
        let data = td.path().join("data");
        let store = ImageStore::open(&data).unwrap();
        let archive = td.path().join("archive");
        fs::write(&archive, &case.archive).unwrap();
        let err = store
            .import(
                &archive,
                ImportOptions {
                    name: Some("hostile".into()),
                    expected_sha256: case.expected_sha256.clone(),
                    limits: case.limits,
                    ..Default::default()
                },
            )
            .expect_err(case.label);
        let msg = err.to_string();
        eprintln!("{:>36}: {msg}", case.label);
        assert!(
            (case.check)(&err),
            "{}: unexpected error {err:?}",
            case.label
        );
        assert!(
            msg.contains(case.names),
            "{}: {msg:?} should name {:?}",
            case.label,
            case.names
        );
        // Nothing left: no image, no manifest, no temporary dir, nothing escaped.
        let left: BTreeSet<String> = tree(td.path());
        let expected: BTreeSet<String> = ["archive", "data", "data/images"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(left, expected, "{}: left behind", case.label);
        assert!(store.list().unwrap().is_empty(), "{}", case.label);
        for escape in &case.escapes {
            assert!(
                fs::symlink_metadata(escape).is_err(),
                "{}: {} was created",
                case.label,
                escape.display()
            );
        }
    }
    assert!(fs::symlink_metadata("/etc/passwd-owned").is_err());
}

/// Unmounts a test mount when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// An attribute the store's file system cannot hold (ramfs has no extended
/// attributes at all): an error naming the entry and the attribute, nothing left.
#[test]
fn an_xattr_the_file_system_lacks_fails_naming_it() {
    const T: &str = "an_xattr_the_file_system_lacks_fails_naming_it";
    if !support::privileged(T) {
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let mnt = td.path().join("ramfs");
    fs::create_dir(&mnt).unwrap();
    nix::mount::mount(
        Some("none"),
        &mnt,
        Some("ramfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("mount ramfs");
    let _mounted = Mounted(mnt.clone());
    let store = ImageStore::open(mnt.join("data")).unwrap();
    let archive = td.path().join("xattrs.tar");
    let mut b = tar::Builder::new(Vec::new());
    b.append(
        &raw_header(tar::EntryType::Directory, "etc/", "", 0),
        &b""[..],
    )
    .unwrap();
    b.append_pax_extensions([("SCHILY.xattr.user.mime_type", &b"text/plain"[..])])
        .unwrap();
    b.append(
        &raw_header(tar::EntryType::Regular, "etc/motd", "", 2),
        &b"hi"[..],
    )
    .unwrap();
    fs::write(&archive, b.into_inner().unwrap()).unwrap();
    let err = store
        .import(&archive, ImportOptions::default())
        .expect_err("ramfs holds no attributes");
    let msg = err.to_string();
    assert!(
        matches!(&err, ImageError::Xattr { entry, attribute, .. } if entry == "etc/motd" && attribute == "user.mime_type"),
        "{err:?}"
    );
    assert!(msg.contains("does not support this attribute"), "{msg}");
    let left: BTreeSet<String> = tree(&mnt);
    assert_eq!(
        left,
        BTreeSet::from(["data".to_owned(), "data/images".to_owned()]),
        "nothing left behind"
    );
}
