//! ICMP messages (RFC 792): the type and code, and the identifier of echo requests and replies.

use super::{get_u16, WireError};

/// The header of an echo request or reply: type, code, checksum, identifier, sequence number.
pub const HEADER_LEN: usize = 8;

/// Echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Echo request.
pub const ECHO_REQUEST: u8 = 8;

/// A view of an ICMP message.
#[derive(Clone, Copy, Debug)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// A view of untrusted bytes (the IPv4 payload): at least the 8-byte header every ICMP
    /// message has.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated("ICMP header"));
        }
        Ok(IcmpPacket { buffer })
    }

    /// The message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// The code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Whether this is an echo request (type 8, code 0).
    pub fn is_echo_request(&self) -> bool {
        self.msg_type() == ECHO_REQUEST && self.code() == 0
    }

    /// Whether this is an echo reply (type 0, code 0).
    pub fn is_echo_reply(&self) -> bool {
        self.msg_type() == ECHO_REPLY && self.code() == 0
    }

    /// The identifier of an echo request or reply.
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 4)
    }

    /// The sequence number of an echo request or reply.
    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_echo_request() {
        let b = [8, 0, 0xf7, 0xfd, 0x12, 0x34, 0x00, 0x01];
        let p = IcmpPacket::new_checked(&b[..]).unwrap();
        assert!(p.is_echo_request() && !p.is_echo_reply());
        assert_eq!((p.echo_ident(), p.echo_seq()), (0x1234, 1));
        assert_eq!(
            IcmpPacket::new_checked(&b[..7]).unwrap_err(),
            WireError::Truncated("ICMP header")
        );
    }
}
