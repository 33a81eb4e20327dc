//! Real TLS handshakes and a real tonic server behind `TlsIncoming` + `RoleLayer`, on
//! loopback: what is refused at the handshake, what per RPC, and what gets through.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;
use zonefleet_proto::auth::{Role, RoleLayer};
use zonefleet_proto::pb::control_client::ControlClient;
use zonefleet_proto::pb::control_server::{Control, ControlServer};
use zonefleet_proto::pb::operator_client::OperatorClient;
use zonefleet_proto::pb::operator_server::{Operator, OperatorServer};
use zonefleet_proto::pb::raft_client::RaftClient;
use zonefleet_proto::pb::raft_server::{Raft, RaftServer};
use zonefleet_proto::pb::*;
use zonefleet_proto::pki::{FleetCa, HostName, IssuedCert, Validity};
use zonefleet_proto::tls::{
    client_config, connect_channel, provider, server_config, CertKey, ExpectedPeer,
    FleetServerVerifier, FleetTrust, IncomingOptions, LiveConnections, TlsError, TlsIncoming,
};

#[path = "support/idle_h2.rs"]
mod idle_h2;
use idle_h2::idle_connection;

const CLUSTER: &str = "prod";
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a test body under a deadline.
async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test timed out");
}

// ---- a small implementation of the services: the thing under test is the layer ----

struct TestOperator;

