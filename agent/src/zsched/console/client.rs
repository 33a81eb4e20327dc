//! The client side of `zone console`: attaches to a zone's console relay
//! ([`super::relay`]), sends our input and writes the console's output, until the
//! detach key, the console's end or a stop.
//!
//! The detach key (`^]`, 0x1d, by default, as `virsh console` and `machinectl
//! login` have it) is looked for in every input read, a terminal's or a pipe's:
//! what came before it is sent, what came after it is not. At the end of our input
//! (a pipe's EOF) the rest is sent and the socket's writing side shut down; the
//! console's output is still written until the console ends or a stop arrives, so
//! that `printf 'ls\n' | zone console z` shows what `ls` printed (bound it with
//! `timeout`, or end it with a signal).

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{send, shutdown, MsgFlags, Shutdown};

use super::error::ConsoleError;
use super::relay::{READY, REFUSED_PREFIX};

/// The default detach key: `^]` (0x1d).
pub const DEFAULT_ESCAPE: u8 = 0x1d;
/// How long the relay has to say `ok` (or why not).
const GREETING_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest greeting line read.
const MAX_GREETING: usize = 512;
/// The most input waiting to be sent before our input is no longer read (a
/// console that takes nothing; a person typing never gets near it).
const PENDING_CAP: usize = 1 << 20;

/// How an attach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detach {
    /// The detach key was typed.
    Escape,
    /// The relay closed the connection: the zone halted (its zsched ended).
    Closed,
    /// The stop descriptor became readable (a signal, through a signalfd).
    Stopped,
}

/// What an attach needs besides the socket and the terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttachOptions<'a> {
    /// The detach key; `None`: none (only the console's end or a stop detach).
    pub escape: Option<u8>,
    /// Ends the attach when readable (e.g. a signalfd of SIGTERM and SIGHUP).
    pub stop: Option<BorrowedFd<'a>>,
}

/// Reads a detach key: `^X` for a control character (`^]`, `^A`, `^@`…, letters in
/// either case), or `none`.
pub fn parse_escape(s: &str) -> Result<Option<u8>, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let bytes = s.as_bytes();
    match bytes {
        [b'^', c] if (b'@'..=b'_').contains(&c.to_ascii_uppercase()) => {
            Ok(Some(c.to_ascii_uppercase() - b'@'))
        }
        _ => Err(format!(
            "{s:?} is not a detach key; allowed ^X for a control character (^], ^A..^Z, ^@, ^[, ^\\, ^^, ^_) or none"
        )),
    }
}

/// How a detach key is written: `^]`.
pub fn escape_name(key: u8) -> String {
    if key < 0x20 {
        format!("^{}", char::from(key + b'@'))
    } else {
        format!("{:?}", char::from(key))
    }
}

