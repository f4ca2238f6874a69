//! `sturdy up`: hands an application to the daemon (starting the daemon if none runs), shows
//! its services starting and becoming healthy, then either returns (`-d`) or follows every
//! service's console, prefixed with its name, until Ctrl-C (SIGINT) or SIGTERM stops the
//! application.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use sturdy_daemon::api::{AppInfo, DownInfo, LogLine, ServiceInfo, UpRequest};
use sturdy_daemon::client::{encode, Client, ClientError};

use super::{daemon, Prefixes};
use crate::error::CliError;

/// Examples shown by `sturdy up --help`.
pub const EXAMPLES: &str = "\
Examples:
  sudo sturdy up examples/guestbook         start the guestbook, follow its logs (Ctrl-C stops)
  sudo sturdy up -d examples/guestbook      start it in the background and return
  sturdy up -d --wait                       ... once every health check passes
  curl localhost:8080                       the guestbook answers
  sturdy up -p staging examples/guestbook   a second copy under another name

Running `up` again with a changed file recreates the application (volumes are kept); with an
unchanged one it only shows it. Volumes live in STATE/apps/<name>/volumes, STATE being
--state-dir, else $STURDY_HOME, else /var/lib/sturdy. Needs /dev/kvm (run as root).";

/// How often progress is polled while starting.
const PROGRESS_POLL: Duration = Duration::from_millis(10);
/// How often an attached `up` looks at service states and signals between console lines.
const ATTACHED_TICK: Duration = Duration::from_millis(200);

/// Flags of `sturdy up`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub app: super::AppFile,

    /// Detached: return once every service is started, leaving the application running
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// Also wait until every service with a health check is healthy (fails if one crashes)
    #[arg(long)]
    pub wait: bool,

    /// How long --wait waits
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub wait_timeout: Duration,

    /// Run it under this name instead of the file's `name`
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub name: Option<String>,

    /// The monitor, if the daemon has to be started [default: sturdy-hvt next to sturdy, else
    /// on PATH]
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub hvt: Option<PathBuf>,

    /// Never colour the output (it is coloured only on a terminal anyway)
    #[arg(long)]
    pub no_color: bool,

    /// With -d: print the application (as `sturdy ps --json` does) on stdout, progress on
    /// stderr
    #[arg(long, requires = "detach")]
    pub json: bool,
}

/// A duration flag: `60s`, `500ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    sturdy_compose::units::duration(s)
}

/// Runs `sturdy up`.
pub fn run(args: &Args, state: &Path) -> Result<(), CliError> {
    let mut plan = super::load_absolute(&args.app.path())?;
    if let Some(name) = &args.name {
        plan.name = name.clone();
    }
    daemon::check_kvm()?;
    let client = daemon::connect(state, args.hvt.as_deref())?;
    let name = plan.name.clone();

    // Registered before starting, so a signal during the start stops the application
    // instead of leaving it half-started.
    let stop = Arc::new(AtomicBool::new(false));
    if !args.detach {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, stop.clone()).context("cannot handle signals")?;
        }
    }
    let color = super::use_color(args.no_color);
    let prefixes = Prefixes::new(plan.services.iter().map(|s| s.name.as_str()), color);
    let mut progress = Progress::new(prefixes, args.json);

    let info: AppInfo = client
        .post("/v1/apps", &UpRequest { plan })
        .map_err(|e| anyhow!(e))?;
    if info.up_to_date {
        // What happened before is no news: the states seen now are where changes start.
        progress.change_lines(&info);
        progress.line(&format!(
            "{name} is up to date (up since {}, from the same file)",
            info.created_at
        ))?;
    }
    let wait_healthy = args.wait;
    let info = match follow_start(&client, info, &mut progress, wait_healthy, args, &stop) {
        Ok(info) => info,
        Err(e) => {
            if stop.load(Ordering::SeqCst) {
                return down(&client, &name);
            }
            return Err(e);
        }
    };
    if stop.load(Ordering::SeqCst) {
        return down(&client, &name);
    }
    for p in &info.published {
        let service = p.endpoint.split('.').next().unwrap_or(&p.endpoint);
        progress.line(&format!(
            "{} published on {}",
            progress.prefixes.get(service),
            p.addr
        ))?;
    }
    if args.detach {
        if args.json {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&info).expect("json")
            )?;
        } else {
            progress.line(&format!(
                "{name} is up: `sturdy ps` shows it, `sturdy logs -f` follows it, `sturdy down` \
                 stops it"
            ))?;
        }
        return Ok(());
    }
    attached(&client, &info, &mut progress, &stop)
}

