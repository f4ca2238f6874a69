//! Cross-reference checks on a read [`App`]: capabilities name services and endpoints that
//! exist, published ports and health checks name provided tcp endpoints, each volume is declared
//! and attached to one service, dependencies exist and form no cycle. Also the start order.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use sturdy_bootcfg::Proto;
use sturdy_fabric::plan::Subnet;

use crate::error::{closest, list, Sink};
use crate::model::{App, At, Condition, Service};

/// The default subnet of an application.
pub const DEFAULT_SUBNET: &str = "10.77.0.0/24";

fn no_service(name: &str, names: &[&str]) -> String {
    let mut sorted = names.to_vec();
    sorted.sort_unstable();
    let mut msg = format!("no service '{name}' (services are: {})", list(&sorted));
    if let Some(s) = closest(name, names.iter().copied()) {
        msg.push_str(&format!("; did you mean '{s}'?"));
    }
    msg
}

fn tcp_endpoints(s: &Service) -> String {
    let eps: Vec<String> = s
        .provides
        .iter()
        .map(|((n, p, pr), _)| format!("{n} {p}/{pr}"))
        .collect();
    list(&eps)
}

/// Runs every check, reporting into `sink`; returns the subnet.
pub(crate) fn check(app: &App, sink: &mut Sink) -> Option<Subnet> {
    let names: Vec<&str> = app.services.iter().map(|s| s.name.as_str()).collect();
    let by_name: HashMap<&str, &Service> =
        app.services.iter().map(|s| (s.name.as_str(), s)).collect();

    let subnet = match &app.subnet {
        None => Some(DEFAULT_SUBNET.parse().expect("the default subnet is valid")),
        Some((text, at)) => match text.parse::<Subnet>() {
            Ok(s) => Some(s),
            Err(e) => {
                sink.error(at.pos, &at.key, e.to_string());
                None
            }
        },
    };
    if let Some(subnet) = subnet {
        let fit = u64::from(subnet.hosts()).saturating_sub(1);
        if (names.len() as u64) > fit {
            // At the subnet if the file sets one, else at the first service that does not fit.
            let at = match &app.subnet {
                Some((_, at)) => at.clone(),
                None => app.services[fit as usize].at.clone(),
            };
            let bigger = (1..subnet.prefix_len())
                .rev()
                .find(|&p| (1u64 << (32 - p)) - 2 > names.len() as u64)
                .map(|p| {
                    let network = Ipv4Addr::from(u32::from(subnet.addr()) & (u32::MAX << (32 - p)));
                    format!("; set a larger one, e.g. subnet: {network}/{p}")
                })
                .unwrap_or_default();
            let which = if app.subnet.is_some() {
                ""
            } else {
                " (the default)"
            };
            sink.error(
                at.pos,
                &at.key,
                format!(
                    "subnet {subnet}{which} has {} host addresses: room for the gateway and {fit} services, not {}{bigger}",
                    subnet.hosts(),
                    names.len()
                ),
            );
        }
    }

    let mut published: Vec<(Ipv4Addr, u16, &At)> = Vec::new();
    let mut attached: HashMap<&str, (&str, &At)> = HashMap::new();
    let volumes: Vec<&str> = app.volumes.iter().map(|v| v.name.as_str()).collect();

    for s in &app.services {
        // Capabilities.
        let mut seen: Vec<&str> = Vec::new();
        for (u, at) in &s.uses {
            if seen.contains(&u.as_str()) {
                sink.error(at.pos, &at.key, format!("'{u}' is listed twice"));
                continue;
            }
            seen.push(u);
            let (svc, ep) = match u.split_once('.') {
                Some((a, b)) => (a, Some(b)),
                None => (u.as_str(), None),
            };
            let Some(provider) = by_name.get(svc) else {
                sink.error(at.pos, &at.key, no_service(svc, &names));
                continue;
            };
            if svc == s.name {
                sink.error(at.pos, &at.key, "a service cannot be given a capability to itself (it reaches its own endpoints without one)");
                continue;
            }
            let eps: Vec<&str> = provider
                .provides
                .iter()
                .map(|((n, _, _), _)| n.as_str())
                .collect();
            match ep {
                None if eps.is_empty() => sink.error(
                    at.pos,
                    &at.key,
                    format!("service '{svc}' provides no endpoint, so there is nothing to use: give it one, e.g. provides: {{ kv: 6379/tcp }}"),
                ),
                Some(ep) if !eps.contains(&ep) => {
                    let mut msg = format!("service '{svc}' provides no endpoint '{ep}' (it provides: {})", list(&eps));
                    if let Some(c) = closest(ep, eps.iter().copied()) {
                        msg.push_str(&format!("; did you mean '{svc}.{c}'?"));
                    }
                    sink.error(at.pos, &at.key, msg);
                }
                _ => {}
            }
        }

        // Published ports.
        for ((ip, host, guest, _), at) in &s.ports {
            if !s
                .provides
                .iter()
                .any(|((_, p, pr), _)| p == guest && *pr == Proto::Tcp)
            {
                sink.error(
                    at.pos,
                    &at.key,
                    format!(
                        "guest port {guest} is not a tcp endpoint that '{}' provides (it provides: {}); add it to provides, e.g. provides: {{ NAME: {guest}/tcp }}",
                        s.name,
                        tcp_endpoints(s)
                    ),
                );
            }
            if let Some((_, _, first)) = published.iter().find(|(oip, oport, _)| {
                oport == host && (oip == ip || oip.is_unspecified() || ip.is_unspecified())
            }) {
                sink.error(
                    at.pos,
                    &at.key,
                    format!(
                        "host port {host} is published twice (first by {} on line {})",
                        first.key, first.pos.line
                    ),
                );
            } else {
                published.push((*ip, *host, at));
            }
        }

        // Egress.
        let mut seen_egress = Vec::new();
        for ((ip, port, proto), at) in &s.egress {
            if let Some(subnet) = subnet {
                if subnet.contains(*ip) {
                    sink.error(at.pos, &at.key, format!("{ip} is inside the application's subnet {subnet}: egress is for the outside world; to reach a service, use it"));
                    continue;
                }
            }
            if seen_egress.contains(&(ip, port, proto)) {
                sink.error(
                    at.pos,
                    &at.key,
                    format!("{ip}:{port}/{proto} is listed twice"),
                );
            }
            seen_egress.push((ip, port, proto));
        }

        // Volumes.
        let mut devices: Vec<&str> = Vec::new();
        for ((vol, dev), at) in &s.volumes {
            if !volumes.contains(&vol.as_str()) {
                let mut msg = format!(
                    "no volume '{vol}' is declared (volumes are: {})",
                    list(&volumes)
                );
                if let Some(c) = closest(vol, volumes.iter().copied()) {
                    msg.push_str(&format!("; did you mean '{c}'?"));
                } else {
                    msg.push_str(&format!(
                        "; declare it at the top level: volumes: {{ {vol}: {{ size: 64M }} }}"
                    ));
                }
                sink.error(at.pos, &at.key, msg);
                continue;
            }
            if let Some((owner, first)) = attached.get(vol.as_str()) {
                sink.error(
                    at.pos,
                    &at.key,
                    format!("volume '{vol}' is already attached to service '{owner}' ({} on line {}): a volume belongs to one service", first.key, first.pos.line),
                );
                continue;
            }
            attached.insert(vol, (&s.name, at));
            if devices.contains(&dev.as_str()) {
                sink.error(
                    at.pos,
                    &at.key,
                    format!("block device '{dev}' is attached twice to '{}'", s.name),
                );
            }
            devices.push(dev);
        }

        // Health check.
        if let Some((h, _)) = &s.healthcheck {
            if !s
                .provides
                .iter()
                .any(|((_, p, pr), _)| *p == h.port && *pr == Proto::Tcp)
            {
                sink.error(
                    h.port_at.pos,
                    &h.port_at.key,
                    format!(
                        "port {} is not a tcp endpoint that '{}' provides (it provides: {}); a health check probes a provided endpoint",
                        h.port,
                        s.name,
                        tcp_endpoints(s)
                    ),
                );
            }
        }

        // Dependencies.
        let mut deps: Vec<&str> = Vec::new();
        for ((d, cond), at) in &s.depends_on {
            if deps.contains(&d.as_str()) {
                sink.error(at.pos, &at.key, format!("'{d}' is listed twice"));
                continue;
            }
            deps.push(d);
            if d == &s.name {
                sink.error(at.pos, &at.key, "a service cannot depend on itself");
                continue;
            }
            match by_name.get(d.as_str()) {
                None => sink.error(at.pos, &at.key, no_service(d, &names)),
                Some(dep) if *cond == Condition::ServiceHealthy && dep.healthcheck.is_none() => {
                    sink.error(
                        at.pos,
                        &at.key,
                        format!("condition service_healthy needs a health check, and service '{d}' has none: give '{d}' a healthcheck, or use service_started"),
                    )
                }
                _ => {}
            }
        }
    }

    for cycle in cycles(app) {
        let first = &app.services[cycle[0]];
        let next = &app.services[cycle[1 % cycle.len()]].name;
        let at = first
            .depends_on
            .iter()
            .find(|((d, _), _)| d == next)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| first.at.clone());
        let mut path: Vec<&str> = cycle
            .iter()
            .map(|&i| app.services[i].name.as_str())
            .collect();
        path.push(path[0]);
        sink.error(
            at.pos,
            &at.key,
            format!(
                "dependency cycle: {}; no service of a cycle could ever start",
                path.join(" -> ")
            ),
        );
    }
    subnet
}

