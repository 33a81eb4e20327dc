//! Which signal asks a zone's init to shut down: the one rule `zone halt` follows
//! (`docs/zone-spec.md`, `halt_signal`).
//!
//! First found: the spec's `halt_signal`, the image manifest's, then what the
//! image's init is: `init[0]` resolved inside the image's root filesystem —
//! following symlinks there, never the host's — to a file named `systemd` is
//! systemd (`SIGRTMIN+3`: power off); to busybox run as its `init` applet is
//! busybox init (`SIGUSR2`: power off; its `SIGTERM` reboots); anything else gets
//! `SIGTERM`.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use zonefleet_proto::spec::{Signal, StdSignal};

use super::record::ZoneRecord;
use super::ZoneHost;

/// Most symlinks followed resolving one path, as the kernel's `ELOOP` limit.
const MAX_SYMLINKS: usize = 40;

/// Where a zone's halt signal came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltSignalSource {
    /// The zone's spec names it.
    Spec,
    /// The image's manifest names it.
    Image,
    /// The image's init is systemd.
    Systemd,
    /// The image's init is busybox init.
    Busybox,
    /// Nothing names or reveals one: `SIGTERM`.
    Default,
}

/// The signal `zone halt` sends a zone's init, and why that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaltSignal {
    /// The signal.
    pub signal: Signal,
    /// Where it came from.
    pub source: HaltSignalSource,
}

/// The halt signal of a zone whose spec names `spec`, whose image's manifest names
/// `image`, whose image's root filesystem is `rootfs` (`None`: not at hand, nothing
/// is detected) and whose init is `init` (the spec's argv; `/sbin/init` when empty).
pub fn resolve(
    spec: Option<Signal>,
    image: Option<Signal>,
    rootfs: Option<&Path>,
    init: &[String],
) -> HaltSignal {
    let (signal, source) = match (spec, image) {
        (Some(signal), _) => (signal, HaltSignalSource::Spec),
        (None, Some(signal)) => (signal, HaltSignalSource::Image),
        (None, None) => match rootfs.and_then(|root| detect(root, init)) {
            Some(found) => found,
            None => (Signal::TERM, HaltSignalSource::Default),
        },
    };
    HaltSignal { signal, source }
}

/// What the image's init is, when it is one whose shutdown request is known.
fn detect(rootfs: &Path, init: &[String]) -> Option<(Signal, HaltSignalSource)> {
    let argv0 = init
        .first()
        .map_or(zonefleet_proto::spec::DEFAULT_INIT, String::as_str);
    let target = resolve_in_root(rootfs, argv0)?;
    let file = target.file_name()?;
    if file == "systemd" {
        return Some((Signal::SYSTEMD_HALT, HaltSignalSource::Systemd));
    }
    // busybox runs the applet its argv[0] names (zsched passes `init` as the argv,
    // so argv[0] is `init[0]` as written), or, run as `busybox`, the one argv[1] names.
    let applet = match Path::new(argv0).file_name() {
        Some(name) if name == "busybox" => init.get(1).map(OsStr::new),
        name => name,
    };
    let runs_init = applet.is_some_and(|a| a == "init" || a == "linuxrc");
    (file == "busybox" && runs_init).then_some((Signal::BUSYBOX_HALT, HaltSignalSource::Busybox))
}

/// `path` (absolute, as the zone sees it) resolved inside `root` as if `root` were
/// `/`: every symlink on the way followed there, `..` never above `root`. Returns
/// the host path of what it names, or `None` when it names nothing (a dangling
/// link, a missing component, a loop).
pub fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    // What is left to walk, last component first, and what has been walked.
    let mut pending: Vec<PathBuf> = components(Path::new(path));
    pending.reverse();
    let mut walked: Vec<PathBuf> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part.as_os_str() == ".." {
            walked.pop();
            continue;
        }
        let here: PathBuf = root.join(walked.iter().collect::<PathBuf>()).join(&part);
        let meta = std::fs::symlink_metadata(&here).ok()?;
        if !meta.file_type().is_symlink() {
            walked.push(part);
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return None;
        }
        let target = std::fs::read_link(&here).ok()?;
        if target.is_absolute() {
            walked.clear();
        }
        let mut parts = components(&target);
        parts.reverse();
        pending.extend(parts);
    }
    Some(root.join(walked.iter().collect::<PathBuf>()))
}

