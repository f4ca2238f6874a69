//! The application file's model (`docs/sturdy-yaml.md`), read from the positioned YAML tree.
//!
//! Reading checks the shape of every value (known keys, types, the small value languages of
//! [`units`](crate::units)); cross-references (capabilities, volumes, dependencies, published
//! ports) are checked by [`check`](crate::check) on the result. Every item keeps where it was
//! written ([`At`]) so later checks can point at it.

use std::net::Ipv4Addr;
use std::time::Duration;
use sturdy_fabric::IngressLimits;

use sturdy_bootcfg::Proto;

use crate::error::{closest, list, Sink};
use crate::units;
use crate::yaml::{Kind, Node, Pos};

/// Where an item was written: its position and key path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct At {
    /// Line and column.
    pub pos: Pos,
    /// `services.web.uses[0]`.
    pub key: String,
}

/// The application file.
#[derive(Clone, Debug, Default)]
pub struct App {
    /// `name`.
    pub name: String,
    /// The subnet, as written (`subnet`, default `10.77.0.0/24`).
    pub subnet: Option<(String, At)>,
    /// `services`, in file order.
    pub services: Vec<Service>,
    /// `volumes`, in file order.
    pub volumes: Vec<Volume>,
}

/// A named volume.
#[derive(Clone, Debug)]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A service as written.
#[derive(Clone, Debug, Default)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// Where it was declared.
    pub at: At,
    /// `image`, as written.
    pub image: String,
    /// `mem` in bytes, if given.
    pub mem: Option<u64>,
    /// `cpus` in thousandths of a core, if given.
    pub cpus: Option<u32>,
    /// `command`: guest arguments, templates unexpanded.
    pub command: Vec<(String, At)>,
    /// `ports`: host address, host port, guest port, and the limits on host connections.
    pub ports: Vec<((Ipv4Addr, u16, u16, IngressLimits), At)>,
    /// `uses`: `svc` or `svc.endpoint`.
    pub uses: Vec<(String, At)>,
    /// `provides`: endpoint name, port, protocol.
    pub provides: Vec<((String, u16, Proto), At)>,
    /// `egress`: address, port, protocol.
    pub egress: Vec<((Ipv4Addr, u16, Proto), At)>,
    /// `volumes`: volume name, block device name.
    pub volumes: Vec<((String, String), At)>,
    /// `healthcheck`.
    pub healthcheck: Option<(HealthSpec, At)>,
    /// `restart`.
    pub restart: Restart,
    /// `depends_on`: service, condition.
    pub depends_on: Vec<((String, Condition), At)>,
}

/// A health check as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSpec {
    /// A TCP connect or an HTTP GET.
    pub probe: Probe,
    /// The guest port probed.
    pub port: u16,
    /// Where the port was written (for the provided-endpoint check).
    pub port_at: At,
    /// Time between probes.
    pub interval: Duration,
    /// Time a probe may take.
    pub timeout: Duration,
    /// Failed probes in a row before the service is unhealthy.
    pub retries: u32,
    /// Grace time after start during which failures do not count.
    pub start_period: Duration,
}

/// What a health check does.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// Connect to the port.
    Tcp,
    /// `GET path` on the port; healthy on a 2xx or 3xx answer.
    Http {
        /// The path, starting with `/`.
        path: String,
    },
}

/// A restart policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never restart.
    #[default]
    No,
    /// Restart when the guest exits with a failure or crashes.
    OnFailure,
    /// Restart whenever it stops, except when stopped by the operator.
    Always,
}

/// When a dependency counts as ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Once it has been started.
    #[default]
    ServiceStarted,
    /// Once its health check passes.
    ServiceHealthy,
}

// The keys each mapping accepts. Every list is also in [`keys`], which
// `crates/compose/tests/reference.rs` checks `docs/sturdy-yaml.md` against: a key added here
// must be documented there.
const TOP_KEYS: &[&str] = &["name", "services", "volumes", "subnet"];
const SERVICE_KEYS: &[&str] = &[
    "image",
    "mem",
    "cpus",
    "command",
    "ports",
    "uses",
    "provides",
    "egress",
    "volumes",
    "healthcheck",
    "restart",
    "depends_on",
];
const HEALTH_KEYS: &[&str] = &[
    "tcp",
    "http",
    "port",
    "interval",
    "timeout",
    "retries",
    "start_period",
];
const VOLUME_KEYS: &[&str] = &["size"];
const PORT_KEYS: &[&str] = &[
    "target",
    "published",
    "host_ip",
    "protocol",
    "connections_per_source",
    "idle_timeout",
    "handshake_timeout",
];
const DEPENDS_KEYS: &[&str] = &["condition"];

