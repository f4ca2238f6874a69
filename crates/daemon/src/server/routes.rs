//! The API's handlers: one function per route of [`crate::api`], each answering JSON (or
//! NDJSON for logs) and failing with an [`ApiError`] a client can show as is.

use super::*;
use axum::extract::rejection::BytesRejection;

/// A failed request: its status and what to tell the user.
pub(super) struct ApiError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

pub(super) type ApiResult<T> = Result<Json<T>, ApiError>;

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The answer for an application whose services are being stopped.
fn stopping(app: &str) -> ApiError {
    ApiError(StatusCode::CONFLICT, format!("{app} is being stopped"))
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)
}

pub(super) fn app_info(name: &str, app: &App, plan: &Plan, created_at: &str) -> AppInfo {
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
        start_order: plan.start_order.clone(),
        up_to_date: false,
    }
}

pub(super) fn service_info(
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
        state: match (s.state, s.last_end.and_then(|e| e.out_of_memory_mib)) {
            (State::Exited(_), Some(limit)) => format!("killed: out of memory (limit {limit} MiB)"),
            (State::Exited(code), None) => format!("exited ({code})"),
            (other, _) => other.name().to_string(),
        },
        address: sp.ipv4.to_string(),
        pid: s.pid,
        instance: s.instance,
        restarts: s.restarts,
        last_exit: s.last_exit,
        last_end: s.last_end.map(|e| e.to_string()),
        started_at: s.started_at.map(timestamp),
        uptime_ms: s.started.map(|t| t.elapsed().as_millis() as u64),
        healthy_since: s.healthy_since.map(|t| timestamp(wall_clock(t))),
        waiting_for: s.waiting_for.clone(),
        last_probe_error: s.last_probe_error.clone(),
        ports,
        depends_on: sp.depends_on.clone(),
        next_start_in_ms: s
            .restart_at
            .map(|at| at.saturating_duration_since(Instant::now()).as_millis() as u64),
    }
}

/// The wall-clock time of `at`, an instant in the past.
fn wall_clock(at: Instant) -> SystemTime {
    SystemTime::now()
        .checked_sub(at.elapsed())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

pub(super) async fn daemon_info(Axum(d): Axum<Arc<Daemon>>) -> Json<DaemonInfo> {
    Json(info(&d))
}

fn info(d: &Daemon) -> DaemonInfo {
    let me = std::process::id();
    DaemonInfo {
        pid: me,
        version: env!("CARGO_PKG_VERSION").to_string(),
        state_dir: d.config.state_dir.display().to_string(),
        hvt: d.config.hvt.display().to_string(),
        apps: d.apps.locked().len(),
        rss_bytes: stats::of_service("", Some(me), None).rss_bytes,
    }
}

pub(super) async fn shutdown(Axum(d): Axum<Arc<Daemon>>) -> Json<DaemonInfo> {
    let answer = info(&d);
    d.shutdown.notify_one();
    Json(answer)
}

pub(super) async fn list(Axum(d): Axum<Arc<Daemon>>) -> ApiResult<Vec<AppInfo>> {
    // Copied out, so that an application busy with a slow stop or start (its supervisor's
    // lock held) holds up neither the table nor this server's workers.
    let entries: Vec<(String, Arc<App>, Plan, String)> = d
        .apps
        .locked()
        .iter()
        .map(|(name, e)| {
            (
                name.clone(),
                e.app.clone(),
                e.plan.clone(),
                e.created_at.clone(),
            )
        })
        .collect();
    let mut apps: Vec<AppInfo> = blocking(move || {
        entries
            .iter()
            .map(|(name, app, plan, created_at)| app_info(name, app, plan, created_at))
            .collect()
    })
    .await?;
    apps.extend(unrestored(&d));
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(apps))
}

/// The applications the daemon could not bring back, as failed ones without services.
fn unrestored(d: &Daemon) -> Vec<AppInfo> {
    d.unrestored
        .locked()
        .iter()
        .map(|(name, (file, why))| AppInfo {
            name: name.clone(),
            file: file.clone(),
            status: "failed".into(),
            error: Some(why.clone()),
            created_at: String::new(),
            published: Vec::new(),
            services: Vec::new(),
            start_order: Vec::new(),
            up_to_date: false,
        })
        .collect()
}

