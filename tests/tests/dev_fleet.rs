//! `zfadm dev up|env|down`, the real binaries: a local fleet of 3 controllers and 3
//! agents in 2 racks, each host a network namespace; the sample zones run spread over
//! both racks and reach each other across hosts; a second `up` says it is up, one from
//! another directory is refused; `down` leaves no namespace, link, cgroup, process or
//! file behind. Needs root; fails under `CI=true` without it or when a dev fleet of
//! someone's is up on this machine (their names are fixed: one per machine).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use zonefleet_tests::process::run_in;
use zonefleet_tests::{binary, privileged, skip};

const LIMIT: Duration = Duration::from_secs(240);

fn zfadm(args: &[&str]) -> Output {
    let mut command = Command::new(binary("zfadm"));
    command.args(args);
    for var in [
        "ZONEFLEET_CONTROLLERS",
        "ZONEFLEET_CA",
        "ZONEFLEET_CERT",
        "ZONEFLEET_KEY",
    ] {
        command.env_remove(var);
    }
    command.env("ZONEFLEET_CONFIG", "/nonexistent/zfadm.toml");
    run_in(None, command, LIMIT)
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Takes the fleet down when the test ends, passed or not.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let out = zfadm(&["dev", "down", "--dir", self.0.to_str().unwrap()]);
        if !out.status.success() {
            eprintln!("dev down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// `zfadm ARGS` with the exports `zfadm dev env` printed, from the machine's own
/// namespace (as an operator's shell).
fn zfadm_with_env(env: &str, args: &[&str]) -> Output {
    let mut command = Command::new(binary("zfadm"));
    command.args(args);
    for line in env.lines() {
        let (name, value) = line
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
            .unwrap_or_else(|| panic!("not an export: {line}"));
        command.env(name, value);
    }
    run_in(None, command, LIMIT)
}

/// [`zfadm_with_env`] with `-o json`, parsed.
fn with_env(env: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = ok(&zfadm_with_env(env, &all), &format!("zfadm {args:?}"));
    serde_json::from_str(&out).unwrap()
}

/// What of a dev fleet is left on this machine: namespaces, links, cgroups, processes.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut left = Vec::new();
    let text = |program: &str, args: &[&str]| {
        String::from_utf8_lossy(&Command::new(program).args(args).output().unwrap().stdout)
            .into_owned()
    };
    left.extend(
        text("ip", &["netns", "list"])
            .lines()
            .filter(|l| l.starts_with("zfdev"))
            .map(|l| format!("netns {l}")),
    );
    left.extend(
        text("ip", &["-o", "link", "show"])
            .lines()
            .filter(|l| l.contains(": zfdev"))
            .map(|l| format!("link {l}")),
    );
    for mount in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for entry in std::fs::read_dir(mount.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with("zfdev") {
                left.push(entry.path().display().to_string());
            }
        }
    }
    let needle = dir.as_os_str().as_encoded_bytes();
    for proc in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(proc.path().join("cmdline")).unwrap_or_default();
        if cmdline.windows(needle.len()).any(|w| w == needle) {
            left.push(format!("process {}", String::from_utf8_lossy(&cmdline)));
        }
    }
    if dir.exists() {
        left.push(format!("directory {}", dir.display()));
    }
    left
}

#[test]
fn dev_up_makes_a_fleet_whose_zones_reach_each_other_and_down_removes_it() {
    let test = "dev_up_makes_a_fleet_whose_zones_reach_each_other_and_down_removes_it";
    if !privileged(test) {
        return;
    }
    if Path::new("/sys/class/net/zfdevsw").exists() {
        skip(test, "a local fleet (`zfadm dev up`) is up on this machine");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("fleet");
    let dir_arg = dir.to_str().unwrap();
    let down = Down(dir.clone());

    let up = ok(&zfadm(&["dev", "up", "--dir", dir_arg]), "dev up");
    assert!(up.contains("sample zones running"), "{up}");
    let again = ok(&zfadm(&["dev", "up", "--dir", dir_arg]), "dev up again");
    assert!(again.contains("already up"), "{again}");
    let other = scratch.path().join("other");
    let refused = zfadm(&["dev", "up", "--dir", other.to_str().unwrap()]);
    assert!(!refused.status.success(), "a second fleet was started");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains(dir_arg), "{why}");
    assert!(!other.exists(), "the refused up made {}", other.display());

    let env = ok(&zfadm(&["dev", "env", "--dir", dir_arg]), "dev env");
    let hosts = with_env(&env, &["host", "list"]);
    let hosts = hosts.as_array().unwrap();
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    assert!(hosts.iter().all(|h| h["status"] == "ready"), "{hosts:?}");
    let rack_of = |host_id: &str| {
        hosts
            .iter()
            .find(|h| h["host_id"] == host_id)
            .map(|h| h["rack"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no host {host_id}"))
    };
    let zones = with_env(&env, &["zone", "list"]);
    let zone = |alias: &str| -> Value {
        zones
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["alias"] == alias)
            .cloned()
            .unwrap_or_else(|| panic!("no zone {alias} in {zones}"))
    };
    let (a, b) = (zone("web-a"), zone("web-b"));
    for z in [&a, &b, &zone("hello")] {
        assert_eq!(z["observed_state"], "running", "{z}");
    }
    let (host_a, host_b) = (
        a["host_id"].as_str().unwrap(),
        b["host_id"].as_str().unwrap(),
    );
    assert_ne!(
        rack_of(host_a),
        rack_of(host_b),
        "the web zones share a rack"
    );

    // web-a fetches web-b's page across hosts: the operator's `zfadm zone exec`, through
    // the agent of web-a's host.
    let b_address = b["addresses"][0].as_str().unwrap();
    let url = format!("http://{b_address}/");
    // busybox 1.35's `wget -T` crashes: its `timeout` bounds the fetch instead.
    let wget = || {
        zfadm_with_env(
            &env,
            &[
                "zone", "exec", "web-a", "--", "timeout", "3", "wget", "-qO-", &url,
            ],
        )
    };
    // "running" is the zone's init started; its httpd listens a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut out = wget();
    while !out.status.success() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        out = wget();
    }
    let page = ok(&out, "wget from web-a");
    assert_eq!(page.trim(), "web-b");

    drop(down);
    let left = leftovers(&dir);
    assert!(left.is_empty(), "dev down left: {left:#?}");
}

#[test]
fn dev_up_refuses_bad_counts_and_env_names_a_missing_fleet() {
    let out = zfadm(&["dev", "up", "--agent-count", "0", "--dir", "/nonexistent/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--agent-count"));
    let out = zfadm(&["dev", "env", "--dir", "/nonexistent/zonefleet-dev"]);
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        why.contains("no local fleet in /nonexistent/zonefleet-dev")
            && why.contains("zfadm dev up"),
        "{why}"
    );
}
