//! Property: a full valid zone spec survives JSON → domain → protobuf (encoded and
//! decoded) → domain → JSON without losing anything, and protobuf → domain →
//! protobuf likewise.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use proptest::prelude::*;
use prost::Message;
use uuid::Uuid;
use zonefleet_proto::pb;
use zonefleet_proto::spec::{
    Affinity, AffinityRule, AffinityTarget, Brand, Capability, Constraint, ConstraintOp,
    FailureDomain, ImageRef, MacAddr, Nic, OnHostLost, Placement, PlacementStrategy, RuleMode,
    Sha256Digest, Signal, Spread, StdSignal, ZoneSpec, MAX_RT_OFFSET,
};

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(|n| Uuid::from_u128(n | 1))
}

/// DNS labels that cannot be mistaken for a uuid (they are at most 30 chars).
fn label() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,28}[a-z0-9])?"
}

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9._/-]{0,20}"
}

fn image() -> impl Strategy<Value = ImageRef> {
    prop_oneof![
        uuid().prop_map(ImageRef::Uuid),
        any::<[u8; 32]>().prop_map(|b| ImageRef::Sha256(Sha256Digest(b))),
        (
            "[a-z][a-z0-9._-]{0,20}",
            proptest::option::of("[0-9][0-9a-z.+_-]{0,10}")
        )
            .prop_map(|(name, version)| ImageRef::Name { name, version }),
    ]
}

/// One NIC; `i` keeps addresses unique across NICs, `primary` marks the one primary.
fn nic(i: u8, primary: bool) -> impl Strategy<Value = Nic> {
    let fixed_v4 = (any::<u16>(), 16u8..=30).prop_map(move |(host, prefix)| {
        let ip = IpNet::new(
            IpAddr::V4(Ipv4Addr::new(10, i, (host >> 8) as u8, host as u8)),
            prefix,
        )
        .unwrap();
        (ip, ip.network())
    });
    let fixed_v6 = (any::<u64>(), 48u8..=120).prop_map(move |(host, prefix)| {
        let addr = Ipv6Addr::new(
            0xfd00,
            u16::from(i),
            0,
            0,
            (host >> 48) as u16,
            (host >> 32) as u16,
            (host >> 16) as u16,
            host as u16,
        );
        let ip = IpNet::new(IpAddr::V6(addr), prefix).unwrap();
        (ip, ip.network())
    });
    let address = prop_oneof![
        fixed_v4.prop_map(|(ip, net)| (Some(ip), None, Some(net))),
        fixed_v6.prop_map(|(ip, net)| (Some(ip), None, Some(net))),
        label().prop_map(|name| (None, Some(name), None)),
    ];
    (
        address,
        any::<[u8; 6]>(),
        576u32..=9216,
        1u32..=4094,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            move |((ip, network, gateway), mut mac, mtu, vlan_id, ip_spoof, mac_spoof)| {
                mac[0] = (mac[0] & 0xfc) | 0x02; // locally administered unicast
                Nic {
                    ip,
                    network,
                    gateway,
                    mac: Some(MacAddr(mac)),
                    mtu: Some(mtu),
                    vlan_id: Some(vlan_id),
                    allow_ip_spoofing: Some(ip_spoof),
                    allow_mac_spoofing: Some(mac_spoof),
                    primary: Some(primary),
                }
            },
        )
}

fn nics() -> impl Strategy<Value = Vec<Nic>> {
    (1usize..=4).prop_flat_map(|n| {
        (0..n).prop_flat_map(move |primary| {
            (0..n)
                .map(|i| nic(i as u8, i == primary))
                .collect::<Vec<_>>()
        })
    })
}

fn constraint() -> impl Strategy<Value = Constraint> {
    let op = prop_oneof![
        Just(ConstraintOp::Eq),
        Just(ConstraintOp::NotEq),
        Just(ConstraintOp::In),
        Just(ConstraintOp::NotIn)
    ];
    (word(), op, proptest::collection::vec(word(), 1..4)).prop_map(|(key, op, mut values)| {
        if matches!(op, ConstraintOp::Eq | ConstraintOp::NotEq) {
            values.truncate(1);
        }
        Constraint { key, op, values }
    })
}

fn mode() -> impl Strategy<Value = RuleMode> {
    prop_oneof![Just(RuleMode::Hard), Just(RuleMode::Soft)]
}

fn placement() -> impl Strategy<Value = Placement> {
    let strategy = prop_oneof![
        Just(PlacementStrategy::Binpack),
        Just(PlacementStrategy::Spread)
    ];
    let by = prop_oneof![Just(FailureDomain::Rack), Just(FailureDomain::Host)];
    let spread = (by, label(), 1u32..=10, mode()).prop_map(|(by, group, max, mode)| Spread {
        by,
        group,
        max_per_domain: Some(max),
        mode: Some(mode),
    });
    let target = prop_oneof![
        uuid().prop_map(AffinityTarget::Uuid),
        label().prop_map(AffinityTarget::Alias),
        (word(), word()).prop_map(|(key, value)| AffinityTarget::Tag { key, value }),
    ];
    let rule = prop_oneof![Just(AffinityRule::Near), Just(AffinityRule::Far)];
    let affinity = (rule, target, mode()).prop_map(|(rule, target, mode)| Affinity {
        rule,
        target,
        mode: Some(mode),
    });
    (
        strategy,
        proptest::collection::vec(constraint(), 1..4),
        spread,
        proptest::collection::vec(affinity, 1..4),
    )
        .prop_map(|(strategy, constraints, spread, affinity)| Placement {
            strategy: Some(strategy),
            constraints,
            spread: Some(spread),
            affinity,
        })
}

