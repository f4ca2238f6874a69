//! NICs: ARP + ICMP through a real TAP in a namespace (flood ping), two NICs, MTU reporting, and
//! a NIC on an inherited socketpair descriptor.

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::harness::*;

fn start_in(ns: &NetNs, opts: &[&str], name: &str, args: &[&str]) -> Running {
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_sturdy-hvt"));
    cmd.args(opts).arg(guest(name)).args(args);
    spawn(cmd)
}

/// Flood-pings `addr` from inside `ns`; returns ping's summary.
fn flood_ping(ns: &NetNs, addr: &str, count: u32) -> String {
    let out = ns
        .command("ping")
        .args(["-f", "-c", &count.to_string(), "-W", "2", addr])
        .output()
        .expect("ping (install iputils-ping)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ping failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn answers_a_flood_ping_through_a_tap_with_no_loss() {
    let ns = NetNs::new("ping");
    ns.tap("tap0", "10.0.0.1/24", 1500);
    let mut g = start_in(&ns, &["--net:service=tap0"], "net", &["--ipv4=10.0.0.2"]);
    g.wait_for_line("serving", Duration::from_secs(20));
    let summary = flood_ping(&ns, "10.0.0.2", 2000);
    assert!(
        summary.contains("2000 packets transmitted, 2000 received, 0% packet loss"),
        "{summary}"
    );
}

#[test]
fn two_nics_answer_on_both() {
    let ns = NetNs::new("net2");
    ns.tap("tap0", "10.0.0.1/24", 1500);
    ns.tap("tap1", "10.1.0.1/24", 1500);
    let mut g = start_in(
        &ns,
        &["--net:service0=tap0", "--net:service1=tap1"],
        "net2",
        &[],
    );
    g.wait_for_line("serving", Duration::from_secs(20));
    for addr in ["10.0.0.2", "10.1.0.2"] {
        let summary = flood_ping(&ns, addr, 200);
        assert!(
            summary.contains("200 received, 0% packet loss"),
            "{addr}: {summary}"
        );
    }
}

/// Runs the guest that prints its NIC's MTU, in `ns`, with monitor options `opts`.
fn run_mtu_guest(ns: &NetNs, opts: &[&str]) -> Result_ {
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_sturdy-hvt"));
    cmd.args(opts).arg(guest("mtu"));
    wait(
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
    )
}

#[test]
fn mtu_is_read_from_the_tap() {
    let ns = NetNs::new("mtu");
    ns.tap("tap0", "10.0.0.1/24", 9000);
    run_mtu_guest(&ns, &["--net:service=tap0"])
        .expect_success()
        .expect_stdout("mtu=9000");
}

/// NIC rings that do not fit the guest's memory (a 64 KiB MTU on 8 MiB) stop the start with
/// what to change, not a wrapped address.
#[test]
fn nic_rings_too_large_for_the_memory_are_refused_clearly() {
    let ns = NetNs::new("bigmtu");
    ns.tap("tap0", "10.0.0.1/24", 65521);
    let r = run_mtu_guest(&ns, &["--mem=8", "--net:service=tap0"]);
    r.expect_status(1)
        .expect_stderr("too small for its NIC rings")
        .expect_stderr("frames of up to 65535 bytes");
    // The --mem it names is enough.
    let need = r.stderr.split("use --mem=").nth(1).expect("a --mem to use");
    let need: u64 = need[..need.find(' ').unwrap()].parse().unwrap();
    run_mtu_guest(&ns, &[&format!("--mem={need}"), "--net:service=tap0"])
        .expect_success()
        .expect_stdout("mtu=65521");
}

#[test]
fn tap_errors_name_the_interface() {
    let ns = NetNs::new("taperr");
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_sturdy-hvt"));
    cmd.args(["--net:service=nosuchtap"]).arg(guest("mtu"));
    let r = wait(
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
    );
    r.expect_status(1)
        .expect_stderr("--net:service=nosuchtap: no such network interface");
}

/// An ARP request for `ip` from MAC 02:00:00:00:00:01, 10.0.0.1.
fn arp_request(ip: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip);
    f
}

/// The ARP/ICMP responder (10.0.0.2, MAC 02:00:0a:00:00:02) on NIC `service` at the inherited
/// socket `theirs`, serving.
fn net_guest_on(theirs: std::os::fd::OwnedFd) -> Running {
    let mut cmd = hvt();
    cmd.args([
        &format!("--net:service=@{}", theirs.as_raw_fd()),
        "--net-mac:service=02:00:0a:00:00:02",
        guest("net").to_str().unwrap(),
        "--ipv4=10.0.0.2",
    ]);
    inherit_fd(&mut cmd, theirs.as_raw_fd());
    let mut g = spawn(cmd);
    drop(theirs);
    g.wait_for_line("serving", Duration::from_secs(20));
    g
}

