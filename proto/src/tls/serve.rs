//! The TLS accept loop that feeds `tonic::transport::Server::serve_with_incoming`, and
//! the registry of the connections it handed out, through which a node closes the live
//! connections of a peer it no longer trusts.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::Stream;
use tonic::transport::server::Connected;

use super::pending::{Admission, Pending};
use super::RevocationSet;
use crate::pki::{identity_from_cert_der, serial_from_cert_der, Identity};

/// How long a client may take to complete the TLS handshake (a fleet peer on the
/// management network takes milliseconds).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How many handshakes may be in progress at once in all.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1024;
/// How many handshakes one source address may have in progress at once.
pub const DEFAULT_MAX_PENDING_PER_SOURCE: usize = 64;

/// Tuning of [`TlsIncoming`].
#[derive(Debug, Clone, Copy)]
pub struct IncomingOptions {
    /// A handshake not finished in this time is dropped.
    pub handshake_timeout: Duration,
    /// At most this many handshakes run at once; when full, the oldest handshake of the
    /// source with the most in progress is dropped for a new one ([`super::pending`]).
    pub max_pending_handshakes: usize,
    /// At most this many per source address; a connection beyond it is closed at once.
    pub max_pending_per_source: usize,
}

impl Default for IncomingOptions {
    fn default() -> Self {
        IncomingOptions {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            max_pending_per_source: DEFAULT_MAX_PENDING_PER_SOURCE,
        }
    }
}

/// How often an accept loop that keeps failing (out of file descriptors) says so.
const ACCEPT_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// A stream of established TLS connections, for
/// `Server::builder()...serve_with_incoming(incoming)`.
///
/// A background task accepts TCP connections and runs each handshake in its own task
/// with a timeout, so a slow or silent client cannot hold up the others. Failed
/// handshakes (a refused client certificate, a timeout) are logged at debug level and
/// never reach tonic. Dropping the stream stops the accept loop and closes the listener.
///
/// Each item is a [`TlsConnection`], whose tonic connect info is
/// `TlsConnectInfo<TcpConnectInfo>`: that is where the role layer finds the peer's
/// certificate. Every connection whose peer presented a fleet identity is listed in
/// [`TlsIncoming::live`] while it is open.
pub struct TlsIncoming {
    local_addr: SocketAddr,
    connections: mpsc::Receiver<io::Result<TlsConnection>>,
    live: LiveConnections,
    accept_loop: JoinHandle<()>,
}

