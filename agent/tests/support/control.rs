//! A small implementation of the controllers' `Control` service for the daemon's
//! tests, behind the fleet's own TLS listener (`TlsIncoming`) and role layer
//! (`RoleLayer`), on loopback: it enrolls with one-time tokens, signs CSRs with a
//! signing CA, records registrations, heartbeats, watches and reports, can answer as a
//! follower naming the leader, and streams assignment events — those after the
//! revision asked for, then whatever [`Controller::push`] sends while the stream is
//! open. The controllers' real service is built separately; the end-to-end test
//! against it follows once both are in.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use zonefleet_proto::auth::{Role, RoleLayer};
use zonefleet_proto::pb;
use zonefleet_proto::pb::control_server::{Control, ControlServer};
use zonefleet_proto::pki::{FleetCa, Identity, Validity};
use zonefleet_proto::tls::{server_config, CertKey, FleetTrust, IncomingOptions, TlsIncoming};

/// The cluster of the test fleets.
pub const CLUSTER: &str = "prod";

/// The header of a follower's hint (as the agent reads it).
const LEADER_HINT: &str = "zonefleet-leader";

/// The fleet's root and signing CA.
pub struct Fleet {
    /// The root CA.
    pub root: FleetCa,
    /// The signing CA under it.
    pub signing: Arc<FleetCa>,
}

/// A new fleet.
pub fn fleet() -> Fleet {
    let root = FleetCa::generate(CLUSTER).unwrap();
    // Issued a day ago, as a fleet's signing CA is older than the leaves it signs
    // (a test backdates an agent certificate by hours).
    let now = time::OffsetDateTime::now_utc();
    let validity = Validity::between(
        now - time::Duration::days(1),
        now + time::Duration::days(30),
    )
    .unwrap();
    let signing = Arc::new(root.issue_signing_ca(validity).unwrap());
    Fleet { root, signing }
}

/// What one test controller saw and how it answers.
/// What one test controller saw and how it answers.
#[derive(Default)]
pub struct Seen {
    /// Join tokens not used yet.
    pub tokens: HashSet<String>,
    /// Enrollments served.
    pub enrolls: u32,
    /// Renewals served.
    pub renewals: u32,
    /// Each registration's sysinfo.
    pub registered: Vec<pb::HostSysinfo>,
    /// Each heartbeat accepted.
    pub heartbeats: Vec<pb::HeartbeatRequest>,
    /// The revision each watch asked from.
    pub watches: Vec<u64>,
    /// Each report.
    pub reports: Vec<pb::ReportZoneStateRequest>,
    /// Issue certificates living this long from the moment each is issued (default:
    /// a day).
    pub lifetime: Option<time::Duration>,
    /// Answer heartbeats UNAVAILABLE naming this leader.
    pub leader_hint: Option<String>,
    /// Events a new watch stream starts with (those after the revision asked).
    pub events: Vec<pb::AssignmentEvent>,
    /// The open watch streams.
    pub watchers: Vec<mpsc::UnboundedSender<Result<pb::AssignmentEvent, Status>>>,
}

#[derive(Clone)]
struct TestControl {
    signing: Arc<FleetCa>,
    seen: Arc<Mutex<Seen>>,
    controllers: Vec<String>,
}

impl TestControl {
    fn validity(&self) -> Validity {
        match self.seen.lock().unwrap().lifetime {
            Some(life) => {
                let now = time::OffsetDateTime::now_utc();
                Validity::between(now, now + life).unwrap()
            }
            None => Validity::days(1).unwrap(),
        }
    }
}

fn agent_of(request: &Request<impl Sized>) -> Result<Uuid, Status> {
    match Role::from_request(request)? {
        Role::Agent(host) => Ok(*host),
        other => Err(Status::permission_denied(format!(
            "{other} is not an agent"
        ))),
    }
}