macro_rules! operator_impl {
    ($($name:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl Operator for TestOperator {
            async fn cluster_status(
                &self,
                request: Request<ClusterStatusRequest>,
            ) -> Result<Response<ClusterStatusResponse>, Status> {
                let role = Role::from_request(&request)?;
                Ok(Response::new(ClusterStatusResponse {
                    cluster: "test-cluster-status".to_owned(),
                    leader_id: role.to_string(),
                    ..Default::default()
                }))
            }
            async fn import_image(
                &self,
                _request: Request<tonic::Streaming<ImportImageRequest>>,
            ) -> Result<Response<ImageManifest>, Status> {
                Err(Status::unimplemented("import_image"))
            }
            type WatchEventsStream = std::pin::Pin<
                Box<dyn tokio_stream::Stream<Item = Result<FleetEvent, Status>> + Send>,
            >;
            async fn watch_events(
                &self,
                _request: Request<WatchEventsRequest>,
            ) -> Result<Response<Self::WatchEventsStream>, Status> {
                Err(Status::unimplemented("watch_events"))
            }
            $(
                async fn $name(&self, _request: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(Status::unimplemented(stringify!($name)))
                }
            )*
        }
    };
}

operator_impl! {
    create_zones(CreateZonesRequest) -> CreateZonesResponse;
    get_zone(GetZoneRequest) -> Zone;
    list_zones(ListZonesRequest) -> ListZonesResponse;
    update_zone(UpdateZoneRequest) -> Zone;
    stop_zone(ZoneRef) -> Zone;
    start_zone(ZoneRef) -> Zone;
    reboot_zone(ZoneRef) -> Zone;
    delete_zone(ZoneRef) -> Zone;
    list_hosts(ListHostsRequest) -> ListHostsResponse;
    get_host(HostRef) -> Host;
    cordon_host(HostRef) -> Host;
    uncordon_host(HostRef) -> Host;
    drain_host(DrainHostRequest) -> Host;
    list_images(ListImagesRequest) -> ListImagesResponse;
    get_image(ImageRef) -> ImageManifest;
    delete_image(ImageRef) -> ImageManifest;
    create_network(Network) -> Network;
    list_networks(ListNetworksRequest) -> ListNetworksResponse;
    delete_network(NetworkRef) -> Network;
    create_join_token(CreateJoinTokenRequest) -> CreateJoinTokenResponse;
    add_controller(AddControllerRequest) -> ClusterStatusResponse;
    remove_controller(RemoveControllerRequest) -> ClusterStatusResponse;
    set_host_inventory(SetHostInventoryRequest) -> Host;
    get_fleet_settings(GetFleetSettingsRequest) -> FleetSettings;
    set_fleet_settings(FleetSettings) -> FleetSettings;
    reschedule_zone(ZoneRef) -> Zone;
    revoke_certificate(RevokeCertificateRequest) -> Revocation;
    list_revocations(ListRevocationsRequest) -> ListRevocationsResponse;
    list_join_tokens(ListJoinTokensRequest) -> ListJoinTokensResponse;
    revoke_join_token(RevokeJoinTokenRequest) -> JoinTokenInfo;
    resume_rescheduling(ResumeReschedulingRequest) -> ReschedulePause;
}

struct TestRaft;

#[tonic::async_trait]
impl Raft for TestRaft {
    async fn append_entries(
        &self,
        _request: Request<AppendEntriesRequest>,
    ) -> Result<Response<AppendEntriesResponse>, Status> {
        Err(Status::unimplemented("append_entries"))
    }
    async fn vote(&self, request: Request<VoteRequest>) -> Result<Response<VoteResponse>, Status> {
        assert!(matches!(Role::from_request(&request)?, Role::Controller(_)));
        Ok(Response::new(VoteResponse::default()))
    }
    async fn install_snapshot(
        &self,
        _request: Request<InstallSnapshotRequest>,
    ) -> Result<Response<InstallSnapshotResponse>, Status> {
        Err(Status::unimplemented("install_snapshot"))
    }
    async fn forward_write(
        &self,
        _request: Request<ForwardWriteRequest>,
    ) -> Result<Response<ForwardWriteResponse>, Status> {
        Err(Status::unimplemented("forward_write"))
    }
    async fn read_index(
        &self,
        _request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        Err(Status::unimplemented("read_index"))
    }
    async fn forward_heartbeat(
        &self,
        _request: Request<ForwardHeartbeatRequest>,
    ) -> Result<Response<ForwardHeartbeatResponse>, Status> {
        Err(Status::unimplemented("forward_heartbeat"))
    }
    async fn put_blob(
        &self,
        _request: Request<tonic::Streaming<BlobChunk>>,
    ) -> Result<Response<PutBlobResponse>, Status> {
        Err(Status::unimplemented("put_blob"))
    }
    type GetBlobStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<BlobChunk, Status>> + Send>>;
    async fn get_blob(
        &self,
        _request: Request<GetBlobRequest>,
    ) -> Result<Response<Self::GetBlobStream>, Status> {
        Err(Status::unimplemented("get_blob"))
    }
    async fn host_leases(
        &self,
        _request: Request<HostLeasesRequest>,
    ) -> Result<Response<HostLeasesResponse>, Status> {
        Err(Status::unimplemented("host_leases"))
    }
}

struct TestControl;

type AssignmentStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<AssignmentEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Control for TestControl {
    async fn enroll(
        &self,
        _request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        Err(Status::failed_precondition("test"))
    }
    async fn renew_certificate(
        &self,
        _request: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        Err(Status::unimplemented("renew_certificate"))
    }
    async fn register(
        &self,
        _request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        Err(Status::unimplemented("register"))
    }
    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        Role::from_request(&request)?.require_host(&request.get_ref().host_id)?;
        Ok(Response::new(HeartbeatResponse::default()))
    }
    type WatchAssignmentsStream = AssignmentStream;
    async fn watch_assignments(
        &self,
        _request: Request<WatchAssignmentsRequest>,
    ) -> Result<Response<AssignmentStream>, Status> {
        Err(Status::unimplemented("watch_assignments"))
    }
    async fn report_zone_state(
        &self,
        _request: Request<ReportZoneStateRequest>,
    ) -> Result<Response<ReportZoneStateResponse>, Status> {
        Err(Status::unimplemented("report_zone_state"))
    }
    type DownloadImageStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<ImageChunk, Status>> + Send>>;
    async fn download_image(
        &self,
        _request: Request<DownloadImageRequest>,
    ) -> Result<Response<Self::DownloadImageStream>, Status> {
        Err(Status::unimplemented("download_image"))
    }
}

// ---- fixtures ----

struct Fleet {
    ca: FleetCa,
    trust: FleetTrust,
}

fn fleet() -> Fleet {
    let ca = FleetCa::generate(CLUSTER).unwrap();
    let trust = FleetTrust::new(CLUSTER, vec![ca.cert_der().clone()]).unwrap();
    Fleet { ca, trust }
}

