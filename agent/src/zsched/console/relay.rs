//! The console relay: zsched's side of `zone console`. It holds the master of the
//! zone's console pty, copies everything the zone writes there into the console log
//! and to the one attached client, and what the client types into the console.
//! Single-threaded and poll-driven, so that zsched's one poll loop drives it with
//! init's pidfd and the fence: it never blocks (every descriptor is nonblocking)
//! and holds bounded buffers only.
//!
//! # Driving it from zsched
//!
//! ```ignore
//! let pty = Pty::open()?;                          // before the fork
//! pty.chown_slave(zone_root_uid, zone_root_gid)?;  // the zone's root, maybe mapped
//! // init's side: bind-mount pty.slave_path() onto the zone's /dev/console, then
//! // setsid(), open /dev/console, ioctl(TIOCSCTTY), dup2 it onto 0, 1 and 2.
//! let log = ConsoleLog::open(&zone_dir.join(CONSOLE_FILE), plan.console_cap_bytes).ok();
//! let mut relay = ConsoleRelay::new(pty.into_master(), log, &zone_dir.join(CONSOLE_SOCKET))?;
//! loop {
//!     let mut fds = relay.poll_fds();            // the relay's, first
//!     let first_own = fds.len();
//!     fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)); // then zsched's own
//!     let timeout = min(relay.timeout(), fence_in);            // None: no timer
//!     poll(&mut fds, timeout)?;                  // EINTR: just go round
//!     let revents: Vec<PollFlags> = fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
//!     drop(fds);
//!     let state = relay.on_ready(&revents[..first_own]); // after every poll, timeouts too
//!     if revents[first_own].contains(PollFlags::POLLIN) { /* init exited */ }
//!     // After init exited: go on until `state == RelayState::Closed` (every
//!     // process holding the console is gone and all it wrote is logged) or a
//!     // deadline, then drop the relay (it removes the socket).
//! }
//! ```
//!
//! `poll_fds` and `on_ready` must see the same relay state: nothing may be called
//! on the relay between them. zsched need not keep a slave open: a console that
//! every process closed (init closing and reopening `/dev/console`, as systemd
//! does) is [`RelayState::Closed`], no longer polled (a hung-up master is always
//! readable) and looked at again every [`RECHECK`] until someone opens it again.
//!
//! # The socket and its protocol
//!
//! A unix stream socket at the given path, mode 0600 (only the host's root
//! attaches), made under a temporary name and renamed into place, removed when the
//! relay is dropped (if it is still the relay's). On accepting a client the relay
//! sends one line: [`READY`] (`ok\n`), or, when a client is already attached,
//! `error: console already attached (by pid N)\n` and closes it — one client at a
//! time, as `vmadm console` and `zlogin -C` have it (a second, read-only watcher
//! would need a protocol for who types; `zone logs` shows what was written). After
//! `ok` the stream carries the console's bytes both ways, unchanged: the detach
//! key is the client's business. A client that shuts down its writing side
//! (stdin's end) keeps getting output until it closes.
//!
//! # Bounds
//!
//! The log gets everything up to its cap (it rotates). A client gets at most
//! [`OUTPUT_CAP`] bytes queued; what does not fit is dropped for that client (a
//! slow client never stalls the zone's console) and a line says how much. The
//! client's input waits in at most [`INPUT_CAP`] bytes; past that the relay stops
//! reading from the client until the console takes it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{send, MsgFlags};

use super::error::ConsoleError;
use super::ConsoleLog;

/// The relay's first line to a client it serves (then the console's bytes).
pub const READY: &str = "ok";
/// How a refusal line starts (then why, and a newline).
pub const REFUSED_PREFIX: &str = "error: ";
/// The most output queued for a slow client before it is dropped for that client.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// The most client input waiting for the console.
pub const INPUT_CAP: usize = 4 * 1024;
/// How often a console that every process closed is looked at again.
pub const RECHECK: Duration = Duration::from_millis(100);
/// How long the relay stops accepting after `accept` failed (out of descriptors).
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);
/// One read from the console.
const READ_CHUNK: usize = 16 * 1024;
/// The most console output one [`ConsoleRelay::on_ready`] takes, so that a
/// flooding zone still lets zsched see init's exit and the fence.
const MAX_READ_PER_STEP: usize = 256 * 1024;

