//! Images through the controllers, with the real binaries, each host in its own
//! network namespace: `zfadm image import` uploads the busybox archive once; one
//! controller is killed; two agents that have never seen the image each run a zone of
//! it (they download it from the controllers still up, with the same manifest); a
//! hostile archive imported the same way fails its zone with the unpacker's refusal;
//! delete is refused while zones use the image. (An agent certificate fetching an
//! image its host's zones do not use: `controller/tests/images.rs`, over the same
//! listeners.)
//!
//! Needs root (namespaces, cgroups); fails rather than skips when `CI=true`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zonefleet_tests::fleet::Fleet;
use zonefleet_tests::privileged;

/// A gzip tar whose second entry writes through a symlink to `/`.
fn hostile_archive(path: &std::path::Path) {
    let script = r#"
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w:gz") as t:
    link = tarfile.TarInfo("link"); link.type = tarfile.SYMTYPE; link.linkname = "/"
    t.addfile(link)
    owned = tarfile.TarInfo("link/tmp/zonefleet-owned"); owned.size = 1
    t.addfile(owned, io.BytesIO(b"x"))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn zones_on_hosts_that_never_saw_the_image_run_it() {
    if !privileged("zones_on_hosts_that_never_saw_the_image_run_it") {
        return;
    }
    let started = Instant::now();
    let mut fleet = Fleet::start(3);
    fleet.leader(&fleet.all(), Duration::from_secs(30));
    let archive = zonefleet_tests::busybox_archive();

    // Bad input first: nothing is made.
    let empty = fleet.dir().join("empty.tar.gz");
    std::fs::write(&empty, b"").unwrap();
    let e = fleet
        .zfadm(&fleet.all(), &["image", "import", empty.to_str().unwrap()])
        .unwrap_err();
    assert!(e.contains("the file is empty"), "{e}");

    let image = fleet.zfadm_json(
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
    assert_eq!(
        (image["name"].as_str(), image["version"].as_str()),
        (Some("busybox"), Some("1"))
    );
    let hostile = fleet.dir().join("hostile.tar.gz");
    hostile_archive(&hostile);
    fleet.zfadm_json(
        &fleet.all(),
        &[
            "image",
            "import",
            hostile.to_str().unwrap(),
            "--version",
            "1",
        ],
    );
    eprintln!("{:?}: images imported", started.elapsed());

    // Controller 1, the first every agent tries, goes: the image is still served.
    fleet.controllers[0]
        .take()
        .expect("controller 1 runs")
        .kill();
    let up = [1usize, 2];
    fleet.leader(&up, Duration::from_secs(30));

    for rack in ["r1", "r2"] {
        fleet.add_agent(rack).wait_ready(Duration::from_secs(30));
    }
    for agent in &fleet.agents {
        let out = agent.cli(&["image", "list", "-o", "json"]);
        let local: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(local, json!([]), "agent {} has images already", agent.n);
    }
    eprintln!("{:?}: agents ready", started.elapsed());
    for (alias, image) in [("a", "busybox"), ("b", "busybox@1"), ("h", "hostile")] {
        let group = if alias == "h" { "other" } else { "pair" };
        let spec = json!({
            "alias": alias, "image": image, "max_physical_memory": 32, "quota": 1,
            "init": ["/bin/sh", "-c", "exec sleep 100000"],
            "placement": {"spread": {"by": "host", "group": group, "max_per_domain": 1}},
        });
        let file = fleet.dir().join(format!("{alias}.json"));
        std::fs::write(&file, spec.to_string()).unwrap();
        fleet
            .zfadm(&up, &["zone", "create", "-f", file.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("zone create {alias}: {e}"));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let seen = fleet.zones(&up);
        let state = |a: &str| seen[a]["observed_state"].as_str().unwrap_or("").to_owned();
        if state("a") == "running" && state("b") == "running" && state("h") == "failed" {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "zones did not converge: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("{:?}: zones converged", started.elapsed());
    assert_ne!(
        seen["a"]["host_id"], seen["b"]["host_id"],
        "spread over both hosts"
    );
    let refusal = seen["h"]["message"].as_str().unwrap();
    assert!(
        refusal.contains("fetching image hostile")
            && refusal.contains("symlinks are never followed"),
        "{refusal}"
    );
    assert!(!std::path::Path::new("/tmp/zonefleet-owned").exists());

    // Each host holds the image with the fleet's manifest.
    for agent in &fleet.agents {
        let out = agent.cli(&["image", "list", "-o", "json"]);
        let local: Value = serde_json::from_slice(&out.stdout).unwrap();
        let local = local.as_array().unwrap();
        assert!(
            local.iter().any(|i| i["uuid"] == image["uuid"]
                && i["name"] == "busybox"
                && i["version"] == "1"),
            "agent {}: {local:?}",
            agent.n
        );
        assert!(
            std::fs::read_dir(agent.data_dir().join("downloads"))
                .unwrap()
                .next()
                .is_none(),
            "agent {} kept a download",
            agent.n
        );
    }

    let e = fleet
        .zfadm(&up, &["image", "delete", "busybox"])
        .unwrap_err();
    assert!(
        e.contains("is used by 2 zones") && e.contains("(a)") && e.contains("(b)"),
        "{e}"
    );
    let listed = fleet.zfadm_json(&up, &["image", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    eprintln!("{:?}: done", started.elapsed());
}
