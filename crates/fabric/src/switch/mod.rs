//! The switch: the fabric's data path, without I/O.
//!
//! [`Fabric::process`] takes one frame that arrived on a port, the time, and a function to
//! send frames with; it forwards the frame to at most one port, answers it (ARP), or drops it
//! and counts why. Time and I/O are passed in (smoltcp's `Interface::poll` style), so tests and
//! benchmarks drive the switch directly and `port/` runs it over real file descriptors.
//!
//! What a frame must pass, in order (the first failure is the drop reason):
//! 1. its port has a service; it fits the MTU; it holds an Ethernet header;
//! 2. its source MAC is the port's own;
//! 3. ARP: an Ethernet/IPv4 request whose sender is the port's own MAC and address, not
//!    gratuitous; it is answered by the fabric if the asker may reach the target, never
//!    forwarded;
//! 4. IPv4: unicast Ethernet destination; a valid header (checksum) from the port's own address;
//!    not a fragment; no options; a unicast destination; TCP, UDP or ICMP echo with valid
//!    headers;
//! 5. it belongs to a tracked connection (and fits its TCP state), or opens one along a
//!    capability of the port's service (TCP SYN, UDP datagram, ICMP echo request).
//!
//! A forwarded frame gets the destination port's MAC as its Ethernet destination: frames go to
//! the one port the policy chose, never flooded.
#![forbid(unsafe_code)]

mod capture;
mod log;
mod stats;
/// The Ethernet frame of an ARP packet the fabric sends, from its sender to its target.
fn arp_frame(repr: &ArpRepr) -> [u8; ethernet::HEADER_LEN + arp::PACKET_LEN] {
    let mut buf = [0u8; ethernet::HEADER_LEN + arp::PACKET_LEN];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.set_dst(repr.target_mac);
    eth.set_src(repr.sender_mac);
    eth.set_ethertype(EtherType::Arp);
    repr.emit(eth.payload_mut());
    buf
}

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub use capture::{CaptureId, CaptureTarget, FrameSink};
pub use stats::{CapReport, CapStats, PortReport, PortStats, Stats, Traffic};

use crate::plan::{Capability, Plan, PlanError, PortId};
use crate::policy::conntrack::{
    Conn, Conntrack, Dir, Full, Slot, State, Step, Tcp, Timeouts, Tuple,
};
use crate::policy::{CapId, DropReason, Field, Policy};
use crate::wire::{
    arp, ethernet, ipv4, tcp, ArpOp, ArpPacket, ArpRepr, EtherType, EthernetFrame, IcmpPacket,
    IpProtocol, Ipv4Packet, Ipv4Repr, Mac, TcpFlags, TcpPacket, TcpRepr, UdpPacket, WireError,
};

/// How the fabric behaves; the defaults suit a fabric of a few hundred services.
#[derive(Clone, Debug)]
pub struct Config {
    /// Connection tracking timeouts.
    pub timeouts: Timeouts,
    /// Connections tracked at most.
    pub max_connections: usize,
    /// Connections one port's service may have opened at most.
    pub max_connections_per_port: u32,
    /// At most one log line per port and drop reason per this interval.
    pub log_interval: Duration,
    /// The guests' MTU: frames longer than this plus the Ethernet header are dropped.
    pub mtu: u16,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            timeouts: Timeouts::default(),
            max_connections: 1 << 18,
            max_connections_per_port: 1 << 14,
            log_interval: Duration::from_secs(1),
            mtu: 1500,
        }
    }
}

/// What happened to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Sent on to this port.
    Forwarded(PortId),
    /// Answered by the fabric (ARP); nothing was forwarded.
    Answered,
    /// Dropped, for this reason.
    Dropped(DropReason),
}

/// What [`Fabric::apply`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Capabilities the new plan has and the old did not.
    pub added: Vec<Capability>,
    /// Capabilities the old plan had and the new does not.
    pub removed: Vec<Capability>,
    /// Connections cut because their capability (or a port's address) went away.
    pub cut: usize,
    /// Resets sent to guests for cut TCP connections.
    pub resets: usize,
}

