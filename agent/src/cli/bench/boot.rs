//! `zonefleet-agent bench boot`: measures the zone lifecycle on this host, next to
//! Debian's `runc` running the same root filesystem with the same memory and
//! pids limits.
//!
//! - boot: installed → init running (our `boot` returns once init has exec'd;
//!   `runc run -d` once the container's process has started);
//! - cycle: boot an init that exits at once → the zone is halted again (zsched
//!   recorded the exit and removed the cgroup); for runc, `runc run` of
//!   `/bin/true` in the foreground (create, start, wait, delete).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use zonefleet_agent::image::ImportOptions;
use zonefleet_agent::zone::host::ZoneHost;
use zonefleet_agent::zone::ZoneState;
use zonefleet_proto::spec::ZoneSpec;

use super::samples::Samples;
use super::scratch::Scratch;

const MEMORY_MIB: u64 = 256;
const PIDS: u64 = 2000;

/// Runs `bench boot`; returns the exit code.
pub(super) fn run(
    image: &Path,
    runs: usize,
    with_runc: bool,
    with_nic: bool,
) -> anyhow::Result<i32> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let scratch = Scratch::open()?;
    let host = &scratch.host;
    let record = host.images.import(
        image,
        ImportOptions {
            name: Some("bench".into()),
            ..Default::default()
        },
    )?;
    let spec = |alias: &str, init: &[&str], nic: Option<&str>| -> anyhow::Result<ZoneSpec> {
        let init = serde_json::to_string(init)?;
        let nics = nic.map_or(String::new(), |ip| {
            format!(r#", "nics": [{{"ip": "{ip}"}}]"#)
        });
        Ok(ZoneSpec::from_json(&format!(
            r#"{{"alias": "{alias}", "image": "bench", "max_physical_memory": {MEMORY_MIB},
                "max_lwps": {PIDS}, "quota": 1, "init": {init}{nics}}}"#
        ))?)
    };

    println!("zone boot and cycle, {runs} runs each (debug builds are slower; use --release)");
    let mut variants = vec![("", None, None)];
    if with_nic {
        // Addresses on the benchmark's own bridge; no gateway, no traffic sent.
        variants.push((" (1 NIC)", Some("10.99.250.2/24"), Some("10.99.250.3/24")));
    }
    let mut cycle_p50 = Duration::ZERO;
    for (label, boot_ip, cycle_ip) in variants {
        let suffix = if boot_ip.is_some() { "-nic" } else { "" };
        let sleeper = host.create(spec(
            &format!("bench-boot{suffix}"),
            &["/sbin/init"],
            boot_ip,
        )?)?;
        let oneshot = host.create(spec(
            &format!("bench-cycle{suffix}"),
            &["/bin/true"],
            cycle_ip,
        )?)?;
        let mut boot = Samples::new(&format!("zonefleet boot{label}"));
        let mut cycle = Samples::new(&format!("zonefleet cycle{label}"));
        for _ in 0..runs {
            boot.time(|| Ok(host.boot(&sleeper.uuid)?))?;
            host.halt(&sleeper.uuid)?;
            cycle.time(|| {
                host.boot(&oneshot.uuid)?;
                wait_halted(host, &oneshot.uuid)
            })?;
        }
        boot.print();
        cycle.print();
        if label.is_empty() {
            cycle_p50 = cycle.quantile(0.5);
        }
    }

    if with_runc {
        let rootfs = host.images.rootfs_path(&record.sha256.to_string())?;
        let (run_boot, run_cycle) = runc(&scratch.dir, &rootfs, runs)?;
        run_boot.print();
        run_cycle.print();
        let ratio = cycle_p50.as_secs_f64() / run_cycle.quantile(0.5).as_secs_f64();
        println!("cycle p50 ratio zonefleet/runc: {ratio:.2}");
    }
    Ok(0)
}

fn wait_halted(host: &ZoneHost, uuid: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = host.get(uuid)?;
        if status.state == ZoneState::Installed
            && status.last_exit.is_some()
            && !host.cgroups.exists(uuid)?
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("zone {uuid} did not halt after its init exited");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// An OCI bundle for runc over `rootfs` (read-only, as our image layer is) with
/// the same limits.
fn runc_bundle(dir: &Path, rootfs: &Path, args: &[&str]) -> anyhow::Result<PathBuf> {
    let bundle = dir.join(format!("bundle-{}", args[0].replace('/', "_")));
    std::fs::create_dir_all(&bundle)?;
    let out = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .output()
        .context("run `runc spec` (install Debian's runc)")?;
    if !out.status.success() {
        bail!("runc spec: {}", String::from_utf8_lossy(&out.stderr));
    }
    let path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    config["root"]["path"] = rootfs.to_string_lossy().into();
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(args);
    config["linux"]["resources"]["memory"] = serde_json::json!({"limit": MEMORY_MIB << 20});
    config["linux"]["resources"]["pids"] = serde_json::json!({"limit": PIDS});
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(bundle)
}

fn runc_cmd(log: &Path, args: &[&str]) -> anyhow::Result<()> {
    // Output goes to a file, not a pipe: a detached container's process
    // inherits runc's stdio and would hold a pipe open.
    let file = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    };
    let status = Command::new("runc")
        .args(args)
        .stdin(Stdio::null())
        .stdout(file()?)
        .stderr(file()?)
        .status()
        .with_context(|| format!("runc {}", args.join(" ")))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        bail!("runc {}: {status}: {}", args.join(" "), tail.join(" / "));
    }
    Ok(())
}

fn runc(dir: &Path, rootfs: &Path, runs: usize) -> anyhow::Result<(Samples, Samples)> {
    let sleeper = runc_bundle(dir, rootfs, &["/sbin/init"])?;
    let oneshot = runc_bundle(dir, rootfs, &["/bin/true"])?;
    let (sleeper, oneshot) = (sleeper.to_string_lossy(), oneshot.to_string_lossy());
    let mut boot = Samples::new("runc run -d (boot)");
    let mut cycle = Samples::new("runc run (cycle)");
    let id = format!("zonefleet-bench-{}", std::process::id());
    let log = dir.join("runc.log");
    let runc_cmd = |args: &[&str]| runc_cmd(&log, args);
    for _ in 0..runs {
        let result = boot.time(|| runc_cmd(&["run", "-d", "--bundle", &sleeper, &id]));
        let _ = runc_cmd(&["kill", &id, "KILL"]);
        let _ = runc_cmd(&["delete", "--force", &id]);
        result?;
        cycle.time(|| runc_cmd(&["run", "--bundle", &oneshot, &id]))?;
    }
    Ok((boot, cycle))
}
