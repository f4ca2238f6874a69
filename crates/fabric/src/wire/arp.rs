//! ARP for IPv4 over Ethernet (RFC 826): the only kind the fabric accepts.

use std::net::Ipv4Addr;

use super::ethernet::Mac;
use super::{get_u16, get_u32, put_u16, WireError};

/// An Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// The operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpOp {
    /// 1: who has `target_ip`? tell `sender_ip`.
    Request,
    /// 2: `sender_ip` is at `sender_mac`.
    Reply,
    /// Anything else (RARP, InARP, ...).
    Other(u16),
}

impl From<u16> for ArpOp {
    fn from(v: u16) -> ArpOp {
        match v {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            other => ArpOp::Other(other),
        }
    }
}

impl From<ArpOp> for u16 {
    fn from(op: ArpOp) -> u16 {
        match op {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
            ArpOp::Other(v) => v,
        }
    }
}

/// A view of an ARP packet.
#[derive(Clone, Copy, Debug)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// A view without checks: for buffers of at least [`PACKET_LEN`] bytes the caller built.
    pub fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// A view of untrusted bytes: long enough, and hardware type Ethernet (1) with 6-byte
    /// addresses, protocol type IPv4 (0x0800) with 4-byte addresses.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(WireError::Truncated("ARP packet"));
        }
        if get_u16(b, 0) != 1 || get_u16(b, 2) != 0x0800 || b[4] != 6 || b[5] != 4 {
            return Err(WireError::Malformed("ARP packet (not Ethernet/IPv4)"));
        }
        Ok(ArpPacket { buffer })
    }

    /// The operation.
    pub fn op(&self) -> ArpOp {
        ArpOp::from(get_u16(self.buffer.as_ref(), 6))
    }

    /// The sender's hardware address.
    pub fn sender_mac(&self) -> Mac {
        mac_at(self.buffer.as_ref(), 8)
    }

    /// The sender's IPv4 address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(self.buffer.as_ref(), 14))
    }

    /// The target's hardware address (zero in a request).
    pub fn target_mac(&self) -> Mac {
        mac_at(self.buffer.as_ref(), 18)
    }

    /// The target's IPv4 address.
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(self.buffer.as_ref(), 24))
    }
}

fn mac_at(b: &[u8], at: usize) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    Mac(m)
}

/// An Ethernet/IPv4 ARP packet's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    /// The operation.
    pub op: ArpOp,
    /// The sender's hardware address.
    pub sender_mac: Mac,
    /// The sender's IPv4 address.
    pub sender_ip: Ipv4Addr,
    /// The target's hardware address.
    pub target_mac: Mac,
    /// The target's IPv4 address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// The fields of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> ArpRepr {
        ArpRepr {
            op: p.op(),
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        }
    }

    /// Writes the packet into the first [`PACKET_LEN`] bytes of `b`.
    pub fn emit(&self, b: &mut [u8]) {
        put_u16(b, 0, 1);
        put_u16(b, 2, 0x0800);
        b[4] = 6;
        b[5] = 4;
        put_u16(b, 6, self.op.into());
        b[8..14].copy_from_slice(&self.sender_mac.0);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac.0);
        b[24..28].copy_from_slice(&self.target_ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// who-has 10.77.0.3 tell 10.77.0.2, from 02:00:0a:4d:00:02.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x4d, 0x00, 0x02, 10, 77,
        0, 2, 0, 0, 0, 0, 0, 0, 10, 77, 0, 3,
    ];

    #[test]
    fn parses_and_emits_the_same_bytes() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        let repr = ArpRepr::parse(&p);
        assert_eq!(
            repr,
            ArpRepr {
                op: ArpOp::Request,
                sender_mac: Mac([2, 0, 10, 77, 0, 2]),
                sender_ip: Ipv4Addr::new(10, 77, 0, 2),
                target_mac: Mac::ZERO,
                target_ip: Ipv4Addr::new(10, 77, 0, 3),
            }
        );
        let mut out = [0u8; 28];
        repr.emit(&mut out);
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn refuses_short_and_foreign_packets() {
        assert_eq!(
            ArpPacket::new_checked(&REQUEST[..27]).unwrap_err(),
            WireError::Truncated("ARP packet")
        );
        for (at, v) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut b = REQUEST;
            b[at] = v;
            assert!(matches!(
                ArpPacket::new_checked(&b[..]),
                Err(WireError::Malformed(_))
            ));
        }
    }
}