fn days(n: i64) -> Validity {
    Validity::days(n).unwrap()
}

fn loopback() -> Vec<HostName> {
    vec!["127.0.0.1".parse().unwrap()]
}

fn cert_key(issued: &IssuedCert) -> CertKey {
    CertKey::from_pem(&issued.cert_pem, issued.key_pem.as_ref().unwrap()).unwrap()
}

impl Fleet {
    fn controller(&self, id: &str) -> CertKey {
        cert_key(&self.ca.issue_controller(id, &loopback(), days(1)).unwrap())
    }
    fn operator(&self, name: &str) -> CertKey {
        cert_key(&self.ca.issue_operator(name, days(1)).unwrap())
    }
    fn agent(&self, host: Uuid) -> CertKey {
        cert_key(&self.ca.issue_agent(host, &[], days(1)).unwrap())
    }

    /// A certificate signed by the fleet CA but built by hand, bypassing `FleetCa`'s
    /// checks (no identity, another cluster's identity…).
    fn hand_made(&self, sans: Vec<SanType>) -> CertKey {
        let ca_key = KeyPair::from_pem(self.ca.key_pem().expose_pem()).unwrap();
        let issuer = Issuer::from_ca_cert_pem(self.ca.cert_pem(), ca_key).unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(1);
        let cert = params.signed_by(&key, &issuer).unwrap();
        CertKey::from_pem(
            &cert.pem(),
            &zonefleet_proto::pki::KeyPem::new(key.serialize_pem()),
        )
        .unwrap()
    }

    fn client(&self, own: Option<&CertKey>) -> Arc<ClientConfig> {
        client_config(&self.trust, ExpectedPeer::AnyController, own).unwrap()
    }

    /// Like `client`, but presents `own` even when `client_config` would refuse to
    /// (a certificate without a fleet identity of this cluster): a rogue client.
    fn rogue_client(&self, own: &CertKey) -> Arc<ClientConfig> {
        let verifier = FleetServerVerifier::new(&self.trust, ExpectedPeer::AnyController);
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(own.chain.clone(), own.key.clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }
}

/// Serves the three test services behind TlsIncoming + RoleLayer with `own` as the
/// server certificate; returns the address.
async fn serve(fleet: &Fleet, own: &CertKey, options: IncomingOptions) -> SocketAddr {
    serve_live(fleet, own, options).await.0
}

/// Like [`serve`], also returning the listener's live connections.
async fn serve_live(
    fleet: &Fleet,
    own: &CertKey,
    options: IncomingOptions,
) -> (SocketAddr, LiveConnections) {
    let config = server_config(&fleet.trust, own).unwrap();
    let incoming = TlsIncoming::bind("127.0.0.1:0".parse().unwrap(), config, options)
        .await
        .unwrap();
    let addr = incoming.local_addr();
    let live = incoming.live();
    tokio::spawn(
        Server::builder()
            .layer(RoleLayer::new(CLUSTER))
            .add_service(OperatorServer::new(TestOperator))
            .add_service(RaftServer::new(TestRaft))
            .add_service(ControlServer::new(TestControl))
            .serve_with_incoming(incoming),
    );
    (addr, live)
}

async fn controller_server(fleet: &Fleet) -> SocketAddr {
    serve(fleet, &fleet.controller("c1"), IncomingOptions::default()).await
}

/// `ClusterStatus` through a fresh channel; connect failures become `UNAVAILABLE`.
async fn cluster_status(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<ClusterStatusResponse, Status> {
    let channel = connect_channel(&addr.to_string(), config)
        .await
        .map_err(|e| Status::unavailable(format!("connect: {e}")))?;
    OperatorClient::new(channel)
        .cluster_status(ClusterStatusRequest::default())
        .await
        .map(Response::into_inner)
}

async fn vote(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<VoteResponse, Status> {
    let channel = connect_channel(&addr.to_string(), config)
        .await
        .map_err(|e| Status::unavailable(format!("connect: {e}")))?;
    RaftClient::new(channel)
        .vote(VoteRequest::default())
        .await
        .map(Response::into_inner)
}

/// Does a bare TLS handshake and then speaks first: a server that refused the client
/// certificate answers with an alert (TLS 1.3 checks it after the client finished).
/// Returns the error the client saw; panics if the server accepted.
async fn handshake_refusal(addr: SocketAddr, config: Arc<ClientConfig>) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = match tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    {
        Ok(tls) => tls,
        Err(e) => return e.to_string(),
    };
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .ok();
    let mut buf = [0u8; 64];
    match tls.read(&mut buf).await {
        Err(e) => e.to_string(),
        Ok(0) => "closed without data".to_owned(),
        Ok(n) => panic!("the server accepted the handshake and sent {n} bytes"),
    }
}

/// The call failed at the transport, not with a status from the layer or a handler.
fn assert_transport_failure(result: Result<ClusterStatusResponse, Status>) {
    let status = result.expect_err("the call went through");
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Internal
        ),
        "expected a transport failure, got {status:?}"
    );
}

