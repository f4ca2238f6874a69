//! The boot configuration of a sturdy guest's network, carried on its command line.
//!
//! A guest learns at boot what the plan decided for it: the address of each of its NICs, the
//! peer endpoints it may use (its *capabilities*, including `egress` to the outside world) and
//! the endpoints it provides. The host (the fabric and compose) renders a [`BootConfig`] into
//! command-line arguments with [`render`]; the guest SDK (`sturdy-rt`) reads them back with
//! [`parse`]. This crate is the one definition of that encoding for both sides; it is `no_std`
//! with `alloc` and has no dependencies. `docs/bootcfg.md` describes the encoding for readers
//! who do not read Rust.
//!
//! # The encoding, version 1
//!
//! One argument per item, each a single token without spaces (the monitor joins arguments with
//! single spaces and does no quoting):
//!
//! ```text
//! --sturdy.v1.net=NIC:IPV4/PREFIX[:gw=IPV4]    a NIC: its address, prefix length, gateway
//! --sturdy.v1.use=CAP:IPV4:PORT/PROTO          a capability: a peer endpoint the guest may use
//! --sturdy.v1.egress=CAP:IPV4:PORT/PROTO       an egress capability: an outside endpoint
//! --sturdy.v1.provide=ENDPOINT:PORT/PROTO      an endpoint the guest provides (listens on)
//! ```
//!
//! For example, a `web` service with one NIC that may use `db`'s endpoint `kv`, reach one
//! outside HTTPS server and serve HTTP:
//!
//! ```text
//! --sturdy.v1.net=service:10.0.0.2/24:gw=10.0.0.1 --sturdy.v1.use=db.kv:10.0.0.3:6379/tcp
//! --sturdy.v1.egress=egress.0:203.0.113.7:443/tcp --sturdy.v1.provide=http:80/tcp
//! ```
//!
//! - `NIC` is the network device's name in the guest's manifest: 1 to 67 ASCII letters and
//!   digits (the Solo5 manifest's rule).
//! - `CAP` is one label or two joined by a dot: a service (`db`), a service's endpoint
//!   (`db.kv`), or an egress name (`egress.0`, or one the user chose). `ENDPOINT` is one label.
//!   A label is 1 to 63 ASCII letters, digits, `-` and `_`.
//! - `IPV4` is dotted decimal, `PREFIX` 1 to 32, `PORT` 1 to 65535, all in canonical decimal
//!   (no sign, no leading zero); `PROTO` is `tcp` or `udp`.
//!
//! Every argument starting with `--sturdy.` belongs to the boot configuration, wherever it is on
//! the command line; [`parse`] returns all the other arguments, in order, to the application.
//! `--sturdy.` is followed by the version, `v1`; another version is refused with an error that
//! says so, so a guest never half-understands a newer plan. Items are also checked together:
//! names are unique (NICs, capabilities and egress together, provided endpoints), no two
//! provided endpoints share a port and protocol, a gateway lies inside its NIC's subnet, and
//! every capability is reachable through some NIC ([`BootConfig::route`]).
//!
//! # Example
//!
//! ```
//! use sturdy_bootcfg::{parse, render, BootConfig, Capability, Nic, Proto};
//!
//! let config = BootConfig {
//!     nics: vec![Nic {
//!         name: "service".into(),
//!         addr: [10, 0, 0, 2].into(),
//!         prefix_len: 24,
//!         gateway: None,
//!     }],
//!     uses: vec![Capability {
//!         name: "db.kv".into(),
//!         addr: [10, 0, 0, 3].into(),
//!         port: 6379,
//!         proto: Proto::Tcp,
//!     }],
//!     ..BootConfig::default()
//! };
//! let line = render(&config);
//! assert_eq!(
//!     line,
//!     "--sturdy.v1.net=service:10.0.0.2/24 --sturdy.v1.use=db.kv:10.0.0.3:6379/tcp"
//! );
//!
//! let args = line.split(' ').chain(["--greeting=hi"]);
//! let (parsed, app_args) = parse(args).unwrap();
//! assert_eq!(parsed, config);
//! assert_eq!(app_args, ["--greeting=hi"]);
//! assert_eq!(parsed.capability("db", Proto::Tcp).unwrap().port, 6379);
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod check;
mod error;
mod lookup;
mod parse;
#[cfg(test)]
mod props;
mod render;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

pub use error::{Error, Reason};
pub use lookup::LookupError;
pub use parse::parse;
pub use render::render;

/// The version of the encoding this crate reads and writes.
pub const VERSION: u32 = 1;

/// Every boot configuration argument starts with this; the version follows it.
pub const PREFIX: &str = "--sturdy.";

/// A guest's network configuration: what the plan decided for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootConfig {
    /// The guest's NICs, in the order the plan lists them.
    pub nics: Vec<Nic>,
    /// Endpoints of other services the guest may use.
    pub uses: Vec<Capability>,
    /// Endpoints outside the application the guest may reach.
    pub egress: Vec<Capability>,
    /// Endpoints the guest provides: others may be granted them, and the guest listens on them.
    pub provides: Vec<Endpoint>,
}

/// A NIC's IPv4 configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    /// The network device's name in the guest's manifest, e.g. `service`.
    pub name: String,
    /// The guest's own address on this NIC.
    pub addr: Ipv4Addr,
    /// The subnet's prefix length (1 to 32).
    pub prefix_len: u8,
    /// The router for destinations outside the subnet, if there is one.
    pub gateway: Option<Ipv4Addr>,
}

impl Nic {
    /// Whether `addr` is inside this NIC's subnet.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(addr) & mask == u32::from(self.addr) & mask
    }
}

/// A capability: a peer endpoint the guest may use (`uses`) or an outside one (`egress`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    /// `service`, `service.endpoint`, or an egress name such as `egress.0`.
    pub name: String,
    /// The peer's address.
    pub addr: Ipv4Addr,
    /// The peer's port.
    pub port: u16,
    /// The transport protocol.
    pub proto: Proto,
}

/// An endpoint the guest provides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint's name, e.g. `kv`.
    pub name: String,
    /// The port the guest listens on.
    pub port: u16,
    /// The transport protocol.
    pub proto: Proto,
}

/// A transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`, as in the encoding.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl BootConfig {
    /// Checks that [`render`] of this configuration parses back to it: every name, address,
    /// prefix length and port is one the encoding allows, and the items fit together (see the
    /// crate documentation). The error names the offending argument as it would be rendered.
    pub fn validate(&self) -> Result<(), Error> {
        check::items(self)?;
        check::together(self)
    }

    /// The capabilities, `uses` then `egress`.
    pub fn capabilities(&self) -> impl Iterator<Item = &Capability> {
        self.uses.iter().chain(&self.egress)
    }

    /// The index in [`nics`](BootConfig::nics) of the NIC that reaches `addr`: the first whose
    /// subnet contains it, otherwise the first that has a gateway.
    pub fn route(&self, addr: Ipv4Addr) -> Option<usize> {
        self.nics
            .iter()
            .position(|nic| nic.contains(addr))
            .or_else(|| self.nics.iter().position(|nic| nic.gateway.is_some()))
    }
}
