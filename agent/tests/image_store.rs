//! The image store end to end: formats, content addressing, references, deletion
//! and the busybox image; what a distribution's archive carries kept exactly
//! (ownership, modes, extended attributes, file capabilities, hard links, sparse
//! files).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use zonefleet_agent::image::{ImageError, ImageStore, ImportOptions};

const MTIME: u64 = 1_700_000_000;

fn header(kind: tar::EntryType, path: &str, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_path(path).unwrap();
    h.set_mode(mode);
    h.set_uid(1000);
    h.set_gid(100);
    h.set_mtime(MTIME);
    h.set_size(size);
    h
}

/// A small tree with what real images have: nested and implicit directories,
/// setuid, an absolute symlink, a hard link, non-root owners, a larger file.
fn sample_tar(salt: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |h: &mut tar::Header, data: &[u8]| {
        h.set_cksum();
        b.append(h, data).unwrap();
    };
    add(&mut header(tar::EntryType::Directory, "./", 0o755, 0), b"");
    add(
        &mut header(tar::EntryType::Directory, "bin/", 0o755, 0),
        b"",
    );
    let tool = format!("#!/bin/sh\necho {salt}\n");
    add(
        &mut header(
            tar::EntryType::Regular,
            "bin/tool",
            0o755,
            tool.len() as u64,
        ),
        tool.as_bytes(),
    );
    add(
        &mut header(tar::EntryType::Regular, "bin/su", 0o4755, 3),
        b"su\n",
    );
    let mut sh = header(tar::EntryType::Symlink, "bin/sh", 0o777, 0);
    sh.set_link_name("/bin/tool").unwrap();
    add(&mut sh, b"");
    let mut hl = header(tar::EntryType::Link, "bin/tool-again", 0o755, 0);
    hl.set_link_name("bin/tool").unwrap();
    add(&mut hl, b"");
    // No entry for usr/ or usr/share/: created implicitly.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    add(
        &mut header(
            tar::EntryType::Regular,
            "usr/share/big",
            0o644,
            big.len() as u64,
        ),
        &big,
    );
    add(
        &mut header(tar::EntryType::Directory, "tmp", 0o1777, 0),
        b"",
    );
    add(&mut header(tar::EntryType::Directory, "ro", 0o555, 0), b"");
    add(
        &mut header(tar::EntryType::Regular, "ro/file", 0o444, 2),
        b"ro",
    );
    b.into_inner().unwrap()
}

fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(tar).unwrap();
    e.finish().unwrap()
}

fn zstd(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 3).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn opts(name: &str, version: &str) -> ImportOptions {
    ImportOptions {
        name: Some(name.into()),
        version: Some(version.into()),
        ..Default::default()
    }
}

