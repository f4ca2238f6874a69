//! `sturdy daemon`: one per host and state directory. Runs applications ([`App`]), keeps
//! what is up in SQLite ([`Store`]) and answers the HTTP/JSON API of [`crate::api`] on a
//! unix socket (`STATE/sturdy.sock`, owner only; the handlers are in `routes`).
//!
//! Crash safety: a monitor dies with the supervision thread that started it, so a killed
//! daemon leaves no monitor behind; the monitors it recorded are checked anyway when it
//! starts (pid and start time, so a reused pid is never touched) and any survivor is killed
//! before the applications recorded as up are started again, with their volumes. Nothing is
//! orphaned and nothing runs twice.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State as Axum};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sturdy_compose::Plan;

use std::sync::atomic::{AtomicU64, Ordering};

use sturdy_fabric::{Capability, CaptureTarget};

use crate::api::{
    AppInfo, DaemonInfo, DownInfo, ErrorBody, InspectInfo, LogLine, LogsQuery, PublishedInfo,
    ServiceInfo, UpRequest,
};
use crate::capture::Streamed;
use crate::console::timestamp;
use crate::locks::LockExt;
use crate::stats::{self, ServiceStats};
use crate::store::{AppRecord, InstanceRecord, Store};
use crate::supervisor::{App, Event, Options, ServiceStatus, State};

mod routes;
use routes::ApiError;

/// The socket's name in the state directory.
pub const SOCKET: &str = "sturdy.sock";
/// The lock held by the running daemon.
pub const LOCK: &str = "daemon.lock";
/// The running daemon's pid.
pub const PID_FILE: &str = "daemon.pid";
/// Longest path a unix socket address holds (sun_path, with its NUL).
const SOCKET_PATH_MAX: usize = 107;
/// How often `logs --follow` looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(50);
/// How often the daemon gives the pages of its free heap back to the system
/// (docs/operating.md, Memory), when malloc holds at least [`TRIM_ABOVE`] free.
const TRIM_EVERY: Duration = Duration::from_secs(10);
const TRIM_ABOVE: usize = 1 << 20;
/// How often a capture looks at its limits and its reader.
const CAPTURE_POLL: Duration = Duration::from_millis(50);
/// How long reading an application's images may take (`up`, and bringing it back): a file
/// on a file system that does not answer must not hold the daemon.
pub const IMAGE_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests about applications wait for the daemon to finish bringing back the
/// applications recorded as up, before they are answered with what is up so far.
const RESTORE_WAIT: Duration = Duration::from_secs(30);
/// The largest request body the daemon reads (an `up` request carries a plan).
pub const REQUEST_MAX: usize = 8 << 20;
/// How long a stopping daemon waits for its open requests (a `logs -f`, a capture) to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Its state directory: socket, database, volumes.
    pub state_dir: PathBuf,
    /// The monitor to run services with.
    pub hvt: PathBuf,
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon holds the state directory.
    #[error("another sturdy daemon{pid} runs with state directory {dir}")]
    Running {
        /// The state directory.
        dir: String,
        /// ` (pid N)` if known.
        pid: String,
    },
    /// Anything else, said in full.
    #[error("{0}")]
    Other(String),
}

fn other(what: impl std::fmt::Display) -> DaemonError {
    DaemonError::Other(what.to_string())
}

struct Entry {
    app: Arc<App>,
    plan: Plan,
    created_at: String,
}

struct Daemon {
    config: Config,
    store: Store,
    apps: Mutex<HashMap<String, Entry>>,
    /// Applications recorded as up that this daemon could not start again, and why: shown by
    /// `ps` until `up` or `down`.
    unrestored: Mutex<HashMap<String, (String, String)>>,
    /// Serializes up and down (each may take a while; two at once on one name would race).
    changes: tokio::sync::Mutex<()>,
    /// Serializes stop/start/restart requests (quick), so that the stopped flags are stored
    /// in the order the requests were carried out.
    acts: tokio::sync::Mutex<()>,
    shutdown: tokio::sync::Notify,
    /// Set once the applications recorded as up were brought back (or given up on).
    restored: tokio::sync::watch::Sender<bool>,
    /// Set once the daemon stops: nothing is brought back after that.
    stopping: std::sync::atomic::AtomicBool,
}

