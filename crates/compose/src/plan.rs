//! The plan: what the supervisor runs, resolved from a checked application file.
//!
//! The network part is a [`sturdy_fabric::plan::Plan`] (addresses, capabilities, egress) built
//! the way the fabric expects (services added in file order, so addresses are deterministic);
//! each service's guest arguments are that plan's boot configuration for it
//! ([`sturdy_bootcfg::render`]) followed by its `command` with plan references expanded:
//!
//! | reference | value |
//! |---|---|
//! | `{{ app.name }}`, `{{ self.name }}` | the application's, the service's name |
//! | `{{ self.ipv4 }}`, `{{ self.cidr }}`, `{{ self.mac }}` | `10.77.0.2`, `10.77.0.2/24`, `02:00:0a:4d:00:02` |
//! | `{{ self.gateway }}` | the gateway's address, `10.77.0.1` |
//! | `{{ uses.db.kv }}` | `10.77.0.3:6379` (the service must hold `db.kv`) |
//! | `{{ uses.db.kv.ipv4 }}`, `{{ uses.db.kv.port }}` | `10.77.0.3`, `6379` |
//! | `{{ uses.db.ipv4 }}` | db's address (the service must hold a capability to db) |
//! | `{{ egress.0 }}` | the first egress target, `203.0.113.7:443` |

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sturdy_bootcfg::Proto;
use sturdy_fabric::plan::{Plan as FabricPlan, PlanError, Subnet};

use crate::error::Sink;
use crate::model::{App, Condition, Probe, Restart};
use crate::units;

/// Guest memory when a service does not say.
pub const DEFAULT_MEM: u64 = 64 << 20;
/// CPU time when a service does not say (`cpus`, in thousandths of a core): one core.
pub const DEFAULT_CPUS_MILLI: u32 = 1000;

fn default_cpus_milli() -> u32 {
    DEFAULT_CPUS_MILLI
}

/// A resolved application: everything the supervisor needs to run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The application's name.
    pub name: String,
    /// The application file the plan was made from.
    pub file: PathBuf,
    /// The application's subnet, e.g. `10.77.0.0/24`.
    pub subnet: String,
    /// The gateway's address (ingress peer, egress next hop).
    pub gateway: Ipv4Addr,
    /// Service names in the order to start them: each after its dependencies, ties in file
    /// order. Stop in reverse.
    pub start_order: Vec<String>,
    /// The services, in file order.
    pub services: Vec<ServicePlan>,
    /// The capability graph: who may connect to which endpoint.
    pub capabilities: Vec<CapabilityPlan>,
    /// Who may connect to which outside address.
    pub egress: Vec<EgressPlan>,
    /// The volumes, in file order.
    pub volumes: Vec<VolumePlan>,
}

/// One service of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePlan {
    /// Its name.
    pub name: String,
    /// The unikernel image, resolved against the application file's directory.
    pub image: PathBuf,
    /// Guest memory in bytes (a whole number of MiB).
    pub mem: u64,
    /// CPU time its monitor may use, in thousandths of a core (`cpus: 0.5` is 500). Plans
    /// recorded before the key existed get one core.
    #[serde(default = "default_cpus_milli")]
    pub cpus_milli: u32,
    /// Its fabric port.
    pub port: u16,
    /// Its NIC's name in the guest's manifest.
    pub nic: String,
    /// Its NIC's MAC.
    pub mac: String,
    /// Its NIC's address.
    pub ipv4: Ipv4Addr,
    /// Endpoints it provides.
    pub provides: Vec<EndpointPlan>,
    /// Capabilities it holds, by the name it asks for them (`db.kv`).
    pub uses: Vec<String>,
    /// The guest's arguments: the boot configuration, then its own (templates expanded).
    pub args: Vec<String>,
    /// Block devices.
    pub volumes: Vec<AttachmentPlan>,
    /// Host ports published to it.
    pub ports: Vec<PublishedPlan>,
    /// Its health check.
    pub healthcheck: Option<HealthcheckPlan>,
    /// Its restart policy.
    pub restart: Restart,
    /// Services that must be ready before it starts.
    pub depends_on: Vec<DependencyPlan>,
}

