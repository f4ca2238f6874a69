//! The supervisor with real unikernels: the guestbook of examples/guestbook, a killed
//! monitor restarted, a failing service put in crash loop, and nothing left after stop.
//!
//! Needs /dev/kvm and the monitor `sturdy-hvt` built next to this test's directory
//! (`cargo build -p sturdy-hvt`); the guest images are built by the `guests` dev-dependency.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sturdy_daemon::{App, Event, ServiceStatus, State};
use testkit::{http, hvt};

/// A fresh state directory for one test.
fn state_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sturdy-daemon-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The guestbook of examples/guestbook, its 8080 on a port the system picks.
fn guestbook() -> sturdy_compose::Plan {
    // The images the file names are the ones the `guests` dev-dependency builds.
    assert!(guests::path("web").is_file() && guests::path("kv").is_file());
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/guestbook/sturdy.yaml");
    let mut plan = sturdy_compose::load(&file).unwrap();
    assert_eq!(sturdy_daemon::override_host_port(&mut plan, 8080, 0), 1);
    plan
}

/// The plan of `yaml`, written as `dir`/sturdy.yaml.
fn load(dir: &Path, yaml: &str) -> sturdy_compose::Plan {
    let file = dir.join("sturdy.yaml");
    std::fs::write(&file, yaml).unwrap();
    sturdy_compose::load(&file).unwrap()
}

/// Application `name`: `echo` (tcpecho) with `healthcheck`, and `front` (tcpecho too) that
/// depends on echo being healthy.
fn front_after_echo(name: &str, healthcheck: &str) -> String {
    format!(
        "name: {name}\n\
         services:\n  \
           echo:\n    \
             image: {echo}\n    \
             provides: {{ echo: 7/tcp }}\n    \
             healthcheck: {healthcheck}\n  \
           front:\n    \
             image: {echo}\n    \
             provides: {{ echo: 7/tcp }}\n    \
             depends_on: {{ echo: {{ condition: service_healthy }} }}\n",
        echo = guests::path("tcpecho").display(),
    )
}

/// Application `name` of one service, `echo` (tcpecho), with `more` (indented lines of its
/// service definition) added.
fn echo_alone(name: &str, more: &str) -> String {
    format!(
        "name: {name}\n\
         services:\n  \
           echo:\n    \
             image: {echo}\n    \
             provides: {{ echo: 7/tcp }}\n{more}",
        echo = guests::path("tcpecho").display(),
    )
}

fn status(app: &App, name: &str) -> ServiceStatus {
    app.status().into_iter().find(|s| s.name == name).unwrap()
}

