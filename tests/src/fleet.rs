//! A fleet of real binaries for the multi-host suites: the PKI made by `zfadm pki init`,
//! controllers each on its own host on the run's switch, and an operator host from which
//! `zfadm` talks to them. Everything goes when the fleet is dropped, daemons first.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use zonefleet_devfleet::config::Share;
use zonefleet_devfleet::config::{AgentFile, ControllerFile, Joining};

use crate::netns::{HostNs, Switch};
use crate::process::{run_in, Daemon};
use crate::{binary, names};

/// The port every controller listens on (each on its own host's address).
pub const PORT: u16 = 7000;
/// The fleet's cluster name.
pub const CLUSTER: &str = "multi";
/// How long one `zfadm` call may take.
const ZFADM_LIMIT: Duration = Duration::from_secs(30);

/// What an agent offers zones unless a test says otherwise.
pub const DEFAULT_SHARE: Share = Share {
    memory_mib: 2048,
    cpu_percent: 200,
    disk_gib: 32,
};

/// Controllers on hosts 1..=n of a switch, agents on hosts 101.., and an operator host
/// (number 99).
pub struct Fleet {
    // Fields drop in order: agents (and their zones) go first, then the controllers,
    // then the hosts, the switch and the files.
    /// The agents, in the order they joined.
    pub agents: Vec<Agent>,
    /// The controllers, by index (id − 1); `None` while one is stopped.
    pub controllers: Vec<Option<Daemon>>,
    /// The controllers' hosts, by index.
    pub hosts: Vec<HostNs>,
    operator: HostNs,
    switch: Switch,
    dir: tempfile::TempDir,
}

impl Fleet {
    /// Sweeps what earlier runs left, makes the switch, `n` controller hosts and the
    /// operator host, the PKI, and starts the controllers.
    pub fn start(n: usize) -> Fleet {
        names::sweep_stale();
        let run = names::new_run();
        let switch = names::switch(&run).expect("switch");
        let hosts: Vec<HostNs> = (1..=n as u8)
            .map(|i| switch.host(i).expect("host"))
            .collect();
        let operator = switch.host(99).expect("operator host");
        let dir = tempfile::tempdir().unwrap();
        let mut fleet = Fleet {
            dir,
            agents: Vec::new(),
            controllers: Vec::new(),
            hosts,
            operator,
            switch,
        };
        fleet.init_pki();
        // An empty zfadm config, so no one's ~/.config is read.
        std::fs::write(fleet.dir().join("zfadm.toml"), "").unwrap();
        for i in 0..n {
            let daemon = fleet.start_controller(i);
            fleet.controllers.push(Some(daemon));
        }
        fleet
    }

    /// The fleet's directory: PKI, configs, data dirs, logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The switch, to add more hosts.
    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// Controller `i`'s address (`HOST:PORT`).
    pub fn addr(&self, i: usize) -> String {
        format!("{}:{PORT}", self.hosts[i].address())
    }

    /// Every controller index.
    pub fn all(&self) -> Vec<usize> {
        (0..self.hosts.len()).collect()
    }

    /// The PKI directory `zfadm pki init` wrote.
    pub fn pki(&self) -> PathBuf {
        self.dir().join("pki")
    }

