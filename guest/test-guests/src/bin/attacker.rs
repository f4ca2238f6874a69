//! A hostile guest for the fabric's adversarial suite (`crates/fabric/tests/adversarial.rs`):
//! with the raw-frame API it sends what a compromised service would try against its neighbours.
//!
//! `attacker MODE [--victim=IP] [--victim-port=N] [--other=IP] [--rounds=N] [--pause-ms=N]`
//!
//! `MODE` is one attack's name (see [`ATTACKS`]) or `all` for every one in order. `--victim` is
//! a service with an open TCP endpoint `--victim-port` (default 7), `--other` a second service
//! (a consumer of the victim); `--rounds` repeats the attacks (default 1), `--pause-ms` apart.
//! The attacker's own MAC comes from its NIC, its address from its boot configuration.
//!
//! Prints `attack NAME: sent N frames` per attack and round (N: frames the monitor took and
//! forwarded to the fabric; frames refused before the fabric are reported as `refused`), then
//! `attacks done`, then idles (POLL) so that the test can read the fabric's counters.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use sturdy_rt::abi::hypercall::RESULT_OK;
use sturdy_rt::{boot_config, hypercall, poll, println, Env, Error, Net};
use test_guests::fail;

sturdy_rt::main!(main);
sturdy_rt::manifest!(net "service");

/// An attack: sends its frames through the attacker.
type Attack = fn(&mut Attacker);

/// Every attack, in the order `all` runs them.
const ATTACKS: &[(&str, Attack)] = &[
    ("spoof-mac", spoof_mac),
    ("spoof-ip", spoof_ip),
    ("arp-scan", arp_scan),
    ("arp-poison", arp_poison),
    ("arp-spoof-request", arp_spoof_request),
    ("tcp-undeclared-service", tcp_undeclared_service),
    ("udp-undeclared-service", udp_undeclared_service),
    ("tcp-undeclared-port", tcp_undeclared_port),
    ("udp-undeclared-port", udp_undeclared_port),
    ("tcp-no-capability", tcp_no_capability),
    ("tcp-no-connection", tcp_no_connection),
    ("udp-reply", udp_reply),
    ("icmp-echo", icmp_echo),
    ("icmp-reply", icmp_reply),
    ("icmp-other", icmp_other),
    ("broadcast-flood", broadcast_flood),
    ("multicast-flood", multicast_flood),
    ("oversized", oversized),
    ("truncated", truncated),
    ("malformed", malformed),
    ("fragment", fragment),
    ("ipv6", ipv6),
    ("other-ethertype", other_ethertype),
    ("ip-options", ip_options),
    ("ip-protocol", ip_protocol),
];

/// Frames of each flood.
const FLOOD: u32 = 500;

const ETH_IPV4: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ETH_IPV6: u16 = 0x86dd;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const BROADCAST: [u8; 6] = [0xff; 6];
/// The fragment field's "more fragments" flag.
const MF: u16 = 0x2000;

struct Attacker {
    net: Net,
    mac: [u8; 6],
    ip: Ipv4Addr,
    subnet: u32,
    victim: Ipv4Addr,
    victim_port: u16,
    other: Ipv4Addr,
    /// Frames handed to the monitor in the current attack.
    sent: u32,
    /// Frames the SDK or the monitor refused in the current attack.
    refused: u32,
    ident: u16,
}

