//! Why the fabric drops a frame: one reason per check, counted per port and per capability and
//! named in the logs.

use std::fmt;

/// Which source field of a frame was not the sending port's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The Ethernet source, or an ARP sender hardware address.
    Mac,
    /// The IPv4 source, or an ARP sender protocol address.
    Ip,
}

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// It arrived on a port that no service of the plan owns.
    UnknownPort,
    /// It is shorter than its headers say (or than an Ethernet header).
    Truncated,
    /// It is longer than the MTU allows (1514 bytes for an MTU of 1500).
    Oversized,
    /// A header field is invalid: an IPv4 checksum, version or length, a TCP data offset, a zero
    /// port, a non-Ethernet/IPv4 ARP.
    Malformed,
    /// Its source MAC or IPv4 address is not the sending port's own.
    Spoofed(Field),
    /// It is addressed to the Ethernet or IPv4 broadcast address: there is no broadcast domain.
    Broadcast,
    /// It is addressed to a multicast group.
    Multicast,
    /// An ARP packet the fabric does not accept from a guest: a reply, a gratuitous ARP, a probe.
    ArpNotAllowed,
    /// An ARP request for an address the asker may not reach: it stays unanswered.
    ArpUnreachable,
    /// IPv6 (not supported yet).
    Ipv6,
    /// An EtherType other than IPv4 and ARP (VLAN tags included).
    OtherEthertype,
    /// An IPv4 protocol other than TCP, UDP and ICMP.
    IpProtocol,
    /// An IPv4 fragment: guests send whole datagrams of at most the MTU.
    Fragment,
    /// IPv4 options (source routes, record route, ...).
    IpOptions,
    /// ICMP other than echo request and echo reply.
    IcmpType,
    /// It would open a connection that no capability allows.
    NoCapability,
    /// It is not the start of a connection, and belongs to none the fabric tracks (a reply
    /// without a request, a segment of a connection that was cut or timed out).
    NoConnection,
    /// A TCP segment that does not fit its connection's state (a SYN on an established
    /// connection, data before the handshake).
    TcpState,
    /// The connection table (or the port's share of it) is full.
    ConntrackFull,
    /// It is for the gateway (an egress capability or a published endpoint), which is not running.
    NoGateway,
    /// The destination port could not take it (its monitor is not reading), or is detached.
    TxFull,
}

impl DropReason {
    /// How many reasons there are (the size of a counter array).
    pub const COUNT: usize = 22;

