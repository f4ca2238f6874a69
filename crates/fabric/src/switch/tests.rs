//! The switch's verdicts, frame by frame, with the counters each one moves; and a property
//! test against a reference model (parsing with smoltcp, the guests' own stack).
//!
//! The application of these tests: `web` (port 0, 10.77.0.2) holds `db.kv` (6379/tcp) and
//! `db.dns` (53/udp) and an egress to 203.0.113.7:443/tcp; `db` (port 1, .3) provides them;
//! `cache` (port 2, .4) provides `redis` (6380/tcp) to nobody; `mallory` (port 3, .5) holds
//! nothing and provides nothing.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire as sm;

use super::*;
use crate::plan::{Endpoint, Proto};
use crate::wire::build::{self, Host};

const WEB: PortId = PortId(0);
const DB: PortId = PortId(1);
const CACHE: PortId = PortId(2);
const MALLORY: PortId = PortId(3);

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const SYN_ACK: TcpFlags = TcpFlags(0x12);
const FIN_ACK: TcpFlags = TcpFlags(0x11);
const PSH_ACK: TcpFlags = TcpFlags(0x18);
const RST: TcpFlags = TcpFlags::RST;

fn ep(name: &str, port: u16, proto: Proto) -> Endpoint {
    Endpoint {
        name: name.into(),
        port,
        proto,
    }
}

pub(super) fn plan() -> Plan {
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("web", vec![ep("http", 80, Proto::Tcp)])
        .unwrap();
    plan.add_service(
        "db",
        vec![ep("kv", 6379, Proto::Tcp), ep("dns", 53, Proto::Udp)],
    )
    .unwrap();
    plan.add_service("cache", vec![ep("redis", 6380, Proto::Tcp)])
        .unwrap();
    plan.add_service("mallory", vec![]).unwrap();
    plan.grant("web", "db").unwrap();
    plan.grant_egress(
        "web",
        "egress.0",
        Ipv4Addr::new(203, 0, 113, 7),
        443,
        Proto::Tcp,
    )
    .unwrap();
    plan
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, n)
}

/// The host on `port` as its guest would address itself.
fn host(port: PortId, tport: u16) -> Host {
    let n = port.0 as u8 + 2;
    Host::new(crate::plan::mac_for(ip(n)), ip(n), tport)
}

/// A host that does not exist (or lies outside the application).
fn stranger(addr: Ipv4Addr, tport: u16) -> Host {
    Host::new(Mac([2, 0, 0, 0, 0, 0x99]), addr, tport)
}

/// A fabric and what it sent.
pub(super) struct Net {
    pub(super) f: Fabric,
    pub(super) now: Instant,
    pub(super) out: Vec<(PortId, Vec<u8>)>,
}

impl Net {
    pub(super) fn new() -> Net {
        Net::with(plan(), Config::default())
    }

    fn with(plan: Plan, config: Config) -> Net {
        Net {
            f: Fabric::new(plan, config).unwrap(),
            now: Instant::now(),
            out: Vec::new(),
        }
    }

    /// Sends `frame` from `from`; what the fabric sends is in `self.out` (cleared first).
    pub(super) fn send(&mut self, from: PortId, mut frame: Vec<u8>) -> Verdict {
        self.out.clear();
        let out = &mut self.out;
        self.f.process(from, &mut frame, self.now, &mut |to, f| {
            out.push((to, f.to_vec()))
        })
    }

    /// Sends `frame` and asserts it is forwarded to `to` unchanged but for its (already
    /// right) destination MAC.
    #[track_caller]
    fn forwarded(&mut self, from: PortId, frame: Vec<u8>, to: PortId) {
        let copy = frame.clone();
        assert_eq!(self.send(from, frame), Verdict::Forwarded(to));
        assert_eq!(self.out, [(to, copy)]);
    }

