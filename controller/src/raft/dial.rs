//! How a controller opens a byte stream to a peer controller: the one seam under
//! every peer connection (the Raft network, forwarded writes and read indexes, the
//! failover probe). Production dials plain TCP ([`TcpDialer`]); a test harness can
//! put its own network in between (links it cuts and heals) without the controller
//! knowing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::NodeId;

/// A byte stream to a peer controller (TLS runs over it).
pub trait PeerIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PeerIo for T {}

/// A stream a [`Dialer`] opened.
pub type PeerStream = Box<dyn PeerIo>;

/// What [`Dialer::dial`] returns.
pub type DialFuture = Pin<Box<dyn Future<Output = std::io::Result<PeerStream>> + Send>>;

/// Opens streams to peer controllers.
///
/// The failover probe reads a refused connection ([`std::io::ErrorKind::ConnectionRefused`])
/// as "the peer's process is gone"; a dialer for a peer it cannot reach should rather
/// hang (or time out), as an unreachable host does.
pub trait Dialer: std::fmt::Debug + Send + Sync + 'static {
    /// Opens a stream to controller `peer`, listening at `addr` (`HOST:PORT`).
    fn dial(&self, peer: NodeId, addr: String) -> DialFuture;
}

/// A dialer shared by a controller's connections.
pub type SharedDialer = Arc<dyn Dialer>;

/// Plain TCP (with `TCP_NODELAY`): the production dialer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer;

impl Dialer for TcpDialer {
    fn dial(&self, _peer: NodeId, addr: String) -> DialFuture {
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(addr.as_str()).await?;
            let _ = tcp.set_nodelay(true);
            Ok(Box::new(tcp) as PeerStream)
        })
    }
}