fn main(env: &Env) -> i32 {
    let mode = env
        .args()
        .next()
        .unwrap_or_else(|| fail(format_args!("usage: attacker MODE|all [--victim=IP] ...")));
    let config = boot_config().unwrap_or_else(|e| fail(format_args!("boot config: {e}")));
    let nic = config
        .nics
        .first()
        .unwrap_or_else(|| fail(format_args!("the boot configuration gives no NIC")));
    let net = Net::open(&nic.name).unwrap_or_else(|e| fail(format_args!("NIC {}: {e}", nic.name)));
    let addr = |name: &str, default: Ipv4Addr| match env.option(name) {
        Some(v) => v
            .parse()
            .unwrap_or_else(|_| fail(format_args!("--{name}={v}: not an IPv4 address"))),
        None => default,
    };
    let number = |name: &str, default: u64| match env.option(name) {
        Some(v) => v
            .parse()
            .unwrap_or_else(|_| fail(format_args!("--{name}={v}: not a number"))),
        None => default,
    };
    let mask = u32::MAX
        .checked_shl(32 - u32::from(nic.prefix_len))
        .unwrap_or(0);
    let subnet = u32::from(nic.addr) & mask;
    let mut a = Attacker {
        mac: net.mac().0,
        net,
        ip: nic.addr,
        subnet,
        victim: addr("victim", Ipv4Addr::from(subnet + 3)),
        victim_port: number("victim-port", 7) as u16,
        other: addr("other", Ipv4Addr::from(subnet + 4)),
        sent: 0,
        refused: 0,
        ident: 1,
    };
    let rounds = number("rounds", 1);
    let pause = Duration::from_millis(number("pause-ms", 0));
    println!(
        "attacker {} ({}) against victim {}:{} and {}, {rounds} round(s)",
        a.ip,
        a.net.mac(),
        a.victim,
        a.victim_port,
        a.other
    );
    let chosen: Vec<&(&str, Attack)> = ATTACKS
        .iter()
        .filter(|(name, _)| mode == "all" || mode == *name)
        .collect();
    if chosen.is_empty() {
        fail(format_args!("no attack called {mode:?}"));
    }
    for round in 1..=rounds {
        for (name, attack) in &chosen {
            a.sent = 0;
            a.refused = 0;
            attack(&mut a);
            if a.refused > 0 {
                println!(
                    "attack {name}: sent {} frames ({} refused before the fabric) round {round}",
                    a.sent, a.refused
                );
            } else {
                println!("attack {name}: sent {} frames round {round}", a.sent);
            }
        }
        if round < rounds {
            poll(pause);
        }
    }
    println!("attacks done");
    // Stay up (and drain whatever arrives, which should be nothing) until killed.
    let mut buf = vec![0u8; a.net.max_frame_len()];
    let mut received = 0u64;
    loop {
        while a.net.read(&mut buf).is_ok() {
            received += 1;
            println!("received a frame ({received} so far)");
        }
        poll(Duration::from_secs(60));
    }
}

impl Attacker {
    /// Sends `frame` through the SDK (rings), waiting while the TX ring is full.
    fn send(&mut self, frame: &[u8]) {
        loop {
            match self.net.write(frame) {
                Ok(()) => {
                    self.sent += 1;
                    return;
                }
                Err(Error::Again) => {
                    poll(Duration::from_millis(1));
                }
                Err(Error::BadRequest) => {
                    self.refused += 1;
                    return;
                }
                Err(e) => fail(format_args!("net write: {e}")),
            }
        }
    }

    /// Sends `frame` with a NET_WRITE hypercall, past the SDK's length checks: only the
    /// monitor's stand between the guest and the fabric.
    fn send_raw(&mut self, frame: &[u8]) {
        if hypercall::net_write(self.net.handle(), frame) == RESULT_OK {
            self.sent += 1;
        } else {
            self.refused += 1;
        }
    }

    fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.subnet + n)
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    /// An IPv4 packet from the attacker's own MAC and address to `dst` (Ethernet destination:
    /// the plan's MAC for `dst`, 02:00 and its four bytes).
    fn ip(&mut self, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
        let ident = self.next_ident();
        let packet = ipv4(self.ip, dst, proto, ident, 0, &[], payload);
        ethernet(mac_for(dst), self.mac, ETH_IPV4, &packet)
    }

    fn tcp(&mut self, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8, data: &[u8]) -> Vec<u8> {
        let segment = tcp(
            self.ip,
            dst,
            sport,
            dport,
            0x1000_0000,
            0x2000_0000,
            flags,
            data,
        );
        self.ip(dst, TCP, &segment)
    }

    fn udp(&mut self, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
        let datagram = udp(self.ip, dst, sport, dport, data);
        self.ip(dst, UDP, &datagram)
    }
}

// ---- the attacks ----

