//! The application: its fabric and gateway, one supervised instance per service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sturdy_compose::{Condition, Plan, ServicePlan};
use sturdy_fabric::port::{self, FabricHandle, Port};
use sturdy_fabric::{gateway, Fabric, GatewayHandle, PortId};

use crate::console::{Console, DEFAULT_CAPACITY};
use crate::instance::Instance;
use crate::restart::{Backoff, Decision, Tracker};
use crate::Error;

/// How often the supervisor looks at its monitors.
const TICK: Duration = Duration::from_millis(20);
/// Probe period until the first success (then the healthcheck's interval).
const START_PROBE: Duration = Duration::from_millis(100);

/// Options of [`App::start_with`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Restart backoff and crash-loop limits.
    pub backoff: Backoff,
    /// How long a service waits for a `service_healthy` dependency.
    pub dependency_timeout: Duration,
    /// Console bytes kept per service.
    pub console_capacity: usize,
    /// Where to send [`Event`]s (instances started, services becoming healthy), for progress
    /// shown while starting; `None`: nowhere.
    pub events: Option<Sender<Event>>,
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
    },
    /// `service`'s health check passed for the first time since its instance started.
    Healthy {
        /// The service.
        service: String,
    },
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backoff: Backoff::default(),
            dependency_timeout: Duration::from_secs(60),
            console_capacity: DEFAULT_CAPACITY,
            events: None,
        }
    }
}

/// A service's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
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
    /// Times it was restarted.
    pub restarts: u32,
    /// The last instance's exit status (128 + signal if killed).
    pub last_exit: Option<i32>,
    /// When its first instance started.
    pub first_started: Option<Instant>,
    /// When its current instance started.
    pub started: Option<Instant>,
    /// When its health check first passed for the current instance.
    pub healthy_since: Option<Instant>,
    /// Why the last probe failed, if it did.
    pub last_probe_error: Option<String>,
}

struct Service {
    plan: ServicePlan,
    /// Monitor arguments; `{fd}` is the NIC's fd.
    args: Vec<String>,
    port: PortId,
    probe_addr: Option<SocketAddr>,
    console: Arc<Mutex<Console>>,
    tracker: Tracker,
    instance: Option<Instance>,
    /// Counts instances, so probe results of an old one are ignored.
    generation: u64,
    state: State,
    restarts: u32,
    last_exit: Option<i32>,
    restart_at: Option<Instant>,
    first_started: Option<Instant>,
    healthy_since: Option<Instant>,
    failures: u32,
    last_probe_error: Option<String>,
}

struct Shared {
    services: Mutex<Vec<Service>>,
    fabric: Mutex<Option<FabricHandle>>,
    hvt: PathBuf,
    stop: AtomicBool,
    events: Option<Sender<Event>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Service>> {
        self.services.lock().expect("supervisor state")
    }

    fn send(&self, event: Event) {
        if let Some(events) = &self.events {
            // A receiver gone is not the supervisor's problem.
            let _ = events.send(event);
        }
    }

    /// Starts an instance of `s` on a fresh fabric port.
    fn launch(&self, s: &mut Service) -> Result<(), Error> {
        let (io, fd) = Port::pair().map_err(|e| Error::Io(format!("fabric port: {e}")))?;
        {
            let fabric = self.fabric.lock().expect("fabric");
            let fabric = fabric.as_ref().ok_or(Error::Stopped)?;
            let _ = fabric.detach(s.port);
            fabric
                .attach(s.port, io)
                .map_err(|e| Error::Io(format!("attach {}: {e}", s.plan.name)))?;
        }
        let instance = Instance::spawn(&self.hvt, &s.args, fd, &s.console).map_err(|e| {
            Error::Io(format!(
                "spawn {} for {}: {e}",
                self.hvt.display(),
                s.plan.name
            ))
        })?;
        s.console.lock().expect("console").push(
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
        });
        s.first_started.get_or_insert(instance.started);
        s.instance = Some(instance);
        s.healthy_since = None;
        s.failures = 0;
        s.last_probe_error = None;
        s.restart_at = None;
        s.state = if s.plan.healthcheck.is_some() {
            State::Starting
        } else {
            State::Running
        };
        Ok(())
    }
}

/// A running application.
pub struct App {
    shared: Arc<Shared>,
    gateway: Option<GatewayHandle>,
    published: Vec<(String, SocketAddr)>,
    threads: Vec<JoinHandle<()>>,
}

impl App {
    /// Starts `plan` with default [`Options`]: see [`start_with`](Self::start_with).
    pub fn start(plan: &Plan, hvt: &Path, state_dir: &Path) -> Result<App, Error> {
        App::start_with(plan, hvt, state_dir, Options::default())
    }

