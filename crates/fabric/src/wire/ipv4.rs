//! IPv4 headers (RFC 791), with the fragment fields and the header checksum.

use std::net::Ipv4Addr;

use super::checksum;
use super::{get_u16, get_u32, put_u16, WireError};

/// The header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// The transport protocols the fabric tells apart (RFC 790 numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// 1.
    Icmp,
    /// 6.
    Tcp,
    /// 17.
    Udp,
    /// Anything else.
    Other(u8),
}

impl IpProtocol {
    /// The protocol number.
    pub fn number(self) -> u8 {
        match self {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Other(n) => n,
        }
    }
}

impl From<u8> for IpProtocol {
    fn from(n: u8) -> IpProtocol {
        match n {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            n => IpProtocol::Other(n),
        }
    }
}

/// A view of an IPv4 packet.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view without checks: for packets the caller built.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// A view of untrusted bytes: version 4, a header length of at least 20 bytes, a total
    /// length that covers the header and fits in the bytes (which may be longer: Ethernet pads
    /// short frames). The checksum is [`verify_checksum`](Self::verify_checksum)'s business.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated("IPv4 header"));
        }
        if b[0] >> 4 != 4 {
            return Err(WireError::Malformed("IPv4 header (version is not 4)"));
        }
        let header_len = usize::from(b[0] & 0x0f) * 4;
        if header_len < MIN_HEADER_LEN {
            return Err(WireError::Malformed("IPv4 header (header length below 20)"));
        }
        if b.len() < header_len {
            return Err(WireError::Truncated("IPv4 header options"));
        }
        let total_len = usize::from(get_u16(b, 2));
        if total_len < header_len {
            return Err(WireError::Malformed(
                "IPv4 header (total length below the header length)",
            ));
        }
        if b.len() < total_len {
            return Err(WireError::Truncated("IPv4 packet"));
        }
        Ok(Ipv4Packet { buffer })
    }

    /// The header length in bytes (20 to 60).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[0] & 0x0f) * 4
    }

    /// The total length in bytes, header included.
    pub fn total_len(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), 2))
    }

    /// Whether the header carries options.
    pub fn has_options(&self) -> bool {
        self.header_len() > MIN_HEADER_LEN
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 4)
    }

    /// Don't Fragment.
    pub fn dont_frag(&self) -> bool {
        self.buffer.as_ref()[6] & 0x40 != 0
    }

    /// More Fragments.
    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[6] & 0x20 != 0
    }

    /// The fragment offset, in bytes.
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buffer.as_ref(), 6) & 0x1fff) << 3
    }

    /// Whether this is a fragment of a larger datagram (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[8]
    }

    /// The transport protocol.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[9])
    }

    /// The source address.
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(self.buffer.as_ref(), 12))
    }

    /// The destination address.
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(self.buffer.as_ref(), 16))
    }

    /// Whether the header checksum is right (the header sums to all ones).
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(0, &self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }

    /// The transport payload: from the end of the header to the total length (Ethernet
    /// padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }
}

/// The fields of an IPv4 header without options, for packets the fabric writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// The source address.
    pub src: Ipv4Addr,
    /// The destination address.
    pub dst: Ipv4Addr,
    /// The transport protocol.
    pub protocol: IpProtocol,
    /// The payload's length.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Writes a 20-byte header with Don't Fragment and its checksum at the start of `b`.
    pub fn emit(&self, b: &mut [u8]) {
        b[0] = 0x45;
        b[1] = 0;
        put_u16(b, 2, (MIN_HEADER_LEN + self.payload_len) as u16);
        put_u16(b, 4, 0);
        put_u16(b, 6, 0x4000);
        b[8] = self.ttl;
        b[9] = self.protocol.number();
        put_u16(b, 10, 0);
        b[12..16].copy_from_slice(&self.src.octets());
        b[16..20].copy_from_slice(&self.dst.octets());
        let sum = checksum::checksum(0, &b[..MIN_HEADER_LEN]);
        put_u16(b, 10, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.77.0.2 -> 10.77.0.3, TCP, 40 bytes, DF, TTL 64, checksum set.
    fn header() -> [u8; 40] {
        let mut b = [0u8; 40];
        Ipv4Repr {
            src: Ipv4Addr::new(10, 77, 0, 2),
            dst: Ipv4Addr::new(10, 77, 0, 3),
            protocol: IpProtocol::Tcp,
            payload_len: 20,
            ttl: 64,
        }
        .emit(&mut b);
        b
    }

    #[test]
    fn emits_a_header_that_parses_back() {
        let b = header();
        assert_eq!(
            &b[..12],
            &[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0x26, 0x32]
        );
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.src(), Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(p.dst(), Ipv4Addr::new(10, 77, 0, 3));
        assert_eq!(p.protocol(), IpProtocol::Tcp);
        assert!(p.dont_frag() && !p.is_fragment() && !p.has_options());
        assert_eq!(p.payload().len(), 20);
    }

    #[test]
    fn checksum_catches_a_flipped_bit() {
        let mut b = header();
        b[15] ^= 1;
        assert!(!Ipv4Packet::new_checked(&b[..]).unwrap().verify_checksum());
    }

    #[test]
    fn fragment_bits() {
        let mut b = header();
        b[6] = 0x20; // MF
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().is_fragment());
        b[6] = 0x00;
        b[7] = 0x01; // offset 8
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.frag_offset(), 8);
        assert!(p.is_fragment());
    }

    #[test]
    fn refuses_inconsistent_lengths() {
        let b = header();
        assert_eq!(
            Ipv4Packet::new_checked(&b[..19]).unwrap_err(),
            WireError::Truncated("IPv4 header")
        );
        assert_eq!(
            Ipv4Packet::new_checked(&b[..39]).unwrap_err(),
            WireError::Truncated("IPv4 packet")
        );
        let mut v6 = b;
        v6[0] = 0x65;
        assert!(matches!(
            Ipv4Packet::new_checked(&v6[..]),
            Err(WireError::Malformed(_))
        ));
        let mut short_ihl = b;
        short_ihl[0] = 0x44;
        assert!(matches!(
            Ipv4Packet::new_checked(&short_ihl[..]),
            Err(WireError::Malformed(_))
        ));
        let mut long_ihl = b;
        long_ihl[0] = 0x4f; // 60 bytes of header in 40 bytes
        assert_eq!(
            Ipv4Packet::new_checked(&long_ihl[..]).unwrap_err(),
            WireError::Truncated("IPv4 header options")
        );
        let mut small_total = b;
        small_total[3] = 19;
        assert!(matches!(
            Ipv4Packet::new_checked(&small_total[..]),
            Err(WireError::Malformed(_))
        ));
        // Padding after the total length is allowed and not part of the payload.
        let mut padded = [0u8; 60];
        padded[..40].copy_from_slice(&b);
        assert_eq!(
            Ipv4Packet::new_checked(&padded[..])
                .unwrap()
                .payload()
                .len(),
            20
        );
    }
}