// ---- refused at the handshake ----

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    bounded(async {
        let f = fleet();
        let addr = controller_server(&f).await;
        // Another CA with another name: no issuer found (UnknownCA). Another CA with the
        // same subject (a second `pki init` of the same cluster): the issuer's signature
        // does not verify (DecryptError).
        for (cluster, expected_alert) in [("staging", "UnknownCA"), (CLUSTER, "DecryptError")] {
            let other = FleetCa::generate(cluster).unwrap();
            let foreign = cert_key(&other.issue_operator("admin", days(1)).unwrap());
            let alert = handshake_refusal(addr, f.rogue_client(&foreign)).await;
            assert!(alert.contains(expected_alert), "{cluster}: {alert}");
            assert_transport_failure(cluster_status(addr, f.rogue_client(&foreign)).await);
        }
    })
    .await;
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    bounded(async {
        let f = fleet();
        let addr = controller_server(&f).await;
        let now = OffsetDateTime::now_utc();
        let past = Validity::between(
            now - time::Duration::days(10),
            now - time::Duration::days(1),
        )
        .unwrap();
        let expired = cert_key(&f.ca.issue_operator("admin", past).unwrap());
        let alert = handshake_refusal(addr, f.client(Some(&expired))).await;
        assert!(alert.contains("CertificateExpired"), "{alert}");
        assert_transport_failure(cluster_status(addr, f.client(Some(&expired))).await);
    })
    .await;
}

#[tokio::test]
async fn certificate_without_a_zonefleet_identity_is_refused() {
    bounded(async {
        let f = fleet();
        let addr = controller_server(&f).await;
        let cases = [
            vec![SanType::DnsName("client.example.net".try_into().unwrap())],
            vec![SanType::URI(
                "spiffe://prod/operator/admin".try_into().unwrap(),
            )],
            vec![SanType::URI(
                "zonefleet://prod/operator/../admin".try_into().unwrap(),
            )],
            vec![
                SanType::URI("zonefleet://prod/operator/a".try_into().unwrap()),
                SanType::URI("zonefleet://prod/controller/c9".try_into().unwrap()),
            ],
        ];
        for sans in cases {
            let rogue = f.hand_made(sans.clone());
            let alert = handshake_refusal(addr, f.rogue_client(&rogue)).await;
            assert!(alert.contains("CertificateUnknown"), "{sans:?}: {alert}");
            assert_transport_failure(cluster_status(addr, f.rogue_client(&rogue)).await);
        }
    })
    .await;
}

#[tokio::test]
async fn another_clusters_identity_is_refused() {
    bounded(async {
        let f = fleet();
        let addr = controller_server(&f).await;
        // Signed by this fleet's CA, but naming an operator of cluster "staging".
        let rogue = f.hand_made(vec![SanType::URI(
            "zonefleet://staging/operator/admin".try_into().unwrap(),
        )]);
        let alert = handshake_refusal(addr, f.rogue_client(&rogue)).await;
        assert!(alert.contains("CertificateUnknown"), "{alert}");
        assert_transport_failure(cluster_status(addr, f.rogue_client(&rogue)).await);
    })
    .await;
}

