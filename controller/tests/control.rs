//! The agents' `Control` service through the real listeners of an in-process cluster:
//! enrollment with one-time join tokens (a token works once, on any controller, before
//! its expiry; a forged one never), renewal, registration with the token's inventory,
//! leases (a follower forwards heartbeats, a lapsed lease commits DOWN, a heartbeat
//! READY again), the assignment watch (snapshot, changes with increasing revisions,
//! resume, a snapshot again when the revision is too old) and reports (only
//! transitions are committed); an agent acts only for its own host.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use uuid::Uuid;
use zonefleet_controller::node::leases::LEADER_METADATA;
use zonefleet_controller::raft::NodeId;
use zonefleet_controller::state::tokens::TOKEN_REFUSED;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{cert_key, test_raft_config, Cluster, CLUSTER};
use zonefleet_harness::fixtures;
use zonefleet_proto::pb;
use zonefleet_proto::pb::assignment_event::Event;
use zonefleet_proto::pb::control_client::ControlClient;
use zonefleet_proto::pki::{identity_from_cert_der, KeyPem, Validity};
use zonefleet_proto::tls::{client_config, connect_channel, CertKey, ExpectedPeer};

const LIMIT: Duration = Duration::from_secs(90);

/// Everything the controllers of this test binary log at `info` and above (one global
/// subscriber: the cluster's tasks run on other threads than the test's).
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
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

struct Shared(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&log().lock().unwrap()).into_owned()
}

