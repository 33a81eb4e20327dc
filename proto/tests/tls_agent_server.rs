//! The agent's own listener (`agent_server_config` + `RoleLayer`), with real handshakes
//! on loopback: operators and controllers get through to the `Agent` service, an agent
//! certificate is PERMISSION_DENIED, a client without a certificate is refused at the
//! handshake, and a renewed certificate is served from the next connection on.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status, Streaming};
use uuid::Uuid;
use zonefleet_proto::auth::{Role, RoleLayer};
use zonefleet_proto::pb::agent_client::AgentClient;
use zonefleet_proto::pb::agent_server::{Agent, AgentServer};
use zonefleet_proto::pb::*;
use zonefleet_proto::pki::{serial_from_cert_der, FleetCa, IssuedCert, Validity};
use zonefleet_proto::tls::{
    agent_server_config, client_config, connect_channel, CertKey, ExpectedPeer, FleetTrust,
    IncomingOptions, ReloadableCert, TlsIncoming,
};

const CLUSTER: &str = "prod";

/// An `Agent` service that answers `LocalStatus` with the caller's role (in the
/// hostname) and nothing else.
struct EchoRole;

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for EchoRole {
    type ExecStream = Stream<ExecOutput>;
    async fn exec(
        &self,
        _request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        Err(Status::unimplemented("exec"))
    }
    type LogsStream = Stream<LogChunk>;
    async fn logs(
        &self,
        _request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        Err(Status::unimplemented("logs"))
    }
    async fn local_status(
        &self,
        request: Request<LocalStatusRequest>,
    ) -> Result<Response<LocalStatusResponse>, Status> {
        let role = Role::from_request(&request)?;
        Ok(Response::new(LocalStatusResponse {
            sysinfo: Some(HostSysinfo {
                hostname: role.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

fn key(issued: &IssuedCert) -> CertKey {
    CertKey::from_pem(&issued.cert_pem, issued.key_pem.as_ref().unwrap()).unwrap()
}

fn day() -> Validity {
    Validity::days(1).unwrap()
}

async fn serve(trust: &FleetTrust, own: Arc<ReloadableCert>) -> SocketAddr {
    let config = agent_server_config(trust, own).unwrap();
    let incoming = TlsIncoming::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        IncomingOptions::default(),
    )
    .await
    .unwrap();
    let addr = incoming.local_addr();
    tokio::spawn(
        Server::builder()
            .layer(RoleLayer::new(CLUSTER))
            .add_service(AgentServer::new(EchoRole))
            .serve_with_incoming(incoming),
    );
    addr
}

async fn local_status(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<String, Status> {
    let channel = connect_channel(&addr.to_string(), config)
        .await
        .map_err(|e| Status::unavailable(format!("connect: {e}")))?;
    AgentClient::new(channel)
        .local_status(LocalStatusRequest {})
        .await
        .map(|r| r.into_inner().sysinfo.unwrap_or_default().hostname)
}

/// The serial of the certificate the server presents to a bare handshake.
async fn served_serial(addr: SocketAddr, config: Arc<ClientConfig>) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    serial_from_cert_der(&leaf).unwrap()
}

#[tokio::test]
async fn the_agent_listener_serves_operators_and_controllers_only() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let ca = FleetCa::generate(CLUSTER).unwrap();
        let trust = FleetTrust::new(CLUSTER, vec![ca.cert_der().clone()]).unwrap();
        let host = Uuid::new_v4();
        let first = ca.issue_agent(host, &[], day()).unwrap();
        let own = ReloadableCert::new(&key(&first)).unwrap();
        let addr = serve(&trust, own.clone()).await;
        let to_agent =
            |who: Option<&CertKey>| client_config(&trust, ExpectedPeer::Agent(host), who).unwrap();

        // An admin, a viewer and a controller reach it, dialling it as the agent of
        // its host (the certificate the controllers issue agents has serverAuth).
        let admin = key(&ca.issue_operator("alice", day()).unwrap());
        let viewer = key(&ca
            .issue_operator_with_role("bob", zonefleet_proto::pki::OperatorRole::Viewer, day())
            .unwrap());
        let controller = key(&ca.issue_controller("c1", &[], day()).unwrap());
        assert_eq!(
            local_status(addr, to_agent(Some(&admin))).await.unwrap(),
            "operator alice"
        );
        assert_eq!(
            local_status(addr, to_agent(Some(&viewer))).await.unwrap(),
            "operator bob (viewer)"
        );
        assert_eq!(
            local_status(addr, to_agent(Some(&controller)))
                .await
                .unwrap(),
            "controller c1"
        );

        // Another host's agent: past the handshake, refused per RPC.
        let other = key(&ca.issue_agent(Uuid::new_v4(), &[], day()).unwrap());
        let refused = local_status(addr, to_agent(Some(&other)))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        // Itself, too: no agent calls an agent.
        let same = key(&ca.issue_agent(host, &[], day()).unwrap());
        let refused = local_status(addr, to_agent(Some(&same))).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

        // No client certificate: refused at the handshake (TLS 1.3 says so after the
        // client finished, at its first read).
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(to_agent(None))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .ok();
        let mut buf = [0u8; 64];
        let err = tls.read(&mut buf).await.unwrap_err().to_string();
        assert!(err.contains("CertificateRequired"), "{err}");

        // A certificate of another CA for the same identity: refused at the handshake.
        let rogue_ca = FleetCa::generate(CLUSTER).unwrap();
        let rogue = key(&rogue_ca.issue_operator("alice", day()).unwrap());
        let refused = local_status(addr, to_agent(Some(&rogue)))
            .await
            .unwrap_err();
        assert!(
            matches!(refused.code(), Code::Unavailable | Code::Unknown),
            "{refused:?}"
        );

        // The client refuses a server that is not the agent of the host it dialled.
        let wrong =
            client_config(&trust, ExpectedPeer::Agent(Uuid::new_v4()), Some(&admin)).unwrap();
        assert!(local_status(addr, wrong).await.is_err());

        // Renewal: the next connection is served the new certificate.
        let first_serial = serial_from_cert_der(&key(&first).chain[0]).unwrap();
        assert_eq!(
            served_serial(addr, to_agent(Some(&admin))).await,
            first_serial
        );
        let renewed = ca.issue_agent(host, &[], day()).unwrap();
        own.replace(&key(&renewed)).unwrap();
        let renewed_serial = serial_from_cert_der(&key(&renewed).chain[0]).unwrap();
        assert_ne!(renewed_serial, first_serial);
        assert_eq!(
            served_serial(addr, to_agent(Some(&admin))).await,
            renewed_serial
        );
        assert_eq!(
            local_status(addr, to_agent(Some(&admin))).await.unwrap(),
            "operator alice"
        );
        // A key that is not the certificate's is refused; the current one stays.
        let mismatched = CertKey {
            chain: key(&first).chain,
            key: key(&renewed).key,
        };
        assert!(own.replace(&mismatched).is_err());
        assert_eq!(
            served_serial(addr, to_agent(Some(&admin))).await,
            renewed_serial
        );
    })
    .await
    .expect("test timed out");
}

#[test]
fn the_agent_listener_takes_an_agent_certificate_of_its_cluster_only() {
    let ca = FleetCa::generate(CLUSTER).unwrap();
    let trust = FleetTrust::new(CLUSTER, vec![ca.cert_der().clone()]).unwrap();
    let controller = key(&ca.issue_controller("c1", &[], day()).unwrap());
    let err = agent_server_config(&trust, ReloadableCert::new(&controller).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("agent certificate"), "{err}");
    let operator = key(&ca.issue_operator("alice", day()).unwrap());
    let err = agent_server_config(&trust, ReloadableCert::new(&operator).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("client-only"), "{err}");
    let other = FleetCa::generate("other").unwrap();
    let agent = key(&other.issue_agent(Uuid::new_v4(), &[], day()).unwrap());
    let err = agent_server_config(&trust, ReloadableCert::new(&agent).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not in cluster"), "{err}");
}
