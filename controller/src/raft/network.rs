//! The Raft network: openraft's RPCs as gRPC calls to the peer's `Raft` service over
//! mTLS, presenting this controller's certificate and insisting that the server is
//! the controller with the target's id. Every connection is opened by the
//! controller's [`Dialer`](super::dial::Dialer). A peer whose certificate or identity
//! this controller has revoked gets no further RPC, even over a connection made
//! before the revocation.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::{AnyError, BasicNode};
use prost::Message;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};
use zonefleet_proto::pb::raft_client::RaftClient;
use zonefleet_proto::pki::{serial_from_cert_der, Identity};
use zonefleet_proto::tls::{
    client_config, CertKey, ExpectedPeer, FleetTrust, Refusal, Revocations, TlsConnector, TlsError,
};

use super::codec;
use super::dial::{PeerStream, SharedDialer};
use super::{NodeId, TypeConfig};

/// The largest Raft message a controller sends or accepts (16 MiB).
pub const MAX_RAFT_MESSAGE: usize = 16 * 1024 * 1024;
/// How long a connection attempt to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors building a peer client.
#[derive(Debug, thiserror::Error)]
pub enum NetworkSetupError {
    /// The TLS client configuration could not be built.
    #[error(transparent)]
    Tls(#[from] zonefleet_proto::tls::TlsError),
    /// The peer address is malformed.
    #[error("peer address {0:?}: {1}")]
    Address(String, String),
    /// The peer's certificate or identity is revoked.
    #[error("controller {0}: {1}")]
    Revoked(NodeId, Refusal),
}

/// Opens a peer's connections: TLS (as [`TlsConnector`] does it) over a stream the
/// controller's dialer opened to that peer.
#[derive(Clone)]
struct PeerConnector {
    tls: TlsConnector,
    dialer: SharedDialer,
    peer: NodeId,
    addr: String,
    /// The serial of the certificate the peer presented last.
    serial: Arc<Mutex<Option<String>>>,
}

/// Whether a peer is still trusted: checked before each RPC, so a peer revoked after
/// its connection was made gets nothing more over it (the verifier refuses it on the
/// next handshake).
#[derive(Clone)]
struct PeerGuard {
    peer: NodeId,
    identity: Option<Identity>,
    serial: Arc<Mutex<Option<String>>>,
    revocations: Revocations,
}

impl PeerGuard {
    fn check(&self) -> Result<(), NetworkSetupError> {
        let Some(identity) = &self.identity else {
            return Ok(());
        };
        let serial = self
            .serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match self.revocations.refusal(identity, serial.as_deref()) {
            Some(refusal) => Err(NetworkSetupError::Revoked(self.peer, refusal)),
            None => Ok(()),
        }
    }
}

impl tower::Service<Uri> for PeerConnector {
    type Response = TokioIo<TlsStream<PeerStream>>;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, TlsError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TlsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let dial = this.dialer.dial(this.peer, this.addr.clone());
            let tls = this.tls.connect_over(&uri, |_, _| dial).await?;
            let serial = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|leaf| serial_from_cert_der(leaf).ok());
            *this.serial.lock().unwrap_or_else(|p| p.into_inner()) = serial;
            Ok(TokioIo::new(tls))
        })
    }
}

type ChannelMap = HashMap<(NodeId, String), (RaftClient<Channel>, PeerGuard)>;

/// Makes and caches gRPC channels to other controllers.
#[derive(Clone)]
pub struct PeerChannels {
    trust: FleetTrust,
    own: CertKey,
    dialer: SharedDialer,
    channels: Arc<Mutex<ChannelMap>>,
}

impl std::fmt::Debug for PeerChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerChannels").finish_non_exhaustive()
    }
}

impl PeerChannels {
    /// Channels authenticated as `own`, trusting `trust`, over streams `dialer` opens.
    pub fn new(trust: FleetTrust, own: CertKey, dialer: SharedDialer) -> Self {
        PeerChannels {
            trust,
            own,
            dialer,
            channels: Arc::default(),
        }
    }

    /// A `Raft` client for controller `id` at `addr` (lazily connected; reconnects),
    /// refused once that controller's certificate or identity is revoked.
    pub fn client(&self, id: NodeId, addr: &str) -> Result<RaftClient<Channel>, NetworkSetupError> {
        self.guarded_client(id, addr).map(|(client, _)| client)
    }

