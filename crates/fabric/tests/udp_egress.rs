//! UDP egress through the gateway. At the frame level, the test plays the guest on its fabric
//! port (needs no KVM); end to end, the `udpclient` unikernel sends to its egress capability.
//! A host UDP echo server on 127.0.0.1 plays the outside.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{boot, end, fabric, finish, Boot};
use sturdy_fabric::port::FabricHandle;
use sturdy_fabric::wire::build::{self, Host};
use sturdy_fabric::wire::{EthernetFrame, IpProtocol, Ipv4Packet, UdpPacket};
use sturdy_fabric::{DropReason, GatewayHandle, Plan, PortId, Proto};

/// A host UDP echo server on 127.0.0.1: its port, and the sources it heard from.
fn echo_server() -> (u16, Arc<Mutex<Vec<SocketAddr>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = heard.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            log.lock().unwrap().push(from);
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    (port, heard)
}

/// `client` (port 0) granted UDP egress `dns` to 127.0.0.1:`port`; `other` (port 1) nothing.
fn plan(port: u16) -> Plan {
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("client", vec![]).unwrap();
    plan.add_service("other", vec![]).unwrap();
    plan.grant_egress("client", "dns", Ipv4Addr::LOCALHOST, port, Proto::Udp)
        .unwrap();
    plan
}

/// The guest's side of a service's port.
struct FakeGuest {
    io: UnixDatagram,
    me: Host,
    gateway_mac: sturdy_fabric::Mac,
}

impl FakeGuest {
    fn new(plan: &Plan, name: &str, ends: &mut Vec<(String, OwnedFd)>) -> FakeGuest {
        let i = ends.iter().position(|(n, _)| n == name).unwrap();
        let io = UnixDatagram::from(ends.remove(i).1);
        // It speaks the socket: the rings offered as its first message are declined.
        let _ = sturdy_port_ring::take_offer(std::os::fd::AsFd::as_fd(&io)).unwrap();
        // Port ends are made non-blocking; this one waits (with a timeout).
        io.set_nonblocking(false).unwrap();
        io.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let s = plan.service(name).unwrap();
        FakeGuest {
            io,
            me: Host::new(s.mac, s.ipv4, 0),
            gateway_mac: plan.gateway.mac,
        }
    }

    fn send_udp(&self, sport: u16, dst: Ipv4Addr, dport: u16, data: &[u8]) {
        let to = Host::new(self.gateway_mac, dst, dport);
        self.io
            .send(&build::udp(&self.me.port(sport), &to, data))
            .unwrap();
    }

    /// The next UDP datagram for it: (source address, source port, destination port, data).
    fn recv_udp(&self) -> Option<(Ipv4Addr, u16, u16, Vec<u8>)> {
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            let Ok(n) = self.io.recv(&mut buf) else {
                return None;
            };
            let eth = EthernetFrame::new_checked(&buf[..n]).unwrap();
            assert_eq!(eth.dst(), self.me.mac);
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            if ip.protocol() != IpProtocol::Udp {
                continue;
            }
            assert!(ip.verify_checksum());
            assert_eq!(ip.dst(), self.me.ip);
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            let data = ip.payload()[8..udp.len()].to_vec();
            return Some((ip.src(), udp.src_port(), udp.dst_port(), data));
        }
        None
    }
}

fn drops(handle: &FabricHandle, port: PortId, reason: DropReason) -> u64 {
    let stats = handle.stats().unwrap();
    let p = stats.ports.iter().find(|p| p.port == port).unwrap();
    p.stats.drops.get(reason)
}