pub(super) async fn show(
    Axum(d): Axum<Arc<Daemon>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<AppInfo> {
    if let Some(failed) = unrestored(&d).into_iter().find(|a| a.name == name) {
        return Ok(Json(failed));
    }
    let (app, plan, created_at) = d.entry(&name)?;
    Ok(Json(
        blocking(move || app_info(&name, &app, &plan, &created_at)).await?,
    ))
}

/// The plan of an `up` request, checked before anything is built from it: every name as the
/// application file allows it (names become file names under the state directory), images
/// absolute paths. A request that is not one is a 400 that says why.
fn up_request(body: Result<Bytes, BytesRejection>) -> Result<UpRequest, ApiError> {
    let bad = |why: String| ApiError(StatusCode::BAD_REQUEST, why);
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request is larger than the {} MiB the daemon accepts for a plan \
                     (application files are at most {} MiB)",
                    super::REQUEST_MAX >> 20,
                    sturdy_compose::FILE_MAX >> 20
                ),
            )
        } else {
            bad(format!("cannot read the request: {e}"))
        }
    })?;
    let req: UpRequest =
        serde_json::from_slice(&body).map_err(|e| bad(format!("not a plan: {e}")))?;
    let plan = &req.plan;
    plan.check()
        .map_err(|e| bad(format!("not a valid plan: {e}")))?;
    if let Some(s) = plan.services.iter().find(|s| !s.image.is_absolute()) {
        return Err(bad(format!(
            "not a valid plan: service '{}': its image {} is not an absolute path",
            s.name,
            s.image.display()
        )));
    }
    Ok(req)
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

