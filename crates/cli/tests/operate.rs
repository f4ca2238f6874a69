//! Operating applications through the CLI with real unikernels: a crashing service restarted
//! with backoff then stopped as a crash loop; the daemon killed with SIGKILL and the
//! application back exactly once; two applications with the same service names isolated;
//! `run`; `logs -f`, `stop`, `start`, `stats`, `inspect`.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_crashing_service_is_restarted_with_backoff_then_reported_as_a_crash_loop() {
    preconditions();
    let home = Home::new("crash");
    // hostile with no attack prints its usage and exits 1.
    let yaml = format!(
        "name: crashy\n\
         services:\n  \
           bad:\n    \
             image: {}\n    \
             volumes: [\"scratch:storage\"]\n    \
             restart: on-failure\n  \
           echo:\n    \
             image: {}\n    \
             provides: {{ echo: 7/tcp }}\n\
         volumes:\n  \
           scratch: {{ size: 1M }}\n",
        guests::path("hostile").display(),
        guests::path("tcpecho").display(),
    );
    let file = home.write_app("app", &yaml);
    home.ok(&["up", "-d", &file]);

    // Seen while it happens: restarting between instances, the restart count growing.
    let mut states = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let bad = home.service("crashy", "bad");
        let state = bad["state"].as_str().unwrap().to_string();
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        if state == "crash-loop" {
            assert!(bad["restarts"].as_u64().unwrap() >= 5, "{bad}");
            assert_eq!(bad["last_exit"], 1, "{bad}");
            assert!(bad["pid"].is_null());
            break;
        }
        assert!(Instant::now() < deadline, "no crash loop: {states:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(states.iter().any(|s| s == "restarting"), "{states:?}");
    // The other service was never disturbed.
    let echo = home.service("crashy", "echo");
    assert_eq!(
        (echo["state"].as_str(), echo["instance"].as_u64()),
        (Some("running"), Some(1))
    );

    let logs = home.ok(&["logs", "bad", "-p", "crashy"]);
    for expected in [
        "bad  | sturdy: exited with status 1; restarting in 100ms",
        "bad  | sturdy: exited with status 1; restarting in 200ms",
        "bad  | sturdy: exited with status 1; restarting in 1.6s",
        "bad  | sturdy: exited with status 1; crash loop (5 restarts in a row): next try in 3.2s",
    ] {
        assert!(logs.contains(expected), "no {expected:?} in:\n{logs}");
    }
    // Between its tries (a new one every few seconds, then minutes), ps says when the next is.
    wait_for(Duration::from_secs(60), "ps to show the next try", || {
        home.ok(&["ps"]).contains("crash-loop (next try in ")
    });
    // `start` gives it another chance (its history forgotten).
    home.ok(&["start", "bad", "-p", "crashy"]);
    let bad = home.service("crashy", "bad");
    assert!(bad["instance"].as_u64().unwrap() >= 7, "{bad}");
    home.ok(&["down", "-p", "crashy"]);
}

#[test]
fn after_the_daemon_is_killed_the_next_command_brings_the_app_back_once() {
    preconditions();
    let home = Home::new("killed");
    let port = free_port();
    let file = guestbook_in(&home.dir.join("app"), "killed", port);
    home.ok(&["up", "-d", "--wait", file.to_str().unwrap()]);
    let posted = http(
        port,
        "POST",
        "/entries",
        "name=ada&message=survives-sigkill",
    );
    assert!(posted.starts_with("HTTP/1.1 303"), "{posted}");
    let daemon = home.daemon_pid().unwrap();
    let monitors = monitors_of(daemon);
    assert_eq!(monitors.len(), 2);

    kill_9(daemon);

    // Any command: it starts a daemon, which starts the application again.
    let ps = home.ok(&["ps"]);
    assert!(ps.contains("killed"), "{ps}");
    let again = home.daemon_pid().expect("a new daemon");
    assert_ne!(again, daemon);
    home.wait_state("killed", "db", "healthy", Duration::from_secs(20));
    home.wait_state("killed", "web", "healthy", Duration::from_secs(20));
    for pid in &monitors {
        assert!(!alive(*pid), "old monitor {pid} still runs");
    }
    let now = monitors_of(again);
    assert_eq!(now.len(), 2, "{now:?}");
    // No duplicate anywhere: the only monitor using this volume is the new db.
    let volume = home.dir.join("apps/killed/volumes/data.img");
    let users = testkit::processes_mentioning(&volume.to_string_lossy());
    assert_eq!(users.len(), 1, "{users:?}");
    assert!(now.contains(&users[0]));
    wait_for(
        Duration::from_secs(10),
        "the entry after the restart",
        || http(port, "GET", "/entries", "").contains("survives-sigkill"),
    );
    // The consoles of before the crash are still there, then the new instances'.
    let logs = home.ok(&["logs", "db", "-p", "killed"]);
    let before = monitors
        .iter()
        .find_map(|pid| logs.find(&format!("sturdy: started instance 1 (pid {pid})")))
        .unwrap_or_else(|| panic!("no line of the old db in:\n{logs}"));
    let after = logs.rfind("sturdy: started instance 1 (pid ").unwrap();
    assert!(before < after, "{logs}");
    home.ok(&["down", "-p", "killed", "--volumes"]);
}