/// The fabric of one application: its policy, connections, counters and captures.
pub struct Fabric {
    policy: Policy,
    conntrack: Conntrack,
    config: Config,
    /// By port number, for the policy's ports.
    ports: Vec<PortStats>,
    /// By capability id.
    caps: Vec<CapStats>,
    unattributed: PortStats,
    /// The gateway's port's counters.
    gateway_stats: PortStats,
    /// Whether the gateway runs: frames for it are dropped as `NoGateway` until it does.
    gateway_on: bool,
    captures: capture::Captures,
    logs: log::LogLimiter,
}

impl fmt::Debug for Fabric {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Fabric")
            .field("services", &self.policy.plan().services.len())
            .field("capabilities", &self.caps.len())
            .field("connections", &self.conntrack.len())
            .field("captures", &self.captures)
            .finish()
    }
}

/// What `decide` concluded.
enum Decision {
    /// `opens`: the frame opens a connection (the provider is then told who opened it).
    Forward {
        to: PortId,
        cap: CapId,
        dir: Dir,
        opens: bool,
    },
    Answer(ArpRepr),
    Drop(DropReason, Option<CapId>),
}

/// What is known of a frame, for its drop log line.
#[derive(Clone, Copy, Debug, Default)]
enum Flow {
    #[default]
    Frame,
    Ether(u16),
    Arp(Ipv4Addr),
    Ip {
        dst: Ipv4Addr,
        proto: u8,
        dport: Option<u16>,
    },
}

/// A TCP segment's fields that conntrack follows.
#[derive(Clone, Copy)]
struct Segment {
    flags: TcpFlags,
    seq: u32,
    len: u32,
}

impl Fabric {
    /// A fabric enforcing `plan`.
    pub fn new(plan: Plan, config: Config) -> Result<Fabric, PlanError> {
        let policy = Policy::compile(plan)?;
        let ports = vec![
            PortStats::default();
            policy
                .ports()
                .last()
                .map_or(0, |(p, _)| usize::from(p.0) + 1)
        ];
        let caps = vec![CapStats::default(); policy.caps().count()];
        Ok(Fabric {
            conntrack: Conntrack::new(config.max_connections, config.max_connections_per_port),
            logs: log::LogLimiter::new(config.log_interval),
            policy,
            config,
            ports,
            caps,
            unattributed: PortStats::default(),
            gateway_stats: PortStats::default(),
            gateway_on: false,
            captures: capture::Captures::default(),
        })
    }

    /// Tells the fabric whether the gateway runs on [`PortId::GATEWAY`] (the port layer sets
    /// it when the gateway's port is attached): until it does, frames of published endpoints
    /// and egress capabilities are dropped as [`DropReason::NoGateway`].
    pub fn set_gateway(&mut self, running: bool) {
        self.gateway_on = running;
    }

    /// Whether the gateway runs.
    pub fn gateway_running(&self) -> bool {
        self.gateway_on
    }

    /// The plan in force.
    pub fn plan(&self) -> &Plan {
        self.policy.plan()
    }

    /// The compiled policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Connections tracked now.
    pub fn connections(&self) -> usize {
        self.conntrack.len()
    }

    /// The largest frame a port may send: the MTU plus the Ethernet header.
    pub fn max_frame(&self) -> usize {
        usize::from(self.config.mtu) + ethernet::HEADER_LEN
    }

    /// Handles `frame`, which arrived on port `from` at `now`: forwards it (with its Ethernet
    /// destination rewritten to the target port's MAC, in place: the frame is borrowed mutably
    /// so that forwarding copies nothing), answers it, or drops it. Every frame the fabric sends
    /// goes through `out` (port, frame): the forwarded frame or the ARP reply, and the resets of
    /// a connection this frame found timed out.
    pub fn process(
        &mut self,
        from: PortId,
        frame: &mut [u8],
        now: Instant,
        out: &mut impl FnMut(PortId, &[u8]),
    ) -> Verdict {
        self.port_stats_mut(from).rx.add(frame.len());
        if !self.captures.is_empty() {
            self.captures.frame(from, None, now, frame);
        }
        let mut flow = Flow::Frame;
        match self.decide(from, frame, now, &mut flow, out) {
            Decision::Forward {
                to,
                cap,
                dir,
                opens,
            } => {
                if opens && from == PortId::GATEWAY {
                    self.introduce(from, to, now, out);
                }
                let mac = self.policy.port(to).expect("a connection's port").mac;
                EthernetFrame::new_unchecked(&mut *frame).set_dst(mac);
                let stats = &mut self.caps[cap.0 as usize];
                match dir {
                    Dir::Orig => stats.to_provider.add(frame.len()),
                    Dir::Reply => stats.to_consumer.add(frame.len()),
                }
                self.emit(to, Some(cap), frame, now, out);
                Verdict::Forwarded(to)
            }
            Decision::Answer(repr) => {
                self.emit(from, None, &arp_frame(&repr), now, out);
                Verdict::Answered
            }
            Decision::Drop(reason, cap) => {
                self.dropped(from, reason, cap, flow, now);
                Verdict::Dropped(reason)
            }
        }
    }

