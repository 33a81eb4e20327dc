//! The daemon's side of the `Control` contract over real mTLS on loopback, against a
//! small in-test implementation of the controllers' service behind the fleet's own
//! listener (`TlsIncoming`) and role layer (`RoleLayer`): enrollment pinning the
//! root, credentials reused on the next start, an expired certificate needing a new
//! token, renewal swapping the client certificate in place, failover to the next
//! controller and to the leader a follower names, register/heartbeat, the watch
//! stream resumed from the applied revision, and batched reports.
//!
//! The in-test service is `support::control`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::control::{controller, dead_address, fleet, CLUSTER};
use uuid::Uuid;
use zonefleet_agent::daemon::certs::{self, Credentials, HostKey};
use zonefleet_agent::daemon::client::{ClientError, ControlClient};
use zonefleet_agent::daemon::config::{AgentConfig, CapacitySettings, Token};
use zonefleet_agent::daemon::enroll::{self, EnrollError};
use zonefleet_agent::daemon::{heartbeat, report, watch};
use zonefleet_proto::host::{CgroupVersion, HostSysinfo};
use zonefleet_proto::pb;
use zonefleet_proto::pki::{FleetCa, Identity, Validity};
use zonefleet_proto::tls::RevocationSet;

const TEST_TIMEOUT: Duration = Duration::from_secs(30);

async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test timed out");
}

fn config(
    data: &std::path::Path,
    controllers: Vec<String>,
    token: Option<&str>,
    pin: &str,
) -> AgentConfig {
    let mut c = AgentConfig::merge(
        Default::default(),
        &zonefleet_agent::daemon::config::Source::File("agent.toml".into()),
        Default::default(),
        &zonefleet_agent::daemon::config::Source::Cmdline("cmdline".into()),
    )
    .unwrap();
    c.controllers = controllers;
    c.token = token.map(|t| Token::new(t.to_owned()));
    c.ca_pin = Some(pin.to_owned());
    c.data_dir = data.to_owned();
    c.capacity = CapacitySettings::default();
    c
}

