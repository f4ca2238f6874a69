//! The guest SDK's network stack and capabilities, end to end: unikernels built with sturdy-rt
//! (`tcpecho`, `udpecho`, `tcpclient`, `nocap`) configured by their boot configuration
//! (`docs/bootcfg.md`), talking to real Linux clients through a TAP in a namespace and to each
//! other over a socketpair wire.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// Enough for 250 connections with 16 KiB buffers each way, and little more.
const MEM: &str = "--mem=64";

/// The boot configuration of the server in these tests.
const SERVER_NET: &str = "--sturdy.v1.net=service:10.0.0.2/24:gw=10.0.0.1";

/// Asserts that the guest is still running (it did not crash under the load).
#[track_caller]
fn assert_running(g: &mut Running) {
    let status = g.child.as_mut().unwrap().try_wait().expect("wait");
    assert!(status.is_none(), "the guest exited: {status:?}");
}

/// The message connection `i` sends: its own bytes, from 100 bytes to about 24 KiB (more than
/// a connection's buffer in the guest).
fn message(i: usize) -> Vec<u8> {
    (0..100 + i * 97).map(|j| (i * 7 + j * 13) as u8).collect()
}

#[test]
fn tcpecho_serves_250_concurrent_connections_through_a_tap() {
    const CONNECTIONS: usize = 250;
    let ns = NetNs::new("tcpecho");
    ns.tap("tap0", "10.0.0.1/24", 1500);
    let mut g = start_in(
        &ns,
        &[MEM, "--net:service=tap0"],
        "tcpecho",
        &[SERVER_NET, "--sturdy.v1.provide=echo:7/tcp"],
    );
    g.wait_for_line("serving echo on port 7", Duration::from_secs(20));

    in_netns(&ns, || {
        let addr: SocketAddr = "10.0.0.2:7".parse().unwrap();
        // Every connection is open before any is used...
        let mut conns: Vec<TcpStream> = (0..CONNECTIONS)
            .map(|i| {
                let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                conn.set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                conn
            })
            .collect();
        // ...then each sends its message and ends its side...
        for (i, conn) in conns.iter_mut().enumerate() {
            conn.write_all(&message(i))
                .unwrap_or_else(|e| panic!("connection {i}: write: {e}"));
            conn.shutdown(Shutdown::Write).unwrap();
        }
        // ...and gets exactly its message back, then the end of the stream.
        for (i, conn) in conns.iter_mut().enumerate() {
            let mut echo = Vec::new();
            conn.read_to_end(&mut echo)
                .unwrap_or_else(|e| panic!("connection {i}: read: {e} after {} bytes", echo.len()));
            let sent = message(i);
            assert_eq!(echo.len(), sent.len(), "connection {i}: echo length");
            assert!(
                echo == sent,
                "connection {i}: the echo differs from the message"
            );
        }
    });

    // The stack answers ping too (smoltcp's ICMP echo replies).
    let ping = ns
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "2", "10.0.0.2"])
        .output()
        .expect("ping (install iputils-ping)");
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    assert_running(&mut g);
}

#[test]
fn udpecho_answers_datagrams_through_a_tap() {
    let ns = NetNs::new("udpecho");
    ns.tap("tap0", "10.0.0.1/24", 1500);
    let mut g = start_in(
        &ns,
        &[MEM, "--net:service=tap0"],
        "udpecho",
        &[SERVER_NET, "--sturdy.v1.provide=echo:7/udp"],
    );
    g.wait_for_line("serving echo", Duration::from_secs(20));

    in_netns(&ns, || {
        let sock = UdpSocket::bind("10.0.0.1:0").unwrap();
        sock.connect("10.0.0.2:7").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..100 {
            // Up to 1400 bytes: one frame at MTU 1500.
            let datagram: Vec<u8> = (0..1 + i * 14).map(|j| (i + j) as u8).collect();
            // UDP may lose a datagram (the first one waits for ARP): a few tries each.
            let echo = (0..5).find_map(|_| {
                sock.send(&datagram).unwrap();
                sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
            });
            assert_eq!(echo.as_deref(), Some(&datagram[..]), "datagram {i}");
        }
    });
    assert_running(&mut g);
}

