//! The gateway: the fabric's door to the host, for ingress and egress (`docs/fabric.md`).
//!
//! The gateway is a port of the fabric ([`PortId::GATEWAY`]) with the plan's gateway address
//! and MAC, behind which runs a TCP/IP stack (smoltcp, the one the guests run). Its frames go
//! through the switch like any service's: the policy gives it a capability to each published
//! or probed endpoint and nothing else, and makes it the provider of each egress capability.
//!
//! - Ingress: for each [`Published`] endpoint the gateway listens on the host address; each
//!   host connection it accepts becomes a TCP connection from the gateway's address to the
//!   guest's endpoint, and bytes are copied both ways. The guest sees the gateway as its peer.
//! - Egress, TCP: for each TCP egress capability the gateway's stack listens on the outside
//!   address:port (it accepts any destination address, smoltcp's "any IP"); a guest connection
//!   it accepts is matched with a host connection to the real address.
//! - Egress, UDP: for each UDP egress capability the gateway's stack binds the outside
//!   address:port; each guest source (address, port) gets a host UDP socket connected to the
//!   real address, whose datagrams go back to the guest from the outside address.
//! - Probes ([`GatewayHandle::probe_tcp`], [`GatewayHandle::probe_http`]): the supervisor's
//!   health checks open a TCP connection from the gateway to a published or probed
//!   ([`Plan::probe`]) endpoint, and reset it as soon as the guest completed the handshake
//!   (TCP) or answered a `GET` with its status line (HTTP). No host socket is involved: a
//!   probed endpoint that is not published stays unreachable from the host.
//!
//! Close and reset cross over: a FIN from one side is a FIN (shutdown) to the other once the
//! data before it is delivered, a reset is a reset (a host socket is closed with a zero linger).
//! The gateway runs on the fabric's own thread, as a local port of its run loop
//! ([`crate::port`]): frames between the gateway's stack and the switch are function calls, with
//! no socket or thread hand-off between them (each would cost a system call and a wake-up per
//! frame). Its host sockets are in an epoll of its own, which the run loop watches; other
//! threads reach it through a command channel and an eventfd in that epoll.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp, AnySocket};
use smoltcp::wire::{HardwareAddress, IpCidr, IpEndpoint, IpListenEndpoint};

use crate::plan::{Gateway, Plan, PlanError, PortId, Proto, Published, Subnet};
use crate::port::sys::{self, Epoll, EventFd};
use crate::port::{FabricHandle, Link, LocalId, LocalPort, RunError, RECV_BUFFER};
use crate::wire::{ethernet, EtherType, EthernetFrame, Ipv4Packet, Mac};

/// Socket buffers of each gateway connection, each way.
const BUFFER: usize = 64 * 1024;
/// Socket buffers of a probe, each way (it sends at most a short request and reads no more
/// than the status line of the answer).
const PROBE_BUFFER: usize = 1024;
/// The longest HTTP status line a probe reads (a longer one is no answer).
const STATUS_LINE_MAX: usize = 512;
/// Probes in flight at most (each holds a socket and a local port).
const MAX_PROBES: usize = 1024;
/// Listening sockets kept ready per egress capability (SYNs that find none are reset).
const SPARE_LISTENERS: usize = 16;
/// The gateway's local ports for ingress connections and probes.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;
/// How long an egress host connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// UDP egress flows (each a host socket) at most; datagrams of more flows are dropped.
const MAX_UDP_FLOWS: usize = 1024;
/// A UDP flow without a reply is forgotten after this long idle, one with replies after
/// [`UDP_IDLE_REPLIED`]: the fabric's connection tracking forgets them then too
/// ([`Timeouts`](crate::Timeouts)), after which a reply could not reach the guest anyway.
const UDP_IDLE: Duration = Duration::from_secs(30);
const UDP_IDLE_REPLIED: Duration = Duration::from_secs(120);
/// Datagrams (and bytes) queued in the stack per UDP egress capability, each way.
const UDP_PACKETS: usize = 256;
const UDP_BUFFER: usize = 256 * 1024;
/// The largest UDP payload that fits a guest's 1500-byte MTU unfragmented (the fabric drops
/// fragments).
const UDP_MAX_PAYLOAD: usize = 1500 - 20 - 8;
/// How often idle UDP flows are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Connections open through the gateway at most (ingress, egress, probes): each holds
/// two 64 KiB buffers and costs every poll of the stack a visit, so this bounds what host
/// clients of a published port can make the daemon allocate (1024 x 128 KiB = 128 MiB) and
/// how much they slow the fabric's thread. More host connections are reset at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a local port stays reserved after its connection closed cleanly, as TIME-WAIT
/// would hold it (smoltcp's own TIME-WAIT lasts as long): the connection's socket, and its
/// buffers, are freed at once; only the port waits, so that no new connection reuses the
/// same addresses and ports while segments of the old one may still be on their way.
const TIME_WAIT: Duration = Duration::from_secs(10);
/// How long a listener whose accept failed (no descriptor or memory left) is not watched.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

const WAKE: u64 = 1;
/// Host listeners' tokens start here.
const LISTENER: u64 = 2;
/// TCP connection tokens start here.
const CONN: u64 = 1 << 32;
/// UDP flow tokens start here.
const UDP_FLOW: u64 = 1 << 48;

/// The gateway's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// TCP connections open now (a host socket and a guest-side socket, or one waiting for the
    /// other), and probes not yet finished (their socket not yet gone).
    pub connections: usize,
    /// Host connections accepted on published ports.
    pub ingress_opened: u64,
    /// Host connections refused (reset at once) because [`MAX_CONNECTIONS`] were open.
    pub ingress_refused: u64,
    /// Host connections refused (reset at once) because their service was not ready
    /// ([`GatewayHandle::set_readiness`]), and connections reset when it stopped.
    pub ingress_not_ready: u64,
    /// Host connections refused (reset at once) because their source address held as many
    /// as its publication allows ([`crate::IngressLimits::per_source`]).
    pub ingress_refused_per_source: u64,
    /// Host connections reset after moving no byte for their idle timeout.
    pub ingress_idle_closed: u64,
    /// Host connections reset because the guest did not answer the handshake in time.
    pub ingress_handshake_timeouts: u64,
    /// Guest connections accepted for egress capabilities.
    pub egress_opened: u64,
    /// Egress connections whose outside address could not be reached.
    pub egress_failed: u64,
    /// Connections closed cleanly (FIN both ways).
    pub closed: u64,
    /// Resets sent to a host peer (the guest reset or refused, or a publication or egress
    /// capability was removed).
    pub resets_to_host: u64,
    /// Resets sent to a guest (the host peer reset, or a publication or egress capability was
    /// removed).
    pub resets_to_guest: u64,
    /// Packets the stack sent to an address that is no service's (dropped).
    pub tx_dropped: u64,
    /// Probes sent (those the plan allowed).
    pub probes: u64,
    /// Probes the guest answered (completed the handshake).
    pub probes_ok: u64,
    /// UDP egress flows open now (a host socket each).
    pub udp_flows: usize,
    /// UDP datagrams sent from guests to the outside.
    pub udp_out: u64,
    /// UDP datagrams from the outside delivered to guests.
    pub udp_in: u64,
    /// UDP datagrams dropped either way (too many flows, a full buffer, too large).
    pub udp_dropped: u64,
    /// Bytes of socket buffers the gateway's stack holds now: those of open connections
    /// (128 KiB each), probes, sockets still sending their reset, egress listeners and UDP
    /// egress sockets. A connection that ended holds none.
    pub buffer_bytes: usize,
    /// Local ports held after a clean close (TIME-WAIT, 10 s), with no socket or buffer.
    pub time_wait: usize,
}

/// What [`GatewayHandle::apply`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayReport {
    /// Publications now listening (`service.endpoint`, host address).
    pub listening: Vec<(String, SocketAddr)>,
    /// Publications that stopped listening.
    pub stopped: Vec<(String, SocketAddr)>,
    /// Connections reset (both ways) because their publication or egress capability went away,
    /// and UDP flows forgotten for the same reason.
    pub closed: usize,
}

