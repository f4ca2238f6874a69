//! What the fabric's integration tests with real unikernels share: the monitor, booting a
//! guest on a fabric port with the boot configuration its plan renders, its console, its end;
//! and a fabric with its gateway and a port per service.
//!
//! The monitor is the `sturdy-hvt` built with the tests ([`testkit::hvt`] says how).

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sturdy_fabric::port::{self, FabricHandle, Port};
use sturdy_fabric::{gateway, Endpoint, Fabric, GatewayHandle, Plan, Proto};

pub use testkit::hvt;

/// A running monitor, killed on drop.
pub struct Guest(pub Child);

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How to boot a guest, beyond its plan: all empty by default.
#[derive(Clone, Copy, Default)]
pub struct Boot<'a> {
    /// Extra monitor options (before the image), e.g. `--block:storage=PATH`.
    pub monitor: &'a [&'a str],
    /// Extra guest arguments (after the boot configuration).
    pub args: &'a [&'a str],
    /// Capabilities renamed in the boot configuration (what the guest asks them by): (from, to).
    pub rename: &'a [(&'a str, &'a str)],
}

impl<'a> Boot<'a> {
    /// Only extra guest arguments.
    pub fn args(args: &'a [&'a str]) -> Self {
        Boot {
            args,
            ..Boot::default()
        }
    }

    /// Only extra monitor options.
    pub fn monitor(monitor: &'a [&'a str]) -> Self {
        Boot {
            monitor,
            ..Boot::default()
        }
    }
}

/// Boots `image` as `service` of `plan`, its NIC on `fd`, its stdout and stderr piped.
pub fn boot(plan: &Plan, service: &str, image: &str, fd: &OwnedFd, how: Boot) -> Guest {
    let mut config = plan.bootcfg_for(service).unwrap();
    for cap in &mut config.uses {
        if let Some((_, to)) = how.rename.iter().find(|(from, _)| cap.name == *from) {
            cap.name = to.to_string();
        }
    }
    let boot_args = sturdy_bootcfg::render(&config);
    let raw = fd.as_raw_fd();
    let mut cmd = Command::new(hvt());
    cmd.arg("--mem=64")
        .args(how.monitor)
        .args(plan.monitor_net_args(service, raw).unwrap())
        .arg(guests::path(image))
        .args(boot_args.split(' '))
        .args(how.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    inherit(&mut cmd, raw);
    Guest(cmd.spawn().expect("spawn sturdy-hvt"))
}

/// Lets the monitor (and only it) inherit `fd`, which is close-on-exec like every port end.
pub fn inherit(cmd: &mut Command, fd: i32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which is
    // async-signal-safe, on a descriptor number the parent keeps open until after the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A guest's console: its stdout line by line, with the time each line arrived.
pub type Lines = mpsc::Receiver<(Instant, String)>;

/// Takes the guest's stdout: a thread reads it to its end (so the guest never blocks on a full
/// pipe, whether or not anyone still listens) and passes on each line.
pub fn lines(guest: &mut Guest) -> Lines {
    let stdout = guest.0.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });
    rx
}

/// Reads `lines` until one contains `needle`; returns every line read (with its time). Panics
/// with what the guest printed if it exits first or `timeout` passes.
pub fn read_until(lines: &Lines, needle: &str, timeout: Duration) -> Vec<(Instant, String)> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok((at, line)) => {
                let found = line.contains(needle);
                seen.push((at, line));
                if found {
                    return seen;
                }
            }
            Err(e) => {
                let printed = seen
                    .iter()
                    .map(|(_, l)| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                match e {
                    mpsc::RecvTimeoutError::Disconnected => panic!(
                        "the guest exited before printing {needle:?}; it printed:\n{printed}"
                    ),
                    mpsc::RecvTimeoutError::Timeout => panic!(
                        "the guest did not print {needle:?} within {timeout:?}; it printed:\n\
                         {printed}"
                    ),
                }
            }
        }
    }
}

/// Reads the guest's stdout until a line contains `needle` (panics with what it printed if
/// the guest exits first or `timeout` passes); the rest of its console.
pub fn wait_for_line(guest: &mut Guest, needle: &str, timeout: Duration) -> Lines {
    let rest = lines(guest);
    read_until(&rest, needle, timeout);
    rest
}

/// Waits for the guest to exit (killing it after `timeout`): its status and output.
pub fn finish(mut guest: Guest, timeout: Duration) -> (Option<i32>, String) {
    let start = Instant::now();
    while guest.0.try_wait().unwrap().is_none() && start.elapsed() < timeout {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = guest.0.kill();
    let child = std::mem::replace(&mut guest.0, Command::new("true").spawn().unwrap());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A TCP endpoint `name` on `port`.
pub fn ep(name: &str, port: u16) -> Endpoint {
    Endpoint {
        name: name.into(),
        port,
        proto: Proto::Tcp,
    }
}

/// 127.0.0.1 on a port the system picks.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A fabric enforcing `plan` with its gateway, and a port per service.
pub fn fabric(plan: &Plan) -> (FabricHandle, GatewayHandle, Vec<(String, OwnedFd)>) {
    let handle = port::spawn(Fabric::new(plan.clone(), Default::default()).unwrap()).unwrap();
    let mut ends = Vec::new();
    for s in &plan.services {
        let (p, fd) = Port::pair().unwrap();
        handle.attach(s.port, p).unwrap();
        ends.push((s.name.clone(), fd));
    }
    let gw = gateway::spawn(plan, &handle).unwrap();
    (handle, gw, ends)
}

/// The guest's end of service `name`'s port.
pub fn end<'a>(ends: &'a [(String, OwnedFd)], name: &str) -> &'a OwnedFd {
    &ends.iter().find(|(n, _)| n == name).unwrap().1
}

/// Runs curl with `args` (10 s at most); its stdout. Fails the test if curl fails.
pub fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The guestbook on a fabric: `kv` (service `db`, endpoint `kv` 6379, a 16 MiB volume) and `web`
/// (endpoint `http` 80, granted `db.kv`), web's http published by the gateway on 127.0.0.1.
pub struct Guestbook {
    pub plan: Plan,
    pub handle: FabricHandle,
    pub gw: GatewayHandle,
    pub kv: Guest,
    pub web: Guest,
    /// `http://ADDR` of the published port.
    pub base: String,
    pub scratch: Scratch,
}

/// Boots the guestbook and waits until both unikernels serve. `tag` names its scratch dir.
pub fn guestbook(tag: &str) -> Guestbook {
    const BOOT: Duration = Duration::from_secs(20);
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("web", vec![ep("http", 80)]).unwrap();
    plan.add_service("db", vec![ep("kv", 6379)]).unwrap();
    plan.grant("web", "db.kv").unwrap();
    plan.publish(any_port(), "web.http").unwrap();
    let (handle, gw, ends) = fabric(&plan);
    let base = format!("http://{}", gw.addr_of("web.http").unwrap());

    let scratch =
        Scratch(std::env::temp_dir().join(format!("sturdy-{tag}-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let disk = scratch.0.join("kv.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let block = format!("--block:storage={}", disk.display());
    let mut kv = boot(
        &plan,
        "db",
        "kv",
        end(&ends, "db"),
        Boot::monitor(&[&block]),
    );
    wait_for_line(&mut kv, "serving on port 6379", BOOT);
    let mut web = boot(&plan, "web", "web", end(&ends, "web"), Boot::default());
    wait_for_line(&mut web, "web: serving http", BOOT);
    Guestbook {
        plan,
        handle,
        gw,
        kv,
        web,
        base,
        scratch,
    }
}