/// Polls the application until every service is started (and healthy with `--wait`),
/// printing each change; fails if the start fails or, with `--wait`, a service dies or the
/// wait times out.
fn follow_start(
    client: &Client,
    mut info: AppInfo,
    progress: &mut Progress,
    wait_healthy: bool,
    args: &Args,
    stop: &AtomicBool,
) -> Result<AppInfo, CliError> {
    let deadline = Instant::now() + args.wait_timeout;
    let path = format!("/v1/apps/{}", encode(&info.name));
    // Restarts so far: one more while waiting means a service exited.
    let restarts: HashMap<String, u32> = info
        .services
        .iter()
        .map(|s| (s.name.clone(), s.restarts))
        .collect();
    loop {
        progress.changes(&info)?;
        if let Some(error) = &info.error {
            return Err(anyhow!(
                "{} did not start: {error}\n(its services stay as they are: `sturdy logs` \
                 shows why, `sturdy down` stops them)",
                info.name
            )
            .into());
        }
        if info.status == "running" {
            if !wait_healthy {
                return Ok(info);
            }
            let restarted =
                |s: &ServiceInfo| s.restarts > restarts.get(&s.name).copied().unwrap_or(0);
            if let Some(dead) = info.services.iter().find(|s| is_dead(s) || restarted(s)) {
                let exit = dead
                    .last_exit
                    .map(|c| format!(" (it exited with status {c}, {} restarts)", dead.restarts))
                    .unwrap_or_default();
                return Err(anyhow!(
                    "{} is {}{exit}: `sturdy logs {}` shows why",
                    dead.name,
                    dead.state,
                    dead.name
                )
                .into());
            }
            if info.services.iter().all(is_ready) {
                return Ok(info);
            }
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(info);
        }
        if wait_healthy && Instant::now() > deadline {
            let late: Vec<String> = info
                .services
                .iter()
                .filter(|s| !is_ready(s))
                .map(|s| match &s.last_probe_error {
                    Some(why) => format!("{} ({}; last probe: {why})", s.name, s.state),
                    None => format!("{} ({})", s.name, s.state),
                })
                .collect();
            return Err(anyhow!(
                "not healthy after {:?}: {}",
                args.wait_timeout,
                late.join(", ")
            )
            .into());
        }
        std::thread::sleep(PROGRESS_POLL);
        info = client.get(&path).map_err(|e| anyhow!(e))?;
    }
}

fn is_dead(s: &ServiceInfo) -> bool {
    s.state.starts_with("exited")
        || matches!(s.state.as_str(), "crash-loop" | "stopped" | "restarting")
}

/// How long `--wait` watches a service without a healthcheck run before it counts as up: a
/// unikernel that fails at boot exits within it.
const SETTLE: Duration = Duration::from_millis(500);

/// Whether `--wait` may count `s` as up: healthy if it has a healthcheck (it is `starting`
/// until then), else running for [`SETTLE`].
fn is_ready(s: &ServiceInfo) -> bool {
    match s.state.as_str() {
        "healthy" => true,
        "running" => s
            .uptime_ms
            .is_some_and(|ms| ms >= SETTLE.as_millis() as u64),
        _ => false,
    }
}

