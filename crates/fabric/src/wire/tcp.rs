//! TCP segment headers (RFC 9293 3.1): ports, sequence numbers and flags; the fabric never
//! looks at options or payload bytes.

use std::fmt;
use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::IpProtocol;
use super::{get_u16, get_u32, put_u16, put_u32, WireError};

/// The header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// The control bits (RFC 9293 3.1), as in the header's 14th byte.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment number is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent.
    pub const URG: TcpFlags = TcpFlags(0x20);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// FIN.
    pub fn fin(self) -> bool {
        self.contains(TcpFlags::FIN)
    }
    /// SYN.
    pub fn syn(self) -> bool {
        self.contains(TcpFlags::SYN)
    }
    /// RST.
    pub fn rst(self) -> bool {
        self.contains(TcpFlags::RST)
    }
    /// ACK.
    pub fn ack(self) -> bool {
        self.contains(TcpFlags::ACK)
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let names = [
            (TcpFlags::SYN, "SYN"),
            (TcpFlags::ACK, "ACK"),
            (TcpFlags::FIN, "FIN"),
            (TcpFlags::RST, "RST"),
            (TcpFlags::PSH, "PSH"),
            (TcpFlags::URG, "URG"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
            .collect();
        if set.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&set.join("|"))
        }
    }
}

/// A view of a TCP segment.
#[derive(Clone, Copy, Debug)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// A view without checks: for segments the caller built.
    pub fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// A view of untrusted bytes (the IPv4 payload): a data offset of at least 20 bytes that
    /// fits in them.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated("TCP header"));
        }
        let header_len = usize::from(b[12] >> 4) * 4;
        if header_len < MIN_HEADER_LEN {
            return Err(WireError::Malformed("TCP header (data offset below 5)"));
        }
        if b.len() < header_len {
            return Err(WireError::Truncated("TCP header options"));
        }
        Ok(TcpPacket { buffer })
    }

    /// The source port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 0)
    }

    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 2)
    }

    /// The sequence number.
    pub fn seq(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 4)
    }

    /// The acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 8)
    }

    /// The header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[12] >> 4) * 4
    }

    /// The control bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[13] & 0x3f)
    }

    /// The window.
    pub fn window(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 14)
    }

    /// The data after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// The sequence space the segment occupies: its data, plus one for SYN and one for FIN
    /// (RFC 9293 3.4).
    pub fn segment_len(&self) -> u32 {
        let flags = self.flags();
        self.payload().len() as u32 + u32::from(flags.syn()) + u32::from(flags.fin())
    }

    /// Whether the checksum is right for a segment between `src` and `dst`.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        let pseudo =
            checksum::pseudo_header_sum(src, dst, IpProtocol::Tcp.number(), b.len() as u16);
        checksum::sum(pseudo, b) == 0xffff
    }
}

/// A TCP segment without options or data, for the resets the fabric writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRepr {
    /// The source port.
    pub src_port: u16,
    /// The destination port.
    pub dst_port: u16,
    /// The sequence number.
    pub seq: u32,
    /// The acknowledgment number (meaningful with ACK).
    pub ack: u32,
    /// The control bits.
    pub flags: TcpFlags,
    /// The window.
    pub window: u16,
}

impl TcpRepr {
    /// Writes the 20-byte header at the start of `b`, which is the whole segment (the payload,
    /// if any, already follows the header), with the checksum of it all for `src` -> `dst`.
    pub fn emit(&self, b: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
        put_u16(b, 0, self.src_port);
        put_u16(b, 2, self.dst_port);
        put_u32(b, 4, self.seq);
        put_u32(b, 8, self.ack);
        b[12] = 5 << 4;
        b[13] = self.flags.0;
        put_u16(b, 14, self.window);
        put_u16(b, 16, 0);
        put_u16(b, 18, 0);
        let len = b.len() as u16;
        let pseudo = checksum::pseudo_header_sum(src, dst, IpProtocol::Tcp.number(), len);
        let sum = checksum::checksum(pseudo, b);
        put_u16(b, 16, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_a_reset_that_parses_back_with_a_valid_checksum() {
        let (src, dst) = (Ipv4Addr::new(10, 77, 0, 3), Ipv4Addr::new(10, 77, 0, 2));
        let repr = TcpRepr {
            src_port: 6379,
            dst_port: 49152,
            seq: 0xdead_beef,
            ack: 1001,
            flags: TcpFlags::RST | TcpFlags::ACK,
            window: 0,
        };
        let mut b = [0u8; 20];
        repr.emit(&mut b, src, dst);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (6379, 49152));
        assert_eq!((p.seq(), p.ack_number()), (0xdead_beef, 1001));
        assert_eq!(p.flags(), TcpFlags::RST | TcpFlags::ACK);
        assert!(p.verify_checksum(src, dst));
        assert!(!p.verify_checksum(dst, Ipv4Addr::new(10, 77, 0, 4)));
        assert_eq!(format!("{:?}", p.flags()), "ACK|RST");
    }

    #[test]
    fn segment_length_counts_syn_and_fin() {
        let mut b = [0u8; 25];
        b[12] = 5 << 4;
        b[13] = 0x03; // SYN|FIN
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 5);
        assert_eq!(p.segment_len(), 7);
    }

    #[test]
    fn refuses_bad_data_offsets() {
        let mut b = [0u8; 24];
        assert_eq!(
            TcpPacket::new_checked(&b[..19]).unwrap_err(),
            WireError::Truncated("TCP header")
        );
        b[12] = 4 << 4;
        assert!(matches!(
            TcpPacket::new_checked(&b[..]),
            Err(WireError::Malformed(_))
        ));
        b[12] = 6 << 4;
        assert!(TcpPacket::new_checked(&b[..]).is_ok());
        b[12] = 7 << 4;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::Truncated("TCP header options")
        );
    }
}
