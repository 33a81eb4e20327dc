//! The host's identity: a UUID generated once and kept in the data dir.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::SysinfoError;

/// File name of the host id inside the agent's data dir.
pub const HOST_ID_FILE: &str = "host_id";

/// `<data_dir>/host_id`.
pub fn host_id_path(data_dir: &Path) -> PathBuf {
    data_dir.join(HOST_ID_FILE)
}

/// Reads the host id from `<data_dir>/host_id`, or generates a random one
/// and stores it there if the file does not exist yet. The file is written
/// whole or not at all (a temporary file, fsynced, then linked into place,
/// which also never replaces an id another process stored first). A file
/// that exists but does not hold a UUID is an error naming it: a host's
/// identity is never silently replaced.
pub fn load_or_create(data_dir: &Path) -> Result<Uuid, SysinfoError> {
    let path = host_id_path(data_dir);
    if let Some(id) = read(&path)? {
        return Ok(id);
    }
    let id = Uuid::new_v4();
    let tmp = data_dir.join(format!(
        ".{HOST_ID_FILE}.tmp.{}.{}",
        std::process::id(),
        Uuid::new_v4().simple()
    ));
    let io = |op: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| SysinfoError::Io {
            op,
            path: p,
            source,
        }
    };
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(format!("{id}\n").as_bytes())
            .map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        match fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io("link into place", &path)(e)),
        }
    })();
    let _ = fs::remove_file(&tmp);
    if !written? {
        // Another process stored one first: that one is the host's id.
        return read(&path)?.ok_or_else(|| SysinfoError::CorruptHostId {
            path: path.clone(),
            reason: "vanished right after being created".into(),
        });
    }
    if let Ok(dir) = File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(id)
}

fn read(path: &Path) -> Result<Option<Uuid>, SysinfoError> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SysinfoError::Io {
                op: "read",
                path: path.to_owned(),
                source,
            })
        }
    };
    let corrupt = |reason: String| SysinfoError::CorruptHostId {
        path: path.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(&text).map_err(|_| corrupt("not UTF-8 text".into()))?;
    let id = Uuid::parse_str(text.trim())
        .map_err(|e| corrupt(format!("{:?} is not a UUID: {e}", truncate(text.trim()))))?;
    if id.is_nil() {
        return Err(corrupt("holds the nil UUID".into()));
    }
    Ok(Some(id))
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