    /// Sends `frame` and asserts it is dropped for `reason` with nothing sent anywhere.
    #[track_caller]
    fn dropped(&mut self, from: PortId, frame: Vec<u8>, reason: DropReason) {
        assert_eq!(self.send(from, frame), Verdict::Dropped(reason));
        assert!(self.out.is_empty(), "sent {:?}", self.out);
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn port(&self, port: PortId) -> PortStats {
        *self.f.port_stats(port).unwrap()
    }

    fn drops(&self, port: PortId, reason: DropReason) -> u64 {
        self.port(port).drops.get(reason)
    }

    fn cap(&self, consumer: &str, provider: &str, endpoint: &str) -> CapStats {
        *self
            .f
            .capability_stats(&Capability::new(consumer, provider, endpoint))
            .unwrap()
    }

    /// Opens web:`sport` -> db:6379 up to ESTABLISHED: web's ISN 1000, db's 5000.
    fn establish(&mut self, sport: u16) {
        let (w, d) = (host(WEB, sport), host(DB, 6379));
        self.forwarded(WEB, build::tcp(&w, &d, SYN, 1000, 0, b""), DB);
        self.forwarded(DB, build::tcp(&d, &w, SYN_ACK, 5000, 1001, b""), WEB);
        self.forwarded(WEB, build::tcp(&w, &d, ACK, 1001, 5001, b""), DB);
    }
}

/// Rewrites the IPv4 header of a frame with `f` and fixes its checksum.
fn patch_ip(mut frame: Vec<u8>, f: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let ip = &mut frame[14..];
    f(ip);
    let hl = usize::from(ip[0] & 0x0f) * 4;
    ip[10] = 0;
    ip[11] = 0;
    let sum = crate::wire::checksum(0, &ip[..hl.min(ip.len())]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    frame
}

// ---------------------------------------------------------------------------------------------
// Capabilities and connections

#[test]
fn a_syn_along_a_capability_is_forwarded_and_opens_a_connection() {
    let mut n = Net::new();
    let syn = build::tcp(&host(WEB, 40000), &host(DB, 6379), SYN, 1000, 0, b"");
    let len = syn.len() as u64;
    n.forwarded(WEB, syn, DB);
    assert_eq!(n.f.connections(), 1);
    assert_eq!(
        n.port(WEB).rx,
        Traffic {
            frames: 1,
            bytes: len
        }
    );
    assert_eq!(
        n.port(DB).tx,
        Traffic {
            frames: 1,
            bytes: len
        }
    );
    assert_eq!(n.port(WEB).drops.total() + n.port(DB).drops.total(), 0);
    let kv = n.cap("web", "db", "kv");
    assert_eq!(
        kv.to_provider,
        Traffic {
            frames: 1,
            bytes: len
        }
    );
    assert_eq!(kv.opened, 1);
    assert_eq!(n.cap("web", "db", "dns").opened, 0);
}

#[test]
fn the_destination_mac_is_rewritten_to_the_target_ports() {
    let mut n = Net::new();
    // Addressed to the gateway's MAC (or any unicast MAC): it still goes to db, as db's.
    let mut to = host(DB, 6379);
    to.mac = Mac([2, 0, 0, 0, 0, 0x42]);
    let syn = build::tcp(&host(WEB, 40000), &to, SYN, 1000, 0, b"");
    assert_eq!(n.send(WEB, syn.clone()), Verdict::Forwarded(DB));
    let (port, frame) = &n.out[0];
    assert_eq!(*port, DB);
    assert_eq!(&frame[..6], &host(DB, 0).mac.0);
    assert_eq!(&frame[6..], &syn[6..]);
}

#[test]
fn a_reply_passes_only_after_the_consumer_opened() {
    let mut n = Net::new();
    let (w, d) = (host(WEB, 40000), host(DB, 6379));
    n.dropped(
        DB,
        build::tcp(&d, &w, SYN_ACK, 5000, 1001, b""),
        DropReason::NoConnection,
    );
    n.dropped(
        DB,
        build::tcp(&d, &w, PSH_ACK, 5001, 1001, b"hi"),
        DropReason::NoConnection,
    );
    assert_eq!(n.drops(DB, DropReason::NoConnection), 2);

    n.establish(40000);
    n.forwarded(WEB, build::tcp(&w, &d, PSH_ACK, 1001, 5001, b"GET k"), DB);
    n.forwarded(DB, build::tcp(&d, &w, PSH_ACK, 5001, 1006, b"value"), WEB);
    let kv = n.cap("web", "db", "kv");
    assert_eq!((kv.to_provider.frames, kv.to_consumer.frames), (3, 2));
    assert_eq!(n.port(WEB).tx.frames, 2);
    // Another source port of web is another connection, which db cannot start.
    n.dropped(
        DB,
        build::tcp(&d, &w.port(40001), PSH_ACK, 1, 1, b"x"),
        DropReason::NoConnection,
    );
    assert_eq!(n.drops(DB, DropReason::NoConnection), 3);
}

#[test]
fn a_connection_to_what_was_not_declared_is_refused() {
    let mut n = Net::new();
    let w = host(WEB, 40000);
    // An undeclared service, an address nobody has, an undeclared port of a declared service,
    // the right port over the wrong protocol, and the reverse direction of a capability.
    n.dropped(
        WEB,
        build::tcp(&w, &host(CACHE, 6380), SYN, 1, 0, b""),
        DropReason::NoCapability,
    );
    n.dropped(
        WEB,
        build::tcp(&w, &stranger(ip(9), 22), SYN, 1, 0, b""),
        DropReason::NoCapability,
    );
    n.dropped(
        WEB,
        build::tcp(&w, &host(DB, 22), SYN, 1, 0, b""),
        DropReason::NoCapability,
    );
    n.dropped(
        WEB,
        build::udp(&w, &host(DB, 6379), b"x"),
        DropReason::NoCapability,
    );
    n.dropped(
        DB,
        build::tcp(&host(DB, 5000), &host(WEB, 80), SYN, 1, 0, b""),
        DropReason::NoCapability,
    );
    n.dropped(
        MALLORY,
        build::tcp(&host(MALLORY, 1), &host(DB, 6379), SYN, 1, 0, b""),
        DropReason::NoCapability,
    );
    assert_eq!(n.drops(WEB, DropReason::NoCapability), 4);
    assert_eq!(n.drops(DB, DropReason::NoCapability), 1);
    assert_eq!(n.drops(MALLORY, DropReason::NoCapability), 1);
    assert_eq!(n.f.connections(), 0);
    assert_eq!(n.port(DB).tx.frames + n.port(CACHE).tx.frames, 0);
}

#[test]
fn udp_flows_have_replies_and_time_out() {
    let mut n = Net::new();
    let (w, d) = (host(WEB, 33000), host(DB, 53));
    // A reply before the query, and a datagram from a port of db that web may not hear.
    n.dropped(DB, build::udp(&d, &w, b"early"), DropReason::NoConnection);
    n.dropped(
        DB,
        build::udp(&d.port(9999), &w, b"x"),
        DropReason::NoCapability,
    );

    n.forwarded(WEB, build::udp(&w, &d, b"query"), DB);
    n.forwarded(DB, build::udp(&d, &w, b"answer"), WEB);
    let dns = n.cap("web", "db", "dns");
    assert_eq!(
        (dns.opened, dns.to_provider.frames, dns.to_consumer.frames),
        (1, 1, 1)
    );

    // A flow with replies lives 120 s after its first answer (answers do not extend it).
    n.advance(Duration::from_secs(119));
    n.forwarded(DB, build::udp(&d, &w, b"late answer"), WEB);
    n.advance(Duration::from_secs(121));
    n.dropped(
        DB,
        build::udp(&d, &w, b"too late"),
        DropReason::NoConnection,
    );
    assert_eq!(n.f.connections(), 0);

    // Unanswered, 30 s.
    n.forwarded(WEB, build::udp(&w, &d, b"query"), DB);
    n.advance(Duration::from_secs(31));
    n.dropped(DB, build::udp(&d, &w, b"answer"), DropReason::NoConnection);
    assert_eq!(n.drops(DB, DropReason::NoConnection), 3);
    assert_eq!(n.cap("web", "db", "dns").opened, 2);
}

#[test]
fn tcp_close_and_reset_end_connections() {
    let mut n = Net::new();
    let (w, d) = (host(WEB, 40000), host(DB, 6379));
    n.establish(40000);
    n.forwarded(WEB, build::tcp(&w, &d, FIN_ACK, 1001, 5001, b""), DB);
    n.forwarded(DB, build::tcp(&d, &w, PSH_ACK, 5001, 1002, b"bye"), WEB);
    n.forwarded(DB, build::tcp(&d, &w, FIN_ACK, 5004, 1002, b""), WEB);
    n.forwarded(WEB, build::tcp(&w, &d, ACK, 1002, 5005, b""), DB);
    // Kept a little for retransmissions, then gone.
    n.advance(Duration::from_secs(5));
    n.forwarded(WEB, build::tcp(&w, &d, ACK, 1002, 5005, b""), DB);
    n.advance(Duration::from_secs(11));
    n.dropped(
        WEB,
        build::tcp(&w, &d, ACK, 1002, 5005, b""),
        DropReason::NoConnection,
    );
    assert_eq!(n.f.connections(), 0);

    // A reset ends a connection at once.
    n.establish(40001);
    n.forwarded(DB, build::tcp(&d, &w.port(40001), RST, 5001, 0, b""), WEB);
    assert_eq!(n.f.connections(), 0);
    n.dropped(
        WEB,
        build::tcp(&w.port(40001), &d, PSH_ACK, 1001, 5001, b"x"),
        DropReason::NoConnection,
    );
    // Nothing was cut by the fabric.
    assert_eq!(n.cap("web", "db", "kv").cut, 0);
    assert_eq!(n.cap("web", "db", "kv").opened, 2);
}

#[test]
fn ports_of_a_closed_connection_can_be_reused() {
    let mut n = Net::new();
    let (w, d) = (host(WEB, 40000), host(DB, 6379));
    n.establish(40000);
    n.forwarded(WEB, build::tcp(&w, &d, FIN_ACK, 1001, 5001, b""), DB);
    n.forwarded(DB, build::tcp(&d, &w, FIN_ACK, 5001, 1002, b""), WEB);
    n.forwarded(WEB, build::tcp(&w, &d, SYN, 90000, 0, b""), DB);
    n.forwarded(DB, build::tcp(&d, &w, SYN_ACK, 7000, 90001, b""), WEB);
    assert_eq!(n.cap("web", "db", "kv").opened, 2);
}

#[test]
fn segments_out_of_their_connections_state_are_dropped() {
    let mut n = Net::new();
    let (w, d) = (host(WEB, 40000), host(DB, 6379));
    n.forwarded(WEB, build::tcp(&w, &d, SYN, 1000, 0, b""), DB);
    // Data before the handshake is over, from either side.
    n.dropped(
        WEB,
        build::tcp(&w, &d, PSH_ACK, 1001, 0, b"x"),
        DropReason::TcpState,
    );
    n.dropped(
        DB,
        build::tcp(&d, &w, PSH_ACK, 5001, 1001, b"x"),
        DropReason::TcpState,
    );
    n.forwarded(DB, build::tcp(&d, &w, SYN_ACK, 5000, 1001, b""), WEB);
    n.forwarded(WEB, build::tcp(&w, &d, ACK, 1001, 5001, b""), DB);
    // A SYN on an established connection.
    n.dropped(
        WEB,
        build::tcp(&w, &d, SYN, 1, 0, b""),
        DropReason::TcpState,
    );
    assert_eq!(n.drops(WEB, DropReason::TcpState), 2);
    assert_eq!(n.drops(DB, DropReason::TcpState), 1);
    assert_eq!(n.cap("web", "db", "kv").drops.get(DropReason::TcpState), 3);
}

/// A provider cannot keep its consumer's UDP flows or echo exchanges alive by answering: they
/// would hold the consumer's share of the connection table for ever.
#[test]
fn only_the_consumer_keeps_udp_and_echo_flows_alive() {
    let mut n = Net::new();
    let (w, d) = (host(WEB, 33000), host(DB, 53));
    n.forwarded(WEB, build::udp(&w, &d, b"query"), DB);
    n.forwarded(DB, build::udp(&d, &w, b"answer"), WEB);
    // db answers on every 100 s: the flow still ends 120 s after its first answer.
    n.advance(Duration::from_secs(100));
    n.forwarded(DB, build::udp(&d, &w, b"unasked"), WEB);
    n.advance(Duration::from_secs(21));
    n.dropped(DB, build::udp(&d, &w, b"unasked"), DropReason::NoConnection);
    // web's own datagrams keep it: 100 s apart, for 300 s.
    n.forwarded(WEB, build::udp(&w, &d, b"query"), DB);
    n.forwarded(DB, build::udp(&d, &w, b"answer"), WEB);
    for _ in 0..3 {
        n.advance(Duration::from_secs(100));
        n.forwarded(WEB, build::udp(&w, &d, b"again"), DB);
    }
    n.forwarded(DB, build::udp(&d, &w, b"answer"), WEB);

    // Echo: replies do not extend the exchange past 30 s from web's request.
    let (w, d) = (host(WEB, 0), host(DB, 0));
    n.forwarded(WEB, build::icmp_echo(&w, &d, true, 7, 1), DB);
    n.advance(Duration::from_secs(20));
    n.forwarded(DB, build::icmp_echo(&d, &w, false, 7, 1), WEB);
    n.advance(Duration::from_secs(11));
    n.dropped(
        DB,
        build::icmp_echo(&d, &w, false, 7, 1),
        DropReason::NoConnection,
    );
}

/// The reply tuple of an echo exchange with identifier 0 is the tuple of a request from the
/// peer with identifier 0: only a reply may take it back, only a request go out on it.
#[test]
fn an_echo_request_never_passes_as_a_reply() {
    let mut n = Net::new();
    let (w, d) = (host(WEB, 0), host(DB, 0));
    n.forwarded(WEB, build::icmp_echo(&w, &d, true, 0, 1), DB);
    n.dropped(
        DB,
        build::icmp_echo(&d, &w, true, 0, 1),
        DropReason::NoCapability,
    );
    n.dropped(
        WEB,
        build::icmp_echo(&w, &d, false, 0, 1),
        DropReason::NoConnection,
    );
    n.forwarded(DB, build::icmp_echo(&d, &w, false, 0, 1), WEB);
}

/// A frame matching a connection's addresses from a port that is not that end's (the gateway,
/// the one port whose source address is not fixed) does not go into the connection.
#[test]
fn a_connection_takes_frames_only_from_its_own_ports() {
    let mut n = Net::new();
    n.f.set_gateway(true);
    n.establish(40000);
    let (w, d) = (host(WEB, 40000), host(DB, 6379));
    // The gateway's own MAC (its frames pass the MAC check), web's address and port.
    let forged = Host::new(n.f.plan().gateway.mac, w.ip, 40000);
    let from_gateway = build::tcp(&forged, &d, PSH_ACK, 1001, 5001, b"forged");
    n.dropped(
        PortId::GATEWAY,
        from_gateway,
        DropReason::Spoofed(Field::Ip),
    );
    n.forwarded(WEB, build::tcp(&w, &d, PSH_ACK, 1001, 5001, b"real"), DB);
}

#[test]
fn icmp_echo_goes_along_capabilities_only() {
    let mut n = Net::new();
    let (w, d) = (host(WEB, 0), host(DB, 0));
    n.dropped(
        DB,
        build::icmp_echo(&d, &w, false, 7, 1),
        DropReason::NoConnection,
    );
    n.forwarded(WEB, build::icmp_echo(&w, &d, true, 7, 1), DB);
    n.forwarded(DB, build::icmp_echo(&d, &w, false, 7, 1), WEB);
    // Another identifier is another exchange.
    n.dropped(
        DB,
        build::icmp_echo(&d, &w, false, 8, 1),
        DropReason::NoConnection,
    );
    // No capability db -> web, mallory -> db, web -> cache.
    n.dropped(
        DB,
        build::icmp_echo(&d, &w, true, 7, 2),
        DropReason::NoCapability,
    );
    n.dropped(
        MALLORY,
        build::icmp_echo(&host(MALLORY, 0), &d, true, 1, 1),
        DropReason::NoCapability,
    );
    n.dropped(
        WEB,
        build::icmp_echo(&w, &host(CACHE, 0), true, 1, 1),
        DropReason::NoCapability,
    );
    // Other ICMP (a destination unreachable, type 3) is dropped.
    let unreachable = patch_ip(build::icmp_echo(&d, &w, false, 7, 1), |ip| ip[20] = 3);
    n.dropped(DB, unreachable, DropReason::IcmpType);
    // Echo replies time out with the exchange.
    n.advance(Duration::from_secs(31));
    n.dropped(
        DB,
        build::icmp_echo(&d, &w, false, 7, 1),
        DropReason::NoConnection,
    );
}

#[test]
fn egress_waits_for_the_gateway_and_is_never_implied() {
    let mut n = Net::new();
    let w = host(WEB, 40000);
    let mut out = stranger(Ipv4Addr::new(203, 0, 113, 7), 443);
    out.mac = n.f.plan().gateway.mac;
    n.dropped(
        WEB,
        build::tcp(&w, &out, SYN, 1, 0, b""),
        DropReason::NoGateway,
    );
    n.dropped(
        WEB,
        build::tcp(&w, &out.port(80), SYN, 1, 0, b""),
        DropReason::NoCapability,
    );
    n.dropped(
        DB,
        build::tcp(&host(DB, 1), &out, SYN, 1, 0, b""),
        DropReason::NoCapability,
    );
    assert_eq!(n.drops(WEB, DropReason::NoGateway), 1);
}

#[test]
fn the_gateway_reaches_published_endpoints_and_answers_egress_only() {
    let mut plan = plan();
    plan.publish("127.0.0.1:8080".parse().unwrap(), "web.http")
        .unwrap();
    let mut n = Net::with(plan, Config::default());
    let gw_mac = n.f.plan().gateway.mac;
    let g = Host::new(gw_mac, ip(1), 50000);
    let web = host(WEB, 80);
    // Until the gateway runs, nothing goes to or from it.
    n.dropped(
        PortId::GATEWAY,
        build::tcp(&g, &web, SYN, 1, 0, b""),
        DropReason::NoGateway,
    );
    n.f.set_gateway(true);

    // Ingress: the gateway's ARP for web is answered, for db is not; its SYN to web.http goes
    // through, to anything else not.
    assert_eq!(
        n.send(PortId::GATEWAY, build::arp_request(&g, ip(2))),
        Verdict::Answered
    );
    n.dropped(
        PortId::GATEWAY,
        build::arp_request(&g, ip(3)),
        DropReason::ArpUnreachable,
    );
    // The SYN comes after an unasked ARP reply telling web where the gateway is (so web
    // answers without an ARP request of its own, which its stack may rate-limit).
    let syn = build::tcp(&g, &web, SYN, 1, 0, b"");
    assert_eq!(
        n.send(PortId::GATEWAY, syn.clone()),
        Verdict::Forwarded(WEB)
    );
    let introduction = build::arp(
        gw_mac,
        web.mac,
        ArpRepr {
            op: ArpOp::Reply,
            sender_mac: gw_mac,
            sender_ip: ip(1),
            target_mac: web.mac,
            target_ip: web.ip,
        },
    );
    assert_eq!(n.out, [(WEB, introduction), (WEB, syn)]);
    n.forwarded(
        WEB,
        build::tcp(&web, &g, SYN_ACK, 9, 2, b""),
        PortId::GATEWAY,
    );
    n.dropped(
        PortId::GATEWAY,
        build::tcp(&g.port(50001), &host(DB, 6379), SYN, 1, 0, b""),
        DropReason::NoCapability,
    );
    // web may ARP the gateway (its peer), db may not.
    assert_eq!(
        n.send(WEB, build::arp_request(&host(WEB, 0), ip(1))),
        Verdict::Answered
    );
    n.dropped(
        DB,
        build::arp_request(&host(DB, 0), ip(1)),
        DropReason::ArpUnreachable,
    );
    // The gateway may not open a connection from another address than its own.
    let mut spoof = Host::new(gw_mac, Ipv4Addr::new(203, 0, 113, 7), 443);
    n.dropped(
        PortId::GATEWAY,
        build::tcp(&spoof, &web, SYN, 1, 0, b""),
        DropReason::Spoofed(Field::Ip),
    );
    // Egress: web's SYN to 203.0.113.7:443 goes to the gateway, which answers from that
    // address on that connection only.
    let w = host(WEB, 40000);
    n.forwarded(
        WEB,
        build::tcp(&w, &spoof, SYN, 100, 0, b""),
        PortId::GATEWAY,
    );
    n.forwarded(
        PortId::GATEWAY,
        build::tcp(&spoof, &w, SYN_ACK, 7, 101, b""),
        WEB,
    );
    spoof.port = 444;
    n.dropped(
        PortId::GATEWAY,
        build::tcp(&spoof, &w, SYN_ACK, 7, 101, b""),
        DropReason::NoConnection,
    );
    let stats =
        n.f.capability_stats(&Capability::new("web", "gateway", "egress.0"))
            .unwrap();
    assert_eq!(stats.opened, 1);
    let stats =
        n.f.capability_stats(&Capability::new("gateway", "web", "http"))
            .unwrap();
    assert_eq!(stats.opened, 1);
    assert_eq!(n.f.port_stats(PortId::GATEWAY).unwrap().rx.frames, 8);
}

#[test]
fn connections_are_limited_per_port() {
    let config = Config {
        max_connections_per_port: 2,
        ..Config::default()
    };
    let mut n = Net::with(plan(), config);
    let d = host(DB, 6379);
    for sport in [1, 2] {
        n.forwarded(WEB, build::tcp(&host(WEB, sport), &d, SYN, 1, 0, b""), DB);
    }
    n.dropped(
        WEB,
        build::tcp(&host(WEB, 3), &d, SYN, 1, 0, b""),
        DropReason::ConntrackFull,
    );
    assert_eq!(
        n.cap("web", "db", "kv")
            .drops
            .get(DropReason::ConntrackFull),
        1
    );
    assert_eq!(n.f.connections(), 2);
}

// ---------------------------------------------------------------------------------------------
// Anti-spoofing

#[test]
fn a_spoofed_source_mac_or_address_is_dropped() {
    let mut n = Net::new();
    let d = host(DB, 6379);
    // mallory sends as web: web's MAC, then its own MAC with web's address.
    let mut as_web = host(WEB, 40000);
    n.dropped(
        MALLORY,
        build::tcp(&as_web, &d, SYN, 1, 0, b""),
        DropReason::Spoofed(Field::Mac),
    );
    as_web.mac = host(MALLORY, 0).mac;
    n.dropped(
        MALLORY,
        build::tcp(&as_web, &d, SYN, 1, 0, b""),
        DropReason::Spoofed(Field::Ip),
    );
    // web itself with a made-up MAC or address.
    let mut w = host(WEB, 40000);
    w.mac = Mac([2, 0, 0, 0, 0, 1]);
    n.dropped(
        WEB,
        build::tcp(&w, &d, SYN, 1, 0, b""),
        DropReason::Spoofed(Field::Mac),
    );
    let mut w = host(WEB, 40000);
    w.ip = ip(77);
    n.dropped(
        WEB,
        build::tcp(&w, &d, SYN, 1, 0, b""),
        DropReason::Spoofed(Field::Ip),
    );
    // Even on a reply of a real connection.
    n.establish(40000);
    let mut d_spoofed = host(DB, 6379);
    d_spoofed.ip = ip(4);
    n.dropped(
        DB,
        build::tcp(&d_spoofed, &host(WEB, 40000), ACK, 5001, 1001, b""),
        DropReason::Spoofed(Field::Ip),
    );
    assert_eq!(n.drops(MALLORY, DropReason::Spoofed(Field::Mac)), 1);
    assert_eq!(n.drops(MALLORY, DropReason::Spoofed(Field::Ip)), 1);
    assert_eq!(n.drops(WEB, DropReason::Spoofed(Field::Mac)), 1);
    assert_eq!(n.drops(WEB, DropReason::Spoofed(Field::Ip)), 1);
    assert_eq!(n.drops(DB, DropReason::Spoofed(Field::Ip)), 1);
}

#[test]
fn frames_from_a_port_without_a_service_are_dropped() {
    let mut n = Net::new();
    n.dropped(
        PortId(9),
        build::tcp(&host(WEB, 1), &host(DB, 6379), SYN, 1, 0, b""),
        DropReason::UnknownPort,
    );
    assert_eq!(
        n.f.unattributed_stats().drops.get(DropReason::UnknownPort),
        1
    );
    assert_eq!(n.f.unattributed_stats().rx.frames, 1);
    assert!(n.f.port_stats(PortId(9)).is_none());
}

// ---------------------------------------------------------------------------------------------
// ARP

#[test]
fn arp_for_a_reachable_peer_is_answered_by_the_fabric() {
    let mut n = Net::new();
    let w = host(WEB, 0);
    assert_eq!(
        n.send(WEB, build::arp_request(&w, ip(3))),
        Verdict::Answered
    );
    let db_mac = host(DB, 0).mac.0;
    let mut want = Vec::new();
    want.extend_from_slice(&w.mac.0); // to web
    want.extend_from_slice(&db_mac); // from db
    want.extend_from_slice(&[0x08, 0x06]);
    want.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 2]); // Ethernet/IPv4, reply
    want.extend_from_slice(&db_mac);
    want.extend_from_slice(&[10, 77, 0, 3]);
    want.extend_from_slice(&w.mac.0);
    want.extend_from_slice(&[10, 77, 0, 2]);
    assert_eq!(n.out, [(WEB, want.clone())]);
    // smoltcp, the guests' stack, reads it as the answer.
    let eth = sm::EthernetFrame::new_checked(&want[..]).unwrap();
    assert_eq!(eth.ethertype(), sm::EthernetProtocol::Arp);
    let arp = sm::ArpRepr::parse(&sm::ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
    let sm::ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr,
        source_protocol_addr,
        ..
    } = arp
    else {
        panic!("{arp:?}")
    };
    assert_eq!(operation, sm::ArpOperation::Reply);
    assert_eq!(source_hardware_addr, sm::EthernetAddress(db_mac));
    assert_eq!(source_protocol_addr, ip(3));