    /// Controller `i`'s data dir.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir().join(format!("data-{}", i + 1))
    }

    fn init_pki(&self) {
        let mut command = Command::new(binary("zfadm"));
        command.args(["pki", "init", "--cluster", CLUSTER, "--out"]);
        command.arg(self.pki());
        for i in 0..self.hosts.len() {
            command
                .arg("--controller")
                .arg(format!("{}={}", i + 1, self.addr(i)));
        }
        let out = run_in(None, command, ZFADM_LIMIT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes controller `i`'s config and starts it on its host.
    pub fn start_controller(&self, i: usize) -> Daemon {
        let id = i + 1;
        let config = self.dir().join(format!("controller-{id}.toml"));
        let file = ControllerFile {
            id: id as u64,
            cluster: CLUSTER.to_owned(),
            listen: self.addr(i),
            pki: "pki".into(),
            data_dir: format!("data-{id}").into(),
            members: (0..self.hosts.len())
                .map(|j| (j as u64 + 1, self.addr(j)))
                .collect(),
        };
        std::fs::write(&config, file.render()).unwrap();
        let mut command = Command::new(binary("zonefleet-controller"));
        command.arg("--config").arg(&config);
        let log = self.dir().join(format!("controller-{id}.log"));
        Daemon::start(&format!("controller {id}"), &self.hosts[i], command, &log)
            .expect("start a controller")
    }

    /// `zfadm ARGS` on the operator's host against the controllers `via`: its stdout,
    /// or its stderr when it fails.
    pub fn zfadm(&self, via: &[usize], args: &[&str]) -> Result<String, String> {
        let pki = self.pki();
        let controllers: Vec<String> = via.iter().map(|&i| self.addr(i)).collect();
        let mut command = Command::new(binary("zfadm"));
        command
            .args(args)
            .env("ZONEFLEET_CONTROLLERS", controllers.join(","))
            .env("ZONEFLEET_CA", pki.join("ca.crt"))
            .env("ZONEFLEET_CERT", pki.join("operator-admin.crt"))
            .env("ZONEFLEET_KEY", pki.join("operator-admin.key"))
            .env("ZONEFLEET_CONFIG", self.dir().join("zfadm.toml"));
        let out = run_in(Some(&self.operator), command, ZFADM_LIMIT);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `zfadm ARGS` on the operator's host with `stdin` piped in, as the operator or,
    /// with `cert`, presenting that certificate and key instead: its whole output
    /// (exit status, stdout, stderr), whatever the status.
    pub fn zfadm_piped(
        &self,
        args: &[&str],
        stdin: &[u8],
        cert: Option<(&Path, &Path)>,
    ) -> std::process::Output {
        let pki = self.pki();
        let (cert, key) = match cert {
            Some((c, k)) => (c.to_owned(), k.to_owned()),
            None => (
                pki.join("operator-admin.crt"),
                pki.join("operator-admin.key"),
            ),
        };
        let controllers: Vec<String> = self.all().iter().map(|&i| self.addr(i)).collect();
        let mut command = Command::new(binary("zfadm"));
        command
            .args(args)
            .env("ZONEFLEET_CONTROLLERS", controllers.join(","))
            .env("ZONEFLEET_CA", pki.join("ca.crt"))
            .env("ZONEFLEET_CERT", cert)
            .env("ZONEFLEET_KEY", key)
            .env("ZONEFLEET_CONFIG", self.dir().join("zfadm.toml"));
        crate::process::in_host(&mut command, &self.operator).expect("the operator's host");
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn zfadm");
        let mut input = child.stdin.take().expect("piped");
        let stdin = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = input.write_all(&stdin);
        });
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(ZFADM_LIMIT) {
            Ok(out) => out.expect("wait for zfadm"),
            Err(_) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                panic!("zfadm {args:?} did not finish within {ZFADM_LIMIT:?}");
            }
        };
        let _ = writer.join();
        out
    }

    /// `zfadm ARGS` ready to run on the operator's host against every controller, for a
    /// test that runs it longer than one call may take or watches it while it runs
    /// (the caller bounds and reaps it).
    pub fn zfadm_command(&self, args: &[&str]) -> Command {
        let pki = self.pki();
        let controllers: Vec<String> = self.all().iter().map(|&i| self.addr(i)).collect();
        let mut command = Command::new(binary("zfadm"));
        command
            .args(args)
            .env("ZONEFLEET_CONTROLLERS", controllers.join(","))
            .env("ZONEFLEET_CA", pki.join("ca.crt"))
            .env("ZONEFLEET_CERT", pki.join("operator-admin.crt"))
            .env("ZONEFLEET_KEY", pki.join("operator-admin.key"))
            .env("ZONEFLEET_CONFIG", self.dir().join("zfadm.toml"));
        crate::process::in_host(&mut command, &self.operator).expect("the operator's host");
        command
    }

    /// Runs `command` on the operator's host (bounded like a `zfadm` call).
    pub fn on_operator_host(&self, command: Command) -> std::process::Output {
        run_in(Some(&self.operator), command, ZFADM_LIMIT)
    }

    /// Every zone `zfadm zone list` shows through the controllers `via`, by alias.
    pub fn zones(&self, via: &[usize]) -> std::collections::BTreeMap<String, serde_json::Value> {
        let listed = self.zfadm_json(via, &["zone", "list"]);
        listed
            .as_array()
            .unwrap_or_else(|| panic!("zone list: not a list: {listed}"))
            .iter()
            .map(|z| {
                (
                    z["alias"].as_str().unwrap_or_default().to_owned(),
                    z.clone(),
                )
            })
            .collect()
    }

    /// `zfadm ARGS -o json`, parsed; panics naming the command when it fails.
    pub fn zfadm_json(&self, via: &[usize], args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self
            .zfadm(via, &all)
            .unwrap_or_else(|e| panic!("zfadm {args:?}: {e}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("zfadm {args:?}: {e}: {out}"))
    }

    /// The leader's id as the controllers `via` report it, once there is one.
    pub fn leader(&self, via: &[usize], within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let status = self.zfadm(via, &["cluster", "status", "-o", "json"]);
            if let Ok(json) = &status {
                let status: serde_json::Value = serde_json::from_str(json).unwrap();
                if let Some(id) = leader_of(&status) {
                    return id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader via {via:?}: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Fleet {
    /// The root CA's fingerprint, what agents pin.
    pub fn ca_fingerprint(&self) -> String {
        let pem = std::fs::read_to_string(self.pki().join("ca.crt")).unwrap();
        let der = zonefleet_proto::tls::load_certs(&self.pki().join("ca.crt"))
            .unwrap_or_else(|e| panic!("ca.crt: {e}: {pem}"));
        zonefleet_proto::pki::fingerprint(&der[0])
    }

    /// A one-time join token for `rack` (`zfadm token create`).
    pub fn join_token(&self, rack: &str) -> String {
        let created = self.zfadm_json(
            &self.all(),
            &["token", "create", "--ttl", "1h", "--rack", rack],
        );
        created["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {created}"))
            .to_owned()
    }

    /// Joins an agent on a new host (number 100 + its index + 1) in `rack`, with its own
    /// token, data dir, cgroup parent, bridge and capacity share, and starts it. Every
    /// second agent gets the controllers, token and CA pin from a kernel command line
    /// file (`--cmdline`), as a PXE-booted host does; the others from `agent.toml`.
    pub fn add_agent(&mut self, rack: &str) -> &mut Agent {
        self.add_agent_with(rack, DEFAULT_SHARE, true)
    }

    /// [`Self::add_agent`] with the capacity share `share` (of RAM, CPU and disk the
    /// host offers zones) instead of the default 2048 MiB, 200 %, 32 GiB, and fencing
    /// on or off (off only to test the double-run check itself).
    pub fn add_agent_with(&mut self, rack: &str, share: Share, fencing: bool) -> &mut Agent {
        let n = self.agents.len() + 1;
        let host = self.switch.host(100 + n as u8).expect("agent host");
        self.switch.add_uplink(&host).expect("agent uplink");
        let run = &host.name()[..host.name().len() - format!("h{}", 100 + n).len()];
        let dir = self.dir().join(format!("agent-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("agent.toml");
        let notify_path = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
        let joining = Joining {
            controllers: self.all().iter().map(|&i| self.addr(i)).collect(),
            token: self.join_token(rack),
            ca: self.ca_fingerprint(),
        };
        let cmdline = n.is_multiple_of(2).then(|| dir.join("cmdline"));
        let joining = match &cmdline {
            None => Some(joining),
            Some(path) => {
                let line = format!(
                    "BOOT_IMAGE=/vmlinuz console=ttyS0 {} quiet\n",
                    joining.kernel_cmdline()
                );
                std::fs::write(path, line).unwrap();
                None
            }
        };
        let agent = Agent {
            cmdline,
            notify,
            notify_path,
            n,
            cgroup_parent: format!("{run}a{n}"),
            bridge: format!("{run}b{n}"),
            data_dir: dir.join("data"),
            log: dir.join("agent.log"),
            host,
            daemon: None,
            config,
        };
        let file = AgentFile {
            joining,
            cluster: CLUSTER.to_owned(),
            data_dir: agent.data_dir.clone(),
            cgroup_parent: agent.cgroup_parent.clone(),
            bridge: agent.bridge.clone(),
            uplink: Some("eth1".to_owned()),
            share,
            fencing,
        };
        std::fs::write(&agent.config, file.render()).unwrap();
        self.agents.push(agent);
        let agent = self.agents.last_mut().unwrap();
        agent.start();
        agent
    }
}

/// One agent of the fleet on its own host: `zonefleet-agent run`, and the zones it made.
/// Dropping it stops the agent, deletes its zones and removes its cgroup parent.
pub struct Agent {
    /// Its number in the fleet (1..).
    pub n: usize,
    /// Its host.
    pub host: HostNs,
    /// The running daemon, `None` while stopped.
    pub daemon: Option<Daemon>,
    config: PathBuf,
    /// The kernel command line file it reads, when it has one.
    cmdline: Option<PathBuf>,
    /// Where it says `READY=1` (its `NOTIFY_SOCKET`, as systemd gives a Type=notify unit).
    notify: UnixDatagram,
    notify_path: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    cgroup_parent: String,
    bridge: String,
}

impl Agent {
    /// Starts (or restarts) the daemon.
    pub fn start(&mut self) {
        let mut command = Command::new(binary("zonefleet-agent"));
        command.arg("run").arg("--config").arg(&self.config);
        if let Some(cmdline) = &self.cmdline {
            command.arg("--cmdline").arg(cmdline);
        }
        command
            .env("ZONEFLEET_LOG", "info")
            .env("NOTIFY_SOCKET", &self.notify_path);
        let daemon = Daemon::start(&format!("agent {}", self.n), &self.host, command, &self.log)
            .expect("start an agent");
        self.daemon = Some(daemon);
    }

    /// Waits until the daemon says `READY=1` on its notify socket (it has registered),
    /// or fails after `within`.
    pub fn wait_ready(&self, within: Duration) {
        self.notify.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 512];
        loop {
            let n = self.notify.recv(&mut buf).unwrap_or_else(|e| {
                panic!("agent {} sent no READY=1 within {within:?}: {e}", self.n)
            });
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return;
            }
        }
    }

    /// Kills the daemon with SIGKILL (its zones keep running).
    pub fn kill(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.kill();
        }
    }

    /// The agent's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Zone `uuid`'s cgroup in the v1 hierarchy of `controller` (this machine's layout).
    pub fn cgroup_dir(&self, controller: &str, uuid: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.cgroup_parent)
            .join(uuid)
    }

    /// Runs the agent's one-shot CLI (`zonefleet-agent --data-dir … ARGS`) on its host.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(binary("zonefleet-agent"));
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--bridge")
            .arg(&self.bridge)
            .args(args);
        run_in(Some(&self.host), command, Duration::from_secs(60))
    }

    /// The zones on this host as the agent's CLI lists them (`zone list -o json`).
    pub fn local_zones(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["zone", "list", "-o", "json"]);
        if !out.status.success() {
            return Vec::new();
        }
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            // Its log is printed by the daemon's own drop when the test failed.
            daemon.stop();
        }
        if self.data_dir.is_dir() {
            for zone in self.local_zones() {
                if let Some(uuid) = zone["uuid"].as_str() {
                    // No grace: an init that ignores SIGTERM (PID 1 without a handler)
                    // would hold each delete for the default 10 s.
                    let _ = self.cli(&["zone", "halt", "--grace", "0", uuid]);
                    let _ = self.cli(&["zone", "delete", uuid]);
                }
            }
            let _ = self.cli(&["bridge", "delete"]);
        }
        if let Ok(mounts) = std::fs::read_dir("/sys/fs/cgroup") {
            for mount in mounts.flatten() {
                let _ = std::fs::remove_dir(mount.path().join(&self.cgroup_parent));
            }
        }
    }
}

/// The leader's id in `zfadm cluster status -o json`.
fn leader_of(status: &serde_json::Value) -> Option<u64> {
    let leader = status.get("leader_id")?;
    leader
        .as_u64()
        .or_else(|| leader.as_str().and_then(|s| s.parse().ok()))
        .filter(|id| *id != 0)
}