    /// Tells `to` the MAC of `from` (the gateway), which is opening a connection to it, with an
    /// ARP reply (unasked: the guest's stack learns from any reply addressed to it). Its answer
    /// then needs no ARP request of its own, which a guest stack may rate-limit (smoltcp sends
    /// one a second for all neighbors): without this, a guest that had just asked for a peer
    /// (web for db, at start) answered a health probe or the first ingress connection up to a
    /// second late. It says only what the fabric would answer `to` when asked: `from` may open
    /// this connection, so `to` may reply to it. Guests opening connections to each other
    /// are not introduced (a provider rarely has just asked for someone else).
    fn introduce(
        &mut self,
        from: PortId,
        to: PortId,
        now: Instant,
        out: &mut impl FnMut(PortId, &[u8]),
    ) {
        let (Some(a), Some(b)) = (self.policy.port(from), self.policy.port(to)) else {
            return;
        };
        let repr = ArpRepr {
            op: ArpOp::Reply,
            sender_mac: a.mac,
            sender_ip: a.ipv4,
            target_mac: b.mac,
            target_ip: b.ipv4,
        };
        self.emit(to, None, &arp_frame(&repr), now, out);
    }

    /// Counts a frame of `len` bytes from `from` that was too large to read whole (the port
    /// layer's receive buffer is larger than any valid frame).
    pub fn oversized(&mut self, from: PortId, len: usize, now: Instant) {
        self.port_stats_mut(from).rx.add(len);
        self.dropped(from, DropReason::Oversized, None, Flow::Frame, now);
    }

    /// Counts a frame for `to` that its port could not take (the monitor is not reading, or
    /// the port is detached); the port layer calls it after `out` failed.
    pub fn tx_failed(&mut self, to: PortId, now: Instant) {
        self.port_stats_mut(to).drops.add(DropReason::TxFull);
        if let Some(suppressed) = self.logs.allow(to, DropReason::TxFull, now) {
            tracing::warn!(
                target: "sturdy_fabric::drop",
                service = %self.service_name(to),
                reason = DropReason::TxFull.name(),
                suppressed,
                "frame for {} dropped: {}",
                self.service_name(to),
                DropReason::TxFull
            );
        }
    }

    /// Forgets the connections idle past their timeout; the TCP ones still open get a reset
    /// at both ends (so the guests see them die rather than hang). Returns how many ended.
    pub fn expire(&mut self, now: Instant, out: &mut impl FnMut(PortId, &[u8])) -> usize {
        let expired: Vec<Slot> = self
            .conntrack
            .slots()
            .filter(|s| self.conntrack.get(*s).expires <= now)
            .collect();
        for slot in &expired {
            self.end(*slot, now, out);
        }
        expired.len()
    }

