//! `zfadm dev up`: the switch and hosts, the PKI, the controllers, the agents (each
//! enrolled with its own token), the busybox image and the sample zones. A step that
//! fails removes what the earlier ones made (after printing the logs' tails), so a
//! failed `up` leaves nothing behind.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use zonefleet_devfleet::config::{AgentFile, ControllerFile, Joining, Share};
use zonefleet_devfleet::net::{HostNs, Switch};

use super::layout::{self, Files, CLUSTER, PORT};
use super::{daemon, zfadm, zfadm_json, UpArgs};

/// The sample network and zones (also written under `<dir>/samples/`).
const SAMPLES: [(&str, &str); 4] = [
    (
        "network.json",
        include_str!("../../../../deploy/examples/network.json"),
    ),
    (
        "web-a.json",
        include_str!("../../../../deploy/examples/web-a.json"),
    ),
    (
        "web-b.json",
        include_str!("../../../../deploy/examples/web-b.json"),
    ),
    (
        "hello.json",
        include_str!("../../../../deploy/examples/hello.json"),
    ),
];

/// How long the fleet may take to come up, step by step.
const LEADER_WITHIN: Duration = Duration::from_secs(30);
const AGENTS_WITHIN: Duration = Duration::from_secs(60);
const ZONES_WITHIN: Duration = Duration::from_secs(90);

/// Brings the fleet up, or says it is up already.
pub fn up(args: &UpArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let files = Files::new(&super::absolute(&args.dir.dir)?);
    if files.zfadm_config().is_file() {
        if zfadm(&files, &["cluster", "status"]).is_ok() {
            writeln!(
                out,
                "a local fleet is already up in {}",
                files.dir().display()
            )?;
            return report(&files, out);
        }
        writeln!(
            out,
            "removing a local fleet in {} that no longer answers",
            files.dir().display()
        )?;
        super::down::down(&files, &mut std::io::sink())?;
    }
    preflight()?;
    refuse_another_fleet(&files)?;
    // Leftovers of a fleet whose directory is gone.
    super::down::sweep();
    match build(&files, args, out) {
        Ok(()) => report(&files, out),
        Err(error) => {
            print_log_tails(&files);
            let _ = super::down::down(&files, &mut std::io::sink());
            Err(error.context("zfadm dev up failed; what it had made is removed"))
        }
    }
}

/// The programs a dev fleet runs, and the Debian package of each.
const TOOLS: [(&str, &str); 4] = [
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("mkfs.ext4", "e2fsprogs"),
    ("sh", "dash"),
];