    // The provider finds its consumer, to answer it; and web finds the gateway (egress).
    assert_eq!(
        n.send(DB, build::arp_request(&host(DB, 0), ip(2))),
        Verdict::Answered
    );
    assert_eq!(&n.out[0].1[22..28], &w.mac.0);
    assert_eq!(
        n.send(WEB, build::arp_request(&w, ip(1))),
        Verdict::Answered
    );
    assert_eq!(&n.out[0].1[22..28], &n.f.plan().gateway.mac.0);
    // Nothing was forwarded; the answers count as sent to the askers.
    assert_eq!(n.port(DB).tx.frames, 1);
    assert_eq!(n.port(WEB).tx.frames, 2);
    assert_eq!(n.port(WEB).drops.total(), 0);
}

#[test]
fn arp_for_an_unreachable_address_is_unanswered() {
    let mut n = Net::new();
    // cache exists but web may not reach it; .9 does not exist; db has no egress, so no
    // gateway; mallory reaches nothing; nobody is told about an address outside the subnet.
    n.dropped(
        WEB,
        build::arp_request(&host(WEB, 0), ip(4)),
        DropReason::ArpUnreachable,
    );
    n.dropped(
        WEB,
        build::arp_request(&host(WEB, 0), ip(9)),
        DropReason::ArpUnreachable,
    );
    n.dropped(
        DB,
        build::arp_request(&host(DB, 0), ip(1)),
        DropReason::ArpUnreachable,
    );
    n.dropped(
        MALLORY,
        build::arp_request(&host(MALLORY, 0), ip(3)),
        DropReason::ArpUnreachable,
    );
    n.dropped(
        WEB,
        build::arp_request(&host(WEB, 0), Ipv4Addr::new(8, 8, 8, 8)),
        DropReason::ArpUnreachable,
    );
    assert_eq!(n.drops(WEB, DropReason::ArpUnreachable), 3);
    assert_eq!(n.port(CACHE).rx.frames + n.port(CACHE).tx.frames, 0);
}

