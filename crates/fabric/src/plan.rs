//! The plan: what the fabric enforces and what each guest is told at boot, in one value.
//!
//! A [`Plan`] lists the application's services (each on one fabric port, with the MAC and IPv4
//! address of its NIC and the endpoints it provides), the capabilities between them (consumer
//! -> provider endpoint), the egress capabilities (consumer -> an outside address:port/proto)
//! and the gateway's address. The fabric compiles it into its policy
//! ([`Fabric::new`](crate::Fabric::new), [`Fabric::apply`](crate::Fabric::apply)); the same plan
//! renders each guest's boot configuration ([`Plan::bootcfg_for`], `docs/bootcfg.md`), so what a
//! guest believes it may reach and what the fabric lets through cannot disagree.
//!
//! Addresses are assigned deterministically ([`Plan::add_service`]): in a subnet such as
//! 10.77.0.0/24 the gateway is the first host (.1) and the services take .2, .3, ... in the order
//! they are added; a MAC is `02:00` followed by the four bytes of the IPv4 address (locally
//! administered, unicast, unique wherever the address is). Compose adds services in the order
//! of the application file, so the same file always yields the same addresses.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;

use sturdy_bootcfg::{BootConfig, Nic};
pub use sturdy_bootcfg::{Endpoint, Proto};

use crate::wire::Mac;

/// The NIC name a service's port is attached as, unless the plan says otherwise: sturdy-rt
/// guests declare `manifest!(net "service")`.
pub const DEFAULT_NIC: &str = "service";

/// A fabric port: one guest NIC. The port a frame arrives on is its sender's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

impl PortId {
    /// The gateway's port ([`crate::gateway`]): the policy treats it as a service named
    /// [`GATEWAY_NAME`] holding a capability to each published endpoint, and providing each
    /// egress capability. No service may use this number.
    pub const GATEWAY: PortId = PortId(u16::MAX);
}

/// The name the gateway goes by in capabilities and logs (`gateway -> web.http`); no service
/// may take it while the plan publishes ports or grants egress.
pub const GATEWAY_NAME: &str = "gateway";

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// An IPv4 subnet: its network address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Subnet {
    /// The subnet `addr/prefix_len`: the prefix is 1 to 30 (room for a gateway and a service)
    /// and `addr` has no host bits set.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Subnet, PlanError> {
        let text = format!("{addr}/{prefix_len}");
        if !(1..=30).contains(&prefix_len) {
            return Err(PlanError::BadSubnet {
                subnet: text,
                reason: "the prefix length must be 1 to 30",
            });
        }
        let subnet = Subnet { addr, prefix_len };
        if u32::from(addr) & !subnet.mask() != 0 {
            return Err(PlanError::BadSubnet {
                subnet: text,
                reason:
                    "the address has host bits set (write the network address, e.g. 10.77.0.0/24)",
            });
        }
        Ok(subnet)
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix_len))
    }

    /// Whether `ip` is inside the subnet (network and broadcast addresses included).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// How many host addresses there are (network and broadcast excluded).
    pub fn hosts(&self) -> u32 {
        (!self.mask()) - 1
    }

    /// The `n`th host address (1 is the first), if there is one.
    pub fn host(&self, n: u32) -> Option<Ipv4Addr> {
        (n >= 1 && n <= self.hosts()).then(|| Ipv4Addr::from(u32::from(self.addr) + n))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Subnet {
    type Err = PlanError;

    /// `10.77.0.0/24`.
    fn from_str(s: &str) -> Result<Subnet, PlanError> {
        let bad = |reason| PlanError::BadSubnet {
            subnet: s.to_string(),
            reason,
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX, e.g. 10.77.0.0/24"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix length must be 1 to 30"))?;
        Subnet::new(addr, prefix)
    }
}

/// The MAC the plan gives the holder of `ip`: `02:00` and the address's four bytes.
pub fn mac_for(ip: Ipv4Addr) -> Mac {
    let o = ip.octets();
    Mac([0x02, 0x00, o[0], o[1], o[2], o[3]])
}

/// The gateway inside the fabric: the peer of ingress connections and the next hop of egress
/// ([`crate::gateway`]; until it runs, frames for it are counted and dropped as
/// [`NoGateway`](crate::DropReason::NoGateway)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// Its address in the subnet.
    pub ipv4: Ipv4Addr,
    /// Its MAC.
    pub mac: Mac,
}

