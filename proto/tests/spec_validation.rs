//! Every validation rule of the zone spec, with the exact error each bad spec gets.

use zonefleet_proto::pb;
use zonefleet_proto::spec::{Capability, SpecError, ZoneSpec, DEFAULT_LIMIT_PRIV};

/// The problems of a spec given as JSON: its read error, or every validation error.
fn problems(json: &str) -> Vec<String> {
    match ZoneSpec::from_json(json) {
        Err(e) => vec![e.to_string()],
        Ok(spec) => spec
            .validate()
            .err()
            .map(|e| e.messages())
            .unwrap_or_default(),
    }
}

/// A minimal spec with `extra` JSON members added.
fn spec(extra: &str) -> String {
    if extra.is_empty() {
        r#"{"image": "base-64@24.4.0"}"#.to_string()
    } else {
        format!(r#"{{"image": "base-64@24.4.0", {extra}}}"#)
    }
}

const LABEL: &str = "allowed 1 to 63 letters, digits and '-', not starting or ending with '-'";

#[test]
fn minimal_spec_is_valid() {
    assert_eq!(problems(&spec("")), Vec::<String>::new());
}

#[test]
fn table_of_bad_specs() {
    let long_hostname = format!(r#""hostname": "{}""#, "h".repeat(300));
    let big_metadata = format!(
        r#""customer_metadata": {{"user-script": "{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    let cases: Vec<(&str, String, String)> = vec![
        (
            "zero memory",
            spec(r#""max_physical_memory": 0"#),
            "max_physical_memory: 0 is out of range; allowed 16..=16777216 (MiB)".into(),
        ),
        ("cpu_cap 0", spec(r#""cpu_cap": 0"#), "cpu_cap: 0 is out of range; allowed 1..=819200 (% of one CPU)".into()),
        ("alias ../etc", spec(r#""alias": "../etc""#), format!("alias: \"../etc\" is not a DNS label; {LABEL}")),
        (
            "300-char hostname",
            spec(&long_hostname),
            format!("hostname: \"{}\"... (300 chars) is not a DNS label; {LABEL}", "h".repeat(40)),
        ),
        (
            "nic ip 10.0.0.300/24",
            spec(r#""nics": [{"ip": "10.0.0.300/24"}]"#),
            "nics[0].ip: \"10.0.0.300/24\" is not an address/prefix; allowed an IPv4 or IPv6 address with a prefix length, e.g. \"10.0.0.5/24\" or \"fd00::5/64\"".into(),
        ),
        (
            "duplicate NIC IPs",
            spec(r#""nics": [{"ip": "10.0.0.5/24"}, {"ip": "10.0.0.5/24"}]"#),
            "nics[1].ip: \"10.0.0.5/24\" duplicates the address of nics[0].ip; allowed a different address on each NIC".into(),
        ),
        (
            "capability CAP_BOGUS",
            spec(r#""limit_priv": ["CAP_KILL", "CAP_BOGUS"]"#),
            "limit_priv[1]: \"CAP_BOGUS\" is not a Linux capability; allowed a name from capabilities(7), CAP_CHOWN..CAP_CHECKPOINT_RESTORE".into(),
        ),
        (
            "1 MiB of customer_metadata",
            spec(&big_metadata),
            "customer_metadata: 1048587 bytes is too large (with tags); allowed at most 65536 bytes of keys and values in customer_metadata and tags together".into(),
        ),
        (
            "unknown field in a NIC",
            spec(r#""nics": [{"ipp": "10.0.0.5/24"}]"#),
            "nics[0].ipp: unknown field `ipp`, expected one of `ip`, `network`, `gateway`, `mac`, `mtu`, `vlan_id`, `allow_ip_spoofing`, `allow_mac_spoofing`, `primary`".into(),
        ),
        (
            "unknown top-level field",
            spec(r#""ram": 512"#),
            "ram: unknown field `ram`, expected one of `uuid`, `alias`, `brand`, `image`, `max_physical_memory`, `max_swap`, `cpu_cap`, `cpu_shares`, `max_lwps`, `io_priority`, `quota`, `tmpfs`, `limit_priv`, `nics`, `hostname`, `resolvers`, `dns_domain`, `customer_metadata`, `tags`, `init`, `halt_signal`, `autoboot`, `user_namespace`, `owner`, `on_host_lost`, `placement`".into(),
        ),
        ("missing image", "{}".into(), "<root>: missing field `image`".into()),
        (
            "wrong type",
            spec(r#""cpu_cap": "50""#),
            "cpu_cap: invalid type: string \"50\", expected u32".into(),
        ),
        ("bad JSON", spec(r#""cpu_cap": 5,"#), "<root>: trailing comma".into()),
        (
            "bad uuid",
            spec(r#""uuid": "1234""#),
            "uuid: \"1234\" is not a UUID; allowed 32 hex digits as 8-4-4-4-12".into(),
        ),
        (
            "nil uuid",
            spec(r#""uuid": "00000000-0000-0000-0000-000000000000""#),
            "uuid: \"00000000-0000-0000-0000-000000000000\" is the nil UUID; allowed any other UUID".into(),
        ),
        (
            "unknown brand",
            spec(r#""brand": "lx""#),
            "brand: unknown variant `lx`, expected `os`".into(),
        ),
        (
            "malformed image",
            r#"{"image": "base@"}"#.into(),
            "image: \"base@\" is not an image reference; allowed a uuid, \"sha256:<64 hex>\" or \"name[@version]\"".into(),
        ),
        (
            "image name characters",
            r#"{"image": "base image"}"#.into(),
            "image: \"base image\" is not an image name; allowed 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit".into(),
        ),
        (
            "swap below memory",
            spec(r#""max_physical_memory": 1024, "max_swap": 512"#),
            "max_swap: 512 is out of range; allowed 1024..=16777216 (MiB, at least max_physical_memory)".into(),
        ),
        (
            "swap below default memory",
            spec(r#""max_swap": 128"#),
            "max_swap: 128 is out of range; allowed 256..=16777216 (MiB, at least max_physical_memory)".into(),
        ),
        (
            "huge memory",
            spec(r#""max_physical_memory": 16777217"#),
            "max_physical_memory: 16777217 is out of range; allowed 16..=16777216 (MiB)".into(),
        ),
        ("cpu_cap too big", spec(r#""cpu_cap": 819201"#), "cpu_cap: 819201 is out of range; allowed 1..=819200 (% of one CPU)".into()),
        ("cpu_shares 1", spec(r#""cpu_shares": 1"#), "cpu_shares: 1 is out of range; allowed 2..=262144 (relative weight)".into()),
        (
            "max_lwps 0",
            spec(r#""max_lwps": 0"#),
            "max_lwps: 0 is out of range; allowed 1..=4194304 (processes and threads)".into(),
        ),
        (
            "io_priority 5",
            spec(r#""io_priority": 5"#),
            "io_priority: 5 is out of range; allowed 10..=1000 (relative weight)".into(),
        ),
        ("quota 0", spec(r#""quota": 0"#), "quota: 0 is out of range; allowed 1..=65536 (GiB)".into()),
        ("tmpfs too big", spec(r#""tmpfs": 1048577"#), "tmpfs: 1048577 is out of range; allowed 1..=1048576 (MiB)".into()),
        (
            "duplicate capability",
            spec(r#""limit_priv": ["CAP_KILL", "kill"]"#),
            "limit_priv[1]: \"CAP_KILL\" duplicates limit_priv[0]; allowed each capability once".into(),
        ),
        (
            "nic with neither ip nor network",
            spec(r#""nics": [{"mtu": 1500}]"#),
            "nics[0].ip: null is missing; allowed exactly one of ip (address/prefix) and network".into(),
        ),
        (
            "nic with ip and network",
            spec(r#""nics": [{"ip": "10.0.0.5/24", "network": "backend"}]"#),
            "nics[0].network: \"backend\" is set together with ip; allowed exactly one of ip and network".into(),
        ),
        (
            "gateway outside subnet",
            spec(r#""nics": [{"ip": "10.0.0.5/24", "gateway": "10.0.1.1"}]"#),
            "nics[0].gateway: \"10.0.1.1\" is outside the subnet; allowed an address inside 10.0.0.0/24".into(),
        ),
        (
            "gateway of another family",
            spec(r#""nics": [{"ip": "fd00::5/64", "gateway": "10.0.0.1"}]"#),
            "nics[0].gateway: \"10.0.0.1\" is not in the same address family; allowed an IPv6 address inside fd00::/64".into(),
        ),
        (
            "multicast mac",
            spec(r#""nics": [{"network": "backend", "mac": "01:00:5e:00:00:01"}]"#),
            "nics[0].mac: \"01:00:5e:00:00:01\" is not a unicast address; allowed a non-zero MAC whose first octet is even".into(),
        ),
        (
            "malformed mac",
            spec(r#""nics": [{"network": "backend", "mac": "01:00:5e"}]"#),
            "nics[0].mac: \"01:00:5e\" is not a MAC address; allowed six hex pairs joined by ':', e.g. \"02:00:00:0a:00:05\"".into(),
        ),
        (
            "mtu 9000000",
            spec(r#""nics": [{"network": "backend", "mtu": 9000000}]"#),
            "nics[0].mtu: 9000000 is out of range; allowed 576..=9216 (bytes)".into(),
        ),
        (
            "vlan 4095",
            spec(r#""nics": [{"network": "backend", "vlan_id": 4095}]"#),
            "nics[0].vlan_id: 4095 is out of range; allowed 1..=4094 (802.1Q VLAN ID)".into(),
        ),
        (
            "two primaries",
            spec(r#""nics": [{"network": "a", "primary": true}, {"network": "b", "primary": true}]"#),
            "nics[1].primary: true is already set on nics[0]; allowed at most one primary NIC".into(),
        ),
        (
            "four resolvers",
            spec(r#""resolvers": ["1.1.1.1", "8.8.8.8", "9.9.9.9", "8.8.4.4"]"#),
            "resolvers: 4 resolvers is too many; allowed at most 3 (resolv.conf's MAXNS)".into(),
        ),
        (
            "resolver not an address",
            spec(r#""resolvers": ["ns1.example.com"]"#),
            "resolvers[0]: \"ns1.example.com\" is not an IP address; allowed an IPv4 or IPv6 address, e.g. \"10.0.0.1\" or \"fd00::1\"".into(),
        ),
        (
            "dns_domain",
            spec(r#""dns_domain": "example..com""#),
            "dns_domain: \"example..com\" is not a DNS name; allowed DNS labels (letters, digits and '-') joined by '.', at most 253 characters".into(),
        ),
        ("empty init", spec(r#""init": []"#), "init: [] is empty; allowed an argv whose first element is an absolute path".into()),
        (
            "relative init",
            spec(r#""init": ["sbin/init"]"#),
            "init[0]: \"sbin/init\" is not an absolute path; allowed a path starting with '/'".into(),
        ),
        (
            "NUL in init",
            spec(r#""init": ["/bin/sh", "-c\u0000x"]"#),
            "init[1]: \"-c\\0x\" contains a NUL byte; allowed text without NUL bytes".into(),
        ),
        (
            "owner",
            spec(r#""owner": "alice smith""#),
            "owner: \"alice smith\" is not an owner identifier; allowed 1 to 64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit".into(),
        ),
        (
            "on_host_lost",
            spec(r#""on_host_lost": "migrate""#),
            "on_host_lost: unknown variant `migrate`, expected `wait` or `reschedule`".into(),
        ),
        (
            "constraint syntax",
            spec(r#""placement": {"constraints": ["rack==r1 or r2", "rack ~ r1"]}"#),
            "placement.constraints[1]: \"rack ~ r1\" is not a constraint; allowed \"key=value\", \"key!=value\", \"key in (a,b)\" or \"key not in (a,b)\"".into(),
        ),
        (
            "constraint words",
            spec(r#""placement": {"constraints": ["rack==r1"]}"#),
            "placement.constraints[0]: \"=r1\" is not a label word; allowed 1 to 63 letters, digits, '.', '_', '-' or '/'".into(),
        ),
        (
            "spread by row",
            spec(r#""placement": {"spread": {"by": "row", "group": "web", "max_per_domain": 1}}"#),
            "placement.spread.by: unknown variant `row`, expected `rack` or `host`".into(),
        ),
        (
            "spread group",
            spec(r#""placement": {"spread": {"by": "rack", "group": "web_tier", "max_per_domain": 1}}"#),
            format!("placement.spread.group: \"web_tier\" is not a DNS label; {LABEL}"),
        ),
        (
            "hard spread without maximum",
            spec(r#""placement": {"spread": {"by": "rack", "group": "web", "mode": "hard"}}"#),
            "placement.spread.max_per_domain: null is missing for a hard spread; allowed 1 or more zones (or mode \"soft\")".into(),
        ),
        (
            "empty affinity target",
            spec(r#""placement": {"affinity": [{"rule": "far", "target": ""}]}"#),
            "placement.affinity[0].target: \"\" is not an affinity target; allowed a zone uuid, a zone alias or \"tag:key=value\"".into(),
        ),
        (
            "affinity alias",
            spec(r#""placement": {"affinity": [{"rule": "far", "target": "db.1"}]}"#),
            format!("placement.affinity[0].target: \"db.1\" is not a DNS label; {LABEL}"),
        ),
        (
            "affinity rule",
            spec(r#""placement": {"affinity": [{"rule": "beside", "target": "db"}]}"#),
            "placement.affinity[0].rule: unknown variant `beside`, expected `near` or `far`".into(),
        ),
    ];
    let mut failures = Vec::new();
    for (name, json, expected) in &cases {
        let got = problems(json);
        if got != [expected.clone()] {
            failures.push(format!(
                "{name}:\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn several_problems_are_reported_at_once() {
    let json = r#"{
        "alias": "../etc",
        "image": "base-64",
        "max_physical_memory": 0,
        "cpu_cap": 0,
        "quota": 0,
        "limit_priv": ["CAP_CHOWN", "CAP_CHOWN"],
        "nics": [
            {"ip": "10.0.0.5/24", "gateway": "10.0.9.1", "primary": true},
            {"ip": "10.0.0.5/16", "primary": true}
        ],
        "hostname": "-web",
        "init": ["init"],
        "placement": {"spread": {"by": "rack", "group": "web"}}
    }"#;
    let spec = ZoneSpec::from_json(json).unwrap();
    let errors = spec.validate().unwrap_err();
    assert_eq!(
        errors.messages(),
        [
            format!("alias: \"../etc\" is not a DNS label; {LABEL}"),
            "max_physical_memory: 0 is out of range; allowed 16..=16777216 (MiB)".into(),
            "cpu_cap: 0 is out of range; allowed 1..=819200 (% of one CPU)".into(),
            "quota: 0 is out of range; allowed 1..=65536 (GiB)".into(),
            "limit_priv[1]: \"CAP_CHOWN\" duplicates limit_priv[0]; allowed each capability once".into(),
            "nics[0].gateway: \"10.0.9.1\" is outside the subnet; allowed an address inside 10.0.0.0/24".into(),
            "nics[1].ip: \"10.0.0.5/16\" duplicates the address of nics[0].ip; allowed a different address on each NIC".into(),
            "nics[1].primary: true is already set on nics[0]; allowed at most one primary NIC".into(),
            format!("hostname: \"-web\" is not a DNS label; {LABEL}"),
            "init[0]: \"init\" is not an absolute path; allowed a path starting with '/'".into(),
            "placement.spread.max_per_domain: null is missing for a hard spread; allowed 1 or more zones (or mode \"soft\")".into(),
        ]
    );
    // The fields are there for programs too, and the whole error reads one per line.
    assert_eq!(errors.errors()[1].field, "max_physical_memory");
    assert_eq!(errors.errors()[1].value, "0");
    assert_eq!(errors.to_string().lines().count(), 11);
    assert!(matches!(SpecError::from(errors), SpecError::Invalid(e) if e.errors().len() == 11));
}

#[test]
fn syntax_errors_keep_their_position() {
    let err = ZoneSpec::from_json("{\n  \"image\": \"base\",\n  \"cpu_cap\": -1,\n}").unwrap_err();
    match err {
        SpecError::Parse {
            path, line, column, ..
        } => {
            assert_eq!(path, "<root>");
            assert_eq!((line, column), (4, 1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn from_reader_reads_like_from_json() {
    let json = spec(r#""alias": "web-1""#);
    assert_eq!(
        ZoneSpec::from_reader(json.as_bytes()).unwrap(),
        ZoneSpec::from_json(&json).unwrap()
    );
    assert_eq!(
        ZoneSpec::from_reader(&b"{\"image\": \"a\"} x"[..])
            .unwrap_err()
            .to_string(),
        "<root>: trailing characters"
    );
}

#[test]
fn defaults_are_vmadm_like_and_valid() {
    let spec = ZoneSpec::from_json(&spec(r#""nics": [{"network": "a"}, {"network": "b"}]"#))
        .unwrap()
        .with_defaults();
    spec.validate().unwrap();
    assert!(spec.uuid.is_some());
    assert_eq!(spec.max_physical_memory, Some(256));
    assert_eq!(spec.max_swap, Some(256));
    assert_eq!(spec.tmpfs, Some(256));
    assert_eq!(
        (spec.cpu_shares, spec.max_lwps, spec.io_priority, spec.quota),
        (Some(100), Some(2000), Some(100), Some(10))
    );
    assert_eq!(spec.cpu_cap, None);
    assert_eq!(spec.limit_priv.as_deref(), Some(DEFAULT_LIMIT_PRIV));
    assert!(!DEFAULT_LIMIT_PRIV.contains(&Capability::Mknod));
    assert_eq!(DEFAULT_LIMIT_PRIV.len(), 14);
    assert!(
        DEFAULT_LIMIT_PRIV.contains(&Capability::SysBoot),
        "reboot inside a zone"
    );
    assert_eq!(
        spec.user_namespace,
        Some(true),
        "a zone's own user namespace"
    );
    assert_eq!(spec.init, Some(vec!["/sbin/init".to_string()]));
    assert_eq!(spec.autoboot, Some(false));
    assert_eq!(spec.brand, Some(zonefleet_proto::spec::Brand::Os));
    assert_eq!(
        spec.on_host_lost,
        Some(zonefleet_proto::spec::OnHostLost::Wait)
    );
    assert_eq!(spec.nics[0].primary, Some(true));
    assert_eq!(spec.nics[1].primary, Some(false));
    assert_eq!(spec.nics[1].allow_ip_spoofing, Some(false));
    // Defaults are idempotent and keep what was given.
    assert_eq!(spec.clone().with_defaults(), spec);
}

#[test]
fn defaults_follow_memory() {
    let small = ZoneSpec::from_json(&spec(r#""max_physical_memory": 64"#))
        .unwrap()
        .with_defaults();
    assert_eq!((small.max_swap, small.tmpfs), (Some(256), Some(64)));
    let big = ZoneSpec::from_json(&spec(
        r#""max_physical_memory": 4096, "uuid": "0b0b0b0b-1111-4222-8333-444444444444""#,
    ))
    .unwrap()
    .with_defaults();
    assert_eq!((big.max_swap, big.tmpfs), (Some(4096), Some(4096)));
    assert_eq!(
        big.uuid.unwrap().to_string(),
        "0b0b0b0b-1111-4222-8333-444444444444"
    );
    let huge = ZoneSpec::from_json(&spec(r#""max_physical_memory": 16777216"#))
        .unwrap()
        .with_defaults();
    assert_eq!(huge.tmpfs, Some(1_048_576));
    huge.validate().unwrap();
    let primary_second = ZoneSpec::from_json(&spec(
        r#""nics": [{"network": "a"}, {"network": "b", "primary": true}]"#,
    ))
    .unwrap()
    .with_defaults();
    assert_eq!(primary_second.nics[0].primary, Some(false));
}

#[test]
fn capability_names_are_read_loosely_and_written_canonically() {
    let spec =
        ZoneSpec::from_json(&spec(r#""limit_priv": ["chown", "cap_kill", "NET_RAW"]"#)).unwrap();
    assert!(spec
        .to_json_pretty()
        .contains("\"CAP_CHOWN\",\n    \"CAP_KILL\",\n    \"CAP_NET_RAW\""));
}

#[test]
fn weights_for_cgroup_v2() {
    let spec = ZoneSpec::from_json(&spec(r#""cpu_shares": 1024, "io_priority": 500"#)).unwrap();
    assert_eq!(spec.cpu_weight(), Some(39));
    assert_eq!(spec.io_weight(), Some(4950));
}

#[test]
fn pb_errors_name_every_field() {
    let bad = pb::ZoneSpec {
        uuid: Some("nope".into()),
        brand: 9,
        image: String::new(),
        limit_priv: Some(pb::CapabilitySet {
            names: vec!["CAP_KILL".into(), "CAP_BOGUS".into()],
        }),
        nics: vec![pb::Nic {
            ip: Some("10.0.0.300/24".into()),
            mac: Some("zz".into()),
            ..pb::Nic::default()
        }],
        resolvers: vec!["x".into()],
        placement: Some(pb::Placement {
            constraints: vec!["rack".into()],
            spread: Some(pb::Spread {
                by: "row".into(),
                group: "web".into(),
                ..pb::Spread::default()
            }),
            affinity: vec![pb::Affinity {
                rule: 0,
                target: "db".into(),
                mode: 3,
            }],
            ..pb::Placement::default()
        }),
        ..pb::ZoneSpec::default()
    };
    let err = ZoneSpec::try_from(bad).unwrap_err();
    let fields: Vec<&str> = err
        .validation()
        .unwrap()
        .errors()
        .iter()
        .map(|e| e.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "uuid",
            "brand",
            "image",
            "limit_priv[1]",
            "nics[0].ip",
            "nics[0].mac",
            "resolvers[0]",
            "placement.constraints[0]",
            "placement.spread.by",
            "placement.affinity[0].rule",
            "placement.affinity[0].mode",
        ]
    );
    let messages = err.validation().unwrap().messages();
    assert_eq!(messages[1], "brand: 9 is not a known value; allowed 1 (os)");
    assert_eq!(
        messages[2],
        "image: \"\" is missing; allowed a uuid, \"sha256:<64 hex>\" or \"name[@version]\""
    );
    assert_eq!(
        messages[8],
        "placement.spread.by: \"row\" is not a failure domain; allowed \"rack\" or \"host\""
    );
    assert_eq!(
        messages[9],
        "placement.affinity[0].rule: 0 is unspecified; allowed 1 (near), 2 (far)"
    );
}
