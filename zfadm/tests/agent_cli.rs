//! `zfadm zone exec|logs` against an in-process cluster, for what is decided before an
//! agent is dialled: an unknown zone, a zone placed on no host, one not running, a host
//! without an agent address, a bad `--host`, `-t` without a terminal; and the agent
//! address an agent may register. (Exec and logs through a real agent:
//! `tests/tests/fleet_joined.rs`.)

mod support;

use std::process::Output;
use std::time::Duration;

use tonic::Code;
use uuid::Uuid;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{cert_key, Cluster};
use zonefleet_harness::fixtures;
use zonefleet_proto::pb;
use zonefleet_proto::pb::control_client::ControlClient;
use zonefleet_proto::pki::Validity;

/// zfadm's error, after checking it failed with status 1.
fn failure(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

fn sysinfo(host: Uuid, agent_address: &str) -> pb::HostSysinfo {
    pb::HostSysinfo {
        host_id: host.to_string(),
        hostname: "h1".to_owned(),
        cpus: 4,
        memory_mib: 8192,
        kernel: "6.1.0".to_owned(),
        cgroup_version: pb::CgroupVersion::V1 as i32,
        agent_version: "0.1.0".to_owned(),
        agent_address: agent_address.to_owned(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_logs_say_why_no_agent_can_be_reached() {
    bounded(Duration::from_secs(60), async {
        let cluster = Cluster::start(1).await;
        cluster.leader().await;
        let admin = support::Admin::new(&cluster);
        let run = |args: &[&str]| admin.zfadm(args);

        let err = failure(&run(&["zone", "exec", "nosuch", "--", "true"]).await);
        assert!(err.contains("not_found") && err.contains("nosuch"), "{err}");

        // No host yet: the zone is pending.
        let mut operator = cluster.operator(1).await;
        operator
            .create_zones(fixtures::create(fixtures::spec("web"), 1))
            .await
            .unwrap();
        let err = failure(&run(&["zone", "exec", "web", "--", "true"]).await);
        assert!(err.contains("is not placed on any host yet"), "{err}");
        let err = failure(&run(&["zone", "logs", "web"]).await);
        assert!(err.contains("is not placed on any host yet"), "{err}");

        // A host whose agent registered no address; one with an address no one can
        // dial is refused at the wire, naming the field.
        let host = Uuid::new_v4();
        let agent = cert_key(
            &cluster
                .ca
                .issue_agent(host, &[], Validity::days(1).unwrap())
                .unwrap(),
        );
        let mut control = ControlClient::new(cluster.channel_as(1, &agent).await);
        let capacity = pb::Capacity {
            memory_mib: 8192,
            cpu_percent: 400,
            disk_gib: 100,
            ..Default::default()
        };
        let refused = control
            .register(pb::RegisterRequest {
                sysinfo: Some(sysinfo(host, "0.0.0.0:7444")),
                capacity: Some(capacity),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().contains("agent_address")
                && refused.message().contains("unspecified"),
            "{refused:?}"
        );
        control
            .register(pb::RegisterRequest {
                sysinfo: Some(sysinfo(host, "")),
                capacity: Some(capacity),
            })
            .await
            .unwrap();
        // The pending zone is placed on the new host: by the controllers' retry of
        // pending zones, or by this reschedule if it comes first (then the retry
        // finds it placed; a reschedule after the retry is refused: it is already
        // on the only host).
        if let Err(e) = operator
            .reschedule_zone(pb::ZoneRef {
                zone: "web".to_owned(),
            })
            .await
        {
            assert!(
                e.code() == Code::FailedPrecondition && e.message().contains("current host"),
                "{e:?}"
            );
        }
        // Placed, never reported running: exec refuses, logs need the address.
        let err = failure(&run(&["zone", "exec", "web", "--", "true"]).await);
        assert!(
            err.contains(&format!("on host {host}, not running")),
            "{err}"
        );
        let err = failure(&run(&["zone", "logs", "web"]).await);
        assert!(
            err.contains(&format!("host {host} has no agent address")),
            "{err}"
        );

        // Direct: a --host that is no host id; -t without a terminal.
        let err = failure(
            &run(&[
                "zone",
                "exec",
                "--agent",
                "127.0.0.1:1",
                "--host",
                "nope",
                "web",
                "--",
                "true",
            ])
            .await,
        );
        assert!(err.contains("--host: \"nope\" is not a host id"), "{err}");
        let err = failure(
            &run(&[
                "zone",
                "exec",
                "-t",
                "--agent",
                "127.0.0.1:1",
                "--host",
                "0b7c3a4e-1d2f-4c55-9a8e-3f2b1c0d9e8f",
                "web",
                "--",
                "sh",
            ])
            .await,
        );
        assert!(
            err.contains("-t: standard input is not a terminal"),
            "{err}"
        );
        // --agent without --host is a usage error.
        let out = run(&["zone", "logs", "--agent", "127.0.0.1:1", "web"]).await;
        assert_eq!(out.status.code(), Some(2));
    })
    .await;
}
