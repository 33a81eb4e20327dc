//! A network between in-process controllers whose links tests cut and heal: real TCP
//! on loopback, opened through each controller's [`Dialer`] seam.
//!
//! A *link* is the calls one controller makes to another: cutting `a → b` stops
//! `a`'s requests to `b` (and their answers) while `b`'s requests to `a` still go
//! through; [`Partitions::cut`] cuts both directions. On a cut link:
//!
//! * a new connection hangs (until the link heals, or its dialer's caller gives up),
//!   as a peer that drops packets does — never "connection refused", which the
//!   failover probe takes for a process that is gone;
//! * an existing connection fails at its next read or write (and wakes a task waiting
//!   on it), and stays failed after the link heals, as a connection broken by a real
//!   partition does.
//!
//! The controllers' servers need no check of their own: nothing reaches them over a
//! cut link.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use zonefleet_controller::raft::dial::{DialFuture, Dialer, PeerStream};
use zonefleet_controller::raft::NodeId;

/// One directed link's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LinkState {
    /// Whether the link is cut now.
    cut: bool,
    /// How many times it was cut: a connection opened before the latest cut is dead.
    cuts: u64,
}

/// One directed link: its state, and the wakers of the connections over it (woken
/// when it is cut, so a task waiting to read fails at once).
#[derive(Debug)]
struct Link {
    state: watch::Sender<LinkState>,
    streams: Mutex<Vec<Weak<StreamWakers>>>,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            state: watch::Sender::new(LinkState::default()),
            streams: Mutex::default(),
        }
    }
}

