//! The adversarial suite (issue 4, "Must show"): a hostile unikernel, `attacker`
//! (guest/test-guests), on a fabric port beside a legitimate pair, `web` (`tcpclient`, holding
//! the capability `echo.echo`) and `echo` (`tcpecho`, providing it), all real guests booted by
//! `sturdy-hvt` with boot arguments rendered from the plan the fabric enforces.
//!
//! While web talks to echo in a loop, the attacker (no capabilities) sends, with the raw-frame
//! API, spoofed MACs and addresses, an ARP scan, ARP poisoning, TCP/UDP/ICMP to undeclared
//! services and ports, replies without a connection, broadcast and multicast floods, oversized,
//! truncated and malformed frames, fragments, IPv6, other EtherTypes, IP options and protocols.
//! The test then checks:
//! - nothing of it reached another guest: every frame delivered to web's and echo's ports
//!   (captured, and written to pcap files under `target/tmp/`) is the legitimate peer's
//!   traffic, and as many as the ports' counters say were delivered;
//! - every frame the attacker sent is counted on its port under the reason the attack is
//!   meant to hit, exactly, and nothing was forwarded or answered to it;
//! - the legitimate traffic kept working throughout (every client run echoed every byte).
//!
//! Needs /dev/kvm and the `sturdy-hvt` binary built (see tests/common/mod.rs).

mod common;

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{boot, finish, lines, read_until, Boot};

use sturdy_fabric::pcap::PcapWriter;
use sturdy_fabric::port::{self, FabricHandle, Port};
use sturdy_fabric::wire::{
    ArpOp, ArpPacket, ArpRepr, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, TcpPacket,
};
use sturdy_fabric::{
    Capability, CaptureTarget, DropReason, Endpoint, Fabric, Field, FrameSink, Plan, Proto, Service,
};

/// How often the attacker runs every attack, and the pause between rounds: long enough for
/// several client runs to overlap the attack.
const ROUNDS: u64 = 10;
const PAUSE_MS: u64 = 300;
/// Connections of each client run (64 KiB echoed on each).
const CONNECTIONS: u64 = 4;
const ECHO_PORT: u16 = 7;

/// Each attack of `attacker all`, and the reason the fabric must count its frames under.
const ATTACKS: &[(&str, DropReason)] = &[
    ("spoof-mac", DropReason::Spoofed(Field::Mac)),
    ("spoof-ip", DropReason::Spoofed(Field::Ip)),
    ("arp-scan", DropReason::ArpUnreachable),
    ("arp-poison", DropReason::ArpNotAllowed),
    ("arp-spoof-request", DropReason::Spoofed(Field::Ip)),
    ("tcp-undeclared-service", DropReason::NoCapability),
    ("udp-undeclared-service", DropReason::NoCapability),
    ("tcp-undeclared-port", DropReason::NoCapability),
    ("udp-undeclared-port", DropReason::NoCapability),
    ("tcp-no-capability", DropReason::NoCapability),
    ("tcp-no-connection", DropReason::NoConnection),
    // UDP has no handshake: a "reply" from a service nobody may send to is a new flow
    // without a capability.
    ("udp-reply", DropReason::NoCapability),
    ("icmp-echo", DropReason::NoCapability),
    ("icmp-reply", DropReason::NoConnection),
    ("icmp-other", DropReason::IcmpType),
    ("broadcast-flood", DropReason::Broadcast),
    ("multicast-flood", DropReason::Multicast),
    // Stopped before the fabric (by sturdy-rt and by the monitor): none reach it.
    ("oversized", DropReason::Oversized),
    ("truncated", DropReason::Truncated),
    ("malformed", DropReason::Malformed),
    ("fragment", DropReason::Fragment),
    ("ipv6", DropReason::Ipv6),
    ("other-ethertype", DropReason::OtherEthertype),
    ("ip-options", DropReason::IpOptions),
    ("ip-protocol", DropReason::IpProtocol),
];

/// attacker (10.77.0.2, nothing granted), web (10.77.0.3) -> echo.echo, echo (10.77.0.4).
fn plan() -> Plan {
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("attacker", vec![]).unwrap();
    plan.add_service("web", vec![]).unwrap();
    let echo = Endpoint {
        name: "echo".into(),
        port: ECHO_PORT,
        proto: Proto::Tcp,
    };
    plan.add_service("echo", vec![echo]).unwrap();
    plan.grant("web", "echo.echo").unwrap();
    plan
}