/// Frames whose Ethernet source (or ARP sender hardware address) is not the attacker's.
fn spoof_mac(a: &mut Attacker) {
    let victim_mac = mac_for(a.victim);
    let other_mac = mac_for(a.other);
    // Posing as the legitimate consumer (its MAC and address) to open its capability.
    for src in [
        other_mac,
        victim_mac,
        [0x02, 0x66, 0x66, 0x66, 0x66, 0x66],
        [0; 6],
        BROADCAST,
    ] {
        let segment = tcp(a.other, a.victim, 40000, a.victim_port, 1, 0, SYN, b"");
        let ident = a.next_ident();
        let packet = ipv4(a.other, a.victim, TCP, ident, 0, &[], &segment);
        a.send(&ethernet(victim_mac, src, ETH_IPV4, &packet));
        // With the attacker's own address but someone else's MAC.
        let segment = tcp(a.ip, a.victim, 40001, a.victim_port, 1, 0, SYN, b"");
        let packet = ipv4(a.ip, a.victim, TCP, ident, 0, &[], &segment);
        a.send(&ethernet(victim_mac, src, ETH_IPV4, &packet));
        // ARP with a foreign Ethernet source.
        let request = arp(1, src, a.ip, [0; 6], a.victim);
        a.send(&ethernet(BROADCAST, src, ETH_ARP, &request));
    }
    // ARP whose Ethernet source is ours but whose sender hardware address is the victim's.
    let request = arp(1, victim_mac, a.ip, [0; 6], a.other);
    a.send(&ethernet(BROADCAST, a.mac, ETH_ARP, &request));
}

/// Frames from the attacker's MAC with another source address: the consumer's (to use its
/// capability), the victim's (forged resets into the legitimate connection), and others.
fn spoof_ip(a: &mut Attacker) {
    let victim_mac = mac_for(a.victim);
    let other_mac = mac_for(a.other);
    // Posing as the consumer, which holds a capability to the victim.
    let segment = tcp(a.other, a.victim, 40000, a.victim_port, 1, 0, SYN, b"");
    let ident = a.next_ident();
    let packet = ipv4(a.other, a.victim, TCP, ident, 0, &[], &segment);
    a.send(&ethernet(victim_mac, a.mac, ETH_IPV4, &packet));
    // Forged resets from the victim's port to the consumer's ephemeral ports, and forged data
    // from the consumer into the victim.
    for port in (49152u16..).step_by(251).take(64) {
        let segment = tcp(a.victim, a.other, a.victim_port, port, 7, 0, RST, b"");
        let packet = ipv4(a.victim, a.other, TCP, ident, 0, &[], &segment);
        a.send(&ethernet(other_mac, a.mac, ETH_IPV4, &packet));
        let segment = tcp(
            a.other,
            a.victim,
            port,
            a.victim_port,
            7,
            9,
            PSH | ACK,
            b"injected",
        );
        let packet = ipv4(a.other, a.victim, TCP, ident, 0, &[], &segment);
        a.send(&ethernet(victim_mac, a.mac, ETH_IPV4, &packet));
    }
    // Unspecified, outside the subnet, the gateway, a free address of the subnet.
    for src in [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(203, 0, 113, 7),
        a.host(1),
        a.host(200),
        Ipv4Addr::LOCALHOST,
    ] {
        let datagram = udp(src, a.victim, 5353, a.victim_port, b"spoofed");
        let packet = ipv4(src, a.victim, UDP, ident, 0, &[], &datagram);
        a.send(&ethernet(victim_mac, a.mac, ETH_IPV4, &packet));
    }
}

/// An ARP request for every address of the subnet but the attacker's own.
fn arp_scan(a: &mut Attacker) {
    let hosts = !(u32::MAX << (32 - prefix_len(a))) - 1;
    for n in 1..=hosts {
        let target = a.host(n);
        if target == a.ip {
            continue;
        }
        let request = arp(1, a.mac, a.ip, [0; 6], target);
        a.send(&ethernet(BROADCAST, a.mac, ETH_ARP, &request));
    }
}

fn prefix_len(a: &Attacker) -> u32 {
    boot_config()
        .ok()
        .and_then(|c| c.nics.iter().find(|n| n.addr == a.ip))
        .map_or(24, |n| u32::from(n.prefix_len))
}

