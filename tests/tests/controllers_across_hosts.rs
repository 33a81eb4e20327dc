//! Three `zonefleet-controller` processes, each on its own host (a network namespace
//! on the run's switch), and an operator on a fourth: they form one Raft group over the
//! switch; pulling the leader's cable elects another leader among the two left, writes
//! through them go on, and the cut-off controller catches up once plugged back in.
//! Needs root (namespaces, veth); fails under `CI=true` without it.

use std::time::{Duration, Instant};

use zonefleet_tests::fleet::Fleet;
use zonefleet_tests::privileged;

fn create_network(fleet: &Fleet, via: &[usize], n: u8) -> Result<String, String> {
    let file = fleet.dir().join(format!("net{n}.json"));
    let uuid = format!("00000000-0000-4000-8000-0000000000{n:02x}");
    std::fs::write(
        &file,
        serde_json::json!({
            "uuid": uuid,
            "name": format!("net{n}"),
            "subnet": format!("10.{n}.0.0/24"),
            "provision_start": format!("10.{n}.0.10"),
            "provision_end": format!("10.{n}.0.20"),
        })
        .to_string(),
    )
    .unwrap();
    fleet.zfadm(via, &["network", "create", "-f", file.to_str().unwrap()])
}

fn networks(fleet: &Fleet, via: &[usize]) -> Vec<String> {
    let list = fleet.zfadm_json(via, &["network", "list"]);
    let mut names: Vec<String> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn controllers_on_three_hosts_survive_a_pulled_cable() {
    if !privileged("controllers_on_three_hosts_survive_a_pulled_cable") {
        return;
    }
    let fleet = Fleet::start(3);
    let all = [0, 1, 2];
    let leader = fleet.leader(&all, Duration::from_secs(30));
    create_network(&fleet, &all, 1).expect("a write through the fleet");
    assert!(fleet.data_dir((leader - 1) as usize).is_dir());

    // Pull the leader's cable: the two others elect one of them and take writes.
    let cut = (leader - 1) as usize;
    fleet.hosts[cut].unplug().unwrap();
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != cut).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        let id = fleet.leader(&rest, Duration::from_secs(30));
        if id != leader {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "controller {leader} still leads, cut off"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_ne!(new_leader, leader);
    create_network(&fleet, &rest, 2).expect("a write without the old leader");

    // Plugged back in, the old leader has both writes.
    fleet.hosts[cut].plug().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = fleet.zfadm(&[cut], &["network", "list", "-o", "json"]);
        if seen.as_deref().is_ok_and(|json| json.contains("net2")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "controller {leader} did not catch up: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(networks(&fleet, &[cut]), ["net1", "net2"]);
    for daemon in fleet.controllers.iter().flatten() {
        assert!(!daemon.log().contains("panicked"), "{}", daemon.log());
    }
}