impl ServicePlan {
    /// Guest memory in MiB, as the monitor's `--mem` takes it.
    pub fn mem_mib(&self) -> u64 {
        self.mem >> 20
    }
}

/// A provided endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPlan {
    /// Its name.
    pub name: String,
    /// Its port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

/// A capability: `consumer` may connect to `provider`'s `endpoint` at `ipv4:port/proto`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityPlan {
    /// The service that may connect.
    pub consumer: String,
    /// The service providing the endpoint.
    pub provider: String,
    /// The endpoint.
    pub endpoint: String,
    /// The provider's address.
    pub ipv4: Ipv4Addr,
    /// The endpoint's port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

/// An egress capability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressPlan {
    /// The service that may connect.
    pub consumer: String,
    /// The name it asks for it by (`egress.0`).
    pub name: String,
    /// The outside address.
    pub ipv4: Ipv4Addr,
    /// The outside port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

/// A volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumePlan {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The service it is attached to, if any.
    pub service: Option<String>,
}

/// A volume attached to a service as a block device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentPlan {
    /// The volume.
    pub volume: String,
    /// The block device name in the guest's manifest (`--block:DEVICE=FILE`).
    pub device: String,
    /// The volume's size in bytes.
    pub size: u64,
}

/// A host port forwarded to a guest port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPlan {
    /// The host address to listen on (`0.0.0.0` for all).
    pub host_ip: Ipv4Addr,
    /// The host port.
    pub host_port: u16,
    /// The guest port (a provided tcp endpoint).
    pub guest_port: u16,
    /// The endpoint's name.
    pub endpoint: String,
    /// Connections one source address may hold open at once.
    #[serde(default = "default_per_source")]
    pub connections_per_source: u32,
    /// A connection that moves nothing this long is reset.
    #[serde(with = "duration_text", default = "default_idle")]
    pub idle_timeout: Duration,
    /// A connection whose guest does not answer the handshake this long is reset.
    #[serde(with = "duration_text", default = "default_handshake")]
    pub handshake_timeout: Duration,
}

impl PublishedPlan {
    /// The gateway's limits for this publication's host connections.
    pub fn limits(&self) -> sturdy_fabric::IngressLimits {
        sturdy_fabric::IngressLimits {
            per_source: self.connections_per_source,
            idle_timeout: self.idle_timeout,
            handshake_timeout: self.handshake_timeout,
        }
    }
}

fn default_per_source() -> u32 {
    sturdy_fabric::IngressLimits::default().per_source
}

fn default_idle() -> Duration {
    sturdy_fabric::IngressLimits::default().idle_timeout
}

fn default_handshake() -> Duration {
    sturdy_fabric::IngressLimits::default().handshake_timeout
}

/// A health check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthcheckPlan {
    /// TCP connect or HTTP GET.
    pub probe: Probe,
    /// The guest port probed.
    pub port: u16,
    /// Time between probes.
    #[serde(with = "duration_text")]
    pub interval: Duration,
    /// Time one probe may take.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// Failures in a row that make the service unhealthy.
    pub retries: u32,
    /// Grace period after start.
    #[serde(with = "duration_text")]
    pub start_period: Duration,
}

/// A dependency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyPlan {
    /// The service depended on.
    pub service: String,
    /// When it counts as ready.
    pub condition: Condition,
}

mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::units::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        crate::units::duration(&text).map_err(serde::de::Error::custom)
    }
}