/// ARP cache poisoning with ARP the fabric never takes from a guest: gratuitous requests and
/// replies claiming the victim's and the consumer's addresses, forged replies sent straight
/// to the consumer ("the victim is at the attacker's MAC"), probes.
fn arp_poison(a: &mut Attacker) {
    let other_mac = mac_for(a.other);
    let victim_mac = mac_for(a.victim);
    for claimed in [a.victim, a.other] {
        // Gratuitous request and reply (announcements).
        let announce = arp(1, a.mac, claimed, [0; 6], claimed);
        a.send(&ethernet(BROADCAST, a.mac, ETH_ARP, &announce));
        let announce = arp(2, a.mac, claimed, BROADCAST, claimed);
        a.send(&ethernet(BROADCAST, a.mac, ETH_ARP, &announce));
    }
    for _ in 0..16 {
        // "The victim is at my MAC", to the consumer; "the consumer is at my MAC", to the victim.
        let reply = arp(2, a.mac, a.victim, other_mac, a.other);
        a.send(&ethernet(other_mac, a.mac, ETH_ARP, &reply));
        let reply = arp(2, a.mac, a.other, victim_mac, a.victim);
        a.send(&ethernet(victim_mac, a.mac, ETH_ARP, &reply));
        // A reply in the attacker's own name, unasked.
        let reply = arp(2, a.mac, a.ip, other_mac, a.other);
        a.send(&ethernet(other_mac, a.mac, ETH_ARP, &reply));
    }
    // A probe (RFC 5227: sender 0.0.0.0) for the victim's address.
    let probe = arp(1, a.mac, Ipv4Addr::UNSPECIFIED, [0; 6], a.victim);
    a.send(&ethernet(BROADCAST, a.mac, ETH_ARP, &probe));
}

/// ARP poisoning by request: requests whose sender address is the victim's (or the
/// consumer's), which a target's cache would learn from.
fn arp_spoof_request(a: &mut Attacker) {
    for _ in 0..16 {
        let request = arp(1, a.mac, a.victim, [0; 6], a.other);
        a.send(&ethernet(BROADCAST, a.mac, ETH_ARP, &request));
        let request = arp(1, a.mac, a.other, [0; 6], a.victim);
        a.send(&ethernet(mac_for(a.victim), a.mac, ETH_ARP, &request));
    }
}

/// SYNs to addresses without a service, and to the consumer, which provides nothing.
fn tcp_undeclared_service(a: &mut Attacker) {
    let targets = [a.host(9), a.host(100), a.host(200), a.other, a.host(1)];
    for dst in targets {
        for dport in [22, 80, 443, 6379, 7] {
            let frame = a.tcp(dst, 41000, dport, SYN, b"");
            a.send(&frame);
        }
    }
}

/// UDP datagrams to addresses without a service, and to the consumer.
fn udp_undeclared_service(a: &mut Attacker) {
    for dst in [a.host(9), a.host(100), a.other, a.host(1)] {
        for dport in [53, 67, 123, 161, 5353] {
            let frame = a.udp(dst, 41000, dport, b"probe");
            a.send(&frame);
        }
    }
}

/// SYNs to every port of the victim from 1 to 1024 but its declared endpoint.
fn tcp_undeclared_port(a: &mut Attacker) {
    for dport in 1..=1024u16 {
        if dport == a.victim_port {
            continue;
        }
        let frame = a.tcp(a.victim, 41001, dport, SYN, b"");
        a.send(&frame);
    }
}

/// UDP to the victim: its TCP endpoint's port and others.
fn udp_undeclared_port(a: &mut Attacker) {
    for dport in [a.victim_port, 53, 123, 161, 1900, 5353, 11211] {
        let frame = a.udp(a.victim, 41002, dport, b"probe");
        a.send(&frame);
    }
}

/// SYNs to the victim's declared endpoint, which the attacker holds no capability to.
fn tcp_no_capability(a: &mut Attacker) {
    for sport in 42000..42032u16 {
        let frame = a.tcp(a.victim, sport, a.victim_port, SYN, b"");
        a.send(&frame);
    }
}

/// TCP "replies" without a connection: SYN-ACK, ACK, RST, FIN and data to the victim's open
/// port and to the consumer's ephemeral ports.
fn tcp_no_connection(a: &mut Attacker) {
    let flags = [SYN | ACK, ACK, RST, RST | ACK, FIN | ACK, PSH | ACK];
    for f in flags {
        let frame = a.tcp(a.victim, 43000, a.victim_port, f, b"");
        a.send(&frame);
        let data = a.tcp(a.victim, 43000, a.victim_port, f, b"data");
        a.send(&data);
    }
    for dport in (49152u16..).step_by(509).take(32) {
        for f in [SYN | ACK, RST, ACK] {
            let frame = a.tcp(a.other, a.victim_port, dport, f, b"");
            a.send(&frame);
        }
    }
}

/// UDP "replies" from the victim's port number to the consumer's ephemeral ports.
fn udp_reply(a: &mut Attacker) {
    for dport in (49152u16..).step_by(1021).take(16) {
        let frame = a.udp(a.other, 53, dport, b"reply");
        a.send(&frame);
        let frame = a.udp(a.victim, 53, dport, b"reply");
        a.send(&frame);
    }
}

