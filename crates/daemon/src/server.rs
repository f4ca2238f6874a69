//! `sturdy daemon`: one per host and state directory. Runs applications ([`App`]), keeps
//! what is up in SQLite ([`Store`]) and answers the HTTP/JSON API of [`crate::api`] on a
//! unix socket (`STATE/sturdy.sock`, owner only).
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

use crate::api::{
    AppInfo, DaemonInfo, DownInfo, ErrorBody, InspectInfo, LogLine, LogsQuery, PublishedInfo,
    ServiceInfo, UpRequest,
};
use crate::console::timestamp;
use crate::stats::{self, ServiceStats};
use crate::store::{AppRecord, InstanceRecord, Store};
use crate::supervisor::{App, Event, Options, ServiceStatus, State};

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
    /// Serializes up and down (each may take a while; two at once on one name would race).
    changes: tokio::sync::Mutex<()>,
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
        changes: tokio::sync::Mutex::new(()),
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
        .route("/v1/daemon", get(daemon_info))
        .route("/v1/daemon/shutdown", post(shutdown))
        .route("/v1/apps", get(list).post(up))
        .route("/v1/apps/{app}", get(show).delete(down))
        .route("/v1/apps/{app}/stats", get(app_stats))
        .route("/v1/apps/{app}/logs", get(logs))
        .route("/v1/apps/{app}/services/{service}", get(inspect))
        .route("/v1/apps/{app}/services/{service}/{action}", post(act))
        .with_state(daemon.clone());
    let stop = async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return daemon.shutdown.notified().await;
        };
        tokio::select! {
            _ = term.recv() => log("SIGTERM: stopping"),
            _ = int.recv() => log("SIGINT: stopping"),
            _ = daemon.shutdown.notified() => log("shutdown requested: stopping"),
        }
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| other(format!("serving {}: {e}", socket.display())))
}

/// A failed request: its status and what to tell the user.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)
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
            match Plan::from_json(&r.plan) {
                Ok(plan) => match self.start(plan, r.created_at, stopped) {
                    Ok(_) => log(&format!("started {} again", r.name)),
                    Err(e) => log(&format!("cannot start {} again: {e}", r.name)),
                },
                Err(e) => log(&format!("cannot read the plan of {}: {e}", r.name)),
            }
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
        self.apps.lock().expect("apps").insert(
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
        let apps = self.apps.lock().expect("apps");
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
        let entries: Vec<Entry> = self
            .apps
            .lock()
            .expect("apps")
            .drain()
            .map(|(_, e)| e)
            .collect();
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
            } => match stats::start_ticks(pid) {
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

fn app_info(name: &str, app: &App, plan: &Plan, created_at: &str) -> AppInfo {
    let statuses = app.status();
    let error = app.start_error();
    let status = if error.is_some() {
        "failed"
    } else if statuses.iter().any(|s| s.state == State::Created) {
        "starting"
    } else {
        "running"
    };
    let published = app.published();
    AppInfo {
        name: name.to_string(),
        file: plan.file.display().to_string(),
        status: status.to_string(),
        error,
        created_at: created_at.to_string(),
        published: published
            .iter()
            .map(|(endpoint, addr)| PublishedInfo {
                endpoint: endpoint.clone(),
                addr: addr.to_string(),
            })
            .collect(),
        services: statuses
            .iter()
            .map(|s| service_info(plan, published, s))
            .collect(),
    }
}

fn service_info(
    plan: &Plan,
    published: &[(String, std::net::SocketAddr)],
    s: &ServiceStatus,
) -> ServiceInfo {
    let sp = plan
        .service(&s.name)
        .expect("status names planned services");
    let ports = sp
        .ports
        .iter()
        .map(|p| {
            let endpoint = format!("{}.{}", s.name, p.endpoint);
            let host = published
                .iter()
                .find(|(e, a)| *e == endpoint && (p.host_port == 0 || a.port() == p.host_port))
                .map(|(_, a)| a.to_string())
                .unwrap_or_else(|| format!("{}:{}", p.host_ip, p.host_port));
            format!("{host}->{}/tcp", p.guest_port)
        })
        .collect();
    ServiceInfo {
        name: s.name.clone(),
        state: match s.state {
            State::Exited(code) => format!("exited ({code})"),
            other => other.name().to_string(),
        },
        address: sp.ipv4.to_string(),
        pid: s.pid,
        instance: s.instance,
        restarts: s.restarts,
        last_exit: s.last_exit,
        started_at: s.started_at.map(timestamp),
        uptime_ms: s.started.map(|t| t.elapsed().as_millis() as u64),
        healthy_since: s.healthy_since.map(|t| timestamp(wall_clock(t))),
        waiting_for: s.waiting_for.clone(),
        last_probe_error: s.last_probe_error.clone(),
        ports,
    }
}

/// The wall-clock time of `at`, an instant in the past.
fn wall_clock(at: Instant) -> SystemTime {
    SystemTime::now()
        .checked_sub(at.elapsed())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

async fn daemon_info(Axum(d): Axum<Arc<Daemon>>) -> Json<DaemonInfo> {
    Json(info(&d))
}

fn info(d: &Daemon) -> DaemonInfo {
    let me = std::process::id();
    DaemonInfo {
        pid: me,
        version: env!("CARGO_PKG_VERSION").to_string(),
        state_dir: d.config.state_dir.display().to_string(),
        hvt: d.config.hvt.display().to_string(),
        apps: d.apps.lock().expect("apps").len(),
        rss_bytes: stats::of_service("", Some(me), None).rss_bytes,
    }
}

async fn shutdown(Axum(d): Axum<Arc<Daemon>>) -> Json<DaemonInfo> {
    let answer = info(&d);
    d.shutdown.notify_one();
    Json(answer)
}

async fn list(Axum(d): Axum<Arc<Daemon>>) -> Json<Vec<AppInfo>> {
    let mut apps: Vec<AppInfo> = d
        .apps
        .lock()
        .expect("apps")
        .iter()
        .map(|(name, e)| app_info(name, &e.app, &e.plan, &e.created_at))
        .collect();
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    Json(apps)
}

async fn show(Axum(d): Axum<Arc<Daemon>>, UrlPath(name): UrlPath<String>) -> ApiResult<AppInfo> {
    let (app, plan, created_at) = d.entry(&name)?;
    Ok(Json(app_info(&name, &app, &plan, &created_at)))
}

/// An application name is a directory name under STATE/apps.
fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "{name:?} is not a valid application name (1 to 64 of a-z, A-Z, 0-9, '-', '_', '.')"
            ),
        ))
    }
}