/// The running gateway; dropping it stops it (its port is detached from the fabric).
///
/// It may be shared between threads (`&self` methods): probes and [`apply`](Self::apply) are
/// commands to the gateway, which the fabric's thread takes at once.
pub struct GatewayHandle {
    /// The fabric's run loop, which serves the gateway, and which attachment is this
    /// gateway's; `None` once stopped.
    fabric: Option<(Link, LocalId)>,
    wake: Arc<EventFd>,
    stats: Arc<Mutex<GatewayStats>>,
    /// Host connections refused per service (limits, readiness).
    refused: Arc<Mutex<HashMap<String, u64>>>,
    commands: mpsc::Sender<Command>,
    /// The publications in force and the host address each listens on. Held through an
    /// [`apply`](Self::apply), so that applies are serialized.
    published: Mutex<Vec<(Published, SocketAddr)>>,
    /// The gateway's address: a plan that changes it needs a new gateway.
    gateway: (Subnet, Gateway),
}

impl std::fmt::Debug for GatewayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("GatewayHandle")
            .field("published", &self.published())
            .finish_non_exhaustive()
    }
}

/// Why the gateway did not start, or a plan was not applied to it.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A published host address could not be listened on.
    #[error("cannot listen on {addr} for {endpoint}: {source}")]
    Listen {
        /// The host address.
        addr: SocketAddr,
        /// `service.endpoint`.
        endpoint: String,
        /// Why.
        source: io::Error,
    },
    /// The plan does not validate.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// The plan moves the gateway (another subnet, address or MAC): start a new gateway.
    #[error("the plan changes the gateway's address; a running gateway cannot follow")]
    Readdressed,
    /// The fabric refused the gateway's port.
    #[error("{0}")]
    Attach(#[from] RunError),
    /// The gateway has stopped (or the fabric's thread that serves it).
    #[error("the gateway has stopped")]
    Stopped,
    /// A socket or epoll could not be made.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What a handle asks of the gateway.
enum Command {
    Probe(ProbeRequest),
    Apply(Box<Reconfig>, mpsc::SyncSender<usize>),
    Readiness(String, Readiness),
}

/// Whether a service takes connections through its published ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// It runs and (if health-checked) is healthy: host connections go through.
    Ready,
    /// It runs but is not ready (starting, unhealthy): new host connections are reset at
    /// once, as are those still waiting for its handshake; established ones go on.
    NotReady,
    /// It does not run (stopped, exited, restarting): new host connections are reset at
    /// once, and so are all it had.
    Gone,
}

struct ProbeRequest {
    service: String,
    port: u16,
    /// `Some(path)`: an HTTP probe of `GET path`.
    http: Option<String>,
    timeout: Duration,
    reply: mpsc::SyncSender<Result<(), String>>,
}

/// A plan to follow, and the host listeners of its new publications (bound by the caller, so
/// that a bind error is the caller's and changes nothing).
struct Reconfig {
    plan: Plan,
    listeners: Vec<(Published, TcpListener)>,
}

const STOPPED: &str = "the gateway has stopped";

impl GatewayHandle {
    /// The host address each published endpoint (`service.endpoint`) listens on (the actual
    /// port when the plan asked for port 0), in the plan's order.
    pub fn published(&self) -> Vec<(String, SocketAddr)> {
        self.published
            .lock()
            .expect("gateway publications")
            .iter()
            .map(|(p, addr)| (endpoint_name(p), *addr))
            .collect()
    }

    /// The host address `service.endpoint` is published on (the first, if on several).
    pub fn addr_of(&self, endpoint: &str) -> Option<SocketAddr> {
        self.published
            .lock()
            .expect("gateway publications")
            .iter()
            .find(|(p, _)| endpoint_name(p) == endpoint)
            .map(|(_, a)| *a)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> GatewayStats {
        *self.stats.lock().expect("gateway stats")
    }

    /// Host connections to `service`'s published ports the gateway refused or reset for
    /// its limits ([`crate::IngressLimits`], the gateway's own) or because it was not ready.
    pub fn refused(&self, service: &str) -> u64 {
        self.refused
            .lock()
            .expect("gateway refusals")
            .get(service)
            .copied()
            .unwrap_or(0)
    }

    /// Probes `service`'s TCP port `port` from inside the fabric: the gateway opens a TCP
    /// connection from its own address to the service's, and answers `Ok` as soon as the
    /// guest completed the handshake (it then resets the connection, so that neither the
    /// gateway, the fabric's connection tracking nor the guest keeps anything of it).
    ///
    /// Errors: `"connection refused"` (the guest reset: nothing listens there), `"timed out
    /// after T"` (no answer within `timeout`: the guest is not running, not listening yet, or
    /// too busy), `"unknown service 'x'"`, and the policy's refusals: the probe may reach only
    /// a TCP endpoint the service provides, which the plan publishes or declares probed
    /// ([`Plan::probe`]); a probe is the supervisor's, it gives no guest anything.
    ///
    /// Safe to call from several threads at once, and while the gateway serves traffic.
    pub fn probe_tcp(&self, service: &str, port: u16, timeout: Duration) -> Result<(), String> {
        self.probe(service, port, None, timeout)
    }

    /// Probes `service`'s HTTP server on TCP port `port` from inside the fabric, as
    /// [`probe_tcp`](Self::probe_tcp) does, and then sends `GET path HTTP/1.1`: `Ok` once the
    /// guest answers with a 2xx or 3xx status line; the connection is then reset.
    ///
    /// Errors: those of `probe_tcp`, and `"answered \"HTTP/1.1 503 ...\""` (another status),
    /// `"no answer"` (the guest closed or reset the connection before a status line),
    /// `"not an HTTP answer: ..."`, `"timed out after T"` (no status line in time). A `path`
    /// that is not an absolute path of printable characters without spaces is refused.
    pub fn probe_http(
        &self,
        service: &str,
        port: u16,
        path: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "not an HTTP probe path: {path:?} (an absolute path such as /health)"
            ));
        }
        self.probe(service, port, Some(path.to_string()), timeout)
    }

    fn probe(
        &self,
        service: &str,
        port: u16,
        http: Option<String>,
        timeout: Duration,
    ) -> Result<(), String> {
        let (reply, answer) = mpsc::sync_channel(1);
        let request = ProbeRequest {
            service: service.into(),
            port,
            http,
            timeout,
            reply,
        };
        self.commands
            .send(Command::Probe(request))
            .map_err(|_| STOPPED.to_string())?;
        self.wake.signal();
        // The gateway answers by the deadline itself; the margin is for a busy fabric thread.
        match answer.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "the gateway did not answer within {timeout:?} and a second (the fabric's thread is busy)"
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(STOPPED.into()),
        }
    }

    /// Tells the gateway whether `service` takes connections ([`Readiness`]). Every service
    /// is ready until told otherwise. A host client of a service that is not ready is reset
    /// at once: it never hangs on a guest that is not there, and nothing it sent is
    /// delivered later to a new instance.
    pub fn set_readiness(&self, service: &str, readiness: Readiness) -> Result<(), String> {
        self.commands
            .send(Command::Readiness(service.to_string(), readiness))
            .map_err(|_| STOPPED.to_string())?;
        self.wake.signal();
        Ok(())
    }

    /// Makes the gateway follow `plan` (the plan the fabric now enforces, after
    /// [`FabricHandle::apply`]): new publications start listening (their host address is bound
    /// here: if one cannot be, nothing changes), removed ones stop listening and their
    /// connections are reset both ways; egress capabilities added start being served, those
    /// removed stop and their connections are reset (and UDP flows of a consumer that lost
    /// its grant are forgotten); probes follow the plan's. Connections of publications and
    /// egress kept go on. The plan may not move the gateway itself (its subnet, address or
    /// MAC).
    pub fn apply(&self, plan: &Plan) -> Result<GatewayReport, GatewayError> {
        plan.validate()?;
        if (plan.subnet, plan.gateway) != self.gateway {
            return Err(GatewayError::Readdressed);
        }
        let mut published = self.published.lock().expect("gateway publications");
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for p in &plan.published {
            if published.iter().any(|(q, _)| q == p) || bound.iter().any(|(q, _)| q == p) {
                continue;
            }
            let (listener, addr) = listen(p)?;
            bound.push((p.clone(), addr));
            listeners.push((p.clone(), listener));
        }
        let (reply, done) = mpsc::sync_channel(1);
        let reconfig = Reconfig {
            plan: plan.clone(),
            listeners,
        };
        self.commands
            .send(Command::Apply(Box::new(reconfig), reply))
            .map_err(|_| GatewayError::Stopped)?;
        self.wake.signal();
        let closed = done.recv().map_err(|_| GatewayError::Stopped)?;

        let mut report = GatewayReport {
            closed,
            ..GatewayReport::default()
        };
        for (p, addr) in published.iter() {
            if !plan.published.contains(p) {
                report.stopped.push((endpoint_name(p), *addr));
            }
        }
        for (p, addr) in &bound {
            report.listening.push((endpoint_name(p), *addr));
        }
        let old = std::mem::take(&mut *published);
        for p in &plan.published {
            let addr = old
                .iter()
                .chain(&bound)
                .find(|(q, _)| q == p)
                .map(|(_, a)| *a)
                .expect("kept or bound");
            if !published.iter().any(|(q, _)| q == p) {
                published.push((p.clone(), addr));
            }
        }
        Ok(report)
    }

    /// Stops the gateway: its port is detached from the fabric, its listeners closed and its
    /// connections dropped (their host sockets closed) by the time this returns.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some((fabric, id)) = self.fabric.take() {
            // An error means the fabric's thread has stopped, and the gateway with it; false,
            // that the port was detached through the fabric's handle.
            let _ = fabric.detach_local(PortId::GATEWAY, id);
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The publication a listener serves, for messages.
fn publication_of(listeners: &HashMap<u64, Listener>, token: u64) -> String {
    listeners
        .get(&token)
        .map_or_else(|| "?".into(), |l| endpoint_name(&l.publication))
}

