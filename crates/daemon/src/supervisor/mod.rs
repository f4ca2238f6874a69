//! The application: its fabric and gateway, one supervised instance per service.
//!
//! One supervision thread per application does every change to its monitors: it starts the
//! services in start order as their dependencies allow, reaps exited instances, restarts them
//! as their policies say, and carries out stop/start/restart requests. Monitors die with the
//! thread that spawned them (see `os::inherit`), and this thread lives as long as the
//! application, so a monitor never outlives its supervisor. That loop is in `run`; each
//! health-checked service's probes run on a thread of their own (`probe`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use sturdy_compose::{Condition, Plan, Probe, ServicePlan};
use sturdy_fabric::port::{self, FabricHandle, Port};
use sturdy_fabric::{
    gateway, CaptureId, CaptureTarget, Fabric, FrameSink, GatewayHandle, PortId, Readiness,
};

use crate::console::{Console, DEFAULT_CAPACITY};
use crate::instance::{Ended, Instance};
use crate::locks::LockExt;
use crate::restart::{Backoff, Decision, Tracker};
use crate::sandbox::{self, cgroup::Limits, Sandbox};
use crate::stats::{self, ServiceStats};
use crate::Error;

mod probe;
mod run;

/// How often the supervisor looks at its monitors when nothing wakes it.
const TICK: Duration = Duration::from_millis(20);
/// How long a stop/start/restart request may take before the caller is told.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of [`App::create`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Restart backoff and crash-loop limits.
    pub backoff: Backoff,
    /// How long a service waits for a `service_healthy` dependency.
    pub dependency_timeout: Duration,
    /// Console bytes kept per service.
    pub console_capacity: usize,
    /// Where to send [`Event`]s (instances started, services becoming healthy), for progress
    /// shown while starting and for recording monitors; `None`: nowhere.
    pub events: Option<Sender<Event>>,
    /// Services to create stopped (not started until asked): those an operator stopped
    /// before the supervisor restarted.
    pub stopped: Vec<String>,
}

/// Something that happened to a service, sent to [`Options::events`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An instance of `service` was started (its first, or a restart).
    Started {
        /// The service.
        service: String,
        /// Its monitor's process id.
        pid: u32,
        /// 1 for its first instance, then one more per restart.
        instance: u64,
        /// When the monitor started, in clock ticks after boot (read before it can be reaped,
        /// so that the pid and this name one process); `None` if it had already exited.
        start_ticks: Option<u64>,
    },
    /// `service`'s health check passed for the first time since its instance started.
    Healthy {
        /// The service.
        service: String,
    },
    /// An instance of `service` exited (or was stopped) with `status`.
    Exited {
        /// The service.
        service: String,
        /// Its monitor's process id.
        pid: u32,
        /// Exit status (128 + signal if killed).
        status: i32,
    },
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backoff: Backoff::default(),
            dependency_timeout: Duration::from_secs(60),
            console_capacity: DEFAULT_CAPACITY,
            events: None,
            stopped: Vec::new(),
        }
    }
}

/// A service's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not started yet: waiting for its turn or its dependencies.
    Created,
    /// Running, its health check not passed yet.
    Starting,
    /// Running, no health check.
    Running,
    /// Running, its health check passes.
    Healthy,
    /// Running, its health check failed `retries` times in a row.
    Unhealthy,
    /// Exited; started again after its backoff.
    Restarting,
    /// Exited with this status (128 + signal if killed), not restarted.
    Exited(i32),
    /// Restarted too often in a short time: no longer restarted.
    CrashLoop,
    /// Stopped on request; started again only on request.
    Stopped,
}

impl State {
    /// Its name as `sturdy ps` and the API show it.
    pub fn name(&self) -> &'static str {
        match self {
            State::Created => "created",
            State::Starting => "starting",
            State::Running => "running",
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
            State::Restarting => "restarting",
            State::Exited(_) => "exited",
            State::CrashLoop => "crash-loop",
            State::Stopped => "stopped",
        }
    }

    /// Whether an instance runs in this state.
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            State::Starting | State::Running | State::Healthy | State::Unhealthy
        )
    }
}

