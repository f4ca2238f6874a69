//! The gateway with real unikernels: published host ports forwarded to guests (ingress) and
//! egress capabilities forwarded to host addresses, each guest booted by `sturdy-hvt` on its
//! fabric port with the boot configuration the plan renders (see tests/common/mod.rs for how
//! the monitor is found: `cargo build -p sturdy-hvt` first).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{
    any_port, boot, curl, end, ep, fabric, finish, guestbook, wait_for_line, Boot, Guest, Guestbook,
};
use sturdy_fabric::port::FabricHandle;
use sturdy_fabric::{Capability, DropReason, Fabric, GatewayHandle, Plan, Proto};

/// How long a guest may take to boot and say it serves.
const BOOT: Duration = Duration::from_secs(20);

/// Waits until the gateway has no connection open.
fn no_connections(gw: &GatewayHandle) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.stats().connections != 0 {
        assert!(
            Instant::now() < deadline,
            "gateway connections leak: {:?}",
            gw.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_guestbook_through_the_fabric_and_a_published_port() {
    // The guests and the scratch dir live until the end of the test.
    let Guestbook {
        handle,
        gw,
        base,
        kv: _kv,
        web: _web,
        scratch: _scratch,
        plan: _,
    } = guestbook("gw");
    assert_eq!(curl(&[&format!("{base}/health")]).trim(), "ok");
    let status = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/health"),
    ]);
    assert_eq!(status, "200");
    for (name, message) in [("ada", "first post"), ("grace", "through the gateway")] {
        curl(&[
            "-o",
            "/dev/null",
            "--data-urlencode",
            &format!("name={name}"),
            "--data-urlencode",
            &format!("message={message}"),
            &format!("{base}/entries"),
        ]);
    }
    let json = curl(&[&format!("{base}/entries")]);
    assert!(
        json.contains("\"name\":\"grace\",\"message\":\"through the gateway\""),
        "{json}"
    );
    assert!(
        json.contains("\"name\":\"ada\",\"message\":\"first post\""),
        "{json}"
    );
    no_connections(&gw);
    let stats = gw.stats();
    assert!(stats.ingress_opened >= 5, "{stats:?}");
    assert_eq!(stats.resets_to_host, 0, "{stats:?}");

    let fabric = handle.stop().unwrap();
    let cap = fabric
        .capability_stats(&Capability::new("gateway", "web", "http"))
        .unwrap();
    assert!(cap.opened >= 5, "{cap:?}");
    let kv_cap = fabric
        .capability_stats(&Capability::new("web", "db", "kv"))
        .unwrap();
    assert!(kv_cap.opened >= 1, "{kv_cap:?}");
}

/// An echo server behind two published ports.
fn echo_fabric() -> (Plan, FabricHandle, GatewayHandle, Guest) {
    echo_fabric_with(vec![ep("echo", 7)], &["peer.echo", "peer"])
}

/// `tcpecho` as service `peer` providing `endpoints`, with `published` published by the gateway.
fn echo_fabric_with(
    endpoints: Vec<sturdy_fabric::Endpoint>,
    published: &[&str],
) -> (Plan, FabricHandle, GatewayHandle, Guest) {
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("peer", endpoints).unwrap();
    for p in published {
        plan.publish(any_port(), p).unwrap();
    }
    // Many connections from this one test process (one source address): more than the
    // default share of a source.
    plan.limit_ingress(
        any_port(),
        sturdy_fabric::IngressLimits {
            per_source: 1024,
            ..Default::default()
        },
    );
    let (handle, gw, ends) = fabric(&plan);
    let mut server = boot(
        &plan,
        "peer",
        "tcpecho",
        end(&ends, "peer"),
        Boot::default(),
    );
    drop(ends);
    wait_for_line(&mut server, "serving echo on port 7", BOOT);
    (plan, handle, gw, server)
}

#[test]
fn a_hundred_concurrent_connections_echo_through_published_ports() {
    let (plan, handle, gw, mut server) = echo_fabric();
    assert_eq!(plan.published.len(), 1, "the same endpoint published once");
    let addr = gw.published()[0].1;
    let clients: Vec<_> = (0..100u32)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let data: Vec<u8> = (0..20_000u32)
                    .map(|j| (j.wrapping_mul(7) + i) as u8)
                    .collect();
                let mut w = s.try_clone().unwrap();
                let sent = data.clone();
                let writer = std::thread::spawn(move || {
                    w.write_all(&sent).unwrap();
                    w.shutdown(Shutdown::Write).unwrap();
                });
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                writer.join().unwrap();
                assert_eq!(got.len(), data.len(), "connection {i}");
                assert!(got == data, "connection {i}: echo differs");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    no_connections(&gw);
    let stats = gw.stats();
    assert_eq!(stats.ingress_opened, 100, "{stats:?}");
    assert_eq!(
        stats.closed, 100,
        "every one closed with FIN both ways: {stats:?}"
    );
    assert_eq!(stats.resets_to_host + stats.resets_to_guest, 0, "{stats:?}");
    assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
    drop(handle);
}

