//! Zero-copy views of the frames a guest sends, and the few frames the fabric writes itself.
//!
//! Parsing and emitting only; no policy (that is `policy/`). Every view follows smoltcp's
//! two-level contract: `Thing::new_checked(bytes)` checks that every accessor of the view is in
//! bounds (and the fields that give lengths are consistent), so the accessors never panic and
//! never read past the buffer; `new_unchecked` is for buffers the fabric built itself. What
//! `new_checked` does *not* check (a checksum, a field value the policy decides on) has its own
//! accessor, so the policy can tell a truncated frame from a malformed one and say which.
//! [`build`] assembles whole frames from their fields (tests, benchmarks, drivers that play a
//! guest).
//!
//! Why not smoltcp's `wire` module, which the guests use? The fabric reads a dozen fields of
//! hostile frames on its hot path and must say precisely why it refused one (smoltcp's
//! `new_checked` returns one unit error, and its `Repr::parse` refuses things the policy wants
//! to classify itself, such as IPv4 options or non-Ethernet ARP); it writes only two frames (an
//! ARP reply and a TCP reset). That is a few hundred lines of our own, against a dependency
//! whose minimum Rust (1.91) is above the workspace's. smoltcp is still the judge: the tests
//! check that smoltcp parses every frame the fabric emits and agrees with these views on
//! random bytes (`props.rs`).
#![forbid(unsafe_code)]

pub mod arp;
pub mod build;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;

mod checksum;
#[cfg(test)]
mod props;

pub use arp::{ArpOp, ArpPacket, ArpRepr};
pub use checksum::{checksum, pseudo_header_sum};
pub use ethernet::{EtherType, EthernetFrame, Mac};
pub use icmp::IcmpPacket;
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use tcp::{TcpFlags, TcpPacket, TcpRepr};
pub use udp::UdpPacket;

/// Why bytes are not a valid header of some kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes end before the header (or the length a header field gives) does.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A field has a value the protocol does not allow (or the fabric does not support).
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// Reads a big-endian `u16` at `at`; the caller has checked the bounds.
#[inline]
pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads a big-endian `u32` at `at`; the caller has checked the bounds.
#[inline]
pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