#[test]
fn an_arp_scan_of_the_subnet_finds_only_reachable_peers() {
    let mut n = Net::new();
    let scan = |n: &mut Net, port: PortId| -> Vec<Ipv4Addr> {
        let mut found = Vec::new();
        for last in 0..=255u8 {
            if n.send(port, build::arp_request(&host(port, 0), ip(last))) == Verdict::Answered {
                let reply = &n.out[0].1;
                found.push(Ipv4Addr::new(reply[28], reply[29], reply[30], reply[31]));
            }
        }
        found
    };
    assert_eq!(scan(&mut n, MALLORY), Vec::<Ipv4Addr>::new());
    assert_eq!(scan(&mut n, CACHE), Vec::<Ipv4Addr>::new());
    assert_eq!(scan(&mut n, WEB), [ip(1), ip(3)]);
    assert_eq!(scan(&mut n, DB), [ip(2)]);
    // Asking for its own address is a gratuitous ARP.
    assert_eq!(n.drops(MALLORY, DropReason::ArpUnreachable), 255);
    assert_eq!(n.drops(MALLORY, DropReason::ArpNotAllowed), 1);
}

#[test]
fn gratuitous_arp_replies_and_poisoning_are_dropped() {
    let mut n = Net::new();
    let m = host(MALLORY, 0);
    let req = |sender_mac, sender_ip, target_ip| ArpRepr {
        op: ArpOp::Request,
        sender_mac,
        sender_ip,
        target_mac: Mac::ZERO,
        target_ip,
    };
    // mallory claims db's address: an unsolicited reply to web, a gratuitous announcement, a
    // request with db's address as sender (which would poison the askee's cache).
    let poison = ArpRepr {
        op: ArpOp::Reply,
        sender_mac: m.mac,
        sender_ip: ip(3),
        target_mac: host(WEB, 0).mac,
        target_ip: ip(2),
    };
    n.dropped(
        MALLORY,
        build::arp(m.mac, host(WEB, 0).mac, poison),
        DropReason::ArpNotAllowed,
    );
    n.dropped(
        MALLORY,
        build::arp(m.mac, Mac::BROADCAST, req(m.mac, ip(3), ip(3))),
        DropReason::ArpNotAllowed,
    );
    n.dropped(
        MALLORY,
        build::arp(m.mac, Mac::BROADCAST, req(m.mac, ip(3), ip(2))),
        DropReason::Spoofed(Field::Ip),
    );
    // Its own gratuitous ARP, a probe (sender 0.0.0.0), a sender MAC that is not the frame's.
    n.dropped(
        MALLORY,
        build::arp(m.mac, Mac::BROADCAST, req(m.mac, ip(5), ip(5))),
        DropReason::ArpNotAllowed,
    );
    n.dropped(
        MALLORY,
        build::arp(
            m.mac,
            Mac::BROADCAST,
            req(m.mac, Ipv4Addr::UNSPECIFIED, ip(2)),
        ),
        DropReason::ArpNotAllowed,
    );
    n.dropped(
        MALLORY,
        build::arp(m.mac, Mac::BROADCAST, req(host(DB, 0).mac, ip(5), ip(2))),
        DropReason::Spoofed(Field::Mac),
    );
    // Even web, which may reach db, may not answer for it.
    let w = host(WEB, 0);
    let reply = ArpRepr {
        op: ArpOp::Reply,
        sender_mac: w.mac,
        sender_ip: ip(2),
        target_mac: host(DB, 0).mac,
        target_ip: ip(3),
    };
    n.dropped(
        WEB,
        build::arp(w.mac, host(DB, 0).mac, reply),
        DropReason::ArpNotAllowed,
    );
    // Not Ethernet/IPv4, and cut short.
    let mut rarp = build::arp_request(&w, ip(3));
    rarp[14 + 3] = 0x06; // protocol type 0x0806
    n.dropped(WEB, rarp, DropReason::Malformed);
    let mut short = build::arp_request(&w, ip(3));
    short.truncate(14 + 27);
    n.dropped(WEB, short, DropReason::Truncated);
    assert_eq!(n.drops(MALLORY, DropReason::ArpNotAllowed), 4);
    assert_eq!(n.drops(MALLORY, DropReason::Spoofed(Field::Ip)), 1);
    assert_eq!(n.drops(MALLORY, DropReason::Spoofed(Field::Mac)), 1);
    assert_eq!(n.port(WEB).tx.frames + n.port(DB).tx.frames, 0);
}