/// Every key the application file accepts, as a path from the top of the file:
/// `services.NAME.healthcheck.interval`. `NAME` and `SERVICE` stand for names the file
/// chooses; `[]` stands for each item of a list (`services.NAME.ports[].target`).
pub fn keys() -> Vec<String> {
    let nested: [(&str, &[&str]); 6] = [
        ("", TOP_KEYS),
        ("services.NAME.", SERVICE_KEYS),
        ("services.NAME.ports[].", PORT_KEYS),
        ("services.NAME.healthcheck.", HEALTH_KEYS),
        ("services.NAME.depends_on.SERVICE.", DEPENDS_KEYS),
        ("volumes.NAME.", VOLUME_KEYS),
    ];
    nested
        .iter()
        .flat_map(|(prefix, keys)| keys.iter().map(move |k| format!("{prefix}{k}")))
        .collect()
}

/// Hints for keys people bring from Docker Compose.
fn compose_hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "environment" | "env_file" => {
            "sturdy has no environment variables: guests get boot arguments, pass them in 'command'"
        }
        "build" => "sturdy does not build images: point 'image' at a built unikernel",
        "networks" | "network_mode" | "links" | "expose" => {
            "the network is the capability graph: use 'uses' and 'provides' (and 'egress' to reach outside)"
        }
        "mem_limit" | "memory" => "write the guest memory as 'mem', e.g. mem: 64M",
        "cpu_quota" | "cpu_period" | "cpu_count" | "cpu_shares" | "cpuset" => {
            "write the CPU time a service may use as 'cpus', in cores, e.g. cpus: 0.5"
        }
        "test" => "a health check is { tcp: PORT } or { http: PATH, port: PORT }",
        _ => return None,
    })
}

pub(crate) struct Reader<'s> {
    pub(crate) sink: &'s mut Sink,
}

fn child(key: &str, name: &str) -> String {
    if key.is_empty() {
        name.to_string()
    } else {
        format!("{key}.{name}")
    }
}

fn at(pos: Pos, key: &str) -> At {
    At {
        pos,
        key: key.to_string(),
    }
}

