//! Network probes: each creates the thing (a veth pair, a bridge, a VLAN…) in a
//! throwaway network namespace of a forked child.

use std::path::Path;

use netlink_packet_route::link::{
    InfoBridge, InfoData, InfoKind, InfoMacVlan, InfoVlan, InfoVxlan, LinkInfo, MacVlanMode,
};
use zonefleet_proto::feature as names;
use zonefleet_proto::host::Feature;

use super::messages::{
    ack_code, bridge, new_link, nft_new_table, veth_pair, Request, IDX_A, IDX_C, NETLINK_NETFILTER,
    NETLINK_ROUTE,
};
use super::{child_codes, found};
use crate::sysinfo::child::{describe_code, result_code, run_forked, write_i32, CHILD_TIMEOUT};

/// Results of a network-namespace probe: one code per request, 0 or -errno.
enum NetProbe {
    /// The probe could not run (fork, unshare, socket).
    Failed(String),
    /// The kernel's answer to each request.
    Answers(Vec<i32>),
}

/// Runs `requests` on a `protocol` netlink socket inside a fresh network
/// namespace of a forked child.
fn netns_probe(protocol: libc::c_int, requests: &[Request]) -> NetProbe {
    // SAFETY: the child makes only raw syscalls (unshare, socket,
    // setsockopt, send, recv, write) on buffers built before the fork or on
    // its own stack, and parses answers without allocating or panicking.
    let child = unsafe {
        run_forked(CHILD_TIMEOUT, |out| {
            let r = libc::unshare(libc::CLONE_NEWNET);
            write_i32(out, result_code(r as libc::c_long));
            if r != 0 {
                return 0;
            }
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            );
            write_i32(out, result_code(fd as libc::c_long));
            if fd < 0 {
                return 0;
            }
            let tv = libc::timeval {
                tv_sec: 1,
                tv_usec: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            let mut buf = [0u8; 8192];
            for req in requests {
                let sent = libc::send(fd, req.bytes.as_ptr().cast(), req.bytes.len(), 0);
                if sent < 0 {
                    write_i32(out, result_code(sent as libc::c_long));
                    continue;
                }
                let mut code = i32::MIN;
                for _ in 0..4 {
                    let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                    if n <= 0 {
                        break;
                    }
                    if let Some(c) = ack_code(buf.get(..n as usize).unwrap_or(&[]), req.seq) {
                        code = c;
                        break;
                    }
                }
                write_i32(out, code);
            }
            0
        })
    };
    match child_codes(child, 2 + requests.len()) {
        Err(why) => NetProbe::Failed(why),
        Ok(c) if c[0] != 0 => NetProbe::Failed(format!(
            "unshare(CLONE_NEWNET) failed: {}",
            describe_code(c[0])
        )),
        Ok(c) if c[1] != 0 => NetProbe::Failed(format!(
            "netlink socket (protocol {protocol}) failed: {}",
            describe_code(c[1])
        )),
        Ok(c) => NetProbe::Answers(c[2..].to_vec()),
    }
}

const IN_NETNS: &str = "in a throwaway network namespace";

/// A probe that creates a link of one kind (after `setup` links).
fn link_feature(name: &str, what: &str, requests: &[Request], setup_what: &[&str]) -> Feature {
    match netns_probe(NETLINK_ROUTE, requests) {
        NetProbe::Failed(why) => found(name, false, format!("cannot probe: {why}")),
        NetProbe::Answers(codes) => {
            for (i, s) in setup_what.iter().enumerate() {
                if codes[i] != 0 {
                    return found(
                        name,
                        false,
                        format!(
                            "cannot probe: {s} failed {IN_NETNS}: {}",
                            describe_code(codes[i])
                        ),
                    );
                }
            }
            let last = codes[setup_what.len()];
            if last == 0 {
                found(name, true, format!("{what} over rtnetlink {IN_NETNS}: ok"))
            } else {
                found(
                    name,
                    false,
                    format!(
                        "{what} over rtnetlink {IN_NETNS} refused: {}",
                        describe_code(last)
                    ),
                )
            }
        }
    }
}

/// The network features: `veth`, `bridge`, `bridge_vlan_filtering`,
/// `vlan_8021q`, `macvlan`, `vxlan`, `nftables`, each probed by creating
/// the thing in a throwaway network namespace.
pub fn network() -> Vec<Feature> {
    let veth = link_feature(names::VETH, "created a veth pair", &[veth_pair(1)], &[]);
    let br = link_feature(names::BRIDGE, "created a bridge", &[bridge(1)], &[]);
    let vlan_filtering = link_feature(
        names::BRIDGE_VLAN_FILTERING,
        "set vlan_filtering 1 on a bridge",
        &[
            bridge(1),
            new_link(
                2,
                IDX_A,
                "zfprobe-br",
                None,
                vec![
                    LinkInfo::Kind(InfoKind::Bridge),
                    LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(true)])),
                ],
                false,
            ),
        ],
        &["creating a bridge"],
    );
    let vlan = link_feature(
        names::VLAN_8021Q,
        "created an 802.1q VLAN link (id 5) on a veth",
        &[
            veth_pair(1),
            new_link(
                2,
                IDX_C,
                "zfprobe-v5",
                Some(IDX_A),
                vec![
                    LinkInfo::Kind(InfoKind::Vlan),
                    LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(5)])),
                ],
                true,
            ),
        ],
        &["creating a veth pair as the lower link"],
    );
    let macvlan = link_feature(
        names::MACVLAN,
        "created a bridge-mode macvlan on a veth",
        &[
            veth_pair(1),
            new_link(
                2,
                IDX_C,
                "zfprobe-mv",
                Some(IDX_A),
                vec![
                    LinkInfo::Kind(InfoKind::MacVlan),
                    LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                        MacVlanMode::Bridge,
                    )])),
                ],
                true,
            ),
        ],
        &["creating a veth pair as the lower link"],
    );
    let vxlan = link_feature(
        names::VXLAN,
        "created a VXLAN link (VNI 42, port 4789)",
        &[new_link(
            1,
            IDX_A,
            "zfprobe-vx",
            None,
            vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(vec![
                    InfoVxlan::Id(42),
                    InfoVxlan::Port(4789),
                ])),
            ],
            true,
        )],
        &[],
    );
    let nft_bin = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| format!("{p} present"))
        .unwrap_or_else(|| "nft command not installed".into());
    let nftables = match netns_probe(NETLINK_NETFILTER, &[nft_new_table()]) {
        NetProbe::Failed(why) => found(names::NFTABLES, false, format!("cannot probe: {why}; {nft_bin}")),
        NetProbe::Answers(c) if c[0] == 0 => found(names::NFTABLES,
            true,
            format!("created table inet zfprobe over nf_tables netlink {IN_NETNS}; {nft_bin}"),
        ),
        NetProbe::Answers(c) => found(names::NFTABLES,
            false,
            format!(
                "creating table inet zfprobe over nf_tables netlink {IN_NETNS} refused: {}; {nft_bin}",
                describe_code(c[0])
            ),
        ),
    };
    vec![veth, br, vlan_filtering, vlan, macvlan, vxlan, nftables]
}
