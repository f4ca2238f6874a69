//! Reading the boot configuration from the guest's arguments (the grammar is in the crate
//! documentation).

use alloc::string::ToString;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::str::FromStr;

use crate::{check, BootConfig, Capability, Endpoint, Error, Nic, Proto, Reason, PREFIX, VERSION};

const NET: &str = "NIC:IPV4/PREFIX[:gw=IPV4]";
const CAPABILITY: &str = "NAME:IPV4:PORT/PROTO";
const ENDPOINT: &str = "NAME:PORT/PROTO";

/// Splits `args` into the boot configuration (every argument starting with [`PREFIX`]) and the
/// application's own arguments, which are returned in their order.
///
/// Fails on the first argument that cannot be used, naming it and saying why; or, once all are
/// read, if they do not fit together (see [`BootConfig::validate`]).
pub fn parse<'a>(
    args: impl IntoIterator<Item = &'a str>,
) -> Result<(BootConfig, Vec<&'a str>), Error> {
    let mut config = BootConfig::default();
    let mut rest = Vec::new();
    for arg in args {
        match item(arg)? {
            None => rest.push(arg),
            Some(Item::Net(nic)) => config.nics.push(nic),
            Some(Item::Use(cap)) => config.uses.push(cap),
            Some(Item::Egress(cap)) => config.egress.push(cap),
            Some(Item::Provide(endpoint)) => config.provides.push(endpoint),
        }
    }
    check::together(&config)?;
    Ok((config, rest))
}

/// What one argument configures.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item {
    Net(Nic),
    Use(Capability),
    Egress(Capability),
    Provide(Endpoint),
}

/// Reads one argument: `None` if it is not part of the boot configuration.
pub(crate) fn item(token: &str) -> Result<Option<Item>, Error> {
    let Some(rest) = token.strip_prefix(PREFIX) else {
        return Ok(None);
    };
    let item = versioned(rest).map_err(|reason| Error::new(token, reason))?;
    Ok(Some(item))
}

/// `vN.KEY=VALUE`.
fn versioned(text: &str) -> Result<Item, Reason> {
    let (version, rest) = text.split_once('.').unwrap_or((text, ""));
    let number: u32 = version
        .strip_prefix('v')
        .and_then(decimal)
        .ok_or(Reason::NoVersion)?;
    if number != VERSION {
        return Err(Reason::UnsupportedVersion(version.to_string()));
    }
    let (key, value) = rest.split_once('=').ok_or(Reason::Malformed {
        expected: "--sturdy.v1.KEY=VALUE",
    })?;
    match key {
        "net" => net(value).map(Item::Net),
        "use" => capability(value).map(Item::Use),
        "egress" => capability(value).map(Item::Egress),
        "provide" => endpoint(value).map(Item::Provide),
        _ => Err(Reason::UnknownKey(key.to_string())),
    }
}

fn net(value: &str) -> Result<Nic, Reason> {
    let malformed = Reason::Malformed { expected: NET };
    let mut fields = value.split(':');
    let name = nic_name(fields.next().unwrap_or_default())?;
    let (addr, prefix) = fields
        .next()
        .and_then(|cidr| cidr.split_once('/'))
        .ok_or(malformed)?;
    let nic = Nic {
        name: name.to_string(),
        addr: host_addr(addr)?,
        prefix_len: prefix_len(prefix)?,
        gateway: None,
    };
    let mut gateway = None;
    for option in fields {
        match option.strip_prefix("gw=") {
            Some(gw) if gateway.is_none() => gateway = Some(host_addr(gw)?),
            _ => return Err(Reason::BadOption(option.to_string())),
        }
    }
    if let Some(gw) = gateway {
        if gw == nic.addr || !nic.contains(gw) {
            return Err(Reason::BadGateway {
                gateway: gw,
                nic: (nic.addr, nic.prefix_len),
            });
        }
    }
    Ok(Nic { gateway, ..nic })
}

fn capability(value: &str) -> Result<Capability, Reason> {
    let fields: Vec<&str> = value.split(':').collect();
    let [name, addr, service] = fields[..] else {
        return Err(Reason::Malformed {
            expected: CAPABILITY,
        });
    };
    let name = cap_name(name)?;
    let addr = host_addr(addr)?;
    let (port, proto) = port_proto(service, CAPABILITY)?;
    Ok(Capability {
        name: name.to_string(),
        addr,
        port,
        proto,
    })
}

fn endpoint(value: &str) -> Result<Endpoint, Reason> {
    let fields: Vec<&str> = value.split(':').collect();
    let [name, service] = fields[..] else {
        return Err(Reason::Malformed { expected: ENDPOINT });
    };
    let name = label(name)?;
    let (port, proto) = port_proto(service, ENDPOINT)?;
    Ok(Endpoint {
        name: name.to_string(),
        port,
        proto,
    })
}

/// A NIC name: as in a Solo5 manifest.
fn nic_name(name: &str) -> Result<&str, Reason> {
    let valid = (1..=67).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then_some(name).ok_or_else(|| Reason::BadName {
        name: name.to_string(),
        rule: "a NIC name is 1 to 67 ASCII letters and digits",
    })
}

