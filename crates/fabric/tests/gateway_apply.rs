//! The gateway following a plan applied at run time (`GatewayHandle::apply`), with real
//! unikernels: publications added and removed under a running `tcpecho`, an egress capability
//! granted to and taken from `tcpclient`. Needs /dev/kvm and the `sturdy-hvt` binary built (see
//! tests/common/mod.rs).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{any_port, boot, end, ep, fabric, finish, wait_for_line, Boot};
use sturdy_fabric::gateway::GatewayError;
use sturdy_fabric::port::Port;
use sturdy_fabric::{Plan, PortId, Proto};

const BOOT: Duration = Duration::from_secs(20);

fn echo(addr: SocketAddr, data: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, data);
}

/// An open connection through `addr` that has echoed once.
fn open(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    s
}

#[test]
fn publications_follow_the_plan_at_run_time() {
    let a: SocketAddr = any_port();
    let b: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("peer", vec![ep("echo", 7)]).unwrap();
    let mut first = plan.clone();
    first.publish(a, "peer.echo").unwrap();
    let (handle, gw, ends) = fabric(&first);
    let mut server = boot(
        &first,
        "peer",
        "tcpecho",
        end(&ends, "peer"),
        Boot::default(),
    );
    drop(ends);
    wait_for_line(&mut server, "serving echo on port 7", BOOT);
    let addr_a = gw.addr_of("peer.echo").unwrap();
    let mut on_a = open(addr_a);

    // A moves to B: B listens, A stops and its connection is reset.
    let mut second = plan.clone();
    second.publish(b, "peer.echo").unwrap();
    handle.apply(second.clone()).unwrap();
    let report = gw.apply(&second).unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(report.stopped, vec![("peer.echo".to_string(), addr_a)]);
    assert_eq!(report.listening.len(), 1);
    let addr_b = report.listening[0].1;
    assert_eq!(addr_b.ip(), b.ip());
    assert_eq!(gw.published(), vec![("peer.echo".to_string(), addr_b)]);
    let mut buf = [0u8; 8];
    let r = on_a.read(&mut buf);
    assert!(
        matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{r:?}"
    );
    let refused = TcpStream::connect(addr_a).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    echo(addr_b, b"through b");

    // A publication added back next to B: B's connection goes on.
    let mut on_b = open(addr_b);
    let mut third = second.clone();
    third.publish(a, "peer.echo").unwrap();
    handle.apply(third.clone()).unwrap();
    let report = gw.apply(&third).unwrap();
    assert_eq!((report.closed, report.stopped.len()), (0, 0), "{report:?}");
    let addr_a2 = report.listening[0].1;
    echo(addr_a2, b"through a again");
    on_b.write_all(b"still").unwrap();
    let mut buf = [0u8; 5];
    on_b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still");
    assert_eq!(gw.published().len(), 2);

    // A host address that cannot be bound: an error, and nothing changes.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut fourth = third.clone();
    fourth.published.clear();
    fourth
        .publish(taken.local_addr().unwrap(), "peer.echo")
        .unwrap();
    let e = gw.apply(&fourth).unwrap_err();
    assert!(matches!(e, GatewayError::Listen { .. }), "{e}");
    assert_eq!(gw.published().len(), 2);
    echo(addr_b, b"b unchanged");

    // A plan that moves the gateway is refused.
    let mut moved = Plan::new("10.78.0.0/24".parse().unwrap());
    moved.add_service("peer", vec![ep("echo", 7)]).unwrap();
    assert!(matches!(gw.apply(&moved), Err(GatewayError::Readdressed)));
    assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
}

/// A host echo server on 127.0.0.1: (its port, the count of connections it served).
fn host_echo() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    (port, served)
}

#[test]
fn egress_follows_the_plan_at_run_time() {
    let (port, served) = host_echo();
    let mut without = Plan::new("10.77.0.0/24".parse().unwrap());
    without.add_service("client", vec![]).unwrap();
    let mut with = without.clone();
    with.grant_egress("client", "peer", Ipv4Addr::LOCALHOST, port, Proto::Tcp)
        .unwrap();
    let (handle, gw, mut ends) = fabric(&without);

    // Granted at run time: the client (told it has it) reaches the outside.
    handle.apply(with.clone()).unwrap();
    gw.apply(&with).unwrap();
    let client = boot(
        &with,
        "client",
        "tcpclient",
        end(&ends, "client"),
        Boot::default(),
    );
    ends.clear();
    let (status, output) = finish(client, Duration::from_secs(60));
    assert_eq!(status, Some(0), "the client failed:\n{output}");
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(gw.stats().egress_opened, 1);

    // Taken away: a new client (still told it has it) reaches nothing.
    handle.apply(without.clone()).unwrap();
    gw.apply(&without).unwrap();
    handle.detach(PortId(0)).unwrap();
    let (io, theirs) = Port::pair().unwrap();
    handle.attach(PortId(0), io).unwrap();
    let client = boot(&with, "client", "tcpclient", &theirs, Boot::default());
    drop(theirs);
    let (status, output) = finish(client, Duration::from_secs(60));
    assert_eq!(status, Some(1), "the client should fail:\n{output}");
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "nothing more reached the outside"
    );
    assert_eq!(gw.stats().egress_opened, 1);
}