    /// Creates the volume files under `state_dir/volumes` (sparse, kept if they exist),
    /// starts the fabric and gateway, then the services in start order, each after its
    /// `service_healthy` dependencies pass their health checks; returns once all are started.
    /// A background thread then restarts exited monitors as their policies say.
    pub fn start_with(
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
                publications.push(index(&fabric_plan, host, &s.name, &p.endpoint));
            }
        }
        // The supervisor's own publications, for health probes, after the application's.
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
            let host = SocketAddr::from(([127, 0, 0, 1], 0));
            fabric_plan
                .publish(host, &target)
                .map_err(|e| Error::Config(format!("publish {target} for probes: {e}")))?;
            probed.push((
                s.name.clone(),
                index(&fabric_plan, host, &s.name, &endpoint.name),
            ));
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
            args.push(format!("--net:{}=@{{fd}}", s.nic));
            args.push(net[1].clone());
            args.push(s.image.display().to_string());
            args.extend(s.args.iter().cloned());
            let port = fabric_plan.service(&s.name).expect("planned").port;
            let probe_addr = probed
                .iter()
                .find(|(n, _)| *n == s.name)
                .map(|&(_, i)| all[i].1);
            services.push(Service {
                plan: s.clone(),
                args,
                port,
                probe_addr,
                console: Arc::new(Mutex::new(Console::new(options.console_capacity))),
                tracker: Tracker::new(s.restart, options.backoff),
                instance: None,
                generation: 0,
                state: State::Exited(0),
                restarts: 0,
                last_exit: None,
                restart_at: None,
                first_started: None,
                healthy_since: None,
                failures: 0,
                last_probe_error: None,
            });
        }

        let shared = Arc::new(Shared {
            services: Mutex::new(services),
            fabric: Mutex::new(Some(fabric)),
            hvt: hvt.to_path_buf(),
            stop: AtomicBool::new(false),
            events: options.events.clone(),
        });
        let mut app = App {
            shared: shared.clone(),
            gateway: Some(gw),
            published,
            threads: Vec::new(),
        };
        let sup = shared.clone();
        app.threads
            .push(std::thread::spawn(move || supervise(&sup)));
        for (name, _) in &probed {
            let (sh, name) = (shared.clone(), name.clone());
            app.threads
                .push(std::thread::spawn(move || check_health(&sh, &name)));
        }

        for name in &plan.start_order {
            let s = plan.service(name).expect("start order names services");
            for dep in &s.depends_on {
                if dep.condition == Condition::ServiceHealthy {
                    if let Err(e) = app.wait_healthy(name, &dep.service, options.dependency_timeout)
                    {
                        app.stop();
                        return Err(e);
                    }
                }
            }
            let result = {
                let mut services = shared.lock();
                let svc = services.iter_mut().find(|x| x.plan.name == *name).unwrap();
                shared.launch(svc)
            };
            if let Err(e) = result {
                app.stop();
                return Err(e);
            }
        }
        Ok(app)
    }

    fn wait_healthy(&self, waiter: &str, dep: &str, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let (state, why) = {
                let services = self.shared.lock();
                let d = services.iter().find(|x| x.plan.name == dep).unwrap();
                (d.state, d.last_probe_error.clone())
            };
            let fail = |what: String| Error::Dependency {
                service: waiter.into(),
                dependency: dep.into(),
                why: what,
            };
            match state {
                State::Healthy => return Ok(()),
                State::CrashLoop | State::Exited(_) => {
                    return Err(fail(format!("it is {state:?} (see its logs)")))
                }
                _ if Instant::now() >= deadline => {
                    return Err(fail(format!(
                        "not healthy after {timeout:?} (it is {state:?}; last probe: {})",
                        why.as_deref().unwrap_or("none yet")
                    )))
                }
                _ => std::thread::sleep(TICK),
            }
        }
    }

    /// Every service's status, in the plan's order.
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.shared
            .lock()
            .iter()
            .map(|s| ServiceStatus {
                name: s.plan.name.clone(),
                state: s.state,
                pid: s.instance.as_ref().map(|i| i.pid),
                restarts: s.restarts,
                last_exit: s.last_exit,
                first_started: s.first_started,
                started: s.instance.as_ref().map(|i| i.started),
                healthy_since: s.healthy_since,
                last_probe_error: s.last_probe_error.clone(),
            })
            .collect()
    }

    /// The console lines kept for `service` (every instance's), oldest first; `None` if there
    /// is no such service.
    pub fn logs(&self, service: &str) -> Option<Vec<String>> {
        let console = self
            .shared
            .lock()
            .iter()
            .find(|s| s.plan.name == service)
            .map(|s| s.console.clone())?;
        let lines = console.lock().expect("console").lines();
        Some(lines)
    }

    /// The console lines of `service` pushed after the first `seen` (0 at first), and the
    /// count to pass next time: following a console by polling, without repeats. `None` if
    /// there is no such service.
    pub fn logs_after(&self, service: &str, seen: u64) -> Option<(Vec<String>, u64)> {
        let console = self
            .shared
            .lock()
            .iter()
            .find(|s| s.plan.name == service)
            .map(|s| s.console.clone())?;
        let after = console.lock().expect("console").lines_after(seen);
        Some(after)
    }

    /// The host addresses of the application's published endpoints (`service.endpoint`), as
    /// listened on (the actual port where the plan asked for port 0).
    pub fn published(&self) -> &[(String, SocketAddr)] {
        &self.published
    }

    /// Stops everything: the supervisor and probe threads, every monitor (killed and reaped),
    /// the gateway and the fabric. Idempotent.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let instances: Vec<Instance> = self
            .shared
            .lock()
            .iter_mut()
            .filter_map(|s| s.instance.take())
            .collect();
        for i in instances {
            i.kill();
        }
        if let Some(gw) = self.gateway.take() {
            gw.stop();
        }
        if let Some(fabric) = self.shared.fabric.lock().expect("fabric").take() {
            let _ = fabric.stop();
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The supervisor loop: reaps exited monitors, applies restart policies, restarts when due.
fn supervise(shared: &Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let mut services = shared.lock();
        for s in services.iter_mut() {
            if let Some(code) = s.instance.as_mut().and_then(Instance::try_exit) {
                s.instance = None;
                s.last_exit = Some(code);
                s.healthy_since = None;
                let decision = s.tracker.on_exit(code, now);
                let note = match decision {
                    Decision::Stay => {
                        s.state = State::Exited(code);
                        format!("exited with status {code}")
                    }
                    Decision::RestartAfter(delay) => {
                        s.state = State::Restarting;
                        s.restart_at = Some(now + delay);
                        format!("exited with status {code}; restarting in {delay:?}")
                    }
                    Decision::CrashLoop => {
                        s.state = State::CrashLoop;
                        format!(
                            "exited with status {code}; crash loop after {} restarts: \
                             no longer restarted",
                            s.restarts
                        )
                    }
                };
                s.console.lock().expect("console").push("sturdy", &note);
            }
            if s.restart_at.is_some_and(|at| at <= now) {
                s.restarts += 1;
                if let Err(e) = shared.launch(s) {
                    s.restart_at = None;
                    s.state = State::Exited(s.last_exit.unwrap_or(1));
                    s.console
                        .lock()
                        .expect("console")
                        .push("sturdy", &format!("restart failed: {e}"));
                }
            }
        }
        drop(services);
        std::thread::sleep(TICK);
    }
}

