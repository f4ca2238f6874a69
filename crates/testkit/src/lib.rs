//! What sturdy's integration tests share, once: the monitor built with them, one-shot HTTP
//! requests, free ports, waiting for a condition, and looking at processes in /proc.
//!
//! The monitor is the `sturdy-hvt` binary of this workspace, found next to the test's own
//! directory (`target/<profile>/`). Cargo builds a package's binaries for its own integration
//! tests only (artifact dependencies are unstable), so it must have been built first:
//! `scripts/test.sh` does (`cargo build --workspace --all-targets`), and so does
//! `cargo build -p sturdy-hvt`. A missing monitor, like a missing /dev/kvm, fails the test with
//! what to do.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The monitor built with this test (and a check that /dev/kvm exists).
pub fn hvt() -> PathBuf {
    assert!(
        Path::new("/dev/kvm").exists(),
        "this test boots unikernels and needs /dev/kvm (KVM); none found"
    );
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/sturdy-hvt
    let hvt = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps")
        .join("sturdy-hvt");
    assert!(
        hvt.is_file(),
        "the monitor is not built at {}: run `cargo build -p sturdy-hvt` (or scripts/test.sh) first",
        hvt.display()
    );
    hvt
}

/// A TCP port of 127.0.0.1 free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP connection to `to` from the loopback address `source` (any of 127.0.0.0/8): a
/// second host client, as a gateway's per-source limits see it.
pub fn connect_from(source: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

/// One HTTP/1.1 request to `addr` with `Connection: close` (and a form body); the whole
/// answer, or what came before the connection broke.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    // A gateway resets the clients of a service that is not ready, maybe before connect
    // returns: that is an empty answer, as a reset after it is.
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return String::new(),
        Err(e) => panic!("connect to {addr}: {e}"),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // A reset (a service that is not ready) may come before the request is written.
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Polls `f` every 20 ms until it holds; panics saying `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fields of /proc/`pid`/stat after the command: `[0]` state, `[1]` ppid, `[19]` start
/// time. `None` if there is no such process.
pub fn stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: split after the last ')'.
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(String::from).collect())
}

/// Whether `pid` runs (a zombie, dead but not yet reaped, does not).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|f| f[0] != "Z" && f[0] != "X")
}

/// The live processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            alive(*pid)
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect();
    pids.sort();
    pids
}

/// CPU time (user + system, in clock ticks) the threads named `name` of process `pid` have
/// used; `None` if it has no such thread.
pub fn thread_ticks(pid: u32, name: &str) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = None;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ...": the name may hold spaces; fields follow the last ')'.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if head.split_once('(').map(|(_, comm)| comm) == Some(name) {
            let f: Vec<&str> = rest.split(' ').collect();
            let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
            *total.get_or_insert(0) += ticks;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_found() {
        let me = std::process::id();
        assert!(alive(me));
        assert_eq!(
            stat(me).unwrap()[1],
            std::os::unix::process::parent_id().to_string()
        );
        assert!(!alive(u32::MAX));
        assert!(processes_mentioning("testkit").contains(&me));
    }

    #[test]
    fn wait_for_returns_once_true() {
        let mut n = 0;
        wait_for(Duration::from_secs(1), "three calls", || {
            n += 1;
            n == 3
        });
        assert_eq!(n, 3);
    }

    #[test]
    fn thread_ticks_are_counted_for_the_named_threads_only() {
        // Spins until the kernel has counted CPU time, not for a span of wall time: a loaded
        // machine may give the thread no CPU for a while, which must not fail the test.
        let me = std::process::id();
        assert_eq!(thread_ticks(me, "no-such-thread"), None);
        let (stop_idle, idle_stopped) = std::sync::mpsc::channel::<()>();
        let idle = std::thread::Builder::new()
            .name("testkit-idle".into())
            .spawn(move || idle_stopped.recv())
            .unwrap();
        let spinner = std::thread::Builder::new()
            .name("testkit-spin".into())
            .spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(600);
                loop {
                    let ticks = thread_ticks(me, "testkit-spin").expect("the spinning thread");
                    if ticks >= 5 || Instant::now() > deadline {
                        return ticks;
                    }
                }
            })
            .unwrap();
        let spun = spinner.join().unwrap();
        assert!(spun >= 5, "10 minutes of spinning counted {spun} ticks");
        let idled = thread_ticks(me, "testkit-idle").expect("the idle thread is found");
        assert!(idled < spun, "a thread that slept counted {idled} ticks");
        stop_idle.send(()).unwrap();
        idle.join().unwrap().unwrap();
    }
}
