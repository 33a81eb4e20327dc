//! Privileged tests of zone networking on real veths, bridges and nftables.
//! Every test has its own bridge (`zft<pid>n<k>`, no uplink) and its own
//! 10.99.x.0/24 network; traffic goes only to addresses these tests create.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::json;
use support::net::{host_links, privileged, ruleset, NetLab};
use zonefleet_agent::net::plan::host_if_name;
use zonefleet_agent::zone::ZoneError;

const T: Duration = Duration::from_secs(10);

/// busybox httpd serving `/etc` (so `/hostname` names the zone) on port 80.
const HTTPD: &str = "httpd -p 80 -h /etc";

fn nic(ip: &str) -> serde_json::Value {
    json!({ "ip": ip, "gateway": ip.rsplit_once('.').unwrap().0.to_string() + ".1" })
}

#[test]
fn zones_ping_each_other_listen_on_80_and_cannot_reach_the_host() {
    if !privileged("zones_ping_each_other") {
        return;
    }
    let started = Instant::now();
    let mut lab = NetLab::new();
    let a = lab.zone(
        json!({"alias": "a", "hostname": "zone-a", "nics": [nic("10.99.11.2/24")],
                            "resolvers": ["10.99.11.1"]}),
    );
    let b = lab.zone(json!({"alias": "b", "hostname": "zone-b", "nics": [nic("10.99.11.3/24")]}));

    // Inside: eth0 with its address, the default route, lo up, resolv.conf.
    let (code, out) = lab.exec(
        &a,
        "ip addr show eth0; ip route; ip link show lo; cat /etc/resolv.conf",
        T,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("inet 10.99.11.2/24"), "{out}");
    assert!(out.contains("default via 10.99.11.1 dev eth0"), "{out}");
    assert!(out.contains("LOOPBACK,UP"), "{out}");
    assert!(out.contains("nameserver 10.99.11.1"), "{out}");

    for (from, to) in [(&a, "10.99.11.3"), (&b, "10.99.11.2")] {
        let (code, out) = lab.exec(from, &format!("ping -c 2 -W 2 {to}"), T);
        assert_eq!(code, 0, "ping {to}: {out}");
    }

    // Both zones listen on port 80, each in its own stack.
    for z in [&a, &b] {
        let (code, out) = lab.exec(z, HTTPD, T);
        assert_eq!(code, 0, "httpd: {out}");
    }
    let (code, out) = lab.exec(&a, "wget -q -O - http://10.99.11.3/hostname", T);
    assert_eq!((code, out.trim()), (0, "zone-b"));
    let (code, out) = lab.exec(&b, "wget -q -O - http://10.99.11.2/hostname", T);
    assert_eq!((code, out.trim()), (0, "zone-a"));

    // The global zone reaches a zone once the bridge has an address in its network.
    lab.bridge_address("10.99.11.1/24");
    lab.bridge_address("10.98.11.1/24");
    let ping = std::process::Command::new("busybox")
        .args(["ping", "-c", "1", "-W", "2", "10.99.11.2"])
        .output()
        .expect("busybox ping");
    assert!(ping.status.success(), "host ping: {ping:?}");
    let mut http = std::net::TcpStream::connect_timeout(&"10.99.11.3:80".parse().unwrap(), T)
        .expect("host connects to zone b's httpd");
    use std::io::{Read, Write};
    http.write_all(b"GET /hostname HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    assert!(body.ends_with("zone-b\n"), "{body}");

    // A host service on the bridge address (the agent's API, say) and on
    // another host address behind the zone's gateway: the zone reaches neither.
    for addr in ["10.99.11.1", "10.98.11.1"] {
        let listener = TcpListener::bind((addr, 0)).expect("bind host listener");
        let port = listener.local_addr().unwrap().port();
        let (code, out) = lab.exec(
            &a,
            &format!("nc -w 2 {addr} {port} </dev/null && echo CONNECTED"),
            T,
        );
        assert!(
            !out.contains("CONNECTED"),
            "zone reached host {addr}:{port}: {code} {out}"
        );
    }
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn a_nics_mtu_is_what_the_spec_says_inside_the_zone_and_on_the_host() {
    if !privileged("nic_mtu") {
        return;
    }
    let mut lab = NetLab::new();
    let mut big = nic("10.99.16.2/24");
    big["mtu"] = json!(1400);
    let z = lab.zone(json!({"alias": "mtu", "nics": [big, {"ip": "10.99.17.2/24"}]}));
    let (code, out) = lab.exec(&z, "cat /sys/class/net/eth0/mtu /sys/class/net/eth1/mtu", T);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "1400\n1500\n", "eth0 as asked, eth1 the default");
    let host_side =
        std::fs::read_to_string(format!("/sys/class/net/{}/mtu", host_if_name(&z, 0))).unwrap();
    assert_eq!(host_side.trim(), "1400", "the host end of the veth matches");
}

#[test]
fn spoofed_addresses_and_macs_get_nothing_through_unless_allowed() {
    if !privileged("spoofing") {
        return;
    }
    let mut lab = NetLab::new();
    let caps = json!([
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_NET_BIND_SERVICE",
        "CAP_KILL"
    ]);
    let peer = lab.zone(json!({"alias": "peer", "nics": [nic("10.99.12.2/24")]}));
    let strict = lab.zone(json!({"alias": "strict", "limit_priv": caps,
                                 "nics": [nic("10.99.12.3/24")]}));
    let open_ip = lab.zone(json!({"alias": "open-ip", "limit_priv": caps,
                                  "nics": [{"ip": "10.99.12.4/24", "allow_ip_spoofing": true}]}));
    let open_mac = lab.zone(json!({"alias": "open-mac", "limit_priv": caps,
                                   "nics": [{"ip": "10.99.12.5/24", "allow_mac_spoofing": true}]}));
    let _ = peer;

    let extra_ip = |zone: &str, extra: &str| {
        let (code, out) = lab.exec(zone, &format!("ip addr add {extra}/24 dev eth0"), T);
        assert_eq!(code, 0, "add {extra}: {out}");
        lab.exec(zone, &format!("ping -c 2 -W 1 -I {extra} 10.99.12.2"), T)
    };
    // Its own address works; an extra one gets nothing through…
    assert_eq!(lab.exec(&strict, "ping -c 1 -W 2 10.99.12.2", T).0, 0);
    let (code, out) = extra_ip(&strict, "10.99.12.30");
    assert_ne!(code, 0, "spoofed source got through: {out}");
    // …unless allow_ip_spoofing.
    let (code, out) = extra_ip(&open_ip, "10.99.12.40");
    assert_eq!(code, 0, "allow_ip_spoofing zone: {out}");

    let new_mac = |zone: &str, mac: &str| {
        lab.exec(
            zone,
            &format!("ip link set eth0 address {mac} && ping -c 2 -W 1 10.99.12.2"),
            T,
        )
    };
    let (code, out) = new_mac(&strict, "02:00:00:00:12:03");
    assert_ne!(code, 0, "spoofed MAC got through: {out}");
    let (code, out) = new_mac(&open_mac, "02:00:00:00:12:05");
    assert_eq!(code, 0, "allow_mac_spoofing zone: {out}");
}

#[test]
fn fifty_cycles_and_a_failed_boot_leave_no_link_rule_or_address() {
    if !privileged("fifty_cycles") {
        return;
    }
    let started = Instant::now();
    let mut lab = NetLab::new();
    let uuid_of_cycle = |i: u32| format!("5eed0000-0000-4000-8000-{:012x}", 0xc0de_0000 + i);
    for i in 0..50 {
        let uuid = uuid_of_cycle(i);
        lab.zone(json!({"uuid": uuid, "nics": [nic("10.99.13.2/24")]}));
        lab.delete(&uuid);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "50 cycles took over a minute"
        );
    }
    // A boot that fails after the network is made (init does not exist).
    let bad = "5eed0000-0000-4000-8000-0000000000ff";
    lab.create(json!({"uuid": bad, "init": ["/no/such/init"], "nics": [nic("10.99.13.2/24")]}))
        .unwrap();
    let err = lab.host.boot(bad).unwrap_err().to_string();
    assert!(err.contains("/no/such/init"), "{err}");
    let after_failure = (host_links(), ruleset());
    lab.delete(bad);

    let (links, rules) = (host_links(), ruleset());
    for (links, rules) in [&after_failure, &(links, rules)] {
        for i in (0..50).map(uuid_of_cycle).chain([bad.to_string()]) {
            let host_if = host_if_name(&i, 0);
            assert!(!links.contains(&host_if), "{host_if} remains");
            assert!(
                !rules.contains(&host_if),
                "a rule of {host_if} remains:\n{rules}"
            );
            assert!(
                !rules.contains(&i.replace('-', "")),
                "a chain of {i} remains:\n{rules}"
            );
        }
    }
    // Only the bridge is left on the test's network, with no address.
    let addrs = std::process::Command::new("ip")
        .args(["-br", "addr"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&addrs.stdout).contains("10.99.13."));
    eprintln!("50 cycles + a failed boot: {:?}", started.elapsed());
}