impl Plan {
    /// The fabric's plan for this application: the same addresses and capabilities the guests'
    /// arguments were rendered from (built again, deterministically, from this plan).
    pub fn fabric(&self) -> Result<FabricPlan, PlanError> {
        let subnet: Subnet = self.subnet.parse()?;
        let mut fabric = FabricPlan::new(subnet);
        for s in &self.services {
            let provides = s
                .provides
                .iter()
                .map(|e| sturdy_bootcfg::Endpoint {
                    name: e.name.clone(),
                    port: e.port,
                    proto: if e.proto == "udp" {
                        Proto::Udp
                    } else {
                        Proto::Tcp
                    },
                })
                .collect();
            fabric.add_service(&s.name, provides)?;
        }
        for c in &self.capabilities {
            fabric.grant(&c.consumer, &format!("{}.{}", c.provider, c.endpoint))?;
        }
        for e in &self.egress {
            let proto = if e.proto == "udp" {
                Proto::Udp
            } else {
                Proto::Tcp
            };
            fabric.grant_egress(&e.consumer, &e.name, e.ipv4, e.port, proto)?;
        }
        Ok(fabric)
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The plan as YAML, for `sturdy config`.
    pub fn to_yaml(&self) -> String {
        let value = serde_json::to_value(self).expect("a plan is always serializable");
        let mut out = String::new();
        let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
        emitter
            .dump(&to_yaml_value(&value))
            .expect("writing to a String cannot fail");
        let body = out.strip_prefix("---\n").unwrap_or(&out).to_string();
        body + "\n"
    }

    /// The plan as pretty-printed JSON, for `sturdy config --json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan is always serializable") + "\n"
    }

    /// The plan read back from [`Plan::to_json`]'s output, [`check`](Self::check)ed.
    pub fn from_json(text: &str) -> Result<Plan, serde_json::Error> {
        let plan: Plan = serde_json::from_str(text)?;
        plan.check().map_err(serde::de::Error::custom)?;
        Ok(plan)
    }

    /// Checks what a plan that did not come from [`crate::load`] (one read from the API or
    /// from a database) must hold before anything is built from it: every name follows the
    /// application file's rules (names become file names: a log per service, a file per
    /// volume), names are unique and refer to what exists, memory is what the file allows,
    /// and no path or argument holds a NUL.
    pub fn check(&self) -> Result<(), String> {
        let label = |what: &str, name: &str| units::label(name).map_err(|e| format!("{what}: {e}"));
        let device =
            |what: &str, name: &str| units::device(name).map_err(|e| format!("{what}: {e}"));
        label("the application's name", &self.name)?;
        let mut names = std::collections::HashSet::new();
        for s in &self.services {
            label("a service name", &s.name)?;
            if !names.insert(s.name.as_str()) {
                return Err(format!("service '{}' is planned twice", s.name));
            }
        }
        let service = |what: &str, name: &str| {
            if names.contains(name) {
                Ok(())
            } else {
                Err(format!("{what} '{name}' is no service of the plan"))
            }
        };
        let mut volumes = std::collections::HashSet::new();
        for v in &self.volumes {
            label("a volume name", &v.name)?;
            if !volumes.insert(v.name.as_str()) {
                return Err(format!("volume '{}' is planned twice", v.name));
            }
            if let Some(s) = &v.service {
                service("the volume's service", s)?;
            }
        }
        for name in &self.start_order {
            service("the start order's", name)?;
        }
        if self.start_order.len() != self.services.len() {
            return Err("the start order does not list every service once".into());
        }
        for s in &self.services {
            let within = |e: String| format!("service '{}': {e}", s.name);
            if s.image.as_os_str().as_encoded_bytes().contains(&0)
                || s.args.iter().any(|a| a.contains('\0'))
            {
                return Err(within("its image or arguments hold a NUL byte".into()));
            }
            units::memory(s.mem)
                .map_err(|e| within(format!("its memory ({} bytes) is {e}", s.mem)))?;
            if !(units::CPUS_MIN_MILLI..=units::CPUS_MAX_MILLI).contains(&s.cpus_milli) {
                return Err(within(format!(
                    "its CPU time ({} thousandths of a core) is out of range: 0.01 to {} cores",
                    s.cpus_milli,
                    units::CPUS_MAX_MILLI / 1000
                )));
            }
            device("its NIC's name", &s.nic).map_err(within)?;
            for e in &s.provides {
                label("an endpoint name", &e.name).map_err(within)?;
            }
            for a in &s.volumes {
                label("a volume name", &a.volume).map_err(within)?;
                device("a block device name", &a.device).map_err(within)?;
                if !volumes.contains(a.volume.as_str()) {
                    return Err(within(format!("volume '{}' is not planned", a.volume)));
                }
            }
            for p in &s.ports {
                label("a published endpoint", &p.endpoint).map_err(within)?;
            }
            for u in &s.uses {
                for part in u.split('.') {
                    label("a capability name", part).map_err(within)?;
                }
            }
            for d in &s.depends_on {
                service("a dependency", &d.service).map_err(within)?;
            }
        }
        for c in &self.capabilities {
            service("a capability's consumer", &c.consumer)?;
            service("a capability's provider", &c.provider)?;
            label("a capability's endpoint", &c.endpoint)?;
        }
        for e in &self.egress {
            service("an egress capability's consumer", &e.consumer)?;
            for part in e.name.split('.') {
                label("an egress capability's name", part)?;
            }
        }
        Ok(())
    }
}

