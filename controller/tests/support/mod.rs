//! What the `Control` service's tests share: an agent's key and CSR, clients with and
//! without a certificate, enrollment, registration, host reads, the watch stream's
//! next event and the controllers' log. (Each test binary uses part of it.)
#![allow(dead_code)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Status, Streaming};
use uuid::Uuid;
use zonefleet_controller::raft::NodeId;
use zonefleet_harness::cluster::{cert_key, Cluster};
use zonefleet_proto::pb;
use zonefleet_proto::pb::control_client::ControlClient;
use zonefleet_proto::pki::{KeyPem, Validity};
use zonefleet_proto::tls::{client_config, connect_channel, CertKey, ExpectedPeer};

pub const LIMIT: Duration = Duration::from_secs(90);

/// Everything the controllers of this test binary log at `info` and above (one global
/// subscriber: the cluster's tasks run on other threads than the test's).
pub fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,openraft=warn"))
            .with_ansi(false)
            .with_writer(move || Shared(writer.clone()))
            .init();
        log
    })
}

pub struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn logged() -> String {
    String::from_utf8_lossy(&log().lock().unwrap()).into_owned()
}

/// A key generated here (as an agent does) and a CSR for it.
pub fn key_and_csr() -> (KeyPair, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    (key, csr)
}

/// A `Control` client of member `id` without a client certificate.
pub async fn anonymous(cluster: &Cluster, id: NodeId) -> ControlClient<Channel> {
    let config = client_config(&cluster.trust, ExpectedPeer::AnyController, None).unwrap();
    let channel = connect_channel(&cluster.members[&id].addr.to_string(), config)
        .await
        .unwrap();
    ControlClient::new(channel)
}

/// A `Control` client of member `id` as `who`.
pub async fn control_as(cluster: &Cluster, id: NodeId, who: &CertKey) -> ControlClient<Channel> {
    ControlClient::new(cluster.channel_as(id, who).await)
}

/// Enrolls `host` with `token` at member `id`: its certificate and key.
pub async fn enroll(
    cluster: &Cluster,
    id: NodeId,
    token: &str,
    host: Uuid,
) -> Result<(CertKey, pb::EnrollResponse), Status> {
    let (key, csr) = key_and_csr();
    let response = anonymous(cluster, id)
        .await
        .enroll(pb::EnrollRequest {
            token: token.to_owned(),
            csr_pem: csr,
            host_id: host.to_string(),
        })
        .await?
        .into_inner();
    let cert = CertKey::from_pem(&response.certificate_pem, &KeyPem::new(key.serialize_pem()))
        .expect("the certificate is for the key sent");
    Ok((cert, response))
}

pub async fn token(cluster: &Cluster, ttl_seconds: u64) -> String {
    cluster
        .operator(1)
        .await
        .create_join_token(pb::CreateJoinTokenRequest {
            rack: "r7".to_owned(),
            labels: [("ssd".to_owned(), "true".to_owned())].into(),
            ttl_seconds,
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

pub fn sysinfo(host: Uuid) -> pb::HostSysinfo {
    pb::HostSysinfo {
        host_id: host.to_string(),
        hostname: "host-a".to_owned(),
        cpus: 4,
        memory_mib: 8192,
        kernel: "6.1.0".to_owned(),
        cgroup_version: pb::CgroupVersion::V1 as i32,
        agent_version: "0.1.0".to_owned(),
        // What a default zone (its own user namespace) needs of its host.
        features: [
            zonefleet_proto::feature::USER_NAMESPACES,
            zonefleet_proto::feature::IDMAPPED_MOUNTS,
        ]
        .into_iter()
        .map(|name| pb::Feature {
            name: name.to_owned(),
            available: true,
            detail: String::new(),
        })
        .collect(),
        ..Default::default()
    }
}

pub fn capacity(memory_mib: u64) -> pb::Capacity {
    pb::Capacity {
        memory_mib,
        cpu_percent: 400,
        disk_gib: 100,
        ..Default::default()
    }
}

pub async fn register(client: &mut ControlClient<Channel>, host: Uuid) -> pb::RegisterResponse {
    client
        .register(pb::RegisterRequest {
            sysinfo: Some(sysinfo(host)),
            capacity: Some(capacity(8192)),
        })
        .await
        .unwrap()
        .into_inner()
}

/// An agent certificate for `host`, issued directly (as `zfadm pki issue agent` does).
pub fn agent_cert(cluster: &Cluster, host: Uuid) -> CertKey {
    cert_key(
        &cluster
            .ca
            .issue_agent(host, &[], Validity::days(1).unwrap())
            .unwrap(),
    )
}

pub async fn get_host(cluster: &Cluster, host: Uuid) -> pb::Host {
    cluster
        .operator(1)
        .await
        .get_host(pb::HostRef {
            host_id: host.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Waits (`within`) until `host`'s status is `status`.
pub async fn await_status(cluster: &Cluster, host: Uuid, status: pb::HostStatus, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = get_host(cluster, host).await.status;
        if now == status as i32 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "host {host} is {now}, not {status:?}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn next(stream: &mut Streaming<pb::AssignmentEvent>) -> pb::AssignmentEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("no assignment event within 10 s")
        .expect("the stream ended")
        .expect("the stream failed")
}

pub fn uuid_of(zone: &pb::Zone) -> String {
    zone.spec.as_ref().unwrap().uuid.clone().unwrap()
}