/// A capture sink that writes a pcap file and keeps the frames for the test to check.
struct Tee {
    pcap: PcapWriter<BufWriter<std::fs::File>>,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl FrameSink for Tee {
    fn frame(&mut self, at: Instant, frame: &[u8]) {
        self.pcap.frame(at, frame);
        self.frames.lock().unwrap().push(frame.to_vec());
    }

    fn flush(&mut self) {
        self.pcap.flush();
    }
}

/// Captures port `service` of `plan` to `target/tmp/adversarial-SERVICE.pcap`.
fn capture(handle: &FabricHandle, plan: &Plan, service: &str) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("adversarial-{service}.pcap"));
    let file = std::fs::File::create(&path).unwrap();
    let frames = Arc::new(Mutex::new(Vec::new()));
    let sink = Tee {
        pcap: PcapWriter::new(BufWriter::new(file)).unwrap(),
        frames: frames.clone(),
    };
    let port = plan.service(service).unwrap().port;
    handle
        .capture(CaptureTarget::Port(port), Box::new(sink))
        .unwrap();
    frames
}

/// Of the frames captured on `me`'s port, those the fabric delivered to it (their Ethernet
/// destination is rewritten to `me`'s MAC; an honest guest never sends to itself) that are
/// not `peer`'s legitimate traffic: ARP replies for `peer` made by the fabric, and TCP of the
/// echo capability from `peer`'s MAC and address. Returns (delivered, descriptions of the
/// frames that should not have been).
fn foreign_frames(
    frames: &[Vec<u8>],
    me: &Service,
    peer: &Service,
    attacker: &Service,
    me_provides: bool,
) -> (usize, Vec<String>) {
    let mut delivered = 0;
    let mut foreign = Vec::new();
    for frame in frames {
        if frame.is_empty() {
            // Not a frame: when a guest's monitor exits, the fabric may read the end of its
            // socket as empty messages, and capture them (seen when a client run ends).
            continue;
        }
        let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
            // Nothing shorter than an Ethernet header is ever delivered.
            foreign.push(format!("a {}-byte frame", frame.len()));
            continue;
        };
        if eth.dst() != me.mac {
            continue;
        }
        delivered += 1;
        let what = format!(
            "{} -> {} type {:?}, {} bytes",
            eth.src(),
            eth.dst(),
            eth.ethertype(),
            frame.len()
        );
        if eth.src() == attacker.mac {
            foreign.push(format!("from the attacker's MAC: {what}"));
            continue;
        }
        if eth.src() != peer.mac {
            foreign.push(format!("not from {}'s MAC: {what}", peer.name));
            continue;
        }
        match eth.ethertype() {
            EtherType::Arp => {
                let Ok(packet) = ArpPacket::new_checked(eth.payload()) else {
                    foreign.push(format!("a bad ARP packet: {what}"));
                    continue;
                };
                let arp = ArpRepr::parse(&packet);
                let legit = arp.op == ArpOp::Reply
                    && arp.sender_mac == peer.mac
                    && arp.sender_ip == peer.ipv4
                    && arp.target_mac == me.mac
                    && arp.target_ip == me.ipv4;
                if !legit {
                    let from_attacker =
                        arp.sender_mac == attacker.mac || arp.sender_ip == attacker.ipv4;
                    foreign.push(format!(
                        "ARP {:?} {} is-at {} (from the attacker: {from_attacker}): {what}",
                        arp.op, arp.sender_ip, arp.sender_mac
                    ));
                }
            }
            EtherType::Ipv4 => {
                let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                    foreign.push(format!("a bad IPv4 packet: {what}"));
                    continue;
                };
                let ports = match ip.protocol() {
                    IpProtocol::Tcp => TcpPacket::new_checked(ip.payload())
                        .ok()
                        .map(|t| (t.src_port(), t.dst_port())),
                    _ => None,
                };
                let echo_port = ports.is_some_and(|(sport, dport)| {
                    if me_provides {
                        dport == ECHO_PORT
                    } else {
                        sport == ECHO_PORT
                    }
                });
                let legit = ip.src() == peer.ipv4
                    && ip.dst() == me.ipv4
                    && ip.verify_checksum()
                    && !ip.is_fragment()
                    && echo_port;
                if !legit {
                    foreign.push(format!(
                        "IPv4 {} -> {} proto {:?} ports {ports:?} (from the attacker: {}): {what}",
                        ip.src(),
                        ip.dst(),
                        ip.protocol(),
                        ip.src() == attacker.ipv4
                    ));
                }
            }
            _ => foreign.push(format!("neither ARP nor IPv4: {what}")),
        }
    }
    (delivered, foreign)
}

