//! Benchmark driver: two `tcpbench` unikernels (guest/test-guests) through the fabric, the
//! client holding the capability `peer` to the server's endpoint `bench`. Prints the client's
//! result lines (`bulk_mbit_s=...`, `rr_p50_us=... rr_p99_us=...`). `benches/fabric.sh` runs
//! it beside the same two guests on a Linux bridge.
//!
//!   cargo run --release -p sturdy-fabric --example bench_pair -- HVT bulk 64
//!   cargo run --release -p sturdy-fabric --example bench_pair -- HVT rr 2000

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use sturdy_fabric::port::{self, Port};
use sturdy_fabric::{Endpoint, Fabric, Plan, Proto};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [hvt, mode, n] = &args[..] else {
        eprintln!("usage: bench_pair STURDY_HVT bulk MIB | rr COUNT");
        std::process::exit(2);
    };
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("client", vec![]).unwrap();
    let bench = Endpoint {
        name: "bench".into(),
        port: 5001,
        proto: Proto::Tcp,
    };
    plan.add_service("server", vec![bench]).unwrap();
    // tcpbench asks for the capability `peer`: the plan's capability is `server.bench`, so the
    // client's boot configuration names it `peer` below.
    plan.grant("client", "server.bench").unwrap();

    let handle = port::spawn(Fabric::new(plan.clone(), Default::default()).unwrap()).unwrap();
    let (server_port, server_fd) = Port::pair().unwrap();
    let (client_port, client_fd) = Port::pair().unwrap();
    handle
        .attach(plan.service("server").unwrap().port, server_port)
        .unwrap();
    handle
        .attach(plan.service("client").unwrap().port, client_port)
        .unwrap();

    let mut server = boot(hvt, &plan, "server", &server_fd, &["server"]);
    drop(server_fd);
    let out = server.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        if line.expect("server output").contains("serving on port") {
            break;
        }
    }
    let client = boot(
        hvt,
        &plan,
        "client",
        &client_fd,
        &[mode.as_str(), n.as_str()],
    );
    drop(client_fd);
    let output = client.wait_with_output().expect("client");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    // A frame the fabric dropped costs the guests a TCP retransmission: say so beside the figure.
    if let Ok(stats) = handle.stats() {
        for p in &stats.ports {
            for (reason, n) in p.stats.drops.nonzero() {
                eprintln!(
                    "bench_pair: fabric dropped {n} frames of {} ({reason:?})",
                    p.service
                );
            }
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        std::process::exit(1);
    }
}

/// Boots `tcpbench` as `service` with its NIC on `fd` and boot arguments from `plan`.
fn boot(hvt: &str, plan: &Plan, service: &str, fd: &OwnedFd, extra: &[&str]) -> Child {
    let mut config = plan.bootcfg_for(service).unwrap();
    for cap in &mut config.uses {
        cap.name = "peer".into();
    }
    let boot_args = sturdy_bootcfg::render(&config);
    let raw = fd.as_raw_fd();
    let mut cmd = Command::new(hvt);
    cmd.arg("--mem=64")
        .args(plan.monitor_net_args(service, raw).unwrap())
        .arg(guests::path("tcpbench"))
        .arg("--solo5:quiet")
        .args(boot_args.split(' '))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    // SAFETY: runs in the forked child before exec; fcntl is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn sturdy-hvt")
}