async fn up(Axum(d): Axum<Arc<Daemon>>, Json(req): Json<UpRequest>) -> ApiResult<AppInfo> {
    let plan = req.plan;
    let name = plan.name.clone();
    check_name(&name)?;
    let _change = d.changes.lock().await;
    let existing = d
        .apps
        .lock()
        .expect("apps")
        .get(&name)
        .map(|e| (e.app.clone(), e.plan.clone(), e.created_at.clone()));
    if let Some((app, old, created_at)) = existing {
        if old == plan && app.start_error().is_none() {
            return Ok(Json(app_info(&name, &app, &plan, &created_at)));
        }
        // Changed (or failed): recreated from the new plan, volumes kept.
        log(&format!("recreating {name}"));
        d.apps.lock().expect("apps").remove(&name);
        blocking(move || app.stop()).await?;
    }
    let created_at = timestamp(SystemTime::now());
    d.store
        .put_app(&AppRecord {
            name: name.clone(),
            file: plan.file.display().to_string(),
            plan: plan.to_json(),
            created_at: created_at.clone(),
        })
        .map_err(internal)?;
    let daemon = d.clone();
    let _ = d.store.clear_stopped(&name);
    let started = blocking(move || {
        daemon
            .start(plan.clone(), created_at, Vec::new())
            .map(|a| (a, plan))
    })
    .await?;
    match started {
        Ok((app, plan)) => {
            log(&format!("started {name}"));
            let created_at = d.entry(&name)?.2;
            Ok(Json(app_info(&name, &app, &plan, &created_at)))
        }
        Err(e) => {
            let _ = d.store.remove_app(&name);
            Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("cannot start {name}: {e}"),
            ))
        }
    }
}

#[derive(Deserialize)]
struct DownQuery {
    #[serde(default)]
    volumes: bool,
}

async fn down(
    Axum(d): Axum<Arc<Daemon>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<DownQuery>,
) -> ApiResult<DownInfo> {
    check_name(&name)?;
    let _change = d.changes.lock().await;
    let entry = d.apps.lock().expect("apps").remove(&name);
    let was_running = entry.is_some();
    let volumes_dir = d.app_dir(&name).join("volumes");
    if !(was_running || q.volumes && volumes_dir.is_dir()) {
        d.entry(&name)?;
    }
    if let Some(entry) = entry {
        blocking(move || entry.app.stop()).await?;
        log(&format!("stopped {name}"));
    }
    d.store.remove_app(&name).map_err(internal)?;
    // Its consoles go with it (they outlive daemons, not the application).
    let _ = std::fs::remove_dir_all(d.app_dir(&name).join("logs"));
    let mut volumes_removed = Vec::new();
    if q.volumes {
        if let Ok(dir) = std::fs::read_dir(&volumes_dir) {
            for f in dir.flatten() {
                let path = f.path();
                std::fs::remove_file(&path)
                    .map_err(|e| internal(format!("{}: {e}", path.display())))?;
                volumes_removed.push(path.display().to_string());
            }
        }
        let _ = std::fs::remove_dir(&volumes_dir);
        volumes_removed.sort();
    }
    let _ = std::fs::remove_dir(d.app_dir(&name));
    Ok(Json(DownInfo {
        name,
        was_running,
        volumes_removed,
    }))
}

