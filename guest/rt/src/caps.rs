//! Capabilities: the only way a sturdy-rt application reaches the network.
//!
//! The plan gives each unikernel the endpoints it may use and the ones it provides, on its
//! command line (`docs/bootcfg.md`). `main` takes them from its [`Env`](crate::Env), once each,
//! and hands them to the code that needs them (as MirageOS hands devices to the functors that
//! use them): no code can look one up by itself.
//!
//! - [`Env::tcp`](crate::Env::tcp) and [`Env::udp`](crate::Env::udp) return a capability to
//!   *use* a peer endpoint (`db`, `db.kv`, or an egress such as `egress.0`). All one can do
//!   with it is [`TcpCap::connect`] or [`UdpCap::connect`]: there is no way to name an
//!   address, so the unikernel reaches exactly the peers the plan granted, and nothing else,
//!   even before the fabric filters anything. A capability is not `Clone`: lend it by
//!   reference (or share it in an `Rc` with the tasks that connect).
//! - [`Env::listen`](crate::Env::listen) and [`Env::bind`](crate::Env::bind) serve an endpoint
//!   the unikernel *provides* (`kv`).
//!
//! Take every capability at the start of `main`: a missing one is then a clear error at start
//! (`capability 'db' was not given to this unikernel (it has: peer)`), and
//! [`OrExit::or_exit`](crate::OrExit::or_exit) turns it into exit status 1. The first one taken
//! also starts the network stack on the NICs the boot configuration names.

use alloc::string::String;
use core::fmt;
use core::net::SocketAddrV4;

use sturdy_bootcfg::{Capability, LookupError, Proto};

use crate::tcpip::{self, NetError, TcpListener, TcpStream, UdpEndpoint, UdpSocket};
use crate::{boot_config, Error};

/// A capability to open TCP connections to one peer endpoint (from [`Env::tcp`](crate::Env::tcp)).
#[derive(Debug)]
pub struct TcpCap(Cap);

/// A capability to exchange UDP datagrams with one peer endpoint (from
/// [`Env::udp`](crate::Env::udp)).
#[derive(Debug)]
pub struct UdpCap(Cap);

#[derive(Debug)]
struct Cap {
    name: &'static str,
    nic: usize,
    peer: SocketAddrV4,
}

/// The capability `name` to a TCP endpoint: `db.kv`, or `db` if db has one TCP endpoint.
pub(crate) fn tcp(name: &str) -> Result<TcpCap, CapError> {
    capability(name, Proto::Tcp).map(TcpCap)
}

/// The capability `name` to a UDP endpoint.
pub(crate) fn udp(name: &str) -> Result<UdpCap, CapError> {
    capability(name, Proto::Udp).map(UdpCap)
}

/// Listens on the provided TCP endpoint `name`, on every NIC.
pub(crate) fn listen(name: &str) -> Result<TcpListener, CapError> {
    let port = provided(name, Proto::Tcp)?;
    tcpip::tcp_listen(port).ok_or_else(|| CapError::InUse(name.into()))
}

/// Serves the provided UDP endpoint `name`, on every NIC.
pub(crate) fn bind(name: &str) -> Result<UdpEndpoint, CapError> {
    let port = provided(name, Proto::Udp)?;
    tcpip::udp_endpoint(port).ok_or_else(|| CapError::InUse(name.into()))
}

impl TcpCap {
    /// Opens a connection to the peer.
    pub async fn connect(&self) -> Result<TcpStream, NetError> {
        tcpip::tcp_connect(self.0.nic, self.0.peer).await
    }

    /// The capability's name in the boot configuration, e.g. `db.kv`.
    pub fn name(&self) -> &'static str {
        self.0.name
    }
}

impl UdpCap {
    /// A socket that sends datagrams to the peer and receives the peer's.
    pub fn connect(&self) -> UdpSocket {
        tcpip::udp_connect(self.0.nic, self.0.peer)
    }

    /// The capability's name in the boot configuration.
    pub fn name(&self) -> &'static str {
        self.0.name
    }
}

/// `db.kv (10.0.0.3:6379/tcp)`.
impl fmt::Display for TcpCap {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} ({}/tcp)", self.0.name, self.0.peer)
    }
}

/// `dns (10.0.0.3:53/udp)`.
impl fmt::Display for UdpCap {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} ({}/udp)", self.0.name, self.0.peer)
    }
}

fn capability(name: &str, proto: Proto) -> Result<Cap, CapError> {
    let config = boot_config()?;
    let cap: &'static Capability = config.capability(name, proto)?;
    tcpip::start(config)?;
    Ok(Cap {
        name: &cap.name,
        // The boot configuration checked that every capability has a route.
        nic: config.route(cap.addr).unwrap_or(0),
        peer: SocketAddrV4::new(cap.addr, cap.port),
    })
}

fn provided(name: &str, proto: Proto) -> Result<u16, CapError> {
    let config = boot_config()?;
    let endpoint = config.provided(name, proto)?;
    tcpip::start(config)?;
    Ok(endpoint.port)
}

/// Why a capability or endpoint cannot be had.
#[derive(Clone, Debug)]
pub enum CapError {
    /// The boot configuration on the command line is malformed.
    BootConfig(&'static sturdy_bootcfg::Error),
    /// The boot configuration has no such capability or endpoint (or not with that protocol).
    Lookup(LookupError),
    /// A NIC of the boot configuration cannot be opened.
    Nic {
        /// The NIC's name.
        name: String,
        /// Why.
        error: Error,
    },
    /// The endpoint is already being served ([`Env::listen`](crate::Env::listen) or
    /// [`Env::bind`](crate::Env::bind) twice).
    InUse(String),
    /// The capability was taken from the environment already: it is handed on, not taken
    /// again.
    Taken(String),
}

impl From<&'static sturdy_bootcfg::Error> for CapError {
    fn from(e: &'static sturdy_bootcfg::Error) -> Self {
        CapError::BootConfig(e)
    }
}

impl From<LookupError> for CapError {
    fn from(e: LookupError) -> Self {
        CapError::Lookup(e)
    }
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            CapError::BootConfig(e) => e.fmt(f),
            CapError::Lookup(e) => e.fmt(f),
            CapError::Nic { name, error } => write!(
                f,
                "the boot configuration names NIC '{name}', which cannot be used: {error} \
                 (declare it with sturdy_rt::manifest!(net \"{name}\"))"
            ),
            CapError::InUse(name) => write!(f, "endpoint '{name}' is already being served"),
            CapError::Taken(name) => write!(
                f,
                "capability '{name}' was taken already: take each once in main and hand it on"
            ),
        }
    }
}

impl core::error::Error for CapError {}