/// Polls until `f` holds (panicking with `what` and the status after `timeout`).
fn wait_until(app: &App, timeout: Duration, what: &str, f: impl Fn(&App) -> bool) {
    let deadline = Instant::now() + timeout;
    while !f(app) {
        assert!(
            Instant::now() < deadline,
            "{what} not within {timeout:?}: {:#?}",
            app.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn web_addr(app: &App) -> SocketAddr {
    let addr = app
        .published()
        .iter()
        .find(|(e, _)| e == "web.http")
        .expect("web.http published")
        .1;
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

/// Stops `app` and checks that none of `pids` is left (not even a zombie).
fn stop_leaves_nothing(app: App, pids: &[u32]) {
    assert!(!pids.is_empty());
    for pid in pids {
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "{pid} runs");
    }
    app.stop();
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "monitor {pid} left after stop"
        );
    }
    assert!(app.status().iter().all(|s| s.pid.is_none()));
}

fn pids(app: &App) -> Vec<u32> {
    app.status().iter().filter_map(|s| s.pid).collect()
}

#[test]
fn guestbook_starts_db_healthy_before_web_and_serves() {
    let dir = state_dir("guestbook");
    let (tx, events) = std::sync::mpsc::channel();
    let options = sturdy_daemon::Options {
        events: Some(tx),
        ..Default::default()
    };
    let app = App::start_with(&guestbook(), &hvt(), &dir, options).unwrap();
    let db = status(&app, "db");
    let web = status(&app, "web");
    let db_healthy = db.healthy_since.expect("db healthy before start returns");
    let web_started = web.first_started.expect("web started");
    assert!(
        db_healthy <= web_started,
        "web started {:?} before db was healthy",
        db_healthy - web_started
    );
    assert!(
        std::fs::metadata(dir.join("volumes/data.img"))
            .unwrap()
            .len()
            == 64 << 20
    );

    wait_until(&app, Duration::from_secs(20), "web healthy", |a| {
        status(a, "web").state == State::Healthy
    });
    assert!(app.status().iter().all(|s| s.state == State::Healthy));
    // The progress events, in order: db started and healthy before web started.
    let seen: Vec<Event> = events.try_iter().collect();
    let started = |service: &str, pid: u32| Event::Started {
        service: service.into(),
        pid,
        instance: 1,
        start_ticks: sturdy_daemon::stats::start_ticks(pid),
    };
    let healthy = |service: &str| Event::Healthy {
        service: service.into(),
    };
    assert_eq!(
        seen,
        [
            started("db", db.pid.unwrap()),
            healthy("db"),
            started("web", web.pid.unwrap()),
            healthy("web")
        ],
    );
    let (lines, count) = app.logs_after("db", 0).unwrap();
    assert!(lines.iter().any(|l| l.contains("serving on port 6379")));
    let (more, _) = app.logs_after("db", count).unwrap();
    assert!(more.iter().all(|l| !lines.contains(l)), "{more:?}");
    let page = http(web_addr(&app), "GET", "/", "");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(app
        .logs("db")
        .unwrap()
        .iter()
        .any(|l| l.contains("serving on port 6379")));

    let running = pids(&app);
    assert_eq!(running.len(), 2);
    stop_leaves_nothing(app, &running);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_db_is_restarted_and_keeps_its_entries() {
    let dir = state_dir("restart");
    let app = App::start(&guestbook(), &hvt(), &dir).unwrap();
    wait_until(&app, Duration::from_secs(20), "web healthy", |a| {
        status(a, "web").state == State::Healthy
    });
    let web = web_addr(&app);
    let posted = http(
        web,
        "POST",
        "/entries",
        "name=ada&message=kept-across-restarts",
    );
    assert!(posted.starts_with("HTTP/1.1 303"), "{posted}");
    assert!(http(web, "GET", "/entries", "").contains("kept-across-restarts"));

    let old = status(&app, "db").pid.unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &old.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_until(
        &app,
        Duration::from_secs(20),
        "db restarted and healthy",
        |a| {
            let db = status(a, "db");
            db.restarts == 1 && db.pid.is_some_and(|p| p != old) && db.state == State::Healthy
        },
    );
    let db = status(&app, "db");
    assert_eq!(db.last_exit, Some(128 + 9));
    let logs = app.logs("db").unwrap();
    assert!(
        logs.iter()
            .any(|l| l.contains("exited with status 137; restarting in 100ms")),
        "{logs:#?}"
    );
    assert_eq!(
        logs.iter()
            .filter(|l| l.contains("serving on port 6379"))
            .count(),
        2,
        "the console keeps both instances: {logs:#?}"
    );

    // The entry is on db's volume: the new instance serves it (web reconnects).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let entries = http(web, "GET", "/entries", "");
        if entries.contains("kept-across-restarts") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "entry lost after restart: {entries}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(&app, "web").restarts, 0);
    let running = pids(&app);
    stop_leaves_nothing(app, &running);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failing_service_goes_to_crash_loop() {
    let dir = state_dir("crashloop");
    // hostile with no attack prints its usage and exits 1.
    let yaml = format!(
        "name: failing\n\
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
    let plan = load(&dir, &yaml);
    let started = Instant::now();
    let app = App::start(&plan, &hvt(), &dir).unwrap();
    wait_until(&app, Duration::from_secs(30), "bad in crash loop", |a| {
        status(a, "bad").state == State::CrashLoop
    });
    let bad = status(&app, "bad");
    assert!(bad.restarts >= 5, "{bad:?}");
    assert_eq!(bad.last_exit, Some(1));
    assert_eq!(bad.pid, None);
    // Backoff: 100 + 200 + 400 + 800 + 1600 ms at least between the six runs.
    assert!(started.elapsed() >= Duration::from_millis(3100));
    let logs = app.logs("bad").unwrap();
    assert!(
        logs.iter().any(|l| l.contains("usage: hostile")),
        "{logs:#?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("crash loop (5 restarts in a row): next try in 3.2s")),
        "{logs:#?}"
    );
    assert!(
        logs.iter()
            .filter(|l| l.contains("started instance"))
            .count()
            >= 6
    );
    // Not given up on: tried again after the (longer) delay, as Kubernetes' CrashLoopBackOff.
    assert!(bad.restart_at.is_some(), "{bad:?}");
    wait_until(&app, Duration::from_secs(60), "bad tried again", |a| {
        status(a, "bad").restarts >= 6
    });
    wait_until(
        &app,
        Duration::from_secs(30),
        "bad crash-looping again",
        |a| status(a, "bad").state == State::CrashLoop,
    );
    let logs = app.logs("bad").unwrap();
    assert!(
        logs.iter()
            .any(|l| l.contains("(6 restarts in a row): next try in 6.4s")),
        "{logs:#?}"
    );
    let echo = status(&app, "echo");
    assert_eq!(
        (echo.state, echo.restarts),
        (State::Running, 0),
        "{:#?}",
        app.logs("echo")
    );
    let running = pids(&app);
    assert_eq!(running.len(), 1);
    stop_leaves_nothing(app, &running);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unhealthy_dependency_fails_start_with_a_clear_error() {
    let dir = state_dir("deptimeout");
    // An echo server answers a GET with the request itself: never a 2xx status line.
    let yaml = front_after_echo(
        "waits",
        "{ http: /health, port: 7, interval: 100ms, timeout: 200ms, retries: 1 }",
    );
    let plan = load(&dir, &yaml);
    let options = sturdy_daemon::Options {
        dependency_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let started = Instant::now();
    let err = match App::start_with(&plan, &hvt(), &dir, options) {
        Ok(app) => panic!("started: {:#?}", app.status()),
        Err(e) => e.to_string(),
    };
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        err.starts_with("service front waits for echo to be healthy: not healthy after 1s"),
        "{err}"
    );
    assert!(err.contains("last probe: not an HTTP answer"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A service stopped while it waits for its dependencies stays stopped when they are ready,
/// until it is started on request.
#[test]
fn a_service_stopped_before_its_turn_stays_stopped() {
    let dir = state_dir("stopbeforeturn");
    let yaml = front_after_echo(
        "turn",
        "{ tcp: 7, interval: 100ms, timeout: 200ms, retries: 1 }",
    );
    let plan = load(&dir, &yaml);
    let app = App::create(&plan, &hvt(), &dir, Default::default()).unwrap();
    // echo needs a boot and a probe to be healthy; front waits meanwhile.
    app.stop_service("front").unwrap();
    let front = status(&app, "front");
    assert_eq!(
        (front.state, front.pid),
        (State::Stopped, None),
        "{front:#?}"
    );
    wait_until(&app, Duration::from_secs(20), "echo healthy", |a| {
        status(a, "echo").state == State::Healthy
    });
    std::thread::sleep(Duration::from_millis(500));
    let front = status(&app, "front");
    assert_eq!(
        (front.state, front.pid),
        (State::Stopped, None),
        "front started after its stop: {:#?}",
        app.logs("front")
    );
    app.start_service("front").unwrap();
    wait_until(&app, Duration::from_secs(20), "front running", |a| {
        status(a, "front").pid.is_some()
    });
    let running = pids(&app);
    assert_eq!(running.len(), 2);
    stop_leaves_nothing(app, &running);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Requests for one service made at the same time are each carried out and answered.
#[test]
fn concurrent_requests_are_each_answered() {
    let dir = state_dir("concurrent");
    let plan = load(&dir, &echo_alone("many", ""));
    let app = std::sync::Arc::new(App::start(&plan, &hvt(), &dir).unwrap());
    let first = status(&app, "echo").instance;
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let app = app.clone();
            std::thread::spawn(move || app.restart_service("echo"))
        })
        .collect();
    for c in callers {
        c.join().unwrap().expect("each restart answered ok");
    }
    let echo = status(&app, "echo");
    assert_eq!(echo.instance, first + 4, "{:#?}", app.logs("echo"));
    let restarted = app
        .logs("echo")
        .unwrap()
        .iter()
        .filter(|l| l.contains("restarted on request"))
        .count();
    assert_eq!(restarted, 4);
    let running = pids(&app);
    let app = std::sync::Arc::try_unwrap(app).ok().unwrap();
    stop_leaves_nothing(app, &running);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A restarted service is probed from its new instance's start (every 10 ms, doubling), not
/// after the interval its old instance's last probe began: here 30 s.
#[test]
fn a_restarted_service_is_probed_at_once() {
    let dir = state_dir("reprobe");
    let healthcheck = "    healthcheck: { tcp: 7, interval: 30s, timeout: 1s, retries: 3 }\n";
    let plan = load(&dir, &echo_alone("reprobe", healthcheck));
    let app = App::start(&plan, &hvt(), &dir).unwrap();
    wait_until(&app, Duration::from_secs(20), "echo healthy", |a| {
        status(a, "echo").state == State::Healthy
    });
    let first = status(&app, "echo").instance;
    app.restart_service("echo").unwrap();
    wait_until(
        &app,
        Duration::from_secs(10),
        "the new instance healthy (its interval is 30 s)",
        |a| {
            let s = status(a, "echo");
            s.instance == first + 1 && s.state == State::Healthy
        },
    );
    let running = pids(&app);
    stop_leaves_nothing(app, &running);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Application `name` of one service, `flood`, running the flood guest with `args`.
fn flood_alone(name: &str, args: &str) -> String {
    format!(
        "name: {name}\n\
         services:\n  \
           flood:\n    \
             image: {}\n    \
             command: [{args}]\n",
        guests::path("flood").display(),
    )
}

/// Waits until `app`'s service `flood` exited, and returns its log file's lines (the rotated
/// one first) as (stream, text), without sturdy-rt's banner.
fn flood_log(app: &App, dir: &Path) -> Vec<(String, String)> {
    wait_until(app, Duration::from_secs(60), "flood exited", |a| {
        matches!(status(a, "flood").state, State::Exited(_))
    });
    assert_eq!(status(app, "flood").state, State::Exited(0));
    let mut lines = Vec::new();
    for file in ["logs/flood.log.1", "logs/flood.log"] {
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            continue;
        };
        for entry in text.lines() {
            let mut parts = entry.splitn(3, ' ');
            let (_time, stream) = (parts.next().unwrap(), parts.next().unwrap());
            let text = parts.next().unwrap_or("");
            if !(stream == "stdout" && text.starts_with("sturdy-rt ")) {
                lines.push((stream.to_string(), text.to_string()));
            }
        }
    }
    lines
}

/// A guest writing 64 MiB without a newline: the supervisor holds at most one 4 KiB line of
/// it at a time, so its console shows lines of 4096 bytes; the monitor let through only its
/// burst and rate, and the console says how much it dropped. Every byte is accounted for.
#[test]
fn a_console_flood_is_cut_into_4_kib_lines_and_its_drops_are_counted() {
    let dir = state_dir("flood");
    let limit = 64u64 << 20;
    let plan = load(&dir, &flood_alone("flood", &format!("\"--limit={limit}\"")));
    // A file large enough for everything the monitor lets through (no rotation loses any).
    let options = sturdy_daemon::Options {
        console_capacity: 4 << 20,
        ..Default::default()
    };
    let app = App::start_with(&plan, &hvt(), &dir, options).unwrap();
    let log = flood_log(&app, &dir);
    let out: Vec<&str> = log
        .iter()
        .filter(|(s, _)| s == "stdout")
        .map(|(_, t)| t.as_str())
        .collect();
    let (last, full) = out.split_last().expect("some output");
    assert!(
        full.iter().all(|l| l.len() == 4096) && last.len() <= 4096,
        "lines of {:?} bytes",
        out.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    assert!(
        out.len() >= 256,
        "the 1 MiB burst passes: {} lines",
        out.len()
    );
    let notices: Vec<u64> = log
        .iter()
        .filter(|(s, t)| s == "stderr" && t.starts_with("sturdy-hvt: console: ... "))
        .map(|(_, t)| {
            let bytes = t.split_once(" dropped (").unwrap().1;
            bytes.split_once(' ').unwrap().0.parse().unwrap()
        })
        .collect();
    assert!(!notices.is_empty(), "no drop reported: {:?}", &log[..5]);
    let passed: usize = out.iter().map(|l| l.len()).sum();
    assert_eq!(passed as u64 + notices.iter().sum::<u64>(), limit);
    assert!(app
        .logs("flood")
        .unwrap()
        .iter()
        .all(|l| l.len() <= 4096 + 64));
    app.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lines of 10,000 bytes are cut into 4096 + 4096 + 1808, nothing lost (under the monitor's
/// burst: nothing dropped).
#[test]
fn long_console_lines_are_cut_at_4_kib() {
    let dir = state_dir("longlines");
    let plan = load(
        &dir,
        &flood_alone("long", "\"--line=10000\", \"--limit=500050\""),
    );
    let app = App::start(&plan, &hvt(), &dir).unwrap();
    let log = flood_log(&app, &dir);
    let lengths: Vec<usize> = log
        .iter()
        .filter(|(s, _)| s == "stdout")
        .map(|(_, t)| t.len())
        .collect();
    assert_eq!(lengths, [4096, 4096, 1808].repeat(50));
    assert!(log.iter().all(|(s, _)| s != "stderr"), "{log:?}");
    app.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