// ---------------------------------------------------------------------------------------------
// What never crosses the fabric

#[test]
fn broadcast_and_multicast_are_not_forwarded() {
    let mut n = Net::new();
    let w = host(WEB, 33000);
    let d = host(DB, 53);
    let mut to_all = d;
    to_all.mac = Mac::BROADCAST;
    n.dropped(WEB, build::udp(&w, &to_all, b"x"), DropReason::Broadcast);
    let mut to_group = d;
    to_group.mac = Mac([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
    n.dropped(WEB, build::udp(&w, &to_group, b"x"), DropReason::Multicast);
    // Unicast MAC, broadcast or multicast address.
    n.dropped(
        WEB,
        build::udp(&w, &stranger(ip(255), 53), b"x"),
        DropReason::Broadcast,
    );
    n.dropped(
        WEB,
        build::udp(&w, &stranger(Ipv4Addr::BROADCAST, 53), b"x"),
        DropReason::Broadcast,
    );
    n.dropped(
        WEB,
        build::udp(&w, &stranger(Ipv4Addr::new(224, 0, 0, 251), 5353), b"x"),
        DropReason::Multicast,
    );
    n.dropped(
        WEB,
        build::udp(&w, &stranger(Ipv4Addr::new(239, 1, 2, 3), 53), b"x"),
        DropReason::Multicast,
    );
    assert_eq!(n.drops(WEB, DropReason::Broadcast), 3);
    assert_eq!(n.drops(WEB, DropReason::Multicast), 3);
    assert_eq!(
        n.f.stats()
            .ports
            .iter()
            .map(|p| p.stats.tx.frames)
            .sum::<u64>(),
        0
    );
}

#[test]
fn fragments_options_and_other_protocols_are_dropped() {
    let mut n = Net::new();
    let w = host(WEB, 33000);
    let d = host(DB, 53);
    let query = build::udp(&w, &d, b"query");
    n.dropped(
        WEB,
        patch_ip(query.clone(), |ip| ip[6] = 0x20),
        DropReason::Fragment,
    ); // MF
    n.dropped(
        WEB,
        patch_ip(query.clone(), |ip| ip[7] = 0x10),
        DropReason::Fragment,
    ); // offset
    n.dropped(
        WEB,
        patch_ip(query.clone(), |ip| ip[9] = 47),
        DropReason::IpProtocol,
    ); // GRE
       // A header with 4 bytes of options (a NOP and an end of list).
    let mut with_options = query[..34].to_vec();
    with_options.extend_from_slice(&[1, 0, 0, 0]);
    with_options.extend_from_slice(&query[34..]);
    let with_options = patch_ip(with_options, |ip| {
        ip[0] = 0x46;
        let total = u16::from_be_bytes([ip[2], ip[3]]) + 4;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
    });
    n.dropped(WEB, with_options, DropReason::IpOptions);
    assert_eq!(n.drops(WEB, DropReason::Fragment), 2);
    assert_eq!(n.drops(WEB, DropReason::IpOptions), 1);
    assert_eq!(n.drops(WEB, DropReason::IpProtocol), 1);
    assert_eq!(n.f.connections(), 0);
}

#[test]
fn ipv6_and_other_ethertypes_are_dropped() {
    let mut n = Net::new();
    let w = host(WEB, 0);
    let db = host(DB, 0).mac;
    n.dropped(
        WEB,
        build::ethernet(w.mac, db, EtherType::Ipv6, &[0x60; 40]),
        DropReason::Ipv6,
    );
    n.dropped(
        WEB,
        build::ethernet(w.mac, db, EtherType::Other(0x8100), &[0; 46]),
        DropReason::OtherEthertype,
    );
    n.dropped(
        WEB,
        build::ethernet(w.mac, db, EtherType::Other(0x88cc), &[0; 46]),
        DropReason::OtherEthertype,
    );
    n.dropped(
        WEB,
        build::ethernet(w.mac, db, EtherType::Other(0x0040), &[0; 46]),
        DropReason::OtherEthertype,
    );
    assert_eq!(n.drops(WEB, DropReason::Ipv6), 1);
    assert_eq!(n.drops(WEB, DropReason::OtherEthertype), 3);
}

#[test]
fn oversized_truncated_and_malformed_frames_are_dropped() {
    let mut n = Net::new();
    let w = host(WEB, 33000);
    let d = host(DB, 53);
    // 1514 bytes (MTU 1500) pass; 1515 do not.
    let full = build::udp(&w, &d, &[7; 1472]);
    assert_eq!(full.len(), 1514);
    n.forwarded(WEB, full, DB);
    n.dropped(WEB, build::udp(&w, &d, &[7; 1473]), DropReason::Oversized);
    n.f.oversized(WEB, 65536, n.now);
    assert_eq!(n.drops(WEB, DropReason::Oversized), 2);
    // Short of an Ethernet header, of an IPv4 header, of the IPv4 total length, of a TCP
    // header; an empty frame.
    let syn = build::tcp(&w.port(40000), &host(DB, 6379), SYN, 1, 0, b"");
    n.dropped(WEB, syn[..13].to_vec(), DropReason::Truncated);
    n.dropped(WEB, syn[..30].to_vec(), DropReason::Truncated);
    n.dropped(WEB, syn[..50].to_vec(), DropReason::Truncated);
    n.dropped(
        WEB,
        patch_ip(syn[..50].to_vec(), |ip| ip[3] = 36),
        DropReason::Truncated,
    );
    n.dropped(WEB, Vec::new(), DropReason::Truncated);
    assert_eq!(n.drops(WEB, DropReason::Truncated), 5);
    // A bad IPv4 checksum, version 6 in an IPv4 frame, a TCP data offset below 5, port 0.
    let mut bad_sum = syn.clone();
    bad_sum[24] ^= 0xff;
    n.dropped(WEB, bad_sum, DropReason::Malformed);
    n.dropped(
        WEB,
        patch_ip(syn.clone(), |ip| ip[0] = 0x65),
        DropReason::Malformed,
    );
    let mut bad_offset = syn.clone();
    bad_offset[14 + 20 + 12] = 0x40;
    n.dropped(WEB, bad_offset, DropReason::Malformed);
    n.dropped(
        WEB,
        build::tcp(&w.port(0), &host(DB, 6379), SYN, 1, 0, b""),
        DropReason::Malformed,
    );
    assert_eq!(n.drops(WEB, DropReason::Malformed), 4);
    assert_eq!(
        n.f.connections(),
        1,
        "only the UDP flow of the full-size datagram"
    );
}

// ---------------------------------------------------------------------------------------------
// Live policy changes

/// Checks that `frame` is a reset to `to` that smoltcp accepts: valid checksums, RST (with ACK
/// of `ack` if given), sequence number `seq`, from `src` to `dst`.
#[track_caller]
fn assert_reset(frame: &[u8], src: &Host, dst: &Host, seq: u32, ack: Option<u32>) {
    let caps = ChecksumCapabilities::default();
    let eth = sm::EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.src_addr(), sm::EthernetAddress(src.mac.0));
    assert_eq!(eth.dst_addr(), sm::EthernetAddress(dst.mac.0));
    let ip = sm::Ipv4Packet::new_checked(eth.payload()).unwrap();
    let ip_repr = sm::Ipv4Repr::parse(&ip, &caps).unwrap();
    assert_eq!((ip_repr.src_addr, ip_repr.dst_addr), (src.ip, dst.ip));
    let tcp = sm::TcpPacket::new_checked(ip.payload()).unwrap();
    let repr = sm::TcpRepr::parse(&tcp, &src.ip.into(), &dst.ip.into(), &caps).unwrap();
    assert_eq!((repr.src_port, repr.dst_port), (src.port, dst.port));
    assert_eq!(repr.control, sm::TcpControl::Rst);
    assert_eq!(repr.seq_number, sm::TcpSeqNumber(seq as i32));
    assert_eq!(repr.ack_number, ack.map(|a| sm::TcpSeqNumber(a as i32)));
}

#[test]
fn removing_a_capability_cuts_its_connections_and_adding_it_back_restores() {
    let mut n = Net::new();
    let (w, d) = (host(WEB, 40000), host(DB, 6379));
    n.establish(40000);
    n.forwarded(WEB, build::tcp(&w, &d, PSH_ACK, 1001, 5001, b"12345"), DB);
    n.forwarded(DB, build::tcp(&d, &w, PSH_ACK, 5001, 1006, b"abc"), WEB);
    // A second connection still in its handshake, and a UDP flow of the other capability.
    n.forwarded(WEB, build::tcp(&w.port(40001), &d, SYN, 777, 0, b""), DB);
    n.forwarded(WEB, build::udp(&host(WEB, 33000), &host(DB, 53), b"q"), DB);
    assert_eq!(n.f.connections(), 3);

    let mut revoked = plan();
    assert_eq!(revoked.revoke("web", "db.kv"), 1);
    n.out.clear();
    let out = &mut n.out;
    let report =
        n.f.apply(revoked, n.now, &mut |to, f| out.push((to, f.to_vec())))
            .unwrap();
    assert_eq!(report.removed, [Capability::new("web", "db", "kv")]);
    assert!(report.added.is_empty());
    assert_eq!((report.cut, report.resets), (2, 4));
    assert_eq!(n.f.connections(), 1, "the UDP flow of db.dns stays");

    // Each end of each connection gets a reset at the sequence number it expects next.
    let to_web: Vec<&Vec<u8>> = n
        .out
        .iter()
        .filter(|(p, _)| *p == WEB)
        .map(|(_, f)| f)
        .collect();
    let to_db: Vec<&Vec<u8>> = n
        .out
        .iter()
        .filter(|(p, _)| *p == DB)
        .map(|(_, f)| f)
        .collect();
    assert_eq!((to_web.len(), to_db.len()), (2, 2));
    let established = |f: &&Vec<u8>| {
        u16::from_be_bytes([f[36], f[37]]) == 40000 || u16::from_be_bytes([f[34], f[35]]) == 40000
    };
    let web_rst = to_web.iter().find(|f| established(f)).unwrap();
    let db_rst = to_db.iter().find(|f| established(f)).unwrap();
    assert_reset(web_rst, &d, &w, 5004, Some(1006));
    assert_reset(db_rst, &w, &d, 1006, Some(5004));
    // The one in its handshake: web (SYN-SENT) needs the ACK of its SYN; db has sent nothing.
    let web_rst = to_web.iter().find(|f| !established(f)).unwrap();
    let db_rst = to_db.iter().find(|f| !established(f)).unwrap();
    assert_reset(web_rst, &d, &w.port(40001), 0, Some(778));
    assert_reset(db_rst, &w.port(40001), &d, 778, None);
    let kv = n.f.capability_stats(&Capability::new("web", "db", "kv"));
    assert!(kv.is_none(), "the capability is gone");

    // Nothing more passes on the old connection, and no new one opens.
    n.dropped(
        DB,
        build::tcp(&d, &w, PSH_ACK, 5004, 1006, b"more"),
        DropReason::NoConnection,
    );
    n.dropped(
        WEB,
        build::tcp(&w, &d, PSH_ACK, 1006, 5004, b"more"),
        DropReason::NoConnection,
    );
    n.dropped(
        WEB,
        build::tcp(&w.port(40002), &d, SYN, 1, 0, b""),
        DropReason::NoCapability,
    );
    // db stays reachable by ARP through dns; the UDP flow goes on.
    n.forwarded(DB, build::udp(&host(DB, 53), &host(WEB, 33000), b"a"), WEB);

    // Back again: new connections open at once, with the counters of before.
    let out = &mut n.out;
    let report =
        n.f.apply(plan(), n.now, &mut |to, f| out.push((to, f.to_vec())))
            .unwrap();
    assert_eq!(report.added, [Capability::new("web", "db", "kv")]);
    assert_eq!((report.cut, report.resets), (0, 0));
    n.establish(40003);
    assert_eq!(
        n.cap("web", "db", "kv").opened,
        1,
        "a new capability's counters start at zero"
    );
    assert_eq!(
        n.cap("web", "db", "dns").opened,
        1,
        "kept across both changes"
    );
}

#[test]
fn removing_a_service_cuts_its_connections_and_hides_it() {
    let mut n = Net::new();
    n.establish(40000);
    let mut without_db = Plan::new(n.f.plan().subnet);
    without_db
        .add_service("web", vec![ep("http", 80, Proto::Tcp)])
        .unwrap();
    let out = &mut n.out;
    out.clear();
    let report =
        n.f.apply(without_db, n.now, &mut |to, f| out.push((to, f.to_vec())))
            .unwrap();
    assert_eq!(report.removed.len(), 2);
    assert_eq!((report.cut, report.resets), (1, 2));
    n.dropped(
        WEB,
        build::arp_request(&host(WEB, 0), ip(3)),
        DropReason::ArpUnreachable,
    );
    n.dropped(
        DB,
        build::arp_request(&host(DB, 0), ip(2)),
        DropReason::UnknownPort,
    );
}

#[test]
fn an_invalid_plan_changes_nothing() {
    let mut n = Net::new();
    n.establish(40000);
    let mut bad = plan();
    bad.services[1].ipv4 = bad.services[0].ipv4;
    let mut sent = 0;
    assert!(n.f.apply(bad, n.now, &mut |_, _| sent += 1).is_err());
    assert_eq!(sent, 0);
    assert_eq!(n.f.connections(), 1);
    n.forwarded(
        DB,
        build::tcp(&host(DB, 6379), &host(WEB, 40000), ACK, 5001, 1001, b""),
        WEB,
    );
}

#[test]
fn idle_connections_expire_and_open_tcp_ones_are_reset() {
    let mut n = Net::new();
    n.establish(40000);
    n.forwarded(WEB, build::udp(&host(WEB, 33000), &host(DB, 53), b"q"), DB);
    n.advance(Duration::from_secs(60));
    let mut out = Vec::new();
    assert_eq!(
        n.f.expire(n.now, &mut |to, f: &[u8]| out.push((to, f.to_vec()))),
        1,
        "UDP"
    );
    assert!(out.is_empty());
    n.advance(Duration::from_secs(2 * 3600 + 4 * 60));
    assert_eq!(
        n.f.expire(n.now, &mut |to, f: &[u8]| out.push((to, f.to_vec()))),
        1,
        "TCP"
    );
    assert_eq!(out.len(), 2);
    assert_reset(
        &out[0].1,
        &host(DB, 6379),
        &host(WEB, 40000),
        5001,
        Some(1001),
    );
    assert_reset(
        &out[1].1,
        &host(WEB, 40000),
        &host(DB, 6379),
        1001,
        Some(5001),
    );
    assert_eq!(n.cap("web", "db", "kv").cut, 1);
    assert_eq!(n.f.connections(), 0);
}

// ---------------------------------------------------------------------------------------------
// Capture and logs

#[test]
fn captures_see_a_capabilitys_frames_and_a_ports_drops() {
    let mut n = Net::new();
    let frames: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let port_frames: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (a, b) = (frames.clone(), port_frames.clone());
    let cap = n.f.capture(
        CaptureTarget::Capability(Capability::new("web", "db", "kv")),
        Box::new(move |_: Instant, f: &[u8]| a.lock().unwrap().push(f.to_vec())),
    );
    n.f.capture(
        CaptureTarget::Port(MALLORY),
        Box::new(move |_: Instant, f: &[u8]| b.lock().unwrap().push(f.to_vec())),
    );
    n.establish(40000);
    n.forwarded(WEB, build::udp(&host(WEB, 33000), &host(DB, 53), b"q"), DB);
    let probe = build::tcp(&host(MALLORY, 1), &host(DB, 6379), SYN, 1, 0, b"");
    n.dropped(MALLORY, probe.clone(), DropReason::NoCapability);
    let flags: Vec<u8> = frames
        .lock()
        .unwrap()
        .iter()
        .map(|f| f[14 + 20 + 13])
        .collect();
    assert_eq!(
        flags,
        [0x02, 0x12, 0x10],
        "SYN, SYN-ACK, ACK and not the UDP flow"
    );
    assert_eq!(*port_frames.lock().unwrap(), [probe]);
    assert!(n.f.stop_capture(cap).is_some());
    assert!(n.f.stop_capture(cap).is_none());
    n.establish(40001);
    assert_eq!(frames.lock().unwrap().len(), 3);
}

thread_local! {
    /// Where [`Lines`] keeps the messages of events on this thread, if a test asked for them.
    static SINK: std::cell::RefCell<Option<Arc<Mutex<Vec<String>>>>> = const { std::cell::RefCell::new(None) };
}

/// The test binary's global tracing subscriber: keeps each event's message in the calling
/// thread's [`SINK`]. Global, not scoped: tracing caches a callsite's interest as "never" when
/// another test thread hits it first with no subscriber at all, which made a scoped one miss
/// events at random.
struct Lines;

impl Lines {
    /// Runs `f` and returns the messages of the events it emitted on this thread.
    fn capture(f: impl FnOnce()) -> Vec<String> {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            tracing::subscriber::set_global_default(Lines).expect("no other global subscriber")
        });
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        SINK.with(|s| *s.borrow_mut() = Some(lines.clone()));
        f();
        SINK.with(|s| *s.borrow_mut() = None);
        let lines = lines.lock().unwrap().clone();
        lines
    }
}

