//! Kernel feature probes. Each one tries the real thing where it can — in a
//! forked child when trying changes process state (a seccomp filter, a new
//! user or network namespace) — and says in `detail` how it decided.
//!
//! Network probes run in a child that `unshare(CLONE_NEWNET)`s into a
//! namespace of its own and creates links there over rtnetlink (messages
//! built with `netlink-packet-route` before the fork; the child only makes
//! raw `socket`/`send`/`recv` calls, which are safe after `fork` in a
//! multi-threaded agent). The namespace and every link in it die with the
//! child. Children are killed after [`CHILD_TIMEOUT`].

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::link::{
    InfoBridge, InfoData, InfoKind, InfoMacVlan, InfoVeth, InfoVlan, InfoVxlan, LinkAttribute,
    LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::RouteNetlinkMessage;
use zonefleet_proto::feature as names;
use zonefleet_proto::host::Feature;

use super::child::{describe_code, result_code, run_forked, write_i32, CHILD_TIMEOUT};
use crate::cgroup::detect::Layout;

/// A probe's answer.
fn found(name: &str, available: bool, detail: impl Into<String>) -> Feature {
    Feature {
        name: name.to_string(),
        available,
        detail: detail.into(),
    }
}

/// Probes every feature of [`names::ALL`] (cgroup ones against `mounts`).
pub fn probe_all(mounts: &Layout) -> Vec<Feature> {
    let mut out = vec![
        seccomp(),
        user_namespaces(),
        overlayfs(),
        ext4(),
        loop_devices(),
        cgroup_v1(mounts),
        cgroup_v2(mounts),
        memory_swap_accounting(mounts),
        cgroup_kill(mounts),
        pidfd(),
    ];
    out.extend(network());
    debug_assert!(out
        .iter()
        .map(|f| f.name.as_str())
        .eq(names::ALL.iter().copied()));
    out
}

// ---------------------------------------------------------------- process

const SECCOMP_MODE_FILTER: libc::c_ulong = 2;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// `seccomp`: `prctl(PR_GET_SECCOMP)` answers (CONFIG_SECCOMP) and a child
/// can load an allow-all BPF filter (CONFIG_SECCOMP_FILTER).
pub fn seccomp() -> Feature {
    const NAME: &str = "seccomp";
    let status = proc_status_field("Seccomp:");
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if mode < 0 {
        return found(
            NAME,
            false,
            format!(
                "prctl(PR_GET_SECCOMP) failed: {} (kernel without CONFIG_SECCOMP)",
                std::io::Error::last_os_error()
            ),
        );
    }
    let filter = [libc::sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: SECCOMP_RET_ALLOW,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    let prog_ptr = &prog as *const libc::sock_fprog;
    // SAFETY: the child makes only prctl/write syscalls on `prog`/`filter`,
    // which were built before the fork and are still alive in the child.
    let child = unsafe {
        run_forked(CHILD_TIMEOUT, |out| {
            let r = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            write_i32(out, result_code(r as libc::c_long));
            let r = libc::prctl(
                libc::PR_SET_SECCOMP,
                SECCOMP_MODE_FILTER,
                prog_ptr as libc::c_ulong,
                0,
                0,
            );
            write_i32(out, result_code(r as libc::c_long));
            0
        })
    };
    let how = format!(
        "prctl(PR_GET_SECCOMP) = {mode}, /proc/self/status Seccomp: {}",
        status.as_deref().unwrap_or("absent")
    );
    match child_codes(child, 2) {
        Err(why) => found(NAME, false, format!("{how}; filter probe failed: {why}")),
        Ok(c) if c[0] != 0 => found(
            NAME,
            false,
            format!("{how}; PR_SET_NO_NEW_PRIVS failed: {}", describe_code(c[0])),
        ),
        Ok(c) if c[1] != 0 => found(
            NAME,
            false,
            format!(
                "{how}; loading an allow-all BPF filter failed: {} (kernel without CONFIG_SECCOMP_FILTER?)",
                describe_code(c[1])
            ),
        ),
        Ok(_) => found(
            NAME,
            true,
            format!("{how}; a child loaded an allow-all BPF filter (SECCOMP_MODE_FILTER)"),
        ),
    }
}

/// `user_namespaces`: `/proc/sys/user/max_user_namespaces` > 0 and a child
/// can `unshare(CLONE_NEWUSER)`.
pub fn user_namespaces() -> Feature {
    const NAME: &str = "user_namespaces";
    let max_path = "/proc/sys/user/max_user_namespaces";
    let max = match std::fs::read_to_string(max_path) {
        Ok(s) => s.trim().to_string(),
        Err(e) => {
            return found(
                NAME,
                false,
                format!("cannot read {max_path}: {e} (kernel without CONFIG_USER_NS?)"),
            )
        }
    };
    if max.parse::<u64>().map_or(true, |n| n == 0) {
        return found(
            NAME,
            false,
            format!("{max_path} is {max}: user namespaces disabled"),
        );
    }
    // SAFETY: the child makes only the unshare and write syscalls.
    let child = unsafe {
        run_forked(CHILD_TIMEOUT, |out| {
            let r = libc::unshare(libc::CLONE_NEWUSER);
            write_i32(out, result_code(r as libc::c_long));
            0
        })
    };
    match child_codes(child, 1) {
        Err(why) => found(
            NAME,
            false,
            format!("{max_path} = {max}; probe failed: {why}"),
        ),
        Ok(c) if c[0] != 0 => found(
            NAME,
            false,
            format!(
                "{max_path} = {max}, but unshare(CLONE_NEWUSER) failed in a child: {}",
                describe_code(c[0])
            ),
        ),
        Ok(_) => found(
            NAME,
            true,
            format!("{max_path} = {max}; a child unshare(CLONE_NEWUSER)d"),
        ),
    }
}

/// `pidfd`: `pidfd_open(2)` on our own pid works.
pub fn pidfd() -> Feature {
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return found(
            "pidfd",
            false,
            format!(
                "pidfd_open(getpid()) failed: {} (kernel older than 5.3?)",
                std::io::Error::last_os_error()
            ),
        );
    }
    // SAFETY: `fd` is a descriptor we just opened and own.
    unsafe { libc::close(fd as RawFd) };
    found("pidfd", true, "pidfd_open(getpid()) returned a descriptor")
}

// ------------------------------------------------------------ filesystems

/// `overlayfs`: `overlay` is listed in `/proc/filesystems`.
pub fn overlayfs() -> Feature {
    filesystem_feature("overlayfs", "overlay", "fs/overlayfs", None)
}

/// `ext4`: `ext4` is listed in `/proc/filesystems` and `mkfs.ext4` exists
/// (the zone disk needs both).
pub fn ext4() -> Feature {
    let mkfs = crate::disk::image::mkfs_program();
    filesystem_feature("ext4", "ext4", "fs/ext4", Some(mkfs))
}

fn filesystem_feature(name: &str, fs: &str, module_dir: &str, tool: Option<PathBuf>) -> Feature {
    let listed = match std::fs::read_to_string("/proc/filesystems") {
        Ok(text) => text
            .lines()
            .any(|l| l.split_whitespace().last() == Some(fs)),
        Err(e) => return found(name, false, format!("cannot read /proc/filesystems: {e}")),
    };
    if !listed {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = Path::new("/lib/modules")
            .join(&release)
            .join("kernel")
            .join(module_dir);
        let hint = if dir.is_dir() {
            format!(
                "its module is in {} but not loaded: `modprobe` it at boot",
                dir.display()
            )
        } else {
            "and no module for it was found".to_string()
        };
        return found(
            name,
            false,
            format!("{fs} not in /proc/filesystems; {hint}"),
        );
    }
    match tool {
        Some(t) if !t.is_file() => found(
            name,
            false,
            format!("{fs} in /proc/filesystems, but {} not found", t.display()),
        ),
        Some(t) => found(
            name,
            true,
            format!("{fs} in /proc/filesystems; {} present", t.display()),
        ),
        None => found(name, true, format!("{fs} in /proc/filesystems")),
    }
}

/// `loop_devices`: `/dev/loop-control` opens and answers `LOOP_CTL_GET_FREE`.
pub fn loop_devices() -> Feature {
    match crate::disk::loopdev::free_loop_number() {
        Ok(n) => found(
            "loop_devices",
            true,
            format!("/dev/loop-control answered LOOP_CTL_GET_FREE: /dev/loop{n} is free"),
        ),
        Err(e) => found("loop_devices", false, e.to_string()),
    }
}

// ----------------------------------------------------------------- cgroups

/// `cgroup_v1`: v1 controller hierarchies in `/proc/self/mountinfo`.
pub fn cgroup_v1(m: &Layout) -> Feature {
    if m.v1.is_empty() {
        return found(
            "cgroup_v1",
            false,
            "no v1 controller hierarchy in /proc/self/mountinfo",
        );
    }
    let list: Vec<String> = m
        .v1_controllers()
        .into_iter()
        .map(|(c, p)| format!("{c} ({})", p.display()))
        .collect();
    found(
        "cgroup_v1",
        true,
        format!(
            "v1 controllers in /proc/self/mountinfo: {}",
            list.join(", ")
        ),
    )
}

/// `cgroup_v2`: a cgroup2 mount, with the controllers its root offers.
pub fn cgroup_v2(m: &Layout) -> Feature {
    let Some(root) = &m.unified else {
        return found(
            "cgroup_v2",
            false,
            "no cgroup2 mount in /proc/self/mountinfo",
        );
    };
    match m.v2_controllers() {
        Ok(c) => found(
            "cgroup_v2",
            true,
            format!(
                "cgroup2 mounted at {}; {}/cgroup.controllers: {}",
                root.display(),
                root.display(),
                if c.is_empty() {
                    "(none: every controller is bound to a v1 hierarchy)".to_string()
                } else {
                    c.join(" ")
                }
            ),
        ),
        Err(e) => found(
            "cgroup_v2",
            false,
            format!(
                "cgroup2 mounted at {} but cgroup.controllers unreadable: {e}",
                root.display()
            ),
        ),
    }
}

/// A cgroup created under the v2 root for a probe, removed on drop.
struct ProbeCgroup(PathBuf);

impl ProbeCgroup {
    fn create(m: &Layout) -> Result<Self, String> {
        let root = m.unified.as_ref().ok_or("no cgroup2 mount")?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = root.join(format!("zonefleet-probe-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create probe cgroup {}: {e}", dir.display()))?;
        Ok(ProbeCgroup(dir))
    }
}

impl Drop for ProbeCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `memory_swap_accounting`: v1 `memory.memsw.limit_in_bytes` exists, or
/// (memory on v2) a child cgroup gets `memory.swap.max`.
pub fn memory_swap_accounting(m: &Layout) -> Feature {
    const NAME: &str = "memory_swap_accounting";
    if let Some(mem) = m.v1_hierarchy("memory").map(|h| &h.mount) {
        let f = mem.join("memory.memsw.limit_in_bytes");
        return if f.exists() {
            found(NAME, true, format!("v1: {} exists", f.display()))
        } else {
            found(
                NAME,
                false,
                format!(
                    "v1: {} missing (kernel without CONFIG_MEMCG_SWAP, or booted with swapaccount=0)",
                    f.display()
                ),
            )
        };
    }
    let v2_has_memory = m
        .v2_controllers()
        .map(|c| c.iter().any(|c| c == "memory"))
        .unwrap_or(false);
    if !v2_has_memory {
        return found(NAME, false, "no memory controller on v1 or v2");
    }
    let root = m.unified.as_ref().expect("v2 controllers imply a v2 mount");
    let subtree = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
    if !subtree.split_whitespace().any(|c| c == "memory") {
        return found(
            NAME,
            false,
            format!(
                "v2: memory is not enabled in {}/cgroup.subtree_control, so no child cgroup gets memory.swap.max",
                root.display()
            ),
        );
    }
    match ProbeCgroup::create(m) {
        Err(why) => found(NAME, false, format!("v2: {why}")),
        Ok(cg) => {
            let f = cg.0.join("memory.swap.max");
            if f.exists() {
                found(
                    NAME,
                    true,
                    format!(
                        "v2: a probe cgroup under {} has memory.swap.max",
                        root.display()
                    ),
                )
            } else {
                found(
                    NAME,
                    false,
                    format!("v2: a probe cgroup under {} has no memory.swap.max (kernel without swap accounting)", root.display()),
                )
            }
        }
    }
}

/// `cgroup_kill`: a child cgroup on v2 has `cgroup.kill` (Linux 5.14+).
pub fn cgroup_kill(m: &Layout) -> Feature {
    const NAME: &str = "cgroup_kill";
    match ProbeCgroup::create(m) {
        Err(why) => found(NAME, false, why),
        Ok(cg) => {
            if cg.0.join("cgroup.kill").exists() {
                found(
                    NAME,
                    true,
                    format!(
                        "a probe cgroup under {} has cgroup.kill",
                        cg.0.parent().unwrap_or(Path::new("/")).display()
                    ),
                )
            } else {
                found(
                    NAME,
                    false,
                    "a v2 probe cgroup has no cgroup.kill (kernel older than 5.14)",
                )
            }
        }
    }
}

// ----------------------------------------------------------------- network

const NETLINK_ROUTE: libc::c_int = 0;
const NETLINK_NETFILTER: libc::c_int = 12;
const NLMSG_ERROR: u16 = 2;
/// Ifindexes the probes request for their links (a new namespace has only
/// `lo`, index 1), so later messages can name earlier links.
const IDX_A: u32 = 100;
const IDX_B: u32 = 101;
const IDX_C: u32 = 102;

/// One netlink request and the sequence number its ack carries.
struct Request {
    bytes: Vec<u8>,
    seq: u32,
}

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

/// The error code of the first `NLMSG_ERROR` in `buf` that is a failure or
/// acks `seq`. Allocation- and panic-free (runs in a forked child).
fn ack_code(buf: &[u8], seq: u32) -> Option<i32> {
    let mut off = 0usize;
    loop {
        let hdr = buf.get(off..off.checked_add(16)?)?;
        let len = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        let ty = u16::from_ne_bytes([hdr[4], hdr[5]]);
        let mseq = u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
        if ty == NLMSG_ERROR {
            let e = buf.get(off + 16..off + 20)?;
            let code = i32::from_ne_bytes([e[0], e[1], e[2], e[3]]);
            if code != 0 || mseq == seq {
                return Some(code);
            }
        }
        if len < 16 {
            return None;
        }
        off = off.checked_add((len + 3) & !3)?;
    }
}

fn child_codes(
    child: Result<super::child::ChildResult, nix::errno::Errno>,
    expected: usize,
) -> Result<Vec<i32>, String> {
    let child = child.map_err(|e| format!("cannot fork a probe child: {e}"))?;
    if let Some(why) = child.failure() {
        return Err(why);
    }
    let codes = child.codes();
    if codes.is_empty() {
        return Err(format!(
            "probe child reported {} of {expected} results",
            codes.len()
        ));
    }
    let mut codes = codes;
    codes.resize(expected, i32::MIN);
    Ok(codes)
}

/// An `RTM_NEWLINK` request (create, or change an existing link when
/// `create` is false).
fn new_link(
    seq: u32,
    index: u32,
    name: &str,
    lower: Option<u32>,
    info: Vec<LinkInfo>,
    create: bool,
) -> Request {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    if let Some(l) = lower {
        msg.attributes.push(LinkAttribute::Link(l));
    }
    msg.attributes.push(LinkAttribute::LinkInfo(info));
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | if create { NLM_F_CREATE | NLM_F_EXCL } else { 0 };
    header.sequence_number = seq;
    let mut nl = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::NewLink(msg)),
    );
    nl.finalize();
    let mut bytes = vec![0; nl.buffer_len()];
    nl.serialize(&mut bytes);
    Request { bytes, seq }
}