    /// Every reason, in counter order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::UnknownPort,
        DropReason::Truncated,
        DropReason::Oversized,
        DropReason::Malformed,
        DropReason::Spoofed(Field::Mac),
        DropReason::Spoofed(Field::Ip),
        DropReason::Broadcast,
        DropReason::Multicast,
        DropReason::ArpNotAllowed,
        DropReason::ArpUnreachable,
        DropReason::Ipv6,
        DropReason::OtherEthertype,
        DropReason::IpProtocol,
        DropReason::Fragment,
        DropReason::IpOptions,
        DropReason::IcmpType,
        DropReason::NoCapability,
        DropReason::NoConnection,
        DropReason::TcpState,
        DropReason::ConntrackFull,
        DropReason::NoGateway,
        DropReason::TxFull,
    ];

    /// The reason's position in [`ALL`](Self::ALL) and in counter arrays.
    pub const fn index(self) -> usize {
        match self {
            DropReason::UnknownPort => 0,
            DropReason::Truncated => 1,
            DropReason::Oversized => 2,
            DropReason::Malformed => 3,
            DropReason::Spoofed(Field::Mac) => 4,
            DropReason::Spoofed(Field::Ip) => 5,
            DropReason::Broadcast => 6,
            DropReason::Multicast => 7,
            DropReason::ArpNotAllowed => 8,
            DropReason::ArpUnreachable => 9,
            DropReason::Ipv6 => 10,
            DropReason::OtherEthertype => 11,
            DropReason::IpProtocol => 12,
            DropReason::Fragment => 13,
            DropReason::IpOptions => 14,
            DropReason::IcmpType => 15,
            DropReason::NoCapability => 16,
            DropReason::NoConnection => 17,
            DropReason::TcpState => 18,
            DropReason::ConntrackFull => 19,
            DropReason::NoGateway => 20,
            DropReason::TxFull => 21,
        }
    }

    /// A stable identifier for metrics and JSON: `no_capability`, `spoofed_mac`, ...
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::UnknownPort => "unknown_port",
            DropReason::Truncated => "truncated",
            DropReason::Oversized => "oversized",
            DropReason::Malformed => "malformed",
            DropReason::Spoofed(Field::Mac) => "spoofed_mac",
            DropReason::Spoofed(Field::Ip) => "spoofed_ip",
            DropReason::Broadcast => "broadcast",
            DropReason::Multicast => "multicast",
            DropReason::ArpNotAllowed => "arp_not_allowed",
            DropReason::ArpUnreachable => "arp_unreachable",
            DropReason::Ipv6 => "ipv6",
            DropReason::OtherEthertype => "other_ethertype",
            DropReason::IpProtocol => "ip_protocol",
            DropReason::Fragment => "fragment",
            DropReason::IpOptions => "ip_options",
            DropReason::IcmpType => "icmp_type",
            DropReason::NoCapability => "no_capability",
            DropReason::NoConnection => "no_connection",
            DropReason::TcpState => "tcp_state",
            DropReason::ConntrackFull => "conntrack_full",
            DropReason::NoGateway => "no_gateway",
            DropReason::TxFull => "tx_full",
        }
    }
}

impl fmt::Display for DropReason {
    /// What a log line says: `no capability`, `spoofed source MAC`, ...
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            DropReason::UnknownPort => "no service on this port",
            DropReason::Truncated => "truncated frame",
            DropReason::Oversized => "frame larger than the MTU",
            DropReason::Malformed => "malformed header",
            DropReason::Spoofed(Field::Mac) => "spoofed source MAC",
            DropReason::Spoofed(Field::Ip) => "spoofed source IPv4 address",
            DropReason::Broadcast => "broadcast",
            DropReason::Multicast => "multicast",
            DropReason::ArpNotAllowed => "ARP reply, gratuitous ARP or probe from a guest",
            DropReason::ArpUnreachable => "address not reachable by this service",
            DropReason::Ipv6 => "IPv6",
            DropReason::OtherEthertype => "EtherType other than IPv4 and ARP",
            DropReason::IpProtocol => "IP protocol other than TCP, UDP and ICMP",
            DropReason::Fragment => "IPv4 fragment",
            DropReason::IpOptions => "IPv4 options",
            DropReason::IcmpType => "ICMP other than echo",
            DropReason::NoCapability => "no capability",
            DropReason::NoConnection => "no connection",
            DropReason::TcpState => "TCP segment out of its connection's state",
            DropReason::ConntrackFull => "connection table full",
            DropReason::NoGateway => "the gateway is not running",
            DropReason::TxFull => "destination not reading",
        })
    }
}

/// Counts by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops([u64; DropReason::COUNT]);

impl Drops {
    /// The count of `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.index()]
    }

    /// Adds one to `reason`'s count.
    pub fn add(&mut self, reason: DropReason) {
        self.0[reason.index()] += 1;
    }

    /// All counts together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The reasons with a count above zero, and their counts.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.get(*r)))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_the_positions_in_all() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn counts() {
        let mut d = Drops::default();
        d.add(DropReason::NoCapability);
        d.add(DropReason::NoCapability);
        d.add(DropReason::Spoofed(Field::Ip));
        assert_eq!(d.get(DropReason::NoCapability), 2);
        assert_eq!(d.total(), 3);
        assert_eq!(
            d.nonzero().collect::<Vec<_>>(),
            [
                (DropReason::Spoofed(Field::Ip), 1),
                (DropReason::NoCapability, 2)
            ]
        );
    }
}