/// A service: one guest NIC on one fabric port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The service's name, e.g. `web`.
    pub name: String,
    /// The fabric port its NIC is attached to.
    pub port: PortId,
    /// The NIC's name in the guest's manifest (`--net:NIC=@FD`).
    pub nic: String,
    /// The NIC's MAC (`--net-mac:NIC=MAC`): the only source MAC the port accepts.
    pub mac: Mac,
    /// The NIC's address: the only source address the port accepts.
    pub ipv4: Ipv4Addr,
    /// The endpoints it provides (listens on), which others may be granted.
    pub provides: Vec<Endpoint>,
}

/// A capability: `consumer` may open connections to `provider`'s endpoint `endpoint`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability {
    /// The service that may connect.
    pub consumer: String,
    /// The service that provides the endpoint.
    pub provider: String,
    /// The endpoint's name.
    pub endpoint: String,
}

impl Capability {
    /// `consumer -> provider.endpoint`.
    pub fn new(consumer: &str, provider: &str, endpoint: &str) -> Capability {
        Capability {
            consumer: consumer.into(),
            provider: provider.into(),
            endpoint: endpoint.into(),
        }
    }

    /// The name the consumer knows it by: `provider.endpoint`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.provider, self.endpoint)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} -> {}.{}",
            self.consumer, self.provider, self.endpoint
        )
    }
}

/// An egress capability: `consumer` may open connections to an address outside the
/// application, through the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Egress {
    /// The service that may connect.
    pub consumer: String,
    /// The name the consumer asks for it by, e.g. `egress.0`.
    pub name: String,
    /// The outside address.
    pub addr: Ipv4Addr,
    /// The outside port.
    pub port: u16,
    /// The transport protocol.
    pub proto: Proto,
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} -> {} ({}:{}/{})",
            self.consumer, self.name, self.addr, self.port, self.proto
        )
    }
}

/// A published endpoint: connections to `host` (a TCP address on the host) are forwarded by the
/// gateway to `service`'s endpoint `endpoint`, the gateway being the guest's peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Published {
    /// The host address the gateway listens on (port 0: any free port).
    pub host: SocketAddr,
    /// The providing service.
    pub service: String,
    /// Its endpoint (TCP).
    pub endpoint: String,
}

impl Published {
    /// The capability the gateway holds for it: `gateway -> service.endpoint`.
    pub fn capability(&self) -> Capability {
        Capability::new(GATEWAY_NAME, &self.service, &self.endpoint)
    }
}

impl fmt::Display for Published {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} -> {}.{}", self.host, self.service, self.endpoint)
    }
}

/// An endpoint the supervisor may probe through the gateway
/// ([`GatewayHandle::probe_tcp`](crate::GatewayHandle::probe_tcp)): the gateway holds the
/// capability `gateway -> service.endpoint` (as for a published endpoint), with no host port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Probed {
    /// The providing service.
    pub service: String,
    /// Its endpoint (TCP).
    pub endpoint: String,
}

impl Probed {
    /// The capability the gateway holds for it: `gateway -> service.endpoint`.
    pub fn capability(&self) -> Capability {
        Capability::new(GATEWAY_NAME, &self.service, &self.endpoint)
    }
}

/// What the fabric enforces: services, their addresses, and who may reach what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The application's subnet.
    pub subnet: Subnet,
    /// The gateway's address and MAC.
    pub gateway: Gateway,
    /// The services, one port each.
    pub services: Vec<Service>,
    /// Who may connect to which endpoint.
    pub capabilities: Vec<Capability>,
    /// Who may connect to which outside address.
    pub egress: Vec<Egress>,
    /// The endpoints published on host addresses, through the gateway.
    pub published: Vec<Published>,
    /// The endpoints the gateway may probe (health checks), besides the published ones.
    pub probes: Vec<Probed>,
    /// Limits on the host connections of publications (by their host address); those not
    /// listed get [`IngressLimits::default`].
    pub ingress_limits: Vec<(SocketAddr, IngressLimits)>,
}

/// What the gateway allows the host clients of one publication, so that one client cannot
/// starve the others (a flood of idle connections from one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngressLimits {
    /// Connections one source address may hold open at once; more are reset.
    pub per_source: u32,
    /// A connection that moves no byte either way this long is reset.
    pub idle_timeout: std::time::Duration,
    /// A connection whose guest has not answered the handshake this long is reset.
    pub handshake_timeout: std::time::Duration,
}