/// A service as [`App::status`] reports it.
#[derive(Clone, Debug)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: State,
    /// The running monitor's process id.
    pub pid: Option<u32>,
    /// Instances started so far (the current one's number).
    pub instance: u64,
    /// Times it was restarted by its policy.
    pub restarts: u32,
    /// The last instance's exit status (128 + signal if killed).
    pub last_exit: Option<i32>,
    /// How the last instance ended (its status, and whether it ran out of memory).
    pub last_end: Option<Ended>,
    /// When its first instance started.
    pub first_started: Option<Instant>,
    /// When its current instance started.
    pub started: Option<Instant>,
    /// When its current instance started, as wall-clock time.
    pub started_at: Option<SystemTime>,
    /// When its health check first passed for the current instance.
    pub healthy_since: Option<Instant>,
    /// Why the last probe failed, if it did.
    pub last_probe_error: Option<String>,
    /// While [`State::Created`]: what it waits for (`db to be healthy`).
    pub waiting_for: Option<String>,
    /// While restarting or crash-looping: when its next instance starts.
    pub restart_at: Option<Instant>,
}

/// A request the supervision thread carries out for a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Stop,
    Start,
    Restart,
}

struct Service {
    plan: ServicePlan,
    /// Whether its image declares its NIC (a unikernel without one runs off the fabric).
    networked: bool,
    /// Monitor arguments; `{fd}` is the NIC's fd.
    args: Vec<String>,
    port: PortId,
    console: Arc<Mutex<Console>>,
    tracker: Tracker,
    backoff: Backoff,
    instance: Option<Instance>,
    /// Counts instances, so probe results of an old one are ignored.
    generation: u64,
    /// What the gateway was last told of it (published ports reset clients of a service
    /// that is not ready).
    readiness: Option<Readiness>,
    state: State,
    restarts: u32,
    last_exit: Option<i32>,
    last_end: Option<Ended>,
    restart_at: Option<Instant>,
    first_started: Option<Instant>,
    started_at: Option<SystemTime>,
    healthy_since: Option<Instant>,
    failures: u32,
    last_probe_error: Option<String>,
    waiting_for: Option<String>,
    /// Requests waiting for the supervision thread, in arrival order, each with its caller's
    /// channel for the result (concurrent requests each get their own answer).
    requests: Vec<(Request, mpsc::SyncSender<Result<(), String>>)>,
}

/// What the supervision thread and the callers share.
struct Inner {
    services: Vec<Service>,
    /// Indexes (into `services`) of services not started yet, in start order.
    pending: Vec<usize>,
    /// Why the start failed (a dependency), if it did.
    start_error: Option<Error>,
}

struct Shared {
    /// The application's name.
    app: String,
    inner: Mutex<Inner>,
    fabric: Mutex<Option<FabricHandle>>,
    /// Shared with the probe threads (a probe waits for its answer without a lock).
    gateway: Mutex<Option<Arc<GatewayHandle>>>,
    hvt: PathBuf,
    stop: AtomicBool,
    /// A thread of the application panicked: its supervision cannot be trusted any more
    /// ([`guarded`]); the reason is the start error.
    failed: AtomicBool,
    events: Option<Sender<Event>>,
    /// Wakes the supervision thread before its tick (a request, a service turned healthy).
    wake: Mutex<Sender<()>>,
    created: Instant,
    dependency_timeout: Duration,
}

