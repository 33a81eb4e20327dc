//! Operator roles and the audit trail, through the real operator API of an in-process
//! cluster: a viewer reads but never writes, an admin (also with a certificate of the
//! form issued before roles) does both, and every write leaves an audit line naming
//! the caller, the method, the target and the result.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tonic::transport::Channel;
use tonic::Code;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{cert_key, Cluster, CLUSTER};
use zonefleet_harness::fixtures::{create_zone, keyed_create};
use zonefleet_proto::auth::audit::AUDIT_TARGET;
use zonefleet_proto::auth::{Access, RPC_RULES};
use zonefleet_proto::pb;
use zonefleet_proto::pb::operator_client::OperatorClient;
use zonefleet_proto::pki::{serial_from_cert_der, IssuedCert, OperatorRole, Validity};

/// Everything written at `audit=info` by any test of this binary (one global
/// subscriber: the cluster's tasks run on other threads than the test's).
fn audit_log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
                "{AUDIT_TARGET}=info"
            )))
            .with_ansi(false)
            .with_writer(move || Shared(writer.clone()))
            .init();
        log
    })
}

struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The audit lines written so far that contain every one of `needles`.
fn audit_lines_with(needles: &[&str]) -> Vec<String> {
    let log = audit_log().lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// Waits for the audit line of a call (written when its response ends).
async fn audit_line(needles: &[&str]) -> String {
    for _ in 0..100 {
        if let Some(line) = audit_lines_with(needles).pop() {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = audit_log().lock().unwrap();
    panic!(
        "no audit line with {needles:?} in:\n{}",
        String::from_utf8_lossy(&log)
    );
}

fn operator(cluster: &Cluster, name: &str, role: OperatorRole) -> IssuedCert {
    cluster
        .ca
        .issue_operator_with_role(name, role, Validity::days(1).unwrap())
        .unwrap()
}

async fn client_as(cluster: &Cluster, id: u64, who: &IssuedCert) -> OperatorClient<Channel> {
    OperatorClient::new(cluster.channel_as(id, &cert_key(who)).await)
}

fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// Calls every write of the `Operator` service with `zone` (or an empty request) and
/// returns each method's code. The list must name every write of the rule table.
async fn every_write(
    client: &mut OperatorClient<Channel>,
    zone: &str,
) -> Vec<(&'static str, Code)> {
    let zone_ref = || pb::ZoneRef {
        zone: zone.to_owned(),
    };
    let codes = vec![
        (
            "CreateZones",
            code(client.create_zones(keyed_create("denied")).await),
        ),
        (
            "UpdateZone",
            code(
                client
                    .update_zone(pb::UpdateZoneRequest {
                        zone: zone.to_owned(),
                        patch: Some(pb::ZonePatch { json: "{}".into() }),
                    })
                    .await,
            ),
        ),
        ("StopZone", code(client.stop_zone(zone_ref()).await)),
        ("StartZone", code(client.start_zone(zone_ref()).await)),
        ("RebootZone", code(client.reboot_zone(zone_ref()).await)),
        (
            "RescheduleZone",
            code(client.reschedule_zone(zone_ref()).await),
        ),
        ("DeleteZone", code(client.delete_zone(zone_ref()).await)),
        (
            "CordonHost",
            code(client.cordon_host(pb::HostRef::default()).await),
        ),
        (
            "UncordonHost",
            code(client.uncordon_host(pb::HostRef::default()).await),
        ),
        (
            "DrainHost",
            code(client.drain_host(pb::DrainHostRequest::default()).await),
        ),
        (
            "SetHostInventory",
            code(
                client
                    .set_host_inventory(pb::SetHostInventoryRequest::default())
                    .await,
            ),
        ),
        (
            "CreateNetwork",
            code(client.create_network(pb::Network::default()).await),
        ),
        (
            "DeleteNetwork",
            code(client.delete_network(pb::NetworkRef::default()).await),
        ),
        (
            "CreateJoinToken",
            code(
                client
                    .create_join_token(pb::CreateJoinTokenRequest::default())
                    .await,
            ),
        ),
        (
            "AddController",
            code(
                client
                    .add_controller(pb::AddControllerRequest::default())
                    .await,
            ),
        ),
        (
            "RemoveController",
            code(
                client
                    .remove_controller(pb::RemoveControllerRequest::default())
                    .await,
            ),
        ),
        (
            "SetFleetSettings",
            code(
                client
                    .set_fleet_settings(pb::FleetSettings::default())
                    .await,
            ),
        ),
        (
            "RevokeCertificate",
            code(
                client
                    .revoke_certificate(pb::RevokeCertificateRequest::default())
                    .await,
            ),
        ),
        (
            "RevokeJoinToken",
            code(
                client
                    .revoke_join_token(pb::RevokeJoinTokenRequest::default())
                    .await,
            ),
        ),
        (
            "ImportImage",
            code(
                client
                    .import_image(tokio_stream::iter(vec![pb::ImportImageRequest {
                        part: Some(pb::import_image_request::Part::Start(
                            pb::ImportImageStart {
                                name: "x".to_owned(),
                                ..Default::default()
                            },
                        )),
                    }]))
                    .await,
            ),
        ),
        (
            "DeleteImage",
            code(client.delete_image(pb::ImageRef::default()).await),
        ),
        (
            "ResumeRescheduling",
            code(
                client
                    .resume_rescheduling(pb::ResumeReschedulingRequest::default())
                    .await,
            ),
        ),
    ];
    let mut called: Vec<&str> = codes.iter().map(|(m, _)| *m).collect();
    called.sort_unstable();
    let mut writes: Vec<&str> = RPC_RULES
        .iter()
        .filter(|r| r.access.is_write())
        .filter_map(|r| r.method.strip_prefix("/zonefleet.v1.Operator/"))
        .collect();
    writes.sort_unstable();
    assert_eq!(called, writes, "every operator write is exercised");
    codes
}

/// Calls every read of the `Operator` service and returns each method's code.
async fn every_read(client: &mut OperatorClient<Channel>, zone: &str) -> Vec<(&'static str, Code)> {
    let reads = vec![
        (
            "GetZone",
            code(
                client
                    .get_zone(pb::GetZoneRequest {
                        zone: zone.to_owned(),
                        ..Default::default()
                    })
                    .await,
            ),
        ),
        (
            "ListZones",
            code(client.list_zones(pb::ListZonesRequest::default()).await),
        ),
        (
            "ListHosts",
            code(client.list_hosts(pb::ListHostsRequest::default()).await),
        ),
        (
            "ClusterStatus",
            code(
                client
                    .cluster_status(pb::ClusterStatusRequest::default())
                    .await,
            ),
        ),
        (
            "ListNetworks",
            code(
                client
                    .list_networks(pb::ListNetworksRequest::default())
                    .await,
            ),
        ),
        (
            "ListImages",
            code(client.list_images(pb::ListImagesRequest::default()).await),
        ),
        (
            "ListRevocations",
            code(
                client
                    .list_revocations(pb::ListRevocationsRequest::default())
                    .await,
            ),
        ),
        (
            "GetFleetSettings",
            code(
                client
                    .get_fleet_settings(pb::GetFleetSettingsRequest::default())
                    .await,
            ),
        ),
        (
            "WatchEvents",
            code(client.watch_events(pb::WatchEventsRequest::default()).await),
        ),
    ];
    for rule in RPC_RULES {
        if let Some(name) = rule.method.strip_prefix("/zonefleet.v1.Operator/") {
            // GetHost and GetImage need a host and an image; ListJoinTokens is for
            // admins only (see `join_tokens_are_listed_for_admins_only`).
            if rule.access == Access::Read
                && !["GetHost", "GetImage", "ListJoinTokens"].contains(&name)
            {
                assert!(reads.iter().any(|(m, _)| *m == name), "{name} not read");
            }
        }
    }
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_but_every_write_is_refused_and_audited() {
    audit_log();
    bounded(Duration::from_secs(60), async {
        let cluster = Cluster::start(1).await;
        let leader = cluster.leader().await;
        let admin = operator(&cluster, "admin", OperatorRole::Admin);
        let viewer = operator(&cluster, "bob", OperatorRole::Viewer);
        let mut as_admin = client_as(&cluster, leader, &admin).await;
        let mut as_viewer = client_as(&cluster, leader, &viewer).await;
        let zone = create_zone(&mut as_admin, "seen").await;

        for (method, code) in every_read(&mut as_viewer, &zone).await {
            assert_eq!(code, Code::Ok, "viewer {method}");
        }
        let zones = as_viewer
            .list_zones(pb::ListZonesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .zones;
        assert_eq!(zones.len(), 1);

        for (method, code) in every_write(&mut as_viewer, &zone).await {
            assert_eq!(code, Code::PermissionDenied, "viewer {method}");
        }
        // Nothing changed: the zone is there, no other was created.
        let after = as_admin
            .list_zones(pb::ListZonesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .zones;
        assert_eq!(after.len(), 1);
        assert_eq!(
            after[0].spec.as_ref().unwrap().uuid.as_deref(),
            Some(&*zone)
        );

        // Each refusal is audited with the caller, its serial, the target and the code.
        let identity = format!("identity=zonefleet://{CLUSTER}/operator/viewer/bob ");
        let serial = format!(
            "serial={} ",
            serial_from_cert_der(&viewer.cert_der).unwrap()
        );
        let line = audit_line(&[
            &identity,
            &serial,
            "method=/zonefleet.v1.Operator/DeleteZone ",
            &format!("object=\"{zone}\""),
            "result=PermissionDenied",
        ])
        .await;
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains(&format!(" {AUDIT_TARGET}: ")), "{line}");
        let refused = audit_lines_with(&[&identity, "result=PermissionDenied"]);
        let writes = RPC_RULES
            .iter()
            .filter(|r| r.access.is_write() && r.method.starts_with("/zonefleet.v1.Operator/"))
            .count();
        assert_eq!(
            refused.len(),
            writes,
            "one line per refused write: {refused:#?}"
        );
        // Reads are not audited.
        assert!(audit_lines_with(&[&identity, "ListZones"]).is_empty());
        // Join tokens' metadata is for admins only.
        let listed = as_viewer
            .list_join_tokens(pb::ListJoinTokensRequest::default())
            .await;
        assert_eq!(code(listed), Code::PermissionDenied);
        let listed = as_admin
            .list_join_tokens(pb::ListJoinTokensRequest::default())
            .await;
        assert_eq!(code(listed), Code::Ok);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reads_and_writes_and_is_audited() {
    audit_log();
    bounded(Duration::from_secs(60), async {
        let cluster = Cluster::start(1).await;
        let leader = cluster.leader().await;
        // The form every operator certificate had before roles existed: an admin.
        let old_form = operator(&cluster, "carol", OperatorRole::Admin);
        assert_eq!(
            old_form.identity.to_string(),
            format!("zonefleet://{CLUSTER}/operator/carol")
        );
        let mut client = client_as(&cluster, leader, &old_form).await;
        let serial = format!(
            "serial={} ",
            serial_from_cert_der(&old_form.cert_der).unwrap()
        );
        let identity = format!("identity=zonefleet://{CLUSTER}/operator/carol ");

        let zone = create_zone(&mut client, "web").await;
        audit_line(&[
            &identity,
            &serial,
            "method=/zonefleet.v1.Operator/CreateZones ",
            "object=\"web\"",
            "result=Ok",
        ])
        .await;
        client
            .update_zone(pb::UpdateZoneRequest {
                zone: zone.clone(),
                patch: Some(pb::ZonePatch {
                    json: r#"{"max_physical_memory": 128}"#.into(),
                }),
            })
            .await
            .unwrap();
        audit_line(&[
            &identity,
            "method=/zonefleet.v1.Operator/UpdateZone ",
            &format!("object=\"{zone}\""),
            "result=Ok",
        ])
        .await;
        // A write the handler refuses is audited with the handler's code.
        let bad = client
            .create_network(pb::Network {
                name: "lan".into(),
                subnet: "not-a-subnet".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        audit_line(&[
            &identity,
            "method=/zonefleet.v1.Operator/CreateNetwork ",
            "object=\"lan\"",
            "result=InvalidArgument",
        ])
        .await;

        for (method, code) in every_read(&mut client, &zone).await {
            assert_eq!(code, Code::Ok, "admin {method}");
        }
        client
            .delete_zone(pb::ZoneRef { zone: zone.clone() })
            .await
            .unwrap();
        audit_line(&[
            &identity,
            "method=/zonefleet.v1.Operator/DeleteZone ",
            &format!("object=\"{zone}\""),
            "result=Ok",
        ])
        .await;
        // Past the role check on every write (what the handlers then say varies).
        for (method, code) in every_write(&mut client, "no-such-zone").await {
            assert!(
                !matches!(code, Code::PermissionDenied | Code::Unauthenticated),
                "admin {method}: {code:?}"
            );
        }
    })
    .await;
}