impl Reader<'_> {
    fn err(&mut self, pos: Pos, key: &str, msg: impl Into<String>) {
        self.sink.error(pos, key, msg);
    }

    fn type_err(&mut self, node: &Node, key: &str, expected: &str) {
        let found = node.describe();
        self.err(node.pos, key, format!("expected {expected}, found {found}"));
    }

    /// The entries of a mapping, keys checked: strings, no duplicates, and (with `valid`) known.
    fn entries<'n>(
        &mut self,
        node: &'n Node,
        key: &str,
        expected: &str,
        valid: Option<&[&str]>,
        what: &str,
    ) -> Vec<(String, Pos, &'n Node)> {
        let Kind::Map(entries) = &node.kind else {
            if !node.is_null() || valid.is_some() {
                self.type_err(node, key, expected);
            }
            return Vec::new();
        };
        let mut out: Vec<(String, Pos, &Node)> = Vec::new();
        for (k, v) in entries {
            let Some(name) = k.scalar().filter(|_| !k.is_null()) else {
                let found = k.describe();
                self.err(
                    k.pos,
                    key,
                    format!("a key must be a {what} name, found {found}"),
                );
                continue;
            };
            if let Some((_, first, _)) = out.iter().find(|(n, _, _)| n == name) {
                let line = first.line;
                self.err(
                    k.pos,
                    &child(key, name),
                    format!("{what} '{name}' is declared twice (first on line {line})"),
                );
                continue;
            }
            if let Some(valid) = valid {
                if !valid.contains(&name) {
                    let mut msg = format!("unknown key '{name}'");
                    if let Some(hint) = compose_hint(name) {
                        msg.push_str(&format!(": {hint}"));
                    } else {
                        if let Some(s) = closest(name, valid.iter().copied()) {
                            msg.push_str(&format!("; did you mean '{s}'?"));
                        }
                        msg.push_str(&format!(" (valid keys: {})", list(valid)));
                    }
                    self.err(k.pos, &child(key, name), msg);
                    continue;
                }
            }
            out.push((name.to_string(), k.pos, v));
        }
        out
    }

    /// A scalar that is not null.
    fn text(&mut self, node: &Node, key: &str, expected: &str) -> Option<String> {
        match &node.kind {
            Kind::Scalar { text, .. } if !node.is_null() => Some(text.clone()),
            _ => {
                self.type_err(node, key, expected);
                None
            }
        }
    }

    /// The items of a list.
    fn items<'n>(&mut self, node: &'n Node, key: &str, expected: &str) -> &'n [Node] {
        match &node.kind {
            Kind::Seq(items) => items,
            _ if node.is_null() => &[],
            _ => {
                self.type_err(node, key, expected);
                &[]
            }
        }
    }

    /// Each item of a list of scalars, read by `f`.
    fn each<T>(
        &mut self,
        node: &Node,
        key: &str,
        expected: &str,
        item: &str,
        mut f: impl FnMut(&str) -> Result<T, String>,
    ) -> Vec<(T, At)> {
        let mut out = Vec::new();
        for (i, n) in self.items(node, key, expected).iter().enumerate() {
            let k = format!("{key}[{i}]");
            let Some(text) = self.text(n, &k, item) else {
                continue;
            };
            match f(&text) {
                Ok(v) => out.push((v, at(n.pos, &k))),
                Err(e) => self.err(n.pos, &k, e),
            }
        }
        out
    }

    fn value<T>(
        &mut self,
        node: &Node,
        key: &str,
        expected: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.text(node, key, expected)?;
        match f(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(node.pos, key, e);
                None
            }
        }
    }

    /// Reads the document.
    pub(crate) fn app(&mut self, docs: &[Node], default_name: Option<&str>) -> App {
        let mut app = App::default();
        let root = match docs {
            [] => {
                self.err(
                    Pos { line: 1, column: 1 },
                    "",
                    "the file is empty: expected a mapping with 'name', 'services' and optionally 'volumes'",
                );
                return app;
            }
            [root] => root,
            [_, second, ..] => {
                self.err(
                    second.pos,
                    "",
                    "the file holds more than one YAML document; an application is one document",
                );
                &docs[0]
            }
        };
        let entries = self.entries(
            root,
            "",
            "a mapping with 'name', 'services' and optionally 'volumes'",
            Some(TOP_KEYS),
            "key",
        );
        let mut name = None;
        let mut services = None;
        for (k, kpos, v) in &entries {
            match k.as_str() {
                "name" => {
                    if let Some(n) = self.value(v, k, "the application's name", |s| {
                        units::label(s).map(|_| s.to_string())
                    }) {
                        name = Some(n);
                    }
                }
                "subnet" => {
                    if let Some(s) = self.text(v, k, "a subnet such as 10.77.0.0/24") {
                        app.subnet = Some((s, at(v.pos, k)));
                    }
                }
                "services" => services = Some((*kpos, *v)),
                "volumes" => app.volumes = self.volumes(v),
                _ => {}
            }
        }
        if matches!(root.kind, Kind::Map(_)) {
            match name {
                Some(n) => app.name = n,
                None => match default_name.filter(|n| units::label(n).is_ok()) {
                    Some(n) if !entries.iter().any(|(k, _, _)| k == "name") => {
                        app.name = n.to_string()
                    }
                    _ if entries.iter().any(|(k, _, _)| k == "name") => {}
                    _ => self.err(
                        Pos { line: 1, column: 1 },
                        "name",
                        "missing: the application needs a name, e.g. name: guestbook",
                    ),
                },
            }
            match services {
                None => self.err(
                    Pos { line: 1, column: 1 },
                    "services",
                    "missing: an application needs at least one service, e.g. services: { web: { image: guests/web } }",
                ),
                Some((kpos, v)) => {
                    let list = self.entries(
                        v,
                        "services",
                        "a mapping of service names to services",
                        None,
                        "service",
                    );
                    if list.is_empty() && (v.is_null() || matches!(&v.kind, Kind::Map(m) if m.is_empty())) {
                        self.err(kpos, "services", "an application needs at least one service");
                    }
                    for (name, pos, node) in list {
                        if let Some(s) = self.service(&name, pos, node) {
                            app.services.push(s);
                        }
                    }
                }
            }
        }
        app
    }

    fn volumes(&mut self, node: &Node) -> Vec<Volume> {
        let mut out = Vec::new();
        let list = self.entries(
            node,
            "volumes",
            "a mapping of volume names to { size: SIZE }",
            None,
            "volume",
        );
        for (name, pos, v) in list {
            let key = child("volumes", &name);
            if let Err(e) = units::label(&name) {
                self.err(pos, &key, e);
                continue;
            }
            let fields = self.entries(
                v,
                &key,
                "{ size: SIZE }, e.g. { size: 64M }",
                Some(VOLUME_KEYS),
                "key",
            );
            let mut size = None;
            for (k, _, fv) in &fields {
                let fkey = child(&key, k);
                size = self.value(fv, &fkey, "a size such as 64M", units::size);
                if let Some(s) = size {
                    if s == 0 || s % 512 != 0 {
                        self.err(
                            fv.pos,
                            &fkey,
                            format!("a volume's size must be a positive multiple of 512 bytes (one sector), not {s} bytes"),
                        );
                        size = None;
                    }
                }
            }
            if fields.is_empty() && matches!(v.kind, Kind::Map(_)) || v.is_null() {
                self.err(
                    pos,
                    &key,
                    "missing 'size': a volume needs a size, e.g. data: { size: 64M }",
                );
            }
            if let Some(size) = size {
                out.push(Volume { name, size });
            }
        }
        out
    }

    fn service(&mut self, name: &str, pos: Pos, node: &Node) -> Option<Service> {
        let key = child("services", name);
        let mut s = Service {
            name: name.to_string(),
            at: at(pos, &key),
            ..Service::default()
        };
        let mut ok = true;
        if let Err(e) = units::label(name) {
            self.err(
                pos,
                &key,
                format!("{e} (a service name is also a capability name)"),
            );
            ok = false;
        } else if matches!(name, "egress" | "self" | "gateway") {
            self.err(
                pos,
                &key,
                format!("'{name}' is reserved (egress capabilities are named egress.N, the fabric's gateway is 'gateway', templates use 'self'); pick another name"),
            );
            ok = false;
        }
        let fields = self.entries(
            node,
            &key,
            "a mapping with at least 'image'",
            Some(SERVICE_KEYS),
            "key",
        );
        if !fields.iter().any(|(k, _, _)| k == "image") && matches!(node.kind, Kind::Map(_)) {
            self.err(
                pos,
                &key,
                "missing 'image': every service needs an image, the path of a unikernel",
            );
        }
        if !matches!(node.kind, Kind::Map(_)) {
            if node.is_null() {
                self.err(
                    pos,
                    &key,
                    "missing 'image': every service needs an image, the path of a unikernel",
                );
            }
            return None;
        }
        for (k, _, v) in fields {
            let fkey = child(&key, &k);
            match k.as_str() {
                "image" => {
                    if let Some(img) = self.text(v, &fkey, "the path of a unikernel image") {
                        if img.trim().is_empty() {
                            self.err(v.pos, &fkey, "the image path is empty: give the path of a unikernel, relative to this file");
                        } else {
                            s.image = img;
                        }
                    }
                }
                "mem" => {
                    s.mem = self.value(v, &fkey, "a size such as 64M", |t| {
                        units::memory(units::size(t)?).map_err(|e| format!("'{t}' is {e}"))
                    });
                }
                "cpus" => {
                    s.cpus = self.value(v, &fkey, "a number of cores such as 0.5", |t| {
                        units::cpus(t).map_err(|e| format!("'{t}' is {e}"))
                    });
                }
                "command" => {
                    s.command = match &v.kind {
                        Kind::Scalar { text, .. } if !v.is_null() => {
                            let mut args = Vec::new();
                            for a in split_args(text) {
                                match guest_arg(&a) {
                                    Ok(a) => args.push((a, at(v.pos, &fkey))),
                                    Err(e) => self.err(v.pos, &fkey, e),
                                }
                            }
                            args
                        }
                        _ => self.each(v, &fkey, "a list of guest arguments such as [\"--greeting=hi\"]", "a guest argument", guest_arg),
                    };
                }
                "ports" => s.ports = self.ports(v, &fkey),
                "uses" => {
                    s.uses = self.each(v, &fkey, "a list of capabilities such as [db] or [\"db.kv\"]", "a capability such as db or db.kv", |u| {
                        let (svc, ep) = match u.split_once('.') {
                            Some((a, b)) => (a, Some(b)),
                            None => (u, None),
                        };
                        units::label(svc).map_err(|_| format!("'{u}' is not a capability: write SERVICE or SERVICE.ENDPOINT, e.g. db or db.kv"))?;
                        if let Some(ep) = ep {
                            units::label(ep).map_err(|_| format!("'{u}' is not a capability: write SERVICE or SERVICE.ENDPOINT, e.g. db or db.kv"))?;
                        }
                        Ok(u.to_string())
                    });
                }
                "provides" => {
                    for (ep, epos, ev) in self.entries(v, &fkey, "a mapping of endpoint names to PORT/PROTO, e.g. { kv: 6379/tcp }", None, "endpoint") {
                        let ekey = child(&fkey, &ep);
                        if let Err(e) = units::label(&ep) {
                            self.err(epos, &ekey, e);
                            continue;
                        }
                        if let Some((p, pr)) = self.value(ev, &ekey, "PORT/PROTO such as 6379/tcp", units::endpoint) {
                            if let Some(((other, _, _), _)) = s.provides.iter().find(|((_, op, opr), _)| *op == p && *opr == pr) {
                                let other = other.clone();
                                self.err(ev.pos, &ekey, format!("{p}/{pr} is already provided as endpoint '{other}'"));
                                continue;
                            }
                            s.provides.push(((ep, p, pr), at(epos, &ekey)));
                        }
                    }
                }
                "egress" => {
                    s.egress = self.each(v, &fkey, "a list of outside endpoints such as [\"203.0.113.7:443/tcp\"]", "an outside endpoint such as 203.0.113.7:443/tcp", units::egress);
                }
                "volumes" => {
                    s.volumes = self.each(v, &fkey, "a list of VOLUME:DEVICE such as [\"data:storage\"]", "VOLUME:DEVICE such as data:storage", |t| {
                        let (vol, dev) = t.split_once(':').unwrap_or((t, t));
                        units::label(vol).map_err(|e| format!("{e}; expected VOLUME:DEVICE such as data:storage"))?;
                        units::device(dev)?;
                        Ok((vol.to_string(), dev.to_string()))
                    });
                }
                "healthcheck" => s.healthcheck = self.healthcheck(v, &fkey).map(|h| (h, at(v.pos, &fkey))),
                "restart" => {
                    if let Some(r) = self.value(v, &fkey, "no, on-failure or always", |t| match t {
                        "no" => Ok(Restart::No),
                        "on-failure" => Ok(Restart::OnFailure),
                        "always" => Ok(Restart::Always),
                        "unless-stopped" => Err("'unless-stopped' is 'always' in sturdy (a service stopped by the operator stays stopped): use always".to_string()),
                        "false" => Err("write 'no' in quotes or as no: valid policies are no, on-failure, always".to_string()),
                        other => Err(format!("'{other}' is not a restart policy: valid are no, on-failure, always")),
                    }) {
                        s.restart = r;
                    }
                }
                "depends_on" => s.depends_on = self.depends_on(v, &fkey),
                _ => {}
            }
        }
        ok.then_some(s)
    }

    fn healthcheck(&mut self, node: &Node, key: &str) -> Option<HealthSpec> {
        let fields = self.entries(
            node,
            key,
            "{ tcp: PORT } or { http: PATH, port: PORT }",
            Some(HEALTH_KEYS),
            "key",
        );
        if !matches!(node.kind, Kind::Map(_)) {
            return None;
        }
        let mut probe = None;
        let mut port = None;
        let mut port_at = At::default();
        let mut h = HealthSpec {
            probe: Probe::Tcp,
            port: 0,
            port_at: At::default(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            retries: 3,
            start_period: Duration::ZERO,
        };
        let mut ok = true;
        for (k, kpos, v) in &fields {
            let fkey = child(key, k);
            let positive = units::positive_duration;
            match k.as_str() {
                "tcp" => {
                    if probe.is_some() {
                        self.err(
                            *kpos,
                            &fkey,
                            "a health check is either tcp or http, not both",
                        );
                        ok = false;
                    }
                    probe = Some(Probe::Tcp);
                    port = self.value(v, &fkey, "a port number", units::port);
                    port_at = at(v.pos, &fkey);
                    ok &= port.is_some();
                }
                "http" => {
                    if probe.is_some() {
                        self.err(
                            *kpos,
                            &fkey,
                            "a health check is either tcp or http, not both",
                        );
                        ok = false;
                    }
                    match self.value(v, &fkey, "an HTTP path such as /health", |t| {
                        if t.starts_with('/') && !t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                            Ok(t.to_string())
                        } else {
                            Err(format!("'{t}' is not an HTTP path: it must start with '/' and contain no spaces, e.g. /health"))
                        }
                    }) {
                        Some(path) => probe = Some(Probe::Http { path }),
                        None => ok = false,
                    }
                }
                "port" => {
                    if fields.iter().any(|(k, _, _)| k == "tcp") {
                        self.err(*kpos, &fkey, "'port' goes with 'http'; a tcp check names its port itself: { tcp: 6379 }");
                        ok = false;
                    }
                    port = self.value(v, &fkey, "a port number", units::port);
                    port_at = at(v.pos, &fkey);
                    ok &= port.is_some();
                }
                "interval" => match self.value(v, &fkey, "a duration such as 2s", positive) {
                    Some(d) => h.interval = d,
                    None => ok = false,
                },
                "timeout" => match self.value(v, &fkey, "a duration such as 1s", positive) {
                    Some(d) => h.timeout = d,
                    None => ok = false,
                },
                "start_period" => {
                    match self.value(v, &fkey, "a duration such as 10s", units::duration) {
                        Some(d) => h.start_period = d,
                        None => ok = false,
                    }
                }
                "retries" => match self.value(v, &fkey, "a number of retries (1 or more)", |t| {
                    t.parse::<u32>().ok().filter(|&n| n >= 1).ok_or_else(|| {
                        format!("'{t}' is not a number of retries: write a whole number, 1 or more")
                    })
                }) {
                    Some(n) => h.retries = n,
                    None => ok = false,
                },
                _ => {}
            }
        }
        let Some(probe) = probe else {
            if fields.iter().any(|(k, _, _)| k == "tcp" || k == "http") {
                return None; // the probe's own error is reported
            }
            self.err(
                node.pos,
                key,
                "a health check needs a probe: { tcp: PORT } or { http: PATH, port: PORT }",
            );
            return None;
        };
        if matches!(probe, Probe::Http { .. }) && port.is_none() && ok {
            self.err(node.pos, key, "an http health check needs 'port', the guest port to send the request to, e.g. { http: /health, port: 80 }");
            return None;
        }
        h.probe = probe;
        h.port = port?;
        h.port_at = port_at;
        ok.then_some(h)
    }

    /// `ports`: each `"[IP:]HOST:GUEST"`, or Compose's long form with sturdy's limits:
    /// `{ published: 8080, target: 80, host_ip: 127.0.0.1, connections_per_source: 64,
    /// idle_timeout: 5m, handshake_timeout: 10s }`.
    fn ports(&mut self, node: &Node, key: &str) -> Vec<((Ipv4Addr, u16, u16, IngressLimits), At)> {
        let mut out = Vec::new();
        let expected = "a list of published ports such as [\"8080:80\"]";
        for (i, n) in self.items(node, key, expected).iter().enumerate() {
            let k = format!("{key}[{i}]");
            if !matches!(n.kind, Kind::Map(_)) {
                let Some(text) = self.text(
                    n,
                    &k,
                    "a published port such as \"8080:80\", or { published: 8080, target: 80 }",
                ) else {
                    continue;
                };
                match units::published(&text) {
                    Ok((ip, host, guest)) => {
                        out.push(((ip, host, guest, IngressLimits::default()), at(n.pos, &k)))
                    }
                    Err(e) => self.err(n.pos, &k, e),
                }
                continue;
            }
            let fields = self.entries(
                n,
                &k,
                "{ published: 8080, target: 80 }",
                Some(PORT_KEYS),
                "key",
            );
            let (mut ip, mut host, mut guest) = (Ipv4Addr::UNSPECIFIED, None, None);
            let mut limits = IngressLimits::default();
            let mut ok = true;
            for (f, _, v) in &fields {
                let fkey = child(&k, f);
                let positive = units::positive_duration;
                let found = match f.as_str() {
                    "target" => self.value(v, &fkey, "a guest port", units::port).map(|p| guest = Some(p)),
                    "published" => self.value(v, &fkey, "a host port", units::port).map(|p| host = Some(p)),
                    "host_ip" => self.value(v, &fkey, "an IPv4 address such as 127.0.0.1", units::ipv4).map(|a| ip = a),
                    "protocol" => self.value(v, &fkey, "tcp", |t| match t {
                        "tcp" => Ok(()),
                        other => Err(format!("only tcp ports can be published, not '{other}'")),
                    }),
                    "connections_per_source" => self
                        .value(v, &fkey, "a number of connections, 1 to 1024", |t| match t.parse::<u32>() {
                            Ok(n) if (1..=1024).contains(&n) => Ok(n),
                            _ => Err(format!("'{t}' is not a number of connections from 1 to 1024 (the gateway holds 1024 at most)")),
                        })
                        .map(|n| limits.per_source = n),
                    "idle_timeout" => self.value(v, &fkey, "a duration such as 5m", positive).map(|d| limits.idle_timeout = d),
                    "handshake_timeout" => self.value(v, &fkey, "a duration such as 10s", positive).map(|d| limits.handshake_timeout = d),
                    _ => Some(()),
                };
                ok &= found.is_some();
            }
            match (host, guest) {
                (Some(host), Some(guest)) if ok => {
                    out.push(((ip, host, guest, limits), at(n.pos, &k)))
                }
                (None, _) if ok => self.err(
                    n.pos,
                    &k,
                    "missing 'published': the host port (sturdy never picks a host port for you)",
                ),
                (_, None) if ok => self.err(n.pos, &k, "missing 'target': the guest port"),
                _ => {}
            }
        }
        out
    }

    fn depends_on(&mut self, node: &Node, key: &str) -> Vec<((String, Condition), At)> {
        let check = |t: &str| {
            units::label(t)
                .map(|_| t.to_string())
                .map_err(|_| format!("'{t}' is not a service name"))
        };
        if let Kind::Seq(_) = node.kind {
            return self
                .each(node, key, "", "a service name", check)
                .into_iter()
                .map(|(n, a)| ((n, Condition::ServiceStarted), a))
                .collect();
        }
        let mut out = Vec::new();
        let list = self.entries(
            node,
            key,
            "a list of services, or a mapping such as { db: { condition: service_healthy } }",
            None,
            "dependency",
        );
        for (name, pos, v) in list {
            let dkey = child(key, &name);
            if let Err(e) = check(&name) {
                self.err(pos, &dkey, e);
                continue;
            }
            let mut cond = Condition::ServiceStarted;
            for (k, _, cv) in self.entries(
                v,
                &dkey,
                "{ condition: service_started | service_healthy }",
                Some(DEPENDS_KEYS),
                "key",
            ) {
                let ckey = child(&dkey, &k);
                match self.value(cv, &ckey, "service_started or service_healthy", |t| match t {
                    "service_started" => Ok(Condition::ServiceStarted),
                    "service_healthy" => Ok(Condition::ServiceHealthy),
                    "service_completed_successfully" => Err("'service_completed_successfully' is not supported: valid conditions are service_started and service_healthy".into()),
                    other => Err(format!("'{other}' is not a condition: valid are service_started and service_healthy")),
                }) {
                    Some(c) => cond = c,
                    None => continue,
                }
            }
            out.push(((name, cond), at(pos, &dkey)));
        }
        out
    }
}

/// One guest argument of `command`, checked: not empty, no whitespace outside plan references
/// (the monitor joins arguments with spaces), not the boot configuration's.
fn guest_arg(a: &str) -> Result<String, String> {
    if a.is_empty() || without_references(a).chars().any(char::is_whitespace) {
        Err(format!("'{a}': a guest argument cannot be empty or contain whitespace (the monitor joins arguments with spaces)"))
    } else if a.starts_with(sturdy_bootcfg::PREFIX) {
        Err(format!("'{a}': arguments starting with '{}' are the boot configuration, which sturdy writes from the plan", sturdy_bootcfg::PREFIX))
    } else {
        Ok(a.to_string())
    }
}

/// `arg` with its `{{ ... }}` plan references removed (they may contain spaces).
fn without_references(arg: &str) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => rest = &rest[start + end + 2..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A command written as one string, split at whitespace outside `{{ ... }}` references.
fn split_args(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if !depth && c == '{' && chars.peek() == Some(&'{') {
            depth = true;
        } else if depth && c == '}' && chars.peek() == Some(&'}') {
            depth = false;
        }
        if c.is_whitespace() && !depth {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