async fn act(
    Axum(d): Axum<Arc<Daemon>>,
    UrlPath((name, service, action)): UrlPath<(String, String, String)>,
) -> ApiResult<AppInfo> {
    let (app, plan, created_at) = d.entry(&name)?;
    let worker = app.clone();
    let svc = service.clone();
    let result = match action.as_str() {
        "stop" => blocking(move || worker.stop_service(&svc)).await?,
        "start" => blocking(move || worker.start_service(&svc)).await?,
        "restart" => blocking(move || worker.restart_service(&svc)).await?,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no action {other:?} (there are: stop, start, restart)"),
            ))
        }
    };
    if result.is_ok() {
        // What the operator asked for outlives this daemon.
        let stopped = action == "stop";
        if let Err(e) = d.store.set_stopped(&name, &service, stopped) {
            log(&e.to_string());
        }
    }
    result.map_err(|e| match e {
        crate::Error::Config(why) => ApiError(StatusCode::NOT_FOUND, why),
        other => ApiError(StatusCode::CONFLICT, format!("{action} {service}: {other}")),
    })?;
    Ok(Json(app_info(&name, &app, &plan, &created_at)))
}

fn service_of<'a>(plan: &'a Plan, name: &str) -> Result<&'a sturdy_compose::ServicePlan, ApiError> {
    plan.service(name).ok_or_else(|| {
        let names: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "{} has no service {name:?} (it has: {})",
                plan.name,
                names.join(", ")
            ),
        )
    })
}

async fn inspect(
    Axum(d): Axum<Arc<Daemon>>,
    UrlPath((name, service)): UrlPath<(String, String)>,
) -> ApiResult<InspectInfo> {
    let (app, plan, _) = d.entry(&name)?;
    let sp = service_of(&plan, &service)?.clone();
    let status = app
        .status()
        .into_iter()
        .find(|s| s.name == service)
        .expect("planned");
    let stats = app
        .stats()
        .into_iter()
        .find(|s| s.service == service)
        .unwrap_or_default();
    let capabilities = plan
        .capabilities
        .iter()
        .filter(|c| c.consumer == service)
        .map(|c| {
            format!(
                "{}.{} -> {}:{}/{}",
                c.provider, c.endpoint, c.ipv4, c.port, c.proto
            )
        })
        .chain(
            plan.egress
                .iter()
                .filter(|e| e.consumer == service)
                .map(|e| format!("{} -> {}:{}/{} (egress)", e.name, e.ipv4, e.port, e.proto)),
        )
        .collect();
    let reachable_from = plan
        .capabilities
        .iter()
        .filter(|c| c.provider == service)
        .map(|c| format!("{} -> {}", c.consumer, c.endpoint))
        .chain(
            sp.ports
                .iter()
                .map(|p| format!("host {}:{} -> {}", p.host_ip, p.host_port, p.endpoint)),
        )
        .collect();
    Ok(Json(InspectInfo {
        app: name,
        status: service_info(&plan, app.published(), &status),
        plan: sp,
        capabilities,
        reachable_from,
        stats,
    }))
}

async fn app_stats(
    Axum(d): Axum<Arc<Daemon>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Vec<ServiceStats>> {
    let (app, _, _) = d.entry(&name)?;
    Ok(Json(blocking(move || app.stats()).await?))
}

async fn logs(
    Axum(d): Axum<Arc<Daemon>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let (app, plan, _) = d.entry(&name)?;
    let services: Vec<String> = match &q.service {
        Some(s) => vec![service_of(&plan, s)?.name.clone()],
        None => plan.services.iter().map(|s| s.name.clone()).collect(),
    };
    let keep = |l: &LogLine| {
        q.since
            .as_deref()
            .is_none_or(|since| l.time.as_str() >= since)
    };
    let mut seen = Vec::new();
    let mut first = Vec::new();
    for s in &services {
        let (lines, count) = app.logs_after(s, 0).unwrap_or_default();
        seen.push(count);
        let mut lines: Vec<LogLine> = lines
            .iter()
            .map(|l| LogLine::parse(s, l))
            .filter(keep)
            .collect();
        if let Some(tail) = q.tail {
            lines.drain(..lines.len().saturating_sub(tail));
        }
        first.extend(lines);
    }
    // One timeline: stable, so a service's lines keep their order.
    first.sort_by(|a, b| a.time.cmp(&b.time));
    let mut body = String::new();
    for l in &first {
        body.push_str(&ndjson(l));
    }
    if !q.follow {
        return Ok(([("content-type", "application/x-ndjson")], body).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(256);
    let _ = tx.try_send(Ok(Bytes::from(body)));
    std::thread::spawn(move || {
        while !tx.is_closed() && !app.is_stopped() {
            std::thread::sleep(FOLLOW_POLL);
            let mut chunk = String::new();
            for (s, seen) in services.iter().zip(seen.iter_mut()) {
                let Some((lines, count)) = app.logs_after(s, *seen) else {
                    continue;
                };
                *seen = count;
                for l in lines {
                    chunk.push_str(&ndjson(&LogLine::parse(s, &l)));
                }
            }
            if !chunk.is_empty() && tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                break;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok((
        [("content-type", "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn ndjson(line: &LogLine) -> String {
    let mut s = serde_json::to_string(line).expect("a log line serializes");
    s.push('\n');
    s
}
