//! Whole frames built from their fields: for tests, benchmarks, and test drivers that play a
//! guest (the gateway will build its frames the same way). Each function returns a complete
//! Ethernet frame with valid lengths and checksums; callers that want a broken one break it
//! afterwards.

use std::net::Ipv4Addr;

use super::checksum;
use super::ethernet::{self, EtherType, EthernetFrame, Mac};
use super::ipv4::{self, IpProtocol, Ipv4Repr};
use super::tcp::{TcpFlags, TcpRepr};
use super::{arp, put_u16, ArpOp, ArpRepr};

/// One end of a flow: a MAC, an address and a transport port (ICMP ignores the port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    /// The MAC.
    pub mac: Mac,
    /// The IPv4 address.
    pub ip: Ipv4Addr,
    /// The TCP or UDP port.
    pub port: u16,
}

impl Host {
    /// `mac`, `ip`, `port`.
    pub fn new(mac: Mac, ip: Ipv4Addr, port: u16) -> Host {
        Host { mac, ip, port }
    }

    /// The same host on another transport port.
    pub fn port(self, port: u16) -> Host {
        Host { port, ..self }
    }
}

/// An Ethernet frame from `src` to `dst` carrying `payload`.
pub fn ethernet(src: Mac, dst: Mac, ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; ethernet::HEADER_LEN + payload.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut b[..]);
    eth.set_src(src);
    eth.set_dst(dst);
    eth.set_ethertype(ethertype);
    eth.payload_mut().copy_from_slice(payload);
    b
}

/// An IPv4 frame (20-byte header, DF, TTL 64) from `src` to `dst` carrying `payload` over
/// `protocol`.
pub fn ipv4(src: &Host, dst: &Host, protocol: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0u8; ipv4::MIN_HEADER_LEN + payload.len()];
    Ipv4Repr {
        src: src.ip,
        dst: dst.ip,
        protocol,
        payload_len: payload.len(),
        ttl: 64,
    }
    .emit(&mut ip);
    ip[ipv4::MIN_HEADER_LEN..].copy_from_slice(payload);
    ethernet(src.mac, dst.mac, EtherType::Ipv4, &ip)
}

/// A TCP segment from `src` to `dst` with `flags`, `seq`, `ack` and `data`.
pub fn tcp(src: &Host, dst: &Host, flags: TcpFlags, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    let mut seg = vec![0u8; 20 + data.len()];
    seg[20..].copy_from_slice(data);
    TcpRepr {
        src_port: src.port,
        dst_port: dst.port,
        seq,
        ack,
        flags,
        window: 65535,
    }
    .emit(&mut seg, src.ip, dst.ip);
    ipv4(src, dst, IpProtocol::Tcp, &seg)
}

/// A UDP datagram from `src` to `dst` carrying `data`.
pub fn udp(src: &Host, dst: &Host, data: &[u8]) -> Vec<u8> {
    let len = 8 + data.len();
    let mut d = vec![0u8; len];
    put_u16(&mut d, 0, src.port);
    put_u16(&mut d, 2, dst.port);
    put_u16(&mut d, 4, len as u16);
    d[8..].copy_from_slice(data);
    let pseudo = checksum::pseudo_header_sum(src.ip, dst.ip, IpProtocol::Udp.number(), len as u16);
    let sum = checksum::checksum(pseudo, &d);
    put_u16(&mut d, 6, if sum == 0 { 0xffff } else { sum });
    ipv4(src, dst, IpProtocol::Udp, &d)
}

/// An ICMP echo request (`request`) or reply from `src` to `dst` with identifier `ident`.
pub fn icmp_echo(src: &Host, dst: &Host, request: bool, ident: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![0u8; 8 + 8];
    m[0] = if request {
        super::icmp::ECHO_REQUEST
    } else {
        super::icmp::ECHO_REPLY
    };
    put_u16(&mut m, 4, ident);
    put_u16(&mut m, 6, seq);
    m[8..].copy_from_slice(b"sturdy!!");
    let sum = checksum::checksum(0, &m);
    put_u16(&mut m, 2, sum);
    ipv4(src, dst, IpProtocol::Icmp, &m)
}

/// An ARP packet in a frame from `eth_src` to `eth_dst`.
pub fn arp(eth_src: Mac, eth_dst: Mac, repr: ArpRepr) -> Vec<u8> {
    let mut p = [0u8; arp::PACKET_LEN];
    repr.emit(&mut p);
    ethernet(eth_src, eth_dst, EtherType::Arp, &p)
}

/// `who-has target tell src`, broadcast, as a guest's stack sends it.
pub fn arp_request(src: &Host, target: Ipv4Addr) -> Vec<u8> {
    arp(
        src.mac,
        Mac::BROADCAST,
        ArpRepr {
            op: ArpOp::Request,
            sender_mac: src.mac,
            sender_ip: src.ip,
            target_mac: Mac::ZERO,
            target_ip: target,
        },
    )
}
