//! A pseudo-terminal pair from the host's `/dev/ptmx`: the zone's `/dev/console`.
//! zsched keeps the master (and relays it: [`super::relay`]); the zone's init gets
//! the slave as its controlling terminal and stdio.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::error::ConsoleError;

/// The size a new console has, as a serial console's (nothing resizes it: a
/// client's window size is not sent).
pub const CONSOLE_ROWS: u16 = 24;
/// See [`CONSOLE_ROWS`].
pub const CONSOLE_COLS: u16 = 80;

/// A pty pair: the master, and the slave's path (`/dev/pts/N` of the host's devpts).
#[derive(Debug)]
pub struct Pty {
    master: OwnedFd,
    slave_path: PathBuf,
}

impl Pty {
    /// Allocates a pty (`posix_openpt`, `grantpt`, `unlockpt`, `ptsname`). The
    /// master is close-on-exec and not the caller's controlling terminal; its size
    /// is [`CONSOLE_ROWS`] × [`CONSOLE_COLS`].
    pub fn open() -> Result<Pty, ConsoleError> {
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .map_err(|e| ConsoleError::pty("posix_openpt", e))?;
        nix::pty::grantpt(&master).map_err(|e| ConsoleError::pty("grantpt", e))?;
        nix::pty::unlockpt(&master).map_err(|e| ConsoleError::pty("unlockpt", e))?;
        let slave_path = PathBuf::from(
            nix::pty::ptsname_r(&master).map_err(|e| ConsoleError::pty("ptsname", e))?,
        );
        // SAFETY: `into_raw_fd` hands over the only owner of this open descriptor.
        let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
        let size = libc::winsize {
            ws_row: CONSOLE_ROWS,
            ws_col: CONSOLE_COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which lives across
        // the call; the descriptor is the master just opened.
        if unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&master),
                libc::TIOCSWINSZ,
                &size,
            )
        } < 0
        {
            return Err(ConsoleError::pty(
                "set the console's size",
                nix::Error::last(),
            ));
        }
        Ok(Pty { master, slave_path })
    }

    /// The slave's path on the host (`/dev/pts/N`): what to bind-mount onto the
    /// zone's `/dev/console`.
    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    /// Opens the slave (read-write, close-on-exec, without making it the caller's
    /// controlling terminal: init does that itself with `TIOCSCTTY`).
    pub fn open_slave(&self) -> Result<OwnedFd, ConsoleError> {
        nix::fcntl::open(
            &self.slave_path,
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ConsoleError::pty(format!("open {}", self.slave_path.display()), e))
    }

    /// Gives the slave to `uid`:`gid` with mode 0600 — the zone's root, which with
    /// a user namespace is a mapped host uid — so that only the zone opens it (not
    /// the host's `tty` group, to which `grantpt` gave write access).
    pub fn chown_slave(&self, uid: u32, gid: u32) -> Result<(), ConsoleError> {
        let what = |verb: &str| format!("{verb} {}", self.slave_path.display());
        nix::unistd::chown(
            &self.slave_path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| ConsoleError::pty(what("chown"), e))?;
        std::fs::set_permissions(&self.slave_path, std::fs::Permissions::from_mode(0o600)).map_err(
            |e| {
                let errno = e
                    .raw_os_error()
                    .map_or(nix::Error::EIO, nix::Error::from_raw);
                ConsoleError::pty(what("chmod"), errno)
            },
        )
    }

    /// The master.
    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// The master, to hand to [`super::ConsoleRelay::new`].
    pub fn into_master(self) -> OwnedFd {
        self.master
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_pair_carries_bytes_both_ways_and_has_a_size() {
        let pty = Pty::open().unwrap();
        assert!(pty.slave_path().starts_with("/dev/pts"));
        let slave = pty.open_slave().unwrap();
        let mut slave = std::fs::File::from(slave);
        let mut master = std::fs::File::from(pty.master().try_clone_to_owned().unwrap());
        // Raw on the slave, so nothing is echoed or translated.
        let mut t = nix::sys::termios::tcgetattr(&slave).unwrap();
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
        slave.write_all(b"out").unwrap();
        let mut buf = [0u8; 3];
        master.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"out");
        master.write_all(b"in").unwrap();
        let mut buf = [0u8; 2];
        slave.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"in");
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into the pointer, alive across the call.
        let rc = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&slave),
                libc::TIOCGWINSZ,
                &mut size,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!((size.ws_row, size.ws_col), (CONSOLE_ROWS, CONSOLE_COLS));
    }

    #[test]
    fn the_slave_goes_to_the_zones_root_only() {
        if !crate::test_skip::privileged("the_slave_goes_to_the_zones_root_only") {
            return;
        }
        let pty = Pty::open().unwrap();
        pty.chown_slave(100_000, 100_000).unwrap();
        let meta = std::fs::metadata(pty.slave_path()).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (100_000, 100_000));
        assert_eq!(meta.mode() & 0o777, 0o600);
    }
}