fn to_yaml_value(v: &serde_json::Value) -> yaml_rust2::Yaml {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(to_yaml_value).collect()),
        Value::Object(map) => {
            let mut hash = yaml_rust2::yaml::Hash::new();
            for (k, v) in map {
                hash.insert(Yaml::String(k.clone()), to_yaml_value(v));
            }
            Yaml::Hash(hash)
        }
    }
}

/// Builds the plan of a checked application; problems (template references, limits of the
/// fabric) go to `sink`.
pub(crate) fn build(app: &App, subnet: Subnet, file: &Path, sink: &mut Sink) -> Option<Plan> {
    let base = file.parent().unwrap_or(Path::new(""));
    let mut fabric = FabricPlan::new(subnet);
    let endpoints = |s: &crate::model::Service| -> Vec<sturdy_bootcfg::Endpoint> {
        s.provides
            .iter()
            .map(|((name, port, proto), _)| sturdy_bootcfg::Endpoint {
                name: name.clone(),
                port: *port,
                proto: *proto,
            })
            .collect()
    };
    for s in &app.services {
        if let Err(e) = fabric.add_service(&s.name, endpoints(s)) {
            sink.error(s.at.pos, &s.at.key, e.to_string());
            return None;
        }
    }
    for s in &app.services {
        for (u, at) in &s.uses {
            if let Err(e) = fabric.grant(&s.name, u) {
                sink.error(at.pos, &at.key, e.to_string());
            }
        }
        for (i, ((ip, port, proto), at)) in s.egress.iter().enumerate() {
            if let Err(e) = fabric.grant_egress(&s.name, &format!("egress.{i}"), *ip, *port, *proto)
            {
                sink.error(at.pos, &at.key, e.to_string());
            }
        }
    }
    if !sink.is_empty() {
        return None;
    }
    if let Err(e) = fabric.validate() {
        sink.error(
            crate::yaml::Pos { line: 1, column: 1 },
            "",
            format!("the network plan is not valid: {e}"),
        );
        return None;
    }

    let mut services = Vec::new();
    for s in &app.services {
        let fs = fabric.service(&s.name).expect("added above");
        let config = match fabric.bootcfg_for(&s.name) {
            Ok(c) => c,
            Err(e) => {
                sink.error(s.at.pos, &s.at.key, e.to_string());
                continue;
            }
        };
        let mut args: Vec<String> = sturdy_bootcfg::render(&config)
            .split(' ')
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        for (arg, at) in &s.command {
            match expand(arg, app, &fabric, &s.name) {
                Ok(a) if a.is_empty() || a.chars().any(char::is_whitespace) => sink.error(
                    at.pos,
                    &at.key,
                    format!("'{arg}' expands to '{a}', which is empty or contains whitespace"),
                ),
                Ok(a) => args.push(a),
                Err(e) => sink.error(at.pos, &at.key, e),
            }
        }
        let size_of = |v: &str| {
            app.volumes
                .iter()
                .find(|x| x.name == v)
                .map_or(0, |x| x.size)
        };
        services.push(ServicePlan {
            name: s.name.clone(),
            image: base.join(&s.image),
            mem: s.mem.unwrap_or(DEFAULT_MEM),
            cpus_milli: s.cpus.unwrap_or(DEFAULT_CPUS_MILLI),
            port: fs.port.0,
            nic: fs.nic.clone(),
            mac: fs.mac.to_string(),
            ipv4: fs.ipv4,
            provides: fs
                .provides
                .iter()
                .map(|e| EndpointPlan {
                    name: e.name.clone(),
                    port: e.port,
                    proto: e.proto.to_string(),
                })
                .collect(),
            uses: config.uses.iter().map(|c| c.name.clone()).collect(),
            args,
            volumes: s
                .volumes
                .iter()
                .map(|((v, d), _)| AttachmentPlan {
                    volume: v.clone(),
                    device: d.clone(),
                    size: size_of(v),
                })
                .collect(),
            ports: s
                .ports
                .iter()
                .map(|((ip, host, guest, limits), _)| PublishedPlan {
                    host_ip: *ip,
                    host_port: *host,
                    guest_port: *guest,
                    connections_per_source: limits.per_source,
                    idle_timeout: limits.idle_timeout,
                    handshake_timeout: limits.handshake_timeout,
                    endpoint: s
                        .provides
                        .iter()
                        .find(|((_, p, pr), _)| p == guest && *pr == Proto::Tcp)
                        .map(|((n, _, _), _)| n.clone())
                        .unwrap_or_default(),
                })
                .collect(),
            healthcheck: s.healthcheck.as_ref().map(|(h, _)| HealthcheckPlan {
                probe: h.probe.clone(),
                port: h.port,
                interval: h.interval,
                timeout: h.timeout,
                retries: h.retries,
                start_period: h.start_period,
            }),
            restart: s.restart,
            depends_on: s
                .depends_on
                .iter()
                .map(|((d, c), _)| DependencyPlan {
                    service: d.clone(),
                    condition: *c,
                })
                .collect(),
        });
    }
    if !sink.is_empty() {
        return None;
    }
    let capabilities = fabric
        .capabilities
        .iter()
        .map(|c| {
            let (p, e) = fabric.resolve(c).expect("validated");
            CapabilityPlan {
                consumer: c.consumer.clone(),
                provider: c.provider.clone(),
                endpoint: c.endpoint.clone(),
                ipv4: p.ipv4,
                port: e.port,
                proto: e.proto.to_string(),
            }
        })
        .collect();
    let egress = fabric
        .egress
        .iter()
        .map(|e| EgressPlan {
            consumer: e.consumer.clone(),
            name: e.name.clone(),
            ipv4: e.addr,
            port: e.port,
            proto: e.proto.to_string(),
        })
        .collect();
    let volumes = app
        .volumes
        .iter()
        .map(|v| VolumePlan {
            name: v.name.clone(),
            size: v.size,
            service: app
                .services
                .iter()
                .find(|s| s.volumes.iter().any(|((n, _), _)| *n == v.name))
                .map(|s| s.name.clone()),
        })
        .collect();
    Some(Plan {
        name: app.name.clone(),
        file: file.to_path_buf(),
        subnet: subnet.to_string(),
        gateway: fabric.gateway.ipv4,
        start_order: crate::check::start_order(app),
        services,
        capabilities,
        egress,
        volumes,
    })
}