#[test]
fn an_address_used_by_another_zone_or_a_network_without_ip_is_refused() {
    if !privileged("address_in_use") {
        return;
    }
    let mut lab = NetLab::new();
    let first = lab.create(json!({"nics": [nic("10.99.14.2/24")]})).unwrap();
    let err = lab
        .create(json!({"nics": [{"ip": "10.99.14.9/24"}, nic("10.99.14.2/24")]}))
        .unwrap_err();
    assert!(
        matches!(err, ZoneError::AddressInUse { nic: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&first), "{err}");
    let err = lab
        .create(json!({"nics": [{"network": "web"}]}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nics[0].network") && err.contains("give nics[0].ip"),
        "{err}"
    );
}

#[test]
fn a_vlan_nic_is_refused_when_the_kernel_lacks_bridge_vlan_filtering() {
    if !privileged("vlan") {
        return;
    }
    let mut lab = NetLab::new();
    let feature = lab
        .host
        .features
        .get("bridge_vlan_filtering", lab.host.data_dir());
    let result = lab.create(json!({"nics": [{"ip": "10.99.15.2/24", "vlan_id": 5}]}));
    if feature.available {
        support::skip(
            "vlan",
            "this kernel has bridge VLAN filtering: nothing to refuse",
        );
        return;
    }
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("bridge_vlan_filtering") && err.contains("nics[0].vlan_id = 5"),
        "{err}"
    );
}
