//! The netlink messages the network probes send, built before the fork (the
//! probe child only sends them and reads the acks, without allocating).

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::net::netlink;

pub(super) const NETLINK_ROUTE: libc::c_int = 0;
pub(super) const NETLINK_NETFILTER: libc::c_int = 12;
pub(super) const NLMSG_ERROR: u16 = 2;
/// Ifindexes the probes request for their links (a new namespace has only
/// `lo`, index 1), so later messages can name earlier links.
pub(super) const IDX_A: u32 = 100;
pub(super) const IDX_B: u32 = 101;
pub(super) const IDX_C: u32 = 102;

/// One netlink request and the sequence number its ack carries.
pub(super) struct Request {
    /// The message (or nf_tables batch).
    pub(super) bytes: Vec<u8>,
    /// The sequence number of the message whose ack answers it.
    pub(super) seq: u32,
}

/// The error code of the first `NLMSG_ERROR` in `buf` that is a failure or
/// acks `seq`. Allocation- and panic-free (runs in a forked child).
pub(super) fn ack_code(buf: &[u8], seq: u32) -> Option<i32> {
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

/// An `RTM_NEWLINK` request (create, or change an existing link when
/// `create` is false).
pub(super) fn new_link(
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
    Request {
        bytes: netlink::encode(
            RouteNetlinkMessage::NewLink(msg),
            netlink::change_flags(create),
            seq,
        ),
        seq,
    }
}

pub(super) fn veth_pair(seq: u32) -> Request {
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

pub(super) fn bridge(seq: u32) -> Request {
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
pub(super) fn nft_new_table() -> Request {
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