    fn guarded_client(
        &self,
        id: NodeId,
        addr: &str,
    ) -> Result<(RaftClient<Channel>, PeerGuard), NetworkSetupError> {
        let key = (id, addr.to_owned());
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((client, guard)) = channels.get(&key) {
            if let Err(e) = guard.check() {
                // Dropped here: the next client reconnects, and the verifier refuses it.
                channels.remove(&key);
                return Err(e);
            }
            return Ok((client.clone(), guard.clone()));
        }
        let config = client_config(
            &self.trust,
            ExpectedPeer::Controller(id.to_string()),
            Some(&self.own),
        )?;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| NetworkSetupError::Address(addr.to_owned(), e.to_string()))?
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let guard = PeerGuard {
            peer: id,
            identity: Identity::controller(self.trust.cluster(), &id.to_string()).ok(),
            serial: Arc::default(),
            revocations: self.trust.revocations().clone(),
        };
        guard.check()?;
        let channel = endpoint.connect_with_connector_lazy(PeerConnector {
            tls: TlsConnector::new(config).with_timeout(CONNECT_TIMEOUT),
            dialer: self.dialer.clone(),
            peer: id,
            addr: addr.to_owned(),
            serial: guard.serial.clone(),
        });
        let client = RaftClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE);
        channels.insert(key, (client.clone(), guard.clone()));
        Ok((client, guard))
    }
}

/// openraft's network factory.
#[derive(Debug, Clone)]
pub struct Network {
    channels: PeerChannels,
}

impl Network {
    /// A factory over `channels`.
    pub fn new(channels: PeerChannels) -> Self {
        Network { channels }
    }
}

/// The client for one peer.
pub struct PeerClient {
    client: Result<(RaftClient<Channel>, PeerGuard), String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            client: self
                .channels
                .guarded_client(target, &node.addr)
                .map_err(|e| e.to_string()),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

fn unreachable<E: std::error::Error>(why: impl std::fmt::Display) -> RpcErr<E> {
    RPCError::Unreachable(Unreachable::new(&AnyError::error(why.to_string())))
}

fn status_err<E: std::error::Error>(status: tonic::Status) -> RpcErr<E> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => unreachable(status.message()),
        _ => RPCError::Network(NetworkError::new(&AnyError::error(format!(
            "{:?}: {}",
            status.code(),
            status.message()
        )))),
    }
}

fn decode_err<E: std::error::Error>(e: codec::CodecError) -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&AnyError::new(&e)))
}

impl PeerClient {
    // openraft's error type is what the trait returns; boxing it here would not help.
    #[allow(clippy::result_large_err)]
    fn client<E: std::error::Error>(&self) -> Result<RaftClient<Channel>, RpcErr<E>> {
        let (client, guard) = self.client.as_ref().map_err(unreachable)?;
        guard.check().map_err(unreachable)?;
        Ok(client.clone())
    }

    fn request<T>(message: T, option: &RPCOption) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(option.hard_ttl());
        request
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: openraft::raft::AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<openraft::raft::AppendEntriesResponse<NodeId>, RpcErr> {
        let mut client = self.client()?;
        let request = codec::append_request_to_pb(&rpc);
        // Batched writes make entries large: a catching-up follower could be sent more
        // than a Raft message may hold. openraft retries at once with fewer entries.
        let size = request.encoded_len();
        let entries = rpc.entries.len() as u64;
        if size > MAX_RAFT_MESSAGE / 2 && entries > 1 {
            let hint =
                (entries * (MAX_RAFT_MESSAGE as u64 / 4) / size as u64).clamp(1, entries - 1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        let response = client
            .append_entries(Self::request(request, &option))
            .await
            .map_err(status_err)?;
        codec::append_response_from_pb(response.get_ref()).map_err(decode_err)
    }

    async fn install_snapshot(
        &mut self,
        rpc: openraft::raft::InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<openraft::raft::InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let mut client = self.client()?;
        let response = client
            .install_snapshot(Self::request(codec::snapshot_request_to_pb(&rpc), &option))
            .await
            .map_err(status_err)?;
        let vote = response
            .get_ref()
            .vote
            .as_ref()
            .map(codec::vote_from_pb)
            .ok_or_else(|| {
                decode_err(codec::CodecError {
                    what: "InstallSnapshotResponse",
                    reason: "vote is missing".to_owned(),
                })
            })?;
        Ok(openraft::raft::InstallSnapshotResponse { vote })
    }

    async fn vote(
        &mut self,
        rpc: openraft::raft::VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<openraft::raft::VoteResponse<NodeId>, RpcErr> {
        let mut client = self.client()?;
        let response = client
            .vote(Self::request(codec::vote_request_to_pb(&rpc), &option))
            .await
            .map_err(status_err)?;
        codec::vote_response_from_pb(response.get_ref()).map_err(decode_err)
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}