/// Everything about a tree that an image must reproduce, keyed by relative path.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let m = fs::symlink_metadata(&path).unwrap();
        let common = format!("{:o} {}:{}", m.mode(), m.uid(), m.gid());
        let desc = if m.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                stack.push(e.unwrap().path());
            }
            format!("dir {common}")
        } else if m.file_type().is_symlink() {
            format!(
                "link {common} -> {}",
                fs::read_link(&path).unwrap().display()
            )
        } else {
            let data = fs::read(&path).unwrap();
            format!(
                "file {common} {} {} nlink={} mtime={}",
                data.len(),
                hex::encode(Sha256::digest(&data)),
                m.nlink(),
                m.mtime()
            )
        };
        out.insert(rel, desc);
    }
    out
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn store_entries(store: &ImageStore) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn tar_gzip_and_zstd_give_the_same_rootfs() {
    let td = tempfile::tempdir().unwrap();
    let store = ImageStore::open(td.path().join("data")).unwrap();
    let tar = sample_tar("same");
    let mut snapshots = Vec::new();
    // Misleading file names on purpose: the format comes from the magic bytes.
    for (name, bytes) in [
        ("plain.tar.gz", tar.clone()),
        ("gz.tar", gzip(&tar)),
        ("zst.bin", zstd(&tar)),
    ] {
        let path = write(td.path(), name, &bytes);
        let rec = store
            .import(&path, opts(&name.replace('.', "-"), "1"))
            .unwrap();
        assert_eq!(rec.sha256.to_string(), sha256sum(&path), "{name}");
        assert_eq!(rec.size, bytes.len() as u64);
        let rootfs = store.rootfs_path(&rec.sha256.to_string()).unwrap();
        assert_eq!(
            rootfs,
            store.root().join(rec.sha256.to_string()).join("rootfs")
        );
        assert!(store
            .root()
            .join(rec.sha256.to_string())
            .join("manifest.json")
            .is_file());
        snapshots.push(snapshot(&rootfs));
    }
    assert_eq!(snapshots[0], snapshots[1]);
    assert_eq!(snapshots[0], snapshots[2]);

    let s = &snapshots[0];
    assert_eq!(
        s["bin/su"].split(' ').nth(1).unwrap(),
        "104755",
        "setuid kept"
    );
    assert!(
        s["bin/su"].contains("1000:100"),
        "owner kept: {}",
        s["bin/su"]
    );
    assert_eq!(s["bin/sh"], "link 120777 1000:100 -> /bin/tool");
    assert!(
        s["bin/tool"].contains("nlink=2"),
        "hard link: {}",
        s["bin/tool"]
    );
    assert!(s["usr/share/big"].contains(&format!("mtime={MTIME}")));
    assert!(
        s["usr"].starts_with("dir 40755 0:0"),
        "implicit parent: {}",
        s["usr"]
    );
    assert!(s["tmp"].starts_with("dir 41777"));
    assert!(s["ro"].starts_with("dir 40555"), "dir modes applied last");
    assert!(
        s[""].starts_with("dir 40755 1000:100"),
        "`./` applies to the rootfs"
    );
    let sorted: Vec<_> = store.list().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(sorted, ["gz-tar", "plain-tar-gz", "zst-bin"]);
}