impl std::fmt::Debug for TlsIncoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIncoming")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl TlsIncoming {
    /// Starts accepting on `listener` with `config` (see [`super::server_config`]).
    /// Must be called inside a tokio runtime.
    pub fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        options: IncomingOptions,
    ) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(options.max_pending_handshakes.max(1));
        let live = LiveConnections::default();
        let accept_loop = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(config),
            options,
            live.clone(),
            tx,
        ));
        Ok(TlsIncoming {
            local_addr,
            connections: rx,
            live,
            accept_loop,
        })
    }

    /// Binds `addr` and starts accepting (port 0 picks a free port: see
    /// [`TlsIncoming::local_addr`]).
    pub async fn bind(
        addr: SocketAddr,
        config: Arc<ServerConfig>,
        options: IncomingOptions,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Self::new(listener, config, options)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The open connections this listener accepted, by peer identity (a handle that
    /// outlives the stream).
    pub fn live(&self) -> LiveConnections {
        self.live.clone()
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl Stream for TlsIncoming {
    type Item = io::Result<TlsConnection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    options: IncomingOptions,
    live: LiveConnections,
    tx: mpsc::Sender<io::Result<TlsConnection>>,
) {
    let pending = Pending::new(
        options.max_pending_per_source,
        options.max_pending_handshakes,
    );
    // Accept failures (EMFILE, ENFILE, ECONNABORTED…) never stop the loop: it backs
    // off (10 ms doubling to 1 s), says so once per interval, and established
    // connections keep being served meanwhile.
    let mut backoff = Duration::from_millis(10);
    let mut failures: u64 = 0;
    let mut last_said: Option<std::time::Instant> = None;
    let mut refused: u64 = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => {
                backoff = Duration::from_millis(10);
                conn
            }
            Err(error) => {
                failures += 1;
                if last_said.is_none_or(|at| at.elapsed() >= ACCEPT_FAILURE_LOG_EVERY) {
                    tracing::warn!(%error, failures, "accept failed; backing off, still serving open connections");
                    last_said = Some(std::time::Instant::now());
                    failures = 0;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let ticket = match pending.admit(peer.ip()) {
            Admission::Admitted(ticket) => ticket,
            Admission::SourceFull => {
                refused += 1;
                if refused.is_power_of_two() {
                    tracing::warn!(%peer, refused, "too many handshakes in progress from one source: connection closed");
                }
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        let live = live.clone();
        let timeout = options.handshake_timeout;
        tokio::spawn(async move {
            // Held until the handshake ends: its slot in `pending`.
            let mut ticket = ticket;
            tokio::select! {
                handshake = tokio::time::timeout(timeout, acceptor.accept(tcp)) => match handshake {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(live.register(tls))).await;
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake refused");
                    }
                    Err(_) => {
                        tracing::debug!(%peer, ?timeout, "TLS handshake timed out");
                    }
                },
                _ = &mut ticket.cancelled => {
                    tracing::debug!(%peer, "TLS handshake pushed out by newer ones (the listener is full)");
                }
            }
        });
    }
}

/// The connections a [`TlsIncoming`] handed out that are still open, by the fleet
/// identity their peer presented (cheap to clone; all clones share one registry).
///
/// This is how a node stops trusting a peer at once rather than at its next request:
/// [`LiveConnections::close_where`] makes every matching connection fail its pending and
/// future reads and writes, so the server drops it.
#[derive(Debug, Clone, Default)]
pub struct LiveConnections {
    registry: Arc<Mutex<Registry>>,
}

#[derive(Debug, Default)]
struct Registry {
    next: u64,
    open: HashMap<u64, Peer>,
}

/// One open connection's peer: its identity, certificate serial (hex) and closer.
#[derive(Debug)]
struct Peer {
    identity: Identity,
    serial: Option<String>,
    closer: Arc<Closer>,
}

impl LiveConnections {
    /// Closes every open connection whose peer identity `doomed` picks; returns how many.
    pub fn close_where(&self, doomed: impl Fn(&Identity) -> bool) -> usize {
        let registry = self.lock();
        let mut closed = 0;
        for peer in registry.open.values() {
            if doomed(&peer.identity) && !peer.closer.is_closed() {
                peer.closer.close();
                closed += 1;
            }
        }
        closed
    }

    /// Closes every open connection whose certificate `revoked` refuses (by serial or
    /// identity); returns how many.
    pub fn close_revoked(&self, revoked: &RevocationSet) -> usize {
        if revoked.is_empty() {
            return 0;
        }
        let registry = self.lock();
        let mut closed = 0;
        for peer in registry.open.values() {
            let refusal = revoked.refusal(&peer.identity, peer.serial.as_deref());
            if refusal.is_some() && !peer.closer.is_closed() {
                peer.closer.close();
                closed += 1;
            }
        }
        closed
    }

    /// The identities of the open connections (one entry per connection).
    pub fn identities(&self) -> Vec<Identity> {
        let registry = self.lock();
        registry
            .open
            .values()
            .filter(|peer| !peer.closer.is_closed())
            .map(|peer| peer.identity.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // The registry holds no invariant a panicking holder could have broken.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wraps an established connection, listing it while it lives when its peer
    /// presented a fleet identity.
    fn register(&self, stream: TlsStream<TcpStream>) -> TlsConnection {
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first());
        let identity = leaf.and_then(|leaf| identity_from_cert_der(leaf).ok());
        let serial = leaf.and_then(|leaf| serial_from_cert_der(leaf).ok());
        let closer = Arc::new(Closer::default());
        let registration = identity.map(|identity| {
            let mut registry = self.lock();
            let key = registry.next;
            registry.next += 1;
            registry.open.insert(
                key,
                Peer {
                    identity,
                    serial,
                    closer: closer.clone(),
                },
            );
            Registration {
                live: self.clone(),
                key,
            }
        });
        TlsConnection {
            _registration: registration,
            closer,
            stream,
        }
    }
}

/// Takes a connection off the registry when it is dropped.
#[derive(Debug)]
struct Registration {
    live: LiveConnections,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.live.lock().open.remove(&self.key);
    }
}

/// The "closed" flag of one connection and the tasks to wake when it is set.
#[derive(Debug, Default)]
struct Closer {
    closed: AtomicBool,
    /// The last reader's and writer's wakers.
    wakers: Mutex<[Option<Waker>; 2]>,
}

const READER: usize = 0;
const WRITER: usize = 1;

impl Closer {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    /// `Err` once closed; otherwise remembers `cx`'s waker for [`Closer::close`]. The
    /// waker is stored before the flag is read, so a close in between still wakes it.
    fn check(&self, side: usize, cx: &Context<'_>) -> io::Result<()> {
        {
            let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
            match &mut wakers[side] {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
        }
        if self.is_closed() {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed by this node: the peer is no longer trusted",
            ))
        } else {
            Ok(())
        }
    }
}

/// One connection accepted by [`TlsIncoming`]: the TLS stream, which fails every read
/// and write once [`LiveConnections::close_where`] picked it.
#[derive(Debug)]
pub struct TlsConnection {
    /// Declared first so it is dropped first: the entry leaves the registry before the
    /// socket closes.
    _registration: Option<Registration>,
    closer: Arc<Closer>,
    stream: TlsStream<TcpStream>,
}

impl TlsConnection {
    /// The TLS stream.
    pub fn stream(&self) -> &TlsStream<TcpStream> {
        &self.stream
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = <TlsStream<TcpStream> as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.closer.check(READER, cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.closer.check(WRITER, cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.closer.check(WRITER, cx)?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.closer.check(WRITER, cx)?;
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