    /// Puts `plan` in force at once. Connections whose capability the new plan lacks (or whose
    /// ends changed address) are cut: forgotten, and for TCP a reset sent to both ends. A plan
    /// that does not validate changes nothing.
    pub fn apply(
        &mut self,
        plan: Plan,
        now: Instant,
        out: &mut impl FnMut(PortId, &[u8]),
    ) -> Result<ApplyReport, PlanError> {
        let new = Policy::compile(plan)?;
        let mut report = ApplyReport::default();
        let old_caps: Vec<&Capability> = self.policy.plan().capabilities.iter().collect();
        let new_caps = &new.plan().capabilities;
        report.added = new_caps
            .iter()
            .filter(|c| !old_caps.contains(c))
            .cloned()
            .collect();
        report.removed = old_caps
            .iter()
            .filter(|c| !new_caps.contains(c))
            .map(|c| (*c).clone())
            .collect();

        let slots: Vec<Slot> = self.conntrack.slots().collect();
        for slot in slots {
            match still_allowed(&self.policy, &new, self.conntrack.get(slot)) {
                Some(cap) => self.conntrack.get_mut(slot).cap = cap,
                None => {
                    report.cut += 1;
                    report.resets += self.end(slot, now, out);
                }
            }
        }

        // Counters follow their capability and port across the change.
        let mut caps = vec![CapStats::default(); new.caps().count()];
        for (id, rule) in new.caps() {
            if let Some(old) = self.policy.cap_id(&rule.cap) {
                caps[id.0 as usize] = self.caps[old.0 as usize];
            }
        }
        let nports = new.ports().last().map_or(0, |(p, _)| usize::from(p.0) + 1);
        self.ports.resize(nports, PortStats::default());
        for (port, rule) in new.ports() {
            let same = self
                .policy
                .port(port)
                .is_some_and(|old| old.service == rule.service);
            if !same {
                self.ports[usize::from(port.0)] = PortStats::default();
            }
        }
        self.caps = caps;
        self.policy = new;
        self.captures.resolve(&self.policy);
        tracing::info!(
            target: "sturdy_fabric::policy",
            added = report.added.len(),
            removed = report.removed.len(),
            cut = report.cut,
            "plan applied: {} capabilities added, {} removed, {} connections cut",
            report.added.len(),
            report.removed.len(),
            report.cut
        );
        Ok(report)
    }

    /// Starts capturing `target` into `sink`.
    pub fn capture(&mut self, target: CaptureTarget, sink: Box<dyn FrameSink>) -> CaptureId {
        self.captures.add(target, sink, &self.policy)
    }

    /// Stops capture `id`, flushes its sink and returns it.
    pub fn stop_capture(&mut self, id: CaptureId) -> Option<Box<dyn FrameSink>> {
        self.captures.remove(id)
    }

    /// The counters of `port`, if it has a service.
    pub fn port_stats(&self, port: PortId) -> Option<&PortStats> {
        if port == PortId::GATEWAY {
            return Some(&self.gateway_stats);
        }
        self.policy.port(port)?;
        self.ports.get(usize::from(port.0))
    }

    /// The counters of frames from ports without a service.
    pub fn unattributed_stats(&self) -> &PortStats {
        &self.unattributed
    }

