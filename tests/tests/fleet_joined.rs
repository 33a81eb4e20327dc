//! The fleet, joined, with the real binaries: three controllers on three hosts and two
//! agents on two more hosts in two racks, each agent enrolled with its own join token
//! (one given it in `agent.toml`, one on a kernel command line file) and ready
//! (`READY=1` on its `NOTIFY_SOCKET`) once registered.
//! The busybox image is imported once through the controllers (`zfadm image import`)
//! and each host downloads it. Zones created with `zfadm` run on the hosts the
//! scheduler chose, spread as asked; a
//! zone on one host reaches a zone on the other; a memory update reaches the host's
//! cgroup; an agent killed with SIGKILL and restarted adopts its zones (same init pid), and
//! one stopped with SIGTERM leaves them running;
//! the leader killed during a burst of creates loses and duplicates none; a deleted zone
//! is gone from its host. Needs root; fails under `CI=true` without it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zonefleet_tests::fleet::Fleet;
use zonefleet_tests::privileged;

const ZONES: usize = 20;

fn hosts(fleet: &Fleet) -> Vec<Value> {
    fleet
        .zfadm_json(&fleet.all(), &["host", "list"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The index of the agent whose host runs `zone` (by the host id in its data dir).
fn agent_of(fleet: &Fleet, zone: &Value) -> usize {
    fleet
        .agents
        .iter()
        .position(|a| {
            std::fs::read_to_string(a.data_dir().join("host_id"))
                .is_ok_and(|id| id.trim() == zone["host_id"])
        })
        .unwrap_or_else(|| panic!("no agent runs {zone}"))
}

/// Zone `uuid` as agent `i`'s CLI shows it.
fn local(fleet: &Fleet, i: usize, uuid: &str) -> Value {
    fleet.agents[i]
        .local_zones()
        .into_iter()
        .find(|z| z["uuid"] == uuid)
        .unwrap_or_else(|| panic!("{uuid} not on agent {i}"))
}

/// Waits up to 30 s for `check`.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates zone `alias` during the burst: retried with the same idempotency key until a
/// controller acknowledges it (a retry after a lost answer must not make a second zone).
fn burst_create(fleet: &Fleet, alias: &str) {
    let file = fleet.dir().join(format!("{alias}.json"));
    let spec = json!({"alias": alias, "image": "busybox", "max_physical_memory": 32, "quota": 1,
        "init": ["/bin/sh", "-c", "exec sleep 100000"]});
    std::fs::write(&file, spec.to_string()).unwrap();
    let key = format!("key-{alias}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let args = [
            "zone",
            "create",
            "-f",
            file.to_str().unwrap(),
            "--idempotency-key",
            &key,
        ];
        match fleet.zfadm(&fleet.all(), &args) {
            Ok(_) => return,
            Err(e) => assert!(Instant::now() < deadline, "{alias}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Operators reach zones through their hosts' agents: `zfadm zone exec` (stdin in,
/// stdout and stderr apart, the exit status out; a terminal with `-t`), `zfadm zone
/// logs`, the hosts' heartbeats in `host list`; and who may not: another host's agent
/// certificate, a client without a certificate.
fn through_the_agents(fleet: &Fleet, seen: &BTreeMap<String, Value>) {
    let started = Instant::now();
    // Each host shows a recent heartbeat, its lease after it, and its agent's address.
    for host in hosts(fleet) {
        let last = host["last_heartbeat_unix_ms"]
            .as_i64()
            .unwrap_or_else(|| panic!("no heartbeat in {host}"));
        let age = now_ms() - last;
        assert!((0..5_000).contains(&age), "heartbeat {age} ms old: {host}");
        assert!(
            host["lease_expires_unix_ms"].as_i64().unwrap() > last,
            "{host}"
        );
        assert!(
            host["agent_address"]
                .as_str()
                .is_some_and(|a| a.ends_with(":7444")),
            "{host}"
        );
    }

    // stdin piped in, stdout and stderr apart, the status out.
    let exec_started = Instant::now();
    let out = fleet.zfadm_piped(
        &[
            "zone",
            "exec",
            "z4",
            "--",
            "/bin/sh",
            "-c",
            "tr a-z A-Z; echo to-stderr >&2; hostname; exit 3",
        ],
        b"hello from stdin
",
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    eprintln!(
        "zfadm zone exec (controllers' lookup, agent, command): {:?}",
        exec_started.elapsed()
    );
    // (A zone's hostname is its alias.)
    assert_eq!(stdout, "HELLO FROM STDIN\nz4\n", "{stderr}");
    assert_eq!(stderr, "to-stderr\n");
    // A terminal: the command's stdin and stdout are a pty (`script` gives zfadm one),
    // of the default size (script's own terminal has none).
    let mut script = std::process::Command::new("script");
    script.args(["-qec"]).arg(format!(
        "{} zone exec -t z4 -- /bin/sh -c 'test -t 0 && test -t 1 && echo on-a-terminal; stty size; exit 5'",
        zonefleet_tests::binary("zfadm").display()
    ));
    script.arg("/dev/null");
    for (k, v) in fleet_env(fleet) {
        script.env(k, v);
    }
    let out = fleet.on_operator_host(script);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("on-a-terminal\r\n24 80\r\n"),
        "{shown:?}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(5), "{shown:?}");

    // The console log: what the zone's init printed, and its tail.
    let logs = fleet.zfadm(&fleet.all(), &["zone", "logs", "z4"]).unwrap();
    assert_eq!(logs, "booted z4\n");
    let tail = fleet
        .zfadm(&fleet.all(), &["zone", "logs", "z4", "--tail", "5"])
        .unwrap();
    assert_eq!(tail, &logs[logs.len() - 5..]);

    // Clear refusals: an unknown zone.
    let err = fleet
        .zfadm(&fleet.all(), &["zone", "exec", "nosuch", "--", "true"])
        .unwrap_err();
    assert!(err.contains("not_found") && err.contains("nosuch"), "{err}");

    // Another host's agent certificate calling Exec on z4's agent: refused by the
    // agent (dialled directly, past the controllers, which would refuse it first).
    let on = agent_of(fleet, &seen["z4"]);
    let other = &fleet.agents[1 - on];
    let host_id = seen["z4"]["host_id"].as_str().unwrap();
    let address = hosts(fleet)
        .into_iter()
        .find(|h| h["host_id"] == host_id)
        .unwrap()["agent_address"]
        .as_str()
        .unwrap()
        .to_owned();
    let (crt, key) = (
        other.data_dir().join("agent.crt"),
        other.data_dir().join("agent.key"),
    );
    let out = fleet.zfadm_piped(
        &[
            "zone", "exec", "--agent", &address, "--host", host_id, "z4", "--", "true",
        ],
        b"",
        Some((&crt, &key)),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("permission_denied"),
        "{err}"
    );
    // The operator, dialling it directly the same way, gets through.
    let out = fleet.zfadm_piped(
        &[
            "zone", "exec", "--agent", &address, "--host", host_id, "z4", "--", "true",
        ],
        b"",
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No client certificate: refused at the handshake.
    let mut openssl = std::process::Command::new("openssl");
    openssl
        .args([
            "s_client", "-ign_eof", "-connect", &address, "-alpn", "h2", "-CAfile",
        ])
        .arg(fleet.pki().join("ca.crt"));
    let out = fleet.on_operator_host(openssl);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("certificate required"), "{said}");
    // A revoked operator: refused by the agent too, once a heartbeat brought it the
    // revocation.
    let eve = fleet.dir().join("eve");
    let mut issue = std::process::Command::new(zonefleet_tests::binary("zfadm"));
    issue
        .args(["pki", "issue", "--operator", "eve", "--ca-dir"])
        .arg(fleet.pki())
        .arg("--out")
        .arg(&eve);
    let out = fleet.on_operator_host(issue);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (crt, key) = (eve.join("operator-eve.crt"), eve.join("operator-eve.key"));
    let as_eve = || {
        fleet.zfadm_piped(
            &[
                "zone", "exec", "--agent", &address, "--host", host_id, "z4", "--", "true",
            ],
            b"",
            Some((&crt, &key)),
        )
    };
    assert!(
        as_eve().status.success(),
        "eve may exec before her revocation"
    );
    fleet
        .zfadm(
            &fleet.all(),
            &[
                "pki",
                "revoke",
                "--identity",
                "zonefleet://multi/operator/eve",
            ],
        )
        .unwrap();
    let revoked_at = Instant::now();
    let refused = loop {
        let out = as_eve();
        if !out.status.success() {
            break String::from_utf8_lossy(&out.stderr).into_owned();
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(10),
            "the agent still serves a revoked operator"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        refused.contains("may have refused our certificate"),
        "{refused}"
    );
    eprintln!(
        "the agent refused a revoked operator {:?} after the revocation",
        revoked_at.elapsed()
    );
    eprintln!("{:?}: through the agents", started.elapsed());
}

/// The environment `zfadm` finds the fleet through (for a `zfadm` run by another tool).
fn fleet_env(fleet: &Fleet) -> Vec<(&'static str, String)> {
    let pki = fleet.pki();
    let controllers: Vec<String> = fleet.all().iter().map(|&i| fleet.addr(i)).collect();
    vec![
        ("ZONEFLEET_CONTROLLERS", controllers.join(",")),
        ("ZONEFLEET_CA", pki.join("ca.crt").display().to_string()),
        (
            "ZONEFLEET_CERT",
            pki.join("operator-admin.crt").display().to_string(),
        ),
        (
            "ZONEFLEET_KEY",
            pki.join("operator-admin.key").display().to_string(),
        ),
        (
            "ZONEFLEET_CONFIG",
            fleet.dir().join("zfadm.toml").display().to_string(),
        ),
    ]
}

#[test]
fn zones_run_where_the_scheduler_placed_them() {
    if !privileged("zones_run_where_the_scheduler_placed_them") {
        return;
    }
    let started = Instant::now();
    let mut fleet = Fleet::start(3);
    fleet.leader(&fleet.all(), Duration::from_secs(30));
    // The image goes to the controllers once; each host downloads it when a zone needs it.
    let archive = zonefleet_tests::busybox_archive();
    fleet.zfadm_json(
        &fleet.all(),
        &[
            "image",
            "import",
            archive.to_str().unwrap(),
            "--name",
            "busybox",
            "--version",
            "1",
        ],
    );
    for rack in ["r1", "r2"] {
        let agent = fleet.add_agent(rack);
        // Type=notify: ready once registered (agent 2 joined from a kernel command line).
        agent.wait_ready(Duration::from_secs(30));
    }
    eprintln!("{:?}: agents started, images imported", started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(30);
    while hosts(&fleet)
        .iter()
        .filter(|h| h["status"] == "ready")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "agents did not join: {:#?}",
            hosts(&fleet)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let racks: BTreeMap<String, String> = hosts(&fleet)
        .iter()
        .map(|h| {
            (
                h["host_id"].as_str().unwrap().to_owned(),
                h["rack"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        racks.values().filter(|r| *r == "r1").count(),
        1,
        "{racks:?}"
    );
    // What each agent registered: its share and its version, as `zfadm host list` shows.
    for host in hosts(&fleet) {
        assert_eq!(host["agent_version"], env!("CARGO_PKG_VERSION"), "{host}");
        let share = (host["memory_mib"].as_u64(), host["cpu_percent"].as_u64());
        assert_eq!(share, (Some(2048), Some(200)), "{host}");
    }

    // A network for the two zones that talk across hosts.
    let net = fleet.dir().join("net.json");
    std::fs::write(
        &net,
        json!({"uuid": "00000000-0000-4000-8000-0000000000aa", "name": "lan",
        "subnet": "10.77.0.0/24", "provision_start": "10.77.0.10", "provision_end": "10.77.0.50"})
        .to_string(),
    )
    .unwrap();
    fleet
        .zfadm(
            &fleet.all(),
            &["network", "create", "-f", net.to_str().unwrap()],
        )
        .unwrap();

    eprintln!("{:?}: hosts ready", started.elapsed());
    // Two zones with addresses from the network, one per host; the rest spread by rack.
    for alias in ["a", "b"] {
        fleet.create_zones(
            &json!({
                "alias": alias, "image": "busybox", "max_physical_memory": 32, "quota": 1,
                "init": ["/bin/sh", "-c", "exec sleep 100000"],
                "placement": {"spread": {"by": "host", "group": "pair", "max_per_domain": 1}},
                "nics": [{"network": "lan", "primary": true}],
            }),
            1,
        );
    }
    for i in 2..ZONES {
        fleet.create_zones(
            &json!({
                "alias": format!("z{i}"), "image": "busybox", "max_physical_memory": 32, "quota": 1,
                "init": ["/bin/sh", "-c", "echo booted $(hostname); exec sleep 100000"],
                "placement": {"spread": {"by": "rack", "group": "spread", "max_per_domain": (ZONES - 2) / 2}},
            }),
            1,
        );
    }
    eprintln!("{:?}: zones created", started.elapsed());
    let seen = fleet.zones_until("all running", Duration::from_secs(120), |z| {
        z.len() == ZONES && z.values().all(|z| z["observed_state"] == "running")
    });
    let per_rack = seen
        .values()
        .fold(BTreeMap::<String, usize>::new(), |mut m, z| {
            *m.entry(racks[z["host_id"].as_str().unwrap()].clone())
                .or_default() += 1;
            m
        });
    assert_eq!(
        per_rack.values().copied().collect::<Vec<_>>(),
        [ZONES / 2, ZONES / 2],
        "{per_rack:?}"
    );
    // Each zone runs on the host the controllers placed it on, and nowhere else.
    for agent in &fleet.agents {
        let local: Vec<String> = agent
            .local_zones()
            .iter()
            .map(|z| z["uuid"].as_str().unwrap().to_owned())
            .collect();
        let host_id = std::fs::read_to_string(agent.data_dir().join("host_id")).unwrap();
        let placed: Vec<String> = seen
            .values()
            .filter(|z| z["host_id"] == host_id.trim())
            .map(|z| z["uuid"].as_str().unwrap().to_owned())
            .collect();
        let mut local_sorted = local.clone();
        local_sorted.sort();
        let mut placed_sorted = placed;
        placed_sorted.sort();
        assert_eq!(local_sorted, placed_sorted, "agent {}", agent.n);
    }

    // A zone on one host reaches the zone on the other, through both hosts' uplinks.
    let (a, b) = (&seen["a"], &seen["b"]);
    assert_ne!(a["host_id"], b["host_id"], "the pair is spread by host");
    let to = b["addresses"][0]
        .as_str()
        .expect("b has an address from lan");
    let on_a = agent_of(&fleet, a);
    let out =
        fleet.agents[on_a].cli(&["zone", "exec", "a", "--", "ping", "-c", "2", "-W", "2", to]);
    assert!(
        out.status.success(),
        "ping {to}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    through_the_agents(&fleet, &seen);

    // A memory update reaches the host's cgroup, live (the same init).
    let z2 = &seen["z2"];
    let on = agent_of(&fleet, z2);
    let uuid = z2["uuid"].as_str().unwrap().to_owned();
    let init = local(&fleet, on, &uuid)["init_pid"].clone();
    let patch = fleet.dir().join("patch.json");
    std::fs::write(&patch, json!({"max_physical_memory": 48}).to_string()).unwrap();
    fleet
        .zfadm(
            &fleet.all(),
            &["zone", "update", &uuid, "-f", patch.to_str().unwrap()],
        )
        .unwrap();
    let limit = fleet.agents[on]
        .cgroup_dir("memory", &uuid)
        .join("memory.limit_in_bytes");
    eventually("the new memory cap", || {
        std::fs::read_to_string(&limit).is_ok_and(|l| l.trim() == (48u64 << 20).to_string())
    });
    assert_eq!(
        local(&fleet, on, &uuid)["init_pid"],
        init,
        "updated live, not rebooted"
    );

    // An agent killed with SIGKILL and restarted adopts its zones: the same inits.
    let before: BTreeMap<String, Value> = fleet.agents[0]
        .local_zones()
        .into_iter()
        .map(|z| {
            (
                z["uuid"].as_str().unwrap().to_owned(),
                z["init_pid"].clone(),
            )
        })
        .collect();
    fleet.agents[0].kill();
    fleet.agents[0].start();
    // Its token is spent: it comes back on the certificate it keeps.
    fleet.agents[0].wait_ready(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let after: BTreeMap<String, Value> = fleet.agents[0]
        .local_zones()
        .into_iter()
        .map(|z| {
            (
                z["uuid"].as_str().unwrap().to_owned(),
                z["init_pid"].clone(),
            )
        })
        .collect();
    assert_eq!(after, before, "adopted with the same init pids");
    fleet.zones_until(
        "running after the agent's restart",
        Duration::from_secs(30),
        |z| z.values().all(|z| z["observed_state"] == "running"),
    );

    // Stopping an agent (SIGTERM, as systemd does) never stops its zones.
    let pids = |agent: &zonefleet_tests::fleet::Agent| -> Vec<(String, Value)> {
        agent
            .local_zones()
            .into_iter()
            .map(|z| {
                (
                    z["uuid"].as_str().unwrap().to_owned(),
                    z["init_pid"].clone(),
                )
            })
            .collect()
    };
    let running = pids(&fleet.agents[1]);
    fleet.agents[1].daemon.take().expect("agent 2 runs").stop();
    assert_eq!(
        pids(&fleet.agents[1]),
        running,
        "the zones outlive the agent"
    );
    assert!(fleet.agents[1]
        .local_zones()
        .iter()
        .all(|z| z["state"] == "running"));
    fleet.agents[1].start();

    // A deleted zone goes from its host and from the fleet.
    let z3 = &seen["z3"];
    let on = agent_of(&fleet, z3);
    let uuid = z3["uuid"].as_str().unwrap().to_owned();
    fleet
        .zfadm(&fleet.all(), &["zone", "delete", &uuid])
        .unwrap();
    fleet.zones_until("z3 gone from the fleet", Duration::from_secs(30), |z| {
        !z.contains_key("z3")
    });
    eventually("z3 gone from its host", || {
        fleet.agents[on]
            .local_zones()
            .iter()
            .all(|z| z["uuid"] != uuid.as_str())
    });

    // The leader killed (SIGKILL) during a burst of creates: each create is retried with
    // its idempotency key until acknowledged; none is lost, none doubled, all run.
    let leader = fleet.leader(&fleet.all(), Duration::from_secs(30));
    const THREADS: usize = 8;
    const EACH: usize = 3;
    const BURST: usize = THREADS * EACH;
    let leader_pid = fleet.controllers[(leader - 1) as usize]
        .as_ref()
        .and_then(|d| d.pid())
        .map(|pid| nix::unistd::Pid::from_raw(pid as i32))
        .expect("the leader runs");
    let (killed_at, acknowledged) = std::thread::scope(|scope| {
        let creating: Vec<_> = (0..THREADS)
            .map(|t| {
                let fleet = &fleet;
                scope.spawn(move || {
                    let mut acknowledged = Vec::new();
                    for k in 0..EACH {
                        let alias = format!("burst{t}-{k}");
                        burst_create(fleet, &alias);
                        acknowledged.push(Instant::now());
                    }
                    acknowledged
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150));
        let _ = nix::sys::signal::kill(leader_pid, nix::sys::signal::Signal::SIGKILL);
        let killed_at = Instant::now();
        let acknowledged: Vec<Instant> = creating
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        (killed_at, acknowledged)
    });
    // Reaped (it is dead already).
    if let Some(daemon) = fleet.controllers[(leader - 1) as usize].as_mut() {
        daemon.kill();
    }
    let after_kill = acknowledged.iter().filter(|at| **at > killed_at).count();
    assert!(
        after_kill > 0,
        "the burst spanned the kill: all {BURST} acknowledged before it"
    );
    let seen = fleet.zones_until("the burst running", Duration::from_secs(60), |z| {
        z.iter()
            .filter(|(a, z)| a.starts_with("burst") && z["observed_state"] == "running")
            .count()
            == BURST
    });
    let burst = seen.keys().filter(|a| a.starts_with("burst")).count();
    assert_eq!(burst, BURST, "none lost, none doubled");
    let on_hosts: usize = fleet
        .agents
        .iter()
        .map(|a| {
            a.local_zones()
                .iter()
                .filter(|z| z["alias"].as_str().is_some_and(|a| a.starts_with("burst")))
                .count()
        })
        .sum();
    assert_eq!(on_hosts, BURST, "each runs once, on one host");
    eprintln!("{after_kill} of {BURST} burst creates acknowledged after the leader was killed");
    eprintln!("{:?}: checked", started.elapsed());
}
