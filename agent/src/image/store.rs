//! `ImageStore`: import, look up, delete and measure the images of this host.
//!
//! Layout under the agent's data dir:
//!
//! ```text
//! <data>/images/                      mode 0700: images hold setuid binaries
//!   <sha256>/manifest.json            the image's ImageManifest, written once
//!   <sha256>/rootfs/                  the unpacked layer, never modified after import
//!   .tmp-<random>/                    an import (or delete) in progress
//! ```
//!
//! An import unpacks into `.tmp-<random>` on the same filesystem and renames it to
//! `<sha256>` only once everything checked out, so a `<sha256>` directory is always
//! complete. Each `.tmp-*` directory is `flock`ed by the process working in it; the
//! sweep at open removes only those nobody holds (leftovers of a crash).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{flock, FlockOperation};
use uuid::Uuid;
use zonefleet_proto::image::{self as fleet_image, ImageManifest};
use zonefleet_proto::spec::Sha256Digest;

use super::archive;
use super::error::{ImageError, Result};
use super::limits::UnpackLimits;
use super::manifest::{
    default_name, normalize_sha256, validate_name, validate_version, ImportOptions,
};

const TMP_PREFIX: &str = ".tmp-";
const MANIFEST: &str = "manifest.json";
const ROOTFS: &str = "rootfs";
/// Shortest bare hex string taken as a sha256 prefix (with `sha256:` any length goes).
const MIN_BARE_PREFIX: usize = 8;

/// The image store of one host, rooted at `<data>/images`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    /// The unpacked-size and entry limits of imports that give none of their own.
    limits: UnpackLimits,
}

/// Disk space the unpacked images take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Number of images.
    pub images: usize,
    /// Sum of the archives' sizes as imported, in bytes.
    pub archive_bytes: u64,
    /// Bytes allocated on disk by all the unpacked rootfs trees (hard links counted once).
    pub unpacked_bytes: u64,
    /// `(sha256, bytes allocated)` of each image's rootfs, sorted by sha256.
    pub per_image: Vec<(String, u64)>,
}

/// A stored record with the time it was imported (its manifest's mtime).
struct Stored {
    record: ImageManifest,
    imported: SystemTime,
}

/// A `.tmp-*` directory held (locked) by this process; removed on drop unless kept.
struct TmpDir {
    path: PathBuf,
    lock: File,
    keep: bool,
}

impl TmpDir {
    fn create(root: &Path) -> Result<TmpDir> {
        let path = root.join(format!("{TMP_PREFIX}{}", Uuid::new_v4().simple()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| ImageError::io(&path, e))?;
        let lock = lock_dir(&path, false).map_err(|e| ImageError::io(&path, e))?;
        Ok(TmpDir {
            path,
            lock,
            keep: false,
        })
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = fs::remove_dir_all(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove temporary image dir");
                }
            }
        }
    }
}

/// Opens a directory and takes an exclusive `flock` on it (non-blocking when `try_only`).
fn lock_dir(path: &Path, try_only: bool) -> io::Result<File> {
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(dir_open_flags())
        .open(path)?;
    let op = if try_only {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::LockExclusive
    };
    flock(&dir, op)?;
    Ok(dir)
}

/// `O_DIRECTORY | O_NOFOLLOW`: a store directory is never reached through a symlink.
fn dir_open_flags() -> i32 {
    (rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW).bits() as i32
}

fn is_sha256(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn fsync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io(path, e))
}

