//! UDP headers (RFC 768): ports and length.

use super::{get_u16, WireError};

/// The header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Clone, Copy, Debug)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// A view of untrusted bytes (the IPv4 payload): the header, and a length field that covers
    /// the header and fits in them.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated("UDP header"));
        }
        let len = usize::from(get_u16(b, 4));
        if len < HEADER_LEN {
            return Err(WireError::Malformed("UDP header (length below 8)"));
        }
        if len > b.len() {
            return Err(WireError::Truncated("UDP datagram"));
        }
        Ok(UdpPacket { buffer })
    }

    /// The source port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 0)
    }

    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 2)
    }

    /// The length field (header included).
    pub fn len(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), 4))
    }

    /// Whether the datagram carries no data.
    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ports_and_checks_the_length() {
        let b = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0a, 0x00, 0x00, 0xaa, 0xbb];
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (12345, 53, 10));
        assert!(!p.is_empty());
        assert_eq!(
            UdpPacket::new_checked(&b[..7]).unwrap_err(),
            WireError::Truncated("UDP header")
        );
        assert_eq!(
            UdpPacket::new_checked(&b[..9]).unwrap_err(),
            WireError::Truncated("UDP datagram")
        );
        let mut short = b;
        short[5] = 7;
        assert!(matches!(
            UdpPacket::new_checked(&short[..]),
            Err(WireError::Malformed(_))
        ));
    }
}