/// Runs the daemon until SIGTERM, SIGINT or `POST /v1/daemon/shutdown`; then stops every
/// application (they stay recorded as up and start again with the next daemon).
pub fn run(config: Config) -> Result<(), DaemonError> {
    let dir = &config.state_dir;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| other(format!("{}: {e}", dir.display())))?;
    }
    check_state_dir(dir)?;
    share_with_group(dir)?;
    let socket = dir.join(SOCKET);
    if socket.as_os_str().len() > SOCKET_PATH_MAX {
        return Err(other(format!(
            "the socket path {} is longer than the {SOCKET_PATH_MAX} bytes a unix socket \
             allows: choose a shorter --state-dir",
            socket.display()
        )));
    }
    let _lock = lock(dir)?;
    crate::daemon_log::init(dir);
    write_pid_file(&dir.join(PID_FILE))
        .map_err(|e| other(format!("{}: {e}", dir.join(PID_FILE).display())))?;
    let store = Store::open(&dir.join("state.db")).map_err(other)?;
    stop_leftovers(&store);

    let daemon = Arc::new(Daemon {
        config: config.clone(),
        store,
        apps: Mutex::new(HashMap::new()),
        unrestored: Mutex::new(HashMap::new()),
        changes: tokio::sync::Mutex::new(()),
        acts: tokio::sync::Mutex::new(()),
        shutdown: tokio::sync::Notify::new(),
        restored: tokio::sync::watch::Sender::new(false),
        stopping: std::sync::atomic::AtomicBool::new(false),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| other(format!("cannot start the daemon's runtime: {e}")))?;
    let result = runtime.block_on(serve(daemon.clone(), &socket));
    let _ = std::fs::remove_file(&socket);
    daemon.stop_all();
    crate::sandbox::Sandbox::remove_cgroups();
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    log(&format!("stopped (pid {})", std::process::id()));
    result
}

/// The group whose members may use the daemon's socket: `$STURDY_GROUP`, else `sturdy`.
pub fn access_group_name() -> String {
    std::env::var("STURDY_GROUP")
        .ok()
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| "sturdy".to_string())
}

/// The id of [`access_group_name`]'s group, if the host has it (from /etc/group).
pub fn access_group() -> Option<u32> {
    let name = access_group_name();
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// Whether the process at the other end of a connection may use the API: this daemon's user,
/// root, or a member of the access group (its primary group, or a supplementary one as
/// /proc/PID/status lists them). The socket's mode already keeps others out; this holds
/// even if someone loosens it.
fn peer_allowed(stream: &tokio::net::UnixStream, group: Option<u32>) -> bool {
    let Ok(cred) = stream.peer_cred() else {
        return false;
    };
    let me = crate::os::effective_uid();
    if cred.uid() == me || cred.uid() == 0 {
        return true;
    }
    let Some(group) = group else {
        return false;
    };
    if cred.gid() == group {
        return true;
    }
    let Some(pid) = cred.pid() else {
        return false;
    };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Groups:"))
                .map(|g| g.split_whitespace().any(|g| g.parse() == Ok(group)))
        })
        .unwrap_or(false)
}

/// The API's socket, letting through only the connections [`peer_allowed`] allows.
struct Guarded {
    listener: tokio::net::UnixListener,
    group: Option<u32>,
}