fn endpoint_name(p: &Published) -> String {
    format!("{}.{}", p.service, p.endpoint)
}

/// A non-blocking host listener for `p`, and the address it got.
fn listen(p: &Published) -> Result<(TcpListener, SocketAddr), GatewayError> {
    let listen_err = |source| GatewayError::Listen {
        addr: p.host,
        endpoint: endpoint_name(p),
        source,
    };
    let listener = TcpListener::bind(p.host).map_err(listen_err)?;
    listener.set_nonblocking(true).map_err(listen_err)?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Starts the gateway of `plan` (the plan `fabric` enforces: its published and probed
/// endpoints and egress capabilities) and attaches it to the fabric as [`PortId::GATEWAY`].
pub fn spawn(plan: &Plan, fabric: &FabricHandle) -> Result<GatewayHandle, GatewayError> {
    plan.validate()?;
    let mut listeners = Vec::new();
    let mut published = Vec::new();
    for p in &plan.published {
        let (listener, addr) = listen(p)?;
        published.push((p.clone(), addr));
        listeners.push((p.clone(), listener));
    }

    let epoll = Epoll::new()?;
    let wake = Arc::new(EventFd::new()?);
    epoll.add(wake.raw(), WAKE, libc::EPOLLIN as u32)?;
    let (commands, incoming) = mpsc::channel();
    let stats = Arc::new(Mutex::new(GatewayStats::default()));
    let mut gw = Gw::new(plan, epoll, wake.clone(), incoming, stats.clone());
    gw.reconfigure(plan.clone(), listeners);
    gw.publish_stats();
    let refused = gw.refused_out.clone();
    let id = fabric.attach_local(PortId::GATEWAY, Box::new(gw))?;
    Ok(GatewayHandle {
        fabric: Some((fabric.link(), id)),
        wake,
        stats,
        refused,
        commands,
        published: Mutex::new(published),
        gateway: (plan.subnet, plan.gateway),
    })
}

/// The smoltcp device: IP packets in the frames the switch delivers, IP packets to send to it
/// as frames.
///
/// The stack runs on an IP medium and does no ARP: the gateway knows its peers' MACs from the
/// plan (the fabric answers ARP with the same), and frames it for them itself. smoltcp's ARP
/// cache holds 8 neighbors and sends at most one request a second for all of them, which would
/// stall a first connection (an ingress one, a probe) for up to a second.
struct Frames {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    /// The gateway's MAC, and each service's by address.
    mac: Mac,
    macs: HashMap<Ipv4Addr, Mac>,
    /// Packets for an address that is no service's.
    unroutable: u64,
}

struct Rx(Vec<u8>);
struct Tx<'a> {
    tx: &'a mut Vec<Vec<u8>>,
    mac: Mac,
    macs: &'a HashMap<Ipv4Addr, Mac>,
    unroutable: &'a mut u64,
}

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0[ethernet::HEADER_LEN..])
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; ethernet::HEADER_LEN + len];
        let r = f(&mut frame[ethernet::HEADER_LEN..]);
        let dst = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..])
            .ok()
            .and_then(|ip| self.macs.get(&ip.dst()).copied());
        match dst {
            Some(dst) => {
                let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
                eth.set_dst(dst);
                eth.set_src(self.mac);
                eth.set_ethertype(EtherType::Ipv4);
                self.tx.push(frame);
            }
            None => *self.unroutable += 1,
        }
        r
    }
}