/// Any text, including quotes, escapes and non-ASCII, but small.
fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        proptest::sample::select(StdSignal::ALL).prop_map(Signal::Std),
        (0..=MAX_RT_OFFSET).prop_map(Signal::RtMin),
        (0..=MAX_RT_OFFSET).prop_map(Signal::RtMax),
    ]
}

fn text_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(
        "[a-z_.-]{1,12}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
        1..5,
    )
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<Ipv4Addr>().prop_map(IpAddr::V4),
        any::<Ipv6Addr>().prop_map(IpAddr::V6)
    ]
}

prop_compose! {
    fn resources()(memory in 16u64..=16_777_216)(
        memory in Just(memory),
        swap in memory..=16_777_216,
        cpu_cap in 1u32..=819_200,
        cpu_shares in 2u32..=262_144,
        max_lwps in 1u32..=4_194_304,
        io_priority in 10u32..=1000,
        quota in 1u32..=65_536,
        tmpfs in 1u32..=1_048_576,
    ) -> (u64, u64, u32, u32, u32, u32, u32, u32) {
        (memory, swap, cpu_cap, cpu_shares, max_lwps, io_priority, quota, tmpfs)
    }
}

prop_compose! {
    fn full_spec()(
        uuid in uuid(),
        alias in label(),
        image in image(),
        (memory, swap, cpu_cap, cpu_shares, max_lwps, io_priority, quota, tmpfs) in resources(),
        limit_priv in proptest::sample::subsequence(Capability::ALL.to_vec(), 0..=41).prop_shuffle(),
        nics in nics(),
        hostname in label(),
        resolvers in proptest::collection::vec(ip(), 1..=3),
        dns_domain in proptest::collection::vec(label(), 1..4).prop_map(|l| l.join(".")),
        customer_metadata in text_map(),
        tags in text_map(),
        init in ("/[a-z/]{1,20}", proptest::collection::vec("[^\u{0}]{0,12}", 0..4)),
        halt_signal in signal(),
        autoboot in any::<bool>(),
        owner in "[a-z][a-z0-9._@-]{0,20}",
        on_host_lost in prop_oneof![Just(OnHostLost::Wait), Just(OnHostLost::Reschedule)],
        placement in placement(),
    ) -> ZoneSpec {
        let mut spec = ZoneSpec::new(image);
        spec.uuid = Some(uuid);
        spec.alias = Some(alias);
        spec.brand = Some(Brand::Os);
        spec.max_physical_memory = Some(memory);
        spec.max_swap = Some(swap);
        spec.cpu_cap = Some(cpu_cap);
        spec.cpu_shares = Some(cpu_shares);
        spec.max_lwps = Some(max_lwps);
        spec.io_priority = Some(io_priority);
        spec.quota = Some(quota);
        spec.tmpfs = Some(tmpfs);
        spec.limit_priv = Some(limit_priv);
        spec.nics = nics;
        spec.hostname = Some(hostname);
        spec.resolvers = resolvers;
        spec.dns_domain = Some(dns_domain);
        spec.customer_metadata = customer_metadata;
        spec.tags = tags;
        let (argv0, args) = init;
        spec.init = Some(std::iter::once(argv0).chain(args).collect());
        spec.halt_signal = Some(halt_signal);
        spec.autoboot = Some(autoboot);
        spec.owner = Some(owner);
        spec.on_host_lost = Some(on_host_lost);
        spec.placement = Some(placement);
        spec
    }
}

fn through_the_wire(spec: ZoneSpec) -> ZoneSpec {
    let bytes = pb::ZoneSpec::from(spec).encode_to_vec();
    let decoded = pb::ZoneSpec::decode(bytes.as_slice()).unwrap();
    ZoneSpec::try_from(decoded).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn json_to_pb_to_json_is_lossless(original in full_spec()) {
        original.validate().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let json = original.to_json_pretty();
        let read = ZoneSpec::from_json(&json).unwrap();
        prop_assert_eq!(&read, &original);
        let back = through_the_wire(read);
        prop_assert_eq!(&back, &original);
        prop_assert_eq!(back.to_json_pretty(), json);
    }

    #[test]
    fn pb_to_domain_to_pb_is_lossless(original in full_spec()) {
        let message = pb::ZoneSpec::from(original);
        let again = pb::ZoneSpec::from(ZoneSpec::try_from(message.clone()).unwrap());
        prop_assert_eq!(again, message);
    }

    #[test]
    fn minimal_specs_round_trip_too(image in image()) {
        let spec = ZoneSpec::new(image);
        prop_assert_eq!(through_the_wire(spec.clone()), spec.clone());
        prop_assert_eq!(ZoneSpec::from_json(&spec.to_json_pretty()).unwrap(), spec);
    }

    #[test]
    fn constraints_and_targets_read_back_what_they_write(c in constraint(), t in prop_oneof![
        uuid().prop_map(AffinityTarget::Uuid),
        label().prop_map(AffinityTarget::Alias),
        (word(), word()).prop_map(|(key, value)| AffinityTarget::Tag { key, value }),
    ]) {
        prop_assert_eq!(c.to_string().parse::<Constraint>().unwrap(), c);
        prop_assert_eq!(t.to_string().parse::<AffinityTarget>().unwrap(), t);
    }
}