async fn heartbeat_once(client: &ControlClient, host: Uuid) -> Result<(), ClientError> {
    let request = pb::HeartbeatRequest {
        host_id: host.to_string(),
        capacity: None,
        known_revocations: 0,
        applied_revision: 0,
    };
    client
        .call("Heartbeat", move |mut c| {
            let request = request.clone();
            async move { c.heartbeat(request).await }
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn enrollment_pins_the_root_stores_credentials_and_is_not_repeated() {
    bounded(async {
        let f = fleet();
        let c = controller(&f, "c1", &["tok-1"]).await;
        let dir = tempfile::tempdir().unwrap();
        let host = Uuid::new_v4();
        let key = HostKey::load_or_generate(dir.path()).unwrap();

        let cfg = config(
            dir.path(),
            vec![c.addr.clone()],
            Some("tok-1"),
            &f.root.fingerprint(),
        );
        let enrolled = enroll::establish(&cfg, host, &key).await.unwrap();
        assert!(enrolled.fresh);
        assert_eq!(
            enrolled.credentials.identity,
            Identity::agent(CLUSTER, host).unwrap()
        );
        for (file, mode) in [
            (certs::KEY_FILE, 0o600),
            (certs::CERT_FILE, 0o644),
            (certs::CA_FILE, 0o644),
        ] {
            let m = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o077, mode & 0o077, "{file}: {m:o}");
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join(certs::CA_FILE)).unwrap(),
            f.root.cert_pem(),
            "ca.crt is the root"
        );
        assert_eq!(
            certs::load_controllers(dir.path()).unwrap(),
            vec![c.addr.clone()]
        );

        // The certificate works for mTLS.
        let client = ControlClient::new(
            enrolled.controllers.clone(),
            enrolled.credentials.client_config().unwrap(),
        );
        heartbeat_once(&client, host).await.unwrap();

        // The next start uses the stored certificate: no token needed, none spent, and
        // the controllers come from the data dir.
        let cfg = config(dir.path(), vec![], None, &f.root.fingerprint());
        let again = enroll::establish(&cfg, host, &key).await.unwrap();
        assert!(!again.fresh);
        assert_eq!(again.controllers, vec![c.addr.clone()]);
        assert_eq!(c.seen.lock().unwrap().enrolls, 1);

        // A pin of another fleet: the stored certificate is not used, and without a
        // token the error says why.
        let other = FleetCa::generate(CLUSTER).unwrap();
        let cfg = config(dir.path(), vec![c.addr.clone()], None, &other.fingerprint());
        let err = enroll::establish(&cfg, host, &key)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not the pinned") && err.contains("join token"),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_wrong_pin_never_sends_the_token() {
    bounded(async {
        let f = fleet();
        let c = controller(&f, "c1", &["tok-1"]).await;
        let dir = tempfile::tempdir().unwrap();
        let host = Uuid::new_v4();
        let key = HostKey::load_or_generate(dir.path()).unwrap();
        let other = FleetCa::generate(CLUSTER).unwrap();
        let cfg = config(
            dir.path(),
            vec![c.addr.clone()],
            Some("tok-1"),
            &other.fingerprint(),
        );
        let err = enroll::establish(&cfg, host, &key)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not carry the pinned root"), "{err}");
        assert!(
            c.seen.lock().unwrap().tokens.contains("tok-1"),
            "the token was not spent"
        );
        assert!(!dir.path().join(certs::CERT_FILE).exists());
        // With the right pin the same token enrolls.
        let cfg = config(
            dir.path(),
            vec![c.addr.clone()],
            Some("tok-1"),
            &f.root.fingerprint(),
        );
        enroll::establish(&cfg, host, &key).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_expired_certificate_needs_a_new_token() {
    bounded(async {
        let f = fleet();
        let c = controller(&f, "c1", &["tok-1", "tok-2"]).await;
        let dir = tempfile::tempdir().unwrap();
        let host = Uuid::new_v4();
        let key = HostKey::load_or_generate(dir.path()).unwrap();
        // A certificate that expired while the agent was off.
        let now = time::OffsetDateTime::now_utc();
        let past = Validity::between(
            now - time::Duration::hours(3),
            now - time::Duration::hours(1),
        )
        .unwrap();
        let old = f
            .signing
            .sign_csr(
                &key.csr_pem(host).unwrap(),
                &Identity::agent(CLUSTER, host).unwrap(),
                &[],
                past,
            )
            .unwrap();
        std::fs::write(dir.path().join(certs::CERT_FILE), &old.cert_pem).unwrap();
        std::fs::write(dir.path().join(certs::CA_FILE), f.root.cert_pem()).unwrap();
        let stored = Credentials::load(dir.path(), &key, host).unwrap().unwrap();
        assert!(stored.expired_at(now));

        let pin = f.root.fingerprint();
        let err = enroll::establish(
            &config(dir.path(), vec![c.addr.clone()], None, &pin),
            host,
            &key,
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EnrollError::Missing(_)), "{msg}");
        assert!(
            msg.contains("expired") && msg.contains("join token"),
            "{msg}"
        );

        // The token it enrolled with first is spent: refused, and said so.
        c.seen.lock().unwrap().tokens.remove("tok-1");
        let err = enroll::establish(
            &config(dir.path(), vec![c.addr.clone()], Some("tok-1"), &pin),
            host,
            &key,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, EnrollError::TokenRefused(_)), "{err}");
        assert!(err.to_string().contains("zfadm token create"), "{err}");

        // A new token enrolls again, for the same host and key.
        let enrolled = enroll::establish(
            &config(dir.path(), vec![c.addr.clone()], Some("tok-2"), &pin),
            host,
            &key,
        )
        .await
        .unwrap();
        assert!(enrolled.fresh && !enrolled.credentials.expired_at(now));
    })
    .await;
}

#[tokio::test]
async fn renewal_swaps_the_client_certificate_in_place() {
    bounded(async {
        let f = fleet();
        let c = controller(&f, "c1", &["tok-1"]).await;
        let dir = tempfile::tempdir().unwrap();
        let host = Uuid::new_v4();
        let key = HostKey::load_or_generate(dir.path()).unwrap();
        let cfg = config(
            dir.path(),
            vec![c.addr.clone()],
            Some("tok-1"),
            &f.root.fingerprint(),
        );
        let enrolled = enroll::establish(&cfg, host, &key).await.unwrap();
        let old_config = enrolled.credentials.client_config().unwrap();
        let client = ControlClient::new(enrolled.controllers.clone(), old_config.clone());
        heartbeat_once(&client, host).await.unwrap();

        let renewed = certs::renew_once(&client, dir.path(), &key, &enrolled.credentials)
            .await
            .unwrap();
        assert_eq!(c.seen.lock().unwrap().renewals, 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(certs::CERT_FILE)).unwrap(),
            renewed.chain_pem,
            "the renewed chain is stored"
        );
        // Revoke the old certificate: the client goes on with the new one, without
        // being rebuilt; a client still on the old one is refused.
        let old_serial =
            zonefleet_proto::pki::serial_from_cert_der(&enrolled.credentials.cert_key.chain[0])
                .unwrap();
        let mut revoked = RevocationSet::new();
        revoked.revoke_serial(&old_serial).unwrap();
        c.trust.revocations().replace(revoked);
        heartbeat_once(&client, host).await.unwrap();
        let stale = ControlClient::new(vec![c.addr.clone()], old_config);
        assert!(heartbeat_once(&stale, host).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn a_dead_controller_is_skipped_and_a_followers_leader_hint_is_followed() {
    bounded(async {
        let f = fleet();
        let leader = controller(&f, "c1", &["tok-1"]).await;
        // Tokens are the fleet's (replicated state): any controller takes one.
        let follower = controller(&f, "c2", &["tok-1"]).await;
        follower.seen.lock().unwrap().leader_hint = Some(leader.addr.clone());
        let dir = tempfile::tempdir().unwrap();
        let host = Uuid::new_v4();
        let key = HostKey::load_or_generate(dir.path()).unwrap();
        // Enrollment also fails over: the first controller is down.
        let controllers = vec![dead_address(), follower.addr.clone(), leader.addr.clone()];
        let cfg = config(
            dir.path(),
            controllers.clone(),
            Some("tok-1"),
            &f.root.fingerprint(),
        );
        let enrolled = enroll::establish(&cfg, host, &key).await.unwrap();
        assert_eq!(
            follower.seen.lock().unwrap().enrolls,
            1,
            "the first that answers"
        );

        let client = ControlClient::new(
            vec![dead_address(), follower.addr.clone(), leader.addr.clone()],
            enrolled.credentials.client_config().unwrap(),
        );
        heartbeat_once(&client, host).await.unwrap();
        assert_eq!(leader.seen.lock().unwrap().heartbeats.len(), 1);
        assert_eq!(
            client.connected_to().await.as_deref(),
            Some(leader.addr.as_str())
        );
        // A controller that takes the connection and never answers is left within
        // the attempt's bound (as heartbeats must, well within the lease).
        let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hole_addr = hole.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = hole.accept().await {
                held.push(tcp);
            }
        });
        let stuck = ControlClient::new(
            vec![hole_addr.clone(), leader.addr.clone()],
            enrolled.credentials.client_config().unwrap(),
        );
        let started = std::time::Instant::now();
        let request = pb::HeartbeatRequest {
            host_id: host.to_string(),
            capacity: None,
            known_revocations: 0,
            applied_revision: 0,
        };
        stuck
            .call_within("Heartbeat", Duration::from_millis(300), move |mut c| {
                let request = request.clone();
                async move { c.heartbeat(request).await }
            })
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            stuck.connected_to().await.as_deref(),
            Some(leader.addr.as_str())
        );

        // Nobody answers: a clear error naming each controller tried.
        let alone = ControlClient::new(
            vec![dead_address()],
            enrolled.credentials.client_config().unwrap(),
        );
        let err = heartbeat_once(&alone, host).await.unwrap_err().to_string();
        assert!(err.contains("Heartbeat: no controller answered"), "{err}");
        // A refusal is not retried elsewhere: another host's heartbeat.
        let err = heartbeat_once(&client, Uuid::new_v4()).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::PermissionDenied), "{err}");
    })
    .await;
}

fn sysinfo(host: Uuid) -> HostSysinfo {
    HostSysinfo {
        host_id: host,
        hostname: "h1".into(),
        cpus: 2,
        memory_mib: 4096,
        kernel: "6.1.0".into(),
        cgroup_version: CgroupVersion::V1,
        cgroup_controllers: vec!["memory".into()],
        features: vec![],
        agent_version: "0.1.0".into(),
        agent_address: None,
    }
}

#[tokio::test]
async fn register_heartbeat_watch_and_report_speak_the_contract() {
    bounded(async {
        let f = fleet();
        let c = controller(&f, "c1", &["tok-1"]).await;
        let dir = tempfile::tempdir().unwrap();
        let host = Uuid::new_v4();
        let key = HostKey::load_or_generate(dir.path()).unwrap();
        let cfg = config(
            dir.path(),
            vec![c.addr.clone()],
            Some("tok-1"),
            &f.root.fingerprint(),
        );
        let enrolled = enroll::establish(&cfg, host, &key).await.unwrap();
        let client = ControlClient::new(
            enrolled.controllers.clone(),
            enrolled.credentials.client_config().unwrap(),
        );

        // Register, READY, heartbeats at the interval returned; the capacity goes in
        // a heartbeat only when it changed.
        let held = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = {
            let held = held.clone();
            let capacity = move || zonefleet_proto::host::Capacity {
                memory_mib: 1000,
                allocated_memory_mib: held.load(Ordering::Relaxed),
                ..Default::default()
            };
            tokio::spawn(heartbeat::run(
                client.clone(),
                sysinfo(host),
                capacity,
                move || {
                    let _ = ready_tx.send(());
                },
                zonefleet_agent::daemon::revoked::RevocationFeed::new(Default::default()),
                heartbeat::LeaseKeeper {
                    file: None,
                    applied_revision: Default::default(),
                    on_renew: Box::new(|| {}),
                },
            ))
        };
        ready_rx.await.unwrap();
        assert_eq!(
            c.seen.lock().unwrap().registered[0].host_id,
            host.to_string()
        );
        held.store(256, Ordering::Relaxed);
        let beats = loop {
            let beats = c.seen.lock().unwrap().heartbeats.clone();
            if beats.iter().filter(|b| b.capacity.is_none()).count() >= 1
                && beats.iter().any(|b| b.capacity.is_some())
            {
                break beats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let with_capacity: Vec<_> = beats.iter().filter_map(|b| b.capacity).collect();
        assert_eq!(
            with_capacity.len(),
            1,
            "sent once, when it changed: {beats:?}"
        );
        assert_eq!(with_capacity[0].allocated_memory_mib, 256);
        task.abort();

        // The watch resumes from the applied revision and hands over each event.
        c.seen.lock().unwrap().events = (5..=8)
            .map(|r| pb::AssignmentEvent {
                revision: r,
                event: Some(pb::assignment_event::Event::Removed(format!("zone-{r}"))),
            })
            .collect();
        let revision = Arc::new(AtomicU64::new(6));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watcher = {
            let revision = revision.clone();
            tokio::spawn(watch::run(
                client.clone(),
                host.to_string(),
                revision.clone(),
                move |e| {
                    revision.store(e.revision, Ordering::Release);
                    tx.send(e.revision).is_ok()
                },
            ))
        };
        assert_eq!(rx.recv().await, Some(7));
        assert_eq!(rx.recv().await, Some(8));
        // An event while the stream is open arrives on it.
        c.push(pb::AssignmentEvent {
            revision: 9,
            event: Some(pb::assignment_event::Event::Removed("zone-9".into())),
        });
        assert_eq!(rx.recv().await, Some(9));
        assert_eq!(c.seen.lock().unwrap().watches, [6]);
        // The stream ends: the next watch asks from the revision applied.
        c.close_watches();
        loop {
            if c.seen.lock().unwrap().watches.contains(&9) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(rx.try_recv().is_err(), "nothing is delivered twice");
        watcher.abort();

        // Reports: what arrived while none was on its way goes in one batch, the
        // newest state per zone.
        let zone = |uuid: &str, state: pb::ZoneState| pb::ObservedZone {
            uuid: uuid.into(),
            generation: 1,
            state: state as i32,
            message: String::new(),
            init_exit_status: None,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(vec![
            zone("a", pb::ZoneState::Installed),
            zone("b", pb::ZoneState::Running),
        ])
        .unwrap();
        tx.send(vec![zone("a", pb::ZoneState::Running)]).unwrap();
        drop(tx);
        report::run(client.clone(), host.to_string(), rx).await;
        let reports = c.seen.lock().unwrap().reports.clone();
        assert_eq!(reports.len(), 1, "{reports:?}");
        let states: Vec<(String, i32)> = reports[0]
            .zones
            .iter()
            .map(|z| (z.uuid.clone(), z.state))
            .collect();
        assert_eq!(
            states,
            [
                ("a".to_owned(), pb::ZoneState::Running as i32),
                ("b".to_owned(), pb::ZoneState::Running as i32)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn the_renewal_loop_renews_at_two_thirds_of_the_life() {
    bounded(async {
        let f = fleet();
        let c = controller(&f, "c1", &["tok-1"]).await;
        // Certificates of six seconds from their issue: renewed about four seconds in
        // (three at the earliest: certificate times are whole seconds), again and again.
        let now = time::OffsetDateTime::now_utc();
        c.seen.lock().unwrap().lifetime = Some(time::Duration::seconds(6));
        let dir = tempfile::tempdir().unwrap();
        let host = Uuid::new_v4();
        let key = Arc::new(HostKey::load_or_generate(dir.path()).unwrap());
        let cfg = config(
            dir.path(),
            vec![c.addr.clone()],
            Some("tok-1"),
            &f.root.fingerprint(),
        );
        let enrolled = enroll::establish(&cfg, host, &key).await.unwrap();
        let first_end = enrolled.credentials.not_after;
        assert!(first_end <= now + time::Duration::seconds(7));
        let client = ControlClient::new(
            enrolled.controllers.clone(),
            enrolled.credentials.client_config().unwrap(),
        );
        let served =
            zonefleet_proto::tls::ReloadableCert::new(&enrolled.credentials.cert_key).unwrap();
        let task = tokio::spawn(certs::renew_loop(
            client.clone(),
            dir.path().to_owned(),
            key.clone(),
            enrolled.credentials.clone(),
            served.clone(),
        ));
        // Not before two thirds of the life...
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(c.seen.lock().unwrap().renewals, 0, "renewed too early");
        // ...and before the end; the server issues short ones again.
        loop {
            if c.seen.lock().unwrap().renewals >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.abort();
        let stored = Credentials::load(dir.path(), &key, host).unwrap().unwrap();
        assert!(
            stored.not_after > first_end,
            "the stored certificate is the newer one"
        );
        // The Agent listener serves the renewed certificate too (a renewal may have
        // happened since `stored` was read: the served one is never older).
        let served_leaf = served.current().cert[0].clone();
        assert_ne!(served_leaf, enrolled.credentials.cert_key.chain[0]);
        let (_, served_cert) = x509_parser::parse_x509_certificate(&served_leaf).unwrap();
        assert!(served_cert.validity().not_after.to_datetime() >= stored.not_after);
        // The client, never rebuilt, works with the current certificate.
        heartbeat_once(&client, host).await.unwrap();
    })
    .await;
}
