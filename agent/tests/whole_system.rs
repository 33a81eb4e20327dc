//! Privileged tests of whole-system zones: a stock Debian 12 root filesystem
//! (debootstrap, nothing changed for zonefleet; built once and cached, see
//! `support::debian`) boots systemd as its init, runs its services, has its own
//! users and its own user namespace, and reboots or powers off from inside.
//! Every test has its own bridge and 10.99.2x.0/24 network.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::net::{privileged, NetLab};
use zonefleet_agent::zone::{ZoneRecord, ZoneState};

const T: Duration = Duration::from_secs(20);

fn nic(ip: &str) -> serde_json::Value {
    json!({ "ip": ip, "gateway": ip.rsplit_once('.').unwrap().0.to_string() + ".1" })
}

/// A lab with the Debian image in its store.
fn debian_lab() -> NetLab {
    let lab = NetLab::new();
    support::debian::import(&lab.host);
    lab
}

/// A Debian zone's spec: the image, enough memory for systemd, `extra` on top.
fn debian(extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"image": support::debian::IMAGE, "max_physical_memory": 256,
                          "quota": 2, "tmpfs": 64});
    for (k, v) in extra.as_object().expect("an object") {
        spec[k] = v.clone();
    }
    spec
}

/// Waits until systemd in `zone` says `running` or `degraded` (printing the
/// failed units when degraded) and returns which.
fn booted(lab: &NetLab, zone: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, out) = lab.exec(zone, "systemctl is-system-running", T);
        let state = out.trim().to_string();
        if state == "running" || state == "degraded" {
            if state == "degraded" {
                let (_, failed) = lab.exec(zone, "systemctl --failed --no-pager", T);
                eprintln!("degraded: {failed}");
            }
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "systemd is still {state:?} after 90 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The zone's init pid as the host sees it, once it runs.
fn init_pid(lab: &NetLab, zone: &str) -> i32 {
    let status = lab.host.get(zone).expect("zone status");
    assert_eq!(status.state, ZoneState::Running);
    status.init_pid.expect("a running zone has an init")
}

#[test]
fn a_stock_debian_image_boots_systemd_serves_over_its_nic_and_takes_ssh() {
    if !privileged("a_stock_debian_image_boots_systemd") {
        return;
    }
    let mut lab = debian_lab();
    let zone = lab.zone(debian(
        json!({"alias": "web", "hostname": "web", "nics": [nic("10.99.21.2/24")]}),
    ));
    let state = booted(&lab, &zone);
    assert!(state == "running" || state == "degraded", "{state}");

    // nginx answers over the zone's NIC, from the global zone.
    lab.bridge_address("10.99.21.1/24");
    let mut http = std::net::TcpStream::connect_timeout(&"10.99.21.2:80".parse().unwrap(), T)
        .expect("the host reaches the zone's nginx");
    http.set_read_timeout(Some(T)).unwrap();
    http.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    http.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.contains("nginx"), "{reply}");

    // ssh from the global zone into the zone's openssh-server, as the zone's root.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let (code, out) = lab.exec(
        &zone,
        &format!(
            "mkdir -p -m 700 /root/.ssh && echo '{}' > /root/.ssh/authorized_keys",
            public.trim()
        ),
        T,
    );
    assert_eq!(code, 0, "{out}");
    let ssh = Command::new("timeout")
        .arg("30")
        .arg("ssh")
        .arg("-i")
        .arg(&key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            "root@10.99.21.2",
            "hostname; id -u; systemctl is-system-running",
        ])
        .output()
        .expect("run ssh");
    let said = String::from_utf8_lossy(&ssh.stdout);
    assert!(
        ssh.status.success(),
        "ssh: {said} {}",
        String::from_utf8_lossy(&ssh.stderr)
    );
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines[..2], ["web", "0"], "{said}");

    // The journal works.
    let (code, out) = lab.exec(
        &zone,
        "journalctl -b -q --no-pager | grep -c 'Startup finished'",
        T,
    );
    assert_eq!(code, 0, "the journal has the boot: {out}");

    // Root in the zone is not root on the host: its own user namespace, mapped
    // to the zone's id range, and its files are owned by that range on the host.
    let record = ZoneRecord::load(&lab.host.paths(&zone)).unwrap();
    let range = record.id_range.expect("a default zone has an id range");
    assert_ne!(range.host_base, 0);
    let (_, out) = lab.exec(&zone, "cat /proc/self/uid_map", T);
    let map: Vec<u64> = out.split_whitespace().map(|f| f.parse().unwrap()).collect();
    assert_eq!(
        map,
        [0, u64::from(range.host_base), 65536],
        "not the identity map"
    );
    let (code, out) = lab.exec(&zone, "echo mine > /root/made-by-zone-root", T);
    assert_eq!(code, 0, "{out}");
    let on_host = Path::new("/proc")
        .join(init_pid(&lab, &zone).to_string())
        .join("root/root/made-by-zone-root");
    let meta = std::fs::metadata(&on_host).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (range.host_base, range.host_base));

    // Its own users: su and setuid programs work; ping's file capability was
    // kept by the import and works for an unprivileged user.
    let (code, out) = lab.exec(&zone, "su -s /bin/sh nobody -c 'id -u'", T);
    assert_eq!((code, out.trim()), (0, "65534"));
    let (code, out) = lab.exec(&zone, "getcap /usr/bin/ping", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cap_net_raw=ep"), "{out}");
    let (code, out) = lab.exec(
        &zone,
        "su -s /bin/sh nobody -c 'ping -c 1 -W 2 127.0.0.1'",
        T,
    );
    assert_eq!(code, 0, "ping as nobody: {out}");

    // The console log keeps what systemd printed.
    let console = std::fs::read_to_string(lab.host.paths(&zone).console()).unwrap();
    assert!(console.contains("Multi-User System"), "{console}");
}