#[tonic::async_trait]
impl Control for TestControl {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let r = request.into_inner();
        if !self.seen.lock().unwrap().tokens.remove(&r.token) {
            return Err(Status::permission_denied(
                "join token refused: unknown, used or expired",
            ));
        }
        let host: Uuid = r
            .host_id
            .parse()
            .map_err(|_| Status::invalid_argument("host_id"))?;
        let identity = Identity::agent(CLUSTER, host).unwrap();
        let cert = self
            .signing
            .sign_csr(&r.csr_pem, &identity, &[], self.validity())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.seen.lock().unwrap().enrolls += 1;
        Ok(Response::new(pb::EnrollResponse {
            certificate_pem: cert.cert_pem,
            ca_pem: self.signing.root_cert_pem().to_owned(),
            controllers: self.controllers.clone(),
        }))
    }

    async fn renew_certificate(
        &self,
        request: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::RenewCertificateResponse>, Status> {
        let host = agent_of(&request)?;
        let identity = Identity::agent(CLUSTER, host).unwrap();
        let cert = self
            .signing
            .sign_csr(&request.get_ref().csr_pem, &identity, &[], self.validity())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.seen.lock().unwrap().renewals += 1;
        Ok(Response::new(pb::RenewCertificateResponse {
            certificate_pem: cert.cert_pem,
        }))
    }

    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let host = agent_of(&request)?;
        let info = request.into_inner().sysinfo.unwrap_or_default();
        Role::Agent(host).require_host(&info.host_id)?;
        self.seen.lock().unwrap().registered.push(info);
        Ok(Response::new(pb::RegisterResponse {
            heartbeat_interval_ms: 50,
            lease_ttl_ms: 500,
            fence_margin_ms: 100,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Role::from_request(&request)?.require_host(&request.get_ref().host_id)?;
        let mut seen = self.seen.lock().unwrap();
        if let Some(leader) = &seen.leader_hint {
            let mut status = Status::unavailable("not the leader");
            status.metadata_mut().insert(
                LEADER_HINT,
                MetadataValue::try_from(leader.as_str()).unwrap(),
            );
            return Err(status);
        }
        seen.heartbeats.push(request.into_inner());
        Ok(Response::new(pb::HeartbeatResponse {
            lease_expires_unix_ms: 1,
            revocations: Vec::new(),
            assignments_revision: 0,
        }))
    }

    type WatchAssignmentsStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::AssignmentEvent, Status>> + Send>>;

    async fn watch_assignments(
        &self,
        request: Request<pb::WatchAssignmentsRequest>,
    ) -> Result<Response<Self::WatchAssignmentsStream>, Status> {
        Role::from_request(&request)?.require_host(&request.get_ref().host_id)?;
        let from = request.get_ref().from_revision;
        let mut seen = self.seen.lock().unwrap();
        seen.watches.push(from);
        let (tx, rx) = mpsc::unbounded_channel();
        for event in seen.events.iter().filter(|e| e.revision > from) {
            let _ = tx.send(Ok(event.clone()));
        }
        seen.watchers.push(tx);
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        )))
    }

    type DownloadImageStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ImageChunk, Status>> + Send>>;

    /// Images come from the real controllers (`tests/tests/images_fleet.rs`); this
    /// in-test service serves none.
    async fn download_image(
        &self,
        _request: Request<pb::DownloadImageRequest>,
    ) -> Result<Response<Self::DownloadImageStream>, Status> {
        Err(Status::not_found(
            "the in-test Control service serves no images",
        ))
    }

    async fn report_zone_state(
        &self,
        request: Request<pb::ReportZoneStateRequest>,
    ) -> Result<Response<pb::ReportZoneStateResponse>, Status> {
        Role::from_request(&request)?.require_host(&request.get_ref().host_id)?;
        self.seen.lock().unwrap().reports.push(request.into_inner());
        Ok(Response::new(pb::ReportZoneStateResponse {}))
    }
}

/// One test controller on loopback.
pub struct Controller {
    /// Its `HOST:PORT`.
    pub addr: String,
    /// What it saw, and how it answers.
    pub seen: Arc<Mutex<Seen>>,
    /// What its listener trusts (revocations included).
    pub trust: FleetTrust,
}

impl Controller {
    /// Adds an event to the backlog and sends it on every open watch stream.
    pub fn push(&self, event: pb::AssignmentEvent) {
        let mut seen = self.seen.lock().unwrap();
        seen.events.push(event.clone());
        seen.watchers.retain(|w| w.send(Ok(event.clone())).is_ok());
    }

    /// Ends every open watch stream.
    pub fn close_watches(&self) {
        self.seen.lock().unwrap().watchers.clear();
    }
}

/// Starts a controller `id` of `f` that accepts `tokens`.
pub async fn controller(f: &Fleet, id: &str, tokens: &[&str]) -> Controller {
    let issued = f
        .signing
        .issue_controller(
            id,
            &["127.0.0.1".parse().unwrap()],
            Validity::days(1).unwrap(),
        )
        .unwrap();
    let own = CertKey::from_pem(&issued.cert_pem, issued.key_pem.as_ref().unwrap()).unwrap();
    let trust = FleetTrust::new(CLUSTER, vec![f.root.cert_der().clone()]).unwrap();
    let config = server_config(&trust, &own).unwrap();
    let incoming = TlsIncoming::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        IncomingOptions::default(),
    )
    .await
    .unwrap();
    let addr = incoming.local_addr().to_string();
    let seen = Arc::new(Mutex::new(Seen {
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }));
    let service = TestControl {
        signing: f.signing.clone(),
        seen: seen.clone(),
        controllers: vec![addr.clone()],
    };
    tokio::spawn(
        Server::builder()
            .layer(RoleLayer::new(CLUSTER))
            .add_service(ControlServer::new(service))
            .serve_with_incoming(incoming),
    );
    Controller { addr, seen, trust }
}

/// A loopback address nothing listens on.
pub fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}