/// The normal and `..` components of a path (`/`, `.` and empty ones dropped).
fn components(path: &Path) -> Vec<PathBuf> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(PathBuf::from(name)),
            Component::ParentDir => Some(PathBuf::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// The host's number for `signal`. Real-time signals count from the C library's
/// `SIGRTMIN`/`SIGRTMAX` (glibc's 34 and 64), as the zone's init (systemd, linked
/// against glibc) counts them.
pub fn number(signal: Signal) -> i32 {
    match signal {
        Signal::Std(sig) => std_number(sig),
        Signal::RtMin(n) => libc::SIGRTMIN() + i32::from(n),
        Signal::RtMax(n) => libc::SIGRTMAX() - i32::from(n),
    }
}

fn std_number(sig: StdSignal) -> i32 {
    use StdSignal as S;
    match sig {
        S::Hup => libc::SIGHUP,
        S::Int => libc::SIGINT,
        S::Quit => libc::SIGQUIT,
        S::Ill => libc::SIGILL,
        S::Trap => libc::SIGTRAP,
        S::Abrt => libc::SIGABRT,
        S::Bus => libc::SIGBUS,
        S::Fpe => libc::SIGFPE,
        S::Usr1 => libc::SIGUSR1,
        S::Segv => libc::SIGSEGV,
        S::Usr2 => libc::SIGUSR2,
        S::Pipe => libc::SIGPIPE,
        S::Alrm => libc::SIGALRM,
        S::Term => libc::SIGTERM,
        S::Stkflt => libc::SIGSTKFLT,
        S::Chld => libc::SIGCHLD,
        S::Cont => libc::SIGCONT,
        S::Tstp => libc::SIGTSTP,
        S::Ttin => libc::SIGTTIN,
        S::Ttou => libc::SIGTTOU,
        S::Urg => libc::SIGURG,
        S::Xcpu => libc::SIGXCPU,
        S::Xfsz => libc::SIGXFSZ,
        S::Vtalrm => libc::SIGVTALRM,
        S::Prof => libc::SIGPROF,
        S::Winch => libc::SIGWINCH,
        S::Io => libc::SIGIO,
        S::Pwr => libc::SIGPWR,
        S::Sys => libc::SIGSYS,
    }
}

impl ZoneHost {
    /// The halt signal of the zone `record` describes, by [`resolve`]. An image
    /// this host no longer holds (which a zone's halt must survive) detects nothing.
    pub fn halt_signal(&self, record: &ZoneRecord) -> HaltSignal {
        let sha = &record.image_sha256;
        let manifest = self.images.get(&format!("sha256:{sha}")).ok();
        let rootfs = self.images.rootfs_path(sha).ok();
        resolve(
            record.spec.halt_signal,
            manifest.and_then(|m| m.halt_signal),
            rootfs.as_deref(),
            record.spec.init.as_deref().unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake image root: `files` are made empty, `links` (path, target) made as
    /// symlinks; parent directories as needed.
    fn rootfs(files: &[&str], links: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let at = |p: &str| dir.path().join(p.trim_start_matches('/'));
        for f in files {
            std::fs::create_dir_all(at(f).parent().unwrap()).unwrap();
            std::fs::write(at(f), b"").unwrap();
        }
        for (link, target) in links {
            std::fs::create_dir_all(at(link).parent().unwrap()).unwrap();
            symlink(target, at(link)).unwrap();
        }
        dir
    }

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(ToString::to_string).collect()
    }

    fn detected(root: &tempfile::TempDir, init: &[&str]) -> HaltSignal {
        resolve(None, None, Some(root.path()), &argv(init))
    }

    #[test]
    fn systemd_through_merged_usr_links_is_sigrtmin_3() {
        // Debian's layout: /sbin -> usr/sbin, /sbin/init -> /lib/systemd/systemd,
        // /lib -> usr/lib.
        let root = rootfs(
            &["/usr/lib/systemd/systemd"],
            &[
                ("/sbin", "usr/sbin"),
                ("/lib", "usr/lib"),
                ("/usr/sbin/init", "/lib/systemd/systemd"),
            ],
        );
        let found = detected(&root, &[]);
        assert_eq!(found.signal, Signal::SYSTEMD_HALT);
        assert_eq!(found.source, HaltSignalSource::Systemd);
        assert_eq!(found.signal.to_string(), "SIGRTMIN+3");
        // Fedora's relative link, named explicitly.
        let root = rootfs(
            &["/usr/lib/systemd/systemd"],
            &[("/usr/sbin/init", "../lib/systemd/systemd")],
        );
        assert_eq!(
            detected(&root, &["/usr/sbin/init"]).source,
            HaltSignalSource::Systemd
        );
    }

    #[test]
    fn busybox_init_is_sigusr2_but_busybox_sh_is_not() {
        let root = rootfs(
            &["/bin/busybox"],
            &[("/sbin/init", "/bin/busybox"), ("/bin/sh", "busybox")],
        );
        let found = detected(&root, &[]);
        assert_eq!(
            (found.signal, found.source),
            (Signal::BUSYBOX_HALT, HaltSignalSource::Busybox)
        );
        assert_eq!(
            detected(&root, &["/bin/busybox", "init"]).source,
            HaltSignalSource::Busybox
        );
        // A shell is not init, though the same file: SIGTERM, which its trap sees.
        let sh = detected(&root, &["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 9"]);
        assert_eq!(
            (sh.signal, sh.source),
            (Signal::TERM, HaltSignalSource::Default)
        );
        assert_eq!(
            detected(&root, &["/bin/busybox", "sh"]).source,
            HaltSignalSource::Default
        );
    }

    #[test]
    fn links_resolve_inside_the_image_never_on_the_host() {
        // An absolute link to a path the host has (/bin/sh), and a `..` climb past
        // the root: both stay inside the image, where nothing is there.
        let root = rootfs(&[], &[("/sbin/init", "/usr/lib/systemd/systemd")]);
        assert_eq!(
            resolve_in_root(root.path(), "/sbin/init"),
            None,
            "dangling inside the image"
        );
        assert_eq!(detected(&root, &[]).source, HaltSignalSource::Default);
        let root = rootfs(
            &["/usr/lib/systemd/systemd"],
            &[("/bin/init", "../../../../../../usr/lib/systemd/systemd")],
        );
        assert_eq!(
            resolve_in_root(root.path(), "/bin/init"),
            Some(root.path().join("usr/lib/systemd/systemd"))
        );
        assert_eq!(
            detected(&root, &["/bin/init"]).source,
            HaltSignalSource::Systemd
        );
    }

    #[test]
    fn loops_missing_and_plain_inits_get_sigterm() {
        let root = rootfs(
            &["/sbin/init"],
            &[
                ("/loop/a", "b"),
                ("/loop/b", "a"),
                ("/dangling", "/nothing"),
            ],
        );
        for init in [&["/loop/a"][..], &["/dangling"], &["/absent"], &[]] {
            let found = detected(&root, init);
            assert_eq!(
                (found.signal, found.source),
                (Signal::TERM, HaltSignalSource::Default),
                "{init:?}"
            );
        }
        // No root at hand: nothing detected.
        assert_eq!(
            resolve(None, None, None, &[]).source,
            HaltSignalSource::Default
        );
    }

    #[test]
    fn the_spec_wins_then_the_image_then_detection() {
        let root = rootfs(
            &["/lib/systemd/systemd"],
            &[("/sbin/init", "/lib/systemd/systemd")],
        );
        let pwr = Signal::Std(StdSignal::Pwr);
        let hup = Signal::Std(StdSignal::Hup);
        let both = resolve(Some(pwr), Some(hup), Some(root.path()), &[]);
        assert_eq!((both.signal, both.source), (pwr, HaltSignalSource::Spec));
        let image = resolve(None, Some(hup), Some(root.path()), &[]);
        assert_eq!((image.signal, image.source), (hup, HaltSignalSource::Image));
        assert_eq!(detected(&root, &[]).source, HaltSignalSource::Systemd);
    }

    #[test]
    fn numbers_are_the_hosts() {
        assert_eq!(number(Signal::TERM), libc::SIGTERM);
        assert_eq!(number(Signal::BUSYBOX_HALT), libc::SIGUSR2);
        assert_eq!(number(Signal::SYSTEMD_HALT), libc::SIGRTMIN() + 3);
        assert_eq!(number(Signal::RtMax(0)), libc::SIGRTMAX());
        for sig in StdSignal::ALL {
            let n = number(Signal::Std(*sig));
            assert!(
                (1..32).contains(&n) && n != libc::SIGKILL && n != libc::SIGSTOP,
                "{sig:?}"
            );
        }
        // Every real-time signal named is one the host has.
        assert!(number(Signal::RtMin(zonefleet_proto::spec::MAX_RT_OFFSET)) <= libc::SIGRTMAX());
        assert!(number(Signal::RtMax(zonefleet_proto::spec::MAX_RT_OFFSET)) >= libc::SIGRTMIN());
    }
}