/// Whether anything in the zone has its console open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// A process of the zone holds the console (or none has opened it yet).
    Open,
    /// Every process that held the console closed it, and everything written was
    /// read (and logged). It may open again.
    Closed,
}

/// Which descriptor a poll slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Client,
    Master,
    Listener,
}

/// The attached client.
struct Client {
    stream: UnixStream,
    /// Output waiting for the client, at most [`OUTPUT_CAP`].
    out: VecDeque<u8>,
    /// Output dropped since the last note about it.
    dropped: u64,
    /// The client shut down its writing side.
    input_done: bool,
}

/// The relay of one zone's console (see the module doc).
pub struct ConsoleRelay {
    master: File,
    log: Option<ConsoleLog>,
    listener: UnixListener,
    socket: PathBuf,
    /// (device, inode) of the socket this relay made: removed on drop only if the
    /// path still names it.
    socket_id: (u64, u64),
    client: Option<Client>,
    to_master: Vec<u8>,
    open: bool,
    accept_paused_until: Option<Instant>,
    log_failing: bool,
}

impl ConsoleRelay {
    /// Relays `master` (a pty master, e.g. [`super::Pty::into_master`]) into `log`
    /// (`None`: the log could not be opened; output still reaches a client) and to
    /// clients of a new socket at `socket` (usually `<zone_dir>/console.sock`; a
    /// stale one there is replaced). The path must fit a unix socket address (107
    /// bytes).
    pub fn new(
        master: OwnedFd,
        log: Option<ConsoleLog>,
        socket: &Path,
    ) -> Result<ConsoleRelay, ConsoleError> {
        let flags = fcntl(&master, FcntlArg::F_GETFL)
            .map_err(|e| ConsoleError::pty("read the master's flags", e))?;
        fcntl(
            &master,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(|e| ConsoleError::pty("make the master nonblocking", e))?;
        // zsched's other children (nft) must not hold the console.
        fcntl(&master, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|e| ConsoleError::pty("make the master close-on-exec", e))?;
        let (listener, socket_id) = listen(socket)?;
        Ok(ConsoleRelay {
            master: File::from(master),
            log,
            listener,
            socket: socket.to_path_buf(),
            socket_id,
            client: None,
            to_master: Vec::new(),
            open: true,
            accept_paused_until: None,
            log_failing: false,
        })
    }

    /// The socket clients attach to.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Whether a client is attached.
    pub fn attached(&self) -> bool {
        self.client.is_some()
    }

    /// The state as of the last [`on_ready`](Self::on_ready).
    pub fn state(&self) -> RelayState {
        if self.open {
            RelayState::Open
        } else {
            RelayState::Closed
        }
    }

    /// The descriptors to poll, with their events; put them first in zsched's poll
    /// set and hand their revents, in this order, to [`on_ready`](Self::on_ready).
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        self.slots()
            .into_iter()
            .filter_map(|(slot, events)| {
                let fd = match (slot, &self.client) {
                    (Slot::Client, Some(c)) => c.stream.as_fd(),
                    // slots() lists the client only when there is one.
                    (Slot::Client, None) => return None,
                    (Slot::Master, _) => self.master.as_fd(),
                    (Slot::Listener, _) => self.listener.as_fd(),
                };
                Some(PollFd::new(fd, events))
            })
            .collect()
    }

    /// How long zsched's poll may wait at most for the relay's sake (`None`: no
    /// limit): while the console is closed, or accepting is paused.
    pub fn timeout(&self) -> Option<Duration> {
        let recheck = (!self.open).then_some(RECHECK);
        let paused = self
            .accept_paused_until
            .map(|until| until.saturating_duration_since(Instant::now()));
        match (recheck, paused) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One step, after every poll (also one that timed out): `revents` are those of
    /// the descriptors [`poll_fds`](Self::poll_fds) gave, in order (missing ones
    /// count as nothing ready). Never blocks and never fails: a client that fails
    /// is dropped, a log that fails is reported once on stderr (zsched's log).
    pub fn on_ready(&mut self, revents: &[PollFlags]) -> RelayState {
        let slots = self.slots();
        let ready = |which: Slot| {
            slots
                .iter()
                .position(|(s, _)| *s == which)
                .and_then(|i| revents.get(i).copied())
                .unwrap_or(PollFlags::empty())
        };
        // The client first: one leaving frees the place for one arriving.
        let client = ready(Slot::Client);
        if !client.is_empty() {
            self.client_ready(client);
        }
        let master = ready(Slot::Master);
        if master.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            self.read_master();
        }
        if !self.open {
            self.recheck();
        }
        if self
            .accept_paused_until
            .is_some_and(|until| Instant::now() >= until)
        {
            self.accept_paused_until = None;
        }
        if ready(Slot::Listener).contains(PollFlags::POLLIN) {
            self.accept();
        }
        self.write_master();
        self.flush_client();
        self.state()
    }