#[test]
fn reimport_is_a_noop() {
    let td = tempfile::tempdir().unwrap();
    let store = ImageStore::open(td.path().join("data")).unwrap();
    let path = write(td.path(), "web-app.tar.zst", &zstd(&sample_tar("re")));
    let first = store.import(&path, ImportOptions::default()).unwrap();
    assert_eq!(
        (first.name.as_str(), first.version.as_str()),
        ("web-app", "0")
    );
    let before = snapshot(&store.rootfs_path(&first.sha256.to_string()).unwrap());
    let again = store
        .import(
            &path,
            ImportOptions {
                name: Some("other".into()),
                expected_sha256: Some(format!(
                    "sha256:{}",
                    first.sha256.to_string().to_uppercase()
                )),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(store.list().unwrap(), vec![first.clone()]);
    assert_eq!(store_entries(&store), vec![first.sha256.to_string()]);
    assert_eq!(
        snapshot(&store.rootfs_path(&first.sha256.to_string()).unwrap()),
        before
    );
    // The store dir is private: images carry setuid binaries.
    let mode = fs::metadata(store.root()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn references_resolve() {
    let td = tempfile::tempdir().unwrap();
    let store = ImageStore::open(td.path().join("data")).unwrap();
    let import = |salt: &str, name: &str, version: &str| {
        let path = write(td.path(), &format!("{salt}.tar"), &sample_tar(salt));
        store.import(&path, opts(name, version)).unwrap()
    };
    let v1_2 = import("a", "app", "1.2");
    let v1_10 = import("b", "app", "1.10");
    let rc = import("c", "app", "2.0-rc.1");
    let base = import("d", "base", "7");

    assert_eq!(store.get(&v1_2.uuid.to_string()).unwrap(), v1_2);
    assert_eq!(
        store.get(&format!("sha256:{}", v1_10.sha256)).unwrap(),
        v1_10
    );
    assert_eq!(
        store
            .get(&format!("sha256:{}", &base.sha256.to_string()[..12]))
            .unwrap(),
        base
    );
    assert_eq!(
        store.get(&base.sha256.to_string()[..10]).unwrap(),
        base,
        "bare hex prefix"
    );
    assert_eq!(
        store
            .get(&base.sha256.to_string()[..10].to_uppercase())
            .unwrap(),
        base
    );
    assert_eq!(store.get("app@1.2").unwrap(), v1_2);
    assert_eq!(store.get("app@2.0-rc.1").unwrap(), rc);
    // Latest: 2.0-rc.1 > 1.10 > 1.2 (semver-ish, not lexical).
    assert_eq!(store.get("app").unwrap(), rc);
    assert_eq!(store.get("base").unwrap(), base);

    assert!(matches!(store.get("app@9"), Err(ImageError::NotFound(_))));
    assert!(matches!(store.get("nope"), Err(ImageError::NotFound(_))));
    assert!(matches!(
        store.get(&uuid::Uuid::new_v4().to_string()),
        Err(ImageError::NotFound(_))
    ));
    // Every sha256 starts with one of 16 digits: with 4 images, "sha256:" alone is
    // ambiguous.
    assert!(matches!(
        store.get("sha256:"),
        Err(ImageError::InvalidField { .. })
    ));
    let all_hex = "0123456789abcdef";
    let ambiguous = all_hex.chars().map(|c| c.to_string()).find(|p| {
        store
            .list()
            .unwrap()
            .iter()
            .filter(|r| r.sha256.to_string().starts_with(p.as_str()))
            .count()
            > 1
    });
    if let Some(p) = ambiguous {
        let err = store.get(&format!("sha256:{p}")).unwrap_err();
        assert!(matches!(err, ImageError::Ambiguous { .. }), "{err}");
    }

    let names: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|r| format!("{}@{}", r.name, r.version))
        .collect();
    assert_eq!(names, ["app@1.2", "app@1.10", "app@2.0-rc.1", "base@7"]);

    // The same name and version for different content is refused, and leaves nothing.
    let path = write(td.path(), "e.tar", &sample_tar("e"));
    let err = store.import(&path, opts("app", "1.2")).unwrap_err();
    assert!(matches!(err, ImageError::VersionExists { .. }), "{err}");
    assert_eq!(store_entries(&store).len(), 4);
    // Bad names are refused with the field named.
    let err = store.import(&path, opts("bad name", "1")).unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");
}

#[test]
fn delete_refused_while_in_use() {
    let td = tempfile::tempdir().unwrap();
    let store = ImageStore::open(td.path().join("data")).unwrap();
    let path = write(td.path(), "x.tar.gz", &gzip(&sample_tar("del")));
    let rec = store.import(&path, opts("x", "1")).unwrap();
    let keep = write(td.path(), "y.tar", &sample_tar("keep"));
    let other = store.import(&keep, opts("y", "1")).unwrap();

    let usage = store.disk_usage().unwrap();
    assert_eq!(usage.images, 2);
    assert!(usage.unpacked_bytes > 300_000, "{usage:?}");
    assert_eq!(usage.archive_bytes, rec.size + other.size);

    let in_use = |r: &zonefleet_proto::image::ImageManifest| r.sha256 == rec.sha256;
    let err = store.delete("x@1", in_use).unwrap_err();
    assert!(matches!(err, ImageError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("in use"));
    assert!(store.rootfs_path(&rec.sha256.to_string()).is_ok());

    let deleted = store.delete("x", |_| false).unwrap();
    assert_eq!(deleted, rec);
    assert!(matches!(store.get("x"), Err(ImageError::NotFound(_))));
    assert!(store.rootfs_path(&rec.sha256.to_string()).is_err());
    assert_eq!(store_entries(&store), vec![other.sha256.to_string()]);
    assert_eq!(store.disk_usage().unwrap().images, 1);
    // Gone means importable again.
    assert_eq!(
        store.import(&path, opts("x", "1")).unwrap().sha256,
        rec.sha256
    );
}

#[test]
fn open_sweeps_stale_temporary_dirs() {
    let td = tempfile::tempdir().unwrap();
    let data = td.path().join("data");
    let store = ImageStore::open(&data).unwrap();
    let stale = store.root().join(".tmp-crashed/rootfs/bin");
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("half"), b"x").unwrap();
    fs::write(store.root().join(".tmp-file"), b"x").unwrap();
    let store = ImageStore::open(&data).unwrap();
    assert!(store_entries(&store).is_empty());
}

#[test]
fn rootfs_path_refuses_non_sha() {
    let td = tempfile::tempdir().unwrap();
    let store = ImageStore::open(td.path()).unwrap();
    assert!(matches!(
        store.rootfs_path("../../etc"),
        Err(ImageError::InvalidField { .. })
    ));
    assert!(matches!(
        store.rootfs_path(&"a".repeat(64)),
        Err(ImageError::NotFound(_))
    ));
}

/// A later entry with a symlink's name replaces the symlink; it never writes through it.
#[test]
fn file_over_symlink_replaces_the_link() {
    let td = tempfile::tempdir().unwrap();
    let store = ImageStore::open(td.path().join("data")).unwrap();
    let victim = td.path().join("victim");
    fs::write(&victim, b"original").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut link = header(tar::EntryType::Symlink, "link", 0o777, 0);
    link.set_link_name(&victim).unwrap();
    link.set_cksum();
    b.append(&link, &b""[..]).unwrap();
    let mut file = header(tar::EntryType::Regular, "link", 0o644, 5);
    file.set_cksum();
    b.append(&file, &b"owned"[..]).unwrap();
    let path = write(td.path(), "over.tar", &b.into_inner().unwrap());
    let rec = store.import(&path, opts("over", "1")).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"original");
    let replaced = store
        .rootfs_path(&rec.sha256.to_string())
        .unwrap()
        .join("link");
    assert!(fs::symlink_metadata(&replaced).unwrap().is_file());
    assert_eq!(fs::read(replaced).unwrap(), b"owned");
}

fn build_busybox(out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images/build-busybox.sh");
    let status = Command::new("sh").arg(&script).arg(out).status().unwrap();
    assert!(status.success(), "{} failed", script.display());
}

#[test]
fn busybox_image_builds_reproducibly_and_imports() {
    let td = tempfile::tempdir().unwrap();
    let a = td.path().join("a/busybox.tar.gz");
    let b = td.path().join("b/busybox.tar.gz");
    build_busybox(&a);
    build_busybox(&b);
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "reproducible");

    let store = ImageStore::open(td.path().join("data")).unwrap();
    let rec = store
        .import(
            &a,
            ImportOptions {
                version: Some("1".into()),
                min_ram_mib: 16,
                description: "busybox test image".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(rec.name, "busybox");
    assert_eq!(rec.min_ram, Some(16));
    let rootfs = store.rootfs_path(&rec.sha256.to_string()).unwrap();
    let bb = fs::metadata(rootfs.join("bin/busybox")).unwrap();
    assert!(bb.is_file() && bb.permissions().mode() & 0o111 == 0o111);
    assert_eq!(bb.uid(), 0);
    let init = fs::metadata(rootfs.join("sbin/init")).unwrap();
    assert!(init.permissions().mode() & 0o111 == 0o111);
    assert!(fs::read_to_string(rootfs.join("sbin/init"))
        .unwrap()
        .starts_with("#!/bin/sh"));
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert!(fs::read_to_string(rootfs.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));
    assert!(rootfs.join("etc/group").is_file());
    for d in ["proc", "sys", "dev", "tmp", "root", "var", "run"] {
        assert!(rootfs.join(d).is_dir(), "{d}");
    }
    assert_eq!(
        fs::metadata(rootfs.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );

    // Its init stops cleanly on SIGTERM (run in a chroot: not PID 1, so it only
    // stops itself and its own sleeper).
    let mut child = Command::new("chroot")
        .arg(&rootfs)
        .arg("/sbin/init")
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "init stays up");
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "init ignored SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// Everything about a tree that unpacking must keep, exactly: per path its type,
/// full mode, owner, mtime, size, contents, link target, extended attributes and
/// link count; and which paths share an inode.
fn exact_snapshot(root: &Path) -> (BTreeMap<String, String>, BTreeSet<Vec<String>>) {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let m = fs::symlink_metadata(&path).unwrap();
        let mut names = vec![0u8; 4096];
        let n = rustix::fs::llistxattr(&path, &mut names[..]).unwrap();
        let mut xattrs: Vec<String> = names[..n]
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|name| {
                let mut value = vec![0u8; 65536];
                let len = rustix::fs::lgetxattr(&path, name, &mut value[..]).unwrap();
                format!(
                    "{}={}",
                    String::from_utf8_lossy(name),
                    hex::encode(&value[..len])
                )
            })
            .collect();
        xattrs.sort();
        let common = format!(
            "mode={:o} owner={}:{} mtime={} xattrs=[{}]",
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime(),
            xattrs.join(",")
        );
        let desc = if m.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                stack.push(e.unwrap().path());
            }
            format!("dir {common}")
        } else if m.file_type().is_symlink() {
            format!(
                "symlink {common} -> {}",
                fs::read_link(&path).unwrap().display()
            )
        } else {
            inodes.entry(m.ino()).or_default().push(rel.clone());
            let data = fs::read(&path).unwrap();
            format!(
                "file {common} size={} sha256={} nlink={}",
                m.size(),
                hex::encode(Sha256::digest(&data)),
                m.nlink()
            )
        };
        out.insert(rel, desc);
    }
    let shared = inodes
        .into_values()
        .filter(|paths| paths.len() > 1)
        .map(|mut paths| {
            paths.sort();
            paths
        })
        .collect();
    (out, shared)
}