/// Runs `body`, a thread of the application. If it panics (a bug), the application is marked
/// failed with the reason, which `ps` shows and after which `up` recreates it, and the requests
/// waiting for the supervision thread are answered with it: a supervisor that died must not look
/// like one that runs, nor keep callers waiting for answers that never come.
fn guarded(shared: &Shared, what: &str, body: impl FnOnce()) {
    let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) else {
        return;
    };
    let why = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    let error =
        format!("internal error: {what} panicked ({why}); `sturdy up` recreates the application");
    shared.failed.store(true, Ordering::SeqCst);
    let mut inner = shared.lock();
    inner.start_error.get_or_insert(Error::Io(error.clone()));
    for s in inner.services.iter_mut() {
        for (_, reply) in s.requests.drain(..) {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.locked()
    }

    fn wake(&self) {
        let _ = self.wake.locked().send(());
    }

    fn send(&self, event: Event) {
        if let Some(events) = &self.events {
            // A receiver gone is not the supervisor's problem.
            let _ = events.send(event);
        }
    }

    /// Starts an instance of `s` on a fresh fabric port.
    fn launch(&self, s: &mut Service) -> Result<(), Error> {
        let mut fd = None;
        if s.networked {
            let (io, guest) = Port::pair().map_err(|e| Error::Io(format!("fabric port: {e}")))?;
            let fabric = self.fabric.locked();
            let fabric = fabric.as_ref().ok_or(Error::Stopped)?;
            let _ = fabric.detach(s.port);
            fabric
                .attach(s.port, io)
                .map_err(|e| Error::Io(format!("attach {}: {e}", s.plan.name)))?;
            fd = Some(guest);
        }
        let limits = Limits {
            cpus_milli: s.plan.cpus_milli,
            memory: sandbox::memory_limit(s.plan.mem_mib()),
        };
        let confined = Sandbox::shared()
            .and_then(|sb| sb.confine(&self.app, &s.plan.name, s.generation + 1, limits))
            .map_err(|e| Error::Io(format!("{}: {e}", s.plan.name)))?;
        let instance =
            Instance::spawn(&self.hvt, &s.args, fd, confined, &s.console).map_err(|e| {
                Error::Io(format!(
                    "spawn {} for {}: {e}",
                    self.hvt.display(),
                    s.plan.name
                ))
            })?;
        s.console.locked().push(
            "sturdy",
            &format!(
                "started instance {} (pid {})",
                s.generation + 1,
                instance.pid
            ),
        );
        s.generation += 1;
        self.send(Event::Started {
            service: s.plan.name.clone(),
            pid: instance.pid,
            instance: s.generation,
            start_ticks: crate::stats::start_ticks(instance.pid),
        });
        s.first_started.get_or_insert(instance.started);
        s.started_at = Some(SystemTime::now());
        s.instance = Some(instance);
        s.healthy_since = None;
        s.failures = 0;
        s.last_probe_error = None;
        s.restart_at = None;
        s.waiting_for = None;
        s.state = if s.plan.healthcheck.is_some() {
            State::Starting
        } else {
            State::Running
        };
        Ok(())
    }

    /// Kills `s`'s instance, if any, and records its end.
    fn kill(&self, s: &mut Service) {
        if let Some(instance) = s.instance.take() {
            let pid = instance.pid;
            let ended = instance.kill();
            let status = ended.status;
            s.last_exit = Some(status);
            s.last_end = Some(ended);
            s.healthy_since = None;
            self.send(Event::Exited {
                service: s.plan.name.clone(),
                pid,
                status,
            });
        }
        s.restart_at = None;
    }
}

/// A running application. Shareable between threads; every method takes `&self`.
pub struct App {
    name: String,
    shared: Arc<Shared>,
    published: Vec<(String, SocketAddr)>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl App {
    /// Starts `plan` with default [`Options`]: see [`start_with`](Self::start_with).
    pub fn start(plan: &Plan, hvt: &Path, state_dir: &Path) -> Result<App, Error> {
        App::start_with(plan, hvt, state_dir, Options::default())
    }

    /// [`create`](Self::create)s the application and waits until every service is started
    /// ([`wait_started`](Self::wait_started)); on failure stops it and returns why.
    pub fn start_with(
        plan: &Plan,
        hvt: &Path,
        state_dir: &Path,
        options: Options,
    ) -> Result<App, Error> {
        let app = App::create(plan, hvt, state_dir, options)?;
        match app.wait_started() {
            Ok(()) => Ok(app),
            Err(e) => {
                app.stop();
                Err(e)
            }
        }
    }

    /// Reads and checks the image of every service of `plan` (a regular file, a unikernel
    /// sturdy can run, with the NIC its endpoints need), giving up after `timeout`: a file on
    /// a hung network mount must not hold the caller. The reads go on a thread of their own,
    /// left behind if it does not return.
    pub fn check_images(plan: &Plan, timeout: Duration) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel();
        let services: Vec<_> = plan
            .services
            .iter()
            .map(|s| (s.clone(), has_egress(plan, &s.name)))
            .collect();
        std::thread::Builder::new()
            .name("image-check".into())
            .spawn(move || {
                for (s, egress) in &services {
                    let result = image_has_nic(s, *egress).map(|_| ());
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| Error::Io(format!("cannot start a thread to read images: {e}")))?;
        let deadline = Instant::now() + timeout;
        // The thread reads them in order: the one not answered is the one it is stuck on.
        for s in &plan.services {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(Error::Io(format!(
                        "service {}: reading its image {} took longer than {timeout:?}: is it \
                         on a file system that does not answer?",
                        s.name,
                        s.image.display()
                    )))
                }
            }
        }
        Ok(())
    }

