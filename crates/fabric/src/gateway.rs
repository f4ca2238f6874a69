//! The gateway: the fabric's door to the host (DESIGN.md section 3, ingress and egress).
//!
//! The gateway is a port of the fabric ([`PortId::GATEWAY`]) with the plan's gateway address
//! and MAC, behind which runs a TCP/IP stack (smoltcp, the one the guests run). Its frames go
//! through the switch like any service's: the policy gives it a capability to each published
//! endpoint and nothing else, and makes it the provider of each egress capability.
//!
//! - Ingress: for each [`Published`](crate::Published) endpoint the gateway listens on the host
//!   address; each host connection it accepts becomes a TCP connection from the gateway's
//!   address to the guest's endpoint, and bytes are copied both ways. The guest sees the
//!   gateway as its peer.
//! - Egress: for each egress capability the gateway's stack listens on the outside
//!   address:port (it accepts any destination address, smoltcp's "any IP"); a guest connection
//!   it accepts is matched with a host connection to the real address.
//!
//! Close and reset cross over: a FIN from one side is a FIN (shutdown) to the other once the
//! data before it is delivered, a reset is a reset (a host socket is closed with a zero linger).
//! The gateway runs on its own thread, with its host sockets and its port's socket in one epoll.

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpEndpoint, IpListenEndpoint};

use crate::plan::{Plan, PortId, Proto};
use crate::port::sys::{self, Epoll, EventFd};
use crate::port::{FabricHandle, Port, RunError, RECV_BUFFER};

/// Socket buffers of each gateway connection, each way.
const BUFFER: usize = 64 * 1024;
/// Listening sockets kept ready per egress capability (SYNs that find none are reset).
const SPARE_LISTENERS: usize = 16;
/// Frames read from the port per round.
const BATCH: usize = 32;
/// The gateway's local ports for ingress connections.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;
/// How long an egress host connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const PORT: u64 = 0;
const WAKE: u64 = 1;
const LISTENER: u64 = 2;
/// Connection tokens start here.
const CONN: u64 = 1 << 32;

/// The gateway's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Connections open now (a host socket and a guest-side socket, or one waiting for the
    /// other).
    pub connections: usize,
    /// Host connections accepted on published ports.
    pub ingress_opened: u64,
    /// Guest connections accepted for egress capabilities.
    pub egress_opened: u64,
    /// Egress connections whose outside address could not be reached.
    pub egress_failed: u64,
    /// Connections closed cleanly (FIN both ways).
    pub closed: u64,
    /// Resets sent to a host peer (the guest reset or refused).
    pub resets_to_host: u64,
    /// Resets sent to a guest (the host peer reset).
    pub resets_to_guest: u64,
    /// Frames the fabric's port did not take.
    pub tx_dropped: u64,
}

/// The running gateway; dropping it stops it (its port is then detached by the fabric).
pub struct GatewayHandle {
    stop: Arc<AtomicBool>,
    wake: Arc<EventFd>,
    stats: Arc<Mutex<GatewayStats>>,
    published: Vec<(String, SocketAddr)>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for GatewayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("GatewayHandle")
            .field("published", &self.published)
            .finish_non_exhaustive()
    }
}

