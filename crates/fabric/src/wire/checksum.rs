//! The Internet checksum (RFC 1071) and the IPv4 pseudo-header of TCP and UDP (RFC 9293 3.1).

use std::net::Ipv4Addr;

/// The one's complement sum of `data` as 16-bit big-endian words (an odd last byte padded with
/// zero), added to `initial` and folded to 16 bits, not yet complemented.
pub fn sum(initial: u32, data: &[u8]) -> u16 {
    let mut acc = u64::from(initial);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for `data` (the field itself zero or excluded), given the sum of a
/// pseudo-header (0 if there is none).
pub fn checksum(pseudo: u32, data: &[u8]) -> u16 {
    !sum(pseudo, data)
}

/// The sum of the IPv4 pseudo-header of a TCP or UDP segment of `len` bytes (RFC 9293 3.1).
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + u32::from(protocol) + u32::from(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        assert_eq!(
            sum(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
        assert_eq!(
            checksum(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(0, &[0x12, 0x34, 0x56]), 0x6834);
        assert_eq!(sum(0, &[]), 0);
    }

    #[test]
    fn a_valid_header_sums_to_all_ones() {
        // An IPv4 header with its checksum (Wikipedia's example, 0xb861).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(sum(0, &h), 0xffff);
    }
}