/// Pings along no capability.
fn icmp_echo(a: &mut Attacker) {
    for dst in [a.victim, a.other, a.host(9)] {
        for seq in 0..4 {
            let frame = a.ip(dst, ICMP, &icmp(8, 0, 0x4242, seq));
            a.send(&frame);
        }
    }
}

/// Echo replies nobody asked for.
fn icmp_reply(a: &mut Attacker) {
    for dst in [a.victim, a.other] {
        for seq in 0..4 {
            let frame = a.ip(dst, ICMP, &icmp(0, 0, 0x4243, seq));
            a.send(&frame);
        }
    }
}

/// ICMP that redirects or kills connections: redirect, destination/port unreachable, source
/// quench, time exceeded, timestamp.
fn icmp_other(a: &mut Attacker) {
    for dst in [a.victim, a.other] {
        for (t, c) in [(5, 1), (3, 3), (3, 1), (4, 0), (11, 0), (13, 0)] {
            let frame = a.ip(dst, ICMP, &icmp(t, c, 0, 0));
            a.send(&frame);
        }
    }
}

/// Broadcast: to the Ethernet broadcast address, and to the subnet's and the limited IPv4
/// broadcast addresses under a unicast MAC.
fn broadcast_flood(a: &mut Attacker) {
    let subnet_broadcast = a.host(!(u32::MAX << (32 - prefix_len(a))));
    for i in 0..FLOOD {
        let (dst_mac, dst_ip) = match i % 3 {
            0 => (BROADCAST, subnet_broadcast),
            1 => (mac_for(a.victim), subnet_broadcast),
            _ => (mac_for(a.other), Ipv4Addr::BROADCAST),
        };
        let datagram = udp(a.ip, dst_ip, 68, 67, b"broadcast");
        let ident = a.next_ident();
        let packet = ipv4(a.ip, dst_ip, UDP, ident, 0, &[], &datagram);
        a.send(&ethernet(dst_mac, a.mac, ETH_IPV4, &packet));
    }
}

/// Multicast: mDNS and SSDP groups, under multicast MACs and under a unicast one.
fn multicast_flood(a: &mut Attacker) {
    for i in 0..FLOOD {
        let (dst_mac, dst_ip, port) = match i % 3 {
            0 => (
                [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb],
                Ipv4Addr::new(224, 0, 0, 251),
                5353,
            ),
            1 => (mac_for(a.victim), Ipv4Addr::new(239, 255, 255, 250), 1900),
            _ => (
                [0x33, 0x33, 0x00, 0x00, 0x00, 0x01],
                Ipv4Addr::new(224, 0, 0, 1),
                9,
            ),
        };
        let datagram = udp(a.ip, dst_ip, 5353, port, b"multicast");
        let ident = a.next_ident();
        let packet = ipv4(a.ip, dst_ip, UDP, ident, 0, &[], &datagram);
        a.send(&ethernet(dst_mac, a.mac, ETH_IPV4, &packet));
    }
}

/// Frames longer than the MTU allows, through the SDK and through a raw hypercall: neither
/// should ever reach the fabric.
fn oversized(a: &mut Attacker) {
    let max = a.net.max_frame_len();
    for len in [max + 1, 2048, 4096, 9018] {
        let mut frame = a.udp(a.victim, 44000, a.victim_port, &vec![0x41; len]);
        frame.truncate(len);
        a.send(&frame);
        a.send_raw(&frame);
    }
}