fn set_mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("{}: {name}: {e}", path.display()));
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// A 64 MiB file with three small data regions: what `tar -S` must keep sparse.
const SPARSE_SIZE: u64 = 64 << 20;

fn write_sparse(path: &Path, regions: &[u64]) {
    use std::os::unix::fs::FileExt;
    let f = fs::File::create(path).unwrap();
    f.set_len(SPARSE_SIZE).unwrap();
    for (i, at) in regions.iter().enumerate() {
        f.write_all_at(format!("region {i} at {at}\n").as_bytes(), *at)
            .unwrap();
    }
}

fn allocated(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().blocks() * 512
}

/// A tree with what distributions ship — setuid/setgid binaries, file capabilities
/// (one whose bytes hold a newline), user and trusted attributes on files and
/// directories, hard links, a sparse file, odd modes and owners (one too large for
/// a ustar header) — archived by GNU tar with `--xattrs` and unpacked exactly.
#[test]
fn a_gnu_tar_with_xattrs_round_trips_exactly() {
    const T: &str = "a_gnu_tar_with_xattrs_round_trips_exactly";
    if !support::privileged(T)
        || !support::require(T, "GNU tar", have("tar"))
        || !support::require(T, "setcap (libcap2-bin)", have("setcap"))
    {
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    let p = |rel: &str| src.join(rel);
    let file = |rel: &str, data: &[u8], mode: u32, uid: u32, gid: u32| {
        fs::write(p(rel), data).unwrap();
        std::os::unix::fs::chown(p(rel), Some(uid), Some(gid)).unwrap();
        fs::set_permissions(p(rel), fs::Permissions::from_mode(mode)).unwrap();
    };
    let dir = |rel: &str, uid: u32, gid: u32| {
        fs::create_dir_all(p(rel)).unwrap();
        std::os::unix::fs::chown(p(rel), Some(uid), Some(gid)).unwrap();
    };
    for d in ["bin", "sbin", "usr/share/doc", "var/lib", "tmp", "data"] {
        dir(d, 0, 0);
    }
    dir("home/user", 1000, 1000);
    dir("srv/big-ids", 3_000_000, 3_000_001);
    dir("ro", 7, 8);
    file("bin/su", b"setuid root\n", 0o4755, 0, 0);
    file("bin/crontab", b"setgid crontab\n", 0o2755, 0, 107);
    file("bin/both", b"setuid and setgid\n", 0o6711, 1000, 50);
    file("bin/ping", b"ping with cap_net_raw\n", 0o755, 0, 0);
    file(
        "sbin/tool",
        b"a capability whose bytes hold 0x0a\n",
        0o750,
        0,
        4,
    );
    file("home/user/.profile", b"# profile\n", 0o600, 1000, 1000);
    file("home/user/odd", b"odd mode\n", 0o0070, 1001, 1002);
    file("home/user/nothing", b"mode 0\n", 0, 1000, 1000);
    file(
        "srv/big-ids/f",
        b"owner beyond 2097151\n",
        0o640,
        3_000_000,
        3_000_001,
    );
    file("usr/share/doc/readme", b"attributes\n", 0o644, 0, 0);
    file("data/a", b"three names, one inode\n", 0o4750, 0, 0);
    fs::hard_link(p("data/a"), p("data/b")).unwrap();
    fs::hard_link(p("data/a"), p("bin/a-too")).unwrap();
    fs::hard_link(p("bin/su"), p("bin/su2")).unwrap();
    file("ro/file", b"read-only\n", 0o444, 7, 8);
    std::os::unix::fs::symlink("su", p("bin/sh")).unwrap();
    std::os::unix::fs::lchown(p("bin/sh"), Some(5), Some(6)).unwrap();
    std::os::unix::fs::symlink("/usr/share/doc", p("doc")).unwrap();
    let regions = [1 << 20, 40 << 20, SPARSE_SIZE - 64];
    write_sparse(&p("var/lib/sparse"), &regions);
    std::os::unix::fs::chown(p("var/lib/sparse"), Some(0), Some(0)).unwrap();

    run(Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(p("bin/ping")));
    // cap_dac_override (1) and cap_fowner (3): the permitted byte is 0x0a.
    run(Command::new("setcap")
        .arg("cap_dac_override,cap_fowner+eip")
        .arg(p("sbin/tool")));
    set_xattr(&p("usr/share/doc/readme"), "user.mime_type", b"text/plain");
    set_xattr(
        &p("usr/share/doc/readme"),
        "user.binary",
        b"\x00\x01\n\n\xff=x\n",
    );
    set_xattr(
        &p("usr/share/doc/readme"),
        "trusted.md5",
        b"0123456789abcdef",
    );
    set_xattr(&p("usr/share/doc"), "user.dir-note", b"on a directory");
    set_xattr(&p("data/a"), "user.linked", b"shared by three names");
    set_xattr(&p("bin/sh"), "trusted.on-symlink", b"link itself");

    // Fixed times, then directory modes (after their contents), deepest first.
    for (i, rel) in [
        "bin/su",
        "bin/crontab",
        "bin/both",
        "bin/ping",
        "sbin/tool",
        "home/user/.profile",
        "home/user/odd",
        "home/user/nothing",
        "srv/big-ids/f",
        "usr/share/doc/readme",
        "data/a",
        "ro/file",
        "var/lib/sparse",
        "bin/sh",
        "doc",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&p(rel), 1_600_000_000 + i as i64 * 1000);
    }
    for (rel, mode) in [
        ("ro", 0o555),
        ("tmp", 0o1777),
        ("home/user", 0o700),
        ("srv/big-ids", 0o2770),
        ("usr/share/doc", 0o755),
        ("", 0o755),
    ] {
        fs::set_permissions(p(rel), fs::Permissions::from_mode(mode)).unwrap();
    }
    for (i, rel) in [
        "usr/share/doc",
        "usr/share",
        "usr",
        "var/lib",
        "var",
        "home/user",
        "home",
        "srv/big-ids",
        "srv",
        "ro",
        "tmp",
        "bin",
        "sbin",
        "data",
        "",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&p(rel), 1_500_000_000 + i as i64 * 100);
    }
    assert!(
        allocated(&p("var/lib/sparse")) < 1 << 20,
        "the source is sparse"
    );

    let archive = td.path().join("distro.tar");
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-S", "-cpf"])
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg("."));
    let store = ImageStore::open(td.path().join("data")).unwrap();
    let rec = store.import(&archive, opts("distro", "1")).unwrap();
    let rootfs = store.rootfs_path(&rec.sha256.to_string()).unwrap();

    let (want, want_links) = exact_snapshot(&src);
    let (got, got_links) = exact_snapshot(&rootfs);
    for (path, desc) in &want {
        assert_eq!(got.get(path), Some(desc), "{path:?}");
    }
    assert_eq!(got, want);
    assert_eq!(got_links, want_links, "the same names share inodes");
    assert_eq!(
        got_links,
        BTreeSet::from([
            vec!["bin/a-too".to_owned(), "data/a".into(), "data/b".into()],
            vec!["bin/su".to_owned(), "bin/su2".into()],
        ])
    );
    // Spot checks of what the comparison covers, in the words of the tools.
    let getcap = Command::new("getcap")
        .arg(rootfs.join("bin/ping"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&getcap.stdout).contains("cap_net_raw=ep"),
        "{getcap:?}"
    );
    assert_eq!(
        fs::metadata(rootfs.join("bin/both")).unwrap().mode() & 0o7777,
        0o6711
    );
    let sparse = rootfs.join("var/lib/sparse");
    assert_eq!(fs::metadata(&sparse).unwrap().len(), SPARSE_SIZE);
    assert!(
        allocated(&sparse) < 1 << 20,
        "the unpacked sparse file takes {} bytes on disk",
        allocated(&sparse)
    );
}

