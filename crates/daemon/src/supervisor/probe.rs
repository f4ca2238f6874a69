//! Health probes of one service, on a thread of their own.

use super::*;

/// First probe period after an instance starts; it doubles up to [`START_PROBE_MAX`] until
/// the first success (then the healthcheck's interval applies).
const START_PROBE: Duration = Duration::from_millis(10);
const START_PROBE_MAX: Duration = Duration::from_millis(200);

/// Probes service `name` while it runs: often right after its instance starts (every 10 ms,
/// doubling to 200 ms) until it first passes, then every interval; `retries` failures in a row
/// (after the start period) make it unhealthy.
pub(super) fn check_health(shared: &Shared, name: &str) {
    let hc = {
        let inner = shared.lock();
        let s = inner.services.iter().find(|s| s.plan.name == name).unwrap();
        s.plan.healthcheck.clone().expect("checked")
    };
    let Some(gateway) = shared.gateway.locked().clone() else {
        return;
    };
    let mut next = Instant::now();
    let mut start_probe = START_PROBE;
    let mut probed_generation = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        if Instant::now() < next {
            std::thread::sleep(next.saturating_duration_since(Instant::now()).min(TICK));
            // A new instance (a restart) is probed from its start, not after the interval
            // that the old one's last probe began.
            let generation = shared
                .lock()
                .services
                .iter()
                .find(|s| s.plan.name == name)
                .map(|s| s.generation);
            if generation.is_some_and(|g| g != probed_generation) {
                next = Instant::now();
            }
            continue;
        }
        let (generation, started) = {
            let inner = shared.lock();
            let s = inner.services.iter().find(|s| s.plan.name == name).unwrap();
            match &s.instance {
                Some(i) => (s.generation, i.started),
                None => {
                    drop(inner);
                    next = Instant::now() + Duration::from_millis(5);
                    continue;
                }
            }
        };
        if generation != probed_generation {
            probed_generation = generation;
            start_probe = START_PROBE;
        }
        let result = match &hc.probe {
            Probe::Tcp => gateway.probe_tcp(name, hc.port, hc.timeout),
            Probe::Http { path } => gateway.probe_http(name, hc.port, path, hc.timeout),
        };
        let mut inner = shared.lock();
        let s = inner
            .services
            .iter_mut()
            .find(|s| s.plan.name == name)
            .unwrap();
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
                    shared.wake();
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
            let wait = start_probe;
            start_probe = (start_probe * 2).min(START_PROBE_MAX);
            wait
        };
        next = Instant::now() + wait;
    }
}