#[test]
fn two_applications_with_the_same_service_names_do_not_see_each_other() {
    preconditions();
    let home = Home::new("two");
    let (left_port, right_port) = (free_port(), free_port());
    let left = guestbook_in(&home.dir.join("left"), "left", left_port);
    let right = guestbook_in(&home.dir.join("right"), "right", right_port);
    home.ok(&["up", "-d", "--wait", left.to_str().unwrap()]);
    home.ok(&["up", "-d", "--wait", right.to_str().unwrap()]);

    let apps = home.json(&["ps"]);
    let names: Vec<(&str, &str, &str)> = apps
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| {
            a["services"].as_array().unwrap().iter().map(move |s| {
                (
                    a["name"].as_str().unwrap(),
                    s["name"].as_str().unwrap(),
                    s["address"].as_str().unwrap(),
                )
            })
        })
        .collect();
    // The same names and the same addresses, on two fabrics.
    assert_eq!(
        names,
        [
            ("left", "web", "10.77.0.2"),
            ("left", "db", "10.77.0.3"),
            ("right", "web", "10.77.0.2"),
            ("right", "db", "10.77.0.3"),
        ]
    );
    let right_db_before = home.json(&["stats", "-p", "right"])[1]["rx_frames"]
        .as_u64()
        .unwrap();
    for i in 0..5 {
        let posted = http(
            left_port,
            "POST",
            "/entries",
            &format!("name=l&message=left-{i}"),
        );
        assert!(posted.starts_with("HTTP/1.1 303"), "{posted}");
    }
    assert!(http(left_port, "GET", "/entries", "").contains("left-4"));
    let right_entries = http(right_port, "GET", "/entries", "");
    assert!(right_entries.contains("\"entries\":[]"), "{right_entries}");
    // right's db saw none of left's traffic (only its own health probes: a few frames).
    let right_db_after = home.json(&["stats", "-p", "right"])[1]["rx_frames"]
        .as_u64()
        .unwrap();
    let left_db = home.json(&["stats", "-p", "left"])[1]["rx_frames"]
        .as_u64()
        .unwrap();
    assert!(
        right_db_after - right_db_before < left_db / 2,
        "right db {right_db_before} -> {right_db_after}, left db {left_db}"
    );
    // Stopping one leaves the other serving.
    home.ok(&["down", "-p", "left", "--volumes"]);
    assert!(http(right_port, "GET", "/health", "").starts_with("HTTP/1.1 200"));
    home.ok(&["down", "-p", "right", "--volumes"]);
}

