//! The real `zonefleet-agent run` process (root): settings from a file and a kernel
//! command line file, enrollment with the token from the command line, `READY=1` on
//! `NOTIFY_SOCKET` once registered, a zone assigned over the watch stream booted and
//! reported running, a limit changed live, SIGTERM leaving the zone running, a
//! restarted agent adopting it (same init pid, no token needed, the watch resumed from
//! the revision applied), and a removal deleting it. The controllers are the in-test
//! `Control` service (`support::control`).

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::control::{controller, fleet, Controller};
use support::host::TestHost;
use support::AGENT;
use zonefleet_agent::zone::ZoneState;
use zonefleet_proto::pb;
use zonefleet_proto::pb::assignment_event::Event;
use zonefleet_proto::spec::ZoneSpec;

const WAIT: Duration = Duration::from_secs(30);

/// A running agent process, killed when dropped (also after a failed assertion),
/// its log printed then.
struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    fn start(config: &Path, cmdline: &Path, notify: &Path, log: &Path) -> Agent {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(AGENT)
            .args(["run", "--config"])
            .arg(config)
            .arg("--cmdline")
            .arg(cmdline)
            .env("NOTIFY_SOCKET", notify)
            .env("ZONEFLEET_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start zonefleet-agent run");
        Agent {
            child: Some(child),
            log: log.to_owned(),
        }
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "the agent did not stop within {WAIT:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("agent log:\n{}", self.log_text());
            }
        }
    }
}

/// Waits for `what` on the notify socket.
fn wait_notify(socket: &UnixDatagram, what: &str, agent: &Agent) {
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {what} ({e}); log:\n{}", agent.log_text()));
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == what)
        {
            return;
        }
    }
}

/// Waits until `c` got a report of `uuid` in `state` at `generation`.
async fn wait_report(
    c: &Controller,
    uuid: &str,
    state: pb::ZoneState,
    generation: u64,
    agent: &Agent,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = c.seen.lock().unwrap().reports.iter().any(|r| {
            r.zones
                .iter()
                .any(|z| z.uuid == uuid && z.state == state as i32 && z.generation == generation)
        });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no report of {uuid} {state:?} gen {generation}; log:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn zone(uuid: &str, memory: u64, generation: u64) -> pb::Zone {
    let json = format!(
        r#"{{"uuid": "{uuid}", "image": "busybox", "max_physical_memory": {memory}, "quota": 1, "tmpfs": 16}}"#
    );
    pb::Zone {
        spec: Some(ZoneSpec::from_json(&json).unwrap().with_defaults().into()),
        generation,
        desired_state: pb::ZoneState::Running as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_enrolls_runs_assigned_zones_and_leaves_them_running_when_it_stops() {
    let Some(t) = TestHost::new("the_daemon_enrolls_runs_assigned_zones") else {
        return;
    };
    let f = fleet();
    let c = controller(&f, "c1", &["join-token-1"]).await;
    let uuid = uuid::Uuid::new_v4().to_string();
    c.seen.lock().unwrap().events = vec![pb::AssignmentEvent {
        revision: 4,
        event: Some(Event::Snapshot(pb::AssignmentSnapshot {
            zones: vec![zone(&uuid, 64, 1)],
        })),
    }];

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "controllers = [\"{}\"]\ndata_dir = \"{}\"\nresync_ms = 200\n[capacity]\nmemory_mib = 2048\ncpu_percent = 100\ndisk_gib = 5\n",
            c.addr,
            t.data.display()
        ),
    )
    .unwrap();
    // The token and the pin come from the "kernel command line".
    let cmdline = dir.path().join("cmdline");
    std::fs::write(
        &cmdline,
        format!(
            "BOOT_IMAGE=/vmlinuz ro zonefleet.token=join-token-1 zonefleet.ca={} zonefleet.controllers=127.0.0.1:1\n",
            f.root.fingerprint()
        ),
    )
    .unwrap();
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();

    let mut agent = Agent::start(
        &config,
        &cmdline,
        &notify_path,
        &dir.path().join("agent1.log"),
    );
    tokio::task::block_in_place(|| wait_notify(&notify, "READY=1", &agent));
    {
        let seen = c.seen.lock().unwrap();
        assert_eq!(seen.enrolls, 1);
        assert_eq!(seen.registered.len(), 1, "registered before READY=1");
        assert!(!seen.tokens.contains("join-token-1"), "the token was spent");
    }
    wait_report(&c, &uuid, pb::ZoneState::Running, 1, &agent).await;
    let running = t.host.get(&uuid).unwrap();
    assert_eq!(running.state, ZoneState::Running);
    let init = running.init_pid;

    // A new memory cap, pushed on the open stream: applied live.
    c.push(pb::AssignmentEvent {
        revision: 5,
        event: Some(Event::Upsert(zone(&uuid, 96, 2))),
    });
    wait_report(&c, &uuid, pb::ZoneState::Running, 2, &agent).await;
    let limit =
        std::fs::read_to_string(t.cgroup_dir("memory", &uuid).join("memory.limit_in_bytes"))
            .unwrap();
    assert_eq!(limit.trim(), (96u64 << 20).to_string());
    assert_eq!(t.host.get(&uuid).unwrap().init_pid, init);

    // SIGTERM: the agent exits, the zone runs on.
    let status = agent.stop();
    assert!(status.success(), "{status}; log:\n{}", agent.log_text());
    let after = t.host.get(&uuid).unwrap();
    assert_eq!((after.state, after.init_pid), (ZoneState::Running, init));

    // A new agent with no token at all: the stored certificate is used, the zone is
    // adopted as it runs, and the watch resumes from revision 5.
    std::fs::write(&cmdline, "BOOT_IMAGE=/vmlinuz ro\n").unwrap();
    c.seen.lock().unwrap().reports.clear();
    let watches_before = c.seen.lock().unwrap().watches.len();
    let agent = Agent::start(
        &config,
        &cmdline,
        &notify_path,
        &dir.path().join("agent2.log"),
    );
    tokio::task::block_in_place(|| wait_notify(&notify, "READY=1", &agent));
    wait_report(&c, &uuid, pb::ZoneState::Running, 2, &agent).await;
    assert_eq!(
        t.host.get(&uuid).unwrap().init_pid,
        init,
        "adopted: the same init"
    );
    assert_eq!(c.seen.lock().unwrap().enrolls, 1, "no second enrollment");
    let deadline = Instant::now() + WAIT;
    while c.seen.lock().unwrap().watches.len() <= watches_before {
        assert!(
            Instant::now() < deadline,
            "no watch; log:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        c.seen.lock().unwrap().watches[watches_before],
        5,
        "resumed from the revision applied"
    );

    // Removed: deleted from the host and reported.
    c.push(pb::AssignmentEvent {
        revision: 6,
        event: Some(Event::Removed(uuid.clone())),
    });
    wait_report(&c, &uuid, pb::ZoneState::Deleted, 2, &agent).await;
    assert!(t.host.get(&uuid).is_err());
    drop(agent);
}