/// Issue 11, item 20: a connection its host client closes first ends in TIME-WAIT in the
/// gateway's stack (10 s), which kept its socket and 128 KiB of buffers: a client making
/// short connections (curl in a loop) could make the gateway hold any number of them, beyond
/// `MAX_CONNECTIONS`. Once every connection has closed, the gateway holds the buffers it held
/// before them: none (only their local ports stay reserved).
#[test]
fn connections_closed_by_the_host_give_back_their_buffers() {
    let (_plan, handle, gw, mut server) = echo_fabric();
    let addr = gw.published()[0].1;
    let idle = gw.stats();
    assert_eq!(idle.buffer_bytes, 0, "{idle:?}");
    const N: u64 = 50;
    for i in 0..N {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let message = format!("connection {i}");
        s.write_all(message.as_bytes()).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(got, message);
    }
    no_connections(&gw);
    let stats = gw.stats();
    assert_eq!(stats.closed, N, "each closed with FIN both ways: {stats:?}");
    assert_eq!(stats.resets_to_host + stats.resets_to_guest, 0, "{stats:?}");
    assert_eq!(
        stats.buffer_bytes, idle.buffer_bytes,
        "connections in TIME-WAIT keep their buffers: {stats:?}"
    );
    assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
    drop(handle);
}

#[test]
fn resets_and_closes_cross_the_gateway_without_leaks() {
    // `peer.none` is published, but nothing listens there: the guest refuses, the host peer
    // is reset.
    let (_plan, handle, gw, mut server) = echo_fabric_with(
        vec![ep("echo", 7), ep("none", 9)],
        &["peer.echo", "peer.none"],
    );
    let addr = gw.addr_of("peer.echo").unwrap();

    // Host client resets mid-connection (SO_LINGER 0): the guest's side is reset, nothing
    // stays open.
    for _ in 0..10 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        reset_on_close(&s);
        drop(s);
    }
    no_connections(&gw);
    assert_eq!(gw.stats().resets_to_guest, 10, "{:?}", gw.stats());
    // The guest got the resets: the fabric saw each connection end (an RST ends its tracking;
    // a FIN exchange would keep it a while).
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.stats().unwrap().connections != 0 {
        assert!(Instant::now() < deadline, "{:?}", handle.stats().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }

    // The host closes, the guest closes back: the client reads the end of the stream.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"bye").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye");
    no_connections(&gw);

    // The guest refuses (tcpecho listens on "echo" only, not on port 9): the host client is
    // reset.
    let refused = gw.addr_of("peer.none").unwrap();
    let mut s = TcpStream::connect(refused).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 8];
    let r = s.read(&mut buf);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{r:?}"
    );
    no_connections(&gw);
    let stats = gw.stats();
    assert!(stats.resets_to_host >= 1, "{stats:?}");
    assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
}

fn reset_on_close(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads a `linger` of the size given, which lives for the call.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}

/// A host echo server on 127.0.0.1: (its port, the count of connections it served).
fn host_echo() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    (port, served)
}

/// `client` with (or without) the egress capability `peer` to a host echo server; the guest is
/// always told it has it.
fn egress(granted: bool) -> (Option<i32>, String, usize, Fabric, GatewayHandle) {
    let (port, served) = host_echo();
    let mut told = Plan::new("10.77.0.0/24".parse().unwrap());
    told.add_service("client", vec![]).unwrap();
    told.grant_egress("client", "peer", Ipv4Addr::LOCALHOST, port, Proto::Tcp)
        .unwrap();
    let enforced = if granted {
        told.clone()
    } else {
        let mut p = told.clone();
        p.egress.clear();
        p
    };
    let (handle, gw, ends) = fabric(&enforced);
    let client = boot(
        &told,
        "client",
        "tcpclient",
        end(&ends, "client"),
        Boot::args(&["--limit=4"]),
    );
    drop(ends);
    let (status, output) = finish(client, Duration::from_secs(60));
    let fabric = handle.stop().unwrap();
    (
        status,
        output,
        served.load(std::sync::atomic::Ordering::SeqCst),
        fabric,
        gw,
    )
}

#[test]
fn a_guest_reaches_an_outside_address_through_its_egress_capability() {
    let (status, output, served, fabric, gw) = egress(true);
    assert_eq!(status, Some(0), "the client failed:\n{output}");
    assert!(output.contains("SUCCESS"), "{output}");
    assert_eq!(served, 4);
    let stats = gw.stats();
    assert_eq!(stats.egress_opened, 4, "{stats:?}");
    let cap = fabric
        .capability_stats(&Capability::new("client", "gateway", "peer"))
        .unwrap();
    assert_eq!(cap.opened, 4, "{cap:?}");
    assert!(cap.to_provider.bytes > 4 * 64 * 1024, "{cap:?}");
}

#[test]
fn without_the_egress_capability_a_guest_reaches_nothing_outside() {
    let (status, output, served, fabric, gw) = egress(false);
    assert_eq!(status, Some(1), "the client should fail:\n{output}");
    assert!(output.contains("FAILURE"), "{output}");
    assert_eq!(served, 0, "nothing reached the outside");
    assert_eq!(gw.stats().egress_opened, 0);
    let client = fabric.port_stats(sturdy_fabric::PortId(0)).unwrap();
    // The gateway is invisible to it: its ARP requests for it go unanswered.
    assert!(
        client.drops.get(DropReason::ArpUnreachable) > 0,
        "{client:?}"
    );
    assert_eq!(client.tx.frames, 0, "{client:?}");
}