const REFERENCES: &str = "app.name, self.name, self.ipv4, self.cidr, self.mac, self.gateway, uses.SERVICE.ENDPOINT[.ipv4|.port], uses.SERVICE.ipv4, egress.N";

/// Expands the `{{ ... }}` references of one argument of `service`.
fn expand(arg: &str, app: &App, fabric: &FabricPlan, service: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("'{arg}': '{{{{' without a closing '}}}}'"))?;
        let expr = after[..end].trim();
        out.push_str(
            &reference(expr, app, fabric, service)
                .map_err(|e| format!("'{{{{ {expr} }}}}': {e}"))?,
        );
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err(format!("'{arg}': '}}}}' without an opening '{{{{'"));
    }
    out.push_str(rest);
    Ok(out)
}

fn reference(expr: &str, app: &App, fabric: &FabricPlan, service: &str) -> Result<String, String> {
    let me = fabric.service(service).expect("planned");
    let parts: Vec<&str> = expr.split('.').collect();
    let unknown = || format!("unknown reference (valid: {REFERENCES})");
    Ok(match parts.as_slice() {
        ["app", "name"] => app.name.clone(),
        ["self", "name"] => me.name.clone(),
        ["self", "ipv4"] => me.ipv4.to_string(),
        ["self", "cidr"] => format!("{}/{}", me.ipv4, fabric.subnet.prefix_len()),
        ["self", "mac"] => me.mac.to_string(),
        ["self", "gateway"] => fabric.gateway.ipv4.to_string(),
        ["egress", n] => {
            let name = format!("egress.{n}");
            let e = fabric
                .egress
                .iter()
                .find(|e| e.consumer == service && e.name == name)
                .ok_or_else(|| format!("'{service}' has no egress '{name}' (egress entries are numbered from 0 in the order of its egress list)"))?;
            format!("{}:{}", e.addr, e.port)
        }
        ["uses", svc, "ipv4"] => {
            if !fabric
                .capabilities
                .iter()
                .any(|c| c.consumer == service && c.provider == *svc)
            {
                return Err(format!(
                    "'{service}' holds no capability to '{svc}' (add it to uses)"
                ));
            }
            fabric
                .service(svc)
                .map(|s| s.ipv4.to_string())
                .ok_or_else(unknown)?
        }
        ["uses", svc, ep, field @ ..] if field.len() <= 1 => {
            let cap = fabric
                .capabilities
                .iter()
                .find(|c| c.consumer == service && c.provider == *svc && c.endpoint == *ep)
                .ok_or_else(|| format!("'{service}' does not use '{svc}.{ep}' (add \"{svc}.{ep}\" or \"{svc}\" to its uses)"))?;
            let (p, e) = fabric.resolve(cap).map_err(|e| e.to_string())?;
            match field {
                [] => format!("{}:{}", p.ipv4, e.port),
                ["ipv4"] => p.ipv4.to_string(),
                ["port"] => e.port.to_string(),
                _ => return Err(unknown()),
            }
        }
        _ => return Err(unknown()),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const APP: &str = r#"
name: shop
subnet: 10.9.0.0/24
services:
  front:
    image: bin/front
    mem: 32M
    provides: { http: 80/tcp }
    ports: ["127.0.0.1:8443:80"]
    uses: ["api.rpc"]
    depends_on: [api]
    command:
      - "--api={{ uses.api.rpc }}"
      - "--api-ip={{uses.api.ipv4}}"
      - "--port={{ uses.api.rpc.port }}"
      - "--me={{ self.cidr }}@{{ self.mac }}"
      - "--app={{ app.name }}/{{ self.name }}"
  api:
    image: /abs/api
    provides: { rpc: 9000/tcp, metrics: 9100/udp }
    egress: ["203.0.113.7:443/tcp"]
    command: "--upstream={{ egress.0 }} --gw={{ self.gateway }}"
    depends_on: { cache: { condition: service_started } }
  cache:
    image: bin/cache
    provides: { kv: 6379 }
  worker:
    image: bin/worker
    uses: [api, cache]
"#;

    /// Compose's long form of a published port carries the gateway's limits into the plan;
    /// the short form gets the defaults.
    #[test]
    fn published_ports_carry_their_limits() {
        let yaml = "name: a\nservices:\n  web:\n    image: w\n    provides: { http: 80/tcp }\n    \
                    ports:\n      - \"8080:80\"\n      - { published: 8081, target: 80, host_ip: 127.0.0.1, \
                    connections_per_source: 8, idle_timeout: 30s, handshake_timeout: 2s }\n";
        let plan = crate::parse(yaml, Path::new("a/sturdy.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let ports = &plan.service("web").unwrap().ports;
        assert_eq!(ports[0].limits(), sturdy_fabric::IngressLimits::default());
        assert_eq!(
            (ports[1].host_ip.to_string().as_str(), ports[1].host_port),
            ("127.0.0.1", 8081)
        );
        assert_eq!(
            ports[1].limits(),
            sturdy_fabric::IngressLimits {
                per_source: 8,
                idle_timeout: std::time::Duration::from_secs(30),
                handshake_timeout: std::time::Duration::from_secs(2),
            }
        );
        let back = crate::Plan::from_json(&plan.to_json()).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn plans_references_order_and_egress() {
        let plan =
            crate::parse(APP, Path::new("apps/shop/sturdy.yaml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.start_order, ["cache", "api", "front", "worker"]);
        let front = plan.service("front").unwrap();
        assert_eq!(front.image, Path::new("apps/shop/bin/front"));
        assert_eq!(front.mem_mib(), 32);
        assert_eq!(
            front.args[3..],
            [
                "--api=10.9.0.3:9000",
                "--api-ip=10.9.0.3",
                "--port=9000",
                "--me=10.9.0.2/24@02:00:0a:09:00:02",
                "--app=shop/front",
            ]
        );
        let api = plan.service("api").unwrap();
        assert_eq!(api.image, Path::new("/abs/api"));
        assert_eq!(
            api.args,
            [
                "--sturdy.v1.net=service:10.9.0.3/24:gw=10.9.0.1",
                "--sturdy.v1.egress=egress.0:203.0.113.7:443/tcp",
                "--sturdy.v1.provide=rpc:9000/tcp",
                "--sturdy.v1.provide=metrics:9100/udp",
                "--upstream=203.0.113.7:443",
                "--gw=10.9.0.1",
            ]
        );
        let worker = plan.service("worker").unwrap();
        assert_eq!(worker.uses, ["api.rpc", "api.metrics", "cache.kv"]);
        assert_eq!(plan.capabilities.len(), 4);
        assert_eq!(plan.egress[0].name, "egress.0");
        assert_eq!(front.ports[0].host_ip.to_string(), "127.0.0.1");
        let json = plan.to_json();
        assert_eq!(super::Plan::from_json(&json).unwrap(), plan);
        assert!(plan.to_yaml().starts_with("name: shop\n"));
        plan.fabric().unwrap().validate().unwrap();
    }

    #[test]
    fn reports_every_cycle_once_in_file_order() {
        let src = "name: a\nservices:\n  a: { image: x, depends_on: [b] }\n  b: { image: x, depends_on: [a] }\n  c: { image: x, depends_on: [d] }\n  d: { image: x, depends_on: [c, a] }\n";
        let err = crate::parse(src, Path::new("s.yaml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "s.yaml:3:31: services.a.depends_on[0]: dependency cycle: a -> b -> a; no service of a cycle could ever start\n\
             s.yaml:5:31: services.c.depends_on[0]: dependency cycle: c -> d -> c; no service of a cycle could ever start"
        );
    }

    #[test]
    fn default_name_is_the_directory() {
        let plan = crate::parse(
            "services: { hello: { image: hello } }",
            Path::new("demo/sturdy.yaml"),
        )
        .unwrap();
        assert_eq!(plan.name, "demo");
        assert_eq!(plan.service("hello").unwrap().mem, super::DEFAULT_MEM);
        assert_eq!(
            plan.service("hello").unwrap().args,
            ["--sturdy.v1.net=service:10.77.0.2/24"]
        );
    }
}