#[test]
fn run_prints_the_console_and_passes_on_the_exit_status() {
    preconditions();
    let home = Home::new("run");
    let hello = guests::path("hello-world");
    let out = home.run(&["run", hello.to_str().unwrap(), "Hi", "from", "run"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.lines().any(|l| l == "Hi from run"), "{stdout}");

    let panic = guests::path("panic");
    let out = home.run(&["run", panic.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("panic: intentional panic"), "{stdout}");

    let out = home.run(&["run", "/nonexistent/unikernel"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "sturdy: /nonexistent/unikernel: no such unikernel image\n"
    );
    // Each run removed its application.
    assert_eq!(home.json(&["ps"]), serde_json::json!([]));
}

#[test]
fn logs_follow_stop_start_stats_and_inspect() {
    preconditions();
    let home = Home::new("operate");
    let port = free_port();
    let file = guestbook_in(&home.dir.join("app"), "ops", port);
    home.ok(&["up", "-d", "--wait", file.to_str().unwrap()]);

    // logs -f: lines as they come.
    let mut follow = Follow::spawn(home.cmd(&["logs", "-f", "db", "-p", "ops"]));
    let mut wait_line = |what: &str| follow.wait_line(what);
    wait_line("db  | kv: recovered");
    home.ok(&["restart", "db", "-p", "ops"]);
    wait_line("db  | sturdy: restarted on request");
    wait_line("db  | sturdy: started instance 2");
    drop(follow);

    // stop / start web: stopped stays stopped, connections fail; started serves again.
    home.wait_state("ops", "db", "healthy", Duration::from_secs(20));
    assert_eq!(home.ok(&["stop", "web", "-p", "ops"]), "web stopped\n");
    let web = home.service("ops", "web");
    assert_eq!(web["state"], "stopped");
    assert!(web["pid"].is_null());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        home.service("ops", "web")["state"],
        "stopped",
        "restarted by policy"
    );
    assert!(!http(port, "GET", "/health", "").contains("200 OK"));
    // It stays stopped across a daemon crash: the next daemon brings back db only.
    let daemon = home.daemon_pid().unwrap();
    kill_9(daemon);
    home.ok(&["ps"]);
    home.wait_state("ops", "db", "healthy", Duration::from_secs(20));
    let web = home.service("ops", "web");
    assert_eq!(
        (web["state"].as_str(), web["instance"].as_u64()),
        (Some("stopped"), Some(0))
    );
    let out = home.ok(&["start", "web", "-p", "ops"]);
    assert!(out.starts_with("web started (pid "), "{out}");
    home.wait_state("ops", "web", "healthy", Duration::from_secs(20));
    assert!(http(port, "GET", "/health", "").starts_with("HTTP/1.1 200"));

    // stats: memory and traffic per service.
    let stats = home.json(&["stats", "-p", "ops"]);
    let rows = stats.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{stats}");
    for r in rows {
        assert!(r["rss_bytes"].as_u64().unwrap() > 1 << 20, "{r}");
        assert!(r["rx_frames"].as_u64().unwrap() > 0, "{r}");
        // No frame refused by policy; frames for web while it was stopped found no port.
        for (reason, _) in r["drops_by_reason"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d[0].as_str().unwrap(), d[1].as_u64().unwrap()))
        {
            assert_eq!(reason, "tx_full", "{r}");
        }
    }
    let table = home.ok(&["stats"]);
    assert!(table.starts_with("APPLICATION  SERVICE  CPU"), "{table}");

    // inspect: what web may reach and who may reach it.
    let web = home.json(&["inspect", "web", "-p", "ops"]);
    assert_eq!(
        web["capabilities"],
        serde_json::json!(["db.kv -> 10.77.0.3:6379/tcp"])
    );
    assert_eq!(web["plan"]["ipv4"], "10.77.0.2");
    let db = home.ok(&["inspect", "db", "-p", "ops"]);
    assert!(db.contains("reachable from  web -> kv"), "{db}");
    assert!(
        db.contains("volumes         data as storage (64 MiB)"),
        "{db}"
    );
    let out = home.run(&["inspect", "nope", "-p", "ops"]);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "sturdy: ops has no service \"nope\" (it has: web, db)\n"
    );

    // logs --since and --tail.
    let all = home.ok(&["logs", "-p", "ops"]);
    assert!(all.lines().count() >= 6, "{all}");
    let last = home.ok(&["logs", "db", "--tail", "1", "-p", "ops"]);
    assert_eq!(last.lines().count(), 1, "{last}");
    let future = home.ok(&["logs", "--since", "2999-01-01T00:00:00Z", "-p", "ops"]);
    assert_eq!(future, "");
    let recent = home.ok(&["logs", "--since", "10m", "-p", "ops", "-t"]);
    assert_eq!(recent.lines().count(), all.lines().count(), "{recent}");
    // A follower does not hold the daemon up: `daemon stop` ends it and returns.
    let mut follower = Follow::spawn(home.cmd(&["logs", "-f", "-p", "ops"]));
    follower.wait_line("web | ");
    let started = Instant::now();
    home.ok(&["daemon", "stop"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(follower.child.wait().unwrap().success());
    // The next command brings the application back (its daemon was stopped, not it downed).
    home.wait_state("ops", "web", "healthy", Duration::from_secs(20));
    home.ok(&["down", "-p", "ops", "--volumes"]);
}

#[test]
fn an_app_a_new_daemon_cannot_start_shows_as_failed_until_down() {
    preconditions();
    let home = Home::new("unrestored");
    let port = free_port();
    let yaml = format!(
        "name: echo\n\
         services:\n  \
           echo:\n    \
             image: {}\n    \
             provides: {{ echo: 7/tcp }}\n    \
             ports: [\"127.0.0.1:{port}:7\"]\n",
        guests::path("tcpecho").display(),
    );
    let file = home.write_app("app", &yaml);
    home.ok(&["up", "-d", &file]);
    let daemon = home.daemon_pid().unwrap();
    kill_9(daemon);
    // Someone else takes the published port meanwhile.
    wait_for(Duration::from_secs(5), "the port to be free", || {
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
    });
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();

    let app = home.app("echo");
    assert_eq!(app["status"], "failed", "{app}");
    let error = app["error"].as_str().unwrap();
    assert!(
        error.starts_with("cannot start it again: ") && error.contains("Address already in use"),
        "{error}"
    );
    let ps = home.ok(&["ps"]);
    assert!(
        ps.contains("echo: did not start: cannot start it again"),
        "{ps}"
    );
    assert_eq!(
        home.ok(&["down", "-p", "echo"]),
        "echo forgotten (it was not running)\n"
    );
    assert_eq!(home.json(&["ps"]), serde_json::json!([]));
    drop(squatter);
}

#[test]
fn capture_of_a_service_and_of_a_capability_is_read_by_tshark() {
    preconditions();
    let home = Home::new("capture");
    let port = free_port();
    let file = guestbook_in(&home.dir.join("app"), "cap", port);
    home.ok(&["up", "-d", "--wait", file.to_str().unwrap()]);
    let (web_pcap, db_pcap) = (home.dir.join("web.pcap"), home.dir.join("db.pcap"));
    let mut web = home
        .cmd(&[
            "capture",
            "web",
            "-w",
            web_pcap.to_str().unwrap(),
            "--duration",
            "3s",
        ])
        .spawn()
        .unwrap();
    let mut db = home
        .cmd(&[
            "capture",
            "web",
            "db.kv",
            "-w",
            db_pcap.to_str().unwrap(),
            "-c",
            "4",
        ])
        .spawn()
        .unwrap();
    // Both captures run once their pcap headers are written.
    wait_for(Duration::from_secs(10), "the captures to start", || {
        [&web_pcap, &db_pcap]
            .iter()
            .all(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= 24))
    });
    let posted = http(port, "POST", "/entries", "name=ada&message=captured");
    assert!(posted.starts_with("HTTP/1.1 303"), "{posted}");
    assert!(db.wait().unwrap().success());
    assert!(web.wait().unwrap().success());

    let tshark = |file: &std::path::Path, filter: &str, field: &str| {
        let out = std::process::Command::new("tshark")
            .args([
                "-r",
                file.to_str().unwrap(),
                "-Y",
                filter,
                "-T",
                "fields",
                "-e",
                field,
            ])
            .output()
            .expect("tshark (scripts/install-deps.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // web's port: the gateway's connection with the request, and web's own to db.
    let methods = tshark(&web_pcap, "http.request", "http.request.method");
    assert!(methods.lines().any(|m| m == "POST"), "{methods}");
    assert!(!tshark(&web_pcap, "tcp.dstport == 6379", "frame.number").is_empty());
    // The capability: db.kv only, exactly the 4 frames asked for.
    assert_eq!(tshark(&db_pcap, "", "frame.number").lines().count(), 4);
    assert!(tshark(&db_pcap, "tcp.port != 6379", "frame.number").is_empty());

    let out = home.run(&["capture", "web", "nope", "-w", "/dev/null", "-p", "cap"]);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "sturdy: web holds no capability \"nope\" (it holds: db.kv)\n"
    );
    home.ok(&["down", "-p", "cap", "--volumes"]);
}

/// A dependency stopped on request does not hold its dependents when a new daemon brings the
/// application back: web ran before the daemon died and runs again, db stays stopped until
/// started, and then web is healthy.
#[test]
fn a_stopped_dependency_does_not_hold_its_dependents_after_a_daemon_crash() {
    preconditions();
    let home = Home::new("stopdep");
    let port = free_port();
    let file = guestbook_in(&home.dir.join("app"), "dep", port);
    home.ok(&["up", "-d", "--wait", file.to_str().unwrap()]);
    assert_eq!(home.ok(&["stop", "db", "-p", "dep"]), "db stopped\n");
    kill_9(home.daemon_pid().unwrap());
    home.ok(&["ps"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while home.service("dep", "web")["pid"].is_null() {
        assert!(
            Instant::now() < deadline,
            "web not started again: {}",
            home.ok(&["ps", "-p", "dep"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let db = home.service("dep", "db");
    assert_eq!(
        (db["state"].as_str(), db["instance"].as_u64()),
        (Some("stopped"), Some(0))
    );
    home.ok(&["start", "db", "-p", "dep"]);
    home.wait_state("dep", "web", "healthy", Duration::from_secs(30));
    assert!(http(port, "GET", "/health", "").starts_with("HTTP/1.1 200"));
}

/// A field of /proc/`pid`/status (a number, without its unit).
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A guest flooding its console (64 KiB writes, no newline, forever) beside nine quiet ones:
/// the daemon's memory stays bounded (its peak RSS is checked all along), the consoles of all
/// ten cost it one thread, and `logs` shows the flood cut into 4 KiB lines with what the
/// monitor dropped.
#[test]
fn a_console_flood_costs_the_daemon_bounded_memory_and_no_thread_per_instance() {
    preconditions();
    let home = Home::new("flood");
    let mut yaml = format!(
        "name: flooded\nservices:\n  flood:\n    image: {}\n    mem: 16M\n",
        guests::path("flood").display()
    );
    for i in 0..9 {
        yaml += &format!(
            "  quiet{i}:\n    image: {}\n    mem: 16M\n",
            guests::path("idle").display()
        );
    }
    let file = home.write_app("app", &yaml);
    // First an application of one instance: the daemon's threads with it.
    let one = format!(
        "name: first\nservices:\n  one:\n    image: {}\n",
        guests::path("idle").display()
    );
    home.ok(&["up", "-d", &home.write_app("first", &one)]);
    let daemon = home.daemon_pid().expect("up started the daemon");
    wait_for(Duration::from_secs(20), "one running monitor", || {
        monitors_of(daemon).len() == 1
    });
    let threads = proc_status(daemon, "Threads");
    home.ok(&["up", "-d", &file]);
    wait_for(Duration::from_secs(20), "eleven running monitors", || {
        monitors_of(daemon).len() == 11
    });
    let added = proc_status(daemon, "Threads") - threads;
    // The application's own threads (supervision, fabric, ...), as many as the first one's,
    // not two console readers per instance (20 more).
    assert!(added < 10, "{added} threads more for 10 instances");

    // Five seconds of flood (the old daemon grew by gigabytes in that time), then until the
    // console shows three notices of the monitor.
    let flooding = Instant::now();
    let deadline = flooding + Duration::from_secs(60);
    let logs = loop {
        let hwm = proc_status(daemon, "VmHWM");
        assert!(hwm <= 64 << 10, "the daemon's peak RSS is {hwm} KiB");
        let logs = home.ok(&["logs", "flood", "-p", "flooded"]);
        let notices = logs.matches("sturdy-hvt: console: ... ").count();
        if flooding.elapsed() >= Duration::from_secs(5) && notices >= 3 {
            eprintln!("{added} threads for 10 instances; peak RSS {hwm} KiB");
            break logs;
        }
        assert!(Instant::now() < deadline, "no drops reported:\n{logs}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // The flood's lines (not the banner, not the notices), cut wherever 4096 bytes fell.
    let flood: Vec<&str> = logs
        .lines()
        .filter_map(|l| l.split_once(" | ").filter(|(s, _)| s.trim() == "flood"))
        .map(|(_, text)| text)
        .filter(|t| t.bytes().all(|b| b.is_ascii_lowercase()))
        .collect();
    assert!(flood.len() > 10, "{logs}");
    assert!(
        flood.iter().all(|l| l.len() == 4096),
        "lines of {:?} bytes",
        flood.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    assert!(logs.contains(" dropped ("), "{logs}");
    home.ok(&["down", "-p", "flooded"]);
    home.ok(&["down", "-p", "first"]);
}