impl Device for Frames {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(
        &mut self,
        _: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        let tx = Tx {
            tx: &mut self.tx,
            mac: self.mac,
            macs: &self.macs,
            unroutable: &mut self.unroutable,
        };
        Some((Rx(frame), tx))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(Tx {
            tx: &mut self.tx,
            mac: self.mac,
            macs: &self.macs,
            unroutable: &mut self.unroutable,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// Where a connection came from: what removing it from the plan closes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Accepted on the host listener with this token.
    Ingress(u64),
    /// Accepted for the TCP egress capability to this address.
    Egress(SocketAddrV4),
}

/// One forwarded connection.
struct Conn {
    socket: SocketHandle,
    /// The host side; `None` while an egress connection's host side is being opened.
    stream: Option<TcpStream>,
    /// The host socket may have bytes to read / room to write (edge-triggered epoll).
    readable: bool,
    writable: bool,
    /// The host side sent FIN (and the guest side was closed for sending).
    host_eof: bool,
    /// The guest side sent FIN, relayed to the host as a shutdown.
    host_shut: bool,
    /// The local port it holds (ingress), freed when its socket goes.
    local_port: Option<u16>,
    origin: Origin,
    /// The host peer's address (ingress): its connections are counted per source.
    source: Option<IpAddr>,
    /// When it was opened, and when a byte last moved either way.
    opened: Instant,
    active: Instant,
}

/// A published endpoint's host listener.
struct Listener {
    publication: Published,
    listener: TcpListener,
    /// The guest endpoint (the provider's address may change with the plan).
    target: SocketAddrV4,
}

/// A TCP egress capability's outside address and the stack's listening sockets for it.
struct TcpEgress {
    addr: SocketAddrV4,
    listening: Vec<SocketHandle>,
}

/// A UDP egress capability's outside address and the stack's socket bound to it.
struct UdpEgress {
    addr: SocketAddrV4,
    socket: SocketHandle,
}

/// One guest source's datagrams to one UDP egress address, through a host socket.
struct UdpFlow {
    host: UdpSocket,
    guest: SocketAddrV4,
    egress: SocketAddrV4,
    last: Instant,
    replied: bool,
}

/// A probe in flight: answered once the guest answers (or not), then kept until its reset is
/// sent.
struct Probe {
    socket: SocketHandle,
    /// An HTTP probe's request still to send and the answer read so far.
    http: Option<HttpProbe>,
    local_port: u16,
    timeout: Duration,
    deadline: Instant,
    /// `None` once answered.
    reply: Option<mpsc::SyncSender<Result<(), String>>>,
    /// When to forget the socket even if its reset could not be sent.
    forget_at: Instant,
}

/// What an HTTP probe sends and has read.
struct HttpProbe {
    request: Vec<u8>,
    sent: usize,
    /// The answer's first bytes, up to its status line's end.
    head: Vec<u8>,
}

impl HttpProbe {
    fn new(path: &str) -> HttpProbe {
        let request = format!("GET {path} HTTP/1.1\r\nHost: sturdy\r\nConnection: close\r\n\r\n");
        HttpProbe {
            request: request.into_bytes(),
            sent: 0,
            head: Vec::new(),
        }
    }

    /// Sends what is left of the request and reads the answer's status line: `Some` once it
    /// is decided (the connection is established when this is called). Sets `sent` when it sent something (the stack must run again to send it out).
    fn advance(&mut self, socket: &mut tcp::Socket, sent: &mut bool) -> Option<Result<(), String>> {
        if self.sent < self.request.len() && socket.can_send() {
            let n = socket.send_slice(&self.request[self.sent..]).unwrap_or(0);
            self.sent += n;
            *sent |= n > 0;
        }
        while socket.can_recv() && !self.head.contains(&b'\n') {
            let room = STATUS_LINE_MAX - self.head.len();
            let head = &mut self.head;
            let _ = socket.recv(|data| {
                let n = data.len().min(room);
                head.extend_from_slice(&data[..n]);
                (n, ())
            });
            if self.head.len() >= STATUS_LINE_MAX {
                break;
            }
        }
        let ended = !socket.may_recv();
        if self.head.contains(&b'\n') || self.head.len() >= STATUS_LINE_MAX || ended {
            return Some(http_status(&self.head));
        }
        None
    }
}

/// Whether an answer's first bytes are a 2xx or 3xx status line, and if not, why.
fn http_status(head: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or("").trim();
    let code = line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(code) if (200..400).contains(&code) => Ok(()),
        Some(_) => Err(format!("answered {line:?}")),
        None if line.is_empty() => Err("no answer".into()),
        None => Err(format!("not an HTTP answer: {line:?}")),
    }
}

/// An egress connection's host side, opened (or not) on another thread.
type Connected = (u64, io::Result<TcpStream>);

struct Gw {
    iface: Interface,
    device: Frames,
    sockets: SocketSet<'static>,
    /// The host sockets' and the wake-up's events; the fabric's run loop watches it.
    epoll: Epoll,
    /// The events of one run (a bounded batch: those left are reported again).
    events: Vec<(u64, u32)>,
    wake: Arc<EventFd>,
    commands: mpsc::Receiver<Command>,
    /// The plan followed: what probes may reach.
    plan: Plan,
    listeners: HashMap<u64, Listener>,
    next_listener: u64,
    /// Listeners not watched until then (their accept failed).
    paused: Vec<(u64, Instant)>,
    /// When a refused host connection was last logged (at most one line a second).
    refusal_logged: Option<Instant>,
    egress: Vec<TcpEgress>,
    udp: Vec<UdpEgress>,
    conns: HashMap<u64, Conn>,
    next_token: u64,
    udp_flows: HashMap<u64, UdpFlow>,
    /// By (guest source, egress address).
    udp_index: HashMap<(SocketAddrV4, SocketAddrV4), u64>,
    next_udp: u64,
    udp_buf: Vec<u8>,
    next_sweep: Instant,
    probes: Vec<Probe>,
    /// Services not ready for host connections, and whether they are gone.
    not_ready: HashMap<String, Readiness>,
    /// Open ingress connections per listener and source address.
    per_source: HashMap<(u64, IpAddr), u32>,
    /// Host connections refused (limits, readiness) per service, and whether that changed
    /// since it was last published.
    refused: HashMap<String, u64>,
    refused_changed: bool,
    refused_out: Arc<Mutex<HashMap<String, u64>>>,
    /// Sockets closing after their connection ended (sending their reset), and the port
    /// they hold.
    draining: Vec<(SocketHandle, Option<u16>)>,
    /// Local ports of connections that closed cleanly, held until then ([`TIME_WAIT`]).
    time_wait: VecDeque<(u16, Instant)>,
    ports_in_use: HashSet<u16>,
    next_port: u16,
    connected: (mpsc::Sender<Connected>, mpsc::Receiver<Connected>),
    start: Instant,
    stats: GatewayStats,
    stats_out: Arc<Mutex<GatewayStats>>,
}

fn tcp_socket(buffer: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; buffer]),
        tcp::SocketBuffer::new(vec![0; buffer]),
    );
    s.set_nagle_enabled(false);
    s
}

fn udp_socket() -> udp::Socket<'static> {
    let buffer = || {
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            vec![0; UDP_BUFFER],
        )
    };
    udp::Socket::new(buffer(), buffer())
}

/// The guest endpoint a publication forwards to under `plan`.
fn target_of(plan: &Plan, p: &Published) -> SocketAddrV4 {
    let (provider, ep) = plan.resolve(&p.capability()).expect("a validated plan");
    SocketAddrV4::new(provider.ipv4, ep.port)
}

