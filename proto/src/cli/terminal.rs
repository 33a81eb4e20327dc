//! A terminal in raw mode for as long as a guard lives: what `zfadm zone exec -t`
//! and `zonefleet-agent zone console` put their user's terminal in, so every key
//! (^C, ^Z, ^]) reaches the other side as a byte.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// A terminal in raw mode while this lives; its mode is restored when dropped
/// (also when a panic unwinds). A signal that ends the process skips destructors:
/// the caller turns those into a normal return (a signal fd, tokio's signals).
pub struct RawMode<Fd: AsFd> {
    fd: Fd,
    saved: Termios,
}

impl<Fd: AsFd> RawMode<Fd> {
    /// Puts the terminal `fd` (e.g. `std::io::stdin()`) in raw mode.
    pub fn enter(fd: Fd) -> nix::Result<RawMode<Fd>> {
        let saved = tcgetattr(fd.as_fd())?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(RawMode { fd, saved })
    }

    /// The terminal.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<Fd: AsFd> Drop for RawMode<Fd> {
    fn drop(&mut self) {
        // TCSADRAIN: what was written in raw mode goes out before the mode changes.
        let _ = tcsetattr(self.fd.as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::termios::LocalFlags;

    #[test]
    fn raw_while_held_and_restored_after() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let before = tcgetattr(&pty.slave).unwrap();
        assert!(before.local_flags.contains(LocalFlags::ICANON));
        {
            let raw = RawMode::enter(&pty.slave).unwrap();
            let now = tcgetattr(raw.fd()).unwrap();
            assert!(!now.local_flags.contains(LocalFlags::ICANON));
            assert!(!now.local_flags.contains(LocalFlags::ISIG));
        }
        let after = tcgetattr(&pty.slave).unwrap();
        assert_eq!(after.local_flags, before.local_flags);
        assert_eq!(after.input_flags, before.input_flags);
        // Not a terminal: refused, nothing changed.
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(RawMode::enter(&file).is_err());
    }
}
