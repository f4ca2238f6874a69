//! `sturdy up`: runs an application in this process (attached): starts its services in
//! order, showing progress, then streams every service's console, prefixed with its name,
//! until Ctrl-C (SIGINT) or SIGTERM stops the application.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use sturdy_compose::Plan;
use sturdy_daemon::{App, Event, Options};

use crate::error::{io_reason, CliError};

/// Examples shown by `sturdy up --help`.
pub const EXAMPLES: &str = "\
Examples:
  sudo sturdy up examples/guestbook         start the guestbook, follow its logs
  curl localhost:8080                       (in another terminal) the guestbook answers
  sturdy up --state-dir /tmp/sturdy         keep volumes under /tmp/sturdy/apps/<name>/
  sturdy up --no-color > app.log            plain, uncoloured output

Ctrl-C (or SIGTERM) stops every service and exits. Volumes are kept under
STATE/apps/<application>/volumes, STATE being --state-dir, else $STURDY_HOME, else
/var/lib/sturdy. Needs /dev/kvm (run as root) and the monitor sturdy-hvt: --hvt, else the one
next to the sturdy executable, else the one on PATH.";

/// The state directory when neither `--state-dir` nor `$STURDY_HOME` says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sturdy";

/// How often the consoles are polled.
const POLL: Duration = Duration::from_millis(50);

/// Flags of `sturdy up`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The application: a sturdy.yaml, or a directory holding one
    #[arg(value_name = "PATH", default_value = ".", value_hint = clap::ValueHint::AnyPath)]
    pub path: PathBuf,

    /// Where volumes are kept [default: $STURDY_HOME, else /var/lib/sturdy]
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub state_dir: Option<PathBuf>,

    /// The monitor to run each service with [default: sturdy-hvt next to sturdy, else on PATH]
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub hvt: Option<PathBuf>,

    /// Never colour the output (it is coloured only on a terminal anyway)
    #[arg(long)]
    pub no_color: bool,
}

/// Runs the application until SIGINT or SIGTERM, then stops it.
pub fn run(args: &Args) -> Result<(), CliError> {
    let plan = super::load(&args.path)?;
    let hvt = locate_hvt(args.hvt.as_deref())?;
    check_kvm()?;
    let state = state_dir(args.state_dir.as_deref(), std::env::var_os("STURDY_HOME"));
    let app_dir = state.join("apps").join(&plan.name);

    // Registered before starting, so a signal during the start stops the application as
    // soon as it is started instead of killing this process and its monitors half-way.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot handle signals")?;
    }

    let color = !args.no_color
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());

    let progress = Progress {
        prefix: Prefixes::new(&plan, color),
        ips: plan
            .services
            .iter()
            .map(|s| (s.name.clone(), s.ipv4.to_string()))
            .collect(),
    };

    // The application starts on its own thread so that this one prints its progress as it
    // comes, in order.
    let (tx, events) = mpsc::channel();
    let options = Options {
        events: Some(tx),
        ..Default::default()
    };
    let starting = {
        let (plan, app_dir) = (plan.clone(), app_dir.clone());
        std::thread::spawn(move || App::start_with(&plan, &hvt, &app_dir, options))
    };
    loop {
        match events.recv_timeout(POLL) {
            // Not `?`: the application must be joined (and so stopped) first; a closed stdout
            // is reported by the log loop.
            Ok(event) => {
                let _ = progress.print(&event);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !starting.is_finished() => {}
            Err(_) => break,
        }
    }
    let started = starting
        .join()
        .map_err(|_| anyhow!("the start of {} panicked", plan.name))?;
    let mut app = started.map_err(|e| anyhow!("cannot start {}: {e}", plan.name))?;
    // Events sent before the start returned.
    for event in events.try_iter() {
        progress.print(&event)?;
    }
    let result = attached(&plan, &app, &progress, &events, &stop);
    if stop.load(Ordering::SeqCst) {
        eprintln!("sturdy: stopping {}", plan.name);
    }
    app.stop();
    result
}

/// Progress lines: a service started, restarted, healthy.
struct Progress {
    prefix: Prefixes,
    ips: HashMap<String, String>,
}

