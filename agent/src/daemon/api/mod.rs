//! The `Agent` service this daemon serves (see `agent.proto`): [`exec`] (a command
//! in a zone, like zlogin), [`logs`] (a zone's console log) and `LocalStatus` (the
//! host's sysinfo, capacity and zones as this agent sees them).
//!
//! It is served over mTLS with the host's own enrolled certificate, held in a
//! [`ReloadableCert`] that renewal replaces (the next connection gets the new one).
//! A client must present a fleet certificate ([`tls::agent_server_config`]); the role
//! layer lets operators and controllers through (`Exec`: admins and controllers only)
//! and refuses every agent, this host's included, with `PERMISSION_DENIED`.
//! What is checked of revocations: see `docs/security.md`.

pub mod exec;
pub mod logs;

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};
use zonefleet_proto::auth::RoleLayer;
use zonefleet_proto::host::{Capacity, HostSysinfo};
use zonefleet_proto::pb;
use zonefleet_proto::pb::agent_server::{Agent, AgentServer};
use zonefleet_proto::tls::{self, FleetTrust, IncomingOptions, ReloadableCert, TlsIncoming};

use crate::zone::{ZoneError, ZoneHost};

/// The largest message a client may send (a chunk of stdin, the command).
pub const MAX_AGENT_MESSAGE: usize = 1024 * 1024;

/// Errors starting the listener.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The listen address could not be bound.
    #[error("serving the Agent service on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        error: std::io::Error,
    },
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A zone library error as the API answers it.
pub(crate) fn zone_status(e: ZoneError) -> Status {
    match e {
        ZoneError::NotFound(_) => Status::not_found(format!("{e} on this host")),
        ZoneError::Ambiguous { .. }
        | ZoneError::WrongState { .. }
        | ZoneError::NotRunning { .. }
        | ZoneError::NoConsole { .. } => Status::failed_precondition(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// The address to register for operators: the configured one, else the listen
/// address when it names an IP, else the IP this host reaches the first controller
/// from (a connected UDP socket: no packet is sent) with the listen port. `None`
/// when none can be found (the host then shows no agent address).
pub fn advertised_address(
    listen: SocketAddr,
    advertise: Option<SocketAddr>,
    controllers: &[String],
) -> Option<SocketAddr> {
    if advertise.is_some() {
        return advertise;
    }
    if !listen.ip().is_unspecified() {
        return Some(listen);
    }
    for controller in controllers {
        let Ok(addrs) = controller.to_socket_addrs() else {
            continue;
        };
        for addr in addrs {
            let bind: SocketAddr = if addr.is_ipv4() {
                "0.0.0.0:0".parse().expect("an address")
            } else {
                "[::]:0".parse().expect("an address")
            };
            let local = UdpSocket::bind(bind)
                .and_then(|s| s.connect(addr).map(|()| s))
                .and_then(|s| s.local_addr());
            if let Ok(local) = local {
                return Some(SocketAddr::new(local.ip(), listen.port()));
            }
        }
    }
    None
}

/// The `Agent` service of one host.
pub struct AgentService {
    host: Arc<ZoneHost>,
    runner: exec::ExecRunner,
    sysinfo: HostSysinfo,
    capacity: Arc<dyn Fn() -> Capacity + Send + Sync>,
}

impl std::fmt::Debug for AgentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentService")
            .field("host_id", &self.sysinfo.host_id)
            .finish_non_exhaustive()
    }
}

impl AgentService {
    /// Serves `host`'s zones; `sysinfo` and `capacity` are what `LocalStatus` shows.
    pub fn new(
        host: Arc<ZoneHost>,
        sysinfo: HostSysinfo,
        capacity: Arc<dyn Fn() -> Capacity + Send + Sync>,
    ) -> Self {
        AgentService {
            runner: exec::ExecRunner::of(&host),
            host,
            sysinfo,
            capacity,
        }
    }
}

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentService {
    type ExecStream = Stream<pb::ExecOutput>;

    async fn exec(
        &self,
        request: Request<Streaming<pb::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let rx = exec::start(self.host.clone(), self.runner.clone(), request.into_inner()).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type LogsStream = Stream<pb::LogChunk>;

    async fn logs(
        &self,
        request: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let rx = logs::start(self.host.clone(), request.into_inner()).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn local_status(
        &self,
        _request: Request<pb::LocalStatusRequest>,
    ) -> Result<Response<pb::LocalStatusResponse>, Status> {
        let host = self.host.clone();
        let zones = tokio::task::spawn_blocking(move || host.list())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(zone_status)?;
        let host_id = self.sysinfo.host_id.to_string();
        Ok(Response::new(pb::LocalStatusResponse {
            sysinfo: Some(self.sysinfo.clone().into()),
            capacity: Some((self.capacity)().into()),
            zones: zones
                .into_iter()
                .map(|z| pb::Zone {
                    spec: Some(z.record.spec.clone().into()),
                    host_id: host_id.clone(),
                    observed_state: super::converge::pb_state(z.state) as i32,
                    message: z.message.unwrap_or_default(),
                    init_exit_status: z.last_exit.map(|e| e.status),
                    ..Default::default()
                })
                .collect(),
        }))
    }
}

/// Binds `listen` and serves `service` over mTLS with the certificate `own` holds,
/// trusting `trust` (and refusing what its revocation list names, see
/// [`super::revoked`]), until the returned task is aborted.
pub async fn serve(
    listen: SocketAddr,
    trust: &FleetTrust,
    own: Arc<ReloadableCert>,
    service: AgentService,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ApiError> {
    let config = tls::agent_server_config(trust, own)?;
    let incoming = TlsIncoming::bind(listen, config, IncomingOptions::default())
        .await
        .map_err(|error| ApiError::Bind {
            addr: listen,
            error,
        })?;
    let bound = incoming.local_addr();
    // A revocation closes the open connections it names, too.
    trust.revocations().enforce_on(incoming.live());
    let cluster = trust.cluster().to_owned();
    let task = tokio::spawn(async move {
        let served = Server::builder()
            .layer(RoleLayer::new(&cluster))
            .add_service(
                AgentServer::new(service)
                    .max_decoding_message_size(MAX_AGENT_MESSAGE)
                    .max_encoding_message_size(MAX_AGENT_MESSAGE),
            )
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the Agent service stopped");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_address() {
        let any: SocketAddr = "0.0.0.0:7444".parse().unwrap();
        let given: SocketAddr = "10.1.2.3:9000".parse().unwrap();
        assert_eq!(advertised_address(any, Some(given), &[]), Some(given));
        let bound: SocketAddr = "10.4.5.6:7444".parse().unwrap();
        assert_eq!(advertised_address(bound, None, &[]), Some(bound));
        // The route to a controller on loopback leaves from loopback.
        assert_eq!(
            advertised_address(any, None, &["127.0.0.1:7000".to_owned()]),
            Some("127.0.0.1:7444".parse().unwrap())
        );
        assert_eq!(advertised_address(any, None, &[]), None);
    }
}