/// Why the gateway did not start.
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
    /// The fabric refused the gateway's port.
    #[error("{0}")]
    Attach(#[from] RunError),
    /// A socket, epoll or thread could not be made.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl GatewayHandle {
    /// The host address each published endpoint (`service.endpoint`) listens on (the actual
    /// port when the plan asked for port 0).
    pub fn published(&self) -> &[(String, SocketAddr)] {
        &self.published
    }

    /// The host address `service.endpoint` is published on.
    pub fn addr_of(&self, endpoint: &str) -> Option<SocketAddr> {
        self.published
            .iter()
            .find(|(e, _)| e == endpoint)
            .map(|(_, a)| *a)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> GatewayStats {
        *self.stats.lock().expect("gateway stats")
    }

    /// Stops the gateway thread; its connections are dropped (host peers see a reset).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            self.wake.signal();
            let _ = thread.join();
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Starts the gateway of `plan` (the plan `fabric` enforces: its published endpoints and
/// egress capabilities) and attaches it to the fabric as [`PortId::GATEWAY`].
pub fn spawn(plan: &Plan, fabric: &FabricHandle) -> Result<GatewayHandle, GatewayError> {
    let mut listeners = Vec::new();
    let mut published = Vec::new();
    for p in &plan.published {
        let endpoint = format!("{}.{}", p.service, p.endpoint);
        let listen_err = |source| GatewayError::Listen {
            addr: p.host,
            endpoint: endpoint.clone(),
            source,
        };
        let listener = TcpListener::bind(p.host).map_err(listen_err)?;
        listener.set_nonblocking(true).map_err(listen_err)?;
        let addr = listener.local_addr()?;
        let (provider, ep) = plan.resolve(&p.capability()).expect("a validated plan");
        published.push((endpoint, addr));
        listeners.push((listener, SocketAddrV4::new(provider.ipv4, ep.port)));
    }
    let egress: Vec<SocketAddrV4> = plan
        .egress
        .iter()
        .filter(|e| e.proto == Proto::Tcp)
        .map(|e| SocketAddrV4::new(e.addr, e.port))
        .collect();

    let (ours, theirs) = Port::pair()?;
    let port = Port::from_fd(theirs)?;
    let epoll = Epoll::new()?;
    let wake = Arc::new(EventFd::new()?);
    epoll.add(port.as_raw_fd(), PORT, sys::READ_EVENTS)?;
    epoll.add(wake.raw(), WAKE, libc::EPOLLIN as u32)?;
    for (i, (l, _)) in listeners.iter().enumerate() {
        epoll.add(l.as_raw_fd(), LISTENER + i as u64, libc::EPOLLIN as u32)?;
    }
    fabric.attach(PortId::GATEWAY, ours)?;

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Mutex::new(GatewayStats::default()));
    let mut gw = Gw::new(plan, port, epoll, wake.clone(), listeners, egress);
    gw.stats_out = stats.clone();
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("sturdy-gateway".into())
        .spawn(move || {
            if let Err(e) = gw.run(&stop2) {
                tracing::error!(target: "sturdy_fabric::gateway", "the gateway failed: {e}");
            }
        })?;
    Ok(GatewayHandle {
        stop,
        wake,
        stats,
        published,
        thread: Some(thread),
    })
}

/// The smoltcp device: frames read from the port, frames to write to it.
struct Frames {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.0.push(frame);
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
        Some((Rx(frame), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
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
}

/// An egress connection's host side, opened (or not) on another thread.
type Connected = (u64, io::Result<TcpStream>);

struct Gw {
    iface: Interface,
    device: Frames,
    sockets: SocketSet<'static>,
    port: Port,
    epoll: Epoll,
    wake: Arc<EventFd>,
    listeners: Vec<(TcpListener, SocketAddrV4)>,
    egress: Vec<SocketAddrV4>,
    /// Per egress capability, its listening sockets.
    egress_listeners: Vec<Vec<SocketHandle>>,
    conns: HashMap<u64, Conn>,
    next_token: u64,
    /// Sockets closing after their connection ended (TIME-WAIT), and the port they hold.
    draining: Vec<(SocketHandle, Option<u16>)>,
    ports_in_use: std::collections::HashSet<u16>,
    next_port: u16,
    connected: (mpsc::Sender<Connected>, mpsc::Receiver<Connected>),
    start: Instant,
    stats: GatewayStats,
    stats_out: Arc<Mutex<GatewayStats>>,
    rx_bufs: Vec<[u8; RECV_BUFFER]>,
}

fn new_socket() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; BUFFER]),
        tcp::SocketBuffer::new(vec![0; BUFFER]),
    );
    s.set_nagle_enabled(false);
    s
}

