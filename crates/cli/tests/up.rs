//! `sturdy up`, `ps`, `restart`, `down` through the daemon with real unikernels: the guestbook
//! started detached and attached, serving through its published port, its volume kept across
//! a restart of db and a re-up, deleted by `down --volumes`, nothing left behind; the
//! `service_healthy` dependency holding web; invalid input refused with its message.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// TAP devices and network namespaces on the host: `down` must leave these as they were.
fn host_network() -> (usize, usize) {
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let taps = String::from_utf8_lossy(&links.stdout)
        .lines()
        .filter(|l| l.contains("tap"))
        .count();
    let netns = std::fs::read_dir("/run/netns").map_or(0, |d| d.count());
    (taps, netns)
}

#[test]
fn detached_guestbook_serves_keeps_its_volume_and_leaves_nothing_after_down() {
    preconditions();
    let home = Home::new("guestbook");
    let port = free_port();
    let file = guestbook_in(&home.dir.join("app"), "guestbook", port);
    let file = file.to_str().unwrap();
    let network_before = host_network();

    // Progress in order: db healthy before web starts; then where it is published.
    let out = home.ok(&["up", "-d", "--wait", file]);
    let lines: Vec<&str> = out.lines().collect();
    let at = |what: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("no {what:?} in:\n{out}"))
    };
    assert!(
        at("db  started (10.77.0.3, pid ") < at("db  healthy"),
        "{out}"
    );
    assert!(
        at("db  healthy") < at("web started (10.77.0.2, pid "),
        "{out}"
    );
    assert!(at("web healthy") < at(&format!("web published on 0.0.0.0:{port}")));

    let app = home.app("guestbook");
    assert_eq!(app["status"], "running");
    for s in app["services"].as_array().unwrap() {
        assert_eq!(s["state"], "healthy", "{app}");
    }
    // web was started only after db's health check passed.
    let (web, db) = (
        home.service("guestbook", "web"),
        home.service("guestbook", "db"),
    );
    assert!(
        web["started_at"].as_str().unwrap() >= db["healthy_since"].as_str().unwrap(),
        "web {web} db {db}"
    );
    let ps = home.ok(&["ps"]);
    assert!(ps.contains("guestbook    web      healthy"), "{ps}");
    assert!(ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");

    let posted = http(
        port,
        "POST",
        "/entries",
        "name=ada&message=kept-by-the-volume",
    );
    assert!(posted.starts_with("HTTP/1.1 303"), "{posted}");
    assert!(http(port, "GET", "/entries", "").contains("kept-by-the-volume"));

    // restart db: a new instance, the entry kept by its volume.
    let daemon = home.daemon_pid().expect("a daemon runs");
    let old_db = db["pid"].as_u64().unwrap() as u32;
    let out = home.ok(&["restart", "db", "-p", "guestbook"]);
    assert!(out.starts_with("db restarted (pid "), "{out}");
    home.wait_state("guestbook", "db", "healthy", Duration::from_secs(20));
    assert!(!alive(old_db), "the old db instance {old_db} still runs");
    let db = home.service("guestbook", "db");
    assert_eq!(db["instance"], 2);
    wait_for(Duration::from_secs(10), "web to see db again", || {
        http(port, "GET", "/entries", "").contains("kept-by-the-volume")
    });
    let monitors = monitors_of(daemon);
    assert_eq!(monitors.len(), 2, "{monitors:?}");

    // down: no monitor, no published port, no fd of the application left in the daemon.
    let out = home.ok(&["down", "-p", "guestbook"]);
    assert_eq!(out, "guestbook stopped\n");
    for pid in &monitors {
        assert!(!alive(*pid), "monitor {pid} left after down");
    }
    assert!(monitors_of(daemon).is_empty());
    assert!(!listening(port), "port {port} still published after down");
    assert_eq!(home.json(&["ps"]), serde_json::json!([]));
    // Descriptors of the last requests and of the app's state recorder close just after.
    std::thread::sleep(Duration::from_millis(500));
    let idle_fds = fd_count(daemon);

    // up again: the volume kept the entry; down again leaks nothing.
    home.ok(&["up", "-d", "--wait", file]);
    assert!(http(port, "GET", "/entries", "").contains("kept-by-the-volume"));
    home.ok(&["down", "-p", "guestbook"]);
    wait_for(
        Duration::from_secs(5),
        "the daemon's descriptors back to idle (a leak per up/down)",
        || fd_count(daemon) <= idle_fds,
    );

    // down --volumes deletes the data: the next up starts empty.
    let volume = home.dir.join("apps/guestbook/volumes/data.img");
    assert!(volume.is_file());
    let out = home.ok(&["down", "-p", "guestbook", "--volumes"]);
    assert_eq!(out, format!("removed volume {}\n", volume.display()));
    assert!(!volume.exists());
    home.ok(&["up", "-d", "--wait", file]);
    let entries = http(port, "GET", "/entries", "");
    assert!(
        entries.contains("\"entries\":[]") && !entries.contains("kept-by-the-volume"),
        "{entries}"
    );
    home.ok(&["down", "-p", "guestbook", "--volumes"]);
    assert_eq!(host_network(), network_before, "TAPs or namespaces left");
}