    /// The counters of `cap`, if the plan has it.
    pub fn capability_stats(&self, cap: &Capability) -> Option<&CapStats> {
        Some(&self.caps[self.policy.cap_id(cap)?.0 as usize])
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> Stats {
        Stats {
            ports: self
                .policy
                .ports()
                .map(|(port, rule)| PortReport {
                    port,
                    service: rule.service.to_string(),
                    stats: self.ports[usize::from(port.0)],
                })
                .collect(),
            capabilities: self
                .policy
                .caps()
                .map(|(id, rule)| CapReport {
                    capability: rule.cap.clone(),
                    stats: self.caps[id.0 as usize],
                })
                .collect(),
            unattributed: self.unattributed,
            connections: self.conntrack.len(),
        }
    }

    fn port_stats_mut(&mut self, port: PortId) -> &mut PortStats {
        if port == PortId::GATEWAY {
            return &mut self.gateway_stats;
        }
        match self.ports.get_mut(usize::from(port.0)) {
            Some(s) if self.policy.port(port).is_some() => s,
            _ => &mut self.unattributed,
        }
    }

    fn service_name(&self, port: PortId) -> String {
        match self.policy.port(port) {
            Some(rule) => rule.service.to_string(),
            None => port.to_string(),
        }
    }

    /// Sends `frame` to `to`, counted and captured.
    fn emit(
        &mut self,
        to: PortId,
        cap: Option<CapId>,
        frame: &[u8],
        now: Instant,
        out: &mut impl FnMut(PortId, &[u8]),
    ) {
        self.port_stats_mut(to).tx.add(frame.len());
        if !self.captures.is_empty() {
            self.captures.frame(to, cap, now, frame);
        }
        out(to, frame);
    }

    /// Counts and logs a drop.
    fn dropped(
        &mut self,
        from: PortId,
        reason: DropReason,
        cap: Option<CapId>,
        flow: Flow,
        now: Instant,
    ) {
        self.port_stats_mut(from).drops.add(reason);
        if let Some(cap) = cap {
            self.caps[cap.0 as usize].drops.add(reason);
        }
        if let Some(suppressed) = self.logs.allow(from, reason, now) {
            let line = self.describe(from, flow);
            tracing::warn!(
                target: "sturdy_fabric::drop",
                service = %self.service_name(from),
                reason = reason.name(),
                suppressed,
                "{line} denied: {reason}"
            );
        }
    }

    /// `web -> 10.77.0.9:22/tcp`, `web -> 10.77.0.3:6379/tcp (db)`, `web: ARP who-has
    /// 10.77.0.9`, ...
    fn describe(&self, from: PortId, flow: Flow) -> String {
        let me = self.service_name(from);
        let peer = |ip: Ipv4Addr| match self.policy.port_of(ip).and_then(|p| self.policy.port(p)) {
            Some(rule) => format!(" ({})", rule.service),
            None => String::new(),
        };
        match flow {
            Flow::Frame => format!("{me}: frame"),
            Flow::Ether(t) => format!("{me}: frame of EtherType {t:#06x}"),
            Flow::Arp(target) => format!("{me}: ARP who-has {target}{}", peer(target)),
            Flow::Ip { dst, proto, dport } => {
                let proto_name = match proto {
                    1 => "icmp".to_string(),
                    6 => "tcp".to_string(),
                    17 => "udp".to_string(),
                    n => format!("ip proto {n}"),
                };
                match dport {
                    Some(p) => format!("{me} -> {dst}:{p}/{proto_name}{}", peer(dst)),
                    None => format!("{me} -> {dst} {proto_name}{}", peer(dst)),
                }
            }
        }
    }

    fn decide(
        &mut self,
        from: PortId,
        frame: &[u8],
        now: Instant,
        flow: &mut Flow,
        out: &mut impl FnMut(PortId, &[u8]),
    ) -> Decision {
        use Decision::Drop;
        let Some(rule) = self.policy.port(from) else {
            return Drop(DropReason::UnknownPort, None);
        };
        let (my_mac, my_ip) = (rule.mac, rule.ipv4);
        if frame.len() > self.max_frame() {
            return Drop(DropReason::Oversized, None);
        }
        let eth = match EthernetFrame::new_checked(frame) {
            Ok(eth) => eth,
            Err(e) => return Drop(wire_reason(e), None),
        };
        if eth.src() != my_mac {
            return Drop(DropReason::Spoofed(Field::Mac), None);
        }
        match eth.ethertype() {
            EtherType::Arp => self.arp(from, my_mac, my_ip, eth.payload(), flow),
            EtherType::Ipv4 => {
                let dst = eth.dst();
                if dst.is_broadcast() {
                    return Drop(DropReason::Broadcast, None);
                }
                if dst.is_multicast() {
                    return Drop(DropReason::Multicast, None);
                }
                self.ipv4(from, my_ip, eth.payload(), now, flow, out)
            }
            EtherType::Ipv6 => Drop(DropReason::Ipv6, None),
            EtherType::Other(t) => {
                *flow = Flow::Ether(t);
                Drop(DropReason::OtherEthertype, None)
            }
        }
    }

    /// ARP: requests from the port's own addresses, answered for reachable targets only.
    fn arp(
        &self,
        from: PortId,
        my_mac: Mac,
        my_ip: Ipv4Addr,
        payload: &[u8],
        flow: &mut Flow,
    ) -> Decision {
        use Decision::Drop;
        let packet = match ArpPacket::new_checked(payload) {
            Ok(p) => p,
            Err(e) => return Drop(wire_reason(e), None),
        };
        let arp = ArpRepr::parse(&packet);
        *flow = Flow::Arp(arp.target_ip);
        if arp.op != ArpOp::Request {
            return Drop(DropReason::ArpNotAllowed, None);
        }
        if arp.sender_mac != my_mac {
            return Drop(DropReason::Spoofed(Field::Mac), None);
        }
        // Gratuitous ARP (RFC 5227 announcements) and probes (sender 0.0.0.0).
        if arp.sender_ip == arp.target_ip || arp.sender_ip.is_unspecified() {
            return Drop(DropReason::ArpNotAllowed, None);
        }
        if arp.sender_ip != my_ip {
            return Drop(DropReason::Spoofed(Field::Ip), None);
        }
        match self.policy.arp_answer(from, arp.target_ip) {
            Some(mac) => Decision::Answer(ArpRepr {
                op: ArpOp::Reply,
                sender_mac: mac,
                sender_ip: arp.target_ip,
                target_mac: my_mac,
                target_ip: my_ip,
            }),
            None => Drop(DropReason::ArpUnreachable, None),
        }
    }

    fn ipv4(
        &mut self,
        from: PortId,
        my_ip: Ipv4Addr,
        payload: &[u8],
        now: Instant,
        flow: &mut Flow,
        out: &mut impl FnMut(PortId, &[u8]),
    ) -> Decision {
        use Decision::Drop;
        let ip = match Ipv4Packet::new_checked(payload) {
            Ok(p) => p,
            Err(e) => return Drop(wire_reason(e), None),
        };
        let dst = ip.dst();
        let proto = ip.protocol();
        *flow = Flow::Ip {
            dst,
            proto: proto.number(),
            dport: None,
        };
        if !ip.verify_checksum() {
            return Drop(DropReason::Malformed, None);
        }
        // The gateway answers egress connections from their outside address: it may send from
        // another address than its own, on a connection the consumer opened only (below).
        let gateway = from == PortId::GATEWAY;
        if ip.src() != my_ip && !gateway {
            return Drop(DropReason::Spoofed(Field::Ip), None);
        }
        if ip.is_fragment() {
            return Drop(DropReason::Fragment, None);
        }
        if ip.has_options() {
            return Drop(DropReason::IpOptions, None);
        }
        if dst.is_broadcast() || dst == self.policy.subnet().broadcast() {
            return Drop(DropReason::Broadcast, None);
        }
        if dst.is_multicast() {
            return Drop(DropReason::Multicast, None);
        }

        // The transport header: the tuple, and for TCP what conntrack follows.
        let mut segment = None;
        // For ICMP: whether the frame is an echo request (else a reply).
        let mut echo_request = None;
        let (tuple, opens) = match proto {
            IpProtocol::Tcp => {
                let t = match TcpPacket::new_checked(ip.payload()) {
                    Ok(t) => t,
                    Err(e) => return Drop(wire_reason(e), None),
                };
                *flow = Flow::Ip {
                    dst,
                    proto: 6,
                    dport: Some(t.dst_port()),
                };
                if t.src_port() == 0 || t.dst_port() == 0 {
                    return Drop(DropReason::Malformed, None);
                }
                let flags = t.flags();
                segment = Some(Segment {
                    flags,
                    seq: t.seq(),
                    len: t.segment_len(),
                });
                let opens = flags.syn() && !flags.ack() && !flags.rst();
                (tuple(6, ip.src(), t.src_port(), dst, t.dst_port()), opens)
            }
            IpProtocol::Udp => {
                let u = match UdpPacket::new_checked(ip.payload()) {
                    Ok(u) => u,
                    Err(e) => return Drop(wire_reason(e), None),
                };
                *flow = Flow::Ip {
                    dst,
                    proto: 17,
                    dport: Some(u.dst_port()),
                };
                if u.src_port() == 0 || u.dst_port() == 0 {
                    return Drop(DropReason::Malformed, None);
                }
                (tuple(17, ip.src(), u.src_port(), dst, u.dst_port()), true)
            }
            IpProtocol::Icmp => {
                let i = match IcmpPacket::new_checked(ip.payload()) {
                    Ok(i) => i,
                    Err(e) => return Drop(wire_reason(e), None),
                };
                echo_request = Some(i.is_echo_request());
                if i.is_echo_request() {
                    (tuple(1, ip.src(), i.echo_ident(), dst, 0), true)
                } else if i.is_echo_reply() {
                    (tuple(1, ip.src(), 0, dst, i.echo_ident()), false)
                } else {
                    return Drop(DropReason::IcmpType, None);
                }
            }
            IpProtocol::Other(_) => return Drop(DropReason::IpProtocol, None),
        };

        // A frame of a known connection.
        if let Some((slot, dir)) = self.conntrack.find(&tuple) {
            if self.conntrack.get(slot).expires > now {
                // Only a request goes the way of an echo exchange, only a reply comes back: a
                // provider's request that happens to match the reply tuple (the consumer's
                // identifier 0) is not let through to a consumer it may not reach.
                if let Some(request) = echo_request {
                    if request != (dir == Dir::Orig) {
                        let reason = if request {
                            DropReason::NoCapability
                        } else {
                            DropReason::NoConnection
                        };
                        return Drop(reason, None);
                    }
                }
                return self.follow(from, slot, dir, segment, now);
            }
            self.end(slot, now, out);
        }

        // A new connection, along a capability.
        if !opens {
            return Drop(DropReason::NoConnection, None);
        }
        if gateway && ip.src() != my_ip {
            return Drop(DropReason::Spoofed(Field::Ip), None);
        }
        let cap = match proto {
            IpProtocol::Icmp => self.policy.echo_capability(from, dst),
            _ => self.policy.capability(from, tuple.proto, dst, tuple.dport),
        };
        let Some(cap) = cap else {
            if self
                .policy
                .egress(from, tuple.proto, dst, tuple.dport)
                .is_some()
            {
                return Drop(DropReason::NoGateway, None);
            }
            // A UDP datagram back to a peer that may send to us is a reply that came too late.
            let reply = tuple.proto == 17
                && self.policy.port_of(dst).is_some_and(|peer| {
                    self.policy
                        .capability(peer, 17, my_ip, tuple.sport)
                        .is_some()
                });
            return Drop(
                if reply {
                    DropReason::NoConnection
                } else {
                    DropReason::NoCapability
                },
                None,
            );
        };
        let provider = self.policy.cap(cap).provider;
        if (provider == PortId::GATEWAY || gateway) && !self.gateway_on {
            return Drop(DropReason::NoGateway, Some(cap));
        }
        let state = match proto {
            IpProtocol::Tcp => State::Tcp(Tcp::syn(segment.expect("TCP").seq)),
            IpProtocol::Udp => State::Udp { replied: false },
            _ => State::Icmp,
        };
        let mut conn = Conn {
            orig: tuple,
            cap,
            ports: [from, provider],
            state,
            expires: now,
        };
        conn.expires = now + conn.timeout(&self.config.timeouts);
        match self.conntrack.insert(conn) {
            Ok(_) => {
                self.caps[cap.0 as usize].opened += 1;
                Decision::Forward {
                    to: provider,
                    cap,
                    dir: Dir::Orig,
                    opens: true,
                }
            }
            Err(Full::Table | Full::Port) => Drop(DropReason::ConntrackFull, Some(cap)),
        }
    }

    /// A frame from port `from` of the connection in `slot`, going `dir`.
    fn follow(
        &mut self,
        from: PortId,
        slot: Slot,
        dir: Dir,
        segment: Option<Segment>,
        now: Instant,
    ) -> Decision {
        let timeouts = self.config.timeouts;
        let conn = self.conntrack.get_mut(slot);
        let cap = conn.cap;
        // The addresses matched; the port must be that end's too (the gateway may send from
        // any address of its egress destinations, never into another pair's connection).
        if conn.ports[dir as usize] != from {
            return Decision::Drop(DropReason::Spoofed(Field::Ip), Some(cap));
        }
        let to = conn.ports[1 - dir as usize];
        // UDP and ICMP flows have no close, so only the consumer keeps one alive (else its
        // provider could pin the consumer's flows, and its share of the table, for ever by
        // answering); the first reply gives a UDP flow its longer timeout once.
        let refresh = match conn.state {
            State::Tcp(_) => true,
            State::Udp { replied } => dir == Dir::Orig || !replied,
            State::Icmp => dir == Dir::Orig,
        };
        let mut end = false;
        match (&mut conn.state, segment) {
            (State::Tcp(tcp), Some(seg)) => {
                let restart = dir == Dir::Orig
                    && tcp.phase == crate::policy::conntrack::Phase::Closed
                    && seg.flags.syn()
                    && !seg.flags.ack();
                if restart {
                    // The consumer reuses the ports of a closed connection (RFC 9293 3.6.1).
                    *tcp = Tcp::syn(seg.seq);
                    self.caps[cap.0 as usize].opened += 1;
                } else {
                    match tcp.segment(dir, seg.flags, seg.seq, seg.len) {
                        Ok(Step::Continue) => {}
                        Ok(Step::End) => end = true,
                        Err(_) => return Decision::Drop(DropReason::TcpState, Some(cap)),
                    }
                }
            }
            (State::Udp { replied }, _) if dir == Dir::Reply => *replied = true,
            _ => {}
        }
        if end {
            self.conntrack.remove(slot);
        } else if refresh {
            let conn = self.conntrack.get_mut(slot);
            conn.expires = now + conn.timeout(&timeouts);
        }
        Decision::Forward {
            to,
            cap,
            dir,
            opens: false,
        }
    }

    /// Forgets the connection in `slot`; if it is an open TCP connection, sends each end a
    /// reset from the other. Returns how many resets were sent.
    fn end(&mut self, slot: Slot, now: Instant, out: &mut impl FnMut(PortId, &[u8])) -> usize {
        let conn = self.conntrack.remove(slot);
        let State::Tcp(tcp) = conn.state else {
            return 0;
        };
        if !tcp.is_open() {
            return 0;
        }
        self.caps[conn.cap.0 as usize].cut += 1;
        let (Some(consumer), Some(provider)) = (
            self.policy.port(conn.ports[0]),
            self.policy.port(conn.ports[1]),
        ) else {
            return 0;
        };
        let consumer = (consumer.mac, Ipv4Addr::from(conn.orig.src), conn.orig.sport);
        let provider = (provider.mac, Ipv4Addr::from(conn.orig.dst), conn.orig.dport);
        let orig_next = tcp.end[Dir::Orig as usize];
        let reply_next = tcp.seen[Dir::Reply as usize].then_some(tcp.end[Dir::Reply as usize]);
        // To the consumer, from the provider: at the provider's next sequence number,
        // acknowledging all the consumer sent (which a SYN-SENT consumer requires, RFC 9293
        // 3.10.7.3).
        let to_consumer = reset(provider, consumer, reply_next.unwrap_or(0), Some(orig_next));
        // To the provider, from the consumer.
        let to_provider = reset(consumer, provider, orig_next, reply_next);
        self.emit(conn.ports[0], Some(conn.cap), &to_consumer, now, out);
        self.emit(conn.ports[1], Some(conn.cap), &to_provider, now, out);
        2
    }
}

fn tuple(proto: u8, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Tuple {
    Tuple {
        proto,
        src: u32::from(src),
        sport,
        dst: u32::from(dst),
        dport,
    }
}

fn wire_reason(e: WireError) -> DropReason {
    match e {
        WireError::Truncated(_) => DropReason::Truncated,
        WireError::Malformed(_) => DropReason::Malformed,
    }
}

const RESET_LEN: usize = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + tcp::MIN_HEADER_LEN;

/// A TCP reset from `src` to `dst` (MAC, address, port) with sequence number `seq`, and RST|ACK
/// acknowledging `ack` if given.
fn reset(
    src: (Mac, Ipv4Addr, u16),
    dst: (Mac, Ipv4Addr, u16),
    seq: u32,
    ack: Option<u32>,
) -> [u8; RESET_LEN] {
    let mut buf = [0u8; RESET_LEN];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.set_dst(dst.0);
    eth.set_src(src.0);
    eth.set_ethertype(EtherType::Ipv4);
    let ip = &mut buf[ethernet::HEADER_LEN..];
    Ipv4Repr {
        src: src.1,
        dst: dst.1,
        protocol: IpProtocol::Tcp,
        payload_len: tcp::MIN_HEADER_LEN,
        ttl: 64,
    }
    .emit(ip);
    TcpRepr {
        src_port: src.2,
        dst_port: dst.2,
        seq,
        ack: ack.unwrap_or(0),
        flags: match ack {
            Some(_) => TcpFlags::RST | TcpFlags::ACK,
            None => TcpFlags::RST,
        },
        window: 0,
    }
    .emit(&mut ip[ipv4::MIN_HEADER_LEN..], src.1, dst.1);
    buf
}

/// The capability a connection may go on along under `new`, if any: both ends keep their
/// port, MAC and address, and the consumer still holds a capability to the endpoint.
fn still_allowed(old: &Policy, new: &Policy, conn: &Conn) -> Option<CapId> {
    let [consumer, provider] = conn.ports;
    for port in [consumer, provider] {
        let (o, n) = (old.port(port)?, new.port(port)?);
        if o.mac != n.mac || o.ipv4 != n.ipv4 {
            return None;
        }
    }
    let dst = Ipv4Addr::from(conn.orig.dst);
    match conn.orig.proto {
        1 => new.echo_capability(consumer, dst),
        proto => new.capability(consumer, proto, dst, conn.orig.dport),
    }
}
