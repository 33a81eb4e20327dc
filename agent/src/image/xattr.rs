//! Extended attributes from `SCHILY.xattr.*` pax records: which are imported, and
//! setting them on the inode the unpacker just made, through its descriptor.
//!
//! Imported: `user.*`, `trusted.*`, `security.capability` (file capabilities:
//! Debian's `ping` has `cap_net_raw` rather than setuid) and POSIX ACLs
//! (`system.posix_acl_access`, `system.posix_acl_default`: permissions a
//! distribution ships, e.g. systemd's on `/var/log/journal`; through a zone's
//! idmapped layer their ids are shifted like the owners'). Refused, naming the
//! entry and the attribute:
//! - `user.overlay.*`, `trusted.overlay.*`: overlayfs's own metadata (redirects,
//!   opaque directories, whiteouts); an image is an overlayfs lower layer and must
//!   not steer how a zone's root is assembled;
//! - other `security.*` (`security.selinux`, `security.SMACK64`, `security.ima`,
//!   `security.evm`, …): labels and measurements belong to the host's security
//!   modules, not to the image that is being labelled;
//! - any other `system.*` attribute, and any other namespace.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{self as rfs, Mode, OFlags, XattrFlags};

use super::error::Refusal;

/// The longest attribute name the kernel takes (`XATTR_NAME_MAX`).
const NAME_MAX: usize = 255;
/// The largest attribute value the kernel takes (`XATTR_SIZE_MAX`).
const VALUE_MAX: usize = 65536;
/// The attribute that must be set after `chown` (which clears it).
pub(crate) const CAPABILITY: &[u8] = b"security.capability";

/// One extended attribute to set.
#[derive(Debug, Clone)]
pub(crate) struct Xattr {
    /// The full name, `namespace.rest`.
    pub name: Vec<u8>,
    /// The value, any bytes.
    pub value: Vec<u8>,
}

impl Xattr {
    /// The name, for messages.
    pub fn shown(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// Checks the attributes an entry carries and orders them for setting:
/// `security.capability` last. A later record of the same name wins.
pub(crate) fn checked(records: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Xattr>, Refusal> {
    let mut out: Vec<Xattr> = Vec::new();
    for (name, value) in records {
        check(name, value)?;
        out.retain(|x| x.name != *name);
        out.push(Xattr {
            name: name.clone(),
            value: value.clone(),
        });
    }
    out.sort_by_key(|x| x.name == CAPABILITY);
    Ok(out)
}

/// Bytes the attributes count towards the unpacked-size limit.
pub(crate) fn bytes(xattrs: &[Xattr]) -> u64 {
    xattrs
        .iter()
        .map(|x| (x.name.len() + x.value.len()) as u64)
        .sum()
}

/// The POSIX ACL attributes, imported.
const ACLS: [&[u8]; 2] = [b"system.posix_acl_access", b"system.posix_acl_default"];

fn check(name: &[u8], value: &[u8]) -> Result<(), Refusal> {
    let shown = || String::from_utf8_lossy(name).into_owned();
    if name.is_empty() || name.len() > NAME_MAX || name.contains(&0) {
        return Err(Refusal::BadXattrName(shown()));
    }
    if value.len() > VALUE_MAX {
        return Err(Refusal::XattrTooLarge {
            name: shown(),
            size: value.len(),
        });
    }
    let Some(dot) = name.iter().position(|b| *b == b'.') else {
        return Err(Refusal::BadXattrName(shown()));
    };
    let (namespace, rest) = (&name[..dot], &name[dot + 1..]);
    if rest.is_empty() {
        return Err(Refusal::BadXattrName(shown()));
    }
    let refuse = |why: &'static str| Err(Refusal::XattrNotImported { name: shown(), why });
    match namespace {
        b"user" | b"trusted" if rest.starts_with(b"overlay.") => refuse(
            "overlayfs's own metadata: an image is an overlayfs lower layer and does not steer how a zone's root is assembled",
        ),
        b"user" | b"trusted" => Ok(()),
        b"security" if name == CAPABILITY => Ok(()),
        b"security" => refuse(
            "security labels and measurements belong to the host's security modules, not to the image",
        ),
        b"system" if ACLS.contains(&name) => Ok(()),
        b"system" => refuse("system attributes other than POSIX ACLs are not imported"),
        _ => refuse("not an attribute namespace that is imported (user, trusted, security.capability)"),
    }
}

/// Why setting an attribute failed.
#[derive(Debug)]
pub(crate) struct SetFailed {
    /// The attribute.
    pub name: String,
    /// The kernel's error.
    pub error: std::io::Error,
}

/// Sets `xattrs` on the open file or directory `fd`.
pub(crate) fn set_fd<Fd: AsFd>(fd: Fd, xattrs: &[Xattr]) -> Result<(), SetFailed> {
    let fd = fd.as_fd();
    for x in xattrs {
        rfs::fsetxattr(fd, x.name.as_slice(), &x.value, XattrFlags::empty()).map_err(|e| {
            SetFailed {
                name: x.shown(),
                error: e.into(),
            }
        })?;
    }
    Ok(())
}

/// Sets `xattrs` on the symlink `name` in `dir` itself, never on what it points at.
/// There is no `fsetxattr` for a symlink: it is opened with `O_PATH | O_NOFOLLOW`
/// relative to `dir` and named through `/proc/self/fd/N`, which resolves to that
/// very inode (the magic link jumps to it; it is not followed further).
pub(crate) fn set_symlink(dir: &OwnedFd, name: &OsStr, xattrs: &[Xattr]) -> Result<(), SetFailed> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let fail = |name: String| {
        move |e: rustix::io::Errno| SetFailed {
            name,
            error: e.into(),
        }
    };
    let first = xattrs[0].shown();
    let link = rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail(first))?;
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&link));
    for x in xattrs {
        rfs::setxattr(
            path.as_str(),
            x.name.as_slice(),
            &x.value,
            XattrFlags::empty(),
        )
        .map_err(fail(x.shown()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_ok(n: &str) -> bool {
        check(n.as_bytes(), b"v").is_ok()
    }

    #[test]
    fn what_is_imported() {
        assert!(name_ok("user.mime_type"));
        assert!(name_ok("trusted.md5"));
        assert!(name_ok("security.capability"));
        assert!(name_ok("system.posix_acl_access"));
        assert!(name_ok("system.posix_acl_default"));
        for refused in [
            "security.selinux",
            "security.ima",
            "trusted.overlay.opaque",
            "user.overlay.redirect",
            "system.nfs4_acl",
            "other.x",
        ] {
            assert!(
                matches!(
                    check(refused.as_bytes(), b"v"),
                    Err(Refusal::XattrNotImported { .. })
                ),
                "{refused}"
            );
        }
        for bad in [&b""[..], b"user.", b"user", b"user.a\0b", &[b'u'; 300][..]] {
            assert!(
                matches!(check(bad, b"v"), Err(Refusal::BadXattrName(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check(b"user.big", &vec![0; VALUE_MAX + 1]),
            Err(Refusal::XattrTooLarge { .. })
        ));
    }

    #[test]
    fn capability_goes_last_and_the_last_record_wins() {
        let recs: Vec<(Vec<u8>, Vec<u8>)> = [
            ("security.capability", "c"),
            ("user.a", "1"),
            ("user.a", "2"),
        ]
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        let x = checked(&recs).unwrap();
        assert_eq!(x.len(), 2);
        assert_eq!(
            (x[0].name.as_slice(), x[0].value.as_slice()),
            (&b"user.a"[..], &b"2"[..])
        );
        assert_eq!(x[1].name, CAPABILITY);
    }
}
