//! What is wrong with a boot configuration: the argument, and why.

use alloc::string::String;
use core::fmt;
use core::net::Ipv4Addr;

use crate::{Proto, VERSION};

/// A boot configuration argument that cannot be used, and why.
///
/// Displayed as `boot configuration argument '--sturdy.v1.use=db:10.0.0.300:6379/tcp':
/// '10.0.0.300' is not an IPv4 address`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    token: String,
    reason: Reason,
}

impl Error {
    pub(crate) fn new(token: impl Into<String>, reason: Reason) -> Error {
        Error {
            token: token.into(),
            reason,
        }
    }

    /// The argument, as given to [`parse`](crate::parse) or as [`render`](crate::render) would
    /// write it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Why it cannot be used.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "boot configuration argument '{}': {}",
            self.token, self.reason
        )
    }
}

impl core::error::Error for Error {}

/// Why a boot configuration argument cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// `--sturdy.` is not followed by `vN.`.
    NoVersion,
    /// A version other than [`VERSION`]: written by a newer (or older) host.
    UnsupportedVersion(String),
    /// A key that version 1 does not have.
    UnknownKey(String),
    /// The value does not have the shape the key needs (`expected` shows it).
    Malformed {
        /// The grammar of the value, e.g. `NIC:IPV4/PREFIX[:gw=IPV4]`.
        expected: &'static str,
    },
    /// A name outside its grammar (`rule` says which).
    BadName {
        /// The name.
        name: String,
        /// What such a name must be.
        rule: &'static str,
    },
    /// Not a dotted-decimal IPv4 address.
    BadAddress(String),
    /// An address that cannot be a host's: unspecified, broadcast or multicast.
    UnusableAddress(Ipv4Addr),
    /// A prefix length that is not 1 to 32.
    BadPrefix(String),
    /// A port that is not 1 to 65535.
    BadPort(String),
    /// A protocol other than `tcp` or `udp`.
    BadProtocol(String),
    /// An optional field of `net` other than `gw=`, or `gw=` twice.
    BadOption(String),
    /// The gateway is outside the NIC's subnet, or is the NIC's own address.
    BadGateway {
        /// The gateway.
        gateway: Ipv4Addr,
        /// The NIC's address and prefix length.
        nic: (Ipv4Addr, u8),
    },
    /// A second NIC, capability or endpoint of the same name.
    Duplicate {
        /// `NIC`, `capability` or `endpoint`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A second provided endpoint on the same port and protocol.
    PortTaken {
        /// The port.
        port: u16,
        /// The protocol.
        proto: Proto,
        /// The endpoint that has it.
        by: String,
    },
    /// No NIC reaches the capability's address: none has it in its subnet and none has a
    /// gateway.
    Unreachable(Ipv4Addr),
    /// An endpoint is provided, but the guest has no NIC to listen on.
    NoNic,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Reason::NoVersion => f.write_str("expected --sturdy.vN.KEY=VALUE"),
            Reason::UnsupportedVersion(v) => write!(
                f,
                "boot configuration version '{v}' is not supported; this guest understands \
                 v{VERSION} (is the host newer than the guest's SDK?)"
            ),
            Reason::UnknownKey(key) => write!(
                f,
                "unknown key '{key}'; version {VERSION} has net, use, egress and provide"
            ),
            Reason::Malformed { expected } => write!(f, "expected {expected}"),
            Reason::BadName { name, rule } => write!(f, "'{name}' is not a valid name: {rule}"),
            Reason::BadAddress(text) => write!(f, "'{text}' is not an IPv4 address"),
            Reason::UnusableAddress(addr) => write!(
                f,
                "{addr} cannot be a host's address (unspecified, broadcast or multicast)"
            ),
            Reason::BadPrefix(text) => {
                write!(f, "'{text}' is not a prefix length (1 to 32)")
            }
            Reason::BadPort(text) => write!(f, "'{text}' is not a port (1 to 65535)"),
            Reason::BadProtocol(text) => {
                write!(f, "'{text}' is not a protocol (tcp or udp)")
            }
            Reason::BadOption(text) => write!(
                f,
                "'{text}' is not an option of net (the only one is gw=IPV4, at most once)"
            ),
            Reason::BadGateway {
                gateway,
                nic: (addr, prefix),
            } => write!(
                f,
                "gateway {gateway} must be another address inside the NIC's subnet \
                 {addr}/{prefix}"
            ),
            Reason::Duplicate { what, name } => write!(f, "a second {what} named '{name}'"),
            Reason::PortTaken { port, proto, by } => {
                write!(f, "{port}/{proto} is already provided by endpoint '{by}'")
            }
            Reason::Unreachable(addr) => write!(
                f,
                "no NIC reaches {addr}: it is outside every NIC's subnet and no NIC has a gateway"
            ),
            Reason::NoNic => f.write_str(
                "the guest provides an endpoint but has no NIC to listen on (no --sturdy.v1.net)",
            ),
        }
    }
}