/// Every sparse format GNU tar writes (old GNU, pax 0.0, 0.1 and 1.0), with more
/// regions than an old GNU header holds, unpacks to the same sparse file.
#[test]
fn every_gnu_sparse_format_stays_sparse() {
    const T: &str = "every_gnu_sparse_format_stays_sparse";
    if !support::privileged(T) || !support::require(T, "GNU tar", have("tar")) {
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let src = td.path().join("src");
    fs::create_dir(&src).unwrap();
    let regions: Vec<u64> = (0..10).map(|i| i * (6 << 20) + 12345).collect();
    write_sparse(&src.join("holes"), &regions);
    let want = fs::read(src.join("holes")).unwrap();
    let store = ImageStore::open(td.path().join("data")).unwrap();
    for (label, args) in [
        ("old GNU", &["--format=gnu"][..]),
        ("pax 0.0", &["--format=posix", "--sparse-version=0.0"]),
        ("pax 0.1", &["--format=posix", "--sparse-version=0.1"]),
        ("pax 1.0", &["--format=posix", "--sparse-version=1.0"]),
    ] {
        let archive = td.path().join(format!("{}.tar", label.replace(' ', "-")));
        run(Command::new("tar")
            .args(args)
            .arg("-Scf")
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg("holes"));
        assert!(
            fs::metadata(&archive).unwrap().len() < 1 << 20,
            "{label}: the archive is sparse too"
        );
        let rec = store
            .import(&archive, opts(&label.replace([' ', '.'], "-"), "1"))
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let rootfs = store.rootfs_path(&rec.sha256.to_string()).unwrap();
        let names: Vec<_> = fs::read_dir(&rootfs)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["holes"], "{label}: the real name");
        let got = rootfs.join("holes");
        assert!(fs::read(&got).unwrap() == want, "{label}: contents");
        assert!(
            allocated(&got) < 1 << 20,
            "{label}: {} bytes on disk",
            allocated(&got)
        );
    }
}