/// One run of the client: when it started and ended, its status and output.
struct Run {
    start: Instant,
    end: Instant,
    status: Option<i32>,
    output: String,
}

/// Runs `tcpclient` as web again and again (each on a fresh socket pair) until `stop`.
fn client_loop(handle: Arc<FabricHandle>, plan: Plan, stop: Arc<AtomicBool>) -> Vec<Run> {
    let web = plan.service("web").unwrap().port;
    let limit = format!("--limit={CONNECTIONS}");
    let mut runs = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let _ = handle.detach(web).unwrap();
        let (port, fd) = Port::pair().unwrap();
        handle.attach(web, port).unwrap();
        let start = Instant::now();
        // tcpclient asks for the capability `peer`; here it is `echo.echo`.
        let client = boot(
            &plan,
            "web",
            "tcpclient",
            &fd,
            Boot {
                args: &[&limit],
                rename: &[("echo.echo", "peer.echo")],
                ..Boot::default()
            },
        );
        drop(fd);
        let (status, output) = finish(client, Duration::from_secs(60));
        runs.push(Run {
            start,
            end: Instant::now(),
            status,
            output,
        });
        if status != Some(0) {
            break;
        }
    }
    runs
}

/// `attack NAME: sent N frames [(M refused before the fabric)] round R` -> (NAME, N, M).
fn parse_attack(line: &str) -> Option<(String, u64, u64)> {
    let rest = line.strip_prefix("attack ")?;
    let (name, rest) = rest.split_once(": sent ")?;
    let (sent, rest) = rest.split_once(" frames")?;
    let refused = match rest.trim_start().strip_prefix('(') {
        Some(r) => r.split_once(' ')?.0.parse().ok()?,
        None => 0,
    };
    Some((name.to_string(), sent.parse().ok()?, refused))
}