#[tokio::test]
async fn leaves_of_a_signing_ca_are_trusted_through_the_root_alone() {
    bounded(async {
        // As `zfadm pki init` sets a fleet up: only the root is trusted; every leaf is
        // the signing CA's and presents the signing CA's certificate after its own.
        let root = FleetCa::generate(CLUSTER).unwrap();
        let signing = root.issue_signing_ca(days(30)).unwrap();
        let f = Fleet {
            trust: FleetTrust::new(CLUSTER, vec![root.cert_der().clone()]).unwrap(),
            ca: signing,
        };
        assert_eq!(
            f.ca.fingerprint(),
            root.fingerprint(),
            "agents pin the root"
        );
        let addr = controller_server(&f).await;
        let operator = f.operator("alice");
        assert_eq!(operator.chain.len(), 3, "leaf, the signing CA, the root");
        let reply = cluster_status(addr, f.client(Some(&operator)))
            .await
            .unwrap();
        assert_eq!(reply.leader_id, "operator alice");

        // Without the signing CA in the chain the root alone cannot vouch for the leaf.
        let mut leaf_only = f.operator("bob");
        leaf_only.chain.truncate(1);
        let alert = handshake_refusal(addr, f.rogue_client(&leaf_only)).await;
        assert!(alert.contains("UnknownCA"), "{alert}");
        // A signing CA of another root of the same cluster (a second `pki init`).
        let other = FleetCa::generate(CLUSTER)
            .unwrap()
            .issue_signing_ca(days(30))
            .unwrap();
        let foreign = cert_key(&other.issue_operator("admin", days(1)).unwrap());
        assert_transport_failure(cluster_status(addr, f.rogue_client(&foreign)).await);
        // A server of the signing CA is accepted by a client that trusts the root only.
        let server = f.controller("c2");
        assert_eq!(server.chain.len(), 3);
        let addr = serve(&f, &server, IncomingOptions::default()).await;
        cluster_status(addr, f.client(Some(&operator)))
            .await
            .unwrap();
    })
    .await;
}

// ---- per RPC ----

#[tokio::test]
async fn operator_certificate_succeeds() {
    bounded(async {
        let f = fleet();
        let addr = controller_server(&f).await;
        let reply = cluster_status(addr, f.client(Some(&f.operator("alice"))))
            .await
            .unwrap();
        assert_eq!(reply.cluster, "test-cluster-status");
        // The handler saw the role the layer put into the extensions.
        assert_eq!(reply.leader_id, "operator alice");
    })
    .await;
}