/// The edges `service -> dependency` between existing, distinct services, by index.
fn edges(app: &App) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = app
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    app.services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut out: Vec<usize> = s
                .depends_on
                .iter()
                .filter_map(|((d, _), _)| index.get(d.as_str()).copied())
                .filter(|&j| j != i)
                .collect();
            out.dedup();
            out
        })
        .collect()
}

/// Every elementary cycle found by a depth-first search in file order, each rotated to start
/// at its first service in file order, without repeats.
fn cycles(app: &App) -> Vec<Vec<usize>> {
    let g = edges(app);
    let mut state = vec![0u8; g.len()]; // 0 new, 1 on the stack, 2 done
    let mut stack = Vec::new();
    let mut found: BTreeSet<Vec<usize>> = BTreeSet::new();
    let mut order = Vec::new();
    fn dfs(
        v: usize,
        g: &[Vec<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
        found: &mut BTreeSet<Vec<usize>>,
        order: &mut Vec<Vec<usize>>,
    ) {
        state[v] = 1;
        stack.push(v);
        for &w in &g[v] {
            if state[w] == 1 {
                let start = stack.iter().position(|&x| x == w).expect("on the stack");
                let mut cycle = stack[start..].to_vec();
                let min = cycle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, &x)| x)
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                cycle.rotate_left(min);
                if found.insert(cycle.clone()) {
                    order.push(cycle);
                }
            } else if state[w] == 0 {
                dfs(w, g, state, stack, found, order);
            }
        }
        stack.pop();
        state[v] = 2;
    }
    for v in 0..g.len() {
        if state[v] == 0 {
            dfs(v, &g, &mut state, &mut stack, &mut found, &mut order);
        }
    }
    order
}

/// The start order: every service after its dependencies, ties in file order.
pub(crate) fn start_order(app: &App) -> Vec<String> {
    let g = edges(app);
    let mut remaining: Vec<usize> = g.iter().map(Vec::len).collect();
    let mut started = vec![false; g.len()];
    let mut order = Vec::new();
    while order.len() < g.len() {
        let Some(next) = (0..g.len()).find(|&i| !started[i] && remaining[i] == 0) else {
            break; // a cycle, reported by `check`
        };
        started[next] = true;
        order.push(app.services[next].name.clone());
        for (i, deps) in g.iter().enumerate() {
            remaining[i] -= deps.iter().filter(|&&d| d == next).count();
        }
    }
    order
}