impl ImageStore {
    /// Opens (creating if needed) the store under `<data_dir>/images`, makes it
    /// private (0700) and removes what crashed imports and deletes left behind.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<ImageStore> {
        let root = data_dir.as_ref().join("images");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| ImageError::io(&root, e))?;
        // Unpacked images hold setuid-root binaries: no host user may reach them.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .map_err(|e| ImageError::io(&root, e))?;
        let store = ImageStore {
            root,
            limits: UnpackLimits::default(),
        };
        store.sweep()?;
        Ok(store)
    }

    /// The store with `limits` for the imports that give none of their own
    /// ([`ImportOptions::limits`]); the agent's `[images]` settings.
    pub fn with_limits(mut self, limits: UnpackLimits) -> ImageStore {
        self.limits = limits;
        self
    }

    /// The limits of imports that give none of their own.
    pub fn limits(&self) -> &UnpackLimits {
        &self.limits
    }

    /// The store's directory, `<data>/images`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes `.tmp-*` leftovers that no live process holds.
    fn sweep(&self) -> Result<()> {
        for dirent in fs::read_dir(&self.root).map_err(|e| ImageError::io(&self.root, e))? {
            let dirent = dirent.map_err(|e| ImageError::io(&self.root, e))?;
            let name = dirent.file_name();
            if !name.to_string_lossy().starts_with(TMP_PREFIX) {
                continue;
            }
            let path = dirent.path();
            let is_dir = dirent.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let result = if !is_dir {
                fs::remove_file(&path)
            } else {
                match lock_dir(&path, true) {
                    // Held by a live import or delete: not ours to remove.
                    Err(e)
                        if e.raw_os_error()
                            == Some(rustix::io::Errno::WOULDBLOCK.raw_os_error()) =>
                    {
                        continue
                    }
                    Err(e) => Err(e),
                    Ok(_lock) => fs::remove_dir_all(&path),
                }
            };
            match result {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed stale temporary image dir")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io(&path, e)),
            }
        }
        Ok(())
    }

    /// Imports an archive, or returns the existing record when an archive with the
    /// same sha256 is already stored (then `options` are not applied: the first
    /// import named it). Nothing is left behind when it fails.
    pub fn import(
        &self,
        archive_path: impl AsRef<Path>,
        options: ImportOptions,
    ) -> Result<ImageManifest> {
        let archive_path = archive_path.as_ref();
        let name = match options.name {
            Some(name) => name,
            None => default_name(archive_path),
        };
        validate_name(&name)?;
        let version = options.version.unwrap_or_else(|| "0".to_string());
        validate_version(&version)?;
        let expected = options
            .expected_sha256
            .as_deref()
            .map(normalize_sha256)
            .transpose()?;

        // Hash first: a known image is a no-op, and a wrong archive is refused
        // before a single untrusted byte is parsed.
        let (sha256, _) = archive::hash_file(archive_path)?;
        if let Some(expected) = expected {
            if expected != sha256 {
                return Err(ImageError::Sha256Mismatch {
                    expected,
                    actual: sha256,
                });
            }
        }
        if let Some(existing) = self.read_record(&sha256)? {
            return Ok(existing);
        }
        self.check_version_free(&name, &version)?;

        let tmp = TmpDir::create(&self.root)?;
        let rootfs = tmp.path.join(ROOTFS);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&rootfs)
            .and_then(|()| fs::set_permissions(&rootfs, fs::Permissions::from_mode(0o755)))
            .map_err(|e| ImageError::io(&rootfs, e))?;
        let limits = options.limits.unwrap_or(self.limits);
        let unpacked = archive::unpack(archive_path, &rootfs, &limits)?;
        if unpacked.sha256 != sha256 {
            return Err(ImageError::ArchiveChanged {
                archive: archive_path.to_path_buf(),
                first: sha256,
                second: unpacked.sha256,
            });
        }
        let record = ImageManifest {
            uuid: options.uuid.unwrap_or_else(Uuid::new_v4),
            name,
            version,
            sha256: digest(&sha256)?,
            size: unpacked.size,
            min_ram: (options.min_ram_mib != 0).then_some(options.min_ram_mib),
            description: options.description,
            halt_signal: options.halt_signal,
        };
        let manifest = tmp.path.join(MANIFEST);
        write_manifest(&manifest, &record)?;
        // The rename below publishes the image: its contents must be on disk first,
        // or a crash could leave a complete-looking image with empty files.
        rustix::fs::syncfs(&tmp.lock).map_err(|e| ImageError::io(&tmp.path, e.into()))?;

        let _store_lock = self.lock()?;
        if let Some(existing) = self.read_record(&record.sha256.to_string())? {
            // Another import of the same archive won the race.
            return Ok(existing);
        }
        self.check_version_free(&record.name, &record.version)?;
        let final_dir = self.root.join(record.sha256.to_string());
        let mut tmp = tmp;
        fs::rename(&tmp.path, &final_dir).map_err(|e| ImageError::io(&final_dir, e))?;
        tmp.keep = true;
        fs::set_permissions(&final_dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| ImageError::io(&final_dir, e))?;
        fsync_dir(&self.root)?;
        tracing::info!(
            name = %record.name, version = %record.version, sha256 = %record.sha256,
            entries = unpacked.entries, "imported image"
        );
        Ok(record)
    }

    /// Every image, sorted by name, then version (lowest first), then import time.
    pub fn list(&self) -> Result<Vec<ImageManifest>> {
        Ok(self.stored()?.into_iter().map(|s| s.record).collect())
    }

    /// Finds one image by reference:
    /// - a uuid (hyphenated form);
    /// - `sha256:<hex>`: the full sha256 or a prefix of it that matches one image;
    /// - `name@version`: exactly that version;
    /// - `name`: the latest version of that name — the highest by
    ///   [`compare_versions`], and of versions that compare equal the newest import;
    /// - a bare hex string of 8 or more digits that is no image's name: a sha256 prefix.
    pub fn get(&self, reference: &str) -> Result<ImageManifest> {
        let stored = self.stored()?;
        let not_found = || ImageError::NotFound(reference.to_string());

        if reference.len() == 36 {
            if let Ok(uuid) = Uuid::parse_str(reference) {
                return stored
                    .into_iter()
                    .find(|s| s.record.uuid == uuid)
                    .map(|s| s.record)
                    .ok_or_else(not_found);
            }
        }
        if let Some(prefix) = reference.strip_prefix("sha256:") {
            return by_sha_prefix(stored, reference, &prefix.to_ascii_lowercase());
        }
        if let Some((name, version)) = reference.split_once('@') {
            return stored
                .into_iter()
                .find(|s| s.record.name == name && s.record.version == version)
                .map(|s| s.record)
                .ok_or_else(not_found);
        }
        // The fleet's rule: the highest version; `stored` is in import order among
        // versions that compare equal, and the last given wins: the newest import.
        if let Some(latest) = fleet_image::highest(
            stored
                .iter()
                .map(|s| &s.record)
                .filter(|r| r.name == reference),
        ) {
            return Ok(latest.clone());
        }
        if reference.len() >= MIN_BARE_PREFIX && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            return by_sha_prefix(stored, reference, &reference.to_ascii_lowercase());
        }
        Err(not_found())
    }

    /// The unpacked root filesystem of the image with this sha256 (full, any case,
    /// `sha256:` prefix allowed). Zones use it as a read-only lower layer; the store
    /// never modifies it.
    pub fn rootfs_path(&self, sha256: &str) -> Result<PathBuf> {
        let sha = normalize_sha256(sha256)?;
        let path = self.root.join(&sha).join(ROOTFS);
        if self.root.join(&sha).join(MANIFEST).is_file() && path.is_dir() {
            Ok(path)
        } else {
            Err(ImageError::NotFound(sha256.to_string()))
        }
    }

    /// Deletes the image `reference` names (see [`get`](Self::get)), unless
    /// `in_use` says a zone uses it. Returns the deleted record.
    pub fn delete(
        &self,
        reference: &str,
        in_use: impl Fn(&ImageManifest) -> bool,
    ) -> Result<ImageManifest> {
        let _store_lock = self.lock()?;
        let record = self.get(reference)?;
        if in_use(&record) {
            return Err(ImageError::InUse {
                name: record.name,
                version: record.version,
                sha256: record.sha256.to_string(),
            });
        }
        let dir = self.root.join(record.sha256.to_string());
        // Hold the image dir's lock through the rename so the sweep leaves it to us.
        let held = lock_dir(&dir, false).map_err(|e| ImageError::io(&dir, e))?;
        let doomed = self
            .root
            .join(format!("{TMP_PREFIX}del-{}", Uuid::new_v4().simple()));
        fs::rename(&dir, &doomed).map_err(|e| ImageError::io(&dir, e))?;
        fsync_dir(&self.root)?;
        let tmp = TmpDir {
            path: doomed,
            lock: held,
            keep: false,
        };
        drop(tmp); // removes the tree
        tracing::info!(name = %record.name, version = %record.version, sha256 = %record.sha256, "deleted image");
        Ok(record)
    }

    /// Disk space taken by the unpacked images.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let mut usage = DiskUsage::default();
        let mut seen = HashSet::new();
        let mut stored = self.stored()?;
        stored.sort_by_key(|a| a.record.sha256);
        for s in stored {
            let rootfs = self.root.join(s.record.sha256.to_string()).join(ROOTFS);
            let bytes = tree_bytes(&rootfs, &mut seen)?;
            usage.images += 1;
            usage.archive_bytes += s.record.size;
            usage.unpacked_bytes += bytes;
            usage.per_image.push((s.record.sha256.to_string(), bytes));
        }
        Ok(usage)
    }

    /// Takes the store-wide lock that orders publishing and deleting images (a
    /// fresh descriptor each time, so it also excludes other threads).
    fn lock(&self) -> Result<File> {
        lock_dir(&self.root, false).map_err(|e| ImageError::io(&self.root, e))
    }

    fn check_version_free(&self, name: &str, version: &str) -> Result<()> {
        match self
            .stored()?
            .into_iter()
            .find(|s| s.record.name == name && s.record.version == version)
        {
            Some(s) => Err(ImageError::VersionExists {
                name: name.to_string(),
                version: version.to_string(),
                sha256: s.record.sha256.to_string(),
            }),
            None => Ok(()),
        }
    }

    fn read_record(&self, sha256: &str) -> Result<Option<ImageManifest>> {
        Ok(self.read_stored(sha256)?.map(|s| s.record))
    }

    fn read_stored(&self, sha256: &str) -> Result<Option<Stored>> {
        let path = self.root.join(sha256).join(MANIFEST);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ImageError::io(&path, e)),
        };
        let imported = file
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|e| ImageError::io(&path, e))?;
        let record: ImageManifest =
            serde_json::from_reader(io::BufReader::new(file)).map_err(|source| {
                ImageError::Manifest {
                    path: path.clone(),
                    source,
                }
            })?;
        Ok(Some(Stored { record, imported }))
    }

    /// Every stored image, sorted for `list` and `get`. A damaged manifest is
    /// reported in the log and skipped rather than hiding every other image.
    fn stored(&self) -> Result<Vec<Stored>> {
        let mut out = Vec::new();
        for dirent in fs::read_dir(&self.root).map_err(|e| ImageError::io(&self.root, e))? {
            let dirent = dirent.map_err(|e| ImageError::io(&self.root, e))?;
            let name = dirent.file_name().to_string_lossy().into_owned();
            if !is_sha256(&name) {
                continue;
            }
            match self.read_stored(&name) {
                Ok(Some(s)) if s.record.sha256.to_string() == name => out.push(s),
                Ok(Some(s)) => {
                    tracing::warn!(dir = %name, manifest_sha256 = %s.record.sha256, "manifest does not match its directory; skipped")
                }
                Ok(None) => tracing::warn!(dir = %name, "image dir without manifest; skipped"),
                Err(e) => {
                    tracing::warn!(dir = %name, error = %e, "unreadable image manifest; skipped")
                }
            }
        }
        out.sort_by(|a, b| {
            a.record
                .name
                .cmp(&b.record.name)
                .then_with(|| fleet_image::compare_versions(&a.record.version, &b.record.version))
                .then_with(|| a.imported.cmp(&b.imported))
                .then_with(|| a.record.sha256.cmp(&b.record.sha256))
        });
        Ok(out)
    }
}