impl Default for IngressLimits {
    /// 64 connections per source (a sixteenth of the gateway's 1024, and a quarter of what
    /// a small guest such as the guestbook's web serves at once), 5 minutes idle, 10 s to
    /// connect to the guest.
    fn default() -> IngressLimits {
        IngressLimits {
            per_source: 64,
            idle_timeout: std::time::Duration::from_secs(300),
            handshake_timeout: std::time::Duration::from_secs(10),
        }
    }
}

impl Plan {
    /// An empty plan for `subnet`, the gateway on its first host address.
    pub fn new(subnet: Subnet) -> Plan {
        let ipv4 = subnet
            .host(1)
            .expect("a /30 or larger subnet has a first host");
        Plan {
            subnet,
            gateway: Gateway {
                ipv4,
                mac: mac_for(ipv4),
            },
            services: Vec::new(),
            capabilities: Vec::new(),
            egress: Vec::new(),
            published: Vec::new(),
            probes: Vec::new(),
            ingress_limits: Vec::new(),
        }
    }

    /// Sets the limits on the host connections of the publication(s) on `host`.
    pub fn limit_ingress(&mut self, host: SocketAddr, limits: IngressLimits) {
        self.ingress_limits.retain(|(h, _)| *h != host);
        self.ingress_limits.push((host, limits));
    }

    /// The limits on the host connections of the publication on `host`.
    pub fn ingress_limits(&self, host: SocketAddr) -> IngressLimits {
        self.ingress_limits
            .iter()
            .find(|(h, _)| *h == host)
            .map_or_else(IngressLimits::default, |(_, l)| *l)
    }

    /// Adds service `name` providing `provides`, with the next address (the `n`th service added
    /// gets host `n + 1`), its MAC ([`mac_for`]), port `n - 1` and NIC [`DEFAULT_NIC`].
    pub fn add_service(
        &mut self,
        name: &str,
        provides: Vec<Endpoint>,
    ) -> Result<&Service, PlanError> {
        if self.service(name).is_some() {
            return Err(PlanError::DuplicateService(name.into()));
        }
        let n = self.services.len() as u32;
        let ipv4 = self.subnet.host(n + 2).ok_or(PlanError::SubnetFull {
            subnet: self.subnet,
            service: name.into(),
        })?;
        let port = u16::try_from(n).map_err(|_| PlanError::SubnetFull {
            subnet: self.subnet,
            service: name.into(),
        })?;
        self.services.push(Service {
            name: name.into(),
            port: PortId(port),
            nic: DEFAULT_NIC.into(),
            mac: mac_for(ipv4),
            ipv4,
            provides,
        });
        Ok(self.services.last().expect("just pushed"))
    }

    /// Grants `consumer` the capability `target`: `provider.endpoint` for one endpoint, or
    /// `provider` for every endpoint it provides (compose's `uses: [db]` and `uses: ["db.kv"]`).
    /// Granting what is already granted changes nothing.
    pub fn grant(&mut self, consumer: &str, target: &str) -> Result<(), PlanError> {
        self.known(consumer)?;
        let (provider, endpoint) = match target.split_once('.') {
            Some((p, e)) => (p, Some(e)),
            None => (target, None),
        };
        let service = self.known(provider)?;
        if provider == consumer {
            return Err(PlanError::SelfCapability(consumer.into()));
        }
        let endpoints: Vec<String> = match endpoint {
            Some(e) => {
                if !service.provides.iter().any(|p| p.name == e) {
                    return Err(unknown_endpoint(service, e));
                }
                vec![e.to_string()]
            }
            None => service.provides.iter().map(|e| e.name.clone()).collect(),
        };
        if endpoints.is_empty() {
            return Err(PlanError::NothingProvided(provider.into()));
        }
        for endpoint in endpoints {
            let cap = Capability::new(consumer, provider, &endpoint);
            if !self.capabilities.contains(&cap) {
                self.capabilities.push(cap);
            }
        }
        Ok(())
    }

    /// Removes the capabilities of `consumer` to `target` (`provider.endpoint` or
    /// `provider`); returns how many there were.
    pub fn revoke(&mut self, consumer: &str, target: &str) -> usize {
        let (provider, endpoint) = match target.split_once('.') {
            Some((p, e)) => (p, Some(e)),
            None => (target, None),
        };
        let before = self.capabilities.len();
        self.capabilities.retain(|c| {
            !(c.consumer == consumer
                && c.provider == provider
                && endpoint.is_none_or(|e| c.endpoint == e))
        });
        before - self.capabilities.len()
    }

