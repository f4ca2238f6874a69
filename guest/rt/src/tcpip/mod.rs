//! The TCP/IP stack: smoltcp (Ethernet, ARP, IPv4, ICMP echo replies, TCP, UDP) on the NICs the
//! boot configuration names, each with its address, prefix and gateway.
//!
//! The stack starts when the application first asks for a capability ([`crate::caps`]): that
//! opens every configured NIC, so a configuration that names a NIC the manifest lacks is an
//! error at start. Each NIC has its own smoltcp interface and socket set; a connection lives on
//! the NIC that routes to its peer ([`BootConfig::route`]), and a provided endpoint is served on
//! every NIC.
//!
//! The run loop ([`crate::task`]) calls [`poll`] every round and sleeps until [`poll_at`].

mod device;
mod tcp;
mod udp;

use alloc::vec::Vec;
use core::fmt;
use core::net::SocketAddrV4;
use core::time::Duration;

use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::socket::{tcp as stcp, udp as sudp, AnySocket, Socket};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};
use sturdy_bootcfg::{BootConfig, Proto};

pub(crate) use tcp::{connect as tcp_connect, listen as tcp_listen};
pub use tcp::{TcpListener, TcpStream};
pub(crate) use udp::{connect as udp_connect, endpoint as udp_endpoint};
pub use udp::{Peer, UdpEndpoint, UdpSocket};

use crate::caps::CapError;
use crate::global::Global;
use crate::{time, Instant, Net, ReadySet};

/// Frames received per NIC in one round before the tasks run again.
const RX_BATCH: usize = 64;

/// How long a dropped connection may take to finish its goodbyes (FIN, ACK) before its socket
/// is freed anyway, and how long [`TcpStream::close`] waits for them.
const LINGER: Duration = Duration::from_secs(60);

/// Ephemeral ports for outgoing connections (RFC 6335 section 6).
const EPHEMERAL: core::ops::RangeInclusive<u16> = 49152..=65535;

static STACK: Global<Option<Stack>> = Global::new(None);

struct Stack {
    nics: Vec<Nic>,
    listeners: Vec<Option<tcp::Listener>>,
    /// Sockets their owners dropped, finishing their connection, with when to give up.
    closing: Vec<(SocketRef, Instant)>,
    next_port: u16,
}

struct Nic {
    iface: Interface,
    device: device::Device,
    sockets: SocketSet<'static>,
}

/// A socket: the NIC it is on, and its handle in that NIC's socket set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SocketRef {
    nic: usize,
    handle: SocketHandle,
}

/// Opens the NICs of `config` and configures their interfaces, unless that was done already.
pub(crate) fn start(config: &BootConfig) -> Result<(), CapError> {
    if started() {
        return Ok(());
    }
    let now = Instant::now();
    let mut nics = Vec::with_capacity(config.nics.len());
    for nic in &config.nics {
        let net = Net::open(&nic.name).map_err(|error| CapError::Nic {
            name: nic.name.clone(),
            error,
        })?;
        let mut device = device::Device::new(net);
        let mut iface_config = Config::new(EthernetAddress(device.net().mac().0).into());
        iface_config.random_seed = time::rdtsc();
        let mut iface = Interface::new(iface_config, &mut device, smoltcp_time(now));
        iface.update_ip_addrs(|addrs| {
            // Room for one address: the default of iface-max-addr-count is 2.
            _ = addrs.push(IpCidr::new(nic.addr.into(), nic.prefix_len));
        });
        if let Some(gateway) = nic.gateway {
            // The routing table has room for it: the only route ever added.
            _ = iface.routes_mut().add_default_ipv4_route(gateway);
        }
        nics.push(Nic {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
        });
    }
    let span = EPHEMERAL.end() - EPHEMERAL.start();
    let first_port = EPHEMERAL.start() + (time::rdtsc() % u64::from(span)) as u16;
    STACK.with(|stack| {
        *stack = Some(Stack {
            nics,
            listeners: Vec::new(),
            closing: Vec::new(),
            next_port: first_port,
        })
    });
    Ok(())
}

/// Whether the stack has started.
pub(crate) fn started() -> bool {
    STACK.with(|stack| stack.is_some())
}

/// Runs `f` on the started stack. Sockets exist only once it has started.
fn with<R>(f: impl FnOnce(&mut Stack) -> R) -> R {
    STACK.with(|stack| {
        f(stack
            .as_mut()
            .expect("sockets exist only once the stack started"))
    })
}

/// One round of network work at time `now`: receive up to [`RX_BATCH`] frames on each NIC that
/// may have some (`readable`: see [`device::Device::may_have_frames`]), then send everything
/// there is to send. Returns whether a NIC may still have frames waiting.
pub(crate) fn poll(now: Instant, readable: Option<ReadySet>) -> bool {
    STACK.with(|stack| {
        stack
            .as_mut()
            .is_some_and(|stack| stack.poll(now, readable))
    })
}

/// When smoltcp next needs [`poll`] without a frame arriving: a retransmission, a delayed ACK,
/// an ARP retry, or a lingering socket's deadline.
pub(crate) fn poll_at(now: Instant) -> Option<Instant> {
    STACK.with(|stack| stack.as_mut().and_then(|stack| stack.poll_at(now)))
}