#[test]
fn an_attacker_reaches_nobody_every_attempt_is_counted_and_legitimate_traffic_flows() {
    let plan = plan();
    let attacker = plan.service("attacker").unwrap().clone();
    let web = plan.service("web").unwrap().clone();
    let echo = plan.service("echo").unwrap().clone();
    let handle =
        Arc::new(port::spawn(Fabric::new(plan.clone(), Default::default()).unwrap()).unwrap());

    let captured_web = capture(&handle, &plan, "web");
    let captured_echo = capture(&handle, &plan, "echo");
    let captured_attacker = capture(&handle, &plan, "attacker");

    let (echo_port, echo_fd) = Port::pair().unwrap();
    let (attacker_port, attacker_fd) = Port::pair().unwrap();
    handle.attach(echo.port, echo_port).unwrap();
    handle.attach(attacker.port, attacker_port).unwrap();
    let mut server = boot(&plan, "echo", "tcpecho", &echo_fd, Boot::default());
    drop(echo_fd);
    let server_lines = lines(&mut server);
    read_until(
        &server_lines,
        "serving echo on port 7",
        Duration::from_secs(20),
    );

    // The legitimate traffic, in a loop until the attack is over.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = {
        let (handle, plan, stop) = (handle.clone(), plan.clone(), stop.clone());
        std::thread::spawn(move || client_loop(handle, plan, stop))
    };
    // Let the first client start, then the attack.
    std::thread::sleep(Duration::from_millis(200));
    let victim = format!("--victim={}", echo.ipv4);
    let other = format!("--other={}", web.ipv4);
    let rounds = format!("--rounds={ROUNDS}");
    let pause = format!("--pause-ms={PAUSE_MS}");
    let mut hostile = boot(
        &plan,
        "attacker",
        "attacker",
        &attacker_fd,
        Boot::args(&["all", &victim, "--victim-port=7", &other, &rounds, &pause]),
    );
    drop(attacker_fd);
    let hostile_lines = lines(&mut hostile);
    let seen = read_until(&hostile_lines, "attacks done", Duration::from_secs(120));
    stop.store(true, Ordering::SeqCst);
    let runs = clients.join().expect("the client loop");
    let attack_start = seen
        .iter()
        .find(|(_, l)| l.starts_with("attack "))
        .expect("an attack line")
        .0;
    let attack_end = seen.last().unwrap().0;

    // What the attacker says it sent, by attack.
    let mut sent: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for (_, line) in &seen {
        if let Some((name, n, refused)) = parse_attack(line) {
            let entry = sent.entry(name).or_default();
            *entry = (entry.0 + 1, entry.1 + n, entry.2 + refused);
        }
    }
    let log: String = seen.iter().map(|(_, l)| format!("{l}\n")).collect();
    for (name, _) in ATTACKS {
        let (rounds, _, _) = sent.get(*name).copied().unwrap_or_default();
        assert_eq!(rounds, ROUNDS, "attack {name} ran {rounds} times:\n{log}");
    }
    for name in sent.keys() {
        assert!(
            ATTACKS.iter().any(|(n, _)| n == name),
            "an attack the test does not know: {name}"
        );
    }
    let (_, oversized_sent, oversized_refused) = sent["oversized"];
    assert_eq!(
        (oversized_sent, oversized_refused),
        (0, 8 * ROUNDS),
        "frames over the MTU must be refused by sturdy-rt and the monitor:\n{log}"
    );
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for (name, reason) in ATTACKS {
        *expected.entry(reason.name()).or_default() += sent[*name].1;
    }
    let total: u64 = expected.values().sum();

    // The attacker's frames may still be on their way through the monitor: wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let attacker_stats = loop {
        let stats = handle.stats().unwrap();
        let port = stats
            .ports
            .iter()
            .find(|p| p.service == "attacker")
            .unwrap()
            .stats;
        if port.rx.frames >= total || Instant::now() > deadline {
            break port;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Nothing comes back later either.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        hostile.0.try_wait().unwrap().is_none(),
        "the attacker exited"
    );
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the echo server exited"
    );

    let handle = Arc::try_unwrap(handle).expect("the client loop is done");
    let fabric = handle.stop().unwrap();
    drop(hostile);
    drop(server);
    let attacker_late: Vec<String> = hostile_lines.try_iter().map(|(_, l)| l).collect();

    // 1. Every frame the attacker sent was dropped, under the reason its attack aims at.
    let stats = *fabric.port_stats(attacker.port).unwrap();
    assert_eq!(
        stats, attacker_stats,
        "the attacker sent more after the wait"
    );
    let counted: BTreeMap<&str, u64> = stats.drops.nonzero().map(|(r, n)| (r.name(), n)).collect();
    let expected_nonzero: BTreeMap<&str, u64> = expected
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| (*r, *n))
        .collect();
    assert_eq!(
        counted, expected_nonzero,
        "the attacker's drops by reason (left: counted by the fabric, right: sent by the attacker)"
    );
    assert_eq!(
        stats.rx.frames, total,
        "frames from the attacker: {stats:?}"
    );
    assert_eq!(
        stats.drops.total(),
        stats.rx.frames,
        "every frame from the attacker dropped (none forwarded, none answered): {stats:?}"
    );
    assert_eq!(
        stats.tx.frames, 0,
        "nothing sent to the attacker (no ARP answer either): {stats:?}"
    );
    assert!(
        !attacker_late.iter().any(|l| l.contains("received a frame")),
        "the attacker received frames: {attacker_late:?}"
    );
    // Its own capture: only what it sent, each frame counted.
    let attacker_frames = captured_attacker.lock().unwrap().len() as u64;
    assert_eq!(attacker_frames, stats.rx.frames + stats.tx.frames);

    // 2. Nothing of the attack reached the victims: every frame delivered to them is their
    // peer's legitimate traffic, and the capture saw every frame the counters say was delivered.
    for (me, peer, frames, provides) in [
        (&web, &echo, &captured_web, false),
        (&echo, &web, &captured_echo, true),
    ] {
        let frames = frames.lock().unwrap();
        let (delivered, foreign) = foreign_frames(&frames, me, peer, &attacker, provides);
        let port = fabric.port_stats(me.port).unwrap();
        let empty = frames.iter().filter(|f| f.is_empty()).count();
        if empty > 0 {
            eprintln!(
                "note: {empty} empty message(s) read from {}'s port as frames ({} counted \
                 truncated): the end of a client run's socket",
                me.name,
                port.drops.get(DropReason::Truncated)
            );
        }
        assert_eq!(
            delivered as u64, port.tx.frames,
            "{}: frames delivered in the capture vs the counters",
            me.name
        );
        assert!(delivered > 0, "{}: nothing delivered at all", me.name);
        assert!(
            foreign.is_empty(),
            "{} frames that are not {}'s legitimate traffic were delivered to {}:\n{}",
            foreign.len(),
            peer.name,
            me.name,
            foreign.join("\n")
        );
        for reason in [
            DropReason::NoCapability,
            DropReason::Spoofed(Field::Mac),
            DropReason::Spoofed(Field::Ip),
            DropReason::ArpUnreachable,
        ] {
            assert_eq!(port.drops.get(reason), 0, "{}: {port:?}", me.name);
        }
    }

    // 3. The legitimate traffic worked throughout the attack.
    assert!(runs.len() >= 2, "only {} client run(s)", runs.len());
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(
            run.status,
            Some(0),
            "client run {i} failed during the attack:\n{}",
            run.output
        );
        assert!(run.output.contains("SUCCESS"), "{}", run.output);
    }
    let during = runs
        .iter()
        .filter(|r| r.start < attack_end && r.end > attack_start)
        .count();
    assert!(
        during >= 2,
        "{during} client run(s) overlapped the attack ({:?} long)",
        attack_end - attack_start
    );
    let cap = fabric
        .capability_stats(&Capability::new("web", "echo", "echo"))
        .unwrap();
    let connections = runs.len() as u64 * CONNECTIONS;
    assert_eq!(cap.opened, connections, "{cap:?}");
    assert!(cap.to_provider.bytes > connections * 64 * 1024, "{cap:?}");
    assert!(cap.to_consumer.bytes > connections * 64 * 1024, "{cap:?}");
    eprintln!(
        "{total} attack frames dropped ({counted:?}); {} client runs, {during} during the attack, \
         {connections} connections; pcaps in {}",
        runs.len(),
        env!("CARGO_TARGET_TMPDIR")
    );
}

