//! `sturdy up`, attached, with real unikernels: the guestbook started with progress, serving,
//! its consoles prefixed, stopped cleanly by SIGINT; an invalid file refused.
//!
//! Needs root, /dev/kvm, the guest images (built by the `guests` dev-dependency) and the
//! monitor `sturdy-hvt` next to the `sturdy` binary (`target/<profile>/sturdy-hvt`, built by
//! `cargo build --workspace --all-targets`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh, empty directory for the test called `name`.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("up-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sturdy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sturdy"))
}

/// What this test needs, with a clear message when it is missing.
fn preconditions() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "this test boots unikernels and needs /dev/kvm (KVM); none found"
    );
    let hvt = Path::new(env!("CARGO_BIN_EXE_sturdy")).with_file_name("sturdy-hvt");
    assert!(
        hvt.is_file(),
        "the monitor is not built at {}: run `cargo build --workspace --all-targets` first",
        hvt.display()
    );
}

/// A TCP port free right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// examples/guestbook/sturdy.yaml in `dir`, with absolute image paths and 8080 made `port`.
fn guestbook_in(dir: &Path, port: u16) {
    let src = std::fs::read_to_string(root().join("examples/guestbook/sturdy.yaml")).unwrap();
    let (web, kv) = (guests::path("web"), guests::path("kv"));
    let yaml = src
        .replace(
            "../../target/guest/x86_64-unknown-linux-gnu/release/web",
            &web.display().to_string(),
        )
        .replace(
            "../../target/guest/x86_64-unknown-linux-gnu/release/kv",
            &kv.display().to_string(),
        )
        .replace("\"8080:80\"", &format!("\"{port}:80\""));
    assert!(yaml.contains(&web.display().to_string()) && yaml.contains(&format!("{port}:80")));
    std::fs::write(dir.join("sturdy.yaml"), yaml).unwrap();
}

/// One HTTP/1.1 request with `Connection: close`; the whole answer.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The running `sturdy up`, its stdout read line by line by a thread.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Up {
    /// Waits (at most `timeout`) for a stdout line for which `f` holds.
    fn wait_line(&mut self, timeout: Duration, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(l) = self.seen.iter().find(|l| f(l)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if f(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no {what} within {timeout:?}; output:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sturdy-hvt processes whose command line mentions `needle`.
fn monitors_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("sturdy-hvt") && cmdline.contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// Starts `sturdy up DIR --state-dir STATE --no-color` with its stdout read by a thread.
fn spawn_up(dir: &Path, state: &Path) -> Up {
    let child = sturdy()
        .arg("up")
        .arg(dir)
        .arg("--state-dir")
        .arg(state)
        .arg("--no-color")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = Up {
        child,
        lines: mpsc::channel().1,
        seen: Vec::new(),
    };
    let (tx, rx) = mpsc::channel();
    let stdout = up.child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    up.lines = rx;
    up
}

#[test]
fn up_runs_the_guestbook_until_sigint() {
    preconditions();
    let dir = temp_dir("guestbook");
    let state = dir.join("state");
    let port = free_port();
    guestbook_in(&dir, port);

    let mut up = spawn_up(&dir, &state);

    // Progress: db started and healthy, web started, published, healthy.
    let long = Duration::from_secs(30);
    up.wait_line(long, "db started", |l| l == "db  started (10.77.0.3)");
    up.wait_line(long, "db healthy", |l| l == "db  healthy");
    up.wait_line(long, "web started", |l| l == "web started (10.77.0.2)");
    up.wait_line(long, "web published", |l| {
        l == format!("web published on 0.0.0.0:{port}")
    });
    up.wait_line(long, "web healthy", |l| l == "web healthy");
    let volume = state.join("apps/guestbook/volumes/data.img");
    assert!(volume.is_file(), "no volume at {}", volume.display());

    let web = SocketAddr::from(([127, 0, 0, 1], port));
    let posted = http(web, "POST", "/entries", "name=ada&message=hello-from-up");
    assert!(posted.starts_with("HTTP/1.1 303"), "{posted}");
    let entries = http(web, "GET", "/entries", "");
    assert!(entries.contains("hello-from-up"), "{entries}");

    // Both consoles, prefixed with the padded service name.
    up.wait_line(long, "db's console", |l| {
        l.starts_with("db  | kv: recovered")
    });
    up.wait_line(long, "web's console", |l| {
        l.starts_with("web | web: serving http")
    });

    let monitors = monitors_mentioning(&state.display().to_string());
    assert_eq!(
        monitors.len(),
        1,
        "db's monitor names its volume: {monitors:?}"
    );
    // Only this app's monitors: other tests run guests from the same images at the same time.
    let all: Vec<u32> = monitors_of(up.child.id());
    assert_eq!(all.len(), 2, "{all:?}");

    let pid = up.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "sturdy up still runs 10 s after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    up.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("stopping guestbook"), "{stderr}");
    for pid in all {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "monitor {pid} left after sturdy up exited"
        );
    }
    assert!(monitors_mentioning(&state.display().to_string()).is_empty());
    drop(up);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn up_of_an_invalid_file_prints_the_diagnostics_and_exits_1() {
    let dir = temp_dir("invalid");
    let src = "name: app\nservices:\n  web:\n    image: x\n    imgae: typo\n";
    std::fs::write(dir.join("sturdy.yaml"), src).unwrap();
    let out = sturdy()
        .args(["up", "sturdy.yaml", "--no-color"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let expected: String = sturdy_compose::parse(src, Path::new("sturdy.yaml"))
        .unwrap_err()
        .diagnostics()
        .iter()
        .map(|d| format!("{d}\n"))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(String::from_utf8(out.stderr).unwrap(), expected);
}

#[test]
fn up_without_a_monitor_says_so_and_exits_1() {
    let dir = temp_dir("no-hvt");
    let out = sturdy()
        .arg("up")
        .arg(root().join("examples/guestbook"))
        .arg("--hvt")
        .arg(dir.join("sturdy-hvt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "sturdy: --hvt {}: no such file\n",
            dir.join("sturdy-hvt").display()
        )
    );
}

#[test]
fn up_help_has_the_guestbook_example() {
    let out = sturdy().args(["up", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("sudo sturdy up examples/guestbook"), "{help}");
    assert!(help.contains("curl localhost:8080"), "{help}");
    assert!(help.contains("--state-dir <DIR>"), "{help}");
}

#[test]
fn monitors_die_with_a_killed_sturdy_up() {
    preconditions();
    let dir = temp_dir("sigkill");
    let state = dir.join("state");
    let port = free_port();
    guestbook_in(&dir, port);
    let mut up = spawn_up(&dir, &state);
    up.wait_line(Duration::from_secs(30), "web healthy", |l| {
        l == "web healthy"
    });
    let monitors = monitors_of(up.child.id());
    assert_eq!(monitors.len(), 2, "{monitors:?}");

    up.child.kill().unwrap(); // SIGKILL: no chance to stop anything itself
    up.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while monitors
        .iter()
        .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "monitors orphaned after SIGKILL of sturdy up: {monitors:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(up);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sturdy-hvt processes whose parent is `parent`.
fn monitors_of(parent: u32) -> Vec<u32> {
    monitors_mentioning("")
        .into_iter()
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after.split_whitespace().nth(1) == Some(&parent.to_string())
        })
        .collect()
}
