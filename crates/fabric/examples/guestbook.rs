//! Benchmark driver: the guestbook (`kv` as db, `web` holding the capability `db.kv`) on the
//! fabric, web's endpoint `http` published by the gateway on 127.0.0.1:PORT. Prints `ready`
//! once both guests serve, then runs until killed (the monitors die with it).
//! `benches/fabric.sh` runs `wrk` through it beside web on a Linux bridge.
//!
//!   cargo run --release -p sturdy-fabric --example guestbook -- HVT 8080

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use sturdy_fabric::port::{self, Port};
use sturdy_fabric::{gateway, Endpoint, Fabric, Plan, Proto};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [hvt, port] = &args[..] else {
        eprintln!("usage: guestbook STURDY_HVT PORT");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("PORT: a number");
    let tcp = |name: &str, port| Endpoint {
        name: name.into(),
        port,
        proto: Proto::Tcp,
    };
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("web", vec![tcp("http", 80)]).unwrap();
    plan.add_service("db", vec![tcp("kv", 6379)]).unwrap();
    plan.grant("web", "db.kv").unwrap();
    plan.publish(([127, 0, 0, 1], port).into(), "web.http")
        .unwrap();

    let handle = port::spawn(Fabric::new(plan.clone(), Default::default()).unwrap()).unwrap();
    let (web_port, web_fd) = Port::pair().unwrap();
    let (db_port, db_fd) = Port::pair().unwrap();
    handle
        .attach(plan.service("web").unwrap().port, web_port)
        .unwrap();
    handle
        .attach(plan.service("db").unwrap().port, db_port)
        .unwrap();
    let _gateway = gateway::spawn(&plan, &handle).unwrap();

    // kv's disk: removed once kv has it open.
    let disk = std::env::temp_dir().join(format!("sturdy-guestbook-{}.img", std::process::id()));
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let block = format!("--block:storage={}", disk.display());
    let mut kv = boot(hvt, &plan, "db", "kv", &db_fd, &["--mem=128", &block]);
    drop(db_fd);
    wait_for(&mut kv, "serving on port 6379");
    let _ = std::fs::remove_file(&disk);
    let mut web = boot(hvt, &plan, "web", "web", &web_fd, &["--mem=128"]);
    drop(web_fd);
    wait_for(&mut web, "serving http");
    println!("ready");
    std::io::stdout().flush().unwrap();

    let status = web.wait().expect("web");
    let _ = kv.kill();
    eprintln!("web exited: {status}");
    std::process::exit(1);
}

/// Boots `image` as `service` with its NIC on `fd` and boot arguments from `plan`; the
/// monitor is killed when this process dies.
fn boot(
    hvt: &str,
    plan: &Plan,
    service: &str,
    image: &str,
    fd: &OwnedFd,
    monitor: &[&str],
) -> Child {
    let boot_args = sturdy_bootcfg::render(&plan.bootcfg_for(service).unwrap());
    let raw = fd.as_raw_fd();
    let mut cmd = Command::new(hvt);
    cmd.args(monitor)
        .args(plan.monitor_net_args(service, raw).unwrap())
        .arg(guests::path(image))
        .arg("--solo5:quiet")
        .args(boot_args.split(' '))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    // SAFETY: runs in the forked child before exec; fcntl and prctl are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(raw, libc::F_SETFD, 0) < 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn sturdy-hvt")
}

/// Reads the guest's stdout until a line contains `needle`, then drains the rest on a thread.
fn wait_for(guest: &mut Child, needle: &str) {
    let mut lines = BufReader::new(guest.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains(needle) => break,
            Some(Ok(_)) => {}
            _ => {
                eprintln!("the guest exited before printing {needle:?}");
                std::process::exit(1);
            }
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
}