/// Frames shorter than their headers say: an Ethernet header cut short (sent with a raw
/// hypercall, which the SDK would refuse), IPv4, TCP, UDP, ICMP and ARP cut short, and an
/// IPv4 total length beyond the frame.
fn truncated(a: &mut Attacker) {
    let full = a.tcp(a.victim, 44001, a.victim_port, SYN, b"");
    for len in [1, 6, 13] {
        a.send_raw(&full[..len]);
    }
    // An empty frame: on the fabric's socket, an empty message (as the end of the stream
    // also reads).
    a.send_raw(&[]);
    // An Ethernet header and 10 bytes of IPv4 header.
    a.send(&full[..24]);
    // A TCP header of 8 bytes (IPv4 lengths consistent, so only TCP is short).
    let ident = a.next_ident();
    let short = ipv4(a.ip, a.victim, TCP, ident, 0, &[], &full[34..42]);
    a.send(&ethernet(mac_for(a.victim), a.mac, ETH_IPV4, &short));
    // A UDP header of 4 bytes, and a UDP length beyond the datagram.
    let udp_full = udp(a.ip, a.victim, 44002, a.victim_port, b"x");
    let short = ipv4(a.ip, a.victim, UDP, ident, 0, &[], &udp_full[..4]);
    a.send(&ethernet(mac_for(a.victim), a.mac, ETH_IPV4, &short));
    let mut long = udp_full.clone();
    long[4..6].copy_from_slice(&200u16.to_be_bytes());
    let short = ipv4(a.ip, a.victim, UDP, ident, 0, &[], &long);
    a.send(&ethernet(mac_for(a.victim), a.mac, ETH_IPV4, &short));
    // ICMP of 4 bytes.
    let short = ipv4(a.ip, a.victim, ICMP, ident, 0, &[], &[8, 0, 0, 0]);
    a.send(&ethernet(mac_for(a.victim), a.mac, ETH_IPV4, &short));
    // IPv4 total length 1000 in a 54-byte frame (header checksum valid).
    let mut lying = full.clone();
    lying[16..18].copy_from_slice(&1000u16.to_be_bytes());
    fix_ip_checksum(&mut lying[14..34]);
    a.send(&lying);
    // ARP cut to 20 bytes.
    let request = arp(1, a.mac, a.ip, [0; 6], a.victim);
    a.send(&ethernet(BROADCAST, a.mac, ETH_ARP, &request[..20]));
}

/// Invalid headers: IPv4 checksum, version, header length, total length; TCP data offset and
/// zero ports; UDP zero port; a non-Ethernet/IPv4 ARP.
fn malformed(a: &mut Attacker) {
    let good = a.tcp(a.victim, 44003, a.victim_port, SYN, b"");
    // A wrong IPv4 checksum.
    let mut f = good.clone();
    f[24] ^= 0xff;
    a.send(&f);
    // IPv4 version 6 and version 5 in an IPv4 frame.
    for v in [0x65u8, 0x55] {
        let mut f = good.clone();
        f[14] = v;
        fix_ip_checksum(&mut f[14..34]);
        a.send(&f);
    }
    // Header length 16 bytes.
    let mut f = good.clone();
    f[14] = 0x44;
    a.send(&f);
    // Total length below the header length.
    let mut f = good.clone();
    f[16..18].copy_from_slice(&12u16.to_be_bytes());
    fix_ip_checksum(&mut f[14..34]);
    a.send(&f);
    // TCP data offset 2 words.
    let mut f = good.clone();
    f[46] = 0x20;
    a.send(&f);
    // TCP and UDP with port 0.
    let f = a.tcp(a.victim, 0, a.victim_port, SYN, b"");
    a.send(&f);
    let f = a.tcp(a.victim, 44004, 0, SYN, b"");
    a.send(&f);
    let f = a.udp(a.victim, 44005, 0, b"zero");
    a.send(&f);
    // A UDP length below its header's.
    let mut datagram = udp(a.ip, a.victim, 44006, a.victim_port, b"x");
    datagram[4..6].copy_from_slice(&4u16.to_be_bytes());
    let f = a.ip(a.victim, UDP, &datagram);
    a.send(&f);
    // ARP for hardware type 6 (IEEE 802) and for protocol 0x86dd.
    let mut request = arp(1, a.mac, a.ip, [0; 6], a.victim);
    request[1] = 6;
    a.send(&ethernet(BROADCAST, a.mac, ETH_ARP, &request));
    let mut request = arp(1, a.mac, a.ip, [0; 6], a.victim);
    request[2..4].copy_from_slice(&ETH_IPV6.to_be_bytes());
    a.send(&ethernet(BROADCAST, a.mac, ETH_ARP, &request));
}

