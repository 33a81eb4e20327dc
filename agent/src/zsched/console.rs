//! The zone's console. Here: its log — zsched copies what init writes to its
//! console into `console.log`, capped in size. When the file reaches its cap it
//! becomes `console.log.1` (replacing the previous one), so at most twice the cap
//! is kept and a chatty zone cannot fill the host's disk.
//!
//! Beside it: the zone's `/dev/console` as a pty ([`pty`]), the relay zsched
//! drives to log it and serve `zone console` ([`relay`], whose doc says how zsched
//! drives it), and the client side of `zone console` ([`client`]).

pub mod client;
pub mod error;
pub mod pty;
pub mod relay;

pub use client::{attach, AttachOptions, Detach};
pub use error::ConsoleError;
pub use pty::Pty;
pub use relay::{ConsoleRelay, RelayState};

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Default cap of one console log file.
pub const DEFAULT_CAP_BYTES: u64 = 1 << 20;

/// A size-capped, rotating log file.
pub struct ConsoleLog {
    path: PathBuf,
    cap: u64,
    file: File,
    len: u64,
}

impl ConsoleLog {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, cap: u64) -> std::io::Result<ConsoleLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(ConsoleLog {
            path: path.to_path_buf(),
            cap: cap.max(1),
            file,
            len,
        })
    }

    /// Appends `data`, rotating first when it would pass the cap.
    pub fn append(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            if self.len >= self.cap {
                self.rotate()?;
            }
            let room = (self.cap - self.len) as usize;
            let n = room.min(data.len());
            self.file.write_all(&data[..n])?;
            self.len += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let old = self.path.with_extension("log.1");
        fs::rename(&self.path, old)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::paths::CONSOLE_FILE;

    #[test]
    fn log_rotates_at_its_cap_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONSOLE_FILE);
        let mut log = ConsoleLog::open(&path, 10).unwrap();
        log.append(b"0123456789abcdefghijXYZ").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"XYZ");
        assert_eq!(
            fs::read(path.with_extension("log.1")).unwrap(),
            b"abcdefghij"
        );
        let total: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 20, "at most twice the cap is kept, got {total}");
    }
}