    /// Grants `consumer` the egress capability `name` to `addr:port/proto`.
    pub fn grant_egress(
        &mut self,
        consumer: &str,
        name: &str,
        addr: Ipv4Addr,
        port: u16,
        proto: Proto,
    ) -> Result<(), PlanError> {
        self.known(consumer)?;
        self.egress.push(Egress {
            consumer: consumer.into(),
            name: name.into(),
            addr,
            port,
            proto,
        });
        Ok(())
    }

    /// Publishes `target` (`service.endpoint`, or `service` if it provides one TCP endpoint)
    /// on the host TCP address `host`: the gateway accepts connections there and forwards
    /// them to the endpoint. Publishing the same pair again changes nothing.
    pub fn publish(&mut self, host: SocketAddr, target: &str) -> Result<(), PlanError> {
        let (service, endpoint) = self
            .tcp_target(target)?
            .ok_or_else(|| PlanError::PublishNotTcp(target.into()))?;
        let p = Published {
            host,
            service,
            endpoint,
        };
        if !self.published.contains(&p) {
            self.published.push(p);
        }
        Ok(())
    }

    /// Lets the gateway probe `target` (`service.endpoint`, or `service` if it provides one
    /// TCP endpoint) for the supervisor's health checks
    /// ([`GatewayHandle::probe_tcp`](crate::GatewayHandle::probe_tcp)): the gateway gets the
    /// capability `gateway -> service.endpoint`, and nothing else (no host port, no guest gets
    /// anything). A published endpoint may be probed without this. Declaring it again changes
    /// nothing.
    pub fn probe(&mut self, target: &str) -> Result<(), PlanError> {
        let (service, endpoint) = self
            .tcp_target(target)?
            .ok_or_else(|| PlanError::ProbeNotTcp(target.into()))?;
        let p = Probed { service, endpoint };
        if !self.probes.contains(&p) {
            self.probes.push(p);
        }
        Ok(())
    }

    /// Whether the gateway holds a capability to `service.endpoint` (published or probed).
    pub fn gateway_reaches(&self, service: &str, endpoint: &str) -> bool {
        let hit = |s: &str, e: &str| s == service && e == endpoint;
        self.published.iter().any(|p| hit(&p.service, &p.endpoint))
            || self.probes.iter().any(|p| hit(&p.service, &p.endpoint))
    }

