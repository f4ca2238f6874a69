//! `sturdy daemon`: runs the supervisor (in the foreground), stops it or shows it; and how
//! every other verb reaches it: [`connect`] starts one on demand, in the background, logging
//! to `STATE/daemon.log`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use sturdy_daemon::api::DaemonInfo;
use sturdy_daemon::client::{Client, ClientError};
use sturdy_daemon::server::{self, Config};

use crate::error::{io_reason, CliError};

/// Examples shown by `sturdy daemon --help`.
pub const EXAMPLES: &str = "\
Examples:
  sudo sturdy daemon                        run the daemon in the foreground (Ctrl-C stops it)
  sturdy daemon status                      is it running? pid, state directory, memory
  sturdy daemon stop                        stop it (and every application it runs)
  sturdy daemon logs -f                     follow its own log (starts, warnings, drops)

Other verbs start the daemon when none runs, in the background, logging to
STATE/daemon.log. Applications that were up when the daemon stopped (or was killed) start
again when it starts, with their volumes.";

/// The state directory when neither `--state-dir` nor `$STURDY_HOME` says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sturdy";

/// How long a daemon started on demand may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags of `sturdy daemon`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do [default: run]
    #[command(subcommand)]
    pub action: Option<Action>,

    /// The monitor to run services with [default: sturdy-hvt next to sturdy, else on PATH]
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath, global = true)]
    pub hvt: Option<PathBuf>,
}

/// What `sturdy daemon` does.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Runs the daemon in the foreground until SIGINT or SIGTERM
    Run,
    /// Stops the running daemon and every application it runs (they start again with the
    /// next daemon)
    Stop,
    /// Shows the running daemon: pid, state directory, monitor, applications, memory
    Status {
        /// Print it as JSON
        #[arg(long)]
        json: bool,
    },
    /// Prints the daemon's own log (STATE/daemon.log): its starts and stops, and the
    /// warnings of its fabrics (connections refused, frames dropped), rate-limited
    Logs {
        /// Keep printing new lines as they come
        #[arg(short = 'f', long)]
        follow: bool,

        /// Only the last N lines
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
    },
}

/// Runs `sturdy daemon`.
pub fn run(args: &Args, state: &Path) -> Result<(), CliError> {
    match args.action.as_ref().unwrap_or(&Action::Run) {
        Action::Run => {
            let hvt = locate_hvt(args.hvt.as_deref())?;
            server::run(Config {
                state_dir: state.to_path_buf(),
                hvt,
            })
            .map_err(|e| anyhow!("{e}"))?;
            Ok(())
        }
        Action::Stop => stop(state),
        Action::Logs { follow, tail } => logs(state, *follow, *tail),
        Action::Status { json } => {
            let client = Client::new(state);
            let info: DaemonInfo = client.get("/v1/daemon").map_err(|e| match e {
                ClientError::NotRunning { .. } => {
                    anyhow!("no sturdy daemon runs for {}", state.display())
                }
                other => anyhow!(other),
            })?;
            let mut out = std::io::stdout().lock();
            if *json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&info).expect("json")
                )?;
            } else {
                writeln!(out, "pid:          {}", info.pid)?;
                writeln!(out, "version:      {}", info.version)?;
                writeln!(out, "state:        {}", info.state_dir)?;
                writeln!(out, "monitor:      {}", info.hvt)?;
                writeln!(out, "applications: {}", info.apps)?;
                writeln!(out, "memory:       {}", super::bytes(info.rss_bytes))?;
            }
            Ok(())
        }
    }
}