/// A key generated here (as an agent does) and a CSR for it.
fn key_and_csr() -> (KeyPair, String) {
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
async fn anonymous(cluster: &Cluster, id: NodeId) -> ControlClient<Channel> {
    let config = client_config(&cluster.trust, ExpectedPeer::AnyController, None).unwrap();
    let channel = connect_channel(&cluster.members[&id].addr.to_string(), config)
        .await
        .unwrap();
    ControlClient::new(channel)
}

/// A `Control` client of member `id` as `who`.
async fn control_as(cluster: &Cluster, id: NodeId, who: &CertKey) -> ControlClient<Channel> {
    ControlClient::new(cluster.channel_as(id, who).await)
}

/// Enrolls `host` with `token` at member `id`: its certificate and key.
async fn enroll(
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

async fn token(cluster: &Cluster, ttl_seconds: u64) -> String {
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

fn sysinfo(host: Uuid) -> pb::HostSysinfo {
    pb::HostSysinfo {
        host_id: host.to_string(),
        hostname: "host-a".to_owned(),
        cpus: 4,
        memory_mib: 8192,
        kernel: "6.1.0".to_owned(),
        cgroup_version: pb::CgroupVersion::V1 as i32,
        agent_version: "0.1.0".to_owned(),
        ..Default::default()
    }
}

fn capacity(memory_mib: u64) -> pb::Capacity {
    pb::Capacity {
        memory_mib,
        cpu_percent: 400,
        disk_gib: 100,
        ..Default::default()
    }
}

async fn register(client: &mut ControlClient<Channel>, host: Uuid) -> pb::RegisterResponse {
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
fn agent_cert(cluster: &Cluster, host: Uuid) -> CertKey {
    cert_key(
        &cluster
            .ca
            .issue_agent(host, &[], Validity::days(1).unwrap())
            .unwrap(),
    )
}

async fn get_host(cluster: &Cluster, host: Uuid) -> pb::Host {
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
async fn await_status(cluster: &Cluster, host: Uuid, status: pb::HostStatus, within: Duration) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_enrolls_once_anywhere_and_gives_the_host_its_inventory() {
    log();
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let secret = token(&cluster, 3600).await;
        let host = Uuid::new_v4();

        // A bad CSR is refused before the token is consumed.
        let err = anonymous(&cluster, follower)
            .await
            .enroll(pb::EnrollRequest {
                token: secret.clone(),
                csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n".to_owned(),
                host_id: host.to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains("csr_pem"), "{err}");
        let err = enroll(&cluster, follower, &secret, Uuid::nil())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");

        // Enrolled through a follower: the certificate is the host's, presented with
        // the signing CA and the root, and the root and the controllers come with it.
        let (cert, response) = enroll(&cluster, follower, &secret, host).await.unwrap();
        let identity = identity_from_cert_der(&cert.chain[0]).unwrap();
        assert_eq!(
            identity.to_string(),
            format!("zonefleet://{CLUSTER}/agent/{host}")
        );
        assert_eq!(cert.chain.len(), 3);
        assert_eq!(response.ca_pem, cluster.ca.root_cert_pem());
        assert_eq!(response.controllers.len(), 3);

        // The same token again, at any controller, for any host: refused, and the
        // refusal does not say why.
        for id in 1..=3 {
            let err = enroll(&cluster, id, &secret, Uuid::new_v4())
                .await
                .map(|_| ())
                .unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{err}");
            assert_eq!(err.message(), TOKEN_REFUSED);
        }
        // Forged.
        let forged = format!("zft_{}", "0".repeat(64));
        let err = enroll(&cluster, 1, &forged, Uuid::new_v4())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(err.message(), TOKEN_REFUSED);
        // Expired (1 s of life, judged at the proposal's time). (Made after the token
        // revoked below: making a token forgets the expired ones.)
        let revoked = token(&cluster, 3600).await;
        let short = token(&cluster, 1).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let err = enroll(&cluster, 1, &short, Uuid::new_v4())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(err.message(), TOKEN_REFUSED);
        // Revoked.
        let mut operator = cluster.operator(follower).await;
        let listed = operator
            .list_join_tokens(pb::ListJoinTokensRequest::default())
            .await
            .unwrap()
            .into_inner()
            .tokens;
        assert_eq!(listed.len(), 3, "{listed:?}");
        let text = format!("{listed:?}");
        for s in [&secret, &short, &revoked] {
            assert!(!text.contains(s.as_str()), "the list shows a token: {text}");
        }
        let used: Vec<_> = listed.iter().filter(|t| t.used).collect();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].used_by_host, host.to_string());
        assert_eq!(listed.iter().filter(|t| t.expired).count(), 1);
        let unused_id = listed
            .iter()
            .find(|t| !t.used && !t.expired)
            .unwrap()
            .id
            .clone();
        operator
            .revoke_join_token(pb::RevokeJoinTokenRequest {
                id: unused_id[..10].to_owned(),
            })
            .await
            .unwrap();
        let err = enroll(&cluster, 1, &revoked, Uuid::new_v4())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let err = operator
            .revoke_join_token(pb::RevokeJoinTokenRequest {
                id: "zz".to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);

        // Every refusal was logged with the digest's prefix, no log line (audit lines
        // included) ever holds a token.
        let lines = logged();
        let digest = |t: &str| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(t.as_bytes()))
        };
        for refused in [&secret, &forged, &short, &revoked] {
            let prefix = &digest(refused)[..16];
            assert!(
                lines.contains(&format!("token=\"{prefix}\""))
                    || lines.contains(&format!("token={prefix}")),
                "no refusal logged for {prefix}:\n{lines}"
            );
        }
        assert!(lines.contains("join token refused"), "{lines}");
        for t in [&secret, &forged, &short, &revoked] {
            assert!(!lines.contains(t.as_str()), "a token in the log:\n{lines}");
        }

        // Registering: the token's rack and labels, never the host's word.
        let mut agent = control_as(&cluster, follower, &cert).await;
        let terms = register(&mut agent, host).await;
        assert_eq!(
            (terms.heartbeat_interval_ms, terms.lease_ttl_ms),
            (1000, 5000)
        );
        let registered = get_host(&cluster, host).await;
        assert_eq!(registered.rack, "r7");
        assert_eq!(registered.labels["ssd"], "true");
        assert_eq!(registered.status, pb::HostStatus::Ready as i32);

        // Renewal: a new certificate of the same identity, for a new key.
        let (key, csr) = key_and_csr();
        let renewed = agent
            .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr })
            .await
            .unwrap()
            .into_inner();
        let renewed =
            CertKey::from_pem(&renewed.certificate_pem, &KeyPem::new(key.serialize_pem())).unwrap();
        assert_eq!(identity_from_cert_der(&renewed.chain[0]).unwrap(), identity);
        assert_ne!(renewed.chain[0], cert.chain[0]);
        // It works at once, on another controller.
        control_as(&cluster, leader, &renewed)
            .await
            .heartbeat(pb::HeartbeatRequest {
                host_id: host.to_string(),
                capacity: None,
            })
            .await
            .unwrap();
        // A host the controllers never enrolled nor registered cannot renew.
        let stranger = agent_cert(&cluster, Uuid::new_v4());
        let (_, csr) = key_and_csr();
        let err = control_as(&cluster, 1, &stranger)
            .await
            .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        // Nor can an operator.
        let (_, csr) = key_and_csr();
        let err = control_as(&cluster, 1, &cluster.operator_cert())
            .await
            .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_is_rate_limited_and_needs_a_signing_ca() {
    bounded(LIMIT, async {
        let cluster = Cluster::start_with_control(1, test_raft_config(), |c| {
            c.signing_ca = None;
            c.enroll_burst = 3;
            c.enroll_per_second = 0;
        })
        .await;
        cluster.leader().await;
        let secret = token(&cluster, 3600).await;
        for _ in 0..3 {
            let err = enroll(&cluster, 1, &secret, Uuid::new_v4())
                .await
                .map(|_| ())
                .unwrap_err();
            assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
            assert!(err.message().contains("[signing_ca]"), "{err}");
        }
        let err = enroll(&cluster, 1, &secret, Uuid::new_v4())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        // Nothing was consumed.
        let listed = cluster
            .operator(1)
            .await
            .list_join_tokens(pb::ListJoinTokensRequest::default())
            .await
            .unwrap()
            .into_inner()
            .tokens;
        assert!(!listed[0].used);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_acts_only_for_its_own_host() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut agent_a = control_as(&cluster, 1, &agent_cert(&cluster, a)).await;
        let mut agent_b = control_as(&cluster, 1, &agent_cert(&cluster, b)).await;
        register(&mut agent_a, a).await;
        register(&mut agent_b, b).await;
        let b_id = b.to_string();
        let denied = |r: Result<(), Status>| {
            let e = r.unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{e}");
        };
        denied(
            agent_a
                .heartbeat(pb::HeartbeatRequest {
                    host_id: b_id.clone(),
                    capacity: None,
                })
                .await
                .map(|_| ()),
        );
        denied(
            agent_a
                .watch_assignments(pb::WatchAssignmentsRequest {
                    host_id: b_id.clone(),
                    from_revision: 0,
                })
                .await
                .map(|_| ()),
        );
        denied(
            agent_a
                .report_zone_state(pb::ReportZoneStateRequest {
                    host_id: b_id.clone(),
                    zones: vec![],
                })
                .await
                .map(|_| ()),
        );
        denied(
            agent_a
                .register(pb::RegisterRequest {
                    sysinfo: Some(sysinfo(b)),
                    capacity: Some(capacity(1)),
                })
                .await
                .map(|_| ()),
        );
        // No operator RPC for an agent.
        let channel = cluster.channel_as(1, &agent_cert(&cluster, a)).await;
        denied(
            zonefleet_proto::pb::operator_client::OperatorClient::new(channel)
                .list_hosts(pb::ListHostsRequest::default())
                .await
                .map(|_| ()),
        );
        // An operator cannot report zone state, nor heartbeat.
        let mut operator = control_as(&cluster, 1, &cluster.operator_cert()).await;
        denied(
            operator
                .report_zone_state(pb::ReportZoneStateRequest {
                    host_id: b_id.clone(),
                    zones: vec![],
                })
                .await
                .map(|_| ()),
        );
        denied(
            operator
                .heartbeat(pb::HeartbeatRequest {
                    host_id: b_id.clone(),
                    capacity: None,
                })
                .await
                .map(|_| ()),
        );
        // Without a certificate: only Enroll.
        let e = anonymous(&cluster, 1)
            .await
            .register(pb::RegisterRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e}");
        // The host's own id, written differently, is refused as such.
        let e = agent_b
            .heartbeat(pb::HeartbeatRequest {
                host_id: b_id.to_uppercase(),
                capacity: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    })
    .await;
}

async fn next(stream: &mut Streaming<pb::AssignmentEvent>) -> pb::AssignmentEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("no assignment event within 10 s")
        .expect("the stream ended")
        .expect("the stream failed")
}

fn uuid_of(zone: &pb::Zone) -> String {
    zone.spec.as_ref().unwrap().uuid.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_streams_a_snapshot_then_changes_and_resumes() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let followers: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
        let host = Uuid::new_v4();
        let cert = agent_cert(&cluster, host);
        let mut agent = control_as(&cluster, followers[0], &cert).await;
        register(&mut agent, host).await;
        let mut operator = cluster.operator(leader).await;
        let z1 = fixtures::create_zone(&mut operator, "z1").await;

        let watch = |from_revision| pb::WatchAssignmentsRequest {
            host_id: host.to_string(),
            from_revision,
        };
        let mut stream = agent
            .watch_assignments(watch(0))
            .await
            .unwrap()
            .into_inner();
        let first = next(&mut stream).await;
        let Some(Event::Snapshot(snapshot)) = first.event else {
            panic!("not a snapshot first: {first:?}");
        };
        assert_eq!(snapshot.zones.len(), 1);
        assert_eq!(uuid_of(&snapshot.zones[0]), z1);
        let mut revision = first.revision;
        assert!(revision > 0);

        let z2 = fixtures::create_zone(&mut operator, "z2").await;
        let e = next(&mut stream).await;
        assert!(e.revision > revision, "{e:?} after {revision}");
        revision = e.revision;
        match e.event {
            Some(Event::Upsert(zone)) => assert_eq!(uuid_of(&zone), z2),
            other => panic!("{other:?}"),
        }
        operator
            .stop_zone(pb::ZoneRef { zone: z1.clone() })
            .await
            .unwrap();
        let e = next(&mut stream).await;
        assert!(e.revision > revision);
        revision = e.revision;
        match e.event {
            Some(Event::Upsert(zone)) => {
                assert_eq!(uuid_of(&zone), z1);
                assert_eq!(zone.desired_state, pb::ZoneState::Installed as i32);
                assert_eq!(zone.generation, 2);
            }
            other => panic!("{other:?}"),
        }
        drop(stream);

        // While the agent is away: a zone created, one deleted.
        let z3 = fixtures::create_zone(&mut operator, "z3").await;
        operator
            .delete_zone(pb::ZoneRef { zone: z2.clone() })
            .await
            .unwrap();
        // Resumed at another controller: what it missed, in order, no snapshot.
        let mut other = control_as(&cluster, followers[1], &cert).await;
        let mut stream = other
            .watch_assignments(watch(revision))
            .await
            .unwrap()
            .into_inner();
        let e = next(&mut stream).await;
        assert!(e.revision > revision);
        revision = e.revision;
        assert!(
            matches!(e.event, Some(Event::Upsert(ref z)) if uuid_of(z) == z3),
            "{e:?}"
        );
        let e = next(&mut stream).await;
        assert!(e.revision > revision);
        revision = e.revision;
        match e.event {
            Some(Event::Upsert(zone)) => {
                assert_eq!(uuid_of(&zone), z2);
                assert_eq!(zone.desired_state, pb::ZoneState::Deleted as i32);
            }
            other => panic!("{other:?}"),
        }
        // The agent reports it gone: the controllers forget it.
        other
            .report_zone_state(pb::ReportZoneStateRequest {
                host_id: host.to_string(),
                zones: vec![pb::ObservedZone {
                    uuid: z2.clone(),
                    generation: 2,
                    state: pb::ZoneState::Deleted as i32,
                    ..Default::default()
                }],
            })
            .await
            .unwrap();
        let e = next(&mut stream).await;
        assert!(e.revision > revision);
        let before_batch = e.revision;
        assert_eq!(e.event, Some(Event::Removed(z2.clone())));

        // Two zones in one entry: a stream behind it gets a snapshot (one revision,
        // one event), and so does a resume from before it.
        operator
            .create_zones(fixtures::create(fixtures::spec("pair"), 2))
            .await
            .unwrap();
        let e = next(&mut stream).await;
        assert!(e.revision > before_batch);
        let Some(Event::Snapshot(s)) = e.event else {
            panic!("not a snapshot: {e:?}")
        };
        assert_eq!(s.zones.len(), 4, "z1, z3 and the pair");
        let mut resumed = control_as(&cluster, leader, &cert)
            .await
            .watch_assignments(watch(before_batch))
            .await
            .unwrap()
            .into_inner();
        let again = next(&mut resumed).await;
        assert!(again.revision >= e.revision);
        assert!(matches!(again.event, Some(Event::Snapshot(ref s)) if s.zones.len() == 4));

        // A controller that has not applied the revision asked for waits for it.
        let ahead = again.revision + 5;
        let mut waiting = agent
            .watch_assignments(watch(ahead))
            .await
            .unwrap()
            .into_inner();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), waiting.next())
                .await
                .is_err(),
            "answered before applying revision {ahead}"
        );
        for i in 0..6 {
            fixtures::create_zone(&mut operator, &format!("later{i}")).await;
        }
        let e = next(&mut waiting).await;
        assert!(e.revision > ahead, "{e:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_lapse_into_down_and_heartbeats_through_a_follower_restore_ready() {
    bounded(LIMIT, async {
        let cluster = Cluster::start_with_control(3, test_raft_config(), |c| {
            c.heartbeat_interval = Duration::from_millis(200);
            c.lease_ttl = Duration::from_millis(1000);
        })
        .await;
        let leader = cluster.leader().await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let host = Uuid::new_v4();
        let cert = agent_cert(&cluster, host);
        let mut agent = control_as(&cluster, follower, &cert).await;
        // Not registered yet: a heartbeat is refused.
        let e = agent
            .heartbeat(pb::HeartbeatRequest {
                host_id: host.to_string(),
                capacity: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
        let terms = register(&mut agent, host).await;
        assert_eq!(
            (terms.heartbeat_interval_ms, terms.lease_ttl_ms),
            (200, 1000)
        );
        let beat = |capacity: Option<pb::Capacity>| pb::HeartbeatRequest {
            host_id: host.to_string(),
            capacity,
        };
        // Heartbeating through a follower (forwarded to the leader) keeps it ready.
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(2500) {
            let lease = agent.heartbeat(beat(None)).await.unwrap().into_inner();
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            assert!(lease.lease_expires_unix_ms > now_ms);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            get_host(&cluster, host).await.status,
            pb::HostStatus::Ready as i32
        );
        // Silence: the lease lapses and the leader commits DOWN.
        await_status(&cluster, host, pb::HostStatus::Down, Duration::from_secs(5)).await;
        // A heartbeat (with a new capacity) brings it back and commits the capacity.
        agent.heartbeat(beat(Some(capacity(4096)))).await.unwrap();
        await_status(
            &cluster,
            host,
            pb::HostStatus::Ready,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            get_host(&cluster, host).await.capacity.unwrap().memory_mib,
            4096
        );
        // A cordoned host whose lease lapses stays cordoned.
        cluster
            .operator(1)
            .await
            .cordon_host(pb::HostRef {
                host_id: host.to_string(),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(
            get_host(&cluster, host).await.status,
            pb::HostStatus::Cordoned as i32
        );

        // A follower cut off from the leader names it.
        let leader_addr = cluster.members[&leader].addr.to_string();
        cluster.net.cut(follower, leader);
        let e = agent.heartbeat(beat(None)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e}");
        assert_eq!(
            e.metadata()
                .get(LEADER_METADATA)
                .and_then(|v| v.to_str().ok()),
            Some(leader_addr.as_str()),
            "{e:?}"
        );
        cluster.heal();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_commit_only_transitions() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let host = Uuid::new_v4();
        let mut agent = control_as(&cluster, 1, &agent_cert(&cluster, host)).await;
        register(&mut agent, host).await;
        let mut operator = cluster.operator(1).await;
        let zone = fixtures::create_zone(&mut operator, "web").await;
        let observed = |state: pb::ZoneState, message: &str| pb::ObservedZone {
            uuid: zone.clone(),
            generation: 1,
            state: state as i32,
            message: message.to_owned(),
            init_exit_status: None,
        };
        let report = |zones: Vec<pb::ObservedZone>| pb::ReportZoneStateRequest {
            host_id: host.to_string(),
            zones,
        };
        let node = cluster.node(1);
        agent
            .report_zone_state(report(vec![observed(pb::ZoneState::Running, "")]))
            .await
            .unwrap();
        let got = operator
            .get_zone(pb::GetZoneRequest {
                zone: zone.clone(),
                consistency: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.observed_state, pb::ZoneState::Running as i32);
        // The same again, and a zone this host does not have: no log entry.
        let before = node.last_log_id();
        let stranger = Uuid::new_v4().to_string();
        agent
            .report_zone_state(report(vec![
                observed(pb::ZoneState::Running, ""),
                pb::ObservedZone {
                    uuid: stranger,
                    ..observed(pb::ZoneState::Failed, "")
                },
            ]))
            .await
            .unwrap();
        assert_eq!(
            node.last_log_id(),
            before,
            "a report without a transition was committed"
        );
        // A new generation is a transition, and so is a new message.
        operator
            .stop_zone(pb::ZoneRef { zone: zone.clone() })
            .await
            .unwrap();
        let before = node.last_log_id();
        agent
            .report_zone_state(report(vec![pb::ObservedZone {
                generation: 2,
                ..observed(pb::ZoneState::Running, "")
            }]))
            .await
            .unwrap();
        assert!(node.last_log_id() > before);
        let before = node.last_log_id();
        agent
            .report_zone_state(report(vec![pb::ObservedZone {
                generation: 2,
                ..observed(pb::ZoneState::Running, "oom once")
            }]))
            .await
            .unwrap();
        assert!(node.last_log_id() > before);
        let got = operator
            .get_zone(pb::GetZoneRequest {
                zone: zone.clone(),
                consistency: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.message, "oom once");
        assert_eq!((got.observed_generation, got.generation), (2, 2));
        // Bad content: a clear error, nothing committed.
        let before = node.last_log_id();
        let e = agent
            .report_zone_state(report(vec![pb::ObservedZone {
                state: 42,
                ..observed(pb::ZoneState::Running, "")
            }]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(e.message().contains("not a zone state"), "{e}");
        assert_eq!(node.last_log_id(), before);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_gives_every_host_a_full_ttl_before_judging() {
    bounded(LIMIT, async {
        let ttl = Duration::from_millis(2000);
        let mut cluster = Cluster::start_with_control(3, test_raft_config(), |c| {
            c.heartbeat_interval = Duration::from_millis(200);
            c.lease_ttl = ttl;
        })
        .await;
        let leader = cluster.leader().await;
        let host = Uuid::new_v4();
        let survivor = (1..=3).find(|id| *id != leader).unwrap();
        let mut agent = control_as(&cluster, survivor, &agent_cert(&cluster, host)).await;
        register(&mut agent, host).await;
        // The last heartbeat reaches the old leader only; then it dies.
        agent
            .heartbeat(pb::HeartbeatRequest {
                host_id: host.to_string(),
                capacity: None,
            })
            .await
            .unwrap();
        let killed = Instant::now();
        drop(cluster.kill(leader).await);
        let others: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
        let new_leader = cluster.leader_among(&others, Duration::from_secs(10)).await;
        let elected = Instant::now();
        assert_ne!(new_leader, leader);
        // The new leader has no lease of this host, yet does not judge it before a
        // full TTL from its election (reads through the survivors).
        let get = |id: NodeId| {
            let cluster = &cluster;
            async move {
                cluster
                    .operator(id)
                    .await
                    .get_host(pb::HostRef {
                        host_id: host.to_string(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .status
            }
        };
        while elected.elapsed() < ttl * 8 / 10 {
            assert_eq!(
                get(new_leader).await,
                pb::HostStatus::Ready as i32,
                "judged {:?} after the election ({:?} after the last heartbeat)",
                elected.elapsed(),
                killed.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Then it does.
        let deadline = Instant::now() + Duration::from_secs(5);
        while get(new_leader).await != pb::HostStatus::Down as i32 {
            assert!(Instant::now() < deadline, "never marked down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restarted_from_a_snapshot_answers_an_old_revision_with_a_snapshot() {
    bounded(LIMIT, async {
        let mut cluster = Cluster::start(3).await;
        let leader = cluster.leader().await;
        let host = Uuid::new_v4();
        let cert = agent_cert(&cluster, host);
        register(&mut control_as(&cluster, leader, &cert).await, host).await;
        let mut operator = cluster.operator(leader).await;
        let first = fixtures::create_zone(&mut operator, "first").await;
        let mut stream = control_as(&cluster, leader, &cert)
            .await
            .watch_assignments(pb::WatchAssignmentsRequest {
                host_id: host.to_string(),
                from_revision: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let old = next(&mut stream).await.revision;
        drop(stream);
        // Past a snapshot (every 50 entries in tests) on every member.
        let target = (1..=3).find(|id| *id != leader).unwrap();
        // (30 × 2 changes: fewer than a member's change log keeps per host.)
        for i in 0..30 {
            operator
                .stop_zone(pb::ZoneRef {
                    zone: first.clone(),
                })
                .await
                .unwrap();
            operator
                .start_zone(pb::ZoneRef {
                    zone: first.clone(),
                })
                .await
                .unwrap_or_else(|e| panic!("start {i}: {e}"));
        }
        let addr = cluster.members[&target].addr;
        drop(cluster.kill(target).await);
        cluster.restart(target, addr).await;
        // The restarted member replays only what followed its snapshot: the revision
        // the agent had is too old there, so it gets a snapshot first.
        let mut stream = control_as(&cluster, target, &cert)
            .await
            .watch_assignments(pb::WatchAssignmentsRequest {
                host_id: host.to_string(),
                from_revision: old,
            })
            .await
            .unwrap()
            .into_inner();
        let e = next(&mut stream).await;
        assert!(e.revision > old);
        let mut generation = match e.event {
            Some(Event::Snapshot(s)) => {
                assert_eq!(s.zones.len(), 1);
                s.zones[0].generation
            }
            other => panic!("not a snapshot: {other:?}"),
        };
        // Served from what it has applied: it may still be catching up.
        let mut revision = e.revision;
        while generation < 61 {
            let e = next(&mut stream).await;
            assert!(e.revision > revision);
            revision = e.revision;
            match e.event {
                Some(Event::Upsert(z)) => {
                    assert_eq!(z.generation, generation + 1);
                    generation = z.generation;
                }
                other => panic!("{other:?}"),
            }
        }
        // The leader, which applied every change live, replays them instead.
        let mut stream = control_as(&cluster, leader, &cert)
            .await
            .watch_assignments(pb::WatchAssignmentsRequest {
                host_id: host.to_string(),
                from_revision: old,
            })
            .await
            .unwrap()
            .into_inner();
        let e = next(&mut stream).await;
        assert!(
            matches!(e.event, Some(Event::Upsert(ref z)) if z.generation == 2),
            "{e:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_cannot_renew() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let secret = token(&cluster, 3600).await;
        let host = Uuid::new_v4();
        let (cert, _) = enroll(&cluster, 1, &secret, host).await.unwrap();
        let mut agent = control_as(&cluster, 1, &cert).await;
        let (_, csr) = key_and_csr();
        agent
            .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr })
            .await
            .unwrap();
        cluster
            .operator(1)
            .await
            .revoke_certificate(pb::RevokeCertificateRequest {
                identity: format!("zonefleet://{CLUSTER}/agent/{host}"),
                reason: "stolen".to_owned(),
                ..Default::default()
            })
            .await
            .unwrap();
        // The open connection is closed, a new one refused at the handshake.
        let (_, csr) = key_and_csr();
        assert!(agent
            .renew_certificate(pb::RenewCertificateRequest {
                csr_pem: csr.clone()
            })
            .await
            .is_err());
        let config =
            client_config(&cluster.trust, ExpectedPeer::AnyController, Some(&cert)).unwrap();
        let refused = match connect_channel(&cluster.members[&1].addr.to_string(), config).await {
            Err(_) => true,
            Ok(channel) => ControlClient::new(channel)
                .renew_certificate(pb::RenewCertificateRequest { csr_pem: csr })
                .await
                .is_err(),
        };
        assert!(refused, "a revoked agent renewed its certificate");
    })
    .await;
}
