//! The policy: a [`Plan`] compiled into lookup tables, and the connection tracker.
//!
//! Default deny. A frame from port P opens a connection only along a capability of P's service
//! (TCP SYN, UDP datagram, ICMP echo request to the provider's address and endpoint port);
//! everything else must belong to a connection the tracker knows ([`conntrack`]). ARP is
//! answered only for the addresses a service may reach: the providers it holds capabilities to,
//! the consumers holding capabilities to it (it must answer them), and the gateway if it has
//! egress. Everything else in the subnet does not exist for it.
//!
//! Keys are packed into integers and looked up in hash maps with a keyed hasher: a guest chooses
//! the source ports and addresses it sends, so an unkeyed hash would let it aim collisions at
//! the table every other guest's frames go through.
#![forbid(unsafe_code)]

pub mod conntrack;
mod reason;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

pub use reason::{DropReason, Drops, Field};

use crate::plan::{
    Capability, Egress, Gateway, Plan, PlanError, PortId, Proto, Subnet, GATEWAY_NAME,
};
use crate::wire::Mac;

/// The hasher of every table on the data path.
pub(crate) type Hasher = std::hash::RandomState;
pub(crate) type Map<K, V> = HashMap<K, V, Hasher>;
pub(crate) type Set<K> = HashSet<K, Hasher>;

/// A capability's index in the compiled policy (it changes when a plan is applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapId(pub(crate) u32);

/// What the policy knows of a port.
#[derive(Clone, Debug)]
pub struct PortRule {
    /// The service on it.
    pub service: Arc<str>,
    /// Its only valid source MAC.
    pub mac: Mac,
    /// Its only valid source address.
    pub ipv4: Ipv4Addr,
    /// Whether the service holds egress capabilities (so the gateway exists for it).
    pub has_egress: bool,
}

/// A capability, resolved to ports and an address.
#[derive(Clone, Debug)]
pub struct CapRule {
    /// As the plan says it.
    pub cap: Capability,
    /// The consumer's port.
    pub consumer: PortId,
    /// The provider's port.
    pub provider: PortId,
    /// The provider's address.
    pub addr: Ipv4Addr,
    /// The endpoint's port.
    pub port: u16,
    /// The endpoint's protocol.
    pub proto: Proto,
}

/// A plan compiled for the data path.
#[derive(Debug)]
pub struct Policy {
    plan: Plan,
    /// By port number; `None` for numbers no service has.
    ports: Vec<Option<PortRule>>,
    by_ip: Map<u32, PortId>,
    caps: Vec<CapRule>,
    cap_ids: Map<Capability, CapId>,
    tcp: Map<u64, CapId>,
    udp: Map<u64, CapId>,
    /// Consumer port and provider address: ICMP echo goes along any capability.
    icmp: Map<u64, CapId>,
    /// Asker port and address: the ARP requests the fabric answers.
    reach: Set<u64>,
    egress: Vec<Egress>,
    egress_index: Map<(u8, u64), usize>,
    /// The gateway as a port ([`PortId::GATEWAY`]).
    gateway: PortRule,
}

/// Packs a port, an address and a transport port into one key.
fn key(port: PortId, ip: Ipv4Addr, tport: u16) -> u64 {
    (u64::from(port.0) << 48) | (u64::from(u32::from(ip)) << 16) | u64::from(tport)
}

/// Packs a port and an address into one key.
fn key2(port: PortId, ip: Ipv4Addr) -> u64 {
    (u64::from(port.0) << 32) | u64::from(u32::from(ip))
}

