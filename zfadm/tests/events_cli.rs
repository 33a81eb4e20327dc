//! `zfadm events` against an in-process cluster: `-o json` prints one line per event,
//! in order; `--from` prints only the later ones; `-f` keeps printing and, when the
//! controller it reads from stops, resumes at another without repeating or skipping.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use zonefleet_harness::bounded;
use zonefleet_harness::cluster::{test_raft_config, Cluster};
use zonefleet_harness::fixtures::{self, host, register_host};
use zonefleet_proto::pb;

/// The JSON lines of a successful zfadm run.
fn json_lines(out: &std::process::Output) -> Vec<Value> {
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    support::text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

/// A `zfadm events -f` running in the background, killed when dropped.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a line from zfadm events -f within 30 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_print_as_json_lines_resume_from_a_revision_and_follow_across_controllers() {
    bounded(Duration::from_secs(120), async {
        // The host here never heartbeats: its lease outlasts the test.
        let mut cluster = Cluster::start_with_control(3, test_raft_config(), |c| {
            c.lease_ttl = Duration::from_secs(600);
        })
        .await;
        let leader = cluster.leader().await;
        cluster
            .node(leader)
            .write(register_host(host("h1", 8192, 800, 100)))
            .await
            .unwrap();
        let mut operator = cluster.operator(leader).await;
        let web = fixtures::create_zone(&mut operator, "web").await;
        operator
            .cordon_host(pb::HostRef {
                host_id: "h1".to_owned(),
            })
            .await
            .unwrap();
        let admin = support::Admin::new(&cluster);

        let all = json_lines(&admin.zfadm(&["events", "-o", "json"]).await);
        assert_eq!(kinds(&all), ["host.up", "zone.placed", "host.cordoned"]);
        assert_eq!(all[1]["zone_uuid"], web.as_str());
        assert_eq!(all[1]["host_id"], "h1");
        assert!(
            all[0]["at"].as_str().unwrap().ends_with('Z'),
            "{:?}",
            all[0]
        );
        let first = all[0]["revision"].as_u64().unwrap();
        let from = first.to_string();
        let later = json_lines(
            &admin
                .zfadm(&["events", "--from", &from, "-o", "json"])
                .await,
        );
        assert_eq!(later, all[1..]);

        // The table: a header, then a row per event.
        let table = admin.zfadm(&["events"]).await;
        assert!(table.status.success(), "{}", support::text(&table.stderr));
        let text = support::text(&table.stdout);
        let rows: Vec<&str> = text.lines().collect();
        assert!(
            rows[0].starts_with("TIME") && rows[0].contains("MESSAGE"),
            "{text}"
        );
        assert_eq!(rows.len(), 4, "{text}");
        assert!(
            rows[3].contains("host.cordoned") && rows[3].contains("operator"),
            "{text}"
        );

        // Following, from controller 1 first (the first listed), then any other.
        let last = all[2]["revision"].as_u64().unwrap();
        let addresses: Vec<String> = (1..=3)
            .map(|id| cluster.members[&id].addr.to_string())
            .collect();
        let dir = admin.dir();
        let mut child = Command::new(env!("CARGO_BIN_EXE_zfadm"))
            .args(["events", "-f", "-o", "json", "--from", &last.to_string()])
            .env("ZONEFLEET_CONTROLLERS", addresses.join(","))
            .env("ZONEFLEET_CA", dir.join("ca.crt"))
            .env("ZONEFLEET_CERT", dir.join("admin.crt"))
            .env("ZONEFLEET_KEY", dir.join("admin.key"))
            .env("ZONEFLEET_CONFIG", dir.join("zfadm.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run zfadm events -f");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let follower = Follower { child, lines };

        let mut operator = cluster.operator(2).await;
        operator
            .uncordon_host(pb::HostRef {
                host_id: "h1".to_owned(),
            })
            .await
            .unwrap();
        let ready = tokio::task::block_in_place(|| follower.next());
        assert_eq!(ready["kind"], "host.ready", "{ready}");
        let ready_at = ready["revision"].as_u64().unwrap();
        assert!(ready_at > last);

        // The controller it reads from stops; the next event still arrives, once.
        cluster.kill(1).await;
        let survivors = [2, 3];
        let leader = cluster
            .leader_among(&survivors, Duration::from_secs(30))
            .await;
        let mut operator = cluster.operator(leader).await;
        operator
            .cordon_host(pb::HostRef {
                host_id: "h1".to_owned(),
            })
            .await
            .unwrap();
        let cordoned = tokio::task::block_in_place(|| follower.next());
        assert_eq!(cordoned["kind"], "host.cordoned", "{cordoned}");
        assert!(cordoned["revision"].as_u64().unwrap() > ready_at);
    })
    .await;
}
