//! The stock Debian image of the whole-system zone tests: built once per machine
//! with `deploy/images/build-debian.sh` (debootstrap from the mirror apt uses)
//! and cached in [`CACHE`], so later runs only import it. A lock file keeps two
//! test processes from building it at once.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use zonefleet_agent::zone::ZoneHost;

/// Where the archive is cached between runs (and between test binaries).
pub const CACHE: &str = "/var/cache/zonefleet-tests";

/// The image's name in a test host's store.
pub const IMAGE: &str = "debian";

/// The cached archive, built when missing; panics when the build fails.
pub fn archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        std::fs::create_dir_all(CACHE).expect("create the image cache");
        let out = Path::new(CACHE).join("debian-bookworm.tar");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Path::new(CACHE).join(".lock"))
            .expect("open the cache lock");
        // SAFETY: flock on a descriptor `lock` owns for the whole build.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        if !out.exists() {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images/build-debian.sh");
            let status = Command::new("sh")
                .arg(&script)
                .arg(&out)
                .stdout(Stdio::null())
                .status()
                .expect("run build-debian.sh");
            assert!(status.success(), "build-debian.sh failed: {status}");
        }
        out
    })
}

/// Puts the Debian image into `host`'s store as [`IMAGE`]: imported once per
/// test process into a template store, then hard-linked into each host's
/// (an image's directory is never modified after import, so sharing its
/// inodes is safe, and a test host gets it in milliseconds, not an import's
/// seconds).
pub fn import(host: &ZoneHost) {
    let from = template();
    let to = host
        .data_dir()
        .join("images")
        .join(from.file_name().expect("an image directory"));
    let status = Command::new("cp")
        .arg("-a")
        .arg("--link")
        .arg(from)
        .arg(&to)
        .status()
        .expect("run cp");
    assert!(status.success(), "hard-link the Debian image: {status}");
    assert!(
        host.images.get(IMAGE).is_ok(),
        "the linked image is in the store"
    );
}

/// The imported image's directory in the template store (made once per
/// process; those of finished processes are removed first).
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for stale in super::stale_entries(tmp, "debian-store-", '-') {
            let _ = std::fs::remove_dir_all(tmp.join(stale));
        }
        let dir = tmp.join(format!("debian-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the template store");
        let store = zonefleet_agent::image::ImageStore::open(&dir).expect("open template store");
        let image = store
            .import(
                archive(),
                zonefleet_agent::image::ImportOptions {
                    name: Some(IMAGE.into()),
                    version: Some("12".into()),
                    ..Default::default()
                },
            )
            .expect("import the Debian image");
        store
            .rootfs_path(&image.sha256.to_string())
            .expect("the imported image's rootfs")
            .parent()
            .expect("an image directory")
            .to_path_buf()
    })
}