impl Link {
    fn set_cut(&self, cut: bool) {
        self.state.send_if_modified(|s| {
            if s.cut == cut {
                return false;
            }
            s.cut = cut;
            if cut {
                s.cuts += 1;
            }
            true
        });
        if cut {
            let mut streams = lock(&self.streams);
            streams.retain(|w| match w.upgrade() {
                Some(stream) => {
                    stream.wake();
                    true
                }
                None => false,
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The directed links, by (from, to).
type LinkMap = HashMap<(NodeId, NodeId), Arc<Link>>;

/// The links between the controllers of one test (cheap to clone: clones share the
/// links).
#[derive(Debug, Clone, Default)]
pub struct Partitions {
    links: Arc<Mutex<LinkMap>>,
}

impl Partitions {
    /// A network with every link up.
    pub fn new() -> Self {
        Self::default()
    }

    fn link(&self, from: NodeId, to: NodeId) -> Arc<Link> {
        lock(&self.links).entry((from, to)).or_default().clone()
    }

    /// The dialer of controller `from`: its connections to a peer go over the link
    /// `from → peer`.
    pub fn dialer(&self, from: NodeId) -> Arc<PartitionDialer> {
        Arc::new(PartitionDialer {
            partitions: self.clone(),
            from,
        })
    }

    /// Cuts the link `from → to` only.
    pub fn cut_one_way(&self, from: NodeId, to: NodeId) {
        self.link(from, to).set_cut(true);
    }

    /// Heals the link `from → to` only.
    pub fn heal_one_way(&self, from: NodeId, to: NodeId) {
        self.link(from, to).set_cut(false);
    }

    /// Cuts `a` and `b` off from each other, both ways.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Heals both ways between `a` and `b`.
    pub fn heal(&self, a: NodeId, b: NodeId) {
        self.heal_one_way(a, b);
        self.heal_one_way(b, a);
    }

    /// Cuts `node` off from each of `others`, both ways.
    pub fn isolate(&self, node: NodeId, others: impl IntoIterator<Item = NodeId>) {
        for other in others {
            self.cut(node, other);
        }
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        let links: Vec<Arc<Link>> = lock(&self.links).values().cloned().collect();
        for link in links {
            link.set_cut(false);
        }
    }

    /// Whether the link `from → to` is cut.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.link(from, to).state.borrow().cut
    }
}

/// One controller's dialer on a [`Partitions`] network (see the module
/// documentation).
#[derive(Debug)]
pub struct PartitionDialer {
    partitions: Partitions,
    from: NodeId,
}

impl Dialer for PartitionDialer {
    fn dial(&self, peer: NodeId, addr: String) -> DialFuture {
        let link = self.partitions.link(self.from, peer);
        Box::pin(async move {
            let mut state = link.state.subscribe();
            // A cut link hangs the connection until it heals.
            let born = state
                .wait_for(|s| !s.cut)
                .await
                .map_err(|_| io::Error::other("the network is gone"))?
                .cuts;
            let tcp = TcpStream::connect(addr.as_str()).await?;
            let _ = tcp.set_nodelay(true);
            let wakers = Arc::new(StreamWakers::default());
            lock(&link.streams).push(Arc::downgrade(&wakers));
            Ok(Box::new(LinkStream {
                tcp,
                link,
                born,
                wakers,
            }) as PeerStream)
        })
    }
}

/// The tasks last waiting on one connection (its reader and its writer).
#[derive(Debug, Default)]
struct StreamWakers {
    read: Mutex<Option<Waker>>,
    write: Mutex<Option<Waker>>,
}

impl StreamWakers {
    fn wake(&self) {
        for slot in [&self.read, &self.write] {
            if let Some(waker) = lock(slot).take() {
                waker.wake();
            }
        }
    }
}

fn remember(slot: &Mutex<Option<Waker>>, cx: &Context<'_>) {
    let mut slot = lock(slot);
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

/// A connection over one link: a TCP stream that fails once the link is cut.
struct LinkStream {
    tcp: TcpStream,
    link: Arc<Link>,
    /// The link's cut count when this connection was opened.
    born: u64,
    wakers: Arc<StreamWakers>,
}

impl LinkStream {
    /// An error once the link was cut after this connection was opened.
    fn check(&self) -> io::Result<()> {
        if self.link.state.borrow().cuts == self.born {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the test cut this link",
            ))
        }
    }
}

impl AsyncRead for LinkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Remembered before the check, so a cut right after it still wakes this task.
        remember(&this.wakers.read, cx);
        this.check()?;
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        remember(&this.wakers.write, cx);
        this.check()?;
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    // TLS writes many records at once: one write of them all, as TCP takes it.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        remember(&this.wakers.write, cx);
        this.check()?;
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        remember(&this.wakers.write, cx);
        this.check()?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// An echo server on loopback; its address.
    async fn echo() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = tcp.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut PeerStream) -> io::Result<()> {
        stream.write_all(b"ping").await?;
        let mut buf = [0; 4];
        stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        Ok(())
    }

    const SHORT: Duration = Duration::from_millis(200);

    /// Whether dialing `to` from `dialer` is still pending after [`SHORT`].
    async fn dial_hangs(dialer: &PartitionDialer, to: NodeId, addr: &str) -> bool {
        tokio::time::timeout(SHORT, dialer.dial(to, addr.to_owned()))
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_cut_link_hangs_new_connections_and_fails_existing_ones_until_healed() {
        let addr = echo().await;
        let net = Partitions::new();
        let one = net.dialer(1);
        let mut before = one.dial(2, addr.clone()).await.unwrap();
        round_trip(&mut before).await.unwrap();
        // A reader waiting on the connection when the link is cut fails at once.
        let mut waiting = one.dial(2, addr.clone()).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut buf = [0; 1];
            waiting.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        net.cut(1, 2);
        assert!(net.is_cut(1, 2) && net.is_cut(2, 1));
        let err = tokio::time::timeout(SHORT, reader)
            .await
            .expect("the waiting reader was woken")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert!(
            round_trip(&mut before).await.is_err(),
            "an existing one fails"
        );
        assert!(dial_hangs(&one, 2, &addr).await, "a new one hangs");
        // A dial pending when the link heals goes through.
        let pending = tokio::spawn({
            let one = net.dialer(1);
            let addr = addr.clone();
            async move { one.dial(2, addr).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        net.heal_all();
        let mut after = tokio::time::timeout(SHORT, pending)
            .await
            .expect("the pending dial finished")
            .unwrap()
            .unwrap();
        round_trip(&mut after).await.unwrap();
        assert!(
            round_trip(&mut before).await.is_err(),
            "a connection broken by the cut stays broken"
        );
        // Other links were never affected.
        let mut other = net.dialer(3).dial(2, addr.clone()).await.unwrap();
        round_trip(&mut other).await.unwrap();
    }

    #[tokio::test]
    async fn a_one_way_cut_stops_one_direction_only() {
        let addr = echo().await;
        let net = Partitions::new();
        let (one, two) = (net.dialer(1), net.dialer(2));
        let mut one_to_two = one.dial(2, addr.clone()).await.unwrap();
        let mut two_to_one = two.dial(1, addr.clone()).await.unwrap();
        net.cut_one_way(1, 2);
        assert!(net.is_cut(1, 2) && !net.is_cut(2, 1));
        assert!(round_trip(&mut one_to_two).await.is_err());
        assert!(dial_hangs(&one, 2, &addr).await);
        round_trip(&mut two_to_one).await.unwrap();
        let mut fresh = two.dial(1, addr.clone()).await.unwrap();
        round_trip(&mut fresh).await.unwrap();
        net.heal_one_way(1, 2);
        let mut healed = one.dial(2, addr).await.unwrap();
        round_trip(&mut healed).await.unwrap();
    }

    #[tokio::test]
    async fn a_cut_link_is_never_refused_and_a_closed_port_still_is() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let net = Partitions::new();
        let one = net.dialer(1);
        let err = match one.dial(2, addr.clone()).await {
            Err(e) => e,
            Ok(_) => panic!("connected to a closed port"),
        };
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        net.cut(1, 2);
        assert!(dial_hangs(&one, 2, &addr).await);
    }
}
