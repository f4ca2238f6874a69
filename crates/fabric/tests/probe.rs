//! Health probes from inside the fabric (`GatewayHandle::probe_tcp`, `probe_http`) against a
//! real unikernel:
//! `tcpecho` as service `peer`, listening on its endpoint `echo` (7) only. Needs /dev/kvm and
//! the `sturdy-hvt` binary built (see tests/common/mod.rs).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{any_port, boot, end, ep, fabric, wait_for_line, Boot, Guest};
use sturdy_fabric::port::FabricHandle;
use sturdy_fabric::{Capability, GatewayHandle, Plan};

const BOOT: Duration = Duration::from_secs(20);
const SECOND: Duration = Duration::from_secs(1);

/// `peer` (tcpecho) provides `echo` (7, listened on), `none` (9, not listened on) and `hidden`
/// (8, neither probed nor published); `down` provides `x` (80) but never runs (its port is
/// attached, nobody reads it). Probes are declared for peer.echo, peer.none and down.x, and
/// peer.echo is published too.
fn probe_fabric() -> (FabricHandle, GatewayHandle, Guest, std::os::fd::OwnedFd) {
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("peer", vec![ep("echo", 7), ep("none", 9), ep("hidden", 8)])
        .unwrap();
    plan.add_service("down", vec![ep("x", 80)]).unwrap();
    plan.probe("peer.echo").unwrap();
    plan.probe("peer.none").unwrap();
    plan.probe("down").unwrap();
    plan.publish(any_port(), "peer.echo").unwrap();
    let (handle, gw, mut ends) = fabric(&plan);
    let mut server = boot(
        &plan,
        "peer",
        "tcpecho",
        end(&ends, "peer"),
        Boot::default(),
    );
    wait_for_line(&mut server, "serving echo on port 7", BOOT);
    // Kept open so that down's port stays attached (a guest that does not answer).
    let down = ends.pop().filter(|(n, _)| n == "down").unwrap().1;
    (handle, gw, server, down)
}

/// Waits until neither the gateway nor the fabric keeps a connection.
fn nothing_left(gw: &GatewayHandle, fabric: &FabricHandle) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (g, f) = (gw.stats(), fabric.stats().unwrap());
        if g.connections == 0 && f.connections == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "state left behind: gateway {g:?}, fabric connections {}",
            f.connections
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn no_gateway_connection(gw: &GatewayHandle) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.stats().connections != 0 {
        assert!(Instant::now() < deadline, "{:?}", gw.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn probes_pass_fail_and_are_refused_as_they_should() {
    let (handle, gw, mut server, _down) = probe_fabric();

    // A listening port: Ok, fast (the first one includes the ARP exchanges both ways).
    let mut took = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(gw.probe_tcp("peer", 7, SECOND), Ok(()));
        took.push(start.elapsed());
    }
    let first = took[0];
    took.sort();
    eprintln!(
        "probe latency: first {first:?}, median {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );

    // A port the service provides but the guest does not listen on: the guest resets.
    assert_eq!(
        gw.probe_tcp("peer", 9, SECOND),
        Err("connection refused".to_string())
    );
    // A port the service does not provide: refused by the policy, nothing sent.
    let e = gw.probe_tcp("peer", 22, SECOND).unwrap_err();
    assert!(
        e.starts_with("refused by policy") && e.contains("no TCP endpoint on port 22"),
        "{e}"
    );
    // An endpoint the plan neither publishes nor declares for probes.
    let e = gw.probe_tcp("peer", 8, SECOND).unwrap_err();
    assert!(
        e.starts_with("refused by policy") && e.contains("peer.hidden"),
        "{e}"
    );
    assert_eq!(
        gw.probe_tcp("nobody", 7, SECOND),
        Err("unknown service 'nobody'".to_string())
    );
    // A guest that does not run: no answer within the timeout.
    let start = Instant::now();
    let timeout = Duration::from_millis(300);
    assert_eq!(
        gw.probe_tcp("down", 80, timeout),
        Err("timed out after 300ms".to_string())
    );
    let waited = start.elapsed();
    // Not before its time; how late depends on the machine's load, which a test must not
    // measure (the gateway's own answer, above, shows its timer fired).
    assert!(waited >= timeout, "{waited:?}");

    nothing_left(&gw, &handle);
    let stats = gw.stats();
    assert_eq!(stats.probes, 22, "refused ones are not sent: {stats:?}");
    assert_eq!(stats.probes_ok, 20, "{stats:?}");
    let fabric = handle.stats().unwrap();
    let opened = |cap: Capability| {
        fabric
            .capabilities
            .iter()
            .find(|c| c.capability == cap)
            .map_or(0, |c| c.stats.opened)
    };
    assert_eq!(opened(Capability::new("gateway", "peer", "echo")), 20);
    assert_eq!(opened(Capability::new("gateway", "peer", "none")), 1);
    assert_eq!(opened(Capability::new("gateway", "down", "x")), 1);
    assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
}

#[test]
fn probes_from_many_threads_while_ingress_flows_leave_nothing_behind() {
    let (handle, gw, mut server, _down) = probe_fabric();
    let gw = std::sync::Arc::new(gw);
    let addr = gw.addr_of("peer.echo").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Echo traffic through the published port meanwhile.
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let data = vec![rounds as u8; 10_000];
                s.write_all(&data).unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
                assert_eq!(got, data);
                rounds += 1;
            }
            rounds
        })
    };
    let probers: Vec<_> = (0..4)
        .map(|_| {
            let gw = gw.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let r = gw.probe_tcp("peer", 7, SECOND);
                    assert_eq!(r, Ok(()), "probe {i}");
                }
            })
        })
        .collect();
    for p in probers {
        p.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rounds = traffic.join().unwrap();
    assert!(rounds > 0);
    no_gateway_connection(&gw);
    // The fabric keeps the ingress connections, closed with FIN both ways, a while (the
    // closed-connection timeout); the probes, reset, left nothing.
    let tracked = handle.stats().unwrap().connections;
    assert!(
        tracked <= rounds,
        "{tracked} tracked after {rounds} ingress connections"
    );
    let stats = gw.stats();
    assert_eq!(stats.probes_ok, 200, "{stats:?}");
    assert_eq!(stats.resets_to_host, 0, "{stats:?}");
    assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
}