#[test]
fn attached_up_follows_consoles_until_sigint_then_stops_the_app() {
    preconditions();
    let home = Home::new("attached");
    let port = free_port();
    let file = guestbook_in(&home.dir.join("app"), "attached", port);
    let mut up = Follow::spawn(home.cmd(&["up", file.to_str().unwrap()]));
    let mut wait_line = |what: &str| up.wait_line(what);
    wait_line("db  started (10.77.0.3");
    wait_line(&format!("web published on 0.0.0.0:{port}"));
    // Both consoles, prefixed with the padded service name.
    wait_line("db  | kv: recovered");
    wait_line("web | web: serving http");
    // Its published port takes clients once it is healthy (until then they are reset).
    home.wait_state("attached", "web", "healthy", Duration::from_secs(30));
    let posted = http(port, "POST", "/entries", "name=ada&message=attached");
    assert!(posted.starts_with("HTTP/1.1 303"), "{posted}");

    let daemon = home.daemon_pid().unwrap();
    let monitors = monitors_of(daemon);
    assert_eq!(monitors.len(), 2, "{monitors:?}");
    assert!(Command::new("kill")
        .args(["-INT", &up.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = up.child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut up.child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("stopping attached"), "{stderr}");
    for pid in monitors {
        assert!(!alive(pid), "monitor {pid} left after SIGINT of sturdy up");
    }
    assert!(!listening(port));
    assert_eq!(home.json(&["ps"]), serde_json::json!([]));
}

#[test]
fn service_healthy_holds_web_until_db_answers() {
    preconditions();
    let home = Home::new("holds");
    let port = free_port();
    let file = guestbook_in(&home.dir.join("app"), "holds", port);
    // db's health check now asks for HTTP, which kv never answers: db never becomes healthy.
    let yaml = std::fs::read_to_string(&file).unwrap().replace(
        "healthcheck: { tcp: 6379,",
        "healthcheck: { http: /health, port: 6379,",
    );
    assert!(yaml.contains("http: /health, port: 6379"));
    std::fs::write(&file, yaml).unwrap();

    let mut up = home
        .cmd(&["up", "-d", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(20), "db to run", || {
        home.daemon_pid().is_some()
            && home.run(&["ps", "-p", "holds"]).status.success()
            && home.service("holds", "db")["pid"].is_u64()
    });
    // For two seconds: db runs but is not healthy, web has no instance and says why.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let web = home.service("holds", "web");
        assert_eq!(web["state"], "created", "{web}");
        assert!(web["pid"].is_null(), "{web}");
        assert_eq!(web["waiting_for"], "db to be healthy", "{web}");
        assert_eq!(home.service("holds", "db")["state"], "starting");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!listening(port) || !http(port, "GET", "/health", "").contains("200"));
    let _ = up.kill();
    let _ = up.wait();
    let out = home.ok(&["ps"]);
    assert!(
        out.contains("created (waiting for db to be healthy)"),
        "{out}"
    );
    home.ok(&["down", "-p", "holds", "--volumes"]);
}

#[test]
fn up_of_an_invalid_file_prints_the_diagnostics_and_exits_1() {
    let dir = temp_dir("invalid");
    let src = "name: app\nservices:\n  web:\n    image: x\n    imgae: typo\n";
    std::fs::write(dir.join("sturdy.yaml"), src).unwrap();
    let out = Command::new(sturdy_exe())
        .args(["up", "sturdy.yaml", "--no-color"])
        .env("STURDY_HOME", dir.join("state"))
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
    // Nothing was started for it.
    assert!(!dir.join("state/sturdy.sock").exists());
}

#[test]
fn up_without_a_monitor_says_so_and_exits_1() {
    if !Path::new("/dev/kvm").exists() {
        return; // the KVM check comes first; covered where KVM exists
    }
    let home = Home::new("no-hvt");
    let missing = home.dir.join("sturdy-hvt");
    let out = home.run(&[
        "up",
        root().join("examples/guestbook").to_str().unwrap(),
        "--hvt",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("sturdy: --hvt {}: no such file\n", missing.display())
    );
}

#[test]
fn verbs_without_a_daemon_say_nothing_is_up() {
    let home = Home::new("nothing-up");
    assert_eq!(home.ok(&["ps"]).lines().count(), 1, "only the header");
    assert_eq!(home.json(&["ps"]), serde_json::json!([]));
    for verb in [
        &["logs"][..],
        &["restart", "web"],
        &["down"],
        &["inspect", "web"],
    ] {
        let out = home.run(verb);
        assert_eq!(out.status.code(), Some(1), "{verb:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with("sturdy: no application is up"),
            "{verb:?}: {err}"
        );
    }
    // None of them started a daemon.
    assert!(home.daemon_pid().is_none());
}

#[test]
fn help_teaches_with_examples() {
    let out = Command::new(sturdy_exe())
        .args(["up", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("sudo sturdy up examples/guestbook"), "{help}");
    assert!(help.contains("curl localhost:8080"), "{help}");
    assert!(help.contains("--detach"), "{help}");
    assert!(help.contains("--state-dir <DIR>"), "{help}");
}