/// Says which programs are missing before anything is made.
fn preflight() -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = |tool: &str| std::env::split_paths(&path).any(|d| d.join(tool).is_file());
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(tool, _)| !found(tool))
        .map(|(tool, package)| format!("{tool} (Debian package {package})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "this machine lacks {}: install them first (deploy/local-fleet.sh up does)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// One dev fleet per machine (its names and addresses are fixed): refuses when the
/// switch of a fleet made from another directory that still exists is up.
fn refuse_another_fleet(files: &Files) -> anyhow::Result<()> {
    let bridge = format!("{}sw", layout::PREFIX);
    let alias =
        std::fs::read_to_string(format!("/sys/class/net/{bridge}/ifalias")).unwrap_or_default();
    let owner = alias.trim();
    if !owner.is_empty() && Path::new(owner) != files.dir() && Path::new(owner).exists() {
        bail!(
            "a local fleet made in {owner} is up on this machine (bridge {bridge}); remove it \
             with `zfadm dev down --dir {owner}` first"
        );
    }
    Ok(())
}

fn build(files: &Files, args: &UpArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    std::fs::create_dir_all(files.dir())
        .with_context(|| format!("creating {}", files.dir().display()))?;
    let switch = Switch::new(layout::PREFIX, layout::HOST_SUBNET)?;
    // The bridge names the fleet's directory, so a later `up` from another directory
    // can tell the fleet is someone's.
    zonefleet_devfleet::net::ip(&[
        "link",
        "set",
        switch.bridge(),
        "alias",
        &files.dir().display().to_string(),
    ])?;
    switch.add_address(layout::OPERATOR_CIDR)?;
    switch.add_address(layout::ZONE_GATEWAY_CIDR)?;
    let controllers: Vec<String> = (0..args.controllers as usize)
        .map(|i| format!("{}:{PORT}", switch.address(layout::controller_host(i))))
        .collect();

    writeln!(out, "pki: {}", files.pki().display())?;
    init_pki(files, &controllers)?;
    write_zfadm_config(files, &controllers)?;

    for (i, address) in controllers.iter().enumerate() {
        let host = switch.host(layout::controller_host(i))?;
        start_controller(files, i, &controllers, &host)?;
        writeln!(out, "controller {} on {address} ({})", i + 1, host.name())?;
        host.keep();
    }
    let leader = wait_for_leader(files)?;
    writeln!(out, "controllers elected leader {leader}")?;

    let image = files.image();
    zonefleet_devfleet::image::build_busybox(&image)
        .map_err(|e| anyhow::anyhow!("building the busybox image: {e}"))?;
    let ca = ca_fingerprint(files)?;
    for n in 1..=args.agents as usize {
        let host = switch.host(layout::agent_host(n))?;
        switch.add_uplink(&host)?;
        let rack = layout::agent_rack(n);
        let share = Share {
            memory_mib: args.agent_memory,
            cpu_percent: args.agent_cpu,
            disk_gib: args.agent_disk,
        };
        start_agent(files, (n, rack, share), &controllers, &ca, &host)?;
        writeln!(
            out,
            "agent {n} on {} ({}, rack {rack})",
            host.address(),
            host.name()
        )?;
        host.keep();
    }
    wait_for_hosts(files, args.agents as usize)?;
    switch.keep();
    import_image(files, &image, out)?;

    if !args.no_samples {
        create_samples(files, out)?;
    }
    Ok(())
}

fn init_pki(files: &Files, controllers: &[String]) -> anyhow::Result<()> {
    let mut argv = vec![
        "zfadm".to_owned(),
        "pki".into(),
        "init".into(),
        "--cluster".into(),
        CLUSTER.into(),
        "--out".into(),
        files.pki().display().to_string(),
    ];
    for (i, address) in controllers.iter().enumerate() {
        argv.push("--controller".into());
        argv.push(format!("{}={address}", i + 1));
    }
    let cli = <super::super::Cli as clap::Parser>::try_parse_from(&argv)?;
    super::super::run(cli, &mut std::io::sink())
        .map(|_| ())
        .context("zfadm pki init")
}

fn write_zfadm_config(files: &Files, controllers: &[String]) -> anyhow::Result<()> {
    let quoted: Vec<String> = controllers.iter().map(|c| format!("{c:?}")).collect();
    let text = format!(
        "# zfadm's settings for the local fleet made by `zfadm dev up`\n\
         controllers = [{}]\ncluster = \"{CLUSTER}\"\nca = \"pki/ca.crt\"\n\
         cert = \"pki/operator-admin.crt\"\nkey = \"pki/operator-admin.key\"\n",
        quoted.join(", ")
    );
    let path = files.zfadm_config();
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn start_controller(
    files: &Files,
    i: usize,
    controllers: &[String],
    host: &HostNs,
) -> anyhow::Result<()> {
    let id = i + 1;
    let config = files.controller(id);
    let file = ControllerFile {
        id: id as u64,
        cluster: CLUSTER.to_owned(),
        listen: controllers[i].clone(),
        pki: "pki".into(),
        data_dir: format!("controller-{id}").into(),
        members: controllers
            .iter()
            .enumerate()
            .map(|(j, a)| (j as u64 + 1, a.clone()))
            .collect(),
    };
    std::fs::write(&config, file.render())
        .with_context(|| format!("writing {}", config.display()))?;
    let mut command = Command::new(daemon::binary("zonefleet-controller"));
    command.arg("--config").arg(&config);
    daemon::start(command, host, &config)?;
    Ok(())
}

fn wait_for_leader(files: &Files) -> anyhow::Result<u64> {
    let deadline = Instant::now() + LEADER_WITHIN;
    loop {
        let status = zfadm_json(files, &["cluster", "status"]);
        if let Ok(status) = &status {
            let leader = &status["leader_id"];
            // The id is a string in JSON (a u64 does not survive every JSON reader).
            let id = leader
                .as_u64()
                .or_else(|| leader.as_str().and_then(|s| s.parse().ok()));
            if let Some(id) = id.filter(|id| *id != 0) {
                return Ok(id);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the controllers elected no leader within {LEADER_WITHIN:?} ({}); see {}",
                status
                    .err()
                    .map_or("no leader yet".into(), |e| format!("{e:#}")),
                files.dir().join("controller-*.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ca_fingerprint(files: &Files) -> anyhow::Result<String> {
    let path = files.pki().join("ca.crt");
    let der = zonefleet_proto::tls::load_certs(&path)?;
    let root = der
        .first()
        .with_context(|| format!("{} holds no certificate", path.display()))?;
    Ok(zonefleet_proto::pki::fingerprint(root))
}

/// Enrolls agent `n` with a token of its own for `rack` and starts it: its directory.
fn start_agent(
    files: &Files,
    (n, rack, share): (usize, &str, Share),
    controllers: &[String],
    ca: &str,
    host: &HostNs,
) -> anyhow::Result<()> {
    let dir = files.agent(n);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let created = zfadm_json(files, &["token", "create", "--ttl", "10m", "--rack", rack])?;
    let token = created["token"]
        .as_str()
        .with_context(|| format!("zfadm token create gave no token: {created}"))?;
    let file = AgentFile {
        joining: Some(Joining {
            controllers: controllers.to_vec(),
            token: token.to_owned(),
            ca: ca.to_owned(),
        }),
        cluster: CLUSTER.to_owned(),
        data_dir: dir.join("data"),
        cgroup_parent: layout::agent_cgroup_parent(n),
        bridge: layout::agent_bridge(n),
        uplink: Some("eth1".to_owned()),
        share,
        fencing: true,
    };
    let config = dir.join("agent.toml");
    // 0600: the token is a secret until it is used.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&config)
        .and_then(|mut f| f.write_all(file.render().as_bytes()))
        .with_context(|| format!("writing {}", config.display()))?;
    let mut command = Command::new(daemon::binary("zonefleet-agent"));
    command
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("ZONEFLEET_LOG", "info");
    daemon::start(command, host, &config)?;
    Ok(())
}

/// Imports the busybox image through the controllers: each host fetches it from
/// them when a zone of it is placed there.
fn import_image(files: &Files, image: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = image.display().to_string();
    zfadm(
        files,
        &[
            "image",
            "import",
            &path,
            "--name",
            "busybox",
            "--version",
            "1",
        ],
    )?;
    writeln!(out, "image busybox@1 imported through the controllers")?;
    Ok(())
}

fn wait_for_hosts(files: &Files, agents: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + AGENTS_WITHIN;
    loop {
        let hosts = zfadm_json(files, &["host", "list"]).unwrap_or(Value::Null);
        let ready = hosts
            .as_array()
            .map_or(0, |h| h.iter().filter(|h| h["status"] == "ready").count());
        if ready >= agents {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{ready} of {agents} agents registered within {AGENTS_WITHIN:?}; see {}",
                files.dir().join("agent-*/agent.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn create_samples(files: &Files, out: &mut dyn Write) -> anyhow::Result<()> {
    let samples = files.samples();
    std::fs::create_dir_all(&samples)?;
    for (name, text) in SAMPLES {
        std::fs::write(samples.join(name), text)?;
    }
    let path = |name: &str| samples.join(name).display().to_string();
    zfadm(files, &["network", "create", "-f", &path("network.json")])?;
    let mut zones = Vec::new();
    for (name, _) in &SAMPLES[1..] {
        let created = zfadm_json(files, &["zone", "create", "-f", &path(name)])?;
        zones.extend(uuids(&created));
    }
    let deadline = Instant::now() + ZONES_WITHIN;
    loop {
        let listed = zfadm_json(files, &["zone", "list"])?;
        let running = listed.as_array().map_or(0, |z| {
            z.iter()
                .filter(|z| z["observed_state"] == "running")
                .count()
        });
        if running >= zones.len() {
            break;
        }
        let failed = listed
            .as_array()
            .is_some_and(|z| z.iter().any(|z| z["observed_state"] == "failed"));
        if failed || Instant::now() > deadline {
            let states: Vec<String> = listed
                .as_array()
                .into_iter()
                .flatten()
                .map(|z| {
                    format!(
                        "{} {} ({})",
                        z["alias"].as_str().unwrap_or_default(),
                        z["observed_state"].as_str().unwrap_or_default(),
                        z["message"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            bail!(
                "{running} of {} sample zones running (waited at most {ZONES_WITHIN:?}): {}",
                zones.len(),
                states.join("; ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    writeln!(out, "sample zones running: {}", zones.join(" "))?;
    Ok(())
}

/// The uuids in `zfadm zone create -o json`'s answer (one zone or a list).
fn uuids(created: &Value) -> Vec<String> {
    let one = |z: &Value| z["uuid"].as_str().map(str::to_owned);
    match created {
        Value::Array(zones) => zones.iter().filter_map(one).collect(),
        zone => one(zone).into_iter().collect(),
    }
}

/// What is up and how to use it.
fn report(files: &Files, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out)?;
    out.write_all(zfadm(files, &["host", "list"])?.as_bytes())?;
    writeln!(out)?;
    out.write_all(zfadm(files, &["zone", "list"])?.as_bytes())?;
    let dir = files.dir().display();
    writeln!(out)?;
    writeln!(
        out,
        "point zfadm at it:  eval \"$(zfadm dev env --dir {dir})\""
    )?;
    writeln!(out, "then:               zfadm host list; zfadm zone list")?;
    let zones = zfadm_json(files, &["zone", "list"])?;
    let web: Vec<(String, String)> = zones
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|z| {
            let address = z["addresses"][0].as_str()?;
            Some((z["alias"].as_str()?.to_owned(), address.to_owned()))
        })
        .collect();
    if let [(a, _), (_, b_address), ..] = web.as_slice() {
        writeln!(
            out,
            "across hosts:       zfadm zone exec {a} -- wget -qO- http://{b_address}/"
        )?;
    }
    for (alias, address) in &web {
        writeln!(
            out,
            "from this machine:  curl http://{address}/   ({alias})"
        )?;
    }
    writeln!(out, "a zone's console:   zfadm zone logs hello")?;
    writeln!(out, "remove it all:      zfadm dev down --dir {dir}")?;
    Ok(())
}

fn print_log_tails(files: &Files) {
    let mut logs: Vec<std::path::PathBuf> = std::fs::read_dir(files.dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.extend(files.agents().into_iter().map(|(_, d)| d.join("agent.log")));
    for log in logs {
        let Ok(text) = std::fs::read_to_string(&log) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("---- {} (last lines) ----", log.display());
        for line in &lines[lines.len().saturating_sub(15)..] {
            eprintln!("{line}");
        }
    }
}