fn by_sha_prefix(stored: Vec<Stored>, reference: &str, prefix: &str) -> Result<ImageManifest> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ImageError::InvalidField {
            field: "sha256",
            value: reference.to_string(),
            reason: "hex digits (a prefix of the image's sha256)",
        });
    }
    let mut matches: Vec<ImageManifest> = stored
        .into_iter()
        .filter(|s| s.record.sha256.to_string().starts_with(prefix))
        .map(|s| s.record)
        .collect();
    match matches.len().cmp(&1) {
        Ordering::Equal => Ok(matches.remove(0)),
        Ordering::Less => Err(ImageError::NotFound(reference.to_string())),
        Ordering::Greater => Err(ImageError::Ambiguous {
            reference: reference.to_string(),
            matches: matches.into_iter().map(|r| r.sha256.to_string()).collect(),
        }),
    }
}

/// The digest of an archive as [`archive::hash_file`] writes it (lowercase hex).
fn digest(hex: &str) -> Result<Sha256Digest> {
    Sha256Digest::parse(hex).map_err(|_| ImageError::InvalidField {
        field: "sha256",
        value: hex.to_string(),
        reason: "64 lowercase hex digits",
    })
}

fn write_manifest(path: &Path, record: &ImageManifest) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(record).map_err(|source| ImageError::Manifest {
        path: path.to_path_buf(),
        source,
    })?;
    json.push(b'\n');
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| ImageError::io(path, e))?;
    file.write_all(&json)
        .and_then(|()| file.sync_all())
        .map_err(|e| ImageError::io(path, e))
}

/// Bytes allocated under `dir`, never following symlinks, counting each inode once.
fn tree_bytes(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = fs::symlink_metadata(&dir).map_err(|e| ImageError::io(&dir, e))?;
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        for dirent in fs::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))? {
            let dirent = dirent.map_err(|e| ImageError::io(&dir, e))?;
            let path = dirent.path();
            let meta = fs::symlink_metadata(&path).map_err(|e| ImageError::io(&path, e))?;
            if meta.is_dir() {
                stack.push(path);
            } else if seen.insert((meta.dev(), meta.ino())) {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}