/// A capability name: one label or two joined by a dot.
fn cap_name(name: &str) -> Result<&str, Reason> {
    let labels = name.split('.').count();
    let valid = labels <= 2 && name.split('.').all(is_label);
    valid.then_some(name).ok_or_else(|| Reason::BadName {
        name: name.to_string(),
        rule: "a capability name is SERVICE or SERVICE.ENDPOINT, each 1 to 63 ASCII letters, \
               digits, '-' and '_'",
    })
}

/// An endpoint name: one label.
fn label(name: &str) -> Result<&str, Reason> {
    is_label(name)
        .then_some(name)
        .ok_or_else(|| Reason::BadName {
            name: name.to_string(),
            rule: "an endpoint name is 1 to 63 ASCII letters, digits, '-' and '_'",
        })
}

fn is_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An address a host can have.
fn host_addr(text: &str) -> Result<Ipv4Addr, Reason> {
    let addr = Ipv4Addr::from_str(text).map_err(|_| Reason::BadAddress(text.to_string()))?;
    if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
        return Err(Reason::UnusableAddress(addr));
    }
    Ok(addr)
}

fn prefix_len(text: &str) -> Result<u8, Reason> {
    decimal(text)
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(|| Reason::BadPrefix(text.to_string()))
}

/// `PORT/PROTO`.
fn port_proto(text: &str, expected: &'static str) -> Result<(u16, Proto), Reason> {
    let (port, proto) = text.split_once('/').ok_or(Reason::Malformed { expected })?;
    let port = decimal(port)
        .filter(|&p| p != 0)
        .ok_or_else(|| Reason::BadPort(port.to_string()))?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return Err(Reason::BadProtocol(proto.to_string())),
    };
    Ok((port, proto))
}

