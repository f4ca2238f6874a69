//! Live policy change with real unikernels (issue 4, "Must show"): the guestbook, `kv` as db
//! and `web` published through the gateway, loses web's capability to db while running and
//! gets it back, without restarting either guest. Needs /dev/kvm and the `sturdy-hvt` binary
//! built (see tests/common/mod.rs).

mod common;

use std::time::{Duration, Instant};

use common::{curl, guestbook, Guest, Guestbook};
use sturdy_fabric::{Capability, DropReason};

/// Web's answers while db is unreachable must come within this: web gives up on the database
/// after its `--db-timeout` (2 s by default), it does not hang.
const QUICK: Duration = Duration::from_secs(5);

/// A GET of `url` with curl: (status, body, how long it took).
fn get(url: &str) -> (u16, String, Duration) {
    let start = Instant::now();
    let out = curl(&["-w", "\n%{http_code}", url]);
    let took = start.elapsed();
    let (body, status) = out.rsplit_once('\n').expect("curl's status line");
    (
        status
            .parse()
            .unwrap_or_else(|_| panic!("status {status:?}")),
        body.to_string(),
        took,
    )
}

/// GETs `url` until it answers `status` (within `within`); the last answer.
fn until_status(url: &str, status: u16, within: Duration) -> (u16, String, Duration) {
    let deadline = Instant::now() + within;
    loop {
        let answer = get(url);
        if answer.0 == status {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer {status} within {within:?}; last: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the monitor still runs (not exited, not a zombie): the same process as at boot.
fn running(guest: &mut Guest, pid: u32) -> bool {
    guest.0.id() == pid
        && guest.0.try_wait().unwrap().is_none()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.contains("sturdy-hvt"))
}

#[test]
fn removing_webs_capability_to_db_cuts_it_and_adding_it_back_restores_service() {
    let Guestbook {
        plan,
        handle,
        gw: _gw,
        mut kv,
        mut web,
        base,
        scratch: _scratch,
    } = guestbook("live");
    let (kv_pid, web_pid) = (kv.0.id(), web.0.id());

    // The guestbook works: an entry posted, listed, healthy.
    curl(&[
        "-o",
        "/dev/null",
        "--data-urlencode",
        "name=ada",
        "--data-urlencode",
        "message=before the cut",
        &format!("{base}/entries"),
    ]);
    let (status, body, _) = get(&format!("{base}/health"));
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, page, _) = get(&format!("{base}/"));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("before the cut"), "{page}");
    let web_db = Capability::new("web", "db", "kv");
    let stats = handle.stats().unwrap();
    let web_port = plan.service("web").unwrap().port;
    let web_denied = |stats: &sturdy_fabric::Stats| {
        stats
            .ports
            .iter()
            .find(|p| p.port == web_port)
            .unwrap()
            .stats
            .drops
            .get(DropReason::NoCapability)
    };
    assert_eq!(web_denied(&stats), 0, "{stats:?}");

    // Removed while running: web's pooled connection to db (established, idle) is cut, a
    // reset sent to each end.
    let mut without = plan.clone();
    assert_eq!(without.revoke("web", "db.kv"), 1);
    let report = handle.apply(without).unwrap();
    assert_eq!(report.removed, vec![web_db.clone()], "{report:?}");
    assert!(report.added.is_empty(), "{report:?}");
    assert!(report.cut >= 1, "web's pooled db connection: {report:?}");
    assert_eq!(report.resets, 2 * report.cut, "both ends reset: {report:?}");

    // Web reports db unreachable within a few seconds, and every page that needs db fails
    // with a 5xx instead of hanging: its new connections to db are dropped by the fabric.
    let cut_at = Instant::now();
    let (_, body, took) = until_status(&format!("{base}/health"), 503, QUICK);
    assert_eq!(body.trim(), "db unreachable");
    assert!(took < QUICK, "/health took {took:?}");
    let unhealthy_after = cut_at.elapsed();
    let (status, body, took) = get(&format!("{base}/"));
    assert!(
        (500..600).contains(&status),
        "GET / answered {status}: {body}"
    );
    assert!(took < QUICK, "GET / took {took:?}");
    eprintln!("cut: {report:?}; /health 503 after {unhealthy_after:?}; GET / {status} in {took:?}");
    let stats = handle.stats().unwrap();
    assert!(
        web_denied(&stats) > 0,
        "web's new connections to db were denied: {stats:?}"
    );
    assert!(
        stats.capabilities.iter().all(|c| c.capability != web_db),
        "{stats:?}"
    );

    // Added back: service restored, the entry still there, no guest restarted.
    let report = handle.apply(plan.clone()).unwrap();
    assert_eq!(report.added, vec![web_db.clone()], "{report:?}");
    assert_eq!(report.cut, 0, "{report:?}");
    let back_at = Instant::now();
    let (_, body, _) = until_status(&format!("{base}/health"), 200, QUICK);
    assert_eq!(body.trim(), "ok");
    eprintln!("restored: /health 200 after {:?}", back_at.elapsed());
    let (status, page, _) = get(&format!("{base}/"));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("before the cut"), "{page}");
    let (status, json, _) = get(&format!("{base}/entries"));
    assert_eq!(status, 200, "{json}");
    assert!(
        json.contains("\"name\":\"ada\",\"message\":\"before the cut\""),
        "{json}"
    );
    assert!(running(&mut kv, kv_pid), "kv (pid {kv_pid}) is not running");
    assert!(
        running(&mut web, web_pid),
        "web (pid {web_pid}) is not running"
    );

    let fabric = handle.stop().unwrap();
    let cap = fabric.capability_stats(&web_db).unwrap();
    assert!(
        cap.opened >= 1,
        "a new connection since it came back: {cap:?}"
    );
    drop((web, kv));
}
