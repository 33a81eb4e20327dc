//! File modes of what must stay private on disk: keys, Raft stores and snapshots, zone
//! specs. One rule: such a file is `0600` and its directory `0700`, owner only; a key
//! that group or others may read is refused at load, and a store or directory found
//! looser is tightened (the caller logs it).

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a private file (a key, a store).
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of a directory holding private files.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// The permission bits that let group or others in.
const GROUP_OR_OTHERS: u32 = 0o077;

/// Errors of checking a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file's mode could not be read; names the file.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
    /// Group or others may read or write the key; names the file and its mode.
    #[error(
        "{path}: private key is accessible to group or others (mode {mode:04o}); \
         refusing to use it: chmod 600 it"
    )]
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

fn mode_of(path: &Path) -> io::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
}

/// Succeeds only if `path` (a private key; symlinks followed) is accessible to its
/// owner alone.
pub fn require_private_key(path: &Path) -> Result<(), KeyFileError> {
    let mode = mode_of(path).map_err(|error| KeyFileError::Io {
        path: path.to_owned(),
        error,
    })?;
    if mode & GROUP_OR_OTHERS != 0 {
        return Err(KeyFileError::NotPrivate {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Removes group and others from an existing `path` (file or directory); returns its
/// mode before when it had to change, so the caller can say so.
pub fn make_private(path: &Path) -> io::Result<Option<u32>> {
    let mode = mode_of(path)?;
    if mode & GROUP_OR_OTHERS == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(mode & !GROUP_OR_OTHERS),
    )?;
    Ok(Some(mode))
}

/// Creates `dir` (and missing parents) with mode `0700`, or tightens an existing one;
/// returns its mode before when an existing directory had to change.
pub fn private_dir(dir: &Path) -> io::Result<Option<u32>> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)?;
    make_private(dir)
}

/// Creates the empty file `path` with mode `0600` if it does not exist (so whoever
/// fills it never makes it readable by others, not even for a moment), or tightens an
/// existing one; returns its mode before when an existing file had to change.
pub fn private_file(path: &Path) -> io::Result<Option<u32>> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE_MODE)
        .open(path)?;
    make_private(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_key_readable_by_others_is_refused_naming_it_and_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("c.key");
        std::fs::write(&key, "k").unwrap();
        set(&key, 0o644);
        let err = require_private_key(&key).unwrap_err().to_string();
        assert!(err.contains(&key.display().to_string()), "{err}");
        assert!(err.contains("0644"), "{err}");
        set(&key, 0o640);
        assert!(require_private_key(&key).is_err());
        set(&key, 0o600);
        require_private_key(&key).unwrap();
        set(&key, 0o400);
        require_private_key(&key).unwrap();
        let missing = require_private_key(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, KeyFileError::Io { .. }), "{missing}");
    }

    #[test]
    fn dirs_and_files_are_created_private_and_loose_ones_tightened() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b");
        assert_eq!(private_dir(&dir).unwrap(), None);
        assert_eq!(mode_of(&dir).unwrap(), 0o700);
        let file = dir.join("f");
        assert_eq!(private_file(&file).unwrap(), None);
        assert_eq!(mode_of(&file).unwrap(), 0o600);

        set(&dir, 0o755);
        std::fs::write(&file, "data").unwrap();
        set(&file, 0o644);
        assert_eq!(private_dir(&dir).unwrap(), Some(0o755));
        assert_eq!(private_file(&file).unwrap(), Some(0o644));
        assert_eq!(mode_of(&dir).unwrap(), 0o700);
        assert_eq!(mode_of(&file).unwrap(), 0o600);
        // Tightening keeps the contents.
        assert_eq!(std::fs::read(&file).unwrap(), b"data");
    }
}