impl tracing::Subscriber for Lines {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::always()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                } else {
                    self.0 += &format!(" {}={value:?}", field.name());
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        SINK.with(|s| {
            if let Some(lines) = &*s.borrow() {
                lines.lock().unwrap().push(m.0);
            }
        });
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn drops_are_logged_with_their_reason_rate_limited() {
    let lines = Lines::capture(|| {
        let mut n = Net::new();
        let w = host(WEB, 40000);
        for _ in 0..5 {
            n.send(WEB, build::tcp(&w, &host(CACHE, 6380), SYN, 1, 0, b""));
        }
        n.send(WEB, build::tcp(&w, &stranger(ip(9), 22), SYN, 1, 0, b""));
        n.send(MALLORY, build::arp_request(&host(MALLORY, 0), ip(3)));
        n.advance(Duration::from_secs(1));
        n.send(WEB, build::tcp(&w, &stranger(ip(9), 22), SYN, 1, 0, b""));
    });
    assert_eq!(
        lines,
        [
            "web -> 10.77.0.4:6380/tcp (cache) denied: no capability service=web reason=\"no_capability\" suppressed=0",
            "mallory: ARP who-has 10.77.0.3 (db) denied: address not reachable by this service service=mallory reason=\"arp_unreachable\" suppressed=0",
            "web -> 10.77.0.9:22/tcp denied: no capability service=web reason=\"no_capability\" suppressed=5",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Properties

mod props {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    /// A frame a guest could send: well-formed along some flow, or mangled.
    #[derive(Clone, Debug)]
    enum Shape {
        Tcp { flags: u8, seq: u32 },
        Udp,
        Echo { request: bool },
        Arp { target: u8 },
    }

    fn shape() -> impl Strategy<Value = Shape> {
        prop_oneof![
            (
                prop::sample::select(vec![0x02u8, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x03, 0x00]),
                any::<u32>()
            )
                .prop_map(|(flags, seq)| Shape::Tcp { flags, seq }),
            Just(Shape::Udp),
            any::<bool>().prop_map(|request| Shape::Echo { request }),
            (0u8..8).prop_map(|target| Shape::Arp { target }),
        ]
    }

    #[derive(Clone, Debug)]
    enum Mangle {
        None,
        /// The source MAC or address of another port.
        SpoofMac(u16),
        SpoofIp(u16),
        /// Bytes set at random offsets.
        Bytes(Vec<(usize, u8)>),
        Truncate(usize),
        Extend(Vec<u8>),
    }

    fn mangle() -> impl Strategy<Value = Mangle> {
        prop_oneof![
            4 => Just(Mangle::None),
            1 => (0u16..5).prop_map(Mangle::SpoofMac),
            1 => (0u16..5).prop_map(Mangle::SpoofIp),
            3 => prop::collection::vec((0usize..80, any::<u8>()), 1..4).prop_map(Mangle::Bytes),
            1 => (0usize..80).prop_map(Mangle::Truncate),
            1 => prop::collection::vec(any::<u8>(), 1..1600).prop_map(Mangle::Extend),
        ]
    }

    #[derive(Clone, Debug)]
    struct Send {
        from: u16,
        /// Destination host number (2..=6 are the services and one stranger), and ports.
        to: u8,
        sport: u16,
        dport: u16,
        shape: Shape,
        mangle: Mangle,
        /// Or just random bytes.
        raw: Option<Vec<u8>>,
        /// Milliseconds since the previous frame.
        wait: u16,
    }

    fn send() -> impl Strategy<Value = Send> {
        (
            prop_oneof![9 => 0u16..4, 1 => Just(9u16)],
            prop_oneof![1 => Just(1u8), 8 => 2u8..=6, 1 => Just(255u8)],
            prop_oneof![
                Just(40000u16),
                Just(40001),
                Just(33000),
                Just(53),
                Just(6379),
                any::<u16>()
            ],
            prop_oneof![
                Just(6379u16),
                Just(53),
                Just(6380),
                Just(80),
                Just(40000),
                Just(33000),
                any::<u16>()
            ],
            shape(),
            mangle(),
            prop::option::weighted(0.1, prop::collection::vec(any::<u8>(), 0..100)),
            0u16..200,
        )
            .prop_map(|(from, to, sport, dport, shape, mangle, raw, wait)| Send {
                from,
                to,
                sport,
                dport,
                shape,
                mangle,
                raw,
                wait,
            })
    }

    fn build(s: &Send) -> Vec<u8> {
        if let Some(raw) = &s.raw {
            return raw.clone();
        }
        let port = PortId(s.from);
        let src = host(port, s.sport);
        let dst_ip = ip(s.to);
        let dst = Host::new(crate::plan::mac_for(dst_ip), dst_ip, s.dport);
        let mut f = match &s.shape {
            Shape::Tcp { flags, seq } => build::tcp(&src, &dst, TcpFlags(*flags), *seq, 0, b"data"),
            Shape::Udp => build::udp(&src, &dst, b"datagram"),
            Shape::Echo { request } => build::icmp_echo(&src, &dst, *request, s.sport, 1),
            Shape::Arp { target } => build::arp_request(&src, ip(*target)),
        };
        match &s.mangle {
            Mangle::None => {}
            Mangle::SpoofMac(other) => {
                let mac = host(PortId(*other), 0).mac;
                f[6..12].copy_from_slice(&mac.0);
            }
            Mangle::SpoofIp(other) => {
                let addr = host(PortId(*other), 0).ip.octets();
                if f.len() >= 34 && f[12..14] == [8, 0] {
                    f = patch_ip(f, |ip| ip[12..16].copy_from_slice(&addr));
                }
            }
            Mangle::Bytes(edits) => {
                for (at, v) in edits {
                    if *at < f.len() {
                        f[*at] = *v;
                    }
                }
            }
            Mangle::Truncate(len) => f.truncate(*len),
            Mangle::Extend(more) => f.extend_from_slice(more),
        }
        f
    }

    /// Protocol, source address and port, destination address and port.
    type Flow5 = (u8, Ipv4Addr, u16, Ipv4Addr, u16);

    /// A forwarded frame as the reference model sees it, parsed by smoltcp: the flow tuple
    /// (protocol, source address and port, destination address and port; ICMP echo as in
    /// conntrack), and whether it may open a flow.
    fn flow(frame: &[u8]) -> Option<(Flow5, bool)> {
        let eth = sm::EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() != sm::EthernetProtocol::Ipv4 {
            return None;
        }
        let ip = sm::Ipv4Packet::new_checked(eth.payload()).ok()?;
        if !ip.verify_checksum() || ip.more_frags() || ip.frag_offset() != 0 {
            return None;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        match ip.next_header() {
            sm::IpProtocol::Tcp => {
                let t = sm::TcpPacket::new_checked(ip.payload()).ok()?;
                let opens = t.syn() && !t.ack() && !t.rst();
                Some(((6, src, t.src_port(), dst, t.dst_port()), opens))
            }
            sm::IpProtocol::Udp => {
                let u = sm::UdpPacket::new_checked(ip.payload()).ok()?;
                Some(((17, src, u.src_port(), dst, u.dst_port()), true))
            }
            sm::IpProtocol::Icmp => {
                let i = sm::Icmpv4Packet::new_checked(ip.payload()).ok()?;
                let ident = u16::from_be_bytes([ip.payload()[4], ip.payload()[5]]);
                match (i.msg_type(), i.msg_code()) {
                    (sm::Icmpv4Message::EchoRequest, 0) => Some(((1, src, ident, dst, 0), true)),
                    (sm::Icmpv4Message::EchoReply, 0) => Some(((1, src, 0, dst, ident), false)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// What the plan allows to open, independently of the policy's tables.
    fn capability_allows(plan: &Plan, from: PortId, t: &Flow5) -> bool {
        let consumer = plan.service_on(from).unwrap();
        plan.capabilities.iter().any(|c| {
            let (provider, endpoint) = plan.resolve(c).unwrap();
            let proto = match endpoint.proto {
                Proto::Tcp => 6,
                Proto::Udp => 17,
            };
            c.consumer == consumer.name
                && provider.ipv4 == t.3
                && (t.0 == 1 || (proto == t.0 && endpoint.port == t.4))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn frames_reach_only_where_the_policy_allows(sends in prop::collection::vec(send(), 1..120)) {
            let mut n = Net::new();
            let plan = n.f.plan().clone();
            // Flows the model saw opened along a capability.
            let mut opened: HashSet<Flow5> = HashSet::new();
            let mut forwarded = 0u64;
            for s in &sends {
                // Less than any timeout in all: nothing expires, so the model needs no clock.
                n.advance(Duration::from_millis(u64::from(s.wait) / 40));
                let frame = build(s);
                let from = PortId(s.from);
                let verdict = n.send(from, frame.clone());
                match verdict {
                    Verdict::Dropped(_) => prop_assert!(n.out.is_empty(), "a dropped frame went out: {:?}", n.out),
                    Verdict::Answered => {
                        // One ARP reply, to the asker, about a peer it may reach.
                        prop_assert_eq!(n.out.len(), 1);
                        let (to, reply) = &n.out[0];
                        prop_assert_eq!(*to, from);
                        let target = Ipv4Addr::new(reply[28], reply[29], reply[30], reply[31]);
                        let me = plan.service_on(from).unwrap();
                        let peer = plan.services.iter().find(|p| p.ipv4 == target);
                        let ok = match peer {
                            Some(p) => plan.capabilities.iter().any(|c| {
                                (c.consumer == me.name && c.provider == p.name)
                                    || (c.consumer == p.name && c.provider == me.name)
                            }),
                            None => target == plan.gateway.ipv4 && plan.egress.iter().any(|e| e.consumer == me.name),
                        };
                        prop_assert!(ok, "{} told about {target}", me.name);
                    }
                    Verdict::Forwarded(to) => {
                        forwarded += 1;
                        prop_assert_eq!(n.out.len(), 1);
                        let (port, out) = &n.out[0];
                        prop_assert_eq!(*port, to);
                        // Unchanged but for the destination MAC, which is the target's.
                        prop_assert_eq!(&out[6..], &frame[6..]);
                        let sender = plan.service_on(from).expect("a service's port");
                        let target = plan.service_on(to).expect("a service's port");
                        prop_assert_eq!(&out[..6], &target.mac.0[..]);
                        prop_assert_eq!(&out[6..12], &sender.mac.0[..]);
                        let (t, opens) = flow(out).expect("only valid IPv4 TCP, UDP, ICMP echo is forwarded");
                        prop_assert_eq!(t.1, sender.ipv4);
                        prop_assert_eq!(t.3, target.ipv4);
                        let rt = (t.0, t.3, t.4, t.1, t.2);
                        if opened.contains(&t) || opened.contains(&rt) {
                            // A frame of a flow opened along a capability, either way.
                        } else {
                            prop_assert!(opens && capability_allows(&plan, from, &t), "{t:?} from {} is not allowed", sender.name);
                            opened.insert(t);
                        }
                    }
                }
            }
            // Every frame is counted once as received, on its port or as unattributed.
            let stats = n.f.stats();
            let rx: u64 = stats.ports.iter().map(|p| p.stats.rx.frames).sum::<u64>() + stats.unattributed.rx.frames;
            prop_assert_eq!(rx, sends.len() as u64);
            let drops: u64 = stats.ports.iter().map(|p| p.stats.drops.total()).sum::<u64>() + stats.unattributed.drops.total();
            let answered = sends.len() as u64 - drops - forwarded;
            let tx: u64 = stats.ports.iter().map(|p| p.stats.tx.frames).sum();
            prop_assert_eq!(tx, forwarded + answered);
        }
    }
}