fn proto_num(proto: Proto) -> u8 {
    match proto {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

impl Policy {
    /// Compiles `plan` (validated first).
    pub fn compile(plan: Plan) -> Result<Policy, PlanError> {
        plan.validate()?;
        let hasher = Hasher::default;
        let max_port = plan.services.iter().map(|s| s.port.0).max();
        let mut ports = vec![None; max_port.map_or(0, |p| usize::from(p) + 1)];
        let mut by_ip = Map::with_hasher(hasher());
        for s in &plan.services {
            ports[usize::from(s.port.0)] = Some(PortRule {
                service: s.name.as_str().into(),
                mac: s.mac,
                ipv4: s.ipv4,
                has_egress: plan.egress.iter().any(|e| e.consumer == s.name),
            });
            by_ip.insert(u32::from(s.ipv4), s.port);
        }
        let mut policy = Policy {
            ports,
            by_ip,
            caps: Vec::with_capacity(plan.capabilities.len()),
            cap_ids: Map::with_hasher(hasher()),
            tcp: Map::with_hasher(hasher()),
            udp: Map::with_hasher(hasher()),
            icmp: Map::with_hasher(hasher()),
            reach: Set::with_hasher(hasher()),
            egress: plan.egress.clone(),
            egress_index: Map::with_hasher(hasher()),
            gateway: PortRule {
                service: GATEWAY_NAME.into(),
                mac: plan.gateway.mac,
                ipv4: plan.gateway.ipv4,
                has_egress: false,
            },
            plan: Plan::new(plan.subnet),
        };
        for cap in &plan.capabilities {
            let (provider, endpoint) = plan.resolve(cap)?;
            let consumer = plan.service(&cap.consumer).expect("validated").port;
            let id = CapId(policy.caps.len() as u32);
            policy.cap_ids.insert(cap.clone(), id);
            policy.caps.push(CapRule {
                cap: cap.clone(),
                consumer,
                provider: provider.port,
                addr: provider.ipv4,
                port: endpoint.port,
                proto: endpoint.proto,
            });
            let table = match endpoint.proto {
                Proto::Tcp => &mut policy.tcp,
                Proto::Udp => &mut policy.udp,
            };
            table.insert(key(consumer, provider.ipv4, endpoint.port), id);
            policy
                .icmp
                .entry(key2(consumer, provider.ipv4))
                .or_insert(id);
            let consumer_ip = plan.service(&cap.consumer).expect("validated").ipv4;
            policy.reach.insert(key2(consumer, provider.ipv4));
            policy.reach.insert(key2(provider.port, consumer_ip));
        }
        let gw_ip = plan.gateway.ipv4;
        // The gateway holds a capability to each published endpoint and each endpoint the
        // supervisor probes, and may ARP its provider (and be ARPed by it): nothing else.
        let gateway_caps = plan
            .published
            .iter()
            .map(|p| p.capability())
            .chain(plan.probes.iter().map(|p| p.capability()));
        for cap in gateway_caps {
            if policy.cap_ids.contains_key(&cap) {
                continue;
            }
            let (provider, endpoint) = plan.resolve(&cap)?;
            let id = CapId(policy.caps.len() as u32);
            policy.cap_ids.insert(cap.clone(), id);
            policy.caps.push(CapRule {
                cap,
                consumer: PortId::GATEWAY,
                provider: provider.port,
                addr: provider.ipv4,
                port: endpoint.port,
                proto: endpoint.proto,
            });
            policy
                .tcp
                .insert(key(PortId::GATEWAY, provider.ipv4, endpoint.port), id);
            policy.reach.insert(key2(PortId::GATEWAY, provider.ipv4));
            policy.reach.insert(key2(provider.port, gw_ip));
        }
        // Each egress capability is one whose provider is the gateway, at the outside address.
        for (i, e) in plan.egress.iter().enumerate() {
            let service = plan.service(&e.consumer).expect("validated");
            let consumer = service.port;
            policy
                .egress_index
                .insert((proto_num(e.proto), key(consumer, e.addr, e.port)), i);
            let cap = Capability::new(&e.consumer, GATEWAY_NAME, &e.name);
            if policy.cap_ids.contains_key(&cap) {
                continue;
            }
            let id = CapId(policy.caps.len() as u32);
            policy.cap_ids.insert(cap.clone(), id);
            policy.caps.push(CapRule {
                cap,
                consumer,
                provider: PortId::GATEWAY,
                addr: e.addr,
                port: e.port,
                proto: e.proto,
            });
            let table = match e.proto {
                Proto::Tcp => &mut policy.tcp,
                Proto::Udp => &mut policy.udp,
            };
            table.insert(key(consumer, e.addr, e.port), id);
            policy.reach.insert(key2(PortId::GATEWAY, service.ipv4));
        }
        policy.plan = plan;
        Ok(policy)
    }

    /// The plan it was compiled from.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The subnet.
    pub fn subnet(&self) -> Subnet {
        self.plan.subnet
    }

    /// The gateway.
    pub fn gateway(&self) -> Gateway {
        self.plan.gateway
    }

    /// What the policy knows of `port`.
    #[inline]
    pub fn port(&self, port: PortId) -> Option<&PortRule> {
        if port == PortId::GATEWAY {
            return Some(&self.gateway);
        }
        self.ports.get(usize::from(port.0))?.as_ref()
    }

    /// The ports that have a service (the gateway's not included).
    pub fn ports(&self) -> impl Iterator<Item = (PortId, &PortRule)> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((PortId(i as u16), r.as_ref()?)))
    }

    /// The port of the service with address `ip`.
    #[inline]
    pub fn port_of(&self, ip: Ipv4Addr) -> Option<PortId> {
        self.by_ip.get(&u32::from(ip)).copied()
    }

    /// The capability that lets the service on `from` open a connection to `dst:dport` over
    /// `proto` (6 TCP, 17 UDP).
    #[inline]
    pub fn capability(&self, from: PortId, proto: u8, dst: Ipv4Addr, dport: u16) -> Option<CapId> {
        let table = match proto {
            6 => &self.tcp,
            17 => &self.udp,
            _ => return None,
        };
        table.get(&key(from, dst, dport)).copied()
    }

    /// A capability of `from` to the service at `dst` (any endpoint): what ICMP echo goes along.
    #[inline]
    pub fn echo_capability(&self, from: PortId, dst: Ipv4Addr) -> Option<CapId> {
        self.icmp.get(&key2(from, dst)).copied()
    }

    /// The egress capability of `from` to `dst:dport` over `proto`, if any.
    pub fn egress(&self, from: PortId, proto: u8, dst: Ipv4Addr, dport: u16) -> Option<&Egress> {
        let i = self.egress_index.get(&(proto, key(from, dst, dport)))?;
        self.egress.get(*i)
    }

    /// The capability `id`.
    pub fn cap(&self, id: CapId) -> &CapRule {
        &self.caps[id.0 as usize]
    }

    /// Every capability, by id.
    pub fn caps(&self) -> impl Iterator<Item = (CapId, &CapRule)> {
        self.caps
            .iter()
            .enumerate()
            .map(|(i, c)| (CapId(i as u32), c))
    }

    /// The id of `cap`, if the policy has it.
    pub fn cap_id(&self, cap: &Capability) -> Option<CapId> {
        self.cap_ids.get(cap).copied()
    }

    /// The MAC the fabric answers an ARP request from `asker` for `target` with: the target's,
    /// if the asker may reach it; `None` keeps the target invisible.
    pub fn arp_answer(&self, asker: PortId, target: Ipv4Addr) -> Option<Mac> {
        let gateway = self.gateway();
        if target == gateway.ipv4 {
            let reaches = self.port(asker)?.has_egress || self.reach.contains(&key2(asker, target));
            return reaches.then_some(gateway.mac);
        }
        if !self.reach.contains(&key2(asker, target)) {
            return None;
        }
        Some(self.port(self.port_of(target)?)?.mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Endpoint;

    fn plan() -> Plan {
        let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
        let kv = Endpoint {
            name: "kv".into(),
            port: 6379,
            proto: Proto::Tcp,
        };
        let dns = Endpoint {
            name: "dns".into(),
            port: 53,
            proto: Proto::Udp,
        };
        plan.add_service("web", vec![]).unwrap();
        plan.add_service("db", vec![kv, dns]).unwrap();
        plan.add_service("other", vec![]).unwrap();
        plan.grant("web", "db").unwrap();
        plan.grant_egress(
            "web",
            "egress.0",
            Ipv4Addr::new(203, 0, 113, 7),
            443,
            Proto::Tcp,
        )
        .unwrap();
        plan
    }

    #[test]
    fn compiles_capabilities_into_lookups() {
        let p = Policy::compile(plan()).unwrap();
        let (web, db, other) = (PortId(0), PortId(1), PortId(2));
        let db_ip = Ipv4Addr::new(10, 77, 0, 3);
        let kv = p.capability(web, 6, db_ip, 6379).unwrap();
        assert_eq!(p.cap(kv).cap.to_string(), "web -> db.kv");
        assert_eq!(p.cap(kv).provider, db);
        assert!(p.capability(web, 17, db_ip, 53).is_some());
        assert!(p.capability(web, 6, db_ip, 53).is_none(), "wrong protocol");
        assert!(p.capability(web, 6, db_ip, 22).is_none(), "undeclared port");
        assert!(
            p.capability(db, 6, Ipv4Addr::new(10, 77, 0, 2), 6379)
                .is_none(),
            "reverse"
        );
        assert!(p.capability(other, 6, db_ip, 6379).is_none(), "no grant");
        assert!(p.echo_capability(web, db_ip).is_some());
        assert!(p.echo_capability(db, Ipv4Addr::new(10, 77, 0, 2)).is_none());
        assert_eq!(p.port_of(db_ip), Some(db));
        assert!(p
            .egress(web, 6, Ipv4Addr::new(203, 0, 113, 7), 443)
            .is_some());
        assert!(p
            .egress(web, 17, Ipv4Addr::new(203, 0, 113, 7), 443)
            .is_none());
    }

    #[test]
    fn arp_sees_only_peers() {
        let p = Policy::compile(plan()).unwrap();
        let (web, db, other) = (PortId(0), PortId(1), PortId(2));
        let ip = |n| Ipv4Addr::new(10, 77, 0, n);
        assert_eq!(p.arp_answer(web, ip(3)), Some(p.port(db).unwrap().mac));
        // The provider must find its consumer to answer it.
        assert_eq!(p.arp_answer(db, ip(2)), Some(p.port(web).unwrap().mac));
        assert_eq!(p.arp_answer(other, ip(3)), None);
        assert_eq!(p.arp_answer(db, ip(4)), None);
        assert_eq!(p.arp_answer(web, ip(9)), None);
        // The gateway exists for web (egress) only.
        assert_eq!(p.arp_answer(web, ip(1)), Some(p.gateway().mac));
        assert_eq!(p.arp_answer(db, ip(1)), None);
    }

    #[test]
    fn a_probed_endpoint_is_the_gateways_only() {
        let mut plan = plan();
        plan.probe("db.kv").unwrap();
        let p = Policy::compile(plan).unwrap();
        let (web, db, other) = (PortId(0), PortId(1), PortId(2));
        let ip = |n| Ipv4Addr::new(10, 77, 0, n);
        let cap = p.capability(PortId::GATEWAY, 6, ip(3), 6379).unwrap();
        assert_eq!(p.cap(cap).cap.to_string(), "gateway -> db.kv");
        // Not db's other endpoint, nor anyone else.
        assert!(p.capability(PortId::GATEWAY, 17, ip(3), 53).is_none());
        assert!(p.capability(PortId::GATEWAY, 6, ip(2), 6379).is_none());
        // The gateway and db find each other; other still sees neither; db gets no path to
        // the gateway (no capability of its own).
        assert_eq!(
            p.arp_answer(PortId::GATEWAY, ip(3)),
            Some(p.port(db).unwrap().mac)
        );
        assert_eq!(p.arp_answer(db, ip(1)), Some(p.gateway().mac));
        assert_eq!(p.arp_answer(other, ip(1)), None);
        assert_eq!(p.arp_answer(PortId::GATEWAY, ip(4)), None);
        assert!(p.capability(db, 6, ip(1), 6379).is_none());
        assert!(p.capability(web, 6, ip(1), 80).is_none());
    }
}
