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
use std::os::unix::fs::PermissionsExt;
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
/// How often a capture looks at its limits and its reader.
const CAPTURE_POLL: Duration = Duration::from_millis(50);

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
}

/// Runs the daemon until SIGTERM, SIGINT or `POST /v1/daemon/shutdown`; then stops every
/// application (they stay recorded as up and start again with the next daemon).
pub fn run(config: Config) -> Result<(), DaemonError> {
    let dir = &config.state_dir;
    std::fs::create_dir_all(dir).map_err(|e| other(format!("{}: {e}", dir.display())))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let socket = dir.join(SOCKET);
    if socket.as_os_str().len() > SOCKET_PATH_MAX {
        return Err(other(format!(
            "the socket path {} is longer than the {SOCKET_PATH_MAX} bytes a unix socket \
             allows: choose a shorter --state-dir",
            socket.display()
        )));
    }
    let _lock = lock(dir)?;
    std::fs::write(dir.join(PID_FILE), format!("{}\n", std::process::id()))
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
    });
    daemon.bring_back();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| other(format!("cannot start the daemon's runtime: {e}")))?;
    let result = runtime.block_on(serve(daemon.clone(), &socket));
    let _ = std::fs::remove_file(&socket);
    daemon.stop_all();
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    log(&format!("stopped (pid {})", std::process::id()));
    result
}

/// Takes the state directory's lock, held for the daemon's life.
fn lock(dir: &Path) -> Result<File, DaemonError> {
    let path = dir.join(LOCK);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
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

/// A line in the daemon's log (its stderr).
fn log(what: &str) {
    eprintln!("{} sturdy daemon: {what}", timestamp(SystemTime::now()));
}

async fn serve(daemon: Arc<Daemon>, socket: &Path) -> Result<(), DaemonError> {
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)
        .map_err(|e| other(format!("cannot listen on {}: {e}", socket.display())))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| other(format!("{}: {e}", socket.display())))?;
    log(&format!(
        "listening on {} (pid {})",
        socket.display(),
        std::process::id()
    ));
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
        .with_state(daemon.clone());
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
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| other(format!("serving {}: {e}", socket.display())))
}

impl Daemon {
    /// Starts the applications recorded as up.
    fn bring_back(&self) {
        let records = match self.store.apps() {
            Ok(r) => r,
            Err(e) => {
                log(&e.to_string());
                return;
            }
        };
        for r in records {
            let stopped = self.store.stopped(&r.name).unwrap_or_default();
            let why = match Plan::from_json(&r.plan) {
                Ok(plan) => match self.start(plan, r.created_at.clone(), stopped) {
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