    /// What to poll for, in the order `poll_fds` gives them.
    fn slots(&self) -> Vec<(Slot, PollFlags)> {
        let mut slots = Vec::with_capacity(3);
        if let Some(c) = &self.client {
            let mut events = PollFlags::empty();
            if !c.input_done && self.to_master.len() < INPUT_CAP {
                events |= PollFlags::POLLIN;
            }
            if !c.out.is_empty() {
                events |= PollFlags::POLLOUT;
            }
            slots.push((Slot::Client, events));
        }
        if self.open {
            let mut events = PollFlags::POLLIN;
            if !self.to_master.is_empty() {
                events |= PollFlags::POLLOUT;
            }
            slots.push((Slot::Master, events));
        }
        if self.accept_paused_until.is_none() {
            slots.push((Slot::Listener, PollFlags::POLLIN));
        }
        slots
    }

    /// Reads all the console still holds into the log and to the client (once
    /// init has ended and no process of the zone can write any more: the
    /// master gives what is buffered, then EIO). The console is closed after.
    pub fn drain(&mut self) {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            match self.master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.output(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.open = false;
        self.flush_client();
    }

    /// Reads what the zone wrote: into the log and to the client.
    fn read_master(&mut self) {
        let mut buf = [0u8; READ_CHUNK];
        let mut taken = 0;
        while taken < MAX_READ_PER_STEP {
            match self.master.read(&mut buf) {
                // EIO: no process holds the slave (and everything was read).
                Ok(0) => {
                    self.open = false;
                    return;
                }
                Ok(n) => {
                    taken += n;
                    self.output(&buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    if e.raw_os_error() != Some(libc::EIO) {
                        eprintln!("zsched: console: read: {e}");
                    }
                    self.open = false;
                    return;
                }
            }
        }
    }

    /// Whether a closed console was opened again (its master no longer hung up).
    fn recheck(&mut self) {
        let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
        if nix::poll::poll(&mut fds, PollTimeout::ZERO).is_err() {
            return;
        }
        let events = fds[0].revents().unwrap_or(PollFlags::empty());
        if !events.contains(PollFlags::POLLHUP) {
            self.open = true;
            if events.contains(PollFlags::POLLIN) {
                self.read_master();
            }
        }
    }

    /// The zone wrote `data`.
    fn output(&mut self, data: &[u8]) {
        if let Some(log) = self.log.as_mut() {
            match log.append(data) {
                Ok(()) => self.log_failing = false,
                Err(e) => {
                    if !self.log_failing {
                        eprintln!("zsched: console log: {e}");
                    }
                    self.log_failing = true;
                }
            }
        }
        let full = self
            .client
            .as_ref()
            .is_some_and(|c| c.out.len() + data.len() > OUTPUT_CAP);
        if full {
            // Make room if the client can take some now.
            self.flush_client();
        }
        if let Some(c) = self.client.as_mut() {
            c.queue(data);
        }
    }

    /// Writes waiting client input into the console.
    fn write_master(&mut self) {
        while !self.to_master.is_empty() {
            match self.master.write(&self.to_master) {
                Ok(0) => return,
                Ok(n) => {
                    self.to_master.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    eprintln!(
                        "zsched: console: write: {e}; {} bytes of input dropped",
                        self.to_master.len()
                    );
                    self.to_master.clear();
                    return;
                }
            }
        }
    }

    /// The attached client is ready (or gone).
    fn client_ready(&mut self, events: PollFlags) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        if events.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            && !c.input_done
        {
            let room = INPUT_CAP.saturating_sub(self.to_master.len());
            let mut buf = [0u8; INPUT_CAP];
            if room > 0 {
                match c.stream.read(&mut buf[..room]) {
                    Ok(0) => c.input_done = true,
                    Ok(n) => self.to_master.extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                    Err(_) => {
                        self.client = None;
                        return;
                    }
                }
            }
        }
        if events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            // Both directions closed (a unix socket says POLLHUP only then).
            self.client = None;
        }
    }