/// Attaches to the console relay at `socket`: `input` is sent to the console
/// (read without blocking the output: it is polled), the console's output is
/// written to `output`, until [`Detach`] says why it ended. The caller puts a
/// terminal in raw mode first (and restores it after).
pub fn attach(
    socket: &Path,
    input: BorrowedFd<'_>,
    output: &mut dyn Write,
    options: &AttachOptions<'_>,
) -> Result<Detach, ConsoleError> {
    let mut stream = connect(socket)?;
    let mut pending: Vec<u8> = Vec::new();
    let mut input_eof = false;
    let mut shut = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut fds = Vec::with_capacity(3);
        let mut socket_events = PollFlags::POLLIN;
        if !pending.is_empty() {
            socket_events |= PollFlags::POLLOUT;
        }
        fds.push(PollFd::new(stream.as_fd(), socket_events));
        let input_slot = (!input_eof && pending.len() < PENDING_CAP).then(|| {
            fds.push(PollFd::new(input, PollFlags::POLLIN));
            fds.len() - 1
        });
        let stop_slot = options.stop.map(|stop| {
            fds.push(PollFd::new(stop, PollFlags::POLLIN));
            fds.len() - 1
        });
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(std::io::Error::from(e).into()),
            Ok(_) => {}
        }
        let revents: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        if stop_slot.is_some_and(|i| !revents[i].is_empty()) {
            return Ok(Detach::Stopped);
        }
        let any = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
        if revents[0].intersects(any) {
            match stream.read(&mut buf) {
                Ok(0) => return Ok(Detach::Closed),
                Ok(n) => {
                    output.write_all(&buf[..n])?;
                    output.flush()?;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(Detach::Closed),
                Err(e) => return Err(e.into()),
            }
        }
        if input_slot.is_some_and(|i| revents[i].intersects(any)) {
            match nix::unistd::read(input, &mut buf) {
                Ok(0) => input_eof = true,
                Ok(n) => {
                    let data = &buf[..n];
                    let at = options
                        .escape
                        .and_then(|key| data.iter().position(|b| *b == key));
                    if let Some(at) = at {
                        pending.extend_from_slice(&data[..at]);
                        // Best effort: what was typed before the key goes out.
                        let _ = flush(&stream, &mut pending);
                        return Ok(Detach::Escape);
                    }
                    pending.extend_from_slice(data);
                }
                Err(nix::Error::EAGAIN | nix::Error::EINTR) => {}
                // A terminal hung up: as the end of our input.
                Err(nix::Error::EIO) => input_eof = true,
                Err(e) => return Err(std::io::Error::from(e).into()),
            }
        }
        if !pending.is_empty() && flush(&stream, &mut pending).is_err() {
            // The relay is gone: its closing is read next round, or now.
            return Ok(Detach::Closed);
        }
        if input_eof && pending.is_empty() && !shut {
            let _ = shutdown(stream.as_raw_fd(), Shutdown::Write);
            shut = true;
        }
    }
}

/// Connects and reads the relay's greeting.
fn connect(socket: &Path) -> Result<UnixStream, ConsoleError> {
    let stream = UnixStream::connect(socket).map_err(|source| match source.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => ConsoleError::NotServed {
            path: socket.to_path_buf(),
            source,
        },
        _ => ConsoleError::Socket {
            path: socket.to_path_buf(),
            source,
        },
    })?;
    let protocol = |line: &str| ConsoleError::Protocol {
        path: socket.to_path_buf(),
        line: line.to_string(),
    };
    stream.set_read_timeout(Some(GREETING_TIMEOUT))?;
    // Byte by byte: what follows the line is the console's, not ours to take.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match (&stream).read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() < MAX_GREETING => line.push(byte[0]),
            Ok(_) => return Err(protocol(&String::from_utf8_lossy(&line))),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(protocol(&format!(
                    "{} (then nothing for {GREETING_TIMEOUT:?})",
                    String::from_utf8_lossy(&line)
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    if line == READY {
        stream.set_read_timeout(None)?;
        stream.set_nonblocking(true)?;
        return Ok(stream);
    }
    match line.strip_prefix(REFUSED_PREFIX) {
        Some(why) => Err(ConsoleError::Refused(why.to_string())),
        None => Err(protocol(&line)),
    }
}

/// Sends as much of `pending` as the socket takes now.
fn flush(stream: &UnixStream, pending: &mut Vec<u8>) -> Result<(), nix::Error> {
    while !pending.is_empty() {
        match send(stream.as_raw_fd(), pending, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => {
                pending.drain(..n);
            }
            Err(nix::Error::EINTR) => {}
            Err(nix::Error::EAGAIN) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_read_and_write_back() {
        assert_eq!(parse_escape("^]"), Ok(Some(0x1d)));
        assert_eq!(parse_escape("^a"), Ok(Some(0x01)));
        assert_eq!(parse_escape("^@"), Ok(Some(0)));
        assert_eq!(parse_escape("^_"), Ok(Some(0x1f)));
        assert_eq!(parse_escape("none"), Ok(None));
        for bad in ["", "]", "^", "^1", "^]]", "ctrl-]"] {
            let err = parse_escape(bad).unwrap_err();
            assert!(err.contains("is not a detach key"), "{bad}: {err}");
        }
        assert_eq!(escape_name(DEFAULT_ESCAPE), "^]");
        assert_eq!(escape_name(0x01), "^A");
    }
}