/// The store's limits apply to imports that give none; an import's own win.
#[test]
fn store_limits_apply_unless_the_import_gives_its_own() {
    let td = tempfile::tempdir().unwrap();
    let tiny = zonefleet_agent::image::UnpackLimits {
        ratio: 0,
        floor_bytes: 1000,
        max_entries: 1_000,
    };
    let store = ImageStore::open(td.path().join("data"))
        .unwrap()
        .with_limits(tiny);
    assert_eq!(store.limits(), &tiny);
    let path = write(td.path(), "app.tar.zst", &zstd(&sample_tar("limits")));
    let err = store.import(&path, opts("app", "1")).unwrap_err();
    assert!(
        matches!(err, ImageError::UnpackedTooLarge { limit, .. }
            | ImageError::DecompressedTooLarge { limit, .. } if limit.bytes == 1000),
        "{err}"
    );
    assert!(err.to_string().contains("limit of 1000 bytes"), "{err}");
    assert_eq!(store_entries(&store), Vec::<String>::new(), "nothing left");
    let rec = store
        .import(
            &path,
            ImportOptions {
                limits: Some(Default::default()),
                ..opts("app", "1")
            },
        )
        .unwrap();
    assert_eq!(rec.name, "app");
}

#[test]
fn an_import_records_the_halt_signal_it_is_given_and_refuses_a_bad_one() {
    let td = tempfile::tempdir().unwrap();
    let data = td.path().join("data");
    let archive = write(td.path(), "sig.tar", &sample_tar("halt-signal"));
    let agent = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_zonefleet-agent"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap()
    };
    let path = archive.to_str().unwrap();
    let refused = agent(&["image", "import", path, "--halt-signal", "9"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("--halt-signal") && err.contains("\"9\" is a signal number"),
        "{err}"
    );
    assert!(
        !data.join("images").exists()
            || ImageStore::open(&data).unwrap().list().unwrap().is_empty(),
        "a refused import leaves no image"
    );

    let out = agent(&["image", "import", path, "--halt-signal", "rtmin+3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Kept in the manifest, canonically, for every later process to read.
    let list = agent(&["image", "list", "-o", "json"]);
    let images: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(images[0]["halt_signal"], "SIGRTMIN+3", "{images}");
    assert_eq!(
        ImageStore::open(&data).unwrap().list().unwrap()[0]
            .halt_signal
            .map(|s| s.to_string())
            .as_deref(),
        Some("SIGRTMIN+3")
    );
}