#[test]
fn nic_on_an_inherited_socketpair_fd() {
    let (ours, theirs) = seqpacket_pair();
    let _g = net_guest_on(theirs);

    let sock = std::os::unix::net::UnixDatagram::from(ours);
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send(&arp_request([10, 0, 0, 2])).unwrap();
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).expect("ARP reply over the socketpair");
    let reply = &buf[..n];
    assert_eq!(&reply[12..14], &[0x08, 0x06], "not ARP: {reply:02x?}");
    assert_eq!(&reply[20..22], &[0, 2], "not an ARP reply: {reply:02x?}");
    assert_eq!(
        &reply[22..28],
        &[2, 0, 10, 0, 0, 2],
        "sender MAC is not --net-mac: {reply:02x?}"
    );
    assert_eq!(&reply[28..32], &[10, 0, 0, 2]);
}

/// A port like the fabric's, which offers shared-memory rings as its first message: the monitor
/// takes the offer, says it serves the rings once the guest is on its NIC rings, and the
/// guest's frames cross them both ways; the socket carries nothing but doorbells.
#[test]
fn nic_on_a_socket_that_offers_rings() {
    use std::os::fd::AsFd;
    use sturdy_port_ring::{Popped, DOORBELL};

    let (ours, theirs) = seqpacket_pair();
    let mut rings = sturdy_port_ring::create_and_offer(ours.as_fd()).unwrap();
    let _g = net_guest_on(theirs);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !rings.attached() {
        assert!(
            std::time::Instant::now() < deadline,
            "the monitor never said it serves the rings"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let sock = std::os::unix::net::UnixDatagram::from(ours);
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut doorbells = 0;
    let mut reply = None;
    let mut buf = [0u8; 2048];
    for round in 0..3 {
        // Sent once the I/O thread sleeps (it announced so: ring), then while it may poll.
        std::thread::sleep(Duration::from_millis(if round == 0 { 100 } else { 0 }));
        assert!(rings.push(&arp_request([10, 0, 0, 2])));
        if rings.publish() {
            sturdy_port_ring::send_doorbell(sock.as_fd()).unwrap();
            doorbells += 1;
        }
        let frame = loop {
            if let Some(Popped::Frame(n)) = rings.pop(&mut buf).unwrap() {
                rings.release();
                break buf[..n].to_vec();
            }
            if rings.prepare_sleep() {
                let mut bell = [0u8; 64];
                let n = sock.recv(&mut bell).expect("a doorbell within 5 s");
                assert_eq!(&bell[..n], &[DOORBELL], "only doorbells on the socket");
            }
            rings.woke();
        };
        reply = Some(frame);
    }
    assert!(doorbells >= 1, "the sleeping monitor was never rung");
    let reply = reply.unwrap();
    assert_eq!(&reply[12..14], &[0x08, 0x06], "not ARP: {reply:02x?}");
    assert_eq!(&reply[20..22], &[0, 2], "not an ARP reply: {reply:02x?}");
    assert_eq!(&reply[22..28], &[2, 0, 10, 0, 0, 2]);
}

/// CPU time (user + system, clock ticks) the monitor `pid`'s NIC I/O thread has used.
fn io_thread_ticks(pid: u32) -> u64 {
    testkit::thread_ticks(pid, "sturdy-hvt-io").expect("the monitor's NIC I/O thread")
}

/// A NIC whose host socket is full (nobody reads its other end) while the guest keeps sending
/// must not make the monitor's I/O thread spin: it retries the socket every millisecond and
/// sleeps in between (the guest, told to try again, waits in POLL).
#[test]
fn a_full_host_socket_does_not_make_the_io_thread_spin() {
    let (ours, theirs) = seqpacket_pair();
    let mut cmd = hvt();
    cmd.args([
        &format!("--net:service=@{}", theirs.as_raw_fd()),
        guest("attacker").to_str().unwrap(),
        "--sturdy.v1.net=service:10.77.0.2/24",
        "broadcast-flood",
        "--rounds=1000000",
        "--pause-ms=0",
    ]);
    inherit_fd(&mut cmd, theirs.as_raw_fd());
    let mut g = spawn(cmd);
    drop(theirs);
    g.wait_for_line("attacker", Duration::from_secs(20));
    // The socket and the guest's TX ring fill within a moment.
    std::thread::sleep(Duration::from_millis(500));
    let before = io_thread_ticks(g.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = io_thread_ticks(g.pid()) - before;
    // 200 ticks would be a whole CPU for the 2 s; sleeping between retries takes a few.
    assert!(used < 50, "the I/O thread used {used} of 200 ticks");
    drop(ours);
}