impl axum::serve::Listener for Guarded {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
            if peer_allowed(&stream, self.group) {
                return (stream, addr);
            }
            let who = stream.peer_cred().map_or("?".to_string(), |c| {
                format!("uid {} gid {}", c.uid(), c.gid())
            });
            log(&format!(
                "refused a connection from {who} (not root, this user, or in the access group)"
            ));
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Refuses a state directory someone else could change under the daemon or its clients: it
/// must be a directory (not a symbolic link) owned by this user (or root, whose directory a
/// client may use) and writable by no one else,
/// and each of its ancestors owned by that user or root and writable by no one else unless
/// sticky (as /tmp is). Otherwise another user could plant a link where the daemon writes
/// (its pid file), swap its database, or listen on its socket.
pub fn check_state_dir(dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::MetadataExt;
    let me = crate::os::effective_uid();
    let refuse = |path: &Path, why: String| {
        other(format!(
            "refusing state directory {}: {} {why}; use a directory only this user \
             ({me}) can change, e.g. `install -d -m 700 DIR`",
            dir.display(),
            path.display(),
        ))
    };
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| other(format!("{}: {e}", dir.display())))?;
    if meta.file_type().is_symlink() {
        return Err(refuse(dir, "is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(refuse(dir, "is not a directory".into()));
    }
    if meta.uid() != me && meta.uid() != 0 {
        return Err(refuse(dir, format!("is owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(
            dir,
            format!("is writable by others (mode {:o})", meta.mode() & 0o7777),
        ));
    }
    let absolute =
        std::fs::canonicalize(dir).map_err(|e| other(format!("{}: {e}", dir.display())))?;
    for ancestor in absolute.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)
            .map_err(|e| other(format!("{}: {e}", ancestor.display())))?;
        if meta.uid() != me && meta.uid() != 0 {
            return Err(refuse(ancestor, format!("is owned by uid {}", meta.uid())));
        }
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.mode() & 0o022 != 0 && !sticky {
            return Err(refuse(
                ancestor,
                format!("is writable by others (mode {:o})", meta.mode() & 0o7777),
            ));
        }
    }
    Ok(())
}

/// Lets the access group's members reach the socket: the state directory (owned by this
/// user) is given that group and mode 0750, or 0700 if the host has no such group. Its
/// files stay the owner's: the database, volumes and logs are 0600 or in 0700 directories.
fn share_with_group(dir: &Path) -> Result<(), DaemonError> {
    let mode = match access_group() {
        Some(gid) => {
            std::os::unix::fs::chown(dir, None, Some(gid))
                .map_err(|e| other(format!("{}: {e}", dir.display())))?;
            0o750
        }
        None => 0o700,
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| other(format!("{}: {e}", dir.display())))
}

/// Writes this process's pid to `path`, never through a symbolic link.
fn write_pid_file(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    writeln!(file, "{}", std::process::id())
}

/// Takes the state directory's lock, held for the daemon's life.
fn lock(dir: &Path) -> Result<File, DaemonError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(LOCK);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| other(format!("{}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(dir.join(PID_FILE))
                .ok()
                .map(|p| format!(" (pid {})", p.trim()))
                .unwrap_or_default();
            Err(DaemonError::Running {
                dir: dir.display().to_string(),
                pid,
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(other(format!("lock {}: {e}", path.display()))),
    }
}

/// Kills monitors recorded by a previous daemon that are still alive (same pid and start
/// time), then forgets them all.
fn stop_leftovers(store: &Store) {
    let Ok(instances) = store.instances() else {
        return;
    };
    for i in &instances {
        if !stats::is_alive(i.pid, i.start_ticks) {
            continue;
        }
        log(&format!(
            "stopping monitor {} of {}/{} left by a previous daemon",
            i.pid, i.app, i.service
        ));
        let _ = crate::os::signal(i.pid, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats::is_alive(i.pid, i.start_ticks) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    for i in instances {
        let _ = store.clear_instances(&i.app);
    }
}

/// A line in the daemon's log (its stderr and STATE/daemon.log).
fn log(what: &str) {
    crate::daemon_log::line(what);
}

/// Gives the pages of the heap's free blocks back to the system every [`TRIM_EVERY`]: the
/// fabric's thread allocates and frees a gateway connection's 128 KiB of buffers (and every
/// frame's copy) in its own malloc arena, and glibc keeps what a burst of connections freed
/// resident until the arena's top is free, which a single later block prevents (8 MiB of the
/// fabric thread's arena stayed after 100 keep-alive connections closed, measured).
async fn trim_heap() {
    let mut every = tokio::time::interval(TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if crate::os::free_heap_bytes() >= TRIM_ABOVE {
            crate::os::trim_heap();
        }
    }
}

async fn serve(daemon: Arc<Daemon>, socket: &Path) -> Result<(), DaemonError> {
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)
        .map_err(|e| other(format!("cannot listen on {}: {e}", socket.display())))?;
    // Root's and this user's; with an access group, its members' too (the directory above
    // lets them through: see `share_with_group`).
    let group = access_group();
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    if let Some(gid) = group {
        std::os::unix::fs::chown(socket, None, Some(gid))
            .map_err(|e| other(format!("{}: {e}", socket.display())))?;
    }
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode))
        .map_err(|e| other(format!("{}: {e}", socket.display())))?;
    let listener = Guarded { listener, group };
    log(&format!(
        "listening on {} (pid {})",
        socket.display(),
        std::process::id()
    ));
    // Listening first: an application that cannot be brought back (an image on a hung
    // mount) must not keep the daemon from answering, nor the others from coming back.
    let d = daemon.clone();
    tokio::task::spawn_blocking(move || d.bring_back());
    tokio::spawn(trim_heap());
    let router = Router::new()
        .route("/v1/daemon", get(routes::daemon_info))
        .route("/v1/daemon/shutdown", post(routes::shutdown))
        .route("/v1/apps", get(routes::list).post(routes::up))
        .route("/v1/apps/{app}", get(routes::show).delete(routes::down))
        .route("/v1/apps/{app}/stats", get(routes::app_stats))
        .route("/v1/apps/{app}/logs", get(routes::logs))
        .route("/v1/apps/{app}/capture", get(routes::capture))
        .route("/v1/apps/{app}/services/{service}", get(routes::inspect))
        .route(
            "/v1/apps/{app}/services/{service}/{action}",
            post(routes::act),
        )
        .layer(axum::extract::DefaultBodyLimit::max(REQUEST_MAX))
        .layer(axum::middleware::from_fn_with_state(
            daemon.clone(),
            wait_for_restore,
        ))
        .with_state(daemon.clone());
    let stopped = Arc::new(tokio::sync::Notify::new());
    let stopped_apps = stopped.clone();
    let stop = async move {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => log("SIGTERM: stopping"),
                _ = int.recv() => log("SIGINT: stopping"),
                _ = daemon.shutdown.notified() => log("shutdown requested: stopping"),
            },
            _ => daemon.shutdown.notified().await,
        }
        // The applications first: that ends the answers that follow them (logs -f, capture,
        // an attached up), which the graceful shutdown would otherwise wait for forever.
        let d = daemon.clone();
        let _ = tokio::task::spawn_blocking(move || d.stop_all()).await;
        stopped_apps.notify_one();
    };
    let serving = axum::serve(listener, router).with_graceful_shutdown(stop);
    // Requests still open once the applications are stopped get a short grace, not forever.
    let grace = async {
        stopped.notified().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        log("requests still open after the applications stopped: closing them");
    };
    tokio::select! {
        served = serving => served.map_err(|e| other(format!("serving {}: {e}", socket.display()))),
        () = grace => Ok(()),
    }
}

