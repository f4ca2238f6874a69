//! Ethernet II frames (IEEE 802.3 with an EtherType; no FCS: a port carries frames without it,
//! as a TAP device and Solo5's NET_WRITE do, docs/hvt-abi.md, Hypercalls).

use std::fmt;
use std::str::FromStr;

use super::{get_u16, put_u16, WireError};

/// Destination, source, EtherType.
pub const HEADER_LEN: usize = 14;

/// A MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    /// 00:00:00:00:00:00 (the unknown target of an ARP request).
    pub const ZERO: Mac = Mac([0; 6]);

    /// The broadcast address.
    pub fn is_broadcast(self) -> bool {
        self == Mac::BROADCAST
    }

    /// A group address (the I/G bit): multicast or broadcast.
    pub fn is_group(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// A group address other than broadcast.
    pub fn is_multicast(self) -> bool {
        self.is_group() && !self.is_broadcast()
    }

    /// An individual address other than all-zero.
    pub fn is_unicast(self) -> bool {
        !self.is_group() && self != Mac::ZERO
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// `aa:bb:cc:dd:ee:ff` is not a MAC address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a MAC address (expected six hexadecimal pairs such as 02:00:0a:4d:00:02)")]
pub struct MacParseError(pub String);

impl FromStr for Mac {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Mac, MacParseError> {
        let err = || MacParseError(s.to_string());
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut mac {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        match parts.next() {
            None => Ok(Mac(mac)),
            Some(_) => Err(err()),
        }
    }
}

/// The EtherTypes the fabric tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtherType {
    /// 0x0800.
    Ipv4,
    /// 0x0806.
    Arp,
    /// 0x86dd.
    Ipv6,
    /// Anything else (VLAN tags, LLDP, 802.3 length fields, ...).
    Other(u16),
}

impl EtherType {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

impl From<u16> for EtherType {
    fn from(v: u16) -> EtherType {
        match v {
            EtherType::IPV4 => EtherType::Ipv4,
            EtherType::ARP => EtherType::Arp,
            EtherType::IPV6 => EtherType::Ipv6,
            other => EtherType::Other(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> u16 {
        match v {
            EtherType::Ipv4 => EtherType::IPV4,
            EtherType::Arp => EtherType::ARP,
            EtherType::Ipv6 => EtherType::IPV6,
            EtherType::Other(other) => other,
        }
    }
}

/// A view of an Ethernet II frame.
#[derive(Clone, Copy, Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// A view without checks: for buffers of at least [`HEADER_LEN`] bytes the caller built.
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// A view of untrusted bytes: they hold at least the header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated("Ethernet header"));
        }
        Ok(EthernetFrame { buffer })
    }

    /// The destination address.
    pub fn dst(&self) -> Mac {
        let b = self.buffer.as_ref();
        Mac([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The source address.
    pub fn src(&self) -> Mac {
        let b = self.buffer.as_ref();
        Mac([b[6], b[7], b[8], b[9], b[10], b[11]])
    }

    /// The EtherType.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(get_u16(self.buffer.as_ref(), 12))
    }

    /// What follows the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The whole frame.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst(&mut self, mac: Mac) {
        self.buffer.as_mut()[0..6].copy_from_slice(&mac.0);
    }

    /// Sets the source address.
    pub fn set_src(&mut self, mac: Mac) {
        self.buffer.as_mut()[6..12].copy_from_slice(&mac.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        put_u16(self.buffer.as_mut(), 12, ethertype.into());
    }

    /// What follows the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x0a, 0x4d, 0x00, 0x02, 0x08, 0x06, 0xaa,
        0xbb,
    ];

    #[test]
    fn reads_the_header() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert!(f.dst().is_broadcast());
        assert_eq!(f.src(), Mac([2, 0, 10, 77, 0, 2]));
        assert_eq!(f.ethertype(), EtherType::Arp);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn refuses_fewer_than_14_bytes() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME[..13]).unwrap_err(),
            WireError::Truncated("Ethernet header")
        );
        assert!(EthernetFrame::new_checked(&FRAME[..14]).is_ok());
    }

    #[test]
    fn writes_the_header() {
        let mut b = FRAME;
        let mut f = EthernetFrame::new_unchecked(&mut b[..]);
        f.set_dst(Mac([2, 0, 0, 0, 0, 9]));
        f.set_src(Mac([2, 0, 0, 0, 0, 8]));
        f.set_ethertype(EtherType::Ipv6);
        assert_eq!(&b[..14], &[2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 8, 0x86, 0xdd]);
    }

    #[test]
    fn mac_kinds_and_text() {
        assert!(Mac([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!Mac::BROADCAST.is_multicast());
        assert!(Mac::BROADCAST.is_group());
        assert!(Mac([2, 0, 0, 0, 0, 1]).is_unicast());
        assert!(!Mac::ZERO.is_unicast());
        let m: Mac = "02:00:0a:4d:00:02".parse().unwrap();
        assert_eq!(m, Mac([2, 0, 10, 77, 0, 2]));
        assert_eq!(m.to_string(), "02:00:0a:4d:00:02");
        for bad in [
            "",
            "02:00:0a:4d:00",
            "02:00:0a:4d:00:02:03",
            "2:00:0a:4d:00:02",
            "zz:00:0a:4d:00:02",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