fn veth_pair(seq: u32) -> Request {
    let mut peer = LinkMessage::default();
    peer.header.index = IDX_B;
    peer.attributes
        .push(LinkAttribute::IfName("zfprobe-b".into()));
    new_link(
        seq,
        IDX_A,
        "zfprobe-a",
        None,
        vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ],
        true,
    )
}

fn bridge(seq: u32) -> Request {
    new_link(
        seq,
        IDX_A,
        "zfprobe-br",
        None,
        vec![LinkInfo::Kind(InfoKind::Bridge)],
        true,
    )
}

/// An nf_tables batch creating table `inet zfprobe` (ack on `seq` 2).
fn nft_new_table() -> Request {
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
    const NFNL_MSG_BATCH_END: u16 = 0x11;
    const NFT_MSG_NEWTABLE: u16 = 0;
    const NFPROTO_INET: u8 = 1;
    const NFTA_TABLE_NAME: u16 = 1;
    fn msg(
        v: &mut Vec<u8>,
        ty: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
        attr: Option<(u16, &[u8])>,
    ) {
        let start = v.len();
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&[family, 0]);
        v.extend_from_slice(&res_id.to_be_bytes());
        if let Some((t, data)) = attr {
            v.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            v.extend_from_slice(&t.to_ne_bytes());
            v.extend_from_slice(data);
            while !v.len().is_multiple_of(4) {
                v.push(0);
            }
        }
        let len = (v.len() - start) as u32;
        v[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }
    let mut v = Vec::new();
    msg(
        &mut v,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        1,
        0,
        NFNL_SUBSYS_NFTABLES,
        None,
    );
    msg(
        &mut v,
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
        2,
        NFPROTO_INET,
        0,
        Some((NFTA_TABLE_NAME, b"zfprobe\0")),
    );
    msg(
        &mut v,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        3,
        0,
        NFNL_SUBSYS_NFTABLES,
        None,
    );
    Request { bytes: v, seq: 2 }
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
    let veth = link_feature("veth", "created a veth pair", &[veth_pair(1)], &[]);
    let br = link_feature("bridge", "created a bridge", &[bridge(1)], &[]);
    let vlan_filtering = link_feature(
        "bridge_vlan_filtering",
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
        "vlan_8021q",
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
        "macvlan",
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
        "vxlan",
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
        NetProbe::Failed(why) => found("nftables", false, format!("cannot probe: {why}; {nft_bin}")),
        NetProbe::Answers(c) if c[0] == 0 => found(
            "nftables",
            true,
            format!("created table inet zfprobe over nf_tables netlink {IN_NETNS}; {nft_bin}"),
        ),
        NetProbe::Answers(c) => found(
            "nftables",
            false,
            format!(
                "creating table inet zfprobe over nf_tables netlink {IN_NETNS} refused: {}; {nft_bin}",
                describe_code(c[0])
            ),
        ),
    };
    vec![veth, br, vlan_filtering, vlan, macvlan, vxlan, nftables]
}

/// A field of `/proc/self/status`.
fn proc_status_field(field: &str) -> Option<String> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_code_finds_errors_and_our_ack() {
        let mut m = Vec::new();
        // an unrelated message, then an ack for seq 7
        for (ty, seq, code) in [(16u16, 3u32, 0i32), (NLMSG_ERROR, 7, 0)] {
            m.extend_from_slice(&20u32.to_ne_bytes());
            m.extend_from_slice(&ty.to_ne_bytes());
            m.extend_from_slice(&0u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(&code.to_ne_bytes());
        }
        assert_eq!(ack_code(&m, 7), Some(0));
        assert_eq!(ack_code(&m, 8), None);
        m[36..40].copy_from_slice(&(-95i32).to_ne_bytes());
        assert_eq!(ack_code(&m, 8), Some(-95));
        assert_eq!(ack_code(&m[..30], 7), None);
        assert_eq!(ack_code(&[], 7), None);
    }

    #[test]
    fn nft_batch_is_well_formed() {
        let r = nft_new_table();
        assert_eq!(r.bytes.len() % 4, 0);
        let first = u32::from_ne_bytes(r.bytes[0..4].try_into().unwrap());
        assert_eq!(first, 20);
    }
}