/// Follows every console and service state until a signal, then stops the application.
fn attached(
    client: &Client,
    info: &AppInfo,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<(), CliError> {
    let name = &info.name;
    let app_path = format!("/v1/apps/{}", encode(name));
    let logs = format!(
        "{app_path}/logs?follow=true&since={}",
        encode(&info.created_at)
    );
    let mut failure: Option<CliError> = None;
    let mut last_poll = Instant::now();
    let result = client.lines(&logs, ATTACHED_TICK, |line| {
        if let Some(line) = line {
            if let Err(e) = progress.console(line) {
                failure = Some(e.into());
                return false;
            }
        }
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        if last_poll.elapsed() >= ATTACHED_TICK {
            last_poll = Instant::now();
            match client.get::<AppInfo>(&app_path) {
                Ok(info) => {
                    if let Err(e) = progress.changes(&info) {
                        failure = Some(e.into());
                        return false;
                    }
                }
                Err(e) => {
                    failure = Some(anyhow!(e).into());
                    return false;
                }
            }
        }
        true
    });
    if stop.load(Ordering::SeqCst) {
        return down(client, name);
    }
    if let Some(e) = failure {
        return Err(e);
    }
    match result {
        Ok(()) => {
            eprintln!("sturdy: {name} was stopped");
            Ok(())
        }
        Err(ClientError::Api { status: 404, .. }) => {
            eprintln!("sturdy: {name} was stopped");
            Ok(())
        }
        Err(e) => Err(anyhow!("lost the daemon while following {name}: {e}").into()),
    }
}

fn down(client: &Client, name: &str) -> Result<(), CliError> {
    eprintln!("sturdy: stopping {name}");
    let _: DownInfo = client
        .delete(&format!("/v1/apps/{}", encode(name)))
        .map_err(|e| anyhow!(e))?;
    eprintln!("sturdy: {name} stopped");
    Ok(())
}

/// Prints what changed in an application since the last look, and console lines.
struct Progress {
    prefixes: Prefixes,
    to_stderr: bool,
    seen: HashMap<String, Seen>,
}

#[derive(Default, PartialEq, Eq)]
struct Seen {
    state: String,
    instance: u64,
    waiting_for: Option<String>,
}

impl Progress {
    fn new(prefixes: Prefixes, to_stderr: bool) -> Progress {
        Progress {
            prefixes,
            to_stderr,
            seen: HashMap::new(),
        }
    }

    fn line(&self, text: &str) -> std::io::Result<()> {
        if self.to_stderr {
            eprintln!("{text}");
            Ok(())
        } else {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}")?;
            out.flush()
        }
    }

    fn console(&self, line: &str) -> std::io::Result<()> {
        let Ok(l) = serde_json::from_str::<LogLine>(line) else {
            return Ok(());
        };
        let text = if l.stream == "sturdy" {
            format!("sturdy: {}", l.text)
        } else {
            l.text
        };
        self.line(&format!("{} | {text}", self.prefixes.get(&l.service)))
    }

    /// Prints the changes since the last look, in the order they happened: several can fall
    /// between two looks (db started, db healthy, web started), and a dependency turning
    /// healthy must read before the start it allowed. Starts are ordered by their instance's
    /// start time and health by the time it was first passed (milliseconds; at the same
    /// millisecond a service turning healthy comes before another's start, and after its own);
    /// other changes come last, in the services' order.
    fn changes(&mut self, info: &AppInfo) -> std::io::Result<()> {
        for line in self.change_lines(info) {
            self.line(&line)?;
        }
        Ok(())
    }

    /// The lines [`changes`](Self::changes) prints, and what it remembers for the next look.
    fn change_lines(&mut self, info: &AppInfo) -> Vec<String> {
        // (when, rank at the same time, line)
        let mut events: Vec<(String, u8, String)> = Vec::new();
        for s in &info.services {
            let old = self
                .seen
                .get(&s.name)
                .map_or((0, ""), |o| (o.instance, o.state.as_str()));
            let prefix = self.prefixes.get(&s.name).to_string();
            let started_at = s.started_at.clone().unwrap_or_default();
            if s.instance > old.0 {
                let pid = s.pid.map(|p| format!(", pid {p}")).unwrap_or_default();
                let line = if s.instance == 1 {
                    format!("{prefix} started ({}{pid})", s.address)
                } else {
                    format!("{prefix} restarted (instance {}{pid})", s.instance)
                };
                events.push((started_at.clone(), 1, line));
            }
            if s.state == old.1 {
                continue;
            }
            match s.state.as_str() {
                "created" | "starting" | "running" => {}
                "healthy" => {
                    let since = s.healthy_since.clone().unwrap_or_default();
                    let event = if since > started_at {
                        (since, 0, format!("{prefix} healthy"))
                    } else {
                        (started_at, 2, format!("{prefix} healthy"))
                    };
                    events.push(event);
                }
                "unhealthy" => events.push((
                    "~".into(),
                    3,
                    format!(
                        "{prefix} unhealthy: {}",
                        s.last_probe_error.as_deref().unwrap_or("probe failed")
                    ),
                )),
                other => events.push(("~".into(), 3, format!("{prefix} {other}"))),
            }
        }
        // Stable: equal keys keep the services' order.
        events.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut lines: Vec<String> = events.into_iter().map(|(_, _, line)| line).collect();
        for s in &info.services {
            let old = self.seen.remove(&s.name).unwrap_or_default();
            if s.state == "created" && s.waiting_for != old.waiting_for {
                if let Some(w) = &s.waiting_for {
                    lines.push(format!("{} waiting for {w}", self.prefixes.get(&s.name)));
                }
            }
            self.seen.insert(
                s.name.clone(),
                Seen {
                    state: s.state.clone(),
                    instance: s.instance,
                    waiting_for: s.waiting_for.clone(),
                },
            );
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, state: &str, started_ms: u32, healthy_ms: Option<u32>) -> String {
        let at = |ms: u32| format!("\"2026-11-27T12:00:00.{ms:03}Z\"");
        format!(
            r#"{{"name":"{name}","state":"{state}","address":"10.77.0.2","pid":1,"instance":1,
            "restarts":0,"last_exit":null,"started_at":{},"uptime_ms":1,"healthy_since":{},
            "waiting_for":null,"last_probe_error":null,"ports":[]}}"#,
            at(started_ms),
            healthy_ms.map_or("null".into(), at)
        )
    }

    fn app(services: &[String]) -> AppInfo {
        serde_json::from_str(&format!(
            r#"{{"name":"guestbook","file":"f","status":"running","error":null,
            "created_at":"2026-11-27T12:00:00.000Z","published":[],"services":[{}]}}"#,
            services.join(",")
        ))
        .unwrap()
    }

    /// Everything between two looks: db started (8 ms), db healthy (18 ms), web started at
    /// the same millisecond. web is first in the file; the lines follow what happened.
    #[test]
    fn changes_seen_in_one_look_are_printed_in_the_order_they_happened() {
        let mut p = Progress::new(Prefixes::new(["web", "db"], false), false);
        let lines = p.change_lines(&app(&[
            service("web", "starting", 18, None),
            service("db", "healthy", 8, Some(18)),
        ]));
        let names: Vec<&str> = lines.iter().map(|l| l.trim_start()).collect();
        assert_eq!(names.len(), 3, "{lines:?}");
        assert!(names[0].starts_with("db  started"), "{lines:?}");
        assert_eq!(names[1], "db  healthy", "{lines:?}");
        assert!(names[2].starts_with("web started"), "{lines:?}");
        // The next look: only what changed.
        let lines = p.change_lines(&app(&[
            service("web", "healthy", 18, Some(30)),
            service("db", "healthy", 8, Some(18)),
        ]));
        assert_eq!(lines, ["web healthy"]);
    }

    /// A service that passes its first probe within the millisecond it started still reads
    /// started, then healthy.
    #[test]
    fn a_service_is_healthy_after_its_own_start() {
        let mut p = Progress::new(Prefixes::new(["db"], false), false);
        let lines = p.change_lines(&app(&[service("db", "healthy", 8, Some(8))]));
        assert!(lines[0].starts_with("db started"), "{lines:?}");
        assert_eq!(lines[1], "db healthy");
    }
}