/// Starts `name` on `fd`, one end of a socketpair, as NIC `service` with MAC `mac`.
fn on_wire(fd: &OwnedFd, mac: &str, name: &str, args: &[&str]) -> Command {
    let mut cmd = hvt();
    cmd.args([
        MEM,
        &format!("--net:service=@{}", fd.as_raw_fd()),
        &format!("--net-mac:service={mac}"),
    ])
    .arg(guest(name))
    .args(args);
    inherit_fd(&mut cmd, fd.as_raw_fd());
    cmd
}

#[test]
fn two_unikernels_on_a_wire_connect_through_a_capability() {
    let (server_end, client_end) = seqpacket_pair();
    let mut server = spawn(on_wire(
        &server_end,
        "02:00:0a:00:00:03",
        "tcpecho",
        &[
            "--sturdy.v1.net=service:10.0.0.3/24",
            "--sturdy.v1.provide=echo:7/tcp",
        ],
    ));
    drop(server_end);
    server.wait_for_line("serving echo on port 7", Duration::from_secs(20));

    let mut client = on_wire(
        &client_end,
        "02:00:0a:00:00:02",
        "tcpclient",
        &[
            "--sturdy.v1.net=service:10.0.0.2/24",
            "--sturdy.v1.use=peer:10.0.0.3:7/tcp",
            "--limit=20",
        ],
    );
    let child = client
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sturdy-hvt");
    drop(client_end);
    wait(child, Duration::from_secs(60))
        .expect_success()
        .expect_stdout("connecting 20 time(s) to peer (10.0.0.3:7/tcp)");
    assert_running(&mut server);
}

#[test]
fn a_capability_not_given_is_an_error_at_start_naming_it() {
    run_guest(
        &[],
        "nocap",
        &[
            "--sturdy.v1.net=service:10.0.0.2/24",
            "--sturdy.v1.use=peer:10.0.0.3:7/tcp",
            "--sturdy.v1.egress=egress.0:10.0.0.9:443/tcp",
        ],
    )
    .expect_status(1)
    .expect_stdout(
        "error: capability 'db' was not given to this unikernel (it has: peer, egress.0)\n",
    );

    run_guest(&[], "nocap", &[])
        .expect_status(1)
        .expect_stdout("error: capability 'db' was not given to this unikernel (it has: none)");
}

/// A capability is taken from the guest's environment once, by `main`, and handed on: asking
/// again (as code that was not given it would) is an error.
#[test]
fn a_capability_is_taken_once() {
    let (end, _other) = seqpacket_pair();
    let out = on_wire(
        &end,
        "02:00:0a:00:00:02",
        "captwice",
        &[
            "--sturdy.v1.net=service:10.0.0.2/24",
            "--sturdy.v1.use=db.kv:10.0.0.3:6379/tcp",
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout.contains("took db.kv (10.0.0.3:6379/tcp)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "error: capability 'db.kv' was taken already: take each once in main and hand it on\n"
        ),
        "{stdout}"
    );
}

#[test]
fn a_bad_boot_configuration_is_an_error_at_start() {
    run_guest(&[], "nocap", &["--sturdy.v2.net=service:10.0.0.2/24"])
        .expect_status(1)
        .expect_stdout(
            "error: boot configuration argument '--sturdy.v2.net=service:10.0.0.2/24': \
             boot configuration version 'v2' is not supported",
        );
    run_guest(&[], "nocap", &["--sturdy.v1.use=db:10.0.0.300:6379/tcp"])
        .expect_status(1)
        .expect_stdout("'10.0.0.300' is not an IPv4 address");
}

#[test]
fn a_nic_missing_from_the_manifest_is_named() {
    let (ours, theirs) = seqpacket_pair();
    let child = on_wire(
        &theirs,
        "02:00:0a:00:00:02",
        "tcpclient",
        &[
            "--sturdy.v1.net=backend:10.0.0.2/24",
            "--sturdy.v1.use=peer:10.0.0.3:7/tcp",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn sturdy-hvt");
    drop(theirs);
    wait(child, Duration::from_secs(30))
        .expect_status(1)
        .expect_stdout("the boot configuration names NIC 'backend', which cannot be used");
    drop(ours);
}