#[test]
fn reboot_inside_a_zone_restarts_it_and_poweroff_halts_it() {
    if !privileged("reboot_inside_a_zone_restarts_it") {
        return;
    }
    let mut lab = debian_lab();
    let zone = lab.zone(debian(json!({"alias": "cycle"})));
    booted(&lab, &zone);
    let first = init_pid(&lab, &zone);

    // `reboot` inside: the zone's PID namespace ends with SIGHUP and zsched
    // boots it again in place.
    let _ = lab.exec(&zone, "systemctl reboot", T);
    let deadline = Instant::now() + Duration::from_secs(60);
    let second = loop {
        let status = lab.host.get(&zone).unwrap();
        match status.init_pid {
            Some(pid) if status.state == ZoneState::Running && pid != first => break pid,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the zone did not come back");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(first, second, "a new init");
    booted(&lab, &zone);
    // The host's own init and this test are untouched.
    assert!(Path::new("/proc/1").exists());

    // `poweroff` inside: the zone stops and stays installed.
    let _ = lab.exec(&zone, "systemctl poweroff", T);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = lab.host.get(&zone).unwrap();
        if status.state == ZoneState::Installed {
            break;
        }
        assert!(Instant::now() < deadline, "still {:?}", status.state);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        lab.host.get(&zone).unwrap().state,
        ZoneState::Installed,
        "a powered-off zone is not booted again"
    );
}

#[test]
fn a_zone_without_nics_reaches_its_own_loopback() {
    if !privileged("a_zone_without_nics_reaches_its_own_loopback") {
        return;
    }
    let mut lab = NetLab::new();
    let zone = lab.zone(json!({"alias": "nonet"}));
    let (code, out) = lab.exec(&zone, "ip link show lo; ping -c 1 -W 2 127.0.0.1", T);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("LOOPBACK,UP"), "{out}");
    // A service on 127.0.0.1 answers a client of the same zone.
    let (code, out) = lab.exec(
        &zone,
        "mkdir -p /tmp/www && echo here > /tmp/www/index.html && httpd -p 127.0.0.1:8080 -h /tmp/www \
         && wget -q -O - http://127.0.0.1:8080/",
        T,
    );
    assert_eq!((code, out.trim()), (0, "here"));
}

#[test]
fn zone_halt_asks_systemd_to_halt_and_it_does_within_the_grace_period() {
    use support::host::{Image, TestHost};
    let Some(t) = TestHost::with_image("zone_halt_asks_systemd_to_halt", Image::Debian) else {
        return;
    };
    let zone = t.running(r#"{"alias": "halting"}"#);
    let started = Instant::now();
    let status = t.host.halt(&zone.uuid).expect("halt");
    let took = started.elapsed();
    assert_eq!(status.state, ZoneState::Installed);
    // SIGRTMIN+3 (systemd's own shutdown request, halt.target, detected from
    // the image's /sbin/init): systemd stops its units and halts, which ends
    // the PID namespace by SIGINT — not the SIGKILL that ends the grace period.
    let exit = status.last_exit.expect("the exit is recorded");
    assert_eq!(exit.signal, Some(libc::SIGINT), "{exit:?} after {took:?}");
    assert!(took < t.host.halt_grace, "{took:?}");
    let console = std::fs::read_to_string(t.host.paths(&zone.uuid).console()).unwrap();
    assert!(console.contains("System Halt"), "{console}");
}

#[test]
fn zone_console_attaches_to_the_zones_own_console_and_detaches() {
    use std::process::Stdio;
    use support::host::{Image, TestHost};
    let Some(t) = TestHost::with_image("zone_console_attaches", Image::Debian) else {
        return;
    };
    t.running(r#"{"alias": "tty", "hostname": "tty"}"#);
    // systemd's console-getty waits on /dev/console: a newline gets a prompt.
    let mut client = t
        .agent()
        .args(["--cgroup-parent", &t.host.cgroup_parent])
        .args(["zone", "console", "tty"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("zone console");
    let mut stdin = client.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(b"\r").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // The detach key: the client leaves, the zone runs on.
    stdin.write_all(&[0x1d]).unwrap();
    drop(stdin);
    let out = support::host::wait_output(client, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("tty login:"), "the getty's prompt: {text}");
    assert_eq!(t.host.get("tty").unwrap().state, ZoneState::Running);
    // A zone that is not running has no console to attach to.
    t.host.halt("tty").unwrap();
    let out = t
        .agent()
        .args(["--cgroup-parent", &t.host.cgroup_parent])
        .args(["zone", "console", "tty"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not running"),
        "{out:?}"
    );
}