pub(super) async fn up(
    Axum(d): Axum<Arc<Daemon>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<AppInfo> {
    let plan = up_request(body)?.plan;
    let name = plan.name.clone();
    check_name(&name)?;
    // Before anything is stopped or stored: an image that cannot be read changes nothing.
    let checked = plan.clone();
    blocking(move || App::check_images(&checked, super::IMAGE_READ_TIMEOUT))
        .await?
        .map_err(|e| {
            ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("cannot start {name}: {e}"),
            )
        })?;
    let _change = d.changes.lock().await;
    d.unrestored.locked().remove(&name);
    let existing = d
        .apps
        .locked()
        .get(&name)
        .map(|e| (e.app.clone(), e.plan.clone(), e.created_at.clone()));
    if let Some((app, old, created_at)) = existing {
        if old == plan && app.start_error().is_none() {
            let mut info = app_info(&name, &app, &plan, &created_at);
            info.up_to_date = true;
            return Ok(Json(info));
        }
        // Changed (or failed): recreated from the new plan, volumes kept.
        log(&format!("recreating {name}"));
        d.apps.locked().remove(&name);
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
pub(super) struct DownQuery {
    #[serde(default)]
    volumes: bool,
}

pub(super) async fn down(
    Axum(d): Axum<Arc<Daemon>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<DownQuery>,
) -> ApiResult<DownInfo> {
    check_name(&name)?;
    let _change = d.changes.lock().await;
    let entry = d.apps.locked().remove(&name);
    let was_running = entry.is_some();
    let unrestored = d.unrestored.locked().remove(&name).is_some();
    let volumes_dir = d.app_dir(&name).join("volumes");
    if !(was_running || unrestored || q.volumes && volumes_dir.is_dir()) {
        d.entry(&name)?;
    }
    // Forgotten first: a daemon killed while the application stops must not bring it back
    // (its monitors die with this daemon anyway).
    d.store.remove_app(&name).map_err(internal)?;
    if let Some(entry) = entry {
        blocking(move || entry.app.stop()).await?;
        log(&format!("stopped {name}"));
    }
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

pub(super) async fn act(
    Axum(d): Axum<Arc<Daemon>>,
    UrlPath((name, service, action)): UrlPath<(String, String, String)>,
) -> ApiResult<AppInfo> {
    // One at a time: the stopped flag is stored in the order the requests were carried out,
    // so that it says what a new daemon must restore.
    let _act = d.acts.lock().await;
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
    Ok(Json(
        blocking(move || app_info(&name, &app, &plan, &created_at)).await?,
    ))
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

pub(super) async fn inspect(
    Axum(d): Axum<Arc<Daemon>>,
    UrlPath((name, service)): UrlPath<(String, String)>,
) -> ApiResult<InspectInfo> {
    let (app, plan, _) = d.entry(&name)?;
    let sp = service_of(&plan, &service)?.clone();
    let (statuses, stats) = {
        let app = app.clone();
        blocking(move || (app.status(), app.stats())).await?
    };
    // Missing while the application is being stopped (its services are taken meanwhile).
    let status = statuses
        .into_iter()
        .find(|s| s.name == service)
        .ok_or_else(|| stopping(&name))?;
    let stats = stats
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
        // Health probes come from the gateway, inside the fabric, not from a host port.
        .chain(sp.healthcheck.iter().filter_map(|hc| {
            sp.provides
                .iter()
                .find(|e| e.port == hc.port && e.proto == "tcp")
                .map(|e| format!("gateway -> {} (health probes)", e.name))
        }))
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

pub(super) async fn app_stats(
    Axum(d): Axum<Arc<Daemon>>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Vec<ServiceStats>> {
    let (app, _, _) = d.entry(&name)?;
    Ok(Json(blocking(move || app.stats()).await?))
}

pub(super) async fn logs(
    Axum(d): Axum<Arc<Daemon>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let (app, plan, _) = d.entry(&name)?;
    let services: Vec<String> = match &q.service {
        Some(list) => list
            .split(',')
            .map(|s| service_of(&plan, s).map(|s| s.name.clone()))
            .collect::<Result<_, _>>()?,
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

#[derive(Deserialize)]
pub(super) struct CaptureQuery {
    service: String,
    uses: Option<String>,
    seconds: Option<f64>,
    frames: Option<u64>,
}

/// A pcap stream of a service's port, or of one of its capabilities (`uses=db.kv`, or `db`
/// when db has one endpoint the service may use), until `seconds` or `frames`, or until the
/// client goes away.
pub(super) async fn capture(
    Axum(d): Axum<Arc<Daemon>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<CaptureQuery>,
) -> Result<Response, ApiError> {
    let (app, plan, _) = d.entry(&name)?;
    let service = service_of(&plan, &q.service)?.name.clone();
    let target = match &q.uses {
        None => CaptureTarget::Port(app.port_of(&service).ok_or_else(|| stopping(&name))?),
        Some(uses) => {
            let (provider, endpoint) = match uses.split_once('.') {
                Some((p, e)) => (p, Some(e)),
                None => (uses.as_str(), None),
            };
            let held: Vec<_> = plan
                .capabilities
                .iter()
                .filter(|c| c.consumer == service)
                .collect();
            let matching: Vec<_> = held
                .iter()
                .filter(|c| c.provider == provider && endpoint.is_none_or(|e| c.endpoint == e))
                .collect();
            match matching.as_slice() {
                [one] => CaptureTarget::Capability(Capability::new(
                    &one.consumer,
                    &one.provider,
                    &one.endpoint,
                )),
                [] => {
                    let names: Vec<String> = held
                        .iter()
                        .map(|c| format!("{}.{}", c.provider, c.endpoint))
                        .collect();
                    return Err(ApiError(
                        StatusCode::NOT_FOUND,
                        format!(
                            "{service} holds no capability {uses:?} (it holds: {})",
                            if names.is_empty() {
                                "none".to_string()
                            } else {
                                names.join(", ")
                            }
                        ),
                    ));
                }
                many => {
                    let names: Vec<String> = many
                        .iter()
                        .map(|c| format!("{}.{}", c.provider, c.endpoint))
                        .collect();
                    return Err(ApiError(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "{service} holds several capabilities to {uses}: name one of {}",
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4096);
    let frames = Arc::new(AtomicU64::new(0));
    let sink = Streamed::new(tx.clone(), frames.clone(), q.frames).map_err(internal)?;
    let id = app.capture(target, Box::new(sink)).map_err(internal)?;
    let deadline = q
        .seconds
        .map(|s| Instant::now() + Duration::from_secs_f64(s.clamp(0.0, 86_400.0)));
    std::thread::spawn(move || {
        while !tx.is_closed()
            && !app.is_stopped()
            && deadline.is_none_or(|d| Instant::now() < d)
            && q.frames.is_none_or(|n| frames.load(Ordering::Relaxed) < n)
        {
            std::thread::sleep(CAPTURE_POLL);
        }
        // The sink goes with the capture, and with `tx` the last sender: the answer ends.
        app.stop_capture(id);
    });
    let stream =
        tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |chunk| {
            Ok::<_, Infallible>(Bytes::from(chunk))
        });
    Ok((
        [("content-type", "application/vnd.tcpdump.pcap")],
        Body::from_stream(stream),
    )
        .into_response())
}
