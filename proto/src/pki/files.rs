//! The on-disk layout of PKI material and how it is written.
//!
//! One directory holds, PEM encoded:
//!
//! | file | what |
//! |---|---|
//! | `ca.crt` | the root CA certificate: every node's trust anchor |
//! | `offline/root-ca.key` | the root key: only for issuing a signing CA; move it offline |
//! | `signing-ca.crt`, `signing-ca.key` | the signing CA, which issues every leaf |
//! | `controller-<id>.crt`, `controller-<id>.key` | a controller |
//! | `operator-<name>.crt`, `operator-<name>.key` | an operator |
//! | `agent-<host_id>.crt`, `agent-<host_id>.key` | an agent |
//!
//! Keys are created with mode `0600` (by `open(2)` itself, never chmod-ed afterwards),
//! certificates `0644`; a directory that must be created is made `0700`. An existing file
//! is never replaced unless asked, and when a set of files is written either all of them
//! are checked free first or none is written.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{FleetCa, Identity, IssuedCert, PkiError};

/// The root CA certificate's file name.
pub const CA_CERT: &str = "ca.crt";
/// Where `pki init` writes the root key, apart from everything the controllers get.
pub const ROOT_KEY: &str = "offline/root-ca.key";
/// The signing CA certificate's file name.
pub const SIGNING_CA_CERT: &str = "signing-ca.crt";
/// The signing CA key's file name.
pub const SIGNING_CA_KEY: &str = "signing-ca.key";
/// Mode of private key files.
pub const KEY_MODE: u32 = crate::modes::PRIVATE_FILE_MODE;
/// Mode of certificate files.
pub const CERT_MODE: u32 = 0o644;
/// Mode of a directory created to hold PKI files.
pub const DIR_MODE: u32 = crate::modes::PRIVATE_DIR_MODE;

/// `<kind>-<id>.crt` for an identity.
pub fn cert_file_name(identity: &Identity) -> String {
    format!("{}.crt", identity.file_stem())
}

/// `<kind>-<id>.key` for an identity.
pub fn key_file_name(identity: &Identity) -> String {
    format!("{}.key", identity.file_stem())
}

/// Whether existing files may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail, naming the first existing file, before writing anything.
    Refuse,
    /// Remove an existing file and create it anew (so a key gets mode `0600` even if
    /// the old file had another).
    Replace,
}

/// One file to write.
#[derive(Debug, Clone)]
pub struct OutputFile {
    /// Where.
    pub path: PathBuf,
    /// Its contents.
    pub contents: String,
    /// A private key: mode `0600` instead of `0644`.
    pub private: bool,
}

/// The files of a new root CA in `dir`: its certificate, and its key under `offline/`.
pub fn root_ca_files(dir: &Path, root: &FleetCa) -> Vec<OutputFile> {
    vec![
        OutputFile {
            path: dir.join(CA_CERT),
            contents: root.cert_pem().to_owned(),
            private: false,
        },
        OutputFile {
            path: dir.join(ROOT_KEY),
            contents: root.key_pem().expose_pem().to_owned(),
            private: true,
        },
    ]
}

/// The files of a signing CA in `dir`.
pub fn signing_ca_files(dir: &Path, signing: &FleetCa) -> Vec<OutputFile> {
    vec![
        OutputFile {
            path: dir.join(SIGNING_CA_CERT),
            contents: signing.cert_pem().to_owned(),
            private: false,
        },
        OutputFile {
            path: dir.join(SIGNING_CA_KEY),
            contents: signing.key_pem().expose_pem().to_owned(),
            private: true,
        },
    ]
}

/// The files of an issued certificate (and its key, when it has one) in `dir`.
pub fn issued_files(dir: &Path, issued: &IssuedCert) -> Vec<OutputFile> {
    let mut files = vec![OutputFile {
        path: dir.join(cert_file_name(&issued.identity)),
        contents: issued.cert_pem.clone(),
        private: false,
    }];
    if let Some(key) = &issued.key_pem {
        files.push(OutputFile {
            path: dir.join(key_file_name(&issued.identity)),
            contents: key.expose_pem().to_owned(),
            private: true,
        });
    }
    files
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |error| PkiError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Writes every file, creating missing parent directories with mode `0700`.
///
/// With [`Overwrite::Refuse`] every path is checked first and nothing is written if
/// one exists (a dangling symlink counts as existing). If a write fails, the files this
/// call already created are removed again.
pub fn write_files(files: &[OutputFile], overwrite: Overwrite) -> Result<(), PkiError> {
    if overwrite == Overwrite::Refuse {
        if let Some(existing) = files.iter().find(|f| f.path.symlink_metadata().is_ok()) {
            return Err(PkiError::Exists(existing.path.clone()));
        }
    }
    let mut written: Vec<&Path> = Vec::new();
    let result = files.iter().try_for_each(|file| {
        write_one(file, overwrite)?;
        written.push(&file.path);
        Ok(())
    });
    if result.is_err() {
        for path in written {
            let _ = std::fs::remove_file(path);
        }
    }
    result
}

fn write_one(file: &OutputFile, overwrite: Overwrite) -> Result<(), PkiError> {
    let path = file.path.as_path();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(parent)
            .map_err(io_err(parent))?;
    }
    if overwrite == Overwrite::Replace && path.symlink_metadata().is_ok() {
        std::fs::remove_file(path).map_err(io_err(path))?;
    }
    let mode = if file.private { KEY_MODE } else { CERT_MODE };
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::Exists(path.to_owned())
            } else {
                io_err(path)(error)
            }
        })?;
    out.write_all(file.contents.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_0600_and_nothing_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("pki");
        let ca = FleetCa::generate("t").unwrap();
        let files = root_ca_files(&sub, &ca);
        write_files(&files, Overwrite::Refuse).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sub.join(ROOT_KEY)), 0o600);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join("offline")), 0o700);

        let before = std::fs::read(sub.join(CA_CERT)).unwrap();
        let other = FleetCa::generate("t").unwrap();
        let err = write_files(&root_ca_files(&sub, &other), Overwrite::Refuse).unwrap_err();
        assert!(matches!(err, PkiError::Exists(_)), "{err}");
        assert_eq!(std::fs::read(sub.join(CA_CERT)).unwrap(), before);

        // Replacing re-creates a key with 0600 even if it had been loosened.
        std::fs::set_permissions(sub.join(ROOT_KEY), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        write_files(&root_ca_files(&sub, &other), Overwrite::Replace).unwrap();
        assert_eq!(mode(&sub.join(ROOT_KEY)), 0o600);
        assert_ne!(std::fs::read(sub.join(CA_CERT)).unwrap(), before);
    }
}