/// Asks the daemon to stop and waits until it has.
fn stop(state: &Path) -> Result<(), CliError> {
    let client = Client::new(state);
    let info: DaemonInfo = match client.post("/v1/daemon/shutdown", &()) {
        Ok(info) => info,
        Err(ClientError::NotRunning { .. }) => {
            eprintln!("sturdy: no daemon runs for {}", state.display());
            return Ok(());
        }
        Err(e) => return Err(anyhow!(e).into()),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Path::new(&format!("/proc/{}", info.pid)).exists() && !is_zombie(info.pid) {
        if Instant::now() > deadline {
            return Err(anyhow!("the daemon (pid {}) did not stop in 60 s", info.pid).into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("sturdy: daemon stopped (pid {})", info.pid);
    Ok(())
}

/// `sturdy daemon logs`: the daemon's log file, its last `tail` lines, then (`follow`) what
/// is appended, until interrupted.
fn logs(state: &Path, follow: bool, tail: Option<usize>) -> Result<(), CliError> {
    use std::io::{Read, Seek, SeekFrom};
    let path = state.join(sturdy_daemon::daemon_log::FILE);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(anyhow!(
                "no daemon log at {} (no daemon ran with this state directory)",
                path.display()
            )
            .into())
        }
        Err(e) => return Err(anyhow!("{}: {}", path.display(), io_reason(&e)).into()),
    };
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| anyhow!("{}: {}", path.display(), io_reason(&e)))?;
    let lines: Vec<&str> = text.lines().collect();
    let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = std::io::stdout().lock();
    for line in &lines[from..] {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut at = text.len() as u64;
    let mut buf = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let len = file.metadata().map(|m| m.len()).unwrap_or(at);
        if len < at {
            at = 0; // truncated or replaced: from its start
        }
        if len == at {
            continue;
        }
        file.seek(SeekFrom::Start(at))?;
        buf.clear();
        file.read_to_end(&mut buf)?;
        at += buf.len() as u64;
        out.write_all(&buf)?;
        out.flush()?;
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// A client of the running daemon. If none runs but the state directory has a database (a
/// daemon ran here: it stopped or was killed, and applications may be recorded as up), starts
/// one, which brings them back. `None`: no daemon ever ran here, so nothing is up.
pub fn existing(state: &Path) -> Result<Option<Client>, CliError> {
    if !state.exists() {
        return Ok(None);
    }
    // Its socket and database are trusted only in a directory no one else controls.
    sturdy_daemon::server::check_state_dir(state).map_err(|e| anyhow!(e))?;
    let client = Client::new(state);
    match probe(&client).map_err(|e| anyhow!(e))? {
        Some(_) => Ok(Some(client)),
        None if state.join("state.db").exists() => connect(state, None).map(Some),
        None => Ok(None),
    }
}

/// How long a daemon that accepts connections but breaks them is asked again.
const BROKEN_RETRY: Duration = Duration::from_secs(2);

/// Asks the daemon who it is; `None` if none listens. A daemon that accepts the connection
/// but breaks it is dying (after a kill -9, its last threads hold its socket for a moment
/// after its main thread is gone) or starting: it is asked again for a while before that
/// counts as an error.
fn probe(client: &Client) -> Result<Option<DaemonInfo>, ClientError> {
    let deadline = Instant::now() + BROKEN_RETRY;
    loop {
        match client.get::<DaemonInfo>("/v1/daemon") {
            Ok(info) => return Ok(Some(info)),
            Err(ClientError::NotRunning { .. }) => return Ok(None),
            Err(ClientError::Transport { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`existing`], or the error that nothing is up.
pub fn required(state: &Path) -> Result<Client, CliError> {
    existing(state)?.ok_or_else(|| {
        anyhow!(
            "no application is up (no sturdy daemon has run with state directory {}): start one \
             with `sturdy up PATH`",
            state.display()
        )
        .into()
    })
}

/// A client of the daemon for `state`, starting one (in the background) if none answers.
pub fn connect(state: &Path, hvt: Option<&Path>) -> Result<Client, CliError> {
    if state.exists() {
        sturdy_daemon::server::check_state_dir(state).map_err(|e| anyhow!(e))?;
    }
    let client = Client::new(state);
    if probe(&client).map_err(|e| anyhow!(e))?.is_some() {
        return Ok(client);
    }
    let hvt = locate_hvt(hvt)?;
    if !state.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state)
            .with_context(|| format!("cannot create the state directory {}", state.display()))?;
    }
    // Before writing anything there: a directory another user controls is refused.
    sturdy_daemon::server::check_state_dir(state).map_err(|e| anyhow!(e))?;
    let log_path = state.join("daemon.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&log_path)
        .map_err(|e| anyhow!("{}: {}", log_path.display(), io_reason(&e)))?;
    let exe = std::env::current_exe().context("cannot find the sturdy executable")?;
    let mut child = Command::new(&exe)
        .arg("daemon")
        .arg("--hvt")
        .arg(&hvt)
        .arg("--state-dir")
        .arg(state)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C at this terminal is not the daemon's.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {} daemon", exe.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match probe(&client) {
            Ok(Some(info)) => {
                if info.pid == child.id() {
                    eprintln!(
                        "sturdy: started the daemon (pid {}, state in {}, log in {})",
                        info.pid,
                        state.display(),
                        log_path.display()
                    );
                }
                return Ok(client);
            }
            Ok(None) => {}
            Err(e) => return Err(anyhow!(e).into()),
        }
        // Exited: another daemon won the race (then it answers soon), or it failed.
        if let Ok(Some(status)) = child.try_wait() {
            std::thread::sleep(Duration::from_millis(50));
            if client.get::<DaemonInfo>("/v1/daemon").is_ok() {
                return Ok(client);
            }
            return Err(anyhow!(
                "the sturdy daemon exited ({status}) at start: {}",
                last_line(&log_path)
            )
            .into());
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "the sturdy daemon (pid {}) did not answer within {START_TIMEOUT:?} (see {})",
                child.id(),
                log_path.display()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The last line of the daemon's log, without its time stamp.
fn last_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    line.split_once(" sturdy daemon: ")
        .map_or(line, |(_, rest)| rest)
        .trim_start_matches("sturdy: ")
        .to_string()
}

/// `--state-dir`, else `$STURDY_HOME` (if set and not empty), else [`DEFAULT_STATE_DIR`].
pub fn state_dir(flag: Option<&Path>, home: Option<std::ffi::OsString>) -> PathBuf {
    let dir = match (flag, home) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(home)) if !home.is_empty() => PathBuf::from(home),
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    };
    // Absolute: the daemon runs elsewhere.
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The monitor: `--hvt`, else `sturdy-hvt` next to this executable, else on `PATH`.
pub fn locate_hvt(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        if path.is_file() {
            return Ok(std::path::absolute(path).unwrap_or(path.to_path_buf()));
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
pub fn check_kvm() -> anyhow::Result<()> {
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
        assert!(state_dir(Some(Path::new("rel")), None).is_absolute());
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

    /// A socket that accepts and breaks connections (a daemon dying after kill -9) is asked
    /// again; once it is gone, no daemon runs.
    #[test]
    fn a_daemon_that_breaks_connections_is_asked_again() {
        let dir = std::env::temp_dir().join(format!("sturdy-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let client = Client::new(&dir);
        let listener = std::os::unix::net::UnixListener::bind(client.socket()).unwrap();
        let socket = client.socket().to_path_buf();
        let dying = std::thread::spawn(move || {
            for _ in 0..3 {
                drop(listener.accept().unwrap());
            }
            std::fs::remove_file(&socket).unwrap();
        });
        let started = Instant::now();
        assert!(matches!(probe(&client), Ok(None)));
        assert!(started.elapsed() < BROKEN_RETRY);
        dying.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_last_log_line_loses_its_stamp() {
        let dir = std::env::temp_dir().join(format!("sturdy-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("daemon.log");
        std::fs::write(
            &log,
            "2026-11-27T00:00:00.000Z sturdy daemon: listening\nsturdy: another sturdy daemon (pid 7) runs\n\n",
        )
        .unwrap();
        assert_eq!(last_line(&log), "another sturdy daemon (pid 7) runs");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