    /// Sends waiting output to the client; drops a client that is gone.
    fn flush_client(&mut self) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        if c.flush().is_err() {
            self.client = None;
        }
    }

    /// Takes every waiting connection: the first when none is attached, the others
    /// refused.
    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.client.is_some() {
                        let by = self
                            .client
                            .as_ref()
                            .and_then(|c| peer_pid(&c.stream))
                            .map_or(String::new(), |pid| format!(" (by pid {pid})"));
                        let line = format!("{REFUSED_PREFIX}console already attached{by}\n");
                        // Best effort: a fresh socket's buffer takes one line.
                        let _ = send(stream.as_raw_fd(), line.as_bytes(), MsgFlags::MSG_NOSIGNAL);
                        continue;
                    }
                    let mut client = Client {
                        stream,
                        out: VecDeque::new(),
                        dropped: 0,
                        input_done: false,
                    };
                    client.out.extend(format!("{READY}\n").as_bytes());
                    self.client = Some(client);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of descriptors, most likely: the listener stays readable,
                    // so stop polling it for a while rather than spin.
                    eprintln!("zsched: console: accept: {e}; not accepting for {ACCEPT_PAUSE:?}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }
}

impl Client {
    /// Queues output, or drops it (and counts it) when it does not fit.
    fn queue(&mut self, data: &[u8]) {
        if self.dropped > 0 {
            let note = format!(
                "\r\n[zonefleet: {} bytes of console output dropped: this client read too slowly]\r\n",
                self.dropped
            );
            if self.out.len() + note.len() <= OUTPUT_CAP {
                self.out.extend(note.as_bytes());
                self.dropped = 0;
            }
        }
        if self.dropped == 0 && self.out.len() + data.len() <= OUTPUT_CAP {
            self.out.extend(data);
        } else {
            self.dropped += data.len() as u64;
        }
    }

    /// Sends what is waiting, as much as the socket takes now.
    fn flush(&mut self) -> Result<(), nix::Error> {
        while !self.out.is_empty() {
            let (head, _) = self.out.as_slices();
            // MSG_NOSIGNAL: a client gone must not SIGPIPE zsched.
            match send(self.stream.as_raw_fd(), head, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(nix::Error::EINTR) => {}
                Err(nix::Error::EAGAIN) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Drop for ConsoleRelay {
    fn drop(&mut self) {
        // Best effort: what the client was still owed, as far as it takes it now.
        if let Some(c) = self.client.as_mut() {
            let _ = c.flush();
        }
        let ours = std::fs::symlink_metadata(&self.socket)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.socket_id);
        if ours {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

/// Listens at `path`, mode 0600 from the start: bound under a temporary name,
/// restricted, then renamed into place, so no one connects before the mode is set.
fn listen(path: &Path) -> Result<(UnixListener, (u64, u64)), ConsoleError> {
    let fail = |source: std::io::Error| ConsoleError::Socket {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(fail)?;
    let placed = listener
        .set_nonblocking(true)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)))
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| std::fs::symlink_metadata(path));
    match placed {
        Ok(meta) => Ok((listener, (meta.dev(), meta.ino()))),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(fail(e))
        }
    }
}

/// The pid of the process at the other end of `stream`, if the kernel says.
fn peer_pid(stream: &UnixStream) -> Option<i32> {
    nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|c| c.pid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_clients_output_is_dropped_with_a_note_and_resumes() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut c = Client {
            stream: a,
            out: VecDeque::new(),
            dropped: 0,
            input_done: false,
        };
        c.queue(&vec![b'x'; OUTPUT_CAP - 10]);
        c.queue(b"0123456789a"); // one byte too many: dropped whole
        assert_eq!(c.out.len(), OUTPUT_CAP - 10);
        assert_eq!(c.dropped, 11);
        c.out.drain(..1000);
        c.queue(b"next");
        let out: Vec<u8> = c.out.iter().copied().collect();
        let note = b"\r\n[zonefleet: 11 bytes of console output dropped: this client read too slowly]\r\nnext";
        assert!(
            out.ends_with(note),
            "{:?}",
            String::from_utf8_lossy(&out[out.len() - 120..])
        );
        assert_eq!(c.dropped, 0);
    }
}