/// The gateway runs on the fabric's thread: its timers must fire while frames of other ports
/// keep that thread from ever waiting out a timeout. Here `down`'s end sends frames as fast as
/// it can (dropped by the fabric as spoofed) while a probe of `down` waits for its deadline.
#[test]
fn a_probe_times_out_on_time_while_other_frames_keep_the_fabric_busy() {
    let (handle, gw, _server, down) = probe_fabric();
    let down = std::os::unix::net::UnixDatagram::from(down);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if down.send(&[0xff; 60]).is_ok() {
                    sent += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let result = gw.probe_tcp("down", 80, timeout);
    let waited = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = flood.join().unwrap();
    assert_eq!(result, Err("timed out after 300ms".to_string()));
    // The answer is the gateway's own (its caller's fallback says otherwise): its timer fired
    // while the flood went on. A starved timer fires only once the flood stops.
    assert!(
        waited < Duration::from_secs(5),
        "the probe's deadline fired late: {waited:?} ({sent} frames flooded meanwhile)"
    );
    let stats = handle.stats().unwrap();
    let down = stats.ports.iter().find(|p| p.service == "down").unwrap();
    assert!(down.stats.rx.frames > 100, "{:?}", down.stats);
}

/// An HTTP probe sends its request into the fabric and reads the answer's status line: the
/// echo guest sends the request back, which is no HTTP answer. Refusals are the TCP probe's.
#[test]
fn an_http_probe_sends_its_request_and_reads_the_answer() {
    let (handle, gw, mut server, _down) = probe_fabric();
    assert_eq!(
        gw.probe_http("peer", 7, "/health", SECOND),
        Err("not an HTTP answer: \"GET /health HTTP/1.1\"".to_string())
    );
    assert_eq!(
        gw.probe_http("peer", 9, "/health", SECOND),
        Err("connection refused".to_string())
    );
    let e = gw.probe_http("peer", 8, "/health", SECOND).unwrap_err();
    assert!(e.starts_with("refused by policy"), "{e}");
    let e = gw
        .probe_http("peer", 7, "/x HTTP/1.1\r\nHost: evil", SECOND)
        .unwrap_err();
    assert!(e.starts_with("not an HTTP probe path"), "{e}");
    assert_eq!(
        gw.probe_http("down", 80, "/", Duration::from_millis(300)),
        Err("timed out after 300ms".to_string())
    );
    nothing_left(&gw, &handle);
    let stats = gw.stats();
    assert_eq!((stats.probes, stats.probes_ok), (3, 0), "{stats:?}");
    assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
}
