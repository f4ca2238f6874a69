//! The supervision loop: the one thread that changes an application's monitors.

use super::*;

/// The supervision loop: starts pending services, carries out requests, reaps exited
/// monitors, applies restart policies, restarts when due.
pub(super) fn supervise(shared: &Shared, woken: &Receiver<()>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let mut guard = shared.lock();
        let inner = &mut *guard;
        start_pending(shared, inner, now);
        for s in inner.services.iter_mut() {
            for (request, reply) in std::mem::take(&mut s.requests) {
                let _ = reply.send(carry_out(shared, s, request));
            }
            if let Some(ended) = s.instance.as_mut().and_then(Instance::try_exit) {
                let code = ended.status;
                let (pid, ran) = s.instance.take().map_or((0, Duration::ZERO), |i| {
                    (i.pid, now.saturating_duration_since(i.started))
                });
                shared.send(Event::Exited {
                    service: s.plan.name.clone(),
                    pid,
                    status: code,
                });
                s.last_exit = Some(code);
                s.last_end = Some(ended);
                s.healthy_since = None;
                let decision = s.tracker.on_exit(code, ran);
                let note = match decision {
                    Decision::Stay => {
                        s.state = State::Exited(code);
                        ended.to_string()
                    }
                    Decision::RestartAfter(delay) => {
                        s.state = State::Restarting;
                        s.restart_at = Some(now + delay);
                        format!("{ended}; restarting in {delay:?}")
                    }
                    Decision::CrashLoop(delay) => {
                        // Still retried, ever more slowly (at most every 5 minutes).
                        s.state = State::CrashLoop;
                        s.restart_at = Some(now + delay);
                        format!(
                            "{ended}; crash loop ({} restarts in a row): next try in {delay:?}",
                            s.tracker.in_a_row() - 1
                        )
                    }
                };
                s.console.locked().push("sturdy", &note);
            }
            if s.restart_at.is_some_and(|at| at <= now) {
                s.restarts += 1;
                if let Err(e) = shared.launch(s) {
                    s.restart_at = None;
                    s.state = State::Exited(s.last_exit.unwrap_or(1));
                    s.console
                        .locked()
                        .push("sturdy", &format!("restart failed: {e}"));
                }
            }
        }
        tell_readiness(shared, inner);
        drop(guard);
        let _ = woken.recv_timeout(TICK);
    }
    // Requests that came too late: their callers learn that the application stopped.
    for s in shared.lock().services.iter_mut() {
        s.requests.clear();
    }
}

/// Tells the gateway which services take connections on their published ports: one that
/// runs and is healthy (or has no health check), not one that is starting or unhealthy, and
/// none that does not run.
fn tell_readiness(shared: &Shared, inner: &mut Inner) {
    let Some(gateway) = shared.gateway.locked().clone() else {
        return;
    };
    for s in inner.services.iter_mut() {
        let readiness = match (&s.instance, s.state) {
            (None, _) => Readiness::Gone,
            (Some(_), State::Healthy) => Readiness::Ready,
            (Some(_), State::Running) if s.plan.healthcheck.is_none() => Readiness::Ready,
            (Some(_), _) => Readiness::NotReady,
        };
        if s.readiness != Some(readiness) && gateway.set_readiness(&s.plan.name, readiness).is_ok()
        {
            s.readiness = Some(readiness);
        }
    }
}

/// Carries out `request` on `s`.
fn carry_out(shared: &Shared, s: &mut Service, request: Request) -> Result<(), String> {
    let note = |s: &Service, what: &str| s.console.locked().push("sturdy", what);
    match request {
        Request::Stop => {
            shared.kill(s);
            // Not started yet too: when its turn comes, `start_pending` leaves it stopped.
            s.state = State::Stopped;
            s.waiting_for = None;
            note(s, "stopped on request");
            Ok(())
        }
        Request::Start | Request::Restart => {
            if s.state == State::Created {
                return Err(format!(
                    "{} is not started yet ({})",
                    s.plan.name,
                    s.waiting_for.as_deref().unwrap_or("waiting for its turn")
                ));
            }
            if request == Request::Start && s.instance.is_some() {
                return Ok(());
            }
            shared.kill(s);
            s.tracker = Tracker::new(s.plan.restart, s.backoff);
            note(
                s,
                if request == Request::Start {
                    "started on request"
                } else {
                    "restarted on request"
                },
            );
            shared.launch(s).map_err(|e| e.to_string())
        }
    }
}

/// Starts the pending services whose dependencies allow, in start order; records a start
/// error when a dependency failed or timed out.
fn start_pending(shared: &Shared, inner: &mut Inner, now: Instant) {
    if inner.start_error.is_some() {
        return;
    }
    let mut i = 0;
    while i < inner.pending.len() {
        let index = inner.pending[i];
        let plan = inner.services[index].plan.clone();
        let mut waiting = None;
        for dep in &plan.depends_on {
            let d = inner
                .services
                .iter()
                .find(|x| x.plan.name == dep.service)
                .expect("dependencies name services");
            // A dependency stopped on request (by an operator, or restored so by a new daemon)
            // does not hold its dependents: they start, as they would have kept running had it
            // been stopped after them.
            if d.state == State::Stopped {
                continue;
            }
            let failed = d.generation > 0 && matches!(d.state, State::CrashLoop | State::Exited(_));
            let fail = |why: String| Error::Dependency {
                service: plan.name.clone(),
                dependency: dep.service.clone(),
                why,
            };
            if failed && dep.condition == Condition::ServiceHealthy {
                inner.start_error = Some(fail(format!("it is {} (see its logs)", d.state.name())));
                return;
            }
            let ready = match dep.condition {
                Condition::ServiceStarted => d.generation > 0,
                Condition::ServiceHealthy => d.state == State::Healthy,
            };
            if ready {
                continue;
            }
            let timeout = shared.dependency_timeout;
            if dep.condition == Condition::ServiceHealthy
                && now.saturating_duration_since(shared.created) >= timeout
            {
                inner.start_error = Some(fail(format!(
                    "not healthy after {timeout:?} (it is {}; last probe: {})",
                    d.state.name(),
                    d.last_probe_error.as_deref().unwrap_or("none yet")
                )));
                return;
            }
            waiting = Some(match dep.condition {
                Condition::ServiceStarted => format!("{} to start", dep.service),
                Condition::ServiceHealthy => format!("{} to be healthy", dep.service),
            });
            break;
        }
        let s = &mut inner.services[index];
        if waiting.is_some() {
            if s.state == State::Created {
                s.waiting_for = waiting;
            }
            i += 1;
            continue;
        }
        inner.pending.remove(i);
        if s.state != State::Created {
            // Stopped before its turn came: it stays stopped.
            continue;
        }
        if let Err(e) = shared.launch(s) {
            s.state = State::Exited(1);
            s.console
                .locked()
                .push("sturdy", &format!("start failed: {e}"));
            inner.start_error = Some(e);
            return;
        }
        // Launched: services after it may wait for it to have started.
        i = 0;
    }
}
