//! The gateway's limits on host connections (`IngressLimits`) against a real unikernel:
//! `tcpecho` as service `peer`; `down` is attached but never answers. Needs /dev/kvm and the
//! `sturdy-hvt` binary built (see tests/common/mod.rs).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{boot, end, ep, fabric, wait_for_line, Boot};
use sturdy_fabric::{IngressLimits, Plan};
use testkit::{connect_from, free_port, wait_for};

const BOOT: Duration = Duration::from_secs(20);

/// One echo round on `s`: whether the guest answered.
fn echoes(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(b"ping").is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

/// Waits (at most `timeout`) until the gateway ends `s`: a reset or an end of stream.
fn ended(s: &mut TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 16];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn one_source_cannot_take_every_connection_and_idle_ones_are_closed() {
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("peer", vec![ep("echo", 7)]).unwrap();
    plan.add_service("down", vec![ep("x", 80)]).unwrap();
    let (echo_at, down_at) = (
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    );
    plan.publish(echo_at, "peer.echo").unwrap();
    plan.publish(down_at, "down.x").unwrap();
    plan.limit_ingress(
        echo_at,
        IngressLimits {
            per_source: 8,
            idle_timeout: Duration::from_secs(2),
            ..IngressLimits::default()
        },
    );
    plan.limit_ingress(
        down_at,
        IngressLimits {
            handshake_timeout: Duration::from_secs(1),
            ..IngressLimits::default()
        },
    );
    let (_handle, gw, ends) = fabric(&plan);
    let mut server = boot(
        &plan,
        "peer",
        "tcpecho",
        end(&ends, "peer"),
        Boot::default(),
    );
    wait_for_line(&mut server, "serving echo on port 7", BOOT);

    // 20 from one source: 8 are served, the rest reset at once.
    let hog = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    let mut served = 0;
    for _ in 0..20 {
        let mut s = connect_from(hog, echo_at).unwrap();
        if echoes(&mut s) {
            served += 1;
            held.push(s);
        }
    }
    assert_eq!(served, 8, "{:?}", gw.stats());
    // The counters are published at the end of the gateway's turn, after the resets went out.
    wait_for(Duration::from_secs(10), "12 refusals counted", || {
        gw.stats().ingress_refused_per_source == 12 && gw.refused("peer") == 12
    });
    // Another source is served meanwhile.
    let mut other = connect_from(Ipv4Addr::LOCALHOST, echo_at).unwrap();
    assert!(echoes(&mut other), "{:?}", gw.stats());

    // Idle: the held connections are reset after 2 s without a byte; one that keeps talking
    // (every 200 ms, meanwhile) is not.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let talker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if !echoes(&mut other) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            true
        })
    };
    for s in &mut held {
        assert!(ended(s, Duration::from_secs(30)), "{:?}", gw.stats());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(talker.join().unwrap(), "an active connection was closed");
    wait_for(Duration::from_secs(10), "8 idle closes counted", || {
        gw.stats().ingress_idle_closed >= 8
    });
    // Their source may connect again.
    let mut again = connect_from(hog, echo_at).unwrap();
    assert!(echoes(&mut again));

    // A guest that never answers the handshake: the host client is reset after 1 s.
    let mut waiting = TcpStream::connect(down_at).unwrap();
    assert!(ended(&mut waiting, Duration::from_secs(30)));
    wait_for(
        Duration::from_secs(10),
        "a handshake timeout counted",
        || gw.stats().ingress_handshake_timeouts == 1,
    );
    assert!(server.0.try_wait().unwrap().is_none(), "the server exited");
}
