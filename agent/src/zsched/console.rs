//! The zone's console: a pty ([`Pty`]), and its log: zsched copies init's stdout and stderr into
//! `console.log`, capped in size. When the file reaches its cap it becomes
//! `console.log.1` (replacing the previous one), so at most twice the cap is
//! kept and a chatty zone cannot fill the host's disk.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The zone's console: a pty from the host's devpts. The zone's init gets the
/// slave as its stdio and as `/dev/console`; zsched holds the master (and a
/// slave descriptor, so the terminal lives while no zone process holds it).
pub struct Pty {
    /// zsched's end.
    pub master: std::os::fd::OwnedFd,
    /// The zone's end.
    pub slave: std::os::fd::OwnedFd,
    /// The slave's host path (`/dev/pts/N`), bound onto the zone's `/dev/console`.
    pub path: PathBuf,
}

impl Pty {
    /// Allocates a pty whose slave belongs to the zone's root `owner` (host ids)
    /// and group tty (5) of the zone, without becoming anyone's controlling
    /// terminal. Output is passed through unchanged (no `\n` to `\r\n`), so
    /// the log holds what init wrote; an init that wants a terminal's
    /// settings (systemd) sets them itself.
    pub fn open(owner: (u32, u32)) -> Result<Pty, super::ZschedError> {
        use nix::fcntl::OFlag;
        let sys = |what: &'static str| move |source| super::ZschedError::Process { what, source };
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .map_err(sys("open the console pty"))?;
        nix::pty::grantpt(&master).map_err(sys("grantpt"))?;
        nix::pty::unlockpt(&master).map_err(sys("unlockpt"))?;
        let path = PathBuf::from(nix::pty::ptsname_r(&master).map_err(sys("ptsname"))?);
        let slave: std::os::fd::OwnedFd = nix::fcntl::open(
            &path,
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(sys("open the console pty's slave"))?;
        let tty_gid = owner.1.saturating_add(5);
        nix::unistd::fchown(
            &slave,
            Some(nix::unistd::Uid::from_raw(owner.0)),
            Some(nix::unistd::Gid::from_raw(tty_gid)),
        )
        .map_err(sys("chown the console pty"))?;
        let mut termios = nix::sys::termios::tcgetattr(&slave).map_err(sys("tcgetattr"))?;
        termios
            .output_flags
            .remove(nix::sys::termios::OutputFlags::ONLCR);
        nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &termios)
            .map_err(sys("tcsetattr"))?;
        Ok(Pty {
            master: master.into(),
            slave,
            path,
        })
    }
}

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