    /// `service.endpoint` (or `service` with one TCP endpoint) resolved to its names; `None`
    /// if the endpoint is not TCP (or the service has no single TCP endpoint).
    fn tcp_target(&self, target: &str) -> Result<Option<(String, String)>, PlanError> {
        let (name, endpoint) = match target.split_once('.') {
            Some((s, e)) => (s, Some(e)),
            None => (target, None),
        };
        let service = self.known(name)?;
        let tcp: Vec<&Endpoint> = service
            .provides
            .iter()
            .filter(|e| e.proto == Proto::Tcp)
            .collect();
        let endpoint = match endpoint {
            Some(e) => {
                let found = service
                    .provides
                    .iter()
                    .find(|p| p.name == e)
                    .ok_or_else(|| unknown_endpoint(service, e))?;
                if found.proto != Proto::Tcp {
                    return Ok(None);
                }
                found.name.clone()
            }
            None if tcp.len() == 1 => tcp[0].name.clone(),
            None => return Ok(None),
        };
        Ok(Some((name.into(), endpoint)))
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The service on `port`.
    pub fn service_on(&self, port: PortId) -> Option<&Service> {
        self.services.iter().find(|s| s.port == port)
    }

    fn known(&self, name: &str) -> Result<&Service, PlanError> {
        self.service(name).ok_or_else(|| PlanError::UnknownService {
            name: name.into(),
            known: self.services.iter().map(|s| s.name.clone()).collect(),
        })
    }

    /// The endpoint a capability grants, and the service providing it.
    pub fn resolve(&self, cap: &Capability) -> Result<(&Service, &Endpoint), PlanError> {
        let provider = self.known(&cap.provider)?;
        let endpoint = provider
            .provides
            .iter()
            .find(|e| e.name == cap.endpoint)
            .ok_or_else(|| unknown_endpoint(provider, &cap.endpoint))?;
        Ok((provider, endpoint))
    }

    /// Checks that the plan is one the fabric can enforce and every guest can be told: unique
    /// names, ports, MACs and addresses; addresses inside the subnet and not reserved; MACs
    /// unicast; capabilities between known services and endpoints; egress outside the subnet;
    /// and every service's boot configuration valid (`docs/bootcfg.md`).
    pub fn validate(&self) -> Result<(), PlanError> {
        let gw = self.gateway;
        if !self.usable(gw.ipv4) {
            return Err(PlanError::BadAddress {
                who: "the gateway".into(),
                addr: gw.ipv4,
                subnet: self.subnet,
            });
        }
        if !gw.mac.is_unicast() {
            return Err(PlanError::BadMac {
                who: "the gateway".into(),
                mac: gw.mac,
            });
        }
        for (i, s) in self.services.iter().enumerate() {
            let who = format!("service '{}'", s.name);
            if !self.usable(s.ipv4) || s.ipv4 == gw.ipv4 {
                return Err(PlanError::BadAddress {
                    who,
                    addr: s.ipv4,
                    subnet: self.subnet,
                });
            }
            if !s.mac.is_unicast() || s.mac == gw.mac {
                return Err(PlanError::BadMac { who, mac: s.mac });
            }
            for earlier in &self.services[..i] {
                let clash = if earlier.name == s.name {
                    Some("name")
                } else if earlier.port == s.port {
                    Some("port")
                } else if earlier.ipv4 == s.ipv4 {
                    Some("address")
                } else if earlier.mac == s.mac {
                    Some("MAC")
                } else {
                    None
                };
                if let Some(what) = clash {
                    return Err(PlanError::Clash {
                        what,
                        first: earlier.name.clone(),
                        second: s.name.clone(),
                    });
                }
            }
        }
        for (i, cap) in self.capabilities.iter().enumerate() {
            self.known(&cap.consumer)?;
            self.resolve(cap)?;
            if cap.consumer == cap.provider {
                return Err(PlanError::SelfCapability(cap.consumer.clone()));
            }
            if self.capabilities[..i].contains(cap) {
                return Err(PlanError::DuplicateCapability(cap.clone()));
            }
        }
        if (!self.egress.is_empty() || !self.published.is_empty() || !self.probes.is_empty())
            && self.service(GATEWAY_NAME).is_some()
        {
            return Err(PlanError::ReservedName(GATEWAY_NAME.into()));
        }
        if let Some(s) = self.services.iter().find(|s| s.port == PortId::GATEWAY) {
            return Err(PlanError::ReservedName(s.name.clone()));
        }
        for (i, p) in self.published.iter().enumerate() {
            let (_, endpoint) = self.resolve(&p.capability())?;
            if endpoint.proto != Proto::Tcp {
                return Err(PlanError::PublishNotTcp(p.to_string()));
            }
            if p.host.port() != 0 && self.published[..i].iter().any(|q| q.host == p.host) {
                return Err(PlanError::DuplicatePublish(p.host));
            }
        }
        for p in &self.probes {
            let (_, endpoint) = self.resolve(&p.capability())?;
            if endpoint.proto != Proto::Tcp {
                return Err(PlanError::ProbeNotTcp(format!(
                    "{}.{}",
                    p.service, p.endpoint
                )));
            }
        }
        for e in &self.egress {
            self.known(&e.consumer)?;
            if self.subnet.contains(e.addr) {
                return Err(PlanError::EgressInsideSubnet(e.clone()));
            }
        }
        for s in &self.services {
            self.bootcfg_for(&s.name)?
                .validate()
                .map_err(|source| PlanError::BootConfig {
                    service: s.name.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// A unicast host address of the subnet.
    fn usable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(ip) && ip != self.subnet.addr() && ip != self.subnet.broadcast()
    }

    /// The boot configuration of `service`: its NIC's address (with the gateway if it has
    /// egress), a `use` per capability it holds (`provider.endpoint` at the provider's address),
    /// an `egress` per egress capability, a `provide` per endpoint. Render it with
    /// [`sturdy_bootcfg::render`] for the guest's command line.
    pub fn bootcfg_for(&self, service: &str) -> Result<BootConfig, PlanError> {
        let s = self.known(service)?;
        let egress: Vec<_> = self
            .egress
            .iter()
            .filter(|e| e.consumer == s.name)
            .collect();
        let mut config = BootConfig {
            nics: vec![Nic {
                name: s.nic.clone(),
                addr: s.ipv4,
                prefix_len: self.subnet.prefix_len(),
                gateway: (!egress.is_empty()).then_some(self.gateway.ipv4),
            }],
            provides: s.provides.clone(),
            ..BootConfig::default()
        };
        for cap in self.capabilities.iter().filter(|c| c.consumer == s.name) {
            let (provider, endpoint) = self.resolve(cap)?;
            config.uses.push(sturdy_bootcfg::Capability {
                name: cap.name(),
                addr: provider.ipv4,
                port: endpoint.port,
                proto: endpoint.proto,
            });
        }
        for e in egress {
            config.egress.push(sturdy_bootcfg::Capability {
                name: e.name.clone(),
                addr: e.addr,
                port: e.port,
                proto: e.proto,
            });
        }
        Ok(config)
    }

    /// The monitor options that attach `service`'s NIC to the fabric end `fd` of its port:
    /// `--net:NIC=@FD --net-mac:NIC=MAC`.
    pub fn monitor_net_args(&self, service: &str, fd: i32) -> Result<[String; 2], PlanError> {
        let s = self.known(service)?;
        Ok([
            format!("--net:{}=@{fd}", s.nic),
            format!("--net-mac:{}={}", s.nic, s.mac),
        ])
    }
}

fn unknown_endpoint(service: &Service, endpoint: &str) -> PlanError {
    PlanError::UnknownEndpoint {
        service: service.name.clone(),
        endpoint: endpoint.into(),
        provided: service.provides.iter().map(|e| e.name.clone()).collect(),
    }
}

/// Why a plan cannot be enforced.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A subnet that cannot be used.
    #[error("subnet '{subnet}': {reason}")]
    BadSubnet {
        /// As written.
        subnet: String,
        /// Why.
        reason: &'static str,
    },
    /// No address left for another service.
    #[error("subnet {subnet} has no address left for service '{service}' (use a shorter prefix)")]
    SubnetFull {
        /// The subnet.
        subnet: Subnet,
        /// The service that did not fit.
        service: String,
    },
    /// Two services of one name.
    #[error("service '{0}' is declared twice")]
    DuplicateService(String),
    /// Two services sharing a port, address or MAC.
    #[error("services '{first}' and '{second}' have the same {what}")]
    Clash {
        /// `port`, `address`, `MAC` or `name`.
        what: &'static str,
        /// The first service.
        first: String,
        /// The second.
        second: String,
    },
    /// An address outside the subnet, or its network or broadcast address (or the gateway's).
    #[error("{who} has address {addr}, which is not a host address of subnet {subnet} (or is taken by the gateway)")]
    BadAddress {
        /// `service 'web'` or `the gateway`.
        who: String,
        /// The address.
        addr: Ipv4Addr,
        /// The subnet.
        subnet: Subnet,
    },
    /// A MAC that is not unicast, or the gateway's.
    #[error("{who} has MAC {mac}, which is not a unicast address of its own")]
    BadMac {
        /// `service 'web'` or `the gateway`.
        who: String,
        /// The MAC.
        mac: Mac,
    },
    /// A name that is no service.
    #[error("there is no service '{name}' (services: {})", list(known))]
    UnknownService {
        /// The name.
        name: String,
        /// The services there are.
        known: Vec<String>,
    },
    /// An endpoint a service does not provide.
    #[error(
        "service '{service}' provides no endpoint '{endpoint}' (it provides: {})",
        list(provided)
    )]
    UnknownEndpoint {
        /// The provider.
        service: String,
        /// The endpoint asked for.
        endpoint: String,
        /// Its endpoints.
        provided: Vec<String>,
    },
    /// `uses: [db]` of a service that provides nothing.
    #[error("service '{0}' provides no endpoint, so it cannot be used")]
    NothingProvided(String),
    /// A service granted its own endpoint.
    #[error("service '{0}' cannot be given a capability to itself")]
    SelfCapability(String),
    /// The same capability twice.
    #[error("capability {0} is declared twice")]
    DuplicateCapability(Capability),
    /// An egress capability to an address of the application's own subnet.
    #[error(
        "egress {0}: the address is inside the application's subnet (grant the service instead)"
    )]
    EgressInsideSubnet(Egress),
    /// A published endpoint that is not TCP (or a service with no single TCP endpoint).
    #[error("'{0}' cannot be published: only a TCP endpoint can (name it as service.endpoint)")]
    PublishNotTcp(String),
    /// A probed endpoint that is not TCP (or a service with no single TCP endpoint).
    #[error("'{0}' cannot be probed: only a TCP endpoint can (name it as service.endpoint)")]
    ProbeNotTcp(String),
    /// Two published endpoints on one host address.
    #[error("host address {0} is published twice")]
    DuplicatePublish(SocketAddr),
    /// A service whose name or port the gateway needs.
    #[error("service '{0}' takes the gateway's name or port")]
    ReservedName(String),
    /// A service's boot configuration would not be valid.
    #[error("service '{service}': {source}")]
    BootConfig {
        /// The service.
        service: String,
        /// What is wrong with its boot configuration.
        source: sturdy_bootcfg::Error,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(name: &str, port: u16, proto: Proto) -> Endpoint {
        Endpoint {
            name: name.into(),
            port,
            proto,
        }
    }

    fn guestbook() -> Plan {
        let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
        plan.add_service("web", vec![ep("http", 80, Proto::Tcp)])
            .unwrap();
        plan.add_service(
            "db",
            vec![ep("kv", 6379, Proto::Tcp), ep("stats", 9125, Proto::Udp)],
        )
        .unwrap();
        plan.grant("web", "db.kv").unwrap();
        plan
    }

    #[test]
    fn assigns_addresses_in_order() {
        let plan = guestbook();
        assert_eq!(plan.gateway.ipv4, Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(plan.gateway.mac.to_string(), "02:00:0a:4d:00:01");
        let web = plan.service("web").unwrap();
        let db = plan.service("db").unwrap();
        assert_eq!(
            (web.port, web.ipv4),
            (PortId(0), Ipv4Addr::new(10, 77, 0, 2))
        );
        assert_eq!((db.port, db.ipv4), (PortId(1), Ipv4Addr::new(10, 77, 0, 3)));
        assert_eq!(db.mac.to_string(), "02:00:0a:4d:00:03");
        assert_eq!(web.nic, "service");
        plan.validate().unwrap();
        // The same input, the same plan.
        assert_eq!(plan, guestbook());
    }

    #[test]
    fn renders_each_guests_boot_configuration() {
        let mut plan = guestbook();
        plan.grant_egress(
            "web",
            "egress.0",
            Ipv4Addr::new(203, 0, 113, 7),
            443,
            Proto::Tcp,
        )
        .unwrap();
        plan.validate().unwrap();
        let web = sturdy_bootcfg::render(&plan.bootcfg_for("web").unwrap());
        assert_eq!(
            web,
            "--sturdy.v1.net=service:10.77.0.2/24:gw=10.77.0.1 \
             --sturdy.v1.use=db.kv:10.77.0.3:6379/tcp \
             --sturdy.v1.egress=egress.0:203.0.113.7:443/tcp \
             --sturdy.v1.provide=http:80/tcp"
        );
        let db = sturdy_bootcfg::render(&plan.bootcfg_for("db").unwrap());
        assert_eq!(
            db,
            "--sturdy.v1.net=service:10.77.0.3/24 \
             --sturdy.v1.provide=kv:6379/tcp --sturdy.v1.provide=stats:9125/udp"
        );
        // What the guest parses is what the plan says.
        let (parsed, rest) = sturdy_bootcfg::parse(web.split(' ')).unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            parsed.capability("db", Proto::Tcp).unwrap().addr,
            Ipv4Addr::new(10, 77, 0, 3)
        );
        assert_eq!(
            plan.monitor_net_args("db", 7).unwrap(),
            [
                "--net:service=@7".to_string(),
                "--net-mac:service=02:00:0a:4d:00:03".to_string()
            ]
        );
    }

    #[test]
    fn granting_a_whole_service_grants_each_endpoint_once() {
        let mut plan = guestbook();
        plan.grant("web", "db").unwrap();
        plan.grant("web", "db").unwrap();
        let names: Vec<String> = plan.capabilities.iter().map(|c| c.to_string()).collect();
        assert_eq!(names, ["web -> db.kv", "web -> db.stats"]);
        assert_eq!(plan.revoke("web", "db.stats"), 1);
        assert_eq!(plan.revoke("web", "db"), 1);
        assert!(plan.capabilities.is_empty());
    }

    #[test]
    fn refuses_what_cannot_be_enforced_with_a_useful_message() {
        let mut plan = guestbook();
        let e = plan.grant("web", "cache").unwrap_err();
        assert_eq!(
            e.to_string(),
            "there is no service 'cache' (services: web, db)"
        );
        let e = plan.grant("web", "db.sql").unwrap_err();
        assert_eq!(
            e.to_string(),
            "service 'db' provides no endpoint 'sql' (it provides: kv, stats)"
        );
        let e = plan.grant("db", "db.kv").unwrap_err();
        assert_eq!(
            e.to_string(),
            "service 'db' cannot be given a capability to itself"
        );
        assert!(matches!(
            plan.add_service("web", vec![]),
            Err(PlanError::DuplicateService(_))
        ));

        let mut clash = guestbook();
        clash.services[1].ipv4 = clash.services[0].ipv4;
        assert_eq!(
            clash.validate().unwrap_err().to_string(),
            "services 'web' and 'db' have the same address"
        );
        let mut gw = guestbook();
        gw.services[0].ipv4 = gw.gateway.ipv4;
        assert!(matches!(gw.validate(), Err(PlanError::BadAddress { .. })));
        let mut outside = guestbook();
        outside.services[0].ipv4 = Ipv4Addr::new(10, 78, 0, 2);
        assert!(matches!(
            outside.validate(),
            Err(PlanError::BadAddress { .. })
        ));
        let mut bcast = guestbook();
        bcast.services[0].mac = Mac::BROADCAST;
        assert!(matches!(bcast.validate(), Err(PlanError::BadMac { .. })));
        let mut inside = guestbook();
        inside
            .grant_egress("web", "e", Ipv4Addr::new(10, 77, 0, 3), 1, Proto::Tcp)
            .unwrap();
        assert!(matches!(
            inside.validate(),
            Err(PlanError::EgressInsideSubnet(_))
        ));
        let mut bad_label = guestbook();
        bad_label.services[0]
            .provides
            .push(ep("no spaces", 81, Proto::Tcp));
        let e = bad_label.validate().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("service 'web': boot configuration argument"),
            "{e}"
        );
    }

    #[test]
    fn publishes_tcp_endpoints_once_on_distinct_host_addresses() {
        let mut plan = guestbook();
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        plan.publish(a, "web").unwrap();
        plan.publish(a, "web.http").unwrap();
        assert_eq!(plan.published.len(), 1);
        assert_eq!(
            plan.published[0].capability().to_string(),
            "gateway -> web.http"
        );
        assert!(matches!(
            plan.publish(a, "db.stats"),
            Err(PlanError::PublishNotTcp(_))
        ));
        assert!(matches!(
            plan.publish(a, "db.nope"),
            Err(PlanError::UnknownEndpoint { .. })
        ));
        plan.publish(a, "db.kv").unwrap();
        assert!(matches!(
            plan.validate(),
            Err(PlanError::DuplicatePublish(_))
        ));
        plan.published.pop();
        plan.validate().unwrap();
        plan.add_service("gateway", vec![]).unwrap();
        assert!(matches!(plan.validate(), Err(PlanError::ReservedName(_))));
    }

    #[test]
    fn probes_name_tcp_endpoints_once() {
        let mut plan = guestbook();
        plan.probe("web").unwrap();
        plan.probe("web.http").unwrap();
        assert_eq!(plan.probes.len(), 1);
        assert_eq!(
            plan.probes[0].capability().to_string(),
            "gateway -> web.http"
        );
        assert!(plan.gateway_reaches("web", "http"));
        assert!(!plan.gateway_reaches("db", "kv"));
        assert!(matches!(
            plan.probe("db.stats"),
            Err(PlanError::ProbeNotTcp(_))
        ));
        assert!(matches!(
            plan.probe("db.nope"),
            Err(PlanError::UnknownEndpoint { .. })
        ));
        assert!(matches!(
            plan.probe("nobody"),
            Err(PlanError::UnknownService { .. })
        ));
        plan.validate().unwrap();
        // Probes need the gateway, whose name is then reserved.
        plan.add_service("gateway", vec![]).unwrap();
        assert!(matches!(plan.validate(), Err(PlanError::ReservedName(_))));
    }

    #[test]
    fn subnets() {
        let s: Subnet = "10.77.0.0/24".parse().unwrap();
        assert_eq!(s.hosts(), 254);
        assert_eq!(s.host(1), Some(Ipv4Addr::new(10, 77, 0, 1)));
        assert_eq!(s.host(254), Some(Ipv4Addr::new(10, 77, 0, 254)));
        assert_eq!(s.host(255), None);
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 77, 0, 255));
        assert!(
            s.contains(Ipv4Addr::new(10, 77, 0, 9)) && !s.contains(Ipv4Addr::new(10, 77, 1, 9))
        );
        for bad in [
            "10.77.0.1/24",
            "10.77.0.0/31",
            "10.77.0.0",
            "10.77.0/24",
            "10.77.0.0/x",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
        // A /30 holds the gateway and one service.
        let mut tiny = Plan::new("192.168.9.0/30".parse().unwrap());
        tiny.add_service("a", vec![]).unwrap();
        assert!(matches!(
            tiny.add_service("b", vec![]),
            Err(PlanError::SubnetFull { .. })
        ));
    }
}