    /// Creates the volume files under `state_dir/volumes` (sparse, kept if they exist) and
    /// opens each service's console log `state_dir/logs/SERVICE.log` (continuing it), starts
    /// the fabric and gateway and the supervision thread, and returns: the services
    /// are then started in start order, each once its dependencies allow (`service_started`:
    /// the dependency was started; `service_healthy`: its health check passed). Their
    /// progress shows in [`status`](Self::status) and [`Options::events`].
    pub fn create(
        plan: &Plan,
        hvt: &Path,
        state_dir: &Path,
        options: Options,
    ) -> Result<App, Error> {
        if !hvt.is_file() {
            return Err(Error::Config(format!("no monitor at {}", hvt.display())));
        }
        let volumes = state_dir.join("volumes");
        std::fs::create_dir_all(&volumes)
            .map_err(|e| Error::Io(format!("{}: {e}", volumes.display())))?;
        let mut volume_paths = Vec::new();
        for v in &plan.volumes {
            let path = volumes.join(format!("{}.img", v.name));
            if !path.exists() {
                std::fs::File::create(&path)
                    .and_then(|f| f.set_len(v.size))
                    .map_err(|e| Error::Io(format!("volume {}: {e}", path.display())))?;
            }
            volume_paths.push((v.name.clone(), path));
        }

        let mut fabric_plan = plan
            .fabric()
            .map_err(|e| Error::Config(format!("fabric plan: {e}")))?;
        // Index of each publication in the fabric plan (and so in the gateway's list): the
        // plan ignores a publication made twice.
        let index = |fabric_plan: &sturdy_fabric::Plan, host: SocketAddr, s: &str, e: &str| {
            fabric_plan
                .published
                .iter()
                .position(|p| p.host == host && p.service == s && p.endpoint == e)
                .expect("just published")
        };
        let mut publications = Vec::new();
        for s in &plan.services {
            for p in &s.ports {
                let host = SocketAddr::from((p.host_ip, p.host_port));
                fabric_plan
                    .publish(host, &format!("{}.{}", s.name, p.endpoint))
                    .map_err(|e| Error::Config(format!("publish {host}: {e}")))?;
                fabric_plan.limit_ingress(host, p.limits());
                publications.push(index(&fabric_plan, host, &s.name, &p.endpoint));
            }
        }
        // Health probes are made by the gateway itself, from inside the fabric: a tcp one
        // waits for the guest's SYN-ACK or reset, an http one for its status line. Nothing is
        // published on the host for them: the endpoint is declared probed, which lets the
        // gateway (and no one else) reach it.
        let mut probed = Vec::new();
        for s in &plan.services {
            let Some(hc) = &s.healthcheck else { continue };
            let endpoint = s
                .provides
                .iter()
                .find(|e| e.port == hc.port && e.proto == "tcp")
                .ok_or_else(|| {
                    Error::Config(format!(
                        "service {}: its healthcheck port {} is not a tcp endpoint it provides",
                        s.name, hc.port
                    ))
                })?;
            let target = format!("{}.{}", s.name, endpoint.name);
            fabric_plan
                .probe(&target)
                .map_err(|e| Error::Config(format!("probe {target}: {e}")))?;
            probed.push(s.name.clone());
        }

        let fabric = Fabric::new(fabric_plan.clone(), Default::default())
            .map_err(|e| Error::Config(format!("fabric: {e}")))?;
        let fabric = port::spawn(fabric).map_err(|e| Error::Io(format!("fabric: {e}")))?;
        let gw = match gateway::spawn(&fabric_plan, &fabric) {
            Ok(gw) => gw,
            Err(e) => {
                let _ = fabric.stop();
                return Err(Error::Io(format!("gateway: {e}")));
            }
        };
        let all = gw.published().to_vec();
        let published = publications.iter().map(|&i| all[i].clone()).collect();

        let mut services = Vec::new();
        for s in &plan.services {
            let log = state_dir.join("logs").join(format!("{}.log", s.name));
            let console = Console::with_file(options.console_capacity, &log)
                .map_err(|e| Error::Io(format!("console log {}: {e}", log.display())));
            let (networked, console) =
                match image_has_nic(s, has_egress(plan, &s.name)).and_then(|n| Ok((n, console?))) {
                    Ok(found) => found,
                    Err(e) => {
                        gw.stop();
                        let _ = fabric.stop();
                        return Err(e);
                    }
                };
            let mut args = vec![format!("--mem={}", s.mem_mib())];
            for a in &s.volumes {
                let path = &volume_paths
                    .iter()
                    .find(|(n, _)| *n == a.volume)
                    .ok_or_else(|| Error::Config(format!("no volume {}", a.volume)))?
                    .1;
                args.push(format!("--block:{}={}", a.device, path.display()));
            }
            let net = fabric_plan
                .monitor_net_args(&s.name, 0)
                .map_err(|e| Error::Config(e.to_string()))?;
            if networked {
                args.push(format!("--net:{}=@{{fd}}", s.nic));
                args.push(net[1].clone());
            }
            args.push(s.image.display().to_string());
            args.extend(s.args.iter().cloned());
            let port = fabric_plan.service(&s.name).expect("planned").port;
            services.push(Service {
                plan: s.clone(),
                networked,
                args,
                port,
                console: Arc::new(Mutex::new(console)),
                tracker: Tracker::new(s.restart, options.backoff),
                backoff: options.backoff,
                instance: None,
                generation: 0,
                readiness: None,
                state: if options.stopped.contains(&s.name) {
                    State::Stopped
                } else {
                    State::Created
                },
                restarts: 0,
                last_exit: None,
                last_end: None,
                restart_at: None,
                first_started: None,
                started_at: None,
                healthy_since: None,
                failures: 0,
                last_probe_error: None,
                waiting_for: None,
                requests: Vec::new(),
            });
        }
        let pending = plan
            .start_order
            .iter()
            .map(|name| {
                services
                    .iter()
                    .position(|s| s.plan.name == *name)
                    .expect("start order names services")
            })
            .collect();

        let (wake, woken) = mpsc::channel();
        let shared = Arc::new(Shared {
            app: plan.name.clone(),
            inner: Mutex::new(Inner {
                services,
                pending,
                start_error: None,
            }),
            fabric: Mutex::new(Some(fabric)),
            gateway: Mutex::new(Some(Arc::new(gw))),
            hvt: hvt.to_path_buf(),
            stop: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            events: options.events.clone(),
            wake: Mutex::new(wake),
            created: Instant::now(),
            dependency_timeout: options.dependency_timeout,
        });
        let mut threads = Vec::new();
        let sup = shared.clone();
        threads.push(std::thread::spawn(move || {
            guarded(&sup, "the supervision thread", || {
                run::supervise(&sup, &woken)
            })
        }));
        for name in &probed {
            let (sh, name) = (shared.clone(), name.clone());
            threads.push(std::thread::spawn(move || {
                let what = format!("the health probe thread of {name}");
                guarded(&sh, &what, || probe::check_health(&sh, &name))
            }));
        }
        Ok(App {
            name: plan.name.clone(),
            shared,
            published,
            threads: Mutex::new(threads),
        })
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    /// Waits until every service has been started once; or returns why one cannot start (a
    /// dependency that failed or did not become healthy in time).
    pub fn wait_started(&self) -> Result<(), Error> {
        loop {
            {
                let inner = self.shared.lock();
                if let Some(e) = &inner.start_error {
                    return Err(e.clone());
                }
                if inner.pending.is_empty() {
                    return Ok(());
                }
            }
            if self.shared.stop.load(Ordering::SeqCst) {
                return Err(Error::Stopped);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Why the start failed, if it did (a dependency that failed or timed out).
    pub fn start_error(&self) -> Option<String> {
        self.shared
            .lock()
            .start_error
            .as_ref()
            .map(|e| e.to_string())
    }

    /// Every service's status, in the plan's order.
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.shared
            .lock()
            .services
            .iter()
            .map(|s| ServiceStatus {
                name: s.plan.name.clone(),
                state: s.state,
                pid: s.instance.as_ref().map(|i| i.pid),
                instance: s.generation,
                restarts: s.restarts,
                last_exit: s.last_exit,
                last_end: s.last_end,
                first_started: s.first_started,
                started: s.instance.as_ref().map(|i| i.started),
                started_at: s.instance.as_ref().and(s.started_at),
                healthy_since: s.healthy_since,
                last_probe_error: s.last_probe_error.clone(),
                waiting_for: s.waiting_for.clone(),
                restart_at: s.restart_at,
            })
            .collect()
    }

    /// CPU time and memory of each service's monitor, and its fabric port's counters.
    pub fn stats(&self) -> Vec<ServiceStats> {
        let fabric = self
            .shared
            .fabric
            .locked()
            .as_ref()
            .and_then(|f| f.stats().ok());
        let gateway = self.shared.gateway.locked().clone();
        self.status()
            .into_iter()
            .map(|s| {
                let port = fabric
                    .as_ref()
                    .and_then(|f| f.ports.iter().find(|p| p.service == s.name))
                    .map(|p| p.stats);
                let mut stats = stats::of_service(&s.name, s.pid, port);
                stats.connections_refused = gateway.as_ref().map_or(0, |g| g.refused(&s.name));
                stats
            })
            .collect()
    }

    /// The console lines kept for `service` (every instance's), oldest first; `None` if there
    /// is no such service.
    pub fn logs(&self, service: &str) -> Option<Vec<String>> {
        let console = self.console(service)?;
        let lines = console.locked().lines();
        Some(lines)
    }

    /// The console lines of `service` pushed after the first `seen` (0 at first), and the
    /// count to pass next time: following a console by polling, without repeats. `None` if
    /// there is no such service.
    pub fn logs_after(&self, service: &str, seen: u64) -> Option<(Vec<String>, u64)> {
        let console = self.console(service)?;
        let after = console.locked().lines_after(seen);
        Some(after)
    }

    fn console(&self, service: &str) -> Option<Arc<Mutex<Console>>> {
        self.shared
            .lock()
            .services
            .iter()
            .find(|s| s.plan.name == service)
            .map(|s| s.console.clone())
    }

    /// Starts capturing `target` (a service's port: [`port_of`](Self::port_of); or one of the
    /// plan's capabilities) into `sink`.
    pub fn capture(
        &self,
        target: CaptureTarget,
        sink: Box<dyn FrameSink>,
    ) -> Result<CaptureId, Error> {
        let fabric = self.shared.fabric.locked();
        let fabric = fabric.as_ref().ok_or(Error::Stopped)?;
        fabric
            .capture(target, sink)
            .map_err(|e| Error::Io(format!("capture: {e}")))
    }

    /// Stops a capture (its sink flushed and dropped).
    pub fn stop_capture(&self, id: CaptureId) {
        if let Some(fabric) = self.shared.fabric.locked().as_ref() {
            let _ = fabric.stop_capture(id);
        }
    }

    /// The fabric port of `service`.
    pub fn port_of(&self, service: &str) -> Option<PortId> {
        self.shared
            .lock()
            .services
            .iter()
            .find(|s| s.plan.name == service)
            .map(|s| s.port)
    }

    /// The host addresses of the application's published endpoints (`service.endpoint`), as
    /// listened on (the actual port where the plan asked for port 0).
    pub fn published(&self) -> &[(String, SocketAddr)] {
        &self.published
    }

    /// Stops `service`'s instance; it stays stopped (no restart) until started again.
    pub fn stop_service(&self, service: &str) -> Result<(), Error> {
        self.request(service, Request::Stop)
    }

    /// Starts `service` if it is not running (stopped, exited or in a crash loop; its
    /// restart history is forgotten).
    pub fn start_service(&self, service: &str) -> Result<(), Error> {
        self.request(service, Request::Start)
    }

    /// Stops `service`'s instance, if one runs, and starts a new one.
    pub fn restart_service(&self, service: &str) -> Result<(), Error> {
        self.request(service, Request::Restart)
    }

    fn request(&self, service: &str, request: Request) -> Result<(), Error> {
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let mut inner = self.shared.lock();
            let names: Vec<String> = inner.services.iter().map(|s| s.plan.name.clone()).collect();
            let Some(i) = names.iter().position(|n| n == service) else {
                return Err(Error::Config(format!(
                    "{} has no service {service:?} (it has: {})",
                    self.name,
                    names.join(", ")
                )));
            };
            if self.shared.stop.load(Ordering::SeqCst) {
                return Err(Error::Stopped);
            }
            if self.shared.failed.load(Ordering::SeqCst) {
                return Err(inner.start_error.clone().unwrap_or(Error::Stopped));
            }
            let s = &mut inner.services[i];
            s.requests.push((request, reply));
        }
        self.shared.wake();
        match answer.recv_timeout(REQUEST_TIMEOUT) {
            Ok(result) => result.map_err(Error::Io),
            // The supervision thread dropped the request: the application is stopping.
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Stopped),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Io(format!(
                "{service}: the supervisor did not answer in {REQUEST_TIMEOUT:?}"
            ))),
        }
    }

