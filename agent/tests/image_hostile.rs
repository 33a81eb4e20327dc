//! Hostile archives: each is refused with an error that names the entry (or the
//! problem) and leaves nothing behind, in the store or outside it.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use zonefleet_agent::image::{EntryPos, ImageError, ImageStore, ImportOptions, Refusal};

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
        escapes: vec![],
    });

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
