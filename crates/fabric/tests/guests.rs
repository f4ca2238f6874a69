//! The fabric with real unikernels: `tcpclient` and `tcpecho` (guest/test-guests) on two fabric
//! ports, each booted by `sturdy-hvt` with its NIC on its port's socket pair and its boot
//! configuration rendered from the plan the fabric enforces.
//!
//! The monitor is the `sturdy-hvt` binary of this workspace, found next to this test's own
//! directory (`target/<profile>/`): see tests/common/mod.rs (`cargo build -p sturdy-hvt`
//! first). A missing monitor, like a missing /dev/kvm, fails the test with what to do.

mod common;

use std::time::Duration;

use common::{boot, finish, wait_for_line, Boot};

use sturdy_fabric::port::{self, Port};
use sturdy_fabric::wire::build::{self, Host};
use sturdy_fabric::wire::{EthernetFrame, Ipv4Packet, TcpFlags, TcpPacket};
use sturdy_fabric::{Capability, DropReason, Endpoint, Fabric, Plan, Proto};

/// `client` may use `peer`'s endpoint `echo` (7/tcp) when `granted`.
fn plan(granted: bool) -> Plan {
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("client", vec![]).unwrap();
    let echo = Endpoint {
        name: "echo".into(),
        port: 7,
        proto: Proto::Tcp,
    };
    plan.add_service("peer", vec![echo]).unwrap();
    if granted {
        plan.grant("client", "peer.echo").unwrap();
    }
    plan
}

/// Runs the echo server and the client on a fabric enforcing `enforced`, the guests told
/// `told`; returns the client's exit status and output, and the fabric's counters.
fn exchange(enforced: Plan, told: &Plan) -> (Option<i32>, String, Fabric) {
    let fabric = Fabric::new(enforced, Default::default()).unwrap();
    let handle = port::spawn(fabric).unwrap();
    let (client_port, client_fd) = Port::pair().unwrap();
    let (peer_port, peer_fd) = Port::pair().unwrap();
    handle
        .attach(told.service("client").unwrap().port, client_port)
        .unwrap();
    handle
        .attach(told.service("peer").unwrap().port, peer_port)
        .unwrap();

    let mut server = boot(told, "peer", "tcpecho", &peer_fd, Boot::default());
    drop(peer_fd);
    wait_for_line(
        &mut server,
        "serving echo on port 7",
        Duration::from_secs(20),
    );
    let client = boot(
        told,
        "client",
        "tcpclient",
        &client_fd,
        Boot::args(&["--limit=4"]),
    );
    drop(client_fd);
    let (status, output) = finish(client, Duration::from_secs(60));
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the echo server exited"
    );
    (status, output, handle.stop().unwrap())
}

#[test]
fn a_client_reaches_an_echo_server_along_its_capability() {
    let plan = plan(true);
    let (status, output, fabric) = exchange(plan.clone(), &plan);
    assert_eq!(status, Some(0), "the client failed:\n{output}");
    assert!(
        output.contains("connecting 4 time(s) to peer.echo (10.77.0.3:7/tcp)"),
        "{output}"
    );
    assert!(output.contains("SUCCESS"), "{output}");

    let cap = fabric
        .capability_stats(&Capability::new("client", "peer", "echo"))
        .unwrap();
    assert_eq!(cap.opened, 4, "{cap:?}");
    // 4 x 64 KiB each way, in segments of at most 1460 bytes.
    assert!(cap.to_provider.bytes > 4 * 64 * 1024, "{cap:?}");
    assert!(cap.to_consumer.bytes > 4 * 64 * 1024, "{cap:?}");
    for service in ["client", "peer"] {
        let port = plan.service(service).unwrap().port;
        let stats = fabric.port_stats(port).unwrap();
        for reason in [
            DropReason::NoCapability,
            DropReason::Spoofed(sturdy_fabric::Field::Mac),
            DropReason::Spoofed(sturdy_fabric::Field::Ip),
            DropReason::ArpUnreachable,
        ] {
            assert_eq!(stats.drops.get(reason), 0, "{service}: {stats:?}");
        }
    }
}

#[test]
fn without_the_capability_the_client_cannot_connect() {
    // The client is told it may use peer.echo, but the fabric enforces a plan without it:
    // the peer stays invisible (ARP unanswered) and nothing reaches it.
    let told = plan(true);
    let (status, output, fabric) = exchange(plan(false), &told);
    assert_eq!(status, Some(1), "the client should fail:\n{output}");
    assert!(output.contains("FAILURE"), "{output}");
    let client = fabric
        .port_stats(told.service("client").unwrap().port)
        .unwrap();
    let peer = fabric
        .port_stats(told.service("peer").unwrap().port)
        .unwrap();
    assert!(
        client.drops.get(DropReason::ArpUnreachable) > 0,
        "{client:?}"
    );
    assert_eq!(
        client.tx.frames, 0,
        "nothing reached the client: {client:?}"
    );
    assert_eq!(peer.tx.frames, 0, "nothing reached the server: {peer:?}");
}