/// Holds requests about applications (not those about the daemon itself) until the
/// applications recorded as up are brought back, for at most [`RESTORE_WAIT`]: `ps` right
/// after a daemon starts shows them as they are, not missing.
async fn wait_for_restore(
    Axum(d): Axum<Arc<Daemon>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path().starts_with("/v1/apps") {
        let mut restored = d.restored.subscribe();
        let _ = tokio::time::timeout(RESTORE_WAIT, restored.wait_for(|done| *done)).await;
    }
    next.run(request).await
}

impl Daemon {
    /// Starts the applications recorded as up, each only once its images were read within
    /// [`IMAGE_READ_TIMEOUT`]; one that cannot be started is shown as failed with the reason,
    /// the others come back. Holds the changes lock meanwhile (an `up` or `down` waits).
    fn bring_back(&self) {
        let _change = self.changes.blocking_lock();
        self.bring_back_apps();
        self.restored.send_replace(true);
    }

    fn bring_back_apps(&self) {
        let records = match self.store.apps() {
            Ok(r) => r,
            Err(e) => {
                log(&e.to_string());
                return;
            }
        };
        for r in records {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let stopped = self.store.stopped(&r.name).unwrap_or_default();
            let why = match Plan::from_json(&r.plan) {
                Ok(plan) => match App::check_images(&plan, IMAGE_READ_TIMEOUT)
                    .and_then(|()| self.start(plan, r.created_at.clone(), stopped))
                {
                    Ok(_) => {
                        log(&format!("started {} again", r.name));
                        continue;
                    }
                    Err(e) => format!("cannot start it again: {e}"),
                },
                Err(e) => format!("cannot read its recorded plan: {e}"),
            };
            log(&format!("{}: {why}", r.name));
            self.unrestored
                .locked()
                .insert(r.name.clone(), (r.file.clone(), why));
        }
    }

