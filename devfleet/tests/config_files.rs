//! The files devfleet renders are what the daemons' own loaders read: a controller's
//! and an agent's, with every value arriving where it was meant to.

use zonefleet_devfleet::config::{AgentFile, ControllerFile, Joining, Share};

#[test]
fn a_controller_file_loads_with_the_controllers_loader() {
    let dir = tempfile::tempdir().unwrap();
    let file = ControllerFile {
        id: 2,
        cluster: "dev".to_owned(),
        listen: "10.234.0.12:7000".to_owned(),
        pki: "pki".into(),
        data_dir: "controller-2".into(),
        members: vec![
            (1, "10.234.0.11:7000".to_owned()),
            (2, "10.234.0.12:7000".to_owned()),
        ],
    };
    let path = dir.path().join("controller-2.toml");
    std::fs::write(&path, file.render()).unwrap();
    let config = zonefleet_controller::config::ControllerConfig::load(&path).unwrap();
    assert_eq!(config.id, 2);
    assert_eq!(config.cluster, "dev");
    assert_eq!(config.listen.to_string(), "10.234.0.12:7000");
    assert_eq!(config.tls.cert, dir.path().join("pki/controller-2.crt"));
    let signing = config.signing_ca.expect("a signing CA");
    assert_eq!(signing.key, dir.path().join("pki/signing-ca.key"));
    assert_eq!(config.initial_members.len(), 2);
    assert_eq!(config.initial_members["1"], "10.234.0.11:7000");
}

#[test]
fn an_agent_file_loads_with_the_agents_loader_and_its_cmdline_form_too() {
    let dir = tempfile::tempdir().unwrap();
    let joining = Joining {
        controllers: vec!["10.234.0.11:7000".to_owned(), "10.234.0.12:7000".to_owned()],
        token: "zfjt_0123456789abcdef0123456789abcdef".to_owned(),
        ca: format!("sha256:{}", "ab".repeat(32)),
    };
    let mut file = AgentFile {
        joining: Some(joining.clone()),
        cluster: "dev".to_owned(),
        data_dir: dir.path().join("data \"quoted\""),
        cgroup_parent: "zfdev-a1".to_owned(),
        bridge: "zfdevb1".to_owned(),
        uplink: Some("eth1".to_owned()),
        share: Share {
            memory_mib: 2048,
            cpu_percent: 100,
            disk_gib: 16,
        },
        fencing: true,
    };
    let path = dir.path().join("agent.toml");
    let no_cmdline = dir.path().join("cmdline");
    std::fs::write(&no_cmdline, "console=ttyS0\n").unwrap();
    std::fs::write(&path, file.render()).unwrap();
    let config =
        zonefleet_agent::daemon::config::AgentConfig::load(Some(&path), &no_cmdline).unwrap();
    assert_eq!(config.controllers, joining.controllers);
    assert_eq!(config.ca_pin.as_deref(), Some(joining.ca.as_str()));
    assert!(config.token.is_some());
    assert_eq!(config.data_dir, dir.path().join("data \"quoted\""));
    assert_eq!(config.cgroup_parent.as_deref(), Some("zfdev-a1"));
    assert_eq!(config.bridge, "zfdevb1");
    assert_eq!(config.uplink.as_deref(), Some("eth1"));
    assert_eq!(config.capacity.memory_mib, Some(2048));

    // The same joining settings from a kernel command line instead of the file.
    file.joining = None;
    std::fs::write(&path, file.render()).unwrap();
    std::fs::write(
        &no_cmdline,
        format!("BOOT_IMAGE=/vmlinuz {} quiet\n", joining.kernel_cmdline()),
    )
    .unwrap();
    let config =
        zonefleet_agent::daemon::config::AgentConfig::load(Some(&path), &no_cmdline).unwrap();
    assert_eq!(config.controllers, joining.controllers);
    assert_eq!(config.ca_pin.as_deref(), Some(joining.ca.as_str()));
}
