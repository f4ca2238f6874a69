//! What the end-to-end tests of the `sturdy` command share: a state directory with its own
//! daemon ([`Home`], which stops the daemon and removes everything when dropped), the
//! guestbook written with absolute image paths and a free port, HTTP requests, and looking at
//! processes.
//!
//! Needs root, /dev/kvm, the guest images (built by the `guests` dev-dependency) and the
//! monitor `sturdy-hvt` next to the `sturdy` binary (`cargo build --workspace --all-targets`).
#![allow(dead_code)]

pub use testkit::{alive, free_port, stat, wait_for};

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn sturdy_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sturdy"))
}

/// What the tests that boot unikernels need, with a clear message when it is missing.
pub fn preconditions() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "this test boots unikernels and needs /dev/kvm (KVM); none found"
    );
    let hvt = sturdy_exe().with_file_name("sturdy-hvt");
    assert!(
        hvt.is_file(),
        "the monitor is not built at {}: run `cargo build --workspace --all-targets` first",
        hvt.display()
    );
}

/// A fresh, empty directory for the test called `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether something listens on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// examples/guestbook/sturdy.yaml in `dir`, named `name`, with absolute image paths and
/// 8080 made `port`.
pub fn guestbook_in(dir: &Path, name: &str, port: u16) -> PathBuf {
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
        .replace("\"8080:80\"", &format!("\"{port}:80\""))
        .replace("name: guestbook", &format!("name: {name}"));
    assert!(yaml.contains(&web.display().to_string()) && yaml.contains(&format!("{port}:80")));
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("sturdy.yaml");
    std::fs::write(&file, yaml).unwrap();
    file
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (see [`testkit::http`]).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    testkit::http(SocketAddr::from(([127, 0, 0, 1], port)), method, path, body)
}

/// The sturdy-hvt processes whose parent is `parent` (zombies not counted).
pub fn monitors_of(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains("sturdy-hvt") {
            continue;
        }
        if stat(pid).is_some_and(|f| f[1] == parent.to_string() && alive(pid)) {
            pids.push(pid);
        }
    }
    pids.sort();
    pids
}

/// SIGKILL to `pid` (a daemon: nothing it can do about it), then waits until it is dead.
pub fn kill_9(pid: u32) {
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    wait_for(Duration::from_secs(5), "the process to die", || !alive(pid));
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A state directory with its own daemon (started on demand by the first command that needs
/// it); dropping it stops the daemon and removes the directory.
pub struct Home {
    pub dir: PathBuf,
}

impl Home {
    pub fn new(name: &str) -> Home {
        Home {
            dir: temp_dir(name),
        }
    }

    /// `sturdy ARGS` with this state directory, uncoloured, run in the directory itself.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(sturdy_exe());
        c.args(args)
            .env("STURDY_HOME", &self.dir)
            .env("NO_COLOR", "1")
            .current_dir(&self.dir);
        c
    }

    /// Writes `yaml` as `DIR/sturdy.yaml` in a directory `dir` of the state directory, and
    /// returns the file's path as a string (what `up` takes).
    pub fn write_app(&self, dir: &str, yaml: &str) -> String {
        let dir = self.dir.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sturdy.yaml");
        std::fs::write(&file, yaml).unwrap();
        file.to_str().unwrap().to_string()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `sturdy ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sturdy {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `sturdy ARGS --json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.ok(&args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// One application from `ps --json`: its services by name.
    pub fn app(&self, name: &str) -> Value {
        self.json(&["ps", "-p", name])[0].clone()
    }

    /// `service` of application `app` from `ps --json`.
    pub fn service(&self, app: &str, service: &str) -> Value {
        let a = self.app(app);
        a["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == service)
            .unwrap_or_else(|| panic!("no {service} in {a}"))
            .clone()
    }

    /// The running daemon's pid.
    pub fn daemon_pid(&self) -> Option<u32> {
        let pid = std::fs::read_to_string(self.dir.join("daemon.pid")).ok()?;
        let pid: u32 = pid.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    /// Waits until `app`'s `service` is in `state`.
    pub fn wait_state(&self, app: &str, service: &str, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.service(app, service);
            if s["state"] == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{app}/{service} not {state} within {timeout:?}: {s}\nlogs:\n{}",
                self.ok(&["logs", "-p", app])
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let pid = self.daemon_pid();
        let _ = self.run(&["daemon", "stop"]);
        if let Some(pid) = pid {
            if alive(pid) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `sturdy` command whose stdout a thread reads line by line; killed when dropped.
pub struct Follow {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Follow {
    /// Starts `cmd` with its stdout piped (stderr too, for the caller to read).
    pub fn spawn(mut cmd: Command) -> Follow {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follow {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most 30 s) for a line containing `what`.
    pub fn wait_line(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.seen.iter().any(|l| l.contains(what)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("no {what:?} within 30 s; output:\n{}", self.seen.join("\n")),
            }
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