    fn app_dir(&self, name: &str) -> PathBuf {
        self.config.state_dir.join("apps").join(name)
    }

    /// Creates `plan`'s application and records its monitors as they start.
    fn start(
        &self,
        plan: Plan,
        created_at: String,
        stopped: Vec<String>,
    ) -> Result<Arc<App>, crate::Error> {
        let (events, recorded) = mpsc::channel();
        let options = Options {
            events: Some(events),
            stopped,
            ..Default::default()
        };
        let app = Arc::new(App::create(
            &plan,
            &self.config.hvt,
            &self.app_dir(&plan.name),
            options,
        )?);
        let name = plan.name.clone();
        let store_path = self.config.state_dir.join("state.db");
        std::thread::spawn(move || record(&name, &store_path, &recorded));
        self.apps.locked().insert(
            plan.name.clone(),
            Entry {
                app: app.clone(),
                plan,
                created_at,
            },
        );
        Ok(app)
    }

    fn entry(&self, name: &str) -> Result<(Arc<App>, Plan, String), ApiError> {
        let apps = self.apps.locked();
        match apps.get(name) {
            Some(e) => Ok((e.app.clone(), e.plan.clone(), e.created_at.clone())),
            None => {
                let mut names: Vec<&str> = apps.keys().map(String::as_str).collect();
                names.sort();
                let running = if names.is_empty() {
                    "none is".to_string()
                } else {
                    format!("running: {}", names.join(", "))
                };
                Err(ApiError(
                    StatusCode::NOT_FOUND,
                    format!("no application {name:?} is up ({running})"),
                ))
            }
        }
    }

    fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let entries: Vec<Entry> = self.apps.locked().drain().map(|(_, e)| e).collect();
        for e in entries {
            e.app.stop();
        }
    }
}

/// Writes each monitor start and exit of application `app` to the state database (its own
/// connection: the recorder never waits for a request).
fn record(app: &str, store: &Path, events: &mpsc::Receiver<Event>) {
    let store = match Store::open(store) {
        Ok(s) => s,
        Err(e) => return log(&e.to_string()),
    };
    for event in events {
        let result = match event {
            Event::Started {
                service,
                pid,
                instance,
                start_ticks,
            } => match start_ticks {
                Some(start_ticks) => store.put_instance(
                    &InstanceRecord {
                        app: app.to_string(),
                        service,
                        pid,
                        start_ticks,
                    },
                    instance,
                ),
                // Already gone: nothing to remember.
                None => Ok(()),
            },
            Event::Exited { service, pid, .. } => store.remove_instance(app, &service, pid),
            Event::Healthy { .. } => Ok(()),
        };
        if let Err(e) = result {
            log(&e.to_string());
        }
    }
}