/// A number in canonical decimal: digits only, no leading zero, so that each value has exactly
/// one spelling and rendering it gives back the same argument.
fn decimal<T: FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason `token` is refused.
    fn reason(token: &str) -> Reason {
        let e = parse([token]).unwrap_err();
        assert_eq!(e.token(), token);
        e.reason().clone()
    }

    #[test]
    fn reads_every_key() {
        let (c, rest) = parse([
            "--greeting=hi",
            "--sturdy.v1.net=service:10.0.0.2/24:gw=10.0.0.1",
            "--sturdy.v1.use=db.kv:10.0.0.3:6379/tcp",
            "positional",
            "--sturdy.v1.egress=egress.0:203.0.113.7:443/tcp",
            "--sturdy.v1.provide=dns:53/udp",
        ])
        .unwrap();
        assert_eq!(rest, ["--greeting=hi", "positional"]);
        assert_eq!(
            c.nics,
            [Nic {
                name: "service".into(),
                addr: [10, 0, 0, 2].into(),
                prefix_len: 24,
                gateway: Some([10, 0, 0, 1].into()),
            }]
        );
        assert_eq!(
            c.uses,
            [Capability {
                name: "db.kv".into(),
                addr: [10, 0, 0, 3].into(),
                port: 6379,
                proto: Proto::Tcp,
            }]
        );
        assert_eq!(c.egress[0].addr, Ipv4Addr::new(203, 0, 113, 7));
        assert_eq!(
            c.provides,
            [Endpoint {
                name: "dns".into(),
                port: 53,
                proto: Proto::Udp,
            }]
        );
    }

    #[test]
    fn no_configuration_is_an_empty_one() {
        let (c, rest) = parse(["a", "--sturdy", "--sturdyish.v1.net=x"]).unwrap();
        assert_eq!(c, BootConfig::default());
        assert_eq!(rest, ["a", "--sturdy", "--sturdyish.v1.net=x"]);
    }

    #[test]
    fn other_versions_are_refused_clearly() {
        assert_eq!(
            reason("--sturdy.v2.net=service:10.0.0.2/24"),
            Reason::UnsupportedVersion("v2".into())
        );
        assert_eq!(
            reason("--sturdy.v0.whatever"),
            Reason::UnsupportedVersion("v0".into())
        );
        let e = parse(["--sturdy.v7.net=x"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "boot configuration argument '--sturdy.v7.net=x': boot configuration version 'v7' \
             is not supported; this guest understands v1 (is the host newer than the guest's SDK?)"
        );
        for token in [
            "--sturdy.net=x",
            "--sturdy.",
            "--sturdy.v.net=x",
            "--sturdy.v01.net=x",
        ] {
            assert_eq!(reason(token), Reason::NoVersion, "{token}");
        }
    }

    #[test]
    fn keys_and_shapes() {
        assert_eq!(
            reason("--sturdy.v1.nets=a:10.0.0.2/24"),
            Reason::UnknownKey("nets".into())
        );
        assert_eq!(
            reason("--sturdy.v1"),
            Reason::Malformed {
                expected: "--sturdy.v1.KEY=VALUE"
            }
        );
        assert_eq!(
            reason("--sturdy.v1.net=service"),
            Reason::Malformed { expected: NET }
        );
        assert_eq!(
            reason("--sturdy.v1.net=service:10.0.0.2"),
            Reason::Malformed { expected: NET }
        );
        assert_eq!(
            reason("--sturdy.v1.use=db:10.0.0.3"),
            Reason::Malformed {
                expected: CAPABILITY
            }
        );
        assert_eq!(
            reason("--sturdy.v1.use=db:10.0.0.3:1/tcp:x"),
            Reason::Malformed {
                expected: CAPABILITY
            }
        );
        assert_eq!(
            reason("--sturdy.v1.use=db:10.0.0.3:6379"),
            Reason::Malformed {
                expected: CAPABILITY
            }
        );
        assert_eq!(
            reason("--sturdy.v1.provide=kv"),
            Reason::Malformed { expected: ENDPOINT }
        );
    }

    #[test]
    fn names() {
        for token in [
            "--sturdy.v1.net=:10.0.0.2/24",
            "--sturdy.v1.net=ser-vice:10.0.0.2/24",
            "--sturdy.v1.use=:10.0.0.3:1/tcp",
            "--sturdy.v1.use=a.b.c:10.0.0.3:1/tcp",
            "--sturdy.v1.use=a.:10.0.0.3:1/tcp",
            "--sturdy.v1.use=db kv:10.0.0.3:1/tcp",
            "--sturdy.v1.provide=a.b:1/tcp",
            "--sturdy.v1.provide=é:1/tcp",
        ] {
            assert!(
                matches!(reason(token), Reason::BadName { .. }),
                "{token}: {:?}",
                reason(token)
            );
        }
        let long = "x".repeat(64);
        assert!(matches!(
            reason(&format!("--sturdy.v1.provide={long}:1/tcp")),
            Reason::BadName { .. }
        ));
        let ok = "x".repeat(63);
        parse([
            format!("--sturdy.v1.net={}:10.0.0.2/24", "n".repeat(67)).as_str(),
            format!("--sturdy.v1.use={ok}.{ok}:10.0.0.3:1/tcp").as_str(),
            format!("--sturdy.v1.provide=A-b_9{}:1/tcp", "c".repeat(57)).as_str(),
        ])
        .unwrap();
    }

    #[test]
    fn numbers_are_canonical_decimal() {
        assert_eq!(
            reason("--sturdy.v1.use=db:10.0.0.300:1/tcp"),
            Reason::BadAddress("10.0.0.300".into())
        );
        assert_eq!(
            reason("--sturdy.v1.use=db:010.0.0.3:1/tcp"),
            Reason::BadAddress("010.0.0.3".into())
        );
        for port in ["0", "65536", "+80", "080", "", "8o"] {
            assert_eq!(
                reason(&format!("--sturdy.v1.provide=kv:{port}/tcp")),
                Reason::BadPort(port.into())
            );
        }
        for prefix in ["0", "33", "024", "-1"] {
            assert_eq!(
                reason(&format!("--sturdy.v1.net=s:10.0.0.2/{prefix}")),
                Reason::BadPrefix(prefix.into())
            );
        }
        assert_eq!(
            reason("--sturdy.v1.provide=kv:1/TCP"),
            Reason::BadProtocol("TCP".into())
        );
    }

    #[test]
    fn host_addresses_only() {
        for (addr, bad) in [
            ("0.0.0.0", Ipv4Addr::UNSPECIFIED),
            ("255.255.255.255", Ipv4Addr::BROADCAST),
            ("224.0.0.1", Ipv4Addr::new(224, 0, 0, 1)),
        ] {
            assert_eq!(
                reason(&format!("--sturdy.v1.use=x:{addr}:1/udp")),
                Reason::UnusableAddress(bad)
            );
        }
    }

    #[test]
    fn gateways() {
        let gw = |nic: &str| reason(&format!("--sturdy.v1.net={nic}"));
        assert_eq!(
            gw("s:10.0.0.2/24:gw=10.0.1.1"),
            Reason::BadGateway {
                gateway: [10, 0, 1, 1].into(),
                nic: ([10, 0, 0, 2].into(), 24)
            }
        );
        assert!(matches!(
            gw("s:10.0.0.2/24:gw=10.0.0.2"),
            Reason::BadGateway { .. }
        ));
        assert_eq!(
            gw("s:10.0.0.2/24:gw=10.0.0.1:gw=10.0.0.1"),
            Reason::BadOption("gw=10.0.0.1".into())
        );
        assert_eq!(
            gw("s:10.0.0.2/24:mtu=1500"),
            Reason::BadOption("mtu=1500".into())
        );
        let (c, _) = parse(["--sturdy.v1.net=s:10.0.0.2/8:gw=10.200.0.1"]).unwrap();
        assert_eq!(c.nics[0].gateway, Some(Ipv4Addr::new(10, 200, 0, 1)));
    }

    #[test]
    fn error_messages_name_the_argument() {
        let e = parse(["--sturdy.v1.use=db:10.0.0.300:6379/tcp"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "boot configuration argument '--sturdy.v1.use=db:10.0.0.300:6379/tcp': \
             '10.0.0.300' is not an IPv4 address"
        );
    }
}