/// IPv4 fragments: a first fragment of a SYN to the victim's endpoint, a tiny fragment holding
/// only the ports, later and overlapping fragments, UDP fragments.
fn fragment(a: &mut Attacker) {
    let victim_mac = mac_for(a.victim);
    let segment = tcp(a.ip, a.victim, 44010, a.victim_port, 1, 0, SYN, &[0x42; 64]);
    let ident = a.next_ident();
    // First fragments (MF, offset 0): whole header, then a tiny 8-byte one.
    for part in [&segment[..48], &segment[..8]] {
        let packet = ipv4(a.ip, a.victim, TCP, ident, MF, &[], part);
        a.send(&ethernet(victim_mac, a.mac, ETH_IPV4, &packet));
    }
    // Later fragments, the last one and an overlapping one (offset in 8-byte units).
    for (frag, part) in [(6u16, &segment[48..]), (1 | MF, &segment[8..40])] {
        let packet = ipv4(a.ip, a.victim, TCP, ident, frag, &[], part);
        a.send(&ethernet(victim_mac, a.mac, ETH_IPV4, &packet));
    }
    // "Don't fragment" is fine, but DF with an offset is still a fragment.
    let packet = ipv4(a.ip, a.victim, TCP, ident, 0x4000 | 3, &[], &segment[24..]);
    a.send(&ethernet(victim_mac, a.mac, ETH_IPV4, &packet));
    // UDP fragments to the consumer.
    let datagram = udp(a.ip, a.other, 44011, 53, &[0x43; 100]);
    for (frag, part) in [(MF, &datagram[..56]), (7, &datagram[56..])] {
        let packet = ipv4(a.ip, a.other, UDP, ident, frag, &[], part);
        a.send(&ethernet(mac_for(a.other), a.mac, ETH_IPV4, &packet));
    }
}

/// IPv6: neighbour solicitation and router advertisement (multicast), TCP to the victim's
/// link-local address.
fn ipv6(a: &mut Attacker) {
    let link_local = |mac: [u8; 6]| {
        let mut addr = [0u8; 16];
        addr[0] = 0xfe;
        addr[1] = 0x80;
        addr[8] = mac[0] ^ 0x02;
        addr[9..11].copy_from_slice(&mac[1..3]);
        addr[11] = 0xff;
        addr[12] = 0xfe;
        addr[13..16].copy_from_slice(&mac[3..6]);
        addr
    };
    let me = link_local(a.mac);
    let victim = link_local(mac_for(a.victim));
    let all_nodes = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    // (Ethernet destination, IPv6 destination, next header, payload).
    let frames: [(Mac6, [u8; 16], u8, Vec<u8>); 3] = [
        // Router advertisement.
        (
            [0x33, 0x33, 0, 0, 0, 1],
            all_nodes,
            58,
            vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        // Neighbour solicitation for the victim.
        (
            [0x33, 0x33, 0xff, victim[13], victim[14], victim[15]],
            victim,
            58,
            [&[135u8, 0, 0, 0, 0, 0, 0, 0][..], &victim[..]].concat(),
        ),
        // A TCP SYN to the victim's endpoint.
        (
            mac_for(a.victim),
            victim,
            6,
            tcp(a.ip, a.victim, 44020, a.victim_port, 1, 0, SYN, b""),
        ),
    ];
    for _ in 0..4 {
        for (dst_mac, dst, next, payload) in &frames {
            let mut packet = vec![0x60, 0, 0, 0];
            packet.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            packet.extend_from_slice(&[*next, 255]);
            packet.extend_from_slice(&me);
            packet.extend_from_slice(dst);
            packet.extend_from_slice(payload);
            a.send(&ethernet(*dst_mac, a.mac, ETH_IPV6, &packet));
        }
    }
}

/// EtherTypes other than IPv4 and ARP: 802.1Q and QinQ tags (VLAN hopping with a double
/// tag), LLDP, RARP, PPPoE discovery, Wake-on-LAN, MPLS, an 802.3 length field with an STP
/// BPDU.
fn other_ethertype(a: &mut Attacker) {
    let inner = a.tcp(a.victim, 44030, a.victim_port, SYN, b"");
    let victim_mac = mac_for(a.victim);
    // 802.1Q (VLAN 1) and 802.1ad + 802.1Q double tag around the SYN.
    let mut tagged = vec![0x00, 0x01];
    tagged.extend_from_slice(&inner[12..]);
    a.send(&ethernet(victim_mac, a.mac, 0x8100, &tagged));
    let mut double = vec![0x00, 0x02, 0x81, 0x00, 0x00, 0x01];
    double.extend_from_slice(&inner[12..]);
    a.send(&ethernet(victim_mac, a.mac, 0x88a8, &double));
    for ethertype in [
        0x88cc, 0x8035, 0x8863, 0x0842, 0x8847, 0x9000, 0x88b5, 0x0000,
    ] {
        a.send(&ethernet(victim_mac, a.mac, ethertype, &[0x5a; 46]));
    }
    // 802.3 length field (38 bytes of LLC + BPDU) to the STP group address.
    let mut bpdu = vec![0x42, 0x42, 0x03, 0, 0, 0, 0];
    bpdu.resize(38, 0);
    a.send(&ethernet(
        [0x01, 0x80, 0xc2, 0, 0, 0],
        a.mac,
        bpdu.len() as u16,
        &bpdu,
    ));
}

/// IPv4 options: loose and strict source routes through the victim, record route, router
/// alert.
fn ip_options(a: &mut Attacker) {
    let victim_mac = mac_for(a.victim);
    let segment = tcp(a.ip, a.victim, 44040, a.victim_port, 1, 0, SYN, b"");
    let v = a.victim.octets();
    let options: [&[u8]; 4] = [
        &[0x83, 7, 4, v[0], v[1], v[2], v[3], 0],
        &[0x89, 7, 4, v[0], v[1], v[2], v[3], 0],
        &[0x07, 7, 4, 0, 0, 0, 0, 0],
        &[0x94, 4, 0, 0],
    ];
    for opts in options {
        let ident = a.next_ident();
        let packet = ipv4(a.ip, a.victim, TCP, ident, 0, opts, &segment);
        a.send(&ethernet(victim_mac, a.mac, ETH_IPV4, &packet));
    }
}

/// IPv4 protocols other than TCP, UDP and ICMP: IGMP, IP-in-IP (tunnelling a spoofed packet),
/// GRE, ESP, SCTP, raw.
fn ip_protocol(a: &mut Attacker) {
    let inner_segment = tcp(a.other, a.victim, 40000, a.victim_port, 1, 0, SYN, b"");
    let inner = ipv4(a.other, a.victim, TCP, 7, 0, &[], &inner_segment);
    for proto in [2u8, 4, 47, 50, 132, 255] {
        let frame = a.ip(a.victim, proto, &inner);
        a.send(&frame);
    }
}

// ---- frame builders ----

type Mac6 = [u8; 6];

/// The MAC the plan gives `ip`: 02:00 and its four bytes.
fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x00, o[0], o[1], o[2], o[3]]
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 packet with a valid header checksum; `frag` is the flags and fragment offset
/// field, `options` a multiple of 4 bytes.
fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ident: u16,
    frag: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let header_len = 20 + options.len();
    let total = (header_len + payload.len()) as u16;
    let mut p = Vec::with_capacity(header_len + payload.len());
    p.push(0x40 | (header_len / 4) as u8);
    p.push(0);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(options);
    fix_ip_checksum(&mut p[..header_len]);
    p.extend_from_slice(payload);
    p
}

