//! The TLS accept loop that feeds `tonic::transport::Server::serve_with_incoming`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::Stream;

/// How long a client may take to complete the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many handshakes may be in progress at once before accepting pauses.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1024;

/// Tuning of [`TlsIncoming`].
#[derive(Debug, Clone, Copy)]
pub struct IncomingOptions {
    /// A handshake not finished in this time is dropped.
    pub handshake_timeout: Duration,
    /// At most this many handshakes run at once; further connections wait in the
    /// kernel's accept backlog.
    pub max_pending_handshakes: usize,
}

impl Default for IncomingOptions {
    fn default() -> Self {
        IncomingOptions {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
        }
    }
}

/// A stream of established TLS connections, for
/// `Server::builder()...serve_with_incoming(incoming)`.
///
/// A background task accepts TCP connections and runs each handshake in its own task
/// with a timeout, so a slow or silent client cannot hold up the others. Failed
/// handshakes (a refused client certificate, a timeout) are logged at debug level and
/// never reach tonic. Dropping the stream stops the accept loop and closes the listener.
///
/// Each item is a `tokio_rustls::server::TlsStream<TcpStream>`, whose tonic connect info
/// is `TlsConnectInfo<TcpConnectInfo>`: that is where the role layer finds the peer's
/// certificate.
pub struct TlsIncoming {
    local_addr: SocketAddr,
    connections: mpsc::Receiver<io::Result<TlsStream<TcpStream>>>,
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
        let accept_loop = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(config),
            options,
            tx,
        ));
        Ok(TlsIncoming {
            local_addr,
            connections: rx,
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
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl Stream for TlsIncoming {
    type Item = io::Result<TlsStream<TcpStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx)
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    options: IncomingOptions,
    tx: mpsc::Sender<io::Result<TlsStream<TcpStream>>>,
) {
    let pending = Arc::new(Semaphore::new(options.max_pending_handshakes.max(1)));
    loop {
        let permit = tokio::select! {
            permit = pending.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = tx.closed() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                // EMFILE, ECONNABORTED…: keep serving, but do not spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        let timeout = options.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Ok(tls)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake refused");
                }
                Err(_) => {
                    tracing::debug!(%peer, ?timeout, "TLS handshake timed out");
                }
            }
        });
    }
}