#[tokio::test]
async fn agent_calling_an_operator_rpc_is_permission_denied() {
    bounded(async {
        let f = fleet();
        let addr = controller_server(&f).await;
        let agent = f.agent(Uuid::new_v4());
        let status = cluster_status(addr, f.client(Some(&agent)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        // A controller is not an operator either.
        let status = cluster_status(addr, f.client(Some(&f.controller("c2"))))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    })
    .await;
}

#[tokio::test]
async fn only_controllers_speak_raft() {
    bounded(async {
        let f = fleet();
        let addr = controller_server(&f).await;
        for who in [f.agent(Uuid::new_v4()), f.operator("admin")] {
            let status = vote(addr, f.client(Some(&who))).await.unwrap_err();
            assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        }
        vote(addr, f.client(Some(&f.controller("c2"))))
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn without_a_client_certificate_only_enroll_is_reachable() {
    bounded(async {
        let f = fleet();
        let addr = controller_server(&f).await;
        let channel = connect_channel(&addr.to_string(), f.client(None))
            .await
            .unwrap();
        let mut control = ControlClient::new(channel.clone());
        let status = control.enroll(EnrollRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(
            status.message(),
            "test",
            "the status must come from the handler"
        );

        let status = control
            .heartbeat(HeartbeatRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let status = OperatorClient::new(channel.clone())
            .cluster_status(ClusterStatusRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let status = RaftClient::new(channel)
            .vote(VoteRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    })
    .await;
}

#[tokio::test]
async fn an_agent_may_only_act_for_its_own_host() {
    bounded(async {
        let f = fleet();
        let addr = controller_server(&f).await;
        let host = Uuid::new_v4();
        let channel = connect_channel(&addr.to_string(), f.client(Some(&f.agent(host))))
            .await
            .unwrap();
        let mut control = ControlClient::new(channel);
        control
            .heartbeat(HeartbeatRequest {
                host_id: host.to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
        let status = control
            .heartbeat(HeartbeatRequest {
                host_id: Uuid::new_v4().to_string(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    })
    .await;
}

// ---- the client side ----

/// The connection failed in the client's TLS handshake, for a reason mentioning `why`.
fn assert_client_refused(
    result: Result<tonic::transport::Channel, TlsError>,
    why: &str,
    what: &str,
) {
    let err = result.expect_err(what);
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    assert!(text.contains("TLS handshake with"), "{what}: {text}");
    assert!(text.contains(why), "{what}: {text}");
}

#[tokio::test]
async fn client_refuses_a_server_that_is_not_the_expected_peer() {
    bounded(async {
        let f = fleet();
        let op = f.operator("admin");
        let host = Uuid::new_v4();

        // An agent (with a 127.0.0.1 SAN, so only the role is wrong) posing as a controller.
        let agent = cert_key(&f.ca.issue_agent(host, &loopback(), days(1)).unwrap());
        let agent_addr = serve(&f, &agent, IncomingOptions::default()).await;
        assert_client_refused(
            connect_channel(&agent_addr.to_string(), f.client(Some(&op))).await,
            "expected any controller",
            "agent accepted as a controller",
        );
        // ...and as another host's agent.
        let wrong_host =
            client_config(&f.trust, ExpectedPeer::Agent(Uuid::new_v4()), Some(&op)).unwrap();
        assert_client_refused(
            connect_channel(&agent_addr.to_string(), wrong_host).await,
            "expected the agent of host",
            "agent of another host accepted",
        );
        // The right host is accepted, by identity (the dialled name is not checked).
        let right_host = client_config(&f.trust, ExpectedPeer::Agent(host), Some(&op)).unwrap();
        let bare_agent = f.agent(host);
        let bare_addr = serve(&f, &bare_agent, IncomingOptions::default()).await;
        connect_channel(&bare_addr.to_string(), right_host)
            .await
            .expect("the expected agent");

        // Controller c1 when c2 was asked for.
        let c1_addr = controller_server(&f).await;
        let want_c2 =
            client_config(&f.trust, ExpectedPeer::Controller("c2".into()), Some(&op)).unwrap();
        assert_client_refused(
            connect_channel(&c1_addr.to_string(), want_c2).await,
            "expected controller c2",
            "c1 accepted as c2",
        );
        let want_c1 =
            client_config(&f.trust, ExpectedPeer::Controller("c1".into()), Some(&op)).unwrap();
        connect_channel(&c1_addr.to_string(), want_c1)
            .await
            .expect("c1 as c1");

        // A controller whose certificate does not name the address dialled.
        let elsewhere = cert_key(
            &f.ca
                .issue_controller("c3", &["10.9.9.9".parse().unwrap()], days(1))
                .unwrap(),
        );
        let elsewhere_addr = serve(&f, &elsewhere, IncomingOptions::default()).await;
        assert_client_refused(
            connect_channel(&elsewhere_addr.to_string(), f.client(Some(&op))).await,
            "not valid for name",
            "controller without the dialled address accepted",
        );

        // A "controller" from another CA of the same cluster name (same issuer DN).
        let other = FleetCa::generate(CLUSTER).unwrap();
        let impostor = cert_key(&other.issue_controller("c1", &loopback(), days(1)).unwrap());
        let other_trust = FleetTrust::new(CLUSTER, vec![other.cert_der().clone()]).unwrap();
        let config = server_config(&other_trust, &impostor).unwrap();
        let incoming = TlsIncoming::bind(
            "127.0.0.1:0".parse().unwrap(),
            config,
            IncomingOptions::default(),
        )
        .await
        .unwrap();
        let impostor_addr = incoming.local_addr();
        tokio::spawn(
            Server::builder()
                .add_service(OperatorServer::new(TestOperator))
                .serve_with_incoming(incoming),
        );
        assert_client_refused(
            connect_channel(&impostor_addr.to_string(), f.client(Some(&op))).await,
            "BadSignature",
            "controller of another CA accepted",
        );
    })
    .await;
}

#[tokio::test]
async fn an_operator_certificate_cannot_serve() {
    let f = fleet();
    assert!(server_config(&f.trust, &f.operator("admin")).is_err());
}

// ---- the accept loop ----

#[tokio::test]
async fn a_silent_client_does_not_block_others_and_is_dropped() {
    bounded(async {
        let f = fleet();
        let options = IncomingOptions {
            handshake_timeout: Duration::from_millis(500),
            ..IncomingOptions::default()
        };
        let addr = serve(&f, &f.controller("c1"), options).await;
        // Connects and never sends a ClientHello.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let reply = cluster_status(addr, f.client(Some(&f.operator("admin"))))
            .await
            .unwrap();
        assert_eq!(reply.cluster, "test-cluster-status");
        // After the handshake timeout the server hangs up on it.
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
            .await
            .expect("the silent connection was not dropped");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    })
    .await;
}

#[tokio::test]
async fn live_connections_of_one_identity_can_be_closed() {
    bounded(async {
        let f = fleet();
        let (addr, live) = serve_live(&f, &f.controller("c1"), IncomingOptions::default()).await;
        let alice = f.operator("alice");
        let bob = f.operator("bob");
        let doomed = idle_connection(addr, f.client(Some(&alice))).await;
        let kept = idle_connection(addr, f.client(Some(&bob))).await;
        let names = |live: &LiveConnections| {
            let mut names: Vec<String> = live.identities().iter().map(|i| i.to_string()).collect();
            names.sort();
            names
        };
        // The server registers a connection when its side of the handshake is done,
        // which may be after the client's.
        let wait_for = |count: usize| {
            let live = live.clone();
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                while names(&live).len() != count {
                    assert!(tokio::time::Instant::now() < deadline, "{:?}", names(&live));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        wait_for(2).await;
        let listed = names(&live);
        assert!(listed[0].ends_with("/operator/alice"), "{listed:?}");
        assert!(listed[1].ends_with("/operator/bob"), "{listed:?}");

        let is_alice = |i: &zonefleet_proto::pki::Identity| i.to_string().ends_with("/alice");
        assert_eq!(live.close_where(is_alice), 1);
        tokio::time::timeout(Duration::from_secs(5), doomed)
            .await
            .expect("the closed connection stayed open")
            .unwrap();
        assert!(
            !kept.is_finished(),
            "another identity's connection was closed"
        );
        // A closed connection leaves the registry; a new one of the same identity is
        // served as usual.
        wait_for(1).await;
        let reply = cluster_status(addr, f.client(Some(&alice))).await.unwrap();
        assert_eq!(reply.leader_id, "operator alice");
    })
    .await;
}

/// One source holding thousands of idle connections (no TLS, no certificate) takes only
/// its own share of the handshakes in progress: its connections beyond the per-source
/// limit are closed at once, and a client from another address completes its handshake
/// and call as if nothing happened.
#[tokio::test]
async fn one_source_flooding_idle_connections_does_not_lock_others_out() {
    bounded(async {
        zonefleet_proto::limits::raise_open_files().unwrap();
        let f = fleet();
        let addr = serve(&f, &f.controller("c1"), IncomingOptions::default()).await;
        // The flood comes from 127.0.0.2 (loopback, another source address).
        let mut flood = Vec::new();
        for _ in 0..3000 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            flood.push(socket.connect(addr).await.unwrap());
        }
        let started = std::time::Instant::now();
        let reply = cluster_status(addr, f.client(Some(&f.operator("admin"))))
            .await
            .unwrap();
        assert_eq!(reply.cluster, "test-cluster-status");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "a good client waited {took:?}"
        );
        // The last of the flood was closed by the server at once (not after the
        // handshake timeout).
        let mut buf = [0u8; 1];
        let last = flood.last_mut().unwrap();
        let read = tokio::time::timeout(Duration::from_secs(1), last.read(&mut buf))
            .await
            .expect("a connection beyond the source's share stays open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    })
    .await;
}