/// The TCP segments the test, playing the client, receives on its port (ARP replies and
/// anything else skipped): (flags, seq, ack, payload).
fn next_segment(client: &std::os::unix::net::UnixDatagram) -> (TcpFlags, u32, u32, Vec<u8>) {
    let mut buf = [0u8; 2048];
    loop {
        let n = client
            .recv(&mut buf)
            .expect("a frame from the fabric within 5 s");
        let Ok(eth) = EthernetFrame::new_checked(&buf[..n]) else {
            continue;
        };
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            continue;
        };
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            continue;
        };
        return (
            tcp.flags(),
            tcp.seq(),
            tcp.ack_number(),
            tcp.payload().to_vec(),
        );
    }
}

#[test]
fn removing_the_capability_resets_a_real_guests_connection() {
    let plan = plan(true);
    let handle = port::spawn(Fabric::new(plan.clone(), Default::default()).unwrap()).unwrap();
    // The test plays the client on a plain socket; the echo server is a real guest.
    let (client_port, client_fd) = Port::socket_pair().unwrap();
    let (peer_port, peer_fd) = Port::pair().unwrap();
    let (client_svc, peer_svc) = (
        plan.service("client").unwrap(),
        plan.service("peer").unwrap(),
    );
    handle.attach(client_svc.port, client_port).unwrap();
    handle.attach(peer_svc.port, peer_port).unwrap();
    let mut server = boot(&plan, "peer", "tcpecho", &peer_fd, Boot::default());
    drop(peer_fd);
    wait_for_line(
        &mut server,
        "serving echo on port 7",
        Duration::from_secs(20),
    );

    // The test plays the client with raw frames on the client's port; the guest is real.
    let client = std::os::unix::net::UnixDatagram::from(client_fd);
    client.set_nonblocking(false).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let c = Host::new(client_svc.mac, client_svc.ipv4, 40000);
    let p = Host::new(peer_svc.mac, peer_svc.ipv4, 7);
    let send = |frame: Vec<u8>| client.send(&frame).unwrap();

    send(build::tcp(&c, &p, TcpFlags::SYN, 1000, 0, b""));
    let (flags, isn, ack, _) = next_segment(&client);
    assert_eq!((flags, ack), (TcpFlags(0x12), 1001), "SYN-ACK");
    send(build::tcp(&c, &p, TcpFlags(0x18), 1001, isn + 1, b"hello"));
    let echo = loop {
        let (_, seq, _, data) = next_segment(&client);
        if !data.is_empty() {
            break (seq, data);
        }
    };
    assert_eq!(echo, (isn + 1, b"hello".to_vec()));
    send(build::tcp(&c, &p, TcpFlags::ACK, 1006, isn + 6, b""));

    // Revoked while established: the client's end gets a reset at the server's next sequence
    // number, the server's end one at the client's.
    let mut revoked = plan.clone();
    revoked.revoke("client", "peer.echo");
    let report = handle.apply(revoked).unwrap();
    assert_eq!((report.cut, report.resets), (1, 2));
    let (flags, seq, ack, _) = next_segment(&client);
    assert_eq!(
        (flags, seq, ack),
        (TcpFlags(0x14), isn + 6, 1006),
        "RST|ACK"
    );
    // Nothing more passes.
    send(build::tcp(&c, &p, TcpFlags(0x18), 1006, isn + 6, b"more"));

    // Back again. The server took its reset: a SYN from the same port opens a new connection.
    // (A server that still held the old one would answer with a challenge ACK instead, RFC 5961
    // 4.2, and no SYN-ACK would come.)
    handle.apply(plan.clone()).unwrap();
    send(build::tcp(&c, &p, TcpFlags::SYN, 90000, 0, b""));
    let (flags, _, ack, _) = next_segment(&client);
    assert_eq!((flags, ack), (TcpFlags(0x12), 90001), "a new SYN-ACK");
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the echo server exited"
    );

    let fabric = handle.stop().unwrap();
    let client_drops = fabric.port_stats(client_svc.port).unwrap().drops;
    assert_eq!(
        client_drops.get(DropReason::NoConnection),
        1,
        "{client_drops:?}"
    );
    let cap = fabric
        .capability_stats(&Capability::new("client", "peer", "echo"))
        .unwrap();
    assert_eq!(cap.opened, 1, "counted since the capability came back");
}