/// The distinct outside addresses of `plan`'s egress capabilities over `proto`.
fn egress_addrs(plan: &Plan, proto: Proto) -> Vec<SocketAddrV4> {
    let mut addrs = Vec::new();
    for e in plan.egress.iter().filter(|e| e.proto == proto) {
        let a = SocketAddrV4::new(e.addr, e.port);
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    addrs
}

impl Gw {
    fn new(
        plan: &Plan,
        epoll: Epoll,
        wake: Arc<EventFd>,
        commands: mpsc::Receiver<Command>,
        stats_out: Arc<Mutex<GatewayStats>>,
    ) -> Gw {
        let mut device = Frames {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mac: plan.gateway.mac,
            macs: HashMap::new(),
            unroutable: 0,
        };
        let config = IfaceConfig::new(HardwareAddress::Ip);
        let start = Instant::now();
        let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
        let gw_ip = plan.gateway.ipv4;
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(gw_ip.into(), plan.subnet.prefix_len()))
                .expect("one address");
        });
        // Egress: accept segments and datagrams for any (outside) address.
        iface.set_any_ip(true);
        let _ = iface.routes_mut().add_default_ipv4_route(gw_ip);
        Gw {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            epoll,
            events: Vec::new(),
            wake,
            commands,
            plan: Plan::new(plan.subnet),
            listeners: HashMap::new(),
            next_listener: LISTENER,
            paused: Vec::new(),
            refusal_logged: None,
            egress: Vec::new(),
            udp: Vec::new(),
            conns: HashMap::new(),
            next_token: CONN,
            udp_flows: HashMap::new(),
            udp_index: HashMap::new(),
            next_udp: UDP_FLOW,
            udp_buf: vec![0; 1 << 16],
            next_sweep: start + SWEEP_EVERY,
            probes: Vec::new(),
            not_ready: HashMap::new(),
            per_source: HashMap::new(),
            refused: HashMap::new(),
            refused_changed: false,
            refused_out: Arc::new(Mutex::new(HashMap::new())),
            draining: Vec::new(),
            time_wait: VecDeque::new(),
            ports_in_use: Default::default(),
            next_port: *EPHEMERAL.start(),
            connected: mpsc::channel(),
            start,
            stats: GatewayStats::default(),
            stats_out,
        }
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    /// Handles the host sockets' and the handles' events that are ready.
    fn handle_events(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        if let Err(e) = self.epoll.wait(&mut events, 0) {
            tracing::warn!(target: "sturdy_fabric::gateway", "epoll_wait: {e}");
        }
        for &(token, flags) in &events {
            match token {
                WAKE => {
                    self.wake.drain();
                    self.connected();
                    self.commands();
                }
                t if t < CONN => self.accept(t),
                t if t >= UDP_FLOW => self.udp_in(t),
                t => {
                    if let Some(c) = self.conns.get_mut(&t) {
                        let err = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
                        if flags & (libc::EPOLLIN as u32 | err) != 0 {
                            c.readable = true;
                        }
                        if flags & (libc::EPOLLOUT as u32 | err) != 0 {
                            c.writable = true;
                        }
                    }
                }
            }
        }
        self.events = events;
    }

    /// How long to wait for events when nothing is moving: until the stack's next timer, the
    /// next probe deadline or sweep, and at most a second.
    fn idle_delay(&mut self) -> Duration {
        let now = Instant::now();
        // Microseconds, not milliseconds: the run loop rounds the wait up, and a delay cut
        // to 0 ms would have it spin until the timer is due.
        let mut delay = self
            .iface
            .poll_delay(self.now(), &self.sockets)
            .map_or(Duration::from_secs(1), |d| {
                Duration::from_micros(d.total_micros())
            });
        for p in self.probes.iter().filter(|p| p.reply.is_some()) {
            delay = delay.min(p.deadline.saturating_duration_since(now));
        }
        for &(_, until) in &self.paused {
            delay = delay.min(until.saturating_duration_since(now));
        }
        delay
            .min(self.next_sweep.saturating_duration_since(now))
            .min(Duration::from_secs(1))
    }

    fn publish_stats(&mut self) {
        self.stats.connections = self.conns.len() + self.probes.len();
        self.stats.udp_flows = self.udp_flows.len();
        self.stats.buffer_bytes = self
            .sockets
            .iter()
            .map(|(_, s)| {
                if let Some(t) = tcp::Socket::downcast(s) {
                    t.recv_capacity() + t.send_capacity()
                } else if let Some(u) = udp::Socket::downcast(s) {
                    u.payload_recv_capacity() + u.payload_send_capacity()
                } else {
                    0
                }
            })
            .sum();
        self.stats.time_wait = self.time_wait.len();
        *self.stats_out.lock().expect("gateway stats") = self.stats;
        if std::mem::take(&mut self.refused_changed) {
            self.refused_out
                .lock()
                .expect("gateway refusals")
                .clone_from(&self.refused);
        }
    }

    /// Watches again the paused listeners whose pause is over (those still published).
    fn resume_listeners(&mut self, now: Instant) {
        let (due, waiting) = std::mem::take(&mut self.paused)
            .into_iter()
            .partition(|&(_, until)| now >= until);
        self.paused = waiting;
        for (token, _) in due {
            if let Some(l) = self.listeners.get(&token) {
                let fd = l.listener.as_raw_fd();
                if let Err(e) = self.epoll.add(fd, token, libc::EPOLLIN as u32) {
                    tracing::warn!(target: "sturdy_fabric::gateway", "cannot watch {}: {e}", l.publication);
                }
            }
        }
    }

    /// Handles the handles' commands.
    fn commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Probe(request) => self.start_probe(request),
                Command::Readiness(service, readiness) => self.set_readiness(service, readiness),
                Command::Apply(reconfig, reply) => {
                    let Reconfig { plan, listeners } = *reconfig;
                    let closed = self.reconfigure(plan, listeners);
                    // The counters show the change by the time `apply` returns.
                    self.publish_stats();
                    let _ = reply.try_send(closed);
                }
            }
        }
    }

    /// Follows `plan`; `listeners` are its publications that have none yet. Returns how many
    /// connections (and UDP flows) were closed.
    fn reconfigure(&mut self, plan: Plan, listeners: Vec<(Published, TcpListener)>) -> usize {
        let mut closed = 0;
        // Publications that went away: no more listening, their connections reset.
        let gone: Vec<u64> = self
            .listeners
            .iter()
            .filter(|(_, l)| !plan.published.contains(&l.publication))
            .map(|(t, _)| *t)
            .collect();
        for token in gone {
            let l = self.listeners.remove(&token).expect("listed");
            let _ = self.epoll.delete(l.listener.as_raw_fd());
            closed += self.close_from(Origin::Ingress(token));
        }
        // Those kept forward to wherever the plan now puts their endpoint.
        for l in self.listeners.values_mut() {
            l.target = target_of(&plan, &l.publication);
        }
        for (publication, listener) in listeners {
            let token = self.next_listener;
            self.next_listener += 1;
            if let Err(e) = self
                .epoll
                .add(listener.as_raw_fd(), token, libc::EPOLLIN as u32)
            {
                tracing::warn!(target: "sturdy_fabric::gateway", "cannot watch {}: {e}", publication);
                continue;
            }
            let target = target_of(&plan, &publication);
            self.listeners.insert(
                token,
                Listener {
                    publication,
                    listener,
                    target,
                },
            );
        }

        // TCP egress: addresses that went away stop being listened on (their connections
        // reset); new ones get listening sockets on the next round (`replenish`).
        let tcp_addrs = egress_addrs(&plan, Proto::Tcp);
        let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.egress)
            .into_iter()
            .partition(|e| tcp_addrs.contains(&e.addr));
        self.egress = keep;
        for e in gone {
            for handle in e.listening {
                self.sockets.get_mut::<tcp::Socket>(handle).abort();
                self.draining.push((handle, None));
            }
            closed += self.close_from(Origin::Egress(e.addr));
        }
        for addr in tcp_addrs {
            if !self.egress.iter().any(|e| e.addr == addr) {
                self.egress.push(TcpEgress {
                    addr,
                    listening: Vec::new(),
                });
            }
        }

        // UDP egress: a socket bound to each outside address; flows whose address went away,
        // or whose guest lost its grant, are forgotten.
        let udp_addrs = egress_addrs(&plan, Proto::Udp);
        let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.udp)
            .into_iter()
            .partition(|e| udp_addrs.contains(&e.addr));
        self.udp = keep;
        for e in gone {
            self.sockets.remove(e.socket);
        }
        for addr in udp_addrs {
            if self.udp.iter().any(|e| e.addr == addr) {
                continue;
            }
            let mut socket = udp_socket();
            let ep = IpListenEndpoint {
                addr: Some((*addr.ip()).into()),
                port: addr.port(),
            };
            match socket.bind(ep) {
                Ok(()) => {
                    let socket = self.sockets.add(socket);
                    self.udp.push(UdpEgress { addr, socket });
                }
                Err(e) => {
                    tracing::warn!(target: "sturdy_fabric::gateway", "cannot serve UDP egress {addr}: {e}")
                }
            }
        }
        let granted = |guest: &SocketAddrV4, egress: &SocketAddrV4| {
            plan.egress.iter().any(|e| {
                e.proto == Proto::Udp
                    && SocketAddrV4::new(e.addr, e.port) == *egress
                    && plan
                        .service(&e.consumer)
                        .is_some_and(|s| s.ipv4 == *guest.ip())
            })
        };
        let stale: Vec<u64> = self
            .udp_flows
            .iter()
            .filter(|(_, f)| !granted(&f.guest, &f.egress))
            .map(|(t, _)| *t)
            .collect();
        for token in stale {
            self.forget_flow(token);
            closed += 1;
        }

        self.device.macs = plan.services.iter().map(|s| (s.ipv4, s.mac)).collect();
        self.plan = plan;
        closed
    }

    /// Resets, both ways, the connections that came from `origin`; returns how many.
    /// Follows a service's readiness: resets its host connections that may not go on.
    fn set_readiness(&mut self, service: String, readiness: Readiness) {
        let tokens: Vec<u64> = self
            .listeners
            .iter()
            .filter(|(_, l)| l.publication.service == service)
            .map(|(t, _)| *t)
            .collect();
        if readiness != Readiness::Ready {
            let sockets = &self.sockets;
            let doomed: Vec<u64> = self
                .conns
                .iter()
                .filter(|(_, c)| match c.origin {
                    Origin::Ingress(t) => tokens.contains(&t),
                    Origin::Egress(_) => false,
                })
                .filter(|(_, c)| {
                    readiness == Readiness::Gone
                        || sockets.get::<tcp::Socket>(c.socket).state() == tcp::State::SynSent
                })
                .map(|(t, _)| *t)
                .collect();
            self.stats.ingress_not_ready += doomed.len() as u64;
            for token in doomed {
                self.reset(token);
                self.count_refused(&service);
            }
        }
        match readiness {
            Readiness::Ready => self.not_ready.remove(&service),
            other => self.not_ready.insert(service, other),
        };
    }

    /// Resets a host connection to `service` the gateway will not take, and says `why` in the
    /// log (at most once a second: a flood of them must not flood the log).
    fn refuse(&mut self, stream: TcpStream, service: &str, why: &str) {
        sys::set_linger_zero(stream.as_raw_fd());
        drop(stream);
        self.count_refused(service);
        let now = Instant::now();
        if self.refusal_logged.is_none_or(|at| now >= at + SWEEP_EVERY) {
            self.refusal_logged = Some(now);
            tracing::warn!(target: "sturdy_fabric::gateway", "{why}: connection reset");
        }
    }

    /// Counts a host connection to `service` refused or reset by the gateway.
    fn count_refused(&mut self, service: &str) {
        *self.refused.entry(service.to_string()).or_insert(0) += 1;
        self.refused_changed = true;
    }

    /// Removes connection `token` from the table (and its source's count).
    fn forget(&mut self, token: u64) -> Option<Conn> {
        let c = self.conns.remove(&token)?;
        if let (Origin::Ingress(listener), Some(source)) = (c.origin, c.source) {
            if let Some(n) = self.per_source.get_mut(&(listener, source)) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&(listener, source));
                }
            }
        }
        Some(c)
    }

    /// Resets connection `token` both ways and forgets it.
    fn reset(&mut self, token: u64) {
        let Some(c) = self.forget(token) else {
            return;
        };
        self.sockets.get_mut::<tcp::Socket>(c.socket).abort();
        self.stats.resets_to_guest += 1;
        if let Some(s) = &c.stream {
            let _ = self.epoll.delete(s.as_raw_fd());
            sys::set_linger_zero(s.as_raw_fd());
            self.stats.resets_to_host += 1;
        }
        self.draining.push((c.socket, c.local_port));
    }

    fn close_from(&mut self, origin: Origin) -> usize {
        let tokens: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.origin == origin)
            .map(|(t, _)| *t)
            .collect();
        for &token in &tokens {
            self.reset(token);
        }
        tokens.len()
    }

    /// Accepts the host connections waiting on the listener `token`.
    fn accept(&mut self, token: u64) {
        loop {
            let Some(l) = self.listeners.get(&token) else {
                return;
            };
            let (stream, peer) = match l.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors or memory: the listener stays readable, so it is not
                    // watched for a while (its connections wait in the backlog) rather than
                    // spun on.
                    tracing::warn!(
                        target: "sturdy_fabric::gateway",
                        "accept on {} failed: {e}; trying again in {} ms",
                        l.publication, ACCEPT_PAUSE.as_millis()
                    );
                    let _ = self.epoll.delete(l.listener.as_raw_fd());
                    self.paused.push((token, Instant::now() + ACCEPT_PAUSE));
                    return;
                }
            };
            let target = l.target;
            let service = l.publication.service.clone();
            let limits = self.plan.ingress_limits(l.publication.host);
            let source = peer.ip();
            if self.not_ready.contains_key(&service) {
                // Reset at once: the client must not wait for a guest that is not there, nor
                // have what it sends delivered to a later instance.
                sys::set_linger_zero(stream.as_raw_fd());
                drop(stream);
                self.stats.ingress_not_ready += 1;
                self.count_refused(&service);
                continue;
            }
            let held = self.per_source.get(&(token, source)).copied().unwrap_or(0);
            if held >= limits.per_source {
                // One address may not take the whole connection budget (a flood of idle
                // connections would starve every other client).
                self.stats.ingress_refused_per_source += 1;
                let why = format!(
                    "{source} holds {held} connections to {}, its limit ({} refused so far)",
                    publication_of(&self.listeners, token),
                    self.stats.ingress_refused_per_source
                );
                self.refuse(stream, &service, &why);
                continue;
            }
            // Probes have their own budget (MAX_PROBES): they never take a client's place,
            // nor clients theirs.
            if self.conns.len() >= MAX_CONNECTIONS {
                self.stats.ingress_refused += 1;
                let why = format!(
                    "{MAX_CONNECTIONS} connections open: host connection from {peer} to {} \
                     ({} refused so far)",
                    publication_of(&self.listeners, token),
                    self.stats.ingress_refused
                );
                self.refuse(stream, &service, &why);
                continue;
            }
            let Some(local) = self.ephemeral() else {
                tracing::warn!(target: "sturdy_fabric::gateway", "no local port left for {peer}");
                continue;
            };
            let mut socket = tcp_socket(BUFFER);
            let remote = IpEndpoint::new((*target.ip()).into(), target.port());
            if let Err(e) = socket.connect(self.iface.context(), remote, local) {
                tracing::warn!(target: "sturdy_fabric::gateway", "connect to {target}: {e}");
                self.ports_in_use.remove(&local);
                continue;
            }
            let handle = self.sockets.add(socket);
            self.stats.ingress_opened += 1;
            *self.per_source.entry((token, source)).or_insert(0) += 1;
            let conn = self.add_conn(handle, Some(stream), Some(local), Origin::Ingress(token));
            self.conns.get_mut(&conn).expect("added").source = Some(source);
        }
    }

    fn add_conn(
        &mut self,
        socket: SocketHandle,
        stream: Option<TcpStream>,
        port: Option<u16>,
        origin: Origin,
    ) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        if let Some(s) = &stream {
            self.watch(token, s);
        }
        let now = Instant::now();
        self.conns.insert(
            token,
            Conn {
                socket,
                stream,
                readable: true,
                writable: true,
                host_eof: false,
                host_shut: false,
                local_port: port,
                origin,
                source: None,
                opened: now,
                active: now,
            },
        );
        token
    }

    fn watch(&self, token: u64, stream: &TcpStream) {
        let _ = stream.set_nonblocking(true);
        let _ = stream.set_nodelay(true);
        let events = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        if let Err(e) = self.epoll.add(stream.as_raw_fd(), token, events as u32) {
            tracing::warn!(target: "sturdy_fabric::gateway", "cannot watch a host socket: {e}");
        }
    }

    fn ephemeral(&mut self) -> Option<u16> {
        let span = usize::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
        for _ in 0..span {
            let p = self.next_port;
            self.next_port = if p == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                p + 1
            };
            if self.ports_in_use.insert(p) {
                return Some(p);
            }
        }
        None
    }

    /// Starts a probe, or answers at once why not.
    fn start_probe(&mut self, request: ProbeRequest) {
        let ProbeRequest {
            service,
            port,
            http,
            timeout,
            reply,
        } = request;
        let target = match self.probe_target(&service, port) {
            Ok(t) => t,
            Err(e) => {
                let _ = reply.try_send(Err(e));
                return;
            }
        };
        if self.probes.len() >= MAX_PROBES {
            let _ = reply.try_send(Err("too many probes in flight".into()));
            return;
        }
        let Some(local) = self.ephemeral() else {
            let _ = reply.try_send(Err("the gateway has no local port left".into()));
            return;
        };
        let mut socket = tcp_socket(PROBE_BUFFER);
        let remote = IpEndpoint::new((*target.ip()).into(), target.port());
        if let Err(e) = socket.connect(self.iface.context(), remote, local) {
            self.ports_in_use.remove(&local);
            let _ = reply.try_send(Err(format!("cannot connect to {target}: {e}")));
            return;
        }
        let socket = self.sockets.add(socket);
        self.stats.probes += 1;
        let now = Instant::now();
        self.probes.push(Probe {
            socket,
            http: http.as_deref().map(HttpProbe::new),
            local_port: local,
            timeout,
            deadline: now + timeout,
            reply: Some(reply),
            forget_at: now + timeout + Duration::from_secs(1),
        });
    }

    /// The guest endpoint a probe of `service:port` goes to, if the plan lets the gateway
    /// reach it: a TCP endpoint the service provides, published or declared probed.
    fn probe_target(&self, service: &str, port: u16) -> Result<SocketAddrV4, String> {
        let s = self
            .plan
            .service(service)
            .ok_or_else(|| format!("unknown service '{service}'"))?;
        let ep = s
            .provides
            .iter()
            .find(|e| e.port == port && e.proto == Proto::Tcp)
            .ok_or_else(|| {
                format!(
                    "refused by policy: service '{service}' provides no TCP endpoint on port {port}"
                )
            })?;
        if !self.plan.gateway_reaches(service, &ep.name) {
            return Err(format!(
                "refused by policy: {service}.{} is neither published nor declared for probes",
                ep.name
            ));
        }
        Ok(SocketAddrV4::new(s.ipv4, port))
    }

    /// Answers the probes whose guest answered or whose time is up, and forgets the sockets
    /// of those answered once their reset is sent; returns whether anything changed.
    fn check_probes(&mut self) -> bool {
        let now = Instant::now();
        let mut changed = false;
        let sockets = &mut self.sockets;
        let stats = &mut self.stats;
        let ports = &mut self.ports_in_use;
        self.probes.retain_mut(|p| {
            let socket = sockets.get_mut::<tcp::Socket>(p.socket);
            if let Some(reply) = &p.reply {
                let answer = match (socket.state(), &mut p.http) {
                    (tcp::State::SynSent, _) if now >= p.deadline => {
                        Some(Err(format!("timed out after {:?}", p.timeout)))
                    }
                    (tcp::State::SynSent, _) => None,
                    // A reset in SYN-SENT (RFC 9293 3.10.7.3): nothing listens there.
                    (tcp::State::Closed, None) => Some(Err("connection refused".to_string())),
                    (tcp::State::Closed, Some(h)) if h.sent == 0 => {
                        Some(Err("connection refused".to_string()))
                    }
                    // SYN-ACK received: the guest completed the handshake.
                    (_, None) => Some(Ok(())),
                    (_, Some(http)) => match http.advance(socket, &mut changed) {
                        None if now >= p.deadline => {
                            Some(Err(format!("timed out after {:?}", p.timeout)))
                        }
                        answer => answer,
                    },
                };
                if answer == Some(Ok(())) {
                    stats.probes_ok += 1;
                }
                if let Some(answer) = answer {
                    let _ = reply.try_send(answer);
                    p.reply = None;
                    p.forget_at = now + Duration::from_secs(1);
                    // A reset leaves nothing behind: no TIME-WAIT here, and the fabric forgets
                    // the connection as the reset goes through.
                    socket.abort();
                    changed = true;
                }
                return true;
            }
            // Aborted: gone once the reset is out (smoltcp then forgets the peer).
            let sent = socket.state() == tcp::State::Closed && socket.remote_endpoint().is_none();
            if sent || now >= p.forget_at {
                sockets.remove(p.socket);
                ports.remove(&p.local_port);
                changed = true;
                return false;
            }
            true
        });
        changed
    }

    /// Keeps listening sockets ready for each TCP egress capability; those that got a
    /// connection become gateway connections whose host side is opened on another thread.
    fn replenish(&mut self) {
        for i in 0..self.egress.len() {
            let addr = self.egress[i].addr;
            let mut keep = Vec::new();
            for handle in std::mem::take(&mut self.egress[i].listening) {
                let state = self.sockets.get::<tcp::Socket>(handle).state();
                match state {
                    tcp::State::Listen | tcp::State::SynReceived => keep.push(handle),
                    tcp::State::Closed => {
                        self.sockets.remove(handle);
                    }
                    _ => {
                        self.stats.egress_opened += 1;
                        let token = self.next_token;
                        self.add_conn(handle, None, None, Origin::Egress(addr));
                        let tx = self.connected.0.clone();
                        let wake = self.wake.clone();
                        std::thread::spawn(move || {
                            let r = TcpStream::connect_timeout(&addr.into(), CONNECT_TIMEOUT);
                            let _ = tx.send((token, r));
                            wake.signal();
                        });
                    }
                }
            }
            let listening = keep
                .iter()
                .filter(|h| self.sockets.get::<tcp::Socket>(**h).state() == tcp::State::Listen)
                .count();
            for _ in listening..SPARE_LISTENERS {
                let mut socket = tcp_socket(BUFFER);
                let ep = IpListenEndpoint {
                    addr: Some((*addr.ip()).into()),
                    port: addr.port(),
                };
                if socket.listen(ep).is_ok() {
                    keep.push(self.sockets.add(socket));
                }
            }
            self.egress[i].listening = keep;
        }
    }

    /// Egress host connections that opened (or failed).
    fn connected(&mut self) {
        while let Ok((token, result)) = self.connected.1.try_recv() {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            match result {
                Ok(stream) => {
                    let _ = stream.set_nonblocking(true);
                    let _ = stream.set_nodelay(true);
                    let events = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
                    let _ = self.epoll.add(stream.as_raw_fd(), token, events as u32);
                    conn.stream = Some(stream);
                    conn.readable = true;
                    conn.writable = true;
                }
                Err(e) => {
                    tracing::info!(target: "sturdy_fabric::gateway", "egress connection failed: {e}");
                    self.stats.egress_failed += 1;
                    self.stats.resets_to_guest += 1;
                    self.sockets.get_mut::<tcp::Socket>(conn.socket).abort();
                }
            }
        }
    }

    /// Datagrams guests sent to UDP egress addresses, each to its flow's host socket (made on
    /// the first); returns whether any moved.
    fn udp_out(&mut self) -> bool {
        let mut moved = false;
        let mut datagrams = Vec::new();
        for i in 0..self.udp.len() {
            let (egress, handle) = (self.udp[i].addr, self.udp[i].socket);
            let socket = self.sockets.get_mut::<udp::Socket>(handle);
            while let Ok((data, meta)) = socket.recv() {
                let IpAddr::V4(ip) = IpAddr::from(meta.endpoint.addr) else {
                    continue;
                };
                datagrams.push((SocketAddrV4::new(ip, meta.endpoint.port), data.to_vec()));
            }
            for (guest, data) in datagrams.drain(..) {
                moved = true;
                let Some(token) = self.udp_flow(guest, egress) else {
                    self.stats.udp_dropped += 1;
                    continue;
                };
                let flow = self.udp_flows.get_mut(&token).expect("just found");
                flow.last = Instant::now();
                match flow.host.send(&data) {
                    Ok(_) => self.stats.udp_out += 1,
                    // A full socket buffer, or an ICMP error from an earlier datagram: UDP
                    // may lose datagrams.
                    Err(_) => self.stats.udp_dropped += 1,
                }
            }
        }
        moved
    }

    /// The flow of `guest`'s datagrams to `egress`, made if new (and there is room).
    fn udp_flow(&mut self, guest: SocketAddrV4, egress: SocketAddrV4) -> Option<u64> {
        if let Some(t) = self.udp_index.get(&(guest, egress)) {
            return Some(*t);
        }
        if self.udp_flows.len() >= MAX_UDP_FLOWS {
            tracing::warn!(target: "sturdy_fabric::gateway", "too many UDP egress flows: dropping {guest} -> {egress}");
            return None;
        }
        let open = || -> io::Result<UdpSocket> {
            let host = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
            // Connected: only the outside address's datagrams are taken as replies.
            host.connect(egress)?;
            host.set_nonblocking(true)?;
            Ok(host)
        };
        let host = match open() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(target: "sturdy_fabric::gateway", "UDP egress to {egress}: {e}");
                return None;
            }
        };
        let token = self.next_udp;
        self.next_udp += 1;
        if let Err(e) = self
            .epoll
            .add(host.as_raw_fd(), token, libc::EPOLLIN as u32)
        {
            tracing::warn!(target: "sturdy_fabric::gateway", "cannot watch a UDP socket: {e}");
            return None;
        }
        self.udp_flows.insert(
            token,
            UdpFlow {
                host,
                guest,
                egress,
                last: Instant::now(),
                replied: false,
            },
        );
        self.udp_index.insert((guest, egress), token);
        Some(token)
    }

    /// Datagrams from the outside on flow `token`, to its guest from the egress address.
    fn udp_in(&mut self, token: u64) {
        let Some(flow) = self.udp_flows.get_mut(&token) else {
            return;
        };
        let Some(e) = self.udp.iter().find(|e| e.addr == flow.egress) else {
            return;
        };
        let socket = self.sockets.get_mut::<udp::Socket>(e.socket);
        let mut meta = udp::UdpMetadata::from(IpEndpoint::new(
            (*flow.guest.ip()).into(),
            flow.guest.port(),
        ));
        // From the outside address, as the guest addressed it.
        meta.local_address = Some((*flow.egress.ip()).into());
        let failed = loop {
            match flow.host.recv(&mut self.udp_buf) {
                Ok(n) if n > UDP_MAX_PAYLOAD => self.stats.udp_dropped += 1,
                Ok(n) => match socket.send_slice(&self.udp_buf[..n], meta) {
                    Ok(()) => {
                        self.stats.udp_in += 1;
                        // The first reply gives the flow its longer idle time, counted from
                        // the guest's last datagram: only the guest keeps a flow, as in the
                        // fabric's connection tracking.
                        flow.replied = true;
                    }
                    Err(_) => self.stats.udp_dropped += 1,
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // An ICMP error for an earlier datagram (port unreachable...): read on.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) => break Some(e),
            }
        };
        // Anything else would keep the socket readable (and the fabric's thread spinning):
        // the flow is forgotten; the guest's next datagram opens a new one.
        if let Some(e) = failed {
            tracing::warn!(target: "sturdy_fabric::gateway", "UDP flow to {}: {e}; closed", flow.egress);
            self.forget_flow(token);
        }
    }

    fn forget_flow(&mut self, token: u64) {
        if let Some(f) = self.udp_flows.remove(&token) {
            let _ = self.epoll.delete(f.host.as_raw_fd());
            self.udp_index.remove(&(f.guest, f.egress));
        }
    }

    /// Forgets the UDP flows idle past their timeout.
    /// Resets the host connections past their limits: a guest that did not answer the
    /// handshake in time, a connection that moved nothing for its idle timeout.
    fn sweep_ingress(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (&token, c) in &self.conns {
            let Origin::Ingress(listener) = c.origin else {
                continue;
            };
            let Some(l) = self.listeners.get(&listener) else {
                continue;
            };
            let limits = self.plan.ingress_limits(l.publication.host);
            let connecting =
                self.sockets.get::<tcp::Socket>(c.socket).state() == tcp::State::SynSent;
            if connecting && now.duration_since(c.opened) >= limits.handshake_timeout {
                expired.push((token, l.publication.service.clone(), true));
            } else if now.duration_since(c.active) >= limits.idle_timeout {
                expired.push((token, l.publication.service.clone(), false));
            }
        }
        for (token, service, handshake) in expired {
            if handshake {
                self.stats.ingress_handshake_timeouts += 1;
            } else {
                self.stats.ingress_idle_closed += 1;
            }
            self.reset(token);
            self.count_refused(&service);
        }
    }

    fn sweep_udp(&mut self) {
        let now = Instant::now();
        self.next_sweep = now + SWEEP_EVERY;
        let idle: Vec<u64> = self
            .udp_flows
            .iter()
            .filter(|(_, f)| {
                let limit = if f.replied {
                    UDP_IDLE_REPLIED
                } else {
                    UDP_IDLE
                };
                now.duration_since(f.last) >= limit
            })
            .map(|(t, _)| *t)
            .collect();
        for token in idle {
            self.forget_flow(token);
        }
    }

    /// Runs the stack and the copies until nothing moves (or for a bounded number of rounds,
    /// so that new host connections and frames get their turn): returns whether work remains.
    fn process(&mut self) -> bool {
        let mut busy = true;
        for _ in 0..64 {
            let now = self.now();
            let changed = self.iface.poll(now, &mut self.device, &mut self.sockets)
                == smoltcp::iface::PollResult::SocketStateChanged;
            self.replenish();
            let probed = self.check_probes();
            let datagrams = self.udp_out();
            let moved = self.pump();
            if !changed && !moved && !probed && !datagrams && self.device.rx.is_empty() {
                busy = false;
                break;
            }
        }
        self.drain();
        self.stats.tx_dropped += std::mem::take(&mut self.device.unroutable);
        busy
    }

    /// Copies bytes between each connection's host socket and guest-side socket, relays
    /// closes and resets; returns whether anything moved.
    fn pump(&mut self) -> bool {
        let mut moved = false;
        let mut done = Vec::new();
        for (token, c) in self.conns.iter_mut() {
            let socket = self.sockets.get_mut::<tcp::Socket>(c.socket);
            let Some(stream) = c.stream.as_mut() else {
                if socket.state() == tcp::State::Closed {
                    done.push(*token);
                }
                continue;
            };
            // A host read or write error (the host peer reset) resets the guest side too.
            let mut host_failed = false;
            // A host peer that leaves before the guest answered (nothing can be sent yet): its
            // end or error is seen without taking its bytes, and the guest side is aborted.
            if c.readable && !c.host_eof && socket.state() == tcp::State::SynSent {
                match stream.peek(&mut [0u8; 1]) {
                    Ok(0) => host_failed = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => host_failed = true,
                }
            }
            // Host to guest.
            while c.readable && !c.host_eof && socket.may_send() && socket.can_send() {
                let r = socket.send(|buf| match stream.read(buf) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) => (0, Err(e)),
                });
                match r {
                    Ok(Ok(0)) => {
                        c.host_eof = true;
                        // The guest's FIN, which will end this in TIME-WAIT, is then
                        // acknowledged at once rather than after the delayed-ACK timer: the
                        // socket is freed as soon as it is in TIME-WAIT (`drain`), with
                        // nothing left to send.
                        socket.set_ack_delay(None);
                        socket.close();
                        moved = true;
                    }
                    Ok(Ok(_)) => {
                        moved = true;
                        c.active = Instant::now();
                    }
                    Ok(Err(e)) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
                    Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                    Ok(Err(_)) | Err(_) => {
                        host_failed = true;
                        break;
                    }
                }
            }
            // Guest to host.
            while !host_failed && c.writable && socket.can_recv() {
                let r = socket.recv(|buf| match stream.write(buf) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) => (0, Err(e)),
                });
                match r {
                    Ok(Ok(0)) => {}
                    Ok(Ok(_)) => {
                        moved = true;
                        c.active = Instant::now();
                    }
                    Ok(Err(e)) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
                    Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                    Ok(Err(_)) | Err(_) => {
                        host_failed = true;
                        break;
                    }
                }
            }
            if host_failed {
                socket.abort();
                self.stats.resets_to_guest += 1;
                c.host_eof = true;
                c.host_shut = true;
                moved = true;
            }
            let state = socket.state();
            let guest_fin = matches!(
                state,
                tcp::State::CloseWait
                    | tcp::State::LastAck
                    | tcp::State::Closing
                    | tcp::State::TimeWait
            );
            if guest_fin && !c.host_shut && socket.recv_queue() == 0 {
                let _ = stream.shutdown(Shutdown::Write);
                c.host_shut = true;
                moved = true;
            }
            if matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
                if c.host_eof && c.host_shut {
                    if state == tcp::State::TimeWait {
                        self.stats.closed += 1;
                    }
                } else {
                    // The guest reset (or refused, or timed out): so is the host peer.
                    sys::set_linger_zero(stream.as_raw_fd());
                    self.stats.resets_to_host += 1;
                }
                done.push(*token);
            }
        }
        for token in done {
            let c = self.forget(token).expect("listed");
            if let Some(s) = &c.stream {
                let _ = self.epoll.delete(s.as_raw_fd());
            }
            self.draining.push((c.socket, c.local_port));
            moved = true;
        }
        moved
    }

    /// Forgets the sockets that finished closing: those closed (their reset sent), and those
    /// in TIME-WAIT (the guest's FIN acknowledged: `pump`), whose local port alone is held
    /// until [`TIME_WAIT`] is over. Keeping the socket through TIME-WAIT would keep its
    /// 128 KiB of buffers too, for every connection a host client closed first in the last
    /// 10 s: unbounded by [`MAX_CONNECTIONS`]. Without it, a FIN the guest sends again (our
    /// ACK lost) is answered with a reset, which ends its side as well.
    fn drain(&mut self) {
        let now = Instant::now();
        let sockets = &mut self.sockets;
        let ports = &mut self.ports_in_use;
        let time_wait = &mut self.time_wait;
        self.draining.retain(|&(h, port)| {
            match sockets.get::<tcp::Socket>(h).state() {
                tcp::State::Closed => {
                    if let Some(p) = port {
                        ports.remove(&p);
                    }
                }
                tcp::State::TimeWait => {
                    if let Some(p) = port {
                        time_wait.push_back((p, now + TIME_WAIT));
                    }
                }
                _ => return true,
            }
            sockets.remove(h);
            false
        });
        while let Some(&(port, until)) = self.time_wait.front() {
            if now < until {
                break;
            }
            self.time_wait.pop_front();
            self.ports_in_use.remove(&port);
        }
    }
}

impl LocalPort for Gw {
    fn events_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn deliver(&mut self, frame: &[u8]) {
        // IPv4 only: the fabric answers ARP itself and forwards nothing else.
        let ipv4 = frame.len() <= RECV_BUFFER
            && EthernetFrame::new_checked(frame)
                .is_ok_and(|eth| eth.ethertype() == EtherType::Ipv4);
        if ipv4 {
            self.device.rx.push_back(frame.to_vec());
        }
    }

    fn run(&mut self, ready: bool, out: &mut Vec<Vec<u8>>) -> bool {
        if ready {
            self.handle_events();
        }
        let now = Instant::now();
        if now >= self.next_sweep {
            self.sweep_udp();
            self.sweep_ingress(now);
        }
        if self.paused.iter().any(|&(_, until)| now >= until) {
            self.resume_listeners(now);
        }
        let busy = self.process();
        out.append(&mut self.device.tx);
        self.publish_stats();
        busy
    }

    fn timeout(&mut self) -> Duration {
        self.idle_delay()
    }
}