/// The victims' check is not vacuous: frames of each kind the attacker sends, had the fabric
/// delivered them, are caught.
#[test]
fn the_victim_check_catches_delivered_attack_frames() {
    let plan = plan();
    let attacker = plan.service("attacker").unwrap();
    let web = plan.service("web").unwrap();
    let echo = plan.service("echo").unwrap();
    let frame = |src: [u8; 6], dst: [u8; 6], ethertype: u16, payload: &[u8]| {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let host = sturdy_fabric::wire::build::Host::new;
    let syn = |from: &Service, sport| {
        sturdy_fabric::wire::build::tcp(
            &host(from.mac, from.ipv4, sport),
            &host(echo.mac, echo.ipv4, ECHO_PORT),
            sturdy_fabric::wire::TcpFlags::SYN,
            1,
            0,
            b"",
        )
    };
    let arp = |op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr| {
        let mut p = vec![0, 1, 8, 0, 6, 4];
        p.extend_from_slice(&op.to_be_bytes());
        p.extend_from_slice(&sha);
        p.extend_from_slice(&spa.octets());
        p.extend_from_slice(&tha);
        p.extend_from_slice(&tpa.octets());
        p
    };
    let (a, w, e) = (attacker.mac.0, web.mac.0, echo.mac.0);
    let legit = [
        syn(web, 49152),
        frame(w, e, 0x0806, &arp(2, w, web.ipv4, e, echo.ipv4)),
    ];
    let (delivered, foreign) = foreign_frames(&legit, echo, web, attacker, true);
    assert_eq!((delivered, foreign.len()), (2, 0), "{foreign:?}");

    let attacks = [
        // The attacker's own SYN, forwarded.
        syn(attacker, 41000),
        // Its SYN with web's MAC but its own address.
        {
            let mut f = syn(attacker, 41000);
            f[6..12].copy_from_slice(&w);
            f
        },
        // A forged ARP reply "web is at the attacker's MAC", and one in web's name.
        frame(a, e, 0x0806, &arp(2, a, web.ipv4, e, echo.ipv4)),
        frame(w, e, 0x0806, &arp(2, a, web.ipv4, e, echo.ipv4)),
        // Web's MAC and address, to another port of echo.
        {
            let mut f = syn(web, 41000);
            f[36..38].copy_from_slice(&22u16.to_be_bytes());
            f
        },
        // IPv6 and another EtherType.
        frame(w, e, 0x86dd, &[0x60; 40]),
        frame(w, e, 0x88cc, &[0; 46]),
        // A fragment from web.
        {
            let mut f = syn(web, 41000);
            f[20] = 0x20;
            f
        },
    ];
    let (delivered, foreign) = foreign_frames(&attacks, echo, web, attacker, true);
    assert_eq!(delivered, attacks.len());
    assert_eq!(foreign.len(), attacks.len(), "{foreign:#?}");
}