fn settle(gw: &GatewayHandle, until: impl Fn(&sturdy_fabric::GatewayStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !until(&gw.stats()) {
        assert!(Instant::now() < deadline, "{:?}", gw.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn datagrams_reach_the_declared_outside_address_and_replies_come_back() {
    let (port, heard) = echo_server();
    let plan = plan(port);
    let (_handle, gw, mut ends) = fabric(&plan);
    let client = FakeGuest::new(&plan, "client", &mut ends);

    // Two flows (two source ports), each answered from the outside address, to its own port.
    for (sport, data) in [
        (40000u16, &b"hello"[..]),
        (40001, b"world"),
        (40000, b"again"),
    ] {
        client.send_udp(sport, Ipv4Addr::LOCALHOST, port, data);
        let (src, from_port, to_port, got) = client.recv_udp().expect("an answer");
        assert_eq!(
            (src, from_port, to_port),
            (Ipv4Addr::LOCALHOST, port, sport)
        );
        assert_eq!(got, data);
    }
    settle(&gw, |s| s.udp_in == 3);
    let stats = gw.stats();
    assert_eq!(
        (stats.udp_out, stats.udp_in, stats.udp_flows),
        (3, 3, 2),
        "{stats:?}"
    );
    assert_eq!(stats.udp_dropped, 0, "{stats:?}");
    // One host socket per flow.
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 3);
    assert_eq!(heard[0], heard[2]);
    assert_ne!(heard[0], heard[1]);
}

#[test]
fn nothing_undeclared_passes() {
    let (port, heard) = echo_server();
    let (stray_port, stray) = echo_server();
    let plan = plan(port);
    let (handle, gw, mut ends) = fabric(&plan);
    let client = FakeGuest::new(&plan, "client", &mut ends);
    let other = FakeGuest::new(&plan, "other", &mut ends);

    // Another port of the same outside address.
    client.send_udp(40000, Ipv4Addr::LOCALHOST, stray_port, b"stray");
    assert!(client.recv_udp().is_none());
    // A service without the grant.
    other.send_udp(40000, Ipv4Addr::LOCALHOST, port, b"not mine");
    assert!(other.recv_udp().is_none());
    assert!(stray.lock().unwrap().is_empty());
    assert!(heard.lock().unwrap().is_empty());
    assert_eq!(drops(&handle, PortId(0), DropReason::NoCapability), 1);
    assert_eq!(drops(&handle, PortId(1), DropReason::NoCapability), 1);
    let stats = gw.stats();
    assert_eq!((stats.udp_out, stats.udp_flows), (0, 0), "{stats:?}");

    // Live: the grant removed, the flow is forgotten and nothing more goes out; given back,
    // it works again.
    client.send_udp(40000, Ipv4Addr::LOCALHOST, port, b"one");
    assert_eq!(client.recv_udp().unwrap().3, b"one");
    let mut revoked = plan.clone();
    revoked.egress.clear();
    handle.apply(revoked.clone()).unwrap();
    let report = gw.apply(&revoked).unwrap();
    assert_eq!(report.closed, 1, "the flow: {report:?}");
    assert_eq!(gw.stats().udp_flows, 0);
    client.send_udp(40000, Ipv4Addr::LOCALHOST, port, b"two");
    assert!(client.recv_udp().is_none());
    assert_eq!(heard.lock().unwrap().len(), 1);
    handle.apply(plan.clone()).unwrap();
    gw.apply(&plan).unwrap();
    client.send_udp(40000, Ipv4Addr::LOCALHOST, port, b"three");
    assert_eq!(client.recv_udp().unwrap().3, b"three");
}

#[test]
fn a_unikernel_reaches_its_udp_egress_and_nothing_else() {
    let (port, heard) = echo_server();
    let plan = {
        let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
        plan.add_service("client", vec![]).unwrap();
        plan.grant_egress("client", "peer", Ipv4Addr::LOCALHOST, port, Proto::Udp)
            .unwrap();
        plan
    };
    let (handle, gw, ends) = fabric(&plan);
    let client = boot(
        &plan,
        "client",
        "udpclient",
        end(&ends, "client"),
        Boot::default(),
    );
    let (status, output) = finish(client, Duration::from_secs(60));
    assert_eq!(status, Some(0), "the client failed:\n{output}");
    assert!(output.contains("SUCCESS"), "{output}");
    // Every datagram went out from one host socket (one flow) and came back.
    let heard = heard.lock().unwrap().clone();
    assert!(heard.len() >= 20, "{heard:?}");
    assert!(heard.iter().all(|a| *a == heard[0]), "{heard:?}");
    let stats = gw.stats();
    assert_eq!(stats.udp_flows, 1);
    assert!(stats.udp_out >= 20 && stats.udp_in >= 20, "{stats:?}");

    // Told of a capability it does not hold (egress to another port): nothing goes out.
    let (other_port, other_heard) = echo_server();
    let mut told = Plan::new("10.77.0.0/24".parse().unwrap());
    told.add_service("client", vec![]).unwrap();
    told.grant_egress(
        "client",
        "peer",
        Ipv4Addr::LOCALHOST,
        other_port,
        Proto::Udp,
    )
    .unwrap();
    handle.detach(PortId(0)).unwrap();
    let (io, theirs) = sturdy_fabric::port::Port::pair().unwrap();
    handle.attach(PortId(0), io).unwrap();
    let client = boot(&told, "client", "udpclient", &theirs, Boot::default());
    drop(theirs);
    let (status, output) = finish(client, Duration::from_secs(60));
    assert_eq!(status, Some(1), "the client should fail:\n{output}");
    assert!(other_heard.lock().unwrap().is_empty());
    let drops = handle.stats().unwrap().ports[0]
        .stats
        .drops
        .get(DropReason::NoCapability);
    assert!(drops >= 1, "not counted as no capability");
    drop(gw);
}
