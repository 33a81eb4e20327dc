//! A small blocking rtnetlink client: messages built and parsed with
//! `netlink-packet-route`, sent over a plain `AF_NETLINK` socket. Blocking on
//! purpose: zsched is single-threaded and forks, so an async runtime
//! (`rtnetlink` needs tokio) buys nothing there and costs a thread pool.
//!
//! A socket talks to the network namespace it was opened in; [`Netlink::open_in`]
//! opens one inside a zone's namespace by entering it for the `socket()` call only.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::NetError;

/// A blocking rtnetlink socket in one network namespace.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// What a new veth pair looks like.
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    /// Name of the end that stays in this namespace.
    pub host: &'a str,
    /// Name of the other end.
    pub peer: &'a str,
    /// MAC of the other end.
    pub peer_mac: [u8; 6],
    /// MTU of both ends.
    pub mtu: u32,
    /// The namespace the other end is created in (`None`: this one).
    pub peer_netns: Option<BorrowedFd<'a>>,
}

fn fail(what: impl Into<String>) -> impl FnOnce(nix::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Netlink { what, source }
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink, NetError> {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(fail("open a netlink socket")(nix::Error::last()));
        }
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a pointer to a live timeval of the stated size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(Netlink { fd, seq: 0 })
    }

    /// A socket inside the network namespace `netns`: the calling thread
    /// enters it for the `socket()` call and returns to its own namespace.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Netlink, NetError> {
        use nix::sched::{setns, CloneFlags};
        let here = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| {
            fail("open /proc/thread-self/ns/net")(nix::Error::from_raw(
                e.raw_os_error().unwrap_or(libc::EIO),
            ))
        })?;
        setns(netns, CloneFlags::CLONE_NEWNET).map_err(fail("enter the zone's netns"))?;
        let socket = Netlink::open();
        if let Err(e) = setns(here.as_fd(), CloneFlags::CLONE_NEWNET) {
            // Staying in the zone's namespace would configure the wrong links.
            eprintln!("zonefleet: cannot return to the host's network namespace: {e}");
            std::process::abort();
        }
        socket
    }

    /// Sends `msg` with `flags` and waits for the kernel's answer; returns the
    /// answers (for a `GET`), or an empty list once acked.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, nix::Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = encode(msg, flags, seq);
        // SAFETY: send(2) of a live buffer of the stated length on our socket.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if sent < 0 {
            return Err(nix::Error::last());
        }
        let mut answers = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: recv(2) into a live buffer of the stated length.
            let got =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let received = if got < 0 {
                Err(nix::Error::last())
            } else {
                Ok(got as usize)
            };
            let n = match received {
                Err(nix::Error::EINTR) => continue,
                Err(nix::Error::EAGAIN) => return Err(nix::Error::ETIMEDOUT),
                Err(e) => return Err(e),
                Ok(n) => n,
            };
            let mut off = 0;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
                if len < 16 || off + len > n {
                    return Err(nix::Error::EBADMSG);
                }
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..off + len])
                    .map_err(|_| nix::Error::EBADMSG)?;
                off += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(code) => Err(nix::Error::from_raw(-code.get())),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(m) => {
                        answers.push(m);
                        if flags & NLM_F_ACK == 0 && msg.header.flags & 2 == 0 {
                            // A single (non-multipart) answer to a GET.
                            return Ok(answers);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn ack(&mut self, msg: RouteNetlinkMessage, create: bool) -> Result<(), nix::Error> {
        self.request(msg, change_flags(create)).map(|_| ())
    }

    /// The index of link `name`, if it exists.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, NetError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(nix::Error::ENODEV) => Ok(None),
            Err(e) => Err(fail(format!("look up link {name}"))(e)),
        }
    }

    /// The kind of link `index` (`bridge`, `veth`…), if the kernel says.
    pub fn link_kind(&mut self, index: u32) -> Result<Option<String>, NetError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let answers = self
            .request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST)
            .map_err(fail(format!("look up link #{index}")))?;
        for m in answers {
            if let RouteNetlinkMessage::NewLink(l) = m {
                for a in l.attributes {
                    if let LinkAttribute::LinkInfo(infos) = a {
                        for i in infos {
                            if let LinkInfo::Kind(k) = i {
                                return Ok(Some(k.to_string()));
                            }
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Creates a veth pair; the peer may be created straight in another namespace.
    pub fn create_veth(&mut self, veth: &VethSpec<'_>) -> Result<(), NetError> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(veth.peer.to_string()));
        peer.attributes
            .push(LinkAttribute::Address(veth.peer_mac.to_vec()));
        peer.attributes.push(LinkAttribute::Mtu(veth.mtu));
        if let Some(ns) = veth.peer_netns {
            peer.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(veth.host.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(veth.mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.ack(RouteNetlinkMessage::NewLink(msg), true)
            .map_err(fail(format!(
                "create veth pair {} / {}",
                veth.host, veth.peer
            )))
    }

    /// Creates a bridge with a fixed MAC (so it does not change as ports come
    /// and go).
    pub fn create_bridge(&mut self, name: &str, mac: [u8; 6]) -> Result<(), NetError> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.ack(RouteNetlinkMessage::NewLink(msg), true)
            .map_err(fail(format!("create bridge {name}")))
    }

    /// Sets link `index` up, and (when given) makes it a port of `master`.
    pub fn set_up(&mut self, index: u32, master: Option<u32>) -> Result<(), NetError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        if let Some(m) = master {
            msg.attributes.push(LinkAttribute::Controller(m));
        }
        self.ack(RouteNetlinkMessage::SetLink(msg), false)
            .map_err(fail(format!("set link #{index} up")))
    }

    /// Deletes link `index` (a veth takes its peer with it).
    pub fn delete_link(&mut self, index: u32) -> Result<(), NetError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.ack(RouteNetlinkMessage::DelLink(msg), false) {
            Ok(()) | Err(nix::Error::ENODEV) => Ok(()),
            Err(e) => Err(fail(format!("delete link #{index}"))(e)),
        }
    }

    /// Deletes link `name` if it exists.
    pub fn delete_link_named(&mut self, name: &str) -> Result<(), NetError> {
        match self.link_index(name)? {
            Some(i) => self.delete_link(i),
            None => Ok(()),
        }
    }

    /// Adds `ip` (address/prefix) to link `index`.
    pub fn add_address(&mut self, index: u32, ip: IpNet) -> Result<(), NetError> {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = ip.prefix_len();
        msg.header.family = family(ip.addr());
        msg.attributes.push(AddressAttribute::Address(ip.addr()));
        msg.attributes.push(AddressAttribute::Local(ip.addr()));
        if let IpNet::V4(v4) = ip {
            if v4.prefix_len() < 31 {
                msg.attributes
                    .push(AddressAttribute::Broadcast(v4.broadcast()));
            }
        }
        self.ack(RouteNetlinkMessage::NewAddress(msg), true)
            .map_err(fail(format!("add address {ip} to link #{index}")))
    }

    /// Adds the default route via `gateway` out of link `index`.
    pub fn add_default_route(&mut self, index: u32, gateway: IpAddr) -> Result<(), NetError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(gateway);
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.header.destination_prefix_length = 0;
        match gateway {
            IpAddr::V4(g) => msg
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(g))),
            IpAddr::V6(g) => msg
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet6(g))),
        }
        msg.attributes.push(RouteAttribute::Oif(index));
        self.ack(RouteNetlinkMessage::NewRoute(msg), true)
            .map_err(fail(format!("add default route via {gateway}")))
    }
}

/// The bytes of `msg` as one netlink message with `flags` and sequence number
/// `seq` (also what the sysinfo probes send from their forked children).
pub(crate) fn encode(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    nl.finalize();
    let mut bytes = vec![0; nl.buffer_len()];
    nl.serialize(&mut bytes);
    bytes
}

/// The flags of an acked change request: create (and fail if it exists), or
/// change what exists.
pub(crate) fn change_flags(create: bool) -> u16 {
    NLM_F_REQUEST | NLM_F_ACK | if create { NLM_F_CREATE | NLM_F_EXCL } else { 0 }
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}