/// Asserts that nothing listens on `addr` (binding, not connecting: a connection to a free
/// loopback port can meet itself). A few tries: another test of this binary forking a monitor
/// holds a copy of every descriptor until its exec.
fn free(addr: SocketAddr, what: &str) {
    let mut tries = 0;
    while let Err(e) = TcpListener::bind(addr) {
        tries += 1;
        assert!(tries < 50, "{what}: {e}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The gateway runs on the fabric's thread: stopping it detaches it there, closing its
/// listeners before `stop` returns, and the fabric goes on; a fabric stopped first takes the
/// gateway with it, and the gateway's handle then says so instead of hanging.
#[test]
fn a_gateway_stops_with_its_listeners_and_a_stopped_fabric_stops_its_gateway() {
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("peer", vec![ep("echo", 7)]).unwrap();
    plan.publish(any_port(), "peer.echo").unwrap();
    let (handle, gw, _ends) = fabric(&plan);
    let addr = gw.published()[0].1;
    TcpStream::connect(addr).expect("the gateway listens");
    gw.stop();
    free(addr, "the gateway's host port is free once stop returned");
    // The fabric still runs, without a gateway port: a new gateway can take its place.
    handle.stats().unwrap();
    let old = sturdy_fabric::gateway::spawn(&plan, &handle).expect("the gateway port was free");
    let addr = old.published()[0].1;
    TcpStream::connect(addr).expect("the new gateway listens");
    // Detached through the fabric's handle, then replaced: the old gateway's handle, dropped
    // after, leaves its successor alone.
    assert!(handle.detach(PortId::GATEWAY).unwrap().is_none());
    free(addr, "the detached gateway's listener");
    let gw = sturdy_fabric::gateway::spawn(&plan, &handle).expect("the gateway port was free");
    drop(old);
    let addr = gw.published()[0].1;
    TcpStream::connect(addr).expect("the newest gateway still listens");

    handle.stop().unwrap();
    free(addr, "the fabric's end closed the gateway's listener");
    let probe = gw.probe_tcp("peer", 7, Duration::from_millis(100));
    assert_eq!(probe.unwrap_err(), "the gateway has stopped");
    assert!(matches!(gw.apply(&plan), Err(GatewayError::Stopped)));
    drop(gw);
}

/// Host clients of a published port cannot make the gateway hold more than
/// `MAX_CONNECTIONS` connections (each holds its buffers): more are reset at once, counted,
/// and there is room again as soon as one closes. The guest does not run: the gateway's
/// connections wait for its answer.
#[test]
fn host_connections_beyond_the_limit_are_reset() {
    use sturdy_fabric::gateway::MAX_CONNECTIONS;
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("peer", vec![ep("echo", 7)]).unwrap();
    plan.publish(any_port(), "peer.echo").unwrap();
    // The gateway's own limit, not a source's share or the handshake's timeout (no guest
    // answers here).
    plan.limit_ingress(
        any_port(),
        sturdy_fabric::IngressLimits {
            per_source: u32::MAX,
            handshake_timeout: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    let (_handle, gw, _ends) = fabric(&plan);
    let addr = gw.published()[0].1;
    let mut held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // The counters are published after each run of the gateway: polled.
    let until = |what: &dyn Fn(&sturdy_fabric::GatewayStats) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !what(&gw.stats()) {
            assert!(std::time::Instant::now() < deadline, "{:?}", gw.stats());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let settled = |n: usize| until(&|s| s.connections == n);
    settled(MAX_CONNECTIONS);
    let reset = |s: &mut TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match s.read(&mut [0u8; 1]) {
            Ok(0) => true,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    };
    for _ in 0..3 {
        let mut extra = TcpStream::connect(addr).unwrap();
        assert!(reset(&mut extra), "a connection beyond the limit was kept");
    }
    until(&|s| s.ingress_refused == 3);
    assert_eq!(gw.stats().connections, MAX_CONNECTIONS);
    // One closed by its client: the gateway resets its side and forgets it; a new one fits.
    held.pop().unwrap().shutdown(Shutdown::Both).unwrap();
    settled(MAX_CONNECTIONS - 1);
    let mut again = TcpStream::connect(addr).unwrap();
    again
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let e = again.read(&mut [0u8; 1]).expect_err("kept open, no data");
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    assert_eq!(gw.stats().ingress_refused, 3);
}