impl Gw {
    fn new(
        plan: &Plan,
        port: Port,
        epoll: Epoll,
        wake: Arc<EventFd>,
        listeners: Vec<(TcpListener, SocketAddrV4)>,
        egress: Vec<SocketAddrV4>,
    ) -> Gw {
        let mut device = Frames {
            rx: VecDeque::new(),
            tx: Vec::new(),
        };
        let mac = EthernetAddress(plan.gateway.mac.0);
        let config = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        let start = Instant::now();
        let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
        let gw_ip = plan.gateway.ipv4;
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(gw_ip.into(), plan.subnet.prefix_len()))
                .expect("one address");
        });
        // Egress: accept segments for any (outside) address.
        iface.set_any_ip(true);
        let _ = iface.routes_mut().add_default_ipv4_route(gw_ip);
        let n = egress.len();
        Gw {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            port,
            epoll,
            wake,
            listeners,
            egress,
            egress_listeners: vec![Vec::new(); n],
            conns: HashMap::new(),
            next_token: CONN,
            draining: Vec::new(),
            ports_in_use: Default::default(),
            next_port: *EPHEMERAL.start(),
            connected: mpsc::channel(),
            start,
            stats: GatewayStats::default(),
            stats_out: Arc::new(Mutex::new(GatewayStats::default())),
            rx_bufs: vec![[0u8; RECV_BUFFER]; BATCH],
        }
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Vec::with_capacity(64);
        loop {
            let busy = self.process();
            let now = self.now();
            let delay = if busy {
                0
            } else {
                self.iface
                    .poll_delay(now, &self.sockets)
                    .map_or(1000, |d| d.total_millis())
                    .min(1000) as i32
            };
            self.publish_stats();
            self.epoll.wait(&mut events, delay)?;
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            for &(token, flags) in &events {
                match token {
                    PORT => self.receive(),
                    WAKE => {
                        self.wake.drain();
                        self.connected();
                    }
                    t if t < CONN => self.accept((t - LISTENER) as usize),
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
        }
    }

    fn publish_stats(&mut self) {
        self.stats.connections = self.conns.len();
        *self.stats_out.lock().expect("gateway stats") = self.stats;
    }

    /// Reads what the port has (a bounded batch; epoll is level-triggered for it).
    fn receive(&mut self) {
        let mut lens = [0usize; BATCH];
        for _ in 0..8 {
            match self.port.recv_batch(&mut self.rx_bufs, &mut lens) {
                Ok(n) => {
                    for (buf, &len) in self.rx_bufs.iter().zip(&lens[..n]) {
                        if len > 0 && len <= RECV_BUFFER {
                            self.device.rx.push_back(buf[..len].to_vec());
                        }
                    }
                    if n < BATCH {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// Accepts the host connections waiting on published port `i`.
    fn accept(&mut self, i: usize) {
        loop {
            let (stream, peer) = match self.listeners[i].0.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(target: "sturdy_fabric::gateway", "accept failed: {e}");
                    return;
                }
            };
            let target = self.listeners[i].1;
            let Some(local) = self.ephemeral() else {
                tracing::warn!(target: "sturdy_fabric::gateway", "no local port left for {peer}");
                continue;
            };
            let mut socket = new_socket();
            let remote = IpEndpoint::new((*target.ip()).into(), target.port());
            if let Err(e) = socket.connect(self.iface.context(), remote, local) {
                tracing::warn!(target: "sturdy_fabric::gateway", "connect to {target}: {e}");
                self.ports_in_use.remove(&local);
                continue;
            }
            let handle = self.sockets.add(socket);
            self.stats.ingress_opened += 1;
            self.add_conn(handle, Some(stream), Some(local));
        }
    }

    fn add_conn(&mut self, socket: SocketHandle, stream: Option<TcpStream>, port: Option<u16>) {
        let token = self.next_token;
        self.next_token += 1;
        if let Some(s) = &stream {
            self.watch(token, s);
        }
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
            },
        );
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

    /// Keeps listening sockets ready for each egress capability; those that got a connection
    /// become gateway connections whose host side is opened on another thread.
    fn replenish(&mut self) {
        for i in 0..self.egress.len() {
            let mut keep = Vec::new();
            for handle in std::mem::take(&mut self.egress_listeners[i]) {
                let state = self.sockets.get::<tcp::Socket>(handle).state();
                match state {
                    tcp::State::Listen | tcp::State::SynReceived => keep.push(handle),
                    tcp::State::Closed => {
                        self.sockets.remove(handle);
                    }
                    _ => {
                        self.stats.egress_opened += 1;
                        let token = self.next_token;
                        self.add_conn(handle, None, None);
                        let addr = self.egress[i];
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
                let mut socket = new_socket();
                let addr = self.egress[i];
                let ep = IpListenEndpoint {
                    addr: Some((*addr.ip()).into()),
                    port: addr.port(),
                };
                if socket.listen(ep).is_ok() {
                    keep.push(self.sockets.add(socket));
                }
            }
            self.egress_listeners[i] = keep;
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

    /// Runs the stack and the copies until nothing moves (or for a bounded number of rounds,
    /// so that new host connections and frames get their turn): returns whether work remains.
    fn process(&mut self) -> bool {
        let mut busy = true;
        for _ in 0..64 {
            let now = self.now();
            let changed = self.iface.poll(now, &mut self.device, &mut self.sockets)
                == smoltcp::iface::PollResult::SocketStateChanged;
            self.replenish();
            let moved = self.pump();
            self.flush();
            if !changed && !moved && self.device.rx.is_empty() {
                busy = false;
                break;
            }
        }
        self.drain();
        busy
    }

    fn flush(&mut self) {
        if self.device.tx.is_empty() {
            return;
        }
        let frames: Vec<&[u8]> = self.device.tx.iter().map(|f| &f[..]).collect();
        let sent = self.port.send_batch(&frames).unwrap_or(0);
        self.stats.tx_dropped += (frames.len() - sent) as u64;
        self.device.tx.clear();
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
            // Host to guest.
            while c.readable && !c.host_eof && socket.may_send() && socket.can_send() {
                let r = socket.send(|buf| match stream.read(buf) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) => (0, Err(e)),
                });
                match r {
                    Ok(Ok(0)) => {
                        c.host_eof = true;
                        socket.close();
                        moved = true;
                    }
                    Ok(Ok(_)) => moved = true,
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
                    Ok(Ok(_)) => moved = true,
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
            let c = self.conns.remove(&token).expect("listed");
            if let Some(s) = &c.stream {
                let _ = self.epoll.delete(s.as_raw_fd());
            }
            self.draining.push((c.socket, c.local_port));
            moved = true;
        }
        moved
    }

    /// Forgets the sockets that finished closing.
    fn drain(&mut self) {
        let sockets = &mut self.sockets;
        let ports = &mut self.ports_in_use;
        self.draining.retain(|(h, port)| {
            if sockets.get::<tcp::Socket>(*h).state() == tcp::State::Closed {
                sockets.remove(*h);
                if let Some(p) = port {
                    ports.remove(p);
                }
                false
            } else {
                true
            }
        });
    }
}