impl Stack {
    fn poll(&mut self, now: Instant, readable: Option<ReadySet>) -> bool {
        let timestamp = smoltcp_time(now);
        let mut more = false;
        for (index, nic) in self.nics.iter_mut().enumerate() {
            if nic.device.may_have_frames(readable) {
                let mut received = 0;
                while received < RX_BATCH {
                    let result =
                        nic.iface
                            .poll_ingress_single(timestamp, &mut nic.device, &mut nic.sockets);
                    if result == PollIngressSingleResult::None {
                        break;
                    }
                    received += 1;
                    // After every frame, so a listener never lacks a listening socket when a
                    // SYN arrives (see tcp::Listener).
                    tcp::replenish(&mut self.listeners, index, &mut nic.sockets);
                }
                more |= received == RX_BATCH;
            }
            while nic
                .iface
                .poll_egress(timestamp, &mut nic.device, &mut nic.sockets)
                == PollResult::SocketStateChanged
            {}
        }
        self.reap(now);
        more
    }

    fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let timestamp = smoltcp_time(now);
        let stack_deadline = self
            .nics
            .iter_mut()
            .filter_map(|nic| nic.iface.poll_at(timestamp, &nic.sockets))
            .min()
            .map(|at| now + Duration::from_micros((at - timestamp).total_micros()));
        let linger = self.closing.iter().map(|&(_, deadline)| deadline).min();
        stack_deadline.into_iter().chain(linger).min()
    }

    fn tcp(&mut self, socket: SocketRef) -> &mut stcp::Socket<'static> {
        self.nics[socket.nic].sockets.get_mut(socket.handle)
    }

    fn udp(&mut self, socket: SocketRef) -> &mut sudp::Socket<'static> {
        self.nics[socket.nic].sockets.get_mut(socket.handle)
    }

    /// Adds `socket` to NIC `nic`'s set.
    fn add<T: AnySocket<'static>>(&mut self, nic: usize, socket: T) -> SocketRef {
        let handle = self.nics[nic].sockets.add(socket);
        SocketRef { nic, handle }
    }

    /// A local port for a new outgoing connection or socket on `nic`: the next ephemeral port
    /// no socket there uses.
    fn ephemeral_port(&mut self, nic: usize) -> u16 {
        loop {
            let port = self.next_port;
            self.next_port = if port == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                port + 1
            };
            let nic = &self.nics[nic];
            if !nic.port_in_use(port, Proto::Tcp) && !nic.port_in_use(port, Proto::Udp) {
                return port;
            }
        }
    }

    /// Gives up a socket its owner dropped: closes a TCP connection, and frees the socket once
    /// nothing is left to send (see [`reap`](Stack::reap)).
    fn release(&mut self, socket: SocketRef, now: Instant) {
        if let Socket::Tcp(tcp) = self.nics[socket.nic]
            .sockets
            .get_mut::<Socket>(socket.handle)
        {
            tcp.close();
        }
        self.closing.push((socket, now + LINGER));
        self.reap(now);
    }

    /// Frees the released sockets that are done: TCP connections closed (TIME-WAIT is not kept:
    /// ports are not reused soon), UDP sockets with nothing left to send; and those that took
    /// longer than [`LINGER`].
    fn reap(&mut self, now: Instant) {
        let nics = &mut self.nics;
        self.closing.retain(|&(socket, deadline)| {
            let sockets = &mut nics[socket.nic].sockets;
            let done = match sockets.get_mut::<Socket>(socket.handle) {
                Socket::Tcp(tcp) => {
                    matches!(tcp.state(), stcp::State::Closed | stcp::State::TimeWait)
                }
                Socket::Udp(udp) => udp.send_queue() == 0,
            };
            let keep = !done && now < deadline;
            if !keep {
                sockets.remove(socket.handle);
            }
            keep
        });
    }
}

impl Nic {
    /// Whether a socket of protocol `proto` uses local port `port`.
    fn port_in_use(&self, port: u16, proto: Proto) -> bool {
        self.sockets
            .iter()
            .any(|(_, socket)| match (socket, proto) {
                (Socket::Tcp(s), Proto::Tcp) => {
                    s.listen_endpoint().port == port
                        || s.local_endpoint().is_some_and(|e| e.port == port)
                }
                (Socket::Udp(s), Proto::Udp) => s.endpoint().port == port,
                _ => false,
            })
    }
}

/// An IPv4 endpoint as the standard type (every address here is IPv4).
fn socket_addr(endpoint: IpEndpoint) -> SocketAddrV4 {
    let IpAddress::Ipv4(addr) = endpoint.addr;
    SocketAddrV4::new(addr, endpoint.port)
}

/// Why a network operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// The peer answered the connection attempt with a reset: nothing listens there.
    ConnectionRefused,
    /// The peer did not answer in time.
    TimedOut,
    /// The connection was reset, by the peer or by the stack giving up on it.
    ConnectionReset,
    /// Writing after [`shutdown`](TcpStream::shutdown).
    Shutdown,
    /// The stack has no route to the peer.
    Unreachable,
    /// A datagram longer than one frame (or the socket's buffer) can carry.
    TooLarge {
        /// The datagram's length.
        len: usize,
        /// The longest datagram the socket can send.
        max: usize,
    },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            NetError::ConnectionRefused => f.write_str("connection refused"),
            NetError::TimedOut => f.write_str("timed out"),
            NetError::ConnectionReset => f.write_str("connection reset"),
            NetError::Shutdown => f.write_str("the connection was shut down for writing"),
            NetError::Unreachable => f.write_str("no route to the peer"),
            NetError::TooLarge { len, max } => {
                write!(
                    f,
                    "a datagram of {len} bytes is longer than the {max} that fit"
                )
            }
        }
    }
}

impl core::error::Error for NetError {}

/// `now` in smoltcp's clock (microseconds since boot).
fn smoltcp_time(now: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros((now.as_nanos() / 1000) as i64)
}