impl Progress {
    fn print(&self, event: &Event) -> std::io::Result<()> {
        let line = match event {
            Event::Started {
                service,
                instance: 1,
                ..
            } => {
                let ip = self.ips.get(service).map(String::as_str).unwrap_or("?");
                format!("{} started ({ip})", self.prefix.get(service))
            }
            Event::Started {
                service,
                instance,
                pid,
            } => format!(
                "{} restarted (instance {instance}, pid {pid})",
                self.prefix.get(service)
            ),
            Event::Healthy { service } => format!("{} healthy", self.prefix.get(service)),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()
    }
}

/// Prints where the application is published, then follows every console (and progress)
/// until `stop`.
fn attached(
    plan: &Plan,
    app: &App,
    progress: &Progress,
    events: &mpsc::Receiver<Event>,
    stop: &AtomicBool,
) -> Result<(), CliError> {
    let prefix = &progress.prefix;
    {
        let mut out = std::io::stdout().lock();
        for (endpoint, addr) in app.published() {
            let service = endpoint.split('.').next().unwrap_or(endpoint);
            writeln!(out, "{} published on {addr}", prefix.get(service))?;
        }
        out.flush()?;
    }
    let mut seen: Vec<u64> = vec![0; plan.services.len()];
    while !stop.load(Ordering::SeqCst) {
        for event in events.try_iter() {
            progress.print(&event)?;
        }
        let mut out = std::io::stdout().lock();
        for (s, seen) in plan.services.iter().zip(seen.iter_mut()) {
            let Some((lines, count)) = app.logs_after(&s.name, *seen) else {
                continue;
            };
            *seen = count;
            for line in lines {
                writeln!(out, "{} | {}", prefix.get(&s.name), console_text(&line))?;
            }
        }
        out.flush()?;
        drop(out);
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// A console line without its timestamp and stream (`stdout`, `stderr`); the supervisor's
/// own notes keep a `sturdy:` mark.
fn console_text(line: &str) -> String {
    let mut parts = line.splitn(3, ' ');
    let (_time, stream, text) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    match stream {
        Some("sturdy") => format!("sturdy: {text}"),
        _ => text.to_string(),
    }
}

/// Each service's prefix: its name padded to the longest, coloured on a terminal.
struct Prefixes(HashMap<String, String>);

impl Prefixes {
    fn new(plan: &Plan, color: bool) -> Prefixes {
        const COLORS: [u8; 6] = [36, 33, 32, 35, 34, 31];
        let width = plan
            .services
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0);
        let map = plan
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let padded = format!("{:<width$}", s.name);
                let prefix = if color {
                    format!("\x1b[{}m{padded}\x1b[0m", COLORS[i % COLORS.len()])
                } else {
                    padded
                };
                (s.name.clone(), prefix)
            })
            .collect();
        Prefixes(map)
    }

    fn get<'a>(&'a self, service: &'a str) -> &'a str {
        self.0.get(service).map(String::as_str).unwrap_or(service)
    }
}

/// `--state-dir`, else `$STURDY_HOME` (if set and not empty), else [`DEFAULT_STATE_DIR`].
fn state_dir(flag: Option<&Path>, home: Option<std::ffi::OsString>) -> PathBuf {
    match (flag, home) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(home)) if !home.is_empty() => PathBuf::from(home),
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

/// The monitor: `--hvt`, else `sturdy-hvt` next to this executable, else on `PATH`.
fn locate_hvt(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        return Err(anyhow!("--hvt {}: no such file", path.display()));
    }
    let exe = std::env::current_exe().ok();
    let beside = exe
        .as_deref()
        .and_then(Path::parent)
        .map(|dir| dir.join("sturdy-hvt"));
    find_hvt(beside.as_deref(), std::env::var_os("PATH")).ok_or_else(|| {
        anyhow!(
            "cannot find the monitor sturdy-hvt: not next to {} nor on PATH \
             (build it with `cargo build -p sturdy-hvt`, or name it with --hvt)",
            exe.as_deref()
                .map_or("sturdy".into(), |e| e.display().to_string())
        )
    })
}

fn find_hvt(beside: Option<&Path>, path: Option<std::ffi::OsString>) -> Option<PathBuf> {
    if let Some(b) = beside.filter(|b| b.is_file()) {
        return Some(b.to_path_buf());
    }
    std::env::split_paths(&path?)
        .map(|dir| dir.join("sturdy-hvt"))
        .find(|p| p.is_file())
}

/// /dev/kvm exists and this process may use it.
fn check_kvm() -> anyhow::Result<()> {
    let kvm = Path::new("/dev/kvm");
    match std::fs::OpenOptions::new().read(true).write(true).open(kvm) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(anyhow!(
            "no /dev/kvm: services run in KVM virtual machines; enable KVM (a kvm_intel or \
             kvm_amd module, or nested virtualisation) on this host"
        )),
        Err(e) => Err(anyhow!(
            "cannot open /dev/kvm: {} (run as root, or join the group that owns it)",
            io_reason(&e)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_dir_is_the_flag_then_sturdy_home_then_the_default() {
        let flag = Path::new("/a");
        assert_eq!(state_dir(Some(flag), Some("/b".into())), flag);
        assert_eq!(state_dir(None, Some("/b".into())), Path::new("/b"));
        assert_eq!(
            state_dir(None, Some("".into())),
            Path::new(DEFAULT_STATE_DIR)
        );
        assert_eq!(state_dir(None, None), Path::new(DEFAULT_STATE_DIR));
    }

    #[test]
    fn the_monitor_is_found_beside_then_on_path() {
        let dir = std::env::temp_dir().join(format!("sturdy-up-hvt-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("sturdy-hvt"), "").unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        let beside = a.join("sturdy-hvt");
        assert_eq!(
            find_hvt(Some(&beside), Some(path.clone())),
            Some(b.join("sturdy-hvt"))
        );
        std::fs::write(&beside, "").unwrap();
        assert_eq!(
            find_hvt(Some(&beside), Some(path.clone())),
            Some(beside.clone())
        );
        assert_eq!(find_hvt(Some(&dir.join("none")), None), None);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(locate_hvt(Some(&dir.join("none")))
            .unwrap_err()
            .to_string()
            .contains("no such file"));
    }

    #[test]
    fn console_lines_lose_their_time_and_stream() {
        assert_eq!(
            console_text("2026-11-27T04:45:22.123Z stdout kv: recovered 3 keys"),
            "kv: recovered 3 keys"
        );
        assert_eq!(
            console_text("2026-11-27T04:45:22.123Z sturdy exited with status 1"),
            "sturdy: exited with status 1"
        );
    }
}