fn fix_ip_checksum(header: &mut [u8]) {
    header[10] = 0;
    header[11] = 0;
    let sum = checksum(0, header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + data.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    s.extend_from_slice(data);
    let sum = checksum(pseudo(src, dst, TCP, s.len()), &s);
    s[16..18].copy_from_slice(&sum.to_be_bytes());
    s
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let len = (8 + data.len()) as u16;
    let mut d = Vec::with_capacity(usize::from(len));
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&len.to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(data);
    let sum = checksum(pseudo(src, dst, UDP, d.len()), &d);
    d[6..8].copy_from_slice(&if sum == 0 { 0xffff } else { sum }.to_be_bytes());
    d
}

fn icmp(kind: u8, code: u8, ident: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"sturdy attacker!");
    let sum = checksum(0, &m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// An Ethernet/IPv4 ARP packet.
fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0, 1, 0x08, 0x00, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sha);
    p.extend_from_slice(&spa.octets());
    p.extend_from_slice(&tha);
    p.extend_from_slice(&tpa.octets());
    p
}

/// The sum of the TCP/UDP pseudo-header, not yet folded.
fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut sum = 0u32;
    for ip in [src, dst] {
        let o = ip.octets();
        sum += u32::from(u16::from_be_bytes([o[0], o[1]]));
        sum += u32::from(u16::from_be_bytes([o[2], o[3]]));
    }
    sum + u32::from(proto) + len as u32
}

/// The Internet checksum of `data`, starting from `sum`.
fn checksum(mut sum: u32, data: &[u8]) -> u16 {
    for chunk in data.chunks(2) {
        let word = match chunk {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