/// Probes service `name` while it runs: every 100 ms until it first passes, then every
/// interval; `retries` failures in a row (after the start period) make it unhealthy.
fn check_health(shared: &Shared, name: &str) {
    let (hc, addr) = {
        let services = shared.lock();
        let s = services.iter().find(|s| s.plan.name == name).unwrap();
        (
            s.plan.healthcheck.clone().expect("checked"),
            s.probe_addr.expect("published"),
        )
    };
    let mut next = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) {
        if Instant::now() < next {
            std::thread::sleep(TICK);
            continue;
        }
        let (generation, started) = {
            let services = shared.lock();
            let s = services.iter().find(|s| s.plan.name == name).unwrap();
            match &s.instance {
                Some(i) => (s.generation, i.started),
                None => {
                    drop(services);
                    next = Instant::now() + TICK;
                    continue;
                }
            }
        };
        let result = crate::health::probe(addr, &hc.probe, hc.timeout);
        let mut services = shared.lock();
        let s = services.iter_mut().find(|s| s.plan.name == name).unwrap();
        if s.generation != generation || s.instance.is_none() {
            next = Instant::now();
            continue;
        }
        match result {
            Ok(()) => {
                s.failures = 0;
                s.last_probe_error = None;
                if s.healthy_since.is_none() {
                    s.healthy_since = Some(Instant::now());
                    shared.send(Event::Healthy {
                        service: s.plan.name.clone(),
                    });
                }
                s.state = State::Healthy;
            }
            Err(why) => {
                s.last_probe_error = Some(why);
                if started.elapsed() >= hc.start_period {
                    s.failures += 1;
                }
                if s.state == State::Healthy && s.failures >= hc.retries.max(1) {
                    s.state = State::Unhealthy;
                    s.healthy_since = None;
                }
            }
        }
        let wait = if s.healthy_since.is_some() || s.state == State::Unhealthy {
            hc.interval
        } else {
            START_PROBE
        };
        next = Instant::now() + wait;
    }
}