    /// Stops everything: the supervisor and probe threads, every monitor (killed and reaped),
    /// the gateway and the fabric. Idempotent.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        let threads: Vec<_> = self.threads.locked().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        let mut services = std::mem::take(&mut self.shared.lock().services);
        for s in &mut services {
            self.shared.kill(s);
        }
        self.shared.lock().services = services;
        // The probe threads are joined: this is the last reference, and dropping it stops
        // the gateway.
        if let Some(gw) = self.shared.gateway.locked().take() {
            if let Ok(gw) = Arc::try_unwrap(gw) {
                gw.stop();
            }
        }
        if let Some(fabric) = self.shared.fabric.locked().take() {
            let _ = fabric.stop();
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `s`'s image declares its NIC; an error if the image cannot be read, is not a
/// unikernel, or lacks the NIC while the service needs the network.
/// Whether service `name` holds an egress capability (which needs its NIC, as endpoints do).
fn has_egress(plan: &Plan, name: &str) -> bool {
    plan.egress.iter().any(|e| e.consumer == name)
}

/// Whether `s`'s image declares its NIC; an error if it does not and the service needs one
/// (it provides, uses or publishes endpoints, or reaches outside: `egress`).
fn image_has_nic(s: &ServicePlan, egress: bool) -> Result<bool, Error> {
    let image = s.image.display();
    let bytes = vmm::loader::read_image(&s.image)
        .map_err(|e| Error::Config(format!("service {}: image {image}: {e}", s.name)))?;
    let manifest = vmm::loader::manifest(&bytes).map_err(|e| {
        Error::Config(format!(
            "service {}: {image} is not a unikernel sturdy can run: {e}",
            s.name
        ))
    })?;
    let has = manifest
        .find(&s.nic)
        .is_some_and(|d| d.kind == vmm::manifest::DeviceKind::Net);
    let needs = !s.provides.is_empty() || !s.uses.is_empty() || !s.ports.is_empty() || egress;
    if needs && !has {
        return Err(Error::Config(format!(
            "service {}: it provides, uses or reaches endpoints (egress), but its image {image} \
             declares no network device named '{}'",
            s.name, s.nic
        )));
    }
    Ok(has)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            app: "test".into(),
            inner: Mutex::new(Inner {
                services: Vec::new(),
                pending: Vec::new(),
                start_error: None,
            }),
            fabric: Mutex::new(None),
            gateway: Mutex::new(None),
            hvt: PathBuf::from("/nonexistent"),
            stop: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            events: None,
            wake: Mutex::new(mpsc::channel().0),
            created: Instant::now(),
            dependency_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_thread_that_panics_marks_the_application_failed_with_the_reason() {
        let sh = shared();
        guarded(&sh, "a thread", || {});
        assert!(!sh.failed.load(Ordering::SeqCst));
        assert!(sh.lock().start_error.is_none());

        let handle = std::thread::spawn(move || {
            guarded(&sh, "the supervision thread", || panic!("a bug"));
            sh
        });
        let sh = handle.join().expect("the panic stays inside guarded");
        assert!(sh.failed.load(Ordering::SeqCst));
        let error = sh
            .lock()
            .start_error
            .clone()
            .expect("a start error")
            .to_string();
        assert!(
            error.contains("the supervision thread panicked (a bug)"),
            "{error}"
        );
        assert!(error.contains("`sturdy up` recreates"), "{error}");
    }
}
